//! Resume after a simulated kill. In its own test binary: with other training tests running
//! in the same process, runs that should be identical were seen to differ (the cause was not
//! pinned down; alone, every run is bit-for-bit reproducible).

use std::path::Path;

use burn::tensor::Device;
use image::{Rgb, RgbImage};
use kd_core::{LossConfig, Objective};
use kd_data::{DataBundle, DataConfig, ImageSet, LabelFn};
use kd_models::{Arch, Head, Network, NetworkConfig};
use kd_train::report::{Reporter, Silent};
use kd_train::{DistillModel, EpochRecord, FitConfig, fit_one_cycle};

fn device() -> Device {
    Device::flex().autodiff()
}

fn tiny_data() -> (tempfile::TempDir, DataBundle) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..24u32 {
        let cat = RgbImage::from_fn(16, 16, |x, y| Rgb([200, (x * 8 + i) as u8, (y * 8) as u8]));
        cat.save(dir.path().join(format!("Cat_{i}.png"))).unwrap();
        let dog = RgbImage::from_fn(16, 16, |x, y| Rgb([30, (y * 4 + i) as u8, (x * 4) as u8]));
        dog.save(dir.path().join(format!("dog_{i}.png"))).unwrap();
    }
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

fn net(seed: u64) -> Network {
    let device = device();
    device.seed(seed);
    NetworkConfig::new(Arch::ResNet18, Head::Linear).init(2, &device)
}

fn soft_target_pairs() -> Objective {
    Objective::lerp(LossConfig::soft_target(), 0.5)
}

fn final_metrics(h: &[EpochRecord]) -> Vec<(f64, f64, f64)> {
    h.iter()
        .map(|e| (e.train_loss, e.valid_loss, e.accuracy))
        .collect()
}

struct DieAfterFirstEpoch;

impl Reporter for DieAfterFirstEpoch {
    fn epoch(&mut self, _run: &str, record: &EpochRecord) {
        if record.epoch == 1 {
            panic!("simulated kill during epoch 1");
        }
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let (_dir, data) = tiny_data();
    let config = FitConfig {
        epochs: 3,
        lr: 2e-3,
        weight_decay: 0.01,
    };
    let teacher = net(5);
    let build =
        || DistillModel::new(net(6), Some(&teacher), soft_target_pairs(), true, 16).unwrap();

    let straight = tempfile::tempdir().unwrap();
    let (_, full) = fit_one_cycle(
        build(),
        &data,
        &config,
        "kd",
        Some(straight.path()),
        &mut Silent,
    )
    .unwrap();

    let killed = tempfile::tempdir().unwrap();
    let path = killed.path().to_path_buf();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fit_one_cycle(
            build(),
            &data,
            &config,
            "kd",
            Some(&path),
            &mut DieAfterFirstEpoch,
        )
    }));
    assert!(crashed.is_err());
    assert!(Path::new(&path).join("epoch-000").is_dir());
    let (_, resumed) =
        fit_one_cycle(build(), &data, &config, "kd", Some(&path), &mut Silent).unwrap();
    assert_eq!(resumed.epochs.len(), 3);
    assert_eq!(final_metrics(&resumed.epochs), final_metrics(&full.epochs));
}
