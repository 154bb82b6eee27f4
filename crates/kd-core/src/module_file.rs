//! A whole Burn module — parameters and running statistics — in Burn's own file format
//! (Burnpack): what checkpoints and converted weights are written as.

use std::path::{Path, PathBuf};

use burn::store::{BurnpackStore, ModuleSnapshot};

/// A module file that could not be written or read back into a module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModuleFileError {
    /// The file could not be written.
    #[error("cannot save model to {}: {reason}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file could not be read, or does not fit the module.
    #[error("cannot read weights from {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Save `module` (parameters and BatchNorm statistics) to `path`, replacing what is there.
pub fn save_module<M: ModuleSnapshot>(module: &M, path: &Path) -> Result<(), ModuleFileError> {
    let mut store = BurnpackStore::from_file(path).overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| ModuleFileError::Save {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Load a file written by [`save_module`] into `module`, which must have the same structure.
pub fn load_module<M: ModuleSnapshot>(module: &mut M, path: &Path) -> Result<(), ModuleFileError> {
    load_module_except(module, path, |_| false)
}

/// As [`load_module`], but tensors in the file for which `ignored(key)` holds may have no
/// place in `module` (a distillation checkpoint's connectors when only the student is wanted,
/// say). Every tensor of `module` must still be in the file.
pub fn load_module_except<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), ModuleFileError> {
    load_from_file(module, path, None, ignored)
}

/// As [`load_module_except`], from the tensors of the file whose keys begin with `prefix`, the
/// prefix taken off: one member of a list of modules saved whole (`students.1.` of a module
/// holding its students in a `students` list, say). The other members' tensors (keys under the
/// list, `students.`) are left unread.
pub fn load_module_member<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    prefix: &str,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), ModuleFileError> {
    let list = prefix
        .trim_end_matches('.')
        .rsplit_once('.')
        .map_or(String::new(), |(list, _)| format!("{list}."));
    load_from_file(module, path, Some(prefix), |key| {
        (!list.is_empty() && key.starts_with(&list)) || ignored(key)
    })
}

fn load_from_file<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    prefix: Option<&str>,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), ModuleFileError> {
    let read_err = |reason: String| ModuleFileError::Read {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(read_err("no such file".into()));
    }
    // Read the whole file now: a file-backed store leaves the tensors to be read from the
    // path when first used, and kd replaces or removes checkpoint and cache files while
    // their modules live on.
    let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
    let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)));
    if let Some(prefix) = prefix {
        let pattern = format!("^{}", prefix.replace('.', "\\."));
        store = store.with_remap_pattern(pattern, "");
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| read_err(e.to_string()))?;
    let unused = result.unused.iter().any(|k| !ignored(k));
    if !result.errors.is_empty() || !result.missing.is_empty() || unused {
        return Err(read_err(result.to_string()));
    }
    Ok(())
}
