//! The one trait every distillation loss implements, and the built-in losses as a serialisable
//! configuration.

use std::fmt::Debug;

use crate::{Outputs, Tap};
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::contrast::{self, MemoryInput, MemorySpec};
use crate::{LossError, feature, logit};

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
    /// The memory of the training items this loss keeps across steps (CRD's banks), if any:
    /// the trainer then builds one ([`ContrastMemory`](crate::ContrastMemory)), trains and
    /// saves it with the student, and hands it to every [`compute`](Self::compute) together
    /// with the items' indices. Such a loss reads exactly one layer pair.
    fn memory(&self) -> Option<MemorySpec> {
        None
    }
    /// The loss value, `[1]`. Shapes, taps and targets are checked; failures name the loss.
    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError>;
}

fn t5() -> f64 {
    5.0
}
fn t4() -> f64 {
    4.0
}
fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn eight() -> f64 {
    8.0
}
fn w_dist() -> f64 {
    25.0
}
fn w_angle() -> f64 {
    50.0
}
fn crd_dim() -> usize {
    128
}
fn crd_negatives() -> usize {
    16384
}
fn crd_temperature() -> f64 {
    0.07
}
fn crd_momentum() -> f64 {
    0.5
}

/// The built-in losses with their parameters (defaults as fasterai / the papers).
///
/// `scale` multiplies a feature loss: 1 matches fasterai; the research code bases use e.g.
/// 1000 for Attention and 3000 for Similarity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    /// Hinton et al. (2015), temperature `T` (default 5).
    SoftTarget {
        /// Temperature.
        #[serde(default = "t5")]
        temperature: f64,
    },
    /// MSE between logits.
    Logits,
    /// Deep mutual learning KL (temperature 1).
    Mutual,
    /// Decoupled KD (Zhao et al., 2022). Needs targets.
    DecoupledKd {
        /// Temperature (default 4).
        #[serde(default = "t4")]
        temperature: f64,
        /// Weight of the target-class term (default 1).
        #[serde(default = "one")]
        alpha: f64,
        /// Weight of the non-target term (default 8).
        #[serde(default = "eight")]
        beta: f64,
        /// Standardise logits (z-score per sample) before the temperature.
        #[serde(default)]
        normalize: bool,
    },
    /// DIST (Huang et al., 2022).
    Dist {
        /// Inter-class weight (default 1).
        #[serde(default = "one")]
        beta: f64,
        /// Intra-class weight (default 1).
        #[serde(default = "one")]
        gamma: f64,
        /// Temperature (default 1).
        #[serde(default = "one")]
        tau: f64,
    },
    /// Attention transfer (Zagoruyko & Komodakis, 2017), summed over pairs.
    Attention {
        /// Layer pairs.
        pairs: Vec<LayerPair>,
        /// Exponent (default 2).
        #[serde(default = "two")]
        p: f64,
        /// Multiplier (default 1).
        #[serde(default = "one")]
        scale: f64,
    },
    /// FitNets hints (Romero et al., 2015), summed over pairs; connectors fix channel counts.
    FitNet {
        /// Layer pairs.
        pairs: Vec<LayerPair>,
        /// Multiplier (default 1).
        #[serde(default = "one")]
        scale: f64,
    },
    /// Similarity-preserving KD (Tung & Mori, 2019), summed over pairs.
    Similarity {
        /// Layer pairs.
        pairs: Vec<LayerPair>,
        /// Multiplier (default 1).
        #[serde(default = "one")]
        scale: f64,
    },
    /// Activation boundaries (Heo et al., 2019), summed over pairs; connectors fix channels.
    ActivationBoundaries {
        /// Layer pairs.
        pairs: Vec<LayerPair>,
        /// Margin (default 2).
        #[serde(default = "two")]
        margin: f64,
        /// Multiplier (default 1).
        #[serde(default = "one")]
        scale: f64,
    },
    /// Relational KD (Park et al., 2019): distance and angle terms, summed over pairs.
    Rkd {
        /// Layer pairs (often the pooled features).
        pairs: Vec<LayerPair>,
        /// Weight of the distance term (default 25).
        #[serde(default = "w_dist")]
        distance_weight: f64,
        /// Weight of the angle term (default 50).
        #[serde(default = "w_angle")]
        angle_weight: f64,
    },
    /// Probabilistic knowledge transfer (Passalis & Tefas, 2018), summed over pairs.
    Pkt {
        /// Layer pairs.
        pairs: Vec<LayerPair>,
        /// Multiplier (default 1).
        #[serde(default = "one")]
        scale: f64,
    },
    /// Neuron selectivity transfer (Huang & Wang, 2017), summed over pairs.
    Nst {
        /// Layer pairs.
        pairs: Vec<LayerPair>,
        /// Multiplier (default 1).
        #[serde(default = "one")]
        scale: f64,
    },
    /// Contrastive representation distillation (Tian et al., 2020) between one pair of taps
    /// (typically the pooled features before the classifiers; any tap is flattened per item):
    /// embedding heads, two memory banks and NCE over `negatives` drawn per item — see
    /// [`ContrastMemory`](crate::ContrastMemory) for the formula. Needs each training item's
    /// index ([`DistillBatch::item_indices`](crate::DistillBatch::item_indices)).
    Crd {
        /// The student and teacher taps.
        pair: LayerPair,
        /// Embedding width (default 128).
        #[serde(default = "crd_dim")]
        dim: usize,
        /// Negatives per item, `K` (default 16384; fewer than the training items).
        #[serde(default = "crd_negatives")]
        negatives: usize,
        /// Temperature (default 0.07).
        #[serde(default = "crd_temperature")]
        temperature: f64,
        /// Momentum of the memory updates (default 0.5).
        #[serde(default = "crd_momentum")]
        momentum: f64,
        /// The number of training items: the memory's rows (`kd run` sets it from the data).
        #[serde(default)]
        items: usize,
    },
}

