//! Learning curves as a PNG (plotters, with an embedded DejaVu Sans subset: no system fonts):
//! validation accuracy on [0, 1], training and validation cross-entropy per epoch — one line
//! per run (the mean over its seeds, with a ± one standard deviation band when there are
//! several), the teacher's final accuracy and loss as dashed reference lines, the highlighted
//! run drawn thicker and on top.

use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use kd_train::{EpochRecord, History};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::KdError;

/// DejaVu Sans cut to Latin-1, punctuation, arrows and Greek (`assets/fonts/make_subset.sh`).
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-kd-subset.ttf");
const FAMILY: &str = "sans-serif";

const WIDTH: u32 = 1800;
const PANEL_HEIGHT: u32 = 520;
const LEGEND_ROW: u32 = 30;
/// Tableau 10, as matplotlib.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const TEACHER: RGBColor = RGBColor(60, 60, 60);
/// Dash and gap lengths (pixels) of the teachers' reference lines, one pattern per teacher.
const DASHES: [(u32, u32); 3] = [(10, 6), (4, 4), (18, 4)];

/// One run's curves: the histories of its seeds.
pub(crate) struct Curve<'a> {
    /// The run's name (without seeds).
    pub name: &'a str,
    /// One history per seed.
    pub seeds: Vec<&'a History>,
    /// Drawn thicker and on top.
    pub highlight: bool,
}

/// What a panel plots from an epoch.
struct Metric {
    title: &'static str,
    value: fn(&EpochRecord) -> f64,
    /// Fixed `[0, 1]` range (accuracy); otherwise from 0 to the largest value.
    unit_range: bool,
}

const METRICS: [Metric; 3] = [
    Metric {
        title: "validation accuracy",
        value: |e| e.accuracy,
        unit_range: true,
    },
    Metric {
        title: "training cross-entropy",
        value: |e| e.train_ce,
        unit_range: false,
    },
    Metric {
        title: "validation cross-entropy",
        value: |e| e.valid_ce,
        unit_range: false,
    },
];

/// Per epoch (1-based): mean and sample standard deviation over the seeds of `metric`, for the
/// epochs every seed reached and whose values are all finite.
fn band(curve: &Curve, metric: fn(&EpochRecord) -> f64) -> Vec<(f64, f64, f64)> {
    let epochs = curve
        .seeds
        .iter()
        .map(|h| h.epochs.len())
        .min()
        .unwrap_or(0);
    (0..epochs)
        .filter_map(|e| {
            let values: Vec<f64> = curve.seeds.iter().map(|h| metric(&h.epochs[e])).collect();
            if values.iter().any(|v| !v.is_finite()) {
                return None;
            }
            let (mean, std) = crate::experiment::mean_std(&values);
            Some(((e + 1) as f64, mean, std))
        })
        .collect()
}

fn register_font_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is ours and parses: a failure here is a build defect, seen by every test.
        if register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded plot font does not parse");
        }
    });
}

/// The legend's text for `curve`: its name, final accuracy and seeds.
fn legend_label(curve: &Curve) -> String {
    let last = band(curve, |e| e.accuracy).last().copied();
    let seeds = curve.seeds.len();
    match last {
        Some((_, mean, std)) if seeds > 1 => {
            format!("{}: {mean:.4} ± {std:.4} ({seeds} seeds)", curve.name)
        }
        Some((_, mean, _)) => format!("{}: {mean:.4}", curve.name),
        None => format!("{}: no finished epoch", curve.name),
    }
}

