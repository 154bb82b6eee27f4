//! How a failed training step stops a run. Burn's `TrainStep::step` cannot return an error, so
//! a step that fails — a NaN or infinite loss or gradient, a loss that cannot be computed, a
//! device that failed — keeps kd's [`TrainError`] here and stops Burn's `Learner` through its
//! [`Interrupter`], after the step, before any checkpoint of that epoch is written. The step's
//! gradients are dropped, so the weights stay those of the last good step.

use std::sync::{Arc, Mutex};

use burn::train::Interrupter;

use crate::TrainError;

/// The stop handle and the first error of one training run, shared by every copy of the
/// model.
#[derive(Clone, Default)]
pub struct StepGuard {
    interrupter: Interrupter,
    error: Arc<Mutex<Option<TrainError>>>,
}

impl std::fmt::Debug for StepGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGuard")
            .field("stopped", &self.interrupter.should_stop())
            .finish()
    }
}

impl StepGuard {
    /// The interrupter a failed step stops: give it to Burn's
    /// `SupervisedTraining::with_interrupter`.
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// Keep `error` (the first one only) and stop training.
    pub(crate) fn fail(&self, error: TrainError) {
        let message = error.to_string();
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error);
        }
        self.interrupter.stop(Some(&message));
    }

    /// The error that stopped training, if one did; taking it leaves none.
    pub fn take_error(&self) -> Option<TrainError> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
