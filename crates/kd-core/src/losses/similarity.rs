use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// Similarity-preserving KD (Tung & Mori, 2019): Σ over pairs of `mse(normalize(G_s),
/// normalize(G_t))`, `G = F·Fᵀ` between the items of the batch, each item's values flattened
/// (any rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Similarity {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Multiplier (default 1; the research code uses 3000).
    #[serde(default = "one")]
    pub scale: f64,
}

impl Similarity {
    /// Between `pairs`.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            scale: one(),
        }
    }
}

impl KdLoss for Similarity {
    fn name(&self) -> &'static str {
        "Similarity"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::positive(self.name(), "scale", self.scale)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(sum_pairs(self, input, feature::similarity)?.mul_scalar(self.scale))
    }
}
