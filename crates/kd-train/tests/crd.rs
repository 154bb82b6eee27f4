//! CRD in training: heads and banks trained and saved with the student, the banks updated on
//! every training batch and resumed exactly from a checkpoint, and the setups that cannot work
//! refused before the first step.

mod common;

use burn::data::dataloader::DataLoader;
use burn::tensor::Tensor;
use common::{device, fit, net, quiet, stop_in_epoch_1, tiny_data, twin};
use kd_core::{DistillBatch, LayerPair, LossConfig, Mix, Objective, Term};
use kd_data::{DataBundle, ImageBatch};
use kd_models::{Arch, Network};
use kd_train::{
    DistillModel, DistillOptions, FitConfig, FrozenTeacher, TeacherCache, TrainError,
    load_trained_student,
};

/// CRD between the pooled features with `negatives` negatives.
fn crd(negatives: usize) -> Objective {
    let loss = LossConfig::Crd(kd_core::losses::Crd {
        pair: LayerPair::new("avgpool", "avgpool"),
        dim: 16,
        negatives,
        temperature: 0.07,
        momentum: 0.5,
    });
    Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![Term {
            weight: 0.8,
            ..Term::new(loss)
        }],
    }
}

/// `student` distilled from `teacher`, its memory sized for `items` training items. CRD's
/// heads and banks are drawn from the seeded generator: the lock keeps other tests from
/// drawing in between.
fn model(
    student: &Network,
    teacher: &Network,
    objective: Objective,
    items: usize,
) -> Result<common::Model, TrainError> {
    let _guard = common::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    device().seed(21);
    DistillModel::new(
        twin(student, Arch::ResNet18),
        Some(FrozenTeacher::new(teacher)),
        objective,
        &ImageBatch::zeros(2, 16, &device()),
        DistillOptions::default().with_training_items(items),
    )
}

fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        lr: 2e-3,
        weight_decay: 0.01,
        ..FitConfig::default()
    }
}

/// Every value of the model's banks and weights, flattened.
fn state(model: &common::Model) -> (Vec<f32>, Vec<f32>) {
    let (s, t) = model.contrasts.memories[0].banks();
    let mut banks: Vec<f32> = s.into_data().iter::<f32>().collect();
    banks.extend(t.into_data().iter::<f32>());
    let w = model.contrasts.memories[0]
        .embed_student
        .weight
        .val()
        .into_data()
        .iter::<f32>()
        .collect();
    (banks, w)
}

fn train_items(data: &DataBundle) -> usize {
    data.train.indices().len()
}

#[test]
fn crd_trains_its_heads_and_banks_and_a_killed_run_resumes_them_exactly() {
    let (_dir, data) = tiny_data(16);
    let (teacher, student) = (net(Arch::ResNet18, 11), net(Arch::ResNet18, 12));
    let items = train_items(&data);
    let build = || model(&student, &teacher, crd(8), items).unwrap();
    let before = state(&build());

    let straight = tempfile::tempdir().unwrap();
    let (full, history) = fit(
        build(),
        &data,
        &config(3),
        "crd",
        Some(straight.path()),
        quiet(),
    )
    .unwrap();
    let steps = data.train.num_batches() * 3;
    let memory = &full.contrasts.memories[0];
    let [z_s, z_t, updates] = memory.state();
    assert_eq!(
        updates as usize, steps,
        "one bank update per training batch"
    );
    assert!(z_s > 0.0 && z_t > 0.0, "normalisers set on the first batch");
    let after = state(&full);
    assert_ne!(before.0, after.0, "the banks learned");
    assert_ne!(before.1, after.1, "the student's head was trained");
    for e in &history.epochs {
        assert!(e.train_kd.is_some_and(f64::is_finite) && e.valid_kd.is_some_and(f64::is_finite));
    }

    let killed = tempfile::tempdir().unwrap();
    let path = killed.path().to_path_buf();
    let model = build();
    let stop = stop_in_epoch_1(model.guard().interrupter());
    let crashed = fit(model, &data, &config(3), "crd", Some(&path), stop);
    assert!(
        matches!(crashed, Err(TrainError::Stopped(_))),
        "{:?}",
        crashed.err()
    );
    let (resumed, _) = fit(build(), &data, &config(3), "crd", Some(&path), quiet()).unwrap();
    let again = state(&resumed);
    assert_eq!(resumed.contrasts.memories[0].state(), memory.state());
    let gap = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        gap(&again.0, &after.0) < 1e-6,
        "banks differ after resume by {}",
        gap(&again.0, &after.0)
    );
    assert!(gap(&again.1, &after.1) < 1e-6, "heads differ after resume");

    // The student alone loads from the checkpoint without its heads and banks.
    let mut alone = DistillModel::<Network, ImageBatch>::new(
        twin(&student, Arch::ResNet18),
        None,
        Objective::cross_entropy_only(),
        &ImageBatch::zeros(2, 16, &device()),
        TeacherCache::OFF,
    )
    .unwrap();
    let h = load_trained_student(&mut alone, straight.path(), None).unwrap();
    assert_eq!(h.epochs.len(), 3);
}

