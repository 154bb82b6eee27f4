//! What kd's training parts need of the module Burn's `Learner` trains: a
//! [`DistillModel`](crate::DistillModel), or a [`MutualModel`](crate::MutualModel) of several.

use burn::module::Module;

use crate::TrainError;
use crate::clock::TrainingClock;
use crate::guard::StepGuard;

/// A module kd trains under Burn's `Learner`: it has a [`TrainingClock`] (which its schedules,
/// kd's learning-rate scheduler and its checkpoints read), a [`StepGuard`] (where a failed step
/// leaves its error) and one or more named members, each with a row in the metrics.
/// Implemented by [`DistillModel`](crate::DistillModel) and
/// [`MutualModel`](crate::MutualModel).
pub trait Trainable: Module + Send + 'static {
    /// The clock kd's learning-rate scheduler reads.
    fn training_clock(&self) -> &TrainingClock;

    /// Plan `epochs` epochs of `items_per_epoch` items for every member, `accumulation`
    /// training steps to an optimizer step.
    fn plan(&self, epochs: usize, items_per_epoch: usize, accumulation: usize);

    /// Where a failed training step keeps its error.
    fn step_guard(&self) -> &StepGuard;

    /// Name the members in errors, in order.
    fn set_names(&self, names: &[String]);

    /// Whether a loader serving `items` items per epoch can train it (CRD keeps a memory row
    /// per item).
    fn check_items(&self, items: usize) -> Result<(), TrainError>;
}
