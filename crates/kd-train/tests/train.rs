//! Distillation training on tiny generated data: frozen teacher, optimizer updates, losses
//! against hand computation, resume, teacher cache.

mod common;

use burn::module::Module;
use common::{distill, fit, net, quiet, soft_target_pairs, tinted_data, tiny_data, twin};
use kd_core::{LayerPair, LossConfig, Objective};
use kd_data::{Augmentation, RandomResizedCrop};
use kd_models::{Arch, FeatureModel};
use std::sync::Arc;

use kd_train::{FitConfig, Recipe, evaluate};

/// Every float tensor of a module (parameters and BatchNorm statistics), flattened.
fn snapshot(m: &impl burn::store::ModuleSnapshot) -> Vec<(String, Vec<f32>)> {
    m.collect(None, None, false)
        .into_iter()
        .map(|t| {
            (
                t.name.clone(),
                burn::store::bridge::to_data(&t)
                    .unwrap()
                    .iter::<f32>()
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn teacher_stays_bit_identical_and_the_student_learns() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 1);
    let before_teacher = snapshot(&teacher);
    let student = net(Arch::ResNet18, 2);
    let before_student = snapshot(&student);
    let pairs = LayerPair::zip(&["layer1", "layer2"], &["layer1", "layer2"]);
    let mut objective = soft_target_pairs();
    objective
        .terms
        .push(kd_core::Term::new(LossConfig::attention(pairs)));
    let model = distill(student, Some(&teacher), objective, false).unwrap();
    let config = FitConfig {
        epochs: 1,
        lr: 1e-3,
        weight_decay: 0.01,
        ..FitConfig::default()
    };
    let (model, history) = fit(model, &data, &config, "kd", None, quiet()).unwrap();
    assert_eq!(history.epochs.len(), 1);
    // The caller's teacher and the runner's frozen copy are untouched, BatchNorm statistics too.
    assert_eq!(snapshot(&teacher), before_teacher);
    // The frozen copy computes what the untouched teacher computes in eval mode.
    let x = data.valid.probe(4).images.inner();
    let frozen: Vec<f32> = model
        .teacher()
        .unwrap()
        .forward_logits(x.clone())
        .to_data()
        .iter::<f32>()
        .collect();
    let fresh: Vec<f32> = teacher
        .valid()
        .forward_logits(x)
        .to_data()
        .iter::<f32>()
        .collect();
    assert_eq!(frozen, fresh);
    // The student moved: weights and BatchNorm running statistics.
    let after = snapshot(&model.student);
    let changed = |key: &str| {
        let a = after.iter().find(|(n, _)| n.ends_with(key)).unwrap();
        let b = before_student.iter().find(|(n, _)| n == &a.0).unwrap();
        a.1 != b.1
    };
    assert!(changed("conv1.weight"));
    assert!(changed("layer1.0.bn1.running_mean"));
    assert!(changed("fc.weight"));
    // The checkpointed module holds the student only.
    let names: Vec<String> = snapshot(&model).into_iter().map(|(n, _)| n).collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("student.") || n.starts_with("connectors.")),
        "{names:?}"
    );
}

/// CE and KL written out by hand in f64 from logits.
fn hand_loss(s: &[f32], t: &[f32], y: &[i64], temp: f64, w: f64) -> f64 {
    let b = y.len();
    let softmax = |z: &[f32], tau: f64| {
        let m = z.iter().map(|v| *v as f64).fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| ((*v as f64 - m) / tau).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect::<Vec<_>>()
    };
    let (mut ce, mut kl) = (0.0, 0.0);
    for i in 0..b {
        let (sr, tr) = (&s[i * 2..i * 2 + 2], &t[i * 2..i * 2 + 2]);
        ce -= softmax(sr, 1.0)[y[i] as usize].ln();
        let (q, p) = (softmax(sr, temp), softmax(tr, temp));
        kl += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
    }
    (1.0 - w) * ce / b as f64 + w * kl / b as f64 * temp * temp
}

