//! One type for "a model the trainer can use": a plain ResNet or a fastai `vision_learner`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{
    Arch, FeatureModel, Outputs, ResNet, ResNetConfig, StridePlacement, TapPlan, VisionLearner,
};

/// Classifier on top of the ResNet body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// torchvision's `avgpool` + `fc` (fastai's `Learner(dls, resnet18(num_classes=2))`).
    #[default]
    Linear,
    /// fastai's `vision_learner` head (concat pool, two BN/dropout/linear blocks).
    Fastai,
}

/// How to build a [`Network`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Depth.
    pub arch: Arch,
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
    pub fn new(arch: Arch, head: Head) -> Self {
        Self {
            arch,
            head,
            stride: StridePlacement::Conv3x3,
            bn_eps: 1e-5,
        }
    }

    /// The ResNet part of this config.
    pub fn resnet(&self) -> ResNetConfig {
        ResNetConfig::new(self.arch)
            .with_stride(self.stride)
            .with_bn_eps(self.bn_eps)
    }

    /// A freshly initialised network with `classes` outputs.
    pub fn init(&self, classes: usize, device: &Device) -> Network {
        match self.head {
            Head::Linear => Network::ResNet(self.resnet().with_classes(Some(classes)).init(device)),
            Head::Fastai => {
                Network::Learner(VisionLearner::from_config(&self.resnet(), classes, device))
            }
        }
    }
}

/// A plain ResNet or a fastai `vision_learner` model. (Both variants are a few hundred bytes of
/// parameter handles; boxing would only add an indirection.)
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// torchvision layout.
    ResNet(ResNet),
    /// fastai layout (`Sequential(body, head)`).
    Learner(VisionLearner),
}

impl FeatureModel for Network {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        match self {
            Network::ResNet(m) => m.layer_paths(),
            Network::Learner(m) => m.layer_paths(),
        }
    }

    fn canonical(&self, name: &str) -> Option<String> {
        match self {
            Network::ResNet(m) => m.canonical(name),
            Network::Learner(m) => m.canonical(name),
        }
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        match self {
            Network::ResNet(m) => m.forward_taps(input, plan),
            Network::Learner(m) => m.forward_taps(input, plan),
        }
    }

    fn device(&self) -> Device {
        match self {
            Network::ResNet(m) => m.device(),
            Network::Learner(m) => m.device(),
        }
    }
}
