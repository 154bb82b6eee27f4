use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// Probabilistic knowledge transfer (Passalis & Tefas, 2018), RepDistiller's form: Σ over pairs
/// of the KL between the items' cosine-similarity distributions, each item's values flattened
/// (any rank).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkt {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Multiplier (default 1).
    #[serde(default = "one")]
    pub scale: f64,
}

impl Pkt {
    /// Between `pairs`.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            scale: one(),
        }
    }
}

impl KdLoss for Pkt {
    fn name(&self) -> &'static str {
        "PKT"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::positive(self.name(), "scale", self.scale)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(sum_pairs(self, input, feature::pkt)?.mul_scalar(self.scale))
    }
}
