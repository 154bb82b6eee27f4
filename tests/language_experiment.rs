//! Language-model experiment files (`kd run` on a file with a `[corpus]` section): teachers,
//! the student alone and distilled per teacher instance and seed, the report's comparisons,
//! resuming, and the settings refused before any work.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::kd_bin;
use kd::KdError;
use kd::experiment::RunOptions;
use kd::language::{LmExperiment, LmReport, LmRunResult, run_language_experiment};
use kd::train::report::{Reporter, SharedReporter};

/// `n` documents of a text with structure to learn: numbered lines of a few words.
fn write_corpus(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let words = ["the", "cat", "sat", "on", "a", "mat", "and", "saw", "dog"];
    for d in 0..n {
        let mut text = String::new();
        for line in 0..12 {
            let w: Vec<&str> = (0..5)
                .map(|k| words[(d + line * 3 + k * k) % words.len()])
                .collect();
            text += &format!("{line}: {}.\n", w.join(" "));
        }
        std::fs::write(dir.join(format!("doc{d:02}.txt")), text).unwrap();
    }
}

/// A small experiment on the corpus at `corpus`: two teacher instances, two student seeds, a
/// run alone, one distilled on the corpus, one on its own samples. `extra` is appended.
fn tiny(corpus: &Path, extra: &str) -> String {
    format!(
        r#"
[corpus]
source = "{}"
window = 16
valid_fraction = 0.25

[teacher]
width = 16
blocks = 1
heads = 2
epochs = 1
lr = 1e-2
seeds = [0, 1]

[student]
width = 8
blocks = 1
heads = 1

[training]
epochs = 1
lr = 1e-2
batch_size = 8
seeds = [0, 1]
backend = "flex"

[[runs]]
name = "alone"

[[runs]]
name = "JSD"
loss = {{ kind = "jsd", beta = 0.5 }}

[[runs]]
name = "on-policy"
loss = {{ kind = "reverse_kl" }}
on_policy = {{ lambda = 1.0, prompt = 4, new_tokens = 4 }}

[samples]
prompt = "0: the "
tokens = 8
{extra}"#,
        corpus.display()
    )
}

/// Counts the trainings that resumed after a finished epoch.
#[derive(Default, Clone)]
struct Resumed(Arc<Mutex<Vec<String>>>);

impl Reporter for Resumed {
    fn resumed(&mut self, run: &str, _epoch: usize) {
        self.0.lock().unwrap().push(run.to_string());
    }
}

fn options(out: &Path, reporter: SharedReporter) -> RunOptions {
    RunOptions {
        output: Some(out.to_path_buf()),
        reporter,
        ..RunOptions::default()
    }
}

fn config_error<T: std::fmt::Debug>(result: Result<T, KdError>) -> String {
    match result {
        Err(e) if e.exit_code() == 2 => e.to_string(),
        other => panic!("expected a configuration error (exit code 2), got {other:?}"),
    }
}

/// The `(teacher seed, seed)` a training's name gives, e.g. `JSD (teacher 1, seed 0)`.
fn seeds_of(training: &str) -> (Option<u64>, u64) {
    let inner = training.rsplit_once('(').unwrap().1.trim_end_matches(')');
    let number = |part: &str| part.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    match inner.split_once(", ") {
        Some((teacher, seed)) => (Some(number(teacher)), number(seed)),
        None => (None, number(inner)),
    }
}

/// The same rows, figures equal up to the last digit JSON keeps.
fn assert_same(a: &[LmRunResult], b: &[LmRunResult]) {
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        assert_eq!((&a.name, &a.trainings), (&b.name, &b.trainings));
        for (x, y) in [
            (&a.bits, &b.bits),
            (&a.vs_alone, &b.vs_alone),
            (&a.gap_closed, &b.gap_closed),
        ] {
            assert_eq!(x.len(), y.len(), "{}", a.name);
            assert!(
                x.iter().zip(y).all(|(x, y)| (x - y).abs() < 1e-12),
                "{}: {x:?} vs {y:?}",
                a.name
            );
        }
    }
}

