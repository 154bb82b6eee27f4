//! MobileNetV2's logits and taps equal torchvision's for the same weights and input, and its
//! torchvision import reports every bad key at once.
//!
//! Reference: `tests/fixtures/mobilenet_v2.safetensors`, written by
//! `python crates/kd-models/tests/fixtures/make_mobilenet_v2.py` (torch 2.9.0, torchvision
//! 0.24.0): torchvision's own seeded initialisation of `mobilenet_v2(num_classes=10,
//! width_mult=0.5)` with randomised BatchNorm statistics, an input and the outputs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use common::{rel_err, to_tensor};
use kd_models::weights::{Classifier, apply_torchvision, torchvision_keys};
use kd_models::{FeatureModel, MobileNetV2, MobileNetV2Config, ModelError};

const TAPS: [&str; 11] = [
    "features.0",
    "features.1.conv.0.0",
    "features.2.conv.0.0",
    "features.2.conv.1",
    "features.4",
    "features.5",
    "features.9.conv",
    "features.16.conv.2",
    "features.18.0",
    "features.18",
    "classifier.0",
];

fn fixture() -> BTreeMap<String, PackTensor> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mobilenet_v2.safetensors");
    SafetensorsStore::from_file(path)
        .get_all_tensors()
        .expect("fixture readable")
        .clone()
}

/// The fixture's state dict under torchvision's keys.
fn state_dict(fx: &BTreeMap<String, PackTensor>) -> BTreeMap<String, PackTensor> {
    fx.iter()
        .filter_map(|(k, t)| {
            let key = k.strip_prefix("state/")?;
            let mut t = t.clone();
            t.name = key.to_string();
            Some((key.to_string(), t))
        })
        .collect()
}

fn model(device: &Device) -> MobileNetV2 {
    MobileNetV2Config::new(10).with_width_mult(0.5).init(device)
}

#[test]
fn mobilenet_v2_matches_torchvision() {
    let device = Device::flex();
    let fx = fixture();
    let mut model = model(&device);
    let report = apply_torchvision(&mut model, state_dict(&fx), Classifier::Strict, "fixture")
        .expect("torchvision's state dict applies");
    assert_eq!(report.applied, torchvision_keys(&model).len());
    let input: Tensor<4> = to_tensor(&fx["input"], &device);
    let plan = model.tap_plan(&TAPS).unwrap();
    let out = model.valid().forward_taps(input, &plan);
    let err = rel_err(out.logits.clone().rows(), to_tensor(&fx["logits"], &device));
    assert!(err < 1e-4, "logits: relative error {err}");
    for tap in TAPS {
        let reference: Tensor<4> = to_tensor(&fx[&format!("tap/{tap}")], &device);
        // The fixture stores flat outputs as `[batch, features, 1, 1]`.
        let ours = kd_core::feature::as_map(out.tap(tap).unwrap().clone());
        assert_eq!(ours.dims(), reference.dims(), "{tap} shape");
        let err = rel_err(ours, reference);
        assert!(err < 1e-4, "{tap}: relative error {err}");
    }
}

#[test]
fn every_torchvision_module_path_is_tappable_and_listed_with_its_shape() {
    let model = MobileNetV2Config::new(1000).init(&Device::flex());
    let layers = model.layers(kd_core::image_example(224, &Device::flex()));
    let shape = |path: &str| {
        layers
            .iter()
            .find(|l| l.path == path)
            .unwrap_or_else(|| panic!("{path} listed"))
            .shape
            .clone()
    };
    // torchvision's MobileNetV2 at 224×224 (width 1.0).
    assert_eq!(shape("features.0"), [1, 32, 112, 112]);
    assert_eq!(shape("features.1.conv.0.0"), [1, 32, 112, 112]);
    assert_eq!(shape("features.2.conv.0.0"), [1, 96, 112, 112]);
    assert_eq!(shape("features.2.conv.1"), [1, 96, 56, 56]);
    assert_eq!(shape("features.3"), [1, 24, 56, 56]);
    assert_eq!(shape("features.17"), [1, 320, 7, 7]);
    assert_eq!(shape("features.18"), [1, 1280, 7, 7]);
    assert_eq!(shape("classifier.1"), [1, 1000]);
    assert_eq!(layers.first().map(|l| l.path.as_str()), Some("features"));
    // torchvision's parameter count of mobilenet_v2(): 3,504,872.
    let params: usize = torchvision_keys(&model)
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(params, 3_504_872);
    match model.tap_plan(&["features.19"]) {
        Err(e) => assert!(e.to_string().contains("features.1"), "{e}"),
        Ok(_) => panic!("features.19 does not exist"),
    }
}

#[test]
fn a_bad_checkpoint_names_every_missing_unexpected_and_misshaped_key() {
    let device = Device::flex();
    let fx = fixture();
    let mut weights = state_dict(&fx);
    weights.remove("features.3.conv.1.1.running_var");
    let mut extra = weights["classifier.1.bias"].clone();
    extra.name = "features.19.0.weight".into();
    weights.insert(extra.name.clone(), extra);
    let mut wrong = weights["classifier.1.bias"].clone();
    wrong.name = "features.5.conv.3.bias".into();
    weights.insert(wrong.name.clone(), wrong);
    let err =
        apply_torchvision(&mut model(&device), weights, Classifier::Strict, "bad.pth").unwrap_err();
    match &err {
        ModelError::WeightsMismatch {
            missing,
            unexpected,
            misshaped,
            ..
        } => {
            assert_eq!(missing, &["features.3.conv.1.1.running_var"]);
            assert_eq!(unexpected, &["features.19.0.weight"]);
            assert_eq!(misshaped.len(), 1);
            assert_eq!(misshaped[0].0, "features.5.conv.3.bias");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("bad.pth"), "{err}");
}

/// The `.pth` torchvision itself writes (`torch.save(model.state_dict())`, made by
/// `tests/fixtures/make_torchvision_pth.py`): its Linear sits at `classifier.1` behind a
/// parameter-free Dropout, which a reader renumbering `Sequential` indices would move.
#[test]
fn torchvisions_own_pth_loads_and_gives_torchvisions_logits() {
    use kd_models::weights::load_torchvision;
    let device = Device::flex();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut model = MobileNetV2Config::new(3)
        .with_width_mult(0.25)
        .init(&device);
    let report = load_torchvision(
        &mut model,
        &dir.join("mobilenet_v2_w025.pth"),
        Classifier::Strict,
    )
    .expect("torchvision's .pth loads");
    assert_eq!(report.applied, torchvision_keys(&model).len());
    let fx = SafetensorsStore::from_file(dir.join("mobilenet_v2_w025_logits.safetensors"))
        .get_all_tensors()
        .unwrap()
        .clone();
    let input: Tensor<4> = to_tensor(&fx["input"], &device);
    let logits = model.valid().forward_logits(input).rows();
    let err = rel_err(logits, to_tensor(&fx["logits"], &device));
    assert!(err < 1e-4, "logits: relative error {err}");
}
