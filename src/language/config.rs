//! The schema of a language-model experiment file: a corpus, a teacher and a student
//! language model, training settings and runs (alone, or with a divergence, optionally on
//! generated data), checked before any work.

use std::path::{Path, PathBuf};

use kd_core::{LossConfig, Objective};
use kd_models::{LanguageModelConfig, Sampling};
use serde::{Deserialize, Serialize};

use super::OnPolicy;
use crate::KdError;
use crate::experiment::{default_output, read_experiment_file};

/// A language-model experiment (`kd run FILE` when the file has a `[corpus]` section): train
/// teachers on the corpus, then a student alone and with each run's divergence, for every
/// seed and teacher instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmExperiment {
    /// Run directory (default `runs/<the file's name without extension>`).
    #[serde(default)]
    pub output: PathBuf,
    /// The text.
    pub corpus: CorpusSection,
    /// The teacher model and its training.
    pub teacher: LmTeacherSection,
    /// The student model.
    pub student: LmModelSection,
    /// How students train.
    #[serde(default)]
    pub training: LmTraining,
    /// The student runs.
    pub runs: Vec<LmRun>,
    /// The lines each model writes into the report.
    #[serde(default)]
    pub samples: SampleSection,
}

/// How text becomes token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabularyKind {
    /// 256 byte ids; any file.
    Bytes,
    /// The training text's characters; UTF-8 only.
    Chars,
}

/// `[corpus]`: where the text comes from and how it is cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSection {
    /// `sotu` (the embedded State of the Union addresses), or a file or folder of text.
    #[serde(default = "CorpusSection::default_source")]
    pub source: String,
    /// A line that separates documents inside a file (none: a file is one document).
    #[serde(default)]
    pub separator: Option<String>,
    /// Keep the documents, in file order, until this many bytes (the last one cut).
    #[serde(default)]
    pub limit_bytes: Option<usize>,
    /// Share of the documents held out for validation.
    #[serde(default = "CorpusSection::default_valid_fraction")]
    pub valid_fraction: f64,
    /// Seed of the split by document.
    #[serde(default)]
    pub split_seed: u64,
    /// `bytes` or `chars`.
    #[serde(default = "CorpusSection::default_vocabulary")]
    pub vocabulary: VocabularyKind,
    /// Tokens per training window (and the models' context).
    #[serde(default = "CorpusSection::default_window")]
    pub window: usize,
}

impl CorpusSection {
    fn default_source() -> String {
        "sotu".into()
    }
    fn default_valid_fraction() -> f64 {
        0.1
    }
    fn default_vocabulary() -> VocabularyKind {
        VocabularyKind::Bytes
    }
    fn default_window() -> usize {
        128
    }
}

/// A language model's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmModelSection {
    /// Width of the residual stream.
    pub width: usize,
    /// Transformer blocks.
    pub blocks: usize,
    /// Attention heads (a divisor of `width`).
    pub heads: usize,
}

impl LmModelSection {
    /// The model's configuration for `vocab` ids and a context of `window` tokens.
    pub fn config(&self, vocab: usize, window: usize) -> LanguageModelConfig {
        LanguageModelConfig::new()
            .with_vocab(vocab)
            .with_width(self.width)
            .with_blocks(self.blocks)
            .with_heads(self.heads)
            .with_max_len(window)
    }
}

/// `[teacher]`: its shape and training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmTeacherSection {
    /// Its shape.
    #[serde(flatten)]
    pub model: LmModelSection,
    /// Training epochs.
    #[serde(default = "LmTraining::default_epochs")]
    pub epochs: usize,
    /// Peak learning rate (one cycle).
    #[serde(default = "LmTraining::default_lr")]
    pub lr: f64,
    /// One teacher instance per seed; each student run is repeated with each.
    #[serde(default = "LmTraining::default_seeds")]
    pub seeds: Vec<u64>,
}

/// `[training]`: how students train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmTraining {
    /// Epochs.
    #[serde(default = "LmTraining::default_epochs")]
    pub epochs: usize,
    /// Peak learning rate (one cycle).
    #[serde(default = "LmTraining::default_lr")]
    pub lr: f64,
    /// Windows per batch (teachers too).
    #[serde(default = "LmTraining::default_batch_size")]
    pub batch_size: usize,
    /// Student seeds (initialisation and batch order).
    #[serde(default = "LmTraining::default_seeds")]
    pub seeds: Vec<u64>,
    /// Device: flex, ndarray, tch, wgpu, … (default: the best compiled in).
    #[serde(default)]
    pub backend: Option<String>,
}

impl LmTraining {
    fn default_epochs() -> usize {
        2
    }
    fn default_lr() -> f64 {
        2e-3
    }
    fn default_batch_size() -> usize {
        32
    }
    fn default_seeds() -> Vec<u64> {
        vec![0]
    }
}

impl Default for LmTraining {
    fn default() -> Self {
        Self {
            epochs: Self::default_epochs(),
            lr: Self::default_lr(),
            batch_size: Self::default_batch_size(),
            seeds: Self::default_seeds(),
            backend: None,
        }
    }
}

