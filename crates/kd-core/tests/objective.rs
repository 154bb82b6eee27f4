//! Combination, schedules, connectors, layer matching, configs and error reporting.

use std::collections::BTreeMap;

use burn::tensor::{Device, Int, Tensor};
use kd_core::Outputs;
use kd_core::losses::SoftTarget;
use kd_core::{
    Connectors, KdInput, KdLoss, LayerPair, LossConfig, LossError, Mix, Objective, Schedule, Term,
};

fn device() -> Device {
    Device::flex()
}

fn out(logits: Vec<f32>, batch: usize, taps: &[(&str, Tensor<4>)]) -> Outputs {
    let classes = logits.len() / batch;
    Outputs {
        logits: Tensor::<1>::from_floats(logits.as_slice(), &device())
            .reshape([batch, classes])
            .into(),
        taps: taps
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone().into()))
            .collect(),
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Independent reference: CE and soft-target KL written out by hand for a 2×2 batch.
fn hand_ce_and_soft_target(s: &[f64], t: &[f64], y: &[usize], temp: f64) -> (f64, f64) {
    let softmax = |z: &[f64], tau: f64| {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| ((v - m) / tau).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect::<Vec<_>>()
    };
    let mut ce = 0.0;
    let mut kl = 0.0;
    for b in 0..2 {
        let (sr, tr) = (&s[b * 2..b * 2 + 2], &t[b * 2..b * 2 + 2]);
        ce -= softmax(sr, 1.0)[y[b]].ln();
        let (q, p) = (softmax(sr, temp), softmax(tr, temp));
        kl += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
    }
    (ce / 2.0, kl / 2.0 * temp * temp)
}

#[test]
fn lerp_and_sum_mixes_match_hand_computation() {
    let s = [1.0, -0.5, 0.2, 0.7];
    let t = [2.0, -1.0, -0.3, 1.5];
    let y = [0usize, 1];
    let (ce, kd) = hand_ce_and_soft_target(&s, &t, &y, 5.0);
    let so = out(s.iter().map(|v| *v as f32).collect(), 2, &[]);
    let to = out(t.iter().map(|v| *v as f32).collect(), 2, &[]);
    let targets = Tensor::<1, Int>::from_ints([0, 1], &device());

    let lerp = Objective::lerp(LossConfig::soft_target(), 0.5);
    let parts = lerp.compute(&so, Some(&to), &targets, 0.3).unwrap();
    assert!((scalar(parts.ce.clone().unwrap()) - ce).abs() < 1e-5);
    assert!((scalar(parts.kd.clone().unwrap()) - kd).abs() < 1e-5);
    assert!((parts.check_finite().unwrap() - (0.5 * ce + 0.5 * kd)).abs() < 1e-5);

    let sum = Objective {
        mix: Mix::Sum { ce: 0.25 },
        terms: vec![Term {
            weight: 3.0,
            ..Term::new(LossConfig::soft_target())
        }],
    };
    let total = sum
        .compute(&so, Some(&to), &targets, 0.0)
        .unwrap()
        .check_finite()
        .unwrap();
    assert!((total - (0.25 * ce + 3.0 * kd)).abs() < 1e-4);

    // Weight schedule: fasterai's cos ramp at 0 and at the end.
    let ramp = Objective {
        mix: Mix::Lerp {
            weight: 0.8,
            schedule: Schedule::COS_RAMP,
        },
        terms: vec![Term::new(LossConfig::soft_target())],
    };
    let start = ramp
        .compute(&so, Some(&to), &targets, 0.0)
        .unwrap()
        .check_finite()
        .unwrap();
    let end = ramp
        .compute(&so, Some(&to), &targets, 1.0)
        .unwrap()
        .check_finite()
        .unwrap();
    assert!((start - ce).abs() < 1e-5);
    assert!((end - (0.2 * ce + 0.8 * kd)).abs() < 1e-5);

    // Temperature schedule: scale 2 at the end gives T = 10.
    let hot = Objective {
        mix: Mix::Sum { ce: 0.0 },
        terms: vec![Term {
            temperature: Schedule::Linear {
                start: 1.0,
                end: 2.0,
            },
            ..Term::new(LossConfig::soft_target())
        }],
    };
    let (_, kd10) = hand_ce_and_soft_target(&s, &t, &y, 10.0);
    let v = hot
        .compute(&so, Some(&to), &targets, 1.0)
        .unwrap()
        .check_finite()
        .unwrap();
    assert!((v - kd10).abs() < 1e-5);

    // No terms: plain cross-entropy, no teacher needed.
    let alone = Objective::cross_entropy_only();
    assert!(!alone.needs_teacher());
    let v = alone
        .compute(&so, None, &targets, 0.0)
        .unwrap()
        .check_finite()
        .unwrap();
    assert!((v - ce).abs() < 1e-5);
}

