//! ResNet 18/34/50/101/152 in torchvision's layout, with named feature taps.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use kd_core::{FeatureModel, Outputs, TapPlan, TapRecorder};

/// ResNet depth. Blocks per stage follow He et al. (2016) and torchvision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-18: BasicBlock ×[2, 2, 2, 2].
    ResNet18,
    /// ResNet-34: BasicBlock ×[3, 4, 6, 3].
    ResNet34,
    /// ResNet-50: Bottleneck ×[3, 4, 6, 3].
    ResNet50,
    /// ResNet-101: Bottleneck ×[3, 4, 23, 3].
    ResNet101,
    /// ResNet-152: Bottleneck ×[3, 8, 36, 3].
    ResNet152,
}

impl Arch {
    /// Every architecture, shallowest first.
    pub const ALL: [Arch; 5] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
        Arch::ResNet152,
    ];

    /// Blocks in each of the four stages.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
            Arch::ResNet101 => [3, 4, 23, 3],
            Arch::ResNet152 => [3, 8, 36, 3],
        }
    }

    /// Whether the stages use bottleneck blocks (1×1 → 3×3 → 1×1, expansion 4).
    pub fn bottleneck(self) -> bool {
        !matches!(self, Arch::ResNet18 | Arch::ResNet34)
    }

    /// Channels of the last stage's output (512 or 2048).
    pub fn num_features(self) -> usize {
        if self.bottleneck() { 2048 } else { 512 }
    }

    /// The lowercase name (`resnet18` …).
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
            Arch::ResNet101 => "resnet101",
            Arch::ResNet152 => "resnet152",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace(['-', '_'], "");
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| ModelError::UnknownArch {
                name: s.to_string(),
                allowed: Arch::ALL.iter().map(|a| a.name().to_string()).collect(),
            })
    }
}

/// Where a bottleneck block puts its stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StridePlacement {
    /// On the 3×3 convolution: ResNet v1.5, torchvision.
    #[default]
    Conv3x3,
    /// On the first 1×1 convolution: the original ResNet v1 (Caffe, Keras).
    Conv1x1,
}

/// How to build a [`ResNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Depth.
    pub arch: Arch,
    /// Output classes of the `fc` layer; `None` builds a body without a classifier.
    pub num_classes: Option<usize>,
    /// Stride placement in bottleneck blocks (BasicBlocks always stride their first 3×3).
    pub stride: StridePlacement,
    /// BatchNorm epsilon (torchvision 1e-5, Keras 1e-3).
    pub bn_eps: f64,
}

