//! Plain-text corpora: documents, the split by document, vocabularies, next-token windows, the
//! errors that name the file, and the embedded corpus.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use kd_core::Targets;
use kd_data::{DataError, TextCorpus, TextWindows, TokenBatcher, Vocabulary, sotu};

fn write(dir: &Path, name: &str, text: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn windows_hold_each_document_and_its_next_tokens() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"hello world");
    let corpus = TextCorpus::from_path(&dir.path().join("a.txt"), None).unwrap();
    let windows = TextWindows::new(&corpus, &Vocabulary::Bytes, 4).unwrap();
    // 11 bytes give 10 (input, next) pairs: windows of 4, 4 and 2.
    let items: Vec<_> = (0..windows.len())
        .map(|i| windows.get(i).unwrap())
        .collect();
    let text = |ids: &[u32]| ids.iter().map(|&b| b as u8 as char).collect::<String>();
    let got: Vec<(String, String)> = items
        .iter()
        .map(|i| (text(&i.tokens), text(i.position_labels.as_ref().unwrap())))
        .collect();
    let want = [("hell", "ello"), ("o wo", " wor"), ("rl", "ld")];
    assert_eq!(got.len(), 3);
    for ((g_in, g_out), (w_in, w_out)) in got.iter().zip(want) {
        assert_eq!((g_in.as_str(), g_out.as_str()), (w_in, w_out));
    }
}

#[test]
fn a_folder_is_its_files_in_order_and_a_separator_cuts_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.txt", b"second\n");
    write(
        dir.path(),
        "a/1.txt",
        b"first part\n---\nfirst again\r\n---\r\n\n",
    );
    write(dir.path(), ".hidden", b"never read");
    write(dir.path(), "c.txt", b"  \n");
    let whole = TextCorpus::from_path(dir.path(), None).unwrap();
    let names: Vec<String> = whole
        .documents
        .iter()
        .map(|d| {
            d.path
                .strip_prefix(dir.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        ["a/1.txt", "b.txt"],
        "sorted, hidden and blank files left out"
    );
    let cut = TextCorpus::from_path(dir.path(), Some("---")).unwrap();
    let texts: Vec<&[u8]> = cut.documents.iter().map(|d| d.bytes.as_slice()).collect();
    assert_eq!(
        texts,
        [&b"first part\n"[..], b"first again\r\n", b"second\n"],
        "the separator lines are dropped, the blank tail too"
    );
}

#[test]
fn the_split_is_by_document_and_repeats_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        write(
            dir.path(),
            &format!("{i:02}.txt"),
            format!("document {i}").as_bytes(),
        );
    }
    let corpus = TextCorpus::from_path(dir.path(), None).unwrap();
    let (train, valid) = corpus.clone().split(0.2, 3).unwrap();
    assert_eq!((train.documents.len(), valid.documents.len()), (8, 2));
    let mut all: Vec<_> = train
        .documents
        .iter()
        .chain(&valid.documents)
        .cloned()
        .collect();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(all, corpus.documents, "every document once");
    let (_, again) = corpus.clone().split(0.2, 3).unwrap();
    assert_eq!(again, valid);
    let others: Vec<_> = (4..20)
        .map(|seed| corpus.clone().split(0.2, seed).unwrap().1)
        .collect();
    assert!(others.iter().any(|v| *v != valid), "the seed chooses");
    let one = TextCorpus::from_path(&dir.path().join("00.txt"), None).unwrap();
    let e = one.split(0.2, 0).unwrap_err().to_string();
    assert!(e.contains("00.txt") && e.contains("two documents"), "{e}");
}

