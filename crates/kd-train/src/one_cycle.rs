//! fastai's `fit_one_cycle` schedule.

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::LearningRate;
use serde::{Deserialize, Serialize};

use crate::adam::Beta1;
use crate::progress::Progress;

/// One-cycle learning rate (and momentum) as fastai computes them: cosine from `lr/div` up to
/// `lr` over the first `pct_start` of the steps, then cosine down to `lr/div_final`; β1 goes
/// 0.95 → 0.85 → 0.95 along the same phases. As Burn's [`LrScheduler`] it also sets the β1 of
/// [`fastai_adam`](crate::fastai_adam) when given it ([`OneCycle::with_beta_1`]) and a
/// distillation model's schedule progress ([`OneCycle::with_progress`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OneCycle {
    /// Peak learning rate.
    pub lr_max: f64,
    /// Total optimizer steps.
    pub total_steps: usize,
    /// Fraction of steps spent warming up (fastai 0.25).
    pub pct_start: f64,
    /// Start LR = `lr_max / div` (fastai 25).
    pub div: f64,
    /// Final LR = `lr_max / div_final` (fastai 1e5).
    pub div_final: f64,
    /// Momentum at the start, the peak LR and the end (fastai 0.95, 0.85, 0.95).
    pub moms: (f64, f64, f64),
    /// The next step for [`LrScheduler`] use.
    pub step: usize,
    /// The optimiser's β1, moved along [`OneCycle::momentum`] by [`LrScheduler::step`].
    #[serde(skip)]
    pub beta_1: Option<Beta1>,
    /// The schedules' clock, set to `steps done / total_steps` by [`LrScheduler::step`].
    #[serde(skip)]
    pub progress: Option<Progress>,
}

/// fastai's `SchedCos`: `start + (1 + cos(π(1 − pos)))·(end − start)/2`.
fn sched_cos(start: f64, end: f64, pos: f64) -> f64 {
    start + (1.0 + (std::f64::consts::PI * (1.0 - pos)).cos()) * (end - start) / 2.0
}

impl OneCycle {
    /// fastai's defaults for `fit_one_cycle(n, lr_max)` over `total_steps` optimizer steps.
    pub fn new(lr_max: f64, total_steps: usize) -> Self {
        Self {
            lr_max,
            total_steps: total_steps.max(1),
            pct_start: 0.25,
            div: 25.0,
            div_final: 1e5,
            moms: (0.95, 0.85, 0.95),
            step: 0,
            beta_1: None,
            progress: None,
        }
    }

    /// Also drive `beta_1` (from [`fastai_adam`](crate::fastai_adam)) when used as Burn's
    /// [`LrScheduler`].
    pub fn with_beta_1(mut self, beta_1: Beta1) -> Self {
        self.beta_1 = Some(beta_1);
        self
    }

    /// Also move a model's training progress when used as Burn's [`LrScheduler`] (from
    /// [`DistillModel::progress_handle`](crate::DistillModel::progress_handle)), so its weight
    /// and temperature schedules advance under Burn's `Learner` as under
    /// [`fit_one_cycle`](crate::fit_one_cycle).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Burn's learner calls [`LrScheduler::step`] after each training step's forward pass:
    /// the next forward pass is step `self.step`, at progress `step / total_steps`.
    fn publish_progress(&self) {
        if let Some(progress) = &self.progress {
            progress.set(self.step as f64 / self.total_steps as f64);
        }
    }

    fn phase(&self, step: usize) -> (bool, f64) {
        let pos = (step as f64 / self.total_steps as f64).clamp(0.0, 1.0);
        if pos < self.pct_start {
            (true, pos / self.pct_start)
        } else {
            (false, (pos - self.pct_start) / (1.0 - self.pct_start))
        }
    }

    /// Learning rate at optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        match self.phase(step) {
            (true, p) => sched_cos(self.lr_max / self.div, self.lr_max, p),
            (false, p) => sched_cos(self.lr_max, self.lr_max / self.div_final, p),
        }
    }

    /// β1 at optimizer step `step`.
    pub fn momentum(&self, step: usize) -> f64 {
        match self.phase(step) {
            (true, p) => sched_cos(self.moms.0, self.moms.1, p),
            (false, p) => sched_cos(self.moms.1, self.moms.2, p),
        }
    }
}

impl LrScheduler for OneCycle {
    fn step(&mut self) -> LearningRate {
        let lr = self.lr(self.step);
        if let Some(beta_1) = &self.beta_1 {
            beta_1.set(self.momentum(self.step));
        }
        self.step += 1;
        self.publish_progress();
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new().with_scalar("step", self.step as u64)
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(step) = record.scalar::<u64>("step") {
            self.step = step as usize;
            self.publish_progress();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_matches_fastai_end_points() {
        let s = OneCycle::new(1e-3, 100);
        assert!((s.lr(0) - 1e-3 / 25.0).abs() < 1e-12);
        assert!((s.lr(25) - 1e-3).abs() < 1e-12);
        assert!((s.lr(100) - 1e-8).abs() < 1e-15);
        // Half-way through warm-up the cosine sits half-way between its ends.
        assert!((s.lr(12) - sched_cos(4e-5, 1e-3, 12.0 / 25.0)).abs() < 1e-12);
        assert!((sched_cos(0.0, 1.0, 0.5) - 0.5).abs() < 1e-12);
        assert!((s.momentum(0) - 0.95).abs() < 1e-12);
        assert!((s.momentum(25) - 0.85).abs() < 1e-12);
        assert!((s.momentum(100) - 0.95).abs() < 1e-12);
        // Monotone up, then down.
        assert!((1..25).all(|i| s.lr(i) > s.lr(i - 1)));
        assert!((26..100).all(|i| s.lr(i) < s.lr(i - 1)));
    }
}
