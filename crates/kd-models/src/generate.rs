//! Sampling continuations from a [`LanguageModel`]: temperature and top-k, tape-free, and the
//! same tokens for the same seed on one backend.

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use kd_core::{TapPlan, TapRecorder, splitmix64};
use serde::{Deserialize, Serialize};

use crate::LanguageModel;

/// How each next token is drawn: from `softmax(logits / temperature)` restricted to the
/// `top_k` most likely tokens (0: all of them; 1: greedy).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Divides the logits; positive (default 1).
    pub temperature: f64,
    /// Draw among this many most likely tokens; 0 draws among all (default 0, as TRL's GKD
    /// trainer samples).
    pub top_k: usize,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
        }
    }
}

/// Why [`LanguageModel::generate`] refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    /// A prompt without tokens: there is nothing to continue.
    #[error("prompt {index} is empty; every prompt needs at least one token")]
    EmptyPrompt {
        /// Which prompt.
        index: usize,
    },
    /// A prompt token outside the vocabulary.
    #[error("prompt {index} holds token {token}, outside the model's vocabulary of {vocab}")]
    Token {
        /// Which prompt.
        index: usize,
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A temperature that is not a positive finite number.
    #[error("sampling temperature {0} must be a positive finite number")]
    Temperature(f64),
}

impl LanguageModel {
    /// Each prompt followed by `new_tokens` sampled tokens. Runs without autodiff and in
    /// evaluation mode (dropout off); the model sees at most the last
    /// [`max_len`](Self::max_len) tokens of each sequence. The draws come from `seed`, the
    /// step and the prompt's index (SplitMix64), so a fixed seed gives the same tokens on one
    /// backend; another backend's last-bit differences in the logits may change a draw.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        new_tokens: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<Vec<Vec<u32>>, GenerateError> {
        let vocab = self.vocab();
        if !(sampling.temperature > 0.0 && sampling.temperature.is_finite()) {
            return Err(GenerateError::Temperature(sampling.temperature));
        }
        for (index, prompt) in prompts.iter().enumerate() {
            if prompt.is_empty() {
                return Err(GenerateError::EmptyPrompt { index });
            }
            if let Some(&token) = prompt.iter().find(|&&t| t as usize >= vocab) {
                return Err(GenerateError::Token {
                    index,
                    token,
                    vocab,
                });
            }
        }
        let model = self.valid();
        let device = kd_core::FeatureModel::device(&model);
        let plan = TapPlan::none();
        let mut sequences = prompts.to_vec();
        for step in 0..new_tokens {
            if sequences.is_empty() {
                break;
            }
            let contexts: Vec<&[u32]> = sequences
                .iter()
                .map(|s| &s[s.len().saturating_sub(model.max_len())..])
                .collect();
            let len = contexts.iter().map(|c| c.len()).max().unwrap_or(1);
            let batch = contexts.len();
            let mut ids = vec![0i64; batch * len];
            for (i, context) in contexts.iter().enumerate() {
                for (p, &t) in context.iter().enumerate() {
                    ids[i * len + p] = i64::from(t);
                }
            }
            let last: Vec<i64> = contexts
                .iter()
                .enumerate()
                .map(|(i, c)| (i * len + c.len() - 1) as i64)
                .collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, len]), &device);
            let logits = model.forward_recording(tokens, &mut TapRecorder::new(&plan));
            let rows = Tensor::<1, Int>::from_data(TensorData::new(last, [batch]), &device);
            let scores: Vec<f32> = logits
                .reshape([batch * len, vocab])
                .select(0, rows)
                .into_data()
                .convert::<f32>()
                .iter::<f32>()
                .collect();
            for (i, sequence) in sequences.iter_mut().enumerate() {
                let draw = uniform(seed, step, i);
                sequence.push(sample(&scores[i * vocab..(i + 1) * vocab], sampling, draw));
            }
        }
        Ok(sequences)
    }
}

/// A uniform draw in `[0, 1)` for prompt `index` at `step`, from `seed` alone.
fn uniform(seed: u64, step: usize, index: usize) -> f64 {
    let stream = splitmix64(seed).wrapping_add(splitmix64(step as u64) ^ index as u64);
    (splitmix64(stream) >> 11) as f64 / (1u64 << 53) as f64
}

/// The token `draw` picks from `scores` under `sampling`: candidates in descending order of
/// score (ties by id), cut to `top_k`, softmax at the temperature, inverse CDF.
fn sample(scores: &[f32], sampling: Sampling, draw: f64) -> u32 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    if sampling.top_k > 0 {
        order.truncate(sampling.top_k);
    }
    let top = f64::from(scores[order[0]]);
    let weights: Vec<f64> = order
        .iter()
        .map(|&t| ((f64::from(scores[t]) - top) / sampling.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut left = draw * total;
    for (&token, w) in order.iter().zip(&weights) {
        if left < *w {
            return token as u32;
        }
        left -= w;
    }
    order[order.len() - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_best_score_and_top_k_never_leaves_the_k_best() {
        let scores = [0.1f32, 2.0, -1.0, 1.9, 0.0];
        let greedy = Sampling {
            temperature: 1.0,
            top_k: 1,
        };
        for draw in [0.0, 0.5, 0.999] {
            assert_eq!(sample(&scores, greedy, draw), 1);
        }
        let two = Sampling {
            temperature: 1.0,
            top_k: 2,
        };
        for k in 0..1000 {
            let t = sample(&scores, two, k as f64 / 1000.0);
            assert!(t == 1 || t == 3, "{t}");
        }
    }

    #[test]
    fn draws_follow_the_softmax_at_the_temperature() {
        // Softmax of [0, ln 3] at T = 1 is [1/4, 3/4]; the likelier token 1 comes first in
        // order and owns the draws below 3/4.
        let scores = [0.0f32, 3f32.ln()];
        let plain = Sampling::default();
        assert_eq!(sample(&scores, plain, 0.74), 1);
        assert_eq!(sample(&scores, plain, 0.76), 0);
        // At T = 2 the weights are [1, √3]: token 1 (first in order) owns [0, √3/(1+√3)).
        let warm = Sampling {
            temperature: 2.0,
            top_k: 0,
        };
        let cut = 3f64.sqrt() / (1.0 + 3f64.sqrt());
        assert_eq!(sample(&scores, warm, cut - 1e-3), 1);
        assert_eq!(sample(&scores, warm, cut + 1e-3), 0);
    }
}
