//! The function-matching augmentations: torchvision's random-resized crop (its fallback
//! worked by hand, the windows' ranges over many draws, the bilinear resize against the
//! exact value on a linear image), mixup and cutmix of a batch against the same batch
//! unmixed, labels mixed by the share of pixels, reproducible epochs, no cache keys.

use std::path::Path;

use burn::tensor::Device;
use image::{Rgb, RgbImage};
use kd_core::{DistillBatch, Targets};
use kd_data::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `n` cats and `n` dogs of noise, each its own, `side`×`side`.
fn noisy_pets(n: usize, side: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 56) as u8
    };
    for (prefix, k) in ["Abyssinian", "beagle"]
        .iter()
        .flat_map(|p| (0..n).map(move |k| (p, k)))
    {
        let img = RgbImage::from_fn(side, side, |_, _| Rgb([next(), next(), next()]));
        save(dir.path(), &format!("{prefix}_{k}.png"), &img);
    }
    dir
}

fn save(dir: &Path, name: &str, img: &RgbImage) {
    img.save_with_format(dir.join(name), image::ImageFormat::Png)
        .unwrap();
}

/// Every item for training, batches of `batch`, unnormalised pixels.
fn train_loader(dir: &Path, side: usize, batch: usize) -> ImageLoader {
    let config = DataConfig {
        size: side,
        batch_size: batch,
        normalize: false,
        ..DataConfig::default()
    };
    let set = ImageSet::from_folder(dir, &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
    let n = set.len();
    DataBundle::with_split(set, Split::by_fn(n, |_| false), &config, &Device::flex()).train
}

fn pixels(batch: &ImageBatch) -> Vec<f32> {
    batch.images.to_data().iter::<f32>().collect()
}

fn labels(t: &burn::tensor::Tensor<1, burn::tensor::Int>) -> Vec<i64> {
    t.to_data().iter::<i64>().collect()
}

/// Whether mixed batch `a` labels its items as the unmixed `b` does, with the larger share
/// first: each item's own label first when `own_first`, else its mirror's.
fn labels_fit(a: &ImageBatch, b: &ImageBatch, own_first: bool) -> bool {
    let y = labels(&b.targets);
    let mirrored: Vec<i64> = y.iter().rev().copied().collect();
    let (first, second) = (labels(&a.targets), labels(&a.mixed_in.as_ref().unwrap().0));
    match own_first {
        true => (first, second) == (y, mirrored),
        false => (first, second) == (mirrored, y),
    }
}

#[test]
fn a_crop_that_cannot_fit_falls_back_to_the_centred_window_of_the_widest_ratio() {
    // torchvision's get_params by hand: an 80×64 image, area share 1 and ratio 1 ask for a
    // 72×72 window (√5120 rounded), which never fits; the image (ratio 1.25) is wider than the
    // widest ratio allowed (1), so the fallback keeps the full height, width 64·1, centred.
    let crop = RandomResizedCrop {
        scale: [1.0, 1.0],
        ratio: [1.0, 1.0],
    };
    let window = crop.window(80, 64, &mut StdRng::seed_from_u64(0));
    assert_eq!(
        window,
        Window {
            x: 8,
            y: 0,
            width: 64,
            height: 64
        }
    );
}

#[test]
fn crop_windows_cover_the_share_and_ratio_asked_for_and_stay_inside() {
    let crop = RandomResizedCrop {
        scale: [0.25, 0.6],
        ratio: [0.5, 2.0],
    };
    let (w, h) = (120u32, 90u32);
    let mut rng = StdRng::seed_from_u64(3);
    let windows: Vec<Window> = (0..2000).map(|_| crop.window(w, h, &mut rng)).collect();
    let area = f64::from(w * h);
    for win in &windows {
        assert!(win.x + win.width <= w && win.y + win.height <= h, "{win:?}");
        let share = f64::from(win.width * win.height) / area;
        let ratio = f64::from(win.width) / f64::from(win.height);
        // Sides are rounded to whole pixels: allow a pixel's worth either way.
        assert!((0.23..=0.62).contains(&share), "{win:?}: share {share}");
        assert!((0.48..=2.05).contains(&ratio), "{win:?}: ratio {ratio}");
    }
    // The draws spread over the ranges (log-uniform ratio: about half below 1).
    let narrow = windows.iter().filter(|w| w.width < w.height).count();
    assert!(
        (800..1200).contains(&narrow),
        "{narrow} of 2000 narrower than tall"
    );
    let small = windows
        .iter()
        .filter(|w| f64::from(w.width * w.height) / area < 0.425)
        .count();
    assert!(
        (800..1200).contains(&small),
        "{small} of 2000 below the mid share"
    );
}

#[test]
fn the_resized_window_of_a_linear_image_is_the_linear_function_at_the_sample_points() {
    // Bilinear interpolation is exact on a linear image: f(x, y) = 2x + 3y.
    let img = RgbImage::from_fn(40, 30, |x, y| {
        let v = (2 * x + 3 * y) as u8;
        Rgb([v, v / 2, 255 - v])
    });
    let window = Window {
        x: 5,
        y: 4,
        width: 20,
        height: 16,
    };
    let size = 8u32;
    for flip in [false, true] {
        let mut out = vec![0f32; 3 * 64];
        write_resized_chw(&img, window, size, flip, false, &mut out);
        for oy in 0..size {
            for ox in 0..size {
                // PyTorch's align_corners=False sample point of output pixel (ox, oy).
                let sx = 5.0 + (f64::from(ox) + 0.5) * 20.0 / 8.0 - 0.5;
                let sy = 4.0 + (f64::from(oy) + 0.5) * 16.0 / 8.0 - 0.5;
                let want = 2.0 * sx + 3.0 * sy;
                let col = if flip { size - 1 - ox } else { ox };
                let got = f64::from(out[(oy * size + col) as usize]) * 255.0;
                assert!(
                    (got - want).abs() < 1e-3,
                    "flip {flip}, ({ox}, {oy}): {got} vs {want}"
                );
                let blue = f64::from(out[2 * 64 + (oy * size + col) as usize]) * 255.0;
                assert!((blue - (255.0 - want)).abs() < 1e-3);
            }
        }
    }
    // The whole image at its own size is the image.
    let square = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 9]));
    let (mut resized, mut plain) = (vec![0f32; 192], vec![0f32; 192]);
    let whole = Window {
        x: 0,
        y: 0,
        width: 8,
        height: 8,
    };
    write_resized_chw(&square, whole, 8, false, true, &mut resized);
    write_chw(&square, (0, 0), 8, false, true, &mut plain);
    assert_eq!(resized, plain);
}

