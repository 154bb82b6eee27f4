//! What people see while training: a progress bar per epoch, fastai's table after each epoch,
//! and a comparison of runs.

use std::io::{IsTerminal, Write};

use crate::history::{EpochRecord, History};

/// Receives training events.
pub trait Reporter {
    /// A run begins (after any resume).
    fn start(&mut self, _run: &str, _epochs: usize, _distilled: bool) {}
    /// A run resumes at `epoch` from a checkpoint.
    fn resumed(&mut self, _run: &str, _epoch: usize) {}
    /// A training batch finished.
    fn step(&mut self, _run: &str, _epoch: usize, _step: usize, _steps: usize, _loss: f64) {}
    /// An epoch finished.
    fn epoch(&mut self, _run: &str, _record: &EpochRecord) {}
}

/// Reports nothing (tests, benchmarks).
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {}

/// Progress bar on stderr (when it is a terminal), fastai's table on stdout.
#[derive(Debug)]
pub struct Console {
    tty: bool,
    distilled: bool,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            distilled: false,
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.6}"))
}

/// `mm:ss`, as fastai prints epoch times.
pub fn mmss(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

impl Reporter for Console {
    fn start(&mut self, run: &str, epochs: usize, distilled: bool) {
        self.distilled = distilled;
        println!("\n== {run}: {epochs} epochs");
        if distilled {
            println!(
                "{:>5}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>8}  {:>5}",
                "epoch",
                "train_loss",
                "train_kd",
                "valid_loss",
                "valid_ce",
                "valid_kd",
                "accuracy",
                "lr",
                "time"
            );
        } else {
            println!(
                "{:>5}  {:>10}  {:>10}  {:>10}  {:>8}  {:>5}",
                "epoch", "train_loss", "valid_loss", "accuracy", "lr", "time"
            );
        }
    }

    fn resumed(&mut self, run: &str, epoch: usize) {
        println!(
            "{run}: resuming from the checkpoint after epoch {}",
            epoch - 1
        );
    }

    fn step(&mut self, run: &str, epoch: usize, step: usize, steps: usize, loss: f64) {
        if !self.tty {
            return;
        }
        let width = 30;
        let filled = step * width / steps.max(1);
        eprint!(
            "\r{run} epoch {epoch} [{}{}] {step}/{steps} loss {loss:.4}\x1b[K",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if step == steps {
            eprint!("\r\x1b[K");
        }
        let _ = std::io::stderr().flush();
    }

    fn epoch(&mut self, _run: &str, r: &EpochRecord) {
        if self.distilled {
            println!(
                "{:>5}  {:>10.6}  {:>10}  {:>10.6}  {:>10.6}  {:>10}  {:>10.4}  {:>8.1e}  {:>5}",
                r.epoch,
                r.train_loss,
                opt(r.train_kd),
                r.valid_loss,
                r.valid_ce,
                opt(r.valid_kd),
                r.accuracy,
                r.lr,
                mmss(r.seconds)
            );
        } else {
            println!(
                "{:>5}  {:>10.6}  {:>10.6}  {:>10.4}  {:>8.1e}  {:>5}",
                r.epoch,
                r.train_loss,
                r.valid_loss,
                r.accuracy,
                r.lr,
                mmss(r.seconds)
            );
        }
        let _ = std::io::stdout().flush();
    }
}

/// A Markdown table comparing runs: final accuracy, best accuracy, final validation CE, mean
/// epoch time.
pub fn comparison_table(runs: &[History]) -> String {
    let mut out = String::from(
        "| run | final accuracy | best accuracy | final valid CE | epochs | mean epoch time |\n|---|---|---|---|---|---|\n",
    );
    for h in runs {
        let Some(last) = h.epochs.last() else {
            continue;
        };
        let best = h.epochs.iter().map(|e| e.accuracy).fold(f64::MIN, f64::max);
        let mean_t = h.epochs.iter().map(|e| e.seconds).sum::<f64>() / h.epochs.len() as f64;
        out += &format!(
            "| {} | {:.4} | {:.4} | {:.4} | {} | {:.1} s |\n",
            h.name,
            last.accuracy,
            best,
            last.valid_ce,
            h.epochs.len(),
            mean_t
        );
    }
    out
}
