//! A run's [`History`] from Burn's events: a metric of Burn's `Learner` that adds up every
//! training and validation step of every member, and at the end of each epoch's validation
//! writes one [`EpochRecord`] per member — fastai's table row — and hands it to the run's
//! [`Reporter`](crate::report::Reporter).
//!
//! Training means are over batches; validation means are over items — over the positions that
//! count, for per-position outputs such as a language model's — and accuracy over the rows that
//! have a target, as fastai computes them.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::TensorReadError;
use burn::train::metric::{Adaptor, Metric, MetricMetadata, MetricName, SerializedEntry};

use crate::TrainError;
use crate::clock::TrainingClock;
use crate::distill::KdOutput;
use crate::guard::StepGuard;
use crate::history::{EpochRecord, Histories, History};
use crate::report::SharedReporter;
use crate::trainable::Trainable;

/// One member's numbers from one step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Items in the batch.
    pub items: usize,
    /// The rows the losses average over: one per item for a classifier, one per position the
    /// mask keeps for per-position outputs.
    pub rows: usize,
    /// The objective.
    pub loss: f64,
    /// The cross-entropy, if the batch has targets.
    pub ce: Option<f64>,
    /// The weighted distillation sum, if the objective has one.
    pub kd: Option<f64>,
    /// Rows whose arg-max is their target.
    pub correct: usize,
    /// Rows that have a target.
    pub labelled: usize,
}

impl Tally {
    /// The numbers of one step's output (read back from the device); `accuracy` false leaves
    /// out the rows' arg-max (training steps, whose accuracy nobody reads).
    pub fn of(out: &KdOutput, accuracy: bool) -> Result<Self, TensorReadError> {
        let scalar = |t: &burn::tensor::Tensor<1>| t.clone().try_into_scalar::<f64>();
        let (correct, labelled) = match &out.targets {
            Some(targets) if accuracy && out.items > 0 => {
                let rows = targets.dims()[0];
                let pred = out.logits.clone().argmax(1).reshape([rows]);
                let correct = pred
                    .equal(targets.clone())
                    .int()
                    .sum()
                    .try_into_scalar::<i64>()?;
                (correct as usize, rows)
            }
            _ => (0, 0),
        };
        Ok(Self {
            items: out.items,
            rows: out.logits.dims()[0],
            loss: scalar(&out.loss)?,
            ce: out.ce.as_ref().map(scalar).transpose()?,
            kd: out.kd.as_ref().map(scalar).transpose()?,
            correct,
            labelled,
        })
    }
}

/// Every member's output of one step: what the [`HistoryRecorder`] reads.
#[derive(Debug, Clone)]
pub struct MemberOutputs(pub Vec<KdOutput>);

impl Adaptor<MemberOutputs> for KdOutput {
    fn adapt(&self) -> MemberOutputs {
        MemberOutputs(vec![self.clone()])
    }
}

impl MemberOutputs {
    /// Each member's [`Tally`]; a read that fails counts as a failed step (no items): the
    /// run's guard already stopped it, or the next read fails the same way.
    fn tallies(&self, accuracy: bool) -> Vec<Tally> {
        self.0
            .iter()
            .map(|out| Tally::of(out, accuracy).unwrap_or_default())
            .collect()
    }
}

/// Sums over the steps of one split of one epoch, for one member.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sums {
    steps: usize,
    rows: usize,
    loss: f64,
    ce: f64,
    kd: f64,
    distilled: bool,
    correct: usize,
    labelled: usize,
}

impl Sums {
    /// Add a step: its means as they are (`weighted` false: training, fastai's mean over
    /// batches) or weighted by the rows they average over (validation: a mean over every item,
    /// or over every position that counts, whatever the batches' sizes and padding).
    pub(crate) fn add(&mut self, t: &Tally, weighted: bool) {
        let w = if weighted { t.rows as f64 } else { 1.0 };
        self.steps += 1;
        self.rows += t.rows;
        self.loss += t.loss * w;
        self.ce += t.ce.unwrap_or(0.0) * w;
        self.kd += t.kd.unwrap_or(0.0) * w;
        self.distilled |= t.kd.is_some();
        self.correct += t.correct;
        self.labelled += t.labelled;
    }

    /// The means over batches.
    fn per_batch(&self) -> (f64, f64, Option<f64>) {
        let n = self.steps.max(1) as f64;
        (
            self.loss / n,
            self.ce / n,
            self.distilled.then_some(self.kd / n),
        )
    }

    /// The means over rows (items, or positions that count), and the accuracy over labelled
    /// rows.
    pub(crate) fn per_row(&self) -> (f64, f64, Option<f64>, f64) {
        let n = self.rows.max(1) as f64;
        (
            self.loss / n,
            self.ce / n,
            self.distilled.then_some(self.kd / n),
            self.correct as f64 / self.labelled.max(1) as f64,
        )
    }
}

/// What the recorder keeps between events.
struct Recording {
    reporter: SharedReporter,
    clock: TrainingClock,
    guard: StepGuard,
    /// The members' names, in order.
    names: Vec<String>,
    histories: Histories,
    /// The epoch (from 0) being recorded.
    epoch: usize,
    started: Option<Instant>,
    lr: f64,
    train: Vec<Sums>,
    valid: Vec<Sums>,
    /// The training means of the epoch, once its training split ended.
    trained: Vec<(f64, f64, Option<f64>)>,
}

