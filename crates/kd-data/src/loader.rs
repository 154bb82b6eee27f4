//! Decoded, cached image sets and the batch loader (Burn `DataLoader`, `Dataset`, `Batcher`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderIterator, Progress};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbImage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::files::{LabelFn, Split, Vocab, get_image_files};
use crate::transform::{ResizeMethod, crop_origin, decode_rgb, precrop, write_chw};

/// What to do with a file that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// Leave it out with a warning naming it; it is counted in [`ImageSet::skipped`].
    #[default]
    Skip,
    /// Stop with an error naming it.
    Error,
}

/// Everything that shapes the data pipeline (fastai's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Side of the square images fed to the model (fastai `Resize(64)`).
    pub size: usize,
    /// How images become squares.
    pub resize: ResizeMethod,
    /// Images per batch.
    pub batch_size: usize,
    /// Fraction held out for validation.
    pub valid_pct: f64,
    /// Seed of the split, the shuffling and the random crops.
    pub seed: u64,
    /// Random horizontal flips on training images.
    pub flip: bool,
    /// ImageNet normalisation after scaling to [0, 1].
    pub normalize: bool,
    /// What to do with unreadable files.
    pub on_bad_image: BadImagePolicy,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            size: 64,
            resize: ResizeMethod::Crop,
            batch_size: 64,
            valid_pct: 0.2,
            seed: 42,
            flip: false,
            normalize: true,
            on_bad_image: BadImagePolicy::Skip,
        }
    }
}

/// Decoded images kept in memory (u8, at pre-crop size), with their labels.
#[derive(Debug)]
pub struct ImageSet {
    /// Source file of each image.
    pub paths: Vec<PathBuf>,
    /// Class index of each image.
    pub labels: Vec<usize>,
    /// Class names.
    pub vocab: Vocab,
    /// Files left out, with the reason (only under [`BadImagePolicy::Skip`]).
    pub skipped: Vec<(PathBuf, String)>,
    images: Vec<RgbImage>,
    size: usize,
    resize: ResizeMethod,
}

