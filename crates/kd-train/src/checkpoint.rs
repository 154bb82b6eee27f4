//! Checkpoints of a training run: the model, the optimizer state and the history after each
//! epoch, written to a temporary folder and renamed into place when whole; only the newest is
//! kept. Each file's sha256 is written beside them ([`DIGESTS`]) and checked before anything is
//! read back: a file changed or damaged after it was written is refused by name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use burn::optim::ModuleOptimizer;
use kd_core::DistillBatch;

use crate::TrainError;
use crate::distill::{DistillModel, TappableModule};
use crate::history::History;

/// The digests of a checkpoint's files, written last.
const DIGESTS: &str = "digests.json";
/// The files of a checkpoint.
const FILES: [&str; 3] = ["model.bpk", "optim.bpk", "history.json"];

fn checkpoint_err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The sha256 of the file at `path`, hex, read in blocks.
fn sha256(path: &Path) -> Result<String, TrainError> {
    let mut file = std::fs::File::open(path).map_err(|e| checkpoint_err(path, e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut block)
            .map_err(|e| checkpoint_err(path, e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Record the digest of each of `FILES` in `dir`.
fn write_digests(dir: &Path) -> Result<(), TrainError> {
    let digests = FILES
        .iter()
        .map(|f| Ok((f.to_string(), sha256(&dir.join(f))?)))
        .collect::<Result<BTreeMap<_, _>, TrainError>>()?;
    let json = serde_json::to_string_pretty(&digests).expect("a string map serialises");
    let path = dir.join(DIGESTS);
    std::fs::write(&path, json).map_err(|e| checkpoint_err(&path, e.to_string()))
}

/// Check `files` of the checkpoint in `dir` against the digests written with them.
fn verify(dir: &Path, files: &[&str]) -> Result<(), TrainError> {
    let path = dir.join(DIGESTS);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        checkpoint_err(
            &path,
            format!("{e}: a checkpoint without the digests of its files is not read (start the run afresh with --force)"),
        )
    })?;
    let digests: BTreeMap<String, String> = serde_json::from_str(&text)
        .map_err(|e| checkpoint_err(&path, format!("not a digest list: {e}")))?;
    for file in files {
        let want = digests
            .get(*file)
            .ok_or_else(|| checkpoint_err(&path, format!("no digest for {file}")))?;
        if &sha256(&dir.join(file))? != want {
            return Err(checkpoint_err(
                &dir.join(file),
                "its content differs from what was written at the end of that epoch (changed or damaged since): start the run afresh with --force",
            ));
        }
    }
    Ok(())
}

/// The checkpoint folder of one run (`epoch-NNN/` inside).
pub(crate) struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn epoch_dir(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("epoch-{epoch:03}"))
    }

    /// The last complete checkpoint (renamed into place only when fully written).
    pub(crate) fn latest(&self) -> Option<usize> {
        let entries = std::fs::read_dir(&self.dir).ok()?;
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

    pub(crate) fn save<S, B>(
        &self,
        epoch: usize,
        model: &DistillModel<S, B>,
        optim: &ModuleOptimizer,
        history: &History,
    ) -> Result<(), TrainError>
    where
        S: TappableModule<B::Input>,
        B: DistillBatch,
    {
        let tmp = self.dir.join(format!(".tmp-epoch-{epoch:03}"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| TrainError::Checkpoint {
                path: path.clone(),
                reason: e.to_string(),
            }
        };
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // CRD's banks: this thread's last update into the values that are saved.
        model.contrasts.sync();
        kd_core::save_module(model, &tmp.join("model.bpk"))?;
        optim
            .save(tmp.join("optim.bpk"))
            .map_err(|e| TrainError::Checkpoint {
                path: tmp.join("optim.bpk"),
                reason: e.to_string(),
            })?;
        let json = serde_json::to_string_pretty(history).expect("history serialises");
        std::fs::write(tmp.join("history.json"), json).map_err(io(&tmp))?;
        write_digests(&tmp)?;
        let dest = self.epoch_dir(epoch);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).map_err(io(&dest))
    }

    /// Remove the checkpoints older than `epoch` (only the newest is kept).
    pub(crate) fn prune(&self, epoch: usize) {
        if epoch > 0 {
            let _ = std::fs::remove_dir_all(self.epoch_dir(epoch - 1));
        }
    }

    pub(crate) fn load<S, B>(
        &self,
        epoch: usize,
        model: &mut DistillModel<S, B>,
        optim: ModuleOptimizer,
    ) -> Result<(ModuleOptimizer, History), TrainError>
    where
        S: TappableModule<B::Input>,
        B: DistillBatch,
    {
        let dir = self.epoch_dir(epoch);
        verify(&dir, &FILES)?;
        kd_core::load_module(model, &dir.join("model.bpk"))?;
        let optim = optim
            .load(dir.join("optim.bpk"))
            .map_err(|e| TrainError::Checkpoint {
                path: dir.join("optim.bpk"),
                reason: e.to_string(),
            })?;
        Ok((optim, Self::history(&dir)?))
    }

    pub(crate) fn history(dir: &Path) -> Result<History, TrainError> {
        let path = dir.join("history.json");
        let err = |reason: String| TrainError::Checkpoint {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

/// Load the student that [`fit_one_cycle`](crate::fit_one_cycle) left in `checkpoint_dir` (its
/// newest checkpoint) into `model`, and return that checkpoint's history. Connectors and CRD
/// heads and banks saved with the student are skipped, so `model` may be built without a
/// teacher.
pub fn load_trained_student<S, B>(
    model: &mut DistillModel<S, B>,
    checkpoint_dir: &Path,
) -> Result<History, TrainError>
where
    S: TappableModule<B::Input>,
    B: DistillBatch,
{
    let checkpoints = Checkpoints::new(checkpoint_dir);
    let epoch = checkpoints.latest().ok_or_else(|| TrainError::Checkpoint {
        path: checkpoint_dir.to_path_buf(),
        reason: "no checkpoint here (epoch-NNN folders)".into(),
    })?;
    let dir = checkpoints.epoch_dir(epoch);
    verify(&dir, &["model.bpk", "history.json"])?;
    kd_core::load_module_except(model, &dir.join("model.bpk"), |key| {
        key.starts_with("connectors.") || key.starts_with("contrasts.")
    })?;
    Checkpoints::history(&dir)
}
