//! The frozen teacher: eval mode (BatchNorm running statistics), no autodiff tape, never touched
//! by the optimizer, never saved with the student — and its outputs cached per item when the
//! item's pixels are the same every epoch.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use kd_data::ImageBatch;
use kd_models::{FeatureModel, Network, Outputs, TapPlan};

/// One item's teacher outputs on the host.
#[derive(Debug, Clone)]
struct CachedItem {
    logits: Vec<f32>,
    taps: Vec<Vec<f32>>,
}

/// Runs the teacher, reusing per-item outputs when allowed.
#[derive(Debug)]
pub struct TeacherRunner {
    model: Network,
    plan: TapPlan,
    tap_names: Vec<String>,
    cache: Option<Mutex<HashMap<usize, CachedItem>>>,
    /// `[classes]` and each tap's `[c, h, w]`, known after the first run.
    shapes: Mutex<Option<(usize, Vec<[usize; 3]>)>>,
}

impl TeacherRunner {
    /// Freeze `teacher` (a copy in eval mode on the tape-free device) and prepare its taps.
    /// `cache` enables the per-item output cache.
    pub fn new(teacher: &Network, taps: &[String], cache: bool) -> Result<Self, kd_core::TapError> {
        let model = teacher.valid();
        let names: Vec<&str> = taps.iter().map(String::as_str).collect();
        let plan = model.tap_plan(&names)?;
        Ok(Self {
            model,
            plan,
            tap_names: taps.to_vec(),
            cache: cache.then(|| Mutex::new(HashMap::new())),
            shapes: Mutex::new(None),
        })
    }

    /// The frozen model.
    pub fn model(&self) -> &Network {
        &self.model
    }

    /// Number of cached items.
    pub fn cached_items(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(0, |c| c.lock().map(|m| m.len()).unwrap_or(0))
    }

    /// The teacher runs on the tape-free device; its outputs act as constants when combined
    /// with the student's autodiff tensors.
    fn run(&self, images: Tensor<4>) -> Outputs {
        self.model.forward_taps(images.inner(), &self.plan)
    }

    /// Teacher outputs for `batch` (tape-free tensors). Items whose pixels never change
    /// (`batch.deterministic`) are served from (and stored in) the cache.
    pub fn outputs(&self, batch: &ImageBatch) -> Outputs {
        let Some(cache) = &self.cache else {
            return self.run(batch.images.clone());
        };
        let all_cached = {
            let map = cache.lock().expect("teacher cache lock");
            batch.items.iter().all(|i| map.contains_key(i))
        };
        if !all_cached {
            let out = self.run(batch.images.clone());
            let cacheable: Vec<usize> = (0..batch.items.len())
                .filter(|&k| batch.deterministic[k])
                .collect();
            if !cacheable.is_empty() {
                self.store(batch, &out, &cacheable);
            }
            return out;
        }
        self.assemble(batch, &batch.images.device().inner())
    }

    fn store(&self, batch: &ImageBatch, out: &Outputs, rows: &[usize]) {
        let logits = out.logits.to_data().iter::<f32>().collect::<Vec<f32>>();
        let [b, classes] = out.logits.dims();
        let taps: Vec<(Vec<f32>, [usize; 4])> = self
            .tap_names
            .iter()
            .map(|n| {
                let t = &out.taps[n];
                (t.to_data().iter::<f32>().collect(), t.dims())
            })
            .collect();
        let mut shapes = self.shapes.lock().expect("shapes lock");
        shapes.get_or_insert_with(|| {
            (
                classes,
                taps.iter().map(|(_, d)| [d[1], d[2], d[3]]).collect(),
            )
        });
        let mut map = self
            .cache
            .as_ref()
            .expect("cache")
            .lock()
            .expect("teacher cache lock");
        for &k in rows {
            let item = CachedItem {
                logits: logits[k * classes..(k + 1) * classes].to_vec(),
                taps: taps
                    .iter()
                    .map(|(v, _)| {
                        let per = v.len() / b;
                        v[k * per..(k + 1) * per].to_vec()
                    })
                    .collect(),
            };
            map.insert(batch.items[k], item);
        }
    }

    fn assemble(&self, batch: &ImageBatch, device: &Device) -> Outputs {
        let map = self
            .cache
            .as_ref()
            .expect("cache")
            .lock()
            .expect("teacher cache lock");
        let (classes, tap_shapes) = self
            .shapes
            .lock()
            .expect("shapes lock")
            .clone()
            .expect("shapes known once cached");
        let b = batch.items.len();
        let mut logits = Vec::with_capacity(b * classes);
        for i in &batch.items {
            logits.extend_from_slice(&map[i].logits);
        }
        let taps = self
            .tap_names
            .iter()
            .enumerate()
            .map(|(t, name)| {
                let [c, h, w] = tap_shapes[t];
                let mut v = Vec::with_capacity(b * c * h * w);
                for i in &batch.items {
                    v.extend_from_slice(&map[i].taps[t]);
                }
                (
                    name.clone(),
                    Tensor::from_data(TensorData::new(v, [b, c, h, w]), device),
                )
            })
            .collect();
        Outputs {
            logits: Tensor::from_data(TensorData::new(logits, [b, classes]), device),
            taps,
        }
    }
}
