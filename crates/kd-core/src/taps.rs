//! The model contract: a model whose layers can be tapped by name. Ask any implementor for a set
//! of module paths and get them back with the logits from one forward pass; implement
//! [`FeatureModel`] for a model of your own by offering its intermediate tensors to a
//! [`TapRecorder`] as its forward pass produces them.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Device, Tensor};

use crate::{Logits, Outputs, Tap, TapError};

/// A validated set of taps for one model: canonical module path → the names it was requested as.
///
/// Build it once with [`FeatureModel::tap_plan`] and reuse it every batch: resolution and
/// validation happen here, not in the forward pass.
#[derive(Debug, Clone, Default)]
pub struct TapPlan {
    wanted: HashMap<String, Vec<String>>,
}

impl TapPlan {
    /// A plan that taps nothing: the forward pass costs exactly what a plain forward costs.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when no tap is requested.
    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Whether the forward pass should offer the output of the module at canonical `path`.
    pub fn wants(&self, path: &str) -> bool {
        self.wanted.contains_key(path)
    }

    /// Every requested canonical path with the names it was requested as.
    pub fn requested(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.wanted.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Whether any requested canonical path is `prefix` itself or lies below it (a model may
    /// skip walking a block's inside when nothing there is wanted).
    pub fn wants_under(&self, prefix: &str) -> bool {
        self.wanted.keys().any(|path| {
            path == prefix
                || (path.len() > prefix.len()
                    && path.starts_with(prefix)
                    && path.as_bytes()[prefix.len()] == b'.')
        })
    }

    pub(crate) fn add(&mut self, canonical: String, requested: String) {
        let names = self.wanted.entry(canonical).or_default();
        if !names.contains(&requested) {
            names.push(requested);
        }
    }
}

/// Collects tap values during a forward pass: the forward pass offers each module's output by
/// its canonical path, and the recorder keeps those the plan asked for. A path nobody asked for
/// costs one lookup.
#[derive(Debug)]
pub struct TapRecorder<'a> {
    plan: &'a TapPlan,
    taps: BTreeMap<String, Tap>,
}

impl<'a> TapRecorder<'a> {
    /// A recorder for one forward pass under `plan`.
    pub fn new(plan: &'a TapPlan) -> Self {
        Self {
            plan,
            taps: BTreeMap::new(),
        }
    }

    /// The plan being recorded.
    pub fn plan(&self) -> &TapPlan {
        self.plan
    }

    /// The forward pass's result: `logits` (`Tensor<2>` per item, `Tensor<3>` per position)
    /// and every tap recorded.
    pub fn finish(self, logits: impl Into<Logits>) -> Outputs {
        Outputs {
            logits: logits.into(),
            taps: self.taps,
        }
    }

    /// Record `value` — `[batch, features]`, `[batch, positions, features]` or
    /// `[batch, channels, height, width]` ([`Tap`]) — under every name that requested `path`.
    /// A path nobody asked for costs one lookup and no copy.
    pub fn offer<T: Clone + Into<Tap>>(&mut self, path: &str, value: &T) {
        if let Some(names) = self.plan.wanted.get(path) {
            let tap: Tap = value.clone().into();
            for name in names {
                self.taps.insert(name.clone(), tap.clone());
            }
        }
    }
}

/// One row of a layer listing (see [`FeatureModel::layers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The module path, as the model names it (e.g. fastai-style `0.4` for a `vision_learner`).
    pub path: String,
    /// Another name that resolves to the same tap (the torchvision name of a fastai path).
    pub alias: Option<String>,
    /// Output shape, batch first: `[batch, features]`, `[batch, positions, features]` or
    /// `[batch, channels, height, width]`.
    pub shape: Vec<usize>,
}

/// A model whose intermediate outputs can be tapped by name, for inputs of type `I` (images
/// `[batch, channels, height, width]` by default; token ids, a pair of ids and a padding mask,
/// anything a [`ModelInput`](crate::ModelInput) holds). The trait is dyn-compatible, so a
/// trainer can hold any implementor as `&dyn FeatureModel<I>`.
pub trait FeatureModel<I = Tensor<4>> {
    /// Every tappable module path, in forward (pre-)order, with an optional alias each.
    fn layer_paths(&self) -> Vec<(String, Option<String>)>;

