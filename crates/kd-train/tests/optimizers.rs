//! The optimizers and learning-rate schedules a fit may use, against their references: SGD as
//! PyTorch's `torch.optim.SGD` documents its update, the schedules as PyTorch's
//! `CosineAnnealingLR` and `MultiStepLR` compute them, each formula written out here.

mod common;
#[path = "../../../examples/custom_model/small_cnn.rs"]
mod small_cnn;

use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use common::{batched_data, device, fit, net, params, quiet, soft_target_pairs, tiny_data};
use kd_models::Arch;
use kd_train::{DistillModel, FitConfig, LrSchedule, OptimizerConfig};

/// PyTorch's SGD for one parameter: `d = g + wd·p`; `v = d` at the first step, else
/// `v = μ·v + d`; the step is `v`, or `d + μ·v` with Nesterov; `p ← p − lr·step`.
struct TorchSgd {
    p: f64,
    v: Option<f64>,
}

impl TorchSgd {
    fn step(&mut self, g: f64, lr: f64, momentum: f64, wd: f64, nesterov: bool) {
        let d = g + wd * self.p;
        let v = match self.v {
            None => d,
            Some(v) => momentum * v + d,
        };
        self.v = Some(v);
        let step = if nesterov { d + momentum * v } else { v };
        self.p -= lr * step;
    }
}

#[test]
fn sgd_updates_as_pytorch_documents_with_and_without_nesterov() {
    for nesterov in [false, true] {
        let device = Device::flex().autodiff();
        let linear: Linear = LinearConfig::new(3, 2).init(&device);
        let values = |t: Tensor<1>| t.to_data().iter::<f32>().collect::<Vec<_>>();
        let weight = |l: &Linear| values(l.weight.val().flatten(0, 1));
        let mut reference: Vec<TorchSgd> = weight(&linear)
            .into_iter()
            .map(|p| TorchSgd {
                p: p as f64,
                v: None,
            })
            .collect();
        let (momentum, wd, lr, batch) = (0.9, 0.01, 0.1, 4.0);
        let (mut optim, _) = OptimizerConfig::Sgd { momentum, nesterov }.init(wd);
        let mut linear = linear;
        for scale in [1.0, -2.0, 0.5, 3.0] {
            let x = Tensor::<2>::ones([batch as usize, 3], &device).mul_scalar(scale);
            let grads = linear.forward(x).sum().backward();
            let grads = GradientsParams::from_grads(grads, &linear);
            linear = optim.step(lr, linear, grads);
            // d(sum(xW + b))/dW = Σ_batch x = batch · scale.
            for r in &mut reference {
                r.step(batch * scale, lr, momentum, wd, nesterov);
            }
        }
        for (got, want) in weight(&linear).into_iter().zip(&reference) {
            assert!(
                (got as f64 - want.p).abs() < 1e-5,
                "nesterov {nesterov}: Burn {got} vs PyTorch {}",
                want.p
            );
        }
    }
}

/// The learning rate each epoch of a fit ends with, under `schedule`.
fn final_lrs(schedule: LrSchedule, epochs: usize) -> (Vec<f64>, usize) {
    let (_dir, data) = tiny_data(16);
    let config = FitConfig {
        epochs,
        lr: 0.01,
        schedule,
        ..FitConfig::default()
    };
    let model = DistillModel::alone(net(Arch::ResNet18, 3));
    let (_, history) = fit(model, &data, &config, "lrs", None, quiet()).unwrap();
    let per_epoch = data.train.num_batches();
    (history.epochs.iter().map(|e| e.lr).collect(), per_epoch)
}

#[test]
fn schedules_follow_pytorchs_formulas() {
    let epochs = 3;
    // Cosine annealing to 0 over every step, stepped per batch: the last step of epoch e is
    // s = (e + 1)·n − 1 of T = epochs·n.
    let (lrs, n) = final_lrs(LrSchedule::Cosine, epochs);
    let total = (epochs * n) as f64;
    for (e, lr) in lrs.iter().enumerate() {
        let s = ((e + 1) * n - 1) as f64;
        let want = 0.01 * (1.0 + (std::f64::consts::PI * s / total).cos()) / 2.0;
        assert!(
            (lr - want).abs() < 1e-12,
            "cosine epoch {e}: {lr} vs {want}"
        );
    }
    // MultiStepLR(milestones = [1, 2], gamma = 0.5): 0.01, 0.005, 0.0025.
    let step = LrSchedule::Step {
        milestones: vec![1, 2],
        gamma: 0.5,
    };
    let (lrs, _) = final_lrs(step, epochs);
    for (lr, want) in lrs.iter().zip([0.01, 0.005, 0.0025]) {
        assert!((lr - want).abs() < 1e-15, "step: {lrs:?}");
    }
    let (lrs, _) = final_lrs(LrSchedule::Constant, epochs);
    assert!(lrs.iter().all(|&lr| lr == 0.01), "constant: {lrs:?}");
}

