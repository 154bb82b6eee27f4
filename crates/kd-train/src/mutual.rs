//! Deep mutual learning (Zhang et al., 2018): several students trained together on the same
//! batches, each learning from the class targets and from the other students' predictions.

use std::path::Path;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use kd_core::DistillBatch;

use crate::TrainError;
use crate::distill::{DistillModel, KdOutput, TappableModule};
use crate::fit::{FitConfig, Fitted, Member, fit_members};
use crate::mutual_loss::mutual_losses;
use crate::report::Reporter;

/// Train `students` together with deep mutual learning (Zhang et al., 2018): on every batch
/// each student minimises its own objective plus `weight` × the mean over the other students
/// of `KL(p_other ‖ p_self)` (softmax at temperature 1, batch mean), the other side detached
/// as in the paper. The predictions are those of one forward pass per student before any of
/// them steps (the common implementation; the paper's Algorithm 1 recomputes them between
/// the students' updates).
///
/// Each student keeps its own objective (cross-entropy alone, or terms reading a teacher:
/// DML with a teacher), optimizer state, [`History`](crate::History) (the distillation column holds its
/// distillation terms plus the weighted mutual term) and, with `checkpoint_dir`, checkpoints
/// in `checkpoint_dir/student-N/` (N from 1), written for every student before the previous
/// epoch's are removed, so a killed run resumes exactly. All follow fastai's one-cycle
/// recipe of [`fit_one_cycle`](crate::fit_one_cycle) on the same batches and schedule.
///
/// `names` names the students in histories and reports (one per student). Fewer than two
/// students, a name count that differs, or a student set to train on several devices is an
/// error before the first step.
#[allow(clippy::too_many_arguments)]
pub fn fit_mutual<S, B>(
    students: Vec<DistillModel<S, B>>,
    names: &[String],
    weight: f64,
    train: &impl AsRef<dyn DataLoader<B>>,
    valid: &impl AsRef<dyn DataLoader<B>>,
    config: &FitConfig,
    checkpoint_dir: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<Vec<Fitted<S, B>>, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    check_students(students.len(), names.len())?;
    check_one_device(&students)?;
    let members = students
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(i, (model, name))| {
            let dir = checkpoint_dir.map(|d| d.join(member_folder(i)));
            Member::new(model, name, dir.as_deref(), config)
        })
        .collect();
    fit_members(
        members,
        Some(weight),
        train.as_ref(),
        valid.as_ref(),
        config,
        reporter,
    )
}

/// The checkpoint folder of the `index`-th (from 0) student of a mutual fit, inside the run's.
pub fn member_folder(index: usize) -> String {
    format!("student-{}", index + 1)
}

/// Deep mutual learning needs two students or more, each with a name.
pub(crate) fn check_students(students: usize, names: usize) -> Result<(), TrainError> {
    if students < 2 {
        return Err(TrainError::Mutual(format!(
            "deep mutual learning trains two students or more together; got {students}"
        )));
    }
    if names != students {
        return Err(TrainError::Mutual(format!(
            "{students} students but {names} names"
        )));
    }
    Ok(())
}

/// Deep mutual learning runs its students on one device each.
fn check_one_device<S: TappableModule<B::Input>, B: DistillBatch>(
    students: &[DistillModel<S, B>],
) -> Result<(), TrainError> {
    match students.iter().any(|s| s.devices().len() > 1) {
        true => Err(TrainError::Mutual(
            "deep mutual learning trains its students on one device; train each on one".into(),
        )),
        false => Ok(()),
    }
}

/// Deep mutual learning as one module for Burn's `Learner`: the students side by side. A
/// training step back-propagates the sum of the students' losses (each its objective plus
/// `weight` × its mean KL to the others' detached predictions, as in [`fit_mutual`]); the
/// peers being detached, each student's gradient is that of its own loss, and Burn's
/// optimizers keep their state per parameter, so one optimizer over the module updates each
/// student as an optimizer of its own would. Checkpoints of the `Learner` hold every student.
///
/// What the `Learner` path does not give: a metric row per student (Burn's metrics read one
/// output; the step's output is the first student's logits, and the mean of the students'
/// losses), and fastai's one-cycle β1 per student. [`fit_mutual`] gives both.
///
/// `M` is the students' type, a [`DistillModel`].
#[derive(Module, Debug)]
pub struct MutualModel<M> {
    /// The students, each with its objective (and teachers, if any).
    pub students: Vec<M>,
    /// Weight of the mutual term.
    #[module(skip)]
    weight: f64,
}

impl<S: TappableModule<B::Input>, B: DistillBatch> MutualModel<DistillModel<S, B>> {
    /// `students` (two or more, each on one device) learning from each other with `weight`.
    pub fn new(students: Vec<DistillModel<S, B>>, weight: f64) -> Result<Self, TrainError> {
        check_students(students.len(), students.len())?;
        check_one_device(&students)?;
        Ok(Self { students, weight })
    }
}

impl<S: TappableModule<B::Input>, B: DistillBatch> TrainStep for MutualModel<DistillModel<S, B>> {
    type Input = B;
    type Output = KdOutput;

    fn step(&self, batch: B) -> TrainOutput<KdOutput> {
        let students: Vec<&DistillModel<S, B>> = self.students.iter().collect();
        // Names and shapes were checked when each student was built; Burn's step cannot
        // return an error.
        let items = mutual_losses(&students, &batch, self.weight)
            .unwrap_or_else(|e| panic!("mutual learning step failed: {e}"));
        let k = items.len() as f64;
        let total = items
            .iter()
            .map(|i| i.loss.clone())
            .reduce(|a, b| a + b)
            .expect("two students or more");
        let first = items.into_iter().next().expect("two students or more");
        let item = KdOutput {
            loss: total.clone().div_scalar(k),
            ..first
        };
        TrainOutput::new(self, total.backward(), item)
    }
}

impl<S: TappableModule<B::Input>, B: DistillBatch> InferenceStep
    for MutualModel<DistillModel<S, B>>
{
    type Input = B;
    type Output = KdOutput;

    fn step(&self, batch: B) -> KdOutput {
        InferenceStep::step(&self.students[0], batch)
    }
}
