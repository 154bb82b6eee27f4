//! `cargo xtask bench-backends`: median images/s (tokens/s for the sequence
//! workloads) of the distillation workloads on every compiled backend (fresh inputs each iteration, after warm-up, results read back so the
//! device has finished), plus the data pipeline.

mod language;
mod sequence;

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::Serialize;

use burn::train::{TrainOutput, TrainStep};

use kd::core::{Ensemble, LayerPair, LossConfig, Mix, Objective, Term};
use kd::data::{DataBundle, DataConfig, ImageBatch, ImageSet, LabelFn, Split};
use kd::models::{Arch, FeatureModel, Head, Network, NetworkArch, NetworkConfig};
use kd::train::{
    DistillModel, DistillOptions, FrozenTeacher, KdOutput, MutualModel, TeacherCache, Teachers,
    fastai_adam,
};

/// What to measure: the command-line flags of `cargo xtask bench-backends`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Backends, comma-separated (default: every compiled one).
    #[arg(long, value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Batch size (1 to 4096).
    #[arg(long, default_value_t = 64, value_parser = kd::args::batch_size)]
    pub batch: usize,
    /// Image side (1 to 1024).
    #[arg(long, default_value_t = 64, value_parser = kd::args::image_side)]
    pub size: usize,
    /// Timed iterations, median reported (1 to 10000).
    #[arg(long, default_value_t = 5, value_parser = |s: &str| kd::args::bounded(s, 1, 10_000))]
    pub iters: usize,
    /// Untimed warm-up iterations (0 to 10000).
    #[arg(long, default_value_t = 2, value_parser = |s: &str| kd::args::bounded(s, 0, 10_000))]
    pub warmup: usize,
    /// Also time the SoftTarget KD step with each batch split over these devices of one
    /// backend (e.g. cuda:0,cuda:1), against the first of them alone.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Images in the data-pipeline benchmark, JPEGs of 500×375 (1 to 100000).
    #[arg(long, default_value_t = 256, value_parser = |s: &str| kd::args::bounded(s, 1, 100_000))]
    pub images: usize,
}

/// One measured workload.
#[derive(Debug, Serialize, Clone)]
pub struct Row {
    /// Backend name (`cpu` for the data pipeline).
    pub backend: String,
    /// What was timed.
    pub workload: String,
    /// Median milliseconds per batch (for ratio rows: the ratio).
    pub median_ms: f64,
    /// Items per second: images, or tokens for the sequence workloads.
    pub images_per_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Time `f` on fresh inputs: `warmup` untimed calls, then `iters` timed ones.
fn time(label: &str, warmup: usize, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    for i in 0..warmup {
        f(i);
    }
    let mut ms = Vec::with_capacity(iters);
    for i in 0..iters {
        let t = Instant::now();
        f(warmup + i);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        eprint!("\r  {label}: {}/{iters}   ", i + 1);
    }
    let ms = median(ms);
    // The figure as soon as it is known: a long run stopped half-way keeps what it measured.
    eprintln!("\r  {label}: median {ms:.1} ms");
    ms
}

fn batch(device: &Device, b: usize, size: usize) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::random([b, 3, size, size], Distribution::Normal(0.0, 1.0), device);
    let y = Tensor::<1>::random([b], Distribution::Uniform(0.0, 2.0), device).int();
    (x, y)
}

fn net(arch: Arch, head: Head, device: &Device) -> Network {
    NetworkConfig::new(arch, head).init(2, device)
}

fn train_step(
    model: DistillModel<Network, ImageBatch>,
    batch: impl Fn() -> ImageBatch,
    warmup: usize,
    iters: usize,
    label: &str,
) -> f64 {
    let step = |m: &DistillModel<Network, ImageBatch>, item| {
        m.train_step(item).expect("a step on generated data")
    };
    let weight = |m: &DistillModel<Network, ImageBatch>| first_weight(&m.student);
    timed_steps(model, batch, step, weight, warmup, iters, label)
}

