//! Batches: items of an image set turned into tensors — crop (random on training items),
//! optional horizontal flip, the training [`Augmentation`], normalisation — with each item's
//! cache key.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_core::{DistillBatch, ItemKey, Targets, fnv1a, fnv1a_start, splitmix64};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::augment::{Augmentation, write_resized_chw};
use crate::image_set::ImageSet;
use crate::transform::{crop_origin, write_chw};

/// One item as Burn's `Dataset` sees it: an index into an [`ImageSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageItem {
    /// Index in the image set.
    pub index: usize,
    /// Class index.
    pub label: usize,
}

/// A batch on a device.
#[derive(Debug, Clone)]
pub struct ImageBatch {
    /// `[batch, 3, size, size]`.
    pub images: Tensor<4>,
    /// `[batch]` class indices (of the item with the larger share, in a mixed batch).
    pub targets: Tensor<1, Int>,
    /// In a batch mixed by mixup or cutmix: the `[batch]` labels of the items mixed in, and
    /// the share of each input that is the `targets` item's (at least ½).
    pub mixed_in: Option<(Tensor<1, Int>, f64)>,
    /// The items' indices in the image set.
    pub items: Vec<usize>,
    /// Each item's cache key (data set fingerprint, index, flip), or `None` when its pixels
    /// change from epoch to epoch (a random crop).
    pub keys: Vec<Option<ItemKey>>,
    /// Each item's position among the items of the loader that served it (`0..items served`),
    /// whatever its crop or flip: what losses that remember items (CRD) index by. Empty for
    /// batches not served by a loader (Burn's `Batcher`).
    pub positions: Vec<usize>,
}

impl ImageBatch {
    /// A batch of `batch` black images of `size`×`size` with class 0 and no cache keys: a probe
    /// of the loaders' shape for checking a model and objective before any image is decoded.
    pub fn zeros(batch: usize, size: usize, device: &Device) -> Self {
        Self {
            images: Tensor::zeros([batch, 3, size, size], device),
            targets: Tensor::zeros([batch], device),
            mixed_in: None,
            items: (0..batch).collect(),
            keys: vec![None; batch],
            positions: (0..batch).collect(),
        }
    }

    /// The same batch, its items at `positions` among their loader's.
    pub(crate) fn at_positions(self, positions: Vec<usize>) -> Self {
        Self { positions, ..self }
    }
}

impl DistillBatch for ImageBatch {
    type Input = Tensor<4>;

    fn inputs(&self) -> Tensor<4> {
        self.images.clone()
    }

    fn targets(&self) -> Option<Targets> {
        Some(match &self.mixed_in {
            None => Targets::Items(self.targets.clone()),
            Some((second, share)) => Targets::Mixed {
                first: self.targets.clone(),
                second: second.clone(),
                first_share: *share,
            },
        })
    }

    fn without_autodiff(self) -> Self {
        Self {
            images: self.images.without_autodiff(),
            targets: self.targets.without_autodiff(),
            mixed_in: self
                .mixed_in
                .map(|(second, share)| (second.without_autodiff(), share)),
            ..self
        }
    }

    fn cache_keys(&self) -> Vec<Option<ItemKey>> {
        self.keys.clone()
    }

    fn item_indices(&self) -> Vec<u64> {
        self.positions.iter().map(|&p| p as u64).collect()
    }

    fn shard(&self, rows: std::ops::Range<usize>, device: &Device) -> Option<Self> {
        Some(Self {
            images: self.images.clone().slice(rows.clone()).to_device(device),
            targets: self.targets.clone().slice(rows.clone()).to_device(device),
            mixed_in: self.mixed_in.as_ref().map(|(second, share)| {
                (second.clone().slice(rows.clone()).to_device(device), *share)
            }),
            items: self.items[rows.clone()].to_vec(),
            keys: self.keys[rows.clone()].to_vec(),
            positions: self
                .positions
                .get(rows)
                .map_or_else(Vec::new, <[usize]>::to_vec),
        })
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// Turns items into batches: crop (random on train), optional flip, the training
/// augmentation, normalisation.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    pub(crate) set: Arc<ImageSet>,
    pub(crate) train: bool,
    pub(crate) flip: bool,
    pub(crate) augment: Augmentation,
    normalize: bool,
    pub(crate) seed: u64,
    epoch: u64,
}

impl ImageBatcher {
    /// A batcher over `set`; `train` enables random crops (and flips if `flip`).
    pub fn new(set: Arc<ImageSet>, train: bool, flip: bool, normalize: bool, seed: u64) -> Self {
        Self {
            set,
            train,
            flip,
            augment: Augmentation::default(),
            normalize,
            seed,
            epoch: 0,
        }
    }

