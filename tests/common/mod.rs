//! Helpers shared by the `kd` package's integration tests: a tiny image folder, a tiny
//! experiment on it, and the built binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use image::{Rgb, RgbImage};
use kd::KdError;
use kd::experiment::{Experiment, RunOptions};
use kd::registry::Registry;

pub fn kd_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kd"))
}

/// 20 cats and 20 dogs, 16×16.
pub fn tiny_images(dir: &Path) {
    for i in 0..20u32 {
        RgbImage::from_fn(16, 16, |x, y| Rgb([220, (x * 9 + i) as u8, y as u8]))
            .save(dir.join(format!("Cat_{i}.png")))
            .unwrap();
        RgbImage::from_fn(16, 16, |x, y| Rgb([20, y as u8, (x * 9 + i) as u8]))
            .save(dir.join(format!("dog_{i}.png")))
            .unwrap();
    }
}

pub fn tiny_experiment(images: &Path, output: &Path) -> String {
    format!(
        r#"
output = "{}"
[data]
source = "{}"
size = 16
batch_size = 8
[teacher]
arch = "resnet18"
head = "fastai"
epochs = 1
[student]
arch = "resnet18"
[training]
epochs = 1
backend = "flex"
[[runs]]
name = "student alone"
[[runs]]
name = "Attention"
mix = {{ kind = "lerp", weight = 0.9 }}
losses = [{{ loss = {{ kind = "attention", pairs = [{{ student = "layer1", teacher = "0.4" }}] }} }}]
"#,
        output.display(),
        images.display()
    )
}

/// The folders of a tiny run (images, output, cache), removed when dropped.
#[allow(clippy::new_without_default)]
pub struct TinyRun {
    pub images: tempfile::TempDir,
    pub out: tempfile::TempDir,
    pub cache: tempfile::TempDir,
}

impl TinyRun {
    pub fn new() -> Self {
        let images = tempfile::tempdir().unwrap();
        tiny_images(images.path());
        Self {
            images,
            out: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    pub fn out_dir(&self) -> std::path::PathBuf {
        self.out.path().join("run")
    }

    /// The tiny experiment with `epochs` for the teacher and the students.
    pub fn experiment(&self, epochs: usize) -> Experiment {
        let text = tiny_experiment(self.images.path(), &self.out_dir())
            .replace("epochs = 1", &format!("epochs = {epochs}"));
        Experiment::from_toml(&text, "tiny.toml").unwrap()
    }

    pub fn options(&self) -> RunOptions {
        RunOptions {
            cache_dir: Some(self.cache.path().to_path_buf()),
            ..RunOptions::default()
        }
    }
}

/// The configuration error (exit code 2) that parsing `text` and resolving its names against
/// kd's own registry gives; panics if there is none.
pub fn config_error(text: &str) -> String {
    let parsed = Experiment::from_toml(text, "test.toml")
        .and_then(|exp| exp.check_names(&Registry::builtin(), "test.toml"));
    match parsed {
        Err(e @ KdError::Config { .. }) => {
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

/// A reporter that keeps every note and warning, for tests that check what a run said.
#[derive(Clone, Default)]
pub struct Said(pub std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl kd::train::report::Reporter for Said {
    fn note(&mut self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
    fn warning(&mut self, text: &str) {
        self.0.lock().unwrap().push(format!("warning: {text}"));
    }
}

impl Said {
    /// Everything said so far, one line each.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}