/// `b` random `size`×`size` images with random labels, uncached; `mixed`: labelled as a
/// mixup batch (70 % of each image its own item's, the rest the reversed batch's).
fn image_batch(device: &Device, b: usize, size: usize, mixed: bool) -> ImageBatch {
    let (images, targets) = batch(device, b, size);
    ImageBatch {
        mixed_in: mixed.then(|| (targets.clone().flip([0]), 0.7)),
        images,
        targets,
        items: (0..b).collect(),
        keys: vec![None; b],
        positions: (0..b).collect(),
    }
}

/// Time `step` and an optimizer step of `model` on fresh batches from `batch`; `weight` reads
/// one weight back, which waits for the update.
fn timed_steps<M: Module, B>(
    model: M,
    batch: impl Fn() -> B,
    step: impl Fn(&M, B) -> TrainOutput<KdOutput>,
    weight: impl Fn(&M) -> f32,
    warmup: usize,
    iters: usize,
    label: &str,
) -> f64 {
    let mut model = Some(model);
    let (mut optim, _) = fastai_adam(0.01);
    time(label, warmup, iters, |_| {
        let m = model.take().expect("model");
        let out = step(&m, batch());
        let _: f32 = out.item.loss.clone().into_scalar();
        let m = optim.step(1e-4, m, out.grads);
        std::hint::black_box(weight(&m));
        model = Some(m);
    })
}

/// One weight of a network's first convolution, read back.
fn first_weight(net: &Network) -> f32 {
    let first_conv = match net {
        Network::ResNet(r) => &r.conv1,
        Network::Learner(l) => &l.body.conv1,
        Network::MobileNetV2(n) => &n.stem.conv,
    };
    first_conv
        .weight
        .val()
        .slice([0..1, 0..1, 0..1, 0..1])
        .into_scalar()
}

