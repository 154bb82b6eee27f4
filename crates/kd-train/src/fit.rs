//! fastai's `fit_one_cycle` for a [`DistillModel`]: Adam(β2 0.99, eps 1e-5) with
//! decoupled weight decay 0.01 on every weight but BatchNorm and biases, one-cycle learning
//! rate and β1 (0.95 → 0.85 → 0.95) stepped per batch, per-epoch metrics, checkpoints, resume.

use std::path::Path;
use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use kd_core::DistillBatch;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::adam::{Beta1, fastai_adam};
use crate::checkpoint::Checkpoints;
use crate::distill::{DistillModel, TappableModule};
use crate::divergence::{culprit, gradients_finite};
use crate::history::{EpochRecord, History};
use crate::lr_schedule::LrSchedule;
use crate::mutual_loss::mutual_step;
use crate::optimizer::OptimizerConfig;
use crate::report::Reporter;

/// Optimiser and schedule settings (fastai's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitConfig {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate of the schedule.
    pub lr: f64,
    /// Weight decay: decoupled and not on BatchNorm and biases for Adam, L2 on every parameter
    /// for SGD (as each optimizer's reference applies it).
    pub weight_decay: f64,
    /// The optimizer (default fastai's Adam). Left out of written settings when default.
    #[serde(skip_serializing_if = "OptimizerConfig::is_default")]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule (default fastai's one cycle). Left out of written settings
    /// when default.
    #[serde(skip_serializing_if = "LrSchedule::is_default")]
    pub schedule: LrSchedule,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            lr: 1e-3,
            weight_decay: 0.01,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::default(),
        }
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Train `model` with fastai's one-cycle recipe on any Burn `DataLoader` of its batch type,
/// as `DataLoaderBuilder::build` returns it (`Arc<dyn DataLoader<B>>`; kd-data's
/// `ImageLoader` too: anything that is `AsRef<dyn DataLoader<B>>`).
/// Each `train.iter()` is one epoch; the validation loader is read once per epoch. A model
/// set to train [on several devices](DistillModel::on_devices) spreads every batch over them
/// (one optimizer step per batch, as on one device).
///
/// With `checkpoint_dir`, a checkpoint is written after every epoch and a run that finds one
/// resumes after it (the training loader is iterated past the finished epochs without
/// drawing their batches, so a loader whose epochs follow its `iter()` count, like
/// `kd_data::ImageLoader`, serves the same batches as an uninterrupted run).
pub fn fit_one_cycle<S, B>(
    model: DistillModel<S, B>,
    train: &impl AsRef<dyn DataLoader<B>>,
    valid: &impl AsRef<dyn DataLoader<B>>,
    config: &FitConfig,
    name: &str,
    checkpoint_dir: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<(DistillModel<S, B>, History), TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    let member = Member::new(model, name, checkpoint_dir, config);
    let mut fitted = fit_members(
        vec![member],
        None,
        train.as_ref(),
        valid.as_ref(),
        config,
        reporter,
    )?;
    Ok(fitted.pop().expect("one model in, one out"))
}

/// A trained model and its history.
pub type Fitted<S, B> = (DistillModel<S, B>, History);

/// One model of a fit, with its own optimizer, β1, history and checkpoints.
pub(crate) struct Member<S, B: DistillBatch> {
    model: DistillModel<S, B>,
    optim: ModuleOptimizer,
    beta_1: Beta1,
    history: History,
    checkpoints: Option<Checkpoints>,
}

impl<S: TappableModule<B::Input>, B: DistillBatch> Member<S, B> {
    pub(crate) fn new(
        model: DistillModel<S, B>,
        name: &str,
        checkpoints: Option<&Path>,
        config: &FitConfig,
    ) -> Self {
        let (optim, beta_1) = config.optimizer.init(config.weight_decay);
        Self {
            model,
            optim,
            beta_1,
            history: History {
                name: name.to_string(),
                epochs: Vec::new(),
            },
            checkpoints: checkpoints.map(Checkpoints::new),
        }
    }

