//! What a training run records: one [`EpochRecord`] per epoch, gathered in a [`History`].

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Metrics of one epoch. `valid_loss` is the full objective on the validation set (CE plus
/// the distillation terms, as fasterai reports it); `valid_ce` is the student's CE alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Mean training objective.
    pub train_loss: f64,
    /// Mean training cross-entropy.
    pub train_ce: f64,
    /// Mean weighted distillation term on training batches.
    pub train_kd: Option<f64>,
    /// Validation objective.
    pub valid_loss: f64,
    /// Validation cross-entropy.
    pub valid_ce: f64,
    /// Validation distillation term.
    pub valid_kd: Option<f64>,
    /// Validation accuracy.
    pub accuracy: f64,
    /// Learning rate at the last step of the epoch.
    pub lr: f64,
    /// Wall time of the epoch (training and validation), seconds.
    pub seconds: f64,
}

/// Every epoch of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Run name.
    pub name: String,
    /// Epoch records in order.
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// Accuracy after the last epoch.
    pub fn final_accuracy(&self) -> Option<f64> {
        self.epochs.last().map(|e| e.accuracy)
    }
}

/// Every member's history, shared by the recorder that writes them and the checkpoints that
/// save them.
pub(crate) type Histories = Arc<Mutex<Vec<History>>>;
