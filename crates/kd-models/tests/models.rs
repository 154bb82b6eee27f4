//! Tap shapes, layer listing, fastai names, error reporting and weight files.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::store::bridge;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::tensor::{Device, Tensor, TensorData};
use kd_models::weights::{
    Classifier, apply_torchvision, load_torchvision, torchvision_keys, write_safetensors,
};
use kd_models::{Arch, FeatureModel, ModelError, ResNetConfig, StridePlacement, VisionLearner};

fn device() -> Device {
    Device::flex()
}

fn input(size: usize) -> Tensor<4> {
    Tensor::ones([1, 3, size, size], &device())
}

#[test]
fn stage_taps_have_resnet_shapes_for_every_depth() {
    for arch in Arch::ALL {
        let model = ResNetConfig::new(arch)
            .with_classes(Some(3))
            .init(&device());
        let plan = model
            .tap_plan(&[
                "conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc",
            ])
            .unwrap();
        let out = model.forward_taps(input(64), &plan);
        let e = if arch.bottleneck() { 4 } else { 1 };
        let shape = |n: &str| out.taps[n].dims();
        assert_eq!(shape("conv1"), [1, 64, 32, 32], "{arch}");
        assert_eq!(shape("maxpool"), [1, 64, 16, 16], "{arch}");
        assert_eq!(shape("layer1"), [1, 64 * e, 16, 16], "{arch}");
        assert_eq!(shape("layer2"), [1, 128 * e, 8, 8], "{arch}");
        assert_eq!(shape("layer3"), [1, 256 * e, 4, 4], "{arch}");
        assert_eq!(shape("layer4"), [1, 512 * e, 2, 2], "{arch}");
        assert_eq!(shape("avgpool"), [1, 512 * e, 1, 1], "{arch}");
        assert_eq!(shape("fc"), [1, 3], "{arch}");
        assert_eq!(out.logits.dims(), [1, 3]);
        // The fc tap is the logits.
        let fc: Vec<f32> = out.taps["fc"].to_data().try_to_vec::<f32>().unwrap();
        let logits: Vec<f32> = out
            .logits
            .clone()
            .rows()
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(fc, logits);
    }
}

#[test]
fn no_taps_means_no_taps_and_same_logits() {
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(2))
        .init(&device());
    let plain = model.forward_taps(input(32), &kd_models::TapPlan::none());
    assert!(plain.taps.is_empty());
    let plan = model.tap_plan(&["layer2.1.bn2"]).unwrap();
    let tapped = model.forward_taps(input(32), &plan);
    assert_eq!(tapped.taps.len(), 1);
    let a: Vec<f32> = plain
        .logits
        .clone()
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = tapped
        .logits
        .clone()
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn block_taps_follow_the_block_structure() {
    let model = ResNetConfig::new(Arch::ResNet50)
        .with_classes(Some(2))
        .init(&device());
    let names = [
        "layer2.0.conv1",
        "layer2.0.conv2",
        "layer2.0.conv3",
        "layer2.0.downsample.1",
        "layer2.0",
    ];
    let out = model.forward_taps(input(64), &model.tap_plan(&names).unwrap());
    // v1.5: the 3×3 carries the stride.
    assert_eq!(out.taps["layer2.0.conv1"].dims(), [1, 128, 16, 16]);
    assert_eq!(out.taps["layer2.0.conv2"].dims(), [1, 128, 8, 8]);
    assert_eq!(out.taps["layer2.0.conv3"].dims(), [1, 512, 8, 8]);
    assert_eq!(out.taps["layer2.0.downsample.1"].dims(), [1, 512, 8, 8]);
    assert_eq!(out.taps["layer2.0"].dims(), [1, 512, 8, 8]);

    let v1 = ResNetConfig::new(Arch::ResNet50)
        .with_stride(StridePlacement::Conv1x1)
        .init(&device());
    let out = v1.forward_taps(input(64), &v1.tap_plan(&names[..2]).unwrap());
    assert_eq!(out.taps["layer2.0.conv1"].dims(), [1, 128, 8, 8]);
    assert_eq!(out.taps["layer2.0.conv2"].dims(), [1, 128, 8, 8]);
}

