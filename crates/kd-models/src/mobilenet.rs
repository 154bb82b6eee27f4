//! MobileNetV2 (Sandler et al., 2018) in torchvision's layout, with named feature taps: every
//! torchvision module path (`features.0` … `features.18`, `features.N.conv.M`, `classifier.1`)
//! can be tapped through the same contract as the ResNets.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Initializer, Linear, LinearConfig,
    PaddingConfig2d,
};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::resnet::{conv_init, initialize_now, offer_at};
use kd_core::{FeatureModel, Outputs, TapPlan, TapRecorder};

/// torchvision's inverted-residual setting: expansion `t`, output channels `c`, repeats `n`,
/// first stride `s`.
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// torchvision's `_make_divisible`: the nearest multiple of `divisor`, never below `divisor` nor
/// more than 10 % below `v`.
fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = divisor.max(((v + d / 2.0) as usize) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// How to build a [`MobileNetV2`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileNetV2Config {
    /// Output classes of `classifier.1`.
    pub num_classes: usize,
    /// Width multiplier of every layer (torchvision's `width_mult`; the last layer never
    /// narrows below 1280 channels).
    pub width_mult: f64,
    /// Dropout before the classifier (`classifier.0`).
    pub dropout: f64,
}

impl MobileNetV2Config {
    /// torchvision's defaults for `classes` classes: width 1.0, dropout 0.2.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            width_mult: 1.0,
            dropout: 0.2,
        }
    }

    /// Set the width multiplier.
    pub fn with_width_mult(mut self, width_mult: f64) -> Self {
        self.width_mult = width_mult;
        self
    }

    /// Build with torchvision's initialisation: convolutions Kaiming-normal (fan-out),
    /// BatchNorm weight 1 / bias 0 (eps 1e-5, momentum 0.1), the classifier N(0, 0.01) with
    /// zero bias.
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        let mut in_ch = make_divisible(32.0 * self.width_mult, 8);
        let last = make_divisible(1280.0 * self.width_mult.max(1.0), 8);
        let stem = ConvBnAct::new(3, in_ch, 3, 2, 1, device);
        let mut blocks = Vec::new();
        for (t, c, n, s) in SETTING {
            let out_ch = make_divisible(c as f64 * self.width_mult, 8);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                blocks.push(InvertedResidual::new(in_ch, out_ch, stride, t, device));
                in_ch = out_ch;
            }
        }
        let head = ConvBnAct::new(in_ch, last, 1, 1, 1, device);
        let classifier = LinearConfig::new(last, self.num_classes)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            })
            .init(device);
        let classifier = Linear {
            bias: classifier.bias.map(|b| b.map(|t| t.zeros_like())),
            ..classifier
        };
        let model = MobileNetV2 {
            stem,
            blocks,
            head,
            dropout: DropoutConfig::new(self.dropout).init(),
            classifier,
        };
        initialize_now(&model);
        model
    }
}

fn conv(
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let pad = (kernel - 1) / 2;
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(conv_init())
        .init(device)
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// torchvision's `Conv2dNormActivation`: convolution (`.0`), BatchNorm (`.1`), ReLU6 (`.2`).
#[derive(Module, Debug)]
pub struct ConvBnAct {
    /// The convolution, no bias (`.0`).
    pub conv: Conv2d,
    /// Its BatchNorm (`.1`).
    pub bn: BatchNorm,
}

impl ConvBnAct {
    fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        Self {
            conv: conv(in_ch, out_ch, kernel, stride, groups, device),
            bn: bn(out_ch, device),
        }
    }

    fn forward(&self, x: Tensor<4>, prefix: Option<&str>, sink: &mut TapRecorder) -> Tensor<4> {
        let x = self.conv.forward(x);
        offer_at(sink, prefix, "0", &x);
        let x = self.bn.forward(x);
        offer_at(sink, prefix, "1", &x);
        let x = relu6(x);
        offer_at(sink, prefix, "2", &x);
        x
    }

    fn paths(prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_string());
        for child in ["0", "1", "2"] {
            out.push(format!("{prefix}.{child}"));
        }
    }
}

