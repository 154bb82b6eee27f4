//! What this binary adds to kd's built-ins: the custom CNN as `small_cnn` (with a `width`
//! setting) and a loss kind of its own, `logit_cosine`. Shared by `main.rs` and the test that
//! runs an experiment naming them (`tests/registry.rs`).

#[path = "../custom_model/small_cnn.rs"]
mod small_cnn;

use burn::tensor::Tensor;
use kd::core::{KdInput, KdLoss, LossError, paired_logits};
use kd::registry::Registry;
use serde::Deserialize;
use small_cnn::SmallCnn;

/// `small_cnn`'s settings: the keys of its `[student]` / `[teacher]` section besides `arch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmallCnnSettings {
    /// Channels of the first stage (the next two have 2× and 4×).
    #[serde(default = "default_width")]
    width: usize,
}

fn default_width() -> usize {
    16
}

/// `1 − cos(student logits, teacher logits)`, averaged over the batch and scaled: a logit loss
/// blind to the logits' scale. `{ kind = "logit_cosine", scale = 2.0 }` in an experiment file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogitCosine {
    /// Multiplies the loss (default 1).
    #[serde(default = "one")]
    scale: f64,
}

fn one() -> f64 {
    1.0
}

impl KdLoss for LogitCosine {
    fn name(&self) -> &'static str {
        "LogitCosine"
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        let dot = (s.clone() * t.clone()).sum_dim(1);
        let norms = (s.powi_scalar(2).sum_dim(1) * t.powi_scalar(2).sum_dim(1)).sqrt();
        let cosine = dot / norms.clamp_min(1e-12);
        Ok((cosine.neg() + 1.0).mean() * self.scale)
    }
}

/// kd's built-ins plus `small_cnn` and `logit_cosine`.
pub fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry
        .register_model("small_cnn", |s: &SmallCnnSettings, classes, device| {
            if s.width == 0 {
                return Err("width must be at least 1".into());
            }
            Ok(SmallCnn::new(s.width, classes, device))
        })
        .register_loss("logit_cosine", |loss: LogitCosine| Ok(loss));
    registry
}
