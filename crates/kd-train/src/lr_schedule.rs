//! How the learning rate moves over a fit: fastai's one cycle (the default), cosine annealing,
//! constant, or steps at given epochs (torchvision's and torchdistill's `MultiStepLR`).

use serde::{Deserialize, Serialize};

use crate::OneCycle;

/// The learning-rate schedule of a [`FitConfig`](crate::FitConfig) and of experiment
/// files' `[training] schedule`; `lr` is its peak (or only) value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// fastai's `fit_one_cycle` ([`OneCycle`]): up from `lr/25` to `lr` over the first quarter
    /// of the steps, then down to `lr/1e5`; Adam's β1 0.95 → 0.85 → 0.95.
    #[default]
    OneCycle,
    /// Cosine annealing from `lr` to 0 over every step (PyTorch's `CosineAnnealingLR` with
    /// `T_max` = the steps, stepped per batch).
    Cosine,
    /// `lr` throughout.
    Constant,
    /// `lr`, times `gamma` at each epoch of `milestones` (PyTorch's `MultiStepLR`, stepped per
    /// epoch): `lr · gamma^(milestones ≤ epoch)`.
    Step {
        /// The epochs (from 0) at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// The factor (default 0.1).
        #[serde(default = "LrSchedule::default_gamma")]
        gamma: f64,
    },
}

impl LrSchedule {
    fn default_gamma() -> f64 {
        0.1
    }

    /// Whether this is the default (one cycle), for leaving it out of written settings.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The learning rate at optimizer step `step` (from 0) of `total`, with `per_epoch` steps
    /// an epoch and peak `lr`.
    pub fn lr(&self, lr: f64, step: usize, total: usize, per_epoch: usize) -> f64 {
        match self {
            Self::OneCycle => OneCycle::new(lr, total).lr(step),
            Self::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                lr * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
            Self::Constant => lr,
            Self::Step { milestones, gamma } => {
                let epoch = step / per_epoch.max(1);
                let passed = milestones.iter().filter(|&&m| m <= epoch).count();
                lr * gamma.powi(passed as i32)
            }
        }
    }

    /// Adam's β1 at `step` of `total`: one cycle's momentum, else 0.9.
    pub fn beta_1(&self, step: usize, total: usize) -> f64 {
        match self {
            Self::OneCycle => OneCycle::new(1.0, total).momentum(step),
            _ => 0.9,
        }
    }

    /// A schedule that cannot train: a `gamma` that is not a positive number, milestones not
    /// increasing.
    pub fn check(&self) -> Result<(), String> {
        if let Self::Step { milestones, gamma } = self {
            if !(gamma.is_finite() && *gamma > 0.0) {
                return Err(format!("gamma = {gamma} must be a positive number"));
            }
            if milestones.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("milestones = {milestones:?} must increase"));
            }
        }
        Ok(())
    }
}
