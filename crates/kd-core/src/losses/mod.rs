//! The built-in losses, one type each, each implementing [`KdLoss`](crate::KdLoss) with the
//! defaults of fasterai or the paper. [`LossConfig`](crate::LossConfig) is their serialisable
//! catalogue.

mod activation_boundaries;
mod attention;
mod crd;
mod decoupled_kd;
mod dist;
mod fitnet;
mod logits_mse;
mod mutual;
mod nst;
mod pkt;
mod rkd;
mod similarity;
mod soft_target;

pub use activation_boundaries::ActivationBoundaries;
pub use attention::Attention;
pub use crd::Crd;
pub use decoupled_kd::DecoupledKd;
pub use dist::Dist;
pub use fitnet::FitNet;
pub use logits_mse::LogitsMse;
pub use mutual::Mutual;
pub use nst::Nst;
pub use pkt::Pkt;
pub use rkd::Rkd;
pub use similarity::Similarity;
pub use soft_target::SoftTarget;

/// Serde's default for a multiplier or a weight of 1.
pub(crate) fn one() -> f64 {
    1.0
}
