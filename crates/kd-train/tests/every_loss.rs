//! Every built-in loss trains: optimizer steps on a small ResNet pair leave every parameter
//! finite. A loss whose gradient is not finite stops training with that loss named.

mod common;

use burn::tensor::Tensor;
use common::{Model, device, distill, fit, net, quiet, tiny_data};
use kd_core::{KdInput, KdLoss, LayerPair, LossConfig, LossError, Objective, Term};
use kd_data::ImageBatch;
use kd_models::Arch;
use kd_train::{DistillModel, DistillOptions, FitConfig, FrozenTeacher, TeacherCache, TrainError};

/// Every float of the student, parameters and BatchNorm statistics.
fn all_finite(model: &Model) -> bool {
    use burn::store::ModuleSnapshot;
    model.student.collect(None, None, false).iter().all(|t| {
        burn::store::bridge::to_data(t)
            .unwrap()
            .iter::<f32>()
            .all(f32::is_finite)
    })
}

#[test]
fn every_builtin_loss_trains_with_finite_weights() {
    let (_dir, data) = tiny_data(16);
    let config = FitConfig {
        epochs: 1,
        ..FitConfig::default()
    };
    assert!(
        data.train.num_batches() >= 2,
        "two optimizer steps at least"
    );
    let items = data.train.indices().len();
    let losses: Vec<LossConfig> =
        LossConfig::every_builtin(&LayerPair::zip(&["layer4"], &["layer4"]))
            .into_iter()
            .map(|loss| match loss {
                // CRD: fewer negatives than training items.
                LossConfig::Crd(crd) => LossConfig::Crd(kd_core::losses::Crd {
                    negatives: 8,
                    ..crd
                }),
                other => other,
            })
            .collect();
    let kinds: std::collections::BTreeSet<_> = losses.iter().map(|l| l.name()).collect();
    assert_eq!(kinds.len(), 19, "every built-in loss: {kinds:?}");
    let teacher = net(Arch::ResNet18, 1);
    let mut failures = Vec::new();
    for loss in losses {
        let name = loss.name();
        let model = DistillModel::new(
            net(Arch::ResNet18, 2),
            Some(FrozenTeacher::new(&teacher)),
            Objective::lerp(loss, 0.5),
            &ImageBatch::zeros(2, 16, &device()),
            DistillOptions::from(TeacherCache::OFF).with_training_items(items),
        )
        .unwrap();
        match fit(model, &data, &config, name, None, quiet()) {
            Ok((model, _)) if all_finite(&model) => {}
            Ok(_) => failures.push(format!("{name}: non-finite weights")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A finite value whose gradient is NaN: √0 back-propagates 0 · ∞.
#[derive(Debug)]
struct NanGradient;

impl KdLoss for NanGradient {
    fn name(&self) -> &'static str {
        "NaN-gradient probe"
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        Ok(input
            .student
            .logits
            .clone()
            .rows()
            .mul_scalar(0.0)
            .sqrt()
            .sum())
    }
}

#[test]
fn a_loss_with_a_nan_gradient_is_named_when_training_stops() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 1);
    let mut objective = Objective::lerp(LossConfig::soft_target(), 0.5);
    objective.terms.push(Term::new(NanGradient));
    let model = distill(net(Arch::ResNet18, 2), Some(&teacher), objective, false).unwrap();
    let config = FitConfig {
        epochs: 1,
        ..FitConfig::default()
    };
    let err = fit(model, &data, &config, "probe", None, quiet()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TrainError::NonFinite { step: 0, .. }),
        "{message}"
    );
    assert!(message.contains("NaN-gradient probe"), "{message}");
    assert!(!message.contains("cross-entropy"), "{message}");
}

#[test]
fn a_nan_validation_loss_stops_the_run_naming_the_loss() {
    // 12 validation images in batches of 11: the last batch holds one image, whose RKD
    // distances (normalised by their mean over the batch's pairs: none) are 0/0.
    let (_dir, data) = common::batched_data(16, 11);
    assert_eq!(data.valid.indices().len() % 11, 1);
    let teacher = net(Arch::ResNet18, 1);
    let pairs = LayerPair::zip(&["layer4"], &["layer4"]);
    let rkd = kd_core::losses::Rkd::new(pairs);
    let objective = Objective::lerp(LossConfig::from(rkd), 0.5);
    let model = distill(net(Arch::ResNet18, 2), Some(&teacher), objective, false).unwrap();
    let config = FitConfig {
        epochs: 2,
        ..FitConfig::default()
    };
    let err = fit(model, &data, &config, "rkd", None, quiet()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, TrainError::NonFinite { epoch: 0, .. }),
        "{message}"
    );
    assert!(
        message.contains("RKD") && message.contains("validation"),
        "{message}"
    );
}