#[test]
fn errors_name_the_loss_the_taps_and_the_shapes() {
    let f = |c: usize, h: usize| Tensor::<4>::ones([2, c, h, h], &device());
    let so = out(vec![0.0; 4], 2, &[("layer1", f(64, 8))]);
    let to = out(vec![0.0; 6], 2, &[("0.4", f(256, 8))]);
    let y = Tensor::<1, Int>::from_ints([0, 1], &device());
    let input = KdInput {
        student: &so,
        teacher: &to,
        targets: Some(&y),
        rows: None,
        temperature_scale: 1.0,
        memory: None,
    };

    let msg = LossConfig::soft_target()
        .compute(&input)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("SoftTarget") && msg.contains("[2, 2]") && msg.contains("[2, 3]"),
        "{msg}"
    );

    let fit = LossConfig::FitNet(kd_core::losses::FitNet {
        pairs: vec![LayerPair::new("layer1", "0.4")],
        scale: 1.0,
    });
    let msg = fit.compute(&input).unwrap_err().to_string();
    assert!(
        msg.contains("FitNet") && msg.contains("layer1 ↔ 0.4") && msg.contains("connector"),
        "{msg}"
    );

    let at = LossConfig::attention(vec![LayerPair::new("layer2", "0.4")]);
    let err = at.compute(&input).unwrap_err();
    assert!(matches!(&err, LossError::MissingTap { side: "student", tap, .. } if tap == "layer2"));
    assert!(
        err.to_string().contains("layer1"),
        "lists what is available: {err}"
    );
    // Attention tolerates different channel counts.
    assert!(
        LossConfig::attention(vec![LayerPair::new("layer1", "0.4")])
            .compute(&input)
            .is_ok()
    );

    let so2 = out(vec![0.0; 4], 2, &[]);
    let to2 = out(vec![0.0; 4], 2, &[]);
    let no_targets = KdInput {
        student: &so2,
        teacher: &to2,
        targets: None,
        rows: None,
        temperature_scale: 1.0,
        memory: None,
    };
    let dkd = LossConfig::DecoupledKd(kd_core::losses::DecoupledKd {
        temperature: 4.0,
        alpha: 1.0,
        beta: 8.0,
        normalize: false,
    });
    assert_eq!(
        dkd.compute(&no_targets).unwrap_err(),
        LossError::MissingTargets {
            loss: "DecoupledKD"
        }
    );

    let no_pairs = LossConfig::attention(vec![]);
    assert_eq!(
        no_pairs.compute(&input).unwrap_err(),
        LossError::NoPairs { loss: "Attention" }
    );
}

