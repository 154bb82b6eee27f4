//! The frozen teacher: eval mode (BatchNorm running statistics), no autodiff tape, never touched
//! by the optimizer, never saved with the student — and its outputs cached per item key, on the
//! device, when the batch says an item's input is the same every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use kd_core::{
    DistillBatch, FeatureModel, ItemKey, Logits, ModelInput, Outputs, Tap, TapError, TapPlan,
};

/// A teacher ready for distillation: a copy of any tappable Burn model in eval mode on the
/// tape-free device. It is shared by every copy of the distillation model and never trained;
/// training on several devices gives each device a copy of its own. `I` is what the teacher
/// takes as input (images by default).
pub struct FrozenTeacher<I = Tensor<4>> {
    model: Arc<dyn FeatureModel<I> + Send + Sync>,
    /// Makes an independent copy on another device.
    replicate: Replicate<I>,
}

/// Makes an independent copy of a frozen teacher on a device.
type Replicate<I> = Arc<dyn Fn(&Device) -> FrozenTeacher<I> + Send + Sync>;

impl<I> Clone for FrozenTeacher<I> {
    fn clone(&self) -> Self {
        Self {
            model: self.model.clone(),
            replicate: self.replicate.clone(),
        }
    }
}

impl<I> std::fmt::Debug for FrozenTeacher<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenTeacher")
            .field("layers", &self.model.layer_paths().len())
            .finish()
    }
}

impl<I: 'static> FrozenTeacher<I> {
    /// Freeze a copy of `teacher` (`valid()`: eval mode, no autodiff).
    pub fn new<T: Module + FeatureModel<I> + Sync + 'static>(teacher: &T) -> Self {
        let frozen = teacher.valid();
        let source = frozen.clone();
        Self {
            model: Arc::new(frozen),
            // `valid()` again: BatchNorm statistics of its own, not shared with this copy's
            // (Burn's `to_device` moves shared statistics in place).
            replicate: Arc::new(move |device| Self::new(&source.valid().to_device(device))),
        }
    }

    /// The frozen model.
    pub fn model(&self) -> &(dyn FeatureModel<I> + Send + Sync) {
        self.model.as_ref()
    }

    /// An independent copy on `device` (tape-free).
    pub fn to_device(&self, device: &Device) -> Self {
        (self.replicate)(device)
    }
}

/// How much of the teacher's outputs may be kept for reuse.
///
/// Outputs are kept as tensors on the training device (no host round trip per batch on a GPU),
/// one entry per [`ItemKey`]: its logits and every tap the objective reads from the teacher.
/// The budget bounds their total size; items beyond it are recomputed every time they come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeacherCache {
    /// The most bytes of cached outputs (4 bytes per float).
    pub max_bytes: u64,
}

impl TeacherCache {
    /// No caching: the teacher runs on every batch.
    pub const OFF: Self = Self { max_bytes: 0 };

    /// Cache up to `max_bytes` of teacher outputs.
    pub fn up_to(max_bytes: u64) -> Self {
        Self { max_bytes }
    }

    /// Cache up to 4 GiB (the main job's Attention run on 2,000 items at 64×64 needs about
    /// 1 GiB; its SoftTarget runs a few kB).
    pub fn default_budget() -> Self {
        Self::up_to(4 << 30)
    }
}

impl Default for TeacherCache {
    fn default() -> Self {
        Self::default_budget()
    }
}

/// One item's teacher outputs, `[1, …]` tensors on the device, and the shape of the input
/// they were computed from ([`ModelInput::item_shape`]: the same item padded to another
/// length is another input, with outputs of another length).
#[derive(Debug, Clone)]
struct CachedItem {
    input_shape: Vec<usize>,
    logits: Logits,
    taps: Vec<Tap>,
}

impl CachedItem {
    /// The bytes its outputs hold (as `f32`).
    fn bytes(&self) -> u64 {
        4 * (self.logits.num_elements() + self.taps.iter().map(Tap::num_elements).sum::<usize>())
            as u64
    }
}