#[test]
fn a_language_model_experiment_compares_every_run_per_seed_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus, 8);
    let exp = LmExperiment::from_toml(&tiny(&corpus, ""), "tiny.toml").unwrap();
    let out = tmp.path().join("run");
    let report = run_language_experiment(&exp, &options(&out, SharedReporter::default())).unwrap();

    // Rows: the teachers, then each run; the student alone once per seed, the distilled runs
    // once per teacher instance and seed.
    let rows: Vec<(&str, usize)> = report
        .summary
        .iter()
        .map(|r| (r.name.as_str(), r.bits.len()))
        .collect();
    assert_eq!(
        rows,
        [("teacher", 2), ("alone", 2), ("JSD", 4), ("on-policy", 4)]
    );
    assert_eq!(report.runs.len(), 10);
    // Every random source varies: two teacher instances and two student seeds differ.
    let teacher = &report.summary[0];
    assert_ne!(teacher.bits[0], teacher.bits[1]);
    assert_ne!(report.summary[1].bits[0], report.summary[1].bits[1]);
    // Bits are the final validation cross-entropy in nats over ln 2.
    for (history, bits) in report.teachers.iter().zip(&teacher.bits) {
        let nats = history.epochs.last().unwrap().valid_ce;
        assert!((bits * std::f64::consts::LN_2 - nats).abs() < 1e-12);
    }
    // Each distilled training is compared with the student alone of its own seed, and the gap
    // it closed is measured to its own teacher: paired here by the trainings' names.
    let by_name = |name: &str| {
        report
            .summary
            .iter()
            .flat_map(|r| r.trainings.iter().zip(&r.bits))
            .find(|(t, _)| t.as_str() == name)
            .map(|(_, &b)| b)
            .unwrap()
    };
    let alone = &report.summary[1];
    assert!(
        alone.vs_alone.iter().all(|&v| v == 0.0),
        "{:?}",
        alone.vs_alone
    );
    for row in &report.summary[2..] {
        assert_eq!(row.vs_alone.len(), 4);
        for (i, training) in row.trainings.iter().enumerate() {
            let (Some(t), seed) = seeds_of(training) else {
                panic!("{training} reads no teacher")
            };
            let alone = by_name(&format!("alone (seed {seed})"));
            let teacher = by_name(&format!("teacher (seed {t})"));
            assert_eq!(row.vs_alone[i], row.bits[i] - alone, "{training}");
            let closed = (alone - row.bits[i]) / (alone - teacher);
            assert!((row.gap_closed[i] - closed).abs() < 1e-12, "{training}");
        }
    }
    // The run directory: the report names every run and holds samples; metrics.json is the
    // report.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "bits per byte",
        "JSD",
        "on-policy",
        "## Samples",
        "teacher (seed 0)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle}:\n{md}");
    }
    assert!(out.join("curves.png").is_file());
    let json = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    let written: LmReport = serde_json::from_str(&json).unwrap();
    assert_same(&written.summary, &report.summary);
    assert_eq!(
        written.samples.len(),
        4,
        "the first teacher and each run write"
    );

    // A finished run is not redone without --force.
    let e = run_language_experiment(&exp, &options(&out, SharedReporter::default())).unwrap_err();
    assert!(matches!(e, KdError::Exists(_)), "{e}");

    // Unfinished (the report not yet written): every teacher and student resumes after its
    // finished epoch, and the report is the same.
    std::fs::remove_file(out.join("report.md")).unwrap();
    let resumed = Resumed::default();
    let again = run_language_experiment(&exp, &options(&out, SharedReporter::new(resumed.clone())))
        .unwrap();
    assert_eq!(
        resumed.0.lock().unwrap().len(),
        12,
        "2 teachers and 10 students"
    );
    assert_same(&again.summary, &report.summary);

    // Another teacher instance added to the study: the others' checkpoints still resume.
    std::fs::remove_file(out.join("report.md")).unwrap();
    let mut more = exp.clone();
    more.teacher.seeds.push(2);
    let resumed = Resumed::default();
    run_language_experiment(&more, &options(&out, SharedReporter::new(resumed.clone()))).unwrap();
    assert_eq!(
        resumed.0.lock().unwrap().len(),
        12,
        "the first 2 teachers and 10 students"
    );

    // Other settings for the same checkpoints are refused, naming what differs.
    std::fs::remove_file(out.join("report.md")).unwrap();
    let mut changed = exp.clone();
    changed.training.lr = 5e-3;
    let e = config_error(run_language_experiment(
        &changed,
        &options(&out, SharedReporter::default()),
    ));
    assert!(e.contains("training") && e.contains("--force"), "{e}");
}

