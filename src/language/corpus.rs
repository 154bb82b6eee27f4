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
    /// A digest of the documents' text as cut (not of their paths): what a fingerprint holds
    /// so that a corpus edited between a kill and the rerun is not resumed.
    pub(super) content: String,
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
            let cut = char_boundary(&doc.bytes, left);
            // The limit falls in this document: none after it.
            left = if cut < doc.bytes.len() { 0 } else { left - cut };
            doc.bytes.truncate(cut);
            cut > 0
        });
    }
    let documents = text.documents.len();
    let content = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for doc in &text.documents {
            hasher.update((doc.bytes.len() as u64).to_le_bytes());
            hasher.update(&doc.bytes);
        }
        hasher.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
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
        content,
    })
}

/// The largest cut at most `limit` bytes into `bytes` that does not split a UTF-8 character
/// (a cut inside one would make a valid file look damaged to a character vocabulary).
fn char_boundary(bytes: &[u8], limit: usize) -> usize {
    let mut cut = limit.min(bytes.len());
    // Continuation bytes are 0b10xx_xxxx; a character has at most three of them.
    for _ in 0..3 {
        if cut == 0 || cut == bytes.len() || bytes[cut] & 0xC0 != 0x80 {
            break;
        }
        cut -= 1;
    }
    cut
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_limit_inside_a_character_cuts_before_it() {
        let dir = tempfile::tempdir().unwrap();
        // "déjà vu" several times over: two-byte characters everywhere.
        for (i, doc) in ["déjà vu, déjà vu", "à la carte, à la carte", "éé"]
            .iter()
            .enumerate()
        {
            std::fs::write(dir.path().join(format!("{i}.txt")), doc).unwrap();
        }
        let corpus = CorpusSection {
            source: dir.path().display().to_string(),
            // Two whole documents, then the first byte of an 'é'.
            limit_bytes: Some("déjà vu, déjà vu".len() + "à la carte, à la carte".len() + 1),
            valid_fraction: 0.5,
            vocabulary: VocabularyKind::Chars,
            window: 1,
            ..toml::from_str("").unwrap()
        };
        let text = load_text(&corpus, dir.path());
        assert!(text.is_ok(), "{:?}", text.err());
        assert_eq!(char_boundary("dé".as_bytes(), 2), 1);
        assert_eq!(char_boundary("dé".as_bytes(), 3), 3);
        assert_eq!(char_boundary("€".as_bytes(), 2), 0);
        assert_eq!(char_boundary(b"ab", 9), 2);
    }
}
