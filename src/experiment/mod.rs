//! Experiment files (TOML) and the run that reproduces fasterai's distillation tutorial:
//! fine-tune a teacher, then train the student alone and with each distillation objective.
//!
//! One file per job: [`config`](Experiment) (the schema), `validate` (settings checked before
//! any work), `run_dir` (what kd may write or remove), `fingerprint` (what produced a
//! checkpoint), `data`, `teacher`, `run`, `report` and `eval`.

mod config;
mod data;
mod eval;
mod fingerprint;
mod report;
mod run;
pub mod run_dir;
mod teacher;
mod validate;

use std::path::{Path, PathBuf};

pub use config::{
    DEFAULT_EXPERIMENT, DataSection, Experiment, RunSection, TeacherSection, TrainingSection,
    Weights,
};
pub use data::load_images;
pub use eval::{EvalRow, RunDirScores, eval_table, evaluate_run_dir};
pub use fingerprint::Fingerprint;
pub use report::{Report, RunSummary, mean_curves, summary_table, write_run_dir};
pub use run::run;
pub use validate::{MAX_BATCH_SIZE, MAX_IMAGE_SIZE};

use crate::KdError;

/// How to run an experiment.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace kd's own files in an existing run directory (finished or not) and start afresh.
    pub force: bool,
    /// Fine-tune the teacher even if a cached one matches.
    pub retrain_teacher: bool,
    /// The cache directory (data, npm tarballs, teachers).
    pub cache_dir: Option<PathBuf>,
    /// Override the experiment's output directory.
    pub output: Option<PathBuf>,
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KdError + '_ {
    move |e| KdError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}
