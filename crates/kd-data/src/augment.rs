//! The augmentations function matching needs (Beyer et al., "Knowledge distillation: A good
//! teacher is patient and consistent", 2022): random-resized crops of each training image and
//! mixup or cutmix of each training batch, all drawn from the data seed, the epoch and the
//! items, so an epoch is the same every time it is replayed.
//!
//! They change an item's pixels from epoch to epoch, so batches that carry them have no cache
//! keys: a frozen teacher runs on exactly what the student sees.

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::transform::channel_value;

/// What a training loader does to its images beyond fastai's crop and the flip (a run's
/// `augment` table in experiment files). The default does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// A random-resized crop of each training image in place of the random square crop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<RandomResizedCrop>,
    /// mixup of each training batch: its `α` (the mixing share is drawn from Beta(α, α));
    /// 0, the default, is off.
    pub mixup: f64,
    /// cutmix of each training batch: its `α`; 0, the default, is off.
    pub cutmix: f64,
    /// The probability that a batch is mixed at all (default 1).
    pub mix_prob: f64,
    /// With both mixup and cutmix on, the probability that a mixed batch is cut rather than
    /// blended (default 0.5, timm's).
    pub switch_prob: f64,
}

impl Default for Augmentation {
    fn default() -> Self {
        Self {
            crop: None,
            mixup: 0.0,
            cutmix: 0.0,
            mix_prob: 1.0,
            switch_prob: 0.5,
        }
    }
}

/// Whether `alpha` turns a mix on: positive and finite (Beta(∞, ∞) has no sampler).
fn usable(alpha: f64) -> bool {
    alpha.is_finite() && alpha > 0.0
}

impl Augmentation {
    /// Whether any augmentation is on.
    pub fn is_on(&self) -> bool {
        self.crop.is_some() || self.mixes()
    }

    /// Whether batches are mixed (mixup or cutmix on, with a chance above 0).
    pub fn mixes(&self) -> bool {
        (usable(self.mixup) || usable(self.cutmix)) && self.mix_prob > 0.0
    }

    /// Every setting in range, or a message naming the one that is not.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(crop) = &self.crop {
            crop.validate()?;
        }
        for (name, alpha) in [("mixup", self.mixup), ("cutmix", self.cutmix)] {
            if !(alpha.is_finite() && alpha >= 0.0) {
                return Err(format!(
                    "augment.{name} = {alpha}: the α of Beta(α, α) must be 0 (off) or positive"
                ));
            }
        }
        for (name, p) in [
            ("mix_prob", self.mix_prob),
            ("switch_prob", self.switch_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "augment.{name} = {p}: a probability lies in [0, 1]"
                ));
            }
        }
        Ok(())
    }

    /// How a batch of `side`×`side` inputs is mixed: `None` to leave it as it is. Settings
    /// out of range ([`validate`](Self::validate)) never panic: an unusable α is off, and a
    /// probability compares as it is.
    pub(crate) fn draw_mix(&self, side: usize, rng: &mut impl Rng) -> Option<BatchMix> {
        if !self.mixes() || side == 0 || rng.random::<f64>() >= self.mix_prob {
            return None;
        }
        let cut = match (usable(self.mixup), usable(self.cutmix)) {
            (true, true) => rng.random::<f64>() < self.switch_prob,
            (_, cut) => cut,
        };
        Some(if cut {
            let share = sample_symmetric_beta(self.cutmix, rng);
            BatchMix::Cut(CutBox::draw(side, share, rng))
        } else {
            BatchMix::Blend(sample_symmetric_beta(self.mixup, rng))
        })
    }
}

/// torchvision's `RandomResizedCrop`: a window covering a share of the image's area drawn
/// uniformly from `scale`, with an aspect ratio (width : height) drawn log-uniformly from
/// `ratio`, resized to the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomResizedCrop {
    /// The range of the window's share of the image's area (torchvision: `[0.08, 1]`).
    #[serde(deserialize_with = "range")]
    pub scale: [f64; 2],
    /// The range of the window's width : height (torchvision: `[3/4, 4/3]`).
    #[serde(deserialize_with = "range")]
    pub ratio: [f64; 2],
}

