//! Hostile folders cost bounded time and memory: an image's header cannot make the decoder or
//! the resize allocate without limit, and symbolic links cannot make the walk loop. (Its own
//! test binary, so the process's peak memory measures these tests alone.)

use std::path::Path;

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{Rgb, RgbImage};
use kd_data::{BadImagePolicy, DataConfig, ImageSet, LabelFn, ResizeMethod, get_image_files};

/// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere).
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn save(dir: &Path, name: &str, img: &RgbImage) {
    img.save(dir.join(name)).unwrap();
}

/// Two ordinary images per class plus the strip.
fn folder_with(strip_w: u32, strip_h: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let small = RgbImage::from_fn(24, 20, |x, y| Rgb([x as u8, y as u8, 9]));
    for i in 0..2 {
        save(dir.path(), &format!("Cat_{i}.png"), &small);
        save(dir.path(), &format!("dog_{i}.png"), &small);
    }
    // A PNG of a few KiB: a single-colour strip compresses to almost nothing.
    let strip = RgbImage::from_pixel(strip_w, strip_h, Rgb([128, 64, 32]));
    let file = std::fs::File::create(dir.path().join("Cat_strip.png")).unwrap();
    let encoder = PngEncoder::new_with_quality(file, CompressionType::Best, PngFilter::NoFilter);
    strip.write_with_encoder(encoder).unwrap();
    dir
}

#[test]
fn a_tiny_file_with_a_huge_side_is_skipped_naming_it_under_crop_and_pad() {
    let dir = folder_with(1, 200_000);
    let strip = dir.path().join("Cat_strip.png");
    let bytes = std::fs::metadata(&strip).unwrap().len();
    assert!(bytes < 64 << 10, "{bytes} bytes");
    for resize in [
        ResizeMethod::Crop,
        ResizeMethod::Pad {
            mode: Default::default(),
        },
    ] {
        let config = DataConfig {
            size: 64,
            batch_size: 2,
            resize,
            on_bad_image: BadImagePolicy::Skip,
            ..DataConfig::default()
        };
        let set =
            ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
        assert_eq!(set.len(), 4, "{resize:?}: the ordinary images load");
        assert_eq!(set.skipped.len(), 1, "{resize:?}");
        let (path, reason) = &set.skipped[0];
        assert_eq!(path, &strip);
        assert!(reason.contains("200000"), "{resize:?}: {reason}");
    }
    if let Some(peak) = peak_rss_mib() {
        assert!(peak < 1024, "peak memory {peak} MiB");
    }
}

/// CRC-32 (IEEE), as PNG chunks need.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header claims `w`×`h` RGB pixels, followed by one empty data chunk: 57 bytes.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn a_header_claiming_more_pixels_than_the_limits_is_refused_before_decoding() {
    let dir = folder_with(4, 4);
    // 15000 × 15000 RGB (675 MB) is within the side limit but over the allocation limit.
    std::fs::write(
        dir.path().join("Cat_strip.png"),
        png_claiming(15_000, 15_000),
    )
    .unwrap();
    let config = DataConfig {
        size: 32,
        batch_size: 2,
        ..DataConfig::default()
    };
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
    assert_eq!(set.len(), 4);
    assert_eq!(set.skipped.len(), 1);
    assert!(
        set.skipped[0].0.ends_with("Cat_strip.png"),
        "{:?}",
        set.skipped
    );
    if let Some(peak) = peak_rss_mib() {
        assert!(peak < 1024, "peak memory {peak} MiB");
    }
}

