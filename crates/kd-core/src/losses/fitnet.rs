use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// FitNets hints (Romero et al., 2015): Σ over pairs of `mse(f_s, f_t)`, value by value (maps:
/// the larger average-pooled to the smaller; sequences: position by position, every position
/// counting, padding included). A connector adapts the student's channels or features when
/// they differ from the teacher's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitNet {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Multiplier (default 1).
    #[serde(default = "one")]
    pub scale: f64,
}

impl FitNet {
    /// Hints between `pairs`.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            scale: one(),
        }
    }
}

impl KdLoss for FitNet {
    fn name(&self) -> &'static str {
        "FitNet"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn needs_matching_channels(&self) -> bool {
        true
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::positive(self.name(), "scale", self.scale)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(sum_pairs(self, input, feature::fitnet)?.mul_scalar(self.scale))
    }
}
