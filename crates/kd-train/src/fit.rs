//! fastai's `fit_one_cycle` for a [`DistillModel`]: Adam(β2 0.99, eps 1e-5) with
//! decoupled weight decay 0.01 on every weight but BatchNorm and biases, one-cycle learning
//! rate and β1 (0.95 → 0.85 → 0.95) stepped per batch, per-epoch metrics, checkpoints, resume.

use std::path::Path;
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::tensor::Tensor;
use kd_core::DistillBatch;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::adam::fastai_adam;
use crate::checkpoint::Checkpoints;
use crate::distill::{DistillModel, TappableModule};
use crate::divergence::{culprit, gradients_finite};
use crate::history::{EpochRecord, History};
use crate::one_cycle::OneCycle;
use crate::report::Reporter;

/// Optimiser and schedule settings (fastai's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate of the one-cycle schedule.
    pub lr: f64,
    /// Decoupled weight decay (not applied to BatchNorm and biases).
    pub weight_decay: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            weight_decay: 0.01,
        }
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Train `model` with fastai's one-cycle recipe on any Burn `DataLoader` of its batch type.
/// Each `train.iter()` is one epoch; the validation loader is read once per epoch. A model
/// set to train [on several devices](DistillModel::on_devices) spreads every batch over them
/// (one optimizer step per batch, as on one device).
///
/// With `checkpoint_dir`, a checkpoint is written after every epoch and a run that finds one
/// resumes after it (the training loader is iterated past the finished epochs without
/// drawing their batches, so a loader whose epochs follow its `iter()` count, like
/// `kd_data::ImageLoader`, serves the same batches as an uninterrupted run).
pub fn fit_one_cycle<S, B>(
    mut model: DistillModel<S, B>,
    train: &dyn DataLoader<B>,
    valid: &dyn DataLoader<B>,
    config: &FitConfig,
    name: &str,
    checkpoint_dir: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<(DistillModel<S, B>, History), TrainError>
where
    S: TappableModule,
    B: DistillBatch,
{
    let (mut optim, beta_1) = fastai_adam(config.weight_decay);
    let mut history = History {
        name: name.to_string(),
        epochs: Vec::new(),
    };
    let checkpoints = checkpoint_dir.map(Checkpoints::new);
    let mut start = 0;
    if let Some(ck) = &checkpoints
        && let Some(epoch) = ck.latest()
    {
        let (o, h) = ck.load(epoch, &mut model, optim)?;
        optim = o;
        history = h;
        start = epoch + 1;
        reporter.resumed(name, start);
    }
    for _ in 0..start.min(config.epochs) {
        drop(train.iter());
    }
    reporter.start(name, config.epochs, model.has_teacher());
    let mut schedule: Option<OneCycle> = None;
    for epoch in start..config.epochs {
        let clock = Instant::now();
        let (mut loss, mut ce, mut kd) = (0.0, 0.0, 0.0);
        let mut lr = 0.0;
        let mut steps_per_epoch = 0;
        let mut i = 0;
        for batch in train.iter() {
            let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
            if i == 0 {
                // Batches per epoch: the loader's items over the first batch's size.
                steps_per_epoch = train.num_items().div_ceil(batch.len().max(1));
            }
            let schedule = schedule
                .get_or_insert_with(|| OneCycle::new(config.lr, config.epochs * steps_per_epoch));
            let step = epoch * steps_per_epoch + i;
            lr = schedule.lr(step);
            beta_1.set(schedule.momentum(step));
            model.set_progress(step as f64 / schedule.total_steps as f64);
            let out = model.train_step(batch.clone())?;
            let value = scalar(out.item.loss.clone());
            if !value.is_finite() || !gradients_finite(&model, &out.grads) {
                return Err(TrainError::NonFinite {
                    run: name.to_string(),
                    epoch,
                    step: i,
                    what: culprit(&model, &batch),
                });
            }
            loss += value;
            ce += scalar(out.item.ce.clone());
            kd += out.item.kd.clone().map(scalar).unwrap_or(0.0);
            model = optim.step(lr, model, out.grads);
            i += 1;
            reporter.step(name, epoch, i, steps_per_epoch, loss / i as f64);
        }
        if i == 0 {
            return Err(TrainError::TooFewItems {
                items: train.num_items(),
            });
        }
        let n = i as f64;
        let valid = evaluate(&model, valid)?;
        let record = EpochRecord {
            epoch,
            train_loss: loss / n,
            train_ce: ce / n,
            train_kd: model.has_teacher().then_some(kd / n),
            valid_loss: valid.loss,
            valid_ce: valid.ce,
            valid_kd: valid.kd,
            accuracy: valid.accuracy,
            lr,
            seconds: clock.elapsed().as_secs_f64(),
        };
        reporter.epoch(name, &record);
        history.epochs.push(record);
        if let Some(ck) = &checkpoints {
            ck.save(epoch, &model, &optim, &history)?;
        }
    }
    Ok((model, history))
}

/// Validation metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean objective.
    pub loss: f64,
    /// Mean cross-entropy.
    pub ce: f64,
    /// Mean distillation term.
    pub kd: Option<f64>,
    /// Accuracy.
    pub accuracy: f64,
}

/// Evaluate the student (eval mode, no tape) on one pass of `valid`.
pub fn evaluate<S, B>(
    model: &DistillModel<S, B>,
    valid: &dyn DataLoader<B>,
) -> Result<Evaluation, TrainError>
where
    S: TappableModule,
    B: DistillBatch,
{
    let model = model.valid();
    let (mut loss, mut ce, mut kd, mut correct, mut count) = (0.0, 0.0, 0.0, 0usize, 0usize);
    for batch in valid.iter() {
        let batch = batch
            .map_err(|e| TrainError::Data(e.to_string()))?
            .without_autodiff();
        let b = batch.len();
        let (parts, logits) = model.loss(&batch)?;
        loss += scalar(parts.total) * b as f64;
        ce += scalar(parts.ce) * b as f64;
        kd += parts.kd.map(scalar).unwrap_or(0.0) * b as f64;
        let pred = logits.argmax(1).reshape([b]);
        correct += pred.equal(batch.targets()).int().sum().into_scalar::<i64>() as usize;
        count += b;
    }
    let n = count.max(1) as f64;
    Ok(Evaluation {
        loss: loss / n,
        ce: ce / n,
        kd: model.has_teacher().then_some(kd / n),
        accuracy: correct as f64 / n,
    })
}
