//! Logits and taps equal torchvision's for the same weights and input.
//!
//! Reference: `tests/fixtures/resnet_taps.safetensors`, written by
//! `python crates/kd-models/tests/fixtures/make_resnet_taps.py` (torch 2.9.0, torchvision 0.24.0).
//! Weights are a closed formula both sides compute, so the fixture holds only input and outputs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleStore, SafetensorsStore, bridge};
use burn::tensor::{Device, Tensor, TensorData};
use common::{rel_err, to_tensor};
use kd_models::weights::{Classifier, apply_torchvision, torchvision_keys};
use kd_models::{Arch, FeatureModel, ResNetConfig};

const TAPS: [&str; 10] = [
    "conv1",
    "maxpool",
    "layer1",
    "layer2",
    "layer3",
    "layer4",
    "layer3.1.conv2",
    "layer2.0.downsample.0",
    "avgpool",
    "fc",
];

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Same formula as `make_resnet_taps.py::formula`.
fn formula(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let phase = (fnv1a(name) % 1000) as f64 / 1000.0 * 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let s = (0.7 * i as f64 + phase).sin();
            let v = if shape.len() >= 2 {
                (2.0 / (n / shape[0]) as f64).sqrt() * s
            } else if name.ends_with("running_var") {
                1.0 + 0.5 * s * s
            } else if name.ends_with("running_mean") {
                0.1 * s
            } else if name == "fc.bias" {
                0.01 * s
            } else if name.ends_with("weight") {
                1.0 + 0.1 * s
            } else {
                0.1 * s
            };
            v as f32
        })
        .collect()
}

fn fixture() -> BTreeMap<String, PackTensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet_taps.safetensors");
    SafetensorsStore::from_file(path)
        .get_all_tensors()
        .expect("fixture readable")
        .clone()
}

fn check(arch: Arch) {
    let device = Device::flex();
    let fx = fixture();
    let mut model = ResNetConfig::new(arch).with_classes(Some(10)).init(&device);
    let weights: BTreeMap<String, PackTensor> = torchvision_keys(&model)
        .into_iter()
        .map(|(name, shape)| {
            let data = TensorData::new(formula(&name, &shape), shape.clone());
            (name.clone(), bridge::from_data(data, name, None))
        })
        .collect();
    apply_torchvision(&mut model, weights, Classifier::Strict, "formula").expect("weights apply");

    let name = arch.name();
    let input: Tensor<4> = to_tensor(&fx[&format!("{name}/input")], &device);
    let plan = model.tap_plan(&TAPS).unwrap();
    let out = model.forward_taps(input, &plan);
    let logits_ref: Tensor<2> = to_tensor(&fx[&format!("{name}/logits")], &device);
    let err = rel_err(out.logits.clone().rows(), logits_ref);
    assert!(err < 1e-4, "{name} logits: relative error {err}");
    for tap in TAPS {
        let reference: Tensor<4> = to_tensor(&fx[&format!("{name}/tap/{tap}")], &device);
        // The fixture stores flat outputs as `[batch, features, 1, 1]`.
        let actual = kd_core::feature::as_map(out.tap(tap).unwrap().clone());
        assert_eq!(actual.dims(), reference.dims(), "{name} tap {tap} shape");
        let err = rel_err(actual, reference);
        assert!(err < 1e-4, "{name} tap {tap}: relative error {err}");
    }
}

#[test]
fn resnet18_matches_torchvision() {
    check(Arch::ResNet18);
}

#[test]
fn resnet34_matches_torchvision() {
    check(Arch::ResNet34);
}

#[test]
fn resnet50_matches_torchvision() {
    check(Arch::ResNet50);
}