/// torchvision's `named_modules()` for resnet18 and resnet50, independent of our code.
fn torchvision_module_names(arch: Arch) -> Vec<String> {
    let mut names: Vec<String> = ["conv1", "bn1", "relu", "maxpool"]
        .map(String::from)
        .to_vec();
    for (stage, &count) in arch.blocks().iter().enumerate() {
        let layer = format!("layer{}", stage + 1);
        names.push(layer.clone());
        for block in 0..count {
            let p = format!("{layer}.{block}");
            names.push(p.clone());
            let children: &[&str] = if arch.bottleneck() {
                &["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"]
            } else {
                &["conv1", "bn1", "relu", "conv2", "bn2"]
            };
            names.extend(children.iter().map(|c| format!("{p}.{c}")));
            // torchvision adds a projection wherever the first block changes shape.
            if block == 0 && (stage > 0 || arch.bottleneck()) {
                for c in ["downsample", "downsample.0", "downsample.1"] {
                    names.push(format!("{p}.{c}"));
                }
            }
        }
    }
    names.push("avgpool".into());
    names.push("fc".into());
    names
}

#[test]
fn layer_listing_matches_torchvision_module_order_with_shapes() {
    for arch in [Arch::ResNet18, Arch::ResNet50] {
        let model = ResNetConfig::new(arch)
            .with_classes(Some(2))
            .init(&device());
        let layers = model.layers(kd_core::image_example(64, &device()));
        let paths: Vec<String> = layers.iter().map(|l| l.path.clone()).collect();
        assert_eq!(paths, torchvision_module_names(arch), "{arch}");
        let find = |p: &str| layers.iter().find(|l| l.path == p).unwrap().shape.clone();
        assert_eq!(
            find("layer3"),
            [1, if arch.bottleneck() { 1024 } else { 256 }, 4, 4]
        );
        assert_eq!(find("fc"), [1, 2]);
    }
}

#[test]
fn fastai_and_torchvision_names_give_the_same_taps() {
    let body = ResNetConfig::new(Arch::ResNet34).init(&device());
    let model = VisionLearner::new(body, 2);
    let pairs = [
        ("0.4", "layer1"),
        ("0.5", "layer2"),
        ("0.6", "layer3"),
        ("0.7", "layer4"),
        ("0.4.1.conv2", "layer1.1.conv2"),
        ("0", "layer4"),
    ];
    let names: Vec<&str> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let out = model.forward_taps(input(64), &model.tap_plan(&names).unwrap());
    for (fastai, tv) in pairs {
        let a: Vec<f32> = out.taps[fastai].to_data().try_to_vec::<f32>().unwrap();
        let b: Vec<f32> = out.taps[tv].to_data().try_to_vec::<f32>().unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{fastai} vs {tv}");
    }
    // The head: concat pool doubles the channels, the last linear gives the logits.
    let out = model.forward_taps(input(64), &model.tap_plan(&["1.0", "1.4", "1.8"]).unwrap());
    assert_eq!(out.taps["1.0"].dims(), [1, 1024, 1, 1]);
    assert_eq!(out.taps["1.4"].dims(), [1, 512]);
    assert_eq!(out.logits.dims(), [1, 2]);
    let listing = model.layers(kd_core::image_example(64, &device()));
    let l1 = listing.iter().find(|l| l.path == "0.4").unwrap();
    assert_eq!(l1.alias.as_deref(), Some("layer1"));
    assert_eq!(l1.shape, [1, 64, 16, 16]);
    assert_eq!(listing.last().unwrap().path, "1.8");
}

