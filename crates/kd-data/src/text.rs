//! Plain-text corpora for language models: documents from a file or a folder, a train /
//! validation split by document, byte- or character-level vocabularies, and fixed-length
//! windows of next-token examples as a Burn `Dataset` of [`TokenItem`]s (padded and masked by
//! [`TokenBatcher`](crate::TokenBatcher)).

use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{DataError, TokenItem};

/// The most bytes a corpus may hold in all (1 GiB): its documents are kept in memory.
pub const MAX_CORPUS_BYTES: u64 = 1 << 30;

/// One document: its text and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its bytes (UTF-8 is checked only by a character vocabulary).
    pub bytes: Vec<u8>,
}

/// Documents: every file of a folder (sorted by path, hidden files skipped), or one file; a
/// non-empty `separator` line splits a file into several documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextCorpus {
    /// The documents, in file order.
    pub documents: Vec<Document>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |e| DataError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl TextCorpus {
    /// The documents under `path` (a folder: each file, recursively, in sorted order; a file:
    /// itself), each file cut at lines equal to `separator` when one is given. Empty documents
    /// are dropped; a corpus with none left, or over [`MAX_CORPUS_BYTES`], is an error naming
    /// `path`.
    pub fn from_path(path: &Path, separator: Option<&str>) -> Result<Self, DataError> {
        let files = if path.is_dir() {
            let mut files = Vec::new();
            collect_files(path, &mut std::collections::HashSet::new(), &mut files)?;
            files.sort();
            files
        } else if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                reason: match path.exists() {
                    true => {
                        "not a regular file or a folder (a FIFO, a device or a socket is not read)"
                    }
                    false => "no such file or folder",
                }
                .into(),
            });
        };
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).map_err(io(f)))
            .sum::<Result<u64, _>>()?;
        if total > MAX_CORPUS_BYTES {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                reason: format!(
                    "the corpus holds {total} bytes, more than the {MAX_CORPUS_BYTES} kd keeps in memory"
                ),
            });
        }
        let mut documents = Vec::new();
        let mut left = MAX_CORPUS_BYTES;
        for file in files {
            // Bounded by the bytes actually read, not by what the file system said its size
            // was: a file may grow, or report no size at all.
            let bytes = read_at_most(&file, left)?;
            left -= bytes.len() as u64;
            for part in split_documents(&bytes, separator) {
                if !part.iter().all(u8::is_ascii_whitespace) {
                    documents.push(Document {
                        path: file.clone(),
                        bytes: part.to_vec(),
                    });
                }
            }
        }
        if documents.is_empty() {
            return Err(DataError::Io {
                path: path.to_path_buf(),
                reason: "the corpus is empty: no file holds any text".into(),
            });
        }
        Ok(Self { documents })
    }

    /// `(train, valid)`: a shuffle of the documents by `seed`, `valid_fraction` of them (at
    /// least one) for validation. Needs two documents at least.
    pub fn split(self, valid_fraction: f64, seed: u64) -> Result<(Self, Self), DataError> {
        let n = self.documents.len();
        if n < 2 {
            return Err(DataError::BadSplit(format!(
                "a split by document needs two documents at least; {} is one (give a folder of files, or a separator line)",
                self.documents
                    .first()
                    .map(|d| d.path.display().to_string())
                    .unwrap_or_default()
            )));
        }
        if !(valid_fraction > 0.0 && valid_fraction < 1.0) {
            return Err(DataError::BadSplit(format!(
                "valid_fraction = {valid_fraction} must be between 0 and 1"
            )));
        }
        let valid = ((n as f64 * valid_fraction).round() as usize).clamp(1, n - 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut is_valid = vec![false; n];
        for &i in &order[..valid] {
            is_valid[i] = true;
        }
        let (mut train, mut held) = (Vec::new(), Vec::new());
        for (doc, v) in self.documents.into_iter().zip(is_valid) {
            if v { &mut held } else { &mut train }.push(doc);
        }
        Ok((Self { documents: train }, Self { documents: held }))
    }

    /// Every byte count, summed.
    pub fn bytes(&self) -> usize {
        self.documents.iter().map(|d| d.bytes.len()).sum()
    }
}

/// The regular files under `dir` (symbolic links followed), each directory visited once
/// however many links lead to it; FIFOs, devices and sockets are not text and are skipped
/// (reading one would block or never end).
fn collect_files(
    dir: &Path,
    visited: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), DataError> {
    if !visited.insert(std::fs::canonicalize(dir).map_err(io(dir))?) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, visited, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The bytes of `file`, refused once more than `limit` have been read.
fn read_at_most(file: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .map_err(io(file))?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io(file))?;
    if bytes.len() as u64 > limit {
        return Err(DataError::Io {
            path: file.to_path_buf(),
            reason: format!(
                "the corpus grows past the {MAX_CORPUS_BYTES} bytes kd keeps in memory while this file is read"
            ),
        });
    }
    Ok(bytes)
}

