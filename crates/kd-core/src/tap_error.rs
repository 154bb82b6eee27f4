//! What can go wrong when a tap is asked for by name.

/// A tap that cannot be resolved or was not computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TapError {
    /// A layer name the model does not have.
    #[error("unknown layer `{name}`; nearest valid names: {}", nearest.join(", "))]
    Unknown {
        /// What was asked for.
        name: String,
        /// The closest valid names, nearest first.
        nearest: Vec<String>,
    },
    /// A tap that was not part of the forward pass's plan.
    #[error("tap `{name}` was not computed; computed taps: [{}]", available.join(", "))]
    NotComputed {
        /// What was asked for.
        name: String,
        /// What the forward pass produced.
        available: Vec<String>,
    },
}