#[test]
fn concat_pool_is_max_then_average() {
    let body = ResNetConfig::new(Arch::ResNet18).init(&device());
    let model = VisionLearner::new(body, 2);
    let out = model.forward_taps(input(64), &model.tap_plan(&["layer4", "1.0"]).unwrap());
    let feats: Vec<f32> = out.taps["layer4"].to_data().try_to_vec::<f32>().unwrap(); // [1, 512, 2, 2]
    let pooled: Vec<f32> = out.taps["1.0"].to_data().try_to_vec::<f32>().unwrap(); // [1, 1024, 1, 1]
    for c in [0usize, 7, 511] {
        let v = &feats[c * 4..c * 4 + 4];
        let max = v.iter().cloned().fold(f32::MIN, f32::max);
        let avg = v.iter().sum::<f32>() / 4.0;
        assert!((pooled[c] - max).abs() < 1e-5);
        assert!((pooled[512 + c] - avg).abs() < 1e-5);
    }
}

#[test]
fn unknown_tap_lists_nearest_names() {
    let model = ResNetConfig::new(Arch::ResNet18).init(&device());
    let err = model.tap_plan(&["layer1", "layr2"]).unwrap_err();
    match &err {
        kd_core::TapError::Unknown { name, nearest } => {
            assert_eq!(name, "layr2");
            assert_eq!(nearest[0], "layer2");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("layr2") && err.to_string().contains("layer2"));
    let learner = VisionLearner::new(model, 2);
    assert!(learner.tap_plan(&["0.9"]).is_err());
    assert!(learner.tap_plan(&["1.9"]).is_err());
    let out = learner.forward_taps(input(32), &learner.tap_plan(&["0.5"]).unwrap());
    let err = out.tap("0.6").unwrap_err().to_string();
    assert!(err.contains("0.6") && err.contains("0.5"), "{err}");
}

fn formula_weights(
    model: &impl kd_models::weights::TorchvisionLayout,
) -> BTreeMap<String, PackTensor> {
    torchvision_keys(model)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
            (
                name.clone(),
                bridge::from_data(TensorData::new(v, shape), name, None),
            )
        })
        .collect()
}

#[test]
fn state_dict_with_missing_unexpected_and_misshaped_keys_is_one_clear_error() {
    let mut model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(2))
        .init(&device());
    let mut weights = formula_weights(&model);
    weights.remove("layer3.1.bn2.running_var");
    let extra = bridge::from_data(
        TensorData::new(vec![0f32; 3], [3]),
        "layer9.weight".into(),
        None,
    );
    weights.insert("layer9.weight".into(), extra);
    let wrong = bridge::from_data(
        TensorData::new(vec![0f32; 64 * 3 * 3 * 3], [64, 3, 3, 3]),
        "conv1.weight".into(),
        None,
    );
    weights.insert("conv1.weight".into(), wrong);
    let err = apply_torchvision(&mut model, weights, Classifier::Strict, "test.pth").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("test.pth"), "{msg}");
    assert!(msg.contains("layer3.1.bn2.running_var"), "{msg}");
    assert!(msg.contains("layer9.weight"), "{msg}");
    assert!(
        msg.contains("conv1.weight")
            && msg.contains("[64, 3, 7, 7]")
            && msg.contains("[64, 3, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn a_state_dict_of_another_architecture_is_named_and_the_message_stays_short() {
    let device = device();
    for (file, arch) in [
        (Arch::ResNet34, "resnet34"),
        (Arch::ResNet50, "resnet50"),
        (Arch::ResNet101, "resnet101"),
    ] {
        let other = ResNetConfig::new(file).with_classes(Some(2)).init(&device);
        let mut model = ResNetConfig::new(Arch::ResNet18)
            .with_classes(Some(2))
            .init(&device);
        let err = apply_torchvision(
            &mut model,
            formula_weights(&other),
            Classifier::Strict,
            "other.pth",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("looks like a {arch} state dict")),
            "{msg}"
        );
        assert!(msg.len() < 1500, "{} characters: {msg}", msg.len());
    }
}

