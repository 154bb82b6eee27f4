//! Nothing lost, nothing silently wrong: what `--force` may remove, resuming only what the
//! current settings produced, settings checked before any work, partial `kd eval`, numeric
//! command-line arguments.

mod common;

use std::path::Path;

use common::{TinyRun, kd_bin, tiny_experiment};
use kd::KdError;
use kd::experiment::run_dir::MARKER;
use kd::experiment::{Experiment, Fingerprint, RunOptions, evaluate_run_dir, run};

fn config_error(result: Result<impl std::fmt::Debug, KdError>) -> String {
    match result {
        Err(e) if e.exit_code() == 2 => e.to_string(),
        other => panic!("expected a configuration error (exit code 2), got {other:?}"),
    }
}

fn parse(text: &str) -> Result<Experiment, KdError> {
    Experiment::from_toml(text, "test.toml")
}

#[test]
fn force_never_removes_what_kd_did_not_write() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    let opts = RunOptions {
        force: true,
        ..tiny.options()
    };
    let exp = tiny.experiment(1);

    // A user's directory: refused even under --force, whatever else is wrong or right.
    std::fs::create_dir_all(&out_dir).unwrap();
    let user_file = out_dir.join("notes.txt");
    std::fs::write(&user_file, "mine").unwrap();
    let mut bad_backend = exp.clone();
    bad_backend.training.backend = Some("tpu".into());
    let mut no_data = exp.clone();
    no_data.data.source = "/no/such/images".into();
    for attempt in [&bad_backend, &no_data, &exp] {
        let err = config_error(run(attempt, &opts));
        assert_eq!(
            std::fs::read_to_string(&user_file).unwrap(),
            "mine",
            "{err}"
        );
    }
    let err = config_error(run(&exp, &opts));
    assert!(err.contains("notes.txt") && err.contains(MARKER), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 1);

    // kd's own run directory with a user's file inside: --force replaces only kd's files,
    // and only once every check has passed.
    std::fs::remove_file(&user_file).unwrap();
    run(&exp, &tiny.options()).unwrap();
    std::fs::write(&user_file, "mine").unwrap();
    let report = out_dir.join("report.md");
    let finished = std::fs::read(&report).unwrap();
    assert!(matches!(run(&bad_backend, &opts), Err(KdError::Backend(_))));
    assert!(run(&no_data, &opts).is_err());
    assert_eq!(
        std::fs::read(&report).unwrap(),
        finished,
        "failed attempts keep the run"
    );
    run(&exp, &opts).unwrap();
    assert!(report.is_file());
    assert_eq!(std::fs::read_to_string(&user_file).unwrap(), "mine");
}

#[test]
fn the_binary_refuses_an_output_directory_holding_the_experiment_file() {
    let tiny = TinyRun::new();
    let dir = tiny.out.path();
    let file = dir.join("my.toml");
    std::fs::write(&file, tiny_experiment(tiny.images.path(), &tiny.out_dir())).unwrap();
    let out = kd_bin()
        .args(["run"])
        .arg(&file)
        .arg("--output")
        .arg(dir)
        .arg("--force")
        .arg("--cache-dir")
        .arg(tiny.cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("my.toml"), "{stderr}");
    assert!(file.is_file(), "the experiment file survives");
}

#[test]
fn runs_that_would_share_a_checkpoint_folder_are_config_errors() {
    let base = tiny_experiment(Path::new("/tmp/none"), Path::new("/tmp/out"));
    let clash = base.replace("name = \"Attention\"", "name = \"Student-Alone\"");
    let err = config_error(parse(&clash));
    assert!(
        err.contains("student alone") && err.contains("Student-Alone"),
        "{err}"
    );
    let twice = base.replace("epochs = 1\nbackend", "epochs = 1\nseeds = [0, 0]\nbackend");
    let err = config_error(parse(&twice));
    assert!(err.contains("seed 0 twice"), "{err}");
    // --seeds overrides after parsing: run() checks again before any work.
    let mut exp = parse(&base).unwrap();
    exp.training.seeds = vec![3, 3];
    assert!(config_error(run(&exp, &RunOptions::default())).contains("seed 3"));
}

