//! The run directory and what kd may do to it. kd marks a directory it creates (or finds
//! empty) with [`MARKER`]; it writes, resumes from and — under `--force` — removes only its own
//! files there, and never touches a directory without the marker that holds anything else.

use std::path::{Path, PathBuf};

use crate::{KdError, io_err};

/// The file that marks a directory as kd's own run directory.
pub const MARKER: &str = ".kd-run";

/// Every file and folder kd writes into a run directory; the marker comes last, so a removal
/// that is interrupted leaves the directory still marked as kd's.
const OWN_ENTRIES: [&str; 8] = [
    "report.md",
    ".report.md.tmp",
    "metrics.json",
    "curves.png",
    "config.toml",
    "checkpoints",
    "teacher-checkpoints",
    MARKER,
];

/// What [`claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A new or empty directory (or everything of an earlier run removed by `--force`).
    Fresh,
    /// kd's unfinished run: its checkpoints may be resumed.
    Unfinished,
}

/// Whether `dir` may become this run's directory, without touching it. Refused, with exit
/// code 2: a path that is not a directory; a directory without kd's marker that holds anything
/// (kd never writes among a user's files); a finished run without `force`.
pub fn check(dir: &Path, force: bool) -> Result<Claim, KdError> {
    let refuse = |message: String| KdError::Config {
        origin: format!("output directory {}", dir.display()),
        message,
    };
    if !dir.exists() {
        return Ok(Claim::Fresh);
    }
    if !dir.is_dir() {
        return Err(refuse("it is a file, not a directory".into()));
    }
    if !dir.join(MARKER).is_file() {
        let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        let mut others: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != super::lock::LOCK)
            .collect();
        if others.is_empty() {
            return Ok(Claim::Fresh);
        }
        others.sort();
        let older_kd_run = ["config.toml", "checkpoints"]
            .iter()
            .all(|f| others.iter().any(|o| o == f));
        let hint = if older_kd_run {
            "; it looks like the run directory of a kd version older than the marker: delete it \
             yourself to reuse the name"
        } else {
            ""
        };
        let listed = others
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if others.len() > 3 { ", …" } else { "" };
        return Err(refuse(format!(
            "it holds files kd did not write ({listed}{more}) and no {MARKER} marker; kd writes \
             only into a new or empty directory or one it created — choose another --output{hint}"
        )));
    }
    match (dir.join("report.md").is_file(), force) {
        (true, false) => Err(KdError::Exists(dir.to_path_buf())),
        (false, false) => Ok(Claim::Unfinished),
        (_, true) => Ok(Claim::Fresh),
    }
}

/// Refuse (exit 2) a run directory `dir` inside the data folder `data` (named by `key`): kd
/// would read its own checkpoints and figures as data on the next run.
pub fn check_outside(dir: &Path, data: &Path, key: &str) -> Result<(), KdError> {
    let Ok(data) = std::fs::canonicalize(data) else {
        return Ok(()); // a missing folder is refused where the data are read
    };
    // The directory may not exist yet: its nearest existing ancestor decides.
    let mut existing = dir.to_path_buf();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return Ok(()),
        }
    }
    let Ok(mut resolved) = std::fs::canonicalize(&existing) else {
        return Ok(());
    };
    resolved.extend(rest.iter().rev());
    if resolved.starts_with(&data) {
        return Err(KdError::Config {
            origin: format!("output directory {}", dir.display()),
            message: format!(
                "it lies inside the data folder {} ({key}): kd would read its own checkpoints and figures as data; choose an --output outside it",
                data.display()
            ),
        });
    }
    Ok(())
}

/// Make `dir` this run's directory, after [`check`]: create and mark it, or — under `force` —
/// remove kd's own files from a run directory kd created earlier (finished or not). Call it
/// only once every other check has passed.
pub fn claim(dir: &Path, force: bool) -> Result<Claim, KdError> {
    let claim = check(dir, force)?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if force && dir.join(MARKER).is_file() {
        for name in OWN_ENTRIES {
            let path = dir.join(name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else if path.exists() {
                std::fs::remove_file(&path)
            } else {
                Ok(())
            };
            removed.map_err(io_err(&path))?;
        }
    }
    if !dir.join(MARKER).is_file() {
        mark(dir)?;
    }
    Ok(claim)
}

fn mark(dir: &Path) -> Result<(), KdError> {
    let path = dir.join(MARKER);
    crate::whole_file::write_file(
        &path,
        "This directory was created by `kd run`. `kd run --force` replaces only the files kd \
         wrote here (config.toml, metrics.json, report.md, curves.png, checkpoints/, \
         teacher-checkpoints/).\n",
    )
}

/// Where the checkpoints of the run named `name` live inside the run directory `dir`.
pub fn checkpoint_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join("checkpoints").join(super::validate::slug(name))
}

/// Where a teacher's fine-tuning checkpoints live inside the run directory `dir`: a lone
/// teacher's in `teacher-checkpoints/`, each of several (by `name`) in a folder there.
pub fn teacher_checkpoint_dir(dir: &Path, name: Option<&str>) -> PathBuf {
    let root = dir.join("teacher-checkpoints");
    match name {
        Some(name) => root.join(super::validate::slug(name)),
        None => root,
    }
}
