//! The teacher stage: build, fine-tune (or reuse from the cache).

use std::path::Path;

use burn::tensor::Device;
use kd_data::DataBundle;
use kd_train::report::SharedReporter;
use kd_train::{History, TeacherCache};

use kd_core::DEFAULT_TEACHER;

use super::config::{Experiment, TeacherSection};
use super::fingerprint::Fingerprint;
use super::run_dir::teacher_checkpoint_dir;
use crate::registry::{AnyModel, ModelContext, Registry};
use crate::{KdError, io_err};

/// One teacher of an experiment: its name, section, fingerprint and checkpoint folder.
pub(super) struct TeacherPlan<'a> {
    /// The name terms read it by.
    pub name: &'a str,
    /// Its section of the file.
    pub section: &'a TeacherSection,
    /// What its fine-tuning depends on (names its cache entry).
    pub fingerprint: Fingerprint,
    /// Its fine-tuning checkpoints in the run directory.
    pub checkpoints: std::path::PathBuf,
}

impl<'a> TeacherPlan<'a> {
    /// Every teacher of `exp`, its checkpoints under `out_dir` (a lone `[teacher]` in
    /// `teacher-checkpoints/`, each of several in a folder of its own there).
    pub(super) fn all(exp: &'a Experiment, out_dir: &Path) -> Result<Vec<Self>, KdError> {
        let sections = exp.teacher_sections();
        let alone = sections.len() == 1 && exp.teacher.is_some();
        sections
            .into_iter()
            .map(|(name, section)| {
                Ok(Self {
                    name,
                    section,
                    fingerprint: Fingerprint::teacher(exp, section)?,
                    checkpoints: teacher_checkpoint_dir(out_dir, (!alone).then_some(name)),
                })
            })
            .collect()
    }

    /// How messages and reports call it: `teacher (resnet50)`, `teacher r50b (resnet50)`.
    pub(super) fn label(&self) -> String {
        match self.name {
            DEFAULT_TEACHER => format!("teacher ({})", self.section.arch),
            name => format!("teacher {name} ({})", self.section.arch),
        }
    }
}

/// Fine-tune the teacher, or reuse the one fine-tuned earlier from identical settings and
/// starting weights (`fingerprint`, which names the cache entry). Fine-tuning checkpoints every
/// epoch into the run directory and resumes from there; a cache that cannot be written costs a
/// warning, not the fine-tuned teacher.
#[allow(clippy::too_many_arguments)]
pub(super) fn teacher(
    exp: &Experiment,
    registry: &Registry,
    plan: &TeacherPlan,
    data: &DataBundle,
    retrain: bool,
    cache: &Path,
    devices: &[Device],
    reporter: &SharedReporter,
) -> Result<(Box<dyn AnyModel>, History), KdError> {
    let section = plan.section;
    let dir = cache.join("teachers");
    let file_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let arch = section.arch.replace(|c| !file_safe(c), "-");
    let key = format!("{arch}-{}", plan.fingerprint.digest());
    let weights = dir.join(format!("{key}.bpk"));
    let history_path = dir.join(format!("{key}.json"));
    let device = &devices[0];
    let ctx = ModelContext {
        classes: data.set.vocab.len(),
        device,
        weights: &section.weights,
        cache_dir: cache,
    };
    device.seed(section.seed.unwrap_or(exp.data.seed));
    let label = plan.label();
    let mut net = registry.build_section(&section.model(), plan.name, &ctx)?;
    if section.reuse && !retrain && weights.is_file() && history_path.is_file() {
        net.load(&weights)?;
        let text = std::fs::read_to_string(&history_path).map_err(io_err(&history_path))?;
        let mut history: History = serde_json::from_str(&text).map_err(|e| KdError::Io {
            path: history_path.clone(),
            reason: e.to_string(),
        })?;
        history.name = label;
        reporter.note(&format!(
            "{}: reusing {} fine-tuned earlier (accuracy {:.4}); --retrain-teacher to redo",
            plan.name,
            weights.display(),
            history.final_accuracy().unwrap_or(0.0)
        ));
        return Ok((net, history));
    }
    let model = net
        .distill(
            kd_train::Teachers::new(),
            kd_core::Objective::cross_entropy_only(),
            &data.valid.probe(2),
            TeacherCache::OFF.into(),
        )?
        .on_devices(devices)?;
    let checkpoints = &plan.checkpoints;
    plan.fingerprint.check_or_write(checkpoints, plan.name)?;
    let recipe = kd_train::Recipe::new(section.fit())
        .name(&label)
        .checkpoints(checkpoints)
        .reporter(reporter.clone());
    let (model, history) = model.fit(&recipe, &data.train.with_flip(exp.data.flip), &data.valid)?;
    match keep_in_cache(model.as_ref(), &history, &weights, &history_path) {
        // The cache holds it now: the run directory needs no copy, nor the folder of several
        // teachers' checkpoints once it is empty.
        Ok(()) => {
            std::fs::remove_dir_all(checkpoints).map_err(io_err(checkpoints))?;
            if let Some(parent) = checkpoints.parent()
                && parent.file_name() == Some("teacher-checkpoints".as_ref())
            {
                let _ = std::fs::remove_dir(parent);
            }
        }
        Err(e) => reporter.warning(&format!(
            "the fine-tuned teacher could not be kept in the cache ({e}); this run goes on \
             with it, and its last checkpoint stays in {}",
            checkpoints.display()
        )),
    }
    Ok((model, history))
}

