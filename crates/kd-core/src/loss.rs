//! The one trait every distillation loss implements, what a loss sees, and the checks every
//! logit and feature loss shares.

use std::fmt::Debug;

use crate::{Outputs, Tap};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::contrast::{MemoryInput, MemorySpec};
use crate::{LossError, feature};

/// A student tap paired with a teacher tap. Pairs are always explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerPair {
    /// Student module path (e.g. `layer1`).
    pub student: String,
    /// Teacher module path (e.g. `0.4` or `layer1`).
    pub teacher: String,
}

impl LayerPair {
    /// Pair `student` with `teacher`.
    pub fn new(student: impl Into<String>, teacher: impl Into<String>) -> Self {
        Self {
            student: student.into(),
            teacher: teacher.into(),
        }
    }

    /// Pair lists of equal length element by element.
    pub fn zip<S: AsRef<str>, T: AsRef<str>>(student: &[S], teacher: &[T]) -> Vec<LayerPair> {
        student
            .iter()
            .zip(teacher)
            .map(|(s, t)| LayerPair::new(s.as_ref(), t.as_ref()))
            .collect()
    }
}

/// What a loss sees: both models' outputs (student taps already through their connectors),
/// the targets, and the temperature multiplier of the current schedule step.
#[derive(Debug, Clone, Copy)]
pub struct KdInput<'a> {
    /// Student logits and taps.
    pub student: &'a Outputs,
    /// Teacher logits and taps.
    pub teacher: &'a Outputs,
    /// One class index per logit row that counts ([`paired_logits`]' rows), when the batch
    /// has labels.
    pub targets: Option<&'a Tensor<1, Int>>,
    /// For per-position logits under a mask: the rows of [`Logits::rows`](crate::Logits::rows)
    /// that count (`None`: every row).
    pub rows: Option<&'a Tensor<1, Int>>,
    /// Multiplies every temperature (1 unless a temperature schedule is set).
    pub temperature_scale: f64,
    /// The term's memory of the training items, for a loss that keeps one
    /// ([`KdLoss::memory`]); `None` for every other loss.
    pub memory: Option<MemoryInput<'a>>,
}

/// A distillation loss: a scalar from student and teacher outputs.
pub trait KdLoss: Debug + Send + Sync {
    /// Short name used in messages and metrics.
    fn name(&self) -> &'static str;
    /// The feature pairs this loss reads (empty for logit losses).
    fn pairs(&self) -> &[LayerPair] {
        &[]
    }
    /// Whether a paired student tap must have the teacher's channel count (then a connector
    /// is inserted when they differ).
    fn needs_matching_channels(&self) -> bool {
        false
    }
    /// The tap ranks this loss is defined on ([`Tap`]: 2 vectors, 3 sequences, 4 maps); a
    /// pair of another rank is refused when the model is built from its probe batch. Logit
    /// losses read no tap.
    fn tap_ranks(&self) -> &'static [usize] {
        &[2, 3, 4]
    }
    /// The memory this loss keeps across steps (CRD's banks) for a training set of `items`
    /// items, if it keeps one: the trainer, which counts the training items, then builds it
    /// ([`ContrastMemory`](crate::ContrastMemory)), trains and saves it with the student, and
    /// hands it to every [`compute`](Self::compute) together with the items' indices. Such a
    /// loss reads exactly one layer pair.
    fn memory(&self, items: usize) -> Option<MemorySpec> {
        let _ = items;
        None
    }
    /// The temperature the loss divides logits by, if it has one: checked, times the term's
    /// temperature schedule, to stay a positive normal number in `f32` over the whole run
    /// ([`Objective::check_values`](crate::Objective::check_values)).
    fn temperature(&self) -> Option<f64> {
        None
    }
    /// Checks the loss's own settings (a mixture's share within its range, …), before any
    /// training ([`Objective::check_values`](crate::Objective::check_values)).
    fn check_settings(&self) -> Result<(), LossError> {
        Ok(())
    }
    /// The loss value, `[1]`. Shapes, taps and targets are checked; failures name the loss.
    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError>;
}

