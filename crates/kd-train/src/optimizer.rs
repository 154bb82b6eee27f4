//! Which optimizer a fit uses: fastai's Adam (the default) or SGD with momentum, the recipe of
//! torchvision's and torchdistill's ImageNet and CIFAR runs.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

use crate::adam::{Beta1, fastai_adam};

/// The optimizer of a [`FitConfig`](crate::FitConfig) and of experiment files'
/// `[training] optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// fastai's Adam ([`fastai_adam`]): AdamW with β2 0.99, ε 1e-5, decoupled weight decay on
    /// every weight but BatchNorm parameters and biases; β1 follows the one-cycle schedule
    /// (0.9 under the other schedules).
    #[default]
    Adamw,
    /// PyTorch's `SGD`: `v ← momentum·v + (g + wd·w)` (the first step `v ← g + wd·w`, no
    /// dampening), `w ← w − lr·v` (Nesterov: `w ← w − lr·(g + wd·w + momentum·v)`); weight decay
    /// on every parameter, as PyTorch applies it.
    Sgd {
        /// Momentum (default 0.9; 0 for plain SGD).
        #[serde(default = "OptimizerConfig::default_momentum")]
        momentum: f64,
        /// Nesterov momentum (default false).
        #[serde(default)]
        nesterov: bool,
    },
}

impl OptimizerConfig {
    fn default_momentum() -> f64 {
        0.9
    }

    /// SGD with PyTorch's defaults for ImageNet recipes: momentum 0.9, no Nesterov.
    pub fn sgd() -> Self {
        Self::Sgd {
            momentum: Self::default_momentum(),
            nesterov: false,
        }
    }

    /// Whether this is the default (fastai's Adam), for leaving it out of written settings.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The optimizer with `weight_decay`, and the β1 a schedule may move (used by Adam only).
    pub fn init(&self, weight_decay: f64) -> (ModuleOptimizer, Beta1) {
        match *self {
            Self::Adamw => fastai_adam(weight_decay),
            Self::Sgd { momentum, nesterov } => {
                let momentum = (momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                });
                let decay = (weight_decay > 0.0).then_some(WeightDecayConfig {
                    penalty: weight_decay as f32,
                });
                let sgd = SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay)
                    .init();
                (sgd, Beta1::new(0.9))
            }
        }
    }

    /// A setting that cannot train: momentum outside `[0, 1)`, Nesterov without momentum.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            Self::Adamw => Ok(()),
            Self::Sgd { momentum, nesterov } => {
                if !(0.0..1.0).contains(&momentum) {
                    return Err(format!("momentum = {momentum} must be in [0, 1)"));
                }
                if nesterov && momentum == 0.0 {
                    return Err("nesterov needs a momentum above 0".into());
                }
                Ok(())
            }
        }
    }
}
