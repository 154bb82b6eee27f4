//! The parts of the objective as metrics of Burn's `Learner`: the student's cross-entropy and
//! the weighted distillation sum, each its own line on Burn's dashboard (the total is Burn's
//! own `LossMetric`).

use std::sync::Arc;

use burn::tensor::{Tensor, TensorReadError};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes,
    NumericEntry, SerializedEntry,
};

use crate::KdOutput;

/// What [`ObjectivePartMetric`] reads from a step's [`KdOutput`].
#[derive(Debug, Clone)]
pub struct ObjectivePartsInput {
    ce: Option<Tensor<1>>,
    kd: Option<Tensor<1>>,
}

impl Adaptor<ObjectivePartsInput> for KdOutput {
    fn adapt(&self) -> ObjectivePartsInput {
        ObjectivePartsInput {
            ce: self.ce.clone(),
            kd: self.kd.clone(),
        }
    }
}

/// Which part of the objective a metric shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    CrossEntropy,
    Distillation,
}

/// One part of the distillation objective as a numeric metric for Burn's `Learner`:
/// [`cross_entropy`](Self::cross_entropy) (the student's CE; absent on batches without
/// targets) or [`distillation`](Self::distillation) (the weighted sum of the distillation
/// terms, before it is mixed with the CE).
///
/// ```no_run
/// # use burn::train::metric::LossMetric;
/// # use kd_train::ObjectivePartMetric;
/// # fn f(training: burn::train::SupervisedTraining<kd_train::DistillModel<kd_models::Network, kd_data::ImageBatch>>) {
/// let training = training
///     .metric_train_numeric(LossMetric::new())
///     .metric_train_numeric(ObjectivePartMetric::cross_entropy())
///     .metric_train_numeric(ObjectivePartMetric::distillation());
/// # }
/// ```
#[derive(Clone)]
pub struct ObjectivePartMetric {
    part: Part,
    name: MetricName,
    state: NumericMetricState,
}

impl ObjectivePartMetric {
    fn new(part: Part, name: &str) -> Self {
        Self {
            part,
            name: Arc::new(name.to_string()),
            state: NumericMetricState::default(),
        }
    }

    /// The student's cross-entropy, `CE`.
    pub fn cross_entropy() -> Self {
        Self::new(Part::CrossEntropy, "CE")
    }

    /// The weighted distillation sum, `KD`.
    pub fn distillation() -> Self {
        Self::new(Part::Distillation, "KD")
    }
}

impl Metric for ObjectivePartMetric {
    type Input = ObjectivePartsInput;

    fn update(
        &mut self,
        input: &ObjectivePartsInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let part = match self.part {
            Part::CrossEntropy => &input.ce,
            Part::Distillation => &input.kd,
        };
        if let Some(value) = part {
            let value = value.clone().mean().try_into_scalar::<f64>()?;
            self.state.update(value, 1);
        }
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).precision(4)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).precision(4)))
    }

    fn clear(&mut self) {
        self.state.reset()
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }
}

impl Numeric for ObjectivePartMetric {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }

    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
    }
}
