//! The sha256 digests of files, listed beside them (the list written last) and checked before
//! the files are read back: a file changed or damaged since is refused by name. kd's checkpoints
//! use them, and so does the command line's cache of fine-tuned teachers.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::TrainError;

fn err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The sha256 of the file at `path`, hex, read in blocks.
pub fn sha256_file(path: &Path) -> Result<String, TrainError> {
    let mut file = std::fs::File::open(path).map_err(|e| err(path, e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut block)
            .map_err(|e| err(path, e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The digest list of `files` (JSON, by file name), to write beside them once they are whole.
pub fn digest_list(files: &[&Path]) -> Result<String, TrainError> {
    let digests = files
        .iter()
        .map(|f| Ok((file_name(f), sha256_file(f)?)))
        .collect::<Result<BTreeMap<_, _>, TrainError>>()?;
    Ok(serde_json::to_string_pretty(&digests).expect("a string map serialises"))
}

/// Check each of `files` against the digest the list at `list` records for it. The error
/// names the list (missing, unreadable, without that file) or the file whose content differs.
pub fn check_digests(list: &Path, files: &[&Path]) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(list).map_err(|e| {
        err(
            list,
            format!("{e}: files without the digests of their content are not read"),
        )
    })?;
    let digests: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| err(list, format!("not a digest list: {e}")))?;
    for file in files {
        let name = file_name(file);
        let want = digests
            .get(&name)
            .ok_or_else(|| err(list, format!("no digest for {name}")))?;
        if &sha256_file(file)? != want {
            return Err(err(
                file,
                "its content differs from what was written (changed or damaged since)",
            ));
        }
    }
    Ok(())
}
