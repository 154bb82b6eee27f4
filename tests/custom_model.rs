//! The trainer is generic: a model kd did not ship (`examples/custom_model/small_cnn.rs`, its
//! own layer names) is distilled from a bundled ResNet with SoftTarget + Attention and with
//! FitNet through a connector, under kd's `Recipe` and under Burn's own `Learner`; and a
//! user-defined teacher teaches a bundled ResNet.

mod common;
#[path = "../examples/custom_model/small_cnn.rs"]
mod small_cnn;

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn::train::SupervisedTraining;
use burn::train::metric::LossMetric;
use common::tiny_images;
use kd::core::{DistillBatch, FeatureModel, LayerPair, LossConfig, Objective, Term};
use kd::data::{DataBundle, DataConfig, ImageBatch, ImageSet, LabelFn};
use kd::models::{Arch, Head, Network, NetworkConfig};
use kd::train::{
    DistillModel, FitConfig, FrozenTeacher, History, Quiet, Recipe, TappableModule, TeacherCache,
};
use small_cnn::SmallCnn;

fn device() -> Device {
    Device::flex().autodiff()
}

/// Seeded construction, one at a time (tests run in parallel and share the generator). The
/// weights are drawn lazily, when first read back: read them here, under the lock.
fn seeded<M: Module>(seed: u64, make: impl FnOnce(&Device) -> M) -> M {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(seed);
    let model = make(&device);
    weights(&model);
    model
}

/// 40 square 16×16 images in batches of 8 (30 training, 10 validation).
fn tiny_data() -> (tempfile::TempDir, DataBundle) {
    let dir = tempfile::tempdir().unwrap();
    tiny_images(dir.path());
    let config = DataConfig {
        size: 16,
        batch_size: 8,
        valid_pct: 0.25,
        ..DataConfig::default()
    };
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
    let data = DataBundle::new(set, &config, &device()).unwrap();
    (dir, data)
}

fn resnet18(seed: u64) -> Network {
    seeded(seed, |d| {
        NetworkConfig::new(Arch::ResNet18, Head::Linear).init(2, d)
    })
}

fn cnn(width: usize, seed: u64) -> SmallCnn {
    seeded(seed, |d| SmallCnn::new(width, 2, d))
}

/// At 16×16 the CNN's stage1 (4×4) and stage2 (2×2) meet ResNet-18's layer1 and layer2.
fn soft_target_and_attention() -> Objective {
    let mut objective = Objective::lerp(LossConfig::soft_target(), 0.5);
    objective
        .terms
        .push(Term::new(LossConfig::attention(LayerPair::zip(
            &["stage1", "stage2"],
            &["layer1", "layer2"],
        ))));
    objective
}

