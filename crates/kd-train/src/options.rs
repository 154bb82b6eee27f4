//! What a [`DistillModel`](crate::DistillModel) is built with besides the models and the
//! objective: how much teacher output to cache, and how many items the training set holds.

use crate::TeacherCache;

/// Construction settings of a [`DistillModel`](crate::DistillModel). A [`TeacherCache`]
/// converts into them (the training set's size left unset), so
/// `DistillModel::new(student, teacher, objective, &probe, TeacherCache::OFF)` reads as before.
///
/// ```
/// use kd_train::{DistillOptions, TeacherCache};
///
/// // CRD keeps a memory row per training item: say how many there are.
/// let options = DistillOptions::default()
///     .with_cache(TeacherCache::OFF)
///     .with_training_items(1600);
/// assert_eq!(options.training_items, Some(1600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DistillOptions {
    /// The most teacher output kept for items whose batches give them a cache key.
    pub cache: TeacherCache,
    /// The number of items in the training set: the rows of the memory a term keeps of the
    /// training items (CRD), which every training batch's
    /// [`item_indices`](kd_core::DistillBatch::item_indices) must stay below. Needed only by
    /// such terms; the [`Recipe`](crate::Recipe) checks it against its training
    /// loader.
    pub training_items: Option<usize>,
}

impl DistillOptions {
    /// The same, with `cache`.
    pub fn with_cache(self, cache: TeacherCache) -> Self {
        Self { cache, ..self }
    }

    /// The same, for a training set of `items` items.
    pub fn with_training_items(self, items: usize) -> Self {
        Self {
            training_items: Some(items),
            ..self
        }
    }
}

impl From<TeacherCache> for DistillOptions {
    fn from(cache: TeacherCache) -> Self {
        Self {
            cache,
            training_items: None,
        }
    }
}
