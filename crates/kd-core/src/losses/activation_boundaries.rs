use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// Activation boundaries (Heo et al., 2019), margin `m`: Σ over pairs of
/// `mean((s+m)²·[s>−m ∧ t≤0] + (s−m)²·[s≤m ∧ t>0])`, neuron by neuron (any rank; sequences
/// position by position). A connector adapts the student's channels or features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationBoundaries {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Margin (default 2).
    #[serde(default = "ActivationBoundaries::default_margin")]
    pub margin: f64,
    /// Multiplier (default 1).
    #[serde(default = "one")]
    pub scale: f64,
}

impl ActivationBoundaries {
    fn default_margin() -> f64 {
        2.0
    }

    /// Between `pairs`, margin 2.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            margin: Self::default_margin(),
            scale: one(),
        }
    }
}

impl KdLoss for ActivationBoundaries {
    fn name(&self) -> &'static str {
        "ActivationBoundaries"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn needs_matching_channels(&self) -> bool {
        true
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::non_negative(self.name(), "margin", self.margin)?;
        settings::positive(self.name(), "scale", self.scale)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(sum_pairs(self, input, |s, t| {
            feature::activation_boundaries(s, t, self.margin)
        })?
        .mul_scalar(self.scale))
    }
}
