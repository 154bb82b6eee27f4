//! Language models: distillation on generated data ([`OnPolicy`]: GKD's on-policy batches,
//! the student's own samples scored by the teacher, and sequence-level KD, the teacher's
//! samples), and, with the `experiments` feature, language-model experiment files
//! ([`LmExperiment`], run by `kd run` when a file has a `[corpus]` section).
//!
//! ```
//! use burn::tensor::Device;
//! use kd::core::{Objective, losses::Jsd};
//! use kd::data::{TokenBatcher, TokenItem};
//! use kd::language::OnPolicy;
//! use kd::models::{LanguageModelConfig, Sampling};
//! use kd::train::{DistillModel, FrozenTeacher, TeacherCache};
//! use burn::data::dataloader::batcher::Batcher;
//!
//! let device = Device::flex().autodiff();
//! let config = LanguageModelConfig::new().with_vocab(32).with_width(16).with_blocks(1);
//! let (student, teacher) = (config.init(&device), config.init(&device));
//! let item = |t: &[u32]| TokenItem {
//!     tokens: t[..t.len() - 1].to_vec(),
//!     label: None,
//!     position_labels: Some(t[1..].to_vec()),
//! };
//! let probe = TokenBatcher::new(0).batch(vec![item(&[1, 2, 3, 4]), item(&[5, 6, 7])], &device);
//! // Every other step on average, the student continues 4-token prompts by 8 sampled tokens.
//! let on_policy = OnPolicy::new(0.5, 4, 8)
//!     .and_then(|o| o.with_sampling(Sampling { temperature: 1.0, top_k: 10 }))
//!     .unwrap();
//! let model = DistillModel::new(
//!     student,
//!     Some(FrozenTeacher::new(&teacher)),
//!     Objective::lerp(Jsd::new(0.5), 0.5),
//!     &probe,
//!     TeacherCache::OFF,
//! )
//! .unwrap()
//! .with_rollout(on_policy);
//! let out = model.train_step(probe).unwrap();
//! assert!(out.item.loss.into_scalar::<f32>().is_finite());
//! ```

#[cfg(feature = "experiments")]
mod config;
#[cfg(feature = "experiments")]
mod corpus;
mod on_policy;
#[cfg(feature = "experiments")]
mod report;
#[cfg(feature = "experiments")]
mod study;
#[cfg(feature = "experiments")]
mod validate;

#[cfg(feature = "experiments")]
pub use config::{
    CorpusSection, LmExperiment, LmModelSection, LmRun, LmTeacherSection, LmTraining,
    OnPolicySection, SampleSection, VocabularyKind,
};
pub use on_policy::{OnPolicy, RolloutError};
#[cfg(feature = "experiments")]
pub(crate) use report::draw_report as draw_lm_report;
#[cfg(feature = "experiments")]
pub use report::{LmReport, LmRunResult, Sample, lm_summary_table};
#[cfg(feature = "experiments")]
pub use study::run_language_experiment;