#[test]
fn numbers_out_of_range_are_config_errors_naming_key_and_value() {
    let base = tiny_experiment(Path::new("/tmp/none"), Path::new("/tmp/out"));
    for (from, to, names) in [
        (
            "epochs = 1\nbackend",
            "epochs = 0\nbackend",
            "training.epochs = 0",
        ),
        (
            "batch_size = 8",
            "batch_size = 8\nvalid_pct = 0.0",
            "data.valid_pct = 0",
        ),
        (
            "batch_size = 8",
            "batch_size = 8\nvalid_pct = 1.5",
            "data.valid_pct = 1.5",
        ),
        ("batch_size = 8", "batch_size = 0", "data.batch_size = 0"),
        ("size = 16", "size = 100000", "data.size = 100000"),
        (
            "head = \"fastai\"\nepochs = 1",
            "head = \"fastai\"\nepochs = 0",
            "teacher.epochs = 0",
        ),
        (
            "epochs = 1\nbackend",
            "epochs = 1\nlr = -0.1\nbackend",
            "training.lr = -0.1",
        ),
        ("weight = 0.9", "weight = 1.5", "mix.weight = 1.5"),
    ] {
        assert!(base.contains(from), "{from}");
        let err = config_error(parse(&base.replacen(from, to, 1)));
        assert!(err.contains(names), "{names}: {err}");
    }
}

#[test]
fn every_runs_layers_are_resolved_before_the_teacher_trains() {
    let tiny = TinyRun::new();
    let text = tiny_experiment(tiny.images.path(), &tiny.out_dir()).replace(
        "pairs = [{ student = \"layer1\", teacher = \"0.4\" }]",
        "pairs = []",
    );
    let exp = parse(&text).unwrap();
    let err = config_error(run(&exp, &tiny.options()));
    assert!(err.contains("Attention"), "{err}");
    assert!(!tiny.out_dir().exists(), "nothing written");
    assert!(
        !tiny.cache.path().join("teachers").exists(),
        "no teacher trained"
    );
}

/// A killed run: checkpoints written, report not yet.
fn unfinish(out_dir: &Path) {
    for file in ["report.md", "metrics.json", "curves.png"] {
        std::fs::remove_file(out_dir.join(file)).unwrap();
    }
}

#[test]
fn resuming_under_other_settings_is_refused_naming_what_differs() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    let exp = tiny.experiment(1);
    let first = run(&exp, &tiny.options()).unwrap();
    unfinish(&out_dir);

    let mut changed = exp.clone();
    changed.training.lr = 0.01;
    if let kd::core::Mix::Lerp { weight, .. } = &mut changed.runs[1].mix {
        *weight = 0.5;
    }
    let err = config_error(run(&changed, &tiny.options()));
    assert!(err.contains("training") && err.contains("--force"), "{err}");
    // Nothing was replaced by the refused attempt; the same settings resume and finish.
    let resumed = run(&exp, &tiny.options()).unwrap();
    for (a, b) in resumed.runs.iter().zip(&first.runs) {
        assert_eq!(a.final_accuracy(), b.final_accuracy(), "{}", a.name);
    }
    // --force starts afresh under the new settings.
    unfinish(&out_dir);
    let forced = RunOptions {
        force: true,
        ..tiny.options()
    };
    run(&changed, &forced).unwrap();
    let saved = Experiment::from_file(&out_dir.join("config.toml")).unwrap();
    assert_eq!(saved.training.lr, 0.01);
}

#[test]
fn the_teacher_is_identified_by_its_weights_content_not_their_path() {
    let tiny = TinyRun::new();
    let weights = tiny.out.path().join("teacher.safetensors");
    std::fs::write(&weights, b"first weights").unwrap();
    let text = tiny_experiment(tiny.images.path(), &tiny.out_dir()).replace(
        "head = \"fastai\"\nepochs = 1",
        &format!(
            "head = \"fastai\"\nepochs = 1\nweights = {{ file = \"{}\" }}",
            weights.display()
        ),
    );
    let exp = parse(&text).unwrap();
    let a = Fingerprint::teacher(&exp, exp.teacher.as_ref().unwrap()).unwrap();
    std::fs::write(&weights, b"other weights").unwrap();
    let b = Fingerprint::teacher(&exp, exp.teacher.as_ref().unwrap()).unwrap();
    assert_ne!(a.digest(), b.digest());
    std::fs::write(&weights, b"first weights").unwrap();
    assert_eq!(
        Fingerprint::teacher(&exp, exp.teacher.as_ref().unwrap()).unwrap(),
        a
    );
}