#[test]
fn a_nan_input_is_reported_with_the_loss_that_produced_it() {
    let so = out(vec![f32::NAN, 0.0, 1.0, 0.0], 2, &[]);
    let to = out(vec![0.0, 1.0, 1.0, 0.0], 2, &[]);
    let y = Tensor::<1, Int>::from_ints([0, 1], &device());
    let parts = Objective::lerp(LossConfig::soft_target(), 0.5)
        .compute(&so, Some(&to), &y, 0.0)
        .unwrap();
    let err = parts.check_finite().unwrap_err();
    assert!(matches!(err, LossError::NonFinite { .. }), "{err:?}");
    // Teacher NaN: CE stays finite, the distillation term is named.
    let so = out(vec![0.0, 1.0, 1.0, 0.0], 2, &[]);
    let to = out(vec![f32::NAN, 1.0, 1.0, 0.0], 2, &[]);
    let err = Objective::lerp(LossConfig::soft_target(), 0.5)
        .compute(&so, Some(&to), &y, 0.0)
        .unwrap()
        .check_finite()
        .unwrap_err();
    assert!(
        matches!(
            err,
            LossError::NonFinite {
                loss: "SoftTarget",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("SoftTarget"));
}

#[test]
fn connectors_appear_only_where_channels_differ_and_fix_them() {
    let pairs = vec![
        LayerPair::new("layer1", "layer1"),
        LayerPair::new("layer2", "layer2"),
    ];
    let objective = Objective::lerp(
        LossConfig::FitNet(kd_core::losses::FitNet {
            pairs: pairs.clone(),
            scale: 1.0,
        }),
        0.5,
    );
    let student = BTreeMap::from([("layer1".to_string(), 64), ("layer2".to_string(), 128)]);
    let teacher = BTreeMap::from([("layer1".to_string(), 64), ("layer2".to_string(), 512)]);
    let conns = Connectors::for_objective(&objective, &student, &teacher, &device()).unwrap();
    assert_eq!(conns.taps, vec!["layer2"]);
    let so = out(
        vec![0.0; 4],
        2,
        &[
            ("layer1", Tensor::ones([2, 64, 4, 4], &device())),
            ("layer2", Tensor::ones([2, 128, 2, 2], &device())),
        ],
    );
    let mapped = conns.apply(so);
    assert_eq!(mapped.taps["layer2"].dims(), [2, 512, 2, 2]);
    assert_eq!(mapped.taps["layer1"].dims(), [2, 64, 4, 4]);
    // Attention needs no connector.
    let at = Objective::lerp(LossConfig::attention(pairs), 0.5);
    assert!(
        Connectors::for_objective(&at, &student, &teacher, &device())
            .unwrap()
            .taps
            .is_empty()
    );
    // A tap without a known channel count is an error naming it.
    let err =
        Connectors::for_objective(&objective, &BTreeMap::new(), &teacher, &device()).unwrap_err();
    assert!(err.to_string().contains("layer1"));
}

#[test]
fn losses_round_trip_through_toml_and_reject_unknown_keys() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Losses {
        losses: Vec<LossConfig>,
    }
    let text = r#"
        [[losses]]
        kind = "attention"
        pairs = [{ student = "layer1", teacher = "0.4" }]
        [[losses]]
        kind = "soft_target"
        [[losses]]
        kind = "logits"
    "#;
    let config: Losses = toml::from_str(text).unwrap();
    assert_eq!(config.losses.len(), 3);
    assert_eq!(config.losses[1], SoftTarget::new(5.0).into());
    assert_eq!(config.losses[0].pairs(), [LayerPair::new("layer1", "0.4")]);
    let again: Losses = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);

    let bad = "[[losses]]\nkind = \"soft_target\"\ntemprature = 3.0";
    let err = toml::from_str::<Losses>(bad).unwrap_err().to_string();
    assert!(err.contains("temprature"), "{err}");
    let bad = "[[losses]]\nkind = \"logits\"\ntemperature = 3.0";
    let err = toml::from_str::<Losses>(bad).unwrap_err().to_string();
    assert!(
        err.contains("temperature"),
        "a key of no parameter is refused: {err}"
    );
    let bad = "[[losses]]\nkind = \"soft_targets\"";
    let err = toml::from_str::<Losses>(bad).unwrap_err().to_string();
    assert!(
        err.contains("soft_target"),
        "lists the allowed kinds: {err}"
    );
}

