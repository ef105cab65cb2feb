//! Fault layers under the engine's I/O seam ([`engine::wal::WalStorage`]).
//!
//! Each layer wraps another storage and changes one thing: [`KillAtOffset`] stops the
//! process once exactly K bytes of the WAL exist, [`SyncTracker`] reports each completed
//! fdatasync's covered length, [`FailingIo`] fails the n-th write or fsync, [`KillAfterCalls`]
//! stops a recovering process after n storage calls, [`SkippedSyncs`] is a wrong
//! storage for the self-test. [`FaultOpener`] stacks them for `wal.log` only, over a
//! [`crate::trace::TracedStorage`] for every file when it traces.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::wal::{FileOpener, OpenedStorage, StorageOpener, SyncCadence, WalStorage};

/// What a layer does when its trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL the current process: the crash under test.
    SigKill,
    /// Return an I/O error instead (for in-process tests of the layer itself).
    Fail,
}

fn stop_now(stop: Stop, what: &str) -> io::Error {
    if stop == Stop::SigKill {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL cannot be caught; reaching this line means the kernel refused it.
        std::process::abort();
    }
    io::Error::other(format!("crashkit: stopped at {what}"))
}

/// Writes at most up to absolute WAL offset `kill_offset_bytes`; the write that reaches it
/// writes only the bytes before it, then the process dies.
#[derive(Debug)]
pub struct KillAtOffset {
    inner: Arc<dyn WalStorage>,
    kill_offset_bytes: u64,
    stop: Stop,
    fired: AtomicBool,
}

impl KillAtOffset {
    pub fn new(inner: Arc<dyn WalStorage>, kill_offset_bytes: u64, stop: Stop) -> KillAtOffset {
        KillAtOffset {
            inner,
            kill_offset_bytes,
            stop,
            fired: AtomicBool::new(false),
        }
    }
}

impl WalStorage for KillAtOffset {
    fn len_bytes(&self) -> io::Result<u64> {
        self.inner.len_bytes()
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset_bytes, buf)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        let end = offset_bytes + data.len() as u64;
        if self.fired.load(Ordering::Acquire) || end < self.kill_offset_bytes {
            return self.inner.write_at(offset_bytes, data);
        }
        let keep = self.kill_offset_bytes.saturating_sub(offset_bytes) as usize;
        if keep > 0 {
            self.inner.write_at(offset_bytes, &data[..keep])?;
        }
        self.fired.store(true, Ordering::Release);
        Err(stop_now(
            self.stop,
            &format!("WAL offset {}", self.kill_offset_bytes),
        ))
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        // Preallocated zeros are not WAL bytes: K counts records only.
        self.inner.allocate(offset_bytes, len_bytes, cadence)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

/// What a [`SyncTracker`] reports about one fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncReport {
    /// The sync completed and covered the first `covered_bytes` of the file.
    Completed { covered_bytes: u64 },
    /// The sync failed (reported before the error reaches the engine).
    Failed,
}

/// A callback receiving [`SyncReport`]s (called on the syncing thread).
pub type SyncReporter = Arc<dyn Fn(SyncReport) + Send + Sync>;

/// Reports, after each successful fdatasync, the file length it covered (the largest end
/// of any write completed before the sync started), and each failed fdatasync.
pub struct SyncTracker {
    inner: Arc<dyn WalStorage>,
    written_end_bytes: AtomicU64,
    report: SyncReporter,
}

impl std::fmt::Debug for SyncTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTracker")
            .field("inner", &self.inner)
            .field("written_end_bytes", &self.written_end_bytes)
            .finish_non_exhaustive()
    }
}

impl SyncTracker {
    pub fn new(inner: Arc<dyn WalStorage>, report: SyncReporter) -> io::Result<SyncTracker> {
        let len = inner.len_bytes()?;
        Ok(SyncTracker {
            inner,
            written_end_bytes: AtomicU64::new(len),
            report,
        })
    }
}

impl WalStorage for SyncTracker {
    fn len_bytes(&self) -> io::Result<u64> {
        self.inner.len_bytes()
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset_bytes, buf)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset_bytes, data)?;
        self.written_end_bytes
            .fetch_max(offset_bytes + data.len() as u64, Ordering::AcqRel);
        Ok(())
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)?;
        self.written_end_bytes.store(len_bytes, Ordering::Release);
        Ok(())
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        // Not counted as written: the zeros hold no records, and counting them would claim
        // that a later sync covered records written over them after it started.
        self.inner.allocate(offset_bytes, len_bytes, cadence)
    }
    fn sync_data(&self) -> io::Result<()> {
        let covered = self.written_end_bytes.load(Ordering::Acquire);
        if let Err(e) = self.inner.sync_data() {
            (self.report)(SyncReport::Failed);
            return Err(e);
        }
        (self.report)(SyncReport::Completed {
            covered_bytes: covered,
        });
        Ok(())
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

/// Which operation [`FailingIo`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOp {
    /// The n-th record write; the first half of its bytes reach the file.
    Write,
    /// The n-th fdatasync after this process's first record write (recovery's own
    /// syncs on open are not counted: the fault is in the workload, not in open).
    Sync,
}

