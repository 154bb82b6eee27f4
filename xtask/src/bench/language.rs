//! The language-model workloads: causal transformer language models on padded windows of
//! bytes — the student's training step (next-token cross-entropy), the teacher's forward pass,
//! and a KD step with reverse KL per position (half cross-entropy, the teacher running on
//! every batch), in tokens per second.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};

use super::{Row, sequence, time, timed_steps};
use kd::core::losses::ReverseKl;
use kd::core::{Objective, Targets};
use kd::data::TokenBatch;
use kd::models::{FeatureModel, LanguageModel, LanguageModelConfig};
use kd::train::{DistillModel, FrozenTeacher, TeacherCache};

/// `b` windows of random bytes (every other one a quarter padding) with random next tokens.
fn windows(device: &Device, b: usize) -> TokenBatch {
    let batch = sequence::tokens(device, b);
    let [_, len] = batch.tokens.dims();
    let next = Tensor::<2>::random([b, len], Distribution::Uniform(0.0, 256.0), device).int();
    TokenBatch {
        targets: Some(Targets::Positions(next)),
        ..batch
    }
}

/// One optimizer step of `model` per call on fresh windows; its median in ms.
fn steps(
    model: DistillModel<LanguageModel, TokenBatch>,
    device: &Device,
    b: usize,
    warmup: usize,
    iters: usize,
    label: &str,
) -> f64 {
    let step = |m: &DistillModel<LanguageModel, TokenBatch>, batch| {
        m.train_step(batch).expect("a step on generated data")
    };
    let weight = |m: &DistillModel<LanguageModel, TokenBatch>| {
        m.student
            .head
            .weight
            .val()
            .slice([0..1, 0..1])
            .into_scalar()
    };
    let batch = || windows(device, b);
    timed_steps(model, batch, step, weight, warmup, iters, label)
}

/// The language-model rows on backend `name` (`device`: its autodiff device), batches of `b`
/// windows of [`sequence::LEN`] bytes; the sizes of `examples/char_lm.toml`.
pub(super) fn rows(
    name: &str,
    device: &Device,
    b: usize,
    warmup: usize,
    iters: usize,
) -> Result<Vec<Row>, String> {
    let tokens = b * sequence::LEN;
    let row = |workload: &str, ms: f64| Row {
        backend: name.into(),
        workload: workload.into(),
        median_ms: ms,
        images_per_s: tokens as f64 / (ms / 1e3),
    };
    let config = |width, blocks, heads| {
        LanguageModelConfig::new()
            .with_width(width)
            .with_blocks(blocks)
            .with_heads(heads)
            .with_max_len(sequence::LEN)
    };
    let (student, teacher) = (config(64, 2, 2), config(192, 4, 4));
    let label = "LM student train step (2 × 64, 128 bytes; tokens/s)";
    let student_ms = steps(
        DistillModel::alone(student.init(device)),
        device,
        b,
        warmup,
        iters,
        label,
    );
    let mut out = vec![row(label, student_ms)];
    let frozen = teacher.init(device);
    let label = "LM teacher eval forward (4 × 192; tokens/s)";
    let eval = frozen.valid();
    let inner = device.clone().inner();
    let teacher_ms = time(label, warmup, iters, |_| {
        let batch = windows(&inner, b);
        let logits = eval.forward_logits((batch.tokens, batch.padding)).rows();
        let y: f32 = logits.slice([0..1, 0..1]).into_scalar();
        std::hint::black_box(y);
    });
    out.push(row(label, teacher_ms));
    let label = "LM KD step reverse KL, w = 0.5 (tokens/s)";
    let model = DistillModel::new(
        student.init(device),
        Some(FrozenTeacher::new(&frozen)),
        Objective::lerp(ReverseKl::default(), 0.5),
        &windows(device, 2),
        TeacherCache::OFF,
    )
    .map_err(|e| e.to_string())?;
    let kd_ms = steps(model, device, b, warmup, iters, label);
    out.push(row(label, kd_ms));
    out.push(Row {
        backend: name.into(),
        workload: "ratio LM KD / (student + teacher)".into(),
        median_ms: kd_ms / (student_ms + teacher_ms),
        images_per_s: f64::NAN,
    });
    Ok(out)
}
