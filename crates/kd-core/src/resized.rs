//! A model that sees every image at a resolution of its own: the teacher of a student trained
//! on small inputs sees the same view, enlarged (Beyer et al.'s "same view at the teacher's
//! resolution", the cheaper form of function matching).

use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::{FeatureModel, LayerInfo, Outputs, TapError, TapPlan};

/// `inner` fed each `[batch, channels, height, width]` input resized to `side`×`side` by
/// bilinear interpolation with half-pixel centres (PyTorch's `interpolate(…, mode="bilinear",
/// align_corners=False)`); an input already that size passes unchanged. Its taps keep the
/// inner model's names and are at the inner model's resolution.
///
/// ```
/// # use burn::module::Module;
/// # fn wrap<M: Module>(teacher: M) -> kd_core::Resized<M> {
/// kd_core::Resized::new(teacher, 64)
/// # }
/// ```
#[derive(Module, Debug)]
pub struct Resized<M> {
    inner: M,
    side: usize,
}

impl<M> Resized<M> {
    /// `inner`, seeing every input at `side`×`side`.
    pub fn new(inner: M, side: usize) -> Self {
        Self { inner, side }
    }

    /// The side every input is resized to.
    pub fn side(&self) -> usize {
        self.side
    }

    /// The wrapped model.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The wrapped model, unwrapped.
    pub fn into_inner(self) -> M {
        self.inner
    }

    fn resize(&self, input: Tensor<4>) -> Tensor<4> {
        let [_, _, height, width] = input.dims();
        if height == self.side && width == self.side {
            return input;
        }
        let options = InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size([self.side, self.side]);
        interpolate(input, options)
    }
}

impl<M: FeatureModel> FeatureModel for Resized<M> {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        self.inner.layer_paths()
    }

    fn canonical(&self, name: &str) -> Option<String> {
        self.inner.canonical(name)
    }

    fn forward_taps(&self, input: Tensor<4>, plan: &TapPlan) -> Outputs {
        self.inner.forward_taps(self.resize(input), plan)
    }

    fn device(&self) -> Device {
        self.inner.device()
    }

    fn tap_plan(&self, names: &[&str]) -> Result<TapPlan, TapError> {
        self.inner.tap_plan(names)
    }

    fn layers(&self, example: Tensor<4>) -> Vec<LayerInfo> {
        self.inner.layers(self.resize(example))
    }
}
