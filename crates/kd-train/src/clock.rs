//! The training clock: how far a run has come, shared by every copy of a
//! [`DistillModel`](crate::DistillModel), by kd's learning-rate scheduler and by its checkpoints.
//! It is the clock of every weight and temperature schedule (the fraction of training steps
//! done), of the learning rate and β1, and of the epoch and step named in errors.
//!
//! A run's plan (epochs, items per epoch) is given once ([`TrainingClock::plan`]); the batch
//! size is read from the first training batch, so the steps per epoch are what the loader
//! serves: `ceil(items / batch)`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
struct State {
    /// Planned epochs; 0: no plan.
    epochs: AtomicU64,
    /// Items the training loader serves per epoch.
    items: AtomicU64,
    /// Items in the first training batch; 0 until one is seen.
    batch: AtomicU64,
    /// Epochs finished before this process's first step (a resumed run).
    start_epoch: AtomicU64,
    /// Training steps taken by this process.
    taken: AtomicU64,
    /// Training steps to an optimizer step; 0 or 1: every step.
    accumulation: AtomicU64,
    /// Progress of the current step, as `f64` bits.
    progress: AtomicU64,
}

/// Where training stands. Clones read and advance the same clock.
#[derive(Debug, Clone, Default)]
pub struct TrainingClock(Arc<State>);

/// Where a training step falls in its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPosition {
    /// The epoch (from 0).
    pub epoch: usize,
    /// The step within the epoch (from 0).
    pub step: usize,
}

impl TrainingClock {
    /// A clock with no plan, at the start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Plan `epochs` epochs over a training loader that serves `items_per_epoch` items each.
    pub fn plan(&self, epochs: usize, items_per_epoch: usize) {
        self.0.epochs.store(epochs as u64, Ordering::Relaxed);
        self.0
            .items
            .store(items_per_epoch as u64, Ordering::Relaxed);
    }

    /// Make an optimizer step of every `steps` training steps (gradient accumulation): each
    /// step's loss is divided by it.
    pub fn accumulate(&self, steps: usize) {
        self.0.accumulation.store(steps as u64, Ordering::Relaxed);
    }

    /// Training steps to an optimizer step (1 without accumulation).
    pub fn accumulation(&self) -> usize {
        (self.0.accumulation.load(Ordering::Relaxed) as usize).max(1)
    }

    /// The planned epochs (0 without a plan).
    pub fn epochs(&self) -> usize {
        self.0.epochs.load(Ordering::Relaxed) as usize
    }

    /// The items per epoch of the plan (0 without a plan).
    pub fn items_per_epoch(&self) -> usize {
        self.0.items.load(Ordering::Relaxed) as usize
    }

    /// Continue after `epochs_done` finished epochs (a resumed run): the next step is the first
    /// of epoch `epochs_done`.
    pub fn resume_at(&self, epochs_done: usize) {
        self.0
            .start_epoch
            .store(epochs_done as u64, Ordering::Relaxed);
        self.0.taken.store(0, Ordering::Relaxed);
    }

    /// Training steps per epoch, once the plan and the first batch are known.
    pub fn steps_per_epoch(&self) -> Option<usize> {
        let items = self.0.items.load(Ordering::Relaxed) as usize;
        let batch = self.0.batch.load(Ordering::Relaxed) as usize;
        (items > 0 && batch > 0).then(|| items.div_ceil(batch))
    }

    /// Training steps of the whole plan, once known.
    pub fn total_steps(&self) -> Option<usize> {
        let epochs = self.epochs();
        self.steps_per_epoch()
            .filter(|_| epochs > 0)
            .map(|s| (s * epochs).max(1))
    }

    /// Training steps done since the run began (resumed epochs included), once the steps per
    /// epoch are known.
    pub fn steps_done(&self) -> Option<usize> {
        let taken = self.0.taken.load(Ordering::Relaxed) as usize;
        let start = self.0.start_epoch.load(Ordering::Relaxed) as usize;
        match self.steps_per_epoch() {
            Some(per_epoch) => Some(start * per_epoch + taken),
            None => (start == 0).then_some(taken),
        }
    }

    /// Finished epochs: the resumed ones plus those of this process.
    pub fn epochs_done(&self) -> usize {
        match (self.steps_done(), self.steps_per_epoch()) {
            (Some(done), Some(per_epoch)) => done / per_epoch,
            _ => self.0.start_epoch.load(Ordering::Relaxed) as usize,
        }
    }

    /// The fraction of the plan's training steps done before the current step, in `[0, 1]`:
    /// what weight and temperature schedules read.
    pub fn progress(&self) -> f64 {
        f64::from_bits(self.0.progress.load(Ordering::Relaxed))
    }

    /// A training step of a batch of `items` items begins: set the progress to the steps done
    /// over the plan's total and count the step. Its position in the run, or `Err` when
    /// `needs_plan` (the objective has schedules) and no plan was given.
    pub(crate) fn tick(&self, items: usize, needs_plan: bool) -> Result<StepPosition, String> {
        let _ =
            self.0
                .batch
                .compare_exchange(0, items as u64, Ordering::Relaxed, Ordering::Relaxed);
        let done = self.steps_done().unwrap_or(0);
        match self.total_steps() {
            Some(total) => {
                let progress = (done as f64 / total as f64).min(1.0);
                self.0.progress.store(progress.to_bits(), Ordering::Relaxed);
            }
            None if needs_plan => {
                return Err("the objective has weight or temperature schedules, but the model has no training plan to advance them by: give it one (`DistillModel::with_plan(epochs, training items per epoch)`, or `FitConfig::learner`)".to_string());
            }
            None => {}
        }
        self.0.taken.fetch_add(1, Ordering::Relaxed);
        let per_epoch = self.steps_per_epoch().unwrap_or(usize::MAX);
        Ok(StepPosition {
            epoch: done / per_epoch,
            step: done % per_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_progress_follow_the_plan_and_the_first_batch() {
        let clock = TrainingClock::new();
        clock.plan(2, 10);
        // Batches of 4: 3 steps an epoch (the last one of 2 items), 6 in all.
        let positions: Vec<_> = (0..6)
            .map(|i| {
                let items = if i % 3 == 2 { 2 } else { 4 };
                let position = clock.tick(items, true).unwrap();
                (position.epoch, position.step, clock.progress())
            })
            .collect();
        let want: Vec<_> = (0..6).map(|k| (k / 3, k % 3, k as f64 / 6.0)).collect();
        assert_eq!(positions, want);
        assert_eq!(clock.epochs_done(), 2);
    }

    #[test]
    fn a_resumed_clock_counts_from_the_finished_epochs() {
        let clock = TrainingClock::new();
        clock.plan(4, 8);
        clock.resume_at(3);
        let position = clock.tick(4, true).unwrap();
        assert_eq!(position, StepPosition { epoch: 3, step: 0 });
        assert_eq!(clock.progress(), 6.0 / 8.0);
        clock.tick(4, true).unwrap();
        assert_eq!(clock.epochs_done(), 4);
    }

    #[test]
    fn a_scheduled_objective_without_a_plan_is_refused() {
        let clock = TrainingClock::new();
        assert!(clock.tick(4, false).is_ok());
        let err = clock.tick(4, true).unwrap_err();
        assert!(err.contains("with_plan"), "{err}");
    }
}
