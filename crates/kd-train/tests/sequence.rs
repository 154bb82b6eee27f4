//! Distilling sequence models: a transformer text classifier of our own (Burn's
//! `TransformerEncoder`, token ids + padding mask), fed by Burn's `InMemDataset` and
//! `DataLoaderBuilder` with kd-data's token batcher; per-position logits under a mask;
//! training without labels.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kd_core::{
    FeatureModel, LayerPair, LossConfig, LossError, Mix, Objective, Outputs, Supervision, TapPlan,
    TapRecorder, Term,
};
use kd_data::{TokenBatch, TokenBatcher, TokenItem};
use kd_train::{DistillModel, FitConfig, FrozenTeacher, Recipe, TeacherCache, TrainError};

/// Token ids `[batch, positions]` and the padding flags Burn's encoder takes (`true` = pad).
type Text = (Tensor<2, Int>, Tensor<2, Bool>);

const VOCAB: usize = 8;
const LEN: usize = 8;

/// A transformer text classifier: embedding → encoder → masked mean pool → linear, or a
/// linear head on every position (`per_position`).
#[derive(Module, Debug)]
struct TextModel {
    embedding: Embedding,
    encoder: TransformerEncoder,
    head: Linear,
    #[module(skip)]
    per_position: bool,
}

impl TextModel {
    fn new(width: usize, layers: usize, per_position: bool, seed: u64, device: &Device) -> Self {
        device.seed(seed);
        Self {
            embedding: EmbeddingConfig::new(VOCAB, width).init(device),
            encoder: TransformerEncoderConfig::new(width, 2 * width, 2, layers)
                .with_dropout(0.0)
                .init(device),
            head: LinearConfig::new(width, if per_position { VOCAB } else { 2 }).init(device),
            per_position,
        }
    }
}

impl FeatureModel<Text> for TextModel {
    fn layer_paths(&self) -> Vec<(String, Option<String>)> {
        ["embedding", "encoder", "pooled", "head"]
            .map(|p| (p.to_string(), None))
            .to_vec()
    }

    fn forward_taps(&self, (tokens, pad): Text, plan: &TapPlan) -> Outputs {
        let mut taps = TapRecorder::new(plan);
        let x = self.embedding.forward(tokens);
        taps.offer("embedding", &x);
        let h = self
            .encoder
            .forward(TransformerEncoderInput::new(x).mask_pad(pad.clone()));
        taps.offer("encoder", &h);
        if self.per_position {
            let logits = self.head.forward(h);
            taps.offer("head", &logits);
            return taps.finish(logits);
        }
        let keep: Tensor<3> = pad.bool_not().float().unsqueeze_dim(2);
        let pooled: Tensor<2> =
            (h * keep.clone()).sum_dim(1).squeeze_dim(1) / keep.sum_dim(1).squeeze_dim::<2>(1);
        taps.offer("pooled", &pooled);
        let logits = self.head.forward(pooled);
        taps.offer("head", &logits);
        taps.finish(logits)
    }

    fn device(&self) -> Device {
        self.head.weight.val().device()
    }
}

/// What kind of targets the batches carry.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Labels {
    /// Per sequence: whether token 5 occurs.
    Items,
    /// Per position: the token itself.
    Positions,
    None,
}

/// `n` sequences of 2 to 8 tokens from 1..8, seeded, labelled as `labels` says.
fn items(n: usize, seed: u64, labels: Labels) -> Vec<TokenItem> {
    let mut state = seed;
    let mut next = move || {
        state = kd_core::splitmix64(state);
        state
    };
    (0..n)
        .map(|_| {
            let len = 2 + (next() % 7) as usize;
            let tokens: Vec<u32> = (0..len).map(|_| 1 + (next() % 7) as u32).collect();
            TokenItem {
                label: (labels == Labels::Items).then(|| u32::from(tokens.contains(&5))),
                position_labels: (labels == Labels::Positions).then(|| tokens.clone()),
                tokens,
            }
        })
        .collect()
}

fn device() -> Device {
    Device::flex().autodiff()
}

fn loader(labels: Labels, n: usize, seed: u64) -> std::sync::Arc<dyn DataLoader<TokenBatch>> {
    DataLoaderBuilder::new(TokenBatcher::new(0).with_length(LEN))
        .batch_size(8)
        .shuffle(seed)
        .set_device(device())
        .build(InMemDataset::new(items(n, seed, labels)))
}

fn probe(labels: Labels) -> TokenBatch {
    TokenBatcher::new(0)
        .with_length(LEN)
        .batch(items(4, 99, labels), &device())
}

fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        lr: 3e-3,
        ..FitConfig::default()
    }
}