/// Σ over `loss`'s pairs of `f` on each pair's taps, each seen as a map
/// ([`feature::as_map`]): a vector `[b, f]` as `[b, f, 1, 1]`, a sequence `[b, n, d]` as
/// `[b, d, n, 1]` (features as channels, positions as the spatial axis). Every pair is checked
/// by [`pair_features`] first.
pub(crate) fn sum_pairs(
    loss: &dyn KdLoss,
    input: &KdInput,
    f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<1>,
) -> Result<Tensor<1>, LossError> {
    let mut total: Option<Tensor<1>> = None;
    for pair in loss.pairs() {
        let (s, t) = pair_features(loss, input, pair)?;
        let value = f(feature::as_map(s), feature::as_map(t));
        total = Some(match total {
            Some(acc) => acc + value,
            None => value,
        });
    }
    total.ok_or(LossError::NoPairs { loss: loss.name() })
}

/// The student's and the teacher's logits as rows `[rows, classes]` — one per item, or one
/// per position that counts under the batch's mask — checked to have the same shape (what
/// every logit loss needs; a logit loss's batch mean is then the mean over items or over
/// valid positions). `loss` names the loss in the error.
pub fn paired_logits(
    loss: &'static str,
    input: &KdInput,
) -> Result<(Tensor<2>, Tensor<2>), LossError> {
    let (sd, td) = (input.student.logits.dims(), input.teacher.logits.dims());
    if sd != td {
        return Err(LossError::Shape {
            loss,
            what: "logits".into(),
            student: sd,
            teacher: td,
            hint: "student and teacher must predict the same classes at the same positions",
        });
    }
    let s = input.student.logits.clone().rows();
    let t = input.teacher.logits.clone().rows();
    Ok(match input.rows {
        Some(rows) => (s.select(0, rows.clone()), t.select(0, rows.clone())),
        None => (s, t),
    })
}

/// The tap `tap` of `out`, one side (`student` or `teacher`) of a pair `loss` reads, or an
/// error naming the loss, the side and what the outputs hold.
pub(crate) fn tap_of<'a>(
    out: &'a Outputs,
    loss: &'static str,
    side: &'static str,
    tap: &str,
) -> Result<&'a Tap, LossError> {
    out.taps.get(tap).ok_or_else(|| LossError::MissingTap {
        loss,
        side,
        tap: tap.to_string(),
        available: out.taps.keys().cloned().collect(),
    })
}

/// Fetch a pair's two taps and check what every feature loss needs: a rank the loss accepts
/// ([`KdLoss::tap_ranks`]), the same rank and batch on both sides, the same positions for two
/// sequences, and the same width where the loss
/// [needs matching channels](KdLoss::needs_matching_channels).
pub fn pair_features(
    loss: &(impl KdLoss + ?Sized),
    input: &KdInput,
    pair: &LayerPair,
) -> Result<(Tap, Tap), LossError> {
    let (channels, ranks, loss) = (
        loss.needs_matching_channels(),
        loss.tap_ranks(),
        loss.name(),
    );
    let s = tap_of(input.student, loss, "student", &pair.student)?.clone();
    let t = tap_of(input.teacher, loss, "teacher", &pair.teacher)?.clone();
    let (sd, td) = (s.dims(), t.dims());
    let what = format!("{} ↔ {}", pair.student, pair.teacher);
    let shape = |hint: &'static str| LossError::Shape {
        loss,
        what: what.clone(),
        student: sd.clone(),
        teacher: td.clone(),
        hint,
    };
    for (side, tap) in [("student", &s), ("teacher", &t)] {
        if !ranks.contains(&tap.rank()) {
            return Err(LossError::Rank {
                loss,
                side,
                tap: if side == "student" {
                    &pair.student
                } else {
                    &pair.teacher
                }
                .clone(),
                shape: tap.dims(),
                kind: tap.kind(),
                accepts: ranks.to_vec(),
            });
        }
    }
    if s.rank() != t.rank() {
        return Err(shape(
            "the taps have different ranks: pair taps of the same kind",
        ));
    }
    if sd[0] != td[0] {
        return Err(shape("batch sizes differ"));
    }
    if s.rank() == 3 && sd[1] != td[1] {
        return Err(shape(
            "the sequences have different numbers of positions: pair taps of equal length",
        ));
    }
    if channels && s.width() != t.width() {
        return Err(shape(
            "channel counts differ: add a connector for this pair",
        ));
    }
    Ok((s, t))
}
