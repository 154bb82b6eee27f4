//! `DistillModel` runs under Burn's own `Learner` + `SupervisedTraining`, with Burn's metrics.

mod common;

use std::sync::{Arc, Mutex};

use burn::data::dataloader::DataLoader;
use burn::tensor::Tensor;
use burn::train::metric::{
    AccuracyMetric, ClassReduction, LossMetric, PrecisionMetric, TopKAccuracyMetric,
};
use burn::train::{Learner, SupervisedTraining};
use common::{Model, distill, net, soft_target_pairs, tiny_data};
use kd_core::{KdInput, KdLoss, LossError, Mix, Objective, Schedule, Term};
use kd_models::Arch;
use kd_train::{FitConfig, ObjectivePartMetric, Quiet, TrainError, fastai_adam};

/// The student's classifier weights.
fn fc_weights(model: &Model) -> Vec<f32> {
    match &model.student {
        kd_models::Network::ResNet(r) => {
            let fc = r.fc.as_ref().expect("a linear head has fc");
            fc.weight.val().to_data().iter::<f32>().collect()
        }
        _ => unreachable!("a ResNet with a linear head"),
    }
}

#[test]
fn distillation_trains_under_burns_supervised_training() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet34, 11);
    let model = distill(
        net(Arch::ResNet18, 12),
        Some(&teacher),
        soft_target_pairs(),
        true,
    )
    .unwrap();
    let before = fc_weights(&model);
    let config = FitConfig {
        epochs: 1,
        ..FitConfig::default()
    };
    let learner = config.learner(model, data.train.num_items());
    let out = tempfile::tempdir().unwrap();
    // Burn's own metrics beside kd's parts.
    let result = SupervisedTraining::new(
        out.path(),
        Arc::new(data.train.clone()),
        Arc::new(data.valid.clone()),
    )
    .metric_train_numeric(LossMetric::new())
    .metric_valid_numeric(LossMetric::new())
    .metric_valid_numeric(AccuracyMetric::new())
    .renderer(Box::new(Quiet))
    .with_application_logger(None)
    .num_epochs(1)
    .launch(learner);
    assert!(result.error.is_none() && result.interrupted.is_none());
    let after = fc_weights(&result.model);
    assert_ne!(before, after, "the optimizer updated the student");
    // The teacher's outputs were cached by the training steps.
    assert!(result.model.cached_teacher_items() > 0);
}

/// Logit MSE that records the temperature scale each evaluation was given: the value of its
/// term's temperature schedule at the model's progress — the same progress, in the same call,
/// that sets the mix's KD weight.
#[derive(Debug)]
struct Recorder(Arc<Mutex<Vec<f64>>>);

impl KdLoss for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        self.0.lock().unwrap().push(input.temperature_scale);
        let (s, t) = kd_core::paired_logits(self.name(), input)?;
        Ok((s - t).square().mean())
    }
}

#[test]
fn schedules_advance_with_kds_one_cycle_under_burns_learner() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 21);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let objective = Objective {
        mix: Mix::Lerp {
            weight: 0.9,
            schedule: Schedule::COS_RAMP,
        },
        terms: vec![Term {
            temperature: Schedule::COS_RAMP,
            ..Term::new(Recorder(seen.clone()))
        }],
    };
    let model = distill(net(Arch::ResNet18, 22), Some(&teacher), objective, false).unwrap();
    let steps = data.train.num_batches();
    let epochs = 2;
    let total = steps * epochs;
    let config = FitConfig {
        epochs,
        ..FitConfig::default()
    };
    let learner = config.learner(model, data.train.num_items());
    seen.lock().unwrap().clear(); // the construction's dry run
    let out = tempfile::tempdir().unwrap();
    SupervisedTraining::new(
        out.path(),
        Arc::new(data.train.clone()),
        Arc::new(data.valid.clone()),
    )
    .renderer(Box::new(Quiet))
    .with_application_logger(None)
    .num_epochs(epochs)
    .launch(learner);
    // Per epoch: `steps` training evaluations, then one per validation batch.
    let seen = seen.lock().unwrap().clone();
    let valid = data.valid.num_batches();
    assert_eq!(seen.len(), epochs * (steps + valid), "{seen:?}");
    for epoch in 0..epochs {
        let offset = epoch * (steps + valid);
        for i in 0..steps {
            let step = epoch * steps + i;
            let progress = step as f64 / total as f64;
            let want = Schedule::COS_RAMP.at(progress);
            let got = seen[offset + i];
            assert!(
                (got - want).abs() < 1e-12,
                "step {step}: schedule at {got}, expected cos ramp({progress}) = {want}; KD \
                 weight used 0.9 × {got}, expected 0.9 × {want}"
            );
        }
    }
    assert!(
        seen[steps - 1] > 0.0,
        "the ramp moved within the first epoch"
    );
}

