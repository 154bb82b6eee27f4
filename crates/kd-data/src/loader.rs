//! The loaders: subsets of an image set as Burn `Dataset`s and `DataLoader`s, shuffled per
//! epoch on training, and the training/validation pair over one set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use kd_core::splitmix64;

use crate::DataError;
use crate::augment::Augmentation;
use crate::batch::{ImageBatch, ImageBatcher, ImageItem};
use crate::files::Split;
use crate::image_set::{DataConfig, ImageSet};

/// A subset of an image set as a Burn `Dataset`.
#[derive(Debug, Clone)]
pub struct ImageDataset {
    set: Arc<ImageSet>,
    indices: Arc<Vec<usize>>,
}

impl ImageDataset {
    /// The items `indices` of `set`.
    pub fn new(set: Arc<ImageSet>, indices: Vec<usize>) -> Self {
        Self {
            set,
            indices: Arc::new(indices),
        }
    }
}

impl Dataset<ImageItem> for ImageDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        let i = *self.indices.get(index).ok_or_else(|| {
            DatasetError::new(DataError::BadConfig(format!(
                "index {index} out of range for {} items",
                self.indices.len()
            )))
        })?;
        Ok(ImageItem {
            index: i,
            label: self.set.labels[i],
        })
    }

    fn len(&self) -> usize {
        self.indices.len()
    }
}

/// Batches of a subset of an image set: training (shuffled each epoch, `drop_last`, random
/// crops) or validation (in order, every item, centred crops). Implements Burn's
/// [`DataLoader`]; each `iter()` is a new epoch.
#[derive(Clone)]
pub struct ImageLoader {
    batcher: ImageBatcher,
    indices: Arc<Vec<usize>>,
    batch_size: usize,
    device: Device,
    epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for ImageLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageLoader")
            .field("items", &self.indices.len())
            .field("train", &self.batcher.train)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl ImageLoader {
    /// A loader over `indices` of `set`.
    pub fn new(
        set: Arc<ImageSet>,
        indices: Vec<usize>,
        train: bool,
        config: &DataConfig,
        device: &Device,
    ) -> Self {
        Self {
            batcher: ImageBatcher::new(set, train, config.flip, config.normalize, config.seed)
                .with_augmentation(config.augment),
            indices: Arc::new(indices),
            batch_size: config.batch_size,
            device: device.clone(),
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same items and settings with random horizontal flips on or off (they only apply to
    /// training loaders), counting epochs from 0 on its own.
    pub fn with_flip(&self, flip: bool) -> Self {
        let mut loader = self.restarted();
        loader.batcher.flip = flip;
        loader
    }

    /// The same items and settings with `augment` on training batches (random-resized crops,
    /// mixup, cutmix), counting epochs from 0 on its own.
    pub fn with_augmentation(&self, augment: Augmentation) -> Self {
        let mut loader = self.restarted();
        loader.batcher.augment = augment;
        loader
    }

    /// The augmentation of this loader's training batches.
    pub fn augmentation(&self) -> &Augmentation {
        &self.batcher.augment
    }

    /// The same loader counting epochs from 0 on its own. Each `iter()` is the next epoch, and
    /// clones share the count, so a second training run over the same data starts from here.
    pub fn restarted(&self) -> Self {
        let mut loader = self.clone();
        loader.epoch = Arc::new(AtomicU64::new(0));
        loader
    }

    /// Whether this is a training loader.
    pub fn is_train(&self) -> bool {
        self.batcher.train
    }

    /// The image set behind the loader.
    pub fn set(&self) -> &Arc<ImageSet> {
        &self.batcher.set
    }

    /// The items (indices in the set) this loader serves.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Batches per epoch (`drop_last` on training).
    pub fn num_batches(&self) -> usize {
        if self.is_train() {
            self.indices.len() / self.batch_size
        } else {
            self.indices.len().div_ceil(self.batch_size)
        }
    }

    /// The epoch the next `iter()` will produce (to resume from a checkpoint).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::SeqCst);
    }

    /// Whether item `i` yields the same pixels every epoch.
    pub fn is_deterministic(&self, i: usize) -> bool {
        let train = self.batcher.train;
        !(train && self.batcher.augment.is_on())
            && self
                .batcher
                .set
                .is_deterministic(i, train, self.batcher.flip)
    }

    /// The item order of `epoch`, cut into batches.
    pub fn epoch_batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        self.epoch_positions(epoch)
            .into_iter()
            .map(|batch| batch.into_iter().map(|p| self.indices[p]).collect())
            .collect()
    }

    /// As [`epoch_batches`](Self::epoch_batches), each item given by its position among this
    /// loader's items (`0..indices().len()`).
    fn epoch_positions(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.indices.len()).collect();
        if self.is_train() {
            order.shuffle(&mut StdRng::seed_from_u64(splitmix64(
                self.batcher.seed ^ splitmix64(epoch + 1),
            )));
        }
        let mut batches: Vec<Vec<usize>> =
            order.chunks(self.batch_size).map(|c| c.to_vec()).collect();
        if self.is_train() && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        batches
    }

    /// A batch of this loader's first `n` items as epoch 0 serves them (fewer when it holds
    /// fewer): a real batch to check a model and objective against before training.
    pub fn probe(&self, n: usize) -> ImageBatch {
        let n = n.min(self.indices.len());
        self.batcher
            .build(&self.indices[..n], &self.device)
            .at_positions((0..n).collect())
    }

    /// Batches of an explicit epoch, built lazily.
    pub fn iter_epoch(&self, epoch: u64) -> EpochIter<'_> {
        EpochIter {
            loader: self,
            batcher: self.batcher.clone().at_epoch(epoch),
            batches: self.epoch_positions(epoch),
            next: 0,
        }
    }
}

