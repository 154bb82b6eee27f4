//! A model kd did not ship: three conv stages (each halving the resolution), global pooling and a
//! linear classifier, with layer names of its own. Implementing kd's [`FeatureModel`] is all it
//! takes to distill it — as a student or as a teacher. Shared by `examples/custom_model` and the
//! contract tests (`crates/kd-core/tests/custom_model.rs`, `tests/custom_model.rs`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};
use kd_core::{FeatureModel, Outputs, TapPlan, TapRecorder};

/// Three conv stages of `width`, `2·width` and `4·width` channels, then a linear classifier.
#[derive(Module, Debug)]
pub struct SmallCnn {
    stem: Conv2d,
    pub stage1: Conv2d,
    stage2: Conv2d,
    pub classifier: Linear,
}

/// The tappable layers, in forward order.
pub const LAYERS: [&str; 5] = ["stem", "stage1", "stage2", "pool", "classifier"];

impl SmallCnn {
    /// A fresh network for `classes` classes.
    pub fn new(width: usize, classes: usize, device: &Device) -> Self {
        let conv = |i: usize, o: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            stem: conv(3, width),
            stage1: conv(width, 2 * width),
            stage2: conv(2 * width, 4 * width),
            classifier: LinearConfig::new(4 * width, classes).init(device),
        }
    }
}

impl FeatureModel for SmallCnn {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        LAYERS.iter().map(|p| (p.to_string(), None)).collect()
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        let mut taps = TapRecorder::new(plan);
        let x = relu(self.stem.forward(input));
        taps.offer("stem", &x);
        let x = relu(self.stage1.forward(x));
        taps.offer("stage1", &x);
        let x = relu(self.stage2.forward(x));
        taps.offer("stage2", &x);
        let pooled = adaptive_avg_pool2d(x, [1, 1]);
        taps.offer("pool", &pooled);
        let logits: Tensor<2> = self.classifier.forward(pooled.flatten(1, 3));
        taps.offer("classifier", &logits);
        taps.finish(logits)
    }

    fn device(&self) -> Device {
        self.classifier.weight.device()
    }
}
