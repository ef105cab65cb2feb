//! The write-ahead log: one file, `<dir>/wal.log`, of checksummed records after a header.
//!
//! Writers append whole encoded batches under one lock, so a transaction's records are one
//! contiguous `write`. Durability is separate from appending: [`WAL::sync_to`] implements
//! group commit (one fdatasync covers every byte written before it started, and concurrent
//! waiters share it). A failed write or fsync poisons the WAL: nothing more is appended or
//! acknowledged through it.

pub mod entry;
pub mod format;
mod group_commit;
mod mem_storage;
pub mod reader;
mod scan;
pub mod sidecar;
pub mod storage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::durability::{DurabilityMode, RecoveryMode};
use crate::error::{EngineError, Result};
use crate::types::Namespace;
pub use entry::{DecodeError, Framing, NamespaceCache, WALEntry};
pub use format::{
    FileHeader, FrameCodec, RecordType, FORMAT_VERSION, HEADER_LEN, MAGIC, RECORD_HEADER_LEN,
};
use group_commit::SyncState;
pub use mem_storage::MemStorage;
pub use reader::{ReadEnd, WalReader, WalRecord};
pub use storage::{FileOpener, FileStorage, OpenedStorage, StorageOpener, SyncCadence, WalStorage};

/// Options for opening a WAL.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub mode: DurabilityMode,
    /// The database id a new WAL is created with, and that an existing WAL must carry.
    /// `None` accepts any id and creates new WALs with a random one.
    pub database_id: Option<u128>,
    pub opener: Arc<dyn StorageOpener>,
    /// The WAL allocates its file ahead of the records in chunks of this many bytes (0,
    /// the default for a bare WAL, turns it off: the file grows with each append;
    /// `Database` passes [`DEFAULT_PREALLOCATE_CHUNK_BYTES`] unless told otherwise).
    /// Preallocated space is allocated with `fallocate` (Strict mode fdatasyncs it at
    /// once), so a Strict commit's fdatasync overwrites allocated blocks with no size
    /// change to persist (measured ~1.3-1.5x faster), and [`FileStorage`] maps it for
    /// Async/Batched, so an append there is a copy into the page cache instead of a
    /// `pwrite`. The end of the log is then the tracked written offset, never the file
    /// length; recovery reads the zeros after the log as a zero-filled torn tail and cuts
    /// them, and [`WAL::trim_preallocated`] cuts them on close.
    pub preallocate_chunk_bytes: u64,
    /// The format version a new file is created with ([`FORMAT_VERSION`] by default; an
    /// existing file keeps the version its header carries). Version 1 exists so tests can
    /// check that old logs keep working.
    pub create_format_version: u32,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            mode: DurabilityMode::default(),
            database_id: None,
            opener: Arc::new(FileOpener),
            preallocate_chunk_bytes: 0,
            create_format_version: FORMAT_VERSION,
        }
    }
}

/// The default preallocation chunk (the largest step, reached once the file is that
/// large): one `fallocate` (+ zeros and fdatasync in Strict mode) per ~6K small commits,
/// and a zero tail that recovery reads through in about a millisecond.
pub const DEFAULT_PREALLOCATE_CHUNK_BYTES: u64 = 1 << 20;

/// The first preallocation step; each later step is as large as the file, up to the chunk.
pub const PREALLOCATE_STEP_MIN_BYTES: u64 = 64 * 1024;

pub use sidecar::{DROPPED_SUFFIX, TORN_SIDECARS_KEPT, TORN_SUFFIX};

/// What point-in-time recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionReport {
    pub offset_bytes: u64,
    pub next_valid_offset_bytes: u64,
    pub reason: String,
    pub dropped_bytes: u64,
    /// Where the dropped bytes were saved before the log was cut.
    pub saved_to: PathBuf,
}

/// What making the log end where reading ended did ([`WAL::accept_end`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptedEnd {
    /// Set when point-in-time recovery cut off damaged history.
    pub corruption: Option<CorruptionReport>,
    /// Where the non-zero bytes of a cut torn tail were saved, and how many (trailing zeros
    /// are not copied).
    pub torn_tail_saved_to: Option<(PathBuf, u64)>,
    /// Old torn-tail sidecars removed to keep [`TORN_SIDECARS_KEPT`].
    pub sidecars_removed: Vec<PathBuf>,
}

#[derive(Debug)]
struct WriteState {
    /// Offset where the next record goes.
    end_offset_bytes: u64,
    /// False until the log has been read to its end and any torn tail cut off; appending
    /// before that could put new records after garbage (docs/faults.md T3).
    tail_verified: bool,
    /// Length of the file as this WAL made it: bytes from `end_offset_bytes` up to here are
    /// zeros written by preallocation (or, before the tail is verified, unknown).
    allocated_end_bytes: u64,
    /// The storage said it does not preallocate ([`WalStorage::allocate`] returned false).
    allocation_unsupported: bool,
    /// After a preallocation failed for lack of space: appends ending before this offset
    /// grow the file with plain writes instead of trying again (0: no back-off).
    allocation_retry_at_bytes: u64,
}