#[test]
fn a_teacher_is_cached_by_the_images_content_and_a_damaged_entry_is_never_used() {
    use kd::train::report::SharedReporter;
    let tiny = TinyRun::new();
    let exp = tiny.experiment(1);
    let said = common::Said::default();
    let options = |force| RunOptions {
        force,
        reporter: SharedReporter::new(said.clone()),
        ..tiny.options()
    };
    let first = run(&exp, &options(false)).unwrap();
    // The cats' and the dogs' files swapped: the same settings, other images.
    let folder = tiny.images.path();
    for i in 0..20 {
        let (cat, dog) = (
            folder.join(format!("Cat_{i}.png")),
            folder.join(format!("dog_{i}.png")),
        );
        let swap = folder.join("swap.png");
        std::fs::rename(&cat, &swap).unwrap();
        std::fs::rename(&dog, &cat).unwrap();
        std::fs::rename(&swap, &dog).unwrap();
    }
    said.0.lock().unwrap().clear();
    let second = run(&exp, &options(true)).unwrap();
    let text = said.text();
    assert!(!text.contains("reusing"), "{text}");
    assert!(
        text.contains("other images"),
        "says why it fine-tunes anew: {text}"
    );
    let entries = |ext: &str| {
        std::fs::read_dir(tiny.cache.path().join("teachers"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect::<Vec<_>>()
    };
    assert_eq!(entries("bpk").len(), 2, "one cached teacher per content");
    assert_eq!(
        second.teachers[0].epochs.len(),
        first.teachers[0].epochs.len()
    );

    // The same images again: the cached teacher is reused...
    said.0.lock().unwrap().clear();
    run(&exp, &options(true)).unwrap();
    assert!(said.text().contains("reusing"), "{}", said.text());
    // ...unless its weights were damaged: then it is fine-tuned anew, saying so.
    for bpk in entries("bpk") {
        let len = std::fs::metadata(&bpk).unwrap().len() as usize;
        std::fs::write(&bpk, vec![0u8; len]).unwrap();
    }
    said.0.lock().unwrap().clear();
    let again = run(&exp, &options(true)).unwrap();
    let text = said.text();
    assert!(!text.contains("reusing"), "{text}");
    assert!(
        text.contains("is not used") && text.contains("changed"),
        "{text}"
    );
    assert_eq!(again.teachers[0].epochs.len(), 1);
    // An edited history is no accuracy either.
    for json in entries("json") {
        let mut history: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        history["epochs"][0]["accuracy"] = serde_json::json!(0.125);
        std::fs::write(&json, history.to_string()).unwrap();
    }
    said.0.lock().unwrap().clear();
    run(&exp, &options(true)).unwrap();
    assert!(said.text().contains("is not used"), "{}", said.text());
}

#[test]
fn resuming_on_other_images_or_writing_into_the_data_is_refused() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    let exp = tiny.experiment(1);
    run(&exp, &tiny.options()).unwrap();
    unfinish(&out_dir);
    // One image changed between the kill and the rerun.
    common::tiny_images(tiny.images.path());
    image::RgbImage::new(16, 16)
        .save(tiny.images.path().join("Cat_0.png"))
        .unwrap();
    let err = config_error(run(&exp, &tiny.options()));
    assert!(err.contains("data content"), "{err}");

    let inside = RunOptions {
        output: Some(tiny.images.path().join("runs").join("mine")),
        ..tiny.options()
    };
    let err = config_error(run(&exp, &inside));
    assert!(err.contains("inside the data folder"), "{err}");
    assert!(!tiny.images.path().join("runs").exists());
}

#[test]
fn the_teacher_resumes_from_its_checkpoint_when_the_cache_is_unwritable() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    // A file where the teacher cache's folder should be: nothing can be written there.
    std::fs::write(tiny.cache.path().join("teachers"), "not a folder").unwrap();
    let exp = tiny.experiment(2);
    let first = run(&exp, &tiny.options()).unwrap();
    assert_eq!(first.teachers[0].epochs.len(), 2);
    let kept = out_dir.join("teacher-checkpoints/epoch-001/model.bpk");
    assert!(
        kept.is_file(),
        "the fine-tuned teacher stays in the run directory"
    );

    // Killed before the end: the teacher is not fine-tuned again but loaded from its
    // checkpoint, so the students see the same teacher and resume to the same results.
    unfinish(&out_dir);
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    let again = run(&exp, &tiny.options()).unwrap();
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(again.teachers[0].epochs.len(), 2);
    for (a, b) in again.teachers[0]
        .epochs
        .iter()
        .zip(&first.teachers[0].epochs)
    {
        assert_eq!(a.accuracy, b.accuracy);
        assert!((a.train_loss - b.train_loss).abs() <= 1e-12 * b.train_loss.abs());
    }
}

