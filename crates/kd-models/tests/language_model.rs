//! The causal language model: what a position sees, its taps, its size, and generation.

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kd_models::{FeatureModel, GenerateError, LanguageModel, LanguageModelConfig, Sampling};

fn tokens(rows: &[&[i64]], device: &Device) -> Tensor<2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), len]), device)
}

fn no_padding(t: &Tensor<2, Int>) -> Tensor<2, Bool> {
    t.clone().zeros_like().equal_elem(1)
}

fn small(device: &Device) -> LanguageModel {
    LanguageModelConfig::new()
        .with_vocab(20)
        .with_width(16)
        .with_blocks(2)
        .with_heads(2)
        .with_max_len(12)
        .init(device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

#[test]
fn a_position_sees_only_the_tokens_before_it() {
    let device = Device::flex();
    let model = small(&device);
    let plan = model.tap_plan(&[]).unwrap();
    let a = tokens(&[&[1, 2, 3, 4, 5, 6]], &device);
    let b = tokens(&[&[1, 2, 3, 9, 5, 6]], &device); // differs at position 3
    let la = values(
        model
            .forward_taps((a.clone(), no_padding(&a)), &plan)
            .logits
            .rows(),
    );
    let lb = values(
        model
            .forward_taps((b.clone(), no_padding(&b)), &plan)
            .logits
            .rows(),
    );
    let vocab = 20;
    let gap = |p: usize| {
        la[p * vocab..(p + 1) * vocab]
            .iter()
            .zip(&lb[p * vocab..(p + 1) * vocab])
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    };
    for p in 0..3 {
        assert!(gap(p) < 1e-6, "position {p} saw a later token: {}", gap(p));
    }
    for p in 3..6 {
        assert!(gap(p) > 1e-4, "position {p} ignores token 3: {}", gap(p));
    }
}

#[test]
fn taps_name_every_block_and_the_residual_stream_adds_up() {
    let device = Device::flex();
    let model = small(&device);
    let names: Vec<String> = model.layer_paths().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        names,
        [
            "embedding",
            "blocks.0.attention",
            "blocks.0.mlp",
            "blocks.0",
            "blocks.1.attention",
            "blocks.1.mlp",
            "blocks.1",
            "norm"
        ]
    );
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let plan = model.tap_plan(&refs).unwrap();
    let x = tokens(&[&[3, 1, 4, 1, 5], &[9, 2, 6, 5, 3]], &device);
    let out = model.forward_taps((x.clone(), no_padding(&x)), &plan);
    assert_eq!(out.logits.dims(), vec![2, 5, 20]);
    for name in &names {
        assert_eq!(out.taps[name].dims(), [2, 5, 16], "{name}");
    }
    // Each block adds its attention and MLP outputs to the stream it receives.
    let seq = |n: &str| out.taps[n].clone().sequence().unwrap();
    for (before, block) in [("embedding", "blocks.0"), ("blocks.0", "blocks.1")] {
        let sum = seq(before) + seq(&format!("{block}.attention")) + seq(&format!("{block}.mlp"));
        let gap = (sum - seq(block)).abs().max().into_scalar::<f32>();
        assert!(gap < 1e-5, "{block}: {gap}");
    }
}

#[test]
fn the_default_size_is_the_formula_for_a_pre_norm_transformer() {
    let device = Device::flex();
    let model = LanguageModelConfig::new().init(&device);
    let (v, w, n, blocks) = (256, 128, 128, 4);
    let attention = 4 * (w * w + w);
    let mlp = w * 4 * w + 4 * w + 4 * w * w + w;
    let norms = 2 * 2 * w;
    let expected = v * w + n * w + blocks * (attention + mlp + norms) + 2 * w + (w * v + v);
    assert_eq!(model.num_params(), expected);
    assert!((800_000..1_000_000).contains(&expected), "{expected}");
}

#[test]
fn generation_is_the_same_for_a_seed_and_greedy_follows_the_logits() {
    let device = Device::flex();
    let model = small(&device);
    // Prompts of different lengths are padded together; each continues from its own end.
    let prompts = vec![vec![1, 2, 3], vec![4, 5, 6, 7, 8, 9, 10]];
    let warm = Sampling {
        temperature: 1.5,
        top_k: 0,
    };
    let a = model.generate(&prompts, 15, warm, 7).unwrap();
    let b = model.generate(&prompts, 15, warm, 7).unwrap();
    let c = model.generate(&prompts, 15, warm, 8).unwrap();
    assert_eq!(a, b, "same seed, same tokens");
    assert_ne!(a, c, "another seed draws otherwise");
    assert_eq!(a[0][..3], prompts[0][..]);
    assert_eq!(a[0].len(), 18);
    assert_eq!(
        a[1].len(),
        22,
        "past max_len 12: the context is cut to the last 12"
    );

    // Greedy: each new token is the argmax of a plain forward pass over the sequence so far
    // (its last max_len tokens), computed here one sequence at a time.
    let greedy = Sampling {
        temperature: 1.0,
        top_k: 1,
    };
    let out = model.generate(&prompts, 8, greedy, 0).unwrap();
    let plan = model.tap_plan(&[]).unwrap();
    for (prompt, sequence) in prompts.iter().zip(&out) {
        let mut expected = prompt.clone();
        for _ in 0..8 {
            let context: Vec<i64> = expected[expected.len().saturating_sub(12)..]
                .iter()
                .map(|&t| i64::from(t))
                .collect();
            let x = tokens(&[&context], &device);
            let logits = values(
                model
                    .forward_taps((x.clone(), no_padding(&x)), &plan)
                    .logits
                    .rows(),
            );
            let last = &logits[(context.len() - 1) * 20..];
            let best = (0..20)
                .max_by(|&i, &j| last[i].total_cmp(&last[j]).then(j.cmp(&i)))
                .unwrap();
            expected.push(best as u32);
        }
        assert_eq!(sequence, &expected);
    }
}

#[test]
fn bad_prompts_and_temperatures_are_refused() {
    let device = Device::flex();
    let model = small(&device);
    let s = Sampling::default();
    assert_eq!(
        model.generate(&[vec![1], vec![]], 2, s, 0),
        Err(GenerateError::EmptyPrompt { index: 1 })
    );
    let e = model.generate(&[vec![1, 25]], 2, s, 0).unwrap_err();
    assert!(
        e.to_string().contains("token 25") && e.to_string().contains("20"),
        "{e}"
    );
    for t in [0.0, -1.0, f64::NAN] {
        let bad = Sampling {
            temperature: t,
            top_k: 0,
        };
        assert!(matches!(
            model.generate(&[vec![1]], 2, bad, 0),
            Err(GenerateError::Temperature(_))
        ));
    }
}
