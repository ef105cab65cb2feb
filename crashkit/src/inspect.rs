//! `torture inspect` (waldump): a WAL record by record, and where and why reading stopped.
//!
//! Reads through the engine's own reader over a read-only file, so what it prints is what
//! recovery would see; it never writes, truncates or creates anything.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use engine::wal::format::{FileHeader, HEADER_LEN};
use engine::wal::{WALEntry, WalReader, WalStorage};

use crate::finding::describe_value;

/// A WAL file opened read-only.
#[derive(Debug)]
struct ReadOnlyFile(File);

impl WalStorage for ReadOnlyFile {
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(buf, offset_bytes)
    }
    fn write_at(&self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "inspect is read-only",
        ))
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "inspect is read-only",
        ))
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a WAL could not be dumped.
#[derive(Debug)]
#[non_exhaustive]
pub enum InspectError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// The header is not a valid header of this engine.
    Header {
        path: PathBuf,
        reason: String,
    },
    /// The engine's reader refused a record (I/O error or unknown record type).
    Reader {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            InspectError::Header { path, reason } => {
                write!(f, "{}: bad header: {reason}", path.display())
            }
            InspectError::Reader { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for InspectError {}

/// Prints the WAL at `path` (a WAL file, or a database directory holding `wal.log`).
pub fn dump(path: &Path, out: &mut dyn Write) -> Result<(), InspectError> {
    let wal_path = if path.is_dir() {
        path.join(engine::WAL_FILE_NAME)
    } else {
        path.to_path_buf()
    };
    let io_err = |source| InspectError::Io {
        path: wal_path.clone(),
        source,
    };
    let file = File::open(&wal_path).map_err(io_err)?;
    let storage = ReadOnlyFile(file);
    let len = storage.len_bytes().map_err(io_err)?;
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(io_err);
    w(out, format!("file {} ({len} bytes)", wal_path.display()))?;
    if len < HEADER_LEN as u64 {
        return w(out, format!("header: incomplete ({len} of {HEADER_LEN} bytes): a crash while creating the file; recovery rewrites it"));
    }
    let mut header = [0u8; HEADER_LEN];
    storage.0.read_exact_at(&mut header, 0).map_err(io_err)?;
    let decoded = FileHeader::decode(&header, &wal_path).map_err(|e| InspectError::Header {
        path: wal_path.clone(),
        reason: e.to_string(),
    })?;
    w(
        out,
        format!(
            "header: format version {}, database id {:032x}",
            decoded.format_version, decoded.database_id
        ),
    )?;
    let mut reader = WalReader::new(&storage, &wal_path).map_err(|e| InspectError::Reader {
        path: wal_path.clone(),
        reason: e.to_string(),
    })?;
    let mut n_records = 0u64;
    loop {
        let record = reader.next_record().map_err(|e| InspectError::Reader {
            path: wal_path.clone(),
            reason: format!("after {n_records} records: {e}"),
        })?;
        let Some(record) = record else { break };
        n_records += 1;
        let detail = match &record.entry {
            WALEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => {
                format!("txn {txn_id} {run_id} ts {}", timestamp.0)
            }
            WALEntry::Write {
                txn_id,
                key,
                value,
                version,
                ..
            } => {
                format!(
                    "txn {txn_id} key {key} = {}",
                    describe_value(value, *version)
                )
            }
            WALEntry::Delete {
                txn_id,
                key,
                version,
                ..
            } => {
                format!("txn {txn_id} key {key} @v{version}")
            }
            WALEntry::CommitTxn { txn_id, .. } | WALEntry::AbortTxn { txn_id, .. } => {
                format!("txn {txn_id}")
            }
        };
        w(
            out,
            format!(
                "{:>10} {:>7}B {:<9} {detail}",
                record.offset_bytes,
                record.len_bytes,
                record.entry.record_type().name()
            ),
        )?;
    }
    let end = reader
        .end()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    w(out, format!("{n_records} records; stopped: {end}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Database, Key, Namespace, RunId, Value};
    use std::sync::Arc;

    #[test]
    fn dump_lists_records_and_reports_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path()).unwrap();
        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let mut t = db.begin(RunId(1));
        t.put(Key::kv(ns, "k"), Value::I64(5)).unwrap();
        t.commit().unwrap();
        drop(db);
        let wal = dir.path().join("wal.log");
        let mut bytes = std::fs::read(&wal).unwrap();
        bytes.extend_from_slice(&[7, 0, 0]);
        std::fs::write(&wal, &bytes).unwrap();
        let mut out = Vec::new();
        dump(dir.path(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("BeginTxn"), "{text}");
        assert!(
            text.contains("Write") && text.contains("I64(5) @v1"),
            "{text}"
        );
        assert!(text.contains("CommitTxn"), "{text}");
        assert!(text.contains("3 records; stopped: torn tail"), "{text}");
        assert_eq!(
            std::fs::read(&wal).unwrap(),
            bytes,
            "inspect must not modify the WAL"
        );
    }
}
