//! What a forward pass returns and what a batch knows about it: logits per item or per
//! position, taps of rank 2, 3 or 4, optional targets and a mask of valid positions.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::TapError;

/// One tapped intermediate output, batch first, in the shape the model produced it.
#[derive(Debug, Clone)]
pub enum Tap {
    /// `[batch, features]`: a pooled vector, a linear layer's output.
    Vector(Tensor<2>),
    /// `[batch, positions, features]`: a token map (a transformer's residual stream, a ViT's
    /// patch tokens).
    Sequence(Tensor<3>),
    /// `[batch, channels, height, width]`: a convolutional feature map.
    Map(Tensor<4>),
}

impl From<Tensor<2>> for Tap {
    fn from(t: Tensor<2>) -> Self {
        Tap::Vector(t)
    }
}
impl From<Tensor<3>> for Tap {
    fn from(t: Tensor<3>) -> Self {
        Tap::Sequence(t)
    }
}
impl From<Tensor<4>> for Tap {
    fn from(t: Tensor<4>) -> Self {
        Tap::Map(t)
    }
}

impl Tap {
    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Tap::Vector(t) => t.dims().to_vec(),
            Tap::Sequence(t) => t.dims().to_vec(),
            Tap::Map(t) => t.dims().to_vec(),
        }
    }

    /// 2, 3 or 4.
    pub fn rank(&self) -> usize {
        match self {
            Tap::Vector(_) => 2,
            Tap::Sequence(_) => 3,
            Tap::Map(_) => 4,
        }
    }

    /// What the shape is called in messages: `vector`, `sequence`, `map`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tap::Vector(_) => "vector [batch, features]",
            Tap::Sequence(_) => "sequence [batch, positions, features]",
            Tap::Map(_) => "map [batch, channels, height, width]",
        }
    }

    /// The feature width a connector adapts: channels of a map, features of a vector or a
    /// sequence (its last dimension).
    pub fn width(&self) -> usize {
        match self {
            Tap::Vector(t) => t.dims()[1],
            Tap::Sequence(t) => t.dims()[2],
            Tap::Map(t) => t.dims()[1],
        }
    }

    /// Every value of each item in one row, `[batch, values]`.
    pub fn flatten(self) -> Tensor<2> {
        match self {
            Tap::Vector(t) => t,
            Tap::Sequence(t) => t.flatten(1, 2),
            Tap::Map(t) => t.flatten(1, 3),
        }
    }

    /// Values per item.
    pub fn values_per_item(&self) -> usize {
        self.dims()[1..].iter().product()
    }

    /// Number of values.
    pub fn num_elements(&self) -> usize {
        self.dims().iter().product()
    }

    /// The items `rows`.
    pub fn slice_items(self, rows: Range<usize>) -> Self {
        match self {
            Tap::Vector(t) => Tap::Vector(t.slice(rows)),
            Tap::Sequence(t) => Tap::Sequence(t.slice(rows)),
            Tap::Map(t) => Tap::Map(t.slice(rows)),
        }
    }

    /// Items of the same shape stacked along the batch (`None` for an empty list or taps of
    /// different ranks).
    pub fn cat(parts: Vec<Tap>) -> Option<Self> {
        let first = parts.first()?.rank();
        if parts.iter().any(|p| p.rank() != first) {
            return None;
        }
        Some(match first {
            2 => Tap::Vector(Tensor::cat(
                parts.into_iter().filter_map(Tap::vector).collect(),
                0,
            )),
            3 => Tap::Sequence(Tensor::cat(
                parts.into_iter().filter_map(Tap::sequence).collect(),
                0,
            )),
            _ => Tap::Map(Tensor::cat(
                parts.into_iter().filter_map(Tap::map).collect(),
                0,
            )),
        })
    }

    /// The `[batch, features]` tensor of a vector tap.
    pub fn vector(self) -> Option<Tensor<2>> {
        match self {
            Tap::Vector(t) => Some(t),
            _ => None,
        }
    }

    /// The `[batch, positions, features]` tensor of a sequence tap.
    pub fn sequence(self) -> Option<Tensor<3>> {
        match self {
            Tap::Sequence(t) => Some(t),
            _ => None,
        }
    }

    /// The `[batch, channels, height, width]` tensor of a map tap.
    pub fn map(self) -> Option<Tensor<4>> {
        match self {
            Tap::Map(t) => Some(t),
            _ => None,
        }
    }

    /// Its values, read back from the device.
    pub fn to_data(&self) -> TensorData {
        match self {
            Tap::Vector(t) => t.to_data(),
            Tap::Sequence(t) => t.to_data(),
            Tap::Map(t) => t.to_data(),
        }
    }

    /// The device it lives on.
    pub fn device(&self) -> Device {
        match self {
            Tap::Vector(t) => t.device(),
            Tap::Sequence(t) => t.device(),
            Tap::Map(t) => t.device(),
        }
    }
}