/// An inverted residual block (`features.N`): optional 1×1 expansion, 3×3 depthwise, linear
/// 1×1 projection, and the identity added when the shape allows.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1×1 expansion to `t ×` the input channels (`conv.0`); absent when `t = 1`.
    pub expand: Option<ConvBnAct>,
    /// 3×3 depthwise convolution, strided (`conv.0` or `conv.1`).
    pub depthwise: ConvBnAct,
    /// Linear 1×1 projection (`conv.1` or `conv.2`).
    pub project: Conv2d,
    /// Its BatchNorm (`conv.2` or `conv.3`).
    pub project_bn: BatchNorm,
}

impl InvertedResidual {
    fn new(in_ch: usize, out_ch: usize, stride: usize, t: usize, device: &Device) -> Self {
        let hidden = in_ch * t;
        Self {
            expand: (t != 1).then(|| ConvBnAct::new(in_ch, hidden, 1, 1, 1, device)),
            depthwise: ConvBnAct::new(hidden, hidden, 3, stride, hidden, device),
            project: conv(hidden, out_ch, 1, 1, 1, device),
            project_bn: bn(out_ch, device),
        }
    }

    fn residual(&self) -> bool {
        let [out_ch, _, _, _] = self.project.weight.dims();
        let [_, in_ch, _, _] = match &self.expand {
            Some(e) => e.conv.weight.dims(),
            None => [0, self.depthwise.conv.weight.dims()[0], 0, 0],
        };
        let [stride, _] = self.depthwise.conv.stride;
        stride == 1 && in_ch == out_ch
    }

    /// The names of `conv`'s children in torchvision's order.
    fn children(&self) -> [&'static str; 4] {
        if self.expand.is_some() {
            ["conv.0", "conv.1", "conv.2", "conv.3"]
        } else {
            ["", "conv.0", "conv.1", "conv.2"]
        }
    }

    fn forward(&self, x: Tensor<4>, prefix: Option<&str>, sink: &mut TapRecorder) -> Tensor<4> {
        let [expand, depthwise, project, project_bn] = self.children();
        let sub = |child: &str| prefix.map(|p| format!("{p}.{child}"));
        let mut y = x.clone();
        if let Some(e) = &self.expand {
            y = e.forward(y, sub(expand).as_deref(), sink);
            offer_at(sink, prefix, expand, &y);
        }
        let y = self.depthwise.forward(y, sub(depthwise).as_deref(), sink);
        offer_at(sink, prefix, depthwise, &y);
        let y = self.project.forward(y);
        offer_at(sink, prefix, project, &y);
        let y = self.project_bn.forward(y);
        offer_at(sink, prefix, project_bn, &y);
        offer_at(sink, prefix, "conv", &y);
        if self.residual() { x + y } else { y }
    }

    fn paths(&self, prefix: &str, out: &mut Vec<String>) {
        out.push(prefix.to_string());
        out.push(format!("{prefix}.conv"));
        let [expand, depthwise, project, project_bn] = self.children();
        if self.expand.is_some() {
            ConvBnAct::paths(&format!("{prefix}.{expand}"), out);
        }
        ConvBnAct::paths(&format!("{prefix}.{depthwise}"), out);
        out.push(format!("{prefix}.{project}"));
        out.push(format!("{prefix}.{project_bn}"));
    }
}

/// MobileNetV2 with torchvision's module names. Use [`FeatureModel`] for named taps.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// 3×3/2 stem (`features.0`).
    pub stem: ConvBnAct,
    /// The 17 inverted residual blocks (`features.1` … `features.17`).
    pub blocks: Vec<InvertedResidual>,
    /// The last 1×1 convolution to 1280 channels (`features.18`).
    pub head: ConvBnAct,
    /// Dropout before the classifier (`classifier.0`).
    pub dropout: Dropout,
    /// The classifier (`classifier.1`).
    pub classifier: Linear,
}

