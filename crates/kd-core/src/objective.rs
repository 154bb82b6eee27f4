//! Combining cross-entropy with any number of weighted, scheduled distillation losses, each
//! reading one teacher's outputs (one of several, by name).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Outputs, Supervision, Targets, valid_rows};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::logit::cross_entropy;
use crate::{ContrastMemory, Contrasts, KdInput, KdLoss, LossError, MemoryInput, Schedule};

/// How cross-entropy and the weighted sum of distillation terms `KD` combine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mix {
    /// fasterai: `(1 − w)·CE + w·KD`, with `w = weight · schedule(progress)`.
    Lerp {
        /// `w` (fasterai's default is 0.5).
        weight: f64,
        /// Multiplies `weight` (fasterai's `cos` is [`Schedule::COS_RAMP`]).
        #[serde(default)]
        schedule: Schedule,
    },
    /// Research code bases: `γ·CE + KD`, each term carrying its own weight.
    Sum {
        /// `γ`, the cross-entropy weight.
        ce: f64,
    },
}

impl Default for Mix {
    fn default() -> Self {
        Mix::Lerp {
            weight: 0.5,
            schedule: Schedule::Constant,
        }
    }
}

/// One distillation term: a loss with its weight and schedules.
#[derive(Debug, Clone)]
pub struct Term {
    /// The loss.
    pub loss: Arc<dyn KdLoss>,
    /// Constant weight of the term inside `KD`.
    pub weight: f64,
    /// Multiplies `weight` with training progress.
    pub schedule: Schedule,
    /// Multiplies the loss's temperature with training progress.
    pub temperature: Schedule,
    /// The teacher whose outputs the loss reads, by name; `None`: the only one.
    pub teacher: Option<String>,
}

impl Term {
    /// A term with weight 1 and constant schedules, reading the only teacher.
    pub fn new(loss: impl KdLoss + 'static) -> Self {
        Self {
            loss: Arc::new(loss),
            weight: 1.0,
            schedule: Schedule::Constant,
            temperature: Schedule::Constant,
            teacher: None,
        }
    }

    /// The same term reading the teacher called `name`.
    pub fn reading(self, name: &str) -> Self {
        Self {
            teacher: Some(name.to_string()),
            ..self
        }
    }
}

/// Row indices or row targets, `[rows]`.
type Rows = Tensor<1, Int>;

/// The name a lone teacher goes by: what [`Objective::compute`] calls the teacher it is given.
pub const DEFAULT_TEACHER: &str = "teacher";

/// The temperatures a loss may divide logits by, schedules included: from a sharpening 0.001 to
/// a flattening 1000 (fasterai and the papers use 1 to 20).
pub const TEMPERATURES: std::ops::RangeInclusive<f64> = 0.001..=1000.0;

/// Every teacher's outputs for one batch, by teacher name.
pub type TeacherOutputs = BTreeMap<String, Outputs>;

/// The training loss: cross-entropy plus distillation terms.
#[derive(Debug, Clone, Default)]
pub struct Objective {
    /// How CE and KD combine.
    pub mix: Mix,
    /// Distillation terms.
    pub terms: Vec<Term>,
}

/// The parts of one loss evaluation.
#[derive(Debug, Clone)]
pub struct LossParts {
    /// What is back-propagated.
    pub total: Tensor<1>,
    /// Cross-entropy of the student (mean over items, or over the positions that count);
    /// `None` for a batch without targets, where it drops out of the total.
    pub ce: Option<Tensor<1>>,
    /// `KD = Σ weightᵢ·scheduleᵢ·lossᵢ`, before mixing with CE; `None` without terms.
    pub kd: Option<Tensor<1>>,
    /// Each term's unweighted value, by loss name.
    pub terms: Vec<(&'static str, Tensor<1>)>,
    /// For per-position logits under a mask, the rows of [`Logits::rows`](crate::Logits::rows)
    /// that count; `None`: every row.
    pub rows: Option<Tensor<1, Int>>,
    /// The target of each row that counts, when the batch has labels.
    pub targets: Option<Tensor<1, Int>>,
}

impl LossParts {
    /// The rows of `logits` (the student's, say) that counted, `[rows, classes]`: what
    /// [`targets`](Self::targets) label, one for one.
    pub fn counted(&self, logits: &crate::Logits) -> Tensor<2> {
        let all = logits.clone().rows();
        match &self.rows {
            Some(rows) => all.select(0, rows.clone()),
            None => all,
        }
    }