#[test]
fn a_transformer_classifier_distils_logits_and_a_token_map_through_a_connector() {
    let teacher = TextModel::new(32, 2, false, 1, &device());
    let student = TextModel::new(16, 1, false, 2, &device());
    // SoftTarget on the logits plus FitNet between the encoders' token maps (16 → 32
    // features: a connector is built from the probe).
    let objective = Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![
            Term::new(LossConfig::SoftTarget(kd_core::losses::SoftTarget {
                temperature: 2.0,
            })),
            Term::new(LossConfig::FitNet(kd_core::losses::FitNet {
                pairs: vec![LayerPair::new("encoder", "encoder")],
                scale: 1.0,
            })),
        ],
    };
    let model = DistillModel::new(
        student,
        Some(FrozenTeacher::new(&teacher)),
        objective,
        &probe(Labels::Items),
        TeacherCache::OFF,
    )
    .unwrap();
    assert_eq!(model.connectors.taps, ["encoder"]);
    let (train, valid) = (loader(Labels::Items, 64, 3), loader(Labels::Items, 16, 4));
    let (model, history) = Recipe::new(config(3)).fit(model, train, valid).unwrap();
    let first = &history.epochs[0];
    let last = history.epochs.last().unwrap();
    assert!(last.train_loss < first.train_loss, "{first:?} → {last:?}");
    assert!(last.train_kd.unwrap() > 0.0 && last.train_ce > 0.0);
    assert!((0.0..=1.0).contains(&last.accuracy));
    // The connector was trained with the student: it maps 16 features onto 32.
    assert_eq!(
        model.connectors.layers[0].conv.weight.dims(),
        [32, 16, 1, 1]
    );
}

#[test]
fn losses_refuse_taps_they_are_not_defined_on_when_the_model_is_built() {
    let teacher = TextModel::new(32, 1, false, 1, &device());
    let student = TextModel::new(32, 1, false, 2, &device());
    // Attention compares per-position maps: a pooled vector has no positions.
    let objective = Objective::lerp(
        LossConfig::attention(vec![LayerPair::new("pooled", "pooled")]),
        0.5,
    );
    let err = DistillModel::new(
        student,
        Some(FrozenTeacher::new(&teacher)),
        objective,
        &probe(Labels::Items),
        TeacherCache::OFF,
    )
    .unwrap_err();
    match &err {
        TrainError::Loss(LossError::Rank {
            loss, tap, shape, ..
        }) => {
            assert_eq!((*loss, tap.as_str()), ("Attention", "pooled"));
            assert_eq!(shape, &[4, 32]);
        }
        other => panic!("expected a rank error, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("Attention") && text.contains("pooled") && text.contains("[4, 32]"));
}

/// `KL(softmax(t/T) ‖ softmax(s/T))·T²` averaged over the positions `mask` keeps, computed in
/// f64 on the host from the raw logits.
fn masked_soft_target(s: &[f32], t: &[f32], mask: &[bool], classes: usize, temp: f64) -> f64 {
    let softmax = |z: &[f32]| {
        let z: Vec<f64> = z.iter().map(|&v| v as f64 / temp).collect();
        let max = z.iter().cloned().fold(f64::MIN, f64::max);
        let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
        z.iter()
            .map(|v| (v - max).exp() / sum)
            .collect::<Vec<f64>>()
    };
    let (mut total, mut count) = (0.0, 0);
    for (row, &keep) in mask.iter().enumerate() {
        if !keep {
            continue;
        }
        let p = softmax(&t[row * classes..(row + 1) * classes]);
        let q = softmax(&s[row * classes..(row + 1) * classes]);
        total += p
            .iter()
            .zip(&q)
            .map(|(p, q)| p * (p.ln() - q.ln()))
            .sum::<f64>();
        count += 1;
    }
    total / count as f64 * temp * temp
}

#[test]
fn per_position_logit_losses_average_over_the_positions_the_mask_keeps() {
    let device = Device::flex();
    let (b, p, c) = (3, 5, 4);
    let values = |seed: u64| -> Vec<f32> {
        (0..b * p * c)
            .map(|i| ((kd_core::splitmix64(seed + i as u64) % 1000) as f32 / 100.0) - 5.0)
            .collect()
    };
    let (s, t) = (values(1), values(2));
    // Tails of different lengths hidden, the last sequence all but its first position.
    let mask = [
        true, true, true, false, false, //
        true, true, true, true, true, //
        true, false, false, false, false,
    ];
    let logits =
        |v: &[f32]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), [b, p, c]), &device);
    let mask_t = Tensor::<2, Bool>::from_data(TensorData::new(mask.to_vec(), [b, p]), &device);
    let objective = Objective::lerp(
        LossConfig::SoftTarget(kd_core::losses::SoftTarget { temperature: 2.0 }),
        1.0,
    );
    let parts = objective
        .compute_with(
            &Outputs::new(logits(&s)),
            &[("teacher".to_string(), Outputs::new(logits(&t)))].into(),
            &Supervision::unlabeled().with_mask(mask_t),
            0.0,
        )
        .unwrap();
    let got = parts.terms[0].1.clone().into_scalar::<f32>() as f64;
    let want = masked_soft_target(&s, &t, &mask, c, 2.0);
    assert!(
        (got - want).abs() < 1e-4 * want.abs().max(1.0),
        "{got} vs {want}"
    );
    // Without the mask every position counts: a different value.
    let all = masked_soft_target(&s, &t, &[true; 15], c, 2.0);
    assert!((all - want).abs() > 1e-3, "the mask must change the value");
    // No labels: no cross-entropy, the total is the distillation term alone.
    assert!(parts.ce.is_none());
    assert_eq!(parts.rows.as_ref().map(|r| r.dims()[0]), Some(9));
}