impl ResNetConfig {
    /// torchvision defaults: v1.5 strides, BN eps 1e-5, a 1000-class classifier.
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            num_classes: Some(1000),
            stride: StridePlacement::Conv3x3,
            bn_eps: 1e-5,
        }
    }

    /// Set the number of classes (`None`: no classifier).
    pub fn with_classes(mut self, num_classes: Option<usize>) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Set the stride placement.
    pub fn with_stride(mut self, stride: StridePlacement) -> Self {
        self.stride = stride;
        self
    }

    /// Set the BatchNorm epsilon.
    pub fn with_bn_eps(mut self, bn_eps: f64) -> Self {
        self.bn_eps = bn_eps;
        self
    }

    /// Build with torchvision's initialisation: convolutions Kaiming-normal (fan-out, ReLU gain),
    /// BatchNorm weight 1 / bias 0, the classifier uniform ±1/√fan_in.
    pub fn init(&self, device: &Device) -> ResNet {
        let bn = |c: usize| {
            BatchNormConfig::new(c)
                .with_epsilon(self.bn_eps)
                .init(device)
        };
        let expansion = if self.arch.bottleneck() { 4 } else { 1 };
        let mut in_ch = 64;
        let mut stages = Vec::with_capacity(4);
        for (stage, &count) in self.arch.blocks().iter().enumerate() {
            let planes = 64 << stage;
            let mut blocks = Vec::with_capacity(count);
            for i in 0..count {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let out_ch = planes * expansion;
                let downsample = (stride != 1 || in_ch != out_ch).then(|| Downsample {
                    conv: conv(in_ch, out_ch, 1, stride, device),
                    bn: bn(out_ch),
                });
                let block = if self.arch.bottleneck() {
                    let (s1, s3) = match self.stride {
                        StridePlacement::Conv3x3 => (1, stride),
                        StridePlacement::Conv1x1 => (stride, 1),
                    };
                    Block {
                        conv1: conv(in_ch, planes, 1, s1, device),
                        bn1: bn(planes),
                        conv2: conv(planes, planes, 3, s3, device),
                        bn2: bn(planes),
                        conv3: Some(conv(planes, out_ch, 1, 1, device)),
                        bn3: Some(bn(out_ch)),
                        downsample,
                    }
                } else {
                    Block {
                        conv1: conv(in_ch, planes, 3, stride, device),
                        bn1: bn(planes),
                        conv2: conv(planes, planes, 3, 1, device),
                        bn2: bn(planes),
                        conv3: None,
                        bn3: None,
                        downsample,
                    }
                };
                blocks.push(block);
                in_ch = out_ch;
            }
            stages.push(blocks);
        }
        let mut stages = stages.into_iter();
        let mut next = || stages.next().unwrap_or_default();
        let model = ResNet {
            conv1: Conv2dConfig::new([3, 64], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false)
                .with_initializer(conv_init())
                .init(device),
            bn1: bn(64),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            fc: self
                .num_classes
                .map(|n| LinearConfig::new(in_ch, n).init(device)),
        };
        initialize_now(&model);
        model
    }
}

/// Burn initialises parameters lazily, on first use, drawing from the device's generator in
/// whatever order they happen to be used. Drawing them all right away makes an initialisation
/// after `device.seed(s)` reproducible.
pub(crate) fn initialize_now<M: Module>(model: &M) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

/// torchvision's convolution init: Kaiming-normal, fan-out, ReLU gain.
pub(crate) fn conv_init() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

fn conv(in_ch: usize, out_ch: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(conv_init())
        .init(device)
}

/// The 1×1 convolution + BatchNorm shortcut (torchvision's `downsample.0` / `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 strided convolution (`downsample.0`).
    pub conv: Conv2d,
    /// Its BatchNorm (`downsample.1`).
    pub bn: BatchNorm,
}

/// A residual block: BasicBlock when `conv3` is `None`, Bottleneck otherwise.
#[derive(Module, Debug)]
pub struct Block {
    /// First convolution (3×3 basic, 1×1 bottleneck).
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// Second convolution (3×3).
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// Third convolution (1×1 expansion), bottleneck only.
    pub conv3: Option<Conv2d>,
    /// BatchNorm after `conv3`, bottleneck only.
    pub bn3: Option<BatchNorm>,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<Downsample>,
}

/// Offer `value` as `prefix.suffix` when the block's prefix is being tapped.
pub(crate) fn offer_at(
    sink: &mut TapRecorder,
    prefix: Option<&str>,
    suffix: &str,
    value: &Tensor<4>,
) {
    if let Some(prefix) = prefix {
        sink.offer(&format!("{prefix}.{suffix}"), value);
    }
}

impl Block {
    fn forward(&self, x: Tensor<4>, prefix: Option<&str>, sink: &mut TapRecorder) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(ds) => {
                let y = ds.conv.forward(x.clone());
                offer_at(sink, prefix, "downsample.0", &y);
                let y = ds.bn.forward(y);
                offer_at(sink, prefix, "downsample.1", &y);
                offer_at(sink, prefix, "downsample", &y);
                y
            }
            None => x.clone(),
        };
        let y = self.conv1.forward(x);
        offer_at(sink, prefix, "conv1", &y);
        let y = self.bn1.forward(y);
        offer_at(sink, prefix, "bn1", &y);
        let y = relu(y);
        let y = self.conv2.forward(y);
        offer_at(sink, prefix, "conv2", &y);
        let mut y = self.bn2.forward(y);
        offer_at(sink, prefix, "bn2", &y);
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            y = conv3.forward(relu(y));
            offer_at(sink, prefix, "conv3", &y);
            y = bn3.forward(y);
            offer_at(sink, prefix, "bn3", &y);
        }
        let out = relu(y + identity);
        // torchvision reuses one ReLU module; a hook on it keeps its last call, the block output.
        offer_at(sink, prefix, "relu", &out);
        out
    }

    fn child_paths(&self, prefix: &str, out: &mut Vec<String>) {
        let mut push = |s: &str| out.push(format!("{prefix}.{s}"));
        push("conv1");
        push("bn1");
        if self.conv3.is_none() {
            push("relu");
        }
        push("conv2");
        push("bn2");
        if self.conv3.is_some() {
            push("conv3");
            push("bn3");
            push("relu");
        }
        if self.downsample.is_some() {
            push("downsample");
            push("downsample.0");
            push("downsample.1");
        }
    }
}

