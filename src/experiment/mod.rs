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
pub mod lock;
mod model_section;
mod report;
mod run;
pub mod run_dir;
mod stats;
mod teacher;
mod validate;

pub use config::{
    DEFAULT_EXPERIMENT, DataSection, Experiment, LossSection, NamedTeacherSection, Origin,
    RunSection, TeacherSection, TermSection, TrainingSection,
};
pub(crate) use config::{default_output, read_experiment_file};
pub use data::load_images;
pub use eval::{EvalRow, RunDirScores, eval_table, evaluate_run_dir};
pub use fingerprint::Fingerprint;
pub use model_section::{ModelSection, Weights};
pub use report::{Redrawn, Report, RunSummary, redraw_run_dir, summary_table, write_run_dir};
pub use run::{RunOptions, run};
pub(crate) use stats::{mean_pm_std, mean_std};
pub(crate) use validate::slug;
pub use validate::{MAX_BATCH_SIZE, MAX_IMAGE_SIZE};