/// A write-ahead log file.
#[derive(Debug)]
pub struct WAL {
    path: PathBuf,
    storage: Arc<dyn WalStorage>,
    opener: Arc<dyn StorageOpener>,
    mode: DurabilityMode,
    database_id: u128,
    /// How this log frames records (its format version, and the salt from version 2 on).
    codec: FrameCodec,
    preallocate_chunk_bytes: u64,
    write: Mutex<WriteState>,
    written_offset_bytes: AtomicU64,
    /// Appends so far (group commit counts the ones no sync has covered yet).
    appends: AtomicU64,
    sync: Mutex<SyncState>,
    sync_done: Condvar,
    /// Signalled when a thread enters `sync_to` while a leader gathers its group.
    sync_arrivals: Condvar,
    /// `SyncState::sync_in_progress`, readable without the lock (`await_sync_outcome`).
    sync_in_flight: AtomicBool,
    /// `SyncState::synced_offset_bytes`, readable without the lock: a woken waiter checks
    /// it without retaking the lock, and commits read it for `CommitInfo::durable`.
    synced_offset_bytes: AtomicU64,
    /// Threads inside `sync_to` (the leader, and everyone waiting for a sync to cover them).
    sync_waiters: AtomicUsize,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    /// Namespace ids the log defines (format version 2 NamespaceDef records), for the
    /// writer's compact one-operation records. Set by recovery from the kept log.
    namespace_ids: Mutex<NamespaceIds>,
}

/// The writer's namespace ids, with the last one used in front: a run of commits in one
/// namespace (the common case) finds its id by a pointer comparison, without hashing the
/// namespace's names on every commit.
#[derive(Debug, Default)]
struct NamespaceIds {
    by_namespace: HashMap<Namespace, u64>,
    last: Option<(Arc<Namespace>, u64)>,
}

