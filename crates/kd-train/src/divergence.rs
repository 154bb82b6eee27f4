//! Finding where training stopped being finite. A loss whose value is finite can still send
//! NaN gradients (√0 in a distance, say), which poison the weights and surface one step later in
//! the cross-entropy; so every step's gradients are checked, and on failure each part of the
//! objective is back-propagated alone to name the first one that is not finite.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use kd_core::DistillBatch;

use crate::distill::{DistillModel, TappableModule};

/// Adds up every gradient of a module's parameters: NaN or ±∞ anywhere makes the sum non-finite.
struct GradientSum<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for GradientSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let s = grad.sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}

/// Whether every gradient in `grads` of `model`'s parameters is finite (one value read back).
pub(crate) fn gradients_finite<M: Module>(model: &M, grads: &GradientsParams) -> bool {
    let mut visitor = GradientSum { grads, sum: None };
    model.visit(&mut visitor);
    visitor
        .sum
        .is_none_or(|s| s.into_scalar::<f32>().is_finite())
}

/// The first part of `model`'s objective (the cross-entropy, then each distillation term by its
/// loss name) whose value or gradient on `batch` is not finite when back-propagated alone.
pub(crate) fn culprit<S, B>(model: &DistillModel<S, B>, batch: &B) -> String
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    // A backward pass consumes its graph, so each part gets a forward pass of its own.
    for k in 0..=model.objective().terms.len() {
        let mut parts = match model.loss(batch) {
            Ok((parts, _)) => parts,
            Err(e) => return format!("the objective ({e})"),
        };
        let (name, value) = if k == 0 {
            match parts.ce {
                Some(ce) => ("the cross-entropy".to_string(), ce),
                None => continue,
            }
        } else {
            let (name, value) = parts.terms.swap_remove(k - 1);
            (format!("the {name} term"), value)
        };
        let finite_value = value.clone().into_scalar::<f32>().is_finite();
        let grads = GradientsParams::from_grads(value.backward(), model);
        if !finite_value || !gradients_finite(model, &grads) {
            return name;
        }
    }
    "the weighted sum of finite parts".to_string()
}
