//! Helpers shared by the training tests.
#![allow(dead_code)]

use burn::tensor::Device;
use image::{Rgb, RgbImage};
use kd_core::{LossConfig, Objective};
use kd_data::{DataBundle, DataConfig, ImageSet, LabelFn};
use kd_models::{Arch, Head, Network, NetworkConfig};

pub fn device() -> Device {
    Device::flex().autodiff()
}

/// 24 cats (bright) and 24 dogs (dark), 16×16, square so every item is deterministic.
pub fn tiny_data(size: usize) -> (tempfile::TempDir, DataBundle) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..24u32 {
        let cat = RgbImage::from_fn(16, 16, |x, y| Rgb([200, (x * 8 + i) as u8, (y * 8) as u8]));
        cat.save(dir.path().join(format!("Cat_{i}.png"))).unwrap();
        let dog = RgbImage::from_fn(16, 16, |x, y| Rgb([30, (y * 4 + i) as u8, (x * 4) as u8]));
        dog.save(dir.path().join(format!("dog_{i}.png"))).unwrap();
    }
    let config = DataConfig {
        size,
        batch_size: 8,
        valid_pct: 0.25,
        ..DataConfig::default()
    };
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
    let data = DataBundle::new(set, &config, &device()).unwrap();
    (dir, data)
}

/// A seeded initialisation. The lock keeps tests running in parallel from drawing from the
/// seeded generator in between; a fresh network per run also matters because Burn's `clone`
/// shares BatchNorm running statistics between the copies.
pub fn net(arch: Arch, seed: u64) -> Network {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(seed);
    NetworkConfig::new(arch, Head::Linear).init(2, &device)
}

pub fn soft_target_pairs() -> Objective {
    Objective::lerp(LossConfig::soft_target(), 0.5)
}
