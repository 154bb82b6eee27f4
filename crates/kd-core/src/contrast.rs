//! Contrastive representation distillation (Tian et al., 2020, "Contrastive Representation
//! Distillation", CRD): the student's and the teacher's features, each through a linear
//! embedding head and L2-normalised, are told apart from other items' embeddings kept in two
//! momentum memory banks (one per side), with the NCE loss of the paper's code.
//!
//! For each item `i` of a batch, with `v_s`, `v_t` its embeddings, `M_s`, `M_t` the banks
//! (one row per training item), `K` negative rows `j₁…j_K` drawn uniformly among the other
//! items, temperature `T` and `N` training items:
//!
//! - scores against the *other* side's bank: `x_s = exp(M_t[(i, j₁…j_K)] · v_s / T) / Z_s`
//!   and `x_t = exp(M_s[(i, j₁…j_K)] · v_t / T) / Z_t`, where `Z` is fixed on the first training
//!   batch to `N × mean(exp(…/T))` of that batch (the code's `Z_v1`, `Z_v2`);
//! - NCE with noise probability `1/N`: `−( log(x₀ / (x₀ + K/N + ε)) + Σₖ log((K/N) / (xₖ + K/N +
//!   ε)) )`, summed over items and divided by the batch size (ε = 1e-7), for each side; the
//!   loss is the sum of both sides;
//! - after the step each item's rows move towards its new embeddings:
//!   `M[i] ← normalise(m·M[i] + (1 − m)·v)`, momentum `m`.
//!
//! Defaults are those of the paper's code (RepDistiller): 128-dimensional embeddings,
//! K = 16384, T = 0.07, m = 0.5; banks initialised uniformly in `±1/√(dim/3)`. One difference:
//! negatives are drawn among all other training items (the code's `relax`-style sampling),
//! not only among items of other classes, so that no labels need to be kept per bank row.
//!
//! On evaluation batches (items that have no bank rows), nothing is updated and each item's
//! positive is the other side's current embedding of it; negatives are drawn among all rows.
//!
//! Cost: each embedding is scored against its whole opposite bank (one `[batch, items]` matrix
//! product per side) and the `K + 1` scores needed are gathered from it — on the embedded data
//! (1,600 items, K = 512) cheaper than gathering `batch × (K + 1)` bank rows; on a data set of
//! a million items the product is `batch × 10⁶` values per side (256 MB at batch 64).

use burn::module::{Module, RunningState};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{LossError, splitmix64};

/// The ε of the NCE loss in the paper's code.
const NCE_EPS: f64 = 1e-7;

/// What a loss that keeps a memory of the training items needs: its size and how it is used
/// ([`KdLoss::memory`](crate::KdLoss::memory)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemorySpec {
    /// Rows: the number of training items (every training item's index is below it).
    pub items: usize,
    /// Negatives drawn per item and step (`K`).
    pub negatives: usize,
    /// Width of the embeddings.
    pub dim: usize,
    /// Temperature `T` of the scores.
    pub temperature: f64,
    /// Momentum `m` of the bank updates.
    pub momentum: f64,
}

impl MemorySpec {
    /// Bytes the memory holds: two banks of `items × dim` floats and two `feature × dim`
    /// heads (feature widths not counted: the banks dominate).
    pub fn bytes(&self) -> u128 {
        2 * self.items as u128 * self.dim as u128 * 4
    }

    /// A memory that can work: fewer negatives than there are other training items, a positive width, temperature and a momentum in `[0, 1)`.
    pub fn check(&self, loss: &'static str) -> Result<(), LossError> {
        let bad = |message: String| Err(LossError::Memory { loss, message });
        if self.negatives == 0 || self.negatives >= self.items {
            return bad(format!(
                "negatives = {} must be between 1 and the number of other training items ({}); lower `negatives`",
                self.negatives,
                self.items.saturating_sub(1)
            ));
        }
        if self.dim == 0 {
            return bad("dim = 0: the embeddings need a width".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature = {} must be positive",
                self.temperature
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum = {} must be in [0, 1)", self.momentum));
        }
        Ok(())
    }
}

/// One CRD term's trained embedding heads and its memory banks, trained and saved with the
/// student (the banks and `Z` as running state, so a checkpoint resumes them exactly).
#[derive(Module, Debug)]
pub struct ContrastMemory {
    /// Linear head on the flattened student tap.
    pub embed_student: Linear,
    /// Linear head on the flattened teacher tap.
    pub embed_teacher: Linear,
    /// `[items, dim]` memory of student embeddings.
    bank_student: RunningState<Tensor<2>>,
    /// `[items, dim]` memory of teacher embeddings.
    bank_teacher: RunningState<Tensor<2>>,
    /// `[Z_s, Z_t, updates]`: the normalisers (negative until the first training batch) and
    /// the number of training batches seen (which seeds the draw of negatives).
    state: RunningState<Tensor<1>>,
    /// Settings.
    #[module(skip)]
    spec: MemorySpec,
}

impl ContrastMemory {
    /// Heads from `student_width` and `teacher_width` (flattened tap sizes) to `spec.dim`,
    /// and banks of `spec.items` rows drawn uniformly in `±1/√(dim/3)`.
    pub fn new(
        spec: MemorySpec,
        student_width: usize,
        teacher_width: usize,
        device: &Device,
    ) -> Self {
        let stdv = 1.0 / (spec.dim as f64 / 3.0).sqrt();
        let bank = || {
            RunningState::new(Tensor::random(
                [spec.items, spec.dim],
                Distribution::Uniform(-stdv, stdv),
                device,
            ))
        };
        Self {
            embed_student: LinearConfig::new(student_width, spec.dim).init(device),
            embed_teacher: LinearConfig::new(teacher_width, spec.dim).init(device),
            bank_student: bank(),
            bank_teacher: bank(),
            state: RunningState::new(Tensor::from_floats([-1.0, -1.0, 0.0], device)),
            spec,
        }
    }

