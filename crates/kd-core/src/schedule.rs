//! Schedules: a value driven by training progress in `[0, 1]`.

use serde::{Deserialize, Serialize};

/// A value that changes with training progress `p ∈ [0, 1]` (fraction of optimizer steps done).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Always 1.
    #[default]
    Constant,
    /// `start + (end − start)·p`.
    Linear {
        /// Value at `p = 0`.
        start: f64,
        /// Value at `p = 1`.
        end: f64,
    },
    /// `start + (end − start)·(1 − cos(π·p))/2`; `{start: 0, end: 1}` is fasterai's `cos` ramp.
    Cosine {
        /// Value at `p = 0`.
        start: f64,
        /// Value at `p = 1`.
        end: f64,
    },
}

impl Schedule {
    /// fasterai's `cos` schedule: 0 → 1 along half a cosine.
    pub const COS_RAMP: Schedule = Schedule::Cosine {
        start: 0.0,
        end: 1.0,
    };

    /// The value at progress `p` (clamped to `[0, 1]`).
    pub fn at(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Linear { start, end } => start + (end - start) * p,
            Schedule::Cosine { start, end } => {
                start + (end - start) * (1.0 - (std::f64::consts::PI * p).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_hit_their_end_points_and_midpoints() {
        assert_eq!(Schedule::Constant.at(0.3), 1.0);
        let lin = Schedule::Linear {
            start: 2.0,
            end: 4.0,
        };
        assert_eq!(
            (lin.at(0.0), lin.at(0.5), lin.at(1.0), lin.at(7.0)),
            (2.0, 3.0, 4.0, 4.0)
        );
        let cos = Schedule::COS_RAMP;
        assert!(cos.at(0.0).abs() < 1e-12);
        assert!((cos.at(0.5) - 0.5).abs() < 1e-12);
        assert!((cos.at(1.0) - 1.0).abs() < 1e-12);
        // Slow start: a cosine ramp is below the linear one in the first half.
        assert!(cos.at(0.25) < 0.25);
    }
}
