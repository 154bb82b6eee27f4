//! kd: knowledge distillation for Burn.
pub use kd_core as core;
pub use kd_data as data;
pub use kd_models as models;
pub use kd_train as train;
