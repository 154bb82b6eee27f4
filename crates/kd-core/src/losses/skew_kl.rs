use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::losses::{one, skew};
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Skew KL per token (DistiLLM, Ko et al., 2024): `KL(p_t ‖ α·p_t + (1 − α)·p_s)`, the mean
/// over items or valid positions; α = 0 is the forward KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkewKl {
    /// The teacher's share α of the skewed student, in `[0, 1)` (default 0.1, DistiLLM's).
    #[serde(default = "skew::default_alpha")]
    pub alpha: f64,
    /// Temperature `T` (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

impl Default for SkewKl {
    fn default() -> Self {
        Self {
            alpha: skew::default_alpha(),
            temperature: one(),
        }
    }
}

impl KdLoss for SkewKl {
    fn name(&self) -> &'static str {
        "SkewKL"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn check_settings(&self) -> Result<(), LossError> {
        skew::check_alpha(self.name(), self.alpha)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        let temperature = self.temperature * input.temperature_scale;
        Ok(logit::skew_kl(s, t, self.alpha, temperature))
    }
}