#[test]
fn per_position_cross_entropy_ignores_padding() {
    let device = Device::flex();
    let (b, p, c) = (2, 3, 4);
    let v: Vec<f32> = (0..b * p * c).map(|i| (i % 7) as f32 * 0.3).collect();
    let logits = Tensor::<3>::from_data(TensorData::new(v.clone(), [b, p, c]), &device);
    // Padding positions carry an out-of-range target: they must not be read.
    let targets = Tensor::<2, Int>::from_data(
        TensorData::new(vec![1i64, 2, 99, 0, 99, 99], [b, p]),
        &device,
    );
    let mask = Tensor::<2, Bool>::from_data(
        TensorData::new(vec![true, true, false, true, false, false], [b, p]),
        &device,
    );
    let parts = Objective::cross_entropy_only()
        .compute_with(
            &Outputs::new(logits.clone()),
            &Default::default(),
            &Supervision::labels(targets).with_mask(mask),
            0.0,
        )
        .unwrap();
    let rows = logits.flatten::<2>(0, 1);
    let log_p: Vec<f32> = log_softmax(rows, 1).into_data().iter::<f32>().collect();
    // Rows 0, 1 and 3 count, with targets 1, 2 and 0.
    let want = -(log_p[1] + log_p[c + 2] + log_p[3 * c]) as f64 / 3.0;
    let got = parts.ce.unwrap().into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn a_per_position_model_trains_on_labels_and_without_any() {
    for labels in [Labels::Positions, Labels::None] {
        let teacher = TextModel::new(32, 1, true, 5, &device());
        let student = TextModel::new(16, 1, true, 6, &device());
        let objective = Objective::lerp(
            LossConfig::SoftTarget(kd_core::losses::SoftTarget { temperature: 1.0 }),
            0.5,
        );
        let model = DistillModel::new(
            student,
            Some(FrozenTeacher::new(&teacher)),
            objective,
            &probe(labels),
            TeacherCache::default(),
        )
        .unwrap();
        let (train, valid) = (loader(labels, 32, 7), loader(labels, 16, 8));
        let (_, history) = Recipe::new(config(2)).fit(model, train, valid).unwrap();
        let last = history.epochs.last().unwrap();
        assert!(last.train_loss.is_finite() && last.train_kd.unwrap() > 0.0);
        match labels {
            // Every token is its own target: the student learns to copy.
            Labels::Positions => assert!(last.train_ce > 0.0),
            _ => assert_eq!(last.train_ce, 0.0, "no labels, no cross-entropy"),
        }
    }
}

#[test]
fn a_transformer_classifier_distils_under_burns_learner() {
    use burn::train::metric::{AccuracyMetric, LossMetric};
    use burn::train::{Learner, SupervisedTraining};
    let teacher = TextModel::new(32, 1, false, 9, &device());
    let student = TextModel::new(16, 1, false, 10, &device());
    let head = |m: &TextModel| -> Vec<f32> { m.head.weight.val().to_data().iter().collect() };
    let before = head(&student);
    let objective = Objective::lerp(
        LossConfig::SoftTarget(kd_core::losses::SoftTarget::new(2.0)),
        0.5,
    );
    let (train, valid) = (loader(Labels::Items, 32, 11), loader(Labels::Items, 16, 12));
    let model = DistillModel::new(
        student,
        Some(FrozenTeacher::new(&teacher)),
        objective,
        &probe(Labels::Items),
        TeacherCache::default(),
    )
    .unwrap();
    // A constant learning rate: Burn takes a plain f64 as its scheduler.
    let scheduler = 1e-3;
    let out = tempfile::tempdir().unwrap();
    let result = SupervisedTraining::new(out.path(), train, valid)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .renderer(Box::new(kd_train::Quiet))
        .with_application_logger(None)
        .num_epochs(1)
        .launch(Learner::new(model, kd_train::fastai_adam(0.0).0, scheduler));
    assert_ne!(
        before,
        head(&result.model.student),
        "the student was trained"
    );
}

#[test]
fn validation_means_of_per_position_outputs_are_over_tokens_not_sequences() {
    // Sequences of 2 to 8 tokens: two batches of 8 hold different numbers of tokens, so a
    // mean of the batches' means weighted by sequences is not the mean over tokens.
    let student = TextModel::new(16, 1, true, 6, &device());
    let model = DistillModel::alone(student);
    let batches = |size: usize| -> std::sync::Arc<dyn DataLoader<TokenBatch>> {
        DataLoaderBuilder::new(TokenBatcher::new(0).with_length(LEN))
            .batch_size(size)
            .set_device(device())
            .build(InMemDataset::new(items(16, 8, Labels::Positions)))
    };
    // One batch of all 16 sequences: the objective's own mean over every token that counts.
    let whole = kd_train::evaluate(&model, &batches(16)).unwrap();
    let split = kd_train::evaluate(&model, &batches(8)).unwrap();
    assert!(
        (split.ce - whole.ce).abs() < 1e-5 * whole.ce,
        "{} in two batches vs {} in one",
        split.ce,
        whole.ce
    );
    assert_eq!(split.accuracy, whole.accuracy);
}

/// kd-data's token batch with a cache key per item (the hash of its tokens), padded as Burn's
/// batchers pad: to each batch's own longest sequence.
#[derive(Debug, Clone)]
struct KeyedText(TokenBatch, Vec<Option<kd_core::ItemKey>>);

impl kd_core::DistillBatch for KeyedText {
    type Input = Text;
    fn inputs(&self) -> Text {
        self.0.inputs()
    }
    fn targets(&self) -> Option<kd_core::Targets> {
        self.0.targets()
    }
    fn mask(&self) -> Option<Tensor<2, Bool>> {
        self.0.mask()
    }
    fn without_autodiff(self) -> Self {
        Self(self.0.without_autodiff(), self.1)
    }
    fn cache_keys(&self) -> Vec<Option<kd_core::ItemKey>> {
        self.1.clone()
    }
}

#[derive(Clone)]
struct KeyedBatcher;

impl Batcher<TokenItem, KeyedText> for KeyedBatcher {
    fn batch(&self, items: Vec<TokenItem>, device: &Device) -> KeyedText {
        let keys = items
            .iter()
            .map(|i| {
                let bytes: Vec<u8> = i.tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
                Some(kd_core::ItemKey {
                    source: 1,
                    item: kd_core::fnv1a(kd_core::fnv1a_start(), &bytes),
                    variant: 0,
                })
            })
            .collect();
        KeyedText(TokenBatcher::new(0).batch(items, device), keys)
    }
}

#[test]
fn cached_teacher_outputs_follow_each_batchs_padding() {
    // Shuffled each epoch, an item lands in batches padded to other lengths: outputs cached
    // at one length must not be served at another (it was a panic in a tensor cat at epoch 2).
    let keyed = |n: usize, seed: u64| -> std::sync::Arc<dyn DataLoader<KeyedText>> {
        DataLoaderBuilder::new(KeyedBatcher)
            .batch_size(4)
            .shuffle(seed)
            .set_device(device())
            .build(InMemDataset::new(items(n, seed, Labels::Positions)))
    };
    let fit = |cache: TeacherCache| {
        let teacher = TextModel::new(32, 1, true, 5, &device());
        let student = TextModel::new(16, 1, true, 6, &device());
        let probe = KeyedBatcher.batch(items(4, 99, Labels::Positions), &device());
        let model = DistillModel::new(
            student,
            Some(FrozenTeacher::new(&teacher)),
            Objective::lerp(
                LossConfig::SoftTarget(kd_core::losses::SoftTarget::new(2.0)),
                0.5,
            ),
            &probe,
            cache,
        )
        .unwrap();
        let (_, history) = Recipe::new(config(3))
            .fit(model, keyed(24, 7), keyed(8, 8))
            .unwrap();
        history
    };
    let cached = fit(TeacherCache::default());
    let uncached = fit(TeacherCache::OFF);
    for (a, b) in cached.epochs.iter().zip(&uncached.epochs) {
        assert!(
            (a.train_loss - b.train_loss).abs() <= 1e-4 * b.train_loss.abs(),
            "epoch {}: {} cached vs {} computed each time",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
    }
    assert_eq!(cached.epochs.len(), 3);
}
