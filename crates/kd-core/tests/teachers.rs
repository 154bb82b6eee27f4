//! Several teachers: terms read the teacher they name, an ensemble's logits give the weighted
//! mean of its members' softened probabilities, and naming mistakes are reported by name.
//! References are written out by hand in f64.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use kd_core::{
    Connectors, Ensemble, LayerPair, LossConfig, LossError, Mix, Objective, Outputs,
    TeacherOutputs, Term,
};

fn device() -> Device {
    Device::flex()
}

fn logits(values: &[f64], classes: usize) -> Tensor<2> {
    let v: Vec<f32> = values.iter().map(|x| *x as f32).collect();
    Tensor::<1>::from_floats(v.as_slice(), &device()).reshape([values.len() / classes, classes])
}

fn outputs(values: &[f64], classes: usize) -> Outputs {
    Outputs::new(logits(values, classes))
}

fn softmax(z: &[f64], t: f64) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| ((v - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn rows(t: Tensor<2>) -> Vec<Vec<f64>> {
    let [_, c] = t.dims();
    let v: Vec<f64> = t.to_data().iter::<f32>().map(f64::from).collect();
    v.chunks(c).map(|r| r.to_vec()).collect()
}

const A: [f64; 6] = [2.0, -1.0, 0.5, 0.0, 3.0, -2.0];
const B: [f64; 6] = [-0.5, 1.5, 0.0, 4.0, -1.0, 1.0];

#[test]
fn an_ensemble_softened_is_the_weighted_mean_of_its_members_softened() {
    for (weights, t) in [(vec![], 4.0), (vec![3.0, 1.0], 2.0), (vec![0.0, 2.0], 1.0)] {
        let ens = Ensemble::mean("both", &["a", "b"], t).with_weights(&weights);
        assert!(ens.problems().is_empty());
        let z = ens.combine(&[logits(&A, 3), logits(&B, 3)]);
        let w = match weights.as_slice() {
            [] => [0.5, 0.5],
            [x, y] => [x / (x + y), y / (x + y)],
            _ => unreachable!(),
        };
        for (row, got) in rows(z).iter().enumerate() {
            let pa = softmax(&A[row * 3..row * 3 + 3], t);
            let pb = softmax(&B[row * 3..row * 3 + 3], t);
            let got = softmax(got, t);
            for c in 0..3 {
                let want = w[0] * pa[c] + w[1] * pb[c];
                assert!(
                    (got[c] - want).abs() < 1e-6,
                    "weights {weights:?}, T {t}: row {row} class {c}: {} vs {want}",
                    got[c]
                );
            }
        }
    }
}

#[test]
fn soft_target_reading_an_ensemble_is_the_kl_to_the_mixture() {
    let t = 4.0;
    let student = [0.3, 0.1, -0.2, 1.0, -1.0, 0.5];
    let ens = Ensemble::mean("both", &["a", "b"], t);
    let mut teachers: TeacherOutputs = BTreeMap::new();
    teachers.insert("a".into(), outputs(&A, 3));
    teachers.insert("b".into(), outputs(&B, 3));
    let mixed = ens.combine(&[
        teachers["a"].logits.clone().rows(),
        teachers["b"].logits.clone().rows(),
    ]);
    teachers.insert("both".into(), Outputs::new(mixed));
    let objective = Objective {
        mix: Mix::Sum { ce: 0.0 },
        terms: vec![
            Term::new(LossConfig::SoftTarget(kd_core::losses::SoftTarget {
                temperature: t,
            }))
            .reading("both"),
        ],
    };
    let targets = Tensor::from_ints([0, 1], &device());
    let parts = objective
        .compute_with(&outputs(&student, 3), &teachers, &targets.into(), 0.0)
        .unwrap();
    let got = parts.kd.unwrap().into_scalar::<f32>() as f64;
    // T² · mean over rows of KL(p_mix ‖ softmax(s/T)).
    let mut kl = 0.0;
    for row in 0..2 {
        let r = row * 3..row * 3 + 3;
        let (pa, pb, q) = (
            softmax(&A[r.clone()], t),
            softmax(&B[r.clone()], t),
            softmax(&student[r], t),
        );
        for c in 0..3 {
            let p = 0.5 * pa[c] + 0.5 * pb[c];
            kl += p * (p / q[c]).ln();
        }
    }
    let want = kl / 2.0 * t * t;
    assert!((got - want).abs() < 1e-5 * want.abs(), "{got} vs {want}");
}

#[test]
fn each_term_reads_the_teacher_it_names() {
    let t = 2.0;
    let student = outputs(&[0.0; 6], 3);
    let mut teachers: TeacherOutputs = BTreeMap::new();
    teachers.insert("a".into(), outputs(&A, 3));
    teachers.insert("b".into(), outputs(&B, 3));
    let targets = Tensor::from_ints([0, 1], &device());
    let kd = |term: Term| {
        let objective = Objective {
            mix: Mix::Sum { ce: 0.0 },
            terms: vec![term],
        };
        objective
            .compute_with(&student, &teachers, &targets.clone().into(), 0.0)
            .map(|p| p.kd.unwrap().into_scalar::<f32>() as f64)
    };
    let st = LossConfig::SoftTarget(kd_core::losses::SoftTarget { temperature: t });
    let one = |z: &[f64]| {
        let single = Objective::lerp(st.clone(), 1.0);
        single
            .compute(&student, Some(&outputs(z, 3)), &targets, 0.0)
            .unwrap()
            .kd
            .unwrap()
            .into_scalar::<f32>() as f64
    };
    let (on_a, on_b) = (one(&A), one(&B));
    assert_ne!(on_a, on_b);
    assert_eq!(kd(Term::new(st.clone()).reading("a")).unwrap(), on_a);
    assert_eq!(kd(Term::new(st.clone()).reading("b")).unwrap(), on_b);
    // No name with two teachers, or a name that is not one: an error naming the teachers.
    let err = kd(Term::new(st.clone())).unwrap_err();
    assert!(matches!(err, LossError::AmbiguousTeacher { .. }), "{err}");
    assert!(err.to_string().contains("[a, b]"), "{err}");
    let err = kd(Term::new(st).reading("c")).unwrap_err();
    assert!(
        err.to_string().contains("`c`") && err.to_string().contains("[a, b]"),
        "{err}"
    );
}

#[test]
fn objectives_list_each_teachers_taps_and_connectors_follow_the_teacher_read() {
    let pairs = |t: &str| vec![LayerPair::new("layer1", t)];
    let objective = Objective {
        mix: Mix::default(),
        terms: vec![
            Term::new(LossConfig::SoftTarget(kd_core::losses::SoftTarget {
                temperature: 4.0,
            }))
            .reading("both"),
            Term::new(LossConfig::FitNet(kd_core::losses::FitNet {
                pairs: pairs("wide"),
                scale: 1.0,
            }))
            .reading("a"),
            Term::new(LossConfig::attention(pairs("x"))).reading("b"),
        ],
    };
    let names = ["a", "b", "both", "unused"];
    assert_eq!(objective.teacher_taps_of("a", &names), ["wide"]);
    assert_eq!(objective.teacher_taps_of("b", &names), ["x"]);
    assert!(objective.teacher_taps_of("both", &names).is_empty());
    assert_eq!(objective.teachers_read(&names), ["a", "b", "both"]);
    // FitNet's pair needs 64 → 256 channels from teacher a; attention needs no connector.
    let student = BTreeMap::from([("layer1".to_string(), 64)]);
    let widths = BTreeMap::from([
        ("a".to_string(), BTreeMap::from([("wide".to_string(), 256)])),
        ("b".to_string(), BTreeMap::from([("x".to_string(), 32)])),
        ("both".to_string(), BTreeMap::new()),
    ]);
    let conns = Connectors::for_teachers(&objective, &student, &widths, &device()).unwrap();
    assert_eq!(conns.taps, ["layer1"]);
    assert_eq!(conns.layers[0].conv.weight.dims(), [256, 64, 1, 1]);
}

#[test]
fn bad_ensembles_are_described() {
    let cases = [
        (Ensemble::mean("e", &[], 1.0), "no members"),
        (Ensemble::mean("e", &["a", "a"], 1.0), "twice"),
        (
            Ensemble::mean("e", &["a", "b"], 1.0).with_weights(&[1.0]),
            "1 weights for 2 members",
        ),
        (
            Ensemble::mean("e", &["a", "b"], 1.0).with_weights(&[1.0, -1.0]),
            "≥ 0",
        ),
        (
            Ensemble::mean("e", &["a", "b"], 1.0).with_weights(&[0.0, 0.0]),
            "every weight is 0",
        ),
        (Ensemble::mean("e", &["a", "b"], 0.0), "temperature"),
    ];
    for (ens, want) in cases {
        let problems = ens.problems().join("; ");
        assert!(problems.contains(want), "{problems} lacks {want}");
    }
}

#[test]
fn huge_ensemble_weights_normalise_and_tiny_temperatures_are_refused() {
    let mut e = Ensemble::mean("both", &["a", "b"], 4.0);
    e.weights = vec![1e308, 1e308];
    assert!(e.problems().is_empty(), "{:?}", e.problems());
    assert_eq!(e.normalised_weights(), [0.5, 0.5]);
    let mixed = e.combine(&[logits(&A, 3), logits(&B, 3)]);
    let values: Vec<f32> = mixed.into_data().iter::<f32>().collect();
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    // 1e-300 passes an f64 check but is 0 as the f32 the logits are divided by.
    // Named as written, not as 300 digits.
    let tiny = Ensemble::mean("both", &["a", "b"], 1e-300);
    assert!(
        tiny.problems()
            .iter()
            .any(|p| p.contains("temperature = 1e-300") && p.len() < 120),
        "{:?}",
        tiny.problems()
    );
}
