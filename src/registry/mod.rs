//! Registries: the names that experiment files and the command line resolve — model
//! constructors (`[student] arch = "…"`, `[teacher] arch = "…"`, `kd layers NAME`) and loss
//! kinds (`losses = [{ loss = { kind = "…", … } }]`).
//!
//! [`Registry::builtin`] holds kd's own ResNets, MobileNetV2 and twelve losses, registered
//! through the same methods a user crate calls for its own. A user's binary registers its
//! models and losses and hands the registry to [`crate::cli::main`]: the usual `kd` command
//! line, with those names resolvable (see `examples/registry`).
//!
//! ```
//! use burn::tensor::Device;
//! use kd::registry::{NoSettings, Registry};
//! # use kd::models::{Arch, Head, NetworkConfig};
//! let mut registry = Registry::builtin();
//! // Any Burn module implementing `FeatureModel`; here a bundled one under a name of its own.
//! registry.register_model("my_net", |_: &NoSettings, classes: usize, device: &Device| {
//!     Ok(NetworkConfig::new(Arch::ResNet18, Head::Linear).init(classes, device))
//! });
//! assert!(registry.model_names().contains(&"my_net"));
//! ```

mod builtin;
mod model;

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::Device;
use kd_core::{KdLoss, Resized};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub(crate) use model::{AnyModel, Typed};
pub use model::{ModelContext, RegisteredModule};

use crate::KdError;
use crate::experiment::{ModelSection, Weights};
use crate::machine::MAX_IMAGE_SIZE;

/// Settings of a model that takes none: its section may hold `arch` and nothing else.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

type BuildModel =
    dyn Fn(&toml::Table, &ModelContext) -> Result<Box<dyn AnyModel>, String> + Send + Sync;
type CheckSettings = dyn Fn(&toml::Table) -> Result<(), String> + Send + Sync;

/// A registered model: its settings check and its constructor.
#[derive(Clone)]
struct ModelEntry {
    check: Arc<CheckSettings>,
    build: Arc<BuildModel>,
}
type BuildLoss = dyn Fn(&toml::Table) -> Result<Arc<dyn KdLoss>, String> + Send + Sync;

/// Model constructors and loss kinds by name. Registering a name again replaces the earlier
/// entry (a user crate may replace a built-in).
#[derive(Clone, Default)]
pub struct Registry {
    models: BTreeMap<String, ModelEntry>,
    losses: BTreeMap<String, Arc<BuildLoss>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("models", &self.model_names())
            .field("losses", &self.loss_kinds())
            .finish()
    }
}

/// The key every registered model's section takes beside its own settings: the side its
/// inputs are resized to before it sees them ([`Resized`]), so that a teacher sees the
/// student's small view at the resolution it was made for.
pub const INPUT_SIZE_KEY: &str = "input_size";

/// A section's `input_size` (checked: 1 to [`MAX_IMAGE_SIZE`]) and its other settings.
pub(crate) fn split_input_size(
    table: &toml::Table,
) -> Result<(Option<usize>, toml::Table), String> {
    let mut own = table.clone();
    let Some(value) = own.remove(INPUT_SIZE_KEY) else {
        return Ok((None, own));
    };
    let side = value
        .as_integer()
        .and_then(|side| usize::try_from(side).ok())
        .filter(|side| (1..=MAX_IMAGE_SIZE).contains(side))
        .ok_or_else(|| {
            format!("{INPUT_SIZE_KEY} = {value}: an image side between 1 and {MAX_IMAGE_SIZE}")
        })?;
    Ok((Some(side), own))
}

/// `settings` (a section's keys other than `arch`) as the constructor's settings type.
fn settings<C: DeserializeOwned>(table: &toml::Table) -> Result<C, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}

impl Registry {
    /// A registry without any entry.
    pub fn empty() -> Self {
        Self::default()
    }

    /// kd's own models (`resnet18` … `resnet152`, `mobilenet_v2`, with their `head`, `stride`
    /// and `bn_eps` settings and torchvision / Keras weight import) and its twelve losses.
    pub fn builtin() -> Self {
        let mut registry = Self::empty();
        builtin::register(&mut registry);
        registry
    }

