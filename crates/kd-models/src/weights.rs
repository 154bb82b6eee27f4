//! Weight import (torchvision state dicts from `.pth` / `.safetensors`) and our own
//! save / load in Burn's native burnpack format.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};

use crate::ModelError;
use crate::learner::{self, VisionLearner};
use crate::mobilenet::{self, MobileNetV2};
use crate::resnet::ResNet;

/// What to do with a checkpoint's classifier (`fc.*`) when its class count differs from the
/// model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Classifier {
    /// The classifier must match; a different shape is an error.
    #[default]
    Strict,
    /// Keep the model's freshly initialised classifier when the shapes differ (fastai cuts
    /// and re-heads a pretrained model the same way).
    ReplaceIfDifferent,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Tensors copied into the model.
    pub applied: usize,
    /// Checkpoint tensors deliberately left out (a replaced classifier, BN batch counters).
    pub skipped: Vec<String>,
}

/// A model whose parameters have torchvision names: what [`apply_torchvision`] imports into.
pub trait TorchvisionLayout: ModuleSnapshot + Module {
    /// torchvision's key for one of our parameter paths (in PyTorch's naming: `weight`/`bias`
    /// of a BatchNorm, not `gamma`/`beta`).
    fn torchvision_key(&self, ours: &str) -> String;

    /// The classifier's weight and bias keys (torchvision names), which
    /// [`Classifier::ReplaceIfDifferent`] may leave out.
    fn classifier_keys(&self) -> [&'static str; 2];
}

impl TorchvisionLayout for ResNet {
    /// Our module paths differ from torchvision's only in the shortcut: `downsample.conv` /
    /// `downsample.bn` versus `downsample.0` / `downsample.1`.
    fn torchvision_key(&self, ours: &str) -> String {
        ours.replace(".downsample.conv.", ".downsample.0.")
            .replace(".downsample.bn.", ".downsample.1.")
    }

    fn classifier_keys(&self) -> [&'static str; 2] {
        ["fc.weight", "fc.bias"]
    }
}

impl TorchvisionLayout for MobileNetV2 {
    /// `stem` is `features.0`, `blocks.i` is `features.{i+1}`, `head` is `features.18`,
    /// `classifier` is `classifier.1`; inside, the `conv`/`bn` of a ConvBNReLU6 are `0`/`1`.
    fn torchvision_key(&self, ours: &str) -> String {
        mobilenet::to_torchvision(ours, self.blocks.len()).unwrap_or_else(|| ours.to_string())
    }

    fn classifier_keys(&self) -> [&'static str; 2] {
        ["classifier.1.weight", "classifier.1.bias"]
    }
}

impl TorchvisionLayout for VisionLearner {
    /// fastai's keys, as `learn.save` writes them for `Sequential(body, head)`: the body's
    /// torchvision names under `0.` by child index (`layer1.0.conv1.weight` is
    /// `0.4.0.conv1.weight`), the head's under `1.` (`1.2` BatchNorm, `1.4` Linear, `1.6`
    /// BatchNorm, `1.8` Linear). The indices keep their gaps: ReLU, max-pool, pooling and
    /// Dropout hold no parameters.
    fn torchvision_key(&self, ours: &str) -> String {
        let fastai = match ours.split_once('.') {
            Some(("body", path)) => {
                learner::torchvision_to_fastai(&self.body.torchvision_key(path))
            }
            Some(("head", path)) => learner::head_to_fastai(path),
            _ => None,
        };
        fastai.unwrap_or_else(|| ours.to_string())
    }

