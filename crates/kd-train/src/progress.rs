//! Training progress, the clock of every weight and temperature schedule: the fraction of
//! optimizer steps done, shared by every copy of a [`DistillModel`](crate::DistillModel).
//!
//! Three things can move it: [`fit_one_cycle`](crate::fit_one_cycle); [`OneCycle`](crate::OneCycle)
//! as Burn's learning-rate scheduler ([`OneCycle::with_progress`](crate::OneCycle::with_progress));
//! or, under Burn's `Learner` with any other scheduler, the model itself, counting its training
//! steps against the total it was given
//! ([`DistillModel::with_total_steps`](crate::DistillModel::with_total_steps)).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
struct State {
    /// The value, as `f64` bits.
    value: AtomicU64,
    /// Whether something outside the model sets the value (or took the handle to).
    driven: AtomicBool,
    /// Training steps counted by the model itself (one per device per batch).
    counted: AtomicU64,
    /// The total the model counts against; 0: it does not count.
    total: AtomicU64,
}

/// A shared progress value in `[0, 1]`. Clones read and write the same value.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<State>);

impl Progress {
    /// Progress 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.value.load(Ordering::Relaxed))
    }

    /// Set the value (the fraction of optimizer steps done). Whoever sets it drives it: the
    /// model no longer counts its own steps.
    pub fn set(&self, progress: f64) {
        self.0.driven.store(true, Ordering::Relaxed);
        self.0.value.store(progress.to_bits(), Ordering::Relaxed);
    }

    /// Mark the value as driven from outside (a handle was given to a scheduler).
    pub(crate) fn mark_driven(&self) {
        self.0.driven.store(true, Ordering::Relaxed);
    }

    /// Let the model count its own training steps against `total_steps` optimizer steps.
    pub(crate) fn count_over(&self, total_steps: usize) {
        self.0.total.store(total_steps as u64, Ordering::Relaxed);
    }

    /// Before one training step on one of `devices` devices (Burn's strategies run one step
    /// per device per batch): when the model counts its steps, set the value to the steps done
    /// over the total and count this one. `Err` when nothing moves the value at all.
    pub(crate) fn before_step(&self, devices: usize) -> Result<(), &'static str> {
        let total = self.0.total.load(Ordering::Relaxed);
        if self.0.driven.load(Ordering::Relaxed) {
            return Ok(());
        }
        if total == 0 {
            return Err(
                "the objective has weight or temperature schedules, but nothing advances them: give the model the number of optimizer steps (`DistillModel::with_total_steps`) or its progress handle to a scheduler (`OneCycle::with_progress`)",
            );
        }
        let done = self.0.counted.fetch_add(1, Ordering::Relaxed);
        let progress = done as f64 / (total as f64 * devices.max(1) as f64);
        self.0
            .value
            .store(progress.min(1.0).to_bits(), Ordering::Relaxed);
        Ok(())
    }
}