#[test]
fn weights_and_temperatures_are_checked_for_every_value_training_will_see() {
    let problem = |objective: Objective| match objective.check_values() {
        Err(e @ LossError::Setting { .. }) => e.to_string(),
        other => panic!("expected a setting error, got {other:?}"),
    };
    // 2e-38 is a normal f32 with a finite reciprocal, yet logits divided by it overflow.
    for t in [0.0, -4.0, 1e-300, 2e-38, 1e6, f64::NAN, f64::INFINITY] {
        let e = problem(Objective::lerp(SoftTarget::new(t), 0.5));
        assert!(
            e.contains("SoftTarget") && e.contains("temperature"),
            "{t}: {e}"
        );
    }
    // A temperature schedule starting at 0, a weight schedule ending past what f32 holds.
    let ramp = |start, end| Schedule::Linear { start, end };
    let e = problem(Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![Term {
            temperature: ramp(0.0, 1.0),
            ..Term::new(SoftTarget::new(4.0))
        }],
    });
    assert!(e.contains("temperature at the start"), "{e}");
    let e = problem(Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![Term {
            schedule: ramp(-5.0, 1e308),
            ..Term::new(SoftTarget::new(4.0))
        }],
    });
    assert!(e.contains("weight at the start") && e.contains("-5"), "{e}");
    let e = problem(Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![Term {
            schedule: ramp(1.0, 1e308),
            ..Term::new(SoftTarget::new(4.0))
        }],
    });
    assert!(e.contains("weight at the end"), "{e}");
    // What fasterai's tutorial uses passes.
    let fine = Objective {
        mix: Mix::Lerp {
            weight: 0.9,
            schedule: Schedule::COS_RAMP,
        },
        terms: vec![Term::new(SoftTarget::new(4.0))],
    };
    fine.check_values().unwrap();
}

#[test]
fn divergence_shares_outside_their_range_are_refused_before_training() {
    use kd_core::losses::{Jsd, SkewKl, SkewReverseKl};
    let problem = |loss: LossConfig| match Objective::lerp(loss, 0.5).check_values() {
        Err(e @ LossError::Setting { .. }) => e.to_string(),
        other => panic!("expected a setting error, got {other:?}"),
    };
    for beta in [-0.1, 1.5, f64::NAN] {
        let e = problem(Jsd::new(beta).into());
        assert!(e.contains("JSD") && e.contains("beta"), "{beta}: {e}");
    }
    for alpha in [-0.5, 1.0] {
        let e = problem(
            SkewKl {
                alpha,
                temperature: 1.0,
            }
            .into(),
        );
        assert!(e.contains("SkewKL") && e.contains("alpha"), "{alpha}: {e}");
        let e = problem(
            SkewReverseKl {
                alpha,
                temperature: 1.0,
            }
            .into(),
        );
        assert!(e.contains("SkewReverseKL"), "{alpha}: {e}");
    }
    for fine in [Jsd::new(0.0), Jsd::new(1.0), Jsd::default()] {
        Objective::lerp(fine, 0.5).check_values().unwrap();
    }
}