    fn classifier_keys(&self) -> [&'static str; 2] {
        // fastai's last Linear has no bias (a BatchNorm precedes it).
        ["1.8.weight", "1.8.bias"]
    }
}

/// Whether a state dict is a whole fastai `vision_learner` model (`Sequential(body, head)`:
/// keys `0.0.weight` for the stem's convolution and `1.…` for the head).
fn is_fastai_learner(tensors: &BTreeMap<String, PackTensor>) -> bool {
    tensors.contains_key("0.0.weight") && tensors.keys().any(|k| k.starts_with("1."))
}

/// Load a checkpoint into a fastai learner: either a whole fastai model (`learn.save(…)` or
/// `torch.save(learn.model.state_dict())`; keys `0.…` and `1.…`), body and head, with
/// `classifier` deciding about the last Linear (`1.8`); or a torchvision ResNet, whose `fc` is
/// dropped as fastai cuts it, into the body (the head keeps its fresh weights).
pub fn load_learner(
    learner: &mut VisionLearner,
    path: &Path,
    classifier: Classifier,
) -> Result<ImportReport, ModelError> {
    let tensors = read_state_dict(path)?;
    let source = path.display().to_string();
    if is_fastai_learner(&tensors) {
        apply_torchvision(learner, tensors, classifier, &source)
    } else {
        apply_torchvision(
            &mut learner.body,
            tensors,
            Classifier::ReplaceIfDifferent,
            &source,
        )
    }
}

/// Each torchvision key of `model` with our path and the shape.
fn torchvision_names<M: TorchvisionLayout>(model: &M) -> BTreeMap<String, (String, Vec<usize>)> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| {
            (
                model.torchvision_key(&t.name),
                (t.name.clone(), t.shape.to_vec()),
            )
        })
        .collect()
}

/// Read every tensor of a torchvision checkpoint: `.safetensors`, or a PyTorch pickle
/// (`.pth` / `.pt` / `.bin`). A `state_dict` / `model` wrapper is unwrapped.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, PackTensor>, ModelError> {
    let read_err = |reason: String| ModelError::WeightsRead {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(read_err("no such file".into()));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tensors = if ext == "safetensors" {
        // Read now, not lazily from the path when first used (see `kd_core::load_module_except`).
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes));
        store
            .get_all_tensors()
            .map_err(|e| read_err(e.to_string()))?
            .clone()
    } else {
        // Keys as the file has them: Burn's reader would otherwise renumber `Sequential`
        // indices to be contiguous, moving torchvision's `classifier.1` (behind a Dropout)
        // to `classifier.0`.
        let store = || PytorchStore::from_file(path).map_indices_contiguous(false);
        let mut found = store()
            .get_all_tensors()
            .cloned()
            .map_err(|e| read_err(e.to_string()))?;
        // Checkpoints often wrap the state dict: `{"state_dict": …}`, or fastai's `learn.save`,
        // `{"model": …, "opt": …}`, which reads as keys `model.…` and `opt.…`.
        for key in ["state_dict", "model"] {
            let prefix = format!("{key}.");
            if !found.is_empty() && !found.keys().any(|k| k.starts_with(&prefix)) {
                continue;
            }
            if let Ok(t) = store().with_top_level_key(key).get_all_tensors()
                && !t.is_empty()
            {
                found = t.clone();
                break;
            }
        }
        found
    };
    if tensors.is_empty() {
        return Err(read_err("the file holds no tensors".into()));
    }
    Ok(tensors)
}

/// The torchvision key and shape of every tensor `model` holds (BatchNorm statistics included,
/// `fc.weight` as `[out, in]`).
pub fn torchvision_keys<M: TorchvisionLayout>(model: &M) -> BTreeMap<String, Vec<usize>> {
    torchvision_names(model)
        .into_iter()
        .map(|(key, (_, shape))| (key, shape))
        .collect()
}

