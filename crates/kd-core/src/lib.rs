//! # kd-core
//!
//! Distillation losses behind one trait ([`KdLoss`]), their combination with cross-entropy
//! ([`Objective`]: fasterai's `(1−w)·CE + w·KD` or research-style independent weights),
//! progress-driven [`Schedule`]s for weights and temperatures, learnable [`Connectors`] for
//! channel mismatches, and automatic layer pairing ([`match_feature_layers`]) — and the model
//! contract every student and teacher meets: [`FeatureModel`] (layers tapped by name in one
//! forward pass, [`Outputs`] = logits per item or per position + taps of rank 2, 3 or 4) for
//! inputs of any type ([`ModelInput`]: images, token ids and masks, …), fed by batches that
//! say their targets, if any, and which positions count ([`DistillBatch`]). This crate depends
//! on no other kd crate.
//!
//! Layer pairs are always explicit: student tap ↔ teacher tap, never paired by the order in
//! which hooks fire.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Int, Tensor};
//! use kd_core::{LayerPair, LossConfig, Objective, Outputs};
//!
//! let device = Device::flex();
//! let pairs = LayerPair::zip(&["layer1"], &["0.4"]);
//! let objective = Objective::lerp(LossConfig::attention(pairs), 0.9);
//! assert_eq!((objective.student_taps(), objective.teacher_taps()), (vec!["layer1".to_string()], vec!["0.4".to_string()]));
//!
//! // What a student's and a teacher's forward passes return (see `FeatureModel::forward_taps`).
//! let outputs = |tap: &str| {
//!     Outputs::new(Tensor::<2>::random([2, 2], Distribution::Default, &device))
//!         .with_tap(tap, Tensor::<4>::random([2, 8, 4, 4], Distribution::Default, &device))
//! };
//! let (s, t) = (outputs("layer1"), outputs("0.4"));
//! let y = Tensor::<1, Int>::from_ints([0, 1], &device);
//! let parts = objective.compute(&s, Some(&t), &y, 0.0).unwrap();
//! assert!(parts.check_finite().unwrap() > 0.0);
//! ```

mod batch;
mod catalogue;
mod connectors;
mod contrast;
mod ensemble;
pub mod feature;
mod input;
pub mod logit;
mod loss;
pub mod losses;
mod matching;
mod module_file;
mod objective;
mod outputs;
mod resized;
mod schedule;
mod tap_error;
mod taps;

pub use batch::{DistillBatch, ItemKey, fnv1a, fnv1a_start, splitmix64};
pub use catalogue::LossConfig;
pub use connectors::{Connector, Connectors};
pub use contrast::{ContrastMemory, Contrasts, MemoryInput, MemorySpec, nce};
pub use ensemble::Ensemble;
pub use input::ModelInput;
pub(crate) use loss::sum_pairs;
pub use loss::{KdInput, KdLoss, LayerPair, pair_features, paired_logits};
pub use matching::match_feature_layers;
pub use module_file::{
    ModuleFileError, load_module, load_module_except, load_module_member, save_module,
};
pub use objective::{
    DEFAULT_TEACHER, LossParts, Mix, Objective, TEMPERATURES, TeacherOutputs, Term,
};
pub use outputs::{Logits, Outputs, Supervision, Tap, Targets, valid_rows};
pub use resized::Resized;
pub use schedule::Schedule;
pub use tap_error::TapError;
pub use taps::{FeatureModel, LayerInfo, TapPlan, TapRecorder, image_example, nearest_names};

/// ImageNet channel means (RGB) of pixels in `[0, 1]`: the input convention of torchvision's and
/// fastai's pretrained models, which every bundled model and the data pipeline follow.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB), with [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
    /// A feature loss paired with a tap of a rank it is not defined on.
    #[error(
        "{loss}: the {side} tap `{tap}` is a {kind}, shape {shape:?}; {loss} accepts taps of rank {accepts:?} (2 vector, 3 sequence, 4 map)"
    )]
    Rank {
        /// The loss.
        loss: &'static str,
        /// `student` or `teacher`.
        side: &'static str,
        /// The tap.
        tap: String,
        /// Its shape.
        shape: Vec<usize>,
        /// What that shape is (`map [batch, channels, height, width]`, …).
        kind: &'static str,
        /// The ranks the loss accepts.
        accepts: Vec<usize>,
    },
    /// The batch's mask cannot be applied to the logits.
    #[error("mask: {0}")]
    Mask(String),
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
    /// A term names a teacher there is not.
    #[error("{loss} reads teacher `{teacher}`, but there is no such teacher; teachers: [{}]", available.join(", "))]
    UnknownTeacher {
        /// The loss.
        loss: &'static str,
        /// The name it gave.
        teacher: String,
        /// The teachers there are.
        available: Vec<String>,
    },
    /// A term names no teacher, and there are several.
    #[error("{loss} does not say which teacher it reads, and there are several: [{}]; name one (`teacher = \"…\"`)", available.join(", "))]
    AmbiguousTeacher {
        /// The loss.
        loss: &'static str,
        /// The teachers there are.
        available: Vec<String>,
    },
    /// A loss that keeps a memory of the training items cannot use it (not set up, too small,
    /// items outside it).
    #[error("{loss}: {message}")]
    Memory {
        /// The loss.
        loss: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A feature loss configured without layer pairs.
    #[error("{loss} has no layer pairs to compare")]
    NoPairs {
        /// The loss.
        loss: &'static str,
    },
    /// A weight or temperature the loss would see at some point of training is out of range
    /// (as the `f32` the tensors hold).
    #[error("{loss}: {what} = {value:?} {message}")]
    Setting {
        /// The loss (or `mix`).
        loss: &'static str,
        /// Which setting, and where in training (`temperature at the start`, …).
        what: String,
        /// Its value there.
        value: f64,
        /// What it must be.
        message: &'static str,
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
