//! Helpers shared by the training tests.
#![allow(dead_code)]

use std::path::Path;

use burn::tensor::Device;
use burn::train::Interrupter;
use image::{Rgb, RgbImage};
use kd_core::{LossConfig, Objective};
use kd_data::{DataBundle, DataConfig, ImageBatch, ImageSet, LabelFn};
use kd_models::{Arch, Head, Network, NetworkConfig};
use kd_train::report::{Reporter, SharedReporter};
use kd_train::{
    DistillModel, FitConfig, FrozenTeacher, History, Recipe, TappableModule, TeacherCache,
    TrainError,
};

/// A bundled ResNet distilled on kd-data's image batches.
pub type Model = DistillModel<Network, ImageBatch>;

pub fn device() -> Device {
    Device::flex().autodiff()
}

/// 24 cats (bright) and 24 dogs (dark), 16×16, square so every item is deterministic.
pub fn tiny_data(size: usize) -> (tempfile::TempDir, DataBundle) {
    tinted_data(size, 0)
}

/// As [`tiny_data`], the cats' blue channel raised by `tint`: same files, labels and split,
/// other pixels.
pub fn tinted_data(size: usize, tint: u32) -> (tempfile::TempDir, DataBundle) {
    images(size, tint, 8)
}

/// As [`tiny_data`], in batches of `batch_size`: the same items in the same order each epoch.
pub fn batched_data(size: usize, batch_size: usize) -> (tempfile::TempDir, DataBundle) {
    images(size, 0, batch_size)
}

fn images(size: usize, tint: u32, batch_size: usize) -> (tempfile::TempDir, DataBundle) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..24u32 {
        let cat = RgbImage::from_fn(16, 16, |x, y| {
            Rgb([200, (x * 8 + i) as u8, (y * 8 + tint) as u8])
        });
        cat.save(dir.path().join(format!("Cat_{i}.png"))).unwrap();
        let dog = RgbImage::from_fn(16, 16, |x, y| Rgb([30, (y * 4 + i) as u8, (x * 4) as u8]));
        dog.save(dir.path().join(format!("dog_{i}.png"))).unwrap();
    }
    let config = DataConfig {
        size,
        batch_size,
        valid_pct: 0.25,
        ..DataConfig::default()
    };
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
    let data = DataBundle::new(set, &config, &device()).unwrap();
    (dir, data)
}

/// Held by whoever seeds the device's generator and draws from it, so that tests running in
/// parallel do not draw from each other's seeds.
#[allow(dead_code)]
pub static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A seeded initialisation. The lock keeps tests running in parallel from drawing from the
/// seeded generator in between; a fresh network per run also matters because Burn's `clone`
/// shares BatchNorm running statistics between the copies.
pub fn net(arch: Arch, seed: u64) -> Network {
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = device();
    device.seed(seed);
    NetworkConfig::new(arch, Head::Linear).init(2, &device)
}

pub fn soft_target_pairs() -> Objective {
    Objective::lerp(LossConfig::soft_target(), 0.5)
}

/// `student` distilled from a frozen `teacher` under `objective`, checked on a probe of two
/// 16×16 images; `cache` turns the teacher-output cache on (default budget) or off.
pub fn distill(
    student: Network,
    teacher: Option<&Network>,
    objective: Objective,
    cache: bool,
) -> Result<Model, TrainError> {
    let probe = ImageBatch::zeros(2, 16, &device());
    let cache = if cache {
        TeacherCache::default()
    } else {
        TeacherCache::OFF
    };
    DistillModel::new(
        student,
        teacher.map(FrozenTeacher::new),
        objective,
        &probe,
        cache,
    )
}

/// The recipe of `config` named `name`, with `checkpoints` and `reporter`.
pub fn recipe(
    config: &FitConfig,
    name: &str,
    checkpoints: Option<&Path>,
    reporter: SharedReporter,
) -> Recipe {
    let recipe = Recipe::new(config.clone()).name(name).reporter(reporter);
    match checkpoints {
        Some(dir) => recipe.checkpoints(dir),
        None => recipe,
    }
}

/// kd's recipe on `data`'s loaders, the training loader's epochs counted from 0.
pub fn fit<S: TappableModule>(
    model: DistillModel<S, ImageBatch>,
    data: &DataBundle,
    config: &FitConfig,
    name: &str,
    checkpoints: Option<&Path>,
    reporter: SharedReporter,
) -> Result<(DistillModel<S, ImageBatch>, History), TrainError> {
    recipe(config, name, checkpoints, reporter).fit(
        model,
        std::sync::Arc::new(data.train.restarted()),
        std::sync::Arc::new(data.valid.clone()),
    )
}

/// Silence.
pub fn quiet() -> SharedReporter {
    SharedReporter::default()
}

/// An independent copy of `net` (Burn's `clone` shares BatchNorm running statistics): its
/// weights and statistics written out and read into a fresh network. Two seeded
/// initialisations are not enough for that: a test running in parallel may draw from the
/// global generator (a connector's initialisation, say) between the seeding and the draws.
pub fn twin(net: &Network, arch: Arch) -> Network {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twin.bpk");
    kd_core::save_module(net, &path).unwrap();
    let mut copy = NetworkConfig::new(arch, Head::Linear).init(2, &device());
    kd_core::load_module(&mut copy, &path).unwrap();
    copy
}

/// Stops a run in the middle of epoch 1 (at its second step, before its checkpoint is
/// written): a killed run, through the model's interrupter
/// ([`DistillModel::guard`](kd_train::DistillModel::guard)).
pub fn stop_in_epoch_1(interrupter: Interrupter) -> SharedReporter {
    SharedReporter::new(StopInEpoch1(interrupter))
}

struct StopInEpoch1(Interrupter);

impl Reporter for StopInEpoch1 {
    fn step(&mut self, _run: &str, epoch: usize, step: usize, _steps: usize, _loss: f64) {
        if epoch == 1 && step == 2 {
            self.0.stop(Some("simulated kill during epoch 1"));
        }
    }
}

/// Every parameter of a module, flattened in module order.
pub fn params<M: burn::module::Module>(module: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(
            &mut self,
            p: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0.extend(p.val().into_data().iter::<f32>());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}