/// A batch type with neither item indices nor cache keys.
#[derive(Debug, Clone)]
struct Unkeyed(ImageBatch);

impl DistillBatch for Unkeyed {
    type Input = Tensor<4>;
    fn inputs(&self) -> Tensor<4> {
        self.0.images.clone()
    }
    fn targets(&self) -> Option<kd_core::Targets> {
        self.0.targets()
    }
    fn without_autodiff(self) -> Self {
        Self(self.0.without_autodiff())
    }
}

#[test]
fn crd_without_item_indices_too_many_negatives_or_on_several_devices_is_refused() {
    let (teacher, student) = (net(Arch::ResNet18, 13), net(Arch::ResNet18, 14));
    let guard = common::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let e = DistillModel::<Network, Unkeyed>::new(
        twin(&student, Arch::ResNet18),
        Some(FrozenTeacher::new(&teacher)),
        crd(8),
        &Unkeyed(ImageBatch::zeros(2, 16, &device())),
        DistillOptions::from(TeacherCache::OFF).with_training_items(36),
    )
    .unwrap_err()
    .to_string();
    drop(guard);
    assert!(
        e.contains("CRD") && e.contains("Unkeyed") && e.contains("item_indices"),
        "{e}"
    );

    let e = model(&student, &teacher, crd(36), 36)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CRD") && e.contains("negatives = 36") && e.contains("35"),
        "{e}"
    );

    let (_dir, data) = tiny_data(16);
    let two = model(&student, &teacher, crd(8), train_items(&data))
        .unwrap()
        .on_devices(vec![device(), device()])
        .unwrap();
    let batch = data.train.restarted().probe(8);
    let e = two.train_step(batch).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("CRD") && e.contains("one device"), "{e}");
}

#[test]
fn crd_memory_is_sized_by_the_trainer_from_the_training_set() {
    let (teacher, student) = (net(Arch::ResNet18, 15), net(Arch::ResNet18, 16));
    // Without the number of training items the model cannot be built.
    let guard = common::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let e = DistillModel::<Network, ImageBatch>::new(
        twin(&student, Arch::ResNet18),
        Some(FrozenTeacher::new(&teacher)),
        crd(8),
        &ImageBatch::zeros(2, 16, &device()),
        TeacherCache::OFF,
    )
    .unwrap_err()
    .to_string();
    drop(guard);
    assert!(
        e.starts_with("CRD") && e.contains("number of training items"),
        "{e}"
    );

    // The memory has a row per item it was told of.
    let (_dir, data) = tiny_data(16);
    let items = train_items(&data);
    let built = model(&student, &teacher, crd(8), items).unwrap();
    assert_eq!(built.contrasts.items(), Some(items));
    let (bank, _) = built.contrasts.memories[0].banks();
    assert_eq!(bank.dims()[0], items);

    // fastai's fit refuses a memory sized for another training set before any step.
    let checkpoints = tempfile::tempdir().unwrap();
    let per_epoch = data.train.num_items();
    let short = model(&student, &teacher, crd(8), per_epoch - 1).unwrap();
    let e = fit(
        short,
        &data,
        &config(1),
        "crd",
        Some(checkpoints.path()),
        quiet(),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("{} rows", per_epoch - 1))
            && e.contains(&format!("the {per_epoch} items")),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(checkpoints.path()).unwrap().count(), 0);
}
