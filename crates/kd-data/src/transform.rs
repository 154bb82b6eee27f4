//! Decoding and the per-item transforms: fastai's `Resize` (crop / squish / pad), flips and
//! ImageNet normalisation.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

pub use kd_core::{IMAGENET_MEAN, IMAGENET_STD};

/// How padding is filled by [`ResizeMethod::Pad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Mirror the image at its border (fastai's default).
    #[default]
    Reflection,
    /// Black.
    Zeros,
}

/// fastai's `ResizeMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResizeMethod {
    /// The largest square window, at a random offset for training and centred for validation,
    /// resized to the target size (fastai's default).
    #[default]
    Crop,
    /// The whole image stretched to a square.
    Squish,
    /// The image padded to a square, then resized.
    Pad {
        /// How the border is filled.
        #[serde(default)]
        mode: PadMode,
    },
}

/// The widest or tallest image decoded, in pixels; larger files are refused before their
/// pixels are read (a header can claim any size).
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most memory one image's decoder may allocate.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;
/// The most elongated image accepted (long side : short side). Crop keeps the image with its
/// short side at the model's size, so a 1×200000 strip would be kept 200000× wider than tall.
pub const MAX_ASPECT_RATIO: u32 = 64;

/// Decode an image by its content (a PNG named `.jpg` decodes fine) into 8-bit RGB: grayscale,
/// alpha, 16-bit and CMYK inputs are converted. Decoding is bounded: an image wider or taller
/// than [`MAX_IMAGE_SIDE`], needing more than [`MAX_DECODE_BYTES`], or more elongated than
/// [`MAX_ASPECT_RATIO`] is an error that says which limit it broke, found from the header.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, String> {
    let decoder = bounded_decoder(path)?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    Ok(img.to_rgb8())
}

/// The width and height of an image [`decode_rgb`] would decode, read from its header alone.
pub(crate) fn decodable_size(path: &Path) -> Result<(u32, u32), String> {
    bounded_decoder(path).map(|decoder| image::ImageDecoder::dimensions(&decoder))
}

/// A decoder for the file at `path` whose header is within every limit: the sides, the
/// elongation and the bytes decoding needs.
fn bounded_decoder(path: &Path) -> Result<impl image::ImageDecoder, String> {
    let mut reader = ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not a recognised image format".into());
    }
    // The allocation limit holds for the decoder's buffers; the sides are checked here, from
    // the header, to say which limit a file broke.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    let (long, short) = (w.max(h), w.min(h).max(1));
    if long > MAX_IMAGE_SIDE {
        return Err(format!(
            "{w}×{h} pixels: a side exceeds the {MAX_IMAGE_SIDE}-pixel limit"
        ));
    }
    if long / short > MAX_ASPECT_RATIO {
        return Err(format!(
            "{w}×{h} pixels is more elongated than {MAX_ASPECT_RATIO}:1"
        ));
    }
    let bytes = image::ImageDecoder::total_bytes(&decoder);
    if bytes > MAX_DECODE_BYTES {
        return Err(format!(
            "{w}×{h} pixels need {} MiB to decode, over the {} MiB limit",
            bytes >> 20,
            MAX_DECODE_BYTES >> 20
        ));
    }
    Ok(decoder)
}

/// The width and height [`precrop`] keeps of a `w`×`h` image (known from its header, before
/// decoding): for `Crop` the image scaled to a shorter side of `size`, for `Squish` and `Pad`
/// `size`×`size`.
pub fn kept_size(w: u32, h: u32, size: usize, method: ResizeMethod) -> (u64, u64) {
    let size = size as u64;
    match method {
        ResizeMethod::Crop => {
            let (w, h) = (u64::from(w), u64::from(h));
            let short = w.min(h).max(1);
            let scaled = |side: u64| ((side * size + short / 2) / short).max(size);
            (scaled(w), scaled(h))
        }
        ResizeMethod::Squish | ResizeMethod::Pad { .. } => (size, size),
    }
}