/// Fails the `nth` (1-based) write or fsync of records; every later call succeeds again,
/// as a flaky disk would (the engine must stay poisoned anyway: docs/faults.md E1).
#[derive(Debug)]
pub struct FailingIo {
    inner: Arc<dyn WalStorage>,
    op: FailOp,
    nth: u64,
    count: Mutex<u64>,
    header_len_bytes: u64,
    wrote_record: AtomicBool,
}

impl FailingIo {
    pub fn new(inner: Arc<dyn WalStorage>, op: FailOp, nth: u64) -> FailingIo {
        FailingIo {
            inner,
            op,
            nth,
            count: Mutex::new(0),
            header_len_bytes: engine::wal::HEADER_LEN as u64,
            wrote_record: AtomicBool::new(false),
        }
    }

    fn is_nth(&self) -> bool {
        let mut c = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *c += 1;
        *c == self.nth
    }
}

impl WalStorage for FailingIo {
    fn len_bytes(&self) -> io::Result<u64> {
        self.inner.len_bytes()
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset_bytes, buf)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        if offset_bytes >= self.header_len_bytes {
            self.wrote_record.store(true, Ordering::Release);
        }
        if self.op == FailOp::Write && offset_bytes >= self.header_len_bytes && self.is_nth() {
            self.inner.write_at(offset_bytes, &data[..data.len() / 2])?;
            return Err(io::Error::other(format!(
                "crashkit: injected write failure at offset {offset_bytes}"
            )));
        }
        self.inner.write_at(offset_bytes, data)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        self.inner.allocate(offset_bytes, len_bytes, cadence)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.op == FailOp::Sync && self.wrote_record.load(Ordering::Acquire) && self.is_nth() {
            return Err(io::Error::other("crashkit: injected fdatasync failure"));
        }
        self.inner.sync_data()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
}

/// Stops the process at its `nth` storage call of any kind (a crash during recovery).
#[derive(Debug)]
pub struct KillAfterCalls {
    inner: Arc<dyn WalStorage>,
    nth: u64,
    count: AtomicU64,
    stop: Stop,
}

impl KillAfterCalls {
    pub fn new(inner: Arc<dyn WalStorage>, nth: u64, stop: Stop) -> KillAfterCalls {
        KillAfterCalls {
            inner,
            nth,
            count: AtomicU64::new(0),
            stop,
        }
    }

    fn tick(&self, what: &str) -> io::Result<()> {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.nth {
            return Err(stop_now(
                self.stop,
                &format!("storage call {} ({what})", self.nth),
            ));
        }
        Ok(())
    }
}

impl WalStorage for KillAfterCalls {
    fn len_bytes(&self) -> io::Result<u64> {
        self.tick("len")?;
        self.inner.len_bytes()
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.tick("read")?;
        self.inner.read_at(offset_bytes, buf)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        self.tick("write")?;
        self.inner.write_at(offset_bytes, data)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.tick("set_len")?;
        self.inner.set_len(len_bytes)
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        self.tick("allocate")?;
        self.inner.allocate(offset_bytes, len_bytes, cadence)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.tick("fdatasync")?;
        self.inner.sync_data()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.tick("directory fsync")?;
        self.inner.sync_dir()
    }
}

/// Self-test layer: syncs that return at once and do nothing, above the trace, so the
/// trace shows none of them. `data`: fdatasync (a Strict commit is acknowledged before any
/// sync made it durable); `dir`: the file's directory fsync (its creation may be undone).
#[derive(Debug)]
pub struct SkippedSyncs {
    inner: Arc<dyn WalStorage>,
    data: bool,
    dir: bool,
}

impl WalStorage for SkippedSyncs {
    fn len_bytes(&self) -> io::Result<u64> {
        self.inner.len_bytes()
    }
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset_bytes, buf)
    }
    fn write_at(&self, offset_bytes: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset_bytes, data)
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
    fn allocate(
        &self,
        offset_bytes: u64,
        len_bytes: u64,
        cadence: SyncCadence,
    ) -> io::Result<bool> {
        self.inner.allocate(offset_bytes, len_bytes, cadence)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.data {
            return Ok(());
        }
        self.inner.sync_data()
    }
    fn sync_dir(&self) -> io::Result<()> {
        if self.dir {
            return Ok(());
        }
        self.inner.sync_dir()
    }
}

