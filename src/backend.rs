//! One way to pick a device everywhere: a name (`flex`, `ndarray`, `tch`, `tch-cuda:N`, `wgpu`,
//! `cuda:N`) from a CLI flag, the `KD_BACKEND` environment variable, or code.

use burn::tensor::Device;

/// Backend names this build was compiled with.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "flex") {
        out.push("flex");
    }
    if cfg!(feature = "ndarray") {
        out.push("ndarray");
    }
    if cfg!(feature = "tch") {
        out.push("tch");
        out.push("tch-cuda:N");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda:N");
    }
    out
}

/// Why a device name could not be turned into a device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// A name that is not a backend at all.
    #[error("unknown backend `{0}`; expected one of: flex, ndarray, tch, tch-cuda:N, wgpu, cuda:N")]
    Unknown(String),
    /// A real backend this binary was built without.
    #[error("backend `{name}` is not compiled in; rebuild with `--features {feature}` (compiled: {})", compiled.join(", "))]
    NotCompiled {
        /// What was asked for.
        name: String,
        /// The cargo feature that provides it.
        feature: &'static str,
        /// What this build has.
        compiled: Vec<&'static str>,
    },
    /// `cuda:x` with a bad index.
    #[error("bad device index in `{0}`; write e.g. `cuda:0`")]
    BadIndex(String),
    /// An index on a backend that has one device.
    #[error("`{0}` names a device index, but {1} has one device: write `{1}`")]
    NoIndex(String, String),
}

/// The default backend name: `$KD_BACKEND`, else the first compiled one.
pub fn default_backend() -> String {
    std::env::var("KD_BACKEND")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            compiled_backends()
                .first()
                .copied()
                .unwrap_or("flex")
                .to_string()
        })
}

/// The backend a device name belongs to: `cuda:1` → `cuda`, `tch-cuda:0` → `tch` (both of
/// libtorch's devices are one backend), `cpu` → `flex`.
pub fn kind(name: &str) -> String {
    let kind = name.trim().split(':').next().unwrap_or_default();
    match kind.to_ascii_lowercase().as_str() {
        "tch" | "tch-cuda" | "libtorch" | "libtorch-cuda" => "tch".to_string(),
        "cpu" => "flex".to_string(),
        other => other.to_string(),
    }
}

/// The (tape-free) device called `name`. Use `.autodiff()` on it for training.
// `deprecated`: Burn 0.22 deprecates `Device::ndarray` and `Device::libtorch*` (0.23 removes
// both backends); kd keeps them while it stays on 0.22 (`burn` below 0.23 in Cargo.toml), and
// this is the one place that builds their devices (docs/backends.md). The other two: the
// arms of backends not compiled in.
#[allow(deprecated, unreachable_code, unused_variables)]
pub fn device(name: &str) -> Result<Device, BackendError> {
    let lower = name.trim().to_ascii_lowercase();
    let (kind, index) = match lower.split_once(':') {
        Some((k, i)) => (
            k.to_string(),
            Some(
                i.parse::<usize>()
                    .map_err(|_| BackendError::BadIndex(name.into()))?,
            ),
        ),
        None => (lower.clone(), None),
    };
    let one_device = ["flex", "cpu", "ndarray", "tch", "libtorch", "wgpu"];
    if index.is_some() && one_device.contains(&kind.as_str()) {
        return Err(BackendError::NoIndex(name.to_string(), kind));
    }
    let missing = |feature: &'static str| BackendError::NotCompiled {
        name: name.to_string(),
        feature,
        compiled: compiled_backends(),
    };
    match kind.as_str() {
        "flex" | "cpu" => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
            Err(missing("flex"))
        }
        "ndarray" => {
            #[cfg(feature = "ndarray")]
            return Ok(Device::ndarray());
            Err(missing("ndarray"))
        }
        "tch" | "libtorch" => {
            #[cfg(feature = "tch")]
            return Ok(Device::libtorch());
            Err(missing("tch"))
        }
        "tch-cuda" | "libtorch-cuda" => {
            #[cfg(feature = "tch")]
            return Ok(Device::libtorch_cuda(index.unwrap_or(0)));
            Err(missing("tch"))
        }
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            return Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice));
            Err(missing("wgpu"))
        }
        "cuda" => {
            #[cfg(feature = "cuda")]
            return Ok(Device::cuda(index.unwrap_or(0)));
            Err(missing("cuda"))
        }
        _ => Err(BackendError::Unknown(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_say_which_feature_is_missing() {
        assert!(device("flex").is_ok());
        assert!(matches!(device("tpu"), Err(BackendError::Unknown(_))));
        assert!(matches!(device("cuda:x"), Err(BackendError::BadIndex(_))));
        if !cfg!(feature = "cuda") {
            let err = device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