#[test]
fn two_kd_steps_match_a_hand_computed_loss() {
    use burn::train::TrainStep;
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 3);
    let student = net(Arch::ResNet18, 4);
    let mut model = distill(student, Some(&teacher), soft_target_pairs(), false).unwrap();
    let (mut optim, _) = kd_train::fastai_adam(0.01);
    let frozen = teacher.valid();
    for batch in data.train.iter_epoch(0).take(2) {
        let batch = batch.unwrap();
        // Independent forward passes: the student as it is now, in training mode (batch
        // statistics, as in the step); the teacher in eval mode.
        let s = model.student.forward_logits(batch.images.clone());
        let t = frozen.forward_logits(batch.images.clone().inner());
        let y: Vec<i64> = batch.targets.to_data().iter::<i64>().collect();
        let want = hand_loss(
            &s.to_data().iter::<f32>().collect::<Vec<_>>(),
            &t.to_data().iter::<f32>().collect::<Vec<_>>(),
            &y,
            5.0,
            0.5,
        );
        let out = TrainStep::step(&model, batch);
        let got = out.item.loss.clone().into_scalar::<f32>() as f64;
        assert!(
            (got - want).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        model = optim.step(1e-3, model, out.grads);
    }
}

/// Soft targets plus attention on two layers: the teacher's logits and taps both cached.
fn soft_target_and_attention() -> Objective {
    let pairs = LayerPair::zip(&["layer1", "layer3"], &["layer1", "layer3"]);
    let mut objective = soft_target_pairs();
    objective
        .terms
        .push(kd_core::Term::new(LossConfig::attention(pairs)));
    objective
}

/// Train the same student for `epochs` with the teacher cache on and off (flips and other
/// augmentation as given); check that both train alike, and return the number of cache
/// entries and the number of distinct training items drawn.
fn cached_vs_plain(flip: bool, augment: Augmentation, epochs: usize) -> (usize, usize) {
    let (_dir, data) = tiny_data(16);
    let config = FitConfig {
        epochs,
        lr: 1e-3,
        weight_decay: 0.01,
        ..FitConfig::default()
    };
    let teacher = net(Arch::ResNet34, 7);
    let student = net(Arch::ResNet18, 8);
    let run = |cache: bool| {
        let model = distill(
            twin(&student, Arch::ResNet18),
            Some(&teacher),
            soft_target_and_attention(),
            cache,
        )
        .unwrap();
        let train = data.train.with_flip(flip).with_augmentation(augment);
        let (model, h) = Recipe::new(config.clone())
            .fit(model, Arc::new(train), Arc::new(data.valid.clone()))
            .unwrap();
        (model.cached_teacher_items(), h)
    };
    let (n_cached, cached) = run(true);
    let (n_plain, plain) = run(false);
    assert_eq!(n_plain, 0);
    for (a, b) in cached.epochs.iter().zip(&plain.epochs) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-5, "{a:?} vs {b:?}");
        assert!((a.valid_loss - b.valid_loss).abs() < 1e-5);
        assert_eq!(a.accuracy, b.accuracy);
    }
    // drop_last leaves some items out of each epoch.
    let mut seen: Vec<usize> = (0..epochs as u64)
        .flat_map(|e| data.train.epoch_batches(e).concat())
        .collect();
    seen.sort();
    seen.dedup();
    (n_cached, seen.len())
}

#[test]
fn cached_and_uncached_teacher_outputs_give_the_same_training() {
    // Every (square, unflipped) item drawn is cached, and the 12 validation items.
    let (entries, drawn) = cached_vs_plain(false, Augmentation::default(), 2);
    assert_eq!(entries, drawn + 12);
}

#[test]
fn flipped_items_are_cached_per_variant_and_train_as_without_cache() {
    // Each item drawn is cached once per flip variant it came in (one or both over three
    // epochs), plus the 12 validation items.
    let (entries, drawn) = cached_vs_plain(true, Augmentation::default(), 3);
    assert!(
        entries > drawn + 12,
        "{entries} entries: some items came both ways"
    );
    assert!(entries <= 2 * drawn + 12, "{entries} entries");
}