/// Draw `curves` (and each teacher's final values as reference lines) into a PNG at `path`.
pub(crate) fn curves_png(
    curves: &[Curve],
    teachers: &[History],
    path: &Path,
) -> Result<(), KdError> {
    register_font_once();
    let legend_rows = curves.len() + teachers.len();
    let height = PANEL_HEIGHT + 30 + legend_rows.div_ceil(2) as u32 * LEGEND_ROW;
    let mut pixels = vec![0u8; (WIDTH * height * 3) as usize];
    draw(curves, teachers, &mut pixels, height).map_err(|e| KdError::Io {
        path: path.to_path_buf(),
        reason: format!("drawing the curves: {e}"),
    })?;
    // Encoded in memory, then written whole: a write error (a full disk) is seen, not lost
    // in a buffered writer's drop.
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::Adaptive)
        .write_image(&pixels, WIDTH, height, ExtendedColorType::Rgb8)
        .map_err(|e| KdError::Io {
            path: path.to_path_buf(),
            reason: format!("encoding the curves: {e}"),
        })?;
    crate::whole_file::write_file(path, png)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(curves: &[Curve], teachers: &[History], pixels: &mut [u8], height: u32) -> DrawResult {
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, legend) = root.split_vertically(PANEL_HEIGHT);
    let epochs = curves
        .iter()
        .flat_map(|c| c.seeds.iter().map(|h| h.epochs.len()))
        .max()
        .unwrap_or(1)
        .max(1);
    // Highlighted runs last, so they are drawn on top.
    let mut order: Vec<usize> = (0..curves.len()).collect();
    order.sort_by_key(|&i| curves[i].highlight);
    for (area, metric) in top.split_evenly((1, 3)).iter().zip(&METRICS) {
        panel(area, metric, curves, &order, teachers, epochs)?;
    }
    draw_legend(&legend, curves, teachers)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    metric: &Metric,
    curves: &[Curve],
    order: &[usize],
    teachers: &[History],
    epochs: usize,
) -> DrawResult {
    let bands: Vec<Vec<(f64, f64, f64)>> = curves.iter().map(|c| band(c, metric.value)).collect();
    // Each teacher's final value, with its index (which sets its dash pattern).
    let references: Vec<(usize, f64)> = teachers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.epochs.last().map(|e| (i, (metric.value)(e))))
        .filter(|(_, v)| v.is_finite())
        .collect();
    let y_max = if metric.unit_range {
        1.0
    } else {
        let top = bands
            .iter()
            .flatten()
            .map(|&(_, mean, std)| mean + std)
            .chain(references.iter().map(|&(_, v)| v))
            .fold(0.0_f64, f64::max);
        if top > 0.0 { top * 1.08 } else { 1.0 }
    };
    let x_range = 0.5..epochs as f64 + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(metric.title, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(epochs.min(10) + 1)
        .x_label_formatter(&|x| {
            let rounded = x.round();
            if (x - rounded).abs() < 1e-6 && rounded >= 1.0 {
                format!("{rounded:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .light_line_style(RGBColor(248, 248, 248))
        .bold_line_style(RGBColor(222, 222, 222))
        .draw()?;
    for &(i, value) in &references {
        let (dash, gap) = DASHES[i % DASHES.len()];
        chart.draw_series(DashedLineSeries::new(
            [(0.5, value), (epochs as f64 + 0.5, value)],
            dash,
            gap,
            TEACHER.stroke_width(2),
        ))?;
    }
    for &i in order {
        let points = &bands[i];
        let colour = PALETTE[i % PALETTE.len()];
        if curves[i].seeds.len() > 1 && points.len() > 1 {
            let upper = points.iter().map(|&(x, m, s)| (x, (m + s).min(y_max)));
            let lower = points.iter().rev().map(|&(x, m, s)| (x, (m - s).max(0.0)));
            let outline: Vec<(f64, f64)> = upper.chain(lower).collect();
            chart.draw_series(std::iter::once(Polygon::new(
                outline,
                colour.mix(0.15).filled(),
            )))?;
        }
        let width = if curves[i].highlight { 5 } else { 2 };
        let line = points.iter().map(|&(x, mean, _)| (x, mean));
        chart.draw_series(LineSeries::new(line, colour.stroke_width(width)))?;
        // Markers keep a single epoch (and every epoch's value) visible.
        let dots = points
            .iter()
            .map(|&(x, mean, _)| Circle::new((x, mean), width + 2, colour.filled()));
        chart.draw_series(dots)?;
    }
    Ok(())
}

fn draw_legend(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    curves: &[Curve],
    teachers: &[History],
) -> DrawResult {
    // Label, line style, and the dash pattern of a teacher's dashed line.
    type Entry = (String, ShapeStyle, Option<(u32, u32)>);
    let mut entries: Vec<Entry> = Vec::new();
    for (i, t) in teachers.iter().enumerate() {
        let accuracy = t.epochs.last().map(|e| e.accuracy).unwrap_or(f64::NAN);
        let label = format!("{} (dashed): {accuracy:.4}", t.name);
        entries.push((
            label,
            TEACHER.stroke_width(2),
            Some(DASHES[i % DASHES.len()]),
        ));
    }
    for (i, curve) in curves.iter().enumerate() {
        let width = if curve.highlight { 5 } else { 2 };
        let mut label = legend_label(curve);
        if curve.highlight {
            label.push_str("  (highlighted)");
        }
        entries.push((label, PALETTE[i % PALETTE.len()].stroke_width(width), None));
    }
    // Two columns, filled top to bottom.
    let rows = entries.len().div_ceil(2);
    let column = (WIDTH / 2) as i32;
    for (i, (label, style, dashed)) in entries.into_iter().enumerate() {
        let x = 80 + column * (i / rows) as i32;
        let y = 12 + (i % rows) as i32 * LEGEND_ROW as i32;
        let swatch = [(x, y + 9), (x + 44, y + 9)];
        match dashed {
            Some((dash, gap)) => {
                let (dash, step) = (dash as i32, (dash + gap) as i32);
                for start in (x..x + 44).step_by(step as usize) {
                    let end = (start + dash).min(x + 44);
                    area.draw(&PathElement::new([(start, y + 9), (end, y + 9)], style))?;
                }
            }
            None => area.draw(&PathElement::new(swatch, style))?,
        }
        area.draw(&Text::new(label, (x + 56, y), (FAMILY, 19)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(accuracies: &[f64]) -> History {
        History {
            name: "run".into(),
            epochs: accuracies
                .iter()
                .enumerate()
                .map(|(epoch, &accuracy)| EpochRecord {
                    epoch,
                    train_loss: 1.0,
                    train_ce: 1.0 - accuracy,
                    train_kd: None,
                    valid_loss: 1.0,
                    valid_ce: 2.0 * (1.0 - accuracy),
                    valid_kd: None,
                    accuracy,
                    lr: 1e-3,
                    seconds: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn bands_are_the_mean_and_sample_std_over_seeds_per_epoch() {
        let (a, b, c) = (history(&[0.5, 0.6]), history(&[0.7, 0.8]), history(&[0.6]));
        let curve = Curve {
            name: "run",
            seeds: vec![&a, &b, &c],
            highlight: false,
        };
        // Only epoch 1 is reached by every seed: values 0.5, 0.7, 0.6 → mean 0.6, std 0.1.
        let points = band(&curve, |e| e.accuracy);
        assert_eq!(points.len(), 1);
        let (x, mean, std) = points[0];
        assert_eq!(x, 1.0);
        assert!(
            (mean - 0.6).abs() < 1e-12 && (std - 0.1).abs() < 1e-12,
            "{points:?}"
        );
        assert_eq!(legend_label(&curve), "run: 0.6000 ± 0.1000 (3 seeds)");
    }

    #[test]
    fn a_single_epoch_run_is_drawn_inside_its_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let (run, teacher) = (history(&[0.75]), history(&[0.9]));
        let curve = Curve {
            name: "one epoch",
            seeds: vec![&run],
            highlight: true,
        };
        curves_png(&[curve], std::slice::from_ref(&teacher), &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.width(), WIDTH);
        assert!(image.height() > PANEL_HEIGHT, "room for the legend");
        let RGBColor(r, g, b) = PALETTE[0];
        let in_panels = (0..PANEL_HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0 == [r, g, b])
            .count();
        // Three markers of radius 7: several hundred pixels of the run's colour.
        assert!(
            in_panels > 300,
            "{in_panels} pixels of the run's colour in the panels"
        );
    }
}
