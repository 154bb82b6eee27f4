//! Early stopping on a validation number of kd's history, as Burn's
//! [`EarlyStoppingStrategy`]: Burn's `Learner` asks after each epoch's checkpoint, so a run that
//! stops early has that epoch saved and ends like a finished one.

use burn::train::EarlyStoppingStrategy;
use burn::train::metric::store::EventStoreClient;
use serde::{Deserialize, Serialize};

use crate::history::History;
use crate::recorder::HistoryRecorder;

/// The validation number early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// The validation objective (lower is better).
    ValidLoss,
    /// The validation accuracy (higher is better).
    Accuracy,
}

/// Stop training once `metric` has not improved on its best for `patience` epochs (for every
/// member of a run: each student of a mutual run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// What to watch.
    pub metric: Monitor,
    /// Epochs without a strictly better value before training stops.
    pub patience: usize,
}

impl EarlyStopping {
    /// Whether `history` calls for a stop: its best epoch (the first, on ties) lies `patience`
    /// or more epochs before its last.
    pub fn met(&self, history: &History) -> bool {
        let value = |e: &crate::EpochRecord| match self.metric {
            Monitor::ValidLoss => -e.valid_loss,
            Monitor::Accuracy => e.accuracy,
        };
        let mut best: Option<(usize, f64)> = None;
        for (i, e) in history.epochs.iter().enumerate() {
            let v = value(e);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        match best {
            Some((at, _)) => history.epochs.len() - 1 - at >= self.patience,
            None => false,
        }
    }

    /// Whether every one of `histories` calls for a stop.
    pub fn met_by_all(&self, histories: &[History]) -> bool {
        !histories.is_empty() && histories.iter().all(|h| self.met(h))
    }

    /// A setting that cannot work: a patience of 0.
    pub fn check(&self) -> Result<(), String> {
        match self.patience {
            0 => Err("patience = 0 must be 1 or more".into()),
            _ => Ok(()),
        }
    }
}

/// [`EarlyStopping`] for Burn's `SupervisedTraining::early_stopping`, reading the histories a
/// [`HistoryRecorder`] records.
#[derive(Clone)]
pub struct EarlyStop {
    rule: EarlyStopping,
    recorder: HistoryRecorder,
}

impl EarlyStop {
    /// Stop by `rule` on what `recorder` records.
    pub fn new(rule: EarlyStopping, recorder: &HistoryRecorder) -> Self {
        Self {
            rule,
            recorder: recorder.clone(),
        }
    }
}

impl EarlyStoppingStrategy for EarlyStop {
    fn should_stop(&mut self, _epoch: usize, _store: &EventStoreClient) -> bool {
        self.rule.met_by_all(&self.recorder.histories())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EpochRecord;

    fn history(losses: &[f64]) -> History {
        History {
            name: "run".into(),
            epochs: losses
                .iter()
                .enumerate()
                .map(|(epoch, &valid_loss)| EpochRecord {
                    epoch,
                    train_loss: 0.0,
                    train_ce: 0.0,
                    train_kd: None,
                    valid_loss,
                    valid_ce: 0.0,
                    valid_kd: None,
                    accuracy: 1.0 - valid_loss,
                    lr: 0.0,
                    seconds: 0.0,
                })
                .collect(),
        }
    }

    #[test]
    fn stops_after_patience_epochs_without_a_strictly_better_value() {
        let rule = |metric, patience| EarlyStopping { metric, patience };
        let loss = rule(Monitor::ValidLoss, 2);
        assert!(!loss.met(&history(&[])));
        assert!(!loss.met(&history(&[0.5, 0.6])));
        assert!(
            loss.met(&history(&[0.5, 0.6, 0.5])),
            "a tie is no improvement"
        );
        assert!(!loss.met(&history(&[0.5, 0.6, 0.4])));
        let accuracy = rule(Monitor::Accuracy, 1);
        assert!(accuracy.met(&history(&[0.3, 0.4])), "accuracy fell");
        assert!(!accuracy.met(&history(&[0.4, 0.3])));
        assert!(rule(Monitor::Accuracy, 0).check().is_err());
    }
}
