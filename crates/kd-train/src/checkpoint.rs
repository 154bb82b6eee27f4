//! Checkpoints of a training run: the model, the optimizer state and the history after each
//! epoch, written to a temporary folder and renamed into place when whole; only the newest is
//! kept.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use kd_core::DistillBatch;

use crate::TrainError;
use crate::distill::{DistillModel, TappableModule};
use crate::history::History;

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
        kd_models::weights::save_model(model, &tmp.join("model.bpk"))?;
        optim
            .save(tmp.join("optim.bpk"))
            .map_err(|e| TrainError::Checkpoint {
                path: tmp.join("optim.bpk"),
                reason: e.to_string(),
            })?;
        let json = serde_json::to_string_pretty(history).expect("history serialises");
        std::fs::write(tmp.join("history.json"), json).map_err(io(&tmp))?;
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
        kd_models::weights::load_model(model, &dir.join("model.bpk"))?;
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
    kd_models::weights::load_model_except(model, &dir.join("model.bpk"), |key| {
        key.starts_with("connectors.") || key.starts_with("contrasts.")
    })?;
    Checkpoints::history(&dir)
}
