//! Files written whole or not at all: every file kd writes goes to a staging file of its own
//! process and thread and is renamed over its destination only when complete, so a full disk, a
//! failed redraw or a kill leaves the previous file (or none), never part of one, and no staging
//! file behind.

use std::path::Path;

use crate::{KdError, io_err};

/// Write `path` through a staging file of this process and thread only, renamed over `path`
/// when `write` has finished: a reader never sees part of a file, and a writer never writes
/// into, nor renames, another writer's staging file. A failed write leaves no staging file.
pub(crate) fn write_whole(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), KdError>,
) -> Result<(), KdError> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", kd_data::npm::unique_suffix()));
    let tmp = path.with_file_name(name);
    let written = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// [`write_whole`] for bytes at hand.
pub(crate) fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<(), KdError> {
    write_whole(path, |tmp| {
        std::fs::write(tmp, bytes.as_ref()).map_err(io_err(tmp))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    pub(crate) fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        std::fs::write(&path, "the results").unwrap();
        let failed = write_whole(&path, |tmp| {
            std::fs::write(tmp, "half of the new").map_err(io_err(tmp))?;
            Err(KdError::Incomplete("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "the results");
        assert_eq!(entries(dir.path()), ["metrics.json"]);
    }

    #[test]
    fn a_writer_leaves_the_staging_file_of_another_alone() {
        // Another process writing the same file (two experiments fine-tuning one teacher side
        // by side) is half-way through staging its copy under a name a fixed staging name
        // would use.
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("resnet50-abc.bpk");
        let theirs = dir.path().join(".resnet50-abc.bpk.tmp");
        std::fs::write(&theirs, b"half of another writer's teacher").unwrap();
        write_file(&weights, b"this writer's teacher").unwrap();
        assert_eq!(std::fs::read(&weights).unwrap(), b"this writer's teacher");
        assert_eq!(
            std::fs::read(&theirs).unwrap(),
            b"half of another writer's teacher",
            "another writer's staging file was written into or taken"
        );
        assert_eq!(
            entries(dir.path()),
            [".resnet50-abc.bpk.tmp", "resnet50-abc.bpk"]
        );
    }

    #[test]
    fn a_failed_rename_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the rename fails.
        let path = dir.path().join("curves.png");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "x").unwrap();
        assert!(write_file(&path, b"png").is_err());
        assert_eq!(entries(dir.path()), ["curves.png"]);
    }

    #[test]
    fn a_written_file_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.md");
        std::fs::write(&path, "old").unwrap();
        write_file(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(entries(dir.path()), ["report.md"]);
    }
}