    /// Register a model constructor under `name`. `build` gets the model's settings — every
    /// key of its experiment-file section other than `arch`, [`INPUT_SIZE_KEY`] (which wraps
    /// the model in [`Resized`]) and the teacher's own keys, deserialised as `C` (use
    /// [`NoSettings`] for none) — the number of classes and the device. Such a model starts from its constructor's weights: a teacher section naming
    /// pretrained `weights` for it is refused.
    pub fn register_model<C, M>(
        &mut self,
        name: &str,
        build: impl Fn(&C, usize, &Device) -> Result<M, String> + Send + Sync + 'static,
    ) -> &mut Self
    where
        C: DeserializeOwned,
        M: RegisteredModule,
    {
        let owner = name.to_string();
        self.register_pretrained_model(name, move |c: &C, ctx: &ModelContext| {
            if *ctx.weights != Weights::None {
                return Err(format!(
                    "`{owner}` has no weight import (registered with `register_model`): \
                     set weights = \"none\""
                ));
            }
            build(c, ctx.classes, ctx.device)
        })
    }

    /// Register a model constructor that also loads starting weights: `build` must honour
    /// [`ModelContext::weights`] (or return an error naming what it cannot load).
    pub fn register_pretrained_model<C, M>(
        &mut self,
        name: &str,
        build: impl Fn(&C, &ModelContext) -> Result<M, String> + Send + Sync + 'static,
    ) -> &mut Self
    where
        C: DeserializeOwned,
        M: RegisteredModule,
    {
        let entry = ModelEntry {
            check: Arc::new(|table: &toml::Table| {
                let (_, own) = split_input_size(table)?;
                settings::<C>(&own).map(drop)
            }),
            build: Arc::new(move |table: &toml::Table, ctx: &ModelContext| {
                let (input_size, own) = split_input_size(table)?;
                let model = build(&settings::<C>(&own)?, ctx)?;
                Ok(match input_size {
                    None => Box::new(Typed(model)) as Box<dyn AnyModel>,
                    Some(side) => Box::new(Typed(Resized::new(model, side))),
                })
            }),
        };
        self.models.insert(name.to_string(), entry);
        self
    }

    /// Register a loss kind: `{ kind = "<kind>", … }` in a run's `losses` builds `build(C)`
    /// with `C` deserialised from the other keys.
    pub fn register_loss<C, L>(
        &mut self,
        kind: &str,
        build: impl Fn(C) -> Result<L, String> + Send + Sync + 'static,
    ) -> &mut Self
    where
        C: DeserializeOwned,
        L: KdLoss + 'static,
    {
        let entry = move |table: &toml::Table| {
            let loss = build(settings::<C>(table)?)?;
            Ok(Arc::new(loss) as Arc<dyn KdLoss>)
        };
        self.losses.insert(kind.to_string(), Arc::new(entry));
        self
    }

    /// Every registered model name, sorted.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    /// Every registered loss kind, sorted.
    pub fn loss_kinds(&self) -> Vec<&str> {
        self.losses.keys().map(String::as_str).collect()
    }

    /// Whether `name` is registered and takes `settings` (without building the model); an
    /// unknown name lists the registered ones.
    pub fn check_model(&self, name: &str, settings: &toml::Table) -> Result<(), String> {
        let entry = lookup(&self.models, name, "model")?;
        (entry.check)(settings).map_err(|e| format!("{name}: {e}"))
    }

    /// Build the model registered as `name` with `settings`; an unknown name lists the
    /// registered ones.
    pub(crate) fn build_model(
        &self,
        name: &str,
        settings: &toml::Table,
        ctx: &ModelContext,
    ) -> Result<Box<dyn AnyModel>, String> {
        let entry = lookup(&self.models, name, "model")?;
        (entry.build)(settings, ctx).map_err(|e| format!("{name}: {e}"))
    }

    /// Build the model an experiment section names; errors are configuration errors with
    /// `origin` (`student`, `teacher`, an option).
    pub(crate) fn build_section(
        &self,
        section: &ModelSection,
        origin: &str,
        ctx: &ModelContext,
    ) -> Result<Box<dyn AnyModel>, KdError> {
        self.build_model(&section.arch, &section.settings, ctx)
            .map_err(|message| KdError::Config {
                origin: origin.to_string(),
                message,
            })
    }

