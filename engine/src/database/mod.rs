//! `Database`: a directory holding one WAL, recovered into a `UnifiedStore` on open.
//!
//! Directory layout: `LOCK` (flock, one open handle at a time), `IDENTITY` (database id),
//! `wal.log` (the log). Commit path, in order (see ARCHITECTURE.md):
//! 1. under the commit lock: allocate the txn id and versions, encode BeginTxn, the
//!    Write/Delete records and CommitTxn, and `pwrite` them as one contiguous write;
//! 2. wait as the durability mode says (Strict: group-commit fdatasync);
//! 3. apply to the store in commit order, then acknowledge. Async and Batched apply under
//!    the commit lock right after the write; Strict queues the operations (in write order)
//!    under the commit lock, and whichever committer's fdatasync returns first applies
//!    every queued commit that the synced offset covers, for everyone (no waiting in turn).

pub mod identity;
pub mod lock;
mod transaction;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::durability::{DurabilityMode, RecoveryMode};
use crate::error::{EngineError, Result};
use crate::recovery::{replay_wal_with_mode, ReplayStats};
use crate::store::{StoreOp, UnifiedStore};
use crate::types::{Key, RunId, Timestamp, VersionedValue};
use crate::wal::{
    lock, FileOpener, StorageOpener, WalOptions, DEFAULT_PREALLOCATE_CHUNK_BYTES, WAL,
};
use lock::DirLock;
pub use transaction::{CommitInfo, Transaction};

/// Name of the log inside a database directory.
pub const WAL_FILE_NAME: &str = "wal.log";

/// How to open a database.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    durability: DurabilityMode,
    recovery: RecoveryMode,
    opener: Arc<dyn StorageOpener>,
    preallocate_chunk_bytes: u64,
    create_format_version: u32,
}

impl Default for DatabaseOptions {
    fn default() -> DatabaseOptions {
        DatabaseOptions {
            durability: DurabilityMode::default(),
            recovery: RecoveryMode::default(),
            opener: Arc::new(FileOpener),
            preallocate_chunk_bytes: DEFAULT_PREALLOCATE_CHUNK_BYTES,
            create_format_version: crate::wal::FORMAT_VERSION,
        }
    }
}

impl DatabaseOptions {
    pub fn new() -> DatabaseOptions {
        DatabaseOptions::default()
    }

    pub fn durability(mut self, mode: DurabilityMode) -> DatabaseOptions {
        self.durability = mode;
        self
    }

    pub fn recovery(mut self, mode: RecoveryMode) -> DatabaseOptions {
        self.recovery = mode;
        self
    }

    /// Puts another storage implementation under the WAL (the crash harness's seam).
    pub fn storage_opener(mut self, opener: Arc<dyn StorageOpener>) -> DatabaseOptions {
        self.opener = opener;
        self
    }

    /// Preallocates the WAL in chunks of `chunk_bytes` (default
    /// [`DEFAULT_PREALLOCATE_CHUNK_BYTES`], 1 MiB; 0 turns it off). Strict commits then
    /// overwrite allocated blocks, so their fdatasync needs no metadata update, and appends
    /// into the allocation are copies into a shared mapping (no syscall). See
    /// `WalOptions::preallocate_chunk_bytes`.
    pub fn preallocate(mut self, chunk_bytes: u64) -> DatabaseOptions {
        self.preallocate_chunk_bytes = chunk_bytes;
        self
    }

    /// The WAL format version a *new* database is created with (default
    /// [`crate::wal::FORMAT_VERSION`]). An existing database keeps its log's version. Only
    /// compatibility tests want version 1: its recovery cannot tell a power loss's
    /// out-of-order pages from damaged history (docs/format.md).
    pub fn create_format_version(mut self, format_version: u32) -> DatabaseOptions {
        self.create_format_version = format_version;
        self
    }

    pub fn open(self, path: impl AsRef<Path>) -> Result<Database> {
        Database::open_with_options(path, self)
    }
}

#[derive(Debug)]
struct CommitState {
    next_txn_id: u64,
    next_version: u64,
    /// The encoding buffer, reused by every commit (it is only used under the commit
    /// lock): one allocation per database instead of one per commit.
    encoded: Vec<u8>,
}

