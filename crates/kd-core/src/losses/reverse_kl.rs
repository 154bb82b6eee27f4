use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::losses::one;
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Reverse KL per token, `KL(p_s ‖ p_t)` at temperature `T` (mode-seeking; MiniLLM's token
/// level, GKD with β = 1): the mean over items or valid positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseKl {
    /// Temperature `T` (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

impl Default for ReverseKl {
    fn default() -> Self {
        Self { temperature: one() }
    }
}

impl KdLoss for ReverseKl {
    fn name(&self) -> &'static str {
        "ReverseKL"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        let temperature = self.temperature * input.temperature_scale;
        Ok(logit::reverse_kl(s, t, temperature))
    }
}
