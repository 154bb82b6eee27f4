//! ResNet checkpoints as torchvision and fastai themselves write them (`torch.save` pickles, made
//! by `tests/fixtures/make_resnet_pth.py`, stored gzipped): they load, key for key, and give the
//! logits PyTorch computed.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ModuleSnapshot, ModuleStore, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use common::{rel_err, to_tensor};
use kd_models::weights::{Classifier, load_learner, load_torchvision, torchvision_keys};
use kd_models::{Arch, FeatureModel, ResNetConfig, VisionLearner};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture `name` (gzipped) decompressed to a `.pth` file in `dir`.
fn unpacked(name: &str, dir: &Path) -> PathBuf {
    let file = std::fs::File::open(fixtures().join(format!("{name}.pth.gz"))).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    let path = dir.join(format!("{name}.pth"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// PyTorch's input and logits for model `which` (`torchvision` or `fastai`).
fn reference(which: &str, device: &Device) -> (Tensor<4>, Tensor<2>) {
    let fx = SafetensorsStore::from_file(fixtures().join("resnet18_pth_logits.safetensors"))
        .get_all_tensors()
        .unwrap()
        .clone();
    (
        to_tensor(&fx["input"], device),
        to_tensor(&fx[which], device),
    )
}

#[test]
fn torchvisions_own_resnet_pth_loads_and_gives_torchvisions_logits() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = unpacked("resnet18_torchvision", dir.path());
    let mut model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(3))
        .init(&device);
    let report = load_torchvision(&mut model, &path, Classifier::Strict).expect("loads");
    assert_eq!(report.applied, torchvision_keys(&model).len());
    let (input, logits) = reference("torchvision", &device);
    let err = rel_err(model.valid().forward_logits(input).rows(), logits);
    assert!(err < 1e-4, "logits: relative error {err}");
}

/// fastai's `learn.save`: `{"model": state_dict, "opt": …}` with `Sequential` indices that skip
/// the parameter-free children (`0.2` ReLU, `0.3` max-pool, `1.0` pooling, `1.3` Dropout…). A
/// reader renumbering them to be contiguous would put `0.4` (layer1) at `0.2` and `1.4` at `1.1`.
#[test]
fn fastais_own_learner_pth_loads_body_and_head() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = unpacked("resnet18_fastai", dir.path());
    let config = ResNetConfig::new(Arch::ResNet18).with_classes(None);
    let mut learner = VisionLearner::from_config(&config, 3, &device);
    let report = load_learner(&mut learner, &path, Classifier::Strict).expect("loads");
    // Every tensor the learner holds (BatchNorm statistics included), fastai's counters skipped.
    assert_eq!(report.applied, torchvision_keys(&learner).len());
    assert_eq!(report.applied, learner.collect(None, None, true).len());
    assert!(
        report
            .skipped
            .iter()
            .all(|k| k.ends_with("num_batches_tracked"))
    );
    let (input, logits) = reference("fastai", &device);
    let err = rel_err(learner.valid().forward_logits(input).rows(), logits);
    assert!(err < 1e-4, "logits: relative error {err}");
}

/// The head is fastai's, so its keys are fastai's numbers, gaps kept.
#[test]
fn a_learners_keys_are_fastais() {
    let device = Device::flex();
    let config = ResNetConfig::new(Arch::ResNet18).with_classes(None);
    let keys = torchvision_keys(&VisionLearner::from_config(&config, 3, &device));
    for (key, shape) in [
        ("0.0.weight", vec![64, 3, 7, 7]),
        ("0.1.running_var", vec![64]),
        ("0.4.0.conv1.weight", vec![64, 64, 3, 3]),
        ("0.5.0.downsample.0.weight", vec![128, 64, 1, 1]),
        ("0.7.1.bn2.bias", vec![512]),
        ("1.2.weight", vec![1024]),
        ("1.4.weight", vec![512, 1024]),
        ("1.6.running_mean", vec![512]),
        ("1.8.weight", vec![3, 512]),
    ] {
        assert_eq!(keys.get(key), Some(&shape), "{key}");
    }
    assert!(!keys.contains_key("1.8.bias"));
    assert!(
        !keys
            .keys()
            .any(|k| k.starts_with("0.2") || k.starts_with("1.1"))
    );
}

/// A torchvision ResNet loads into a learner's body; the fastai head stays as it was.
#[test]
fn a_torchvision_resnet_loads_into_a_learners_body() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = unpacked("resnet18_torchvision", dir.path());
    let config = ResNetConfig::new(Arch::ResNet18).with_classes(None);
    let mut learner = VisionLearner::from_config(&config, 5, &device);
    let head_before = learner.head.lin2.weight.val();
    let report = load_learner(&mut learner, &path, Classifier::Strict).expect("loads");
    assert_eq!(report.applied, torchvision_keys(&learner.body).len());
    assert!(report.skipped.contains(&"fc.weight".to_string()));
    let head_after = learner.head.lin2.weight.val();
    assert_eq!(
        head_before.into_data().try_to_vec::<f32>().unwrap(),
        head_after.into_data().try_to_vec::<f32>().unwrap()
    );
    // The body holds torchvision's tensors, where torchvision has them.
    let mut model = ResNetConfig::new(Arch::ResNet18)
        .with_classes(Some(3))
        .init(&device);
    load_torchvision(&mut model, &path, Classifier::Strict).unwrap();
    let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(
        values(learner.body.conv1.weight.val()),
        values(model.conv1.weight.val())
    );
    assert_eq!(
        values(learner.body.layer3[0].conv2.weight.val()),
        values(model.layer3[0].conv2.weight.val())
    );
}

/// A fastai checkpoint of another depth is refused, and the message says which it looks like.
#[test]
fn a_fastai_checkpoint_of_another_depth_is_named() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = unpacked("resnet18_fastai", dir.path());
    let config = ResNetConfig::new(Arch::ResNet34).with_classes(None);
    let mut learner = VisionLearner::from_config(&config, 3, &device);
    let err = load_learner(&mut learner, &path, Classifier::Strict).unwrap_err();
    assert!(err.to_string().contains("resnet18"), "{err}");
}
