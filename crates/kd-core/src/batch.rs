//! The batch contract: what a trainer needs from a batch of any data pipeline — the model's
//! inputs (of any [`ModelInput`] type), the targets if there are any, which positions count,
//! and (optionally) a stable key per item under which a frozen teacher's outputs may be
//! cached, and how to split it over several devices.

use std::ops::Range;

use burn::tensor::{Bool, Device, Tensor};

use crate::{ModelInput, Supervision, Targets};

/// Names one item's exact model input, so a frozen teacher's outputs for it can be reused.
///
/// Two items with the same key must produce the same input tensor, on every epoch and in every
/// batch. `source` tells data sets (and pipelines that change pixels, such as another size or
/// normalisation) apart, `item` is the item within that source and `variant` the finite
/// augmentation applied to it (for example 0 = as is, 1 = flipped horizontally).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    /// A fingerprint of the data set and of every setting that shapes its pixels.
    pub source: u64,
    /// The item within the source.
    pub item: u64,
    /// Which of a finite set of augmentations was applied.
    pub variant: u32,
}

/// A batch a distillation trainer can consume.
///
/// Implement it for the batch type of your own `Batcher`. `Input` is what your models'
/// [`FeatureModel`](crate::FeatureModel) takes: `Tensor<4>` images, token ids, a
/// `(tokens, mask)` pair — any [`ModelInput`]. `targets` returns `None` for unlabeled data
/// (the objective then has no cross-entropy part); `mask` marks the positions that count for
/// per-position logits. `cache_keys` is optional (without it the teacher runs on every batch),
/// so is `item_indices` (needed by CRD only; by default read from the cache keys) and so is
/// `shard` (without it the batch trains on one device only).
///
/// ```
/// use burn::tensor::{Int, Tensor};
/// use kd_core::{DistillBatch, ItemKey, Targets};
///
/// #[derive(Debug, Clone)]
/// struct MyBatch {
///     images: Tensor<4>,
///     labels: Tensor<1, Int>,
/// }
///
/// impl DistillBatch for MyBatch {
///     type Input = Tensor<4>;
///     fn inputs(&self) -> Tensor<4> {
///         self.images.clone()
///     }
///     fn targets(&self) -> Option<Targets> {
///         Some(Targets::Items(self.labels.clone()))
///     }
///     fn without_autodiff(self) -> Self {
///         Self {
///             images: self.images.without_autodiff(),
///             labels: self.labels.without_autodiff(),
///         }
///     }
///     // Only for training on several devices.
///     fn shard(&self, rows: std::ops::Range<usize>, device: &burn::tensor::Device) -> Option<Self> {
///         Some(Self {
///             images: self.images.clone().slice(rows.clone()).to_device(device),
///             labels: self.labels.clone().slice(rows).to_device(device),
///         })
///     }
/// }
/// ```
pub trait DistillBatch: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// What the student and the teachers take as input.
    type Input: ModelInput;

    /// The models' input for this batch.
    fn inputs(&self) -> Self::Input;

    /// Class indices per item (`[batch]`) or per position (`[batch, positions]`); `None` for
    /// data without labels.
    fn targets(&self) -> Option<Targets>;

    /// For per-position logits: `[batch, positions]`, `true` where a position counts (padding
    /// is `false`). The default, `None`, counts every position.
    fn mask(&self) -> Option<Tensor<2, Bool>> {
        None
    }

    /// Targets and mask together, as the objective reads them.
    fn supervision(&self) -> Supervision {
        Supervision {
            targets: self.targets(),
            mask: self.mask(),
        }
    }

    /// The same batch with every tensor on the tape-free device (for evaluation).
    fn without_autodiff(self) -> Self;

    /// One entry per item: the key its input is known by, or `None` when its input may differ
    /// next time (a random crop, say). An empty vector (the default) means no item is cached;
    /// any other length is an error (reported when the trainer is built from a probe batch).
    fn cache_keys(&self) -> Vec<Option<ItemKey>> {
        Vec::new()
    }

    /// Each item's index among the training items (`0..` the training set's size), the same
    /// on every epoch whatever the item's augmentation: what a loss that remembers items
    /// indexes its memory by (CRD's banks, [`KdLoss::memory`](crate::KdLoss::memory)). The
    /// default takes [`ItemKey::item`] from [`cache_keys`](Self::cache_keys) when every item
    /// has a key, and is empty otherwise (no such loss can then train on this batch type).
    fn item_indices(&self) -> Vec<u64> {
        let keys = self.cache_keys();
        match keys
            .iter()
            .map(|k| k.map(|k| k.item))
            .collect::<Option<Vec<u64>>>()
        {
            Some(items) if items.len() == self.len() => items,
            _ => Vec::new(),
        }
    }

    /// The items `rows` of this batch, moved to `device` (and the tape kept: an autodiff device
    /// stays one): how data-parallel training spreads one batch over several devices. Every
    /// per-item part (inputs, targets, cache keys) must be cut the same way. `None`, the
    /// default, says the batch type cannot be split; training on more than one device then
    /// stops with a message before the first step.
    fn shard(&self, rows: Range<usize>, device: &Device) -> Option<Self> {
        let _ = (rows, device);
        None
    }

    /// Number of items.
    fn len(&self) -> usize {
        self.inputs().batch_size()
    }

    /// True when the batch holds no item.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// FNV-1a over `bytes`, continuing from `state` (start with [`fnv1a_start`]): a stable 64-bit
/// fingerprint for [`ItemKey::source`], the same on every machine and every run.
pub fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The FNV-1a offset basis, where a [`fnv1a`] fingerprint starts.
pub const fn fnv1a_start() -> u64 {
    0xcbf2_9ce4_8422_2325
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any 64-bit input (a counter, a seed
/// combined with an index) — how kd derives reproducible random streams without keeping a
/// generator's state.
pub const fn splitmix64(x: u64) -> u64 {
    let x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_generator() {
        // Vigna's splitmix64.c seeded with 0 yields next() = splitmix64(k · γ) for k = 0, 1, …
        // (its state advances by γ before the finaliser, which adds γ itself): first outputs.
        assert_eq!(splitmix64(0), 0xe220a8397b1dcdaf);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6e789e6aa1b965f4);
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference (draft-eastlake-fnv): FNV-1a 64 of "" and "a" and "foobar".
        assert_eq!(fnv1a(fnv1a_start(), b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(fnv1a_start(), b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(fnv1a_start(), b"foobar"), 0x85944171f73967e8);
    }
}
