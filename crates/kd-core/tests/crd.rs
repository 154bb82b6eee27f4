//! CRD equals a float64 PyTorch implementation of the paper's code on fixed inputs, heads,
//! banks and negatives: loss, gradients (student tap, both heads), bank updates and the
//! normalisers, over two training steps and one evaluation batch.
//!
//! Reference: `tests/fixtures/crd.safetensors`, written by
//! `python crates/kd-core/tests/fixtures/make_crd.py` (torch 2.9.0, float64).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ModuleStore, SafetensorsStore, bridge};
use burn::tensor::{Device, Int, Tensor};
use kd_core::{
    ContrastMemory, KdInput, KdLoss, LayerPair, LossConfig, LossError, MemoryInput, MemorySpec,
    Outputs,
};

const SPEC: MemorySpec = MemorySpec {
    items: 10,
    negatives: 5,
    dim: 3,
    temperature: 0.07,
    momentum: 0.5,
};

fn fixture() -> BTreeMap<String, PackTensor> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crd.safetensors");
    SafetensorsStore::from_file(path)
        .get_all_tensors()
        .unwrap()
        .clone()
}

fn float<const D: usize>(
    fx: &BTreeMap<String, PackTensor>,
    key: &str,
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(bridge::to_data(&fx[key]).unwrap(), device)
}

fn values(t: Tensor<2>) -> Vec<f64> {
    t.into_data().convert::<f64>().iter::<f64>().collect()
}

fn flat<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data().convert::<f64>().iter::<f64>().collect()
}

