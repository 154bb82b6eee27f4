//! The distillation model for Burn's `Learner`: the student (and its connectors) as the trained
//! module, a frozen teacher beside it, and the objective.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use burn::train::metric::{AccuracyInput, Adaptor, ItemLazy, LossInput};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use kd_core::{Connectors, LossParts, Objective};
use kd_data::ImageBatch;
use kd_models::{FeatureModel, Network, TapPlan};

use crate::TrainError;
use crate::progress::Progress;
use crate::teacher::TeacherRunner;

/// What is shared by every copy of a [`DistillModel`] and never saved with it.
#[derive(Debug)]
pub struct DistillSetup {
    /// CE plus distillation terms.
    pub objective: Objective,
    /// The student taps the objective reads.
    pub student_plan: TapPlan,
    /// The frozen teacher, when the objective needs one.
    pub teacher: Option<TeacherRunner>,
    /// Training progress in [0, 1], driving schedules.
    progress: Progress,
}

/// Student + connectors (trained, saved) and the frozen teacher and objective (shared, not
/// saved).
#[derive(Module, Debug)]
pub struct DistillModel {
    /// The model being trained.
    pub student: Network,
    /// Learnable adapters from student taps to teacher channel counts.
    pub connectors: Connectors,
    /// Teacher, objective and progress.
    #[module(skip)]
    pub setup: Arc<DistillSetup>,
}

/// One step's outputs, for metrics.
#[derive(Debug, Clone)]
pub struct KdOutput {
    /// The optimised loss.
    pub loss: Tensor<1>,
    /// Student cross-entropy.
    pub ce: Tensor<1>,
    /// Weighted distillation sum, if any.
    pub kd: Option<Tensor<1>>,
    /// Student logits.
    pub logits: Tensor<2>,
    /// Targets.
    pub targets: Tensor<1, Int>,
}

impl DistillModel {
    /// Pair `student` with a frozen copy of `teacher` under `objective`.
    ///
    /// Every tap name is resolved and the whole objective is evaluated once on a dummy batch of
    /// `image_size` pixels, so bad layer names or incompatible shapes fail here, with the
    /// culprit named, rather than mid-training. `cache_teacher` enables the teacher-output
    /// cache for items whose pixels never change.
    pub fn new(
        student: Network,
        teacher: Option<&Network>,
        objective: Objective,
        cache_teacher: bool,
        image_size: usize,
    ) -> Result<Self, TrainError> {
        let device = student.device();
        let student_taps = objective.student_taps();
        let student_plan = student.tap_plan(&as_strs(&student_taps))?;
        let teacher = match (objective.needs_teacher(), teacher) {
            (false, _) => None,
            (true, Some(t)) => Some(TeacherRunner::new(
                t,
                &objective.teacher_taps(),
                cache_teacher,
            )?),
            (true, None) => return Err(TrainError::NoTeacher),
        };
        // Tap widths decide where connectors go.
        let channels = |m: &Network, taps: &[String]| -> BTreeMap<String, usize> {
            let plan = match m.tap_plan(&as_strs(taps)) {
                Ok(p) => p,
                Err(_) => return BTreeMap::new(),
            };
            let x = Tensor::<4>::zeros([2, 3, image_size, image_size], &m.device().inner());
            m.valid()
                .forward_taps(x, &plan)
                .taps
                .into_iter()
                .map(|(k, v)| (k, v.dims()[1]))
                .collect()
        };
        let connectors = match &teacher {
            Some(t) => Connectors::for_objective(
                &objective,
                &channels(&student, &student_taps),
                &channels(t.model(), &objective.teacher_taps()),
                &device,
            )?,
            None => Connectors::none(),
        };
        let model = Self {
            student,
            connectors,
            setup: Arc::new(DistillSetup {
                objective,
                student_plan,
                teacher,
                progress: Progress::new(),
            }),
        };
        model.dry_run(image_size)?;
        Ok(model)
    }

    fn dry_run(&self, image_size: usize) -> Result<(), TrainError> {
        let probe = self.valid();
        let device = probe.student.device();
        let batch = ImageBatch {
            images: Tensor::zeros([2, 3, image_size, image_size], &device),
            targets: Tensor::zeros([2], &device),
            items: vec![usize::MAX - 1, usize::MAX],
            deterministic: vec![false, false],
        };
        probe.loss(&batch).map(|_| ())
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
    /// (or call [`set_progress`](Self::set_progress) from a scheduler of your own).
    ///
    /// [`OneCycle::with_progress`]: crate::OneCycle::with_progress
    pub fn progress_handle(&self) -> Progress {
        self.setup.progress.clone()
    }

    /// Student forward (through the connectors), teacher outputs, objective.
    pub fn loss(&self, batch: &ImageBatch) -> Result<(LossParts, Tensor<2>), TrainError> {
        let student = self
            .student
            .forward_taps(batch.images.clone(), &self.setup.student_plan);
        let student = self.connectors.apply(student);
        let teacher = self.setup.teacher.as_ref().map(|t| t.outputs(batch));
        let parts = self.setup.objective.compute(
            &student,
            teacher.as_ref(),
            &batch.targets,
            self.progress(),
        )?;
        Ok((parts, student.logits))
    }

    fn output(&self, batch: ImageBatch) -> (KdOutput, LossParts) {
        // Shapes and names were checked by `new`; what is left is a bug, not bad input.
        let (parts, logits) = self
            .loss(&batch)
            .unwrap_or_else(|e| panic!("distillation step failed after validation: {e}"));
        let out = KdOutput {
            loss: parts.total.clone(),
            ce: parts.ce.clone(),
            kd: parts.kd.clone(),
            logits,
            targets: batch.targets,
        };
        (out, parts)
    }

    /// Device of the student.
    pub fn device(&self) -> Device {
        self.student.device()
    }
}

impl TrainStep for DistillModel {
    type Input = ImageBatch;
    type Output = KdOutput;

    fn step(&self, batch: ImageBatch) -> TrainOutput<KdOutput> {
        let (out, parts) = self.output(batch);
        let grads = parts.total.backward();
        TrainOutput::new(self, grads, out)
    }
}

impl InferenceStep for DistillModel {
    type Input = ImageBatch;
    type Output = KdOutput;

    fn step(&self, batch: ImageBatch) -> KdOutput {
        self.output(batch.without_autodiff()).0
    }
}

impl ItemLazy for KdOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        Ok(KdOutput {
            loss: self.loss.without_autodiff(),
            ce: self.ce.without_autodiff(),
            kd: self.kd.map(|k| k.without_autodiff()),
            logits: self.logits.without_autodiff(),
            targets: self.targets.without_autodiff(),
        })
    }
}

impl Adaptor<LossInput> for KdOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl Adaptor<AccuracyInput> for KdOutput {
    fn adapt(&self) -> AccuracyInput {
        AccuracyInput::new(self.logits.clone(), self.targets.clone())
    }
}

/// Borrow owned names as the `&str`s a tap plan takes.
pub(crate) fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}