/// A reused encoding buffer larger than this is dropped after its commit, so one huge
/// transaction does not pin its memory for the database's life.
const ENCODE_BUFFER_KEEP_MAX_BYTES: usize = 1 << 20;

/// A Strict commit written to the WAL and waiting for an fdatasync to cover it.
#[derive(Debug)]
struct PendingApply {
    end_offset_bytes: u64,
    ops: Vec<StoreOp>,
    timestamp: Timestamp,
}

#[derive(Debug, Default)]
struct FlusherSignal {
    stop: bool,
    pending_commits: usize,
}

#[derive(Debug)]
struct Shared {
    wal: WAL,
    store: UnifiedStore,
    mode: DurabilityMode,
    commit: Mutex<CommitState>,
    /// Strict commits in write order, not yet applied to the store.
    pending_apply: Mutex<VecDeque<PendingApply>>,
    /// End offset of the last Strict commit applied to the store (commits apply in offset
    /// order, so every commit ending at or before it is applied).
    applied_through_offset_bytes: AtomicU64,
    flusher: Mutex<FlusherSignal>,
    flusher_cv: Condvar,
    closed: AtomicBool,
}

/// An open database. `Send + Sync`: share it across threads by reference or `Arc`.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    shared: Arc<Shared>,
    stats: ReplayStats,
    flusher: Option<JoinHandle<()>>,
    _lock: DirLock,
}