#[test]
fn eval_scores_every_student_it_can_and_names_the_others() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    run(&tiny.experiment(1), &tiny.options()).unwrap();
    std::fs::remove_dir_all(out_dir.join("checkpoints/student-alone")).unwrap();
    let cache = Some(tiny.cache.path().to_path_buf());
    let scores = evaluate_run_dir(
        &kd::registry::Registry::builtin(),
        &out_dir,
        None,
        None,
        cache,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(scores.rows.len(), 1);
    assert_eq!(scores.rows[0].run, "Attention");
    assert_eq!(scores.unscored.len(), 1);
    assert_eq!(scores.unscored[0].0, "student alone");

    let out = kd_bin()
        .arg("eval")
        .arg(&out_dir)
        .arg("--cache-dir")
        .arg(tiny.cache.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("| Attention | 1 |"), "{stdout}");
    assert!(stderr.contains("student alone"), "{stderr}");
}

#[test]
fn numeric_arguments_out_of_range_are_usage_errors() {
    for args in [
        &["layers", "resnet18", "--size", "0"][..],
        &["layers", "resnet18", "--size", "100000"],
        &[
            "match-layers",
            "--student",
            "resnet18",
            "--teacher",
            "resnet34",
            "--size",
            "0",
        ],
        // A TOML integer holds at most 2⁶³ − 1: the resolved config.toml could not be written.
        &["run", "no-such.toml", "--seeds", "18446744073709551615"],
    ] {
        let out = kd_bin().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("expected") || stderr.contains("range"),
            "{stderr}"
        );
    }
}

#[test]
fn staging_folders_of_killed_fetches_are_removed_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    // No process has this id (it is above Linux's pid_max); ours is running.
    let dead = dir.path().join(".tmp-4194999-ThreadId2-1");
    let live = dir
        .path()
        .join(format!(".tmp-{}-ThreadId2-1", std::process::id()));
    let other = dir.path().join("keep.tgz");
    for d in [&dead, &live] {
        std::fs::create_dir_all(d.join("images")).unwrap();
    }
    std::fs::write(&other, "x").unwrap();
    kd::data::npm::remove_stale_staging(dir.path());
    if Path::new("/proc").is_dir() {
        assert!(!dead.exists());
    }
    assert!(live.exists() && other.exists());
}

#[test]
fn a_run_directory_has_one_writer_and_a_dead_writers_lock_is_taken_over() {
    use kd::experiment::lock::LOCK;
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    let exp = tiny.experiment(1);
    // A live holder (this very process): refused, naming it, and nothing else written.
    std::fs::create_dir_all(&out_dir).unwrap();
    let me = std::process::id();
    std::fs::write(out_dir.join(LOCK), me.to_string()).unwrap();
    let err = config_error(run(&exp, &tiny.options()));
    assert!(err.contains(&format!("pid {me}")), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [LOCK], "the holder's lock stays, nothing is added");
    // A holder that has exited (a run killed with -9): its lock is taken over, the run
    // finishes and releases it.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(out_dir.join(LOCK), dead.to_string()).unwrap();
    run(&exp, &tiny.options()).unwrap();
    assert!(out_dir.join("report.md").is_file());
    assert!(!out_dir.join(LOCK).exists(), "released when the run ends");

    // `kd report` redraws kd's own run directory, and refuses a folder of the user's that
    // merely holds a copy of its metrics.json, touching nothing there.
    kd::experiment::redraw_run_dir(&out_dir).unwrap();
    let user = tiny.out.path().join("mine");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::copy(out_dir.join("metrics.json"), user.join("metrics.json")).unwrap();
    std::fs::write(user.join("report.md"), "my notes").unwrap();
    let err = config_error(kd::experiment::redraw_run_dir(&user));
    assert!(err.contains(MARKER), "{err}");
    assert_eq!(
        std::fs::read_to_string(user.join("report.md")).unwrap(),
        "my notes"
    );
    assert!(!user.join("curves.png").exists());
}

