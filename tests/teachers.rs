//! Experiment files with several teachers: `[[teachers]]` fine-tuned and cached one by one,
//! `[[ensembles]]` of them, and loss terms that name the teacher they read.

mod common;

use std::path::Path;

use common::{TinyRun, config_error, tiny_experiment};
use kd::experiment::{Experiment, run};
use kd::registry::Registry;

/// The tiny experiment with two ResNet-18 teachers (other seeds: other teachers), their
/// ensemble, and runs reading a, the ensemble, and b's feature maps.
fn two_teachers(images: &Path, output: &Path) -> String {
    let single = tiny_experiment(images, output);
    let start = single.find("[teacher]").unwrap();
    let end = single.find("[student]").unwrap();
    let runs = single.find("[[runs]]").unwrap();
    format!(
        r#"{}[[teachers]]
name = "a"
arch = "resnet18"
epochs = 1
seed = 1
[[teachers]]
name = "b"
arch = "resnet18"
epochs = 1
seed = 2
[[ensembles]]
name = "both"
members = ["a", "b"]
weights = [1.0, 3.0]
temperature = 4.0
{}[[runs]]
name = "from a"
losses = [{{ loss = {{ kind = "soft_target", temperature = 4.0 }}, teacher = "a" }}]
[[runs]]
name = "from both"
losses = [{{ loss = {{ kind = "soft_target", temperature = 4.0 }}, teacher = "both" }}]
[[runs]]
name = "attention from b"
mix = {{ kind = "lerp", weight = 0.9 }}
losses = [{{ loss = {{ kind = "attention", pairs = [{{ student = "layer1", teacher = "layer1" }}] }}, teacher = "b" }}]
"#,
        &single[..start],
        &single[end..runs]
    )
}

#[test]
fn several_teachers_are_fine_tuned_cached_and_read_by_name() {
    let tiny = TinyRun::new();
    let text = two_teachers(tiny.images.path(), &tiny.out_dir());
    let exp = Experiment::from_toml(&text, "two.toml").unwrap();
    assert!(exp.teacher.is_none());
    assert_eq!(exp.teacher_names(), ["a", "b", "both"]);
    let report = run(&exp, &tiny.options()).unwrap();
    let names: Vec<&str> = report.teachers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["teacher a (resnet18)", "teacher b (resnet18)"]);
    assert_ne!(
        report.teachers[0].epochs[0].train_loss, report.teachers[1].epochs[0].train_loss,
        "two teacher instances"
    );
    for history in &report.runs {
        let kd = history.epochs[0].train_kd.unwrap();
        assert!(kd.is_finite() && kd > 0.0, "{}: {kd}", history.name);
    }
    // Both fine-tuned teachers went to the cache (weights, history and their digests each).
    let cached = std::fs::read_dir(tiny.cache.path().join("teachers"))
        .unwrap()
        .count();
    assert_eq!(cached, 6);
    // Their fine-tuning checkpoints went with them: no empty folder is left behind.
    assert!(!tiny.out_dir().join("teacher-checkpoints").exists());
    let md = std::fs::read_to_string(tiny.out_dir().join("report.md")).unwrap();
    assert!(
        md.contains("teacher a (resnet18)") && md.contains("teacher b (resnet18)"),
        "{md}"
    );
    // The resolved config reads back as the same experiment.
    let resolved = Experiment::from_file(&tiny.out_dir().join("config.toml")).unwrap();
    assert_eq!(resolved, exp);
}

#[test]
fn teacher_naming_mistakes_are_configuration_errors() {
    let text = two_teachers(Path::new("/tmp/none"), Path::new("/tmp/out"));
    let e = config_error(&text.replace("teacher = \"both\"", "teacher = \"bith\""));
    assert!(
        e.contains("runs[1]") && e.contains("`bith`") && e.contains("[a, b, both]"),
        "{e}"
    );
    let e = config_error(&text.replace("members = [\"a\", \"b\"]", "members = [\"a\", \"c\"]"));
    assert!(e.contains("`c`") && e.contains("[a, b]"), "{e}");
    let e = config_error(&text.replace(", teacher = \"a\" }]", " }]"));
    assert!(e.contains("runs[0]") && e.contains("several"), "{e}");
    let e = config_error(&text.replace("name = \"b\"", "name = \"a\""));
    assert!(
        e.contains("two teachers or ensembles are called `a`"),
        "{e}"
    );
    let e = config_error(&text.replace("weights = [1.0, 3.0]", "weights = [1.0]"));
    assert!(e.contains("1 weights for 2 members"), "{e}");
    let e = config_error(&text.replace(
        "name = \"a\"\narch = \"resnet18\"\nepochs = 1",
        "name = \"a\"\narch = \"resnet18\"\nepochs = 0",
    ));
    assert!(e.contains("teachers[0] (`a`).epochs = 0"), "{e}");
}

#[test]
fn a_feature_loss_reading_an_ensemble_stops_before_any_data_is_read() {
    let tiny = TinyRun::new();
    let text = two_teachers(Path::new("/no/such/images"), &tiny.out_dir())
        .replace("}] }, teacher = \"b\" }]", "}] }, teacher = \"both\" }]");
    let exp = Experiment::from_toml(&text, "two.toml").unwrap();
    let err = run(&exp, &tiny.options()).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), 2, "{text}");
    assert!(
        text.contains("attention from b") && text.contains("ensemble"),
        "{text}"
    );
}

#[test]
fn the_shipped_ensemble_experiment_shares_its_first_teacher_with_the_main_job() {
    use kd::experiment::{DEFAULT_EXPERIMENT, Fingerprint};
    let exp = Experiment::from_toml(
        include_str!("../examples/ensemble.toml"),
        "examples/ensemble.toml",
    )
    .unwrap();
    exp.check_names(&Registry::builtin(), "examples/ensemble.toml")
        .unwrap();
    assert_eq!(exp.teacher_names(), ["a", "b", "a+b"]);
    let main = Experiment::from_toml(DEFAULT_EXPERIMENT, "examples/pets_kd.toml").unwrap();
    let fingerprint = |exp: &Experiment, i: usize| {
        let (_, section) = exp.teacher_sections()[i];
        Fingerprint::teacher(exp, section).unwrap().digest()
    };
    // The same cache entry as the main job's teacher; b is another one.
    assert_eq!(fingerprint(&exp, 0), fingerprint(&main, 0));
    assert_ne!(fingerprint(&exp, 1), fingerprint(&main, 0));
}
