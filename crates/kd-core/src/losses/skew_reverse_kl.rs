use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::losses::{one, skew};
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Skew reverse KL per token (DistiLLM, Ko et al., 2024): `KL(p_s ‖ (1 − α)·p_t + α·p_s)`,
/// the mean over items or valid positions; α = 0 is the reverse KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkewReverseKl {
    /// The student's share α of the skewed teacher, in `[0, 1)` (default 0.1, DistiLLM's).
    #[serde(default = "skew::default_alpha")]
    pub alpha: f64,
    /// Temperature `T` (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

impl Default for SkewReverseKl {
    fn default() -> Self {
        Self {
            alpha: skew::default_alpha(),
            temperature: one(),
        }
    }
}

impl KdLoss for SkewReverseKl {
    fn name(&self) -> &'static str {
        "SkewReverseKL"
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
        Ok(logit::skew_reverse_kl(s, t, self.alpha, temperature))
    }
}
