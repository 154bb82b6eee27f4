//! Automatic layer pairing, like fasterai's `match_feature_layers`.

use crate::{FeatureModel, LayerInfo, LayerPair};

/// For each spatial resolution that both models produce at `size`×`size` input, pair the
/// shallowest student layer with the shallowest teacher layer of that resolution. Pairs run from
/// high to low resolution; 1×1 outputs are dropped.
pub fn match_feature_layers(
    student: &dyn FeatureModel,
    teacher: &dyn FeatureModel,
    size: usize,
) -> Vec<LayerPair> {
    let first_by_resolution = |model: &dyn Fn() -> Vec<LayerInfo>| {
        let mut seen: Vec<((usize, usize), String)> = Vec::new();
        for layer in model() {
            let hw = (layer.shape[2], layer.shape[3]);
            if hw != (1, 1) && !seen.iter().any(|(r, _)| *r == hw) {
                seen.push((hw, layer.path));
            }
        }
        seen
    };
    let s = first_by_resolution(&|| student.layers(size));
    let t = first_by_resolution(&|| teacher.layers(size));
    let mut pairs: Vec<((usize, usize), LayerPair)> = s
        .into_iter()
        .filter_map(|(hw, sp)| {
            t.iter()
                .find(|(r, _)| *r == hw)
                .map(|(_, tp)| (hw, LayerPair::new(sp, tp.clone())))
        })
        .collect();
    pairs.sort_by_key(|(hw, _)| std::cmp::Reverse(*hw));
    pairs.into_iter().map(|(_, p)| p).collect()
}
