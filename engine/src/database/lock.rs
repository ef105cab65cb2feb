//! The directory lock: one open handle per database directory, across processes.
//!
//! `flock` locks belong to an open file description, so a second `open` in the same
//! process fails too (docs/faults.md / docs/recovery-contract.md R9). The lock is released when the handle is
//! dropped or the process dies, so a killed writer never leaves a stale lock behind.
//!
//! One catch: a process that forks (another thread spawning a child) gives the child a copy
//! of every descriptor until the child execs, so a lock released by closing its handle
//! stays held for those microseconds. A reopen right after a close could then fail with
//! `Locked` although nobody holds the database (seen as a rare failure of the in-process
//! R9 test while other tests spawned writer processes). So a held lock is retried for a
//! few milliseconds before `Locked` is reported.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{EngineError, Result};

/// Name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// How often, and how far apart, a held lock is tried again before `Locked` (~50 ms in
/// all: far longer than a fork-to-exec window even on a loaded machine, short enough not to
/// matter for a real refusal).
const LOCK_ATTEMPTS_MAX: u32 = 50;
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// Holds the exclusive lock on a database directory while alive.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the exclusive lock on `dir`, failing with `Locked` if it stays held for
    /// `LOCK_ATTEMPTS_MAX` tries (see the module comment for why it is retried).
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        DirLock::acquire_with(&crate::wal::FileOpener, dir)
    }

    /// [`DirLock::acquire`] with the lock file opened through the engine's seam.
    pub fn acquire_with(opener: &dyn crate::wal::StorageOpener, dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE_NAME);
        let file = opener
            .open_lock_file(&path)
            .map_err(|e| EngineError::io(format!("opening lock file {}", path.display()), e))?;
        for attempt in 1..=LOCK_ATTEMPTS_MAX {
            // SAFETY: flock on a file descriptor we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(DirLock { _file: file, path });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(EngineError::io(format!("locking {}", path.display()), err));
            }
            if attempt < LOCK_ATTEMPTS_MAX {
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
        }
        Err(EngineError::Locked {
            path: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock released within the retry window is taken (what a fork holding the released
    /// lock's descriptor until its exec looks like), and one held past it is refused.
    #[test]
    fn a_lock_released_within_the_retry_window_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path()),
            Err(EngineError::Locked { .. })
        ));
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            drop(held);
        });
        let taken = DirLock::acquire(dir.path());
        release.join().unwrap();
        assert!(taken.is_ok(), "{taken:?}");
    }
}