/// Locks `m`, taking the guard even if another thread panicked while holding it: every
/// critical section in the engine leaves its state consistent before any call that may
/// panic, so a poisoned std mutex carries no torn state (the WAL's own poisoning, after a
/// failed write or fsync, is separate and explicit).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WAL {
    /// Opens (or creates) the WAL at `path` with default options and the given mode.
    pub fn open(path: impl AsRef<Path>, mode: DurabilityMode) -> Result<WAL> {
        WAL::open_with(
            path,
            WalOptions {
                mode,
                ..WalOptions::default()
            },
        )
    }

    /// Opens (or creates) the WAL at `path`.
    ///
    /// A new (or empty, or torn-before-the-header-completed) file gets a fresh header, then
    /// fdatasync, then an fsync of the directory. An existing file's header is validated:
    /// magic, checksum, format version, database id.
    pub fn open_with(path: impl AsRef<Path>, options: WalOptions) -> Result<WAL> {
        let path = path.as_ref().to_path_buf();
        let opened = options
            .opener
            .open(&path)
            .map_err(|e| EngineError::io(format!("opening WAL {}", path.display()), e))?;
        let storage = opened.storage;
        let io_err = |what: &str, e| EngineError::io(format!("{what} {}", path.display()), e);
        let len_bytes = storage
            .len_bytes()
            .map_err(|e| io_err("reading the length of", e))?;
        // A power loss before the header's fdatasync may leave a file of the right size that
        // holds only zeros: an unfinished create, with no records, like a short file.
        let unfinished_create = len_bytes < HEADER_LEN as u64
            || reader::region_is_all_zero(storage.as_ref(), 0, len_bytes)
                .map_err(|e| io_err("reading", e))?;
        if !format::FORMAT_VERSIONS_SUPPORTED.contains(&options.create_format_version) {
            return Err(EngineError::InvalidArgument {
                reason: format!(
                    "cannot create a WAL of format version {} (this build writes {:?})",
                    options.create_format_version,
                    format::FORMAT_VERSIONS_SUPPORTED
                ),
            });
        }
        let (header, end_offset_bytes, fresh) = if unfinished_create {
            // Only a crash while creating the file leaves fewer bytes than a header; such a
            // file holds no records. Anything that is not a prefix of our header is foreign.
            let mut existing = vec![0u8; len_bytes.min(HEADER_LEN as u64) as usize];
            reader::read_exact_at(storage.as_ref(), 0, &mut existing)
                .map_err(|e| io_err("reading", e))?;
            let magic_prefix = &MAGIC[..existing.len().min(MAGIC.len())];
            if existing[..magic_prefix.len()] != *magic_prefix && existing.iter().any(|b| *b != 0) {
                return Err(EngineError::NotAWal { path });
            }
            let database_id = options.database_id.unwrap_or_else(rand::random::<u128>);
            let header = FileHeader {
                format_version: options.create_format_version,
                database_id,
            };
            storage.set_len(0).map_err(|e| io_err("truncating", e))?;
            storage
                .write_at(0, &header.encode())
                .map_err(|e| io_err("writing the header of", e))?;
            storage.sync_data().map_err(|e| io_err("fdatasync of", e))?;
            storage
                .sync_dir()
                .map_err(|e| io_err("fsync of the directory of", e))?;
            (header, HEADER_LEN as u64, true)
        } else {
            let mut bytes = [0u8; HEADER_LEN];
            reader::read_exact_at(storage.as_ref(), 0, &mut bytes)
                .map_err(|e| io_err("reading the header of", e))?;
            let header = FileHeader::decode(&bytes, &path)?;
            if let Some(expected) = options.database_id {
                if header.database_id != expected {
                    return Err(EngineError::IdentityMismatch {
                        path,
                        reason: format!(
                            "the WAL header carries database id {:032x}, the directory's IDENTITY file says {expected:032x}",
                            header.database_id
                        ),
                    });
                }
            }
            // Always, not only when this call created the file: an earlier open may have
            // died (or failed) between writing the header and fsyncing the directory, and
            // then the file's directory entry would never be made durable (P3).
            storage
                .sync_dir()
                .map_err(|e| io_err("fsync of the directory of", e))?;
            (header, len_bytes, len_bytes == HEADER_LEN as u64)
        };
        let database_id = header.database_id;
        let codec = FrameCodec::for_header(&header);
        let synced_offset_bytes = if fresh {
            end_offset_bytes
        } else {
            HEADER_LEN as u64
        };
        Ok(WAL {
            path,
            storage,
            opener: options.opener,
            mode: options.mode,
            database_id,
            codec,
            preallocate_chunk_bytes: options.preallocate_chunk_bytes,
            write: Mutex::new(WriteState {
                end_offset_bytes,
                tail_verified: fresh,
                allocated_end_bytes: end_offset_bytes,
                allocation_unsupported: false,
                allocation_retry_at_bytes: 0,
            }),
            written_offset_bytes: AtomicU64::new(end_offset_bytes),
            appends: AtomicU64::new(0),
            sync: Mutex::new(SyncState::new(synced_offset_bytes)),
            sync_done: Condvar::new(),
            sync_arrivals: Condvar::new(),
            sync_in_flight: AtomicBool::new(false),
            synced_offset_bytes: AtomicU64::new(synced_offset_bytes),
            sync_waiters: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            namespace_ids: Mutex::new(NamespaceIds::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> DurabilityMode {
        self.mode
    }

    pub fn database_id(&self) -> u128 {
        self.database_id
    }

    /// The log's format version (from its header).
    pub fn format_version(&self) -> u32 {
        self.codec.format_version()
    }

    /// How this log frames records.
    pub fn codec(&self) -> FrameCodec {
        self.codec
    }

    /// Replaces the namespace ids the writer knows with the ones `defined` (by id) holds:
    /// what recovery read from the log it kept.
    pub fn set_defined_namespaces(&self, defined: &[Arc<Namespace>]) {
        let mut ids = lock(&self.namespace_ids);
        ids.last = None;
        ids.by_namespace.clear();
        for (id, namespace) in defined.iter().enumerate() {
            ids.by_namespace
                .insert(Namespace::clone(namespace), id as u64);
        }
    }

    /// The id of `namespace` in this log, and whether it is new: then the caller must
    /// append its NamespaceDef before (in the same write as) the first record that uses it.
    /// Call under the lock that orders appends (the commit lock).
    pub fn namespace_id(&self, namespace: &Arc<Namespace>) -> (u64, bool) {
        let mut ids = lock(&self.namespace_ids);
        if let Some((last, id)) = &ids.last {
            if Arc::ptr_eq(last, namespace) || **last == **namespace {
                return (*id, false);
            }
        }
        let (id, new) = match ids.by_namespace.get(&**namespace) {
            Some(id) => (*id, false),
            None => {
                let id = ids.by_namespace.len() as u64;
                ids.by_namespace.insert(Namespace::clone(namespace), id);
                (id, true)
            }
        };
        ids.last = Some((namespace.clone(), id));
        (id, new)
    }

    /// The framing for records encoded now: this log's codec and the offset the last
    /// completed fdatasync covered. Encode under the same lock that appends, or at least
    /// after reading this, so the synced offset a record carries was really reached before
    /// it was written.
    pub fn framing(&self) -> Framing {
        Framing {
            codec: self.codec,
            synced_offset_bytes: self.synced_offset_bytes(),
        }
    }

    /// How often appends are fdatasynced in this WAL's mode (tells the storage how to
    /// write into preallocated space).
    fn sync_cadence(&self) -> SyncCadence {
        match self.mode {
            DurabilityMode::Strict => SyncCadence::PerAppend,
            DurabilityMode::Batched { .. } | DurabilityMode::Async => SyncCadence::Deferred,
        }
    }

    /// The storage under this WAL (for tools that read raw bytes).
    pub fn storage(&self) -> &Arc<dyn WalStorage> {
        &self.storage
    }

    /// A streaming reader from the first record to the current end of the file.
    pub fn reader(&self) -> Result<WalReader<'_>> {
        WalReader::with_codec(
            self.storage.as_ref(),
            &self.path,
            self.codec,
            reader::READ_BUFFER_LEN_DEFAULT,
        )
    }

    /// Bytes handed to the OS so far (the offset where the next record goes).
    pub fn written_offset_bytes(&self) -> u64 {
        self.written_offset_bytes.load(Ordering::Acquire)
    }

    /// Bytes covered by a completed fdatasync.
    pub fn synced_offset_bytes(&self) -> u64 {
        self.synced_offset_bytes.load(Ordering::Acquire)
    }

    /// `Err(Poisoned)` once a write or fsync has failed.
    pub fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            let reason = lock(&self.poison_reason).clone().unwrap_or_default();
            return Err(EngineError::Poisoned { reason });
        }
        Ok(())
    }

    /// Marks the WAL poisoned; the first reason is kept.
    pub fn poison(&self, reason: String) {
        let mut slot = lock(&self.poison_reason);
        let first = slot.is_none();
        if first {
            *slot = Some(reason.clone());
        }
        self.poisoned.store(true, Ordering::Release);
        drop(slot);
        // Logged only once the flag is set: a logger may take its time, and nothing may be
        // written or acknowledged meanwhile.
        if first {
            log::error!("WAL {} poisoned: {reason}", self.path.display());
        }
        // Wake group-commit waiters so they see the poison instead of waiting forever.
        lock(&self.sync).unpark_all();
        self.sync_done.notify_all();
        self.sync_arrivals.notify_all();
    }

    /// Appends one entry. In `Strict` mode this also waits for an fdatasync covering it;
    /// the other modes only write (the background flusher belongs to `Database`).
    /// Returns the record's offset.
    pub fn append(&self, entry: &WALEntry) -> Result<u64> {
        let mut bytes = Vec::with_capacity(64);
        entry.encode_framed(&mut bytes, self.framing());
        let end = self.append_bytes(&bytes)?;
        if self.mode == DurabilityMode::Strict {
            self.sync_to(end)?;
        }
        Ok(end - bytes.len() as u64)
    }

    /// Appends already-encoded records as one write. Returns the end offset after them.
    pub fn append_bytes(&self, bytes: &[u8]) -> Result<u64> {
        let mut state = lock(&self.write);
        self.check_poisoned()?;
        if !state.tail_verified {
            // Verified under the write lock: a concurrent first append must not land
            // between reading the end and cutting the tail, or the cut would take it.
            self.verify_tail_locked(&mut state)?;
        }
        let offset = state.end_offset_bytes;
        let end = offset + bytes.len() as u64;
        if self.preallocate_chunk_bytes > 0
            && end > state.allocated_end_bytes
            && !state.allocation_unsupported
            && end >= state.allocation_retry_at_bytes
        {
            self.preallocate(&mut state, end)?;
        }
        if let Err(e) = self.storage.write_at(offset, bytes) {
            let context = format!(
                "writing {} bytes to {} at offset {offset} (the database is now poisoned; \
                 part of this write may be on disk and is cut off as a torn tail on reopen)",
                bytes.len(),
                self.path.display()
            );
            self.poison(format!("write at offset {offset} failed: {e}"));
            return Err(EngineError::io(context, e));
        }
        state.end_offset_bytes = offset + bytes.len() as u64;
        self.written_offset_bytes
            .store(state.end_offset_bytes, Ordering::Release);
        // Only this thread (holding the write lock) changes it: no read-modify-write needed.
        self.appends
            .store(self.appends.load(Ordering::Relaxed) + 1, Ordering::Release);
        Ok(state.end_offset_bytes)
    }

    /// Allocates the file up to the chunk boundary at or after `needed_end_bytes`
    /// ([`WalStorage::allocate`]: `fallocate`, and for [`FileStorage`] a shared mapping that
    /// later appends copy into). In Strict mode an fdatasync follows, so the size change is
    /// durable before any record is written over the new space and a commit's own
    /// fdatasync has no metadata to carry; the other modes leave that to their next sync.
    /// A failure poisons the WAL like a failed append. A storage that does not preallocate
    /// turns preallocation off for the rest of this WAL's life.
    fn preallocate(&self, state: &mut WriteState, needed_end_bytes: u64) -> Result<()> {
        // The step doubles with the file up to the chunk size: a small log (a test, a
        // crash-harness cycle) allocates and zero-fills kilobytes, not a whole chunk.
        let from = state.allocated_end_bytes.max(state.end_offset_bytes);
        let step = from
            .max(PREALLOCATE_STEP_MIN_BYTES)
            .min(self.preallocate_chunk_bytes);
        let to = needed_end_bytes.div_ceil(step) * step;
        debug_assert!(to >= needed_end_bytes);
        match self.storage.allocate(from, to - from, self.sync_cadence()) {
            Ok(true) => {}
            Ok(false) => {
                state.allocation_unsupported = true;
                return Ok(());
            }
            // A full disk may still hold this append (preallocation reserves up to a whole
            // chunk ahead): no byte of the log was written, so nothing is poisoned. Appends
            // grow the file with plain writes until the log has grown by another step,
            // then preallocation is tried again. A failing write still poisons.
            Err(e) if is_out_of_space(&e) => {
                log::warn!(
                    "WAL {}: preallocating from {from} to {to} failed ({e}); appending without \
                     preallocation for now",
                    self.path.display()
                );
                state.allocation_retry_at_bytes = needed_end_bytes + step;
                return Ok(());
            }
            Err(e) => {
                self.poison(format!("preallocating from {from} to {to} failed: {e}"));
                return Err(EngineError::io(
                    format!(
                        "preallocating {} from offset {from} to {to} (the database is now poisoned)",
                        self.path.display()
                    ),
                    e,
                ));
            }
        }
        if self.mode == DurabilityMode::Strict {
            if let Err(e) = self.storage.sync_data() {
                self.poison(format!("fdatasync after preallocating to {to} failed: {e}"));
                return Err(EngineError::io(
                    format!(
                        "fdatasync of {} after preallocating to {to} bytes (the database is now poisoned)",
                        self.path.display()
                    ),
                    e,
                ));
            }
        }
        state.allocated_end_bytes = to;
        Ok(())
    }

    /// Cuts preallocated zeros after the last record (truncate + fdatasync), so a closed (or
    /// dropped) WAL ends exactly after its last record. A no-op without preallocation, and
    /// on a poisoned WAL (nothing more is written to it; recovery cuts the zeros).
    pub fn trim_preallocated(&self) -> Result<()> {
        self.trim_preallocated_then(true)
    }

    /// `trim_preallocated` without the fdatasync (for a dropped handle: if the cut is
    /// lost to a power failure, recovery cuts the zeros again).
    pub fn trim_preallocated_unsynced(&self) -> Result<()> {
        self.trim_preallocated_then(false)
    }

    fn trim_preallocated_then(&self, sync: bool) -> Result<()> {
        let mut state = lock(&self.write);
        if self.preallocate_chunk_bytes == 0 || !state.tail_verified {
            return Ok(());
        }
        self.check_poisoned()?;
        let end = state.end_offset_bytes;
        if state.allocated_end_bytes > end {
            let io_err = |what: String, e| EngineError::io(what, e);
            self.storage.set_len(end).map_err(|e| {
                io_err(
                    format!("truncating {} to {end} bytes", self.path.display()),
                    e,
                )
            })?;
            state.allocated_end_bytes = end;
            if sync {
                self.storage.sync_data().map_err(|e| {
                    io_err(
                        format!("fdatasync of {} after truncating", self.path.display()),
                        e,
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Reads the log to its end and cuts off a torn tail, refusing on corruption. Used when
    /// appending to a WAL that was opened without replaying it.
    pub fn verify_tail(&self) -> Result<ReadEnd> {
        let mut state = lock(&self.write);
        self.verify_tail_locked(&mut state)
    }

    fn verify_tail_locked(&self, state: &mut WriteState) -> Result<ReadEnd> {
        let mut reader = self.reader()?;
        while reader.next_record()?.is_some() {}
        let end = reader.end().cloned().expect("reader ended");
        self.set_defined_namespaces(reader.namespaces().defined());
        self.accept_end_locked(state, &end, RecoveryMode::TolerateCorruptTail)?;
        Ok(end)
    }

    /// Makes the log end where reading ended: cuts a torn tail (truncate + fdatasync) or,
    /// in point-in-time mode, saves and cuts everything from the damage on. Then syncs, so
    /// that what recovery read from the page cache is durable before anything builds on it
    /// (docs/faults.md P4).
    ///
    /// Non-zero bytes that are cut (a torn tail, or damaged history in point-in-time mode)
    /// are first copied to a sidecar ([`sidecar`]), made durable before the truncation.
    pub fn accept_end(&self, end: &ReadEnd, recovery_mode: RecoveryMode) -> Result<AcceptedEnd> {
        let mut state = lock(&self.write);
        self.accept_end_locked(&mut state, end, recovery_mode)
    }

    fn accept_end_locked(
        &self,
        state: &mut WriteState,
        end: &ReadEnd,
        recovery_mode: RecoveryMode,
    ) -> Result<AcceptedEnd> {
        // A sync started before the tail was cut targets offsets that may no longer exist;
        // let it finish, and keep new ones out until the synced offset is reset below, so
        // no later append is counted as synced by it.
        let mut sync = lock(&self.sync);
        while sync.sync_in_progress && !self.poisoned.load(Ordering::Acquire) {
            sync = self.sync_done.wait(sync).unwrap_or_else(|p| p.into_inner());
        }
        let io_err = |what: String, e| EngineError::io(what, e);
        let file_len = self
            .storage
            .len_bytes()
            .map_err(|e| io_err(format!("reading the length of {}", self.path.display()), e))?;
        let mut accepted = AcceptedEnd::default();
        let valid_end = end.valid_end_offset_bytes();
        match end {
            ReadEnd::Clean { .. } => {}
            ReadEnd::TornTail {
                offset_bytes,
                torn_bytes,
                zero_filled,
                ..
            } => {
                if *zero_filled {
                    log::info!(
                        "WAL {}: log ends at offset {offset_bytes}; cutting {torn_bytes} zero bytes",
                        self.path.display()
                    );
                } else if *offset_bytes < file_len {
                    let saved = sidecar::save(
                        self.opener.as_ref(),
                        self.storage.as_ref(),
                        &self.path,
                        sidecar::Cut::TornTail,
                        *offset_bytes,
                        file_len,
                    )?;
                    log::warn!(
                        "WAL {}: cutting a torn tail of {torn_bytes} bytes at offset {offset_bytes} ({end}){}",
                        self.path.display(),
                        match &saved {
                            Some((path, len)) =>
                                format!("; its {len} bytes saved to {}", path.display()),
                            None => String::new(),
                        }
                    );
                    accepted.sidecars_removed = sidecar::prune(self.opener.as_ref(), &self.path)?;
                    accepted.torn_tail_saved_to = saved;
                }
            }
            ReadEnd::Corruption {
                offset_bytes,
                next_valid_offset_bytes,
                reason,
            } => {
                if recovery_mode == RecoveryMode::TolerateCorruptTail {
                    return Err(EngineError::Corruption {
                        path: self.path.clone(),
                        offset_bytes: *offset_bytes,
                        reason: format!(
                            "{reason}; next valid record at offset {next_valid_offset_bytes}"
                        ),
                    });
                }
                let saved_to = sidecar::save(
                    self.opener.as_ref(),
                    self.storage.as_ref(),
                    &self.path,
                    sidecar::Cut::PointInTime,
                    *offset_bytes,
                    file_len,
                )?
                .map(|(path, _)| path)
                .unwrap_or_default();
                log::warn!(
                    "WAL {}: point-in-time recovery drops {} bytes from offset {offset_bytes} ({reason}); saved to {}",
                    self.path.display(),
                    file_len - offset_bytes,
                    saved_to.display()
                );
                accepted.corruption = Some(CorruptionReport {
                    offset_bytes: *offset_bytes,
                    next_valid_offset_bytes: *next_valid_offset_bytes,
                    reason: reason.clone(),
                    dropped_bytes: file_len - offset_bytes,
                    saved_to,
                });
            }
        }
        // Everything after the log goes, preallocated zeros included: a crash is the only
        // way they outlive an open database (close and drop trim them), and the next
        // append allocates again from the end of the log (one `fallocate`). So after
        // recovery the file ends where the log ends, as tools and the harness expect.
        if file_len > valid_end {
            self.storage.set_len(valid_end).map_err(|e| {
                io_err(
                    format!("truncating {} to {valid_end} bytes", self.path.display()),
                    e,
                )
            })?;
        }
        self.storage.sync_data().map_err(|e| {
            io_err(
                format!("fdatasync of {} after recovery", self.path.display()),
                e,
            )
        })?;
        state.end_offset_bytes = valid_end;
        state.tail_verified = true;
        state.allocated_end_bytes = valid_end;
        self.written_offset_bytes
            .store(valid_end, Ordering::Release);
        sync.set_synced_offset(valid_end);
        self.synced_offset_bytes.store(valid_end, Ordering::Release);
        Ok(accepted)
    }
}

/// ENOSPC or EDQUOT: the file system has no room (for this user).
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The highest txn id and version in any checksum-valid record found anywhere in `bytes`
/// (records are looked for at every offset, so damage between them does not hide them).
/// Used on the bytes point-in-time recovery cut off: they may hold acknowledged commits,
/// whose ids and versions must never be handed out again (R4).
///
/// `base_offset_bytes` is the file offset `bytes` came from (version 2 records are checked
/// against their own offset).
pub fn max_ids_in_records(bytes: &[u8], codec: FrameCodec, base_offset_bytes: u64) -> (u64, u64) {
    let (mut max_txn_id, mut max_version) = (0u64, 0u64);
    // Their namespace definitions may lie before the cut: any namespace id is accepted.
    let mut namespaces = NamespaceCache::lenient();
    let mut offset = 0;
    while offset + RECORD_HEADER_LEN <= bytes.len() {
        let zeros = scan::zero_type_run_len(&bytes[offset..]);
        if zeros > 0 {
            offset += zeros;
            continue;
        }
        let Some(format::Frame::Valid {
            record_type,
            payload_start,
            payload_len,
            ..
        }) = scan::valid_frame_at(codec, base_offset_bytes + offset as u64, &bytes[offset..])
        else {
            offset += 1;
            continue;
        };
        let payload = &bytes[offset + payload_start..][..payload_len];
        let entry = codec
            .record_type(record_type)
            .and_then(|kind| WALEntry::decode_payload(kind, payload, &mut namespaces).ok());
        let Some(entry) = entry else {
            offset += 1;
            continue;
        };
        max_txn_id = max_txn_id.max(entry.txn_id());
        if let Some(version) = entry.version() {
            max_version = max_version.max(version);
        }
        offset += payload_start + payload_len;
    }
    (max_txn_id, max_version)
}

/// Scans that try every byte offset of damaged bytes stay linear in the bytes scanned.
#[cfg(test)]
mod scan_cost_tests {
    use super::*;
    use crate::types::{Key, RunId, Timestamp, TypeTag, Value};
    use entry::{encode_single_op_txn, Framing, SingleOp};
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// 8 MiB of random bytes (a torn tail of big values, as a sidecar keeps it) with one
    /// real record in the middle: the scan finds the record's ids and checksums a bounded
    /// number of bytes. Checking the checksum of every offset whose length field fits
    /// (one in about 8000) cost gigabytes here, and every open rescanned every sidecar.
    #[test]
    fn scanning_random_bytes_checksums_almost_nothing() {
        let codec = FrameCodec::v2(0x5eed);
        let mut bytes = vec![0u8; 8 << 20];
        rand_chacha::ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut bytes);
        let at = 4 << 20;
        let base_offset_bytes = 1 << 20;
        let mut record = Vec::new();
        let key = Key::new(
            Arc::new(Namespace::new("t", "a", "g", RunId(1))),
            TypeTag::Kv,
            b"k".to_vec(),
        );
        let framing = Framing {
            codec,
            synced_offset_bytes: base_offset_bytes,
        };
        let op = SingleOp {
            txn_id: 77,
            run_id: RunId(1),
            timestamp: Timestamp(1),
            version: 99,
            ns_id: 0,
        };
        encode_single_op_txn(&mut record, framing, op, &key, Some(&Value::I64(5)));
        bytes[at..at + record.len()].copy_from_slice(&record);
        let before = format::CHECKSUMMED_BYTES.with(|n| n.get());
        let ids = max_ids_in_records(&bytes, codec, base_offset_bytes);
        let checksummed = format::CHECKSUMMED_BYTES.with(|n| n.get()) - before;
        assert_eq!(ids, (77, 99));
        assert!(
            checksummed < bytes.len() as u64,
            "checksummed {checksummed} bytes to scan {}",
            bytes.len()
        );
        // Zero runs are skipped, not stepped over: a record right after 2 MiB of zeros
        // (a sidecar's hole) is still found, at every alignment.
        for shift in 0..RECORD_HEADER_LEN {
            let mut zeros = vec![0u8; (2 << 20) + shift];
            zeros.extend_from_slice(&record);
            zeros.extend_from_slice(&[0u8; 100]);
            let at_bytes = 4096;
            assert_eq!(
                max_ids_in_records(&zeros, codec, at_bytes),
                (77, 99),
                "shift {shift}"
            );
        }
    }
}

/// Preallocation keeps recovery exact: the log ends at the last written record, never at
/// the file length. Each test commits Strict transactions into a preallocating database,
/// leaves the file as a crash would (the image read while the database is still open, put
/// back after the handle is gone) or a torn write inside the preallocated space would, and
/// checks the recovered prefix, the stats and the file length.
#[cfg(test)]
mod preallocation_tests {
    use std::sync::Arc;

    use crate::database::{Database, DatabaseOptions, WAL_FILE_NAME};
    use crate::types::{Key, Namespace, RunId, Value};
    use crate::wal::ReadEnd;

    const CHUNK_BYTES: u64 = 64 * 1024;

    fn open(dir: &std::path::Path, preallocate: bool) -> Database {
        DatabaseOptions::new()
            .preallocate(if preallocate { CHUNK_BYTES } else { 0 })
            .open(dir)
            .expect("open")
    }

    fn commit_keys(db: &Database, range: std::ops::Range<u64>) -> u64 {
        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let mut end = 0;
        for idx in range {
            let mut txn = db.begin(RunId(1));
            txn.put(
                Key::kv(ns.clone(), format!("k{idx:06}")),
                Value::I64(idx as i64),
            )
            .expect("put");
            end = txn.commit().expect("commit").end_offset_bytes;
        }
        end
    }

    fn file_len(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len()
    }

    /// Ends `db` as a process kill would: the WAL keeps exactly what it held while open
    /// (dropping the handle trims the preallocated zeros, a kill does not).
    fn crash(db: Database) -> Vec<u8> {
        let path = db.path().join(WAL_FILE_NAME);
        let image = std::fs::read(&path).unwrap();
        drop(db);
        std::fs::write(&path, &image).unwrap();
        image
    }

    #[test]
    fn crash_inside_preallocated_space_recovers_every_commit_and_cuts_the_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), true);
        let end = commit_keys(&db, 0..300);
        let len = crash(db).len() as u64;
        assert!(len > end, "file {len} bytes, log ends at {end}");
        assert_eq!(len % CHUNK_BYTES, 0);

        let db = open(dir.path(), true);
        let stats = db.recovery_stats().clone();
        assert_eq!(stats.txns_applied, 300);
        assert!(stats.torn_tail_zero_filled);
        assert_eq!(stats.torn_tail_bytes, len - end);
        assert_eq!(
            file_len(dir.path()),
            end,
            "recovery leaves the file at the log's end"
        );
        assert_eq!(db.wal().written_offset_bytes(), end);
        // Appending allocates again from the end of the log, and survives a crash.
        let end = commit_keys(&db, 300..400);
        assert_eq!(file_len(dir.path()) % CHUNK_BYTES, 0, "allocated again");
        crash(db);
        let db = open(dir.path(), true);
        assert_eq!(db.recovery_stats().txns_applied, 400);
        assert_eq!(db.storage().len(), 400);
        assert_eq!(file_len(dir.path()), end);
    }

    #[test]
    fn torn_record_inside_preallocated_space_recovers_the_committed_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), true);
        let end_before_last = commit_keys(&db, 0..50);
        let end = commit_keys(&db, 50..51);
        let mut bytes = crash(db);
        // The last transaction's bytes are half written: its second half is still zeros.
        let path = dir.path().join(WAL_FILE_NAME);
        let torn_from = (end_before_last + (end - end_before_last) / 2) as usize;
        bytes[torn_from..end as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();

        let db = open(dir.path(), true);
        let stats = db.recovery_stats().clone();
        assert_eq!(stats.txns_applied, 50);
        // A one-put transaction is one PutTxn record: its torn second half takes the whole
        // record, and the log ends where the transaction began.
        assert_eq!(stats.discarded_txns, 0);
        assert!(!stats.torn_tail_zero_filled);
        assert_eq!(db.wal().written_offset_bytes(), end_before_last);
        assert_eq!(file_len(dir.path()), db.wal().written_offset_bytes());
        commit_keys(&db, 51..60);
        crash(db);
        let db = open(dir.path(), true);
        assert_eq!(db.recovery_stats().txns_applied, 59);
    }

    #[test]
    fn close_and_drop_trim_the_preallocated_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), true);
        let end = commit_keys(&db, 0..20);
        assert!(file_len(dir.path()) > end, "preallocated while open");
        db.close().unwrap();
        assert_eq!(file_len(dir.path()), end);
        let db = open(dir.path(), true);
        assert!(matches!(
            db.recovery_stats().end,
            Some(ReadEnd::Clean { end_offset_bytes }) if end_offset_bytes == end
        ));
        let end = commit_keys(&db, 20..30);
        drop(db);
        assert_eq!(file_len(dir.path()), end, "a dropped handle trims too");
        let db = open(dir.path(), false);
        assert_eq!(db.recovery_stats().txns_applied, 30);
        assert_eq!(db.recovery_stats().torn_tail_bytes, 0);
    }
}

