//! Learning curves as a PNG, drawn with the `image` crate and a built-in 5×7 pixel font (no
//! system fonts needed): validation accuracy and training loss per epoch for every run.

use std::path::Path;

use image::{Rgb, RgbImage};
use kd_train::History;

use crate::KdError;

const W: u32 = 1500;
/// Height without legend overflow; a long legend makes the image taller.
const H: u32 = 620;
/// Legend text columns (characters per line) and line height.
const LEGEND_CHARS: usize = 21;
const LEGEND_LINE: i64 = 26;
const SCALE: u32 = 2;
const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

/// 5×7 glyphs, one row per byte (bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'a' => [0, 0, 14, 1, 15, 17, 15],
        'b' => [16, 16, 22, 25, 17, 17, 30],
        'c' => [0, 0, 14, 16, 16, 17, 14],
        'd' => [1, 1, 13, 19, 17, 17, 15],
        'e' => [0, 0, 14, 17, 31, 16, 14],
        'f' => [6, 9, 8, 28, 8, 8, 8],
        'g' => [0, 15, 17, 17, 15, 1, 14],
        'h' => [16, 16, 22, 25, 17, 17, 17],
        'i' => [4, 0, 12, 4, 4, 4, 14],
        'j' => [2, 0, 6, 2, 2, 18, 12],
        'k' => [16, 16, 18, 20, 24, 20, 18],
        'l' => [12, 4, 4, 4, 4, 4, 14],
        'm' => [0, 0, 26, 21, 21, 17, 17],
        'n' => [0, 0, 22, 25, 17, 17, 17],
        'o' => [0, 0, 14, 17, 17, 17, 14],
        'p' => [0, 0, 30, 17, 30, 16, 16],
        'q' => [0, 0, 13, 19, 15, 1, 1],
        'r' => [0, 0, 22, 25, 16, 16, 16],
        's' => [0, 0, 14, 16, 14, 1, 30],
        't' => [8, 8, 28, 8, 8, 9, 6],
        'u' => [0, 0, 17, 17, 17, 19, 13],
        'v' => [0, 0, 17, 17, 17, 10, 4],
        'w' => [0, 0, 17, 17, 21, 21, 10],
        'x' => [0, 0, 17, 10, 4, 10, 17],
        'y' => [0, 0, 17, 17, 15, 1, 14],
        'z' => [0, 0, 31, 2, 4, 8, 31],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '/' => [0, 1, 2, 4, 8, 16, 0],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        _ => [0; 7],
    }
}

struct Canvas {
    img: RgbImage,
}

impl Canvas {
    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < W && (y as u32) < self.img.height() {
            self.img.put_pixel(x as u32, y as u32, Rgb(c));
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let ox = x + (i as i64) * 6 * SCALE as i64;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (1 << (4 - col)) != 0 {
                        for dy in 0..SCALE as i64 {
                            for dx in 0..SCALE as i64 {
                                self.put(
                                    ox + col * SCALE as i64 + dx,
                                    y + row as i64 * SCALE as i64 + dy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Thick line (Bresenham, 3 px).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for o in -1..=1 {
                self.put(x + o, y, c);
                self.put(x, y + o, c);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }
}

/// One panel: `series` are (label, colour, values per epoch).
fn panel(
    cv: &mut Canvas,
    origin: (i64, i64),
    size: (i64, i64),
    title: &str,
    series: &[(String, [u8; 3], Vec<f64>)],
) {
    let (x0, y0) = origin;
    let (w, h) = size;
    let grey = [120, 120, 120];
    cv.text(x0, y0 - 28, title, [0, 0, 0]);
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.2.iter().cloned())
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return;
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi - lo < 1e-9 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let epochs = series.iter().map(|s| s.2.len()).max().unwrap_or(1).max(2);
    let px = |i: usize| x0 + (i as i64) * w / (epochs as i64 - 1);
    let py = |v: f64| y0 + h - ((v - lo) / (hi - lo) * h as f64) as i64;
    cv.line((x0, y0 + h), (x0 + w, y0 + h), grey);
    cv.line((x0, y0), (x0, y0 + h), grey);
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = py(v);
        cv.line((x0 - 6, y), (x0, y), grey);
        cv.text(x0 - 80, y - 7, &format!("{v:.3}"), grey);
    }
    for i in 0..epochs {
        cv.text(px(i) - 5, y0 + h + 10, &format!("{}", i + 1), grey);
    }
    cv.text(x0 + w / 2 - 30, y0 + h + 34, "epoch", grey);
    for (_, colour, vals) in series {
        let pts: Vec<(i64, i64)> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| (px(i), py(*v)))
            .collect();
        for p in pts.windows(2) {
            cv.line(p[0], p[1], *colour);
        }
        if let [only] = pts.as_slice() {
            cv.line((only.0 - 4, only.1), (only.0 + 4, only.1), *colour);
        }
    }
}

/// Validation accuracy and training loss per epoch for every run, with a legend.
pub fn curves_png(runs: &[History], path: &Path) -> Result<(), KdError> {
    let legend: Vec<Vec<String>> = runs.iter().map(|h| wrap(&h.name, LEGEND_CHARS)).collect();
    let legend_lines = legend.iter().map(Vec::len).sum::<usize>() + runs.len();
    let height = H.max(60 + legend_lines as u32 * LEGEND_LINE as u32 + 20);
    let mut cv = Canvas {
        img: RgbImage::from_pixel(W, height, Rgb([255, 255, 255])),
    };
    let series = |f: &dyn Fn(&kd_train::EpochRecord) -> f64| -> Vec<(String, [u8; 3], Vec<f64>)> {
        runs.iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    h.name.clone(),
                    PALETTE[i % PALETTE.len()],
                    h.epochs.iter().map(f).collect(),
                )
            })
            .collect()
    };
    panel(
        &mut cv,
        (110, 60),
        (480, 440),
        "validation accuracy",
        &series(&|e| e.accuracy),
    );
    panel(
        &mut cv,
        (710, 60),
        (480, 440),
        "training loss",
        &series(&|e| e.train_loss),
    );
    let mut y = 60;
    for (i, lines) in legend.iter().enumerate() {
        cv.line((1215, y + 6), (1240, y + 6), PALETTE[i % PALETTE.len()]);
        for line in lines {
            cv.text(1245, y, line, [0, 0, 0]);
            y += LEGEND_LINE;
        }
        y += LEGEND_LINE / 2;
    }
    let tmp = path.with_extension("png.tmp");
    cv.img
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| KdError::Io {
            path: tmp.clone(),
            reason: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| KdError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `text` in lines of at most `width` characters, broken at spaces where possible.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        let len = line.chars().count();
        if len > 0 && len + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > width {
            let rest = word.split_off(width);
            lines.push(word.into_iter().collect());
            word = rest;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn legend_names_wrap_at_spaces_and_lose_nothing() {
        let name = "SoftTarget T4 w0.9 + flip (seed 12)";
        let lines = wrap(name, 21);
        assert_eq!(lines, ["SoftTarget T4 w0.9 +", "flip (seed 12)"]);
        assert_eq!(lines.join(" "), name);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), [""]);
    }
}
