//! What DistiLLM's two skewed divergences share: the skew α's default and range.

use crate::LossError;

/// DistiLLM's default skew, 0.1.
pub(crate) fn default_alpha() -> f64 {
    0.1
}

/// α must lie in `[0, 1)`: at 1 the mixture is the distribution itself and the loss is 0.
pub(crate) fn check_alpha(loss: &'static str, alpha: f64) -> Result<(), LossError> {
    if (0.0..1.0).contains(&alpha) {
        Ok(())
    } else {
        Err(LossError::Setting {
            loss,
            what: "alpha".into(),
            value: alpha,
            message: "must be at least 0 and below 1",
        })
    }
}
