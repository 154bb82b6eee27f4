//! The teacher stage: build, fine-tune (or reuse from the cache).

use std::path::Path;

use burn::tensor::Device;
use kd_data::DataBundle;
use kd_train::digests::{check_digests, digest_list};
use kd_train::report::SharedReporter;
use kd_train::{History, TeacherCache};

use kd_core::DEFAULT_TEACHER;

use super::config::{Experiment, TeacherSection};
use super::fingerprint::Fingerprint;
use super::run_dir::teacher_checkpoint_dir;
use crate::registry::{AnyModel, ModelContext, Registry};
use crate::whole_file::{write_file, write_whole};
use crate::{KdError, io_err};

/// One teacher of an experiment: its name, section, fingerprint and checkpoint folder.
pub(super) struct TeacherPlan<'a> {
    /// The name terms read it by.
    pub name: &'a str,
    /// Its section of the file.
    pub section: &'a TeacherSection,
    /// What its fine-tuning depends on, the data's content included.
    pub fingerprint: Fingerprint,
    /// Its cache entry's name without extension: `<arch>-<settings>-<data content>`, so that a
    /// teacher cached for the same settings on other data is found and named.
    pub cache_key: String,
    /// `<arch>-<settings>`: what every cache entry of these settings starts with.
    settings_key: String,
    /// Its fine-tuning checkpoints in the run directory.
    pub checkpoints: std::path::PathBuf,
}

impl<'a> TeacherPlan<'a> {
    /// Every teacher of `exp` fine-tuned on data whose content digest is `content`, its
    /// checkpoints under `out_dir` (a lone `[teacher]` in `teacher-checkpoints/`, each of
    /// several in a folder of its own there).
    pub(super) fn all(
        exp: &'a Experiment,
        out_dir: &Path,
        content: &str,
    ) -> Result<Vec<Self>, KdError> {
        let sections = exp.teacher_sections();
        let alone = sections.len() == 1 && exp.teacher.is_some();
        let file_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        sections
            .into_iter()
            .map(|(name, section)| {
                let settings = Fingerprint::teacher(exp, section)?;
                let arch = section.arch.replace(|c| !file_safe(c), "-");
                let settings_key = format!("{arch}-{}", settings.digest());
                Ok(Self {
                    name,
                    section,
                    cache_key: format!("{settings_key}-{content}"),
                    settings_key,
                    fingerprint: settings.with_data(content),
                    checkpoints: teacher_checkpoint_dir(out_dir, (!alone).then_some(name)),
                })
            })
            .collect()
    }

    /// The cached teachers of the same settings fine-tuned on other data (their files'
    /// names), to say why this one is fine-tuned anew.
    fn cached_on_other_data(&self, dir: &Path) -> Vec<String> {
        let ours = format!("{}.bpk", self.cache_key);
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                *n != ours
                    && n.strip_prefix(&self.settings_key)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|rest| rest.ends_with(".bpk"))
            })
            .collect();
        found.sort();
        found
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
    let key = &plan.cache_key;
    let weights = dir.join(format!("{key}.bpk"));
    let history_path = dir.join(format!("{key}.json"));
    let digests = dir.join(format!("{key}.sha256"));
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
    let cached = section.reuse && !retrain && weights.is_file() && history_path.is_file();
    let intact = match cached {
        true => check_digests(&digests, &[&weights, &history_path]),
        false => Ok(()),
    };
    if let Err(why) = &intact {
        reporter.warning(&format!(
            "{}: the teacher cached in {} is not used: {why}; fine-tuning it anew",
            plan.name,
            weights.display()
        ));
    } else if section.reuse && !retrain && !cached {
        let others = plan.cached_on_other_data(&dir);
        if !others.is_empty() {
            reporter.note(&format!(
                "{}: no teacher is cached for these images; {} in {} had the same settings and other images (the data's content changed), so a teacher is fine-tuned on these",
                plan.name,
                others.join(", "),
                dir.display()
            ));
        }
    }
    if cached && intact.is_ok() {
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
    write_file(history_path, json)?;
    write_whole(weights, |tmp| net.save(tmp))?;
    // Last: an entry without its digests (a kill in between) is not trusted.
    write_file(
        &weights.with_extension("sha256"),
        digest_list(&[weights, history_path])?,
    )
}
