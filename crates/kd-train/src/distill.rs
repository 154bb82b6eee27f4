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
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use kd_core::{
    Connectors, Contrasts, DistillBatch, FeatureModel, LossParts, ModelInput, Objective, Outputs,
    Supervision, Tap, TapPlan, Targets,
};

use crate::TrainError;
use crate::options::DistillOptions;
use crate::parallel::Workers;
use crate::progress::Progress;
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
    /// Training progress in [0, 1], driving schedules.
    progress: Progress,
}

/// The trained module of a distillation run: the student `S` (any Burn module whose layers can
/// be tapped by name, [`FeatureModel`]), the connectors from its taps to the teacher's widths
/// and CRD's heads and memory banks — all optimised or updated, and saved — beside a frozen
/// teacher and the objective, which are shared by every copy and never saved. `B` is the batch
/// type the data pipeline yields ([`DistillBatch`]).
///
/// It implements Burn's `TrainStep` and `InferenceStep`, so it trains under Burn's `Learner`
/// as well as under [`fit_one_cycle`](crate::fit_one_cycle).
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
            setup: Arc::new(DistillSetup {
                objective: Objective::cross_entropy_only(),
                student_plan: TapPlan::none(),
                teachers: TeacherSet::none(),
                progress: Progress::new(),
            }),
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
            setup: Arc::new(DistillSetup {
                objective,
                student_plan,
                teachers,
                progress: Progress::new(),
            }),
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

    /// Set training progress (fraction of optimizer steps done) for the schedules.
    pub fn set_progress(&self, progress: f64) {
        self.setup.progress.set(progress);
    }

    /// Current training progress.
    pub fn progress(&self) -> f64 {
        self.setup.progress.get()
    }

    /// The progress value this model's schedules read, to be moved by whoever drives the
    /// optimizer steps: under Burn's `Learner`, give it to [`OneCycle::with_progress`]
    /// (or call [`set_progress`](Self::set_progress) from a scheduler of your own). Taking
    /// the handle tells the model that its progress is driven from outside.
    ///
    /// [`OneCycle::with_progress`]: crate::OneCycle::with_progress
    pub fn progress_handle(&self) -> Progress {
        self.setup.progress.mark_driven();
        self.setup.progress.clone()
    }

    /// Under Burn's `Learner` with any learning-rate scheduler: the model advances its own
    /// weight and temperature schedules, counting its training steps against
    /// `total_steps` optimizer steps (epochs × batches per epoch; several devices under
    /// Burn's strategies are accounted for). Without it, or a
    /// [`progress_handle`](Self::progress_handle) given to a scheduler, a model whose
    /// objective has schedules stops at its first training step under Burn's `Learner`
    /// rather than train with them frozen at their start values.
    pub fn with_total_steps(self, total_steps: usize) -> Self {
        self.setup.progress.count_over(total_steps);
        self
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
    fn output(&self, batch: B, training: bool) -> Result<(KdOutput, LossParts), TrainError> {
        let student = self.student_outputs(&batch);
        let parts = self.objective_on(&student, &batch, training)?;
        let out = KdOutput {
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
                .apply(&self.student, &batch, self.setup.progress.get())
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

impl<S, B> TrainStep for DistillModel<S, B>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    type Input = B;
    type Output = KdOutput;

    /// One device's step. On a model trained [on several devices](DistillModel::on_devices)
    /// its loss is divided by their number: Burn's strategies sum the devices' gradients, so
    /// the optimizer gets their mean (see [`DistillModel::execution_strategy`]).
    fn step(&self, batch: B) -> TrainOutput<KdOutput> {
        let devices = self.workers.as_ref().map_or(1, |w| w.devices().len());
        if self.setup.objective.is_scheduled() {
            // Burn's step cannot return an error: a schedule nothing advances stops here.
            if let Err(e) = self.setup.progress.before_step(devices) {
                panic!("distillation step: {e}");
            }
        }
        // Shapes and names were checked by `new`; Burn's step cannot return an error.
        self.weighted_step(self.rolled_out(batch), 1.0 / devices as f32)
            .unwrap_or_else(|e| panic!("distillation step failed: {e}"))
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
        self.output(batch.without_autodiff(), false)
            .unwrap_or_else(|e| panic!("evaluation step failed: {e}"))
            .0
    }
}

impl ItemLazy for KdOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        Ok(KdOutput {
            loss: self.loss.without_autodiff(),
            ce: self.ce.map(|c| c.without_autodiff()),
            kd: self.kd.map(|k| k.without_autodiff()),
            logits: self.logits.without_autodiff(),
            targets: self.targets.map(|t| t.without_autodiff()),
        })
    }
}

impl KdOutput {
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
