use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::losses::one;
use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Decoupled KD (Zhao et al., 2022): `(α·TCKD + β·NCKD)·T²` — see [`logit::decoupled`]. Needs
/// targets (one per logit row: per item, or per position that counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoupledKd {
    /// Temperature (default 4).
    #[serde(default = "DecoupledKd::default_temperature")]
    pub temperature: f64,
    /// Weight of the target-class term (default 1).
    #[serde(default = "one")]
    pub alpha: f64,
    /// Weight of the non-target term (default 8).
    #[serde(default = "DecoupledKd::default_beta")]
    pub beta: f64,
    /// Standardise logits (z-score per row) before the temperature.
    #[serde(default)]
    pub normalize: bool,
}

impl DecoupledKd {
    fn default_temperature() -> f64 {
        4.0
    }
    fn default_beta() -> f64 {
        8.0
    }
}

impl Default for DecoupledKd {
    fn default() -> Self {
        Self {
            temperature: Self::default_temperature(),
            alpha: one(),
            beta: Self::default_beta(),
            normalize: false,
        }
    }
}

impl KdLoss for DecoupledKd {
    fn name(&self) -> &'static str {
        "DecoupledKD"
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::non_negative(self.name(), "alpha", self.alpha)?;
        settings::non_negative(self.name(), "beta", self.beta)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (mut s, mut t) = paired_logits(self.name(), input)?;
        let targets = input
            .targets
            .ok_or(LossError::MissingTargets { loss: self.name() })?;
        if targets.dims()[0] != s.dims()[0] {
            return Err(LossError::Shape {
                loss: self.name(),
                what: "targets".into(),
                student: s.dims().to_vec(),
                teacher: targets.dims().to_vec(),
                hint: "one target per sample is needed",
            });
        }
        if self.normalize {
            s = logit::standardize(s);
            t = logit::standardize(t);
        }
        Ok(logit::decoupled(
            s,
            t,
            targets.clone(),
            self.temperature * input.temperature_scale,
            self.alpha,
            self.beta,
        ))
    }
}
