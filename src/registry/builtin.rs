//! kd's own models and losses, registered through the public [`Registry`] methods.

use kd_core::LossConfig;
use kd_models::weights::{Classifier, load_learner, load_torchvision};
use kd_models::{
    Arch, Head, MobileNetV2Config, Network, NetworkArch, NetworkConfig, StridePlacement,
    VisionLearner,
};
use serde::Deserialize;

use super::{ModelContext, Registry};
use crate::experiment::Weights;
use crate::pretrained::{keras_resnet50_config, keras_resnet50_weights};

/// A built-in network's settings: the keys of its section besides `arch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSettings {
    /// `linear` (torchvision's classifier, the default) or `fastai` (ResNets).
    #[serde(default)]
    head: Head,
    /// Stride placement in ResNet bottlenecks.
    #[serde(default)]
    stride: StridePlacement,
    /// BatchNorm epsilon.
    #[serde(default = "default_eps")]
    bn_eps: f64,
}

fn default_eps() -> f64 {
    1e-5
}

pub(super) fn register(registry: &mut Registry) {
    let archs = Arch::ALL
        .into_iter()
        .map(NetworkArch::ResNet)
        .chain([NetworkArch::MobileNetV2]);
    for arch in archs {
        registry.register_pretrained_model(arch.name(), move |s: &NetworkSettings, ctx| {
            network(arch, s, ctx)
        });
    }
    for loss in LossConfig::every_builtin(&[]) {
        let kind = kind_of(&loss);
        let tag = kind.clone();
        registry.register_loss(&kind, move |mut params: toml::Table| {
            params.insert("kind".into(), toml::Value::String(tag.clone()));
            toml::Value::Table(params)
                .try_into::<LossConfig>()
                .map_err(|e| e.message().to_string())
        });
    }
}

/// The `kind` tag a built-in loss is written with.
fn kind_of(loss: &LossConfig) -> String {
    let table = toml::Table::try_from(loss).expect("a loss config serialises to a table");
    table["kind"].as_str().expect("tagged by kind").to_string()
}

/// A built-in network, from its settings and (for a teacher) pretrained weights: a pretrained
/// classifier is cut off and replaced, as fastai does.
fn network(arch: NetworkArch, s: &NetworkSettings, ctx: &ModelContext) -> Result<Network, String> {
    let mut config = NetworkConfig {
        arch,
        head: s.head,
        stride: s.stride,
        bn_eps: s.bn_eps,
    };
    config.check()?;
    let (classes, device) = (ctx.classes, ctx.device);
    let path = match ctx.weights {
        Weights::None => return Ok(config.init(classes, device)),
        Weights::File(path) => path.clone(),
        Weights::ImagenetKeras => {
            if arch != NetworkArch::ResNet(Arch::ResNet50) {
                return Err("weights = \"imagenet-keras\" is a ResNet-50".into());
            }
            // Keras' ResNet-50 is v1 (stride on the 1×1 conv) with BN eps 1e-3.
            let keras = keras_resnet50_config();
            config.stride = keras.stride;
            config.bn_eps = keras.bn_eps;
            keras_resnet50_weights(ctx.cache_dir).map_err(|e| e.to_string())?
        }
    };
    let import_err = |e: kd_models::ModelError| e.to_string();
    let Some(resnet) = config.resnet() else {
        let mut model = MobileNetV2Config::new(classes).init(device);
        load_torchvision(&mut model, &path, Classifier::ReplaceIfDifferent).map_err(import_err)?;
        return Ok(Network::MobileNetV2(model));
    };
    Ok(match config.head {
        Head::Fastai => {
            let mut learner = VisionLearner::from_config(&resnet, classes, device);
            load_learner(&mut learner, &path, Classifier::ReplaceIfDifferent)
                .map_err(import_err)?;
            Network::Learner(learner)
        }
        Head::Linear => {
            let mut model = resnet.with_classes(Some(classes)).init(device);
            load_torchvision(&mut model, &path, Classifier::ReplaceIfDifferent)
                .map_err(import_err)?;
            Network::ResNet(model)
        }
    })
}