/// Write a fine-tuned teacher and its history into the cache, each renamed into place when
/// whole: the history first, so that a reader who finds the weights finds a whole history too.
/// Two processes fine-tuning the same teacher at once (two experiment files run side by side)
/// each stage their own files; the last rename wins, and both hold the same teacher.
fn keep_in_cache(
    net: &dyn AnyModel,
    history: &History,
    weights: &Path,
    history_path: &Path,
) -> Result<(), KdError> {
    if let Some(dir) = weights.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let json = serde_json::to_string_pretty(history).expect("history serialises");
    write_whole(history_path, |tmp| {
        std::fs::write(tmp, &json).map_err(io_err(tmp))
    })?;
    write_whole(weights, |tmp| net.save(tmp))
}

/// Write `path` through a staging file of this process and thread only, renamed over `path`
/// when `write` has finished: a reader never sees part of a file, and a writer never writes
/// into, nor renames, another writer's staging file. A failed write leaves no staging file.
fn write_whole(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), KdError>,
) -> Result<(), KdError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", kd_data::npm::unique_suffix()));
    let tmp = path.with_file_name(name);
    let written = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kd-write-whole-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_writer_leaves_the_staging_file_of_another_alone() {
        // Another process fine-tuning the same teacher is half-way through staging its copy
        // under the name a single fixed staging name would use.
        let dir = scratch("other");
        let weights = dir.join("resnet50-abc.bpk");
        let theirs = dir.join("resnet50-abc.bpk.tmp");
        std::fs::write(&theirs, b"half of another writer's teacher").unwrap();

        write_whole(&weights, |tmp| {
            std::fs::write(tmp, b"this writer's teacher").map_err(io_err(tmp))
        })
        .unwrap();

        assert_eq!(std::fs::read(&weights).unwrap(), b"this writer's teacher");
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            b"half of another writer's teacher",
            "another writer's staging file was written into or taken"
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left.len(),
            2,
            "a staging file of this writer is left: {left:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_cache_entry_and_no_staging_file() {
        let dir = scratch("failed");
        let weights = dir.join("resnet50-abc.bpk");
        std::fs::write(&weights, b"the teacher cached earlier").unwrap();

        let failed = write_whole(&weights, |tmp| {
            std::fs::write(tmp, b"half").map_err(io_err(tmp))?;
            Err(KdError::Io {
                path: tmp.to_path_buf(),
                reason: "disk full".into(),
            })
        });

        assert!(matches!(failed, Err(KdError::Io { .. })), "{failed:?}");
        assert_eq!(
            std::fs::read(&weights).unwrap(),
            b"the teacher cached earlier"
        );
        let left = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(left, 1, "the failed write left a staging file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
