//! Deep mutual learning (Zhang et al., 2018): several students trained together on the same
//! batches, each learning from the class targets and from the other students' predictions.

use burn::module::Module;
use burn::train::metric::{
    AccuracyInput, Adaptor, ConfusionStatsInput, ItemLazy, LossInput, PerplexityInput,
    TopKAccuracyInput,
};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use kd_core::DistillBatch;

use crate::TrainError;
use crate::clock::TrainingClock;
use crate::distill::{DistillModel, KdOutput, TappableModule};
use crate::divergence::gradients_finite;
use crate::guard::StepGuard;
use crate::mutual_loss::mutual_losses;
use crate::recorder::MemberOutputs;
use crate::trainable::Trainable;

/// Deep mutual learning as one module for Burn's `Learner`: the students side by side. On
/// every batch each student minimises its own objective plus `weight` × the mean over the
/// other students of `KL(p_other ‖ p_self)` (softmax at temperature 1, batch mean), the other
/// side detached as in the paper, from one forward pass per student before any of them steps
/// (the common implementation; the paper's Algorithm 1 recomputes them between the students'
/// updates). A training step back-propagates the sum of the students' losses: the peers being
/// detached, each student's gradient is that of its own loss, and Burn's optimizers keep their
/// state per parameter, so one optimizer over the module updates each student as an optimizer
/// of its own would, on the same schedule.
///
/// Each student keeps its own objective (cross-entropy alone, or terms reading a teacher: DML
/// with a teacher); the step's output holds every student's ([`MutualOutput`]), so kd's
/// [`HistoryRecorder`](crate::HistoryRecorder) gives each its row; Burn's own metrics read the
/// first student's. Checkpoints hold every student. [`Recipe::fit_mutual`](crate::Recipe::fit_mutual)
/// trains one.
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
    /// The first student's [guard](DistillModel::guard) stops the pair.
    pub fn new(students: Vec<DistillModel<S, B>>, weight: f64) -> Result<Self, TrainError> {
        check_students(students.len(), students.len())?;
        if students.iter().any(|s| s.devices().len() > 1) {
            return Err(TrainError::Mutual(
                "deep mutual learning trains its students on one device; train each on one".into(),
            ));
        }
        Ok(Self { students, weight })
    }

    fn guarded_step(&self, batch: B) -> Result<TrainOutput<MutualOutput>, TrainError> {
        let mut position = None;
        for student in &self.students {
            let scheduled = student.objective().is_scheduled();
            let at = student
                .clock()
                .tick(batch.len(), scheduled)
                .map_err(TrainError::Schedule)?;
            position.get_or_insert(at);
        }
        let students: Vec<&DistillModel<S, B>> = self.students.iter().collect();
        let items = mutual_losses(&students, &batch, self.weight)?;
        let total = items
            .iter()
            .map(|i| i.loss.clone())
            .reduce(|a, b| a + b)
            .expect("two students or more");
        let total = match self.students[0].clock().accumulation() {
            1 => total,
            n => total.div_scalar(n as f64),
        };
        let grads = burn::optim::GradientsParams::from_grads(total.backward(), self);
        let at = position.expect("two students or more");
        for (student, item) in self.students.iter().zip(&items) {
            let finite = item.loss.clone().into_scalar::<f32>().is_finite();
            if !finite || !gradients_finite(student, &grads) {
                return Err(TrainError::NonFinite {
                    run: student.run_name(),
                    epoch: at.epoch,
                    step: at.step,
                    what: crate::divergence::culprit(student, &batch),
                });
            }
        }
        let students = items.into_iter().map(KdOutput::detached).collect();
        Ok(TrainOutput {
            grads,
            item: MutualOutput { students },
        })
    }
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

/// One step of every student of a [`MutualModel`], in order.
#[derive(Debug, Clone)]
pub struct MutualOutput {
    /// Each student's output.
    pub students: Vec<KdOutput>,
}

impl ItemLazy for MutualOutput {
    fn sync(self) -> Result<Self, burn::tensor::ExecutionError> {
        Ok(Self {
            students: self
                .students
                .into_iter()
                .map(ItemLazy::sync)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Adaptor<MemberOutputs> for MutualOutput {
    fn adapt(&self) -> MemberOutputs {
        MemberOutputs(self.students.clone())
    }
}

/// Burn's classification metrics read the first student.
macro_rules! first_student_adaptors {
    ($($input:ty),*) => {$(
        impl Adaptor<$input> for MutualOutput {
            fn adapt(&self) -> $input {
                self.students[0].classification().adapt()
            }
        }
    )*};
}

first_student_adaptors!(
    LossInput,
    AccuracyInput,
    TopKAccuracyInput,
    PerplexityInput,
    ConfusionStatsInput
);

impl<S: TappableModule<B::Input>, B: DistillBatch> TrainStep for MutualModel<DistillModel<S, B>> {
    type Input = B;
    type Output = MutualOutput;

    fn step(&self, batch: B) -> TrainOutput<MutualOutput> {
        match self.guarded_step(batch) {
            Ok(out) => out,
            Err(e) => {
                self.students[0].guard().fail(e);
                let device = self.students[0].device();
                TrainOutput {
                    grads: burn::optim::GradientsParams::new(),
                    item: MutualOutput {
                        students: vec![KdOutput::failed(&device); self.students.len()],
                    },
                }
            }
        }
    }
}

impl<S: TappableModule<B::Input>, B: DistillBatch> InferenceStep
    for MutualModel<DistillModel<S, B>>
{
    type Input = B;
    type Output = MutualOutput;

    fn step(&self, batch: B) -> MutualOutput {
        let students = self
            .students
            .iter()
            .map(|s| {
                s.validation_step(batch.clone()).unwrap_or_else(|e| {
                    self.students[0].guard().fail(e);
                    KdOutput::failed(&s.device())
                })
            })
            .collect();
        MutualOutput { students }
    }
}

impl<S: TappableModule<B::Input>, B: DistillBatch> Trainable for MutualModel<DistillModel<S, B>> {
    fn training_clock(&self) -> &TrainingClock {
        self.students[0].clock()
    }

    fn plan(&self, epochs: usize, items_per_epoch: usize, accumulation: usize) {
        for s in &self.students {
            s.clock().plan(epochs, items_per_epoch);
            s.clock().accumulate(accumulation);
        }
    }

    fn step_guard(&self) -> &StepGuard {
        self.students[0].guard()
    }

    fn set_names(&self, names: &[String]) {
        for (s, name) in self.students.iter().zip(names) {
            s.set_name(name);
        }
    }

    fn check_items(&self, items: usize) -> Result<(), TrainError> {
        self.students.iter().try_for_each(|s| s.check_items(items))
    }
}