    /// Its settings.
    pub fn spec(&self) -> MemorySpec {
        self.spec
    }

    /// The banks, student side first.
    pub fn banks(&self) -> (Tensor<2>, Tensor<2>) {
        (
            self.bank_student.value_sync(),
            self.bank_teacher.value_sync(),
        )
    }

    /// Replace the banks and state (for tests and fixtures): `[items, dim]` each, and
    /// `[Z_s, Z_t, updates]` (negative `Z`s: set on the next training batch).
    pub fn set_state(&self, student: Tensor<2>, teacher: Tensor<2>, state: [f32; 3]) {
        let device = student.device();
        self.bank_student.update(student);
        self.bank_teacher.update(teacher);
        self.state.update(Tensor::from_floats(state, &device));
        self.sync();
    }

    /// `[Z_s, Z_t, updates]`.
    pub fn state(&self) -> [f32; 3] {
        let v: Vec<f32> = self.state.value_sync().into_data().iter::<f32>().collect();
        [v[0], v[1], v[2]]
    }

    /// Fold this thread's pending updates into the stored values (before saving).
    pub fn sync(&self) {
        let _ = (self.banks(), self.state.value_sync());
    }

    /// The CRD loss of one batch: `f_s` and `f_t` the student's and teacher's taps (any rank,
    /// flattened per item), `negatives` `[batch, K]` bank rows, and `items` each item's own row
    /// on a training batch (then the banks and, on the first batch, `Z` are updated) or `None`
    /// on an evaluation batch.
    pub fn loss(
        &self,
        f_s: Tensor<2>,
        f_t: Tensor<2>,
        items: Option<&[u64]>,
        negatives: Tensor<2, Int>,
    ) -> Tensor<1> {
        let spec = self.spec;
        let v_s = l2_normalise(self.embed_student.forward(f_s));
        let v_t = l2_normalise(self.embed_teacher.forward(f_t));
        let batch = v_s.dims()[0];
        let k = negatives.dims()[1];
        let device = v_s.device();
        let (bank_s, bank_t) = self.banks();
        let own = items.map(|items| {
            let v: Vec<i64> = items.iter().map(|&i| i as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(v, [batch]), &device)
        });
        // `v`'s score against the rows of `bank` it is compared with: its item's own row (or,
        // evaluating, `other`, the other side's embedding of it) first, then the negatives.
        // All of `v · bankᵀ` is computed and the needed entries picked from it (flattened,
        // item `b`'s row `r` at `b × items + r`): cheaper than gathering `batch × (K + 1)` rows
        // of the bank, and the same numbers.
        let rows = spec.items as i64;
        let offsets = Tensor::<1, Int>::arange(0..batch as i64, &device)
            .mul_scalar(rows)
            .reshape([batch, 1]);
        let wanted = match &own {
            Some(own) => Tensor::cat(vec![own.clone().reshape([batch, 1]), negatives.clone()], 1),
            None => negatives.clone(),
        };
        let picks = (wanted + offsets).reshape([-1]);
        let score = |v: &Tensor<2>, bank: &Tensor<2>, other: &Tensor<2>| -> Tensor<2> {
            let all = v.clone().matmul(bank.clone().transpose());
            let picked = all
                .reshape([-1])
                .select(0, picks.clone())
                .reshape([batch as i32, -1]);
            let scores = match &own {
                Some(_) => picked,
                None => Tensor::cat(
                    vec![(v.clone() * other.clone().detach()).sum_dim(1), picked],
                    1,
                ),
            };
            scores.div_scalar(spec.temperature).exp()
        };
        let out_s = score(&v_s, &bank_t, &v_t);
        let out_t = score(&v_t, &bank_s, &v_s);
        debug_assert_eq!(out_s.dims(), [batch, k + 1]);
        let [z_s, z_t, updates] = self.state();
        let z = |stored: f32, out: &Tensor<2>| -> f64 {
            if stored > 0.0 {
                stored as f64
            } else {
                out.clone().mean().into_scalar::<f32>() as f64 * spec.items as f64
            }
        };
        let (z_s, z_t) = (z(z_s, &out_s), z(z_t, &out_t));
        let loss = nce(out_s.div_scalar(z_s), spec.items) + nce(out_t.div_scalar(z_t), spec.items);
        if let Some(own) = own {
            let m = spec.momentum;
            let moved = |bank: Tensor<2>, v: Tensor<2>| -> Tensor<2> {
                let old = bank.clone().select(0, own.clone());
                let new = l2_normalise(old.clone().mul_scalar(m) + v.detach().mul_scalar(1.0 - m));
                bank.select_assign(0, own.clone(), new - old, IndexingUpdateOp::Add)
            };
            self.bank_student.update(moved(bank_s, v_s));
            self.bank_teacher.update(moved(bank_t, v_t));
            self.state.update(Tensor::from_floats(
                [z_s as f32, z_t as f32, updates + 1.0],
                &device,
            ));
        }
        loss
    }

