//! Deep mutual learning: two students on the same batches, one module under Burn's
//! `Learner`, each student with its own row of metrics, each pulled towards the other's
//! predictions.

mod common;

use burn::module::Module;
use burn::tensor::Tensor;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;

use common::{distill, net, quiet, recipe, soft_target_pairs, stop_in_epoch_1, tiny_data, twin};
use kd_core::Objective;
use kd_data::DataBundle;
use kd_models::{Arch, Network};
use kd_train::report::SharedReporter;
use kd_train::{FitConfig, Fitted, Recipe, TrainError, load_trained_student};

type Students = Vec<Fitted<Network, kd_data::ImageBatch>>;

fn config(epochs: usize, lr: f64) -> FitConfig {
    FitConfig {
        epochs,
        lr,
        weight_decay: 0.01,
        ..FitConfig::default()
    }
}

fn names() -> Vec<String> {
    vec!["dml · student 1".into(), "dml · student 2".into()]
}

fn alone(net: &Network) -> common::Model {
    distill(
        twin(net, Arch::ResNet18),
        None,
        Objective::cross_entropy_only(),
        false,
    )
    .unwrap()
}

fn mutual(
    a: &Network,
    b: &Network,
    weight: f64,
    data: &DataBundle,
    config: &FitConfig,
    checkpoints: Option<&std::path::Path>,
    reporter: SharedReporter,
) -> Result<Students, TrainError> {
    mutual_of(
        vec![alone(a), alone(b)],
        weight,
        data,
        config,
        checkpoints,
        reporter,
    )
}

fn mutual_of(
    students: Vec<common::Model>,
    weight: f64,
    data: &DataBundle,
    config: &FitConfig,
    checkpoints: Option<&std::path::Path>,
    reporter: SharedReporter,
) -> Result<Students, TrainError> {
    let names = names();
    let count = students.len().min(2);
    recipe(config, "dml", checkpoints, reporter).fit_mutual(
        students,
        &names[..count],
        weight,
        Arc::new(data.train.restarted()),
        Arc::new(data.valid.clone()),
    )
}

/// Every weight of a network, flattened, in f64.
fn weights(net: &Network) -> Vec<f64> {
    let mut values = Vec::new();
    struct Collect<'a>(&'a mut Vec<f64>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            self.0
                .extend(p.val().into_data().convert::<f64>().iter::<f64>());
        }
    }
    net.visit(&mut Collect(&mut values));
    values
}

