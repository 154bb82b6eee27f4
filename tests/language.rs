//! On-policy and sequence-level distillation of language models: what a rollout makes of a
//! batch, that a training step trains on it, and how often.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use kd::core::losses::ReverseKl;
use kd::core::{DistillBatch, Objective, Targets};
use kd::data::{TokenBatch, TokenBatcher, TokenItem};
use kd::language::OnPolicy;
use kd::models::{LanguageModel, LanguageModelConfig, Sampling};
use kd::train::{DistillModel, FrozenTeacher, Rollout, TeacherCache};

fn model(device: &Device, seed: u64) -> LanguageModel {
    device.seed(seed);
    LanguageModelConfig::new()
        .with_vocab(16)
        .with_width(16)
        .with_blocks(1)
        .with_heads(2)
        .with_max_len(16)
        .init(device)
}

fn batch(device: &Device) -> TokenBatch {
    let item = |t: &[u32]| TokenItem {
        tokens: t[..t.len() - 1].to_vec(),
        label: None,
        position_labels: Some(t[1..].to_vec()),
    };
    let items = vec![
        item(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
        item(&[9, 8, 7, 6, 5, 4, 3, 2, 1]),
    ];
    TokenBatcher::new(0).batch(items, device)
}

fn ids(t: &burn::tensor::Tensor<2, burn::tensor::Int>) -> Vec<i64> {
    t.to_data().iter::<i64>().collect()
}

const GREEDY: Sampling = Sampling {
    temperature: 1.0,
    top_k: 1,
};

#[test]
fn the_student_continues_each_prompt_and_the_step_trains_on_that() {
    let device = Device::flex().autodiff();
    let (student, teacher) = (model(&device, 1), model(&device, 2));
    let batch = batch(&device);
    let rollout = OnPolicy::new(1.0, 3, 5).unwrap().with_seed(9);
    let generated = rollout
        .rollout(&student, &batch, 0.0)
        .expect("lambda 1: every step");
    assert_eq!(
        generated.tokens.dims(),
        [2, 7],
        "3 prompt + 5 new tokens, less the last"
    );
    let tokens = ids(&generated.tokens);
    assert_eq!(tokens[..3], [1, 2, 3]);
    assert_eq!(tokens[7..10], [9, 8, 7]);
    assert!(
        generated.targets.is_none(),
        "no labels on the student's own samples"
    );
    assert!(
        generated.cache_keys().is_empty(),
        "the teacher cache is bypassed"
    );
    let again = rollout.rollout(&student, &batch, 0.0).unwrap();
    assert_eq!(
        ids(&again.tokens),
        tokens,
        "the same draw for the same step"
    );

    let objective = || Objective::lerp(ReverseKl::default(), 0.5);
    let distill = |rollout: Option<OnPolicy>| {
        let m = DistillModel::new(
            student.clone(),
            Some(FrozenTeacher::new(&teacher)),
            objective(),
            &batch,
            TeacherCache::OFF,
        )
        .unwrap();
        match rollout {
            Some(r) => m.with_rollout(r),
            None => m,
        }
    };
    let loss = |out: burn::train::TrainOutput<kd::train::KdOutput>| {
        assert!(out.item.ce.is_none() || out.item.targets.is_some());
        out.item.loss.into_scalar::<f32>()
    };
    let with_rollout = distill(Some(rollout)).train_step(batch.clone()).unwrap();
    assert!(
        with_rollout.item.ce.is_none(),
        "the cross-entropy drops out"
    );
    let on_generated = loss(distill(None).train_step(generated).unwrap());
    let on_data = loss(distill(None).train_step(batch.clone()).unwrap());
    let step = loss(with_rollout);
    assert!(
        (step - on_generated).abs() < 1e-6,
        "{step} vs {on_generated}"
    );
    assert!(
        (step - on_data).abs() > 1e-4,
        "{step} vs the data's {on_data}"
    );
}

#[test]
fn greedy_continuations_are_the_writers_own_and_sequence_level_kd_has_targets() {
    let device = Device::flex().autodiff();
    let (student, teacher) = (model(&device, 1), model(&device, 2));
    let batch = batch(&device);
    let prompts = vec![vec![1, 2, 3, 4], vec![9, 8, 7, 6]];
    let expect = |writer: &LanguageModel| writer.generate(&prompts, 6, GREEDY, 0).unwrap();
    let on_policy = OnPolicy::new(1.0, 4, 6)
        .unwrap()
        .with_sampling(GREEDY)
        .unwrap();
    let b = on_policy.rollout(&student, &batch, 0.3).unwrap();
    let student_wrote: Vec<i64> = expect(&student)
        .iter()
        .flat_map(|s| s[..s.len() - 1].iter().map(|&t| i64::from(t)))
        .collect();
    assert_eq!(ids(&b.tokens), student_wrote);

    let sequence_level = on_policy.sequence_level(&teacher);
    let b = sequence_level.rollout(&student, &batch, 0.3).unwrap();
    let teacher_wrote = expect(&teacher);
    let inputs: Vec<i64> = teacher_wrote
        .iter()
        .flat_map(|s| s[..s.len() - 1].iter().map(|&t| i64::from(t)))
        .collect();
    let targets: Vec<i64> = teacher_wrote
        .iter()
        .flat_map(|s| s[1..].iter().map(|&t| i64::from(t)))
        .collect();
    assert_eq!(ids(&b.tokens), inputs);
    match &b.targets {
        Some(Targets::Positions(t)) => assert_eq!(ids(t), targets),
        other => panic!("the teacher's continuation is the target: {other:?}"),
    }
    assert_ne!(student_wrote, inputs, "two different writers");
}

#[test]
fn lambda_is_the_share_of_steps_that_are_on_policy() {
    let device = Device::flex();
    let student = model(&device, 1);
    let batch = batch(&device);
    let share = |lambda: f64| {
        let rollout = OnPolicy::new(lambda, 2, 1).unwrap().with_seed(4);
        let steps = 400;
        let hits = (0..steps)
            .filter(|s| {
                rollout
                    .rollout(&student, &batch, *s as f64 / steps as f64)
                    .is_some()
            })
            .count();
        hits as f64 / steps as f64
    };
    assert_eq!(share(0.0), 0.0);
    assert_eq!(share(1.0), 1.0);
    let s = share(0.3);
    assert!((0.23..0.37).contains(&s), "{s}");
}

#[test]
fn no_step_is_on_policy_before_the_warm_up_ends() {
    let device = Device::flex();
    let student = model(&device, 1);
    let batch = batch(&device);
    let rollout = OnPolicy::new(1.0, 2, 1)
        .unwrap()
        .with_seed(4)
        .after_warm_up(0.5)
        .unwrap();
    let on_policy = |progress: f64| rollout.rollout(&student, &batch, progress).is_some();
    for progress in [0.0, 0.1, 0.25, 0.49] {
        assert!(!on_policy(progress), "on-policy at progress {progress}");
    }
    for progress in [0.5, 0.6, 0.99] {
        assert!(on_policy(progress), "off-policy at progress {progress}");
    }
    for bad in [-0.1, 1.0, f64::NAN] {
        let e = OnPolicy::new(1.0, 2, 1)
            .unwrap()
            .after_warm_up(bad)
            .unwrap_err();
        assert!(e.to_string().contains("warm_up"), "{e}");
    }
}

#[test]
fn settings_out_of_range_are_refused() {
    for e in [
        OnPolicy::new(1.5, 2, 2).unwrap_err(),
        OnPolicy::new(0.5, 0, 2).unwrap_err(),
        OnPolicy::new(0.5, 2, 0).unwrap_err(),
        OnPolicy::new(0.5, 2, 2)
            .unwrap()
            .with_sampling(Sampling {
                temperature: 0.0,
                top_k: 0,
            })
            .unwrap_err(),
    ] {
        assert!(e.to_string().starts_with("on-policy distillation"), "{e}");
    }
}