    /// Map a requested name (path or alias) to the canonical path used by the forward pass. The
    /// default looks `name` up among [`layer_paths`](Self::layer_paths) and their aliases.
    fn canonical(&self, name: &str) -> Option<String> {
        self.layer_paths()
            .into_iter()
            .find(|(path, alias)| path == name || alias.as_deref() == Some(name))
            .map(|(path, _)| path)
    }

    /// Forward pass returning logits and the taps of `plan`.
    fn forward_taps(&self, input: I, plan: &TapPlan) -> Outputs;

    /// The device the model's parameters live on.
    fn device(&self) -> Device;

    /// Forward pass returning logits only.
    fn forward_logits(&self, input: I) -> Logits {
        self.forward_taps(input, &TapPlan::none()).logits
    }

    /// Validate and resolve tap names. An unknown name is an error listing the nearest valid
    /// names.
    fn tap_plan(&self, names: &[&str]) -> Result<TapPlan, TapError> {
        let mut plan = TapPlan::none();
        for name in names {
            match self.canonical(name) {
                Some(canonical) => plan.add(canonical, name.to_string()),
                None => {
                    let candidates = self
                        .layer_paths()
                        .into_iter()
                        .flat_map(|(path, alias)| std::iter::once(path).chain(alias));
                    return Err(TapError::Unknown {
                        name: name.to_string(),
                        nearest: nearest_names(name, candidates, 5),
                    });
                }
            }
        }
        Ok(plan)
    }

    /// Every layer path with its output shape for `example` (a batch of one item is enough;
    /// for an image model, [`image_example`](crate::image_example)), like fastai's
    /// `get_model_layers` plus shapes. Runs one forward pass.
    fn layers(&self, example: I) -> Vec<LayerInfo> {
        let paths = self.layer_paths();
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        // Every listed path resolves by construction.
        let plan = match self.tap_plan(&names) {
            Ok(plan) => plan,
            Err(_) => return Vec::new(),
        };
        let out = self.forward_taps(example, &plan);
        paths
            .into_iter()
            .filter_map(|(path, alias)| {
                let shape = out.taps.get(&path)?.dims();
                Some(LayerInfo { path, alias, shape })
            })
            .collect()
    }
}

/// A batch of one black RGB `size`×`size` image on `device`: the example input that lists an
/// image model's layers ([`FeatureModel::layers`]).
pub fn image_example(size: usize, device: &Device) -> Tensor<4> {
    Tensor::zeros([1, 3, size, size], device)
}

/// The `limit` candidates closest to `name` by edit distance (ties broken alphabetically).
pub fn nearest_names(
    name: &str,
    candidates: impl IntoIterator<Item = String>,
    limit: usize,
) -> Vec<String> {
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .map(|c| (edit_distance(name, &c), c))
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(limit).map(|(_, c)| c).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_substitutions() {
        assert_eq!(edit_distance("layer1", "layer1"), 0);
        assert_eq!(edit_distance("layr1", "layer1"), 1);
        assert_eq!(edit_distance("layer5", "layer1"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn nearest_names_ranks_by_distance() {
        let names = ["layer1", "layer2", "conv1", "fc"].map(String::from);
        assert_eq!(
            nearest_names("layr2", names.clone(), 2),
            vec!["layer2", "layer1"]
        );
        assert_eq!(nearest_names("fx", names, 1), vec!["fc"]);
    }

    #[test]
    fn wants_under_matches_whole_path_segments_only() {
        let mut plan = TapPlan::none();
        plan.add("layer1.0.conv1".into(), "x".into());
        assert!(plan.wants_under("layer1"));
        assert!(plan.wants_under("layer1.0"));
        assert!(plan.wants_under("layer1.0.conv1"));
        assert!(!plan.wants_under("layer1.1"));
        assert!(!plan.wants_under("layer1.0.conv"));
    }
}