impl LossConfig {
    /// CRD between `student` and `teacher` taps with the paper's defaults (see
    /// [`LossConfig::Crd`]), for a training set of `items` items.
    pub fn crd(pair: LayerPair, items: usize) -> Self {
        LossConfig::Crd {
            pair,
            dim: crd_dim(),
            negatives: crd_negatives(),
            temperature: crd_temperature(),
            momentum: crd_momentum(),
            items,
        }
    }

    /// Every built-in loss with its default parameters, the feature losses on `pairs` (CRD on
    /// the first; for sweeps, registries and tests that must cover them all).
    pub fn every_builtin(pairs: &[LayerPair]) -> Vec<Self> {
        let pairs = || pairs.to_vec();
        vec![
            Self::soft_target(),
            Self::Logits,
            Self::Mutual,
            Self::DecoupledKd {
                temperature: t4(),
                alpha: one(),
                beta: eight(),
                normalize: false,
            },
            Self::Dist {
                beta: one(),
                gamma: one(),
                tau: one(),
            },
            Self::attention(pairs()),
            Self::FitNet {
                pairs: pairs(),
                scale: one(),
            },
            Self::Similarity {
                pairs: pairs(),
                scale: one(),
            },
            Self::ActivationBoundaries {
                pairs: pairs(),
                margin: two(),
                scale: one(),
            },
            Self::Rkd {
                pairs: pairs(),
                distance_weight: w_dist(),
                angle_weight: w_angle(),
            },
            Self::Pkt {
                pairs: pairs(),
                scale: one(),
            },
            Self::Nst {
                pairs: pairs(),
                scale: one(),
            },
            // Its memory's size comes from the data: `items` is left unset (0) here.
            Self::crd(
                pairs().into_iter().next().unwrap_or(LayerPair::new("", "")),
                0,
            ),
        ]
    }

    /// fasterai's `SoftTarget` with its default temperature.
    pub fn soft_target() -> Self {
        LossConfig::SoftTarget { temperature: 5.0 }
    }

    /// fasterai's `Attention` between explicitly paired layers.
    pub fn attention(pairs: Vec<LayerPair>) -> Self {
        LossConfig::Attention {
            pairs,
            p: 2.0,
            scale: 1.0,
        }
    }

    fn check_logits(&self, input: &KdInput) -> Result<(Tensor<2>, Tensor<2>), LossError> {
        paired_logits(self.name(), input)
    }

    /// Σ over `pairs` of `f` on each pair's taps, each seen as a map
    /// ([`feature::as_map`]): a vector `[b, f]` as `[b, f, 1, 1]`, a sequence `[b, n, d]` as
    /// `[b, d, n, 1]` (features as channels, positions as the spatial axis).
    fn sum_pairs(
        &self,
        input: &KdInput,
        pairs: &[LayerPair],
        f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<1>,
    ) -> Result<Tensor<1>, LossError> {
        let mut total: Option<Tensor<1>> = None;
        for pair in pairs {
            let (s, t) = pair_features(self, input, pair)?;
            let value = f(feature::as_map(s), feature::as_map(t));
            total = Some(match total {
                Some(acc) => acc + value,
                None => value,
            });
        }
        total.ok_or(LossError::NoPairs { loss: self.name() })
    }
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
    let get = |out: &Outputs, side: &'static str, tap: &str| {
        out.taps
            .get(tap)
            .cloned()
            .ok_or_else(|| LossError::MissingTap {
                loss,
                side,
                tap: tap.to_string(),
                available: out.taps.keys().cloned().collect(),
            })
    };
    let s = get(input.student, "student", &pair.student)?;
    let t = get(input.teacher, "teacher", &pair.teacher)?;
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