#[cfg(test)]
mod namespace_id_tests {
    use std::sync::Arc;

    use super::WAL;
    use crate::types::{Namespace, RunId};
    use crate::DurabilityMode;

    /// Equal namespaces get one id whether they share an allocation or not (the fast path
    /// compares pointers first, then names); a new namespace gets the next id once; ids
    /// recovery sets replace the writer's, the remembered last one included.
    #[test]
    fn equal_namespaces_share_an_id_and_new_ones_are_numbered_once() {
        let dir = tempfile::tempdir().unwrap();
        let wal = WAL::open(dir.path().join("wal.log"), DurabilityMode::Async).unwrap();
        let a = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let a_copy = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let b = Arc::new(Namespace::new("t", "b", "g", RunId(1)));
        assert_eq!(wal.namespace_id(&a), (0, true));
        assert_eq!(wal.namespace_id(&a), (0, false));
        assert_eq!(wal.namespace_id(&a_copy), (0, false));
        assert_eq!(wal.namespace_id(&b), (1, true));
        assert_eq!(
            wal.namespace_id(&a),
            (0, false),
            "found again after another one"
        );
        wal.set_defined_namespaces(std::slice::from_ref(&b));
        assert_eq!(wal.namespace_id(&b), (0, false));
        assert_eq!(
            wal.namespace_id(&a),
            (1, true),
            "forgotten with the old table"
        );
    }
}
