//! `torture inspect` (waldump): a WAL record by record, and where and why reading stopped.
//!
//! Reads through the engine's own reader over a read-only file, so what it prints is what
//! recovery would see; it never writes, truncates or creates anything.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use engine::wal::format::{FileHeader, HEADER_LEN, MAGIC};
use engine::wal::{ReadEnd, WALEntry, WalReader, WalRecord, WalStorage};
use engine::EngineError;

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
    /// The path does not exist (a usage error: nothing to inspect).
    NotFound { path: PathBuf },
    /// The path exists but is not a WAL (or a directory without one): a usage error.
    NotAWal { path: PathBuf, reason: String },
    /// Reading failed (an environment failure, not a verdict on the WAL).
    Io { path: PathBuf, source: io::Error },
}

impl InspectError {
    /// Whether the caller named something that is not a WAL (as opposed to an I/O
    /// failure while reading one): `torture inspect` exits 2 for these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            InspectError::NotFound { .. } | InspectError::NotAWal { .. }
        )
    }
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InspectError::NotFound { path } => {
                write!(f, "{}: no such file or directory", path.display())
            }
            InspectError::NotAWal { path, reason } => {
                write!(f, "{}: not a WAL: {reason}", path.display())
            }
            InspectError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for InspectError {}

/// What reading the whole WAL found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Every byte is a valid record: reading ended exactly at the end of the file.
    Clean,
    /// Reading stopped early: a torn tail, corruption, an incomplete or damaged header, or
    /// a record the engine refuses (recovery would cut or refuse something).
    Damaged { reason: String },
}

/// The file a path names: a WAL file itself, or `<dir>/wal.log` for a database directory.
fn wal_path_of(path: &Path) -> Result<PathBuf, InspectError> {
    let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => InspectError::NotFound {
            path: path.to_path_buf(),
        },
        _ => InspectError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    if metadata.is_dir() {
        let wal = path.join(engine::WAL_FILE_NAME);
        if !wal.is_file() {
            return Err(InspectError::NotAWal {
                path: path.to_path_buf(),
                reason: format!(
                    "a directory without {}, so not a database directory",
                    engine::WAL_FILE_NAME
                ),
            });
        }
        return Ok(wal);
    }
    if !metadata.is_file() {
        return Err(InspectError::NotAWal {
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        });
    }
    Ok(path.to_path_buf())
}

/// Whether a file shorter than a header can be a WAL torn while it was being created:
/// its bytes so far are the start of the magic (a power loss may also leave zeros), or it
/// carries the WAL's name (`wal.log`, and the harness's `wal.log.crashed` image). An empty
/// `LOCK` or a 28-byte `IDENTITY` is neither.
fn short_file_is_wal(wal_path: &Path, bytes: &[u8]) -> bool {
    let named_like_wal = wal_path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(engine::WAL_FILE_NAME));
    let n_magic = bytes.len().min(MAGIC.len());
    let starts_like_wal = !bytes.is_empty() && bytes[..n_magic] == MAGIC[..n_magic];
    named_like_wal || starts_like_wal
}

