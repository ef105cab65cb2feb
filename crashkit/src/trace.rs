//! A trace of the writer child's I/O under the engine's seam, written so that it survives
//! SIGKILL, and read back by the parent to know what a power loss may take back.
//!
//! The child appends one text line per event to `<db>.trace` with a single `write(2)` on
//! an `O_APPEND` descriptor, *before* the operation it describes starts (`w`, `sl`, `al`,
//! `s`, ...) and again after it returned (`done`, `fail`, `skip`). Lines from several
//! threads never interleave, and the order of lines in the file is the order in which
//! their writes happened, so the parent knows from the file alone:
//!
//! - which operations completed before a sync began (their `done` line precedes the
//!   sync's begin line): exactly what a *completed* sync (its own `done` line present)
//!   made durable;
//! - what every write overwrote: the begin line carries the bytes the range held before
//!   (hex), unless they were known zeros (preallocated, extended, never written) or past
//!   the end of the file.
//!
//! ```text
//! open <op> <fid> <created 0|1> <len> <path>
//! w <op> <fid> <offset> <len> <size_before> <old hex | ->
//! sl <op> <fid> <new_len> <size_before> <old hex of cut bytes | ->
//! al <op> <fid> <offset> <len> <size_before> <old hex | ->
//! s <op> <fid>                     fdatasync
//! sd <op> <fid>                    fsync of the file's directory
//! dir <op> <verb> <path>[ -> <path>]   mkdir, fsyncdir, rename, unlink
//! done <op> | fail <op> | skip <op>    (skip: allocate returned false, nothing changed)
//! ev <protocol line>               an event the writer just reported (crate::protocol)
//! ```
//!
//! `ev` lines mirror the writer's events (attempt, ack, synced, ...) into the trace right
//! after each was sent to the parent, so the trace alone says which commits had been
//! acknowledged at any point between two operations ([`crate::sweep`] needs that order;
//! the pipe and the trace are two files, so their relative order is otherwise lost).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::wal::WalStorage;

use crate::faults::storage::{FileRef, Hook, Next, Op, Reply};

/// Where the writer of database directory `db_dir` writes its trace: next to the
/// directory, never inside it (the engine owns its directory's contents).
pub fn trace_path(db_dir: &Path) -> PathBuf {
    let name = db_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".to_string());
    db_dir.with_file_name(format!("{name}.trace"))
}

/// Where a recoverer child of `db_dir` writes its trace (a power loss during recovery):
/// beside the writer's, which it must not overwrite.
pub fn recovery_trace_path(db_dir: &Path) -> PathBuf {
    let mut path = trace_path(db_dir).into_os_string();
    path.push(".recovery");
    PathBuf::from(path)
}

/// The child's side: an append-only trace file.
#[derive(Debug)]
pub struct TraceLog {
    file: std::fs::File,
    next_op: AtomicU64,
    next_fid: AtomicU32,
}

/// The id of one traced operation (ties its begin line to its end line).
#[derive(Debug, Clone, Copy)]
pub struct OpId(u64);