#[derive(Debug, Default)]
struct Store {
    items: HashMap<ItemKey, CachedItem>,
    bytes: u64,
}

/// The teacher on one device, with the outputs cached there.
#[derive(Debug)]
struct Replica<I> {
    device: Device,
    teacher: FrozenTeacher<I>,
    store: Mutex<Store>,
}

/// Runs the frozen teacher, reusing per-item outputs when the batch allows: on the device of
/// each batch, with a copy of the teacher and a cache per device (made when a batch first
/// comes from that device).
#[derive(Debug)]
pub(crate) struct TeacherRunner<I> {
    plan: TapPlan,
    tap_names: Vec<String>,
    budget: TeacherCache,
    /// The teacher as given, on the device it was given on.
    first: Arc<Replica<I>>,
    /// Copies on further devices.
    copies: Mutex<Vec<Arc<Replica<I>>>>,
}

impl<I: ModelInput> TeacherRunner<I> {
    /// Prepare `teacher`'s taps `taps` with a cache of at most `budget` per device.
    pub(crate) fn new(
        teacher: FrozenTeacher<I>,
        taps: &[String],
        budget: TeacherCache,
    ) -> Result<Self, TapError> {
        let plan = teacher.model().tap_plan(&as_strs(taps))?;
        let first = Replica {
            device: teacher.model().device(),
            teacher,
            store: Mutex::new(Store::default()),
        };
        Ok(Self {
            plan,
            tap_names: taps.to_vec(),
            budget,
            first: Arc::new(first),
            copies: Mutex::new(Vec::new()),
        })
    }

    /// The teacher as given (on the device it was given on).
    pub(crate) fn model(&self) -> &(dyn FeatureModel<I> + Send + Sync) {
        self.first.teacher.model()
    }

    fn copies(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Replica<I>>>> {
        self.copies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The teacher and cache on `device`, copied there on first use.
    fn replica(&self, device: &Device) -> Arc<Replica<I>> {
        if &self.first.device == device {
            return self.first.clone();
        }
        let mut copies = self.copies();
        if let Some(r) = copies.iter().find(|r| &r.device == device) {
            return r.clone();
        }
        let copy = Arc::new(Replica {
            device: device.clone(),
            teacher: self.first.teacher.to_device(device),
            store: Mutex::new(Store::default()),
        });
        copies.push(copy.clone());
        copy
    }

    /// Number of cached items, over every device.
    pub(crate) fn cached_items(&self) -> usize {
        let count = |r: &Replica<I>| r.store.lock().map_or(0, |s| s.items.len());
        count(&self.first) + self.copies().iter().map(|r| count(r)).sum::<usize>()
    }

    /// The teacher on the tape-free device of `inputs`; its outputs act as constants when
    /// combined with the student's autodiff tensors.
    pub(crate) fn run(&self, inputs: I) -> Outputs {
        let inputs = inputs.without_autodiff();
        self.replica(&inputs.device())
            .teacher
            .model()
            .forward_taps(inputs, &self.plan)
    }

    /// Teacher outputs for `batch` (tape-free tensors, on the batch's device). Items with a
    /// cache key are served from that device's cache when there; the teacher runs on the
    /// others only (on the whole batch when none is cached), and what it computes for keyed
    /// items is kept while the budget allows.
    pub(crate) fn outputs<B: DistillBatch<Input = I>>(&self, batch: &B) -> Outputs {
        let keys = batch.cache_keys();
        // A batch with one key per item, some of them set, can be served from the cache
        // (`DistillModel::new` rejects a probe whose key count is off).
        let cacheable = keys.len() == batch.len() && keys.iter().any(Option::is_some);
        if self.budget.max_bytes == 0 || !cacheable {
            return self.run(batch.inputs());
        }
        let inputs = batch.inputs().without_autodiff();
        let shape = inputs.item_shape();
        let replica = self.replica(&inputs.device());
        let run = |inputs| replica.teacher.model().forward_taps(inputs, &self.plan);
        let mut store = replica.store.lock().unwrap_or_else(|e| e.into_inner());
        // An item cached from an input of another shape (padded to another length by another
        // batch) is computed again, and kept in its new shape.
        let missing: Vec<usize> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                k.is_none_or(|k| store.items.get(&k).is_none_or(|c| c.input_shape != shape))
            })
            .map(|(row, _)| row)
            .collect();
        if missing.len() == keys.len() {
            let out = run(inputs);
            let rows: Vec<usize> = (0..keys.len()).collect();
            self.keep(&mut store, &keys, &out, &rows, &shape);
            return out;
        }
        let fresh = (!missing.is_empty()).then(|| {
            let rows = row_indices(&missing, &inputs.device());
            let out = run(inputs.select_items(rows));
            self.keep(&mut store, &keys, &out, &missing, &shape);
            out
        });
        self.assemble(&store, &keys, &missing, fresh.as_ref())
    }