#[test]
fn characters_need_utf8_and_the_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.txt", "naïve café".as_bytes());
    write(dir.path(), "latin1.txt", b"caf\xe9 au lait");
    let corpus = TextCorpus::from_path(dir.path(), None).unwrap();
    let e = Vocabulary::chars_of(&corpus).unwrap_err().to_string();
    assert!(
        e.contains("latin1.txt") && e.contains("not UTF-8 at byte 3"),
        "{e}"
    );
    // Bytes read any file.
    let windows = TextWindows::new(&corpus, &Vocabulary::Bytes, 8).unwrap();
    assert!(windows.len() >= 2);

    let good = TextCorpus::from_path(&dir.path().join("good.txt"), None).unwrap();
    let vocab = Vocabulary::chars_of(&good).unwrap();
    assert_eq!(vocab.len(), 10, "9 distinct characters and the unknown id");
    let ids = vocab.encode(&good.documents[0]).unwrap();
    assert_eq!(ids.len(), 10, "characters, not bytes");
    assert_eq!(vocab.decode(&ids), "naïve café");
    let unknown = kd_data::Document {
        path: "x".into(),
        bytes: "nü!".as_bytes().to_vec(),
    };
    assert_eq!(
        vocab.decode(&vocab.encode(&unknown).unwrap()),
        "n\u{FFFD}\u{FFFD}"
    );
}

#[test]
fn empty_corpora_and_windows_longer_than_every_document_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "empty/a.txt", b"");
    write(dir.path(), "empty/b.txt", b"\n\n");
    let e = TextCorpus::from_path(&dir.path().join("empty"), None).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(
        e.to_string().contains("empty") && e.to_string().contains("corpus"),
        "{e}"
    );
    let e = TextCorpus::from_path(&dir.path().join("nothing-here"), None).unwrap_err();
    assert!(e.to_string().contains("nothing-here"), "{e}");

    write(dir.path(), "short/a.txt", b"tiny");
    write(dir.path(), "short/b.txt", b"a bit longer");
    let corpus = TextCorpus::from_path(&dir.path().join("short"), None).unwrap();
    let e = TextWindows::new(&corpus, &Vocabulary::Bytes, 64)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b.txt") && e.contains("window 64") && e.contains("12 tokens"),
        "{e}"
    );
    assert!(TextWindows::new(&corpus, &Vocabulary::Bytes, 0).is_err());
    assert!(TextWindows::new(&corpus, &Vocabulary::Bytes, 11).is_ok());
}

#[test]
fn burns_data_loader_batches_windows_with_a_mask_and_next_token_targets() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"abcdefg");
    let corpus = TextCorpus::from_path(dir.path(), None).unwrap();
    let windows = TextWindows::new(&corpus, &Vocabulary::Bytes, 4).unwrap();
    // 7 bytes give 6 (input, next) pairs: abcd → bcde, then ef → fg.
    assert_eq!(windows.len(), 2);
    let loader = DataLoaderBuilder::new(TokenBatcher::new(0).with_length(4))
        .batch_size(2)
        .build(windows);
    let batches: Vec<_> = loader.iter().collect();
    assert_eq!(batches.len(), 1);
    let batch = batches[0].as_ref().unwrap();
    let tokens: Vec<i64> = batch.tokens.to_data().iter::<i64>().collect();
    assert_eq!(tokens, [97, 98, 99, 100, 101, 102, 0, 0]);
    let padding: Vec<bool> = batch.padding.to_data().iter::<bool>().collect();
    assert_eq!(
        padding,
        [false, false, false, false, false, false, true, true]
    );
    match &batch.targets {
        Some(Targets::Positions(t)) => {
            let t: Vec<i64> = t.to_data().iter::<i64>().collect();
            assert_eq!(&t[..6], [98, 99, 100, 101, 102, 103]);
        }
        other => panic!("next-token targets per position, got {other:?}"),
    }
    let _: Arc<_> = loader;
}

#[test]
fn the_embedded_corpus_is_the_state_of_the_union_addresses() {
    let folder = sotu::fetch(&kd_data::dogs_n_cats::default_cache_dir()).unwrap();
    let corpus = TextCorpus::from_path(&folder, None).unwrap();
    assert_eq!(corpus.documents.len(), 233);
    let first = &corpus.documents[0];
    assert!(
        first.path.ends_with("1790_george_washington_n.txt"),
        "{}",
        first.path.display()
    );
    assert!(first.bytes.starts_with(b"Fellow-Citizens of the Senate"));
    assert!(
        (10_000_000..12_000_000).contains(&corpus.bytes()),
        "{}",
        corpus.bytes()
    );
    Vocabulary::chars_of(&corpus).expect("UTF-8 throughout");
}