impl MobileNetV2 {
    /// `features.N` for every entry of torchvision's `features`.
    fn feature_names(&self) -> impl Iterator<Item = String> + use<> {
        (0..self.blocks.len() + 2).map(|n| format!("features.{n}"))
    }
}

impl FeatureModel for MobileNetV2 {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        let mut out = vec!["features".to_string()];
        ConvBnAct::paths("features.0", &mut out);
        for (i, block) in self.blocks.iter().enumerate() {
            block.paths(&format!("features.{}", i + 1), &mut out);
        }
        ConvBnAct::paths(&format!("features.{}", self.blocks.len() + 1), &mut out);
        out.extend(["classifier", "classifier.0", "classifier.1"].map(String::from));
        out.into_iter().map(|p| (p, None)).collect()
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        let mut sink = TapRecorder::new(plan);
        let names: Vec<String> = self.feature_names().collect();
        let deep = |sink: &TapRecorder, n: usize| {
            sink.plan()
                .wants_under(&names[n])
                .then(|| names[n].as_str())
        };
        let prefix = deep(&sink, 0);
        let mut x = self.stem.forward(input, prefix, &mut sink);
        sink.offer(&names[0], &x);
        for (i, block) in self.blocks.iter().enumerate() {
            let prefix = deep(&sink, i + 1);
            x = block.forward(x, prefix, &mut sink);
            sink.offer(&names[i + 1], &x);
        }
        let last = self.blocks.len() + 1;
        let prefix = deep(&sink, last);
        let x = self.head.forward(x, prefix, &mut sink);
        sink.offer(&names[last], &x);
        sink.offer("features", &x);
        let pooled: Tensor<2> = adaptive_avg_pool2d(x, [1, 1]).flatten(1, 3);
        let pooled = self.dropout.forward(pooled);
        sink.offer("classifier.0", &pooled);
        let logits = self.classifier.forward(pooled);
        sink.offer("classifier.1", &logits);
        sink.offer("classifier", &logits);
        sink.finish(logits)
    }

    fn device(&self) -> Device {
        self.classifier.weight.device()
    }
}

/// torchvision's key for one of our parameter paths (`blocks.3.depthwise.conv.weight` →
/// `features.4.conv.1.0.weight`), given each block's expansion. `None` for a path that is not
/// a MobileNetV2 parameter.
pub(crate) fn to_torchvision(path: &str, blocks: usize) -> Option<String> {
    let conv_bn = |rest: &str| -> Option<String> {
        let (field, tail) = rest.split_once('.')?;
        let index = match field {
            "conv" => "0",
            "bn" => "1",
            _ => return None,
        };
        Some(format!("{index}.{tail}"))
    };
    if let Some(rest) = path.strip_prefix("stem.") {
        return Some(format!("features.0.{}", conv_bn(rest)?));
    }
    if let Some(rest) = path.strip_prefix("head.") {
        return Some(format!("features.{}.{}", blocks + 1, conv_bn(rest)?));
    }
    if let Some(rest) = path.strip_prefix("classifier.") {
        return Some(format!("classifier.1.{rest}"));
    }
    let rest = path.strip_prefix("blocks.")?;
    let (index, rest) = rest.split_once('.')?;
    let i: usize = index.parse().ok()?;
    let (field, tail) = rest.split_once('.')?;
    // Block 0 (expansion 1) has no `expand`: its children start at conv.0 with the depthwise.
    let shift = usize::from(i > 0);
    let child = match field {
        "expand" => format!("conv.0.{}", conv_bn(tail)?),
        "depthwise" => format!("conv.{shift}.{}", conv_bn(tail)?),
        "project" => format!("conv.{}.{tail}", shift + 1),
        "project_bn" => format!("conv.{}.{tail}", shift + 2),
        _ => return None,
    };
    Some(format!("features.{}.{child}", i + 1))
}
