//! Automatic layer pairing, like fasterai's `match_feature_layers`.

use crate::{FeatureModel, LayerInfo, LayerPair};

/// For each spatial resolution of a feature map (`[batch, channels, height, width]`) that both
/// models produce on `example` (for images, [`image_example`](crate::image_example)), pair the
/// shallowest student layer with the shallowest teacher layer of that resolution. Pairs run
/// from high to low resolution; 1×1 maps and taps of other ranks are left out.
pub fn match_feature_layers<I: Clone>(
    student: &dyn FeatureModel<I>,
    teacher: &dyn FeatureModel<I>,
    example: I,
) -> Vec<LayerPair> {
    let first_by_resolution = |layers: Vec<LayerInfo>| {
        let mut seen: Vec<((usize, usize), String)> = Vec::new();
        for layer in layers {
            let [_, _, h, w] = layer.shape[..] else {
                continue;
            };
            if (h, w) != (1, 1) && !seen.iter().any(|(r, _)| *r == (h, w)) {
                seen.push(((h, w), layer.path));
            }
        }
        seen
    };
    let s = first_by_resolution(student.layers(example.clone()));
    let t = first_by_resolution(teacher.layers(example));
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