/// What is kept in memory for an image: for `Crop` the image with its shorter side already at
/// `size` (the square window is cut per epoch); for `Squish` and `Pad` the final `size`×`size`.
pub fn precrop(img: &RgbImage, size: usize, method: ResizeMethod) -> RgbImage {
    let (w, h) = img.dimensions();
    let size = size as u32;
    match method {
        ResizeMethod::Crop => {
            // Decoded images are at most MAX_ASPECT_RATIO:1, so the sides fit in u32.
            let (nw, nh) = kept_size(w, h, size as usize, method);
            if (nw, nh) == (u64::from(w), u64::from(h)) {
                img.clone()
            } else {
                imageops::resize(img, nw as u32, nh as u32, FilterType::Triangle)
            }
        }
        ResizeMethod::Squish => imageops::resize(img, size, size, FilterType::Triangle),
        ResizeMethod::Pad { mode } => {
            // The square is built at the image's resolution; past PAD_SIDE (far above any
            // model size) the image is first scaled down so the square stays small.
            let scaled;
            let img = if w.max(h) > PAD_SIDE {
                let f = PAD_SIDE as f64 / w.max(h) as f64;
                let (sw, sh) = (
                    ((w as f64 * f) as u32).max(1),
                    ((h as f64 * f) as u32).max(1),
                );
                scaled = imageops::resize(img, sw, sh, FilterType::Triangle);
                &scaled
            } else {
                img
            };
            let (w, h) = img.dimensions();
            let side = w.max(h);
            let (ox, oy) = ((side - w) / 2, (side - h) / 2);
            let padded = RgbImage::from_fn(side, side, |x, y| {
                let (ix, iy) = (x as i64 - ox as i64, y as i64 - oy as i64);
                match mode {
                    PadMode::Zeros => {
                        if ix < 0 || iy < 0 || ix >= w as i64 || iy >= h as i64 {
                            image::Rgb([0, 0, 0])
                        } else {
                            *img.get_pixel(ix as u32, iy as u32)
                        }
                    }
                    PadMode::Reflection => {
                        *img.get_pixel(reflect(ix, w) as u32, reflect(iy, h) as u32)
                    }
                }
            });
            imageops::resize(&padded, size, size, FilterType::Triangle)
        }
    }
}

/// The largest square [`ResizeMethod::Pad`] builds before resizing (48 MiB of RGB).
const PAD_SIDE: u32 = 4096;

/// Reflect index `i` into `0..n` without repeating the edge pixel (numpy/torch "reflect").
fn reflect(i: i64, n: u32) -> i64 {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    if m < n { m } else { period - m }
}

/// Top-left corner of the `size`×`size` window in an image of `w`×`h`: `offset` in `[0, 1]²`
/// picks the position (0.5 = centred).
pub fn crop_origin(w: u32, h: u32, size: u32, offset: (f64, f64)) -> (u32, u32) {
    let x = ((w.saturating_sub(size)) as f64 * offset.0).round() as u32;
    let y = ((h.saturating_sub(size)) as f64 * offset.1).round() as u32;
    (x.min(w.saturating_sub(size)), y.min(h.saturating_sub(size)))
}

/// Write the `size`×`size` window at `origin` of `img` (flipped horizontally if asked) as
/// planar CHW floats into `out` (`3·size²` values): `x/255`, then `(x − mean)/std` if
/// `normalize`.
pub fn write_chw(
    img: &RgbImage,
    origin: (u32, u32),
    size: u32,
    flip: bool,
    normalize: bool,
    out: &mut [f32],
) {
    let plane = (size * size) as usize;
    for y in 0..size {
        for x in 0..size {
            let sx = if flip { size - 1 - x } else { x };
            let p = img.get_pixel(origin.0 + sx, origin.1 + y);
            let o = (y * size + x) as usize;
            for c in 0..3 {
                out[c * plane + o] = channel_value(f32::from(p[c]), c, normalize);
            }
        }
    }
}

/// Channel `c`'s value `v` (0–255) as the model sees it: `v/255`, then `(x − mean)/std` with
/// ImageNet's statistics if `normalize`.
pub(crate) fn channel_value(v: f32, c: usize, normalize: bool) -> f32 {
    let x = v / 255.0;
    if normalize {
        (x - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let got: Vec<i64> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }
}