    /// Build the loss registered as `kind` with `params`; an unknown kind lists the
    /// registered ones.
    pub fn build_loss(&self, kind: &str, params: &toml::Table) -> Result<Arc<dyn KdLoss>, String> {
        let build = lookup(&self.losses, kind, "loss kind")?;
        build(params).map_err(|e| format!("loss `{kind}`: {e}"))
    }
}

/// The entry registered as `name` — exactly, or else the one name equal to it ignoring case,
/// `-` and `_` (`ResNet-18` finds `resnet18`).
fn lookup<'a, T>(map: &'a BTreeMap<String, T>, name: &str, what: &str) -> Result<&'a T, String> {
    if let Some(entry) = map.get(name) {
        return Ok(entry);
    }
    let loose = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    let mut close = map.iter().filter(|(k, _)| loose(k) == loose(name));
    match (close.next(), close.next()) {
        (Some((_, entry)), None) => Ok(entry),
        _ => Err(format!(
            "unknown {what} `{name}`; registered: {}",
            map.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn input_size_wraps_any_model_and_is_bounded() {
        let registry = Registry::builtin();
        let device = Device::flex();
        let cache = std::env::temp_dir();
        let ctx = ModelContext::untrained(2, &device, &cache);
        let layer1 = |settings: &str| {
            let model = registry
                .build_model("resnet18", &table(settings), &ctx)
                .unwrap();
            let layers = model.features().layers(kd_core::image_example(32, &device));
            let layer1 = layers.into_iter().find(|l| l.path == "layer1").unwrap();
            layer1.shape
        };
        // A ResNet's layer1 is a quarter of its input's side: 8 at 32×32, 16 at 64×64.
        assert_eq!(layer1(""), [1, 64, 8, 8]);
        assert_eq!(layer1("input_size = 64"), [1, 64, 16, 16]);
        assert_eq!(
            layer1("input_size = 64\nhead = \"linear\""),
            [1, 64, 16, 16]
        );
        for bad in [
            "input_size = 0",
            "input_size = 1025",
            "input_size = \"big\"",
        ] {
            let err = registry.check_model("resnet18", &table(bad)).unwrap_err();
            assert!(err.contains("input_size") && err.contains("1024"), "{err}");
        }
        let err = registry
            .check_model("resnet18", &table("input_size = 64\nhaed = \"linear\""))
            .unwrap_err();
        assert!(err.contains("haed"), "{err}");
    }

    /// A teacher or student section `arch = "resnet18"`, `head = "fastai"`, `weights = { file
    /// = … }` naming a checkpoint fastai's `learn.save` wrote (kd-models' fixture, made by
    /// `crates/kd-models/tests/fixtures/make_resnet_pth.py`) gets body and head from it: the
    /// model gives fastai's logits. With other classes, the last Linear is new.
    #[test]
    fn a_fastai_learners_checkpoint_loads_body_and_head() {
        use std::io::Read;
        use std::path::Path;

        use burn::store::{ModuleStore, SafetensorsStore, bridge};

        let fixtures =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/kd-models/tests/fixtures");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("learner.pth");
        let mut bytes = Vec::new();
        let gz = std::fs::File::open(fixtures.join("resnet18_fastai.pth.gz")).unwrap();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut bytes)
            .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let reference =
            SafetensorsStore::from_file(fixtures.join("resnet18_pth_logits.safetensors"))
                .get_all_tensors()
                .unwrap()
                .clone();
        let device = Device::flex();
        let tensor = |name: &str| bridge::to_data(&reference[name]).unwrap();
        let input = burn::tensor::Tensor::<4>::from_data(tensor("input"), &device);
        let expected: Vec<f32> = tensor("fastai").try_to_vec().unwrap();

        let registry = Registry::builtin();
        let weights = Weights::File(path);
        let logits = |classes: usize| {
            let ctx = ModelContext {
                weights: &weights,
                ..ModelContext::untrained(classes, &device, dir.path())
            };
            let model = registry
                .build_model("resnet18", &table("head = \"fastai\""), &ctx)
                .unwrap();
            let logits = model.features().forward_logits(input.clone()).rows();
            logits.into_data().try_to_vec::<f32>().unwrap()
        };
        let ours = logits(3);
        let gap = ours
            .iter()
            .zip(&expected)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(gap < 1e-3, "{ours:?} vs fastai's {expected:?}");
        // Two classes: the checkpoint's 3-class Linear is left out, everything else loads.
        assert_eq!(logits(2).len(), 4);
    }
}