impl TraceLog {
    /// Creates (or empties) the trace file at `path`.
    pub fn create(path: &Path) -> io::Result<TraceLog> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // O_APPEND by flag: std refuses `append` together with `truncate`.
            .custom_flags(libc::O_CLOEXEC | libc::O_APPEND)
            .open(path)?;
        Ok(TraceLog {
            file,
            next_op: AtomicU64::new(1),
            next_fid: AtomicU32::new(1),
        })
    }

    /// Writes one line with one `write(2)` (a short write is continued, which only a full
    /// disk causes). A trace that cannot be written cannot prove anything: the child
    /// aborts rather than run on with a trace that claims less than happened.
    fn emit(&self, line: &str) {
        let mut bytes = line.as_bytes();
        while !bytes.is_empty() {
            // SAFETY: `bytes` is a valid buffer of `bytes.len()` bytes for the call.
            let n =
                unsafe { libc::write(self.file.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                panic!(
                    "crashkit trace: write failed: {}",
                    io::Error::last_os_error()
                );
            }
            bytes = &bytes[n as usize..];
        }
    }

    fn begin(&self, describe: impl FnOnce(u64, &mut String)) -> OpId {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let mut line = String::with_capacity(64);
        describe(op, &mut line);
        line.push('\n');
        self.emit(&line);
        OpId(op)
    }

    fn end<T>(&self, op: OpId, result: &io::Result<T>) {
        let word = if result.is_ok() { "done" } else { "fail" };
        self.emit(&format!("{word} {}\n", op.0));
    }

    /// Records a successfully opened file; returns its id in the trace.
    pub fn opened(&self, path: &Path, created: bool, len_bytes: u64) -> u32 {
        let fid = self.next_fid.fetch_add(1, Ordering::Relaxed);
        self.begin(|op, l| {
            let _ = write!(
                l,
                "open {op} {fid} {} {len_bytes} {}",
                u8::from(created),
                one_line(path)
            );
        });
        fid
    }

    /// Mirrors one protocol event line (without its newline) into the trace as `ev <line>`,
    /// after the event was sent: see the module comment.
    pub fn event(&self, line: &str) {
        self.emit(&format!("ev {}\n", line.replace(['\n', '\r'], " ")));
    }

    /// Records a directory operation around `run`.
    pub fn dir_op<T>(
        &self,
        verb: &str,
        path: &Path,
        to: Option<&Path>,
        run: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let op = self.begin(|op, l| {
            let _ = write!(l, "dir {op} {verb} {}", one_line(path));
            if let Some(to) = to {
                let _ = write!(l, " -> {}", one_line(to));
            }
        });
        let result = run();
        self.end(op, &result);
        result
    }
}

fn one_line(path: &Path) -> String {
    path.display().to_string().replace(['\n', '\r'], "?")
}

fn hex_or_dash(bytes: &[u8]) -> String {
    if bytes.iter().all(|b| *b == 0) {
        return "-".to_string();
    }
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What the child knows about one file's content, to record old bytes only when needed.
#[derive(Debug)]
struct Shadow {
    size_bytes: u64,
    /// Every byte in `[fresh_from_bytes, size_bytes)` is a zero nobody wrote (extension
    /// or preallocation): overwriting it needs no read to know the old content.
    fresh_from_bytes: u64,
}

/// One traced file: its id in the trace and what the child knows of its content.
#[derive(Debug)]
struct TracedFile {
    fid: u32,
    shadow: Mutex<Shadow>,
}

/// The trace's hook under the seam: records every operation on every file, and the
/// directory operations (mkdir, fsyncdir, rename, unlink). It must be the innermost hook,
/// so that it records exactly what reaches the files; an operation a hook above answers
/// itself (a skipped sync) is not in the trace.
#[derive(Debug)]
pub struct TraceHook {
    log: Arc<TraceLog>,
    files: Mutex<BTreeMap<u64, Arc<TracedFile>>>,
}

impl TraceHook {
    pub fn new(log: Arc<TraceLog>) -> TraceHook {
        TraceHook {
            log,
            files: Mutex::new(BTreeMap::new()),
        }
    }

    fn traced(&self, file: &FileRef) -> Option<Arc<TracedFile>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&file.id)
            .cloned()
    }
}

fn lock(shadow: &Mutex<Shadow>) -> std::sync::MutexGuard<'_, Shadow> {
    shadow.lock().unwrap_or_else(|p| p.into_inner())
}

