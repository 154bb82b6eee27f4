//! One pass of a model over validation data, outside training (what `kd eval` reports): the
//! same numbers as the validation half of a training epoch.

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::train::InferenceStep;
use kd_core::DistillBatch;

use crate::TrainError;
use crate::distill::{DistillModel, TappableModule};
use crate::recorder::{Sums, Tally};

/// Validation metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean objective.
    pub loss: f64,
    /// Mean cross-entropy.
    pub ce: f64,
    /// Mean distillation term.
    pub kd: Option<f64>,
    /// Accuracy.
    pub accuracy: f64,
}

/// Evaluate the student (eval mode, no tape) on one pass of `valid`: means over items (over
/// the positions that count, for per-position outputs), accuracy over the rows that have a
/// target.
pub fn evaluate<S, B>(
    model: &DistillModel<S, B>,
    valid: &impl AsRef<dyn DataLoader<B>>,
) -> Result<Evaluation, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    let model = model.valid();
    let mut sums = Sums::default();
    for batch in valid.as_ref().iter() {
        let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
        let out = InferenceStep::step(&model, batch);
        if let Some(e) = model.guard().take_error() {
            return Err(e);
        }
        let tally = Tally::of(&out, true).map_err(|e| TrainError::Data(e.to_string()))?;
        sums.add(&tally, true);
    }
    let (loss, ce, kd, accuracy) = sums.per_row();
    Ok(Evaluation {
        loss,
        ce,
        kd: kd.filter(|_| model.has_teacher()),
        accuracy,
    })
}
