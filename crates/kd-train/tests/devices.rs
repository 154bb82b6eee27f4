//! Training on several devices, tested without a GPU: the flex device listed two or three
//! times. A step spread over devices must give the optimizer the same gradient as one step on
//! the whole batch on one device (a model without BatchNorm, whose training-mode statistics
//! would differ per shard), and a distillation run must train, resume and score as on one.

mod common;

#[path = "../../../examples/custom_model/small_cnn.rs"]
mod small_cnn;

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use burn::train::SupervisedTraining;
use burn::train::metric::LossMetric;
use common::{
    device, distill, fit, net, params, quiet, soft_target_pairs, stop_in_epoch_1, tiny_data,
};
use kd_core::{DistillBatch, LayerPair, LossConfig, Objective};
use kd_data::ImageBatch;
use kd_models::Arch;
use kd_train::{DistillModel, FitConfig, FrozenTeacher, Quiet, TeacherCache, TrainError};
use small_cnn::SmallCnn;

type CnnModel = DistillModel<SmallCnn, ImageBatch>;

/// A SmallCnn student taught by a SmallCnn teacher with SoftTarget (no BatchNorm anywhere).
fn cnn_pair(seed: u64) -> (SmallCnn, SmallCnn) {
    let device = device();
    device.seed(seed);
    (SmallCnn::new(8, 2, &device), SmallCnn::new(16, 2, &device))
}

fn cnn_model(student: SmallCnn, teacher: &SmallCnn) -> CnnModel {
    DistillModel::new(
        student,
        Some(FrozenTeacher::new(teacher)),
        soft_target_pairs(),
        &ImageBatch::zeros(2, 16, &device()),
        TeacherCache::OFF,
    )
    .unwrap()
}

/// Every parameter's gradient, flattened in module order.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
    missing: usize,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match self.grads.get::<D>(param.id) {
            Some(g) => self.values.extend(g.to_data().iter::<f32>()),
            None => self.missing += 1,
        }
    }
}

fn flat_grads<M: Module>(model: &M, grads: &GradientsParams) -> Vec<f32> {
    let mut v = Flatten {
        grads,
        values: Vec::new(),
        missing: 0,
    };
    model.visit(&mut v);
    assert_eq!(v.missing, 0, "every parameter has a gradient");
    v.values
}

fn relative_gap(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let norm: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    assert!(norm > 0.0, "a gradient that is not zero");
    (diff / norm).sqrt()
}

/// The first training batch of the tiny data, cut to `items` items.
fn batch(items: usize) -> ImageBatch {
    let (_dir, data) = tiny_data(16);
    let batch = data.train.restarted().iter().next().unwrap().unwrap();
    batch.shard(0..items, &device()).unwrap()
}

#[test]
fn a_step_over_devices_gives_the_whole_batchs_gradient() {
    // 8 items over two devices (4 + 4), 7 over three (3 + 2 + 2): the shards' gradients are
    // weighted by their share. Summing them unweighted would double (triple) the gradient;
    // dropping a shard would lose its part.
    for (items, copies) in [(8, 2), (7, 3)] {
        let (student, teacher) = cnn_pair(3);
        let one = cnn_model(student.clone(), &teacher);
        let several = cnn_model(student, &teacher)
            .on_devices(vec![device(); copies])
            .unwrap();
        assert_eq!(several.devices().len(), copies);
        let batch = batch(items);
        let a = one.train_step(batch.clone()).unwrap();
        let b = several.train_step(batch).unwrap();
        let gap = relative_gap(&flat_grads(&one, &a.grads), &flat_grads(&several, &b.grads));
        assert!(
            gap < 1e-5,
            "{items} items on {copies} devices: gradient differs by {gap:e} (relative)"
        );
        // The step's loss is the whole batch's mean, its logits every item's.
        let (la, lb) = (
            a.item.loss.into_scalar::<f32>(),
            b.item.loss.into_scalar::<f32>(),
        );
        assert!((la - lb).abs() <= 1e-5 * la.abs(), "loss {la} vs {lb}");
        assert_eq!(b.item.logits.dims(), [items, 2]);
        let (ta, tb): (Vec<i64>, Vec<i64>) = (
            a.item.targets.unwrap().to_data().iter::<i64>().collect(),
            b.item.targets.unwrap().to_data().iter::<i64>().collect(),
        );
        assert_eq!(ta, tb, "targets in batch order");
    }
}

