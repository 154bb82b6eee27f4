//! A registered model, type-erased: whatever Burn module a constructor returns, the experiment
//! runner builds, trains, saves, loads and scores it through [`AnyModel`] — the generic
//! training code is instantiated for the module's type when it is registered.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use burn::tensor::Device;
use kd_core::{FeatureModel, Objective};
use kd_core::{load_module, save_module};
use kd_data::{ImageBatch, ImageLoader};
use kd_train::{
    DistillModel, DistillOptions, Evaluation, FrozenTeacher, History, Recipe, TappableModule,
    Teachers, evaluate, load_trained_student,
};

use crate::KdError;
use crate::experiment::Weights;

/// What a registered constructor is asked for: how many classes, on which device, and (for a
/// teacher) which starting weights.
#[derive(Debug, Clone, Copy)]
pub struct ModelContext<'a> {
    /// Outputs of the classifier.
    pub classes: usize,
    /// Where the parameters live.
    pub device: &'a Device,
    /// The model's starting weights (its section's `weights`; [`Weights::None`] for checks).
    pub weights: &'a Weights,
    /// The cache directory (downloaded weights live there).
    pub cache_dir: &'a Path,
}

impl<'a> ModelContext<'a> {
    /// A model with its constructor's own weights (students, and every model built to check
    /// names and shapes).
    pub fn untrained(classes: usize, device: &'a Device, cache_dir: &'a Path) -> Self {
        Self {
            classes,
            device,
            weights: &Weights::None,
            cache_dir,
        }
    }
}

/// A model the experiment runner can use, whatever its type.
pub(crate) trait AnyModel: Send {
    /// Its layers and taps.
    fn features(&self) -> &dyn FeatureModel;
    /// A frozen, tape-free copy to teach with.
    fn freeze(&self) -> FrozenTeacher;
    /// Replace its weights by those saved at `path`.
    fn load(&mut self, path: &Path) -> Result<(), KdError>;
    /// Save its weights to `path`.
    fn save(&self, path: &Path) -> Result<(), KdError>;
    /// Wrap it for distillation from `teachers` with `objective` (checked on `probe`).
    fn distill(
        self: Box<Self>,
        teachers: Teachers,
        objective: Objective,
        probe: &ImageBatch,
        options: DistillOptions,
    ) -> Result<Box<dyn AnyDistill>, KdError>;
}

/// A trained model and its history.
pub(crate) type Trained = (Box<dyn AnyModel>, History);

/// A registered model wrapped for distillation.
pub(crate) trait AnyDistill {
    /// Train on `devices` (see [`DistillModel::on_devices`]).
    fn on_devices(self: Box<Self>, devices: &[Device]) -> Result<Box<dyn AnyDistill>, KdError>;
    /// Train it with `recipe` (see [`Recipe::fit`]); gives back the trained model.
    fn fit(
        self: Box<Self>,
        recipe: &Recipe,
        train: &ImageLoader,
        valid: &ImageLoader,
    ) -> Result<Trained, KdError>;
    /// Deep mutual learning of this student with `peers`, models wrapped from the same
    /// registered type (see [`Recipe::fit_mutual`]): every student's trained model and
    /// history, this one first.
    fn fit_mutual(
        self: Box<Self>,
        recipe: &Recipe,
        peers: Vec<Box<dyn AnyDistill>>,
        names: &[String],
        weight: f64,
        train: &ImageLoader,
        valid: &ImageLoader,
    ) -> Result<Vec<Trained>, KdError>;
    /// The model itself, to be taken back as its own type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// Load the newest checkpoint written by a fit into `checkpoints` (`member`: the student
    /// of a mutual run, from 0).
    fn load_trained(
        &mut self,
        checkpoints: &Path,
        member: Option<usize>,
    ) -> Result<History, KdError>;
    /// Score on `loader`.
    fn evaluate(&self, loader: &ImageLoader) -> Result<Evaluation, KdError>;
}

/// The bounds a registered model's type meets.
pub trait RegisteredModule: TappableModule + Send + Sync + 'static {}
impl<M: TappableModule + Send + Sync + 'static> RegisteredModule for M {}

/// A model of type `M` behind [`AnyModel`].
pub(crate) struct Typed<M>(pub(crate) M);

impl<M: RegisteredModule> AnyModel for Typed<M> {
    fn features(&self) -> &dyn FeatureModel {
        &self.0
    }

    fn freeze(&self) -> FrozenTeacher {
        FrozenTeacher::new(&self.0)
    }

    fn load(&mut self, path: &Path) -> Result<(), KdError> {
        Ok(load_module(&mut self.0, path).map_err(kd_models::ModelError::from)?)
    }

    fn save(&self, path: &Path) -> Result<(), KdError> {
        Ok(save_module(&self.0, path).map_err(kd_models::ModelError::from)?)
    }

    fn distill(
        self: Box<Self>,
        teachers: Teachers,
        objective: Objective,
        probe: &ImageBatch,
        options: DistillOptions,
    ) -> Result<Box<dyn AnyDistill>, KdError> {
        let model = DistillModel::with_teachers(self.0, teachers, objective, probe, options)?;
        Ok(Box::new(model))
    }
}

impl<M: RegisteredModule> AnyDistill for DistillModel<M, ImageBatch> {
    fn on_devices(self: Box<Self>, devices: &[Device]) -> Result<Box<dyn AnyDistill>, KdError> {
        Ok(Box::new(DistillModel::on_devices(*self, devices.to_vec())?))
    }

    fn fit(
        self: Box<Self>,
        recipe: &Recipe,
        train: &ImageLoader,
        valid: &ImageLoader,
    ) -> Result<Trained, KdError> {
        let (model, history) =
            recipe.fit(*self, Arc::new(train.clone()), Arc::new(valid.clone()))?;
        Ok((Box::new(Typed(model.student)), history))
    }

    fn fit_mutual(
        self: Box<Self>,
        recipe: &Recipe,
        peers: Vec<Box<dyn AnyDistill>>,
        names: &[String],
        weight: f64,
        train: &ImageLoader,
        valid: &ImageLoader,
    ) -> Result<Vec<Trained>, KdError> {
        let mut students = vec![*self];
        for peer in peers {
            let peer = peer.into_any().downcast::<Self>().map_err(|_| {
                kd_train::TrainError::Mutual("the students are of different types".into())
            })?;
            students.push(*peer);
        }
        let fitted = recipe.fit_mutual(
            students,
            names,
            weight,
            Arc::new(train.clone()),
            Arc::new(valid.clone()),
        )?;
        Ok(fitted
            .into_iter()
            .map(|(model, history)| (Box::new(Typed(model.student)) as Box<dyn AnyModel>, history))
            .collect())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn load_trained(
        &mut self,
        checkpoints: &Path,
        member: Option<usize>,
    ) -> Result<History, KdError> {
        Ok(load_trained_student(self, checkpoints, member)?)
    }

    fn evaluate(&self, loader: &ImageLoader) -> Result<Evaluation, KdError> {
        Ok(evaluate(self, loader)?)
    }
}
