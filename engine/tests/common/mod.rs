//! Helpers shared by the engine's test binaries: keys, hand-built WAL images, a log
//! capturing logger and the faults the tests inject under the WAL's I/O seam (a hook of
//! crashkit's fault storage).
//!
//! Each test binary uses a different subset of these helpers, so unused ones are allowed
//! here rather than marked per binary.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crashkit::faults::storage::{FaultOpener, FileRef, Hook, Next, Op, Reply};
use engine::database::identity;
use engine::wal::format::{put_leb128, FileHeader, FrameCodec, FORMAT_VERSION, HEADER_LEN};
use engine::wal::Framing;
use engine::wal::StorageOpener;
use engine::{
    Database, DatabaseOptions, DurabilityMode, Key, Namespace, RunId, Timestamp, Value, WALEntry,
    WAL_FILE_NAME,
};

/// The run id used by hand-built histories.
pub const RUN: RunId = RunId(7);

pub fn namespace() -> Arc<Namespace> {
    Arc::new(Namespace::new("tenant", "app", "agent", RUN))
}

/// A plain key-value key in the test namespace.
pub fn key(name: &str) -> Key {
    Key::kv(namespace(), name)
}

/// A temporary directory, on tmpfs when the machine has one: the every-offset tests open
/// thousands of databases and each open fsyncs several times.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("create a temporary directory")
}

