use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::contrast::MemorySpec;
use crate::loss::tap_of;
use crate::{KdInput, KdLoss, LayerPair, LossError};

/// Contrastive representation distillation (Tian et al., 2020) between one pair of taps
/// (typically the pooled features before the classifiers; any tap is flattened per item):
/// embedding heads, two memory banks and NCE over `negatives` drawn per item — see
/// [`ContrastMemory`](crate::ContrastMemory) for the formula. Needs each training item's index
/// ([`DistillBatch::item_indices`](crate::DistillBatch::item_indices)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crd {
    /// The student and teacher taps.
    pub pair: LayerPair,
    /// Embedding width (default 128).
    #[serde(default = "Crd::default_dim")]
    pub dim: usize,
    /// Negatives per item, `K` (default 16384; fewer than the training items).
    #[serde(default = "Crd::default_negatives")]
    pub negatives: usize,
    /// Temperature (default 0.07).
    #[serde(default = "Crd::default_temperature")]
    pub temperature: f64,
    /// Momentum of the memory updates (default 0.5).
    #[serde(default = "Crd::default_momentum")]
    pub momentum: f64,
}

impl Crd {
    fn default_dim() -> usize {
        128
    }
    fn default_negatives() -> usize {
        16384
    }
    fn default_temperature() -> f64 {
        0.07
    }
    fn default_momentum() -> f64 {
        0.5
    }

    /// Between `pair`'s taps with the paper's defaults. The memory's rows, one per training
    /// item, are sized by the trainer, which counts them.
    pub fn new(pair: LayerPair) -> Self {
        Self {
            pair,
            dim: Self::default_dim(),
            negatives: Self::default_negatives(),
            temperature: Self::default_temperature(),
            momentum: Self::default_momentum(),
        }
    }
}

impl KdLoss for Crd {
    fn name(&self) -> &'static str {
        "CRD"
    }

    fn pairs(&self) -> &[LayerPair] {
        std::slice::from_ref(&self.pair)
    }

    fn memory(&self, items: usize) -> Option<MemorySpec> {
        Some(MemorySpec {
            items,
            negatives: self.negatives,
            dim: self.dim,
            temperature: self.temperature,
            momentum: self.momentum,
        })
    }

    fn temperature(&self) -> Option<f64> {
        Some(self.temperature)
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        crd(self.name(), input, &self.pair)
    }
}

/// The CRD loss on a [`KdInput`](crate::KdInput): the pair's taps, flattened per item, through
/// the memory the input carries.
fn crd(loss: &'static str, input: &KdInput, pair: &LayerPair) -> Result<Tensor<1>, LossError> {
    let memory = input.memory.ok_or(LossError::Memory {
        loss,
        message: "it keeps a memory of the training items, which only a trainer (kd-train's DistillModel) gives it".into(),
    })?;
    let f_s = tap_of(input.student, loss, "student", &pair.student)?
        .clone()
        .flatten();
    let f_t = tap_of(input.teacher, loss, "teacher", &pair.teacher)?
        .clone()
        .flatten();
    let batch = f_s.dims()[0];
    let spec = memory.memory.spec();
    if let Some(items) = memory.items {
        if items.len() != batch {
            return Err(LossError::Memory {
                loss,
                message: format!(
                    "the batch has {batch} items but {} item indices",
                    items.len()
                ),
            });
        }
        if let Some(&bad) = items.iter().find(|&&i| i as usize >= spec.items) {
            return Err(LossError::Memory {
                loss,
                message: format!(
                    "item index {bad} is outside the memory of {} training items: the memory must be sized for the training set",
                    spec.items
                ),
            });
        }
    }
    let widths = (f_s.dims()[1], f_t.dims()[1]);
    let heads = (
        memory.memory.embed_student.weight.dims()[0],
        memory.memory.embed_teacher.weight.dims()[0],
    );
    if widths != heads {
        return Err(LossError::Shape {
            loss,
            what: format!("{} ↔ {} (flattened)", pair.student, pair.teacher),
            student: vec![batch, widths.0],
            teacher: vec![batch, widths.1],
            hint: "the embedding heads were sized for other widths: build the model on batches of the training size",
        });
    }
    let negatives = memory
        .memory
        .draw_negatives(batch, memory.items, &f_s.device());
    Ok(memory.memory.loss(f_s, f_t, memory.items, negatives))
}
