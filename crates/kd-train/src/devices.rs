//! Training a [`DistillModel`] on several devices: which devices, and one optimizer step's
//! gradients over them. Under Burn's `Learner` the model trains with Burn's single-device
//! strategy on its main device; each of its training steps spreads the batch over the others
//! (one implementation, whoever drives the epochs).

use std::sync::Arc;

use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::tensor::{Device, Tensor};
use burn::train::TrainOutput;
use kd_core::DistillBatch;

use crate::TrainError;
use crate::distill::{DistillModel, KdOutput, TappableModule};
use crate::parallel::{Workers, split_rows};

impl<S, B> DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    /// Train on `devices` (data parallelism): the student and its connectors move to the
    /// first, the *main* device, where the optimizer steps and validation run; every training
    /// batch is split into one contiguous shard per device, each device runs its shard with a
    /// copy of the student and a copy of the frozen teacher (with a teacher-output cache of its
    /// own), and the gradients are gathered on the main device, each weighted by its shard's
    /// share of the batch. The optimizer thus sees the mean gradient over the whole batch — the
    /// same as on one device, so batch size and learning rate mean what they mean there. What
    /// differs: BatchNorm normalises each shard with that shard's statistics (as PyTorch's
    /// `DataParallel` without SyncBatchNorm does). Under Burn's `Learner` keep its default
    /// single-device strategy: Burn's `MultiDevice` and DDP strategies give each device whole
    /// batches of its own instead (the global batch grows with the devices) and are not what
    /// this model does.
    ///
    /// The same device may be listed twice (two threads on one CPU, say). The batch type must
    /// implement [`DistillBatch::shard`]; one that does not is refused by the first
    /// [`train_step`](Self::train_step).
    pub fn on_devices(self, devices: Vec<Device>) -> Result<Self, TrainError> {
        let Some(main) = devices.first().cloned() else {
            return Err(TrainError::Devices(
                "the list of devices to train on is empty".to_string(),
            ));
        };
        let mut model = self.fork(&main);
        model.workers = (devices.len() > 1).then(|| Arc::new(Workers::new(devices)));
        Ok(model)
    }

    /// The devices this model trains on, the main one first.
    pub fn devices(&self) -> Vec<Device> {
        match &self.workers {
            Some(w) => w.devices().to_vec(),
            None => vec![self.device()],
        }
    }

    /// The gradients of one optimizer step on `batch`, spread over the model's
    /// [`devices`](Self::devices) and gathered on the main device (on one device, Burn's
    /// one backward pass). The step's outputs are the whole batch's: its mean loss, CE and
    /// KD, and its logits and targets on the main device. A [rollout](Self::with_rollout)
    /// replaces the batch before it is split. Burn's `TrainStep::step` is this step with the
    /// model's clock and NaN guard.
    pub fn train_step(&self, batch: B) -> Result<TrainOutput<KdOutput>, TrainError> {
        self.spread_step(self.rolled_out(batch), 1.0)
    }

    /// [`train_step`](Self::train_step) on a batch already rolled out, the gradients of
    /// `scale` × its loss.
    pub(crate) fn spread_step(
        &self,
        batch: B,
        scale: f32,
    ) -> Result<TrainOutput<KdOutput>, TrainError> {
        let Some(workers) = &self.workers else {
            return self.weighted_step(batch, scale);
        };
        if !self.contrasts.is_empty() {
            return Err(TrainError::Devices(
                "CRD's memory banks are updated by every step on one device: train CRD on one device".into(),
            ));
        }
        let items = batch.len();
        let mut jobs: Vec<Box<dyn FnOnce() -> TrainOutput<KdOutput> + Send>> = Vec::new();
        let mut weights = Vec::new();
        for (rows, device) in split_rows(items, workers.devices().len())
            .into_iter()
            .zip(workers.devices())
        {
            let weight = scale * rows.len() as f32 / items as f32;
            let shard = batch.shard(rows, device).ok_or_else(|| {
                TrainError::Devices(format!(
                    "the batch type `{}` cannot be split over devices: implement `DistillBatch::shard` for it to train on several",
                    std::any::type_name::<B>()
                ))
            })?;
            let (model, device) = (self.clone(), device.clone());
            jobs.push(Box::new(move || {
                model
                    .fork(&device)
                    .weighted_step(shard, weight)
                    .unwrap_or_else(|e| panic!("{e}"))
            }));
            weights.push(weight);
        }
        let main = workers.devices()[0].clone();
        let mut grads = GradientsAccumulator::new();
        let mut parts = Vec::new();
        for (i, answer) in workers.run(jobs).into_iter().enumerate() {
            let out = answer.map_err(|message| {
                TrainError::Devices(format!(
                    "training on device {i} ({:?}) failed: {message}",
                    workers.devices()[i]
                ))
            })?;
            grads.accumulate(self, out.grads.to_device(&main, self));
            parts.push(out.item.into_device(&main));
        }
        Ok(TrainOutput {
            grads: grads.grads(),
            item: KdOutput::weighted_sum(parts, &weights),
        })
    }
}

impl KdOutput {
    fn into_device(self, device: &Device) -> Self {
        Self {
            items: self.items,
            loss: self.loss.to_device(device),
            ce: self.ce.map(|c| c.to_device(device)),
            kd: self.kd.map(|k| k.to_device(device)),
            logits: self.logits.to_device(device),
            targets: self.targets.map(|t| t.to_device(device)),
        }
    }

    /// The outputs of a whole batch from its shards': means weighted by each shard's share,
    /// logits and targets concatenated in shard order.
    fn weighted_sum(parts: Vec<KdOutput>, weights: &[f32]) -> Self {
        let sum = |ts: Vec<Tensor<1>>| {
            ts.into_iter()
                .zip(weights)
                .map(|(t, &w)| t.mul_scalar(w))
                .reduce(|a, b| a + b)
                .expect("at least one shard")
        };
        let kd = parts
            .iter()
            .map(|p| p.kd.clone())
            .collect::<Option<Vec<_>>>()
            .map(sum);
        let ce = parts
            .iter()
            .map(|p| p.ce.clone())
            .collect::<Option<Vec<_>>>()
            .map(sum);
        let targets = parts
            .iter()
            .map(|p| p.targets.clone())
            .collect::<Option<Vec<_>>>()
            .map(|t| Tensor::cat(t, 0));
        Self {
            items: parts.iter().map(|p| p.items).sum(),
            loss: sum(parts.iter().map(|p| p.loss.clone()).collect()),
            ce,
            kd,
            logits: Tensor::cat(parts.into_iter().map(|p| p.logits).collect(), 0),
            targets,
        }
    }
}
