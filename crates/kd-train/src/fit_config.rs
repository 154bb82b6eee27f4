//! The settings of a fit — epochs, peak learning rate, weight decay, optimizer, schedule,
//! gradient accumulation — and the Burn `Learner` they make for a model.

use burn::train::{Learner, LearnerModel};
use serde::{Deserialize, Serialize};

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
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            weight_decay: 0.01,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::default(),
        }
    }
}

impl FitConfig {
    /// Burn's [`Learner`] for `model` with these settings: the [optimizer](OptimizerConfig)
    /// and the [schedule](LrSchedule) as Burn's `LrScheduler` ([`ScheduledLr`], which also
    /// moves Adam's β1), the model planned for [`epochs`](Self::epochs) over a training loader
    /// serving `items_per_epoch` items (Burn's `DataLoader::num_items`), so its weight and
    /// temperature schedules advance with it. Launch it with `SupervisedTraining` and
    /// `num_epochs(self.epochs)`; [`Recipe`](crate::Recipe) does all of it.
    pub fn learner<M: Trainable + LearnerModel>(
        &self,
        model: M,
        items_per_epoch: usize,
    ) -> Learner<M> {
        model.plan(self.epochs, items_per_epoch);
        let (optim, beta_1) = self.optimizer.init(self.weight_decay);
        let clock = model.training_clock().clone();
        let scheduler = ScheduledLr::new(self.schedule.clone(), self.lr, beta_1, clock, 1);
        Learner::new(model, optim, scheduler)
    }
}
