use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::losses::one;
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Forward KL per token, `KL(p_t ‖ p_s)` at temperature `T` (mass-covering; GKD with β = 0):
/// the mean over items or valid positions, without Hinton's `T²` (that is [`SoftTarget`]).
///
/// [`SoftTarget`]: crate::losses::SoftTarget
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardKl {
    /// Temperature `T` (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

impl Default for ForwardKl {
    fn default() -> Self {
        Self { temperature: one() }
    }
}

impl KdLoss for ForwardKl {
    fn name(&self) -> &'static str {
        "ForwardKL"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        let temperature = self.temperature * input.temperature_scale;
        Ok(logit::forward_kl(s, t, temperature))
    }
}