#[test]
fn kd_report_reads_metrics_json_and_a_failed_redraw_leaves_no_staging_file() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    run(&tiny.experiment(1), &tiny.options()).unwrap();
    // The results as another tool (or an older kd) wrote them: compact JSON.
    let metrics = out_dir.join("metrics.json");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let compact = serde_json::to_string(&value).unwrap();
    std::fs::write(&metrics, &compact).unwrap();
    kd::experiment::redraw_run_dir(&out_dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(&metrics).unwrap(),
        compact,
        "kd report rewrote the results it only had to read"
    );
    // A redraw that cannot put its figure in place fails, naming it, and leaves the results
    // and no staging file behind.
    std::fs::remove_file(out_dir.join("curves.png")).unwrap();
    std::fs::create_dir_all(out_dir.join("curves.png").join("mine")).unwrap();
    let err = kd::experiment::redraw_run_dir(&out_dir).unwrap_err();
    assert!(err.to_string().contains("curves.png"), "{err}");
    assert_eq!(std::fs::read_to_string(&metrics).unwrap(), compact);
    let staged: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("tmp"))
        .collect();
    assert!(staged.is_empty(), "staging files left: {staged:?}");
}

#[test]
fn a_split_without_validation_images_is_refused_before_the_teacher_trains() {
    let tiny = TinyRun::new();
    let mut exp = tiny.experiment(1);
    // 40 images at 1 %: ⌊0.4⌋ = 0 validation images.
    exp.data.valid_pct = 0.01;
    let err = config_error(run(&exp, &tiny.options()));
    assert!(
        err.contains("valid_pct") && err.contains("40 images"),
        "{err}"
    );
    assert!(!tiny.out_dir().join("teacher-checkpoints").exists());
    assert!(!tiny.out_dir().exists(), "nothing written");
}

#[test]
fn a_batch_larger_than_the_training_split_is_refused_before_the_teacher_trains() {
    let tiny = TinyRun::new();
    let mut exp = tiny.experiment(1);
    // 40 images, 8 of them for validation: 32 to train on.
    exp.data.batch_size = 33;
    let err = config_error(run(&exp, &tiny.options()));
    assert!(
        err.contains("data.batch_size") && err.contains("32 training images"),
        "{err}"
    );
    assert!(!tiny.out_dir().exists(), "nothing written");
}

#[test]
fn a_run_started_on_several_devices_does_not_resume_on_one() {
    let tiny = TinyRun::new();
    let mut two = tiny.experiment(1);
    two.training.backend = None;
    two.training.devices = vec!["flex".into(), "flex".into()];
    run(&two, &tiny.options()).unwrap();
    unfinish(&tiny.out_dir());
    // The same file on one device: BatchNorm would see other batches than the checkpoints'.
    let one = tiny.experiment(1);
    let err = config_error(run(&one, &tiny.options()));
    assert!(err.contains("devices"), "{err}");
    // On the same two devices it resumes.
    run(&two, &tiny.options()).unwrap();
}

#[test]
fn a_checkpoint_changed_after_it_was_written_is_refused_by_name() {
    let tiny = TinyRun::new();
    let out_dir = tiny.out_dir();
    run(&tiny.experiment(1), &tiny.options()).unwrap();
    // Bytes overwritten inside the student's weights, the file's size unchanged.
    let model = out_dir.join("checkpoints/attention/epoch-000/model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b = b.wrapping_add(101);
    }
    std::fs::write(&model, bytes).unwrap();
    let scores = evaluate_run_dir(
        &kd::registry::Registry::builtin(),
        &out_dir,
        None,
        None,
        Some(tiny.cache.path().to_path_buf()),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(scores.rows.len(), 1, "the intact student is still scored");
    let (name, reason) = &scores.unscored[0];
    assert_eq!(name, "Attention");
    assert!(
        reason.contains("model.bpk") && reason.contains("differs"),
        "{reason}"
    );
    // Resuming from it is refused too.
    unfinish(&out_dir);
    let err = run(&tiny.experiment(1), &tiny.options())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.bpk"), "{err}");
}
