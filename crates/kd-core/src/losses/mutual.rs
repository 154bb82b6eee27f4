use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::{KdInput, KdLoss, LossError, logit, paired_logits};

/// Deep mutual learning's KL (Zhang et al., 2018): `KL_batchmean(log_softmax(s) ‖
/// softmax(t))`, temperature 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutual {}

impl KdLoss for Mutual {
    fn name(&self) -> &'static str {
        "Mutual"
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        let (s, t) = paired_logits(self.name(), input)?;
        Ok(logit::mutual(s, t))
    }
}