/// A `[low, high]` pair, refused when the list holds another number of values (some
/// formats' readers would silently drop a third).
fn range<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<[f64; 2], D::Error> {
    let values = Vec::<f64>::deserialize(deserializer)?;
    <[f64; 2]>::try_from(values.as_slice()).map_err(|_| {
        serde::de::Error::custom(format!(
            "{values:?} holds {} values; a range is 2 values, [low, high]",
            values.len()
        ))
    })
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self {
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
        }
    }
}

/// A window of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl RandomResizedCrop {
    /// Both ranges ordered and in range, or a message naming the one that is not.
    pub fn validate(&self) -> Result<(), String> {
        let [lo, hi] = self.scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(format!(
                "augment.crop.scale = [{lo}, {hi}]: a share of the image's area, 0 < low ≤ high ≤ 1"
            ));
        }
        let [lo, hi] = self.ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(format!(
                "augment.crop.ratio = [{lo}, {hi}]: width : height, 0 < low ≤ high"
            ));
        }
        Ok(())
    }

    /// The window of a `width`×`height` image, as torchvision's `get_params`: up to ten draws
    /// of area and ratio until the window fits, else the largest centred window whose ratio
    /// is in range.
    pub fn window(&self, width: u32, height: u32, rng: &mut impl Rng) -> Window {
        let area = f64::from(width) * f64::from(height);
        let (log_lo, log_hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * uniform(rng, self.scale[0], self.scale[1]);
            let ratio = uniform(rng, log_lo, log_hi).exp();
            let w = (target * ratio).sqrt().round();
            let h = (target / ratio).sqrt().round();
            if w > 0.0 && h > 0.0 && w <= f64::from(width) && h <= f64::from(height) {
                let (w, h) = (w as u32, h as u32);
                return Window {
                    x: rng.random_range(0..=width - w),
                    y: rng.random_range(0..=height - h),
                    width: w,
                    height: h,
                };
            }
        }
        let in_ratio = f64::from(width) / f64::from(height);
        let (w, h) = if in_ratio < self.ratio[0] {
            (width, (f64::from(width) / self.ratio[0]).round() as u32)
        } else if in_ratio > self.ratio[1] {
            ((f64::from(height) * self.ratio[1]).round() as u32, height)
        } else {
            (width, height)
        };
        let (w, h) = (w.clamp(1, width), h.clamp(1, height));
        Window {
            x: (width - w) / 2,
            y: (height - h) / 2,
            width: w,
            height: h,
        }
    }
}

/// A uniform draw from `[lo, hi)` (`lo` when the range is empty).
fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Write `window` of `img`, resized to `size`×`size` by bilinear interpolation (pixel centres
/// at half-integers, edges clamped: PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)` without antialiasing) and flipped horizontally if asked, as planar
/// CHW floats into `out` (`3·size²` values): `x/255`, then `(x − mean)/std` if `normalize`.
pub fn write_resized_chw(
    img: &RgbImage,
    window: Window,
    size: u32,
    flip: bool,
    normalize: bool,
    out: &mut [f32],
) {
    let plane = (size * size) as usize;
    let (iw, ih) = img.dimensions();
    // Source coordinate of output index `i` along an axis: window start + (i + ½)·scale − ½,
    // clamped into the image; returns the two neighbours and the weight of the second.
    let axis = |i: u32, start: u32, len: u32, limit: u32| -> (u32, u32, f32) {
        let scale = f64::from(len) / f64::from(size);
        let src = (f64::from(start) + (f64::from(i) + 0.5) * scale - 0.5)
            .clamp(0.0, f64::from(limit - 1));
        let lo = src.floor() as u32;
        let hi = (lo + 1).min(limit - 1);
        (lo, hi, (src - f64::from(lo)) as f32)
    };
    for y in 0..size {
        let (y0, y1, fy) = axis(y, window.y, window.height, ih);
        for x in 0..size {
            let (x0, x1, fx) = axis(x, window.x, window.width, iw);
            let (p00, p01) = (img.get_pixel(x0, y0), img.get_pixel(x1, y0));
            let (p10, p11) = (img.get_pixel(x0, y1), img.get_pixel(x1, y1));
            let ox = if flip { size - 1 - x } else { x };
            let o = (y * size + ox) as usize;
            for c in 0..3 {
                let top = f32::from(p00[c]) * (1.0 - fx) + f32::from(p01[c]) * fx;
                let bottom = f32::from(p10[c]) * (1.0 - fx) + f32::from(p11[c]) * fx;
                out[c * plane + o] = channel_value(top * (1.0 - fy) + bottom * fy, c, normalize);
            }
        }
    }
}

/// How one batch is mixed with itself in reverse order (item `i` with item `n − 1 − i`, as
/// timm's batch mode).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BatchMix {
    /// mixup: `share·xᵢ + (1 − share)·x₍ₙ₋₁₋ᵢ₎`.
    Blend(f64),
    /// cutmix: the box is pasted from `x₍ₙ₋₁₋ᵢ₎` into `xᵢ`.
    Cut(CutBox),
}

