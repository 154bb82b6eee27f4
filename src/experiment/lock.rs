//! One writer per run directory: `kd run` holds [`LOCK`] (the holder's process id) for as long
//! as it works in the directory; a second process is refused, naming the holder. A lock left
//! by a process that no longer runs (killed with `-9`, say) is taken over.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::{KdError, io_err};

/// The lock file inside a run directory.
pub const LOCK: &str = ".kd-lock";

/// The held lock of one run directory, released (the file removed) when dropped. Directories
/// created only to hold the lock are removed with it when they are still empty.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// The directories created to hold the lock, deepest first.
    created: Vec<PathBuf>,
}

impl RunLock {
    /// Take `dir`'s lock, creating `dir` if needed. Refused (exit 2) while another live
    /// process holds it, and when `dir` names something that is not a directory.
    ///
    /// The lock appears with its content at once (written to a staging file, then hard-linked
    /// into place, which fails if a lock exists), so another process never reads a lock being
    /// created as empty. Only a lock naming a process that no longer runs is taken over; one
    /// that names none (cut short by a crash of an older kd, or written by hand) is left for the
    /// user to delete.
    pub fn acquire(dir: &Path) -> Result<Self, KdError> {
        let refuse_dir = |message: String| KdError::Config {
            origin: format!("output directory {}", dir.display()),
            message,
        };
        if std::fs::symlink_metadata(dir).is_ok() && !dir.is_dir() {
            return Err(refuse_dir(
                "is not a directory (a file, or a symbolic link to nothing or to itself); choose another --output".into(),
            ));
        }
        let created: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK);
        let refuse = |message: String| {
            remove_empty(&created);
            refuse_dir(message)
        };
        let staging = dir.join(format!("{LOCK}.{}", kd_data::npm::unique_suffix()));
        let staged = std::fs::write(&staging, std::process::id().to_string());
        if let Err(e) = staged {
            let _ = std::fs::remove_file(&staging);
            return Err(refuse(format!("cannot write its lock: {e}")));
        }
        let taken = link(&staging, &path);
        let _ = std::fs::remove_file(&staging);
        match taken {
            Ok(()) => Ok(Self { path, created }),
            Err(message) => Err(refuse(message)),
        }
    }
}

/// Link the staged lock into place, taking over a dead holder's lock once; the error says why
/// the directory is refused.
fn link(staging: &Path, path: &Path) -> Result<(), String> {
    // Two attempts: the second after moving aside a lock whose holder is gone.
    for _ in 0..2 {
        match std::fs::hard_link(staging, path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                match holder.trim().parse::<u32>() {
                    Ok(pid) if is_running(pid) => {
                        return Err(format!(
                            "another kd process (pid {pid}) is writing this run directory; wait for it to finish or choose another --output (if no such process is running, delete {})",
                            path.display()
                        ));
                    }
                    Ok(_) => take_over(path, &holder)?,
                    Err(_) => {
                        return Err(format!(
                            "its lock {} names no process ({holder:?}): another kd may be starting there; if none is, delete the lock",
                            path.display()
                        ));
                    }
                }
            }
            Err(e) => return Err(format!("cannot take its lock {}: {e}", path.display())),
        }
    }
    Err(changed_hands(path))
}

/// Move aside the lock at `path` of a dead holder that wrote `dead`; should another process
/// have taken it over in between, its lock is put back and this one refused.
fn take_over(path: &Path, dead: &str) -> Result<(), String> {
    let aside = path.with_file_name(format!("{LOCK}.dead.{}", kd_data::npm::unique_suffix()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot take its lock {} over: {e}", path.display())),
    }
    let moved = std::fs::read_to_string(&aside).unwrap_or_default();
    if moved != dead {
        let _ = std::fs::hard_link(&aside, path);
        let _ = std::fs::remove_file(&aside);
        return Err(changed_hands(path));
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

fn changed_hands(path: &Path) -> String {
    format!(
        "its lock {} changed hands while it was being taken: another kd process is starting there",
        path.display()
    )
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        remove_empty(&self.created);
    }
}

/// Remove each of `dirs` (deepest first) that is empty: remove_dir refuses any other.
fn remove_empty(dirs: &[PathBuf]) {
    for dir in dirs {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Whether a process with this id runs on this machine.
fn is_running(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // Without /proc, assume it does: a stale lock is then removed by hand.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whole_file::tests::entries as names;

    #[test]
    fn a_lock_naming_no_process_is_not_taken_over() {
        // Another kd between creating its lock and writing its pid (as kd once did): the
        // empty lock must not be mistaken for an abandoned one.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK), "").unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("names no process"), "{err}");
        assert_eq!(names(dir.path()), [LOCK]);
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK)).unwrap(), "");
    }

    #[test]
    fn a_taken_lock_holds_its_pid_and_only_it_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(LOCK)).unwrap(),
            std::process::id().to_string()
        );
        assert_eq!(names(dir.path()), [LOCK]);
        drop(lock);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    #[cfg(unix)]
    fn an_output_that_is_not_a_directory_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "mine").unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let looping = dir.path().join("looping");
        std::os::unix::fs::symlink(&looping, &looping).unwrap();
        for out in [&file, &dangling, &looping] {
            let err = RunLock::acquire(out).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{}: {err}", out.display());
            assert!(err.to_string().contains("not a directory"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
        assert!(!dir.path().join("nowhere").exists());
    }
}
