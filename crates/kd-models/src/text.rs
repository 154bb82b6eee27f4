//! A transformer text classifier in the shape of Burn's own text-classification example: token
//! and position embeddings, Burn's `TransformerEncoder`, a mean over the positions the padding
//! mask keeps, a linear head — every stage tappable.

use burn::config::Config;
use burn::module::Module;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
use kd_core::{FeatureModel, Outputs, TapPlan, TapRecorder};

/// What a text model eats: token ids `[batch, positions]` and the padding flags
/// `[batch, positions]` (`true` at padding, Burn's `mask_pad` convention).
pub type TokensAndPadding = (Tensor<2, Int>, Tensor<2, Bool>);

/// Settings of a [`TextClassifier`].
#[derive(Config, Debug)]
pub struct TextClassifierConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Classes.
    pub classes: usize,
    /// Width of the token representations.
    #[config(default = 64)]
    pub width: usize,
    /// Encoder layers.
    #[config(default = 2)]
    pub layers: usize,
    /// Attention heads (a divisor of `width`).
    #[config(default = 4)]
    pub heads: usize,
    /// The longest sequence (positions have learned embeddings).
    #[config(default = 64)]
    pub max_len: usize,
    /// Dropout inside the encoder.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl TextClassifierConfig {
    /// A classifier with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> TextClassifier {
        TextClassifier {
            tokens: EmbeddingConfig::new(self.vocab, self.width).init(device),
            positions: EmbeddingConfig::new(self.max_len, self.width).init(device),
            encoder: TransformerEncoderConfig::new(
                self.width,
                4 * self.width,
                self.heads,
                self.layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .init(device),
            head: LinearConfig::new(self.width, self.classes).init(device),
        }
    }
}

/// A transformer text classifier. Taps: `embedding` (`[batch, positions, width]`, tokens plus
/// positions), `encoder.0` … `encoder.{layers − 1}` (each layer's output) and `encoder` (the
/// last), `pooled` (`[batch, width]`, the mean over unpadded positions) and `head` (the
/// logits).
#[derive(Module, Debug)]
pub struct TextClassifier {
    /// Token embeddings.
    pub tokens: Embedding,
    /// Learned position embeddings.
    pub positions: Embedding,
    /// The encoder.
    pub encoder: TransformerEncoder,
    /// The classifier.
    pub head: Linear,
}

impl FeatureModel<TokensAndPadding> for TextClassifier {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        let layers = (0..self.encoder.layers.len()).map(|i| format!("encoder.{i}"));
        std::iter::once("embedding".to_string())
            .chain(layers)
            .chain(["encoder", "pooled", "head"].map(String::from))
            .map(|p| (p, None))
            .collect()
    }

    fn forward_taps(&self, (tokens, pad): TokensAndPadding, plan: &TapPlan) -> Outputs {
        let mut taps = TapRecorder::new(plan);
        let [batch, len] = tokens.dims();
        let device = tokens.device();
        let index = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .repeat_dim(0, batch);
        let mut x = self.tokens.forward(tokens) + self.positions.forward(index);
        taps.offer("embedding", &x);
        // Burn's `TransformerEncoder::forward`, layer by layer so each can be tapped.
        for (i, layer) in self.encoder.layers.iter().enumerate() {
            x = layer.forward(x, Some(pad.clone()), None);
            taps.offer(&format!("encoder.{i}"), &x);
        }
        taps.offer("encoder", &x);
        let keep: Tensor<3> = pad.bool_not().float().unsqueeze_dim(2);
        let count: Tensor<2> = keep.clone().sum_dim(1).squeeze_dim(1);
        let pooled: Tensor<2> = (x * keep).sum_dim(1).squeeze_dim::<2>(1) / count.clamp_min(1.0);
        taps.offer("pooled", &pooled);
        let logits = self.head.forward(pooled);
        taps.offer("head", &logits);
        taps.finish(logits)
    }

    fn device(&self) -> Device {
        self.head.weight.val().device()
    }
}
