//! Batches of token sequences: ids padded to a common length, the padding flags Burn's
//! transformer encoder takes, and targets per sequence, per position, or none.

use std::ops::Range;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use kd_core::{DistillBatch, Targets};

/// One sequence as Burn's `Dataset` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenItem {
    /// Token ids (none of them the padding id).
    pub tokens: Vec<u32>,
    /// The class of the whole sequence, if labelled.
    pub label: Option<u32>,
    /// A target per position (next tokens, tags), if labelled that way; as long as `tokens`.
    pub position_labels: Option<Vec<u32>>,
}

/// A batch of token sequences on a device.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[batch, positions]` token ids, padded with the batcher's padding id.
    pub tokens: Tensor<2, Int>,
    /// `[batch, positions]`, `true` at padding (Burn's `mask_pad` convention).
    pub padding: Tensor<2, Bool>,
    /// Targets per sequence or per position; `None` for unlabelled data.
    pub targets: Option<Targets>,
}

impl DistillBatch for TokenBatch {
    type Input = (Tensor<2, Int>, Tensor<2, Bool>);

    fn inputs(&self) -> Self::Input {
        (self.tokens.clone(), self.padding.clone())
    }

    fn targets(&self) -> Option<Targets> {
        self.targets.clone()
    }

    /// The positions that are not padding.
    fn mask(&self) -> Option<Tensor<2, Bool>> {
        Some(self.padding.clone().bool_not())
    }

    fn without_autodiff(self) -> Self {
        Self {
            tokens: self.tokens.without_autodiff(),
            padding: self.padding.without_autodiff(),
            targets: self.targets.map(Targets::without_autodiff),
        }
    }

    fn shard(&self, rows: Range<usize>, device: &Device) -> Option<Self> {
        Some(Self {
            tokens: self.tokens.clone().slice(rows.clone()).to_device(device),
            padding: self.padding.clone().slice(rows.clone()).to_device(device),
            targets: self
                .targets
                .clone()
                .map(|t| t.slice_items(rows).to_device(device)),
        })
    }
}

/// Pads sequences to the longest in the batch (or a fixed length) with `padding_id`. Targets
/// come from the items: per position when every item has `position_labels`, per sequence when
/// every item has a `label`, none otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBatcher {
    /// The id written at padding positions.
    pub padding_id: u32,
    /// Pad every batch to this length (longer sequences are cut) instead of its longest.
    pub length: Option<usize>,
}

impl TokenBatcher {
    /// Pad with `padding_id` to each batch's longest sequence.
    pub fn new(padding_id: u32) -> Self {
        Self {
            padding_id,
            length: None,
        }
    }

    /// Pad (and cut) every batch to `length` positions.
    pub fn with_length(self, length: usize) -> Self {
        Self {
            length: Some(length),
            ..self
        }
    }
}

impl Batcher<TokenItem, TokenBatch> for TokenBatcher {
    fn batch(&self, items: Vec<TokenItem>, device: &Device) -> TokenBatch {
        let b = items.len();
        let longest = items.iter().map(|i| i.tokens.len()).max().unwrap_or(0);
        let len = self.length.unwrap_or(longest).max(1);
        let grid = |row: &dyn Fn(&TokenItem) -> &[u32]| {
            let mut ids = vec![i64::from(self.padding_id); b * len];
            for (i, item) in items.iter().enumerate() {
                for (p, &id) in row(item).iter().take(len).enumerate() {
                    ids[i * len + p] = i64::from(id);
                }
            }
            ids
        };
        let tokens = grid(&|item| &item.tokens);
        let padding: Vec<bool> = (0..b * len)
            .map(|k| (k % len) >= items[k / len].tokens.len())
            .collect();
        let int = |values: Vec<i64>, shape: [usize; 2]| {
            Tensor::<2, Int>::from_data(TensorData::new(values, shape), device)
        };
        let targets = if items.iter().all(|i| i.position_labels.is_some()) && b > 0 {
            let labels = grid(&|item| item.position_labels.as_deref().unwrap_or(&[]));
            Some(Targets::Positions(int(labels, [b, len])))
        } else if items.iter().all(|i| i.label.is_some()) && b > 0 {
            let labels: Vec<i64> = items
                .iter()
                .map(|i| i64::from(i.label.unwrap_or(0)))
                .collect();
            Some(Targets::Items(Tensor::from_data(
                TensorData::new(labels, [b]),
                device,
            )))
        } else {
            None
        };
        TokenBatch {
            tokens: int(tokens, [b, len]),
            padding: Tensor::from_data(TensorData::new(padding, [b, len]), device),
            targets,
        }
    }
}
