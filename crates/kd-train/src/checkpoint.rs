//! A run's checkpoints as Burn's checkpointer: after each epoch the model, the optimizer state
//! and the history are written to a temporary folder and renamed into place when whole
//! (`epoch-NNN/`); only the newest is kept. Each file's sha256 is written beside them
//! ([`DIGESTS`]) and checked before anything is read back: a file changed or damaged after it
//! was written is refused by name.
//!
//! Burn's `Learner` hands the model and the optimizer to two checkpointer threads; whichever
//! finishes an epoch's part last completes the folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::TrainError;
use crate::digests::{check_digests, digest_list};
use crate::history::{Histories, History};
use crate::recorder::HistoryRecorder;
use crate::scheduler::record_after;
use crate::trainable::Trainable;
use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use burn::train::checkpoint::{
    Checkpointer, CheckpointerError, CheckpointingAction, CheckpointingStrategy,
};
use burn::train::metric::store::EventStoreClient;

/// The digests of a checkpoint's files, written last.
const DIGESTS: &str = "digests.json";
const MODEL: &str = "model.bpk";
const OPTIM: &str = "optim.bpk";
const HISTORY: &str = "history.json";

fn checkpoint_err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Record the digest of each of `files` in `dir` (a staging folder, renamed whole).
fn write_digests(dir: &Path, files: &[&str]) -> Result<(), TrainError> {
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    let json = digest_list(&paths.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    let path = dir.join(DIGESTS);
    std::fs::write(&path, json).map_err(|e| checkpoint_err(&path, e.to_string()))
}

/// Check `files` of the checkpoint in `dir` against the digests written with them.
fn verify(dir: &Path, files: &[&str]) -> Result<(), TrainError> {
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
    check_digests(
        &dir.join(DIGESTS),
        &paths.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    )
    .map_err(|e| match e {
        TrainError::Checkpoint { path, reason } => checkpoint_err(
            &path,
            format!("{reason}: start the run afresh with --force"),
        ),
        other => other,
    })
}

/// The folder of kd's `epoch` (from 0) in `dir`.
fn epoch_dir(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:03}"))
}

/// The newest complete checkpoint in `dir` (renamed into place only when fully written).
fn latest(dir: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("epoch-")?
                .parse()
                .ok()
        })
        .max()
}

/// The histories a checkpoint holds: one run's [`History`], or a JSON list of them (the
/// students of a mutual run).
fn read_histories(dir: &Path) -> Result<Vec<History>, TrainError> {
    let path = dir.join(HISTORY);
    let err = |reason: String| checkpoint_err(&path, reason);
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    } else {
        Ok(vec![
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
        ])
    }
}

/// The parts of an epoch's checkpoint written so far.
#[derive(Default)]
struct Pending {
    model: bool,
    optim: bool,
}

/// A run's checkpoint folder as Burn's [`Checkpointer`] of the model, the optimizer and the
/// learning-rate schedule, and as its [`CheckpointingStrategy`] (every epoch, the newest
/// kept): give clones of it to `SupervisedTraining::with_custom_checkpointers` and
/// `with_checkpointing_strategy`. Burn's epoch `e` (from 1) is the folder `epoch-{e-1}`.
///
/// The model file is the whole trained module (a [`MutualModel`](crate::MutualModel) holds
/// every student; [`load_trained_student`] reads one back). The schedule is not written: its
/// position is the epoch's end.
pub struct RunCheckpointer<M> {
    dir: PathBuf,
    /// A copy of the trained module, to check and read a checkpoint into before training.
    template: Arc<Mutex<M>>,
    histories: Histories,
    pending: Arc<Mutex<BTreeMap<usize, Pending>>>,
}

impl<M> Clone for RunCheckpointer<M> {
    fn clone(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            template: self.template.clone(),
            histories: self.histories.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<M: Trainable> RunCheckpointer<M> {
    /// The checkpoints of a run of `model` in `dir`, saving beside it the histories
    /// `recorder` records.
    pub fn new(dir: impl AsRef<Path>, model: &M, recorder: &HistoryRecorder) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            template: Arc::new(Mutex::new(model.clone())),
            histories: recorder.shared_histories(),
            pending: Arc::default(),
        }
    }

    /// The newest complete checkpoint, checked whole (digests, and the model and optimizer
    /// read back), with the histories it holds; `None` when there is none.
    pub(crate) fn resume_point(&self) -> Result<Option<(usize, Vec<History>)>, TrainError> {
        if self.dir.join("student-1").is_dir() && latest(&self.dir).is_none() {
            return Err(checkpoint_err(
                &self.dir,
                "this mutual-learning run was written by kd 0.1.0 (a folder per student, an optimizer each); kd now trains the students as one module with one optimizer and cannot resume it: start the run afresh with --force",
            ));
        }
        let Some(epoch) = latest(&self.dir) else {
            return Ok(None);
        };
        let dir = epoch_dir(&self.dir, epoch);
        verify(&dir, &[MODEL, OPTIM, HISTORY])?;
        self.read_model(epoch)?;
        read_optim(&dir)?;
        Ok(Some((epoch, read_histories(&dir)?)))
    }

    /// The module with the weights of kd's `epoch`, as a record.
    pub(crate) fn read_model(&self, epoch: usize) -> Result<ModuleRecord, TrainError> {
        let dir = epoch_dir(&self.dir, epoch);
        verify(&dir, &[MODEL])?;
        let mut model = self
            .template
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        kd_core::load_module(&mut model, &dir.join(MODEL))?;
        Ok(model.into_record())
    }

