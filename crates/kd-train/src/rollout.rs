//! Training on data the models generate: GKD's on-policy distillation (the student's own
//! samples, scored by the teacher) and sequence-level KD (the teacher's samples). The trainer
//! is generic over models and batches; what a rollout is — prompts, sampling, how generated
//! tokens become a batch — belongs to the model family, so it is a trait.

use std::any::Any;
use std::fmt::Debug;

use kd_core::DistillBatch;

/// Replaces a training batch with generated data before the step runs (on every training path:
/// [`Recipe`](crate::Recipe) or a `Learner` of your own). Evaluation batches are never
/// replaced.
///
/// An implementation samples without autodiff (`student.valid()`), decides by its own seeded
/// draw whether this step is on-policy (GKD's λ), and returns a batch without cache keys, so
/// the teachers' output cache is bypassed for generated tokens.
pub trait Rollout<S, B: DistillBatch>: Debug + Send + Sync {
    /// The batch to train on instead of `batch`, or `None` to keep it. `progress` is the
    /// fraction of training done when the step runs (the same on a resumed run), for seeding.
    fn rollout(&self, student: &S, batch: &B, progress: f64) -> Option<B>;
}

/// The type-erased call of a [`Rollout`]: the student as `Any`, the batch, the progress.
type RolloutFn<B> = dyn Fn(&dyn Any, &B, f64) -> Option<B> + Send + Sync;

/// A [`Rollout`] with the student's type erased, so that a model can hold it beside the
/// student (Burn's `Module` derive allows no skipped field of the student's type).
pub(crate) struct ErasedRollout<B> {
    name: String,
    run: Box<RolloutFn<B>>,
}

impl<B: DistillBatch> ErasedRollout<B> {
    pub(crate) fn new<S: 'static>(rollout: impl Rollout<S, B> + 'static) -> Self {
        Self {
            name: format!("{rollout:?}"),
            run: Box::new(move |student, batch, progress| {
                let student = student.downcast_ref::<S>()?;
                rollout.rollout(student, batch, progress)
            }),
        }
    }

    /// What the rollout makes of `batch` for `student` (always the student type it was made
    /// for).
    pub(crate) fn apply(&self, student: &dyn Any, batch: &B, progress: f64) -> Option<B> {
        (self.run)(student, batch, progress)
    }
}

impl<B> Debug for ErasedRollout<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
