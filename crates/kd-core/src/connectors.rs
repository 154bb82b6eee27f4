//! Learnable connectors: a 1×1 convolution + BatchNorm adapting a student tap to the channel
//! count of the teacher tap it is compared with, trained and saved with the student. On a
//! vector or a sequence the same module acts on the features: a linear map without bias
//! applied to each item (each position) and BatchNorm over the features.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

use crate::objective::DEFAULT_TEACHER;
use crate::{LossError, Objective, Outputs, Tap};

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

    /// Map a student tap of any rank (its features, see [`Tap::width`]).
    pub fn forward_tap(&self, tap: Tap) -> Tap {
        match tap {
            Tap::Map(x) => Tap::Map(self.forward(x)),
            Tap::Vector(x) => {
                let [b, f] = x.dims();
                let y = self.forward(x.reshape([b, f, 1, 1]));
                let [_, c, _, _] = y.dims();
                Tap::Vector(y.reshape([b, c]))
            }
            Tap::Sequence(x) => {
                let y = self.forward(x.swap_dims(1, 2).unsqueeze_dim(3));
                Tap::Sequence(y.squeeze_dim::<3>(3).swap_dims(1, 2))
            }
        }
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

    /// A connector for every pair of a channel-sensitive loss whose channel counts differ,
    /// for an objective with one teacher. `student_channels` / `teacher_channels` give each
    /// tap's channel count.
    pub fn for_objective(
        objective: &Objective,
        student_channels: &BTreeMap<String, usize>,
        teacher_channels: &BTreeMap<String, usize>,
        device: &Device,
    ) -> Result<Self, LossError> {
        let teachers = BTreeMap::from([(DEFAULT_TEACHER.to_string(), teacher_channels.clone())]);
        Self::for_teachers(objective, student_channels, &teachers, device)
    }

    /// As [`for_objective`](Self::for_objective), for an objective whose terms read several
    /// teachers: `teacher_channels` gives each teacher's tap widths by teacher name (a term
    /// reads the teacher it names, see [`Objective::term_teacher`]).
    pub fn for_teachers(
        objective: &Objective,
        student_channels: &BTreeMap<String, usize>,
        teacher_channels: &BTreeMap<String, BTreeMap<String, usize>>,
        device: &Device,
    ) -> Result<Self, LossError> {
        let mut out = Self::none();
        let mut planned: BTreeMap<String, usize> = BTreeMap::new();
        let names: Vec<&str> = teacher_channels.keys().map(String::as_str).collect();
        for term in &objective.terms {
            if !term.loss.needs_matching_channels() {
                continue;
            }
            let teacher = objective.term_teacher(term, &names)?;
            let widths = &teacher_channels[teacher];
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
                let ct = *widths
                    .get(&pair.teacher)
                    .ok_or_else(|| missing("teacher", &pair.teacher, widths))?;
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
                outputs.taps.insert(tap.clone(), connector.forward_tap(x));
            }
        }
        outputs
    }
}
