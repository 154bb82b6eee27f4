//! fastai's Adam: Burn's AdamW update with a β1 that the one-cycle schedule moves every step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use burn::module::ParamGroup;
use burn::optim::{AdamW, AdamWConfig, AdamWState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

/// β1 shared by every parameter group of one optimiser; whoever drives the schedule sets it
/// before each step ([`ScheduledLr`](crate::ScheduledLr) does).
#[derive(Debug, Clone)]
pub struct Beta1(Arc<AtomicU32>);

impl Beta1 {
    /// A β1 starting at `value`.
    pub fn new(value: f64) -> Self {
        Self(Arc::new(AtomicU32::new((value as f32).to_bits())))
    }

    /// Use `value` from the next step on.
    pub fn set(&self, value: f64) {
        self.0.store((value as f32).to_bits(), Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// AdamW whose β1 is read from a [`Beta1`] at every step. The update, the optimiser state and
/// its record are Burn's [`AdamW`]'s; the bias correction `1 − β1ᵗ` uses the current β1, as
/// fastai's `adam_step` does.
#[derive(Clone)]
pub struct CycledAdamW {
    config: AdamWConfig,
    beta_1: Beta1,
}

impl CycledAdamW {
    /// `config`'s AdamW with β1 taken from `beta_1`.
    pub fn new(config: AdamWConfig, beta_1: Beta1) -> Self {
        Self { config, beta_1 }
    }
}

impl Optimizer for CycledAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let adam = self.config.clone().with_beta_1(self.beta_1.get()).build();
        adam.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

/// fastai's optimiser: Adam with β2 0.99, eps 1e-5, decoupled weight decay on every weight but
/// BatchNorm parameters and biases, and β1 from the returned [`Beta1`] (0.9 until set).
pub fn fastai_adam(weight_decay: f64) -> (ModuleOptimizer, Beta1) {
    let beta_1 = Beta1::new(0.9);
    let adam = |wd: f64| {
        let config = AdamWConfig::new()
            .with_beta_2(0.99)
            .with_epsilon(1e-5)
            .with_weight_decay(wd as f32);
        CycledAdamW::new(config, beta_1.clone())
    };
    let no_decay = ParamGroup::from_regex(r"(gamma|beta|bias)$").expect("valid regex");
    let optim = ModuleOptimizer::from(adam(weight_decay)).with_group(no_decay, adam(0.0), None);
    (optim, beta_1)
}