/// The layers a [`FaultOpener`] stacks (innermost first: trace, wrong sync, io failure,
/// kill, sync tracking).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layers {
    /// Kill once the WAL holds this many bytes, counted as if the file held only the
    /// header when opened (the plan's coordinates).
    pub kill_at_offset_bytes: Option<u64>,
    pub fail: Option<(FailOp, u64)>,
    pub kill_after_calls: Option<u64>,
    /// Trace every file operation (see [`crate::trace`]); the opener needs
    /// [`FaultOpener::tracing`] to know where.
    pub trace: bool,
    /// Self-test: the WAL's fdatasyncs return at once and do nothing.
    pub sync_returns_early: bool,
    /// Self-test: every directory fsync (of a file's directory, or of a directory) returns
    /// at once and does nothing, unseen by the trace.
    pub skip_dir_sync: bool,
}

/// Opens `wal.log` through the configured layers; any other file (e.g. the point-in-time
/// recovery's saved tail) gets a plain file.
pub struct FaultOpener {
    layers: Layers,
    report_synced: Option<SyncReporter>,
    trace: Option<Arc<crate::trace::TraceLog>>,
}

impl std::fmt::Debug for FaultOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultOpener")
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl FaultOpener {
    pub fn new(layers: Layers, report_synced: Option<SyncReporter>) -> FaultOpener {
        FaultOpener {
            layers,
            report_synced,
            trace: None,
        }
    }

    /// When the layers ask for a trace, writes it to [`crate::trace::trace_path`] of
    /// `db_dir` (created empty now, before the engine makes any call).
    pub fn tracing(mut self, db_dir: &Path) -> io::Result<FaultOpener> {
        if self.layers.trace {
            let path = crate::trace::trace_path(db_dir);
            self.trace = Some(Arc::new(crate::trace::TraceLog::create(&path)?));
        }
        Ok(self)
    }

    /// The trace this opener writes, if it traces (the writer mirrors its events there).
    pub fn trace_log(&self) -> Option<Arc<crate::trace::TraceLog>> {
        self.trace.clone()
    }

    fn dir_op<T>(
        &self,
        verb: &str,
        path: &Path,
        to: Option<&Path>,
        run: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        match &self.trace {
            Some(log) => log.dir_op(verb, path, to, run),
            None => run(),
        }
    }
}

