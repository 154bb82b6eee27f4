//! Several teachers: frozen models by name and ensembles of them, run one after another on
//! each batch, each with its own output cache.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use kd_core::{
    DEFAULT_TEACHER, DistillBatch, Ensemble, FeatureModel, ModelInput, Objective, Outputs,
    TeacherOutputs,
};

use crate::TrainError;
use crate::teacher::{FrozenTeacher, TeacherCache, TeacherRunner};

/// The teachers a distillation objective may read: frozen models, each under a name, and
/// ensembles of them ([`Ensemble`]). A loss term reads the one it names
/// ([`Term::reading`](kd_core::Term::reading)), or the only one when there is one.
///
/// ```
/// # use burn::tensor::Device;
/// # use kd_core::{Ensemble, LossConfig, Mix, Objective, Term};
/// # use kd_models::{Arch, Head, NetworkConfig};
/// # use kd_train::{FrozenTeacher, Teachers};
/// # let device = Device::flex();
/// let a = NetworkConfig::new(Arch::ResNet18, Head::Linear).init(2, &device);
/// let b = NetworkConfig::new(Arch::ResNet34, Head::Linear).init(2, &device);
/// let teachers = Teachers::new()
///     .with("a", FrozenTeacher::new(&a))
///     .with("b", FrozenTeacher::new(&b))
///     .with_ensemble(Ensemble::mean("both", &["a", "b"], 4.0));
/// // SoftTarget towards the mean of both teachers' probabilities at T = 4.
/// let term = Term::new(LossConfig::SoftTarget(kd_core::losses::SoftTarget { temperature: 4.0 })).reading("both");
/// let objective = Objective { mix: Mix::default(), terms: vec![term] };
/// // DistillModel::with_teachers(student, teachers, objective, &probe, TeacherCache::default())
/// # assert_eq!(teachers.names(), ["a", "b", "both"]);
/// ```
#[derive(Debug, Clone)]
pub struct Teachers<I = Tensor<4>> {
    models: Vec<(String, FrozenTeacher<I>)>,
    ensembles: Vec<Ensemble>,
}

impl<I> Default for Teachers<I> {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            ensembles: Vec::new(),
        }
    }
}

impl<I> Teachers<I> {
    /// No teacher (a student trained alone).
    pub fn new() -> Self {
        Self::default()
    }

    /// One teacher, called [`DEFAULT_TEACHER`].
    pub fn one(teacher: FrozenTeacher<I>) -> Self {
        Self::new().with(DEFAULT_TEACHER, teacher)
    }

    /// Add `teacher` under `name`.
    pub fn with(mut self, name: impl Into<String>, teacher: FrozenTeacher<I>) -> Self {
        self.models.push((name.into(), teacher));
        self
    }

    /// Add an ensemble of teachers added with [`with`](Self::with).
    pub fn with_ensemble(mut self, ensemble: Ensemble) -> Self {
        self.ensembles.push(ensemble);
        self
    }

    /// Every name, models first, in the order added.
    pub fn names(&self) -> Vec<&str> {
        self.models
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(self.ensembles.iter().map(|e| e.name.as_str()))
            .collect()
    }

    /// What keeps these teachers from serving `objective`: a name given twice, a bad
    /// ensemble or one whose member is not a model here, a term naming no teacher (or one
    /// there is not), a feature term reading an ensemble.
    fn check(&self, objective: &Objective) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Teachers(m));
        let names = self.names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return bad(format!("two teachers are called `{n}`"));
            }
        }
        let models: Vec<&str> = self.models.iter().map(|(n, _)| n.as_str()).collect();
        Ensemble::check_all(&self.ensembles, &models).map_err(TrainError::Teachers)?;
        for term in &objective.terms {
            let name = objective.term_teacher(term, &names)?;
            if self.ensembles.iter().any(|e| e.name == name) && !term.loss.pairs().is_empty() {
                return bad(format!(
                    "{} compares feature maps, but `{name}` is an ensemble, which has none: let the term read one of its members",
                    term.loss.name()
                ));
            }
        }
        Ok(())
    }
}

/// The teachers an objective reads, ready to run: a runner (with its cache) per model read
/// directly or through an ensemble, and the ensembles read.
#[derive(Debug)]
pub(crate) struct TeacherSet<I> {
    runners: Vec<(String, TeacherRunner<I>)>,
    ensembles: Vec<Ensemble>,
}

impl<I: ModelInput> TeacherSet<I> {
    /// No teacher.
    pub(crate) fn none() -> Self {
        Self {
            runners: Vec::new(),
            ensembles: Vec::new(),
        }
    }

    /// The part of `teachers` that `objective` reads, each model planned for the taps its
    /// terms read; the cache budget `cache` is per model.
    pub(crate) fn new(
        teachers: Teachers<I>,
        objective: &Objective,
        cache: TeacherCache,
    ) -> Result<Self, TrainError> {
        if objective.needs_teacher() && teachers.models.is_empty() {
            return Err(TrainError::NoTeacher);
        }
        teachers.check(objective)?;
        let names = teachers.names();
        let read = objective.teachers_read(&names);
        let ensembles: Vec<Ensemble> = teachers
            .ensembles
            .iter()
            .filter(|e| read.contains(&e.name.as_str()))
            .cloned()
            .collect();
        let needed = |n: &str| {
            read.contains(&n) || ensembles.iter().any(|e| e.members.iter().any(|m| m == n))
        };
        let mut runners = Vec::new();
        for (name, model) in &teachers.models {
            if needed(name) {
                let taps = objective.teacher_taps_of(name, &names);
                runners.push((
                    name.clone(),
                    TeacherRunner::new(model.clone(), &taps, cache)?,
                ));
            }
        }
        Ok(Self { runners, ensembles })
    }

    /// No teacher runs.
    pub(crate) fn is_empty(&self) -> bool {
        self.runners.is_empty()
    }

    /// The first teacher model.
    pub(crate) fn first(&self) -> Option<&(dyn FeatureModel<I> + Send + Sync)> {
        self.runners.first().map(|(_, r)| r.model())
    }

    /// Cached items, over every teacher and device.
    pub(crate) fn cached_items(&self) -> usize {
        self.runners.iter().map(|(_, r)| r.cached_items()).sum()
    }

    /// Every teacher's outputs for `batch` (from their caches where the batch allows), one
    /// teacher after another, then the ensembles'.
    pub(crate) fn outputs<B: DistillBatch<Input = I>>(&self, batch: &B) -> TeacherOutputs {
        self.collect(|r| r.outputs(batch))
    }

    /// Every teacher's outputs on `inputs`, no cache involved, then the ensembles'.
    pub(crate) fn run(&self, inputs: I) -> TeacherOutputs {
        self.collect(|r| r.run(inputs.clone()))
    }

    fn collect(&self, run: impl Fn(&TeacherRunner<I>) -> Outputs) -> TeacherOutputs {
        let mut out: TeacherOutputs = self
            .runners
            .iter()
            .map(|(name, r)| (name.clone(), run(r)))
            .collect();
        for e in &self.ensembles {
            // Combined row by row: per-item or per-position logits alike.
            let members: Vec<Tensor<2>> = e
                .members
                .iter()
                .map(|m| out[m].logits.clone().rows())
                .collect();
            let layout = &out[&e.members[0]].logits;
            let logits = layout.with_rows(e.combine(&members));
            out.insert(
                e.name.clone(),
                Outputs {
                    logits,
                    taps: BTreeMap::new(),
                },
            );
        }
        out
    }
}
