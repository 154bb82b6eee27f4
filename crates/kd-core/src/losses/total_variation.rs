use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::losses::one;
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Total variation distance per token, `½·Σ_c |p_s − p_t|` at temperature `T`, the mean over
/// items or valid positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotalVariation {
    /// Temperature `T` (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

impl Default for TotalVariation {
    fn default() -> Self {
        Self { temperature: one() }
    }
}

impl KdLoss for TotalVariation {
    fn name(&self) -> &'static str {
        "TotalVariation"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        let temperature = self.temperature * input.temperature_scale;
        Ok(logit::total_variation(s, t, temperature))
    }
}
