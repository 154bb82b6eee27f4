//! fastai's `fit_one_cycle` (or any [`FitConfig`]) as a preset of Burn parts: one
//! [`Learner`](burn::train::Learner) launched by Burn's `SupervisedTraining` with kd's
//! optimizer and schedule ([`FitConfig::learner`]), its checkpoints ([`RunCheckpointer`]), its
//! history and reports ([`HistoryRecorder`]), a quiet renderer ([`Quiet`]) and the model's NaN
//! guard ([`StepGuard`](crate::StepGuard)). Every training kd runs goes through here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderIterator};
use burn::tensor::Device;
use burn::train::metric::Adaptor;
use burn::train::{InferenceStep, LearnerModel, SupervisedTraining, TrainStep};
use kd_core::DistillBatch;

use crate::TrainError;
use crate::checkpoint::RunCheckpointer;
use crate::distill::{DistillModel, TappableModule};
use crate::early_stopping::EarlyStop;
use crate::fit_config::FitConfig;
use crate::history::History;
use crate::mutual::MutualModel;
use crate::quiet::Quiet;
use crate::recorder::{HistoryRecorder, MemberOutputs};
use crate::report::SharedReporter;
use crate::trainable::Trainable;

/// A trained model and its history.
pub type Fitted<S, B> = (DistillModel<S, B>, History);

/// A training data loader as Burn's `SupervisedTraining` takes it.
pub type Loader<B> = Arc<dyn DataLoader<B>>;

/// How kd trains: a [`FitConfig`] (fastai's one-cycle recipe by default), a run name for
/// reports and errors, where checkpoints go and who hears about the progress.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use kd_train::{FitConfig, Recipe};
/// # fn f(model: kd_train::DistillModel<kd_models::Network, kd_data::ImageBatch>, data: kd_data::DataBundle) -> Result<(), kd_train::TrainError> {
/// let (model, history) = Recipe::new(FitConfig { epochs: 5, ..FitConfig::default() })
///     .name("soft target")
///     .checkpoints("runs/soft-target")
///     .fit(model, Arc::new(data.train), Arc::new(data.valid))?;
/// # Ok(()) }
/// ```
///
/// The training loader's batches are trained on as it yields them: build it for the model's
/// training device (an autodiff device; Burn's `DataLoaderBuilder::set_device`). With
/// checkpoints, one is written after every epoch and a run that finds one resumes after it;
/// the training loader is iterated past the finished epochs without drawing their batches, so
/// a loader whose epochs follow its `iter()` count (kd-data's loaders, Burn's shuffling
/// `DataLoaderBuilder` loaders) serves the same batches as an uninterrupted run, and the
/// resumed run ends with the same numbers.
#[derive(Clone)]
pub struct Recipe {
    config: FitConfig,
    name: String,
    checkpoints: Option<PathBuf>,
    reporter: SharedReporter,
}

impl Recipe {
    /// Train with `config`, run name "training", no checkpoints, reporting nothing.
    pub fn new(config: FitConfig) -> Self {
        Self {
            config,
            name: "training".to_string(),
            checkpoints: None,
            reporter: SharedReporter::default(),
        }
    }