fn max_gap(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `CE(z, y) + KL(softmax(peer) ‖ softmax(z))`, batch means, in f64 from the logits' values.
fn ce_plus_kl(z: &[f64], peer: &[f64], y: &[i64], classes: usize) -> f64 {
    let log_softmax = |row: &[f64]| {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        row.iter().map(|v| v - lse).collect::<Vec<_>>()
    };
    let n = y.len();
    let mut total = 0.0;
    for i in 0..n {
        let lq = log_softmax(&z[i * classes..(i + 1) * classes]);
        let lp = log_softmax(&peer[i * classes..(i + 1) * classes]);
        total -= lq[y[i] as usize];
        total += (0..classes)
            .map(|c| lp[c].exp() * (lp[c] - lq[c]))
            .sum::<f64>();
    }
    total / n as f64
}

#[test]
fn each_students_loss_is_its_cross_entropy_plus_the_kl_to_the_others_prediction() {
    let (_dir, data) = tiny_data(16);
    let (a, b) = (net(Arch::ResNet18, 1), net(Arch::ResNet18, 2));
    // Learning rate 0: every batch of the epoch sees the initial weights, so the recorded
    // training loss is the mean over the epoch's batches of the formula on those weights.
    let fitted = mutual(&a, &b, 1.0, &data, &config(1, 0.0), None, quiet()).unwrap();
    let (a2, b2) = (twin(&a, Arch::ResNet18), twin(&b, Arch::ResNet18));
    let logits = |net: &Network, x: Tensor<4>| -> Vec<f64> {
        use kd_core::FeatureModel;
        let plan = net.tap_plan(&[]).unwrap();
        net.forward_taps(x, &plan)
            .logits
            .to_data()
            .convert::<f64>()
            .iter::<f64>()
            .collect()
    };
    let (mut expected_a, mut expected_b, mut batches) = (0.0, 0.0, 0);
    let loader = data.train.restarted();
    for batch in burn::data::dataloader::DataLoader::iter(&loader) {
        let batch = batch.unwrap();
        let y: Vec<i64> = batch
            .targets
            .to_data()
            .convert::<i64>()
            .iter::<i64>()
            .collect();
        let (za, zb) = (
            logits(&a2, batch.images.clone()),
            logits(&b2, batch.images.clone()),
        );
        expected_a += ce_plus_kl(&za, &zb, &y, 2);
        expected_b += ce_plus_kl(&zb, &za, &y, 2);
        batches += 1;
    }
    let (expected_a, expected_b) = (expected_a / batches as f64, expected_b / batches as f64);
    let got: Vec<f64> = fitted.iter().map(|(_, h)| h.epochs[0].train_loss).collect();
    assert!(
        (got[0] - expected_a).abs() < 1e-4 && (got[1] - expected_b).abs() < 1e-4,
        "recorded {got:?}, formula {expected_a} and {expected_b}"
    );
    assert_eq!(fitted[0].1.name, names()[0]);
    assert_eq!(fitted[1].1.name, names()[1]);
    // The distillation column is the mutual term: the total minus the cross-entropy.
    for (_, h) in &fitted {
        let e = &h.epochs[0];
        let kd = e.train_kd.expect("a mutual run records its KL");
        assert!(
            kd > 0.0 && (e.train_ce + kd - e.train_loss).abs() < 1e-5,
            "{e:?}"
        );
    }
}

#[test]
fn with_weight_zero_each_student_trains_as_it_would_alone_and_with_weight_one_it_does_not() {
    let (_dir, data) = tiny_data(16);
    let (a, b) = (net(Arch::ResNet18, 3), net(Arch::ResNet18, 4));
    let config = config(2, 2e-3);
    let apart: Vec<Vec<f64>> = [&a, &b]
        .iter()
        .map(|n| {
            let (m, _) = Recipe::new(config.clone())
                .fit(
                    alone(n),
                    Arc::new(data.train.restarted()),
                    Arc::new(data.valid.clone()),
                )
                .unwrap();
            weights(&m.student)
        })
        .collect();
    let zero = mutual(&a, &b, 0.0, &data, &config, None, quiet()).unwrap();
    for (i, (m, _)) in zero.iter().enumerate() {
        let gap = max_gap(&weights(&m.student), &apart[i]);
        assert!(
            gap < 1e-5,
            "student {i} with weight 0 differs from alone by {gap}"
        );
    }
    let one = mutual(&a, &b, 1.0, &data, &config, None, quiet()).unwrap();
    let gap = max_gap(&weights(&one[0].0.student), &apart[0]);
    assert!(gap > 1e-4, "the mutual term changed nothing ({gap})");
}

#[test]
fn a_killed_mutual_run_resumes_to_the_same_students_each_readable_from_the_checkpoint() {
    let (_dir, data) = tiny_data(16);
    let (a, b) = (net(Arch::ResNet18, 5), net(Arch::ResNet18, 6));
    let config = config(3, 2e-3);
    let straight = tempfile::tempdir().unwrap();
    let full = mutual(&a, &b, 1.0, &data, &config, Some(straight.path()), quiet()).unwrap();
    let dir = straight.path().join("epoch-002");
    assert!(dir.join("model.bpk").is_file() && dir.join("optim.bpk").is_file());
    // Each student loads back from the pair's checkpoint, with its own history.
    for (i, (trained, history)) in full.iter().enumerate() {
        let mut student = alone(&net(Arch::ResNet18, 99));
        let read = load_trained_student(&mut student, straight.path(), Some(i)).unwrap();
        assert_eq!(&read, history);
        assert_eq!(weights(&student.student), weights(&trained.student));
    }
    let killed = tempfile::tempdir().unwrap();
    let path = killed.path().to_path_buf();
    let students = vec![alone(&a), alone(&b)];
    let stop = stop_in_epoch_1(students[0].guard().interrupter());
    let stopped = mutual_of(students, 1.0, &data, &config, Some(&path), stop);
    assert!(
        matches!(stopped, Err(TrainError::Stopped(_))),
        "{:?}",
        stopped.err()
    );
    assert!(path.join("epoch-000").is_dir() && !path.join("epoch-001").exists());
    let resumed = mutual(&a, &b, 1.0, &data, &config, Some(&path), quiet()).unwrap();
    for i in 0..2 {
        let gap = max_gap(
            &weights(&resumed[i].0.student),
            &weights(&full[i].0.student),
        );
        assert!(gap < 1e-6, "student {i} after resume differs by {gap}");
        assert_eq!(resumed[i].1.epochs.len(), 3);
        assert_eq!(
            resumed[i].1.epochs[2].accuracy,
            full[i].1.epochs[2].accuracy
        );
    }
}

#[test]
fn a_mutual_run_directory_of_kd_0_1_0_is_refused_with_what_to_do() {
    let (_dir, data) = tiny_data(16);
    let (a, b) = (net(Arch::ResNet18, 12), net(Arch::ResNet18, 13));
    // kd 0.1.0 kept a folder, and an optimizer, per student.
    let old = tempfile::tempdir().unwrap();
    for k in 1..=2 {
        std::fs::create_dir_all(old.path().join(format!("student-{k}/epoch-000"))).unwrap();
    }
    let e = mutual(
        &a,
        &b,
        1.0,
        &data,
        &config(1, 1e-3),
        Some(old.path()),
        quiet(),
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("kd 0.1.0") && message.contains("--force"),
        "{message}"
    );
}

#[test]
fn dml_with_a_teacher_adds_the_teachers_terms_and_one_student_is_refused() {
    let (_dir, data) = tiny_data(16);
    let teacher = net(Arch::ResNet18, 7);
    let (a, b) = (net(Arch::ResNet18, 8), net(Arch::ResNet18, 9));
    let student = |n: &Network| {
        distill(
            twin(n, Arch::ResNet18),
            Some(&teacher),
            soft_target_pairs(),
            true,
        )
        .unwrap()
    };
    let fitted = mutual_of(
        vec![student(&a), student(&b)],
        1.0,
        &data,
        &config(1, 1e-3),
        None,
        quiet(),
    )
    .unwrap();
    for (m, h) in &fitted {
        assert!(m.has_teacher() && m.cached_teacher_items() > 0);
        let e = &h.epochs[0];
        assert!(e.valid_kd.is_some() && e.train_kd.unwrap().is_finite());
    }

    let one = mutual_of(
        vec![student(&a)],
        1.0,
        &data,
        &config(1, 1e-3),
        None,
        quiet(),
    );
    let message = one.expect_err("one student is refused").to_string();
    assert!(
        message.contains("two students or more") && message.contains("got 1"),
        "{message}"
    );
}

#[test]
fn burns_learner_trains_every_student_of_a_mutual_model_with_a_row_each() {
    use burn::train::SupervisedTraining;
    use kd_train::{MutualModel, Quiet};

    let (_dir, data) = tiny_data(16);
    let (a, b) = (net(Arch::ResNet18, 10), net(Arch::ResNet18, 11));
    let model = MutualModel::new(vec![alone(&a), alone(&b)], 1.0).unwrap();
    let before: Vec<Vec<f64>> = model.students.iter().map(|s| weights(&s.student)).collect();
    let train = data.train.restarted();
    let learner = config(1, 1e-3).learner(model, train.num_items());
    let out = tempfile::tempdir().unwrap();
    let result = SupervisedTraining::new(out.path(), Arc::new(train), Arc::new(data.valid.clone()))
        .renderer(Box::new(Quiet))
        .with_application_logger(None)
        .num_epochs(1)
        .launch(learner);
    for (i, student) in result.model.students.iter().enumerate() {
        let gap = max_gap(&weights(&student.student), &before[i]);
        assert!(gap > 1e-6, "student {i} did not train ({gap})");
    }
    // The recipe gives each student a row; a lone student is refused.
    let fitted = mutual(&a, &b, 1.0, &data, &config(1, 1e-3), None, quiet()).unwrap();
    assert_eq!(fitted.len(), 2);
    assert!(fitted.iter().all(|(_, h)| h.epochs.len() == 1));
    assert_ne!(
        fitted[0].1.epochs[0].train_loss,
        fitted[1].1.epochs[0].train_loss
    );
    let one = MutualModel::new(vec![alone(&a)], 1.0).map(|_| ());
    assert!(matches!(one, Err(TrainError::Mutual(_))));
}