#[test]
fn a_fit_on_two_devices_matches_one_device_and_resumes() {
    let (_dir, data) = tiny_data(16);
    let config = FitConfig {
        epochs: 2,
        lr: 1e-3,
        weight_decay: 0.01,
        ..FitConfig::default()
    };
    let (student, teacher) = cnn_pair(5);
    let one = cnn_model(student.clone(), &teacher);
    let (one, h1) = fit(one, &data, &config, "one", None, quiet()).unwrap();
    let two = cnn_model(student.clone(), &teacher)
        .on_devices(vec![device(), device()])
        .unwrap();
    let (two, h2) = fit(two, &data, &config, "two", None, quiet()).unwrap();
    // Same steps, same learning rates, the same mean gradient each step (up to the order of
    // float sums): the same weights after two epochs.
    let gap = relative_gap(&params(&one), &params(&two));
    assert!(gap < 1e-4, "weights differ by {gap:e} after two epochs");
    for (a, b) in h1.epochs.iter().zip(&h2.epochs) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-4 * a.train_loss);
        assert_eq!(a.lr, b.lr, "the one-cycle schedule sees the same steps");
        assert_eq!(a.accuracy, b.accuracy);
    }
    // Killed during its second epoch and resumed on two devices: as if uninterrupted.
    let ck = tempfile::tempdir().unwrap();
    let build = || {
        cnn_model(student.clone(), &teacher)
            .on_devices(vec![device(), device()])
            .unwrap()
    };
    let model = build();
    let stop = stop_in_epoch_1(model.guard().interrupter());
    let killed = fit(model, &data, &config, "two", Some(ck.path()), stop);
    assert!(
        matches!(killed, Err(TrainError::Stopped(_))),
        "{:?}",
        killed.err()
    );
    let (resumed, h3) = fit(build(), &data, &config, "two", Some(ck.path()), quiet()).unwrap();
    assert_eq!(h3.epochs.len(), 2);
    assert_eq!(h3.epochs[1].lr, h2.epochs[1].lr);
    let gap = relative_gap(&params(&two), &params(&resumed));
    assert!(gap < 1e-6, "resumed weights differ by {gap:e}");
}

#[test]
fn soft_target_and_attention_distil_a_resnet_on_two_devices() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet34, 41);
    let pairs = LayerPair::zip(&["layer1", "layer2"], &["layer1", "layer2"]);
    let attention = Objective::lerp(LossConfig::attention(pairs), 0.5);
    for (name, objective) in [
        ("SoftTarget", soft_target_pairs()),
        ("Attention", attention),
    ] {
        let model = distill(net(Arch::ResNet18, 42), Some(&teacher), objective, true)
            .unwrap()
            .on_devices(vec![device(), device()])
            .unwrap();
        let config = FitConfig {
            epochs: 1,
            ..FitConfig::default()
        };
        let (model, history) = fit(model, &data, &config, name, None, quiet()).unwrap();
        let epoch = &history.epochs[0];
        assert!(epoch.train_loss.is_finite() && epoch.train_loss > 0.0);
        assert!(epoch.train_kd.is_some_and(|kd| kd.is_finite() && kd > 0.0));
        assert!((0.0..=1.0).contains(&epoch.accuracy));
        // Each device's teacher copy cached the items its shards brought.
        assert_eq!(
            model.cached_teacher_items(),
            data.train.num_items() + data.valid.indices().len()
        );
    }
}

#[test]
fn burns_learner_assembled_by_hand_trains_two_devices_as_the_recipe_does() {
    let (_dir, data) = tiny_data(16);
    let (student, teacher) = cnn_pair(7);
    let build = || {
        cnn_model(student.clone(), &teacher)
            .on_devices(vec![device(), device()])
            .unwrap()
    };
    let config = FitConfig {
        epochs: 1,
        ..FitConfig::default()
    };
    let model = build();
    let before = params(&model);
    // A user's own Learner: kd's optimizer and schedule, Burn's default (single-device)
    // strategy; each step spreads its batch over the model's two devices.
    let train = data.train.restarted();
    let learner = config.learner(model, train.num_items());
    let out = tempfile::tempdir().unwrap();
    let result = SupervisedTraining::new(out.path(), Arc::new(train), Arc::new(data.valid.clone()))
        .metric_train_numeric(LossMetric::new())
        .renderer(Box::new(Quiet))
        .with_application_logger(None)
        .num_epochs(1)
        .launch(learner);
    let by_hand = params(&result.model);
    assert_ne!(before, by_hand, "the optimizer stepped");
    let (recipe, _) = fit(build(), &data, &config, "two", None, quiet()).unwrap();
    assert_eq!(by_hand, params(&recipe), "one path, whoever assembles it");
}

/// A batch type that does not say how to split itself.
#[derive(Debug, Clone)]
struct Whole(ImageBatch);

impl DistillBatch for Whole {
    type Input = Tensor<4>;
    fn inputs(&self) -> Tensor<4> {
        self.0.inputs()
    }
    fn targets(&self) -> Option<kd_core::Targets> {
        self.0.targets()
    }
    fn without_autodiff(self) -> Self {
        Self(self.0.without_autodiff())
    }
}

#[test]
fn a_batch_type_without_shard_is_refused_by_name_on_several_devices() {
    let (student, teacher) = cnn_pair(9);
    let probe = Whole(ImageBatch::zeros(2, 16, &device()));
    let model: DistillModel<SmallCnn, Whole> = DistillModel::new(
        student,
        Some(FrozenTeacher::new(&teacher)),
        soft_target_pairs(),
        &probe,
        TeacherCache::OFF,
    )
    .unwrap();
    // On one device it trains.
    assert!(model.train_step(Whole(batch(4))).is_ok());
    let model = model.on_devices(vec![device(), device()]).unwrap();
    let Err(err) = model.train_step(Whole(batch(4))) else {
        panic!("two devices took a batch that cannot be split")
    };
    assert!(matches!(err, TrainError::Devices(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Whole") && text.contains("DistillBatch::shard"),
        "{text}"
    );
    let Err(err) = cnn_model(cnn_pair(1).0, &cnn_pair(1).1).on_devices(Vec::<Device>::new()) else {
        panic!("no device accepted")
    };
    assert!(err.to_string().contains("empty"), "{err}");
}
