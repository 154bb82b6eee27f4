//! A student that starts from pretrained weights: `[student] weights = { file = … }` (a
//! torchvision state dict) loads them, with a new classifier for the data's classes, and the
//! file's content is part of every run's fingerprint.

mod common;

use std::collections::BTreeMap;

use burn::store::bridge;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::tensor::{Device, TensorData};
use common::{TinyRun, tiny_experiment};
use kd::data::ImageBatch;
use kd::experiment::{Experiment, Fingerprint, run};
use kd::models::weights::{torchvision_keys, write_safetensors};
use kd::models::{Arch, Head, Network, NetworkConfig, ResNetConfig};
use kd::train::{DistillModel, load_trained_student};

/// A value per weight that no initialisation draws: `scale` × a slow sine of its position.
fn value(i: usize, scale: f32) -> f32 {
    scale * (0.37 * i as f32).sin()
}

/// A torchvision ResNet-18 state dict (1000 classes) of made-up values, written as
/// `.safetensors`; BatchNorm variances stay positive.
fn write_resnet18(path: &std::path::Path, scale: f32) {
    let device = Device::flex();
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(1000))
        .init(&device);
    let tensors: BTreeMap<String, PackTensor> = torchvision_keys(&model)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|i| match name.ends_with("running_var") {
                    true => 1.0 + value(i, scale).abs(),
                    false => value(i, scale),
                })
                .collect();
            let data = TensorData::new(values, shape);
            (name.clone(), bridge::from_data(data, name, None))
        })
        .collect();
    write_safetensors(path, &tensors).unwrap();
}

fn with_student_weights(tiny: &TinyRun, weights: &std::path::Path) -> String {
    tiny_experiment(tiny.images.path(), &tiny.out_dir()).replace(
        "[student]\narch = \"resnet18\"\n",
        &format!(
            "[student]\narch = \"resnet18\"\nweights = {{ file = \"{}\" }}\n",
            weights.display()
        ),
    )
}

#[test]
fn a_student_starts_from_its_weights_file() {
    let tiny = TinyRun::new();
    let weights = tiny.out.path().join("resnet18.safetensors");
    write_resnet18(&weights, 0.05);
    // One epoch at a learning rate too small to move a weight: the trained student's first
    // convolution is still the file's.
    let text = with_student_weights(&tiny, &weights).replace(
        "[training]\nepochs = 1\n",
        "[training]\nepochs = 1\nlr = 1e-12\n",
    );
    let exp = Experiment::from_toml(&text, "pretrained.toml").unwrap();
    run(&exp, &tiny.options()).unwrap();

    let device = Device::flex().autodiff();
    let student = NetworkConfig::new(Arch::ResNet18, Head::Linear).init(2, &device);
    let mut model = DistillModel::<Network, ImageBatch>::alone(student);
    let checkpoints = tiny.out_dir().join("checkpoints").join("student-alone");
    load_trained_student(&mut model, &checkpoints, None).unwrap();
    let conv1: Vec<f32> = first_conv(&model.student);
    let expected: Vec<f32> = (0..conv1.len()).map(|i| value(i, 0.05)).collect();
    let gap = conv1
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(gap < 1e-5, "conv1 is not the file's: largest gap {gap}");
}

/// The student's first convolution weights, flattened.
fn first_conv(net: &Network) -> Vec<f32> {
    use burn::store::ModuleSnapshot;
    let tensors = net.collect(None, None, false);
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    // The stem's convolution, not a block's `layerN.M.conv1`.
    let snapshot = tensors
        .into_iter()
        .find(|t| t.name.ends_with("conv1.weight") && !t.name.contains("layer"))
        .unwrap_or_else(|| panic!("no stem convolution among {names:?}"));
    bridge::to_data(&snapshot)
        .unwrap()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn the_student_weights_content_is_part_of_the_run_fingerprint() {
    let tiny = TinyRun::new();
    let weights = tiny.out.path().join("resnet18.safetensors");
    write_resnet18(&weights, 0.05);
    let exp = Experiment::from_toml(&with_student_weights(&tiny, &weights), "a.toml").unwrap();
    let fingerprint = || Fingerprint::run(&exp, &exp.runs[0], 0, &[]).unwrap();
    let first = fingerprint();
    write_resnet18(&weights, 0.07);
    assert_ne!(fingerprint(), first, "other weights, same path");
    // Without student weights, the fingerprint has no such field (runs made before keep theirs).
    let plain = tiny_experiment(tiny.images.path(), &tiny.out_dir());
    let plain = Experiment::from_toml(&plain, "b.toml").unwrap();
    let fp = Fingerprint::run(&plain, &plain.runs[0], 0, &[]).unwrap();
    assert!(!format!("{fp:?}").contains("student weights"), "{fp:?}");
}