/// A 4×256 PNG of a few dozen bytes is allowed (64:1), but `Crop` keeps it whole with its
/// shorter side at `size`: 1024 × 65536 RGB, 201 MB, at size 1024. Past `memory_limit` the set
/// is refused from the headers, before any image is decoded, naming the largest file.
#[test]
fn elongated_images_past_the_memory_limit_are_refused_before_decoding() {
    let dir = folder_with(4, 256);
    let strip = dir.path().join("Cat_strip.png");
    assert!(std::fs::metadata(&strip).unwrap().len() < 200);
    // A header alone (no pixel data): decoding it would fail, so it is counted from its header.
    std::fs::write(dir.path().join("dog_strip.png"), png_claiming(4, 256)).unwrap();
    let config = |size, resize, limit| DataConfig {
        size,
        batch_size: 2,
        resize,
        memory_limit: limit,
        ..DataConfig::default()
    };
    let err = ImageSet::from_folder(
        dir.path(),
        &LabelFn::PetsCatDog,
        &config(1024, ResizeMethod::Crop, Some(300_000_000)),
        &|_, _| {},
    )
    .unwrap_err();
    let kd_data::DataError::TooLarge {
        images,
        bytes,
        largest,
        largest_bytes,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    // Two strips of 1024 × 65536 × 3 bytes and four 24×20 images of 1229 × 1024 × 3 (crop keeps
    // the shorter side at 1024: 24 × 1024 / 20 = 1228.8 → 1229).
    assert_eq!(*images, 6);
    assert_eq!(*largest_bytes, 1024 * 65536 * 3);
    assert_eq!(*bytes, 2 * 1024 * 65536 * 3 + 4 * 1229 * 1024 * 3);
    let largest = largest.file_name().unwrap().to_string_lossy();
    assert!(largest.ends_with("_strip.png"), "{largest}");
    let message = err.to_string();
    assert!(
        message.contains("data.size") && message.contains("squish"),
        "{message}"
    );
    // Squish keeps 1024 × 1024 per image: the same files fit.
    let set = ImageSet::from_folder(
        dir.path(),
        &LabelFn::PetsCatDog,
        &config(1024, ResizeMethod::Squish, Some(300_000_000)),
        &|_, _| {},
    )
    .unwrap();
    assert_eq!((set.len(), set.skipped.len()), (5, 1));
    if let Some(peak) = peak_rss_mib() {
        assert!(peak < 1024, "peak memory {peak} MiB");
    }
}

#[cfg(unix)]
#[test]
fn symbolic_link_loops_are_walked_once() {
    let dir = folder_with(8, 8);
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    save(&sub, "dog_deep.png", &RgbImage::new(4, 4));
    // Links back up the tree, twice over, and a link that points at itself.
    std::os::unix::fs::symlink(".", dir.path().join("again")).unwrap();
    std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
    std::os::unix::fs::symlink("self", dir.path().join("self")).unwrap();
    let files = get_image_files(dir.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 6, "each image once: {files:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{names:?}");
}

/// `f`'s result, or a failure if it takes longer than 60 s (a read blocked on a FIFO, say).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || send.send(f()));
    receive
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("still running after a minute: a read that never ends")
}

/// A FIFO (nobody writes to it), a link to an endless device and a link to a directory above:
/// none of them is a regular file, and the last leads back into the folder.
#[cfg(unix)]
fn special_files(dir: &Path, name: &str) {
    let fifo = dir.join(format!("fifo-{name}"));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", dir.join(format!("zero-{name}"))).unwrap();
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
    std::os::unix::fs::symlink("..", sub.join("up-again")).unwrap();
}

#[cfg(unix)]
#[test]
fn a_corpus_walk_reads_regular_files_once_and_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "the first address").unwrap();
    std::fs::write(dir.path().join("b.txt"), "the second address").unwrap();
    special_files(dir.path(), "c.txt");
    let path = dir.path().to_path_buf();
    let corpus = within_a_minute(move || kd_data::TextCorpus::from_path(&path, None)).unwrap();
    let texts: Vec<&[u8]> = corpus
        .documents
        .iter()
        .map(|d| d.bytes.as_slice())
        .collect();
    assert_eq!(
        texts,
        [&b"the first address"[..], &b"the second address"[..]],
        "each regular file once, nothing else"
    );
    // Named on its own, a FIFO is refused, not waited on.
    let fifo = dir.path().join("fifo-c.txt");
    let err = within_a_minute(move || kd_data::TextCorpus::from_path(&fifo, None)).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[cfg(unix)]
#[test]
fn an_image_walk_skips_fifos_and_devices() {
    let dir = folder_with(8, 8);
    special_files(dir.path(), "Cat_9.png");
    let path = dir.path().to_path_buf();
    let files = within_a_minute(move || get_image_files(&path)).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("fifo") && !n.starts_with("zero")),
        "{names:?}"
    );
    let path = dir.path().to_path_buf();
    let config = DataConfig {
        size: 16,
        ..DataConfig::default()
    };
    let set = within_a_minute(move || {
        ImageSet::from_folder(&path, &LabelFn::PetsCatDog, &config, &|_, _| {}).map(|s| s.len())
    })
    .unwrap();
    assert_eq!(
        (files.len(), set),
        (5, 5),
        "four images and the strip, each once: {names:?}"
    );
}
