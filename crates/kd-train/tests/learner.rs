//! `DistillModel` runs under Burn's own `Learner` + `SupervisedTraining`, with Burn's metrics.

mod common;

use std::sync::Arc;

use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::{Learner, SupervisedTraining};
use common::{net, soft_target_pairs, tiny_data};
use kd_models::Arch;
use kd_train::{DistillModel, OneCycle, fastai_adam};

/// The student's classifier weights.
fn fc_weights(model: &DistillModel) -> Vec<f32> {
    match &model.student {
        kd_models::Network::ResNet(r) => {
            let fc = r.fc.as_ref().expect("a linear head has fc");
            fc.weight.val().to_data().iter::<f32>().collect()
        }
        kd_models::Network::Learner(_) => unreachable!("linear head"),
    }
}

#[test]
fn distillation_trains_under_burns_supervised_training() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet34, 11);
    let model = DistillModel::new(
        net(Arch::ResNet18, 12),
        Some(&teacher),
        soft_target_pairs(),
        true,
        16,
    )
    .unwrap();
    let before = fc_weights(&model);
    let steps = data.train.num_batches();
    let (optim, beta_1) = fastai_adam(0.01);
    let schedule = OneCycle::new(1e-3, steps).with_beta_1(beta_1.clone());
    let learner = Learner::new(model, optim, schedule);
    let out = tempfile::tempdir().unwrap();
    let result = SupervisedTraining::new(
        out.path(),
        Arc::new(data.train.clone()),
        Arc::new(data.valid.clone()),
    )
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new())
    .metric_valid_numeric(AccuracyMetric::new())
    .num_epochs(1)
    .launch(learner);
    // Burn's learner stepped the schedule once per batch, moving β1 with it.
    let last = OneCycle::new(1e-3, steps).momentum(steps - 1);
    assert_eq!(beta_1.get(), last as f32);
    let after = fc_weights(&result.model);
    assert_ne!(before, after, "the optimizer updated the student");
    // The teacher's outputs were cached by the training steps.
    assert!(result.model.setup.teacher.as_ref().unwrap().cached_items() > 0);
}