    fn name(&self) -> &str {
        &self.history.name
    }

    pub(crate) fn model(&self) -> &DistillModel<S, B> {
        &self.model
    }
}

/// Train `members` on the same batches with the same schedule, each with its own optimizer:
/// one model alone ([`fit_one_cycle`]), or several that learn from each other (`mutual`: the
/// weight of deep mutual learning's term, see [`fit_mutual`](crate::fit_mutual)).
///
/// Checkpoints: every member's epoch is written before any member's previous one is removed,
/// so a run killed between two members' writes resumes from the newest epoch all of them
/// have.
pub(crate) fn fit_members<S, B>(
    mut members: Vec<Member<S, B>>,
    mutual: Option<f64>,
    train: &dyn DataLoader<B>,
    valid: &dyn DataLoader<B>,
    config: &FitConfig,
    reporter: &mut dyn Reporter,
) -> Result<Vec<Fitted<S, B>>, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    for m in &members {
        check_memory_rows(&m.model, train.num_items())?;
    }
    let start = resume(&mut members, reporter)?;
    for _ in 0..start.min(config.epochs) {
        drop(train.iter());
    }
    for m in &members {
        reporter.start(m.name(), config.epochs, distilled(&m.model, mutual));
    }
    for epoch in start..config.epochs {
        let clock = Instant::now();
        let mut sums = vec![(0.0, 0.0, 0.0); members.len()];
        let mut lr = 0.0;
        let mut steps_per_epoch = 0;
        let mut i = 0;
        for batch in train.iter() {
            let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
            if i == 0 {
                // Batches per epoch: the loader's items over the first batch's size.
                steps_per_epoch = train.num_items().div_ceil(batch.len().max(1));
            }
            let total = (config.epochs * steps_per_epoch).max(1);
            let step = epoch * steps_per_epoch + i;
            lr = config.schedule.lr(config.lr, step, total, steps_per_epoch);
            for m in &members {
                m.beta_1.set(config.schedule.beta_1(step, total));
                m.model.set_progress(step as f64 / total as f64);
            }
            let outs = match mutual {
                None => vec![members[0].model.train_step(batch.clone())?],
                Some(weight) => {
                    let students: Vec<_> = members.iter().map(Member::model).collect();
                    mutual_step(&students, &batch, weight)?
                }
            };
            let mut stepped = Vec::with_capacity(members.len());
            for ((mut m, out), sum) in members.into_iter().zip(outs).zip(&mut sums) {
                let value = scalar(out.item.loss.clone());
                if !value.is_finite() || !gradients_finite(&m.model, &out.grads) {
                    return Err(TrainError::NonFinite {
                        run: m.name().to_string(),
                        epoch,
                        step: i,
                        what: culprit(&m.model, &batch),
                    });
                }
                sum.0 += value;
                sum.1 += out.item.ce.clone().map(scalar).unwrap_or(0.0);
                sum.2 += out.item.kd.clone().map(scalar).unwrap_or(0.0);
                m.model = m.optim.step(lr, m.model, out.grads);
                stepped.push(m);
            }
            members = stepped;
            i += 1;
            reporter.step(
                members[0].name(),
                epoch,
                i,
                steps_per_epoch,
                sums[0].0 / i as f64,
            );
        }
        if i == 0 {
            return Err(TrainError::TooFewItems {
                items: train.num_items(),
            });
        }
        let n = i as f64;
        for (m, &(loss, ce, kd)) in members.iter_mut().zip(&sums) {
            let valid = evaluate_on(&m.model, valid)?;
            let record = EpochRecord {
                epoch,
                train_loss: loss / n,
                train_ce: ce / n,
                train_kd: distilled(&m.model, mutual).then_some(kd / n),
                valid_loss: valid.loss,
                valid_ce: valid.ce,
                valid_kd: valid.kd,
                accuracy: valid.accuracy,
                lr,
                // A member's epoch: the group's training and the validations so far.
                seconds: clock.elapsed().as_secs_f64(),
            };
            reporter.epoch(m.name(), &record);
            m.history.epochs.push(record);
        }
        for m in &members {
            if let Some(ck) = &m.checkpoints {
                ck.save(epoch, &m.model, &m.optim, &m.history)?;
            }
        }
        for m in &members {
            if let Some(ck) = &m.checkpoints {
                ck.prune(epoch);
            }
        }
    }
    Ok(members.into_iter().map(|m| (m.model, m.history)).collect())
}

