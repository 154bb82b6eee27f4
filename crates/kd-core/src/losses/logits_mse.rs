use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Ba & Caruana (2014): the mean squared error between the student's and the teacher's logits
/// (`kind = "logits"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogitsMse {}

impl KdLoss for LogitsMse {
    fn name(&self) -> &'static str {
        "Logits"
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        Ok(logit::logits_mse(s, t))
    }
}