#[test]
fn crops_and_mixed_batches_bypass_the_cache_and_train_as_without_it() {
    // Random-resized crops change every training item's pixels from epoch to epoch, and mixup
    // every batch's: the teacher runs on each training batch, only the 12 validation items
    // are cached, and the losses are those of a run without the cache.
    let crops = Augmentation {
        crop: Some(RandomResizedCrop::default()),
        ..Augmentation::default()
    };
    let mixup = Augmentation {
        mixup: 0.2,
        ..Augmentation::default()
    };
    for augment in [crops, mixup] {
        let (entries, _) = cached_vs_plain(true, augment, 2);
        assert_eq!(entries, 12, "{augment:?}");
    }
}

#[test]
fn a_model_reused_on_other_images_gets_their_teacher_outputs() {
    // Same file names, labels, split and item indices; other pixels.
    let (_a, first) = tiny_data(16);
    let (_b, other) = tinted_data(16, 60);
    let teacher = net(Arch::ResNet34, 7);
    let student = net(Arch::ResNet18, 8);
    let cached = distill(
        twin(&student, Arch::ResNet18),
        Some(&teacher),
        soft_target_and_attention(),
        true,
    )
    .unwrap();
    let plain = distill(
        twin(&student, Arch::ResNet18),
        Some(&teacher),
        soft_target_and_attention(),
        false,
    )
    .unwrap();
    evaluate(&cached, &first.valid).unwrap();
    assert_eq!(cached.cached_teacher_items(), 12);
    let served = evaluate(&cached, &other.valid).unwrap();
    let computed = evaluate(&plain, &other.valid).unwrap();
    assert_eq!(
        cached.cached_teacher_items(),
        24,
        "other images, other keys"
    );
    let (s, c) = (served.kd.unwrap(), computed.kd.unwrap());
    assert!((s - c).abs() < 1e-6 * c.abs().max(1.0), "{s} vs {c}");
}

