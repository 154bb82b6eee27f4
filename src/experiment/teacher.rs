//! The teacher stage: build, fine-tune (or reuse from the cache).

use std::path::Path;

use burn::tensor::Device;
use kd_data::DataBundle;
use kd_models::weights::{Classifier, load_model, load_torchvision, save_model};
use kd_models::{Head, MobileNetV2Config, Network};
use kd_train::report::SharedReporter;
use kd_train::{DistillModel, History, TeacherCache, fit_one_cycle};

use super::config::{Experiment, Weights};
use super::fingerprint::Fingerprint;
use super::run_dir::teacher_checkpoint_dir;
use crate::{KdError, io_err};

fn build_teacher(
    exp: &Experiment,
    classes: usize,
    cache: &Path,
    device: &Device,
) -> Result<Network, KdError> {
    let config = exp.teacher.network();
    device.seed(exp.teacher.seed.unwrap_or(exp.data.seed));
    let path = match &exp.teacher.weights {
        Weights::None => return Ok(config.init(classes, device)),
        Weights::File(path) => path.clone(),
        Weights::ImagenetKeras => crate::pretrained::keras_resnet50_weights(cache)?,
    };
    // A pretrained classifier is cut off and replaced, as fastai does.
    let Some(resnet) = config.resnet() else {
        let mut model = MobileNetV2Config::new(classes).init(device);
        load_torchvision(&mut model, &path, Classifier::ReplaceIfDifferent)?;
        return Ok(Network::MobileNetV2(model));
    };
    Ok(match config.head {
        Head::Fastai => {
            let mut body = resnet.with_classes(None).init(device);
            load_torchvision(&mut body, &path, Classifier::ReplaceIfDifferent)?;
            Network::Learner(kd_models::VisionLearner::new(body, classes))
        }
        Head::Linear => {
            let mut model = resnet.with_classes(Some(classes)).init(device);
            load_torchvision(&mut model, &path, Classifier::ReplaceIfDifferent)?;
            Network::ResNet(model)
        }
    })
}

/// Fine-tune the teacher, or reuse the one fine-tuned earlier from identical settings and
/// starting weights (`fingerprint`, which names the cache entry). Fine-tuning checkpoints every
/// epoch into the run directory and resumes from there; a cache that cannot be written costs a
/// warning, not the fine-tuned teacher.
#[allow(clippy::too_many_arguments)]
pub(super) fn teacher(
    exp: &Experiment,
    data: &DataBundle,
    retrain: bool,
    cache: &Path,
    device: &Device,
    fingerprint: &Fingerprint,
    out_dir: &Path,
    reporter: &SharedReporter,
) -> Result<(Network, History), KdError> {
    let classes = data.set.vocab.len();
    let dir = cache.join("teachers");
    let key = format!("{}-{}", exp.teacher.arch, fingerprint.digest());
    let weights = dir.join(format!("{key}.bpk"));
    let history_path = dir.join(format!("{key}.json"));
    let mut net = build_teacher(exp, classes, cache, device)?;
    if exp.teacher.reuse && !retrain && weights.is_file() && history_path.is_file() {
        load_model(&mut net, &weights)?;
        let text = std::fs::read_to_string(&history_path).map_err(io_err(&history_path))?;
        let history: History = serde_json::from_str(&text).map_err(|e| KdError::Io {
            path: history_path.clone(),
            reason: e.to_string(),
        })?;
        reporter.note(&format!(
            "teacher: reusing {} fine-tuned earlier (accuracy {:.4}); --retrain-teacher to redo",
            weights.display(),
            history.final_accuracy().unwrap_or(0.0)
        ));
        return Ok((net, history));
    }
    let model = DistillModel::new(
        net,
        None,
        kd_core::Objective::cross_entropy_only(),
        &data.valid.probe(2),
        TeacherCache::OFF,
    )?;
    let checkpoints = teacher_checkpoint_dir(out_dir);
    fingerprint.check_or_write(&checkpoints, "teacher")?;
    let name = format!("teacher ({})", exp.teacher.arch);
    let (model, history) = fit_one_cycle(
        model,
        &data.train.with_flip(exp.data.flip),
        &data.valid,
        &exp.teacher.fit(),
        &name,
        Some(&checkpoints),
        &mut *reporter.lock(),
    )?;
    match keep_in_cache(&model.student, &history, &weights, &history_path) {
        // The cache holds it now: the run directory needs no copy.
        Ok(()) => std::fs::remove_dir_all(&checkpoints).map_err(io_err(&checkpoints))?,
        Err(e) => reporter.warning(&format!(
            "the fine-tuned teacher could not be kept in the cache ({e}); this run goes on \
             with it, and its last checkpoint stays in {}",
            checkpoints.display()
        )),
    }
    Ok((model.student, history))
}

/// Write a fine-tuned teacher and its history into the cache (renamed into place when whole).
fn keep_in_cache(
    net: &Network,
    history: &History,
    weights: &Path,
    history_path: &Path,
) -> Result<(), KdError> {
    if let Some(dir) = weights.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = weights.with_extension("bpk.tmp");
    save_model(net, &tmp)?;
    std::fs::rename(&tmp, weights).map_err(io_err(weights))?;
    let json = serde_json::to_string_pretty(history).expect("history serialises");
    std::fs::write(history_path, json).map_err(io_err(history_path))
}