impl KdLoss for LossConfig {
    fn name(&self) -> &'static str {
        match self {
            LossConfig::SoftTarget { .. } => "SoftTarget",
            LossConfig::Logits => "Logits",
            LossConfig::Mutual => "Mutual",
            LossConfig::DecoupledKd { .. } => "DecoupledKD",
            LossConfig::Dist { .. } => "DIST",
            LossConfig::Attention { .. } => "Attention",
            LossConfig::FitNet { .. } => "FitNet",
            LossConfig::Similarity { .. } => "Similarity",
            LossConfig::ActivationBoundaries { .. } => "ActivationBoundaries",
            LossConfig::Rkd { .. } => "RKD",
            LossConfig::Pkt { .. } => "PKT",
            LossConfig::Nst { .. } => "NST",
            LossConfig::Crd { .. } => "CRD",
        }
    }

    fn pairs(&self) -> &[LayerPair] {
        match self {
            LossConfig::Attention { pairs, .. }
            | LossConfig::FitNet { pairs, .. }
            | LossConfig::Similarity { pairs, .. }
            | LossConfig::ActivationBoundaries { pairs, .. }
            | LossConfig::Rkd { pairs, .. }
            | LossConfig::Pkt { pairs, .. }
            | LossConfig::Nst { pairs, .. } => pairs,
            LossConfig::Crd { pair, .. } => std::slice::from_ref(pair),
            _ => &[],
        }
    }

    fn memory(&self) -> Option<MemorySpec> {
        match *self {
            LossConfig::Crd {
                dim,
                negatives,
                temperature,
                momentum,
                items,
                ..
            } => Some(MemorySpec {
                items,
                negatives,
                dim,
                temperature,
                momentum,
            }),
            _ => None,
        }
    }

    fn needs_matching_channels(&self) -> bool {
        matches!(
            self,
            LossConfig::FitNet { .. } | LossConfig::ActivationBoundaries { .. }
        )
    }

    /// Attention and NST compare per-position statistics of maps and sequences (a vector has
    /// no positions); every other feature loss accepts any rank.
    fn tap_ranks(&self) -> &'static [usize] {
        match self {
            LossConfig::Attention { .. } | LossConfig::Nst { .. } => &[3, 4],
            _ => &[2, 3, 4],
        }
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let ts = input.temperature_scale;
        match self {
            LossConfig::SoftTarget { temperature } => {
                let (s, t) = self.check_logits(input)?;
                Ok(logit::soft_target(s, t, temperature * ts))
            }
            LossConfig::Logits => {
                let (s, t) = self.check_logits(input)?;
                Ok(logit::logits_mse(s, t))
            }
            LossConfig::Mutual => {
                let (s, t) = self.check_logits(input)?;
                Ok(logit::mutual(s, t))
            }
            LossConfig::DecoupledKd {
                temperature,
                alpha,
                beta,
                normalize,
            } => {
                let (mut s, mut t) = self.check_logits(input)?;
                let targets = input
                    .targets
                    .ok_or(LossError::MissingTargets { loss: self.name() })?;
                if targets.dims()[0] != s.dims()[0] {
                    return Err(LossError::Shape {
                        loss: self.name(),
                        what: "targets".into(),
                        student: s.dims().to_vec(),
                        teacher: targets.dims().to_vec(),
                        hint: "one target per sample is needed",
                    });
                }
                if *normalize {
                    s = logit::standardize(s);
                    t = logit::standardize(t);
                }
                Ok(logit::decoupled(
                    s,
                    t,
                    targets.clone(),
                    temperature * ts,
                    *alpha,
                    *beta,
                ))
            }
            LossConfig::Dist { beta, gamma, tau } => {
                let (s, t) = self.check_logits(input)?;
                Ok(logit::dist(s, t, *beta, *gamma, tau * ts))
            }
            LossConfig::Attention { pairs, p, scale } => Ok(self
                .sum_pairs(input, pairs, |s, t| feature::attention(s, t, *p))?
                .mul_scalar(*scale)),
            LossConfig::FitNet { pairs, scale } => Ok(self
                .sum_pairs(input, pairs, feature::fitnet)?
                .mul_scalar(*scale)),
            LossConfig::Similarity { pairs, scale } => Ok(self
                .sum_pairs(input, pairs, feature::similarity)?
                .mul_scalar(*scale)),
            LossConfig::ActivationBoundaries {
                pairs,
                margin,
                scale,
            } => Ok(self
                .sum_pairs(input, pairs, |s, t| {
                    feature::activation_boundaries(s, t, *margin)
                })?
                .mul_scalar(*scale)),
            LossConfig::Rkd {
                pairs,
                distance_weight,
                angle_weight,
            } => self.sum_pairs(input, pairs, |s, t| {
                feature::rkd_distance(s.clone(), t.clone()).mul_scalar(*distance_weight)
                    + feature::rkd_angle(s, t).mul_scalar(*angle_weight)
            }),
            LossConfig::Pkt { pairs, scale } => Ok(self
                .sum_pairs(input, pairs, feature::pkt)?
                .mul_scalar(*scale)),
            LossConfig::Nst { pairs, scale } => Ok(self
                .sum_pairs(input, pairs, feature::nst)?
                .mul_scalar(*scale)),
            LossConfig::Crd { pair, .. } => contrast::crd(self.name(), input, pair),
        }
    }
}
