//! The command line's rendering of what kd reports (`kd_train::report::Reporter`): a progress
//! bar per epoch on stderr when it is a terminal and fastai's table after each epoch on stdout;
//! notes, warnings and the progress of other long work on stderr (stdout keeps the results).
//! Besides the command's own output, the one place kd prints from.

use std::io::{IsTerminal, Write};

use kd_train::EpochRecord;
use kd_train::report::Reporter;

/// The terminal: see the module documentation.
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
    fn progress(&mut self, what: &str, done: usize, total: usize) {
        if done == total || done.is_multiple_of(500) {
            eprintln!("{what}: {done}/{total}");
        }
    }

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn warning(&mut self, text: &str) {
        eprintln!("warning: {text}");
    }

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
