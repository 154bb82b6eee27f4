//! fastai's `vision_learner` model: a pretrained body plus fastai's classification head, with
//! fastai module paths (`0.4` … `0.7`, `1.x`) and torchvision paths both resolving to the taps.

use burn::module::Module;
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
};
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

use crate::resnet::{BODY_CHILDREN, ResNet, ResNetConfig};
use kd_core::{FeatureModel, Outputs, TapPlan, TapRecorder};

/// fastai's head for a body with `nf` output channels:
/// AdaptiveConcatPool2d → Flatten → BN1d(2nf) → Dropout(0.25) → Linear(2nf, 512, no bias) → ReLU
/// → BN1d(512) → Dropout(0.5) → Linear(512, n, no bias).
#[derive(Module, Debug)]
pub struct FastaiHead {
    /// `1.2`: BatchNorm1d over the pooled features.
    pub bn1: BatchNorm,
    /// `1.3`: Dropout(0.25).
    pub drop1: Dropout,
    /// `1.4`: Linear(2·nf, 512), no bias.
    pub lin1: Linear,
    /// `1.6`: BatchNorm1d(512).
    pub bn2: BatchNorm,
    /// `1.7`: Dropout(0.5).
    pub drop2: Dropout,
    /// `1.8`: Linear(512, classes), no bias.
    pub lin2: Linear,
}

/// The head's fastai paths in pre-order (the containers `0` and `1` resolve as taps too, but
/// are not listed: they repeat `0.7` and `1.8`).
const HEAD_PATHS: [&str; 11] = [
    "1.0", "1.0.ap", "1.0.mp", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8",
];

impl FastaiHead {
    /// fastai's `create_head(2·nf, n)` with its init: Kaiming-normal linear weights, BatchNorm
    /// weight 1 and bias 1e-3.
    pub fn new(nf: usize, num_classes: usize, device: &Device) -> Self {
        let bn = |c: usize| {
            let mut bn = BatchNormConfig::new(c).init(device);
            bn.beta = Initializer::Constant { value: 1e-3 }.init([c], device);
            bn
        };
        let lin = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_bias(false)
                .with_initializer(Initializer::KaimingNormal {
                    gain: std::f64::consts::SQRT_2,
                    fan_out_only: false,
                })
                .init(device)
        };
        let head = Self {
            bn1: bn(2 * nf),
            drop1: DropoutConfig::new(0.25).init(),
            lin1: lin(2 * nf, 512),
            bn2: bn(512),
            drop2: DropoutConfig::new(0.5).init(),
            lin2: lin(512, num_classes),
        };
        crate::resnet::initialize_now(&head);
        head
    }

    fn forward(&self, x: Tensor<4>, sink: &mut TapRecorder) -> Tensor<2> {
        let [b, c, h, w] = x.dims();
        let avg = adaptive_avg_pool2d(x.clone(), [1, 1]);
        sink.offer("1.0.ap", &avg);
        let max = x.reshape([b, c, h * w]).max_dim(2).reshape([b, c, 1, 1]);
        sink.offer("1.0.mp", &max);
        let pooled = Tensor::cat(vec![max, avg], 1);
        sink.offer("1.0", &pooled);
        let y: Tensor<2> = pooled.flatten(1, 3);
        sink.offer("1.1", &y);
        let y = self.bn1.forward(y);
        sink.offer("1.2", &y);
        let y = self.drop1.forward(y);
        sink.offer("1.3", &y);
        let y = self.lin1.forward(y);
        sink.offer("1.4", &y);
        let y = relu(y);
        sink.offer("1.5", &y);
        let y = self.bn2.forward(y);
        sink.offer("1.6", &y);
        let y = self.drop2.forward(y);
        sink.offer("1.7", &y);
        let y = self.lin2.forward(y);
        sink.offer("1.8", &y);
        sink.offer("1", &y);
        y
    }
}

/// `Sequential(body, head)` as fastai's `vision_learner` builds it.
#[derive(Module, Debug)]
pub struct VisionLearner {
    /// The ResNet body (no `fc`); fastai path `0`.
    pub body: ResNet,
    /// The fastai head; fastai path `1`.
    pub head: FastaiHead,
}

impl VisionLearner {
    /// Put fastai's head on `body` (its `fc`, if any, is dropped, as fastai cuts the model).
    pub fn new(mut body: ResNet, num_classes: usize) -> Self {
        body.fc = None;
        let device = body.device();
        let head = FastaiHead::new(body.num_features(), num_classes, &device);
        Self { body, head }
    }

    /// A fresh (randomly initialised) body of `config` with a fastai head.
    pub fn from_config(config: &ResNetConfig, num_classes: usize, device: &Device) -> Self {
        Self::new(config.clone().with_classes(None).init(device), num_classes)
    }

