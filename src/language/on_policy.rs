//! [`OnPolicy`]: GKD's on-policy batches and sequence-level KD as a [`Rollout`].

use burn::data::dataloader::batcher::Batcher;
use kd_core::{fnv1a, fnv1a_start, splitmix64};
use kd_data::{TokenBatch, TokenBatcher, TokenItem};
use kd_models::{LanguageModel, Sampling};
use kd_train::Rollout;

/// Why an [`OnPolicy`] setting was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    /// A setting out of its range.
    #[error("on-policy distillation: {0}")]
    Setting(String),
}

/// GKD's data source: with probability `lambda` per training step (drawn from the seed, the
/// training progress and the batch's tokens, so a resumed run draws the same), each sequence
/// of the batch is cut to its first `prompt_len` tokens and continued by `new_tokens` tokens
/// sampled from the student (or, for [sequence-level KD](Self::sequence_level), from the
/// teacher), without autodiff; the step then trains on prompt + continuation.
///
/// On the student's own samples the batch has no targets, so a mix's cross-entropy drops out
/// and the step is the divergence alone, at every position of prompt and continuation (TRL's
/// GKD trainer scores the continuation only). On the teacher's samples the continuation is
/// also the target of the cross-entropy (Kim & Rush's sequence-level KD). Generated batches
/// carry no cache keys: the teachers' output cache is never consulted for them. A continuation
/// is shortened so that prompt and continuation fit the writer's context.
#[derive(Debug, Clone)]
pub struct OnPolicy {
    lambda: f64,
    warm_up: f64,
    prompt_len: usize,
    new_tokens: usize,
    sampling: Sampling,
    seed: u64,
    teacher: Option<LanguageModel>,
}

impl OnPolicy {
    /// On-policy with probability `lambda` (in `[0, 1]`), prompts of `prompt_len` tokens (at
    /// least 1), `new_tokens` sampled tokens (at least 1), at temperature 1 over the whole
    /// vocabulary, seed 0.
    pub fn new(lambda: f64, prompt_len: usize, new_tokens: usize) -> Result<Self, RolloutError> {
        if !(0.0..=1.0).contains(&lambda) {
            return Err(RolloutError::Setting(format!(
                "lambda = {lambda} must be between 0 and 1"
            )));
        }
        if prompt_len == 0 || new_tokens == 0 {
            return Err(RolloutError::Setting(format!(
                "prompt_len = {prompt_len} and new_tokens = {new_tokens} must both be 1 or more"
            )));
        }
        Ok(Self {
            lambda,
            warm_up: 0.0,
            prompt_len,
            new_tokens,
            sampling: Sampling::default(),
            seed: 0,
            teacher: None,
        })
    }

    /// Sample with `sampling`; its temperature must be positive and finite.
    pub fn with_sampling(self, sampling: Sampling) -> Result<Self, RolloutError> {
        if !(sampling.temperature > 0.0 && sampling.temperature.is_finite()) {
            return Err(RolloutError::Setting(format!(
                "sampling temperature = {} must be a positive finite number",
                sampling.temperature
            )));
        }
        Ok(Self { sampling, ..self })
    }

    /// Train on the batches as they come until the fraction `warm_up` (in `[0, 1)`) of
    /// training is done, and only then with probability `lambda` on generated text: GKD starts
    /// from a student already fine-tuned on the data, whose own samples are worth learning on;
    /// an untrained student's samples are noise.
    pub fn after_warm_up(self, warm_up: f64) -> Result<Self, RolloutError> {
        if !(0.0..1.0).contains(&warm_up) {
            return Err(RolloutError::Setting(format!(
                "warm_up = {warm_up} must be at least 0 and below 1 (a fraction of training)"
            )));
        }
        Ok(Self { warm_up, ..self })
    }

    /// Draw from `seed`.
    pub fn with_seed(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// Sequence-level KD: `teacher` writes the continuations, and they are the cross-entropy's
    /// targets.
    pub fn sequence_level(self, teacher: &LanguageModel) -> Self {
        Self {
            teacher: Some(teacher.clone()),
            ..self
        }
    }

    /// The stream a step's draws come from: the seed, the progress and the batch's tokens.
    fn stream(&self, batch: &TokenBatch, progress: f64) -> u64 {
        let tokens = batch.tokens.to_data();
        let mut h = fnv1a(fnv1a_start(), &self.seed.to_le_bytes());
        h = fnv1a(h, &progress.to_bits().to_le_bytes());
        h = fnv1a(h, tokens.as_bytes());
        splitmix64(h)
    }
}

impl Rollout<LanguageModel, TokenBatch> for OnPolicy {
    fn rollout(
        &self,
        student: &LanguageModel,
        batch: &TokenBatch,
        progress: f64,
    ) -> Option<TokenBatch> {
        if progress < self.warm_up {
            return None;
        }
        let stream = self.stream(batch, progress);
        let draw = (splitmix64(stream) >> 11) as f64 / (1u64 << 53) as f64;
        if draw >= self.lambda {
            return None;
        }
        let writer = self.teacher.as_ref().unwrap_or(student);
        let [rows, len] = batch.tokens.dims();
        let tokens: Vec<i64> = batch.tokens.to_data().iter::<i64>().collect();
        let padding: Vec<bool> = batch.padding.to_data().iter::<bool>().collect();
        let prompts: Vec<Vec<u32>> = (0..rows)
            .map(|r| {
                let valid = (0..len).take_while(|&p| !padding[r * len + p]).count();
                tokens[r * len..r * len + valid.clamp(1, self.prompt_len.min(len))]
                    .iter()
                    .map(|&t| t.max(0) as u32)
                    .collect()
            })
            .collect();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
        // Prompt and continuation, less the last token (a target only), fit the context.
        let room = (student.max_len().min(writer.max_len()) + 1).saturating_sub(longest);
        let new_tokens = self.new_tokens.min(room).max(1);
        let sequences = writer
            .generate(&prompts, new_tokens, self.sampling, stream)
            .ok()?;
        let on_policy = self.teacher.is_none();
        let items = sequences
            .into_iter()
            .map(|s| TokenItem {
                tokens: s[..s.len() - 1].to_vec(),
                label: None,
                position_labels: (!on_policy).then(|| s[1..].to_vec()),
            })
            .collect();
        Some(TokenBatcher::new(0).batch(items, &batch.tokens.device()))
    }
}