#[test]
fn a_distillation_fit_trains_with_sgd_and_a_cosine_schedule() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 4);
    let model = common::distill(
        net(Arch::ResNet18, 5),
        Some(&teacher),
        soft_target_pairs(),
        true,
    )
    .unwrap();
    let config = FitConfig {
        epochs: 2,
        lr: 0.05,
        optimizer: OptimizerConfig::sgd(),
        schedule: LrSchedule::Cosine,
        ..FitConfig::default()
    };
    let (_, history) = fit(model, &data, &config, "sgd", None, quiet()).unwrap();
    assert_eq!(history.epochs.len(), 2);
    for e in &history.epochs {
        assert!(e.train_loss.is_finite() && e.train_kd.is_some_and(f64::is_finite));
    }
}

#[test]
fn two_accumulated_batches_step_as_one_batch_twice_their_size() {
    // A model without BatchNorm (whose statistics would differ per batch): the mean of two
    // batches' gradients is the gradient of the two together.
    let (student, teacher) = {
        let _guard = common::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        device().seed(3);
        let student = small_cnn::SmallCnn::new(8, 2, &device());
        (student, small_cnn::SmallCnn::new(16, 2, &device()))
    };
    let build = || {
        DistillModel::new(
            student.clone(),
            Some(kd_train::FrozenTeacher::new(&teacher)),
            soft_target_pairs(),
            &kd_data::ImageBatch::zeros(2, 16, &device()),
            kd_train::TeacherCache::OFF,
        )
        .unwrap()
    };
    let config = |grad_accumulation| FitConfig {
        epochs: 2,
        lr: 2e-3,
        grad_accumulation,
        ..FitConfig::default()
    };
    let (_a, eights) = batched_data(16, 8);
    let (_b, sixteens) = batched_data(16, 16);
    let (accumulated, h1) = fit(build(), &eights, &config(2), "2 × 8", None, quiet()).unwrap();
    let (whole, h2) = fit(build(), &sixteens, &config(1), "16", None, quiet()).unwrap();
    let (a, b) = (params(&accumulated), params(&whole));
    let gap = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(gap < 1e-5, "weights differ by {gap}");
    assert_ne!(a, params(&build()), "the weights moved");
    for (x, y) in h1.epochs.iter().zip(&h2.epochs) {
        assert_eq!(x.lr, y.lr, "the schedule counts optimizer steps");
        assert_eq!(x.accuracy, y.accuracy);
    }
    // Summed rather than averaged, the accumulated gradient is twice the whole batch's: Adam
    // would not notice, SGD does.
    let sgd = |grad_accumulation| FitConfig {
        optimizer: OptimizerConfig::sgd(),
        schedule: LrSchedule::Constant,
        lr: 0.1,
        ..config(grad_accumulation)
    };
    let (accumulated, _) = fit(build(), &eights, &sgd(2), "sgd 2 × 8", None, quiet()).unwrap();
    let (whole, _) = fit(build(), &sixteens, &sgd(1), "sgd 16", None, quiet()).unwrap();
    let gap = params(&accumulated)
        .iter()
        .zip(&params(&whole))
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(gap < 1e-5, "SGD weights differ by {gap}");
}

#[test]
fn early_stopping_ends_a_run_whose_validation_loss_stops_improving_and_a_rerun_ends_there() {
    let (_dir, data) = tiny_data(16);
    // A learning rate of 0 never changes a model without BatchNorm, so its validation loss
    // never improves after epoch 0: with patience 2, epochs 0, 1 and 2 run, then it stops.
    let config = FitConfig {
        epochs: 6,
        lr: 0.0,
        schedule: LrSchedule::Constant,
        early_stopping: Some(kd_train::EarlyStopping {
            metric: kd_train::Monitor::ValidLoss,
            patience: 2,
        }),
        ..FitConfig::default()
    };
    let model = || DistillModel::alone(small_cnn::SmallCnn::new(8, 2, &device()));
    let dir = tempfile::tempdir().unwrap();
    let (_, history) = fit(model(), &data, &config, "stops", Some(dir.path()), quiet()).unwrap();
    assert_eq!(history.epochs.len(), 3, "{history:?}");
    assert!(
        dir.path().join("epoch-002").is_dir(),
        "the stopping epoch is saved"
    );
    // A rerun over the same checkpoints is finished already.
    let (_, again) = fit(model(), &data, &config, "stops", Some(dir.path()), quiet()).unwrap();
    assert_eq!(again, history);
    // Without early stopping every epoch runs.
    let all = FitConfig {
        early_stopping: None,
        epochs: 4,
        ..config
    };
    let (_, history) = fit(model(), &data, &all, "all", None, quiet()).unwrap();
    assert_eq!(history.epochs.len(), 4);
}