#[test]
fn classifier_is_replaced_only_when_asked() {
    let source = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(10))
        .init(&device());
    let weights = formula_weights(&source);
    let mut model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(2))
        .init(&device());
    let err = apply_torchvision(&mut model, weights.clone(), Classifier::Strict, "w").unwrap_err();
    assert!(err.to_string().contains("fc.weight"), "{err}");
    let report =
        apply_torchvision(&mut model, weights, Classifier::ReplaceIfDifferent, "w").unwrap();
    assert!(report.skipped.contains(&"fc.weight".to_string()));
    let w: Vec<f32> = model
        .conv1
        .weight
        .val()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(w[3], 0.0); // (3 % 7 - 3) * 0.01
    assert_eq!(w[0], -0.03);
    // BatchNorm statistics arrive too.
    let rv: Vec<f32> = model.layer1[0]
        .bn1
        .running_var
        .value()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(rv[1], -0.02);
}

#[test]
fn safetensors_file_loads_and_missing_key_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(2))
        .init(&device());
    let mut weights = formula_weights(&model);
    let good = dir.path().join("resnet18.safetensors");
    write_safetensors(&good, &weights).unwrap();
    let report = load_torchvision(&mut model, &good, Classifier::Strict).unwrap();
    assert_eq!(report.applied, torchvision_keys(&model).len());
    weights.remove("layer2.0.downsample.0.weight");
    let bad = dir.path().join("missing.safetensors");
    write_safetensors(&bad, &weights).unwrap();
    let msg = load_torchvision(&mut model, &bad, Classifier::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("missing.safetensors") && msg.contains("layer2.0.downsample.0.weight"),
        "{msg}"
    );
}

#[test]
fn corrupt_or_absent_weights_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = ResNetConfig::new(Arch::ResNet18).init(&device());
    for name in ["broken.pth", "broken.safetensors", "broken.pt"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"this is not a checkpoint at all").unwrap();
        let err = load_torchvision(&mut model, &path, Classifier::Strict).unwrap_err();
        assert!(
            matches!(err, ModelError::WeightsRead { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    // Truncated safetensors: a header promising more bytes than the file has.
    let weights = formula_weights(&model);
    let path = dir.path().join("truncated.safetensors");
    write_safetensors(&path, &weights).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_torchvision(&mut model, &path, Classifier::Strict).unwrap_err();
    assert!(err.to_string().contains("truncated.safetensors"), "{err}");
    let err = load_torchvision(
        &mut model,
        &dir.path().join("absent.pth"),
        Classifier::Strict,
    )
    .unwrap_err();
    assert!(err.to_string().contains("absent.pth"), "{err}");
}

#[test]
fn native_save_and_load_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bpk");
    let body = ResNetConfig::new(Arch::ResNet18).init(&device());
    let model = VisionLearner::new(body, 2);
    kd_core::save_module(&model, &path).unwrap();
    let mut fresh = VisionLearner::new(ResNetConfig::new(Arch::ResNet18).init(&device()), 2);
    let before: Vec<f32> = fresh
        .forward_logits(input(32))
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    kd_core::load_module(&mut fresh, &path).unwrap();
    let a: Vec<f32> = model
        .forward_logits(input(32))
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = fresh
        .forward_logits(input(32))
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, before);
    // A different architecture does not load silently.
    let mut other = VisionLearner::new(ResNetConfig::new(Arch::ResNet34).init(&device()), 2);
    assert!(kd_core::load_module(&mut other, &path).is_err());
}

#[test]
fn freeze_stops_body_convolutions_only() {
    let model = VisionLearner::new(
        ResNetConfig::new(Arch::ResNet18).init(&device().autodiff()),
        2,
    );
    let frozen = model.freeze();
    assert!(!frozen.body.conv1.weight.is_require_grad());
    assert!(
        !frozen.body.layer2[0]
            .downsample
            .as_ref()
            .unwrap()
            .conv
            .weight
            .is_require_grad()
    );
    assert!(frozen.body.bn1.gamma.is_require_grad());
    assert!(frozen.head.lin1.weight.is_require_grad());
    let thawed = frozen.unfreeze();
    assert!(thawed.body.conv1.weight.is_require_grad());
    assert_eq!(
        thawed.num_params(),
        VisionLearner::new(ResNetConfig::new(Arch::ResNet18).init(&device()), 2).num_params()
    );
}

