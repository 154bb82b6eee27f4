//! One writer per run directory: `kd run` holds [`LOCK`] (the holder's process id) for as long
//! as it works in the directory; a second process is refused, naming the holder. A lock left
//! by a process that no longer runs (killed with `-9`, say) is taken over.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::{KdError, io_err};

/// The lock file inside a run directory.
pub const LOCK: &str = ".kd-lock";

/// The held lock of one run directory, released (the file removed) when dropped. A directory
/// created only to hold the lock is removed with it when it is still empty.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    created_dir: Option<PathBuf>,
}

impl RunLock {
    /// Take `dir`'s lock, creating `dir` if needed. Refused (exit 2) while another live
    /// process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, KdError> {
        let created_dir = (!dir.exists()).then(|| dir.to_path_buf());
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK);
        let refuse = |message: String| {
            if let Some(created) = &created_dir {
                let _ = std::fs::remove_dir(created);
            }
            KdError::Config {
                origin: format!("output directory {}", dir.display()),
                message,
            }
        };
        // Two attempts: the second after removing a lock whose holder is gone.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let lock = Self { path, created_dir };
                    write!(file, "{}", std::process::id()).map_err(io_err(&lock.path))?;
                    return Ok(lock);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    match holder.trim().parse::<u32>() {
                        Ok(pid) if is_running(pid) => {
                            return Err(refuse(format!(
                                "another kd process (pid {pid}) is writing this run directory; wait for it to finish or choose another --output (if no such process is running, delete {})",
                                path.display()
                            )));
                        }
                        // A dead holder, or a file cut short: take it over.
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => continue,
                            Err(e) if e.kind() == ErrorKind::NotFound => continue,
                            Err(e) => return Err(io_err(&path)(e)),
                        },
                    }
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Err(refuse(format!(
            "its lock {} changed hands while it was being taken: another kd process is starting there",
            path.display()
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.created_dir {
            // Only an empty directory goes (remove_dir refuses any other).
            let _ = std::fs::remove_dir(dir);
        }
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
