//! An in-memory file system behind the engine's seam ([`StorageOpener`]), so that a sweep
//! ([`crate::sweep`]) recovers hundreds of thousands of crash states in-process without
//! writing a directory per state.
//!
//! Guarantees: every file and directory operation the engine makes through the seam acts
//! on the in-memory map (`open`, `create_dir`, `sync_dir`, `rename`, `remove_file`,
//! `file_len`, `read_file`, `list_dir`, and every [`WalStorage`] call); a file's
//! [`MemFs::synced_len_bytes`] says what its last `sync_data` covered (its length then), so
//! the caller can check that recovery made durable what it accepted (docs/faults.md P4).
//! Two things stay real, because the engine needs them outside the seam: the database
//! directory must exist (`Database::open` checks it is a directory) and the `LOCK` file
//! is a real file in it (`flock` needs a descriptor). Nothing is ever durable or lost
//! here: the caller builds the crash state before handing the files over.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::wal::{MemStorage, OpenedStorage, StorageOpener, WalStorage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The in-memory file system. Paths are absolute paths under one real directory (see the
/// module comment).
#[derive(Debug)]
pub struct MemFs {
    dir: PathBuf,
    files: Mutex<BTreeMap<PathBuf, Arc<MemStorage>>>,
}

impl MemFs {
    /// An empty file system for the database directory `dir` (which must exist; its
    /// `LOCK` file is real).
    pub fn new(dir: &Path) -> MemFs {
        MemFs {
            dir: dir.to_path_buf(),
            files: Mutex::new(BTreeMap::new()),
        }
    }

    /// Creates (or replaces) the file `name` in the database directory with `content`.
    pub fn put(&self, name: &Path, content: Vec<u8>) {
        lock(&self.files).insert(self.dir.join(name), Arc::new(MemStorage::new(content)));
    }

    /// The content of the file `name` of the database directory, if it exists.
    pub fn content(&self, name: &Path) -> Option<Vec<u8>> {
        lock(&self.files)
            .get(&self.dir.join(name))
            .map(|f| f.bytes())
    }

    /// What the last `sync_data` of the file `name` covered (`None`: never synced).
    pub fn synced_len_bytes(&self, name: &Path) -> Option<u64> {
        lock(&self.files)
            .get(&self.dir.join(name))
            .and_then(|f| f.synced_len_bytes())
    }

    /// Every file: (name relative to the database directory, content).
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        lock(&self.files)
            .iter()
            .map(|(p, f)| {
                let rel = p.strip_prefix(&self.dir).unwrap_or(p).to_path_buf();
                (rel, f.bytes())
            })
            .collect()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist (in memory)", path.display()),
    )
}

impl StorageOpener for MemFs {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        let mut files = lock(&self.files);
        let created = !files.contains_key(path);
        let file = files.entry(path.to_path_buf()).or_default().clone();
        Ok(OpenedStorage {
            storage: file,
            created,
        })
    }

    /// Every directory exists (the database directory is real; the map needs no others).
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", path.display()),
        ))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = lock(&self.files);
        let file = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.files)
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        lock(&self.files)
            .get(path)
            .map(|f| f.len_bytes())
            .transpose()
    }

    fn open_lock_file(&self, path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(lock(&self.files)
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        Ok(lock(&self.files).get(path).map(|f| f.bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database created, written and reopened entirely in memory recovers its commits,
    /// and recovery's fdatasync of the log is seen.
    #[test]
    fn the_engine_runs_on_the_in_memory_file_system() {
        use engine::{DatabaseOptions, Key, Namespace, RunId, Value};
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(MemFs::new(dir.path()));
        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        {
            let db = DatabaseOptions::new()
                .storage_opener(fs.clone())
                .open(dir.path())
                .unwrap();
            let mut t = db.begin(RunId(1));
            t.put(Key::kv(ns.clone(), "k"), Value::I64(7)).unwrap();
            t.commit().unwrap();
            db.close().unwrap();
        }
        assert!(std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| e.unwrap().file_name() == "LOCK"));
        let wal = Path::new(engine::WAL_FILE_NAME);
        let len = fs.content(wal).unwrap().len() as u64;
        fs.put(wal, fs.content(wal).unwrap());
        assert_eq!(fs.synced_len_bytes(wal), None);
        let db = DatabaseOptions::new()
            .storage_opener(fs.clone())
            .open(dir.path())
            .unwrap();
        assert_eq!(db.get(&Key::kv(ns, "k")).unwrap().value, Value::I64(7));
        assert_eq!(fs.synced_len_bytes(wal), Some(len));
    }
}
