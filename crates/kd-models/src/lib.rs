//! # kd-models
//!
//! ResNet 18/34/50/101/152 and MobileNetV2 for knowledge distillation: torchvision layout and initialisation,
//! **named feature taps** (ask for any module paths and get them with the logits from one
//! forward pass), a layer listing like fastai's `get_model_layers`, fastai's `vision_learner`
//! model (pretrained body + fastai head, fastai path names), and weight import; for sequences,
//! a transformer text classifier and a causal transformer language model with seeded sampling.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use kd_models::{Arch, FeatureModel, ResNetConfig};
//!
//! let device = Device::flex();
//! let model = ResNetConfig::new(Arch::ResNet18).with_classes(Some(2)).init(&device);
//! let plan = model.tap_plan(&["layer1", "layer4"]).unwrap();
//! let out = model.forward_taps(Tensor::zeros([1, 3, 64, 64], &device), &plan);
//! assert_eq!(out.logits.dims(), [1, 2]);
//! assert_eq!(out.taps["layer1"].dims(), [1, 64, 16, 16]);
//! assert!(model.tap_plan(&["layer5"]).is_err()); // lists the nearest valid names
//! ```

mod generate;
pub mod keras;
mod language_model;
mod learner;
mod mobilenet;
mod resnet;
mod text;
pub mod weights;

use std::path::PathBuf;

pub use generate::{GenerateError, Sampling};
pub use kd_core::{
    FeatureModel, IMAGENET_MEAN, IMAGENET_STD, LayerInfo, Outputs, TapPlan, TapRecorder,
    nearest_names,
};
pub use language_model::{LanguageModel, LanguageModelConfig, LmBlock};
pub use learner::{FastaiHead, VisionLearner};
pub use mobilenet::{ConvBnAct, InvertedResidual, MobileNetV2, MobileNetV2Config};
pub use resnet::{Arch, Block, Downsample, ResNet, ResNetConfig, StridePlacement};
pub use text::{TextClassifier, TextClassifierConfig, TokensAndPadding};

/// Everything that can go wrong when building, tapping or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An architecture name that is not one of ours.
    #[error("unknown architecture `{name}`; expected one of: {}", allowed.join(", "))]
    UnknownArch {
        /// What was asked for.
        name: String,
        /// The valid names.
        allowed: Vec<String>,
    },
    /// A tap name the model does not have, or a tap that was not computed.
    #[error(transparent)]
    Tap(#[from] kd_core::TapError),
    /// A weights file that could not be read.
    #[error("cannot read weights from {}: {reason}", path.display())]
    WeightsRead {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A checkpoint whose keys or shapes do not fit the model.
    #[error(
        "{}",
        mismatch_message(checkpoint, looks_like, missing, unexpected, misshaped)
    )]
    WeightsMismatch {
        /// The checkpoint.
        checkpoint: String,
        /// The bundled architecture the checkpoint's keys and shapes fit, when one does.
        looks_like: Option<&'static str>,
        /// Keys the model needs that the checkpoint lacks.
        missing: Vec<String>,
        /// Checkpoint keys the model has no place for.
        unexpected: Vec<String>,
        /// `(key, model shape, checkpoint shape)`.
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// Burn refused to apply tensors that passed our checks.
    #[error("cannot apply weights from {checkpoint}: {reason}")]
    WeightsApply {
        /// The checkpoint.
        checkpoint: String,
        /// Burn's report.
        reason: String,
    },
    /// A Keras / TF.js model that does not have the expected structure.
    #[error("Keras model, layer `{layer}`: {reason}")]
    Keras {
        /// The layer or weight.
        layer: String,
        /// What is unexpected.
        reason: String,
    },
    /// A model file (Burn's own format) that could not be written or read back.
    #[error(transparent)]
    File(#[from] kd_core::ModuleFileError),
}

/// At most this many keys of each kind are listed in a mismatch message.
const LISTED_KEYS: usize = 8;

fn mismatch_message(
    source: &str,
    looks_like: &Option<&'static str>,
    missing: &[String],
    unexpected: &[String],
    misshaped: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut msg = format!("weights in {source} do not fit the model");
    if let Some(arch) = looks_like {
        msg += &format!(" (the file looks like a {arch} state dict)");
    }
    msg += ":";
    let list = |keys: &[String]| {
        let mut text = keys
            .iter()
            .take(LISTED_KEYS)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if keys.len() > LISTED_KEYS {
            text += &format!(" … and {} more", keys.len() - LISTED_KEYS);
        }
        text
    };
    if !missing.is_empty() {
        msg += &format!("\n  missing keys: {}", list(missing));
    }
    if !unexpected.is_empty() {
        msg += &format!("\n  unexpected keys: {}", list(unexpected));
    }
    for (key, want, have) in misshaped.iter().take(LISTED_KEYS) {
        msg += &format!("\n  `{key}`: model expects shape {want:?}, checkpoint has {have:?}");
    }
    if misshaped.len() > LISTED_KEYS {
        msg += &format!(
            "\n  … and {} more keys of other shapes",
            misshaped.len() - LISTED_KEYS
        );
    }
    msg
}

mod network;
pub use network::{Head, Network, NetworkArch, NetworkConfig};
