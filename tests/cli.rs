//! Experiment files, the run directory, `--force`, and the `kd` binary's errors and exit codes.

mod common;

use std::path::Path;

use common::{TinyRun, config_error, kd_bin, tiny_experiment};
use kd::KdError;
use kd::experiment::{DEFAULT_EXPERIMENT, Experiment, RunOptions, evaluate_run_dir, run};
use kd::registry::Registry;

#[test]
fn the_shipped_main_job_parses() {
    let exp = Experiment::from_toml(DEFAULT_EXPERIMENT, "examples/pets_kd.toml").unwrap();
    assert_eq!(exp.runs.len(), 5);
    assert_eq!(exp.data.size, 64);
    assert_eq!(exp.training.epochs, 10);
    let highlighted: Vec<_> = exp.runs.iter().filter(|r| r.highlight).collect();
    assert_eq!(highlighted.len(), 1);
    assert_eq!(highlighted[0].flip, Some(true));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let from_file = Experiment::from_file(&examples.join("pets_kd.toml")).unwrap();
    assert_eq!(from_file, exp);
    // The search behind the highlighted run parses too.
    for entry in std::fs::read_dir(examples.join("search")).unwrap() {
        let path = entry.unwrap().path();
        let search = Experiment::from_file(&path).unwrap();
        assert_eq!(search.training.seeds, [0, 1, 2], "{}", path.display());
    }
    // So do the studies in docs/results.md, and their names resolve.
    for entry in std::fs::read_dir(examples.join("studies")).unwrap() {
        let path = entry.unwrap().path();
        let study = Experiment::from_file(&path).unwrap();
        study
            .check_names(&Registry::builtin(), &path.display().to_string())
            .unwrap();
    }
    // scripts/gpu-check.sh's short run parses and its names resolve.
    let gpu = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-quick.toml");
    let gpu = Experiment::from_file(&gpu).unwrap();
    gpu.check_names(&Registry::builtin(), "gpu-quick.toml")
        .unwrap();
}

#[test]
fn malformed_experiments_name_the_problem() {
    let base = tiny_experiment(Path::new("/tmp/none"), Path::new("/tmp/out"));
    let err = config_error(&base.replace("batch_size = 8", "batch_size = 8\nbatchsize = 3"));
    assert!(
        err.contains("batchsize") && err.contains("batch_size"),
        "{err}"
    );
    let err = config_error(&base.replace("size = 16", "size = \"big\""));
    assert!(err.contains("size") && err.contains("test.toml"), "{err}");
    let err = config_error(&base.replace("arch = \"resnet18\"\nhead", "arch = \"resnet19\"\nhead"));
    assert!(
        err.contains("resnet19") && err.contains("resnet18"),
        "{err}"
    );
    let err = config_error(&base.replace(
        "epochs = 1\n[student]",
        "epochs = 1\nweights = { file = \"/no/such/teacher.pth\" }\n[student]",
    ));
    assert!(err.contains("/no/such/teacher.pth"), "{err}");
    let err = config_error(&base.replace("kind = \"attention\"", "kind = \"atention\""));
    assert!(
        err.contains("atention") && err.contains("attention"),
        "{err}"
    );
    let err = config_error(&base.replace(
        "arch = \"resnet18\"\nhead = \"fastai\"",
        "arch = \"resnet18\"\nhead = \"fastai\"\nweights = \"imagenet-keras\"",
    ));
    assert!(err.contains("ResNet-50"), "{err}");
}