#[test]
fn an_untrained_model_reads_about_eight_bits_per_byte() {
    // A model that has not learned predicts each of the 256 byte values about equally: about
    // log2(256) = 8 bits per byte. One that has learned the corpus needs far fewer.
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus, 8);
    let text = tiny(&corpus, "").replace("lr = 1e-2\nseeds = [0, 1]", "lr = 1e-9\nseeds = [0]");
    let exp = LmExperiment::from_toml(&text, "untrained.toml").unwrap();
    let report = run_language_experiment(
        &exp,
        &options(&tmp.path().join("a"), SharedReporter::default()),
    )
    .unwrap();
    let untrained = report.summary[0].mean;
    assert!((7.5..9.0).contains(&untrained), "{untrained} bits per byte");
    let text = tiny(&corpus, "").replace(
        "epochs = 1\nlr = 1e-2\nseeds = [0, 1]",
        "epochs = 6\nlr = 1e-2\nseeds = [0]",
    );
    let exp = LmExperiment::from_toml(&text, "trained.toml").unwrap();
    let report = run_language_experiment(
        &exp,
        &options(&tmp.path().join("b"), SharedReporter::default()),
    )
    .unwrap();
    let trained = report.summary[0].mean;
    assert!(
        trained < untrained - 3.0,
        "{trained} vs {untrained} bits per byte"
    );
}

#[test]
fn language_model_settings_are_refused_before_any_work_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus, 4);
    let base = tiny(&corpus, "");
    let refused = |text: String| config_error(LmExperiment::from_toml(&text, "lm.toml"));

    let e = refused(base.replace("window = 16", "window = 16\nwindw = 3"));
    assert!(e.contains("lm.toml") && e.contains("windw"), "{e}");
    let e = refused(base.replace(
        "{ kind = \"jsd\", beta = 0.5 }",
        "{ kind = \"fit_net\", pairs = [{ student = \"blocks.0\", teacher = \"blocks.0\" }] }",
    ));
    assert!(e.contains("runs[1]") && e.contains("layer pairs"), "{e}");
    let e = refused(base.replace("beta = 0.5", "beta = 1.5"));
    assert!(e.contains("runs[1]") && e.contains("beta"), "{e}");
    let e = refused(base.replace("loss = { kind = \"reverse_kl\" }\n", ""));
    assert!(
        e.contains("runs[2]") && e.contains("on_policy") && e.contains("add a loss"),
        "{e}"
    );
    let e = refused(base.replace("lambda = 1.0", "lambda = 2.0"));
    assert!(e.contains("runs[2]") && e.contains("lambda"), "{e}");
    let e = refused(base.replace("lambda = 1.0", "lambda = 1.0, warm_up = 1.0"));
    assert!(e.contains("runs[2]") && e.contains("warm_up"), "{e}");
    let e = refused(base.replace("name = \"on-policy\"", "name = \"jsd\""));
    assert!(e.contains("`JSD` and `jsd`"), "{e}");
    let e = refused(base.replace("heads = 2", "heads = 3"));
    assert!(e.contains("teacher") && e.contains("heads 3"), "{e}");
    let e = refused(base.replace("seeds = [0, 1]\nbackend", "seeds = [1, 1]\nbackend"));
    assert!(e.contains("training.seeds") && e.contains("twice"), "{e}");
}

#[test]
fn a_corpus_kd_cannot_use_is_named_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |corpus: &Path, extra: &str| {
        let exp = LmExperiment::from_toml(&tiny(corpus, extra), "lm.toml").unwrap();
        let out = tmp.path().join("out");
        let e = run_language_experiment(&exp, &options(&out, SharedReporter::default()))
            .unwrap_err()
            .to_string();
        assert!(
            !out.exists(),
            "{} was created for a refused run",
            out.display()
        );
        e
    };
    // Characters need UTF-8: the file and the byte are named.
    let latin1 = tmp.path().join("latin1");
    write_corpus(&latin1, 4);
    std::fs::write(latin1.join("doc02.txt"), b"caf\xe9 au lait\n".repeat(20)).unwrap();
    let text = tiny(&latin1, "").replace("window = 16", "window = 16\nvocabulary = \"chars\"");
    let exp = LmExperiment::from_toml(&text, "lm.toml").unwrap();
    let e = run_language_experiment(
        &exp,
        &options(&tmp.path().join("out"), SharedReporter::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("doc02.txt") && e.contains("byte 3"), "{e}");
    // One document cannot be split by document.
    let single = tmp.path().join("single.txt");
    std::fs::write(&single, "one document only\n".repeat(10)).unwrap();
    let e = run(&single, "");
    assert!(
        e.contains("single.txt") && e.contains("two documents"),
        "{e}"
    );
    // A missing corpus is named.
    let e = run(&tmp.path().join("nowhere"), "");
    assert!(e.contains("nowhere"), "{e}");
}