fn weights<M: Module>(model: &M) -> Vec<f32> {
    use burn::store::ModuleSnapshot;
    model
        .collect(None, None, false)
        .iter()
        .flat_map(|t| {
            burn::store::bridge::to_data(t)
                .unwrap()
                .iter::<f32>()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn fit<S: TappableModule>(
    model: DistillModel<S, ImageBatch>,
    data: &DataBundle,
    epochs: usize,
) -> (DistillModel<S, ImageBatch>, History) {
    let config = FitConfig {
        epochs,
        ..FitConfig::default()
    };
    Recipe::new(config)
        .name("custom")
        .fit(
            model,
            Arc::new(data.train.restarted()),
            Arc::new(data.valid.clone()),
        )
        .unwrap()
}

#[test]
fn a_users_cnn_learns_from_a_resnet_under_the_recipe() {
    let (_dir, data) = tiny_data();
    let probe = data.valid.probe(2);
    let teacher = FrozenTeacher::new(&resnet18(1));
    let student = cnn(4, 2);
    let before = weights(&student);
    let model = DistillModel::new(
        student,
        Some(teacher),
        soft_target_and_attention(),
        &probe,
        TeacherCache::default(),
    )
    .unwrap();
    let (model, history) = fit(model, &data, 2);
    assert_eq!(history.epochs.len(), 2);
    for epoch in &history.epochs {
        let kd = epoch.train_kd.expect("a distillation term");
        assert!(kd.is_finite() && kd > 0.0, "{epoch:?}");
        assert!(epoch.valid_ce.is_finite());
    }
    assert_ne!(weights(&model.student), before, "the student learned");
    // Square images without flips: every item drawn is cached under its key, training items
    // of both epochs (drop_last leaves some out) and the 10 validation items.
    let mut seen: Vec<usize> = (0..2)
        .flat_map(|e| data.train.epoch_batches(e).concat())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(model.cached_teacher_items(), seen.len() + 10);
}

#[test]
fn a_users_cnn_learns_fitnet_hints_through_a_connector_under_burns_learner() {
    let (_dir, data) = tiny_data();
    let probe = data.valid.probe(2);
    let teacher = FrozenTeacher::new(&resnet18(3));
    // stage2 has 16 channels, layer2 128: a learned 1×1 connector bridges them.
    let fitnet = Objective::lerp(
        LossConfig::FitNet(kd::core::losses::FitNet {
            pairs: vec![LayerPair::new("stage2", "layer2")],
            scale: 1.0,
        }),
        0.5,
    );
    let model = DistillModel::new(
        cnn(4, 4),
        Some(teacher),
        fitnet,
        &probe,
        TeacherCache::default(),
    )
    .unwrap();
    assert_eq!(model.connectors.taps, vec!["stage2"]);
    let before = (weights(&model.student), weights(&model.connectors));
    let config = FitConfig {
        epochs: 1,
        ..FitConfig::default()
    };
    let train = data.train.restarted();
    let learner = config.learner(model, train.num_items());
    let out = tempfile::tempdir().unwrap();
    let result = SupervisedTraining::new(out.path(), Arc::new(train), Arc::new(data.valid.clone()))
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .renderer(Box::new(Quiet))
        .with_application_logger(None)
        .num_epochs(1)
        .launch(learner);
    let model = result.model;
    assert_ne!(weights(&model.student), before.0, "the student learned");
    assert_ne!(
        weights(&model.connectors),
        before.1,
        "the connector learned"
    );
    assert!(model.cached_teacher_items() > 0);
    // The connector maps the CNN's stage2 to the teacher's width.
    let batch = data.valid.probe(2);
    let plan = model.student.tap_plan(&["stage2"]).unwrap();
    let adapted = model
        .connectors
        .apply(model.student.forward_taps(batch.inputs(), &plan));
    assert_eq!(adapted.taps["stage2"].dims(), [2, 128, 2, 2]);
}

#[test]
fn a_user_defined_teacher_teaches_a_bundled_resnet() {
    let (_dir, data) = tiny_data();
    let probe = data.valid.probe(2);
    let teacher = cnn(8, 5);
    let frozen = FrozenTeacher::new(&teacher);
    let x: Tensor<4> = probe.inputs().inner();
    let teacher_before: Vec<f32> = teacher
        .valid()
        .forward_logits(x.clone())
        .rows()
        .to_data()
        .iter()
        .collect();
    // ResNet-18's layer1 (64 channels, 4×4) learns the CNN's stage1 (16 channels) through a
    // connector, plus soft targets.
    let mut objective = Objective::lerp(LossConfig::soft_target(), 0.5);
    objective
        .terms
        .push(Term::new(LossConfig::FitNet(kd::core::losses::FitNet {
            pairs: vec![LayerPair::new("layer1", "stage1")],
            scale: 1.0,
        })));
    let student = resnet18(6);
    let before = weights(&student);
    let model = DistillModel::new(
        student,
        Some(frozen),
        objective,
        &probe,
        TeacherCache::default(),
    )
    .unwrap();
    assert_eq!(model.connectors.taps, vec!["layer1"]);
    let (model, history) = fit(model, &data, 1);
    let kd = history.epochs[0].train_kd.unwrap();
    assert!(kd.is_finite() && kd > 0.0, "{history:?}");
    assert_ne!(weights(&model.student), before, "the student learned");
    // The teacher stayed frozen: its outputs are those of the untouched model.
    let after: Vec<f32> = model
        .teacher()
        .unwrap()
        .forward_logits(x)
        .rows()
        .to_data()
        .iter()
        .collect();
    assert_eq!(after, teacher_before);
}
