//! The model contract holds for a model kd did not ship: a three-stage CNN of its own
//! (`examples/custom_model/small_cnn.rs`), with its own layer names, implements `FeatureModel` in a few lines and is tapped, listed, matched and
//! distilled through `&dyn FeatureModel`.

#[path = "../../../examples/custom_model/small_cnn.rs"]
mod small_cnn;

use burn::tensor::{Device, Int, Tensor};
use kd_core::{
    FeatureModel, LayerPair, LossConfig, Objective, TapError, Term, match_feature_layers,
};
use small_cnn::SmallCnn;

fn device() -> Device {
    Device::flex().autodiff()
}

#[test]
fn a_users_model_is_tapped_listed_and_named_by_the_contract() {
    let model = SmallCnn::new(4, 2, &device());
    let as_dyn: &dyn FeatureModel = &model;
    let plan = as_dyn.tap_plan(&["stage1", "pool"]).unwrap();
    assert!(plan.wants("stage1") && !plan.wants("stem"));
    let out = as_dyn.forward_taps(Tensor::zeros([2, 3, 16, 16], &device()), &plan);
    assert_eq!(out.logits.dims(), [2, 2]);
    assert_eq!(out.taps["stage1"].dims(), [2, 8, 4, 4]);
    assert_eq!(out.taps["pool"].dims(), [2, 16, 1, 1]);
    assert!(!out.taps.contains_key("stem"), "only what was asked for");

    match as_dyn.tap_plan(&["stage3"]) {
        Err(TapError::Unknown { name, nearest }) => {
            assert_eq!(name, "stage3");
            assert!(nearest[..2].contains(&"stage1".to_string()), "{nearest:?}");
        }
        other => panic!("{other:?}"),
    }

    let shapes: Vec<(String, Vec<usize>)> = as_dyn
        .layers(kd_core::image_example(16, &device()))
        .into_iter()
        .map(|l| (l.path, l.shape))
        .collect();
    assert_eq!(
        shapes,
        [
            ("stem".to_string(), vec![1, 4, 8, 8]),
            ("stage1".to_string(), vec![1, 8, 4, 4]),
            ("stage2".to_string(), vec![1, 16, 2, 2]),
            ("pool".to_string(), vec![1, 16, 1, 1]),
            // A linear layer's output is a vector tap, as produced.
            ("classifier".to_string(), vec![1, 2]),
        ]
    );
}

#[test]
fn two_users_models_are_matched_and_distilled() {
    let student = SmallCnn::new(2, 2, &device());
    let teacher = SmallCnn::new(8, 2, &device());
    let pairs = match_feature_layers(&student, &teacher, kd_core::image_example(16, &device()));
    let names: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.student.as_str(), p.teacher.as_str()))
        .collect();
    assert_eq!(
        names,
        [("stem", "stem"), ("stage1", "stage1"), ("stage2", "stage2")]
    );

    let mut objective = Objective::lerp(LossConfig::soft_target(), 0.5);
    objective
        .terms
        .push(Term::new(LossConfig::attention(LayerPair::zip(
            &["stage1", "stage2"],
            &["stage1", "stage2"],
        ))));
    let (s_taps, t_taps) = (objective.student_taps(), objective.teacher_taps());
    let s_names: Vec<&str> = s_taps.iter().map(String::as_str).collect();
    let t_names: Vec<&str> = t_taps.iter().map(String::as_str).collect();
    let x = Tensor::<4>::random(
        [4, 3, 16, 16],
        burn::tensor::Distribution::Default,
        &device(),
    );
    let s = student.forward_taps(x.clone(), &student.tap_plan(&s_names).unwrap());
    let t = teacher.forward_taps(x, &teacher.tap_plan(&t_names).unwrap());
    let y = Tensor::<1, Int>::from_ints([0, 1, 0, 1], &device());
    let parts = objective.compute(&s, Some(&t), &y, 0.0).unwrap();
    assert_eq!(parts.terms.len(), 2);
    let grads = parts.total.backward();
    let values =
        |g: Option<Tensor<1>>| -> Vec<f32> { g.unwrap().to_data().iter::<f32>().collect() };
    let stage1: Vec<f32> = student
        .stage1
        .weight
        .val()
        .grad(&grads)
        .expect("stage1 has a gradient")
        .to_data()
        .iter::<f32>()
        .collect();
    assert!(stage1.iter().all(|v| v.is_finite()), "{stage1:?}");
    let bias = values(student.classifier.bias.as_ref().unwrap().val().grad(&grads));
    assert!(
        bias.iter().any(|v| *v != 0.0),
        "the classifier learns: {bias:?}"
    );
}