/// The box cutmix pastes, in pixels of the `side`×`side` input: rows `y0..y1`, columns
/// `x0..x1` (timm's `rand_bbox`: a box of `√(1 − share)` of each side, centred uniformly,
/// clipped to the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CutBox {
    side: usize,
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
}

impl CutBox {
    fn draw(side: usize, share: f64, rng: &mut impl Rng) -> Self {
        let cut = ((1.0 - share).sqrt() * side as f64) as usize;
        let (cy, cx) = (rng.random_range(0..side), rng.random_range(0..side));
        Self {
            side,
            y0: cy.saturating_sub(cut / 2),
            y1: (cy + cut / 2).min(side),
            x0: cx.saturating_sub(cut / 2),
            x1: (cx + cut / 2).min(side),
        }
    }
}

impl BatchMix {
    /// The share of each input that is its own item's, as mixed (for cutmix, the pixels
    /// outside the box).
    pub(crate) fn own_share(&self) -> f64 {
        match self {
            BatchMix::Blend(share) => *share,
            BatchMix::Cut(b) => {
                1.0 - ((b.y1 - b.y0) * (b.x1 - b.x0)) as f64 / (b.side * b.side) as f64
            }
        }
    }

    /// Mix `data`, `items` inputs of `3·side²` planar values each, in place.
    pub(crate) fn apply(&self, data: &mut [f32], items: usize) {
        let per = data.len() / items.max(1);
        let original = data.to_vec();
        for (i, out) in data.chunks_mut(per).enumerate() {
            let other = &original[(items - 1 - i) * per..(items - i) * per];
            match self {
                BatchMix::Blend(share) => {
                    let share = *share as f32;
                    for (v, o) in out.iter_mut().zip(other) {
                        *v = share * *v + (1.0 - share) * o;
                    }
                }
                BatchMix::Cut(b) => {
                    let plane = b.side * b.side;
                    for c in 0..3 {
                        for y in b.y0..b.y1 {
                            let row = c * plane + y * b.side;
                            out[row + b.x0..row + b.x1]
                                .copy_from_slice(&other[row + b.x0..row + b.x1]);
                        }
                    }
                }
            }
        }
    }
}

/// A draw from Beta(α, α), as `X / (X + Y)` with X, Y ~ Gamma(α, 1).
pub(crate) fn sample_symmetric_beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    let x = sample_gamma(alpha, rng);
    let y = sample_gamma(alpha, rng);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// A draw from Gamma(α, 1) (Marsaglia and Tsang, 2000; for α < 1, Gamma(α + 1)·U^(1/α)).
fn sample_gamma(alpha: f64, rng: &mut impl Rng) -> f64 {
    if alpha < 1.0 {
        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        return sample_gamma(alpha + 1.0, rng) * u.powf(1.0 / alpha);
    }
    let d = alpha - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u.max(f64::MIN_POSITIVE).ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Beta(α, α) has mean ½ and variance 1 / (4(2α + 1)).
    #[test]
    fn symmetric_beta_draws_have_the_beta_moments() {
        let mut rng = StdRng::seed_from_u64(7);
        for alpha in [0.2, 1.0, 3.0] {
            let n = 40_000;
            let draws: Vec<f64> = (0..n)
                .map(|_| sample_symmetric_beta(alpha, &mut rng))
                .collect();
            assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
            let want = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "α {alpha}: mean {mean}");
            assert!(
                (var - want).abs() < 0.05 * want,
                "α {alpha}: variance {var} vs {want}"
            );
        }
    }
}