impl Recording {
    fn train_step(&mut self, tallies: &[Tally], lr: Option<f64>) {
        if tallies.iter().all(|t| t.items == 0) {
            return; // a failed step: the guard stops the run
        }
        self.started.get_or_insert_with(Instant::now);
        self.lr = lr.unwrap_or(self.lr);
        for (sums, tally) in self.train.iter_mut().zip(tallies) {
            sums.add(tally, false);
        }
        let first = self.train[0];
        self.reporter.lock().step(
            &self.names[0],
            self.epoch,
            first.steps,
            self.clock.steps_per_epoch().unwrap_or(first.steps),
            first.per_batch().0,
        );
    }

    fn train_end(&mut self) {
        if self.train[0].steps == 0 {
            let items = self.clock.items_per_epoch();
            self.guard.fail(TrainError::TooFewItems { items });
        }
        self.trained = self.train.iter().map(Sums::per_batch).collect();
        self.train.iter_mut().for_each(|s| *s = Sums::default());
    }

    fn valid_step(&mut self, tallies: &[Tally]) {
        if tallies.iter().all(|t| t.items == 0) {
            return;
        }
        for (sums, tally) in self.valid.iter_mut().zip(tallies) {
            sums.add(tally, true);
        }
    }

    fn valid_end(&mut self) {
        let seconds = self
            .started
            .take()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        for (k, name) in self.names.iter().enumerate() {
            let (train_loss, train_ce, train_kd) = self.trained.get(k).copied().unwrap_or_default();
            let (valid_loss, valid_ce, valid_kd, accuracy) = self.valid[k].per_row();
            let record = EpochRecord {
                epoch: self.epoch,
                train_loss,
                train_ce,
                train_kd,
                valid_loss,
                valid_ce,
                valid_kd,
                accuracy,
                lr: self.lr,
                seconds,
            };
            self.reporter.lock().epoch(name, &record);
            let mut histories = self.histories.lock().unwrap_or_else(|e| e.into_inner());
            histories[k].epochs.push(record);
        }
        self.valid.iter_mut().for_each(|s| *s = Sums::default());
        self.epoch += 1;
    }
}

/// Which split a [`HistoryRecorder`] instance reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Train,
    Valid,
}

/// The [`History`] of every member of a run, recorded from Burn's `Learner` as a metric:
/// register [`train`](Self::train) with `SupervisedTraining::metric_train` and
/// [`valid`](Self::valid) with `metric_valid`. After each epoch's validation it appends one
/// [`EpochRecord`] per member and reports it; [`histories`](Self::histories) gives them.
#[derive(Clone)]
pub struct HistoryRecorder {
    split: Split,
    state: Arc<Mutex<Recording>>,
    name: MetricName,
}

impl HistoryRecorder {
    /// Record the training of `model`, whose members (one, or a mutual model's students) are
    /// named `names` in histories and reports, reporting to `reporter`. An epoch without a
    /// training batch stops training through the model's [guard](crate::StepGuard).
    pub fn new<M: Trainable>(model: &M, names: &[String], reporter: SharedReporter) -> Self {
        let histories: Vec<History> = names
            .iter()
            .map(|name| History {
                name: name.clone(),
                epochs: Vec::new(),
            })
            .collect();
        let members = histories.len();
        let state = Recording {
            reporter,
            clock: model.training_clock().clone(),
            guard: model.step_guard().clone(),
            names: names.to_vec(),
            histories: Arc::new(Mutex::new(histories)),
            epoch: 0,
            started: None,
            lr: 0.0,
            train: vec![Sums::default(); members],
            valid: vec![Sums::default(); members],
            trained: Vec::new(),
        };
        Self {
            split: Split::Train,
            state: Arc::new(Mutex::new(state)),
            name: Arc::new("history".to_string()),
        }
    }

    /// Continue histories `saved` after their last epoch (a resumed run).
    pub(crate) fn resume(&self, saved: Vec<History>) {
        let mut state = self.lock();
        state.epoch = saved
            .iter()
            .filter_map(|h| h.epochs.last().map(|e| e.epoch + 1))
            .max()
            .unwrap_or(0);
        *state.histories.lock().unwrap_or_else(|e| e.into_inner()) = saved;
    }

    /// The histories, shared with the checkpoints that save them.
    pub(crate) fn shared_histories(&self) -> Histories {
        self.lock().histories.clone()
    }

    /// The instance that reads training steps.
    pub fn train(&self) -> Self {
        Self {
            split: Split::Train,
            ..self.clone()
        }
    }

    /// The instance that reads validation steps.
    pub fn valid(&self) -> Self {
        Self {
            split: Split::Valid,
            ..self.clone()
        }
    }

    /// The histories recorded so far, one per member.
    pub fn histories(&self) -> Vec<History> {
        let state = self.lock();
        let histories = state.histories.lock().unwrap_or_else(|e| e.into_inner());
        histories.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn entry(text: &str) -> SerializedEntry {
    SerializedEntry {
        formatted: text.to_string(),
        serialized: text.to_string(),
    }
}

impl Metric for HistoryRecorder {
    type Input = MemberOutputs;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        outputs: &MemberOutputs,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let tallies = outputs.tallies(self.split == Split::Valid);
        let mut state = self.lock();
        match self.split {
            Split::Train => {
                let lr = metadata.lr.as_ref().map(|lr| lr.base());
                state.train_step(&tallies, lr)
            }
            Split::Valid => state.valid_step(&tallies),
        }
        Ok(entry(""))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        let mut state = self.lock();
        match self.split {
            Split::Train => state.train_end(),
            Split::Valid => state.valid_end(),
        }
        Ok(entry(""))
    }

    fn clear(&mut self) {}
}