    /// Read the total; if it is not finite, find and name the culprit (CE or which loss).
    pub fn check_finite(&self) -> Result<f64, LossError> {
        let total: f64 = self.total.clone().into_scalar::<f32>() as f64;
        if total.is_finite() {
            return Ok(total);
        }
        if let Some(ce) = &self.ce {
            let ce: f32 = ce.clone().into_scalar();
            if !ce.is_finite() {
                return Err(LossError::NonFinite {
                    loss: "CrossEntropy",
                    value: ce as f64,
                });
            }
        }
        for (name, value) in &self.terms {
            let v: f32 = value.clone().into_scalar();
            if !v.is_finite() {
                return Err(LossError::NonFinite {
                    loss: name,
                    value: v as f64,
                });
            }
        }
        Err(LossError::NonFinite {
            loss: "total",
            value: total,
        })
    }
}

impl Objective {
    /// Cross-entropy alone (the student trained without a teacher).
    pub fn cross_entropy_only() -> Self {
        Self {
            mix: Mix::Sum { ce: 1.0 },
            terms: Vec::new(),
        }
    }

    /// fasterai's callback: `lerp(CE, loss, weight)`.
    pub fn lerp(loss: impl KdLoss + 'static, weight: f64) -> Self {
        Self {
            mix: Mix::Lerp {
                weight,
                schedule: Schedule::Constant,
            },
            terms: vec![Term::new(loss)],
        }
    }

    /// Whether any weight or temperature moves with training progress (a schedule that is not
    /// [`Schedule::Constant`]): then something must advance the progress.
    pub fn is_scheduled(&self) -> bool {
        let moving = |s: &Schedule| *s != Schedule::Constant;
        matches!(self.mix, Mix::Lerp { schedule, .. } if moving(&schedule))
            || self
                .terms
                .iter()
                .any(|t| moving(&t.schedule) || moving(&t.temperature))
    }