#[test]
fn a_run_writes_its_directory_and_refuses_to_overwrite_it() {
    let tiny = TinyRun::new();
    let (out_dir, cache) = (tiny.out_dir(), &tiny.cache);
    let exp = tiny.experiment(1);
    let opts = tiny.options();
    let report = run(&exp, &opts).unwrap();
    assert_eq!(report.runs.len(), 2);
    assert_eq!(report.summary[1].name, "Attention");
    for file in ["config.toml", "metrics.json", "report.md", "curves.png"] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }
    assert!(
        out_dir
            .join("checkpoints/attention/epoch-000/model.bpk")
            .is_file()
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["runs"][1]["epochs"][0]["epoch"], 0);
    let report_md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(report_md.contains("| Attention |"), "{report_md}");
    let png = image::open(out_dir.join("curves.png")).unwrap();
    assert!(png.width() >= 1000);
    // The resolved config reads back as the same experiment.
    let resolved = Experiment::from_file(&out_dir.join("config.toml")).unwrap();
    assert_eq!(resolved, exp);
    // The fine-tuned teacher went to the cache (weights, history, their digests) and is
    // reused.
    assert_eq!(
        std::fs::read_dir(cache.path().join("teachers"))
            .unwrap()
            .count(),
        3
    );

    let before = std::fs::read(out_dir.join("metrics.json")).unwrap();
    let err = run(&exp, &opts).unwrap_err();
    assert!(matches!(err, KdError::Exists(_)), "{err}");
    assert!(err.to_string().contains("--force"));
    assert_eq!(
        std::fs::read(out_dir.join("metrics.json")).unwrap(),
        before,
        "nothing overwritten"
    );
    let teachers = cache.path().join("teachers");
    let written = |dir: &Path| -> Vec<std::time::SystemTime> {
        let mut times: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
            .collect();
        times.sort();
        times
    };
    let teacher_files = written(&teachers);
    let forced = run(
        &exp,
        &RunOptions {
            force: true,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        written(&teachers),
        teacher_files,
        "the cached teacher is reused, not rewritten"
    );
    // Its history comes back from JSON: serde_json's default float parser may be off by one
    // unit in the last place, so compare to 1e-12.
    for (a, b) in forced.teachers[0]
        .epochs
        .iter()
        .zip(&report.teachers[0].epochs)
    {
        assert!((a.train_loss - b.train_loss).abs() <= 1e-12 * b.train_loss.abs());
        assert_eq!(a.accuracy, b.accuracy);
    }
}

#[test]
fn eval_rescores_the_saved_students() {
    let tiny = TinyRun::new();
    let (out_dir, cache, images) = (tiny.out_dir(), &tiny.cache, &tiny.images);
    let report = run(&tiny.experiment(2), &tiny.options()).unwrap();
    let cache_dir = Some(cache.path().to_path_buf());

    // On the validation split, the reloaded students score what training measured last.
    let scores = evaluate_run_dir(
        &Registry::builtin(),
        &out_dir,
        None,
        None,
        cache_dir.clone(),
        &Default::default(),
    )
    .unwrap();
    assert!(scores.unscored.is_empty(), "{:?}", scores.unscored);
    let rows = scores.rows;
    assert_eq!(rows.len(), 2);
    for (row, history) in rows.iter().zip(&report.runs) {
        let last = history.epochs.last().unwrap();
        assert_eq!(row.run, history.name);
        assert_eq!((row.epochs, row.images), (2, 8));
        assert_eq!(row.accuracy, last.accuracy, "{}", row.run);
        assert!(
            (row.loss - last.valid_ce).abs() <= 1e-5 * last.valid_ce.abs().max(1.0),
            "{}: {} vs {}",
            row.run,
            row.loss,
            last.valid_ce
        );
    }

    // A folder of cats only (one class) is scored against the two trained classes.
    let cats = tempfile::tempdir().unwrap();
    for i in 0..5 {
        let name = format!("Cat_{i}.png");
        std::fs::copy(images.path().join(&name), cats.path().join(&name)).unwrap();
    }
    let output = kd_bin()
        .args(["eval", out_dir.to_str().unwrap(), "--data"])
        .arg(cats.path())
        .arg("--cache-dir")
        .arg(cache.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("| student alone | 2 | 5 |"), "{stdout}");
    assert!(stdout.contains("| Attention | 2 | 5 |"), "{stdout}");

    // Not a run directory: exit code 2, naming the missing file.
    let output = kd_bin().args(["eval"]).arg(cats.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("config.toml"));
}