    /// `K` negative rows per item, drawn uniformly and reproducibly from this memory's state
    /// (the number of training batches seen) and each item: on a training batch (`items`) among
    /// the rows other than the item's own, on an evaluation batch among all rows.
    pub fn draw_negatives(
        &self,
        batch: usize,
        items: Option<&[u64]>,
        device: &Device,
    ) -> Tensor<2, Int> {
        let spec = self.spec;
        let updates = self.state()[2] as u64;
        let mut out = Vec::with_capacity(batch * spec.negatives);
        for b in 0..batch {
            let own = items.map(|i| i[b]);
            let seed =
                splitmix64(splitmix64(updates ^ 0x43_52_44) ^ own.unwrap_or(b as u64 | 1 << 63));
            for j in 0..spec.negatives as u64 {
                let r = splitmix64(seed ^ j);
                let row = match own {
                    Some(own) => {
                        let r = r % (spec.items as u64 - 1);
                        if r >= own { r + 1 } else { r }
                    }
                    None => r % spec.items as u64,
                };
                out.push(row as i64);
            }
        }
        Tensor::from_data(TensorData::new(out, [batch, spec.negatives]), device)
    }
}

/// Each row divided by its L2 norm (the paper's `Normalize(2)`).
fn l2_normalise(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt();
    x / norm
}

/// The NCE loss of the paper's code (`ContrastLoss`) on scores `[batch, K + 1]`, positive
/// first, with noise probability `1 / items`.
pub fn nce(x: Tensor<2>, items: usize) -> Tensor<1> {
    let [batch, k1] = x.dims();
    let m_pn = (k1 - 1) as f64 / items as f64;
    let pos = x.clone().slice([0..batch, 0..1]);
    let neg = x.slice([0..batch, 1..k1]);
    let log_d1 = (pos.clone() / pos.add_scalar(m_pn + NCE_EPS)).log();
    let log_d0 = neg
        .add_scalar(m_pn + NCE_EPS)
        .recip()
        .mul_scalar(m_pn)
        .log();
    (log_d1.sum() + log_d0.sum()).neg().div_scalar(batch as f64)
}

/// The memories of an objective's CRD terms, trained and saved with the student.
#[derive(Module, Debug)]
pub struct Contrasts {
    /// One per term that keeps a memory.
    pub memories: Vec<ContrastMemory>,
    /// The term (index in the objective) of each memory.
    #[module(skip)]
    pub terms: Vec<usize>,
}

impl Contrasts {
    /// No memory.
    pub fn none() -> Self {
        Self {
            memories: Vec::new(),
            terms: Vec::new(),
        }
    }

    /// The memory of term `index`.
    pub fn of_term(&self, index: usize) -> Option<&ContrastMemory> {
        self.terms
            .iter()
            .position(|&t| t == index)
            .map(|i| &self.memories[i])
    }

    /// The number of training items its memories have rows for; `None` without a memory.
    pub fn items(&self) -> Option<usize> {
        self.memories.first().map(|m| m.spec().items)
    }

    /// No term keeps a memory.
    pub fn is_empty(&self) -> bool {
        self.memories.is_empty()
    }

    /// Fold pending updates into the stored values (before a checkpoint is written).
    pub fn sync(&self) {
        self.memories.iter().for_each(ContrastMemory::sync);
    }
}

/// What a memory-keeping loss gets besides the outputs: its memory, and each item's row on a
/// training batch (`None` when evaluating: nothing is updated).
#[derive(Debug, Clone, Copy)]
pub struct MemoryInput<'a> {
    /// The term's memory.
    pub memory: &'a ContrastMemory,
    /// Each item's row (its index among the training items), on training batches.
    pub items: Option<&'a [u64]>,
}
