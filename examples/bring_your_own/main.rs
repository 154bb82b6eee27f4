//! The file a Burn user copies: distillation with your own data pipeline and your own models,
//! nothing from kd-models or kd-data.
//!
//! - Data: your `Dataset` (points on three noisy concentric rings, 2-D), your `Batcher` and
//!   batch type, Burn's `DataLoaderBuilder`. The teacher learns from 960 labelled points; the
//!   student has 96 labelled points of its own, or 960 points without labels to distil on.
//! - Models: two MLPs of your own — a wide teacher and a narrow student — made tappable by
//!   implementing `FeatureModel<Tensor<2>>` (their input is a `[batch, 2]` tensor: no images).
//! - Training: the teacher with cross-entropy alone (kd's `Recipe`, fastai's one-cycle recipe);
//!   the student alone on its 96 labelled points; then the student distilled on the
//!   unlabelled points (no targets: the objective is the distillation terms alone) with soft
//!   targets plus FitNet hints on the hidden layer (16 → 256 features through a learned
//!   connector) whose weight fades from 1 to 0 — under Burn's own `Learner` +
//!   `SupervisedTraining` assembled here from the parts the `Recipe` uses (optimizer and
//!   schedule, history recorder, checkpoints, NaN guard, quiet renderer) beside Burn's own
//!   metrics, then the same objective through the `Recipe` itself.
//!
//! ```sh
//! cargo run --example bring_your_own       # a few seconds on 2 CPU cores
//! ```
//!
//! It prints validation accuracies. The two distilled students train alike but see their
//! batches in another order: Burn's `SupervisedTraining` moves the loader to the device, which
//! reshuffles a `DataLoaderBuilder` loader from a fork of its generator, and the `Recipe`
//! keeps the loader as given (so that a resumed run draws the epochs an uninterrupted one did).

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::{Dataset, DatasetError};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn::train::SupervisedTraining;
use burn::train::metric::{AccuracyMetric, LossMetric};
use kd::core::losses::{FitNet, SoftTarget};
use kd::core::{
    DistillBatch, FeatureModel, LayerPair, Mix, Objective, Outputs, Schedule, TapPlan, TapRecorder,
    Targets, Term,
};
use kd::train::report::SharedReporter;
use kd::train::{
    DistillModel, FitConfig, FrozenTeacher, HistoryRecorder, ObjectivePartMetric, Quiet, Recipe,
    RunCheckpointer, TeacherCache, evaluate,
};

/// One point and its ring.
#[derive(Debug, Clone)]
struct Point {
    xy: [f32; 2],
    ring: i64,
}

/// `n` points on three concentric rings of radius 1, 2 and 3, with radial noise.
struct Rings(Vec<Point>);

impl Rings {
    fn new(n: usize, seed: u64) -> Self {
        let mut state = seed;
        let mut uniform = move || {
            state = kd::core::splitmix64(state);
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        Self(
            (0..n)
                .map(|i| {
                    let ring = (i % 3) as i64;
                    let angle = uniform() * std::f32::consts::TAU;
                    let radius = 1.0 + ring as f32 + (uniform() - 0.5) * 1.2;
                    Point {
                        xy: [radius * angle.cos(), radius * angle.sin()],
                        ring,
                    }
                })
                .collect(),
        )
    }
}

impl Dataset<Point> for Rings {
    fn get(&self, index: usize) -> Result<Point, DatasetError> {
        self.0
            .get(index)
            .cloned()
            .ok_or_else(|| DatasetError::new(std::io::Error::other(format!("no point {index}"))))
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A batch of points: `[batch, 2]` coordinates and, when labelled, `[batch]` rings.
#[derive(Debug, Clone)]
struct PointBatch {
    xy: Tensor<2>,
    rings: Option<Tensor<1, Int>>,
}

impl DistillBatch for PointBatch {
    type Input = Tensor<2>;
    fn inputs(&self) -> Tensor<2> {
        self.xy.clone()
    }
    fn targets(&self) -> Option<Targets> {
        self.rings.clone().map(Targets::Items)
    }
    fn without_autodiff(self) -> Self {
        Self {
            xy: self.xy.without_autodiff(),
            rings: self.rings.map(|r| r.without_autodiff()),
        }
    }
}

/// Batches points, with their rings as targets when `labelled`.
#[derive(Debug, Clone, Copy)]
struct PointBatcher {
    labelled: bool,
}

impl Batcher<Point, PointBatch> for PointBatcher {
    fn batch(&self, items: Vec<Point>, device: &Device) -> PointBatch {
        let n = items.len();
        let xy: Vec<f32> = items.iter().flat_map(|p| p.xy).collect();
        let rings: Vec<i64> = items.iter().map(|p| p.ring).collect();
        PointBatch {
            xy: Tensor::from_data(TensorData::new(xy, [n, 2]), device),
            rings: self
                .labelled
                .then(|| Tensor::from_data(TensorData::new(rings, [n]), device)),
        }
    }
}

/// An MLP with one hidden layer; its taps are `hidden` (`[batch, width]`) and `out`.
#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Mlp {
    fn new(width: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(2, width).init(device),
            out: LinearConfig::new(width, 3).init(device),
        }
    }
}

impl FeatureModel<Tensor<2>> for Mlp {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        vec![("hidden".into(), None), ("out".into(), None)]
    }
    fn forward_taps(&self, xy: Tensor<2>, plan: &TapPlan) -> Outputs {
        let mut taps = TapRecorder::new(plan);
        let h = relu(self.hidden.forward(xy));
        taps.offer("hidden", &h);
        let logits = self.out.forward(h);
        taps.offer("out", &logits);
        taps.finish(logits)
    }
    fn device(&self) -> Device {
        self.out.weight.val().device()
    }
}