/// Iterator over one epoch's batches.
pub struct EpochIter<'a> {
    loader: &'a ImageLoader,
    batcher: ImageBatcher,
    /// Each batch's items by position among the loader's.
    batches: Vec<Vec<usize>>,
    next: usize,
}

impl Iterator for EpochIter<'_> {
    type Item = Result<ImageBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let positions = self.batches.get(self.next)?;
        self.next += 1;
        let items: Vec<usize> = positions.iter().map(|&p| self.loader.indices[p]).collect();
        let batch = self.batcher.build(&items, &self.loader.device);
        Some(Ok(batch.at_positions(positions.clone())))
    }
}

impl DataLoaderIterator<ImageBatch> for EpochIter<'_> {
    fn progress(&self) -> Progress {
        let done: usize = self.batches[..self.next].iter().map(Vec::len).sum();
        let total: usize = self.batches.iter().map(Vec::len).sum();
        Progress::new(done, total, None)
    }
}

/// What kd-train's fitting functions take, as they take Burn's `Arc<dyn DataLoader<_>>`.
impl AsRef<dyn DataLoader<ImageBatch>> for ImageLoader {
    fn as_ref(&self) -> &(dyn DataLoader<ImageBatch> + 'static) {
        self
    }
}

impl DataLoader<ImageBatch> for ImageLoader {
    fn iter<'a>(&'a self) -> Box<dyn DataLoaderIterator<ImageBatch> + 'a> {
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst);
        Box::new(self.iter_epoch(epoch))
    }

    fn num_items(&self) -> usize {
        self.num_batches() * self.batch_size.min(self.indices.len())
    }

    fn to_device(&self, device: &Device) -> Arc<dyn DataLoader<ImageBatch>> {
        let mut copy = self.clone();
        copy.device = device.clone();
        Arc::new(copy)
    }

    fn slice(&self, start: usize, end: usize) -> Arc<dyn DataLoader<ImageBatch>> {
        let mut copy = self.clone();
        let end = end.min(self.indices.len());
        copy.indices = Arc::new(self.indices[start.min(end)..end].to_vec());
        Arc::new(copy)
    }
}

/// Training and validation loaders over one decoded image set.
#[derive(Debug, Clone)]
pub struct DataBundle {
    /// The decoded images.
    pub set: Arc<ImageSet>,
    /// Training batches.
    pub train: ImageLoader,
    /// Validation batches.
    pub valid: ImageLoader,
}

impl DataBundle {
    /// Split `set` as fastai's `RandomSplitter(valid_pct, seed)` and build both loaders.
    pub fn new(set: ImageSet, config: &DataConfig, device: &Device) -> Result<Self, DataError> {
        let split = Split::random(set.len(), config.valid_pct, config.seed)?;
        Ok(Self::with_split(set, split, config, device))
    }

    /// Build both loaders from an explicit split.
    pub fn with_split(set: ImageSet, split: Split, config: &DataConfig, device: &Device) -> Self {
        let set = Arc::new(set);
        Self {
            train: ImageLoader::new(set.clone(), split.train, true, config, device),
            valid: ImageLoader::new(set.clone(), split.valid, false, config, device),
            set,
        }
    }
}
