//! Helpers shared by the torchvision parity tests: fixture tensors and their comparison.

use burn::store::bridge;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::tensor::{Device, Tensor};

/// A fixture tensor on `device`.
pub fn to_tensor<const D: usize>(t: &PackTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(bridge::to_data(t).expect("fixture tensor"), device)
}

/// max |a - b| / max |b|
pub fn rel_err<const D: usize>(actual: Tensor<D>, reference: Tensor<D>) -> f32 {
    let scale: f32 = reference.clone().abs().max().into_scalar();
    let diff: f32 = (actual - reference).abs().max().into_scalar();
    diff / scale.max(f32::MIN_POSITIVE)
}