    /// The same batcher with `augment` on its training batches.
    pub fn with_augmentation(mut self, augment: Augmentation) -> Self {
        self.augment = augment;
        self
    }

    /// The same batcher for another epoch (new random crops).
    pub fn at_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The pixels of item `index` as CHW floats; returns whether they were flipped.
    pub fn item_pixels(&self, index: usize, out: &mut [f32]) -> bool {
        let img = self.set.image(index);
        let size = self.set.size() as u32;
        let mut rng = StdRng::seed_from_u64(splitmix64(
            self.seed ^ splitmix64(self.epoch) ^ splitmix64(index as u64 + 1),
        ));
        let offset = if self.train {
            (rng.random::<f64>(), rng.random::<f64>())
        } else {
            (0.5, 0.5)
        };
        let flip = self.train && self.flip && rng.random_bool(0.5);
        let (w, h) = img.dimensions();
        match self.augment.crop.filter(|_| self.train) {
            Some(crop) => {
                let window = crop.window(w, h, &mut rng);
                write_resized_chw(img, window, size, flip, self.normalize, out);
            }
            None => write_chw(
                img,
                crop_origin(w, h, size, offset),
                size,
                flip,
                self.normalize,
                out,
            ),
        }
        flip
    }

    /// The cache key of item `index` given whether it was flipped, when its crop is fixed.
    fn key(&self, index: usize, flipped: bool) -> Option<ItemKey> {
        let fixed = self.set.crop_is_fixed(index, self.train)
            && !(self.train && self.augment.crop.is_some());
        fixed.then(|| ItemKey {
            source: fnv1a(self.set.fingerprint(), &[u8::from(self.normalize)]),
            item: index as u64,
            variant: u32::from(flipped),
        })
    }

    pub(crate) fn build(&self, items: &[usize], device: &Device) -> ImageBatch {
        let size = self.set.size();
        let per = 3 * size * size;
        let mut data = vec![0f32; items.len() * per];
        let flipped: Vec<bool> = data
            .par_chunks_mut(per)
            .zip(items.par_iter())
            .map(|(out, &i)| self.item_pixels(i, out))
            .collect();
        let mut labels: Vec<i64> = items.iter().map(|&i| self.set.labels[i] as i64).collect();
        let mut keys: Vec<Option<ItemKey>> = items
            .iter()
            .zip(flipped)
            .map(|(&i, f)| self.key(i, f))
            .collect();
        let mut mixed_in = None;
        if let Some(mix) = self.draw_mix(items) {
            mix.apply(&mut data, items.len());
            let mut second: Vec<i64> = labels.iter().rev().copied().collect();
            let mut share = mix.own_share();
            // The larger share's labels come first: they are what accuracy reads.
            if share < 0.5 {
                std::mem::swap(&mut labels, &mut second);
                share = 1.0 - share;
            }
            mixed_in = Some((
                Tensor::from_data(TensorData::new(second, [items.len()]), device),
                share,
            ));
            keys = vec![None; items.len()];
        }
        ImageBatch {
            images: Tensor::from_data(TensorData::new(data, [items.len(), 3, size, size]), device),
            targets: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
            mixed_in,
            items: items.to_vec(),
            keys,
            positions: Vec::new(),
        }
    }

    /// How the training batch of `items` is mixed, drawn from the seed, the epoch and the
    /// items; `None` on validation, without mixing, or when the draw says no.
    fn draw_mix(&self, items: &[usize]) -> Option<crate::augment::BatchMix> {
        if !self.train || items.len() < 2 {
            return None;
        }
        let bytes: Vec<u8> = items
            .iter()
            .flat_map(|&i| (i as u64).to_le_bytes())
            .collect();
        let mut rng = StdRng::seed_from_u64(splitmix64(
            self.seed ^ splitmix64(self.epoch) ^ fnv1a(fnv1a_start(), &bytes),
        ));
        self.augment.draw_mix(self.set.size(), &mut rng)
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let idx: Vec<usize> = items.iter().map(|i| i.index).collect();
        self.build(&idx, device)
    }
}
