//! The distillation model for Burn's `Learner`: the student (and its connectors) as the trained
//! module, a frozen teacher beside it, the objective, and the devices it trains on.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use burn::module::{Module, ModuleDisplay};
use burn::tensor::{Device, Int, Tensor};
use burn::train::metric::{
    AccuracyInput, Adaptor, ConfusionStatsInput, ItemLazy, LossInput, PerplexityInput,
    TopKAccuracyInput,
};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput};
use kd_core::{
    Connectors, Contrasts, DistillBatch, FeatureModel, LossParts, ModelInput, Objective, Outputs,
    Supervision, Tap, TapPlan, Targets,
};

use crate::TrainError;
use crate::clock::TrainingClock;
use crate::guard::StepGuard;
use crate::options::DistillOptions;
use crate::parallel::Workers;
use crate::rollout::{ErasedRollout, Rollout};
use crate::teacher::{FrozenTeacher, as_strs};
use crate::teachers::{TeacherSet, Teachers};

/// A Burn module whose layers can be tapped by name ([`FeatureModel`]) for inputs of type `I`:
/// what a student must be. Implemented for every such module; a model of your own only
/// implements `FeatureModel<I>`.
pub trait TappableModule<I = Tensor<4>>:
    Module + ModuleDisplay + FeatureModel<I> + 'static
{
}

impl<I, M: Module + ModuleDisplay + FeatureModel<I> + 'static> TappableModule<I> for M {}

/// What is shared by every copy of a [`DistillModel`] and never saved with it.
#[derive(Debug)]
struct DistillSetup<I> {
    /// CE plus distillation terms.
    objective: Objective,
    /// The student taps the objective reads.
    student_plan: TapPlan,
    /// The frozen teachers the objective reads (none when it reads none).
    teachers: TeacherSet<I>,
    /// Where training stands: drives the schedules, names the step in errors.
    clock: TrainingClock,
    /// Where a failed training step leaves its error, and the stop it pulls.
    guard: StepGuard,
    /// The run's name in errors.
    name: std::sync::Mutex<String>,
}

impl<I> DistillSetup<I> {
    fn new(objective: Objective, student_plan: TapPlan, teachers: TeacherSet<I>) -> Self {
        Self {
            objective,
            student_plan,
            teachers,
            clock: TrainingClock::new(),
            guard: StepGuard::default(),
            name: std::sync::Mutex::new("training".to_string()),
        }
    }
}

/// The trained module of a distillation run: the student `S` (any Burn module whose layers can
/// be tapped by name, [`FeatureModel`]), the connectors from its taps to the teacher's widths
/// and CRD's heads and memory banks — all optimised or updated, and saved — beside a frozen
/// teacher and the objective, which are shared by every copy and never saved. `B` is the batch
/// type the data pipeline yields ([`DistillBatch`]).
///
/// It implements Burn's `TrainStep` and `InferenceStep`, so it trains under Burn's `Learner`;
/// kd's [`Recipe`](crate::Recipe) assembles one.
#[derive(Module, Debug)]
pub struct DistillModel<S, B: DistillBatch> {
    /// The model being trained.
    pub student: S,
    /// Learnable adapters from student taps to teacher channel counts.
    pub connectors: Connectors,
    /// The embedding heads and memory banks of the terms that keep a memory of the training
    /// items (CRD), trained and saved with the student.
    pub contrasts: Contrasts,
    /// Teacher, objective and progress.
    #[module(skip)]
    setup: Arc<DistillSetup<B::Input>>,
    /// One thread per device when it trains on several ([`on_devices`](Self::on_devices)).
    #[module(skip)]
    pub(crate) workers: Option<Arc<Workers>>,
    #[module(skip)]
    batch: PhantomData<fn() -> B>,
    /// Generated training data in place of the loader's ([`with_rollout`](Self::with_rollout)).
    #[module(skip)]
    rollout: Option<Arc<ErasedRollout<B>>>,
}