/// ResNet with torchvision module names. Use [`FeatureModel`] for named taps.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem 7×7/2 convolution.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm,
    /// Stem 3×3/2 max-pool (padding 1).
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 4 overall).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 8).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 16).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 32).
    pub layer4: Vec<Block>,
    /// Classifier; `None` for a body.
    pub fc: Option<Linear>,
}

/// The stem and stage names, in order, with fastai's body indices `0.0` … `0.7`.
pub(crate) const BODY_CHILDREN: [&str; 8] = [
    "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
];

impl ResNet {
    fn stages(&self) -> [(&'static str, &Vec<Block>); 4] {
        [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
            ("layer4", &self.layer4),
        ]
    }

    /// Channels of the body's output.
    pub fn num_features(&self) -> usize {
        let [out, _, _, _] = self
            .layer4
            .last()
            .map(|b| b.conv3.as_ref().unwrap_or(&b.conv2).weight.dims())
            .unwrap_or([0; 4]);
        out
    }

    /// Stem and four stages (everything before `avgpool`), offering taps on the way.
    pub(crate) fn forward_body(&self, x: Tensor<4>, sink: &mut TapRecorder) -> Tensor<4> {
        let x = self.conv1.forward(x);
        sink.offer("conv1", &x);
        let x = self.bn1.forward(x);
        sink.offer("bn1", &x);
        let x = relu(x);
        sink.offer("relu", &x);
        let mut x = self.maxpool.forward(x);
        sink.offer("maxpool", &x);
        for (name, blocks) in self.stages() {
            let deep = sink.plan().wants_under(name);
            for (j, block) in blocks.iter().enumerate() {
                let prefix = deep.then(|| format!("{name}.{j}"));
                x = block.forward(x, prefix.as_deref(), sink);
                if let Some(prefix) = &prefix {
                    sink.offer(prefix, &x);
                }
            }
            sink.offer(name, &x);
        }
        x
    }

    /// Every body path (stem and stages) in pre-order.
    pub(crate) fn body_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = BODY_CHILDREN[..4].iter().map(|s| s.to_string()).collect();
        for (name, blocks) in self.stages() {
            out.push(name.to_string());
            for (j, block) in blocks.iter().enumerate() {
                let prefix = format!("{name}.{j}");
                out.push(prefix.clone());
                block.child_paths(&prefix, &mut out);
            }
        }
        out
    }
}

impl FeatureModel for ResNet {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        let mut paths = self.body_paths();
        paths.push("avgpool".into());
        if self.fc.is_some() {
            paths.push("fc".into());
        }
        paths.into_iter().map(|p| (p, None)).collect()
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        let mut sink = TapRecorder::new(plan);
        let x = self.forward_body(input, &mut sink);
        let pooled = adaptive_avg_pool2d(x, [1, 1]);
        sink.offer("avgpool", &pooled);
        let flat: Tensor<2> = pooled.flatten(1, 3);
        let logits = match &self.fc {
            Some(fc) => {
                let logits = fc.forward(flat);
                sink.offer("fc", &logits);
                logits
            }
            None => flat,
        };
        sink.finish(logits)
    }

    fn device(&self) -> Device {
        self.conv1.weight.device()
    }
}
