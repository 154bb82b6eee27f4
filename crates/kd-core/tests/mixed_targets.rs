//! Mixed labels (mixup, cutmix): the objective's cross-entropy on a batch whose inputs mix two
//! items is `share·CE(first) + (1 − share)·CE(second)`. Checked against the cross-entropy
//! with soft labels `p = share·onehot(first) + (1 − share)·onehot(second)`, computed here in
//! float64 from the logits (`−Σ p·log softmax`, gradient `(softmax − p) / batch`), and mixed
//! with a distillation term as the mix says.

use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_core::{LossConfig, LossError, Objective, Outputs, Supervision, Targets};

const BATCH: usize = 4;
const CLASSES: usize = 5;

fn logit_values() -> Vec<f64> {
    (0..BATCH * CLASSES)
        .map(|k| 2.5 * (0.37 * k as f64 * k as f64 + 0.5).sin())
        .collect()
}

fn logits(device: &Device) -> Tensor<2> {
    let values: Vec<f32> = logit_values().into_iter().map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, [BATCH, CLASSES]), device)
}

fn labels(values: [i64; BATCH], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [BATCH]), device)
}

const FIRST: [i64; BATCH] = [0, 3, 4, 1];
const SECOND: [i64; BATCH] = [2, 3, 0, 4];

/// Soft-label cross-entropy and its gradient, in float64.
fn soft_label_reference(share: f64) -> (f64, Vec<f64>) {
    let x = logit_values();
    let mut loss = 0.0;
    let mut grad = vec![0.0; x.len()];
    for b in 0..BATCH {
        let row = &x[b * CLASSES..(b + 1) * CLASSES];
        let max = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for c in 0..CLASSES {
            let p = share * f64::from(u8::from(FIRST[b] == c as i64))
                + (1.0 - share) * f64::from(u8::from(SECOND[b] == c as i64));
            let log_q = row[c] - max - z.ln();
            loss -= p * log_q;
            grad[b * CLASSES + c] = (log_q.exp() - p) / BATCH as f64;
        }
    }
    (loss / BATCH as f64, grad)
}

fn mixed(share: f64, device: &Device) -> Supervision {
    Supervision {
        targets: Some(Targets::Mixed {
            first: labels(FIRST, device),
            second: labels(SECOND, device),
            first_share: share,
        }),
        mask: None,
    }
}

#[test]
fn cross_entropy_of_mixed_labels_is_the_soft_label_cross_entropy() {
    let device = Device::flex().autodiff();
    for share in [1.0, 0.7, 0.5, 0.23] {
        let s = logits(&device).require_grad();
        let parts = Objective::cross_entropy_only()
            .compute_with(
                &Outputs::new(s.clone()),
                &Default::default(),
                &mixed(share, &device),
                0.0,
            )
            .unwrap();
        let (want, want_grad) = soft_label_reference(share);
        let grads = parts.total.backward();
        let got: f64 = parts.ce.unwrap().into_scalar::<f32>().into();
        assert!(
            (got - want).abs() < 1e-5 * want.abs(),
            "share {share}: {got} vs {want}"
        );
        let grad: Vec<f32> = s.grad(&grads).unwrap().to_data().iter::<f32>().collect();
        for (k, (g, w)) in grad.iter().zip(&want_grad).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() < 1e-6,
                "share {share}, gradient {k}: {g} vs {w}"
            );
        }
        // The labels accuracy reads are the first ones.
        let first: Vec<i64> = parts.targets.unwrap().into_data().iter::<i64>().collect();
        assert_eq!(first, FIRST);
    }
}

#[test]
fn a_distillation_term_mixes_with_the_mixed_cross_entropy_as_the_mix_says() {
    let device = Device::flex();
    let share = 0.64;
    let teacher_values: Vec<f32> = (0..BATCH * CLASSES)
        .map(|k| (1.1 * k as f32).cos() * 3.0)
        .collect();
    let teacher =
        Tensor::<2>::from_data(TensorData::new(teacher_values, [BATCH, CLASSES]), &device);
    let teachers = [("teacher".to_string(), Outputs::new(teacher))].into();
    let weight = 0.3;
    let objective = Objective::lerp(LossConfig::soft_target(), weight);
    let parts = objective
        .compute_with(
            &Outputs::new(logits(&device)),
            &teachers,
            &mixed(share, &device),
            0.0,
        )
        .unwrap();
    let kd: f64 = parts.kd.unwrap().into_scalar::<f32>().into();
    let total: f64 = parts.total.into_scalar::<f32>().into();
    let (ce, _) = soft_label_reference(share);
    let want = (1.0 - weight) * ce + weight * kd;
    assert!((total - want).abs() < 1e-5 * want, "{total} vs {want}");
}

#[test]
fn mixed_labels_that_do_not_fit_are_refused() {
    let device = Device::flex();
    let student = Outputs::new(logits(&device));
    let too_few = Supervision {
        targets: Some(Targets::Mixed {
            first: labels(FIRST, &device),
            second: labels(SECOND, &device).slice(0..2),
            first_share: 0.5,
        }),
        mask: None,
    };
    let err = Objective::cross_entropy_only()
        .compute_with(&student, &Default::default(), &too_few, 0.0)
        .unwrap_err();
    assert!(matches!(err, LossError::Shape { .. }), "{err}");
    let err = Objective::cross_entropy_only()
        .compute_with(&student, &Default::default(), &mixed(1.5, &device), 0.0)
        .unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");
}