/// The objective of the schedule tests: a KD weight ramped along a cosine (`0 → 1`), the
/// same ramp on the temperature, which `Recorder` records at every evaluation.
fn ramped(seen: &Arc<Mutex<Vec<f64>>>) -> Objective {
    Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![Term {
            schedule: Schedule::COS_RAMP,
            temperature: Schedule::COS_RAMP,
            ..Term::new(Recorder(seen.clone()))
        }],
    }
}

#[test]
fn a_ramped_kd_weight_advances_under_burns_cosine_scheduler_when_the_model_has_a_plan() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 23);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let steps = data.train.num_batches();
    let epochs = 2;
    let total = steps * epochs;
    let model = distill(
        net(Arch::ResNet18, 24),
        Some(&teacher),
        ramped(&seen),
        false,
    )
    .unwrap()
    .with_plan(epochs, data.train.num_items());
    seen.lock().unwrap().clear(); // the construction's dry run
    // Burn's own scheduler, which knows nothing of kd.
    let cosine = burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig::new(1e-3, total)
        .init()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    // Burn's classification metrics and the objective's parts read the steps' outputs.
    SupervisedTraining::new(
        out.path(),
        Arc::new(data.train.clone()),
        Arc::new(data.valid.clone()),
    )
    .metric_train_numeric(ObjectivePartMetric::cross_entropy())
    .metric_train_numeric(ObjectivePartMetric::distillation())
    .metric_valid_numeric(TopKAccuracyMetric::new(1))
    .metric_valid_numeric(PrecisionMetric::multiclass(1, ClassReduction::Macro))
    .renderer(Box::new(Quiet))
    .with_application_logger(None)
    .num_epochs(epochs)
    .launch(Learner::new(model, fastai_adam(0.01).0, cosine));
    let seen = seen.lock().unwrap().clone();
    let valid = data.valid.num_batches();
    assert_eq!(seen.len(), epochs * (steps + valid), "{seen:?}");
    for epoch in 0..epochs {
        for i in 0..steps {
            let step = epoch * steps + i;
            let want = Schedule::COS_RAMP.at(step as f64 / total as f64);
            let got = seen[epoch * (steps + valid) + i];
            assert!(
                (got - want).abs() < 1e-12,
                "step {step}: KD weight {got}, expected the cosine ramp's {want}"
            );
        }
    }
    assert!(
        seen[steps - 1] > 0.0,
        "the ramp moved within the first epoch"
    );
}

#[test]
fn a_schedule_without_a_plan_stops_the_first_step_with_an_error_not_a_panic() {
    use burn::train::TrainStep;
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 25);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let model = distill(
        net(Arch::ResNet18, 26),
        Some(&teacher),
        ramped(&seen),
        false,
    )
    .unwrap();
    let batch = burn::data::dataloader::DataLoader::iter(&data.train)
        .next()
        .unwrap()
        .unwrap();
    let out = TrainStep::step(&model, batch.clone());
    assert!(
        out.grads.is_empty(),
        "a ramp frozen at 0 must not train silently"
    );
    assert!(model.guard().interrupter().should_stop());
    let Some(TrainError::Schedule(message)) = model.guard().take_error() else {
        panic!("no schedule error kept");
    };
    assert!(
        message.contains("with_plan") && message.contains("schedules"),
        "{message}"
    );
    // Constant schedules need nothing to advance them.
    let plain = distill(
        net(Arch::ResNet18, 27),
        Some(&teacher),
        soft_target_pairs(),
        false,
    )
    .unwrap();
    TrainStep::step(&plain, batch);
}
