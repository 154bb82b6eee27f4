//! The command line's rendering of what kd reports (`kd_train::report::Reporter`): progress
//! bars (indicatif) on stderr when it is a terminal — one per epoch, one per long job such as
//! decoding images — and fastai's table after each epoch on stdout; notes, warnings, and the
//! progress of long work as plain lines when stderr is not a terminal (stdout keeps the
//! results). Besides the command's own output, the one place kd prints from.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use kd_train::EpochRecord;
use kd_train::report::Reporter;

/// The terminal: see the module documentation.
#[derive(Debug)]
pub struct Console {
    tty: bool,
    distilled: bool,
    /// The bar being drawn, with what it counts (`run epoch N`, or the job's name).
    bar: Option<(String, ProgressBar)>,
    /// The runs started together and trained on the same batches (deep mutual learning): their
    /// epoch rows interleave, so each row names its run.
    group: Vec<String>,
    /// Whether an epoch was reported since the last start.
    in_epochs: bool,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            distilled: false,
            bar: None,
            group: Vec::new(),
            in_epochs: false,
        }
    }
}

impl Console {
    /// The bar for `key` counting to `total`, started if another (or none) is drawn.
    fn bar(&mut self, key: String, total: usize) -> &ProgressBar {
        if self.bar.as_ref().is_none_or(|(k, _)| *k != key) {
            if let Some((_, old)) = self.bar.take() {
                old.finish_and_clear();
            }
            let style =
                ProgressStyle::with_template("{prefix} [{wide_bar}] {pos}/{len} {msg} eta {eta}")
                    .expect("a valid template")
                    .progress_chars("=> ");
            let bar = ProgressBar::new(total as u64)
                .with_style(style)
                .with_prefix(key.clone());
            self.bar = Some((key, bar));
        }
        &self.bar.as_ref().expect("just set").1
    }

    /// Clear the bar once its count is complete.
    fn finish_bar(&mut self, done: usize, total: usize) {
        if done >= total
            && let Some((_, bar)) = self.bar.take()
        {
            bar.finish_and_clear();
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
        if self.tty {
            self.bar(what.to_string(), total).set_position(done as u64);
            self.finish_bar(done, total);
        }
        if done == total || (!self.tty && done.is_multiple_of(500)) {
            eprintln!("{what}: {done}/{total}");
        }
    }

    fn note(&mut self, text: &str) {
        match &self.bar {
            Some((_, bar)) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn warning(&mut self, text: &str) {
        match &self.bar {
            Some((_, bar)) => bar.suspend(|| eprintln!("warning: {text}")),
            None => eprintln!("warning: {text}"),
        }
    }

    fn start(&mut self, run: &str, epochs: usize, distilled: bool) {
        if self.in_epochs {
            self.group.clear();
            self.in_epochs = false;
        }
        self.group.push(run.to_string());
        self.distilled = distilled;
        println!("\n== {run}: {epochs} epochs");
        if self.group.len() > 1 {
            return;
        }
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
        let bar = self.bar(format!("{run} epoch {epoch}"), steps);
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}"));
        self.finish_bar(step, steps);
    }

    fn epoch(&mut self, run: &str, r: &EpochRecord) {
        self.in_epochs = true;
        if self.group.len() > 1 {
            print!("{run}: ");
        }
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