impl Database {
    /// Opens (creating if needed) the database at `path` in `Strict` mode with the default
    /// recovery mode (`TolerateCorruptTail`), replaying its WAL.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Database::open_with_options(path, DatabaseOptions::default())
    }

    /// Opens with the given durability mode and the default recovery mode.
    pub fn open_with_mode(path: impl AsRef<Path>, mode: DurabilityMode) -> Result<Database> {
        Database::open_with_options(path, DatabaseOptions::default().durability(mode))
    }

    /// Opens with full options.
    ///
    /// Recovery path, in order: create the directory (and fsync its parent if created);
    /// take the lock; read or create IDENTITY; open the WAL (creating it with header,
    /// fdatasync, directory fsync); replay; cut a torn tail (truncate + fdatasync).
    pub fn open_with_options(path: impl AsRef<Path>, options: DatabaseOptions) -> Result<Database> {
        let path = path.as_ref().to_path_buf();
        if let DurabilityMode::Batched {
            interval_ms,
            batch_size,
        } = options.durability
        {
            if interval_ms == 0 || batch_size == 0 {
                return Err(EngineError::InvalidArgument {
                    reason: format!(
                        "Batched mode needs interval_ms > 0 and batch_size > 0 (got {interval_ms} and {batch_size})"
                    ),
                });
            }
        }
        if path.as_os_str().is_empty() {
            return Err(EngineError::InvalidArgument {
                reason: "the database path is empty (use \".\" for the current directory)"
                    .to_string(),
            });
        }
        if path.exists() && !path.is_dir() {
            return Err(EngineError::InvalidArgument {
                reason: format!("{} exists and is not a directory", path.display()),
            });
        }
        let opener = options.opener.clone();
        create_dirs(opener.as_ref(), &path)?;
        let dir_lock = DirLock::acquire_with(opener.as_ref(), &path)?;
        let wal_path = path.join(WAL_FILE_NAME);
        // Creation order (see identity.rs): the WAL's header is made durable first, then
        // IDENTITY; records are appended only after both. So a crash during the very first
        // open leaves a header-only WAL (or none) and no IDENTITY, which opens as new.
        let identity = identity::read(opener.as_ref(), &path)?;
        let wal_len = opener.file_len(&wal_path).map_err(|e| {
            EngineError::io(format!("reading the length of {}", wal_path.display()), e)
        })?;
        match (identity, wal_len) {
            (Some(_), None) => return Err(EngineError::WalMissing { path: wal_path }),
            (None, Some(len)) if wal_has_records(opener.as_ref(), &wal_path, len)? => {
                return Err(EngineError::IdentityMismatch {
                    path: wal_path,
                    reason: format!(
                        "the directory has a {len}-byte WAL holding records but no {} file: the \
                         WAL was copied in or left behind after the directory was wiped",
                        identity::IDENTITY_FILE_NAME
                    ),
                });
            }
            // No IDENTITY and no records: a first open died between creating the log and
            // its header's fdatasync. Until that sync, a power loss may leave the header's
            // bytes as anything (garbage included), so whatever is there is the remains of
            // our own unfinished create: start it again.
            (None, Some(len)) if !header_is_whole(opener.as_ref(), &wal_path, len)? => {
                let storage = opener
                    .open(&wal_path)
                    .map_err(|e| EngineError::io(format!("opening {}", wal_path.display()), e))?
                    .storage;
                storage.set_len(0).map_err(|e| {
                    EngineError::io(format!("truncating {}", wal_path.display()), e)
                })?;
            }
            _ => {}
        }
        let wal = WAL::open_with(
            &wal_path,
            WalOptions {
                mode: options.durability,
                // No IDENTITY yet: a header an unfinished first open left gives the id.
                database_id: identity,
                opener: options.opener,
                preallocate_chunk_bytes: options.preallocate_chunk_bytes,
                create_format_version: options.create_format_version,
            },
        )?;
        if identity.is_none() {
            identity::create(opener.as_ref(), &path, wal.database_id())?;
        }
        let store = UnifiedStore::new();
        let stats = replay_wal_with_mode(&wal, &store, options.recovery)?;
        log::info!(
            "opened {}: {} txns applied ({} writes, {} deletes), {} incomplete discarded, {} aborted, \
             {} orphaned records, {} torn tail bytes, final version {}",
            path.display(),
            stats.txns_applied,
            stats.writes_applied,
            stats.deletes_applied,
            stats.discarded_txns,
            stats.aborted_txns,
            stats.orphaned_entries,
            stats.torn_tail_bytes,
            stats.final_version
        );
        // Bytes that point-in-time recovery cut off (now or in an earlier open) may hold
        // acknowledged commits: their ids and versions are never handed out again (R4).
        let (dropped_max_txn_id, dropped_max_version) =
            crate::wal::sidecar::max_ids(opener.as_ref(), wal.path(), wal.codec())?;
        let commit = CommitState {
            next_txn_id: stats.max_txn_id.max(dropped_max_txn_id) + 1,
            next_version: stats
                .final_version
                .max(stats.max_version_seen)
                .max(dropped_max_version)
                + 1,
            encoded: Vec::new(),
        };
        let shared = Arc::new(Shared {
            wal,
            store,
            mode: options.durability,
            commit: Mutex::new(commit),
            pending_apply: Mutex::new(VecDeque::new()),
            applied_through_offset_bytes: AtomicU64::new(0),
            flusher: Mutex::new(FlusherSignal::default()),
            flusher_cv: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let flusher = match options.durability {
            DurabilityMode::Batched { interval_ms, .. } => {
                let shared = shared.clone();
                let handle = std::thread::Builder::new()
                    .name("wal-flusher".to_string())
                    .spawn(move || run_flusher(&shared, Duration::from_millis(interval_ms)))
                    .map_err(|e| EngineError::io("spawning the WAL flusher thread", e))?;
                Some(handle)
            }
            _ => None,
        };
        Ok(Database {
            path,
            shared,
            stats,
            flusher,
            _lock: dir_lock,
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What recovery did when this handle was opened.
    pub fn recovery_stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// The durability mode this handle was opened with.
    pub fn durability_mode(&self) -> DurabilityMode {
        self.shared.mode
    }

    /// The store (committed data only).
    pub fn storage(&self) -> &UnifiedStore {
        &self.shared.store
    }

    /// The WAL. Tests and tools append hand-crafted records through it
    /// (`wal().append(&entry)`); such records bypass versions and ordering checks.
    pub fn wal(&self) -> &WAL {
        &self.shared.wal
    }

    /// Reads one key (committed data only).
    pub fn get(&self, key: &Key) -> Option<VersionedValue> {
        self.shared.store.get(key)
    }

    /// Starts a transaction for `run_id`. Nothing is written until `commit`.
    pub fn begin(&self, run_id: RunId) -> Transaction<'_> {
        Transaction::new(self, run_id)
    }

    /// Forces an fdatasync of everything written so far. Fails if the database is poisoned.
    pub fn flush(&self) -> Result<()> {
        self.ensure_open()?;
        self.shared.wal.sync()
    }

    /// Stops the flusher, syncs, and closes. Returns an error (and never claims success)
    /// if any write or sync failed during the handle's life (docs/faults.md E3).
    pub fn close(mut self) -> Result<()> {
        self.stop_flusher();
        let result = self
            .shared
            .wal
            .sync()
            .and_then(|()| self.shared.wal.trim_preallocated());
        self.shared.closed.store(true, Ordering::Release);
        result
    }

    fn ensure_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(EngineError::Closed);
        }
        Ok(())
    }

    fn stop_flusher(&mut self) {
        if let Some(handle) = self.flusher.take() {
            lock(&self.shared.flusher).stop = true;
            self.shared.flusher_cv.notify_all();
            if handle.join().is_err() {
                log::error!("the WAL flusher thread panicked");
            }
        }
    }

    /// Commit path, called by `Transaction::commit`.
    fn commit_ops(
        &self,
        run_id: RunId,
        ops: Vec<transaction::PendingOp>,
        ops_encoded_len_bytes: usize,
    ) -> Result<CommitInfo> {
        self.ensure_open()?;
        let shared = &self.shared;
        shared.wal.check_poisoned()?;
        let timestamp = Timestamp::now();
        let n_ops = ops.len() as u64;
        let strict = shared.mode == DurabilityMode::Strict;
        let (txn_id, first_version, end_offset_bytes) = {
            let mut guard = lock(&shared.commit);
            let state = &mut *guard;
            let txn_id = state.next_txn_id;
            let first_version = state.next_version;
            let encoded = &mut state.encoded;
            encoded.clear();
            // BeginTxn and CommitTxn frames take at most 78 bytes; 80 leaves no reallocation.
            encoded.reserve(80 + ops_encoded_len_bytes);
            // Read under the commit lock, before the append: the synced offset the records
            // carry was reached before they were written (docs/format.md, version 2).
            let framing = shared.wal.framing();
            transaction::encode_txn(
                encoded,
                framing,
                |namespace| shared.wal.namespace_id(namespace),
                txn_id,
                run_id,
                timestamp,
                first_version,
                &ops,
            );
            // Consume the id and versions even if the write fails: the bytes may be on disk.
            state.next_txn_id += 1;
            state.next_version += n_ops;
            let appended = shared.wal.append_bytes(encoded);
            if encoded.capacity() > ENCODE_BUFFER_KEEP_MAX_BYTES {
                *encoded = Vec::new();
            }
            let end = appended?;
            let store_ops = ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| op.into_store_op(first_version + i as u64));
            if strict {
                // Queued in write order while the commit lock still orders the writes.
                lock(&shared.pending_apply).push_back(PendingApply {
                    end_offset_bytes: end,
                    ops: store_ops.collect(),
                    timestamp,
                });
            } else {
                // Async and Batched acknowledge once written, so the store may show the
                // commit now; the commit lock makes store order equal log order. An
                // fdatasync in flight (the flusher's, or a concurrent flush) may be failing
                // right now: wait for its outcome, so no commit is acknowledged after a
                // failed sync returned, even before that thread has poisoned the WAL (E3).
                shared.wal.await_sync_outcome()?;
                shared.store.apply_batch(store_ops, timestamp);
            }
            (txn_id, first_version, end)
        };
        let durable = match shared.mode {
            DurabilityMode::Strict => {
                shared.wal.sync_to(end_offset_bytes)?;
                self.apply_durable(end_offset_bytes);
                true
            }
            DurabilityMode::Batched { batch_size, .. } => {
                let mut signal = lock(&shared.flusher);
                signal.pending_commits += 1;
                if signal.pending_commits >= batch_size {
                    shared.flusher_cv.notify_all();
                }
                drop(signal);
                shared.wal.synced_offset_bytes() >= end_offset_bytes
            }
            DurabilityMode::Async => shared.wal.synced_offset_bytes() >= end_offset_bytes,
        };
        Ok(CommitInfo {
            txn_id,
            versions: first_version..first_version + n_ops,
            end_offset_bytes,
            durable,
        })
    }

    /// Strict: applies, in write order, every queued commit that a completed fdatasync
    /// covers. Called after this committer's own sync returned, so its own commit (and every
    /// earlier one, which ends at a lower offset) is covered and applied on return, by this
    /// thread or by another. A commit whose sync failed stays queued and never applies: the
    /// WAL is poisoned, so no later sync can cover it.
    ///
    /// A committer whose commit another thread already applied returns without the queue's
    /// lock: after a group commit, the whole group wakes at once, and all but one would
    /// otherwise queue on that lock only to find nothing left to apply.
    fn apply_durable(&self, end_offset_bytes: u64) {
        let shared = &self.shared;
        if shared.applied_through_offset_bytes.load(Ordering::Acquire) >= end_offset_bytes {
            return;
        }
        let mut queue = lock(&shared.pending_apply);
        let synced_offset_bytes = shared.wal.synced_offset_bytes();
        while queue
            .front()
            .is_some_and(|p| p.end_offset_bytes <= synced_offset_bytes)
        {
            let pending = queue.pop_front().expect("front checked above");
            shared.store.apply_batch(pending.ops, pending.timestamp);
            // Published only once applied: a reader that sees it may return at once.
            shared
                .applied_through_offset_bytes
                .store(pending.end_offset_bytes, Ordering::Release);
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let batched = self.flusher.is_some();
        self.stop_flusher();
        if batched && !self.shared.closed.load(Ordering::Acquire) {
            // Batched promises a sync at least every interval; honour it for the last one.
            if let Err(e) = self.shared.wal.sync() {
                log::error!("final sync of {} on drop failed: {e}", self.path.display());
            }
        }
        if !self.shared.closed.load(Ordering::Acquire) && self.shared.wal.check_poisoned().is_ok() {
            // A dropped handle leaves the file ending at the log, like `close`: only a crash
            // leaves preallocated zeros behind.
            if let Err(e) = self.shared.wal.trim_preallocated_unsynced() {
                log::error!(
                    "trimming the preallocated WAL of {} on drop failed: {e}",
                    self.path.display()
                );
            }
        }
    }
}

fn run_flusher(shared: &Shared, interval: Duration) {
    let mut signal = lock(&shared.flusher);
    loop {
        if signal.stop {
            return;
        }
        if signal.pending_commits < batch_size_of(shared.mode) {
            let (guard, _) = shared
                .flusher_cv
                .wait_timeout(signal, interval)
                .unwrap_or_else(|p| p.into_inner());
            signal = guard;
            if signal.stop {
                return;
            }
        }
        signal.pending_commits = 0;
        drop(signal);
        if shared.wal.written_offset_bytes() > shared.wal.synced_offset_bytes() {
            if let Err(e) = shared.wal.sync() {
                // The WAL is poisoned now; the next commit or flush reports it.
                log::error!("background fdatasync failed: {e}");
            }
        }
        signal = lock(&shared.flusher);
    }
}

fn batch_size_of(mode: DurabilityMode) -> usize {
    match mode {
        DurabilityMode::Batched { batch_size, .. } => batch_size,
        _ => usize::MAX,
    }
}

/// Creates `path` and any missing parents through the seam, fsyncing the parent of every
/// level it creates (innermost first), and the parent of an existing directory too: an
/// earlier open may have died before making its entry durable (best effort there, since
/// the parent may not be readable by this user; a failure is logged).
fn create_dirs(opener: &dyn StorageOpener, path: &Path) -> Result<()> {
    // Every level, outermost first, through the seam: `create_dir` of an existing one says
    // AlreadyExists, so no level is checked outside the seam.
    let levels: Vec<&Path> = path
        .ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    let mut created = Vec::new();
    for dir in levels.into_iter().rev() {
        match opener.create_dir(dir) {
            Ok(()) => created.push(dir.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(EngineError::io(
                    format!("creating directory {}", dir.display()),
                    e,
                ))
            }
        }
    }
    let parent_of = |dir: &Path| match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if created.is_empty() {
        let parent = parent_of(path);
        if let Err(e) = opener.sync_dir(&parent) {
            log::warn!("fsync of directory {} failed: {e}", parent.display());
        }
        return Ok(());
    }
    // Innermost first: each new level's entry in its parent.
    for dir in created.iter().rev() {
        let parent = parent_of(dir);
        opener
            .sync_dir(&parent)
            .map_err(|e| EngineError::io(format!("fsync of directory {}", parent.display()), e))?;
    }
    Ok(())
}

/// True when the WAL at `path` (`len_bytes` long) starts with a whole, valid header.
fn header_is_whole(opener: &dyn StorageOpener, path: &Path, len_bytes: u64) -> Result<bool> {
    if len_bytes < crate::wal::HEADER_LEN as u64 {
        return Ok(false);
    }
    let bytes = opener
        .read_file(path)
        .map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?
        .unwrap_or_default();
    let Some(header) = bytes.get(..crate::wal::HEADER_LEN) else {
        return Ok(false);
    };
    let header: &[u8; crate::wal::HEADER_LEN] = header.try_into().expect("sliced to length");
    Ok(crate::wal::FileHeader::decode(header, path).is_ok())
}

/// True when the WAL at `path` (`len_bytes` long) holds anything after its header that is
/// not zero: records, or their torn remains. A shorter file, or a header followed by zeros,
/// is a creation that never got as far as a record.
fn wal_has_records(opener: &dyn StorageOpener, path: &Path, len_bytes: u64) -> Result<bool> {
    if len_bytes <= crate::wal::HEADER_LEN as u64 {
        return Ok(false);
    }
    let storage = opener
        .open(path)
        .map_err(|e| EngineError::io(format!("opening {}", path.display()), e))?
        .storage;
    let zero = crate::wal::reader::region_is_all_zero(
        storage.as_ref(),
        crate::wal::HEADER_LEN as u64,
        len_bytes,
    )
    .map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?;
    Ok(!zero)
}

/// The store must show commits in log order however commits interleave: Strict commits are
/// applied by whichever committer's fdatasync returns first, Async and Batched ones under
/// the commit lock. Threads overwrite a few shared keys; the live store must equal the
/// store that replaying the log rebuilds (same values, same versions).
#[cfg(test)]
mod commit_order_tests {
    use std::sync::Arc;

    use super::*;
    use crate::types::{Namespace, Value};

    fn live_equals_replayed(mode: DurabilityMode) {
        const THREADS: u64 = 4;
        const COMMITS_PER_THREAD: u64 = 100;
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_with_mode(dir.path(), mode).unwrap();
        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        std::thread::scope(|scope| {
            for thread_idx in 0..THREADS {
                let db = &db;
                let ns = ns.clone();
                scope.spawn(move || {
                    for i in 0..COMMITS_PER_THREAD {
                        let mut txn = db.begin(RunId(1));
                        let keys: Vec<Key> = (0..2)
                            .map(|k| Key::kv(ns.clone(), format!("shared-{}", (i + k) % 3)))
                            .collect();
                        for key in &keys {
                            txn.put(key.clone(), Value::I64((thread_idx * 1000 + i) as i64))
                                .unwrap();
                        }
                        let info = txn.commit().unwrap();
                        // Read your writes: once acknowledged, the store holds this commit's
                        // value or a later one, never an earlier commit applied after it.
                        for (key, version) in keys.iter().zip(info.versions.clone()) {
                            let seen = db.get(key).expect("written key").version;
                            assert!(seen >= version, "{key}: saw v{seen} after v{version}");
                        }
                    }
                });
            }
        });
        let live = db.storage().snapshot();
        db.close().unwrap();
        let reopened = Database::open_with_mode(dir.path(), mode).unwrap();
        assert_eq!(
            reopened.recovery_stats().txns_applied,
            THREADS * COMMITS_PER_THREAD
        );
        assert_eq!(reopened.storage().snapshot(), live, "{}", mode.name());
    }

    #[test]
    fn strict_concurrent_commits_apply_in_log_order() {
        live_equals_replayed(DurabilityMode::Strict);
    }

    #[test]
    fn async_and_batched_concurrent_commits_apply_in_log_order() {
        live_equals_replayed(DurabilityMode::Async);
        live_equals_replayed(DurabilityMode::batched(5));
    }
}
