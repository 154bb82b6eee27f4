//! Training progress, the clock of every weight and temperature schedule: the fraction of
//! optimizer steps done, shared by every copy of a [`DistillModel`](crate::DistillModel) and
//! moved by whoever drives the steps — [`fit_one_cycle`](crate::fit_one_cycle), or
//! [`OneCycle`](crate::OneCycle) as Burn's learning-rate scheduler under Burn's `Learner`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A shared progress value in `[0, 1]`. Clones read and write the same value.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Progress 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Set the value (the fraction of optimizer steps done).
    pub fn set(&self, progress: f64) {
        self.0.store(progress.to_bits(), Ordering::Relaxed);
    }
}
