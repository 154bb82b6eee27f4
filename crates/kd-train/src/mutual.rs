//! Deep mutual learning (Zhang et al., 2018): several students trained together on the same
//! batches, each learning from the class targets and from the other students' predictions.

use std::path::Path;

use burn::data::dataloader::DataLoader;
use burn::tensor::Tensor;
use burn::train::TrainOutput;
use kd_core::DistillBatch;
use kd_core::logit::mutual;

use crate::TrainError;
use crate::distill::{DistillModel, KdOutput, TappableModule};
use crate::fit::{FitConfig, Fitted, Member, fit_members};
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
    train: &dyn DataLoader<B>,
    valid: &dyn DataLoader<B>,
    config: &FitConfig,
    checkpoint_dir: Option<&Path>,
    reporter: &mut dyn Reporter,
) -> Result<Vec<Fitted<S, B>>, TrainError>
where
    S: TappableModule,
    B: DistillBatch,
{
    check_students(students.len(), names.len())?;
    if students.iter().any(|s| s.devices().len() > 1) {
        return Err(TrainError::Mutual(
            "deep mutual learning trains its students on one device; train each on one".into(),
        ));
    }
    let members = students
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(i, (model, name))| {
            let dir = checkpoint_dir.map(|d| d.join(member_folder(i)));
            Member::new(model, name, dir.as_deref(), config)
        })
        .collect();
    fit_members(members, Some(weight), train, valid, config, reporter)
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

/// One step of every member on `batch`: forward passes first, then each member's objective
/// plus `weight` × its mean KL to the others' detached predictions, back-propagated alone.
pub(crate) fn mutual_step<S, B>(
    members: &[Member<S, B>],
    batch: &B,
    weight: f64,
) -> Result<Vec<TrainOutput<KdOutput>>, TrainError>
where
    S: TappableModule,
    B: DistillBatch,
{
    let students: Vec<_> = members
        .iter()
        .map(|m| m.model().student_outputs(batch))
        .collect();
    let peers: Vec<Tensor<2>> = students.iter().map(|s| s.logits.clone().detach()).collect();
    let mut outs = Vec::with_capacity(members.len());
    for (k, (m, student)) in members.iter().zip(&students).enumerate() {
        let parts = m.model().objective_on(student, batch, true)?;
        let kl = peers
            .iter()
            .enumerate()
            .filter(|&(l, _)| l != k)
            .map(|(_, peer)| mutual(student.logits.clone(), peer.clone()))
            .reduce(|a, b| a + b)
            .expect("two students or more")
            .div_scalar((peers.len() - 1) as f64)
            .mul_scalar(weight);
        let total = parts.total + kl.clone();
        let item = KdOutput {
            loss: total.clone(),
            ce: parts.ce,
            kd: Some(parts.kd.map_or(kl.clone(), |kd| kd + kl)),
            logits: student.logits.clone(),
            targets: batch.targets(),
        };
        outs.push(TrainOutput::new(m.model(), total.backward(), item));
    }
    Ok(outs)
}