/// `bytes` cut at lines equal to `separator` (line ends `\n` or `\r\n`), or whole.
fn split_documents<'a>(bytes: &'a [u8], separator: Option<&str>) -> Vec<&'a [u8]> {
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        return vec![bytes];
    };
    let mut parts = Vec::new();
    let mut start = 0;
    let mut line_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' || i + 1 == bytes.len() {
            let end = if b == b'\n' { i } else { i + 1 };
            let line = &bytes[line_start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line == separator.as_bytes() {
                parts.push(&bytes[start..line_start]);
                start = (i + 1).min(bytes.len());
            }
            line_start = i + 1;
        }
    }
    parts.push(&bytes[start..]);
    parts
}

/// How text becomes token ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Vocabulary {
    /// Each byte is a token: 256 ids, any file.
    Bytes,
    /// Each character is a token: id 0 for characters not in `chars`, then `chars` in order.
    /// Needs UTF-8.
    Chars {
        /// The known characters, sorted.
        chars: Vec<char>,
    },
}

impl Vocabulary {
    /// The characters of `corpus` (its training part), sorted; an error names the first
    /// document that is not UTF-8 and where.
    pub fn chars_of(corpus: &TextCorpus) -> Result<Self, DataError> {
        let mut seen = std::collections::BTreeSet::new();
        for doc in &corpus.documents {
            seen.extend(utf8(doc)?.chars());
        }
        Ok(Vocabulary::Chars {
            chars: seen.into_iter().collect(),
        })
    }

    /// The number of ids.
    pub fn len(&self) -> usize {
        match self {
            Vocabulary::Bytes => 256,
            Vocabulary::Chars { chars } => chars.len() + 1,
        }
    }

    /// Whether there are no ids (never: bytes have 256, characters the unknown id).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The ids of `doc`; a character vocabulary refuses a document that is not UTF-8.
    pub fn encode(&self, doc: &Document) -> Result<Vec<u32>, DataError> {
        Ok(match self {
            Vocabulary::Bytes => doc.bytes.iter().map(|&b| u32::from(b)).collect(),
            Vocabulary::Chars { chars } => utf8(doc)?
                .chars()
                .map(|c| chars.binary_search(&c).map_or(0, |i| i as u32 + 1))
                .collect(),
        })
    }

    /// The text of `ids` (invalid UTF-8 and unknown ids as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Vocabulary::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i.min(255) as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Vocabulary::Chars { chars } => ids
                .iter()
                .map(|&i| {
                    (i as usize)
                        .checked_sub(1)
                        .and_then(|i| chars.get(i))
                        .copied()
                        .unwrap_or('\u{FFFD}')
                })
                .collect(),
        }
    }
}

fn utf8(doc: &Document) -> Result<&str, DataError> {
    std::str::from_utf8(&doc.bytes).map_err(|e| DataError::Io {
        path: doc.path.clone(),
        reason: format!(
            "not UTF-8 at byte {} (a character vocabulary needs UTF-8; a byte vocabulary reads any file)",
            e.valid_up_to()
        ),
    })
}

/// Next-token examples: each document's ids cut into consecutive windows of `window` inputs
/// whose targets are the same ids shifted by one (the last window of a document may be
/// shorter; the batcher pads it and masks the padding).
#[derive(Debug, Clone)]
pub struct TextWindows {
    items: Vec<TokenItem>,
}

impl TextWindows {
    /// The windows of every document of `corpus` under `vocab`. A `window` of 0, or one longer
    /// than every document (fewer than `window + 1` ids in each), is an error naming the
    /// corpus's longest document.
    pub fn new(corpus: &TextCorpus, vocab: &Vocabulary, window: usize) -> Result<Self, DataError> {
        if window == 0 {
            return Err(DataError::BadConfig(
                "a text window needs 1 token at least".into(),
            ));
        }
        let mut items = Vec::new();
        let mut longest: Option<(usize, &Path)> = None;
        for doc in &corpus.documents {
            let ids = vocab.encode(doc)?;
            if longest.is_none_or(|(n, _)| ids.len() > n) {
                longest = Some((ids.len(), &doc.path));
            }
            let mut start = 0;
            while start + 1 < ids.len() {
                let end = (start + window).min(ids.len() - 1);
                items.push(TokenItem {
                    tokens: ids[start..end].to_vec(),
                    label: None,
                    position_labels: Some(ids[start + 1..end + 1].to_vec()),
                });
                start = end;
            }
        }
        match longest {
            Some((n, path)) if n <= window => Err(DataError::Io {
                path: path.to_path_buf(),
                reason: format!(
                    "window {window} is longer than every document: the longest, this one, has {n} tokens and a window needs {}",
                    window + 1
                ),
            }),
            _ => Ok(Self { items }),
        }
    }
}

impl Dataset<TokenItem> for TextWindows {
    fn get(&self, index: usize) -> Result<TokenItem, DatasetError> {
        self.items.get(index).cloned().ok_or_else(|| {
            DatasetError::new(DataError::BadConfig(format!(
                "index {index} out of range for {} windows",
                self.items.len()
            )))
        })
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}