/// Largest difference relative to the reference's largest entry.
fn gap(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// The fixture's heads and banks in a memory (Burn's `Linear` stores `[in, out]`).
fn memory(fx: &BTreeMap<String, PackTensor>, device: &Device) -> ContrastMemory {
    let mut memory = ContrastMemory::new(SPEC, 6, 10, device);
    memory.embed_student.weight = Param::from_tensor(float::<2>(fx, "w_s", device).transpose());
    memory.embed_student.bias = Some(Param::from_tensor(float(fx, "b_s", device)));
    memory.embed_teacher.weight = Param::from_tensor(float::<2>(fx, "w_t", device).transpose());
    memory.embed_teacher.bias = Some(Param::from_tensor(float(fx, "b_t", device)));
    memory.set_state(
        float(fx, "mem_s", device),
        float(fx, "mem_t", device),
        [-1.0, -1.0, 0.0],
    );
    memory
}

fn ints(fx: &BTreeMap<String, PackTensor>, key: &str, device: &Device) -> Tensor<2, Int> {
    Tensor::<2>::from_data(bridge::to_data(&fx[key]).unwrap(), device).int()
}

#[test]
fn two_training_steps_and_an_evaluation_match_pytorch() {
    let device = Device::flex().autodiff();
    let fx = fixture();
    let memory = memory(&fx, &device);
    let mut failures = Vec::new();
    let mut check = |what: String, got: &[f64], want: &[f64], tol: f64| {
        let g = gap(got, want);
        if g.is_nan() || g >= tol {
            failures.push(format!(
                "{what}: relative gap {g:e} (got {got:?}, want {want:?})"
            ));
        }
    };
    for s in [1, 2] {
        let key = |k: &str| format!("step{s}.{k}");
        let f_s: Tensor<4> = float::<4>(&fx, &key("f_s"), &device).require_grad();
        let f_t: Tensor<4> = float(&fx, &key("f_t"), &device);
        let items: Vec<u64> = bridge::to_data(&fx[&key("items")])
            .unwrap()
            .convert::<i64>()
            .iter::<i64>()
            .map(|i| i as u64)
            .collect();
        let negatives = ints(&fx, &key("negatives"), &device);
        // The fixture's negatives exclude the item itself, as the trainer's draws do.
        let neg: Vec<i64> = negatives.clone().into_data().iter::<i64>().collect();
        for (b, row) in neg.chunks(5).enumerate() {
            assert!(!row.contains(&(items[b] as i64)));
        }
        let loss = memory.loss(
            f_s.clone().flatten(1, 3),
            f_t.flatten(1, 3),
            Some(&items),
            negatives,
        );
        let grads = loss.backward();
        check(
            key("loss"),
            &flat(loss),
            &flat(float::<1>(&fx, &key("loss"), &device)),
            1e-5,
        );
        check(
            key("grad_f_s"),
            &flat(f_s.grad(&grads).unwrap()),
            &flat(float::<4>(&fx, &key("grad_f_s"), &device)),
            1e-4,
        );
        let head_grads = [
            (
                "grad_w_s",
                memory
                    .embed_student
                    .weight
                    .val()
                    .grad(&grads)
                    .unwrap()
                    .transpose(),
            ),
            (
                "grad_w_t",
                memory
                    .embed_teacher
                    .weight
                    .val()
                    .grad(&grads)
                    .unwrap()
                    .transpose(),
            ),
        ];
        for (k, g) in head_grads {
            check(
                key(k),
                &values(g),
                &flat(float::<2>(&fx, &key(k), &device)),
                1e-4,
            );
        }
        let bias_grads = [
            (
                "grad_b_s",
                memory
                    .embed_student
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .unwrap(),
            ),
            (
                "grad_b_t",
                memory
                    .embed_teacher
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads)
                    .unwrap(),
            ),
        ];
        for (k, g) in bias_grads {
            check(
                key(k),
                &flat(g),
                &flat(float::<1>(&fx, &key(k), &device)),
                1e-4,
            );
        }
        let (bank_s, bank_t) = memory.banks();
        check(
            key("mem_s"),
            &values(bank_s),
            &values(float(&fx, &key("mem_s"), &device)),
            1e-5,
        );
        check(
            key("mem_t"),
            &values(bank_t),
            &values(float(&fx, &key("mem_t"), &device)),
            1e-5,
        );
        let [z_s, z_t, updates] = memory.state();
        check(
            key("z"),
            &[z_s as f64, z_t as f64],
            &flat(float::<1>(&fx, &key("z"), &device)),
            1e-5,
        );
        assert_eq!(updates, s as f32, "training batches counted");
    }
    // Evaluation: no rows of its own, nothing updated.
    let before = memory.banks();
    let loss = memory.loss(
        float::<4>(&fx, "eval.f_s", &device).flatten(1, 3),
        float::<4>(&fx, "eval.f_t", &device).flatten(1, 3),
        None,
        ints(&fx, "eval.negatives", &device),
    );
    check(
        "eval.loss".into(),
        &flat(loss),
        &flat(float::<1>(&fx, "eval.loss", &device)),
        1e-5,
    );
    let after = memory.banks();
    assert_eq!(values(before.0), values(after.0));
    assert_eq!(memory.state()[2], 2.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negatives_are_other_items_drawn_anew_each_step_and_the_same_for_the_same_state() {
    let device = Device::flex();
    let spec = MemorySpec {
        items: 50,
        negatives: 400,
        ..SPEC
    };
    let memory = ContrastMemory::new(spec, 4, 4, &device);
    let items = [3u64, 49, 0];
    let draw = || -> Vec<i64> {
        memory
            .draw_negatives(3, Some(&items), &device)
            .into_data()
            .iter::<i64>()
            .collect()
    };
    let first = draw();
    assert_eq!(first, draw(), "same state, same negatives");
    let mut seen = std::collections::BTreeSet::new();
    for (b, row) in first.chunks(400).enumerate() {
        assert!(
            row.iter()
                .all(|&j| (0..50).contains(&j) && j != items[b] as i64)
        );
        seen.extend(row.iter().copied());
    }
    // 1200 uniform draws over 49 rows each miss a given row with probability ≈ 3e-11.
    assert_eq!(seen.len(), 50, "every row is drawn for some item");
    let zeros = Tensor::<2>::zeros([50, 3], &device);
    memory.set_state(zeros.clone(), zeros, [1.0, 1.0, 1.0]);
    assert_ne!(first, draw(), "another step draws other negatives");
}

#[test]
fn crd_without_a_memory_or_with_too_many_negatives_is_refused_by_name() {
    let device = Device::flex();
    let out = |w: usize| {
        Outputs::new(Tensor::<2>::zeros([2, 2], &device))
            .with_tap("f", Tensor::<4>::zeros([2, w, 1, 1], &device))
    };
    let (s, t) = (out(4), out(4));
    let crd = LossConfig::crd(LayerPair::new("f", "f"));
    let input = KdInput {
        student: &s,
        teacher: &t,
        targets: None,
        rows: None,
        temperature_scale: 1.0,
        memory: None,
    };
    let e = crd.compute(&input).unwrap_err().to_string();
    assert!(e.starts_with("CRD: ") && e.contains("memory"), "{e}");

    // The paper's K = 16384 against a training set of 100 items.
    let e = crd.memory(100).unwrap().check("CRD").unwrap_err();
    assert!(matches!(e, LossError::Memory { .. }));
    let e = e.to_string();
    assert!(e.contains("negatives = 16384") && e.contains("99"), "{e}");

    // Items outside the memory are named.
    let memory = ContrastMemory::new(MemorySpec { items: 10, ..SPEC }, 4, 4, &device);
    let items = [3u64, 10];
    let input = KdInput {
        memory: Some(MemoryInput {
            memory: &memory,
            items: Some(&items),
        }),
        ..input
    };
    let e = crd.compute(&input).unwrap_err().to_string();
    assert!(
        e.contains("item index 10") && e.contains("10 training items"),
        "{e}"
    );
}
