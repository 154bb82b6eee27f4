//! Deep mutual learning in experiment files: `mutual = { students = N }` on a run trains N
//! students together, each with its own row, curve, checkpoints and score.

mod common;

use common::{TinyRun, config_error, tiny_experiment};
use kd::experiment::{Experiment, evaluate_run_dir, run};
use kd::registry::Registry;
use kd_train::report::SharedReporter;

/// The tiny experiment with a DML run of two students (the paper's: CE + mutual term) and
/// one of two students that also read the teacher.
fn with_mutual_runs(tiny: &TinyRun) -> String {
    let single = tiny_experiment(tiny.images.path(), &tiny.out_dir());
    let runs = single.find("[[runs]]").unwrap();
    format!(
        r#"{}[[runs]]
name = "DML"
mutual = {{ students = 2 }}
[[runs]]
name = "DML + SoftTarget"
mutual = {{ students = 2, weight = 0.5 }}
losses = [{{ loss = {{ kind = "soft_target", temperature = 4.0 }} }}]
"#,
        &single[..runs]
    )
}

#[test]
fn a_mutual_run_trains_each_student_with_its_own_row_checkpoint_history_and_score() {
    let tiny = TinyRun::new();
    let exp = Experiment::from_toml(&with_mutual_runs(&tiny), "dml.toml").unwrap();
    let report = run(&exp, &tiny.options()).unwrap();
    let rows: Vec<&str> = report.summary.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        rows,
        [
            "DML · student 1",
            "DML · student 2",
            "DML + SoftTarget · student 1",
            "DML + SoftTarget · student 2"
        ]
    );
    let runs: Vec<&str> = report.runs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(runs, rows);
    for h in &report.runs {
        let e = &h.epochs[0];
        assert!(e.train_kd.is_some_and(|kd| kd > 0.0), "{}: {e:?}", h.name);
    }
    // The pair's checkpoint (both students, one optimizer, both histories), next to the
    // run's fingerprint.
    let dir = tiny.out_dir().join("checkpoints/dml/epoch-000");
    assert!(dir.join("model.bpk").is_file(), "{}", dir.display());
    let histories: Vec<kd::train::History> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap()).unwrap();
    assert_eq!(histories.len(), 2);
    // Two students of one run start from different initialisations and end different.
    let (a, b) = (&report.runs[0].epochs[0], &report.runs[1].epochs[0]);
    assert_ne!((a.train_loss, a.valid_loss), (b.train_loss, b.valid_loss));

    let scores = evaluate_run_dir(
        &Registry::builtin(),
        &tiny.out_dir(),
        None,
        None,
        Some(tiny.cache.path().to_path_buf()),
        &SharedReporter::default(),
    )
    .unwrap();
    assert!(scores.unscored.is_empty(), "{:?}", scores.unscored);
    let scored: Vec<&str> = scores.rows.iter().map(|r| r.run.as_str()).collect();
    assert_eq!(scored, rows);
    for (row, summary) in scores.rows.iter().zip(&report.summary) {
        assert!(
            (row.accuracy - summary.mean).abs() < 1e-9,
            "{}: rescored {} vs {}",
            row.run,
            row.accuracy,
            summary.mean
        );
    }
}

#[test]
fn mutual_learning_with_one_student_or_on_several_devices_is_a_configuration_error() {
    let tiny = TinyRun::new();
    let text = with_mutual_runs(&tiny);
    let one = text.replace("mutual = { students = 2 }", "mutual = { students = 1 }");
    let e = config_error(&one);
    assert!(
        e.contains("runs[0] (`DML`).mutual.students = 1") && e.contains("two students or more"),
        "{e}"
    );
    // A billion students would be allocated after the teacher stage: refused before.
    let many = text.replace(
        "mutual = { students = 2 }",
        "mutual = { students = 1000000000 }",
    );
    let e = config_error(&many);
    assert!(e.contains("at most 16"), "{e}");
    let devices = text.replace("backend = \"flex\"", "devices = [\"flex\", \"flex\"]");
    let e = config_error(&devices);
    assert!(
        e.contains("runs[0] (`DML`)") && e.contains("one device"),
        "{e}"
    );
}