impl StorageOpener for FaultOpener {
    fn open(&self, path: &Path) -> io::Result<OpenedStorage> {
        let mut opened = FileOpener.open(path)?;
        if let Some(log) = &self.trace {
            let fid = log.opened(path, opened.created, opened.storage.len_bytes()?);
            opened.storage = Arc::new(crate::trace::TracedStorage::new(
                opened.storage,
                log.clone(),
                fid,
            )?);
        }
        if self.layers.skip_dir_sync {
            opened.storage = Arc::new(SkippedSyncs {
                inner: opened.storage,
                data: false,
                dir: true,
            });
        }
        if path.file_name().and_then(|n| n.to_str()) != Some(engine::WAL_FILE_NAME) {
            return Ok(opened);
        }
        let mut storage = opened.storage;
        let opened_plain = storage.clone();
        if self.layers.sync_returns_early {
            storage = Arc::new(SkippedSyncs {
                inner: storage,
                data: true,
                dir: false,
            });
        }
        if let Some(n) = self.layers.kill_after_calls {
            storage = Arc::new(KillAfterCalls::new(storage, n, Stop::SigKill));
        }
        if let Some((op, nth)) = self.layers.fail {
            storage = Arc::new(FailingIo::new(storage, op, nth));
        }
        if let Some(k) = self.layers.kill_at_offset_bytes {
            // K counts from where this process's first record goes: a later generation
            // appends after the records an earlier one left (read from the plain file, so
            // the layers below count no calls for it).
            let header = engine::wal::HEADER_LEN as u64;
            let start = written_end_of(opened_plain.as_ref())?.max(header);
            storage = Arc::new(KillAtOffset::new(
                storage,
                start + (k - header),
                Stop::SigKill,
            ));
        }
        if let Some(report) = &self.report_synced {
            let report = report.clone();
            storage = Arc::new(SyncTracker::new(storage, report)?);
        }
        Ok(OpenedStorage {
            storage,
            created: opened.created,
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.dir_op("mkdir", path, None, || FileOpener.create_dir(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.layers.skip_dir_sync {
            return Ok(());
        }
        self.dir_op("fsyncdir", dir, None, || FileOpener.sync_dir(dir))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.dir_op("rename", from, Some(to), || FileOpener.rename(from, to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.dir_op("unlink", path, None, || FileOpener.remove_file(path))
    }
}

/// Where a writer stopped writing in a WAL image: past every whole record (frames whose
/// checksum holds, walked from the header) and past the last non-zero byte. The engine
/// preallocates its WAL, so zeros it never wrote follow the log and the file length no
/// longer says where writing stopped. (A record whose last bytes are zeros, cut inside
/// them, reads as whole: the image cannot tell, and recovery reads it the same way.)
pub fn written_end_bytes(image: &[u8]) -> u64 {
    use engine::wal::FrameCodec;
    let header = engine::wal::HEADER_LEN;
    if image.len() <= header {
        return image.len() as u64;
    }
    let codec = FrameCodec::for_image(image).unwrap_or(FrameCodec::V1);
    let mut whole_end = header;
    while let Some(len) = codec
        .inspect(whole_end as u64, &image[whole_end..])
        .record_len()
    {
        whole_end += len;
    }
    let nonzero_end = image.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    whole_end.max(nonzero_end) as u64
}

/// [`written_end_bytes`] of the file behind `storage`.
fn written_end_of(storage: &dyn WalStorage) -> io::Result<u64> {
    let mut image = vec![0u8; storage.len_bytes()? as usize];
    let mut at = 0;
    while at < image.len() {
        match storage.read_at(at as u64, &mut image[at..])? {
            0 => break,
            n => at += n,
        }
    }
    image.truncate(at);
    Ok(written_end_bytes(&image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path) -> Arc<dyn WalStorage> {
        FileOpener.open(&dir.join("wal.log")).unwrap().storage
    }

    #[test]
    fn kill_at_offset_splits_the_crossing_write_exactly_at_k() {
        let dir = tempfile::tempdir().unwrap();
        let inner = file(dir.path());
        let layer = KillAtOffset::new(inner.clone(), 13, Stop::Fail);
        layer.write_at(0, &[1u8; 10]).unwrap();
        let err = layer.write_at(10, &[2u8; 10]).unwrap_err();
        assert!(err.to_string().contains("offset 13"), "{err}");
        assert_eq!(
            inner.len_bytes().unwrap(),
            13,
            "exactly K bytes reach the file"
        );
        let mut buf = [0u8; 13];
        inner.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf[10..], &[2, 2, 2]);
    }

    #[test]
    fn kill_at_offset_fires_when_a_write_ends_exactly_at_k() {
        let dir = tempfile::tempdir().unwrap();
        let inner = file(dir.path());
        let layer = KillAtOffset::new(inner.clone(), 20, Stop::Fail);
        layer.write_at(0, &[1u8; 19]).unwrap();
        assert!(layer.write_at(19, &[3u8; 1]).is_err());
        assert_eq!(inner.len_bytes().unwrap(), 20);
    }

    #[test]
    fn sync_tracker_reports_the_length_written_before_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let failing = Arc::new(FailingIo::new(file(dir.path()), FailOp::Sync, 3));
        let layer =
            SyncTracker::new(failing, Arc::new(move |r| s2.lock().unwrap().push(r))).unwrap();
        layer.write_at(32, &[0u8; 8]).unwrap();
        layer.sync_data().unwrap();
        layer.write_at(40, &[0u8; 8]).unwrap();
        layer.set_len(44).unwrap();
        layer.sync_data().unwrap();
        assert!(layer.sync_data().is_err(), "the third sync fails");
        let completed = |covered_bytes| SyncReport::Completed { covered_bytes };
        assert_eq!(
            *seen.lock().unwrap(),
            vec![completed(40), completed(44), SyncReport::Failed]
        );
    }

    #[test]
    fn failing_io_fails_only_the_nth_record_write_and_leaves_half_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let inner = file(dir.path());
        let layer = FailingIo::new(inner.clone(), FailOp::Write, 2);
        layer.write_at(0, &[0u8; 32]).unwrap(); // header: not counted
        layer.write_at(32, &[1u8; 10]).unwrap();
        assert!(layer.write_at(42, &[2u8; 10]).is_err());
        assert_eq!(inner.len_bytes().unwrap(), 47);
        layer.write_at(47, &[3u8; 1]).unwrap();
    }

    #[test]
    fn kill_after_calls_stops_at_the_nth_call() {
        let dir = tempfile::tempdir().unwrap();
        let layer = KillAfterCalls::new(file(dir.path()), 3, Stop::Fail);
        layer.len_bytes().unwrap();
        layer.write_at(0, b"ab").unwrap();
        assert!(layer.sync_data().is_err());
        layer.sync_data().unwrap();
    }
}
