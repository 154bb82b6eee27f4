//! A model behind [`Resized`] sees its input enlarged exactly as PyTorch's
//! `F.interpolate(x, size, mode="bilinear", align_corners=False)` enlarges it, and keeps its
//! layer names.

#[path = "../../../examples/custom_model/small_cnn.rs"]
mod small_cnn;

use burn::tensor::{Device, Tensor, TensorData};
use kd_core::{FeatureModel, Resized};
use small_cnn::SmallCnn;

fn device() -> Device {
    Device::flex()
}

/// `[1, 3, side, side]` from rows of channel 0; channel `c` is channel 0 plus `10·c`.
fn image(rows: &[&[f32]]) -> Tensor<4> {
    let side = rows.len();
    let values: Vec<f32> = (0..3)
        .flat_map(|c| {
            rows.iter()
                .flat_map(move |r| r.iter().map(move |v| v + 10.0 * c as f32))
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 3, side, side]), &device())
}

fn stem(model: &dyn FeatureModel, input: Tensor<4>) -> Vec<f32> {
    let plan = model.tap_plan(&["stem"]).unwrap();
    let out = model.forward_taps(input, &plan);
    out.taps["stem"].to_data().iter::<f32>().collect()
}

#[test]
fn the_inner_model_sees_pytorchs_bilinear_enlargement() {
    let small = image(&[&[1.0, 2.0], &[3.0, 4.0]]);
    // torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) of [[1, 2], [3, 4]],
    // as PyTorch's own documentation of nn.Upsample prints it.
    let enlarged = image(&[
        &[1.0, 1.25, 1.75, 2.0],
        &[1.5, 1.75, 2.25, 2.5],
        &[2.5, 2.75, 3.25, 3.5],
        &[3.0, 3.25, 3.75, 4.0],
    ]);
    let model = SmallCnn::new(4, 2, &device());
    let expected = stem(&model, enlarged);
    let resized = Resized::new(model, 4);
    let got = stem(&resized, small);
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
    }
}

#[test]
fn taps_keep_their_names_and_the_inner_resolution() {
    let model = Resized::new(SmallCnn::new(4, 2, &device()), 16);
    let layers = model.layers(kd_core::image_example(8, &device()));
    let stage1 = layers.iter().find(|l| l.path == "stage1").unwrap();
    // Two stride-2 stages from 16×16, not from 8×8.
    assert_eq!(stage1.shape, [1, 8, 4, 4]);
    assert!(model.tap_plan(&["stage3"]).is_err());
    // An input already at the side passes unchanged.
    let input = kd_core::image_example(16, &device()) + 0.5;
    let direct = model.inner().forward_logits(input.clone()).rows();
    let through = model.forward_logits(input).rows();
    assert_eq!(direct.to_data(), through.to_data());
    assert_eq!(model.side(), 16);
}