    /// fastai's `freeze()`: stop training the body's convolutions. As with fastai's default
    /// `train_bn=True`, the body's BatchNorm layers and the whole head stay trainable.
    pub fn freeze(mut self) -> Self {
        let body = &mut self.body;
        body.conv1 = body.conv1.clone().no_grad();
        for stage in [
            &mut body.layer1,
            &mut body.layer2,
            &mut body.layer3,
            &mut body.layer4,
        ] {
            for block in stage.iter_mut() {
                block.conv1 = block.conv1.clone().no_grad();
                block.conv2 = block.conv2.clone().no_grad();
                block.conv3 = block.conv3.take().map(|c| c.no_grad());
                if let Some(ds) = block.downsample.as_mut() {
                    ds.conv = ds.conv.clone().no_grad();
                }
            }
        }
        self
    }

    /// fastai's `unfreeze()`: every parameter trainable again.
    pub fn unfreeze(self) -> Self {
        self.set_require_grad(true)
    }
}

/// `0.k.rest` → torchvision body path, e.g. `0.4.1.conv2` → `layer1.1.conv2`; `0` → `layer4`.
pub(crate) fn fastai_to_torchvision(path: &str) -> Option<String> {
    let rest = path.strip_prefix('0')?;
    if rest.is_empty() {
        return Some("layer4".into());
    }
    let rest = rest.strip_prefix('.')?;
    let (index, tail) = rest
        .split_once('.')
        .map_or((rest, None), |(i, t)| (i, Some(t)));
    let child = BODY_CHILDREN.get(index.parse::<usize>().ok()?)?;
    Some(match tail {
        Some(tail) => format!("{child}.{tail}"),
        None => child.to_string(),
    })
}

/// `layer1.1.conv2` → `0.4.1.conv2`: a torchvision body path as fastai's `Sequential(body,
/// head)` names it.
pub(crate) fn torchvision_to_fastai(path: &str) -> Option<String> {
    let (child, tail) = path
        .split_once('.')
        .map_or((path, None), |(c, t)| (c, Some(t)));
    let index = BODY_CHILDREN.iter().position(|c| *c == child)?;
    Some(match tail {
        Some(tail) => format!("0.{index}.{tail}"),
        None => format!("0.{index}"),
    })
}

/// fastai's key for a parameter path inside [`FastaiHead`]: `bn1.weight` → `1.2.weight`.
pub(crate) fn head_to_fastai(path: &str) -> Option<String> {
    let (module, tail) = path.split_once('.')?;
    let index = match module {
        "bn1" => "1.2",
        "lin1" => "1.4",
        "bn2" => "1.6",
        "lin2" => "1.8",
        _ => return None,
    };
    Some(format!("{index}.{tail}"))
}

impl FeatureModel for VisionLearner {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        for tv in self.body.body_paths() {
            if let Some(fastai) = torchvision_to_fastai(&tv) {
                out.push((fastai, Some(tv)));
            }
        }
        out.extend(HEAD_PATHS.iter().map(|p| (p.to_string(), None)));
        out
    }

    fn canonical(&self, name: &str) -> Option<String> {
        let body = self.body.body_paths();
        if body.iter().any(|p| p == name) {
            return Some(name.to_string());
        }
        if let Some(tv) = fastai_to_torchvision(name) {
            return body.contains(&tv).then_some(tv);
        }
        match name {
            "1" => Some("1.8".into()),
            _ => HEAD_PATHS.contains(&name).then(|| name.to_string()),
        }
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        let mut sink = TapRecorder::new(plan);
        let features = self.body.forward_body(input, &mut sink);
        let logits = self.head.forward(features, &mut sink);
        sink.finish(logits)
    }

    fn device(&self) -> Device {
        self.body.device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastai_paths_map_to_torchvision_and_back() {
        for (fastai, tv) in [
            ("0.0", "conv1"),
            ("0.3", "maxpool"),
            ("0.4", "layer1"),
            ("0.7", "layer4"),
            ("0.5.1.conv2", "layer2.1.conv2"),
            ("0.6.0.downsample.0", "layer3.0.downsample.0"),
        ] {
            assert_eq!(fastai_to_torchvision(fastai).as_deref(), Some(tv));
            assert_eq!(torchvision_to_fastai(tv).as_deref(), Some(fastai));
        }
        assert_eq!(fastai_to_torchvision("0").as_deref(), Some("layer4"));
        assert_eq!(fastai_to_torchvision("0.8"), None);
        assert_eq!(fastai_to_torchvision("1.4"), None);
        assert_eq!(fastai_to_torchvision("0.x"), None);
    }
}
