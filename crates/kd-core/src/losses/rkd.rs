use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::settings;
use crate::{KdInput, KdLoss, LayerPair, LossError, feature, sum_pairs};

/// Relational KD (Park et al., 2019): Σ over pairs of the distance and angle terms between the
/// items of the batch, each item's values flattened (any rank; often the pooled features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rkd {
    /// Layer pairs.
    pub pairs: Vec<LayerPair>,
    /// Weight of the distance term (default 25).
    #[serde(default = "Rkd::default_distance_weight")]
    pub distance_weight: f64,
    /// Weight of the angle term (default 50).
    #[serde(default = "Rkd::default_angle_weight")]
    pub angle_weight: f64,
}

impl Rkd {
    fn default_distance_weight() -> f64 {
        25.0
    }
    fn default_angle_weight() -> f64 {
        50.0
    }

    /// Between `pairs`, the paper's weights.
    pub fn new(pairs: Vec<LayerPair>) -> Self {
        Self {
            pairs,
            distance_weight: Self::default_distance_weight(),
            angle_weight: Self::default_angle_weight(),
        }
    }
}

impl KdLoss for Rkd {
    fn name(&self) -> &'static str {
        "RKD"
    }

    fn pairs(&self) -> &[LayerPair] {
        &self.pairs
    }

    fn check_settings(&self) -> Result<(), LossError> {
        settings::some_weight(
            self.name(),
            &[
                ("distance_weight", self.distance_weight),
                ("angle_weight", self.angle_weight),
            ],
        )
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        sum_pairs(self, input, |s, t| {
            feature::rkd_distance(s.clone(), t.clone()).mul_scalar(self.distance_weight)
                + feature::rkd_angle(s, t).mul_scalar(self.angle_weight)
        })
    }
}
