//! CRD in experiment files: its memory is sized by the training images `kd run` counts, and a
//! memory that cannot work (more negatives than other training items) stops the run before
//! the teacher is fine-tuned, naming the run and the term.

mod common;

use common::{TinyRun, tiny_experiment};
use kd::KdError;
use kd::experiment::{Experiment, run};

fn with_crd(tiny: &TinyRun, negatives: usize) -> String {
    let single = tiny_experiment(tiny.images.path(), &tiny.out_dir());
    let runs = single.find("[[runs]]").unwrap();
    format!(
        r#"{}[[runs]]
name = "CRD"
mix = {{ kind = "sum", ce = 1.0 }}
losses = [{{ loss = {{ kind = "crd", pair = {{ student = "avgpool", teacher = "1.0.ap" }}, dim = 16, negatives = {negatives} }}, weight = 0.8 }}]
"#,
        &single[..runs]
    )
}

#[test]
fn a_crd_run_trains_with_a_memory_of_the_training_images() {
    let tiny = TinyRun::new();
    let exp = Experiment::from_toml(&with_crd(&tiny, 8), "crd.toml").unwrap();
    let report = run(&exp, &tiny.options()).unwrap();
    let e = &report.runs[0].epochs[0];
    assert!(
        e.train_kd.is_some_and(|kd| kd.is_finite() && kd > 0.0),
        "{e:?}"
    );
    // The resolved configuration is the file's: `items` comes from the data at run time.
    let resolved = std::fs::read_to_string(tiny.out_dir().join("config.toml")).unwrap();
    assert!(!resolved.contains("items"), "{resolved}");
}

#[test]
fn the_memory_size_is_not_a_key_of_the_file() {
    // The rows are the training images kd counts; a file cannot size the memory otherwise.
    let tiny = TinyRun::new();
    let text = with_crd(&tiny, 8).replace("negatives = 8", "negatives = 8, items = 5");
    let exp = Experiment::from_toml(&text, "crd.toml").unwrap();
    let err = run(&exp, &tiny.options()).unwrap_err();
    assert!(matches!(err, KdError::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("runs[0]") && text.contains("items"), "{text}");
}

#[test]
fn more_negatives_than_training_images_stops_the_run_before_the_teacher() {
    let tiny = TinyRun::new();
    // 40 images, 20 % held out: 32 training images, so at most 31 negatives.
    let exp = Experiment::from_toml(&with_crd(&tiny, 32), "crd.toml").unwrap();
    let err = run(&exp, &tiny.options()).unwrap_err();
    assert!(matches!(err, KdError::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("runs[0] (`CRD`).losses[0]")
            && text.contains("negatives = 32")
            && text.contains("31"),
        "{text}"
    );
    assert!(
        !tiny.out_dir().join("teacher-checkpoints").exists(),
        "the teacher was not fine-tuned"
    );
}

#[test]
fn crd_on_several_devices_is_a_configuration_error() {
    let tiny = TinyRun::new();
    let text = with_crd(&tiny, 8).replace("backend = \"flex\"", "devices = [\"flex\", \"flex\"]");
    let e = common::config_error(&text);
    assert!(
        e.contains("runs[0] (`CRD`)") && e.contains("one device"),
        "{e}"
    );
}

#[test]
fn a_memory_larger_than_the_machine_is_refused_with_its_size_before_anything_allocates_it() {
    let tiny = TinyRun::new();
    // 10¹² dimensions: terabytes per bank.
    let text = with_crd(&tiny, 8).replace("dim = 16", "dim = 1000000000000");
    let exp = Experiment::from_toml(&text, "crd.toml").unwrap();
    let err = run(&exp, &tiny.options()).unwrap_err();
    assert!(matches!(err, KdError::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("GB") && text.contains("dim"), "{text}");
    assert!(!tiny.out_dir().exists(), "nothing written");
}