#[test]
fn mixup_blends_each_item_with_its_mirror_in_the_batch_and_mixes_the_labels() {
    let dir = noisy_pets(4, 16);
    let plain = train_loader(dir.path(), 16, 8);
    let mixing = plain.with_augmentation(Augmentation {
        mixup: 0.4,
        ..Augmentation::default()
    });
    let mut shares = Vec::new();
    for epoch in 0..4 {
        let a = mixing.iter_epoch(epoch).next().unwrap().unwrap();
        let b = plain.iter_epoch(epoch).next().unwrap().unwrap();
        assert_eq!(a.items, b.items);
        let (_, share) = a.mixed_in.clone().expect("mix_prob 1 mixes every batch");
        assert!((0.5..=1.0).contains(&share));
        shares.push(share);
        let (pa, pb) = (pixels(&a), pixels(&b));
        let per = pa.len() / 8;
        // The blend λ·xᵢ + (1 − λ)·x₍ₙ₋₁₋ᵢ₎, with the larger share's labels first: λ is the
        // share or its complement, whichever the pixels and the labels both say.
        let blend_fits = |own: f32| {
            (0..8).all(|i| {
                (0..per).all(|k| {
                    let want = own * pb[i * per + k] + (1.0 - own) * pb[(7 - i) * per + k];
                    (pa[i * per + k] - want).abs() < 1e-5
                })
            })
        };
        let fits = [share, 1.0 - share]
            .into_iter()
            .any(|own| blend_fits(own as f32) && labels_fit(&a, &b, own == share));
        assert!(fits, "epoch {epoch}: share {share}");
        assert!(a.cache_keys().iter().all(Option::is_none));
        assert!(matches!(a.targets(), Some(Targets::Mixed { .. })));
    }
    assert!(shares.iter().any(|s| *s < 0.99), "{shares:?}");
    // Replaying an epoch gives the same batch.
    let again = mixing.iter_epoch(2).next().unwrap().unwrap();
    let first = mixing.iter_epoch(2).next().unwrap().unwrap();
    assert_eq!(pixels(&again), pixels(&first));
    assert_eq!(again.mixed_in.unwrap().1, first.mixed_in.unwrap().1);
}

