//! [`LossConfig`]: the built-in losses as one serialisable catalogue — what experiment files,
//! registries and sweeps name — each variant holding the loss's own type.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::contrast::MemorySpec;
use crate::losses::{
    ActivationBoundaries, Attention, Crd, DecoupledKd, Dist, FitNet, ForwardKl, Jsd, LogitsMse,
    Mutual, Nst, Pkt, ReverseKl, Rkd, Similarity, SkewKl, SkewReverseKl, SoftTarget,
    TotalVariation,
};
use crate::{KdInput, KdLoss, LayerPair, LossError};

macro_rules! catalogue {
    ($($variant:ident($ty:ident)),* $(,)?) => {
        /// Every built-in loss by kind, with its parameters (`kind = "soft_target"`, …;
        /// defaults as fasterai or the paper). It is itself a [`KdLoss`], computing the loss it
        /// holds; each variant's type can also be used on its own
        /// (`Term::new(SoftTarget::new(4.0))`).
        ///
        /// `scale` multiplies a feature loss: 1 matches fasterai; the research code bases use
        /// e.g. 1000 for Attention and 3000 for Similarity.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum LossConfig {
            $(
                #[doc = concat!("[`", stringify!($ty), "`].")]
                $variant($ty),
            )*
        }

        $(impl From<$ty> for LossConfig {
            fn from(loss: $ty) -> Self {
                LossConfig::$variant(loss)
            }
        })*

        impl LossConfig {
            /// The loss this entry holds.
            pub fn loss(&self) -> &dyn KdLoss {
                match self {
                    $(LossConfig::$variant(loss) => loss,)*
                }
            }
        }
    };
}

catalogue!(
    SoftTarget(SoftTarget),
    Logits(LogitsMse),
    Mutual(Mutual),
    DecoupledKd(DecoupledKd),
    Dist(Dist),
    Attention(Attention),
    FitNet(FitNet),
    Similarity(Similarity),
    ActivationBoundaries(ActivationBoundaries),
    Rkd(Rkd),
    Pkt(Pkt),
    Nst(Nst),
    Crd(Crd),
    ForwardKl(ForwardKl),
    ReverseKl(ReverseKl),
    Jsd(Jsd),
    SkewKl(SkewKl),
    SkewReverseKl(SkewReverseKl),
    TotalVariation(TotalVariation),
);

impl LossConfig {
    /// CRD between `pair`'s taps with the paper's defaults (the trainer sizes its memory).
    pub fn crd(pair: LayerPair) -> Self {
        Crd::new(pair).into()
    }

    /// fasterai's `SoftTarget` with its default temperature.
    pub fn soft_target() -> Self {
        SoftTarget::default().into()
    }

    /// fasterai's `Attention` between explicitly paired layers.
    pub fn attention(pairs: Vec<LayerPair>) -> Self {
        Attention::new(pairs).into()
    }

    /// Every built-in loss with its default parameters, the feature losses on `pairs` (CRD on
    /// the first; for sweeps, registries and tests that must cover them all).
    pub fn every_builtin(pairs: &[LayerPair]) -> Vec<Self> {
        let pairs = || pairs.to_vec();
        vec![
            Self::soft_target(),
            LogitsMse::default().into(),
            Mutual::default().into(),
            DecoupledKd::default().into(),
            Dist::default().into(),
            Self::attention(pairs()),
            FitNet::new(pairs()).into(),
            Similarity::new(pairs()).into(),
            ActivationBoundaries::new(pairs()).into(),
            Rkd::new(pairs()).into(),
            Pkt::new(pairs()).into(),
            Nst::new(pairs()).into(),
            Self::crd(pairs().into_iter().next().unwrap_or(LayerPair::new("", ""))),
            ForwardKl::default().into(),
            ReverseKl::default().into(),
            Jsd::default().into(),
            SkewKl::default().into(),
            SkewReverseKl::default().into(),
            TotalVariation::default().into(),
        ]
    }
}

impl KdLoss for LossConfig {
    fn name(&self) -> &'static str {
        self.loss().name()
    }
    fn pairs(&self) -> &[LayerPair] {
        self.loss().pairs()
    }
    fn needs_matching_channels(&self) -> bool {
        self.loss().needs_matching_channels()
    }
    fn tap_ranks(&self) -> &'static [usize] {
        self.loss().tap_ranks()
    }
    fn memory(&self, items: usize) -> Option<MemorySpec> {
        self.loss().memory(items)
    }
    fn temperature(&self) -> Option<f64> {
        self.loss().temperature()
    }
    fn check_settings(&self) -> Result<(), LossError> {
        self.loss().check_settings()
    }
    fn compute(&self, input: &KdInput) -> Result<Tensor<1>, LossError> {
        self.loss().compute(input)
    }
}