/// A model's class scores: per item, or per position of a sequence.
#[derive(Debug, Clone)]
pub enum Logits {
    /// `[batch, classes]`.
    Items(Tensor<2>),
    /// `[batch, positions, classes]`: a score vector per position (a language model's next
    /// token, a tagger's label); the batch's [mask](crate::DistillBatch::mask) says which
    /// positions count.
    Positions(Tensor<3>),
}

impl From<Tensor<2>> for Logits {
    fn from(t: Tensor<2>) -> Self {
        Logits::Items(t)
    }
}
impl From<Tensor<3>> for Logits {
    fn from(t: Tensor<3>) -> Self {
        Logits::Positions(t)
    }
}

impl Logits {
    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Logits::Items(t) => t.dims().to_vec(),
            Logits::Positions(t) => t.dims().to_vec(),
        }
    }

    /// Number of items.
    pub fn batch_size(&self) -> usize {
        self.dims()[0]
    }

    /// Its values, read back from the device.
    pub fn to_data(&self) -> TensorData {
        match self {
            Logits::Items(t) => t.to_data(),
            Logits::Positions(t) => t.to_data(),
        }
    }

    /// Number of classes (the last dimension).
    pub fn classes(&self) -> usize {
        *self.dims().last().unwrap_or(&0)
    }

    /// One score vector per row: `[batch, classes]`, or `[batch · positions, classes]` (item
    /// by item, positions in order).
    pub fn rows(self) -> Tensor<2> {
        match self {
            Logits::Items(t) => t,
            Logits::Positions(t) => t.flatten(0, 1),
        }
    }

    /// The per-item logits (`None` for per-position ones).
    pub fn items(self) -> Option<Tensor<2>> {
        match self {
            Logits::Items(t) => Some(t),
            Logits::Positions(_) => None,
        }
    }

    /// The same kind of logits as `self`, from rows in `self`'s layout (what
    /// [`rows`](Self::rows) gave).
    pub fn with_rows(&self, rows: Tensor<2>) -> Self {
        match self.dims().as_slice() {
            [b, p, c] => Logits::Positions(rows.reshape([*b, *p, *c])),
            _ => Logits::Items(rows),
        }
    }

    /// The items `rows`.
    pub fn slice_items(self, rows: Range<usize>) -> Self {
        match self {
            Logits::Items(t) => Logits::Items(t.slice(rows)),
            Logits::Positions(t) => Logits::Positions(t.slice(rows)),
        }
    }

    /// Logits of the same kind stacked along the batch.
    pub fn cat(parts: Vec<Logits>) -> Self {
        if parts.iter().all(|p| matches!(p, Logits::Items(_))) {
            Logits::Items(Tensor::cat(
                parts.into_iter().filter_map(Logits::items).collect(),
                0,
            ))
        } else {
            Logits::Positions(Tensor::cat(
                parts
                    .into_iter()
                    .filter_map(|p| match p {
                        Logits::Positions(t) => Some(t),
                        Logits::Items(_) => None,
                    })
                    .collect(),
                0,
            ))
        }
    }

    /// Number of values.
    pub fn num_elements(&self) -> usize {
        self.dims().iter().product()
    }
}

/// The result of one forward pass: the logits plus every requested tap.
///
/// Taps are keyed by the name the caller asked for (so `"0.4"` comes back as `"0.4"` even though
/// it resolves to `layer1`), each in the shape the model produced ([`Tap`]).
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Class scores per item or per position.
    pub logits: Logits,
    /// Requested intermediate outputs by requested name.
    pub taps: BTreeMap<String, Tap>,
}

impl Outputs {
    /// Outputs with `logits` (`Tensor<2>` per item, `Tensor<3>` per position) and no tap.
    pub fn new(logits: impl Into<Logits>) -> Self {
        Self {
            logits: logits.into(),
            taps: BTreeMap::new(),
        }
    }

    /// The same outputs with `tap` recorded as `name`.
    pub fn with_tap(mut self, name: impl Into<String>, tap: impl Into<Tap>) -> Self {
        self.taps.insert(name.into(), tap.into());
        self
    }

    /// The tap asked for as `name`, or an error naming what was available.
    pub fn tap(&self, name: &str) -> Result<&Tap, TapError> {
        self.taps.get(name).ok_or_else(|| TapError::NotComputed {
            name: name.to_string(),
            available: self.taps.keys().cloned().collect(),
        })
    }
}

/// Class targets: one per item, or one per position.
// One value per batch: the size of the mixed variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Targets {
    /// `[batch]` class indices.
    Items(Tensor<1, Int>),
    /// `[batch, positions]` class indices (next tokens, tags); positions the mask hides may
    /// hold anything.
    Positions(Tensor<2, Int>),
    /// Per-item labels of a batch whose inputs mix two items each (mixup, cutmix):
    /// `first_share` of each input comes from the item labelled `first`, the rest from the one
    /// labelled `second`. The cross-entropy is `share·CE(first) + (1 − share)·CE(second)`;
    /// whatever else reads labels (accuracy, label-aware losses) reads `first`, so a mixing
    /// batcher puts the larger share first.
    Mixed {
        /// `[batch]` labels of the items with the share `first_share`.
        first: Tensor<1, Int>,
        /// `[batch]` labels of the items mixed in.
        second: Tensor<1, Int>,
        /// The share of `first` in each input, in `[0, 1]`.
        first_share: f64,
    },
}

