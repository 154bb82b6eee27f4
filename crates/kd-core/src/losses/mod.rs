//! The built-in losses, one type each, each implementing [`KdLoss`](crate::KdLoss) with the
//! defaults of fasterai or the paper. [`LossConfig`](crate::LossConfig) is their serialisable
//! catalogue.

mod activation_boundaries;
mod attention;
mod crd;
mod decoupled_kd;
mod dist;
mod fitnet;
mod forward_kl;
mod jsd;
mod logits_mse;
mod mutual;
mod nst;
mod pkt;
mod reverse_kl;
mod rkd;
mod settings;
mod similarity;
mod skew;
mod skew_kl;
mod skew_reverse_kl;
mod soft_target;
mod total_variation;

pub use activation_boundaries::ActivationBoundaries;
pub use attention::Attention;
pub use crd::Crd;
pub use decoupled_kd::DecoupledKd;
pub use dist::Dist;
pub use fitnet::FitNet;
pub use forward_kl::ForwardKl;
pub use jsd::Jsd;
pub use logits_mse::LogitsMse;
pub use mutual::Mutual;
pub use nst::Nst;
pub use pkt::Pkt;
pub use reverse_kl::ReverseKl;
pub use rkd::Rkd;
pub use similarity::Similarity;
pub use skew_kl::SkewKl;
pub use skew_reverse_kl::SkewReverseKl;
pub use soft_target::SoftTarget;
pub use total_variation::TotalVariation;

/// Serde's default for a multiplier or a weight of 1.
pub(crate) fn one() -> f64 {
    1.0
}

/// A setting that must lie in `[0, 1]` (a mixture's share), or an error naming `loss` and
/// `what`.
pub(crate) fn unit_interval(
    loss: &'static str,
    what: &str,
    value: f64,
) -> Result<(), crate::LossError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(crate::LossError::Setting {
            loss,
            what: what.into(),
            value,
            message: "must be between 0 and 1",
        })
    }
}
