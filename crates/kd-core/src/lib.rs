//! # kd-core
//!
//! Distillation losses behind one trait ([`KdLoss`]), their combination with cross-entropy
//! ([`Objective`]: fasterai's `(1−w)·CE + w·KD` or research-style independent weights),
//! progress-driven [`Schedule`]s for weights and temperatures, learnable [`Connectors`] for
//! channel mismatches, and automatic layer pairing ([`match_feature_layers`]).
//!
//! Layer pairs are always explicit: student tap ↔ teacher tap, never paired by the order in
//! which hooks fire.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use kd_core::{LayerPair, LossConfig, Objective};
//! use kd_models::{Arch, FeatureModel, ResNetConfig};
//!
//! let device = Device::flex();
//! let student = ResNetConfig::new(Arch::ResNet18).with_classes(Some(2)).init(&device);
//! let teacher = ResNetConfig::new(Arch::ResNet34).with_classes(Some(2)).init(&device);
//! let pairs = LayerPair::zip(&["layer1", "layer2"], &["layer1", "layer2"]);
//! let objective = Objective::lerp(LossConfig::attention(pairs), 0.9);
//!
//! let x = Tensor::<4>::ones([2, 3, 64, 64], &device);
//! let s = student.forward_taps(x.clone(), &student.tap_plan(&objective.student_taps()).unwrap());
//! let t = teacher.forward_taps(x, &teacher.tap_plan(&objective.teacher_taps()).unwrap());
//! let y = Tensor::<1, Int>::from_ints([0, 1], &device);
//! let parts = objective.compute(&s, Some(&t), &y, 0.0).unwrap();
//! assert!(parts.check_finite().unwrap() > 0.0);
//! ```

pub mod feature;
pub mod logit;
mod loss;
mod matching;
mod objective;
mod schedule;

pub use loss::{KdInput, KdLoss, LayerPair, LossConfig, pair_features};
pub use matching::match_feature_layers;
pub use objective::{
    Connector, Connectors, LossParts, Mix, Objective, ObjectiveConfig, Term, TermConfig,
};
pub use schedule::Schedule;

/// Everything that can go wrong when computing a distillation loss.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    /// A tap the loss reads is not among the model's outputs.
    #[error("{loss}: the {side} has no tap `{tap}`; available: [{}]", available.join(", "))]
    MissingTap {
        /// The loss.
        loss: &'static str,
        /// `student` or `teacher`.
        side: &'static str,
        /// The missing tap.
        tap: String,
        /// What the outputs hold.
        available: Vec<String>,
    },
    /// Incompatible shapes.
    #[error("{loss}: {what}: student shape {student:?} vs teacher shape {teacher:?}: {hint}")]
    Shape {
        /// The loss.
        loss: &'static str,
        /// Which tensors (`logits`, `layer1 ↔ 0.4`, …).
        what: String,
        /// Student-side shape.
        student: Vec<usize>,
        /// Teacher-side shape (or the targets' shape).
        teacher: Vec<usize>,
        /// What to do about it.
        hint: &'static str,
    },
    /// A loss that needs class targets got none.
    #[error("{loss} needs the class targets, but none were given")]
    MissingTargets {
        /// The loss.
        loss: &'static str,
    },
    /// A distillation loss without a teacher's outputs.
    #[error("{loss} needs the teacher's outputs, but no teacher ran")]
    MissingTeacher {
        /// The loss.
        loss: &'static str,
    },
    /// A feature loss configured without layer pairs.
    #[error("{loss} has no layer pairs to compare")]
    NoPairs {
        /// The loss.
        loss: &'static str,
    },
    /// A loss evaluated to NaN or ±∞.
    #[error("{loss} is not finite ({value}); check the inputs and the learning rate")]
    NonFinite {
        /// The loss (or `CrossEntropy`).
        loss: &'static str,
        /// The value.
        value: f64,
    },
    /// One student tap paired with teacher taps of different widths.
    #[error(
        "student tap `{tap}` is paired with teacher taps of {first} and {second} channels; one connector cannot serve both"
    )]
    ConnectorConflict {
        /// The student tap.
        tap: String,
        /// Channels of the first pairing.
        first: usize,
        /// Channels of the second.
        second: usize,
    },
}