    /// Keep the outputs of `rows` (row `i` of `out` belongs to batch row `rows[i]`), computed
    /// from inputs of `input_shape`, under their keys, while the budget allows.
    fn keep(
        &self,
        store: &mut Store,
        keys: &[Option<ItemKey>],
        out: &Outputs,
        rows: &[usize],
        input_shape: &[usize],
    ) {
        for (i, &row) in rows.iter().enumerate() {
            let Some(key) = keys[row] else { continue };
            let item = CachedItem {
                input_shape: input_shape.to_vec(),
                logits: out.logits.clone().slice_items(i..i + 1),
                taps: self
                    .tap_names
                    .iter()
                    .map(|n| out.taps[n].clone().slice_items(i..i + 1))
                    .collect(),
            };
            let bytes = item.bytes();
            let replaced = store.items.get(&key).map_or(0, CachedItem::bytes);
            if store.bytes - replaced + bytes > self.budget.max_bytes {
                return;
            }
            store.bytes = store.bytes - replaced + bytes;
            store.items.insert(key, item);
        }
    }

    /// The batch's outputs in row order: cached rows from the store, the `missing` rows from
    /// `fresh` (the teacher's outputs on those rows alone).
    fn assemble(
        &self,
        store: &Store,
        keys: &[Option<ItemKey>],
        missing: &[usize],
        fresh: Option<&Outputs>,
    ) -> Outputs {
        let mut next_fresh = 0;
        let mut logits = Vec::with_capacity(keys.len());
        let mut taps: Vec<Vec<Tap>> = vec![Vec::with_capacity(keys.len()); self.tap_names.len()];
        for (row, key) in keys.iter().enumerate() {
            if missing.get(next_fresh) == Some(&row) {
                let out = fresh.expect("fresh outputs for missing rows");
                let i = next_fresh;
                next_fresh += 1;
                logits.push(out.logits.clone().slice_items(i..i + 1));
                for (t, name) in self.tap_names.iter().enumerate() {
                    taps[t].push(out.taps[name].clone().slice_items(i..i + 1));
                }
            } else {
                let item = &store.items[key.as_ref().expect("a cached row has a key")];
                logits.push(item.logits.clone());
                for (t, tap) in item.taps.iter().enumerate() {
                    taps[t].push(tap.clone());
                }
            }
        }
        Outputs {
            logits: Logits::cat(logits),
            taps: self
                .tap_names
                .iter()
                .cloned()
                .zip(
                    taps.into_iter()
                        .map(|rows| Tap::cat(rows).expect("one rank per tap")),
                )
                .collect(),
        }
    }
}

fn row_indices(rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let rows: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let n = rows.len();
    Tensor::from_data(TensorData::new(rows, [n]), device)
}

/// Borrow owned names as the `&str`s a tap plan takes.
pub(crate) fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}
