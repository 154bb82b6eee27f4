use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Hinton et al. (2015): `KL_batchmean(log_softmax(s/T) ‖ softmax(t/T)) · T²` (fasterai's
/// `SoftTarget`); per position, the mean over the positions that count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftTarget {
    /// Temperature `T` (default 5).
    #[serde(default = "SoftTarget::default_temperature")]
    pub temperature: f64,
}

impl SoftTarget {
    fn default_temperature() -> f64 {
        5.0
    }

    /// At temperature `temperature`.
    pub fn new(temperature: f64) -> Self {
        Self { temperature }
    }
}

impl Default for SoftTarget {
    fn default() -> Self {
        Self::new(Self::default_temperature())
    }
}

impl KdLoss for SoftTarget {
    fn name(&self) -> &'static str {
        "SoftTarget"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        Ok(logit::soft_target(
            s,
            t,
            self.temperature * input.temperature_scale,
        ))
    }
}