    /// Each loss's own settings ([`KdLoss::check_settings`]), and every weight and temperature
    /// the objective will use, at the start and the end of training (schedules move
    /// monotonically between them), as the `f32` tensors will hold it:
    /// weights finite and ≥ 0 (a lerp weight within `[0, 1]`), temperatures within
    /// [`TEMPERATURES`] (at 2e-38, say, logits divided by it overflow `f32`). Found here, a bad setting stops a run before any work instead
    /// of turning the loss into NaN at step 0.
    pub fn check_values(&self) -> Result<(), LossError> {
        let at = |p: f64| {
            if p == 0.0 {
                "at the start"
            } else {
                "at the end"
            }
        };
        for p in [0.0, 1.0] {
            match self.mix {
                Mix::Lerp { weight, schedule } => {
                    let w = weight * schedule.at(p);
                    if !((w as f32).is_finite() && (0.0..=1.0).contains(&w)) {
                        return Err(LossError::Setting {
                            loss: "mix",
                            what: format!("weight {}", at(p)),
                            value: w,
                            message: "must be between 0 and 1",
                        });
                    }
                }
                Mix::Sum { ce } => {
                    if !((ce as f32).is_finite() && ce >= 0.0) {
                        return Err(LossError::Setting {
                            loss: "mix",
                            what: "ce".into(),
                            value: ce,
                            message: "must be finite and 0 or more",
                        });
                    }
                }
            }
            for term in &self.terms {
                let loss = term.loss.name();
                term.loss.check_settings()?;
                let w = term.weight * term.schedule.at(p);
                if !((w as f32).is_finite() && w >= 0.0) {
                    return Err(LossError::Setting {
                        loss,
                        what: format!("weight {}", at(p)),
                        value: w,
                        message: "must be finite (as f32) and 0 or more",
                    });
                }
                if let Some(t) = term.loss.temperature() {
                    let t = t * term.temperature.at(p);
                    if !(TEMPERATURES.contains(&t)) {
                        return Err(LossError::Setting {
                            loss,
                            what: format!("temperature {}", at(p)),
                            value: t,
                            message: "must be between 0.001 and 1000: the logits are divided by it, in f32",
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a teacher is needed at all.
    pub fn needs_teacher(&self) -> bool {
        !self.terms.is_empty()
    }

    /// Every student tap the terms read, without duplicates, in first-use order.
    pub fn student_taps(&self) -> Vec<String> {
        self.taps(|p| &p.student)
    }

    /// Every teacher tap the terms read (of every teacher).
    pub fn teacher_taps(&self) -> Vec<String> {
        self.taps(|p| &p.teacher)
    }

    /// The taps the terms read from teacher `name`, among the teachers `names`.
    pub fn teacher_taps_of(&self, name: &str, names: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for term in &self.terms {
            if self.term_teacher(term, names).ok() != Some(name) {
                continue;
            }
            for pair in term.loss.pairs() {
                if !out.contains(&pair.teacher) {
                    out.push(pair.teacher.clone());
                }
            }
        }
        out
    }

    /// The teachers among `names` that some term reads, in `names` order.
    pub fn teachers_read<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        names
            .iter()
            .copied()
            .filter(|n| {
                self.terms
                    .iter()
                    .any(|t| self.term_teacher(t, names).ok() == Some(*n))
            })
            .collect()
    }

    /// Which of the teachers `names` `term` reads: the one it names, or the only one when it
    /// names none. A name not among `names`, or no name with several teachers, is an error
    /// naming the loss and the teachers there are.
    pub fn term_teacher<'a>(&self, term: &Term, names: &[&'a str]) -> Result<&'a str, LossError> {
        let loss = term.loss.name();
        let available = || names.iter().map(|n| n.to_string()).collect();
        match (&term.teacher, names) {
            (_, []) => Err(LossError::MissingTeacher { loss }),
            (Some(wanted), _) => names.iter().copied().find(|n| n == wanted).ok_or_else(|| {
                LossError::UnknownTeacher {
                    loss,
                    teacher: wanted.clone(),
                    available: available(),
                }
            }),
            (None, [only]) => Ok(only),
            (None, _) => Err(LossError::AmbiguousTeacher {
                loss,
                available: available(),
            }),
        }
    }

    fn taps(&self, side: impl Fn(&crate::LayerPair) -> &String) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for term in &self.terms {
            for pair in term.loss.pairs() {
                let tap = side(pair);
                if !out.contains(tap) {
                    out.push(tap.clone());
                }
            }
        }
        out
    }

    /// The loss on one batch of per-item class `targets` with one teacher (`None` when the
    /// objective has no terms): the terms read `teacher`, which goes by [`DEFAULT_TEACHER`].
    pub fn compute(
        &self,
        student: &Outputs,
        teacher: Option<&Outputs>,
        targets: &Tensor<1, Int>,
        progress: f64,
    ) -> Result<LossParts, LossError> {
        let teachers: TeacherOutputs = teacher
            .map(|t| (DEFAULT_TEACHER.to_string(), t.clone()))
            .into_iter()
            .collect();
        self.compute_with(
            student,
            &teachers,
            &Supervision::labels(targets.clone()),
            progress,
        )
    }

    /// The loss on one batch, each term reading the teacher it names among `teachers`
    /// (see [`term_teacher`](Self::term_teacher)). `supervision` holds the batch's targets,
    /// if any, and the mask of positions that count for per-position logits. `progress` in
    /// `[0, 1]` drives the schedules; `student` taps must already be through the connectors.
    ///
    /// Without targets the cross-entropy part drops out: the total is `KD` alone, whatever
    /// the mix (a mix's weight only divides the labelled and the distilled part).
    pub fn compute_with(
        &self,
        student: &Outputs,
        teachers: &TeacherOutputs,
        supervision: &Supervision,
        progress: f64,
    ) -> Result<LossParts, LossError> {
        self.compute_remembering(student, teachers, supervision, progress, None)
    }

    /// The rows of the student's logits that count, and the target of each, checked against
    /// the logits' shape.
    fn target_rows(
        student: &Outputs,
        supervision: &Supervision,
    ) -> Result<(Option<Rows>, Option<Rows>), LossError> {
        let rows =
            valid_rows(&student.logits, supervision.mask.as_ref()).map_err(LossError::Mask)?;
        let Some(targets) = &supervision.targets else {
            return Ok((rows, None));
        };
        let logits = student.logits.dims();
        if targets.dims()[..] != logits[..logits.len() - 1] {
            return Err(LossError::Shape {
                loss: "CrossEntropy",
                what: "targets".into(),
                student: logits,
                teacher: targets.dims(),
                hint: "one target per item ([batch] for [batch, classes] logits) or per position ([batch, positions] for [batch, positions, classes])",
            });
        }
        if let Some((second, share)) = targets.mixed_in() {
            if second.dims() != targets.dims()[..] {
                return Err(LossError::Shape {
                    loss: "CrossEntropy",
                    what: "mixed-in targets".into(),
                    student: targets.dims(),
                    teacher: second.dims().to_vec(),
                    hint: "both label sets of a mixed batch have one label per item",
                });
            }
            if !(0.0..=1.0).contains(&share) {
                return Err(LossError::Setting {
                    loss: "CrossEntropy",
                    what: "the first labels' share of mixed targets".into(),
                    value: share,
                    message: "is outside [0, 1]",
                });
            }
        }
        let targets = targets.clone().rows();
        let targets = match &rows {
            Some(rows) => targets.select(0, rows.clone()),
            None => targets,
        };
        Ok((rows, Some(targets)))
    }

    /// As [`compute_with`](Self::compute_with), giving the terms that keep a memory of the
    /// training items theirs (`memories`, see [`Contrasts`]) and, on a training batch, each
    /// item's index among the training items (`items`; the memories are then updated).
    pub fn compute_remembering(
        &self,
        student: &Outputs,
        teachers: &TeacherOutputs,
        supervision: &Supervision,
        progress: f64,
        memories: Option<(&Contrasts, Option<&[u64]>)>,
    ) -> Result<LossParts, LossError> {
        let (rows, targets) = Self::target_rows(student, supervision)?;
        let mixed_in = supervision.targets.as_ref().and_then(Targets::mixed_in);
        let ce = targets.as_ref().map(|targets| {
            let logits = student.logits.clone().rows();
            let logits = match &rows {
                Some(rows) => logits.select(0, rows.clone()),
                None => logits,
            };
            match &mixed_in {
                // Mixed labels: rows are items (per-item logits), nothing to select.
                Some((second, share)) => {
                    cross_entropy(logits.clone(), targets.clone()).mul_scalar(*share)
                        + cross_entropy(logits, second.clone()).mul_scalar(1.0 - share)
                }
                None => cross_entropy(logits, targets.clone()),
            }
        });
        if self.terms.is_empty() {
            let ce_only = ce.clone().ok_or(LossError::MissingTargets {
                loss: "CrossEntropy (the objective has no distillation term)",
            })?;
            let total = match self.mix {
                Mix::Sum { ce: gamma } => ce_only.mul_scalar(gamma),
                Mix::Lerp { .. } => ce_only,
            };
            return Ok(LossParts {
                total,
                ce,
                kd: None,
                terms: Vec::new(),
                rows,
                targets,
            });
        }
        let names: Vec<&str> = teachers.keys().map(String::as_str).collect();
        let mut kd: Option<Tensor<1>> = None;
        let mut terms = Vec::with_capacity(self.terms.len());
        for (i, term) in self.terms.iter().enumerate() {
            let input = KdInput {
                student,
                teacher: &teachers[self.term_teacher(term, &names)?],
                targets: targets.as_ref(),
                rows: rows.as_ref(),
                temperature_scale: term.temperature.at(progress),
                memory: memories.and_then(|(memories, items)| {
                    memories
                        .of_term(i)
                        .map(|memory| MemoryInput { memory, items })
                }),
            };
            let value = term.loss.compute(&input)?;
            let weighted = value
                .clone()
                .mul_scalar(term.weight * term.schedule.at(progress));
            kd = Some(match kd {
                Some(acc) => acc + weighted,
                None => weighted,
            });
            terms.push((term.loss.name(), value));
        }
        let kd = kd.expect("at least one term");
        let total = match (&ce, self.mix) {
            (None, _) => kd.clone(),
            (Some(ce), Mix::Lerp { weight, schedule }) => {
                let w = weight * schedule.at(progress);
                ce.clone().mul_scalar(1.0 - w) + kd.clone().mul_scalar(w)
            }
            (Some(ce), Mix::Sum { ce: gamma }) => ce.clone().mul_scalar(gamma) + kd.clone(),
        };
        Ok(LossParts {
            total,
            ce,
            kd: Some(kd),
            terms,
            rows,
            targets,
        })
    }
}

/// An objective's memories are built from its terms.
impl Contrasts {
    /// A memory for every term of `objective` that keeps one ([`KdLoss::memory`]), with a row
    /// for each of the `items` training items, its heads sized from the flattened widths of
    /// the taps it reads: `student` gives each student tap's per-item size, `teachers` each
    /// teacher's, by teacher name. `items` may be `None` only when no term keeps a memory.
    ///
    /// [`KdLoss::memory`]: crate::KdLoss::memory
    pub fn for_objective(
        objective: &Objective,
        items: Option<usize>,
        student: &BTreeMap<String, usize>,
        teachers: &BTreeMap<String, BTreeMap<String, usize>>,
        device: &Device,
    ) -> Result<Self, LossError> {
        let names: Vec<&str> = teachers.keys().map(String::as_str).collect();
        let mut out = Self::none();
        for (i, term) in objective.terms.iter().enumerate() {
            let Some(spec) = term.loss.memory(items.unwrap_or(0)) else {
                continue;
            };
            let loss = term.loss.name();
            if items.is_none() {
                return Err(LossError::Memory {
                    loss,
                    message: "it keeps a row per training item, and the number of training items was not given".into(),
                });
            }
            spec.check(loss)?;
            let pair = &term.loss.pairs()[0];
            let teacher = &teachers[objective.term_teacher(term, &names)?];
            let width = |side: &'static str, widths: &BTreeMap<String, usize>, tap: &str| {
                widths
                    .get(tap)
                    .copied()
                    .ok_or_else(|| LossError::MissingTap {
                        loss,
                        side,
                        tap: tap.to_string(),
                        available: widths.keys().cloned().collect(),
                    })
            };
            out.memories.push(ContrastMemory::new(
                spec,
                width("student", student, &pair.student)?,
                width("teacher", teacher, &pair.teacher)?,
                device,
            ));
            out.terms.push(i);
        }
        Ok(out)
    }
}