/// Frames a payload by hand in format version 1 (so it can be anything: an undecodable
/// payload, an unknown record type) with a valid checksum: length u32 LE, type, crc32 over
/// length + type + payload, payload. [`WalImage::hand_frame`] frames for an image's format.
pub fn hand_frame(record_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.push(record_type);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame);
    hasher.update(payload);
    frame.extend_from_slice(&hasher.finalize().to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Builds WAL bytes record by record and remembers where each record starts and ends.
///
/// In format version 2 every record says how far the log was synced when it was written;
/// an image models a log whose every record was synced before the next was written (each
/// record carries its own start as the synced offset), unless [`WalImage::set_synced`]
/// pins the synced offset (a run of records written after the last sync).
#[derive(Debug, Clone)]
pub struct WalImage {
    pub bytes: Vec<u8>,
    pub records: Vec<(u64, u64, WALEntry)>,
    pub codec: FrameCodec,
    synced_pinned: Option<u64>,
}

impl WalImage {
    /// An image in the current format version.
    pub fn new(database_id: u128) -> WalImage {
        WalImage::with_version(database_id, FORMAT_VERSION)
    }

    /// An image in format version 1 (the golden fixtures, compatibility tests).
    pub fn v1(database_id: u128) -> WalImage {
        WalImage::with_version(database_id, 1)
    }

    pub fn with_version(database_id: u128, format_version: u32) -> WalImage {
        let header = FileHeader {
            format_version,
            database_id,
        };
        WalImage {
            bytes: header.encode().to_vec(),
            records: Vec::new(),
            codec: FrameCodec::for_header(&header),
            synced_pinned: None,
        }
    }

    /// From now on, records carry `synced_offset_bytes` (None: each its own start).
    pub fn set_synced(&mut self, synced_offset_bytes: Option<u64>) {
        self.synced_pinned = synced_offset_bytes;
    }

    fn framing(&self) -> Framing {
        Framing {
            codec: self.codec,
            synced_offset_bytes: self.synced_pinned.unwrap_or(self.bytes.len() as u64),
        }
    }

    /// A frame of `record_type` around `payload` (anything: undecodable, an unknown
    /// type) with a valid checksum in this image's format, as the next record would be.
    pub fn hand_frame(&self, record_type: u8, payload: &[u8]) -> Vec<u8> {
        if !self.codec.carries_synced_offset() {
            return hand_frame(record_type, payload);
        }
        let mut body = Vec::new();
        put_leb128(&mut body, self.framing().synced_offset_bytes);
        body.extend_from_slice(payload);
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.push(record_type);
        let crc = self.codec.crc(&frame, &body);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    /// Appends one record; returns its start offset.
    pub fn push(&mut self, entry: WALEntry) -> u64 {
        let start = self.bytes.len() as u64;
        let framing = self.framing();
        entry.encode_framed(&mut self.bytes, framing);
        let end = self.bytes.len() as u64;
        self.records.push((start, end, entry));
        start
    }

    pub fn begin(&mut self, txn_id: u64, timestamp: u64) -> u64 {
        self.push(WALEntry::BeginTxn {
            txn_id,
            run_id: RUN,
            timestamp: Timestamp(timestamp),
        })
    }

    pub fn write(&mut self, txn_id: u64, name: &str, value: Value, version: u64) -> u64 {
        self.push(WALEntry::Write {
            txn_id,
            run_id: RUN,
            key: key(name),
            value,
            version,
        })
    }

    pub fn delete(&mut self, txn_id: u64, name: &str, version: u64) -> u64 {
        self.push(WALEntry::Delete {
            txn_id,
            run_id: RUN,
            key: key(name),
            version,
        })
    }

    pub fn commit(&mut self, txn_id: u64) -> u64 {
        self.push(WALEntry::CommitTxn {
            txn_id,
            run_id: RUN,
        })
    }

    pub fn abort(&mut self, txn_id: u64) -> u64 {
        self.push(WALEntry::AbortTxn {
            txn_id,
            run_id: RUN,
        })
    }

    pub fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Lays out a database directory holding `wal_bytes` as its log and an IDENTITY file for
/// `database_id`, as if a database had written them. Returns the directory path.
pub fn install_wal(dir: &Path, database_id: u128, wal_bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create database directory");
    identity::create(&engine::wal::FileOpener, dir, database_id).expect("write IDENTITY");
    std::fs::write(dir.join(WAL_FILE_NAME), wal_bytes).expect("write wal.log");
    dir.to_path_buf()
}

/// The WAL header length as a u64, for offset arithmetic.
pub const HEADER_LEN_BYTES: u64 = HEADER_LEN as u64;

/// One captured log record.
#[derive(Debug, Clone)]
pub struct Captured {
    pub level: log::Level,
    pub thread: std::thread::ThreadId,
    pub message: String,
}

#[derive(Debug, Default)]
struct CaptureLogger {
    records: Mutex<Vec<Captured>>,
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        stall_if_requested(&record.args().to_string());
        let captured = Captured {
            level: record.level(),
            thread: std::thread::current().id(),
            message: record.args().to_string(),
        };
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(captured);
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<&'static CaptureLogger> = OnceLock::new();

/// A request to hold one thread inside a log call whose message contains `needle`: a way
/// to widen, deterministically, a window in the engine that lies between two statements
/// around a `log` call.
#[derive(Debug)]
struct Stall {
    thread: Who,
    needle: String,
    delay: std::time::Duration,
    entered: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

/// Which thread a stall applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Id(std::thread::ThreadId),
    /// A thread the engine spawns, by name (e.g. "wal-flusher").
    Named(&'static str),
}

impl Who {
    fn is_current(self) -> bool {
        let current = std::thread::current();
        match self {
            Who::Id(id) => current.id() == id,
            Who::Named(name) => current.name() == Some(name),
        }
    }
}

/// Armed stalls; tests running in parallel each arm their own.
static STALLS: Mutex<Vec<Stall>> = Mutex::new(Vec::new());

fn stall_if_requested(message: &str) {
    let stall = {
        let mut stalls = STALLS.lock().unwrap_or_else(|p| p.into_inner());
        stalls
            .iter()
            .position(|s| s.thread.is_current() && message.contains(s.needle.as_str()))
            .map(|idx| stalls.swap_remove(idx))
    };
    if let Some(stall) = stall {
        let (flag, cv) = &*stall.entered;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        std::thread::sleep(stall.delay);
    }
}

/// Makes `thread`'s next log message containing `needle` stall for `delay` (once). Returns
/// a handle whose [`wait_entered`] returns once the thread is inside that log call.
pub fn stall_log(
    thread: Who,
    needle: impl Into<String>,
    delay: std::time::Duration,
) -> Arc<(Mutex<bool>, std::sync::Condvar)> {
    capture_logger();
    let entered = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    STALLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Stall {
            thread,
            needle: needle.into(),
            delay,
            entered: entered.clone(),
        });
    entered
}

/// Blocks until the stalled thread has entered its log call (at most 20 s: a missed stall
/// fails the test instead of hanging it).
pub fn wait_entered(entered: &(Mutex<bool>, std::sync::Condvar)) {
    let (flag, cv) = entered;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut guard = flag.lock().unwrap_or_else(|p| p.into_inner());
    while !*guard {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "the stalled thread never logged the expected message"
        );
        guard = cv
            .wait_timeout(guard, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Installs the capturing logger (once per process) and returns it.
fn capture_logger() -> &'static CaptureLogger {
    LOGGER.get_or_init(|| {
        let logger: &'static CaptureLogger = Box::leak(Box::default());
        log::set_logger(logger).expect("no other logger is installed in the test binaries");
        log::set_max_level(log::LevelFilter::Trace);
        logger
    })
}

/// Runs `f` and returns the log records emitted on the calling thread meanwhile. Tests run
/// in parallel threads of one process, so records are told apart by thread: replay runs on
/// the thread that opens the database.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<Captured>) {
    let logger = capture_logger();
    let me = std::thread::current().id();
    let start = logger
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len();
    let out = f();
    let records = logger.records.lock().unwrap_or_else(|p| p.into_inner());
    let mine = records[start..]
        .iter()
        .filter(|r| r.thread == me)
        .cloned()
        .collect();
    (out, mine)
}

/// Faults injected into every file a [`Faults::opener`] opens: a hook of crashkit's one
/// fault storage ([`FaultOpener`]), which forwards every seam method (`allocate`
/// included, so preallocation runs under these faults as in production).
#[derive(Debug, Default)]
pub struct Faults {
    /// The next this many `sync_data` calls fail with EIO; later ones succeed (E1: the
    /// engine must not trust a later "successful" fsync).
    pub failing_syncs: AtomicUsize,
    /// The next `write_at` writes half its bytes and then fails with ENOSPC (E4).
    pub fail_next_write: AtomicBool,
    /// When n > 0, the n-th `set_len` call from now fails with EIO before changing the
    /// file: a crash (or an error) in the middle of recovery, before it cut the log.
    pub failing_set_len_call: AtomicUsize,
    /// When non-zero, every `allocate` fails with this errno before changing the file.
    pub failing_allocate_errno: AtomicI32,
    /// Every `sync_data` that reaches the file first sleeps this long (a slow disk).
    pub sync_delay_us: AtomicU64,
    /// Number of `sync_data` calls that reached the file.
    pub syncs: AtomicUsize,
    /// Number of `sync_dir` calls that reached the directory.
    pub dir_syncs: AtomicUsize,
    /// Number of `allocate` calls that reached the file.
    pub allocations: AtomicUsize,
    /// A failing `sync_data` announces the failure here, then waits this long before
    /// returning the error: the device has failed, the engine does not know yet.
    pub failing_sync_delay_ms: AtomicU64,
    /// Set (and notified) when a failing `sync_data` has started its delay.
    pub sync_failure_announced: (std::sync::Mutex<bool>, std::sync::Condvar),
}

impl Faults {
    /// Blocks until a failing `sync_data` has announced its failure.
    pub fn wait_sync_failure(&self) {
        let (flag, cv) = &self.sync_failure_announced;
        let mut announced = flag.lock().unwrap();
        while !*announced {
            announced = cv.wait(announced).unwrap();
        }
    }

    /// Real files under these faults.
    pub fn opener(self: &Arc<Faults>) -> Arc<dyn StorageOpener> {
        Arc::new(FaultOpener::new(vec![self.clone()]))
    }

    fn failing_sync(&self) -> io::Error {
        let delay_ms = self.failing_sync_delay_ms.load(Ordering::Acquire);
        if delay_ms > 0 {
            let (flag, cv) = &self.sync_failure_announced;
            *flag.lock().unwrap() = true;
            cv.notify_all();
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
        io::Error::from_raw_os_error(libc::EIO)
    }
}

/// Takes one from a countdown; true when it was this call's turn (the count was 1).
fn count_down(counter: &AtomicUsize) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)) == Ok(1)
}

impl Hook for Faults {
    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        if file.is_none() {
            return next(op);
        }
        match op {
            Op::Write { offset_bytes, data }
                if self.fail_next_write.swap(false, Ordering::AcqRel) =>
            {
                // A short write then an error: what a full disk does to a large write.
                next(Op::Write {
                    offset_bytes,
                    data: &data[..data.len() / 2],
                })?;
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            Op::SetLen { .. } if count_down(&self.failing_set_len_call) => {
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
            Op::Allocate { .. } => match self.failing_allocate_errno.load(Ordering::Acquire) {
                0 => {
                    self.allocations.fetch_add(1, Ordering::AcqRel);
                    next(op)
                }
                errno => Err(io::Error::from_raw_os_error(errno)),
            },
            Op::SyncData => {
                let failing =
                    self.failing_syncs
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                if failing.is_ok() {
                    return Err(self.failing_sync());
                }
                let delay_us = self.sync_delay_us.load(Ordering::Acquire);
                if delay_us > 0 {
                    std::thread::sleep(std::time::Duration::from_micros(delay_us));
                }
                self.syncs.fetch_add(1, Ordering::AcqRel);
                next(op)
            }
            Op::SyncFileDir => {
                self.dir_syncs.fetch_add(1, Ordering::AcqRel);
                next(op)
            }
            other => next(other),
        }
    }
}

/// Opens `dir` in `mode` under fresh [`Faults`] and returns the database with them, so a
/// test can arm faults or count syncs after the open.
pub fn open_faulty(dir: &Path, mode: DurabilityMode) -> (Database, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let db = DatabaseOptions::new()
        .durability(mode)
        .storage_opener(faults.opener())
        .open(dir)
        .unwrap();
    (db, faults)
}

/// The seed a randomized test uses, printed so a failure can be replayed by editing the
/// constant (the harness prints seeds the same way).
pub fn announce_seed(test: &str, seed: u64) -> u64 {
    eprintln!("{test}: seed {seed:#018x}");
    seed
}