impl ImageSet {
    /// Find, label and decode every image below `dir`.
    pub fn from_folder(
        dir: &Path,
        label_fn: &LabelFn,
        config: &DataConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self, DataError> {
        let files = get_image_files(dir)?;
        if files.is_empty() {
            return Err(DataError::NoImages(dir.to_path_buf()));
        }
        Self::from_files(files, label_fn, config, progress)
    }

    /// Label and decode `files` in parallel. `progress(done, total)` is called as images finish.
    /// The classes are the sorted labels found (at least two).
    pub fn from_files(
        files: Vec<PathBuf>,
        label_fn: &LabelFn,
        config: &DataConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self, DataError> {
        Self::load(files, label_fn, None, config, progress)
    }

    /// As [`ImageSet::from_files`], with the classes a model was trained on: class indices
    /// follow `vocab` (even if some class has no image here), and a label outside it is an
    /// error naming the file. For evaluating a trained model on other images.
    pub fn with_vocab(
        files: Vec<PathBuf>,
        label_fn: &LabelFn,
        vocab: &Vocab,
        config: &DataConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self, DataError> {
        Self::load(files, label_fn, Some(vocab), config, progress)
    }

    fn load(
        files: Vec<PathBuf>,
        label_fn: &LabelFn,
        vocab: Option<&Vocab>,
        config: &DataConfig,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self, DataError> {
        if config.size == 0 || config.batch_size == 0 {
            return Err(DataError::BadConfig(
                "size and batch_size must be positive".into(),
            ));
        }
        let labels = files
            .iter()
            .map(|f| label_fn.label(f))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(vocab) = vocab
            && let Some((path, label)) = files
                .iter()
                .zip(&labels)
                .find(|(_, l)| vocab.index(l).is_none())
        {
            return Err(DataError::UnknownClass {
                path: path.clone(),
                label: label.clone(),
                known: vocab.0.clone(),
            });
        }
        let done = AtomicUsize::new(0);
        let total = files.len();
        let decoded: Vec<Result<RgbImage, String>> = files
            .par_iter()
            .map(|path| {
                let r = decode_rgb(path).map(|img| precrop(&img, config.size, config.resize));
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                r
            })
            .collect();
        let mut set = ImageSet {
            paths: Vec::with_capacity(total),
            labels: Vec::with_capacity(total),
            vocab: Vocab(Vec::new()),
            skipped: Vec::new(),
            images: Vec::with_capacity(total),
            size: config.size,
            resize: config.resize,
        };
        let mut names = Vec::with_capacity(total);
        for ((path, label), img) in files.into_iter().zip(labels).zip(decoded) {
            match img {
                Ok(img) => {
                    set.paths.push(path);
                    names.push(label);
                    set.images.push(img);
                }
                Err(reason) => match config.on_bad_image {
                    BadImagePolicy::Error => return Err(DataError::BadImage { path, reason }),
                    BadImagePolicy::Skip => {
                        eprintln!(
                            "warning: skipping unreadable image {}: {reason}",
                            path.display()
                        );
                        set.skipped.push((path, reason));
                    }
                },
            }
        }
        if set.images.is_empty() {
            return Err(DataError::NoReadableImages {
                skipped: set.skipped.len(),
            });
        }
        set.vocab = match vocab {
            Some(v) => v.clone(),
            None => Vocab::from_labels(&names),
        };
        if set.vocab.len() < 2 {
            return Err(DataError::SingleClass {
                class: set.vocab.0.first().cloned().unwrap_or_default(),
                label_fn: format!("{label_fn:?}"),
            });
        }
        set.labels = names
            .iter()
            .map(|n| set.vocab.index(n).unwrap_or(0))
            .collect();
        Ok(set)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The cached (pre-crop) image `i`.
    pub fn image(&self, i: usize) -> &RgbImage {
        &self.images[i]
    }

    /// Side of the model's input.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A `verify_images`-style summary.
    pub fn summary(&self) -> String {
        let mut counts = vec![0usize; self.vocab.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        let classes: Vec<String> = self
            .vocab
            .0
            .iter()
            .zip(counts)
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        format!(
            "{} images ({}), {} unreadable skipped",
            self.len(),
            classes.join(", "),
            self.skipped.len()
        )
    }

    /// Whether item `i` always yields the same pixels under `loader` options `train`/`flip`
    /// (what a teacher-output cache needs).
    pub fn is_deterministic(&self, i: usize, train: bool, flip: bool) -> bool {
        if !train {
            return true;
        }
        if flip {
            return false;
        }
        match self.resize {
            ResizeMethod::Crop => {
                let (w, h) = self.images[i].dimensions();
                (w as usize, h as usize) == (self.size, self.size)
            }
            _ => true,
        }
    }
}

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
    /// `[batch]` class indices.
    pub targets: Tensor<1, Int>,
    /// The items' indices in the image set.
    pub items: Vec<usize>,
    /// Whether each item's pixels are the same every epoch (a teacher may cache its outputs).
    pub deterministic: Vec<bool>,
}

impl ImageBatch {
    /// The same batch on the tape-free device (for evaluation).
    pub fn without_autodiff(self) -> Self {
        Self {
            images: self.images.without_autodiff(),
            targets: self.targets.without_autodiff(),
            ..self
        }
    }
}

/// Turns items into batches: crop (random on train), optional flip, normalisation.
#[derive(Debug, Clone)]
pub struct ImageBatcher {
    set: Arc<ImageSet>,
    train: bool,
    flip: bool,
    normalize: bool,
    seed: u64,
    epoch: u64,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl ImageBatcher {
    /// A batcher over `set`; `train` enables random crops (and flips if `flip`).
    pub fn new(set: Arc<ImageSet>, train: bool, flip: bool, normalize: bool, seed: u64) -> Self {
        Self {
            set,
            train,
            flip,
            normalize,
            seed,
            epoch: 0,
        }
    }

    /// The same batcher for another epoch (new random crops).
    pub fn at_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// The pixels of item `index` as CHW floats.
    pub fn item_pixels(&self, index: usize, out: &mut [f32]) {
        let img = self.set.image(index);
        let size = self.set.size() as u32;
        let mut rng =
            StdRng::seed_from_u64(mix(self.seed ^ mix(self.epoch) ^ mix(index as u64 + 1)));
        let offset = if self.train {
            (rng.random::<f64>(), rng.random::<f64>())
        } else {
            (0.5, 0.5)
        };
        let flip = self.train && self.flip && rng.random_bool(0.5);
        let (w, h) = img.dimensions();
        write_chw(
            img,
            crop_origin(w, h, size, offset),
            size,
            flip,
            self.normalize,
            out,
        );
    }

    fn build(&self, items: &[usize], device: &Device) -> ImageBatch {
        let size = self.set.size();
        let per = 3 * size * size;
        let mut data = vec![0f32; items.len() * per];
        data.par_chunks_mut(per)
            .zip(items.par_iter())
            .for_each(|(out, &i)| self.item_pixels(i, out));
        let labels: Vec<i64> = items.iter().map(|&i| self.set.labels[i] as i64).collect();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(data, [items.len(), 3, size, size]), device),
            targets: Tensor::from_data(TensorData::new(labels, [items.len()]), device),
            items: items.to_vec(),
            deterministic: items
                .iter()
                .map(|&i| self.set.is_deterministic(i, self.train, self.flip))
                .collect(),
        }
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        let idx: Vec<usize> = items.iter().map(|i| i.index).collect();
        self.build(&idx, device)
    }
}

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
            batcher: ImageBatcher::new(set, train, config.flip, config.normalize, config.seed),
            indices: Arc::new(indices),
            batch_size: config.batch_size,
            device: device.clone(),
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same items and settings with random horizontal flips on or off (they only apply to
    /// training loaders), counting epochs from 0 on its own.
    pub fn with_flip(&self, flip: bool) -> Self {
        let mut loader = self.clone();
        loader.batcher.flip = flip;
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
        self.batcher
            .set
            .is_deterministic(i, self.batcher.train, self.batcher.flip)
    }

    /// The item order of `epoch`, cut into batches.
    pub fn epoch_batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order = self.indices.to_vec();
        if self.is_train() {
            order.shuffle(&mut StdRng::seed_from_u64(mix(
                self.batcher.seed ^ mix(epoch + 1)
            )));
        }
        let mut batches: Vec<Vec<usize>> =
            order.chunks(self.batch_size).map(|c| c.to_vec()).collect();
        if self.is_train() && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        batches
    }

    /// Batches of an explicit epoch, built lazily.
    pub fn iter_epoch(&self, epoch: u64) -> EpochIter<'_> {
        EpochIter {
            loader: self,
            batcher: self.batcher.clone().at_epoch(epoch),
            batches: self.epoch_batches(epoch),
            next: 0,
        }
    }
}

/// Iterator over one epoch's batches.
pub struct EpochIter<'a> {
    loader: &'a ImageLoader,
    batcher: ImageBatcher,
    batches: Vec<Vec<usize>>,
    next: usize,
}

impl Iterator for EpochIter<'_> {
    type Item = Result<ImageBatch, DatasetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let items = self.batches.get(self.next)?;
        self.next += 1;
        Some(Ok(self.batcher.build(items, &self.loader.device)))
    }
}

impl DataLoaderIterator<ImageBatch> for EpochIter<'_> {
    fn progress(&self) -> Progress {
        let done: usize = self.batches[..self.next].iter().map(Vec::len).sum();
        let total: usize = self.batches.iter().map(Vec::len).sum();
        Progress::new(done, total, None)
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