/// `[[runs]]`: one student setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmRun {
    /// Its name in reports.
    pub name: String,
    /// The divergence to the teacher (none: the student alone on the corpus).
    #[serde(default)]
    pub loss: Option<LossConfig>,
    /// The divergence's share: `(1 − weight)·CE + weight·divergence` (1: the divergence alone).
    #[serde(default = "LmRun::default_weight")]
    pub weight: f64,
    /// Train partly on generated text (GKD's on-policy data, or sequence-level KD).
    #[serde(default)]
    pub on_policy: Option<OnPolicySection>,
}

impl LmRun {
    fn default_weight() -> f64 {
        1.0
    }

    /// The run's objective.
    pub fn objective(&self) -> Objective {
        match &self.loss {
            Some(loss) => Objective::lerp(loss.clone(), self.weight),
            None => Objective::cross_entropy_only(),
        }
    }
}

/// `on_policy = { … }`: GKD's data source ([`OnPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnPolicySection {
    /// Probability that a step trains on generated text.
    pub lambda: f64,
    /// Fraction of training before the first step on generated text.
    #[serde(default, skip_serializing_if = "OnPolicySection::no_warm_up")]
    pub warm_up: f64,
    /// Tokens of each window kept as prompt.
    #[serde(default = "OnPolicySection::default_prompt")]
    pub prompt: usize,
    /// Tokens generated after it.
    #[serde(default = "OnPolicySection::default_new_tokens")]
    pub new_tokens: usize,
    /// Sampling temperature.
    #[serde(default = "OnPolicySection::default_temperature")]
    pub temperature: f64,
    /// Sample among this many most likely tokens (0: all).
    #[serde(default)]
    pub top_k: usize,
    /// The teacher writes (sequence-level KD) instead of the student.
    #[serde(default)]
    pub sequence_level: bool,
}

impl OnPolicySection {
    fn default_prompt() -> usize {
        32
    }
    fn default_new_tokens() -> usize {
        64
    }
    fn default_temperature() -> f64 {
        1.0
    }
    /// Left out of what is written (and so of run fingerprints) when 0, as before the key.
    fn no_warm_up(warm_up: &f64) -> bool {
        *warm_up == 0.0
    }
}

/// `[samples]`: what each trained model writes into the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSection {
    /// The prompt every model continues.
    #[serde(default = "SampleSection::default_prompt")]
    pub prompt: String,
    /// Tokens to write.
    #[serde(default = "SampleSection::default_tokens")]
    pub tokens: usize,
    /// Sampling temperature.
    #[serde(default = "SampleSection::default_temperature")]
    pub temperature: f64,
    /// Sample among this many most likely tokens (0: all).
    #[serde(default)]
    pub top_k: usize,
}

impl SampleSection {
    fn default_prompt() -> String {
        "Fellow-Citizens of the Senate and House of Representatives: ".into()
    }
    fn default_tokens() -> usize {
        160
    }
    fn default_temperature() -> f64 {
        0.8
    }
}

impl Default for SampleSection {
    fn default() -> Self {
        Self {
            prompt: Self::default_prompt(),
            tokens: Self::default_tokens(),
            temperature: Self::default_temperature(),
            top_k: 0,
        }
    }
}

impl LmExperiment {
    /// Whether `text` (a TOML experiment file) describes a language-model experiment: it has a
    /// `[corpus]` section.
    pub fn describes(text: &str) -> bool {
        toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("corpus"))
    }

    /// Parse and [check](Self::validate) `text`; `origin` (the file) names it in errors, and
    /// gives `output`'s default, `runs/<file stem>`.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, KdError> {
        let mut exp: Self = toml::from_str(text).map_err(|e| KdError::Config {
            origin: origin.into(),
            message: e.to_string(),
        })?;
        if exp.output.as_os_str().is_empty() {
            exp.output = default_output(origin);
        }
        exp.validate(origin)?;
        Ok(exp)
    }

    /// Read, parse and check the file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, KdError> {
        Self::from_toml(&read_experiment_file(path)?, &path.display().to_string())
    }

    /// A smoke version of about a minute: the first 100 kB of text, windows of at most 64
    /// tokens, one epoch, the first seed and teacher.
    pub fn quick(mut self) -> Self {
        self.corpus.limit_bytes = Some(self.corpus.limit_bytes.unwrap_or(usize::MAX).min(100_000));
        self.corpus.window = self.corpus.window.min(64);
        self.teacher.epochs = 1;
        self.teacher.seeds.truncate(1);
        self.training.epochs = 1;
        self.training.seeds.truncate(1);
        self.samples.tokens = self.samples.tokens.min(60);
        for run in &mut self.runs {
            if let Some(p) = &mut run.on_policy {
                p.prompt = p.prompt.min(16);
                p.new_tokens = p.new_tokens.min(16);
            }
        }
        self
    }
}

impl OnPolicySection {
    /// The rollout these settings describe, drawing from `seed`.
    pub fn rollout(&self, seed: u64) -> Result<OnPolicy, super::RolloutError> {
        OnPolicy::new(self.lambda, self.prompt, self.new_tokens)?
            .with_sampling(Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
            })
            .and_then(|o| o.after_warm_up(self.warm_up))
            .map(|o| o.with_seed(seed))
    }
}