/// A memory of the training items (CRD) has a row for each item the training loader gives
/// (at least: a loader that drops an incomplete batch gives fewer items per epoch than the
/// training set holds).
fn check_memory_rows<S: TappableModule<B::Input>, B: DistillBatch>(
    model: &DistillModel<S, B>,
    items: usize,
) -> Result<(), TrainError> {
    match model.contrasts.items() {
        Some(rows) if rows < items => Err(TrainError::Data(format!(
            "the model's memory of the training items (CRD) has {rows} rows, fewer than the {items} items the training loader gives per epoch: build the model with DistillOptions::training_items = the training set's size"
        ))),
        _ => Ok(()),
    }
}

/// Whether a member's records have a distillation column: it reads a teacher or its peers.
fn distilled<S: TappableModule<B::Input>, B: DistillBatch>(
    model: &DistillModel<S, B>,
    mutual: Option<f64>,
) -> bool {
    model.has_teacher() || mutual.is_some()
}

/// Load every member's newest checkpoint that all of them have; the epoch to start from.
fn resume<S, B>(
    members: &mut [Member<S, B>],
    reporter: &mut dyn Reporter,
) -> Result<usize, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    let latest: Option<Vec<usize>> = members
        .iter()
        .map(|m| m.checkpoints.as_ref().and_then(Checkpoints::latest))
        .collect();
    let Some(epoch) = latest.and_then(|l| l.into_iter().min()) else {
        return Ok(0);
    };
    for m in members.iter_mut() {
        let ck = m
            .checkpoints
            .as_ref()
            .expect("every member has checkpoints");
        let optim = std::mem::replace(&mut m.optim, fastai_adam(0.0).0);
        (m.optim, m.history) = ck.load(epoch, &mut m.model, optim)?;
        reporter.resumed(m.name(), epoch + 1);
    }
    Ok(epoch + 1)
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
    valid: &impl AsRef<dyn DataLoader<B>>,
) -> Result<Evaluation, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    evaluate_on(model, valid.as_ref())
}

/// [`evaluate`] on a loader trait object.
pub(crate) fn evaluate_on<S, B>(
    model: &DistillModel<S, B>,
    valid: &dyn DataLoader<B>,
) -> Result<Evaluation, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    let model = model.valid();
    let (mut loss, mut ce, mut kd, mut correct, mut count) = (0.0, 0.0, 0.0, 0usize, 0usize);
    let mut labelled = 0usize;
    for batch in valid.iter() {
        let batch = batch
            .map_err(|e| TrainError::Data(e.to_string()))?
            .without_autodiff();
        let b = batch.len();
        let (parts, logits) = model.loss(&batch)?;
        loss += scalar(parts.total) * b as f64;
        ce += parts.ce.clone().map(scalar).unwrap_or(0.0) * b as f64;
        kd += parts.kd.clone().map(scalar).unwrap_or(0.0) * b as f64;
        if let Some(targets) = parts.targets {
            // Rows that count: items, or the positions the mask keeps.
            let rows = targets.dims()[0];
            let pred = logits.argmax(1).reshape([rows]);
            correct += pred.equal(targets).int().sum().into_scalar::<i64>() as usize;
            labelled += rows;
        }
        count += b;
    }
    let n = count.max(1) as f64;
    Ok(Evaluation {
        loss: loss / n,
        ce: ce / n,
        kd: model.has_teacher().then_some(kd / n),
        accuracy: correct as f64 / labelled.max(1) as f64,
    })
}