    /// Note that `part` of Burn's `epoch` is written; complete the folder when both are.
    fn written(&self, epoch: usize, part: fn(&mut Pending) -> &mut bool) -> Result<(), TrainError> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending.entry(epoch).or_default();
        *part(entry) = true;
        if entry.model && entry.optim {
            pending.remove(&epoch);
            self.complete(epoch - 1)?;
        }
        Ok(())
    }

    /// The staging folder of kd's `epoch`, made when its first part arrives.
    fn staging(&self, epoch: usize) -> Result<PathBuf, TrainError> {
        let tmp = self.dir.join(format!(".tmp-epoch-{epoch:03}"));
        std::fs::create_dir_all(&tmp).map_err(|e| checkpoint_err(&tmp, e.to_string()))?;
        Ok(tmp)
    }

    /// Write the histories and digests of kd's `epoch`, rename its folder into place, and
    /// remove the older ones.
    fn complete(&self, epoch: usize) -> Result<(), TrainError> {
        let tmp = self.staging(epoch)?;
        let histories: Vec<History> = self
            .histories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|h| History {
                name: h.name.clone(),
                epochs: h
                    .epochs
                    .iter()
                    .filter(|r| r.epoch <= epoch)
                    .cloned()
                    .collect(),
            })
            .collect();
        let json = match histories.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        }
        .expect("histories serialise");
        let path = tmp.join(HISTORY);
        std::fs::write(&path, json).map_err(|e| checkpoint_err(&path, e.to_string()))?;
        write_digests(&tmp, &[MODEL, OPTIM, HISTORY])?;
        let dest = epoch_dir(&self.dir, epoch);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).map_err(|e| checkpoint_err(&dest, e.to_string()))?;
        for older in 0..epoch {
            let _ = std::fs::remove_dir_all(epoch_dir(&self.dir, older));
        }
        Ok(())
    }
}

fn read_optim(dir: &Path) -> Result<OptimizerRecord, TrainError> {
    let path = dir.join(OPTIM);
    verify(dir, &[OPTIM])?;
    let bytes = std::fs::read(&path).map_err(|e| checkpoint_err(&path, e.to_string()))?;
    OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| checkpoint_err(&path, e.to_string()))
}

fn burn_err(e: TrainError) -> CheckpointerError {
    CheckpointerError::Unknown(e.to_string())
}

impl<M: Trainable> Checkpointer<ModuleRecord> for RunCheckpointer<M> {
    fn save(&self, epoch: usize, record: ModuleRecord) -> Result<(), CheckpointerError> {
        let path = self.staging(epoch - 1).map_err(burn_err)?.join(MODEL);
        record.save(&path).map_err(CheckpointerError::Record)?;
        self.written(epoch, |p| &mut p.model).map_err(burn_err)
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<ModuleRecord, CheckpointerError> {
        self.read_model(epoch - 1).map_err(burn_err)
    }
}

impl<M: Trainable> Checkpointer<OptimizerRecord> for RunCheckpointer<M> {
    fn save(&self, epoch: usize, record: OptimizerRecord) -> Result<(), CheckpointerError> {
        let path = self.staging(epoch - 1).map_err(burn_err)?.join(OPTIM);
        record.save(&path).map_err(CheckpointerError::Record)?;
        self.written(epoch, |p| &mut p.optim).map_err(burn_err)
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<OptimizerRecord, CheckpointerError> {
        read_optim(&epoch_dir(&self.dir, epoch - 1)).map_err(burn_err)
    }
}

impl<M: Trainable> Checkpointer<LrSchedulerRecord> for RunCheckpointer<M> {
    fn save(&self, _epoch: usize, _record: LrSchedulerRecord) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn delete(&self, _epoch: usize) -> Result<(), CheckpointerError> {
        Ok(())
    }

    fn restore(&self, epoch: usize) -> Result<LrSchedulerRecord, CheckpointerError> {
        Ok(record_after(epoch))
    }
}

impl<M: Trainable> CheckpointingStrategy for RunCheckpointer<M> {
    fn checkpointing(&mut self, _epoch: usize, _: &EventStoreClient) -> Vec<CheckpointingAction> {
        vec![CheckpointingAction::Save]
    }
}

/// Load the student that a fit left in `checkpoint_dir` (its newest checkpoint) into `model`,
/// and return its history: `member` is `None` for a run of one student, or the index (from 0)
/// of a student of a mutual run. Connectors and CRD heads and banks saved with the student are
/// skipped, so `model` may be built without a teacher.
pub fn load_trained_student<M: Module>(
    model: &mut M,
    checkpoint_dir: &Path,
    member: Option<usize>,
) -> Result<History, TrainError> {
    let epoch = latest(checkpoint_dir)
        .ok_or_else(|| checkpoint_err(checkpoint_dir, "no checkpoint here (epoch-NNN folders)"))?;
    let dir = epoch_dir(checkpoint_dir, epoch);
    verify(&dir, &[MODEL, HISTORY])?;
    let extra = |key: &str| key.starts_with("connectors.") || key.starts_with("contrasts.");
    let path = dir.join(MODEL);
    let index = member.unwrap_or(0);
    match member {
        None => kd_core::load_module_except(model, &path, extra)?,
        Some(i) => kd_core::load_module_member(model, &path, &format!("students.{i}."), extra)?,
    }
    read_histories(&dir)?.into_iter().nth(index).ok_or_else(|| {
        checkpoint_err(
            &dir.join(HISTORY),
            format!("no history of student {}", index + 1),
        )
    })
}