fn loader(n: usize, seed: u64, labelled: bool, device: &Device) -> Arc<dyn DataLoader<PointBatch>> {
    DataLoaderBuilder::new(PointBatcher { labelled })
        .batch_size(32)
        .shuffle(seed)
        .set_device(device.clone())
        .build(Rings::new(n, seed))
}

/// Soft targets at T = 1 plus hints on the hidden layer whose weight fades from 1 to 0 along
/// training (without targets, the mix has no cross-entropy to weigh against).
fn objective() -> Objective {
    Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![
            Term::new(SoftTarget::new(1.0)),
            Term {
                schedule: Schedule::Linear {
                    start: 1.0,
                    end: 0.0,
                },
                ..Term::new(FitNet::new(vec![LayerPair::new("hidden", "hidden")]))
            },
        ],
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex().autodiff();
    device.seed(0);
    let teacher_train = loader(960, 1, true, &device);
    let valid = loader(480, 2, true, &device);
    let (labelled, unlabelled) = (loader(96, 4, true, &device), loader(960, 5, false, &device));
    let fit = |epochs| FitConfig {
        epochs,
        lr: 1e-2,
        ..FitConfig::default()
    };

    // The teacher: a wide MLP trained with cross-entropy alone (no teacher, no probe batch).
    let (teacher, _) = Recipe::new(fit(10)).name("teacher").fit(
        DistillModel::alone(Mlp::new(256, &device)),
        teacher_train,
        valid.clone(),
    )?;
    let teacher = teacher.into_student();
    let score = |name: &str, model: &DistillModel<Mlp, PointBatch>| {
        evaluate(model, &valid).map(|e| println!("{name:<40} accuracy {:.4}", e.accuracy))
    };
    score(
        "teacher (256 hidden)",
        &DistillModel::alone(teacher.clone()),
    )?;
    let frozen = FrozenTeacher::new(&teacher);
    let probe = PointBatcher { labelled: false }.batch(Rings::new(4, 3).0, &device);

    // The student alone, for comparison.
    device.seed(7);
    let (alone, _) = Recipe::new(fit(30)).name("student alone").fit(
        DistillModel::alone(Mlp::new(16, &device)),
        labelled,
        valid.clone(),
    )?;
    score("student (16 hidden) alone, 96 labels", &alone)?;

    // Burn's Learner assembled from kd's parts, with Burn's own metrics beside them.
    let epochs = 5;
    device.seed(7);
    let model = DistillModel::new(
        Mlp::new(16, &device),
        Some(frozen.clone()),
        objective(),
        &probe,
        TeacherCache::default(),
    )?;
    println!("connectors: {:?}", model.connectors.taps);
    let out = std::env::temp_dir().join("kd-bring-your-own");
    let _ = std::fs::remove_dir_all(&out);
    let names = ["student distilled".to_string()];
    let recorder = HistoryRecorder::new(&model, &names, SharedReporter::default());
    let checkpoints = RunCheckpointer::new(&out, &model, &recorder);
    let guard = model.guard().clone();
    let learner = fit(epochs).learner(model, unlabelled.num_items());
    let result = SupervisedTraining::new(&out, unlabelled.clone(), valid.clone())
        .metric_train(recorder.train())
        .metric_valid(recorder.valid())
        .metric_train_numeric(LossMetric::new())
        .metric_train_numeric(ObjectivePartMetric::cross_entropy())
        .metric_train_numeric(ObjectivePartMetric::distillation())
        .metric_valid_numeric(AccuracyMetric::new())
        .with_custom_checkpointers(
            checkpoints.clone(),
            checkpoints.clone(),
            checkpoints.clone(),
        )
        .with_checkpointing_strategy(checkpoints)
        .with_interrupter(guard.interrupter())
        .renderer(Box::new(Quiet))
        .with_application_logger(None)
        .num_epochs(epochs)
        .launch(learner);
    if let Some(error) = guard.take_error() {
        return Err(error.into());
    }
    score("student distilled, no labels, by hand", &result.model)?;
    let _ = std::fs::remove_dir_all(&out);

    // The same objective through kd's recipe: the same parts.
    device.seed(7);
    let model = DistillModel::new(
        Mlp::new(16, &device),
        Some(frozen),
        objective(),
        &probe,
        TeacherCache::default(),
    )?;
    let (distilled, _) =
        Recipe::new(fit(epochs))
            .name("student distilled")
            .fit(model, unlabelled, valid.clone())?;
    score("student distilled, no labels, Recipe", &distilled)?;
    Ok(())
}
