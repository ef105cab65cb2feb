//! The engine's error type: every variant says what went wrong and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a database, a WAL or a record could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// An operating-system I/O call failed; `context` names the operation and the path.
    Io { context: String, source: io::Error },
    /// Committed history is damaged: a record that fails validation is followed by valid
    /// records, so cutting it off would lose committed transactions.
    Corruption {
        path: PathBuf,
        offset_bytes: u64,
        reason: String,
    },
    /// Another handle (in this or another process) holds the directory's lock.
    Locked { path: PathBuf },
    /// An earlier write or fsync failed; nothing more is acknowledged until the database
    /// is reopened, because the state of the unsynced bytes is unknown (fsyncgate).
    Poisoned { reason: String },
    /// The file does not start with this engine's WAL magic.
    NotAWal { path: PathBuf },
    /// The WAL was written by a newer (or unknown) format version.
    UnsupportedFormatVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A checksummed record has a type this build does not know (written by a newer engine).
    UnknownRecordType {
        path: PathBuf,
        offset_bytes: u64,
        record_type: u8,
    },
    /// The WAL belongs to another database, or is missing its identity file.
    IdentityMismatch { path: PathBuf, reason: String },
    /// The directory names a database (its IDENTITY file exists) but its log is gone:
    /// opening it as an empty database would silently lose everything it held.
    WalMissing { path: PathBuf },
    /// A record or value exceeds a documented limit.
    TooLarge {
        what: &'static str,
        len_bytes: u64,
        max_bytes: u64,
    },
    /// The caller used the API in a way it does not allow.
    InvalidArgument { reason: String },
    /// The database was closed.
    Closed,
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// Wraps an I/O error with the operation and path it came from.
    pub fn io(context: impl Into<String>, source: io::Error) -> EngineError {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            // Point-in-time recovery keeps the history before a damaged record; it cannot
            // help when the damage is at offset 0 (a WAL header or the IDENTITY file).
            EngineError::Corruption { path, offset_bytes: 0, reason } => write!(
                f,
                "{} is damaged at offset 0: {reason} (no record can be trusted without it; \
                 refusing to open. Inspect with `torture inspect`; restore the file from a copy)",
                path.display()
            ),
            EngineError::Corruption { path, offset_bytes, reason } => write!(
                f,
                "corruption in committed history of {} at offset {offset_bytes}: {reason} \
                 (valid records follow; refusing to open. Inspect with `torture inspect`, or \
                 open with RecoveryMode::PointInTime to keep the history before this offset)",
                path.display()
            ),
            EngineError::Locked { path } => write!(
                f,
                "database directory {} is locked by another open handle (in this or another process)",
                path.display()
            ),
            EngineError::Poisoned { reason } => write!(
                f,
                "database is poisoned and acknowledges no more commits: {reason}; reopen it to recover"
            ),
            EngineError::NotAWal { path } => {
                write!(f, "{} is not a WAL file of this engine (bad magic)", path.display())
            }
            EngineError::UnsupportedFormatVersion { path, found, supported } => write!(
                f,
                "{} has WAL format version {found}, this build reads versions 1 to {supported}",
                path.display()
            ),
            EngineError::UnknownRecordType { path, offset_bytes, record_type } => write!(
                f,
                "{} has a valid record of unknown type {record_type} at offset {offset_bytes} \
                 (written by a newer engine?)",
                path.display()
            ),
            EngineError::IdentityMismatch { path, reason } => {
                write!(f, "WAL {} does not belong to this database: {reason}", path.display())
            }
            EngineError::WalMissing { path } => write!(
                f,
                "{} is missing, but the directory's IDENTITY file says a database lives here: \
                 the log was deleted or lost; refusing to open it as an empty database",
                path.display()
            ),
            EngineError::TooLarge { what, len_bytes, max_bytes } => {
                write!(f, "{what} is {len_bytes} bytes, the limit is {max_bytes} bytes")
            }
            EngineError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            EngineError::Closed => write!(f, "database is closed"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
