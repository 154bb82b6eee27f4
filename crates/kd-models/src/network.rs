//! One type for "a model the trainer can use": a plain ResNet, a fastai `vision_learner` or a
//! MobileNetV2 — named in experiment files and on the command line by [`NetworkArch`].

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{
    Arch, FeatureModel, MobileNetV2, MobileNetV2Config, ModelError, Outputs, ResNet, ResNetConfig,
    StridePlacement, TapPlan, VisionLearner,
};

/// A network family and size: `resnet18` … `resnet152` or `mobilenet_v2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkArch {
    /// A ResNet of the given depth.
    ResNet(Arch),
    /// torchvision's MobileNetV2 (width 1.0).
    MobileNetV2,
}

impl NetworkArch {
    /// The name in experiment files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NetworkArch::ResNet(arch) => arch.name(),
            NetworkArch::MobileNetV2 => "mobilenet_v2",
        }
    }

    /// Every architecture's name.
    pub fn names() -> Vec<String> {
        Arch::ALL
            .iter()
            .map(|a| a.name().to_string())
            .chain(std::iter::once("mobilenet_v2".to_string()))
            .collect()
    }
}

impl From<Arch> for NetworkArch {
    fn from(arch: Arch) -> Self {
        NetworkArch::ResNet(arch)
    }
}

impl std::fmt::Display for NetworkArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for NetworkArch {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.to_ascii_lowercase().replace(['-', '_'], "") == "mobilenetv2" {
            return Ok(NetworkArch::MobileNetV2);
        }
        s.parse::<Arch>()
            .map(NetworkArch::ResNet)
            .map_err(|_| ModelError::UnknownArch {
                name: s.to_string(),
                allowed: Self::names(),
            })
    }
}

impl Serialize for NetworkArch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for NetworkArch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Classifier on top of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// torchvision's own classifier: a ResNet's `avgpool` + `fc` (fastai's
    /// `Learner(dls, resnet18(num_classes=2))`), MobileNetV2's `classifier`.
    #[default]
    Linear,
    /// fastai's `vision_learner` head (concat pool, two BN/dropout/linear blocks); ResNets only.
    Fastai,
}

/// How to build a [`Network`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Family and size.
    pub arch: NetworkArch,
    /// Classifier.
    #[serde(default)]
    pub head: Head,
    /// Stride placement in bottlenecks (Keras weights need `conv1x1`).
    #[serde(default)]
    pub stride: StridePlacement,
    /// BatchNorm epsilon.
    #[serde(default = "default_eps")]
    pub bn_eps: f64,
}

fn default_eps() -> f64 {
    1e-5
}

impl NetworkConfig {
    /// A torchvision-style network of `arch`.
    pub fn new(arch: impl Into<NetworkArch>, head: Head) -> Self {
        Self {
            arch: arch.into(),
            head,
            stride: StridePlacement::Conv3x3,
            bn_eps: 1e-5,
        }
    }

    /// The ResNet part of this config (`None` for another family).
    pub fn resnet(&self) -> Option<ResNetConfig> {
        match self.arch {
            NetworkArch::ResNet(arch) => Some(
                ResNetConfig::new(arch)
                    .with_stride(self.stride)
                    .with_bn_eps(self.bn_eps),
            ),
            NetworkArch::MobileNetV2 => None,
        }
    }

    /// Whether the settings fit together: fastai's head and the ResNet stride and epsilon
    /// settings exist for ResNets only.
    pub fn check(&self) -> Result<(), String> {
        if self.arch == NetworkArch::MobileNetV2 {
            if self.head == Head::Fastai {
                return Err(
                    "mobilenet_v2 has torchvision's classifier only: head = \"linear\"".into(),
                );
            }
            if self.stride != StridePlacement::Conv3x3 || self.bn_eps != default_eps() {
                return Err(
                    "stride and bn_eps are ResNet settings; mobilenet_v2 takes neither".into(),
                );
            }
        }
        Ok(())
    }

    /// A freshly initialised network with `classes` outputs. (For settings that
    /// [`check`](Self::check) rejects, MobileNetV2 keeps its own classifier.)
    pub fn init(&self, classes: usize, device: &Device) -> Network {
        match (self.resnet(), self.head) {
            (Some(resnet), Head::Linear) => {
                Network::ResNet(resnet.with_classes(Some(classes)).init(device))
            }
            (Some(resnet), Head::Fastai) => {
                Network::Learner(VisionLearner::from_config(&resnet, classes, device))
            }
            (None, _) => Network::MobileNetV2(MobileNetV2Config::new(classes).init(device)),
        }
    }
}

/// A plain ResNet, a fastai `vision_learner` model or a MobileNetV2. (Every variant is a few
/// hundred bytes of parameter handles; boxing would only add an indirection.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// torchvision layout.
    ResNet(ResNet),
    /// fastai layout (`Sequential(body, head)`).
    Learner(VisionLearner),
    /// torchvision's MobileNetV2.
    MobileNetV2(MobileNetV2),
}

impl FeatureModel for Network {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        match self {
            Network::ResNet(m) => m.layer_paths(),
            Network::Learner(m) => m.layer_paths(),
            Network::MobileNetV2(m) => m.layer_paths(),
        }
    }

    fn canonical(&self, name: &str) -> Option<String> {
        match self {
            Network::ResNet(m) => m.canonical(name),
            Network::Learner(m) => m.canonical(name),
            Network::MobileNetV2(m) => m.canonical(name),
        }
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        match self {
            Network::ResNet(m) => m.forward_taps(input, plan),
            Network::Learner(m) => m.forward_taps(input, plan),
            Network::MobileNetV2(m) => m.forward_taps(input, plan),
        }
    }

    fn device(&self) -> Device {
        match self {
            Network::ResNet(m) => m.device(),
            Network::Learner(m) => m.device(),
            Network::MobileNetV2(m) => m.device(),
        }
    }
}