/// One step's outputs, for metrics.
#[derive(Debug, Clone)]
pub struct KdOutput {
    /// The items of the batch (0: a step that failed, see [`DistillModel::guard`]).
    pub items: usize,
    /// The optimised loss.
    pub loss: Tensor<1>,
    /// Student cross-entropy; `None` for a batch without targets.
    pub ce: Option<Tensor<1>>,
    /// Weighted distillation sum, if any.
    pub kd: Option<Tensor<1>>,
    /// Student logits of the rows that count, `[rows, classes]`: one per item, or one per
    /// position the batch's mask keeps.
    pub logits: Tensor<2>,
    /// The target of each of those rows; `None` for a batch without targets.
    pub targets: Option<Tensor<1, Int>>,
}

impl<S, B> DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    /// The student trained alone on its cross-entropy: no teacher, no probe batch.
    pub fn alone(student: S) -> Self {
        Self {
            student,
            connectors: Connectors::none(),
            contrasts: Contrasts::none(),
            setup: Arc::new(DistillSetup::new(
                Objective::cross_entropy_only(),
                TapPlan::none(),
                TeacherSet::none(),
            )),
            workers: None,
            batch: PhantomData,
            rollout: None,
        }
    }

    /// Pair `student` with a frozen `teacher` under `objective`.
    ///
    /// Every tap name is resolved and the whole objective is evaluated once on `probe`, a real
    /// batch of the data to be trained on (two items are enough), so bad layer names or
    /// incompatible shapes fail here, with the culprit named, rather than mid-training.
    /// Connectors are sized from the probe's tap widths, and the embedding heads of CRD terms
    /// from its flattened tap sizes, their memories with a row per training item
    /// ([`DistillOptions::training_items`]; such terms also need the batches' item indices,
    /// [`DistillBatch::item_indices`]). `options` (or just a [`TeacherCache`](crate::TeacherCache)) bound the
    /// teacher outputs kept for items whose batches give them a cache key
    /// ([`DistillBatch::cache_keys`]).
    pub fn new(
        student: S,
        teacher: Option<FrozenTeacher<B::Input>>,
        objective: Objective,
        probe: &B,
        options: impl Into<DistillOptions>,
    ) -> Result<Self, TrainError> {
        let teachers = teacher.map(Teachers::one).unwrap_or_default();
        Self::with_teachers(student, teachers, objective, probe, options)
    }

    /// As [`new`](Self::new), with several teachers: each term of `objective` reads the
    /// teacher it names among `teachers` (a model or an ensemble). Only the teachers some term
    /// reads, directly or through an ensemble, run: one after another on each batch, so the
    /// memory at a time is one teacher's activations plus the outputs kept; each has its own
    /// output cache, of at most `cache` bytes. Names are checked here: a term naming a teacher
    /// there is not, or none when there are several, is an error naming the teachers.
    pub fn with_teachers(
        student: S,
        teachers: Teachers<B::Input>,
        objective: Objective,
        probe: &B,
        options: impl Into<DistillOptions>,
    ) -> Result<Self, TrainError> {
        let DistillOptions {
            cache,
            training_items,
        } = options.into();
        objective.check_values()?;
        let device = student.device();
        let student_taps = objective.student_taps();
        let student_plan = student.tap_plan(&as_strs(&student_taps))?;
        let teachers = TeacherSet::new(teachers, &objective, cache)?;
        let (connectors, contrasts) = if teachers.is_empty() {
            (Connectors::none(), Contrasts::none())
        } else {
            let inputs = probe.inputs().without_autodiff();
            let student_taps = tap_shapes(&student.valid(), &student_taps, inputs.clone());
            let teacher_taps: BTreeMap<String, BTreeMap<String, Vec<usize>>> = teachers
                .run(inputs)
                .into_iter()
                .map(|(name, out)| (name, shapes(out.taps)))
                .collect();
            let per_teacher = |width: fn(&[usize]) -> usize| {
                teacher_taps
                    .iter()
                    .map(|(name, taps)| (name.clone(), widths(taps, width)))
                    .collect::<BTreeMap<_, _>>()
            };
            let connectors = Connectors::for_teachers(
                &objective,
                &widths(&student_taps, channels),
                &per_teacher(channels),
                &device,
            )?;
            let contrasts = Contrasts::for_objective(
                &objective,
                training_items,
                &widths(&student_taps, per_item),
                &per_teacher(per_item),
                &device,
            )?;
            (connectors, contrasts)
        };
        if !contrasts.is_empty() && probe.item_indices().len() != probe.len() {
            return Err(TrainError::Data(format!(
                "CRD indexes its memory by each item's index among the training items, but batches of `{}` give none (DistillBatch::item_indices, or a cache key for every item)",
                std::any::type_name::<B>()
            )));
        }
        let model = Self {
            student,
            connectors,
            contrasts,
            setup: Arc::new(DistillSetup::new(objective, student_plan, teachers)),
            workers: None,
            batch: PhantomData,
            rollout: None,
        };
        model.check(probe)?;
        Ok(model)
    }

    /// One evaluation of the objective on `probe`, the teachers run directly (their caches
    /// are left untouched).
    fn check(&self, probe: &B) -> Result<(), TrainError> {
        let keys = probe.cache_keys().len();
        if keys != 0 && keys != probe.len() {
            return Err(TrainError::Data(format!(
                "the batch type's cache_keys() gave {keys} keys for a batch of {} items: one per item, or none",
                probe.len()
            )));
        }
        let model = self.valid();
        let student = model
            .student
            .forward_taps(probe.inputs().without_autodiff(), &model.setup.student_plan);
        let student = model.connectors.apply(student);
        let teachers = model.setup.teachers.run(probe.inputs());
        model.setup.objective.compute_remembering(
            &student,
            &teachers,
            &supervision_without_autodiff(probe.supervision()),
            0.0,
            Some((&model.contrasts, None)),
        )?;
        Ok(())
    }

    /// Current training progress: the fraction of the plan's training steps done, what the
    /// weight and temperature schedules read.
    pub fn progress(&self) -> f64 {
        self.setup.clock.progress()
    }

    /// Plan the training: `epochs` epochs over a loader serving `items_per_epoch` items each
    /// (Burn's `DataLoader::num_items`). The model counts its training steps against it (the
    /// batch size is read from the first batch), which moves its weight and temperature
    /// schedules, and kd's learning-rate schedules ([`FitConfig::learner`](crate::FitConfig::learner),
    /// which plans for you). Without a plan, a model whose objective has schedules stops at
    /// its first training step rather than train with them frozen at their start values.
    pub fn with_plan(self, epochs: usize, items_per_epoch: usize) -> Self {
        self.setup.clock.plan(epochs, items_per_epoch);
        self
    }

    /// The clock of this model's training (shared by its copies).
    pub fn clock(&self) -> &TrainingClock {
        &self.setup.clock
    }

    /// Where a failed training step keeps its error and which interrupter it stops: give
    /// [`StepGuard::interrupter`] to Burn's `SupervisedTraining::with_interrupter`, and after
    /// `launch` read [`StepGuard::take_error`] — a NaN loss, say, is kd's
    /// [`TrainError::NonFinite`] naming the epoch, step and term, not a panic.
    pub fn guard(&self) -> &StepGuard {
        &self.setup.guard
    }

    /// Name the run in errors.
    pub(crate) fn set_name(&self, name: &str) {
        *self.setup.name.lock().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    }

    /// The run's name in errors.
    pub(crate) fn run_name(&self) -> String {
        self.setup
            .name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The objective being optimised.
    pub fn objective(&self) -> &Objective {
        &self.setup.objective
    }

    /// Whether a teacher runs beside the student.
    pub fn has_teacher(&self) -> bool {
        !self.setup.teachers.is_empty()
    }

    /// The frozen teacher (the first, when there are several), when the objective reads one.
    pub fn teacher(&self) -> Option<&(dyn FeatureModel<B::Input> + Send + Sync)> {
        self.setup.teachers.first()
    }

    /// How many items' teacher outputs are cached (summed over teachers and devices).
    pub fn cached_teacher_items(&self) -> usize {
        self.setup.teachers.cached_items()
    }

    /// The trained student, without the connectors.
    pub fn into_student(self) -> S {
        self.student
    }

    /// Student forward (through the connectors), teacher outputs, objective — as evaluated:
    /// the memories of CRD terms are read, not updated. Also returns the student's logit
    /// rows that count (what [`LossParts::targets`] label).
    pub fn loss(&self, batch: &B) -> Result<(LossParts, Tensor<2>), TrainError> {
        let student = self.student_outputs(batch);
        let parts = self.objective_on(&student, batch, false)?;
        let logits = parts.counted(&student.logits);
        Ok((parts, logits))
    }

    /// The student's logits and the taps the objective reads (through the connectors).
    pub(crate) fn student_outputs(&self, batch: &B) -> Outputs {
        let student = self
            .student
            .forward_taps(batch.inputs(), &self.setup.student_plan);
        self.connectors.apply(student)
    }

    /// The objective on `batch` given the student's outputs on it; on a training step
    /// (`training`) the memories of CRD terms learn the batch's items.
    pub(crate) fn objective_on(
        &self,
        student: &Outputs,
        batch: &B,
        training: bool,
    ) -> Result<LossParts, TrainError> {
        let teachers = self.setup.teachers.outputs(batch);
        let items = match training && !self.contrasts.is_empty() {
            true => Some(batch.item_indices()),
            false => None,
        };
        Ok(self.setup.objective.compute_remembering(
            student,
            &teachers,
            &batch.supervision(),
            self.progress(),
            Some((&self.contrasts, items.as_deref())),
        )?)
    }

    /// The step's outputs and the objective's parts on `batch` (a training step when
    /// `training`: CRD memories learn the batch's items).
    pub(crate) fn output(
        &self,
        batch: B,
        training: bool,
    ) -> Result<(KdOutput, LossParts), TrainError> {
        let student = self.student_outputs(&batch);
        let parts = self.objective_on(&student, &batch, training)?;
        let out = KdOutput {
            items: batch.len(),
            loss: parts.total.clone(),
            ce: parts.ce.clone(),
            kd: parts.kd.clone(),
            logits: parts.counted(&student.logits),
            targets: parts.targets.clone(),
        };
        Ok((out, parts))
    }

    /// Device of the student.
    pub fn device(&self) -> Device {
        self.student.device()
    }

    /// Train on what `rollout` generates in place of the loader's batches where it says so
    /// (GKD's on-policy distillation, sequence-level KD); see [`Rollout`].
    pub fn with_rollout(mut self, rollout: impl Rollout<S, B> + 'static) -> Self
    where
        S: 'static,
    {
        self.rollout = Some(Arc::new(ErasedRollout::new(rollout)));
        self
    }

    /// The batch a training step trains on: what the [rollout](Self::with_rollout) makes of
    /// `batch`, or `batch` itself.
    pub(crate) fn rolled_out(&self, batch: B) -> B {
        match &self.rollout {
            Some(rollout) => rollout
                .apply(&self.student, &batch, self.progress())
                .unwrap_or(batch),
            None => batch,
        }
    }

    /// Backward through `weight` × the objective on `batch` (the shard's share of its batch).
    pub(crate) fn weighted_step(
        &self,
        batch: B,
        weight: f32,
    ) -> Result<TrainOutput<KdOutput>, TrainError> {
        let (out, parts) = self.output(batch, true)?;
        let total = if weight == 1.0 {
            parts.total
        } else {
            parts.total.mul_scalar(weight)
        };
        Ok(TrainOutput::new(self, total.backward(), out))
    }
}

/// The batch's targets and mask on the tape-free device.
fn supervision_without_autodiff(s: Supervision) -> Supervision {
    Supervision {
        targets: s.targets.map(Targets::without_autodiff),
        mask: s.mask.map(|m| m.without_autodiff()),
    }
}

/// The shape of each of `taps` on one forward pass of `inputs` (tape-free).
fn tap_shapes<I>(
    model: &dyn FeatureModel<I>,
    taps: &[String],
    inputs: I,
) -> BTreeMap<String, Vec<usize>> {
    match model.tap_plan(&as_strs(taps)) {
        Ok(plan) => shapes(model.forward_taps(inputs, &plan).taps),
        Err(_) => BTreeMap::new(),
    }
}

fn shapes(taps: BTreeMap<String, Tap>) -> BTreeMap<String, Vec<usize>> {
    taps.into_iter().map(|(k, v)| (k, v.dims())).collect()
}

/// Each tap's `width` (channels, or values per item) from its shape.
fn widths(
    shapes: &BTreeMap<String, Vec<usize>>,
    width: fn(&[usize]) -> usize,
) -> BTreeMap<String, usize> {
    shapes.iter().map(|(k, s)| (k.clone(), width(s))).collect()
}

/// The width a connector adapts ([`Tap::width`]): a sequence's last dimension, otherwise the
/// second.
fn channels(shape: &[usize]) -> usize {
    match shape {
        [_, _, features] => *features,
        _ => shape[1],
    }
}

fn per_item(shape: &[usize]) -> usize {
    shape[1..].iter().product()
}

impl<S, B> DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    /// A memory of the training items (CRD) has a row for each item the training loader
    /// gives (at least: a loader that drops an incomplete batch gives fewer items per epoch
    /// than the training set holds).
    pub(crate) fn check_items(&self, items: usize) -> Result<(), TrainError> {
        match self.contrasts.items() {
            Some(rows) if rows < items => Err(TrainError::Data(format!(
                "the model's memory of the training items (CRD) has {rows} rows, fewer than the {items} items the training loader gives per epoch: build the model with DistillOptions::training_items = the training set's size"
            ))),
            _ => Ok(()),
        }
    }
}

