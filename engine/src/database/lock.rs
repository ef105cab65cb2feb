//! The directory lock: one open handle per database directory, across processes.
//!
//! `flock` locks belong to an open file description, so a second `open` in the same
//! process fails too (FAULTS.md / DESIGN.md R9). The lock is released when the handle is
//! dropped or the process dies, so a killed writer never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Holds the exclusive lock on a database directory while alive.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the exclusive lock on `dir`, failing at once with `Locked` if it is held.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| EngineError::io(format!("opening lock file {}", path.display()), e))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(EngineError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            return Err(EngineError::io(format!("locking {}", path.display()), err));
        }
        Ok(DirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