/// Time every model workload on backend `name`.
pub fn bench_backend(
    name: &str,
    b: usize,
    size: usize,
    warmup: usize,
    iters: usize,
) -> Result<Vec<Row>, String> {
    let device = kd::backend::device(name)
        .map_err(|e| e.to_string())?
        .autodiff();
    let inner = device.clone().inner();
    eprintln!("{name}:");
    let mut rows = Vec::new();
    let mut push = |workload: &str, ms: f64| {
        rows.push(Row {
            backend: name.into(),
            workload: workload.into(),
            median_ms: ms,
            images_per_s: b as f64 / (ms / 1e3),
        });
    };
    // Build a `student` with `objective` (and `teachers`), time its training step.
    let step_on = |student: NetworkArch,
                   teachers: Teachers,
                   objective: Objective,
                   mixed: bool,
                   label: &str| {
        let student = NetworkConfig::new(student, Head::Linear).init(2, &device);
        let probe = ImageBatch::zeros(2, size, &device);
        // CRD's memory: a row per training item of the embedded data.
        let options = DistillOptions::from(TeacherCache::OFF).with_training_items(1600);
        let model = DistillModel::with_teachers(student, teachers, objective, &probe, options)
            .map_err(|e| e.to_string())?;
        let batch = || image_batch(&device, b, size, mixed);
        Ok::<f64, String>(train_step(model, batch, warmup, iters, label))
    };
    let step = |student: NetworkArch, teachers: Teachers, objective: Objective, label: &str| {
        step_on(student, teachers, objective, false, label)
    };
    let one = |t: &Network| Teachers::one(FrozenTeacher::new(t));
    let label = "student train step (resnet18)";
    let resnet18 = NetworkArch::ResNet(Arch::ResNet18);
    let student_ms = step(
        resnet18,
        Teachers::new(),
        Objective::cross_entropy_only(),
        label,
    )?;
    push(label, student_ms);
    let (mut teacher_ms, mut r50_ms) = (0.0, 0.0);
    for arch in [Arch::ResNet34, Arch::ResNet50] {
        let t = net(arch, Head::Fastai, &device).valid();
        let label = format!("teacher eval forward ({arch})");
        let ms = time(&label, warmup, iters, |_| {
            let x = Tensor::random([b, 3, size, size], Distribution::Normal(0.0, 1.0), &inner);
            let y: f32 = t.forward_logits(x).rows().slice([0..1, 0..1]).into_scalar();
            std::hint::black_box(y);
        });
        match arch {
            Arch::ResNet34 => teacher_ms = ms,
            _ => r50_ms = ms,
        }
        push(&label, ms);
    }
    let teacher = net(Arch::ResNet34, Head::Fastai, &device);
    let label = "KD step SoftTarget (r34 → r18)";
    let soft_target = Objective::lerp(LossConfig::soft_target(), 0.5);
    let st_ms = step(resnet18, one(&teacher), soft_target.clone(), label)?;
    push(label, st_ms);
    // Function matching: KL at T = 1 only, on mixup batches (the teacher on every batch).
    let label = "KD step function matching, mixup batch (r34 → r18)";
    let matching = Objective::lerp(kd::core::losses::SoftTarget { temperature: 1.0 }, 1.0);
    let fm_ms = step_on(resnet18, one(&teacher), matching, true, label)?;
    push(label, fm_ms);
    // Two teachers, one after the other on every batch: SoftTarget towards their ensemble.
    let r50 = net(Arch::ResNet50, Head::Fastai, &device);
    let label = "KD step SoftTarget, ensemble of r34 + r50 → r18";
    let both = Teachers::new()
        .with("r34", FrozenTeacher::new(&teacher))
        .with("r50", FrozenTeacher::new(&r50))
        .with_ensemble(Ensemble::mean("both", &["r34", "r50"], 5.0));
    let ensemble = Objective {
        terms: vec![soft_target.terms[0].clone().reading("both")],
        ..soft_target.clone()
    };
    let two_ms = step(resnet18, both, ensemble, label)?;
    push(label, two_ms);
    let pairs = LayerPair::zip(
        &["layer1", "layer2", "layer3", "layer4"],
        &["0.4", "0.5", "0.6", "0.7"],
    );
    // CRD between the pooled features, a memory of the embedded data's 1,600 training items
    // (`step`) and examples/methods.toml's 512 negatives.
    let label = "KD step CRD (r34 → r18, K = 512)";
    let crd = LossConfig::Crd(kd::core::losses::Crd {
        pair: LayerPair::new("avgpool", "1.0.ap"),
        dim: 128,
        negatives: 512,
        temperature: 0.07,
        momentum: 0.5,
    });
    let crd = Objective {
        mix: Mix::Sum { ce: 1.0 },
        terms: vec![Term {
            weight: 0.8,
            ..Term::new(crd)
        }],
    };
    let crd_ms = step(resnet18, one(&teacher), crd, label)?;
    push(label, crd_ms);
    // Deep mutual learning: two ResNet-18 students on every batch.
    let label = "DML step, two r18 students";
    let students = (0..2)
        .map(|_| {
            let s = net(Arch::ResNet18, Head::Linear, &device);
            let probe = ImageBatch::zeros(2, size, &device);
            DistillModel::new(
                s,
                None,
                Objective::cross_entropy_only(),
                &probe,
                TeacherCache::OFF,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|s| MutualModel::new(s, 1.0))
        .map_err(|e| e.to_string())?;
    let mutual = |m: &MutualModel<DistillModel<Network, ImageBatch>>, item| {
        let out = TrainStep::step(m, item);
        // Every student's loss, read back below through the first's: one sync.
        let loss = out
            .item
            .students
            .iter()
            .map(|s| s.loss.clone())
            .reduce(|a, b| a + b);
        let mut first = out.item.students[0].clone();
        first.loss = loss.expect("two students");
        TrainOutput {
            grads: out.grads,
            item: first,
        }
    };
    let weight =
        |m: &MutualModel<DistillModel<Network, ImageBatch>>| first_weight(&m.students[0].student);
    let dml_ms = timed_steps(
        students,
        || image_batch(&device, b, size, false),
        mutual,
        weight,
        warmup,
        iters,
        label,
    );
    push(label, dml_ms);
    let label = "KD step Attention ×4 (r34 → r18)";
    let attention = Objective::lerp(LossConfig::attention(pairs), 0.9);
    let at_ms = step(resnet18, one(&teacher), attention, label)?;
    push(label, at_ms);
    // Cross-architecture: a MobileNetV2 student of a ResNet-50 teacher.
    let mobilenet = NetworkArch::MobileNetV2;
    let label = "student train step (mobilenet_v2)";
    let mnv2_ms = step(
        mobilenet,
        Teachers::new(),
        Objective::cross_entropy_only(),
        label,
    )?;
    push(label, mnv2_ms);
    let label = "KD step SoftTarget (r50 → mobilenet_v2)";
    let cross_ms = step(mobilenet, one(&r50), soft_target, label)?;
    push(label, cross_ms);
    rows.push(Row {
        backend: name.into(),
        workload: "ratio SoftTarget / (student + teacher)".into(),
        median_ms: st_ms / (student_ms + teacher_ms),
        images_per_s: f64::NAN,
    });
    rows.push(Row {
        backend: name.into(),
        workload: "ratio function matching / (student + teacher)".into(),
        median_ms: fm_ms / (student_ms + teacher_ms),
        images_per_s: f64::NAN,
    });
    rows.push(Row {
        backend: name.into(),
        workload: "ratio SoftTarget two teachers / (student + both teachers)".into(),
        median_ms: two_ms / (student_ms + teacher_ms + r50_ms),
        images_per_s: f64::NAN,
    });
    rows.push(Row {
        backend: name.into(),
        workload: "ratio CRD / SoftTarget".into(),
        median_ms: crd_ms / st_ms,
        images_per_s: f64::NAN,
    });
    rows.push(Row {
        backend: name.into(),
        workload: "ratio DML two students / (2 × student)".into(),
        median_ms: dml_ms / (2.0 * student_ms),
        images_per_s: f64::NAN,
    });
    rows.push(Row {
        backend: name.into(),
        workload: "ratio Attention / (student + teacher)".into(),
        median_ms: at_ms / (student_ms + teacher_ms),
        images_per_s: f64::NAN,
    });
    rows.push(Row {
        backend: name.into(),
        workload: "ratio SoftTarget r50 → mobilenet_v2 / (student + teacher)".into(),
        median_ms: cross_ms / (mnv2_ms + r50_ms),
        images_per_s: f64::NAN,
    });
    rows.extend(sequence::rows(name, &device, b, warmup, iters)?);
    rows.extend(language::rows(name, &device, b, warmup, iters)?);
    Ok(rows)
}

/// The SoftTarget KD step (ResNet-34 → ResNet-18) with each batch split over `names`, and on
/// the first of them alone; the ratio of the two.
pub fn bench_devices(
    names: &[String],
    b: usize,
    size: usize,
    warmup: usize,
    iters: usize,
) -> Result<Vec<Row>, String> {
    let devices = names
        .iter()
        .map(|n| Ok(kd::backend::device(n)?.autodiff()))
        .collect::<Result<Vec<_>, kd::backend::BackendError>>()
        .map_err(|e| e.to_string())?;
    let main = devices.first().ok_or("no device")?.clone();
    let label = names.join(" + ");
    eprintln!("{label}:");
    let teacher = net(Arch::ResNet34, Head::Fastai, &main);
    let step = |on: Vec<Device>, label: &str| {
        let student = net(Arch::ResNet18, Head::Linear, &main);
        let probe = ImageBatch::zeros(2, size, &main);
        let objective = Objective::lerp(LossConfig::soft_target(), 0.5);
        let model = DistillModel::new(
            student,
            Some(FrozenTeacher::new(&teacher)),
            objective,
            &probe,
            TeacherCache::OFF,
        )
        .and_then(|m| m.on_devices(on))
        .map_err(|e| e.to_string())?;
        let batch = || image_batch(&main, b, size, false);
        Ok::<f64, String>(train_step(model, batch, warmup, iters, label))
    };
    let one_label = format!("KD step SoftTarget (r34 → r18) on {}", names[0]);
    let one = step(vec![main.clone()], &one_label)?;
    let all_label = format!("KD step SoftTarget (r34 → r18) split over {label}");
    let all = step(devices, &all_label)?;
    let row = |workload: String, ms: f64, images_per_s: f64| Row {
        backend: label.clone(),
        workload,
        median_ms: ms,
        images_per_s,
    };
    Ok(vec![
        row(one_label, one, b as f64 / (one / 1e3)),
        row(all_label, all, b as f64 / (all / 1e3)),
        row(
            format!("ratio split over {} / one device", names.len()),
            all / one,
            f64::NAN,
        ),
    ])
}

/// First-epoch decode (disk → cached u8) and later-epoch batch assembly, images/s. Every
/// image is a training image; fewer than one batch of them is an error.
pub fn bench_data(n: usize, size: usize, b: usize) -> Result<Vec<Row>, String> {
    if n < b {
        return Err(format!(
            "--images {n} is less than one batch (--batch {b}): later epochs would have no batch"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    eprintln!("data: writing {n} JPEGs of 500×375 …");
    for i in 0..n {
        let img = image::RgbImage::from_fn(500, 375, |x, y| {
            image::Rgb([
                (x + i as u32) as u8,
                (y * 2) as u8,
                ((x ^ y) + i as u32) as u8,
            ])
        });
        let name = if i % 2 == 0 {
            format!("Cat_{i}.jpg")
        } else {
            format!("dog_{i}.jpg")
        };
        img.save(dir.path().join(name)).expect("write jpeg");
    }
    let config = DataConfig {
        size,
        batch_size: b,
        ..DataConfig::default()
    };
    let t = Instant::now();
    let set = ImageSet::from_folder(dir.path(), &LabelFn::PetsCatDog, &config, &|_, _| {})
        .expect("decode");
    let first = t.elapsed().as_secs_f64();
    let every_image = Split::by_fn(set.len(), |_| false);
    let data = DataBundle::with_split(set, every_image, &config, &Device::flex());
    let items = data.train.num_batches() * b;
    let t = Instant::now();
    let epochs = 5;
    for e in 0..epochs {
        for batch in data.train.iter_epoch(e) {
            std::hint::black_box(batch.expect("batch").images.dims());
        }
    }
    let later = t.elapsed().as_secs_f64() / epochs as f64;
    Ok(vec![
        Row {
            backend: "cpu".into(),
            workload: "data: first epoch (decode + resize)".into(),
            median_ms: first * 1e3,
            images_per_s: n as f64 / first,
        },
        Row {
            backend: "cpu".into(),
            workload: "data: later epochs (crop + normalise + batch)".into(),
            median_ms: later * 1e3,
            images_per_s: items as f64 / later,
        },
    ])
}

/// Run every benchmark of `opts`; a batch this machine cannot train is refused with its size.
pub fn run(opts: &BenchOptions) -> Result<Vec<Row>, String> {
    kd::machine::check_batch(opts.batch, opts.size)
        .map_err(|why| format!("--batch {} --size {}: {why}", opts.batch, opts.size))?;
    let backends = if opts.backends.is_empty() {
        kd::backend::compiled_backends()
            .into_iter()
            .filter(|n| !n.contains(":N"))
            .map(String::from)
            .collect()
    } else {
        opts.backends.clone()
    };
    let mut rows = bench_data(opts.images, opts.size, opts.batch).unwrap_or_else(|e| {
        eprintln!("data: skipped: {e}");
        Vec::new()
    });
    for name in &backends {
        match bench_backend(name, opts.batch, opts.size, opts.warmup, opts.iters) {
            Ok(r) => rows.extend(r),
            Err(e) => eprintln!("{name}: skipped: {e}"),
        }
    }
    if !opts.devices.is_empty() {
        match bench_devices(
            &opts.devices,
            opts.batch,
            opts.size,
            opts.warmup,
            opts.iters,
        ) {
            Ok(r) => rows.extend(r),
            Err(e) => eprintln!("devices {}: skipped: {e}", opts.devices.join(",")),
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row], opts: &BenchOptions) -> String {
    let mut out = format!(
        "batch {}, {}×{}, median of {} after {} warm-up iterations\n\n| backend | workload | median ms | images/s (tokens/s) |\n|---|---|---|---|\n",
        opts.batch, opts.size, opts.size, opts.iters, opts.warmup
    );
    for r in rows {
        if r.workload.starts_with("ratio") {
            out += &format!(
                "| {} | {} | **{:.3}** | |\n",
                r.backend, r.workload, r.median_ms
            );
        } else {
            out += &format!(
                "| {} | {} | {:.1} | {:.1} |\n",
                r.backend, r.workload, r.median_ms, r.images_per_s
            );
        }
    }
    out
}
