//! Several teachers behind one student: each term reads the teacher it names, an ensemble
//! reads its members' outputs, only the teachers read run (each with its own cache), and
//! naming mistakes stop the construction with the names.

mod common;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use common::{device, fit, net, quiet, tiny_data, twin};
use kd_core::{DistillBatch, Ensemble, LayerPair, LossConfig, Mix, Objective, Term, logit};
use kd_data::ImageBatch;
use kd_models::{Arch, FeatureModel, Network};
use kd_train::{DistillModel, FitConfig, FrozenTeacher, TeacherCache, Teachers, TrainError};

const T: f64 = 4.0;

fn soft() -> LossConfig {
    LossConfig::SoftTarget(kd_core::losses::SoftTarget { temperature: T })
}

fn attention() -> LossConfig {
    LossConfig::attention(LayerPair::zip(&["layer1"], &["layer1"]))
}

fn objective(terms: Vec<Term>) -> Objective {
    Objective {
        mix: Mix::Sum { ce: 0.0 },
        terms,
    }
}

fn build(
    student: Network,
    teachers: Teachers,
    objective: Objective,
) -> Result<DistillModel<Network, ImageBatch>, TrainError> {
    DistillModel::with_teachers(
        student,
        teachers,
        objective,
        &ImageBatch::zeros(2, 16, &device()),
        TeacherCache::default(),
    )
}

fn two(a: &Network, b: &Network) -> Teachers {
    Teachers::new()
        .with("a", FrozenTeacher::new(a))
        .with("b", FrozenTeacher::new(b))
}

fn first_batch() -> ImageBatch {
    let (_dir, data) = tiny_data(16);
    data.valid
        .iter()
        .next()
        .unwrap()
        .unwrap()
        .without_autodiff()
}

fn kd(model: &DistillModel<Network, ImageBatch>, batch: &ImageBatch) -> f64 {
    let (parts, _) = model.valid().loss(batch).unwrap();
    parts.kd.unwrap().into_scalar::<f32>() as f64
}

#[test]
fn each_term_reads_its_teacher_and_an_ensemble_its_members() {
    let (a, b) = (net(Arch::ResNet18, 31), net(Arch::ResNet34, 32));
    let student = net(Arch::ResNet18, 33);
    let batch = first_batch();
    // The same student with teacher a alone, and with a and b reading a by name.
    let alone = build(
        twin(&student, Arch::ResNet18),
        Teachers::one(FrozenTeacher::new(&a)),
        objective(vec![Term::new(soft())]),
    )
    .unwrap();
    let named = build(
        twin(&student, Arch::ResNet18),
        two(&a, &b),
        objective(vec![Term::new(soft()).reading("a")]),
    )
    .unwrap();
    let on_b = build(
        twin(&student, Arch::ResNet18),
        two(&a, &b),
        objective(vec![Term::new(soft()).reading("b")]),
    )
    .unwrap();
    assert_eq!(kd(&alone, &batch), kd(&named, &batch));
    assert_ne!(kd(&named, &batch), kd(&on_b, &batch));
    // An ensemble of both: SoftTarget towards Ensemble::combine of the two teachers' logits.
    let ensemble = Ensemble::mean("both", &["a", "b"], T).with_weights(&[1.0, 3.0]);
    let mixed = build(
        twin(&student, Arch::ResNet18),
        two(&a, &b).with_ensemble(ensemble.clone()),
        objective(vec![Term::new(soft()).reading("both")]),
    )
    .unwrap();
    let x = batch.inputs();
    let target = ensemble.combine(&[
        a.valid().forward_logits(x.clone()).rows(),
        b.valid().forward_logits(x.clone()).rows(),
    ]);
    let s = student.valid().forward_logits(x).rows();
    let want = logit::soft_target(s, target, T).into_scalar::<f32>() as f64;
    let got = kd(&mixed, &batch);
    assert!((got - want).abs() < 1e-5 * want.abs(), "{got} vs {want}");
}

#[test]
fn two_teachers_train_each_with_its_own_cache_and_unread_ones_never_run() {
    let (_dir, data) = tiny_data(16);
    let (a, b, unused) = (
        net(Arch::ResNet18, 41),
        net(Arch::ResNet34, 42),
        net(Arch::ResNet18, 43),
    );
    let teachers = two(&a, &b).with("unused", FrozenTeacher::new(&unused));
    let model = build(
        net(Arch::ResNet18, 44),
        teachers,
        objective(vec![
            Term::new(soft()).reading("a"),
            Term::new(attention()).reading("b"),
        ]),
    )
    .unwrap();
    let config = FitConfig {
        epochs: 1,
        ..FitConfig::default()
    };
    let (model, history) = fit(model, &data, &config, "two teachers", None, quiet()).unwrap();
    let epoch = &history.epochs[0];
    assert!(epoch.train_kd.is_some_and(|kd| kd.is_finite() && kd > 0.0));
    // a and b each cached every training and validation item; `unused` ran on none.
    let items = data.train.num_items() + data.valid.indices().len();
    assert_eq!(model.cached_teacher_items(), 2 * items);
    assert_eq!(model.teacher().unwrap().layer_paths(), a.layer_paths());
}

#[test]
fn naming_mistakes_stop_the_construction_with_the_names() {
    let (a, b) = (net(Arch::ResNet18, 51), net(Arch::ResNet18, 52));
    let student = || net(Arch::ResNet18, 53);
    let err =
        |teachers: Teachers, terms: Vec<Term>| match build(student(), teachers, objective(terms)) {
            Ok(_) => panic!("built"),
            Err(e) => e.to_string(),
        };
    let e = err(two(&a, &b), vec![Term::new(soft()).reading("c")]);
    assert!(e.contains("`c`") && e.contains("[a, b]"), "{e}");
    let e = err(two(&a, &b), vec![Term::new(soft())]);
    assert!(e.contains("which teacher") && e.contains("[a, b]"), "{e}");
    let both = || two(&a, &b).with_ensemble(Ensemble::mean("both", &["a", "b"], T));
    let e = err(both(), vec![Term::new(attention()).reading("both")]);
    assert!(e.contains("ensemble") && e.contains("Attention"), "{e}");
    let e = err(
        two(&a, &b).with_ensemble(Ensemble::mean("both", &["a", "z"], T)),
        vec![Term::new(soft()).reading("both")],
    );
    assert!(e.contains("`z`") && e.contains("[a, b]"), "{e}");
    let e = err(
        two(&a, &b).with("a", FrozenTeacher::new(&b)),
        vec![Term::new(soft()).reading("a")],
    );
    assert!(e.contains("two teachers are called `a`"), "{e}");
    let e = err(Teachers::new(), vec![Term::new(soft())]);
    assert!(e.contains("none was given"), "{e}");
}
