//! Deep mutual learning's loss (Zhang et al., 2018): each student's objective plus its mean KL
//! to the other students' detached predictions, from one forward pass of each.

use burn::tensor::Tensor;
use kd_core::DistillBatch;
use kd_core::logit::mutual;

use crate::TrainError;
use crate::distill::{DistillModel, KdOutput, TappableModule};

/// Every student's loss on `batch` (its objective on a training step, plus `weight` × its
/// mean KL to the others' detached predictions), from one forward pass of each.
pub(crate) fn mutual_losses<S, B>(
    students: &[&DistillModel<S, B>],
    batch: &B,
    weight: f64,
) -> Result<Vec<KdOutput>, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    let outputs: Vec<_> = students.iter().map(|m| m.student_outputs(batch)).collect();
    let parts = students
        .iter()
        .zip(&outputs)
        .map(|(model, student)| model.objective_on(student, batch, true))
        .collect::<Result<Vec<_>, _>>()?;
    // Each student's logit rows that count (items, or the positions the mask keeps).
    let counted: Vec<Tensor<2>> = parts
        .iter()
        .zip(&outputs)
        .map(|(p, s)| p.counted(&s.logits))
        .collect();
    let mut items = Vec::with_capacity(students.len());
    for (k, parts) in parts.into_iter().enumerate() {
        let kl = counted
            .iter()
            .enumerate()
            .filter(|&(l, _)| l != k)
            .map(|(_, peer)| mutual(counted[k].clone(), peer.clone().detach()))
            .reduce(|a, b| a + b)
            .expect("two students or more")
            .div_scalar((counted.len() - 1) as f64)
            .mul_scalar(weight);
        items.push(KdOutput {
            items: batch.len(),
            loss: parts.total + kl.clone(),
            ce: parts.ce,
            kd: Some(parts.kd.map_or(kl.clone(), |kd| kd + kl)),
            logits: counted[k].clone(),
            targets: parts.targets,
        });
    }
    Ok(items)
}
