use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// Attention transfer (Zagoruyko & Komodakis, 2017), fasterai's `Attention`: Σ over pairs of
/// `mse(normalize(mean_c |f_s|^p), normalize(mean_c |f_t|^p))`. On maps the attention is over
/// height × width (the larger map average-pooled to the smaller); on sequences over positions
/// (features as channels; equal lengths). Vectors have no positions: refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Exponent (default 2).
    #[serde(default = "Attention::default_p")]
    pub p: f64,
    /// Multiplier (default 1; the research code uses 1000).
    #[serde(default = "one")]
    pub scale: f64,
}

impl Attention {
    fn default_p() -> f64 {
        2.0
    }

    /// fasterai's defaults between explicitly paired layers.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            p: Self::default_p(),
            scale: one(),
        }
    }
}

impl KdLoss for Attention {
    fn name(&self) -> &'static str {
        "Attention"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn tap_ranks(&self) -> &'static [usize] {
        &[3, 4]
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::positive(self.name(), "p", self.p)?;
        settings::positive(self.name(), "scale", self.scale)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(sum_pairs(self, input, |s, t| feature::attention(s, t, self.p))?.mul_scalar(self.scale))
    }
}
