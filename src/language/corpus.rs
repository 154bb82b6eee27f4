//! The corpus of a language-model experiment: read, cut to its byte limit, split by document,
//! encoded and cut into windows; Burn data loaders over the windows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::tensor::Device;
use kd_data::{TextCorpus, TextWindows, TokenBatch, TokenBatcher, Vocabulary};

use super::config::{CorpusSection, LmExperiment, VocabularyKind};
use crate::KdError;

/// The corpus cut into training and validation windows.
pub(super) struct Text {
    pub(super) train: Arc<TextWindows>,
    pub(super) valid: Arc<TextWindows>,
    pub(super) vocab: Vocabulary,
    pub(super) summary: String,
}

/// The documents `corpus` names, cut to its byte limit, split and encoded.
pub(super) fn load_text(corpus: &CorpusSection, cache: &Path) -> Result<Text, KdError> {
    let path = match corpus.source.as_str() {
        "sotu" => kd_data::sotu::fetch(cache)?,
        other => PathBuf::from(other),
    };
    let mut text = TextCorpus::from_path(&path, corpus.separator.as_deref())?;
    if let Some(limit) = corpus.limit_bytes {
        let mut left = limit;
        text.documents.retain_mut(|doc| {
            let keep = left > 0;
            doc.bytes.truncate(left);
            left -= doc.bytes.len();
            keep
        });
    }
    let documents = text.documents.len();
    let (train, valid) = text.split(corpus.valid_fraction, corpus.split_seed)?;
    let vocab = match corpus.vocabulary {
        VocabularyKind::Bytes => Vocabulary::Bytes,
        VocabularyKind::Chars => Vocabulary::chars_of(&train)?,
    };
    let summary = format!(
        "{} ({documents} documents): {} training and {} validation documents, {} and {} bytes; {} ids ({}); windows of {} tokens",
        path.display(),
        train.documents.len(),
        valid.documents.len(),
        train.bytes(),
        valid.bytes(),
        vocab.len(),
        match corpus.vocabulary {
            VocabularyKind::Bytes => "bytes",
            VocabularyKind::Chars => "characters",
        },
        corpus.window,
    );
    Ok(Text {
        train: Arc::new(TextWindows::new(&train, &vocab, corpus.window)?),
        valid: Arc::new(TextWindows::new(&valid, &vocab, corpus.window)?),
        vocab,
        summary,
    })
}

pub(super) type Loader = Arc<dyn DataLoader<TokenBatch>>;

/// Batches of `windows` for `exp`'s training, shuffled by `shuffle`'s seed when given.
pub(super) fn loader(
    windows: &Arc<TextWindows>,
    exp: &LmExperiment,
    shuffle: Option<u64>,
    device: &Device,
) -> Loader {
    let builder = DataLoaderBuilder::new(TokenBatcher::new(0).with_length(exp.corpus.window))
        .batch_size(exp.training.batch_size)
        .set_device(device.clone());
    match shuffle {
        Some(seed) => builder.shuffle(seed).build(windows.clone()),
        None => builder.build(windows.clone()),
    }
}