/// Prints the WAL at `path` (a WAL file, or a database directory holding `wal.log`) record
/// by record, then where and why reading stopped, and returns that verdict.
pub fn dump(path: &Path, out: &mut dyn Write) -> Result<Verdict, InspectError> {
    let wal_path = wal_path_of(path)?;
    let io_err = |source| InspectError::Io {
        path: wal_path.clone(),
        source,
    };
    let file = File::open(&wal_path).map_err(io_err)?;
    let storage = ReadOnlyFile(file);
    let len = storage.len_bytes().map_err(io_err)?;
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}").map_err(io_err);
    if len < HEADER_LEN as u64 {
        let mut bytes = vec![0u8; len as usize];
        storage.0.read_exact_at(&mut bytes, 0).map_err(io_err)?;
        if !short_file_is_wal(&wal_path, &bytes) {
            return Err(InspectError::NotAWal {
                path: wal_path.clone(),
                reason: format!(
                    "{len} bytes, shorter than a WAL header ({HEADER_LEN} bytes), and neither \
                     named {} nor starting with its magic",
                    engine::WAL_FILE_NAME
                ),
            });
        }
        w(out, format!("file {} ({len} bytes)", wal_path.display()))?;
        let reason = format!("header incomplete ({len} of {HEADER_LEN} bytes): a crash while creating the file; recovery rewrites it");
        w(out, reason.clone())?;
        return Ok(Verdict::Damaged { reason });
    }
    let mut header = [0u8; HEADER_LEN];
    storage.0.read_exact_at(&mut header, 0).map_err(io_err)?;
    let decoded = match FileHeader::decode(&header, &wal_path) {
        Ok(decoded) => decoded,
        Err(EngineError::NotAWal { .. }) => {
            return Err(InspectError::NotAWal {
                path: wal_path.clone(),
                reason: "it does not start with the WAL magic".to_string(),
            })
        }
        Err(e) => {
            w(out, format!("file {} ({len} bytes)", wal_path.display()))?;
            let reason = format!("header damaged: {e}");
            w(out, reason.clone())?;
            return Ok(Verdict::Damaged { reason });
        }
    };
    w(out, format!("file {} ({len} bytes)", wal_path.display()))?;
    w(
        out,
        format!(
            "header: format version {}, database id {:032x}",
            decoded.format_version, decoded.database_id
        ),
    )?;
    let reader_io_err = |e: EngineError| InspectError::Io {
        path: wal_path.clone(),
        source: io::Error::other(e.to_string()),
    };
    let mut reader = WalReader::new(&storage, &wal_path).map_err(reader_io_err)?;
    let mut n_records = 0u64;
    loop {
        let record = match reader.next_record() {
            Ok(record) => record,
            Err(e @ EngineError::Io { .. }) => return Err(reader_io_err(e)),
            // A record the engine refuses (an unknown type): recovery would refuse too.
            Err(e) => {
                let reason = format!("refused after {n_records} records: {e}");
                w(out, format!("{n_records} records; stopped: {reason}"))?;
                return Ok(Verdict::Damaged { reason });
            }
        };
        let Some(record) = record else { break };
        n_records += 1;
        w(out, describe_record(&record))?;
    }
    let (end, verdict) = match reader.end() {
        Some(end @ ReadEnd::Clean { .. }) => (end.to_string(), Verdict::Clean),
        Some(end) => (
            end.to_string(),
            Verdict::Damaged {
                reason: end.to_string(),
            },
        ),
        None => {
            let reason = "the reader did not say why it stopped".to_string();
            (reason.clone(), Verdict::Damaged { reason })
        }
    };
    w(out, format!("{n_records} records; stopped: {end}"))?;
    Ok(verdict)
}

/// One line per record: offset, length, type and what it says.
fn describe_record(record: &WalRecord) -> String {
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
        WALEntry::NamespaceDef { ns_id, namespace } => format!(
            "ns {ns_id} = {}/{}/{}/{}",
            namespace.tenant, namespace.app, namespace.agent, namespace.run_id
        ),
        WALEntry::PutTxn {
            txn_id,
            timestamp,
            key,
            value,
            version,
            ..
        } => format!(
            "txn {txn_id} ts {} key {key} = {} (committed)",
            timestamp.0,
            describe_value(value, *version)
        ),
        WALEntry::DeleteTxn {
            txn_id,
            timestamp,
            key,
            version,
            ..
        } => format!(
            "txn {txn_id} ts {} key {key} @v{version} deleted (committed)",
            timestamp.0
        ),
    };
    format!(
        "{:>10} {:>7}B {:<9} {detail}",
        record.offset_bytes,
        record.len_bytes,
        record.entry.record_type().name()
    )
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
        let verdict = dump(dir.path(), &mut out).unwrap();
        assert!(
            matches!(verdict, Verdict::Damaged { ref reason } if reason.contains("torn tail")),
            "{verdict:?}"
        );
        let text = String::from_utf8(out).unwrap();
        // A one-put transaction: its namespace's definition, then one PutTxn record.
        assert!(
            text.contains("NamespaceDef") && text.contains("ns 0 = t/a/g"),
            "{text}"
        );
        assert!(
            text.contains("PutTxn") && text.contains("I64(5) @v1"),
            "{text}"
        );
        assert!(text.contains("2 records; stopped: torn tail"), "{text}");
        assert_eq!(
            std::fs::read(&wal).unwrap(),
            bytes,
            "inspect must not modify the WAL"
        );
    }
}