#[test]
fn bad_layer_names_and_missing_teachers_fail_before_training() {
    let student = net(Arch::ResNet18, 9);
    let teacher = net(Arch::ResNet34, 9);
    let at = Objective::lerp(
        LossConfig::attention(vec![LayerPair::new("layer1", "layer9")]),
        0.9,
    );
    let err = distill(student.clone(), Some(&teacher), at, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer9"), "{err}");
    let err = distill(student.clone(), None, soft_target_pairs(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("teacher"), "{err}");
    // FitNet across widths gets a connector; its output matches the teacher's channels.
    let fit = Objective::lerp(
        LossConfig::FitNet(kd_core::losses::FitNet {
            pairs: vec![LayerPair::new("layer2", "layer2")],
            scale: 1.0,
        }),
        0.5,
    );
    let wide = net(Arch::ResNet50, 9);
    let model = distill(student, Some(&wide), fit, false).unwrap();
    assert_eq!(model.connectors.taps, vec!["layer2"]);
}

/// fastai's `adam_step` with decoupled weight decay, written out in f64 for one scalar.
struct FastaiAdamRef {
    p: f64,
    m: f64,
    v: f64,
    t: i32,
}

impl FastaiAdamRef {
    fn step(&mut self, g: f64, lr: f64, beta_1: f64, wd: f64) {
        let (beta_2, eps) = (0.99, 1e-5);
        self.t += 1;
        self.p *= 1.0 - lr * wd;
        self.m = beta_1 * self.m + (1.0 - beta_1) * g;
        self.v = beta_2 * self.v + (1.0 - beta_2) * g * g;
        let m_hat = self.m / (1.0 - beta_1.powi(self.t));
        let v_hat = self.v / (1.0 - beta_2.powi(self.t));
        self.p -= lr * m_hat / (v_hat.sqrt() + eps);
    }
}

#[test]
fn fastai_adam_moves_beta_1_as_fastais_adam_step_does() {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};

    let device = Device::flex().autodiff();
    let linear: Linear = LinearConfig::new(3, 2).init(&device);
    let values = |t: Tensor<1>| t.to_data().iter::<f32>().collect::<Vec<_>>();
    let weight = |l: &Linear| values(l.weight.val().flatten(0, 1));
    let bias = |l: &Linear| values(l.bias.as_ref().unwrap().val());
    let start = |v: Vec<f32>| {
        v.into_iter()
            .map(|p| FastaiAdamRef {
                p: p as f64,
                m: 0.0,
                v: 0.0,
                t: 0,
            })
            .collect::<Vec<_>>()
    };
    let mut ref_w = start(weight(&linear));
    let mut ref_b = start(bias(&linear));

    let (mut optim, beta_1) = kd_train::fastai_adam(0.01);
    let mut linear = linear;
    let (lr, batch) = (0.1, 4.0);
    // Gradients that change size and sign, so the first moment depends on β1.
    let steps = [
        (1.0, 0.95),
        (-2.0, 0.9),
        (0.5, 0.85),
        (3.0, 0.88),
        (-1.0, 0.95),
    ];
    for (scale, b1) in steps {
        beta_1.set(b1);
        let x = Tensor::<2>::ones([batch as usize, 3], &device).mul_scalar(scale);
        let grads = linear.forward(x).sum().backward();
        let grads = GradientsParams::from_grads(grads, &linear);
        linear = optim.step(lr, linear, grads);
        // d(sum(xW + b))/dW = Σ_batch x = batch·scale; d/db = batch.
        for r in &mut ref_w {
            r.step(batch * scale, lr, b1, 0.01);
        }
        for r in &mut ref_b {
            r.step(batch, lr, b1, 0.0);
        }
    }
    let got = weight(&linear).into_iter().chain(bias(&linear));
    for (got, want) in got.zip(ref_w.iter().chain(&ref_b)) {
        assert!(
            (got as f64 - want.p).abs() < 1e-5,
            "Burn {got} vs fastai {}",
            want.p
        );
    }
}

/// A batch type of the user's own: plain tensors, and as many cache keys as it is told.
#[derive(Debug, Clone)]
struct MyBatch {
    x: burn::tensor::Tensor<4>,
    y: burn::tensor::Tensor<1, burn::tensor::Int>,
    keys: usize,
}

impl kd_core::DistillBatch for MyBatch {
    type Input = burn::tensor::Tensor<4>;
    fn inputs(&self) -> burn::tensor::Tensor<4> {
        self.x.clone()
    }
    fn targets(&self) -> Option<kd_core::Targets> {
        Some(self.y.clone().into())
    }
    fn without_autodiff(self) -> Self {
        Self {
            x: self.x.without_autodiff(),
            y: self.y.without_autodiff(),
            keys: self.keys,
        }
    }
    fn cache_keys(&self) -> Vec<Option<kd_core::ItemKey>> {
        vec![None; self.keys]
    }
}

#[test]
fn a_batch_type_of_ones_own_trains_and_a_wrong_key_count_is_named() {
    use burn::train::TrainStep;
    use kd_train::{DistillModel, FrozenTeacher, TeacherCache};
    let device = common::device();
    let batch = |keys| MyBatch {
        x: burn::tensor::Tensor::zeros([2, 3, 16, 16], &device),
        y: burn::tensor::Tensor::from_ints([0, 1], &device),
        keys,
    };
    let teacher = net(Arch::ResNet18, 13);
    let build = |probe: &MyBatch| {
        DistillModel::new(
            net(Arch::ResNet18, 14),
            Some(FrozenTeacher::new(&teacher)),
            soft_target_pairs(),
            probe,
            TeacherCache::default(),
        )
    };
    let err = build(&batch(1)).unwrap_err().to_string();
    assert!(
        err.contains("cache_keys") && err.contains("1 keys") && err.contains("2 items"),
        "{err}"
    );
    let model = build(&batch(0)).unwrap();
    let out = TrainStep::step(&model, batch(0));
    let loss: f32 = out.item.loss.into_scalar();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
}
