//! The decoded image set: every image found, labelled and decoded once (in parallel) to u8 at
//! its pre-crop size, with the settings that shape the pipeline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::RgbImage;
use kd_core::{fnv1a, fnv1a_start};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::augment::Augmentation;
use crate::files::{LabelFn, Vocab, get_image_files};
use crate::transform::{ResizeMethod, decodable_size, decode_rgb, kept_size, precrop};

/// What to do with a file that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// Leave it out; it is listed, with the reason, in [`ImageSet::skipped`] (for the caller
    /// to report).
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
    /// Random-resized crops, mixup and cutmix of training batches (default: none).
    pub augment: Augmentation,
    /// The most bytes the decoded images may hold (default: no limit). Checked from the
    /// files' headers before any image is decoded: a set past it is refused with
    /// [`DataError::TooLarge`]. Not part of the pipeline's identity (not serialised).
    #[serde(skip)]
    pub memory_limit: Option<u64>,
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
            augment: Augmentation::default(),
            memory_limit: None,
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
    /// Fingerprint of the decoded pixels, labels and size (see [`ImageSet::fingerprint`]).
    fingerprint: u64,
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
        if let Some(limit) = config.memory_limit {
            check_memory(&files, config, limit)?;
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
            fingerprint: 0,
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
                    BadImagePolicy::Skip => set.skipped.push((path, reason)),
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
        set.fingerprint = set.compute_fingerprint();
        Ok(set)
    }

    /// A stable fingerprint of this set's contents: every decoded pixel, label and dimension,
    /// the model-input size and the resize method. Two sets that could yield different model
    /// inputs for the same item index differ here (up to a 64-bit hash collision), which is what
    /// keys the teacher-output cache across data sets.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn compute_fingerprint(&self) -> u64 {
        let per_image: Vec<u64> = self
            .images
            .par_iter()
            .map(|img| {
                let (w, h) = img.dimensions();
                let head = fnv1a(fnv1a_start(), &[w.to_le_bytes(), h.to_le_bytes()].concat());
                fnv1a(head, img.as_raw())
            })
            .collect();
        let settings = format!("{}:{:?}:{}", self.size, self.resize, self.vocab.0.join("/"));
        let mut hash = fnv1a(fnv1a_start(), settings.as_bytes());
        for (image, label) in per_image.iter().zip(&self.labels) {
            hash = fnv1a(hash, &image.to_le_bytes());
            hash = fnv1a(hash, &(*label as u64).to_le_bytes());
        }
        hash
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

    /// Whether item `i` always yields the same pixels under `loader` options `train`/`flip`.
    pub fn is_deterministic(&self, i: usize, train: bool, flip: bool) -> bool {
        !(train && flip) && self.crop_is_fixed(i, train)
    }

    /// Whether item `i`'s crop is the same every epoch: always on validation (centred), and on
    /// training when nothing is left to crop at random. A fixed crop with a random flip has two
    /// variants, each of which can be cached.
    pub fn crop_is_fixed(&self, i: usize, train: bool) -> bool {
        if !train {
            return true;
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

/// Refuse, before decoding, images whose decoded pixels would hold more than `limit` bytes:
/// each file's header gives its size, and with it what [`precrop`] keeps. A file that will not
/// decode (unreadable, or past a limit of [`decode_rgb`]'s) counts nothing here: decoding
/// reports it.
fn check_memory(files: &[PathBuf], config: &DataConfig, limit: u64) -> Result<(), DataError> {
    let kept: Vec<u64> = files
        .par_iter()
        .map(|path| {
            decodable_size(path).map_or(0, |(w, h)| {
                let (kw, kh) = kept_size(w, h, config.size, config.resize);
                kw.saturating_mul(kh).saturating_mul(3)
            })
        })
        .collect();
    let bytes = kept.iter().fold(0u64, |sum, b| sum.saturating_add(*b));
    if bytes <= limit {
        return Ok(());
    }
    let (largest, largest_bytes) = kept
        .iter()
        .enumerate()
        .max_by_key(|(_, b)| **b)
        .map_or((PathBuf::new(), 0), |(i, b)| (files[i].clone(), *b));
    Err(DataError::TooLarge {
        images: files.len(),
        size: config.size,
        crop: config.resize == ResizeMethod::Crop,
        bytes,
        limit,
        largest,
        largest_bytes,
    })
}
