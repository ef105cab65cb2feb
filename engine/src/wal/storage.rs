//! The one I/O seam under the WAL.
//!
//! The WAL reads and writes its file only through [`WalStorage`], and opens it only through
//! a [`StorageOpener`]. Production uses [`FileStorage`]; the crash harness wraps it in layers
//! that stop the process after exactly K bytes, track the durable (fsynced) length, or fail
//! a write or an fsync. Dynamic dispatch here costs one indirect call per syscall.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Positional file I/O, shareable across threads: one thread appends while another fsyncs.
pub trait WalStorage: Send + Sync + Debug {
    /// Current length of the file in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset_bytes`; returns how many were read (0 at EOF).
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset_bytes` (hands it to the OS; no durability implied).
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends the file to `len_bytes`.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// Makes every byte written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's directory entry durable (fsync of the parent directory).
    fn sync_dir(&self) -> io::Result<()>;
}

/// Opens (creating if needed) the storage for a WAL path.
pub trait StorageOpener: Send + Sync + Debug {
    /// Opens `path`, creating it if missing; `created` reports whether it was created.
    fn open(&self, path: &Path) -> io::Result<OpenedStorage>;
}

/// A storage handle and whether opening it created the file.
#[derive(Debug)]
pub struct OpenedStorage {
    pub storage: Arc<dyn WalStorage>,
    pub created: bool,
}

/// The real file.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    dir: PathBuf,
}

impl FileStorage {
    /// Opens `path` for reading and writing, creating it if missing.
    pub fn open(path: &Path) -> io::Result<(FileStorage, bool)> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok((FileStorage { file, dir }, !existed))
    }
}

impl WalStorage for FileStorage {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset_bytes) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset_bytes)
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_directory(&self.dir)
    }
}

/// fsyncs a directory so that entries created or renamed in it survive power loss.
pub fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens real files.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileOpener;

impl StorageOpener for FileOpener {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        let (storage, created) = FileStorage::open(path)?;
        Ok(OpenedStorage {
            storage: Arc::new(storage),
            created,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_storage_reads_back_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opened = FileOpener.open(&path).unwrap();
        assert!(opened.created);
        let s = opened.storage;
        s.write_at(0, b"hello").unwrap();
        s.write_at(5, b" world").unwrap();
        s.sync_data().unwrap();
        s.sync_dir().unwrap();
        assert_eq!(s.len_bytes().unwrap(), 11);
        let mut buf = [0u8; 32];
        let n = s.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"world");
        s.set_len(5).unwrap();
        assert_eq!(s.len_bytes().unwrap(), 5);
        assert!(!FileOpener.open(&path).unwrap().created);
    }
}