impl<S, B> InferenceStep for DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    type Input = B;
    type Output = KdOutput;

    fn step(&self, batch: B) -> KdOutput {
        self.validation_step(batch).unwrap_or_else(|e| {
            self.setup.guard.fail(e);
            KdOutput::failed(&self.device())
        })
    }
}

impl<S, B> crate::trainable::Trainable for DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    fn training_clock(&self) -> &TrainingClock {
        &self.setup.clock
    }

    fn plan(&self, epochs: usize, items_per_epoch: usize, accumulation: usize) {
        self.setup.clock.plan(epochs, items_per_epoch);
        self.setup.clock.accumulate(accumulation);
    }

    fn step_guard(&self) -> &StepGuard {
        &self.setup.guard
    }

    fn set_names(&self, names: &[String]) {
        if let Some(name) = names.first() {
            self.set_name(name);
        }
    }

    fn check_items(&self, items: usize) -> Result<(), TrainError> {
        DistillModel::check_items(self, items)
    }
}

impl ItemLazy for KdOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        Ok(self.detached())
    }
}

impl KdOutput {
    /// The same values off the tape: holding them no longer holds the step's graph (its
    /// activations), which a training step's output must not keep alive while it waits for
    /// Burn's metrics thread.
    pub(crate) fn detached(self) -> Self {
        KdOutput {
            items: self.items,
            loss: self.loss.without_autodiff(),
            ce: self.ce.map(|c| c.without_autodiff()),
            kd: self.kd.map(|k| k.without_autodiff()),
            logits: self.logits.without_autodiff(),
            targets: self.targets.map(|t| t.without_autodiff()),
        }
    }

