//! What a finished experiment reports: summaries, curves and the run directory's files.

use std::path::Path;

use kd_train::History;
use kd_train::report::comparison_table;
use serde::{Deserialize, Serialize};

use crate::language::{LmExperiment, LmReport, draw_lm_report};
use crate::plot::Curve;
use crate::whole_file::write_file;
use crate::{KdError, io_err};

/// Mean and (sample) standard deviation of one run's final accuracy over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run name.
    pub name: String,
    /// Final accuracy per seed.
    pub accuracies: Vec<f64>,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one seed).
    pub std: f64,
    /// Mean epoch time, seconds.
    pub epoch_seconds: f64,
    /// Highlighted in the report.
    pub highlight: bool,
}

/// Everything a finished experiment produced (also written as `metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredReport")]
pub struct Report {
    /// Backend used.
    pub backend: String,
    /// Data summary.
    pub data: String,
    /// Class names, in the order of the models' outputs.
    pub classes: Vec<String>,
    /// Each teacher's fine-tuning history (or the cached teacher's), in file order.
    pub teachers: Vec<History>,
    /// Every student run, per seed.
    pub runs: Vec<History>,
    /// Per-run summaries.
    pub summary: Vec<RunSummary>,
    /// Wall time of the whole experiment, seconds.
    pub seconds: f64,
}

/// `metrics.json` as read: reports written before there could be several teachers hold the
/// one as `teacher`.
#[derive(Deserialize)]
struct StoredReport {
    backend: String,
    data: String,
    classes: Vec<String>,
    #[serde(default)]
    teachers: Vec<History>,
    #[serde(default)]
    teacher: Option<History>,
    runs: Vec<History>,
    summary: Vec<RunSummary>,
    seconds: f64,
}

impl From<StoredReport> for Report {
    fn from(r: StoredReport) -> Self {
        Self {
            backend: r.backend,
            data: r.data,
            classes: r.classes,
            teachers: r.teacher.into_iter().chain(r.teachers).collect(),
            runs: r.runs,
            summary: r.summary,
            seconds: r.seconds,
        }
    }
}

/// The Markdown summary table (mean ± std over seeds).
pub fn summary_table(report: &Report) -> String {
    let mut out =
        String::from("| run | accuracy (mean ± std) | seeds | epoch time |\n|---|---|---|---|\n");
    for teacher in &report.teachers {
        if let Some(acc) = teacher.final_accuracy() {
            let t = teacher.epochs.iter().map(|e| e.seconds).sum::<f64>()
                / teacher.epochs.len().max(1) as f64;
            out += &format!("| {} | {acc:.4} | – | {t:.1} s |\n", teacher.name);
        }
    }
    for s in &report.summary {
        let name = if s.highlight {
            format!("**{}**", s.name)
        } else {
            s.name.clone()
        };
        out += &format!(
            "| {name} | {} | {} | {:.1} s |\n",
            super::stats::mean_pm_std(s.mean, s.std, s.accuracies.len()),
            s.accuracies.len(),
            s.epoch_seconds
        );
    }
    out
}

/// Each run of the summary with the histories of its seeds (`runs` holds them in order).
fn seed_groups(report: &Report) -> Vec<Curve<'_>> {
    let mut histories = report.runs.iter();
    report
        .summary
        .iter()
        .map(|run| Curve {
            name: &run.name,
            seeds: histories.by_ref().take(run.accuracies.len()).collect(),
            highlight: run.highlight,
        })
        .collect()
}

/// `metrics.json`, `report.md` and `curves.png` of a finished experiment, each written whole.
pub fn write_run_dir(dir: &Path, report: &Report) -> Result<(), KdError> {
    let json = serde_json::to_string_pretty(report).expect("report serialises");
    write_file(&dir.join("metrics.json"), json)?;
    draw_run_dir(dir, report)
}

/// `report.md` and `curves.png` of `report`: what `kd report` redraws, reading `metrics.json`
/// and never writing it.
fn draw_run_dir(dir: &Path, report: &Report) -> Result<(), KdError> {
    let curves = seed_groups(report);
    crate::plot::curves_png(&curves, &report.teachers, &dir.join("curves.png"))?;
    let mut all = report.teachers.clone();
    all.extend(report.runs.iter().cloned());
    let md = format!(
        "# kd run\n\nBackend `{}`; data: {}; total time {:.0} s.\n\n## Final accuracy\n\n{}\n## Every run\n\n{}\n![curves](curves.png)\n",
        report.backend,
        report.data,
        report.seconds,
        summary_table(report),
        comparison_table(&all)
    );
    write_file(&dir.join("report.md"), md)
}

