//! A causal transformer language model (GPT-style, pre-norm) over bytes or characters: token
//! and learned position embeddings, blocks of causal self-attention and an MLP on a residual
//! stream, a final norm and a linear head giving next-token logits at every position. Every
//! block's residual stream, attention output and MLP output is a named tap.

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::transformer::{PositionWiseFeedForward, PositionWiseFeedForwardConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor};
use kd_core::{FeatureModel, Outputs, TapPlan, TapRecorder};

use crate::TokensAndPadding;

/// Settings of a [`LanguageModel`]. The defaults (4 blocks of width 128, 4 heads, 128
/// positions, vocabulary 256) make a byte-level model of about 0.85 M parameters.
#[derive(Config, Debug)]
pub struct LanguageModelConfig {
    /// Vocabulary size (256 for bytes).
    #[config(default = 256)]
    pub vocab: usize,
    /// Width of the residual stream.
    #[config(default = 128)]
    pub width: usize,
    /// Transformer blocks.
    #[config(default = 4)]
    pub blocks: usize,
    /// Attention heads (a divisor of `width`).
    #[config(default = 4)]
    pub heads: usize,
    /// The longest context (positions have learned embeddings).
    #[config(default = 128)]
    pub max_len: usize,
    /// Dropout in attention and MLP.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LanguageModelConfig {
    /// A model with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> LanguageModel {
        let blocks = (0..self.blocks)
            .map(|_| LmBlock {
                attention_norm: LayerNormConfig::new(self.width).init(device),
                attention: MultiHeadAttentionConfig::new(self.width, self.heads)
                    .with_dropout(self.dropout)
                    .init(device),
                mlp_norm: LayerNormConfig::new(self.width).init(device),
                mlp: PositionWiseFeedForwardConfig::new(self.width, 4 * self.width)
                    .with_dropout(self.dropout)
                    .init(device),
            })
            .collect();
        LanguageModel {
            tokens: EmbeddingConfig::new(self.vocab, self.width).init(device),
            positions: EmbeddingConfig::new(self.max_len, self.width).init(device),
            blocks,
            norm: LayerNormConfig::new(self.width).init(device),
            head: LinearConfig::new(self.width, self.vocab).init(device),
        }
    }
}

/// One pre-norm transformer block: `x + attention(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct LmBlock {
    /// Norm before attention.
    pub attention_norm: LayerNorm,
    /// Causal multi-head self-attention.
    pub attention: MultiHeadAttention,
    /// Norm before the MLP.
    pub mlp_norm: LayerNorm,
    /// Position-wise MLP (4× wide, GELU).
    pub mlp: PositionWiseFeedForward,
}

/// A causal transformer language model; see [`LanguageModelConfig`] and
/// [`generate`](Self::generate).
///
/// Input: token ids `[batch, positions]` with padding flags (as [`TokensAndPadding`]; padding
/// on the right, which causal attention never lets a valid position see, so the flags only
/// tell the loss which positions count). Output: next-token logits `[batch, positions, vocab]`.
/// Taps: `embedding`; per block `i`: `blocks.{i}.attention` (attention output),
/// `blocks.{i}.mlp` (MLP output), `blocks.{i}` (the residual stream after the block); `norm`
/// (the final normalised stream), each `[batch, positions, width]`.
#[derive(Module, Debug)]
pub struct LanguageModel {
    /// Token embeddings.
    pub tokens: Embedding,
    /// Learned position embeddings.
    pub positions: Embedding,
    /// The blocks.
    pub blocks: Vec<LmBlock>,
    /// The final norm.
    pub norm: LayerNorm,
    /// Next-token logits.
    pub head: Linear,
}

impl LanguageModel {
    /// The longest context the position embeddings cover.
    pub fn max_len(&self) -> usize {
        self.positions.weight.dims()[0]
    }

    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Next-token logits `[batch, positions, vocab]` of `tokens` (at most
    /// [`max_len`](Self::max_len) positions), recording the taps `plan` asks for.
    pub fn forward_recording(&self, tokens: Tensor<2, Int>, taps: &mut TapRecorder) -> Tensor<3> {
        let [batch, len] = tokens.dims();
        let device = tokens.device();
        let index = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .repeat_dim(0, batch);
        let mut x = self.tokens.forward(tokens) + self.positions.forward(index);
        taps.offer("embedding", &x);
        let causal: Tensor<3, Bool> =
            burn::nn::attention::generate_autoregressive_mask(batch, len, &device);
        for (i, block) in self.blocks.iter().enumerate() {
            let input = MhaInput::self_attn(block.attention_norm.forward(x.clone()))
                .mask_attn(causal.clone());
            let attended = block.attention.forward(input).context;
            taps.offer(&format!("blocks.{i}.attention"), &attended);
            x = x + attended;
            let mlp = block.mlp.forward(block.mlp_norm.forward(x.clone()));
            taps.offer(&format!("blocks.{i}.mlp"), &mlp);
            x = x + mlp;
            taps.offer(&format!("blocks.{i}"), &x);
        }
        let x = self.norm.forward(x);
        taps.offer("norm", &x);
        self.head.forward(x)
    }
}

impl FeatureModel<TokensAndPadding> for LanguageModel {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        let blocks = (0..self.blocks.len()).flat_map(|i| {
            [
                format!("blocks.{i}.attention"),
                format!("blocks.{i}.mlp"),
                format!("blocks.{i}"),
            ]
        });
        std::iter::once("embedding".to_string())
            .chain(blocks)
            .chain(std::iter::once("norm".to_string()))
            .map(|p| (p, None))
            .collect()
    }

    fn forward_taps(&self, (tokens, _padding): TokensAndPadding, plan: &TapPlan) -> Outputs {
        let mut taps = TapRecorder::new(plan);
        let logits = self.forward_recording(tokens, &mut taps);
        taps.finish(logits)
    }

    fn device(&self) -> Device {
        self.head.weight.val().device()
    }
}