/// The bytes `[from, to)` held before an operation, as a trace field: `-` when they are
/// known zeros or past the end of the file.
fn old_content(raw: &dyn WalStorage, shadow: &Shadow, from: u64, to: u64) -> io::Result<String> {
    let end = to.min(shadow.size_bytes).min(shadow.fresh_from_bytes);
    if from >= end {
        return Ok("-".to_string());
    }
    let mut buf = vec![0u8; (end - from) as usize];
    let mut at = 0;
    while at < buf.len() {
        match raw.read_at(from + at as u64, &mut buf[at..])? {
            0 => break,
            n => at += n,
        }
    }
    Ok(hex_or_dash(&buf))
}

impl Hook for TraceHook {
    fn opened(&self, file: &FileRef) -> io::Result<()> {
        let size_bytes = file.raw.len_bytes()?;
        let fid = self.log.opened(&file.path, file.created, size_bytes);
        let traced = Arc::new(TracedFile {
            fid,
            shadow: Mutex::new(Shadow {
                size_bytes,
                fresh_from_bytes: size_bytes,
            }),
        });
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(file.id, traced);
        Ok(())
    }

    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        let Some(file) = file else {
            return match op {
                Op::CreateDir { path } => self.log.dir_op("mkdir", path, None, || next(op)),
                Op::SyncDir { dir } => self.log.dir_op("fsyncdir", dir, None, || next(op)),
                Op::Rename { from, to } => self.log.dir_op("rename", from, Some(to), || next(op)),
                Op::RemoveFile { path } => self.log.dir_op("unlink", path, None, || next(op)),
                other => next(other),
            };
        };
        let Some(traced) = self.traced(file) else {
            return next(op);
        };
        let (log, fid, raw) = (&self.log, traced.fid, file.raw.as_ref());
        match op {
            Op::Write { offset_bytes, data } => {
                let mut shadow = lock(&traced.shadow);
                let end = offset_bytes + data.len() as u64;
                let old = old_content(raw, &shadow, offset_bytes, end)?;
                let size_before = shadow.size_bytes;
                let id = log.begin(|op, l| {
                    let _ = write!(
                        l,
                        "w {op} {fid} {offset_bytes} {} {size_before} {old}",
                        data.len()
                    );
                });
                let result = next(Op::Write { offset_bytes, data });
                log.end(id, &result);
                // Even a failed write may have changed bytes: forget they were fresh.
                shadow.size_bytes = shadow.size_bytes.max(end);
                if end > shadow.fresh_from_bytes {
                    shadow.fresh_from_bytes = end;
                }
                result
            }
            Op::SetLen { len_bytes } => {
                let mut shadow = lock(&traced.shadow);
                let size_before = shadow.size_bytes;
                let old = old_content(raw, &shadow, len_bytes, size_before)?;
                let id = log.begin(|op, l| {
                    let _ = write!(l, "sl {op} {fid} {len_bytes} {size_before} {old}");
                });
                let result = next(op);
                log.end(id, &result);
                if result.is_ok() {
                    shadow.size_bytes = len_bytes;
                    shadow.fresh_from_bytes = shadow.fresh_from_bytes.min(len_bytes);
                }
                result
            }
            Op::Allocate {
                offset_bytes,
                len_bytes,
                ..
            } => {
                let mut shadow = lock(&traced.shadow);
                let end = offset_bytes + len_bytes;
                let size_before = shadow.size_bytes;
                let old = old_content(raw, &shadow, offset_bytes, end)?;
                let id = log.begin(|op, l| {
                    let _ = write!(
                        l,
                        "al {op} {fid} {offset_bytes} {len_bytes} {size_before} {old}"
                    );
                });
                let result = next(op);
                match &result {
                    Ok(Reply::Allocated(true)) => {
                        log.emit(&format!("done {}\n", id.0));
                        shadow.size_bytes = shadow.size_bytes.max(end);
                        if end >= shadow.size_bytes && offset_bytes < shadow.fresh_from_bytes {
                            shadow.fresh_from_bytes = offset_bytes;
                        }
                    }
                    Ok(_) => log.emit(&format!("skip {}\n", id.0)),
                    Err(_) => {
                        log.end(id, &result);
                        // A failed allocation may have extended the file part-way and
                        // written anything there: nothing past the old end counts as fresh.
                        let len = raw.len_bytes().unwrap_or(size_before);
                        shadow.fresh_from_bytes = shadow.fresh_from_bytes.min(size_before);
                        shadow.size_bytes = size_before.max(len);
                    }
                }
                result
            }
            Op::SyncData | Op::SyncFileDir => {
                let word = if matches!(op, Op::SyncData) {
                    "s"
                } else {
                    "sd"
                };
                let id = log.begin(|op, l| {
                    let _ = write!(l, "{word} {op} {fid}");
                });
                let result = next(op);
                log.end(id, &result);
                result
            }
            other => next(other),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent's side: reading a trace back.

/// What a traced data operation did to its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOp {
    /// `write_at(offset, len)`.
    Write { offset_bytes: u64, len_bytes: u64 },
    /// `set_len(len)`.
    SetLen { len_bytes: u64 },
    /// `allocate(offset, len)` that reported it allocated (zeros over the range).
    Allocate { offset_bytes: u64, len_bytes: u64 },
    /// `sync_data()`.
    Sync,
    /// `sync_dir()` of the file's own directory.
    SyncDir,
}

/// One traced operation on a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOp {
    pub fid: u32,
    pub op: DataOp,
    /// The file's size when the operation began (as the child saw it).
    pub size_before_bytes: u64,
    /// What the range held before (its first bytes; the rest, up to `size_before_bytes`,
    /// were zeros). Empty: zeros or nothing.
    pub old: Vec<u8>,
    /// Line index of the begin line.
    pub begin_line: usize,
    /// Line index of the `done` line; `None` when it failed, was skipped or was still
    /// running when the child died.
    pub done_line: Option<usize>,
    /// Line index of its `done`, `fail` or `skip` line (`None`: still running at the
    /// crash).
    pub ended_line: Option<usize>,
    /// Whether it ended with `fail` or `skip` (it surely changed nothing durable, or, for
    /// a failed write, possibly some bytes: treated like an unfinished one).
    pub failed: bool,
    pub skipped: bool,
}