/// Copy torchvision-named tensors into `model`.
///
/// Every problem is reported at once, by key: tensors the model needs that the checkpoint
/// lacks, checkpoint tensors the model has no place for, and shape mismatches. `source` names the
/// checkpoint in messages.
pub fn apply_torchvision<M: TorchvisionLayout>(
    model: &mut M,
    tensors: BTreeMap<String, PackTensor>,
    classifier: Classifier,
    source: &str,
) -> Result<ImportReport, ModelError> {
    let names = torchvision_names(model);
    let mut expected = torchvision_keys(model);
    let classifier_keys = model.classifier_keys();
    let mut report = ImportReport::default();
    let mut given = BTreeMap::new();
    for (name, tensor) in tensors {
        if name.ends_with("num_batches_tracked") {
            report.skipped.push(name);
        } else {
            given.insert(name, tensor);
        }
    }
    if classifier == Classifier::ReplaceIfDifferent {
        let [weight, _] = classifier_keys;
        let fc_differs = classifier_keys.iter().any(|k| {
            let want = expected.get(*k);
            let have = given.get(*k).map(|t| t.shape.to_vec());
            want.is_some() && have.is_some() && want != have.as_ref()
        }) || (!expected.contains_key(weight) && given.contains_key(weight));
        if fc_differs {
            for key in classifier_keys {
                expected.remove(key);
                if given.remove(key).is_some() {
                    report.skipped.push(key.to_string());
                }
            }
        }
    }
    let missing: Vec<String> = expected
        .keys()
        .filter(|k| !given.contains_key(*k))
        .cloned()
        .collect();
    let unexpected: Vec<String> = given
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .cloned()
        .collect();
    let misshaped: Vec<(String, Vec<usize>, Vec<usize>)> = given
        .iter()
        .filter_map(|(k, t)| {
            let want = expected.get(k)?;
            let have = t.shape.to_vec();
            (*want != have).then(|| (k.clone(), want.clone(), have))
        })
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
        return Err(ModelError::WeightsMismatch {
            checkpoint: source.to_string(),
            // Named only when it is not the model's own architecture.
            looks_like: looks_like(given.keys())
                .filter(|a| looks_like(expected.keys()) != Some(*a)),
            missing,
            unexpected,
            misshaped,
        });
    }
    let renamed: Vec<PackTensor> = given
        .into_values()
        .map(|mut t| {
            // Every key was checked against `expected`, built from `names`.
            t.name = names[&t.name].0.clone();
            t
        })
        .collect();
    let result = model.apply(renamed, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    // A replaced classifier is missing on purpose.
    let missing = result
        .missing
        .iter()
        .filter(|(path, _)| !report.skipped.contains(&model.torchvision_key(path)));
    if !result.errors.is_empty() || missing.count() > 0 {
        return Err(ModelError::WeightsApply {
            checkpoint: source.to_string(),
            reason: result.to_string(),
        });
    }
    report.applied = result.applied.len();
    Ok(report)
}

/// Load a torchvision checkpoint (`.pth`, `.pt` or `.safetensors`) into `model` (a ResNet or a
/// MobileNetV2).
pub fn load_torchvision<M: TorchvisionLayout>(
    model: &mut M,
    path: &Path,
    classifier: Classifier,
) -> Result<ImportReport, ModelError> {
    let tensors = read_state_dict(path)?;
    apply_torchvision(model, tensors, classifier, &path.display().to_string())
}

/// Write float32 tensors as a `.safetensors` file (atomically: a temporary file renamed into
/// place), keys sorted.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, PackTensor>,
) -> Result<(), ModelError> {
    let save_err = |reason: String| {
        ModelError::File(kd_core::ModuleFileError::Save {
            path: path.to_path_buf(),
            reason,
        })
    };
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let td = burn::store::bridge::to_data(t).map_err(|e| save_err(format!("{name}: {e}")))?;
        let values: Vec<f32> = td
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| save_err(format!("{name}: {e:?}")))?;
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape.to_vec(), "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&header).map_err(|e| save_err(e.to_string()))?;
    // The data section starts 8-byte aligned.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend(data);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = path.with_extension(format!("{}-{nanos}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| save_err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| save_err(e.to_string()))
}

/// The bundled architecture whose torchvision (or fastai learner) keys these are, told by the number of blocks
/// in each ResNet stage and whether they are bottlenecks, or by MobileNetV2's `features.18`.
fn looks_like<'a>(keys: impl Iterator<Item = &'a String>) -> Option<&'static str> {
    let mut blocks = [0usize; 4];
    let (mut bottleneck, mut mobilenet) = (false, false);
    for key in keys {
        // A fastai learner's body keys (`0.4.1.conv2.weight`) in torchvision's names.
        let key = learner::fastai_to_torchvision(key).unwrap_or_else(|| key.clone());
        mobilenet |= key.starts_with("features.18.");
        bottleneck |= key.contains(".conv3.");
        let Some(rest) = key.strip_prefix("layer") else {
            continue;
        };
        let mut parts = rest.split('.');
        let stage = parts.next().and_then(|s| s.parse::<usize>().ok());
        let block = parts.next().and_then(|b| b.parse::<usize>().ok());
        if let (Some(stage @ 1..=4), Some(block)) = (stage, block) {
            blocks[stage - 1] = blocks[stage - 1].max(block + 1);
        }
    }
    if mobilenet {
        return Some("mobilenet_v2");
    }
    let arch = match (blocks, bottleneck) {
        ([2, 2, 2, 2], false) => "resnet18",
        ([3, 4, 6, 3], false) => "resnet34",
        ([3, 4, 6, 3], true) => "resnet50",
        ([3, 4, 23, 3], true) => "resnet101",
        ([3, 8, 36, 3], true) => "resnet152",
        _ => return None,
    };
    Some(arch)
}
