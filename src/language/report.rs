//! What a finished language-model experiment reports: validation bits per byte (or character)
//! per run, over seeds and teacher instances, each distilled student against the student
//! trained alone with the same seed; samples; the run directory's files.

use std::path::Path;

use kd_train::History;
use kd_train::report::comparison_table;
use serde::{Deserialize, Serialize};

use crate::KdError;
use crate::experiment::{mean_pm_std, mean_std};
use crate::plot::Curve;
use crate::whole_file::write_file;

/// Which trainings one history is: its run, the teacher instance it read (an index into the
/// teacher seeds) and its seed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Trained {
    pub run: String,
    pub teacher: Option<usize>,
    pub seed: u64,
}

/// One run over every training of it: final validation cross-entropy in bits per unit (byte
/// or character), and each training against the student trained alone with the same seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmRunResult {
    /// Run name (`teacher` for the teachers).
    pub name: String,
    /// Each training's name (run, teacher seed, seed).
    pub trainings: Vec<String>,
    /// Each training's final validation cross-entropy, bits per unit.
    pub bits: Vec<f64>,
    /// Mean of `bits`.
    pub mean: f64,
    /// Sample standard deviation of `bits` (0 for one training).
    pub std: f64,
    /// Each training's `bits` less those of the run without teacher of the same seed
    /// (negative: better); empty when the experiment has no such run.
    pub vs_alone: Vec<f64>,
    /// Each training's share of the gap between the student alone and its teacher that it
    /// closed: `(alone − run) / (alone − teacher)`; empty without a run alone and for a run
    /// that reads no teacher.
    pub gap_closed: Vec<f64>,
    /// Mean epoch time, seconds.
    pub epoch_seconds: f64,
}

/// A model's continuation of the `[samples]` prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The model (a teacher, or a run's first training).
    pub model: String,
    /// What it wrote after the prompt.
    pub text: String,
}

/// Everything a finished language-model experiment produced (also written as
/// `metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmReport {
    /// The backend.
    pub backend: String,
    /// The corpus: where, documents, bytes, vocabulary, window.
    pub corpus: String,
    /// What a token is: `byte` or `character`.
    pub unit: String,
    /// Parameters of a teacher.
    pub teacher_parameters: usize,
    /// Parameters of a student.
    pub student_parameters: usize,
    /// The teachers (first) and the runs, summarised.
    pub summary: Vec<LmRunResult>,
    /// Each teacher's epochs.
    pub teachers: Vec<History>,
    /// Each student training's epochs, in the order of `summary`.
    pub runs: Vec<History>,
    /// Continuations of the prompt.
    pub samples: Vec<Sample>,
    /// Wall time, seconds.
    pub seconds: f64,
}

fn bits(history: &History) -> f64 {
    history
        .epochs
        .last()
        .map_or(f64::NAN, |e| e.valid_ce / std::f64::consts::LN_2)
}

fn epoch_seconds(histories: &[&History]) -> f64 {
    let secs: Vec<f64> = histories
        .iter()
        .flat_map(|h| h.epochs.iter().map(|e| e.seconds))
        .collect();
    secs.iter().sum::<f64>() / secs.len().max(1) as f64
}

fn result(name: &str, histories: &[&History]) -> LmRunResult {
    let values: Vec<f64> = histories.iter().map(|h| bits(h)).collect();
    let (mean, std) = mean_std(&values);
    LmRunResult {
        name: name.to_string(),
        trainings: histories.iter().map(|h| h.name.clone()).collect(),
        bits: values,
        mean,
        std,
        vs_alone: Vec::new(),
        gap_closed: Vec::new(),
        epoch_seconds: epoch_seconds(histories),
    }
}