    /// The run's name in reports and errors.
    pub fn name(self, name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..self
        }
    }

    /// Write a checkpoint to `dir` after every epoch, and resume from the newest one there.
    pub fn checkpoints(self, dir: impl AsRef<Path>) -> Self {
        Self {
            checkpoints: Some(dir.as_ref().to_path_buf()),
            ..self
        }
    }

    /// Report progress (every step, every epoch) to `reporter`.
    pub fn reporter(self, reporter: SharedReporter) -> Self {
        Self { reporter, ..self }
    }

    /// Train `model` on `train`, validating on `valid` after every epoch. A model set to
    /// train [on several devices](DistillModel::on_devices) spreads every batch over them.
    pub fn fit<S, B>(
        &self,
        model: DistillModel<S, B>,
        train: Loader<B>,
        valid: Loader<B>,
    ) -> Result<Fitted<S, B>, TrainError>
    where
        S: TappableModule<B::Input>,
        B: DistillBatch,
    {
        let distilled = model.has_teacher();
        let (model, mut histories) =
            self.launch(model, vec![self.name.clone()], distilled, train, valid)?;
        Ok((model, histories.remove(0)))
    }

    /// Deep mutual learning of `students` (see [`MutualModel`]), named `names` in reports and
    /// checkpoints: one module, one optimizer, one row of metrics per student. Fewer than two
    /// students, a name count that differs, or a student set to train on several devices is
    /// an error before the first step.
    pub fn fit_mutual<S, B>(
        &self,
        students: Vec<DistillModel<S, B>>,
        names: &[String],
        weight: f64,
        train: Loader<B>,
        valid: Loader<B>,
    ) -> Result<Vec<Fitted<S, B>>, TrainError>
    where
        S: TappableModule<B::Input>,
        B: DistillBatch,
    {
        crate::mutual::check_students(students.len(), names.len())?;
        let model = MutualModel::new(students, weight)?;
        let (model, histories) = self.launch(model, names.to_vec(), true, train, valid)?;
        Ok(model.students.into_iter().zip(histories).collect())
    }

    /// Burn's `SupervisedTraining` of `model` (members `names`), assembled from kd's parts.
    fn launch<M>(
        &self,
        model: M,
        names: Vec<String>,
        distilled: bool,
        train: Arc<dyn DataLoader<<M as TrainStep>::Input>>,
        valid: Arc<dyn DataLoader<<M as InferenceStep>::Input>>,
    ) -> Result<(M, Vec<History>), TrainError>
    where
        M: Trainable + LearnerModel,
        <M as TrainStep>::Output: Adaptor<MemberOutputs>,
        <M as InferenceStep>::Output: Adaptor<MemberOutputs>,
    {
        let epochs = self.config.epochs;
        model.check_items(train.num_items())?;
        model.set_names(&names);
        let recorder = HistoryRecorder::new(&model, &names, self.reporter.clone());
        let checkpointer = self
            .checkpoints
            .as_deref()
            .map(|dir| RunCheckpointer::new(dir, &model, &recorder));
        let mut start = 0;
        if let Some((epoch, saved)) = checkpointer
            .as_ref()
            .map(RunCheckpointer::resume_point)
            .transpose()?
            .flatten()
        {
            if saved.len() != names.len() {
                return Err(TrainError::Checkpoint {
                    path: self.checkpoints.clone().unwrap_or_default(),
                    reason: format!(
                        "the checkpoint holds {} histories, the run trains {} models: start the run afresh with --force",
                        saved.len(),
                        names.len()
                    ),
                });
            }
            recorder.resume(saved);
            start = epoch + 1;
            for name in &names {
                self.reporter.lock().resumed(name, start);
            }
        }
        // Burn's strategy moves the training loader to the model's device, and a moved
        // loader of Burn's shuffles from a fork of its generator, which would make the epochs
        // skipped on resume other than those an uninterrupted run drew: the loader stays as
        // given (its batches on the device it was built for), its order its own.
        let train: Arc<dyn DataLoader<_>> = Arc::new(Pinned(train));
        let learner = self.config.learner(model, train.num_items());
        for _ in 0..start.min(epochs) {
            drop(train.iter());
        }
        for name in &names {
            self.reporter.lock().start(name, epochs, distilled);
        }
        let model = learner.model();
        let stopped_early = self
            .config
            .early_stopping
            .is_some_and(|rule| rule.met_by_all(&recorder.histories()));
        if let Some(checkpointer) = checkpointer
            .as_ref()
            .filter(|_| start > 0 && (start >= epochs || stopped_early))
        {
            // Every epoch done (or stopped early): the trained model is the newest checkpoint's.
            let record = checkpointer.read_model(start - 1)?;
            let model = model
                .try_load_record(record)
                .map_err(|e| TrainError::Checkpoint {
                    path: self.checkpoints.clone().unwrap_or_default(),
                    reason: e.to_string(),
                })?;
            return Ok((model.valid(), recorder.histories()));
        }
        model.training_clock().resume_at(start);
        let guard = model.step_guard().clone();
        // A model trained before (and stopped, say) starts this run unstopped.
        guard.interrupter().reset();
        let _ = guard.take_error();
        let directory = self.checkpoints.clone().unwrap_or_default();
        let mut training = SupervisedTraining::new(directory, train, valid)
            .metric_train(recorder.train())
            .metric_valid(recorder.valid())
            .renderer(Box::new(Quiet))
            .with_metric_logger(Quiet)
            .with_application_logger(None)
            .with_interrupter(guard.interrupter())
            .num_epochs(epochs);
        if self.config.grad_accumulation > 1 {
            training = training.grads_accumulation(self.config.grad_accumulation);
        }
        if let Some(rule) = self.config.early_stopping {
            training = training.early_stopping(EarlyStop::new(rule, &recorder));
        }
        if let Some(checkpointer) = checkpointer {
            training = training
                .with_custom_checkpointers(
                    checkpointer.clone(),
                    checkpointer.clone(),
                    checkpointer.clone(),
                )
                .with_checkpointing_strategy(checkpointer);
            if start > 0 {
                training = training.checkpoint(start);
            }
        }
        let result = training.launch(learner);
        if let Some(error) = guard.take_error() {
            return Err(error);
        }
        if let Some(error) = result.error {
            return Err(TrainError::Training(error.to_string()));
        }
        if let Some(stop) = result.interrupted {
            return Err(TrainError::Stopped(
                stop.reason.unwrap_or_else(|| "asked to stop".to_string()),
            ));
        }
        Ok((result.model, recorder.histories()))
    }
}

/// A loader that stays where it is: "moving" it to a device gives it back, order and all.
struct Pinned<B>(Arc<dyn DataLoader<B>>);

impl<B: Send + 'static> DataLoader<B> for Pinned<B> {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<B> + 'a> {
        self.0.iter()
    }

    fn num_items(&self) -> usize {
        self.0.num_items()
    }

    fn to_device(&self, _device: &Device) -> Arc<dyn DataLoader<B>> {
        Arc::new(Pinned(self.0.clone()))
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<B>> {
        self.0.slice(start, end)
    }
}