#[test]
fn automatic_matching_pairs_shallowest_layers_by_resolution() {
    let student = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(2))
        .init(&device());
    let teacher = VisionLearner::new(ResNetConfig::new(Arch::ResNet50).init(&device()), 2);
    let pairs =
        kd_core::match_feature_layers(&student, &teacher, kd_core::image_example(64, &device()));
    let expect = [
        ("conv1", "0.0"),
        ("maxpool", "0.3"),
        ("layer2", "0.5"),
        ("layer3", "0.6"),
        ("layer4", "0.7"),
    ];
    let got: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.student.as_str(), p.teacher.as_str()))
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn a_loaded_model_does_not_depend_on_its_file_afterwards() {
    // The teacher cache and checkpoints are replaced and removed while their models are in
    // use: loading must read the weights, not leave them to be read from the path later.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bpk");
    let model = VisionLearner::new(ResNetConfig::new(Arch::ResNet18).init(&device()), 2);
    kd_core::save_module(&model, &path).unwrap();
    let mut loaded = VisionLearner::new(ResNetConfig::new(Arch::ResNet18).init(&device()), 2);
    kd_core::load_module(&mut loaded, &path).unwrap();
    drop(dir);
    let a: Vec<f32> = model
        .forward_logits(input(32))
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = loaded
        .forward_logits(input(32))
        .rows()
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn the_text_classifier_taps_every_layer_and_ignores_padding() {
    use burn::nn::transformer::TransformerEncoderInput;
    use burn::tensor::{Bool, Int};
    use kd_models::TextClassifierConfig;
    let device = device();
    let model = TextClassifierConfig::new(10, 3)
        .with_width(16)
        .with_layers(2)
        .with_heads(2)
        .init(&device);
    let tokens = |ids: [i64; 8]| {
        Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(ids.to_vec(), [2, 4]), &device)
    };
    let padding = Tensor::<2, Bool>::from_data(
        burn::tensor::TensorData::new(
            vec![false, false, false, true, false, true, true, true],
            [2, 4],
        ),
        &device,
    );
    let names = [
        "embedding",
        "encoder.0",
        "encoder.1",
        "encoder",
        "pooled",
        "head",
    ];
    let plan = model.tap_plan(&names).unwrap();
    let out = model.forward_taps((tokens([1, 2, 3, 0, 4, 0, 0, 0]), padding.clone()), &plan);
    assert_eq!(out.taps["embedding"].dims(), [2, 4, 16]);
    assert_eq!(out.taps["encoder.1"].dims(), [2, 4, 16]);
    assert_eq!(out.taps["pooled"].dims(), [2, 16]);
    assert_eq!(out.logits.dims(), [2, 3]);
    // Layer by layer is Burn's own encoder forward.
    let whole = model.encoder.forward(
        TransformerEncoderInput::new(out.taps["embedding"].clone().sequence().unwrap())
            .mask_pad(padding.clone()),
    );
    let a: Vec<f32> = whole.into_data().iter::<f32>().collect();
    let b: Vec<f32> = out.taps["encoder"].to_data().iter::<f32>().collect();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    // Whatever sits at padded positions does not change the logits.
    let other = model.forward_taps((tokens([1, 2, 3, 9, 4, 7, 8, 5]), padding), &plan);
    let (x, y) = (out.logits.to_data(), other.logits.to_data());
    let (x, y): (Vec<f32>, Vec<f32>) = (x.iter().collect(), y.iter().collect());
    assert!(
        x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-5),
        "{x:?} vs {y:?}"
    );
}
