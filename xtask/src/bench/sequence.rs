//! The sequence workloads: transformer text classifiers on padded token batches — the
//! student's training step, the teacher's forward pass, and a KD step (SoftTarget plus
//! Attention between token maps, the teacher running on every batch), in tokens per second.

use burn::module::Module;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};

use super::{Row, time, timed_steps};
use kd::core::losses::{Attention, SoftTarget};
use kd::core::{LayerPair, Objective, Term};
use kd::data::TokenBatch;
use kd::models::{FeatureModel, TextClassifier, TextClassifierConfig};
use kd::train::{DistillModel, FrozenTeacher, TeacherCache};

/// Tokens per sequence.
pub(super) const LEN: usize = 128;
/// Vocabulary (bytes).
const VOCAB: usize = 256;

fn config(width: usize, layers: usize) -> TextClassifierConfig {
    TextClassifierConfig::new(VOCAB, 2)
        .with_width(width)
        .with_layers(layers)
        .with_heads(4)
        .with_max_len(LEN)
}

/// `b` random sequences of `LEN` tokens, the last quarter of every other one padding.
pub(super) fn tokens(device: &Device, b: usize) -> TokenBatch {
    let ids = Tensor::<2>::random([b, LEN], Distribution::Uniform(1.0, VOCAB as f64), device).int();
    let position = Tensor::<1, Int>::arange(0..LEN as i64, device)
        .reshape([1, LEN])
        .repeat_dim(0, b);
    let odd = Tensor::<1, Int>::arange(0..b as i64, device)
        .remainder_scalar(2)
        .reshape([b, 1])
        .repeat_dim(1, LEN);
    let padding: Tensor<2, Bool> = position
        .greater_equal_elem((3 * LEN / 4) as i64)
        .bool_and(odd.equal_elem(1));
    let labels = Tensor::<1>::random([b], Distribution::Uniform(0.0, 2.0), device).int();
    TokenBatch {
        tokens: ids,
        padding,
        targets: Some(labels.into()),
    }
}

/// One optimizer step of `model` per call on fresh batches, `label` and its median.
fn steps(
    model: DistillModel<TextClassifier, TokenBatch>,
    device: &Device,
    b: usize,
    warmup: usize,
    iters: usize,
    label: &str,
) -> f64 {
    let step = |m: &DistillModel<TextClassifier, TokenBatch>, batch| {
        m.train_step(batch).expect("a step on generated data")
    };
    let weight = |m: &DistillModel<TextClassifier, TokenBatch>| {
        m.student
            .head
            .weight
            .val()
            .slice([0..1, 0..1])
            .into_scalar()
    };
    timed_steps(
        model,
        || tokens(device, b),
        step,
        weight,
        warmup,
        iters,
        label,
    )
}

/// The sequence rows on backend `name` (`device`: its autodiff device), batches of `b`.
pub(super) fn rows(
    name: &str,
    device: &Device,
    b: usize,
    warmup: usize,
    iters: usize,
) -> Result<Vec<Row>, String> {
    let tokens_per_s = |ms: f64| (b * LEN) as f64 / (ms / 1e3);
    let row = |workload: &str, ms: f64| Row {
        backend: name.into(),
        workload: workload.into(),
        median_ms: ms,
        images_per_s: tokens_per_s(ms),
    };
    let (student, teacher) = (config(128, 2), config(256, 4));
    let probe = tokens(device, 2);
    let label = "text student train step (2 × 128, 128 tokens; tokens/s)";
    let alone = DistillModel::new(
        student.init(device),
        None,
        Objective::cross_entropy_only(),
        &probe,
        TeacherCache::OFF,
    )
    .map_err(|e| e.to_string())?;
    let student_ms = steps(alone, device, b, warmup, iters, label);
    let mut out = vec![row(label, student_ms)];
    let frozen = teacher.init(device);
    let label = "text teacher eval forward (4 × 256; tokens/s)";
    let eval = frozen.valid();
    let inner = device.clone().inner();
    let teacher_ms = time(label, warmup, iters, |_| {
        let batch = tokens(&inner, b);
        let logits = eval.forward_logits((batch.tokens, batch.padding)).rows();
        let y: f32 = logits.slice([0..1, 0..1]).into_scalar();
        std::hint::black_box(y);
    });
    out.push(row(label, teacher_ms));
    let label = "text KD step SoftTarget + Attention on token maps (tokens/s)";
    let mut objective = Objective::lerp(SoftTarget::new(2.0), 0.5);
    let pairs = vec![LayerPair::new("encoder", "encoder.3")];
    objective.terms.push(Term::new(Attention::new(pairs)));
    let model = DistillModel::new(
        student.init(device),
        Some(FrozenTeacher::new(&frozen)),
        objective,
        &probe,
        TeacherCache::OFF,
    )
    .map_err(|e| e.to_string())?;
    let kd_ms = steps(model, device, b, warmup, iters, label);
    out.push(row(label, kd_ms));
    out.push(Row {
        backend: name.into(),
        workload: "ratio text KD / (student + teacher)".into(),
        median_ms: kd_ms / (student_ms + teacher_ms),
        images_per_s: f64::NAN,
    });
    Ok(out)
}