/// What [`redraw_run_dir`] redrew: the report of an image experiment or of a language-model
/// experiment (a run directory whose `config.toml` has a `[corpus]` section).
#[derive(Debug, Clone, PartialEq)]
pub enum Redrawn {
    /// An image experiment's report.
    Images(Report),
    /// A language-model experiment's report.
    Language(LmReport),
}

/// Redraw `report.md` and `curves.png` of a finished run directory, image or language-model
/// experiment, from its `metrics.json` (after upgrading kd, or for a directory whose figures
/// were deleted).
///
/// Only a directory kd created ([`MARKER`](super::run_dir::MARKER)) is written to: a
/// `metrics.json` in a folder of the user's own is refused (exit 2) and nothing there touched.
pub fn redraw_run_dir(dir: &Path) -> Result<Redrawn, KdError> {
    if !dir.join(super::run_dir::MARKER).is_file() {
        return Err(KdError::Config {
            origin: format!("{}", dir.display()),
            message: format!(
                "not a kd run directory (no {} marker): kd report redraws only the runs kd wrote, and writes nowhere else",
                super::run_dir::MARKER
            ),
        });
    }
    let language = super::config::read_experiment_file(&dir.join("config.toml"))
        .is_ok_and(|config| LmExperiment::describes(&config));
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let not_a_report = |e: serde_json::Error| KdError::Io {
        path: path.clone(),
        reason: format!("not a kd report: {e}"),
    };
    if language {
        let report: LmReport = serde_json::from_str(&text).map_err(not_a_report)?;
        draw_lm_report(dir, &report)?;
        Ok(Redrawn::Language(report))
    } else {
        let report: Report = serde_json::from_str(&text).map_err(not_a_report)?;
        draw_run_dir(dir, &report)?;
        Ok(Redrawn::Images(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kd_train::EpochRecord;

    fn history(name: &str, accuracies: &[f64], kd: Option<f64>) -> History {
        History {
            name: name.into(),
            epochs: accuracies
                .iter()
                .enumerate()
                .map(|(epoch, &accuracy)| EpochRecord {
                    epoch,
                    train_loss: 1.0 - accuracy,
                    train_ce: 0.5,
                    train_kd: kd,
                    valid_loss: 2.0,
                    valid_ce: 1.0,
                    valid_kd: kd,
                    accuracy,
                    lr: 1e-3,
                    seconds: 10.0,
                })
                .collect(),
        }
    }

    fn summary(name: &str, seeds: usize) -> RunSummary {
        RunSummary {
            name: name.into(),
            accuracies: vec![0.0; seeds],
            mean: 0.0,
            std: 0.0,
            epoch_seconds: 0.0,
            highlight: false,
        }
    }

    #[test]
    fn each_run_gets_the_histories_of_its_own_seeds() {
        let report = Report {
            backend: "flex".into(),
            data: String::new(),
            classes: vec!["cat".into(), "dog".into()],
            teachers: vec![history("teacher", &[0.8], None)],
            runs: vec![
                history("alone (seed 0)", &[0.5, 0.6], None),
                history("alone (seed 1)", &[0.7, 0.8], None),
                history("KD (seed 0)", &[0.6, 0.9], Some(1.0)),
                history("KD (seed 1)", &[0.6, 0.7], Some(3.0)),
                history("FitNet", &[0.4], Some(2.0)),
            ],
            summary: vec![summary("alone", 2), summary("KD", 2), summary("FitNet", 1)],
            seconds: 0.0,
        };
        let groups = seed_groups(&report);
        let names = |c: &Curve| c.seeds.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&groups[0]), ["alone (seed 0)", "alone (seed 1)"]);
        assert_eq!(names(&groups[1]), ["KD (seed 0)", "KD (seed 1)"]);
        assert_eq!(names(&groups[2]), ["FitNet"]);
        assert_eq!(groups[1].name, "KD");
        // One seed's accuracy claims no spread.
        let table = summary_table(&report);
        let fitnet = table.lines().find(|l| l.starts_with("| FitNet")).unwrap();
        assert!(
            fitnet.contains("(one seed)") && !fitnet.contains('±'),
            "{fitnet}"
        );
        let kd = table.lines().find(|l| l.starts_with("| KD")).unwrap();
        assert!(kd.contains(" ± "), "{kd}");
    }

    #[test]
    fn a_report_written_with_one_teacher_reads_back_with_it_among_the_teachers() {
        let one = |t: &History| {
            serde_json::json!({
                "backend": "flex", "data": "", "classes": ["cat", "dog"],
                "teacher": t, "runs": [], "summary": [], "seconds": 1.0
            })
        };
        let teacher = history("teacher (resnet50)", &[0.8], None);
        let report: Report = serde_json::from_value(one(&teacher)).unwrap();
        assert_eq!(report.teachers, [teacher]);
        // Written anew, it holds `teachers` only, and reads back the same.
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains("\"teacher\""), "{text}");
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
    }
}