#[test]
fn the_binary_reports_usage_and_config_errors_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[data]\nsize = 64\nflavour = 3\n").unwrap();
    let out = kd_bin().args(["run"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flavour") && stderr.lines().count() < 25,
        "{stderr}"
    );

    // A --data that is not there, and an --output that is a file: bad input, nothing written.
    let missing = dir.path().join("no-such-images");
    let out = kd_bin()
        .args(["run", "--quick", "--data"])
        .arg(&missing)
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no-such-images") && stderr.contains("does not exist"),
        "{stderr}"
    );
    let out = kd_bin()
        .args(["run", "--quick", "--output"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
    assert!(std::fs::read_to_string(&bad).unwrap().contains("flavour"));

    let out = kd_bin().args(["layers", "resnet7"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // At 1×1 pixel every map is 1×1: no pair, said, not an empty list and exit 0.
    let out = kd_bin()
        .args([
            "match-layers",
            "--student",
            "resnet18",
            "--teacher",
            "resnet34",
            "--size",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--size 1"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("resnet18"));

    let out = kd_bin().args(["--backend", "tpu"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));

    let out = kd_bin()
        .args(["layers", "resnet18", "--size", "32"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("layer1 ") && l.contains("[1, 64, 8, 8]")),
        "{text}"
    );

    let out = kd_bin()
        .args([
            "match-layers",
            "--student",
            "resnet18",
            "--teacher",
            "resnet50",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("layer2       <-> layer2"));

    // An unknown layer name is found before any data is loaded or model trained.
    let typo = dir.path().join("typo.toml");
    let text = tiny_experiment(Path::new("/no/such/images"), &dir.path().join("out"))
        .replace("student = \"layer1\"", "student = \"layr1\"");
    std::fs::write(&typo, text).unwrap();
    let out = kd_bin().args(["run"]).arg(&typo).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("layr1") && stderr.contains("layer1") && stderr.contains("Attention"),
        "{stderr}"
    );

    let out = kd_bin().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Examples:"));
}

#[test]
fn a_closed_stdout_ends_the_output_without_a_panic() {
    // `kd layers resnet50 | head -1`: the reader goes away before kd has printed every line.
    let mut child = kd_bin()
        .args(["layers", "resnet50", "--size", "32"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[test]
fn devices_train_an_experiment_split_over_them_from_the_command_line() {
    // The teacher's fine-tuning and both runs (Attention with its connector-free pair) train
    // with every batch split over the flex device listed twice.
    let tiny = TinyRun::new();
    let file = tiny.out.path().join("tiny.toml");
    std::fs::write(&file, tiny_experiment(tiny.images.path(), &tiny.out_dir())).unwrap();
    let out = kd_bin()
        .args(["run"])
        .arg(&file)
        .args(["--devices", "flex,flex", "--cache-dir"])
        .arg(tiny.cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("backend flex + flex"), "{stderr}");
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tiny.out_dir().join("metrics.json")).unwrap(),
    )
    .unwrap();
    let kd = metrics["runs"][1]["epochs"][0]["train_kd"]
        .as_f64()
        .unwrap();
    assert!(kd.is_finite() && kd > 0.0, "{metrics}");
    // The resolved config records the devices.
    let resolved = Experiment::from_file(&tiny.out_dir().join("config.toml")).unwrap();
    assert_eq!(resolved.training.devices, ["flex", "flex"]);

    // Flags and files that cannot mean one set of devices are refused before any work.
    let out = kd_bin()
        .args(["run"])
        .arg(&file)
        .args(["--devices", "flex,flex", "--backend", "flex"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let base = tiny_experiment(Path::new("/tmp/none"), Path::new("/tmp/out"));
    let err = config_error(&base.replace(
        "backend = \"flex\"",
        "backend = \"flex\"\ndevices = [\"flex\", \"flex\"]",
    ));
    assert!(err.contains("not both"), "{err}");
    let err = config_error(&base.replace(
        "backend = \"flex\"",
        "devices = [\"cuda:0\", \"tch-cuda:1\"]",
    ));
    assert!(
        err.contains("mixes backends") && err.contains("cuda, tch"),
        "{err}"
    );
}

/// The numbers of a run directory's `metrics.json` that training decides: every history
/// without its times.
fn trained_numbers(out_dir: &Path) -> serde_json::Value {
    let mut metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    let mut histories = Vec::new();
    for key in ["teachers", "runs"] {
        for history in metrics[key].as_array_mut().unwrap() {
            for epoch in history["epochs"].as_array_mut().unwrap() {
                epoch.as_object_mut().unwrap().remove("seconds");
            }
            histories.push(history.clone());
        }
    }
    serde_json::Value::Array(histories)
}

/// Run `text` as an experiment file once uninterrupted, and once killed with SIGKILL as soon as
/// each of `first_epochs` (a checkpoint written at the end of a stage's first epoch, the
/// second under way) appears, then run again to the end: both give the same numbers.
fn killed_and_resumed_gives_the_same_numbers(text: &str, first_epochs: &[&str]) {
    let tiny = TinyRun::new();
    let text = text.replace("{images}", &tiny.images.path().display().to_string());
    let file = tiny.out.path().join("tiny.toml");
    std::fs::write(&file, text).unwrap();
    let start = |out: &Path, cache: &Path, stderr: std::process::Stdio| {
        kd_bin()
            .args(["run"])
            .arg(&file)
            .arg("--output")
            .arg(out)
            .arg("--cache-dir")
            .arg(cache)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    };
    let to_the_end = |out: &Path, cache: &Path| {
        let done = start(out, cache, std::process::Stdio::piped())
            .wait_with_output()
            .unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    };
    // Uninterrupted, in a directory and cache of its own.
    let whole = tiny.out.path().join("whole");
    to_the_end(&whole, &tiny.out.path().join("whole-cache"));
    let out = tiny.out_dir();
    for first_epoch in first_epochs {
        let mut child = start(&out, tiny.cache.path(), std::process::Stdio::null());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        while !out.join(first_epoch).is_file() {
            assert!(
                std::time::Instant::now() < deadline,
                "{first_epoch} never appeared"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "ended before {first_epoch}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!out.join("metrics.json").exists(), "killed before the end");
    }
    to_the_end(&out, tiny.cache.path());
    assert_eq!(trained_numbers(&out), trained_numbers(&whole));
}

#[test]
fn kill_9_mid_epoch_of_a_teacher_and_a_student_on_two_devices_then_the_same_numbers() {
    // Three epochs everywhere, every batch split over two flex devices. The teacher has a
    // linear head: the shards of a split batch draw dropout masks from one generator in
    // whichever order their threads run, so a fastai head (dropout) is not reproducible on
    // several devices, killed or not.
    let text = tiny_experiment(Path::new("{images}"), Path::new("unused"))
        .replace("head = \"fastai\"", "head = \"linear\"")
        .replace("teacher = \"0.4\"", "teacher = \"layer1\"")
        .replace("epochs = 1", "epochs = 3")
        .replace("backend = \"flex\"", "devices = [\"flex\", \"flex\"]");
    killed_and_resumed_gives_the_same_numbers(
        &text,
        &[
            "teacher-checkpoints/epoch-000/model.bpk",
            "checkpoints/attention/epoch-000/model.bpk",
        ],
    );
}

#[test]
fn kill_9_mid_epoch_of_a_mutual_pair_then_the_same_numbers() {
    let text = tiny_experiment(Path::new("{images}"), Path::new("unused"))
        .replace("epochs = 1", "epochs = 3")
        + "[[runs]]\nname = \"mutual\"\nmutual = { students = 2 }\n";
    killed_and_resumed_gives_the_same_numbers(&text, &["checkpoints/mutual/epoch-000/model.bpk"]);
}
