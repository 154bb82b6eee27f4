//! Cross-architecture distillation from an experiment file: `examples/cross_arch.toml` (a
//! ResNet-50 teacher, a MobileNetV2 student alone and with SoftTarget, Attention on stages of the
//! same resolution and FitNet through a connector) runs end to end on tiny images, quick.

mod common;

use common::{TinyRun, kd_bin};
use kd::experiment::{Experiment, Weights, run};

const CROSS_ARCH: &str = include_str!("../examples/cross_arch.toml");

#[test]
fn the_cross_architecture_experiment_runs_end_to_end() {
    let tiny = TinyRun::new();
    let mut exp = Experiment::from_toml(CROSS_ARCH, "examples/cross_arch.toml")
        .unwrap()
        .quick();
    exp.data.source = tiny.images.path().display().to_string();
    exp.data.batch_size = 8;
    exp.teacher.as_mut().unwrap().weights = Weights::None;
    exp.output = tiny.out_dir();
    let report = run(&exp, &tiny.options()).unwrap();
    let names: Vec<&str> = report.runs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "MobileNetV2 alone",
            "SoftTarget T4 w0.9",
            "Attention",
            "FitNet"
        ]
    );
    for history in &report.runs {
        let epoch = &history.epochs[0];
        assert!(epoch.valid_loss.is_finite(), "{history:?}");
        if history.name != "MobileNetV2 alone" {
            let kd = epoch.train_kd.expect("a distillation term");
            assert!(kd.is_finite() && kd > 0.0, "{history:?}");
        }
    }
}

#[test]
fn mobilenet_v2_is_listed_and_matched_from_the_command_line() {
    let out = kd_bin()
        .args(["layers", "mobilenet_v2", "--size", "224"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("features.18 ") && l.ends_with("[1, 1280, 7, 7]")),
        "{text}"
    );
    let out = kd_bin()
        .args([
            "match-layers",
            "--student",
            "mobilenet_v2",
            "--teacher",
            "resnet50",
            "--teacher-head",
            "fastai",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // At 64×64 MobileNetV2's stride-8 stage meets layer2 (fastai path 0.5).
    assert!(text.contains("features.4   <-> 0.5"), "{text}");
    let out = kd_bin()
        .args(["layers", "mobilenet_v2", "--head", "fastai"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mobilenet_v2"));
}
