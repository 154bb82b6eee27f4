//! Every loss equals a PyTorch implementation of its published formula (value within 1e-5
//! relative, gradient w.r.t. the student input within 1e-4 relative to its largest entry).
//!
//! Reference: `tests/fixtures/losses.{safetensors,json}`, written by
//! `python crates/kd-core/tests/fixtures/make_losses.py` (torch 2.9.0, computed in float64).

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleStore, SafetensorsStore, bridge};
use burn::tensor::{Device, Int, Tensor};
use kd_core::Outputs;
use kd_core::{KdInput, KdLoss, LossConfig};

#[derive(serde::Deserialize)]
struct Case {
    key: String,
    input: String,
    config: LossConfig,
}

fn fixtures() -> (Vec<Case>, BTreeMap<String, PackTensor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let cases = serde_json::from_str(&std::fs::read_to_string(dir.join("losses.json")).unwrap())
        .expect("cases parse as LossConfig");
    let tensors = SafetensorsStore::from_file(dir.join("losses.safetensors"))
        .get_all_tensors()
        .unwrap()
        .clone();
    (cases, tensors)
}

fn tensor<const D: usize>(t: &PackTensor, device: &Device) -> Tensor<D> {
    Tensor::from_data(bridge::to_data(t).unwrap(), device)
}

fn outputs_logits(logits: Tensor<2>) -> Outputs {
    Outputs::new(logits)
}

fn outputs_feature(name: &str, f: Tensor<4>) -> Outputs {
    let device = f.device();
    Outputs::new(Tensor::<2>::zeros([f.dims()[0], 2], &device)).with_tap(name, f)
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

#[test]
fn every_loss_and_gradient_matches_pytorch() {
    let device = Device::flex().autodiff();
    let (cases, fx) = fixtures();
    assert!(cases.len() >= 40, "fixture holds {} cases", cases.len());
    let mut kinds = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases {
        kinds.insert(case.config.name());
        let k = &case.key;
        let (value, grad) = if case.input == "logits" {
            let s: Tensor<2> = tensor::<2>(&fx[&format!("{k}/student")], &device).require_grad();
            let t: Tensor<2> = tensor(&fx[&format!("{k}/teacher")], &device);
            let y: Tensor<1, Int> = tensor::<1>(&fx[&format!("{k}/targets")], &device).int();
            let (so, to) = (outputs_logits(s.clone()), outputs_logits(t));
            let input = KdInput {
                student: &so,
                teacher: &to,
                targets: Some(&y),
                rows: None,
                temperature_scale: 1.0,
                memory: None,
            };
            let loss = case.config.compute(&input).unwrap();
            let grads = loss.backward();
            let g: Vec<f32> = s
                .grad(&grads)
                .unwrap()
                .to_data()
                .try_to_vec::<f32>()
                .unwrap();
            (loss.into_scalar::<f32>(), g)
        } else {
            let s: Tensor<4> = tensor::<4>(&fx[&format!("{k}/student")], &device).require_grad();
            let t: Tensor<4> = tensor(&fx[&format!("{k}/teacher")], &device);
            let (so, to) = (outputs_feature("s", s.clone()), outputs_feature("t", t));
            let input = KdInput {
                student: &so,
                teacher: &to,
                targets: None,
                rows: None,
                temperature_scale: 1.0,
                memory: None,
            };
            let loss = case.config.compute(&input).unwrap();
            let grads = loss.backward();
            let g: Vec<f32> = s
                .grad(&grads)
                .unwrap()
                .to_data()
                .try_to_vec::<f32>()
                .unwrap();
            (loss.into_scalar::<f32>(), g)
        };
        let want: f32 = tensor::<1>(&fx[&format!("{k}/loss")], &Device::flex()).into_scalar();
        let want_grad: Vec<f32> = bridge::to_data(&fx[&format!("{k}/grad")])
            .unwrap()
            .try_to_vec::<f32>()
            .unwrap();
        let rel = (value - want).abs() / want.abs().max(1e-6);
        if rel >= 1e-5 {
            failures.push(format!(
                "{k}: loss {value} vs PyTorch {want} (relative error {rel})"
            ));
        }
        assert_eq!(grad.len(), want_grad.len(), "{k}: gradient size");
        // `f32::max` ignores NaN, so the error below cannot see a non-finite gradient.
        let bad = grad.iter().filter(|g| !g.is_finite()).count();
        if bad > 0 {
            failures.push(format!("{k}: {bad} gradient entries are not finite"));
        }
        // Floor for gradients that vanish analytically (e.g. standardised 2-class logits).
        let scale = max_abs(&want_grad).max(1e-4);
        let err = grad
            .iter()
            .zip(&want_grad)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        if err >= 1e-4 {
            failures.push(format!("{k}: gradient relative error {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(kinds.len(), 12, "every built-in loss is covered: {kinds:?}");
}
