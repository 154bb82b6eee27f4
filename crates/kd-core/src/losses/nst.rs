use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// Neuron selectivity transfer (Huang & Wang, 2017): Σ over pairs of the squared MMD (degree-2
/// polynomial kernel) between the channels' normalised activations over positions — height ×
/// width of a map, the positions of a sequence (features as channels). Vectors have no
/// positions: refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nst {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Multiplier (default 1).
    #[serde(default = "one")]
    pub scale: f64,
}

impl Nst {
    /// Between `pairs`.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            scale: one(),
        }
    }
}

impl KdLoss for Nst {
    fn name(&self) -> &'static str {
        "NST"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn tap_ranks(&self) -> &'static [usize] {
        &[3, 4]
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::positive(self.name(), "scale", self.scale)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(sum_pairs(self, input, feature::nst)?.mul_scalar(self.scale))
    }
}