#[test]
fn cutmix_pastes_a_box_of_the_mirror_item_and_the_share_is_the_pixels_kept() {
    let dir = noisy_pets(4, 16);
    let plain = train_loader(dir.path(), 16, 8);
    let cutting = plain.with_augmentation(Augmentation {
        cutmix: 1.0,
        ..Augmentation::default()
    });
    let mut cut_any = false;
    for epoch in 0..6 {
        let a = cutting.iter_epoch(epoch).next().unwrap().unwrap();
        let b = plain.iter_epoch(epoch).next().unwrap().unwrap();
        let (_, share) = a.mixed_in.clone().unwrap();
        let (pa, pb) = (pixels(&a), pixels(&b));
        let per = pa.len() / 8;
        for i in 0..8 {
            let mut own = 0;
            for k in 0..per {
                let (v, mine, mirror) = (pa[i * per + k], pb[i * per + k], pb[(7 - i) * per + k]);
                assert!(v == mine || v == mirror, "item {i}: a pixel from neither");
                own += usize::from(v == mine && v != mirror);
            }
            let kept = own as f64 / per as f64;
            // Noise pixels of an item and its mirror coincide at random (1 in 256 each).
            let fits = [share, 1.0 - share]
                .into_iter()
                .any(|want| (kept - want).abs() < 0.02 && labels_fit(&a, &b, want == share));
            assert!(fits, "item {i}: kept {kept}, share {share}");
        }
        cut_any |= share < 1.0;
    }
    assert!(cut_any);
}

#[test]
fn random_resized_crops_change_training_pixels_per_epoch_and_leave_validation_alone() {
    let dir = noisy_pets(4, 24);
    let config = DataConfig {
        size: 16,
        batch_size: 4,
        normalize: false,
        ..DataConfig::default()
    };
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {}).unwrap();
    let data = DataBundle::with_split(
        set,
        Split::by_fn(8, |i| i % 2 == 0),
        &config,
        &Device::flex(),
    );
    let augment = Augmentation {
        crop: Some(RandomResizedCrop::default()),
        ..Augmentation::default()
    };
    let train = data.train.with_augmentation(augment);
    assert!(!train.is_deterministic(0));
    let epoch0 = train.iter_epoch(0).next().unwrap().unwrap();
    assert!(epoch0.cache_keys().iter().all(Option::is_none));
    assert!(epoch0.mixed_in.is_none());
    assert_eq!(
        pixels(&epoch0),
        pixels(&train.iter_epoch(0).next().unwrap().unwrap())
    );
    assert_ne!(
        pixels(&epoch0),
        pixels(&data.train.iter_epoch(0).next().unwrap().unwrap())
    );
    // Validation batches have no augmentation: the same pixels and keys as before.
    let mut valid = data.valid.clone();
    valid = valid.with_augmentation(augment);
    let (a, b) = (
        valid.iter_epoch(0).next().unwrap().unwrap(),
        data.valid.iter_epoch(0).next().unwrap().unwrap(),
    );
    assert_eq!(pixels(&a), pixels(&b));
    assert!(a.cache_keys().iter().all(Option::is_some));
}

#[test]
fn out_of_range_settings_name_the_key() {
    let bad = [
        (
            Augmentation {
                mixup: -1.0,
                ..Augmentation::default()
            },
            "augment.mixup",
        ),
        (
            Augmentation {
                mix_prob: 1.5,
                cutmix: 1.0,
                ..Augmentation::default()
            },
            "augment.mix_prob",
        ),
        (
            Augmentation {
                crop: Some(RandomResizedCrop {
                    scale: [0.5, 0.2],
                    ..RandomResizedCrop::default()
                }),
                ..Augmentation::default()
            },
            "augment.crop.scale",
        ),
        (
            Augmentation {
                crop: Some(RandomResizedCrop {
                    ratio: [0.0, 1.0],
                    ..RandomResizedCrop::default()
                }),
                ..Augmentation::default()
            },
            "augment.crop.ratio",
        ),
    ];
    for (augment, key) in bad {
        let err = augment.validate().unwrap_err();
        assert!(err.starts_with(key), "{err}");
    }
    assert!(Augmentation::default().validate().is_ok());
}
