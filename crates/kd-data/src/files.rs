//! Finding images, labelling them, and splitting them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// File extensions taken as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Every image file below `dir` (recursively), by extension, sorted so runs are reproducible.
/// Symbolic links are followed, but each real directory is walked once: a link back up the tree
/// (`again -> .`) neither loops nor lists an image twice.
pub fn get_image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::NotADirectory(dir.to_path_buf()));
    }
    let mut out = Vec::new();
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let real = std::fs::canonicalize(&d).map_err(|e| DataError::Io {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        if !visited.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&d).map_err(|e| DataError::Io {
            path: d.clone(),
            reason: e.to_string(),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| DataError::Io {
                path: d.clone(),
                reason: e.to_string(),
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if has_image_extension(&path) && path.is_file() {
                // Regular files only (links to them followed): a FIFO or a device named like
                // an image would block the decoder or never end.
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// A user-supplied labelling function: `None` means "cannot label this file".
pub type LabelClosure = Arc<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// How an image's class is derived from its path.
#[derive(Clone)]
pub enum LabelFn {
    /// Oxford-IIIT Pets cat vs dog: `cat` when the file name starts with an uppercase letter
    /// (cat breeds are capitalised), `dog` otherwise.
    PetsCatDog,
    /// The first capture group of a regular expression applied to the file name, e.g.
    /// `^(.*)_\d+\.` for the 37 Pets breeds.
    Regex(regex::Regex),
    /// The name of the parent folder (ImageNet-style layouts).
    ParentFolder,
    /// Any function of the path; `None` means "cannot label this file".
    Custom(LabelClosure),
}

impl std::fmt::Debug for LabelFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelFn::PetsCatDog => f.write_str("PetsCatDog"),
            LabelFn::Regex(r) => write!(f, "Regex({})", r.as_str()),
            LabelFn::ParentFolder => f.write_str("ParentFolder"),
            LabelFn::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl LabelFn {
    /// A regex label function; an invalid pattern or one without a capture group is an error.
    pub fn regex(pattern: &str) -> Result<Self, DataError> {
        let re = regex::Regex::new(pattern).map_err(|e| DataError::BadLabelRegex {
            pattern: pattern.into(),
            reason: e.to_string(),
        })?;
        if re.captures_len() < 2 {
            return Err(DataError::BadLabelRegex {
                pattern: pattern.into(),
                reason: "it needs one capture group, e.g. ^(.*)_\\d+\\.".into(),
            });
        }
        Ok(LabelFn::Regex(re))
    }

    /// The label of `path`, or an error naming the file.
    pub fn label(&self, path: &Path) -> Result<String, DataError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = match self {
            LabelFn::PetsCatDog => name
                .chars()
                .next()
                .map(|c| if c.is_uppercase() { "cat" } else { "dog" }.to_string()),
            LabelFn::Regex(re) => re
                .captures(&name)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string()),
            LabelFn::ParentFolder => path
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned()),
            LabelFn::Custom(f) => f(path),
        };
        label.ok_or_else(|| DataError::Unlabelled {
            path: path.to_path_buf(),
            label_fn: format!("{self:?}"),
        })
    }
}

/// Class names, sorted (as fastai's `CategoryMap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocab(pub Vec<String>);

impl Vocab {
    /// The sorted unique labels.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a String>) -> Self {
        let mut v: Vec<String> = labels.into_iter().cloned().collect();
        v.sort();
        v.dedup();
        Vocab(v)
    }

    /// Index of `label`.
    pub fn index(&self, label: &str) -> Option<usize> {
        self.0.binary_search_by(|c| c.as_str().cmp(label)).ok()
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no classes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Training and validation indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Indices of training items.
    pub train: Vec<usize>,
    /// Indices of validation items.
    pub valid: Vec<usize>,
}

impl Split {
    /// fastai's `RandomSplitter(valid_pct, seed)`: a seeded permutation of `0..n` whose first
    /// `⌊valid_pct·n⌋` entries are the validation set. Both lists come back sorted.
    pub fn random(n: usize, valid_pct: f64, seed: u64) -> Result<Split, DataError> {
        if !(0.0..1.0).contains(&valid_pct) {
            return Err(DataError::BadSplit(format!(
                "valid_pct must be in [0, 1), got {valid_pct}"
            )));
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut StdRng::seed_from_u64(seed));
        let cut = (valid_pct * n as f64) as usize;
        let mut valid = perm[..cut].to_vec();
        let mut train = perm[cut..].to_vec();
        valid.sort_unstable();
        train.sort_unstable();
        Ok(Split { train, valid })
    }

    /// Validation where `is_valid(i)` holds (fastai's `FuncSplitter` / `IndexSplitter`).
    pub fn by_fn(n: usize, is_valid: impl Fn(usize) -> bool) -> Split {
        let (valid, train) = (0..n).partition(|&i| is_valid(i));
        Split { train, valid }
    }

    /// Validation = the files whose paths are listed (fastai's `FileSplitter`). A listed path that
    /// is not among `files` is an error naming it.
    pub fn by_paths(files: &[PathBuf], valid: &[PathBuf]) -> Result<Split, DataError> {
        for v in valid {
            if !files.contains(v) {
                return Err(DataError::BadSplit(format!(
                    "validation file {} is not in the data set",
                    v.display()
                )));
            }
        }
        Ok(Split::by_fn(files.len(), |i| valid.contains(&files[i])))
    }
}