impl FileOp {
    /// The byte range `[from, to)` the operation may have changed: a write's or
    /// allocation's range, or between the old and the new size of a size change; `None`
    /// for syncs.
    pub fn touched_range(&self) -> Option<(u64, u64)> {
        match self.op {
            DataOp::Write {
                offset_bytes,
                len_bytes,
            }
            | DataOp::Allocate {
                offset_bytes,
                len_bytes,
            } => Some((offset_bytes, offset_bytes + len_bytes)),
            DataOp::SetLen { len_bytes } => Some((
                len_bytes.min(self.size_before_bytes),
                len_bytes.max(self.size_before_bytes),
            )),
            DataOp::Sync | DataOp::SyncDir => None,
        }
    }
}

/// A file the child opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedFile {
    pub fid: u32,
    pub path: PathBuf,
    pub created: bool,
    pub len_at_open_bytes: u64,
    pub line: usize,
}

/// A directory operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirOp {
    pub verb: String,
    pub path: PathBuf,
    pub to: Option<PathBuf>,
    pub begin_line: usize,
    pub done_line: Option<usize>,
    /// It returned an error (e.g. `mkdir` of a directory that exists): it changed nothing.
    pub failed: bool,
}

/// A parsed trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    pub files: Vec<OpenedFile>,
    pub ops: Vec<FileOp>,
    pub dir_ops: Vec<DirOp>,
    /// `(line index, protocol line)` of every mirrored event (`ev` lines), in order.
    pub events: Vec<(usize, String)>,
    /// Lines that did not parse (a torn last line; anything else is a harness bug).
    pub bad_lines: usize,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl Trace {
    /// Reads the trace file of `db_dir`'s writer; a missing file is an empty trace (the
    /// child died before it could create it).
    pub fn read_for(db_dir: &Path) -> io::Result<Trace> {
        Trace::read_path(&trace_path(db_dir))
    }

    /// Reads the trace at `path`; a missing file is an empty trace.
    pub fn read_path(path: &Path) -> io::Result<Trace> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Trace::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Trace::default()),
            Err(e) => Err(e),
        }
    }

    /// Parses trace text. Only lines that end in a newline count: a SIGKILL between the
    /// bytes of a line's `write` would leave a partial one, which proves nothing.
    pub fn parse(text: &str) -> Trace {
        let mut trace = Trace::default();
        let mut op_index: BTreeMap<u64, (bool, usize)> = BTreeMap::new(); // op -> (is dir op, index)
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        for (line_idx, line) in complete.lines().enumerate() {
            if Trace::parse_line(&mut trace, &mut op_index, line_idx, line).is_none() {
                trace.bad_lines += 1;
            }
        }
        trace
    }

    fn parse_line(
        trace: &mut Trace,
        op_index: &mut BTreeMap<u64, (bool, usize)>,
        line_idx: usize,
        line: &str,
    ) -> Option<()> {
        let mut parts = line.splitn(2, ' ');
        let word = parts.next()?;
        let rest = parts.next().unwrap_or("");
        let nums = |s: &str, n: usize| -> Option<(Vec<u64>, String)> {
            let mut it = s.splitn(n + 1, ' ');
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(it.next()?.parse().ok()?);
            }
            Some((v, it.next().unwrap_or("").to_string()))
        };
        match word {
            "ev" => trace.events.push((line_idx, rest.to_string())),
            "open" => {
                let (v, path) = nums(rest, 4)?;
                trace.files.push(OpenedFile {
                    fid: u32::try_from(v[1]).ok()?,
                    created: v[2] == 1,
                    len_at_open_bytes: v[3],
                    path: PathBuf::from(path),
                    line: line_idx,
                });
            }
            "w" | "al" => {
                let (v, old) = nums(rest, 5)?;
                let op = if word == "w" {
                    DataOp::Write {
                        offset_bytes: v[2],
                        len_bytes: v[3],
                    }
                } else {
                    DataOp::Allocate {
                        offset_bytes: v[2],
                        len_bytes: v[3],
                    }
                };
                Trace::push_op(trace, op_index, line_idx, v[0], v[1], op, v[4], &old)?;
            }
            "sl" => {
                let (v, old) = nums(rest, 4)?;
                let op = DataOp::SetLen { len_bytes: v[2] };
                Trace::push_op(trace, op_index, line_idx, v[0], v[1], op, v[3], &old)?;
            }
            "s" | "sd" => {
                let (v, _) = nums(rest, 2)?;
                let op = if word == "s" {
                    DataOp::Sync
                } else {
                    DataOp::SyncDir
                };
                Trace::push_op(trace, op_index, line_idx, v[0], v[1], op, 0, "-")?;
            }
            "dir" => {
                let (op, rest) = rest.split_once(' ')?;
                let (verb, paths) = rest.split_once(' ')?;
                let (path, to) = match paths.split_once(" -> ") {
                    Some((a, b)) => (PathBuf::from(a), Some(PathBuf::from(b))),
                    None => (PathBuf::from(paths), None),
                };
                op_index.insert(op.parse().ok()?, (true, trace.dir_ops.len()));
                trace.dir_ops.push(DirOp {
                    verb: verb.to_string(),
                    path,
                    to,
                    begin_line: line_idx,
                    done_line: None,
                    failed: false,
                });
            }
            "done" | "fail" | "skip" => {
                let (is_dir, idx) = *op_index.get(&rest.parse::<u64>().ok()?)?;
                if is_dir {
                    let d = trace.dir_ops.get_mut(idx)?;
                    match word {
                        "done" => d.done_line = Some(line_idx),
                        "fail" => d.failed = true,
                        _ => {}
                    }
                } else {
                    let o = trace.ops.get_mut(idx)?;
                    o.ended_line = Some(line_idx);
                    match word {
                        "done" => o.done_line = Some(line_idx),
                        "fail" => o.failed = true,
                        _ => o.skipped = true,
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }

    #[expect(clippy::too_many_arguments, reason = "one call per parsed line kind")]
    fn push_op(
        trace: &mut Trace,
        op_index: &mut BTreeMap<u64, (bool, usize)>,
        line_idx: usize,
        op_id: u64,
        fid: u64,
        op: DataOp,
        size_before_bytes: u64,
        old_hex: &str,
    ) -> Option<()> {
        op_index.insert(op_id, (false, trace.ops.len()));
        trace.ops.push(FileOp {
            fid: u32::try_from(fid).ok()?,
            op,
            size_before_bytes,
            old: unhex(old_hex)?,
            begin_line: line_idx,
            done_line: None,
            ended_line: None,
            failed: false,
            skipped: false,
        });
        Some(())
    }

    /// The ids of every file opened at a path whose file name is `name`.
    pub fn fids_named(&self, name: &str) -> Vec<u32> {
        self.files
            .iter()
            .filter(|f| f.path.file_name().and_then(|n| n.to_str()) == Some(name))
            .map(|f| f.fid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::storage::FaultOpener;
    use engine::wal::{StorageOpener, SyncCadence};

    #[test]
    fn a_trace_records_old_bytes_only_where_they_are_not_known_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let opener = FaultOpener::new(vec![crate::faults::power_loss::writer_hook(&db).unwrap()]);
        let s = opener.open(&db.join("wal.log")).unwrap().storage;
        let fid = 1;
        s.write_at(0, &[7u8; 10]).unwrap();
        s.sync_data().unwrap();
        assert!(s.allocate(10, 100, SyncCadence::Deferred).unwrap());
        s.write_at(10, &[8u8; 5]).unwrap(); // into fresh zeros: no old bytes
        s.write_at(4, &[9u8; 2]).unwrap(); // over written bytes: old bytes recorded
        s.set_len(12).unwrap(); // cuts [12, 110): bytes 12..15 were written
        drop(s);
        let trace = Trace::read_for(&db).unwrap();
        assert_eq!(trace.bad_lines, 0);
        assert_eq!(trace.fids_named("wal.log"), vec![fid]);
        let ops = &trace.ops;
        assert_eq!(ops.len(), 6);
        assert!(ops.iter().all(|o| o.done_line.is_some()));
        assert_eq!(ops[0].old, Vec::<u8>::new(), "past the end of the file");
        assert_eq!(ops[1].op, DataOp::Sync);
        assert_eq!(ops[2].size_before_bytes, 10);
        assert_eq!(ops[3].old, Vec::<u8>::new(), "preallocated zeros");
        assert_eq!(ops[4].old, vec![7u8, 7]);
        assert_eq!(ops[5].op, DataOp::SetLen { len_bytes: 12 });
        assert_eq!(
            ops[5].old,
            vec![8u8, 8, 8],
            "the cut written bytes, then zeros"
        );
        assert!(ops[1].done_line < ops[2].begin_line.into());
    }

    #[test]
    fn a_torn_last_line_and_an_unfinished_operation_are_not_done() {
        let trace = Trace::parse(
            "open 1 1 1 32 /x/wal.log\nw 2 1 32 100 32 -\ndone 2\ns 3 1\nw 4 1 132 9 132 -\ndone 4\ndo",
        );
        assert_eq!(trace.bad_lines, 0, "the torn line is not a line");
        assert_eq!(trace.ops.len(), 3);
        assert_eq!(trace.ops[0].done_line, Some(2));
        assert_eq!(trace.ops[1].done_line, None, "the sync never completed");
        assert_eq!(trace.ops[2].done_line, Some(5));
    }
}