#[test]
fn kd_run_runs_a_language_model_file_and_refuses_options_it_cannot_honour() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus, 6);
    let file = tmp.path().join("lm.toml");
    let text = tiny(&corpus, "")
        .replace("seeds = [0, 1]\n\n[student]", "seeds = [0]\n\n[student]")
        .replace("seeds = [0, 1]\nbackend", "seeds = [0]\nbackend");
    std::fs::write(&file, text).unwrap();
    let out: PathBuf = tmp.path().join("run");

    let refused = kd_bin()
        .args(["run", file.to_str().unwrap(), "--devices", "flex,flex"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--devices") && stderr.contains("--backend"),
        "{stderr}"
    );

    let ran = kd_bin()
        .args([
            "run",
            file.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        stdout.contains("bits per byte") && stdout.contains("on-policy"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(out.join("report.md")).unwrap();

    // `kd report` redraws a language-model run's report and curves from its metrics.json.
    std::fs::remove_file(out.join("report.md")).unwrap();
    std::fs::remove_file(out.join("curves.png")).unwrap();
    let redrawn = kd_bin()
        .args(["report", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&redrawn.stdout);
    assert!(
        redrawn.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&redrawn.stderr)
    );
    assert!(stdout.contains("on-policy"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(out.join("report.md")).unwrap(),
        written
    );
    assert!(out.join("curves.png").is_file());

    // `kd eval` scores image classifiers: on a language-model run it says so, and where the
    // models' scores are.
    let eval = kd_bin()
        .args(["eval", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(eval.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&eval.stderr);
    assert!(
        stderr.contains("language-model") && stderr.contains("report.md"),
        "{stderr}"
    );
}

#[test]
fn docs_language_models_lists_every_key_of_the_schema() {
    // A file that sets every key, so that serialising it back lists them all (and any key added
    // later with a default).
    let tmp = tempfile::tempdir().unwrap();
    let every = tiny(tmp.path(), "")
        .replace("window = 16", "window = 16\nseparator = \"---\"\nlimit_bytes = 1000\nsplit_seed = 1\nvocabulary = \"bytes\"")
        .replace("prompt = 4, new_tokens = 4", "prompt = 4, new_tokens = 4, temperature = 1.0, top_k = 3, sequence_level = false")
        .replace("tokens = 8", "tokens = 8\ntemperature = 0.8\ntop_k = 0")
        .replace("loss = { kind = \"jsd\", beta = 0.5 }", "loss = { kind = \"jsd\", beta = 0.5 }\nweight = 0.5");
    let exp = LmExperiment::from_toml(&every, "every.toml").unwrap();
    let written = toml::Table::try_from(&exp).unwrap();
    let reference = include_str!("../docs/language-models.md");
    let mut missing = Vec::new();
    let mut check = |key: &str| {
        let named = [
            format!("`{key}`"),
            format!("`[{key}]`"),
            format!("`[[{key}]]`"),
        ];
        if !named.iter().any(|n| reference.contains(n.as_str())) {
            missing.push(key.to_string());
        }
    };
    fn walk(value: &toml::Value, check: &mut dyn FnMut(&str)) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    if k != "kind" && k != "beta" {
                        check(k);
                        walk(v, check);
                    }
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, check)),
            _ => {}
        }
    }
    walk(&toml::Value::Table(written), &mut check);
    assert!(
        missing.is_empty(),
        "keys missing from docs/language-models.md: {missing:?}"
    );
}

#[test]
fn a_corpus_edited_before_a_resume_is_refused_and_no_run_is_written_into_it() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus, 8);
    let exp = LmExperiment::from_toml(&tiny(&corpus, ""), "lm.toml").unwrap();
    let out = tmp.path().join("out");
    run_language_experiment(&exp, &options(&out, SharedReporter::default())).unwrap();
    // Killed at the end, then one document edited: same settings, other text.
    for file in ["report.md", "metrics.json", "curves.png"] {
        std::fs::remove_file(out.join(file)).unwrap();
    }
    std::fs::write(corpus.join("doc03.txt"), "an edited address\n".repeat(12)).unwrap();
    let e = config_error(run_language_experiment(
        &exp,
        &options(&out, SharedReporter::default()),
    ));
    assert!(e.contains("data content"), "{e}");

    let inside = corpus.join("runs");
    let e = config_error(run_language_experiment(
        &exp,
        &options(&inside, SharedReporter::default()),
    ));
    assert!(e.contains("inside the data folder"), "{e}");
    assert!(!inside.exists());
}