/// The teachers' row, then one row per run (`runs` in order, `trained[i]` saying what
/// `histories[i]` is). The student alone is the first run that reads no teacher.
pub(super) fn summarise(
    teachers: &[History],
    runs: &[String],
    trained: &[Trained],
    histories: &[History],
) -> Vec<LmRunResult> {
    let mut rows = vec![result("teacher", &teachers.iter().collect::<Vec<_>>())];
    let alone_run = trained.iter().find(|t| t.teacher.is_none()).map(|t| &t.run);
    let alone = |seed: u64| {
        trained
            .iter()
            .zip(histories)
            .find(|(t, _)| Some(&t.run) == alone_run && t.seed == seed)
            .map(|(_, h)| bits(h))
    };
    for run in runs {
        let mine: Vec<(&Trained, &History)> = trained
            .iter()
            .zip(histories)
            .filter(|(t, _)| &t.run == run)
            .collect();
        let mut row = result(run, &mine.iter().map(|(_, h)| *h).collect::<Vec<_>>());
        if alone_run.is_some() {
            for (t, h) in &mine {
                let Some(alone) = alone(t.seed) else { continue };
                row.vs_alone.push(bits(h) - alone);
                if let Some(teacher) = t.teacher.map(|i| bits(&teachers[i])) {
                    row.gap_closed.push((alone - bits(h)) / (alone - teacher));
                }
            }
        }
        rows.push(row);
    }
    rows
}

fn listed(values: &[f64], format: impl Fn(f64) -> String) -> String {
    values
        .iter()
        .map(|&v| format(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary as a Markdown table.
pub fn lm_summary_table(report: &LmReport) -> String {
    let mut out = format!(
        "| run | bits per {unit} (mean ± std) | per training | vs alone, per training | teacher gap closed | s/epoch |\n|---|---|---|---|---|---|\n",
        unit = report.unit
    );
    for row in &report.summary {
        let gap = |v: f64| match v.is_finite() {
            true => format!("{:.0} %", 100.0 * v),
            false => "–".into(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.1} |\n",
            row.name,
            mean_pm_std(row.mean, row.std, row.bits.len()),
            listed(&row.bits, |v| format!("{v:.4}")),
            listed(&row.vs_alone, |v| format!("{v:+.4}")),
            listed(&row.gap_closed, gap),
            row.epoch_seconds,
        );
    }
    out
}

/// `metrics.json`, `report.md` and `curves.png` of a finished language-model experiment, each
/// written whole.
pub(crate) fn write_report(dir: &Path, report: &LmReport) -> Result<(), KdError> {
    let json = serde_json::to_string_pretty(report).expect("report serialises");
    write_file(&dir.join("metrics.json"), json)?;
    draw_report(dir, report)
}

/// `report.md` and `curves.png` of `report`: what `kd report` redraws, reading `metrics.json`
/// and never writing it.
pub(crate) fn draw_report(dir: &Path, report: &LmReport) -> Result<(), KdError> {
    let mut histories = report.runs.iter();
    let curves: Vec<Curve> = report
        .summary
        .iter()
        .skip(1)
        .map(|row| Curve {
            name: &row.name,
            seeds: histories.by_ref().take(row.bits.len()).collect(),
            highlight: false,
        })
        .collect();
    crate::plot::curves_png(&curves, &report.teachers, &dir.join("curves.png"))?;
    let samples: String = report
        .samples
        .iter()
        .map(|s| {
            let indented: Vec<String> = s.text.lines().map(|l| format!("    {l}")).collect();
            format!("**{}**\n\n{}\n\n", s.model, indented.join("\n"))
        })
        .collect();
    let mut all = report.teachers.clone();
    all.extend(report.runs.iter().cloned());
    let md = format!(
        "# kd run: language models\n\nBackend `{}`; corpus {}; teacher {} parameters, student {}; total time {:.0} s.\n\n\
         ## Validation cross-entropy, bits per {}\n\nFinal epoch, lower is better. *vs alone*: each training less the student trained alone with the same seed; *teacher gap closed*: (alone − run) / (alone − its teacher).\n\n{}\n\
         ## Samples\n\n{}## Every epoch (cross-entropy in nats per token, accuracy of the next token)\n\n{}\n![curves](curves.png)\n",
        report.backend,
        report.corpus,
        report.teacher_parameters,
        report.student_parameters,
        report.seconds,
        report.unit,
        lm_summary_table(report),
        samples,
        comparison_table(&all),
    );
    write_file(&dir.join("report.md"), md)
}