impl From<Tensor<1, Int>> for Targets {
    fn from(t: Tensor<1, Int>) -> Self {
        Targets::Items(t)
    }
}
impl From<Tensor<2, Int>> for Targets {
    fn from(t: Tensor<2, Int>) -> Self {
        Targets::Positions(t)
    }
}

impl Targets {
    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Targets::Items(t) | Targets::Mixed { first: t, .. } => t.dims().to_vec(),
            Targets::Positions(t) => t.dims().to_vec(),
        }
    }

    /// One target per row, in the layout of [`Logits::rows`] (for mixed labels, `first`).
    pub fn rows(self) -> Tensor<1, Int> {
        match self {
            Targets::Items(t) | Targets::Mixed { first: t, .. } => t,
            Targets::Positions(t) => t.flatten(0, 1),
        }
    }

    /// For mixed labels, the labels mixed in and the share of the first; `None` otherwise.
    pub fn mixed_in(&self) -> Option<(Tensor<1, Int>, f64)> {
        match self {
            Targets::Mixed {
                second,
                first_share,
                ..
            } => Some((second.clone(), *first_share)),
            _ => None,
        }
    }

    /// The same targets on the tape-free device.
    pub fn without_autodiff(self) -> Self {
        self.map(Tensor::without_autodiff, Tensor::without_autodiff)
    }

    /// The same targets on `device`.
    pub fn to_device(self, device: &Device) -> Self {
        self.map(|t| t.to_device(device), |t| t.to_device(device))
    }

    /// The items `rows`.
    pub fn slice_items(self, rows: Range<usize>) -> Self {
        self.map(|t| t.slice(rows.clone()), |t| t.slice(rows.clone()))
    }

    /// The same kind of targets with `items` applied to every per-item tensor and `positions`
    /// to a per-position one.
    fn map(
        self,
        items: impl Fn(Tensor<1, Int>) -> Tensor<1, Int>,
        positions: impl Fn(Tensor<2, Int>) -> Tensor<2, Int>,
    ) -> Self {
        match self {
            Targets::Items(t) => Targets::Items(items(t)),
            Targets::Positions(t) => Targets::Positions(positions(t)),
            Targets::Mixed {
                first,
                second,
                first_share,
            } => Targets::Mixed {
                first: items(first),
                second: items(second),
                first_share,
            },
        }
    }
}

/// What a batch says about the outputs a model should give it: the targets (none for
/// distillation from unlabeled data) and, for per-position logits, which positions count.
#[derive(Debug, Clone, Default)]
pub struct Supervision {
    /// Class targets; `None`: no labels (the cross-entropy part of an objective drops out).
    pub targets: Option<Targets>,
    /// `[batch, positions]`, `true` where a position counts (padding is `false`); `None`:
    /// every position counts.
    pub mask: Option<Tensor<2, Bool>>,
}

impl Supervision {
    /// Labels without a mask.
    pub fn labels(targets: impl Into<Targets>) -> Self {
        Self {
            targets: Some(targets.into()),
            mask: None,
        }
    }

    /// No labels, no mask.
    pub fn unlabeled() -> Self {
        Self::default()
    }

    /// The same with `mask` marking the valid positions.
    pub fn with_mask(self, mask: Tensor<2, Bool>) -> Self {
        Self {
            mask: Some(mask),
            ..self
        }
    }
}

impl From<Tensor<1, Int>> for Supervision {
    fn from(t: Tensor<1, Int>) -> Self {
        Supervision::labels(t)
    }
}

/// The rows of `logits` that count under `mask`, as indices into [`Logits::rows`]; `None` when
/// every row counts (per-item logits, or no mask). A mask whose shape is not the logits'
/// `[batch, positions]` is an error message.
pub fn valid_rows(
    logits: &Logits,
    mask: Option<&Tensor<2, Bool>>,
) -> Result<Option<Tensor<1, Int>>, String> {
    let (Logits::Positions(t), Some(mask)) = (logits, mask) else {
        return Ok(None);
    };
    let [b, p, _] = t.dims();
    if mask.dims() != [b, p] {
        return Err(format!(
            "the mask has shape {:?}, the per-position logits {:?}: one flag per item and position is needed",
            mask.dims(),
            t.dims()
        ));
    }
    let flags: Vec<bool> = mask
        .clone()
        .int()
        .into_data()
        .iter::<i64>()
        .map(|v| v != 0)
        .collect();
    let rows: Vec<i64> = flags
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(i, _)| i as i64)
        .collect();
    if rows.len() == flags.len() {
        return Ok(None);
    }
    let n = rows.len();
    if n == 0 {
        return Err("the mask marks no position of the batch as valid".into());
    }
    Ok(Some(Tensor::from_data(
        TensorData::new(rows, [n]),
        &t.device(),
    )))
}
