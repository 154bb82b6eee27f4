//! A [`DistillModel`]'s training step under Burn's `Learner`: the model's clock ticks, the
//! batch is rolled out and spread over the model's devices, and a step whose loss or gradients
//! are not finite — or that fails — stops training through the model's
//! [`StepGuard`](crate::StepGuard) with kd's error, naming the first part of the objective that
//! is not finite.

use burn::train::{TrainOutput, TrainStep};
use kd_core::DistillBatch;

use crate::TrainError;
use crate::clock::StepPosition;
use crate::distill::{DistillModel, KdOutput, TappableModule};
use crate::divergence::{culprit, gradients_finite};

impl<S, B> DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    /// One training step under the model's guard: the clock ticks, the batch is rolled out,
    /// spread over the devices, and its loss and gradients must be finite.
    fn guarded_step(&self, batch: B) -> Result<TrainOutput<KdOutput>, TrainError> {
        let position = self
            .clock()
            .tick(batch.len(), self.objective().is_scheduled())
            .map_err(TrainError::Schedule)?;
        let batch = self.rolled_out(batch);
        let scale = 1.0 / self.clock().accumulation() as f32;
        let out = self.spread_step(batch.clone(), scale)?;
        self.check_finite(&out, &batch, position)?;
        if !self.contrasts.is_empty() {
            // CRD's banks: this thread's update into the values a checkpoint saves.
            self.contrasts.sync();
        }
        Ok(TrainOutput {
            grads: out.grads,
            item: out.item.detached(),
        })
    }

    /// A validation step's outputs (tape-free; CRD memories read, not updated). A loss that is
    /// not finite is no result: kd's `NonFinite` error, naming the first part of the objective
    /// that is not finite, so a NaN is never reported as a validation loss.
    pub(crate) fn validation_step(&self, batch: B) -> Result<KdOutput, TrainError> {
        let items = batch.len();
        let (out, parts) = self.output(batch.without_autodiff(), false)?;
        if out.loss.clone().into_scalar::<f32>().is_finite() {
            return Ok(out);
        }
        let finite =
            |value: &burn::tensor::Tensor<1>| value.clone().into_scalar::<f32>().is_finite();
        let part = match (&parts.ce, parts.terms.iter().find(|(_, v)| !finite(v))) {
            (Some(ce), _) if !finite(ce) => "the cross-entropy".to_string(),
            (_, Some((name, _))) => format!("the {name} term"),
            _ => "the weighted sum of finite parts".to_string(),
        };
        let clock = self.clock();
        Err(TrainError::NonFinite {
            run: self.run_name(),
            epoch: clock.epochs_done().saturating_sub(1),
            step: clock.steps_per_epoch().unwrap_or(0),
            what: format!(
                "{part}, on a validation batch of {items} item{} after the epoch's training,",
                if items == 1 { "" } else { "s" }
            ),
        })
    }

    /// A step's loss or gradients that are not finite: kd's `NonFinite` error, naming the
    /// first part of the objective that is not finite on `batch` alone.
    fn check_finite(
        &self,
        out: &TrainOutput<KdOutput>,
        batch: &B,
        at: StepPosition,
    ) -> Result<(), TrainError> {
        let value = out.item.loss.clone().into_scalar::<f32>();
        if value.is_finite() && gradients_finite(self, &out.grads) {
            return Ok(());
        }
        Err(TrainError::NonFinite {
            run: self.run_name(),
            epoch: at.epoch,
            step: at.step,
            what: culprit(self, batch),
        })
    }
}

impl<S, B> TrainStep for DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    type Input = B;
    type Output = KdOutput;

    /// One optimizer step's gradients on `batch`, over the model's
    /// [devices](DistillModel::on_devices). A step that fails (a NaN loss, say) gives no
    /// gradients and stops training through the model's [guard](DistillModel::guard).
    fn step(&self, batch: B) -> TrainOutput<KdOutput> {
        match self.guarded_step(batch) {
            Ok(out) => out,
            Err(e) => {
                self.guard().fail(e);
                TrainOutput {
                    grads: burn::optim::GradientsParams::new(),
                    item: KdOutput::failed(&self.device()),
                }
            }
        }
    }
}
