//! The range checks the losses' own settings share: a multiplier or a share that is NaN,
//! infinite as the `f32` the tensors hold, negative — or zero where zero switches the loss off
//! without a word — is refused before any training, naming the loss and the setting.

use crate::LossError;

/// `value` must be finite as an `f32` and above 0 (a scale, a power).
pub(crate) fn positive(loss: &'static str, what: &str, value: f64) -> Result<(), LossError> {
    if (value as f32).is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(setting(
            loss,
            what,
            value,
            "must be finite (as f32) and above 0",
        ))
    }
}

/// `value` must be finite as an `f32` and 0 or more (a weight, a margin).
pub(crate) fn non_negative(loss: &'static str, what: &str, value: f64) -> Result<(), LossError> {
    if (value as f32).is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(setting(
            loss,
            what,
            value,
            "must be finite (as f32) and 0 or more",
        ))
    }
}

/// Weights of which at least one must be above 0, else the loss is 0 whatever it is given.
pub(crate) fn some_weight(loss: &'static str, weights: &[(&str, f64)]) -> Result<(), LossError> {
    for &(what, value) in weights {
        non_negative(loss, what, value)?;
    }
    match weights.iter().find(|(_, value)| *value > 0.0) {
        Some(_) => Ok(()),
        None => Err(setting(
            loss,
            &weights
                .iter()
                .map(|(what, _)| *what)
                .collect::<Vec<_>>()
                .join(" and "),
            0.0,
            "are all 0: the loss would be 0 whatever the models do",
        )),
    }
}

fn setting(loss: &'static str, what: &str, value: f64, message: &'static str) -> LossError {
    LossError::Setting {
        loss,
        what: what.to_string(),
        value,
        message,
    }
}