    /// The output of a step that failed: no items, a zero loss, no rows.
    pub(crate) fn failed(device: &Device) -> Self {
        Self {
            items: 0,
            loss: Tensor::zeros([1], device),
            ce: None,
            kd: None,
            logits: Tensor::zeros([0, 1], device),
            targets: None,
        }
    }

    /// The logit rows that have a target, with their targets (none for unlabeled data).
    fn labelled(&self) -> (Tensor<2>, Tensor<1, Int>) {
        match &self.targets {
            Some(targets) => (self.logits.clone(), targets.clone()),
            None => {
                let device = self.logits.device();
                let [_, classes] = self.logits.dims();
                (
                    Tensor::zeros([0, classes], &device),
                    Tensor::zeros([0], &device),
                )
            }
        }
    }
}

impl KdOutput {
    /// The step as Burn's classification output: the optimised loss, and the logit rows that
    /// count with their targets.
    pub fn classification(&self) -> ClassificationOutput {
        let (logits, targets) = self.labelled();
        ClassificationOutput {
            loss: self.loss.clone(),
            output: logits,
            targets,
        }
    }
}

/// Burn's classification metrics — loss, accuracy, top-k accuracy, perplexity, and precision,
/// recall and F-score (`ConfusionStatsInput`) — read a step as they read Burn's
/// `ClassificationOutput`, over the rows that count (items, or the positions the mask keeps);
/// a batch without targets adds no row. The parts of the objective are metrics of their own
/// ([`ObjectivePartMetric`](crate::ObjectivePartMetric)).
macro_rules! classification_adaptors {
    ($($input:ty),*) => {$(
        impl Adaptor<$input> for KdOutput {
            fn adapt(&self) -> $input {
                self.classification().adapt()
            }
        }
    )*};
}

classification_adaptors!(
    LossInput,
    AccuracyInput,
    TopKAccuracyInput,
    PerplexityInput,
    ConfusionStatsInput
);