#[test]
fn every_loss_multiplier_out_of_range_is_refused_naming_loss_and_setting() {
    use kd_core::losses::{
        ActivationBoundaries, Attention, DecoupledKd, Dist, FitNet, Nst, Pkt, Rkd, Similarity,
    };
    let pairs = || vec![LayerPair::new("layer1", "layer1")];
    let problem = |loss: LossConfig| match Objective::lerp(loss, 0.5).check_values() {
        Err(e @ LossError::Setting { .. }) => e.to_string(),
        other => panic!("expected a setting error, got {other:?}"),
    };
    // (loss, setting, a copy with that setting at `v`): NaN, negative, and beyond f32 are
    // refused everywhere; 0 too where it would switch the loss off.
    type Set = Box<dyn Fn(f64) -> LossConfig>;
    let cases: Vec<(&str, &str, bool, Set)> = vec![
        (
            "DecoupledKD",
            "alpha",
            false,
            Box::new(|v| {
                DecoupledKd {
                    alpha: v,
                    ..Default::default()
                }
                .into()
            }),
        ),
        (
            "DecoupledKD",
            "beta",
            false,
            Box::new(|v| {
                DecoupledKd {
                    beta: v,
                    ..Default::default()
                }
                .into()
            }),
        ),
        (
            "DIST",
            "beta",
            false,
            Box::new(|v| {
                Dist {
                    beta: v,
                    ..Default::default()
                }
                .into()
            }),
        ),
        (
            "DIST",
            "gamma",
            false,
            Box::new(|v| {
                Dist {
                    gamma: v,
                    ..Default::default()
                }
                .into()
            }),
        ),
        (
            "Attention",
            "p",
            true,
            Box::new(move |v| {
                Attention {
                    p: v,
                    ..Attention::new(pairs())
                }
                .into()
            }),
        ),
        (
            "Attention",
            "scale",
            true,
            Box::new(move |v| {
                Attention {
                    scale: v,
                    ..Attention::new(pairs())
                }
                .into()
            }),
        ),
        (
            "FitNet",
            "scale",
            true,
            Box::new(move |v| {
                FitNet {
                    scale: v,
                    ..FitNet::new(pairs())
                }
                .into()
            }),
        ),
        (
            "NST",
            "scale",
            true,
            Box::new(move |v| {
                Nst {
                    scale: v,
                    ..Nst::new(pairs())
                }
                .into()
            }),
        ),
        (
            "Similarity",
            "scale",
            true,
            Box::new(move |v| {
                Similarity {
                    scale: v,
                    ..Similarity::new(pairs())
                }
                .into()
            }),
        ),
        (
            "PKT",
            "scale",
            true,
            Box::new(move |v| {
                Pkt {
                    scale: v,
                    ..Pkt::new(pairs())
                }
                .into()
            }),
        ),
        (
            "ActivationBoundaries",
            "margin",
            false,
            Box::new(move |v| {
                ActivationBoundaries {
                    margin: v,
                    ..ActivationBoundaries::new(pairs())
                }
                .into()
            }),
        ),
        (
            "ActivationBoundaries",
            "scale",
            true,
            Box::new(move |v| {
                ActivationBoundaries {
                    scale: v,
                    ..ActivationBoundaries::new(pairs())
                }
                .into()
            }),
        ),
        (
            "RKD",
            "distance_weight",
            false,
            Box::new(move |v| {
                Rkd {
                    distance_weight: v,
                    ..Rkd::new(pairs())
                }
                .into()
            }),
        ),
        (
            "RKD",
            "angle_weight",
            false,
            Box::new(move |v| {
                Rkd {
                    angle_weight: v,
                    ..Rkd::new(pairs())
                }
                .into()
            }),
        ),
    ];
    for (loss, setting, zero_refused, with) in &cases {
        let mut bad = vec![f64::NAN, -1.0, 1e39, f64::INFINITY];
        if *zero_refused {
            bad.push(0.0);
        }
        for v in bad {
            let e = problem(with(v));
            assert!(
                e.contains(loss) && e.contains(setting),
                "{loss} {setting} = {v}: {e}"
            );
        }
        // The default, and 0 where 0 is a choice (one of two weights, a margin), pass.
        Objective::lerp(with(2.0), 0.5).check_values().unwrap();
        if !zero_refused {
            Objective::lerp(with(0.0), 0.5).check_values().unwrap();
        }
    }
    // Both of RKD's weights at 0: the loss is 0 whatever the models do.
    let e = problem(
        Rkd {
            distance_weight: 0.0,
            angle_weight: 0.0,
            ..Rkd::new(pairs())
        }
        .into(),
    );
    assert!(e.contains("distance_weight and angle_weight"), "{e}");
}
