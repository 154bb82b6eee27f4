use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::losses::{one, unit_interval};
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Generalised Jensen–Shannon divergence per token (GKD, Agarwal et al., 2024; TRL's
/// `generalized_jsd_loss`): with `m = β·p_t + (1 − β)·p_s`,
/// `β·KL(p_t ‖ m) + (1 − β)·KL(p_s ‖ m)`, the mean over items or valid positions — see
/// [`logit::generalized_jsd`]. β = 0 is the forward KL, β = 1 the reverse KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jsd {
    /// The teacher's share β of the mixture, in `[0, 1]` (default 0.5, TRL's).
    #[serde(default = "Jsd::default_beta")]
    pub beta: f64,
    /// Temperature `T` (default 1).
    #[serde(default = "one")]
    pub temperature: f64,
}

impl Jsd {
    fn default_beta() -> f64 {
        0.5
    }

    /// With the teacher's share `beta`, at temperature 1.
    pub fn new(beta: f64) -> Self {
        Self {
            beta,
            temperature: one(),
        }
    }
}

impl Default for Jsd {
    fn default() -> Self {
        Self::new(Self::default_beta())
    }
}

impl KdLoss for Jsd {
    fn name(&self) -> &'static str {
        "JSD"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn check_settings(&self) -> Result<(), LossError> {
        unit_interval(self.name(), "beta", self.beta)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        let temperature = self.temperature * input.temperature_scale;
        Ok(logit::generalized_jsd(s, t, self.beta, temperature))
    }
}
