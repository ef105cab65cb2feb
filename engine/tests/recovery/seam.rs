//! The I/O seam is the engine's only way to the file system (docs/recovery-contract.md: a
//! fault layer must be able to record and undo every file and directory operation).
//! How: a `StorageOpener` that moves every path under the real directory to a shadow
//! directory; a whole life (first open, commits, a torn tail cut into a sidecar, close,
//! reopen) must leave the real directory untouched and the shadow holding the database.
//! Any operation that bypassed the seam would land in the real directory.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engine::wal::{FileOpener, OpenedStorage, StorageOpener};
use engine::{DatabaseOptions, Key, Namespace, RunId, Value, WAL_FILE_NAME};

/// Maps `real/...` to `shadow/...` and records each operation's name.
#[derive(Debug)]
struct Redirect {
    real: PathBuf,
    shadow: PathBuf,
    ops: Mutex<Vec<String>>,
}

impl Redirect {
    fn map(&self, path: &Path, op: &str) -> PathBuf {
        self.ops.lock().unwrap().push(op.to_string());
        match path.strip_prefix(&self.real) {
            Ok(rest) => self.shadow.join(rest),
            Err(_) => path.to_path_buf(),
        }
    }
}

impl StorageOpener for Redirect {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        FileOpener.open(&self.map(path, "open"))
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        FileOpener.create_dir(&self.map(path, "create_dir"))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileOpener.sync_dir(&self.map(dir, "sync_dir"))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FileOpener.rename(&self.map(from, "rename"), &self.map(to, "rename"))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FileOpener.remove_file(&self.map(path, "remove_file"))
    }
    fn file_len(&self, path: &Path) -> io::Result<Option<u64>> {
        FileOpener.file_len(&self.map(path, "file_len"))
    }
    fn open_lock_file(&self, path: &Path) -> io::Result<std::fs::File> {
        FileOpener.open_lock_file(&self.map(path, "open_lock_file"))
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        FileOpener.list_dir(&self.map(dir, "list_dir"))
    }
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        FileOpener.read_file(&self.map(path, "read_file"))
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_file_operation_of_a_database_goes_through_the_seam() {
    let real = tempfile::tempdir().unwrap();
    let shadow = tempfile::tempdir().unwrap();
    let redirect = Arc::new(Redirect {
        real: real.path().to_path_buf(),
        shadow: shadow.path().to_path_buf(),
        ops: Mutex::new(Vec::new()),
    });
    let dir = real.path().join("db");
    let open = || {
        DatabaseOptions::new()
            .storage_opener(redirect.clone())
            .open(&dir)
            .unwrap()
    };
    let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
    let db = open();
    for i in 0..3 {
        let mut txn = db.begin(RunId(1));
        txn.put(Key::kv(ns.clone(), format!("k{i}")), Value::I64(i))
            .unwrap();
        txn.commit().unwrap();
    }
    drop(db);
    // A torn tail with non-zero bytes: the next open keeps them in a sidecar.
    let shadow_wal = shadow.path().join("db").join(WAL_FILE_NAME);
    let mut bytes = std::fs::read(&shadow_wal).unwrap();
    bytes.extend_from_slice(&[0x55; 7]);
    std::fs::write(&shadow_wal, &bytes).unwrap();
    let db = open();
    assert_eq!(db.recovery_stats().txns_applied, 3);
    assert!(db.recovery_stats().torn_tail_saved_to.is_some());
    db.close().unwrap();
    drop(open());

    assert!(
        entries(real.path()).is_empty(),
        "{:?}",
        entries(real.path())
    );
    let names = entries(&shadow.path().join("db"));
    for expected in ["IDENTITY", "LOCK", WAL_FILE_NAME, "wal.log.torn-1-"] {
        assert!(
            names.iter().any(|n| n.starts_with(expected)),
            "{expected} missing from {names:?}"
        );
    }
    let ops = redirect.ops.lock().unwrap();
    for op in [
        "create_dir",
        "sync_dir",
        "open_lock_file",
        "read_file",
        "rename",
        "list_dir",
    ] {
        assert!(
            ops.iter().any(|o| o == op),
            "{op} never went through the seam"
        );
    }
}
