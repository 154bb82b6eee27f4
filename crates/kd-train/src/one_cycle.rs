//! fastai's `fit_one_cycle` schedule.

use serde::{Deserialize, Serialize};

/// One-cycle learning rate (and momentum) as fastai computes them: cosine from `lr/div` up to
/// `lr` over the first `pct_start` of the steps, then cosine down to `lr/div_final`; β1 goes
/// 0.95 → 0.85 → 0.95 along the same phases. The formulas only: under Burn's `Learner`
/// [`LrSchedule::OneCycle`](crate::LrSchedule::OneCycle) steps them
/// ([`FitConfig::learner`](crate::FitConfig::learner)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
