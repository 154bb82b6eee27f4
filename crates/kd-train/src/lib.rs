//! # kd-train
//!
//! Knowledge distillation as Burn `Learner` components. [`DistillModel`] implements Burn's
//! `TrainStep` / `InferenceStep`, so it trains under `burn::train::Learner` like any model;
//! kd's own parts plug into Burn's `SupervisedTraining`, and [`Recipe`] assembles them into
//! fastai's recipe — the one path every kd training takes:
//!
//! - [`FitConfig::learner`]: the optimizer ([`fastai_adam`]: Adam with β2 0.99, eps 1e-5,
//!   decoupled weight decay off for BatchNorm and biases; or SGD) and the learning-rate
//!   schedule as Burn's `LrScheduler` ([`ScheduledLr`]: one cycle, cosine, step, constant;
//!   fastai's β1 0.95 → 0.85 → 0.95 with one cycle), the model planned so its weight and
//!   temperature schedules follow the same [`TrainingClock`];
//! - [`RunCheckpointer`]: digest-checked checkpoints after every epoch, resumed exactly;
//! - [`HistoryRecorder`]: each epoch's [`EpochRecord`] (fastai's table row) per member, from
//!   Burn's events, to a [`report::Reporter`];
//! - [`StepGuard`]: a NaN or infinite loss or gradient stops training with
//!   [`TrainError::NonFinite`] naming the epoch, step and term;
//! - [`Quiet`]: Burn's renderer and metric logger, silent.
//!
//! The teacher is frozen: a copy in eval mode on the tape-free device (BatchNorm uses its
//! running statistics and never updates them), not a parameter of the trained module, so the
//! optimizer never sees it and checkpoints never contain it. Its outputs are cached on the
//! device per item key the batch provides ([`kd_core::DistillBatch::cache_keys`]: the data
//! set's fingerprint, the item, and the flip variant for kd-data's images), within a byte
//! budget — see [`TeacherCache`]. Several teachers and their ensembles ([`Teachers`]), several
//! devices ([`DistillModel::on_devices`]), and deep mutual learning of several students
//! ([`MutualModel`], [`Recipe::fit_mutual`]).

mod adam;
mod checkpoint;
mod clock;
mod devices;
pub mod digests;
mod distill;
mod divergence;
mod early_stopping;
mod evaluate;
mod fit_config;
mod guard;
mod history;
mod lr_schedule;
mod metrics;
mod mutual;
mod mutual_loss;
mod one_cycle;
mod optimizer;
mod options;
mod parallel;
mod quiet;
mod recipe;
mod recorder;
pub mod report;
mod rollout;
mod scheduler;
mod step;
mod teacher;
mod teachers;
mod trainable;

use std::path::PathBuf;

pub use adam::{Beta1, CycledAdamW, fastai_adam};
pub use checkpoint::{RunCheckpointer, load_trained_student};
pub use clock::{StepPosition, TrainingClock};
pub use distill::{DistillModel, KdOutput, TappableModule};
pub use early_stopping::{EarlyStop, EarlyStopping, Monitor};
pub use evaluate::{Evaluation, evaluate};
pub use fit_config::FitConfig;
pub use guard::StepGuard;
pub use history::{EpochRecord, History};
pub use lr_schedule::LrSchedule;
pub use metrics::{ObjectivePartMetric, ObjectivePartsInput};
pub use mutual::{MutualModel, MutualOutput};
pub use one_cycle::OneCycle;
pub use optimizer::OptimizerConfig;
pub use options::DistillOptions;
pub use quiet::Quiet;
pub use recipe::{Fitted, Loader, Recipe};
pub use recorder::{HistoryRecorder, MemberOutputs, Tally};
pub use rollout::Rollout;
pub use scheduler::ScheduledLr;
pub use teacher::{FrozenTeacher, TeacherCache};
pub use teachers::Teachers;
pub use trainable::Trainable;

/// Everything that can stop training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A checkpoint's model file that could not be written or read back.
    #[error(transparent)]
    ModelFile(#[from] kd_core::ModuleFileError),
    /// A layer name a model does not have.
    #[error(transparent)]
    Tap(#[from] kd_core::TapError),
    /// A loss problem (shapes, taps, targets).
    #[error(transparent)]
    Loss(#[from] kd_core::LossError),
    /// A data problem.
    #[error("data: {0}")]
    Data(String),
    /// The teachers cannot serve the objective (names, ensembles).
    #[error("teachers: {0}")]
    Teachers(String),
    /// The objective needs a teacher and none was given.
    #[error("the distillation objective needs a teacher, but none was given")]
    NoTeacher,
    /// Deep mutual learning cannot start (too few students, say).
    #[error("deep mutual learning: {0}")]
    Mutual(String),
    /// Training on several devices cannot start or went wrong on one of them.
    #[error("devices: {0}")]
    Devices(String),
    /// The training loader yielded no batch in an epoch.
    #[error(
        "the training data yielded no batch ({items} items per epoch): fewer items than one batch, with incomplete batches dropped?"
    )]
    TooFewItems {
        /// The items the training loader says it serves per epoch.
        items: usize,
    },
    /// The loss or its gradient became NaN or infinite.
    #[error(
        "{run}: training stopped at epoch {epoch}, step {step}: {what} has a NaN or infinite value or gradient (lower the learning rate, or check that loss's settings)"
    )]
    NonFinite {
        /// Run name.
        run: String,
        /// Epoch.
        epoch: usize,
        /// Step in the epoch.
        step: usize,
        /// Which part of the objective went non-finite first.
        what: String,
    },
    /// The objective has schedules and nothing plans the training they follow.
    #[error("schedules: {0}")]
    Schedule(String),
    /// Training was asked to stop (Burn's `Interrupter`) before its last epoch.
    #[error("training stopped before its last epoch: {0}")]
    Stopped(String),
    /// Burn's `Learner` stopped on an error of its own (data, metrics, checkpoints).
    #[error("training: {0}")]
    Training(String),
    /// A checkpoint could not be written or read.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
