//! kd's learning-rate schedules as Burn's [`LrScheduler`]: every [`LrSchedule`] (one cycle,
//! cosine, step, constant) stepped once per optimizer step by Burn's `Learner`, moving the
//! optimizer's β1 with it (fastai's Adam) and reading how far training has come from the
//! model's [`TrainingClock`].

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::LearningRate;

use crate::adam::Beta1;
use crate::clock::TrainingClock;
use crate::lr_schedule::LrSchedule;

/// The record key of the finished epochs: at a checkpoint (an epoch's end) they fix the
/// schedule's position.
const EPOCHS_DONE: &str = "epochs_done";

/// An [`LrSchedule`] with its peak rate, as Burn's [`LrScheduler`]. Made by
/// [`FitConfig::learner`](crate::FitConfig::learner) with the optimizer whose β1 it moves and
/// the clock of the model it trains.
///
/// Burn's `Learner` calls [`LrScheduler::step`] after each training step's forward and
/// backward pass, before the optimizer step (with gradient accumulation, once per optimizer
/// step): step `k` of `total` gets `schedule.lr(lr, k, total, per_epoch)` and β1
/// `schedule.beta_1(k, total)`, where `per_epoch` is the optimizer steps of an epoch and
/// `total` those of the plan. A checkpoint records the epochs done; loading it (Burn's
/// `SupervisedTraining::checkpoint`) continues the schedule and the model's clock from there.
#[derive(Debug, Clone)]
pub struct ScheduledLr {
    schedule: LrSchedule,
    lr: f64,
    beta_1: Beta1,
    clock: TrainingClock,
    /// Training steps per optimizer step (Burn's gradient accumulation).
    accumulation: usize,
    /// The next optimizer step; `None` until the first step places it on the clock.
    next: Option<usize>,
}

impl ScheduledLr {
    /// `schedule` at peak `lr`, moving `beta_1`, over the plan of `clock`; `accumulation`
    /// training steps make an optimizer step.
    pub(crate) fn new(
        schedule: LrSchedule,
        lr: f64,
        beta_1: Beta1,
        clock: TrainingClock,
        accumulation: usize,
    ) -> Self {
        Self {
            schedule,
            lr,
            beta_1,
            clock,
            accumulation: accumulation.max(1),
            next: None,
        }
    }

    /// Optimizer steps per epoch (Burn steps at the end of an epoch's last, partial group).
    fn per_epoch(&self) -> usize {
        self.clock
            .steps_per_epoch()
            .unwrap_or(1)
            .div_ceil(self.accumulation)
    }
}

impl LrScheduler for ScheduledLr {
    fn step(&mut self) -> LearningRate {
        let per_epoch = self.per_epoch();
        let total = (self.clock.epochs() * per_epoch).max(1);
        // The training step before this call has ticked the clock: it knows the batch size,
        // and the step just taken places the first optimizer step of this process.
        let step = *self.next.get_or_insert_with(|| {
            let taken = self.clock.steps_done().unwrap_or(1).saturating_sub(1);
            let steps_per_epoch = self.clock.steps_per_epoch().unwrap_or(1);
            let (epoch, in_epoch) = (taken / steps_per_epoch, taken % steps_per_epoch);
            epoch * per_epoch + in_epoch / self.accumulation
        });
        self.beta_1.set(self.schedule.beta_1(step, total));
        self.next = Some(step + 1);
        self.schedule.lr(self.lr, step, total, per_epoch)
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar(EPOCHS_DONE, self.clock.epochs_done() as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(epochs) = record.scalar::<u64>(EPOCHS_DONE) {
            self.clock.resume_at(epochs as usize);
            self.next = None;
        }
    }
}

/// The record of a schedule `epochs_done` epochs in (what a kd checkpoint restores).
pub(crate) fn record_after(epochs_done: usize) -> LrSchedulerRecord {
    LrSchedulerRecord::new().with_scalar(EPOCHS_DONE, epochs_done as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OneCycle;

    /// `epochs` epochs of `steps` training steps (batches of 4 items), each followed by the
    /// scheduler's step as Burn's `Learner` orders them: the rates and β1s it gave.
    fn run(scheduler: &mut ScheduledLr, clock: &TrainingClock, steps: usize) -> Vec<(f64, f32)> {
        (0..steps)
            .map(|_| {
                clock.tick(4, false).unwrap();
                let lr = scheduler.step();
                (lr, scheduler.beta_1.get())
            })
            .collect()
    }

    #[test]
    fn one_cycle_steps_once_per_batch_moving_beta_1_and_resumes_from_a_record() {
        let clock = TrainingClock::new();
        clock.plan(3, 20); // 5 steps an epoch, 15 in all
        let mut scheduler = ScheduledLr::new(
            LrSchedule::OneCycle,
            1e-2,
            Beta1::new(0.9),
            clock.clone(),
            1,
        );
        let got = run(&mut scheduler, &clock, 15);
        let reference = OneCycle::new(1e-2, 15);
        for (k, (lr, beta_1)) in got.iter().enumerate() {
            assert_eq!(*lr, reference.lr(k), "step {k}");
            assert_eq!(*beta_1, reference.momentum(k) as f32, "step {k}");
        }
        // A fresh process resumed after epoch 1 (what a checkpoint's record says) continues
        // with step 5.
        let clock = TrainingClock::new();
        clock.plan(3, 20);
        let mut resumed = ScheduledLr::new(
            LrSchedule::OneCycle,
            1e-2,
            Beta1::new(0.9),
            clock.clone(),
            1,
        );
        resumed.load_record(record_after(1));
        let again = run(&mut resumed, &clock, 10);
        assert_eq!(again, got[5..]);
        assert_eq!(clock.epochs_done(), 3);
    }

    #[test]
    fn a_step_schedule_counts_optimizer_steps_under_gradient_accumulation() {
        let clock = TrainingClock::new();
        clock.plan(2, 20); // 5 training steps an epoch: 3 optimizer steps of 2 (the last of 1)
        let schedule = LrSchedule::Step {
            milestones: vec![1],
            gamma: 0.1,
        };
        let mut scheduler = ScheduledLr::new(schedule, 1.0, Beta1::new(0.9), clock.clone(), 2);
        let mut rates = Vec::new();
        for epoch in 0..2 {
            for step in 0..5 {
                clock.tick(4, false).unwrap();
                if step % 2 == 1 || step == 4 {
                    rates.push((epoch, scheduler.step()));
                }
            }
        }
        let want: Vec<(usize, f64)> = [(0, 1.0); 3].into_iter().chain([(1, 0.1); 3]).collect();
        assert_eq!(rates.len(), want.len());
        for ((e, got), (_, w)) in rates.iter().zip(&want) {
            assert!((got - w).abs() < 1e-12, "epoch {e}: {got} vs {w}");
        }
    }
}
