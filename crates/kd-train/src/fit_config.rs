//! The settings of a fit — epochs, peak learning rate, weight decay, optimizer, schedule,
//! gradient accumulation — and the Burn `Learner` they make for a model.

use burn::train::{Learner, LearnerModel};
use serde::{Deserialize, Serialize};

use crate::early_stopping::EarlyStopping;
use crate::lr_schedule::LrSchedule;
use crate::optimizer::OptimizerConfig;
use crate::scheduler::ScheduledLr;
use crate::trainable::Trainable;

/// Optimiser and schedule settings (fastai's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate of the schedule.
    pub lr: f64,
    /// Weight decay: decoupled and not on BatchNorm and biases for Adam, L2 on every parameter
    /// for SGD (as each optimizer's reference applies it).
    pub weight_decay: f64,
    /// The optimizer (default fastai's Adam). Left out of written settings when default.
    #[serde(skip_serializing_if = "OptimizerConfig::is_default")]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule (default fastai's one cycle). Left out of written settings
    /// when default.
    #[serde(skip_serializing_if = "LrSchedule::is_default")]
    pub schedule: LrSchedule,
    /// Training steps whose gradients make one optimizer step (Burn's
    /// `grads_accumulation`); each step's loss is divided by it, so the optimizer sees the
    /// mean gradient of the group — that of a batch this many times larger (BatchNorm aside;
    /// an epoch's last group may be smaller and is divided the same). The schedule counts
    /// optimizer steps. Default 1, left out of written settings then.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub grad_accumulation: usize,
    /// Stop before [`epochs`](Self::epochs) once a validation number stops improving
    /// ([`EarlyStopping`]); none by default, left out of written settings then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            weight_decay: 0.01,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::default(),
            grad_accumulation: 1,
            early_stopping: None,
        }
    }
}

impl FitConfig {
    /// Burn's [`Learner`] for `model` with these settings: the [optimizer](OptimizerConfig)
    /// and the [schedule](LrSchedule) as Burn's `LrScheduler` ([`ScheduledLr`], which also
    /// moves Adam's β1), the model planned for [`epochs`](Self::epochs) over a training loader
    /// serving `items_per_epoch` items (Burn's `DataLoader::num_items`), so its weight and
    /// temperature schedules advance with it. Launch it with `SupervisedTraining` and
    /// `num_epochs(self.epochs)` (and, with [`grad_accumulation`](Self::grad_accumulation)
    /// above 1, the same number to `grads_accumulation`); [`Recipe`](crate::Recipe) does all
    /// of it.
    pub fn learner<M: Trainable + LearnerModel>(
        &self,
        model: M,
        items_per_epoch: usize,
    ) -> Learner<M> {
        let accumulation = self.grad_accumulation.max(1);
        model.plan(self.epochs, items_per_epoch, accumulation);
        let (optim, beta_1) = self.optimizer.init(self.weight_decay);
        let clock = model.training_clock().clone();
        let scheduler =
            ScheduledLr::new(self.schedule.clone(), self.lr, beta_1, clock, accumulation);
        Learner::new(model, optim, scheduler)
    }
}
