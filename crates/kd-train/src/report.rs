//! How training tells the world what it does: every event — a run starting or resuming, a
//! batch, an epoch, a note, a warning — goes to a [`Reporter`], and nothing in the library
//! prints. The `kd` command line renders them (`kd::console::Console`); tests and benchmarks
//! pass [`Silent`]. Also the comparison table of finished runs.

use std::sync::{Arc, Mutex, MutexGuard};

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
    /// Progress of long work other than training (`done` of `total`: images decoded, say).
    fn progress(&mut self, _what: &str, _done: usize, _total: usize) {}
    /// Something worth knowing (what was loaded, reused, skipped).
    fn note(&mut self, _text: &str) {}
    /// Something that went wrong without stopping the work.
    fn warning(&mut self, _text: &str) {}
}

/// Reports nothing (tests, benchmarks, embedders who want quiet).
#[derive(Debug, Default)]
pub struct Silent;

impl Reporter for Silent {}

/// A reporter shared by the several places (and threads) of one job, such as an experiment:
/// clones report to the same reporter, one event at a time.
#[derive(Clone)]
pub struct SharedReporter(Arc<Mutex<dyn Reporter + Send>>);

impl SharedReporter {
    /// Share `reporter`.
    pub fn new(reporter: impl Reporter + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(reporter)))
    }

    /// The reporter itself, for a call that takes `&mut dyn Reporter`; other clones wait
    /// until the guard is dropped. Never hold it across a training: the run reports through
    /// it.
    pub fn lock(&self) -> MutexGuard<'_, dyn Reporter + Send + 'static> {
        // A reporter that panicked mid-event still takes the next one.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Report a note.
    pub fn note(&self, text: &str) {
        self.lock().note(text);
    }

    /// Report a warning.
    pub fn warning(&self, text: &str) {
        self.lock().warning(text);
    }

    /// Report progress of long work.
    pub fn progress(&self, what: &str, done: usize, total: usize) {
        self.lock().progress(what, done, total);
    }
}

impl Default for SharedReporter {
    fn default() -> Self {
        Self::new(Silent)
    }
}

impl std::fmt::Debug for SharedReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedReporter")
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
