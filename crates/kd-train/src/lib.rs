//! # kd-train
//!
//! Knowledge distillation as a plug-in to Burn's training: [`DistillModel`] implements Burn's
//! `TrainStep` / `InferenceStep`, so it runs under `burn::train::Learner` like any model, and
//! [`fit_one_cycle`] is fastai's recipe on top of the same steps ([`fastai_adam`]: Adam with
//! β2 0.99, eps 1e-5, decoupled weight decay off for BatchNorm and biases; [`OneCycle`] learning
//! rate and β1, 0.95 → 0.85 → 0.95).
//!
//! - The teacher is frozen: a copy in eval mode on the tape-free device (BatchNorm uses its
//!   running statistics and never updates them), not a parameter of the trained module, so the
//!   optimizer never sees it and checkpoints never contain it.
//! - The teacher's outputs are cached on the device per item key the batch provides
//!   ([`kd_core::DistillBatch::cache_keys`]: the data set's fingerprint, the item, and the
//!   flip variant for kd-data's images), within a byte budget — see [`TeacherCache`].
//! - Metrics: train/valid objective, CE and KD separately, accuracy, learning rate; fastai's
//!   table after each epoch; checkpoints after each epoch, resumed automatically.
//! - Several teachers and their ensembles ([`Teachers`]), several devices
//!   ([`DistillModel::on_devices`]), and deep mutual learning of several students
//!   ([`fit_mutual`], or [`MutualModel`] under Burn's `Learner`).

mod adam;
mod checkpoint;
mod devices;
mod distill;
mod divergence;
mod fit;
mod history;
mod lr_schedule;
mod metrics;
mod mutual;
mod mutual_loss;
mod one_cycle;
mod optimizer;
mod options;
mod parallel;
mod progress;
pub mod report;
mod rollout;
mod teacher;
mod teachers;

use std::path::PathBuf;

pub use adam::{Beta1, CycledAdamW, fastai_adam};
pub use checkpoint::load_trained_student;
pub use distill::{DistillModel, KdOutput, TappableModule};
pub use fit::{Evaluation, FitConfig, Fitted, evaluate, fit_one_cycle};
pub use history::{EpochRecord, History};
pub use lr_schedule::LrSchedule;
pub use metrics::{ObjectivePartMetric, ObjectivePartsInput};
pub use mutual::{MutualModel, fit_mutual, member_folder};
pub use one_cycle::OneCycle;
pub use optimizer::OptimizerConfig;
pub use options::DistillOptions;
pub use progress::Progress;
pub use rollout::Rollout;
pub use teacher::{FrozenTeacher, TeacherCache};
pub use teachers::Teachers;

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
    /// A checkpoint could not be written or read.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
