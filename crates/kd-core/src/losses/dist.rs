use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// DIST (Huang et al., 2022): inter- and intra-class Pearson correlations of the softened
/// predictions — see [`logit::dist`]. Per position, the positions that count form the batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dist {
    /// Inter-class weight (default 1).
    #[serde(default = "one")]
    pub beta: f64,
    /// Intra-class weight (default 1).
    #[serde(default = "one")]
    pub gamma: f64,
    /// Temperature (default 1).
    #[serde(default = "one")]
    pub tau: f64,
}

impl Default for Dist {
    fn default() -> Self {
        Self {
            beta: one(),
            gamma: one(),
            tau: one(),
        }
    }
}

impl KdLoss for Dist {
    fn name(&self) -> &'static str {
        "DIST"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.tau)
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::non_negative(self.name(), "beta", self.beta)?;
        settings::non_negative(self.name(), "gamma", self.gamma)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        Ok(logit::dist(
            s,
            t,
            self.beta,
            self.gamma,
            self.tau * input.temperature_scale,
        ))
    }
}
