//! Combining cross-entropy with any number of weighted, scheduled distillation losses, and the
//! learnable connectors that adapt student taps to the teacher's channel counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Outputs;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::logit::cross_entropy;
use crate::{KdInput, KdLoss, LossConfig, LossError, Schedule};

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
}

impl Term {
    /// A term with weight 1 and constant schedules.
    pub fn new(loss: impl KdLoss + 'static) -> Self {
        Self {
            loss: Arc::new(loss),
            weight: 1.0,
            schedule: Schedule::Constant,
            temperature: Schedule::Constant,
        }
    }
}

/// Serialisable form of a [`Term`] with a built-in loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermConfig {
    /// The loss and its parameters.
    pub loss: LossConfig,
    /// Weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Weight schedule (default constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// Temperature schedule (default constant).
    #[serde(default)]
    pub temperature: Schedule,
}

fn default_weight() -> f64 {
    1.0
}

/// Serialisable form of an [`Objective`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    /// How CE and KD combine (default: fasterai's lerp with w = 0.5).
    #[serde(default)]
    pub mix: Mix,
    /// The distillation terms; none trains the student alone.
    #[serde(default)]
    pub losses: Vec<TermConfig>,
}

impl ObjectiveConfig {
    /// Build the objective.
    pub fn build(&self) -> Objective {
        Objective {
            mix: self.mix,
            terms: self
                .losses
                .iter()
                .map(|t| Term {
                    loss: Arc::new(t.loss.clone()),
                    weight: t.weight,
                    schedule: t.schedule,
                    temperature: t.temperature,
                })
                .collect(),
        }
    }
}

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
    /// Cross-entropy of the student.
    pub ce: Tensor<1>,
    /// `KD = Σ weightᵢ·scheduleᵢ·lossᵢ`, before mixing with CE; `None` without terms.
    pub kd: Option<Tensor<1>>,
    /// Each term's unweighted value, by loss name.
    pub terms: Vec<(&'static str, Tensor<1>)>,
}

impl LossParts {
    /// Read the total; if it is not finite, find and name the culprit (CE or which loss).
    pub fn check_finite(&self) -> Result<f64, LossError> {
        let total: f64 = self.total.clone().into_scalar::<f32>() as f64;
        if total.is_finite() {
            return Ok(total);
        }
        let ce: f32 = self.ce.clone().into_scalar();
        if !ce.is_finite() {
            return Err(LossError::NonFinite {
                loss: "CrossEntropy",
                value: ce as f64,
            });
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

    /// Whether a teacher is needed at all.
    pub fn needs_teacher(&self) -> bool {
        !self.terms.is_empty()
    }

    /// Every student tap the terms read, without duplicates, in first-use order.
    pub fn student_taps(&self) -> Vec<String> {
        self.taps(|p| &p.student)
    }

    /// Every teacher tap the terms read.
    pub fn teacher_taps(&self) -> Vec<String> {
        self.taps(|p| &p.teacher)
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

    /// Evaluate at training progress `progress ∈ [0, 1]`. `student` taps must already be
    /// through the connectors.
    pub fn compute(
        &self,
        student: &Outputs,
        teacher: Option<&Outputs>,
        targets: &Tensor<1, Int>,
        progress: f64,
    ) -> Result<LossParts, LossError> {
        let ce = cross_entropy(student.logits.clone(), targets.clone());
        if self.terms.is_empty() {
            let total = match self.mix {
                Mix::Sum { ce: gamma } => ce.clone().mul_scalar(gamma),
                Mix::Lerp { .. } => ce.clone(),
            };
            return Ok(LossParts {
                total,
                ce,
                kd: None,
                terms: Vec::new(),
            });
        }
        let teacher = teacher.ok_or(LossError::MissingTeacher {
            loss: self.terms[0].loss.name(),
        })?;
        let mut kd: Option<Tensor<1>> = None;
        let mut terms = Vec::with_capacity(self.terms.len());
        for term in &self.terms {
            let input = KdInput {
                student,
                teacher,
                targets: Some(targets),
                temperature_scale: term.temperature.at(progress),
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
        let total = match self.mix {
            Mix::Lerp { weight, schedule } => {
                let w = weight * schedule.at(progress);
                ce.clone().mul_scalar(1.0 - w) + kd.clone().mul_scalar(w)
            }
            Mix::Sum { ce: gamma } => ce.clone().mul_scalar(gamma) + kd.clone(),
        };
        Ok(LossParts {
            total,
            ce,
            kd: Some(kd),
            terms,
        })
    }
}

/// A learnable 1×1 convolution + BatchNorm mapping a student tap to the teacher's channels.
#[derive(Module, Debug)]
pub struct Connector {
    /// 1×1 convolution, no bias.
    pub conv: Conv2d,
    /// BatchNorm on the teacher's channel count.
    pub bn: BatchNorm,
}

impl Connector {
    /// `in_channels` → `out_channels`.
    pub fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([in_channels, out_channels], [1, 1])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out_channels).init(device),
        }
    }

    /// Map a student feature map.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// The connectors of an objective, trained and saved with the student.
#[derive(Module, Debug)]
pub struct Connectors {
    /// One connector per adapted student tap.
    pub layers: Vec<Connector>,
    /// The student tap each connector maps.
    #[module(skip)]
    pub taps: Vec<String>,
}

impl Connectors {
    /// No connectors.
    pub fn none() -> Self {
        Self {
            layers: Vec::new(),
            taps: Vec::new(),
        }
    }

    /// A connector for every pair of a channel-sensitive loss whose channel counts differ.
    /// `student_channels` / `teacher_channels` give each tap's channel count.
    pub fn for_objective(
        objective: &Objective,
        student_channels: &BTreeMap<String, usize>,
        teacher_channels: &BTreeMap<String, usize>,
        device: &Device,
    ) -> Result<Self, LossError> {
        let mut out = Self::none();
        let mut planned: BTreeMap<String, usize> = BTreeMap::new();
        for term in &objective.terms {
            if !term.loss.needs_matching_channels() {
                continue;
            }
            for pair in term.loss.pairs() {
                let missing = |side: &'static str, tap: &str, map: &BTreeMap<String, usize>| {
                    LossError::MissingTap {
                        loss: term.loss.name(),
                        side,
                        tap: tap.to_string(),
                        available: map.keys().cloned().collect(),
                    }
                };
                let cs = *student_channels
                    .get(&pair.student)
                    .ok_or_else(|| missing("student", &pair.student, student_channels))?;
                let ct = *teacher_channels
                    .get(&pair.teacher)
                    .ok_or_else(|| missing("teacher", &pair.teacher, teacher_channels))?;
                if cs == ct {
                    continue;
                }
                match planned.get(&pair.student) {
                    Some(&c) if c == ct => continue,
                    Some(&c) => {
                        return Err(LossError::ConnectorConflict {
                            tap: pair.student.clone(),
                            first: c,
                            second: ct,
                        });
                    }
                    None => {
                        planned.insert(pair.student.clone(), ct);
                        out.layers.push(Connector::new(cs, ct, device));
                        out.taps.push(pair.student.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Pass the student's taps through their connectors.
    pub fn apply(&self, mut outputs: Outputs) -> Outputs {
        for (tap, connector) in self.taps.iter().zip(&self.layers) {
            if let Some(x) = outputs.taps.remove(tap) {
                outputs.taps.insert(tap.clone(), connector.forward(x));
            }
        }
        outputs
    }
}
