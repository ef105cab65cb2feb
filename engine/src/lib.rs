//! `engine`: an embedded, versioned key-value store made durable by a write-ahead log.
//!
//! Every committed transaction is written to the WAL before it is acknowledged, and
//! [`Database::open`] replays the WAL: committed transactions come back with their original
//! versions; incomplete, aborted and orphaned records are discarded and counted; a torn tail
//! is cut off; damage to committed history is refused (or, in point-in-time mode, cut at the
//! last good record and reported). See ARCHITECTURE.md and docs/format.md.
//!
//! Architecture invariant: the engine never forks, signals or reads environment variables;
//! every byte it reads or writes goes through [`wal::WalStorage`].

pub mod database;
pub mod durability;
pub mod error;
pub mod recovery;
pub mod store;
pub mod types;
pub mod wal;

pub use database::{CommitInfo, Database, DatabaseOptions, Transaction, WAL_FILE_NAME};
pub use durability::{DurabilityMode, RecoveryMode};
pub use error::{EngineError, Result};
pub use recovery::{replay_wal, replay_wal_with_mode, ReplayStats};
pub use store::{StoreOp, UnifiedStore};
pub use types::{Key, Namespace, RunId, Timestamp, TypeTag, Value, VersionedValue};
pub use wal::{ReadEnd, WALEntry, WalReader, WalRecord, WAL};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn database_and_wal_are_send_and_sync() {
        assert_send_sync::<super::Database>();
        assert_send_sync::<super::WAL>();
        assert_send_sync::<super::UnifiedStore>();
    }
}
