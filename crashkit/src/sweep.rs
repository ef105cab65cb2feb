//! `torture sweep`: every crash point of one writer run, each crossed with the legal
//! crash states of the bytes no completed fdatasync covered, each recovered and checked.
//!
//! A campaign ([`crate::campaign`]) samples: one kill point and a few crash states per
//! cycle. A sweep is exhaustive over the crash points of one small single-threaded
//! workload instead:
//!
//! 1. The writer child runs the case's workload ONCE, to completion, tracing every seam
//!    operation ([`crate::trace`]) and mirroring every event it reports (attempt, ack,
//!    synced) into the same trace, so the trace alone orders acknowledgements among
//!    operations.
//! 2. The crash points are every operation boundary of the trace (every line boundary,
//!    except one directly followed by a mirrored event: the same disk with fewer
//!    acknowledgements known, so a weaker check of the point after it) and every byte of
//!    every write (a crash after the first `b` bytes of the write reached the page cache,
//!    `b` in `1..len`). The content of every file at every point is rebuilt exactly by
//!    undoing the run's operations from the final files backwards (each traced operation
//!    carries what it overwrote).
//! 3. At each point the disk model ([`DiskModel`]) of `wal.log` says which bytes no
//!    completed fdatasync covered. Its 512-byte sectors get the fates of
//!    [`crate::power_loss`]: when the combinations of the alphabet below (times an
//!    uncovered size change kept or undone) number at most `states_per_point`, every
//!    combination is checked (the point is *exhaustive*); otherwise state 0 (everything
//!    kept) and `states_per_point - 1` states drawn by [`crate::power_loss::draw`] from
//!    ChaCha8 streams of the seed ([`Purpose::Sweep`], one stream per point and state) are
//!    (*sampled*). The exhaustive alphabet per sector whose content changed is kept, lost,
//!    zeroed, garbage and torn after half the sector; a sector whose bytes did not change
//!    is kept or garbage (and zeroed when its old bytes are not zeros), since the other
//!    fates leave it as it is. When directory entries no directory fsync covered exist
//!    (docs/faults.md P3), one more state undoes all of them on top of state 0.
//! 4. Each state is recovered **in-process** on an in-memory file system behind the
//!    engine's seam ([`MemFs`]; only the `LOCK` file is real) and checked against the
//!    oracle of that point with the checker's own verdicts
//!    ([`checker::explain_recovered`]: R1-R4 for the one commit order of a single writer),
//!    plus R5 (the torn tail is cut exactly at the last whole record before the first
//!    damaged byte, and reported with its exact length), P4 (recovery's fdatasync covered
//!    what it accepted) and R7 (a second open recovers the same state). Unlike a campaign
//!    cycle it makes no commits after recovery (the campaign checks those). The oracle at
//!    a point: state 0 is what a process kill leaves, so every commit acknowledged by then
//!    must be there; in every other state a Strict acknowledgement must be there, a
//!    Batched or Async one only when a completed fdatasync covered it
//!    ([`Ledger::mark_required`]); in-doubt commits may be there, whole, as a prefix.
//!    A refused open is `legal-state-refused`.
//! 5. States whose files and oracle equal an already checked state's are counted as
//!    duplicates and not recovered again.
//!
//! Guarantees: the points, the states and their bytes are a pure function of the trace,
//! the seed and `states_per_point`, so `--point P --state I` rebuilds a finding's state
//! bit-exactly whenever the writer's run repeats (Strict and Async single-threaded runs
//! do; a Batched run's background fdatasyncs land at different places from run to run).
//! A finding keeps the state's files, the crashed page-cache image and the trace.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::case::{Case, KillKind, Limits, ModeName, Purpose};
use crate::checker::{self, Base, CheckInput};
use crate::child::{child_args, Role};
use crate::crash_state::{uncovered_entries, DiskModel, EntryUndo, SECTOR_BYTES};
use crate::cycle::ChildCommand;
use crate::finding::{FindingKind, StatsSummary, Violation};
use crate::mem_storage::MemFs;
use crate::oracle::{self, Ledger, State};
use crate::power_loss::{self, CrashState, Fate, Shape};
use crate::protocol::Event;
use crate::trace::{DataOp, Trace};
use crate::workload::{RecordSpan, Workload};
use crate::wrong_engine::WrongEngine;

/// Crash states per crash point unless told otherwise: every combination up to this many,
/// else this many (state 0 and drawn ones).
pub const DEFAULT_STATES_PER_POINT: usize = 5;
/// Findings after which a sweep stops (a broken engine fails almost everywhere).
pub const DEFAULT_FINDINGS_MAX: usize = 5;
/// The kill offset that never fires: the writer runs to completion.
const NEVER_KILL_OFFSET_BYTES: u64 = 1 << 40;
/// Points a worker takes at a time (neighbouring points share their trace prefix).
const POINTS_PER_CHUNK: usize = 64;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub seed: u64,
    pub mode: ModeName,
    /// The workload's caps (see [`limits_for_log_bytes`]).
    pub limits: Limits,
    /// Combinations checked exhaustively up to this many per point, else this many sampled
    /// (at least 1).
    pub states_per_point: usize,
    /// Worker threads checking states (at least 1).
    pub jobs: usize,
    /// Scratch space (the writer's directory, the workers' lock directories).
    pub work_dir: PathBuf,
    /// Where findings keep their files (`None`: nowhere).
    pub artifacts_dir: Option<PathBuf>,
    pub child: ChildCommand,
    /// Self-test: a wrong engine acting in the writer (see [`WrongEngine::acts_in_writer`]).
    pub wrong: Option<WrongEngine>,
    /// Stop after this many findings (at least 1).
    pub findings_max: usize,
    /// Check only this point (and only this state of it).
    pub only: Option<(usize, Option<usize>)>,
}

/// The caps that make `seed`'s workload write about `log_bytes` of WAL (at most that,
/// as predicted by [`Workload::expected_wal_len_bytes`]): every transaction with the
/// largest value cap that fits; when even 8-byte values do not fit, values of at most an
/// eighth of the budget and the most transactions that fit (at least one).
pub fn limits_for_log_bytes(seed: u64, log_bytes: u64) -> Limits {
    let len_with = |limits: &Limits| Workload::generate(seed, limits).expected_wal_len_bytes();
    let with_cap = |cap: usize| Limits {
        value_len_max: Some(cap),
        ..Limits::default()
    };
    let (mut lo, mut hi) = (8usize, crate::workload::VALUE_LEN_MAX);
    if len_with(&with_cap(lo)) <= log_bytes {
        // The largest cap in lo..=hi that fits (the length grows with the cap).
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if len_with(&with_cap(mid)) <= log_bytes {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return with_cap(lo);
    }
    let cap = ((log_bytes / 8) as usize).clamp(8, crate::workload::VALUE_LEN_MAX);
    let mut limits = Limits {
        txns_max: Some(1),
        ..with_cap(cap)
    };
    for n in 2..=crate::workload::TXNS_MAX {
        let candidate = Limits {
            txns_max: Some(n),
            ..limits
        };
        if len_with(&candidate) > log_bytes {
            break;
        }
        limits = candidate;
    }
    limits
}

/// Why a sweep could not run (nothing was proven either way), or a usage mistake.
#[derive(Debug)]
#[non_exhaustive]
pub enum SweepError {
    /// A file operation of the harness failed.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The writer child could not start, or did not run its workload to the end.
    Writer { detail: String },
    /// The trace does not describe the files the writer left (a harness bug).
    BadTrace { detail: String },
    /// `--point` or `--state` names something the run does not have (a usage error).
    NoSuchPoint { detail: String },
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepError::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            SweepError::Writer { detail } => write!(f, "the writer run failed: {detail}"),
            SweepError::BadTrace { detail } => {
                write!(f, "the writer's trace is unusable: {detail}")
            }
            SweepError::NoSuchPoint { detail } => f.write_str(detail),
        }
    }
}

impl std::error::Error for SweepError {}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SweepError {
    let context = context.into();
    move |source| SweepError::Io { context, source }
}

/// One state that broke the contract.
#[derive(Debug, Clone, Serialize)]
pub struct SweepFinding {
    #[serde(flatten)]
    pub violation: Violation,
    pub point: usize,
    pub state: usize,
    /// Where the crash happened (trace line, operation, bytes of an in-flight write).
    pub point_description: String,
    /// Which units were kept, lost, zeroed, garbage or torn, the size, which directory
    /// entries were undone.
    pub state_description: String,
    pub artifacts_dir: Option<PathBuf>,
    pub repro: String,
}

impl fmt::Display for SweepFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.violation;
        writeln!(f, "FINDING {}: {}", v.kind, v.detail)?;
        writeln!(f, "  point {}: {}", self.point, self.point_description)?;
        writeln!(f, "  state {}: {}", self.state, self.state_description)?;
        v.write_evidence(f)?;
        if let Some(dir) = &self.artifacts_dir {
            writeln!(f, "  artifacts: {}", dir.display())?;
        }
        write!(f, "  reproduce: {}", self.repro)
    }
}

/// The figures of one sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSummary {
    pub seed: String,
    pub mode: ModeName,
    pub limits: Limits,
    pub states_per_point: usize,
    /// The WAL's length after the writer's run.
    pub wal_bytes: u64,
    /// Lines of the writer's trace and operations in it.
    pub trace_lines: usize,
    pub trace_ops: usize,
    pub commits_acked: usize,
    /// Crash points: operation boundaries plus bytes inside writes.
    pub points: usize,
    pub boundary_points: usize,
    pub write_byte_points: usize,
    /// Points swept (all of them unless `--point` or a stop cut it short).
    pub points_swept: usize,
    pub points_exhaustive: usize,
    pub points_sampled: usize,
    /// States recovered and checked, of which exhaustive-point states.
    pub states_checked: u64,
    pub states_exhaustive: u64,
    pub states_sampled: u64,
    /// States that undid directory entries.
    pub states_entries_undone: u64,
    /// States equal to one already checked (same files, same oracle): not recovered again.
    pub states_duplicate: u64,
    pub elapsed_s: f64,
    pub states_per_s: f64,
    pub findings: usize,
    /// Whether the sweep stopped at `findings_max` before the last point.
    pub stopped_early: bool,
}

impl fmt::Display for SweepSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sweep seed {} mode {}: {} WAL bytes, {} trace operations, {} commits acknowledged",
            self.seed, self.mode, self.wal_bytes, self.trace_ops, self.commits_acked
        )?;
        writeln!(
            f,
            "{} crash points ({} operation boundaries, {} bytes inside writes), {} swept: {} exhaustive, {} sampled (cap {} states per point)",
            self.points,
            self.boundary_points,
            self.write_byte_points,
            self.points_swept,
            self.points_exhaustive,
            self.points_sampled,
            self.states_per_point
        )?;
        writeln!(
            f,
            "{} states checked ({} at exhaustive points, {} sampled, {} with directory entries undone), {} duplicates skipped",
            self.states_checked,
            self.states_exhaustive,
            self.states_sampled,
            self.states_entries_undone,
            self.states_duplicate
        )?;
        writeln!(
            f,
            "{:.1}s, {:.0} states/s: {} finding(s){}",
            self.elapsed_s,
            self.states_per_s,
            self.findings,
            if self.stopped_early {
                " (stopped early)"
            } else {
                ""
            }
        )
    }
}

/// A sweep's result.
#[derive(Debug, Clone)]
pub struct SweepReport {
    pub summary: SweepSummary,
    pub findings: Vec<SweepFinding>,
}

// ---------------------------------------------------------------------------------------
// The writer's run, and the files at any point of it.

/// One file (inode) of the writer's database directory across the run.
#[derive(Debug)]
struct FileHistory {
    /// Its path relative to the database directory when opened, and after each completed
    /// rename: `(line the rename completed on, new path)`.
    path_at_open: PathBuf,
    renames: Vec<(usize, PathBuf)>,
    open_line: usize,
    /// Indexes into `trace.ops` of its writes, size changes and allocations, in effect
    /// order (the order they ended in).
    ops: Vec<usize>,
    /// `ended[k]`: the line `ops[k]` ended on (`usize::MAX`: never).
    ended: Vec<usize>,
    /// The content before any operation, and after each.
    initial: Vec<u8>,
    after: Vec<Vec<u8>>,
}

impl FileHistory {
    fn path_at(&self, lines: usize) -> &Path {
        self.renames
            .iter()
            .rev()
            .find(|(line, _)| *line < lines)
            .map_or(&self.path_at_open, |(_, p)| p)
    }

    /// The content once the first `lines` lines happened (an unfinished operation not at
    /// all).
    fn content_at(&self, lines: usize) -> &[u8] {
        match self.ended.partition_point(|e| *e < lines) {
            0 => &self.initial,
            k => &self.after[k - 1],
        }
    }
}

/// The writer's run, ready to be swept.
struct Run {
    case: Case,
    workload: Workload,
    trace: Trace,
    trace_text: String,
    db_dir: PathBuf,
    files: Vec<FileHistory>,
    /// Whether line `i` is a mirrored event.
    is_event: Vec<bool>,
    points: Vec<Point>,
    boundary_points: usize,
    /// The whole run's ledger, its first versions and prefix states (one writer: every
    /// point's ledger is a prefix of it).
    full_ledger: Ledger,
    firsts: Vec<u64>,
    states: Vec<State>,
    written: Vec<RecordSpan>,
}

/// A crash point: the first `lines` trace lines happened; `in_flight`: the write whose
/// begin line is the last of them had its first `bytes` bytes reach the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    lines: usize,
    in_flight: Option<(usize, u64)>,
}

/// The undone operation `op` on `content` (its state right after `op`).
fn undo(op: &crate::trace::FileOp, content: &mut Vec<u8>) {
    let size_before = op.size_before_bytes as usize;
    let restore = |content: &mut Vec<u8>, from: usize, to: usize| {
        let to = to.min(size_before);
        if content.len() < to {
            content.resize(to, 0);
        }
        if to > from {
            let old = &op.old[..op.old.len().min(to - from)];
            content[from..from + old.len()].copy_from_slice(old);
            content[from + old.len()..to].fill(0);
        }
    };
    match op.op {
        DataOp::Write {
            offset_bytes,
            len_bytes,
        }
        | DataOp::Allocate {
            offset_bytes,
            len_bytes,
        } => {
            restore(
                content,
                offset_bytes as usize,
                (offset_bytes + len_bytes) as usize,
            );
            content.resize(size_before, 0);
        }
        DataOp::SetLen { len_bytes } => {
            content.resize(size_before, 0);
            restore(content, len_bytes as usize, size_before);
        }
        DataOp::Sync | DataOp::SyncDir => {}
    }
}

fn rel(db_dir: &Path, path: &Path) -> Option<PathBuf> {
    path.strip_prefix(db_dir).ok().map(Path::to_path_buf)
}

impl Run {
    fn load(case: Case, db_dir: &Path, trace_text: String) -> Result<Run, SweepError> {
        let trace = Trace::parse(&trace_text);
        let bad = |detail: String| SweepError::BadTrace { detail };
        if trace.bad_lines > 0 {
            return Err(bad(format!("{} lines do not parse", trace.bad_lines)));
        }
        let n_lines = trace_text.lines().count();
        let mut is_event = vec![false; n_lines];
        for (line, _) in &trace.events {
            is_event[*line] = true;
        }
        // Files (inodes): a file opened without being created at the path a live file has
        // is that file.
        let mut files: Vec<FileHistory> = Vec::new();
        let mut fid_file: std::collections::BTreeMap<u32, usize> = Default::default();
        for f in &trace.files {
            let Some(path) = rel(db_dir, &f.path) else {
                continue;
            };
            let existing = files
                .iter()
                .position(|h| !f.created && h.path_at(f.line) == path);
            let idx = existing.unwrap_or_else(|| {
                files.push(FileHistory {
                    path_at_open: path,
                    renames: Vec::new(),
                    open_line: f.line,
                    ops: Vec::new(),
                    ended: Vec::new(),
                    initial: Vec::new(),
                    after: Vec::new(),
                });
                files.len() - 1
            });
            fid_file.insert(f.fid, idx);
        }
        for d in trace.dir_ops.iter().filter(|d| d.verb == "rename") {
            let (Some(done), Some(to)) = (d.done_line, &d.to) else {
                continue;
            };
            let (Some(from), Some(to)) = (rel(db_dir, &d.path), rel(db_dir, to)) else {
                continue;
            };
            if let Some(h) = files
                .iter_mut()
                .find(|h| h.open_line < d.begin_line && h.path_at(d.begin_line) == from)
            {
                h.renames.push((done, to));
            }
        }
        for (i, op) in trace.ops.iter().enumerate() {
            if op.skipped || matches!(op.op, DataOp::Sync | DataOp::SyncDir) {
                continue;
            }
            if op.failed || op.ended_line.is_none() {
                return Err(bad(format!(
                    "operation on line {} failed or never ended in a run that completed",
                    op.begin_line
                )));
            }
            if let Some(h) = fid_file.get(&op.fid) {
                files[*h].ops.push(i);
            }
        }
        for h in &mut files {
            h.ops
                .sort_by_key(|i| (trace.ops[*i].ended_line, trace.ops[*i].begin_line));
            h.ended = h
                .ops
                .iter()
                .map(|i| trace.ops[*i].ended_line.unwrap_or(usize::MAX))
                .collect();
            let final_path = db_dir.join(h.path_at(usize::MAX));
            let mut content = std::fs::read(&final_path)
                .map_err(io_err(format!("reading {}", final_path.display())))?;
            let mut after = vec![Vec::new(); h.ops.len()];
            for k in (0..h.ops.len()).rev() {
                after[k] = content.clone();
                undo(&trace.ops[h.ops[k]], &mut content);
            }
            let len_at_open = trace
                .files
                .iter()
                .find(|f| f.line == h.open_line)
                .map_or(0, |f| f.len_at_open_bytes);
            if content.len() as u64 != len_at_open {
                return Err(bad(format!(
                    "undoing every operation on {} gives {} bytes, it had {len_at_open} when opened",
                    h.path_at_open.display(),
                    content.len()
                )));
            }
            h.initial = content;
            h.after = after;
        }
        // Points: boundaries not directly followed by an event, then the bytes of a write
        // whose begin line ends the prefix.
        let mut points = Vec::new();
        let mut boundary_points = 0;
        let write_begun_on: std::collections::BTreeMap<usize, usize> = trace
            .ops
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.op, DataOp::Write { .. }) && fid_file.contains_key(&o.fid))
            .map(|(i, o)| (o.begin_line, i))
            .collect();
        for lines in 0..=n_lines {
            if is_event.get(lines).is_none_or(|e| !e) {
                points.push(Point {
                    lines,
                    in_flight: None,
                });
                boundary_points += 1;
            }
            if let Some(op) = lines.checked_sub(1).and_then(|l| write_begun_on.get(&l)) {
                if let DataOp::Write { len_bytes, .. } = trace.ops[*op].op {
                    for b in 1..len_bytes {
                        points.push(Point {
                            lines,
                            in_flight: Some((*op, b)),
                        });
                    }
                }
            }
        }
        let workload = Workload::for_case(&case);
        let full_ledger = ledger_of(&trace, usize::MAX)?;
        let base = Base::empty();
        let firsts = oracle::first_versions(&workload, &full_ledger, base.next_version);
        let states = oracle::prefix_states(&workload, &full_ledger, &base.state, &firsts);
        let final_wal = files
            .iter()
            .find(|h| h.path_at(usize::MAX) == Path::new(engine::WAL_FILE_NAME))
            .map(|h| h.content_at(usize::MAX).to_vec())
            .unwrap_or_default();
        let layout = workload.record_layout();
        let written =
            crate::workload::spans_in_image(&final_wal, engine::wal::HEADER_LEN as u64, &layout);
        Ok(Run {
            case,
            workload,
            trace,
            trace_text,
            db_dir: db_dir.to_path_buf(),
            files,
            is_event,
            points,
            boundary_points,
            full_ledger,
            firsts,
            states,
            written,
        })
    }

    /// The files at `point` (relative path, page-cache content).
    fn files_at(&self, point: Point) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for h in self.files.iter().filter(|h| h.open_line < point.lines) {
            let mut content = h.content_at(point.lines).to_vec();
            if let Some((op, bytes)) = point.in_flight {
                if let Some(k) = h.ops.iter().position(|i| *i == op) {
                    if let DataOp::Write { offset_bytes, .. } = self.trace.ops[op].op {
                        let (from, to) = (offset_bytes as usize, (offset_bytes + bytes) as usize);
                        if content.len() < to {
                            content.resize(to, 0);
                        }
                        content[from..to].copy_from_slice(&h.after[k][from..to]);
                    }
                }
            }
            out.push((h.path_at(point.lines).to_path_buf(), content));
        }
        out
    }

    fn describe_point(&self, point: Point) -> String {
        let line = |i: usize| {
            let text = self.trace_text.lines().nth(i).unwrap_or("");
            let mut short: String = text.chars().take(80).collect();
            if short.len() < text.len() {
                short.push_str("...");
            }
            short
        };
        let mut s = match point.lines {
            0 => "before the first traced operation".to_string(),
            n => format!("after trace line {} `{}`", n - 1, line(n - 1)),
        };
        if let Some((op, bytes)) = point.in_flight {
            if let DataOp::Write {
                offset_bytes,
                len_bytes,
            } = self.trace.ops[op].op
            {
                let name = self
                    .trace
                    .files
                    .iter()
                    .find(|f| f.fid == self.trace.ops[op].fid)
                    .and_then(|f| f.path.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                s.push_str(&format!(
                    ", inside that write: {bytes} of its {len_bytes} bytes at {name} offset {offset_bytes} reached the page cache"
                ));
            }
        }
        if let Some(next) = self.trace_text.lines().nth(point.lines) {
            let _ = next;
            s.push_str(&format!("; next: `{}`", line(point.lines)));
        }
        s
    }
}

/// The ledger of the events mirrored on the first `lines` lines.
fn ledger_of(trace: &Trace, lines: usize) -> Result<Ledger, SweepError> {
    let mut ledger = Ledger::default();
    for (line, text) in trace.events.iter().take_while(|(l, _)| *l < lines) {
        let event = Event::parse(text).map_err(|e| SweepError::BadTrace {
            detail: format!("line {line}: {e}"),
        })?;
        ledger.record(event);
    }
    Ok(ledger)
}

/// Runs the writer child of `case` in `db_dir` to the end (its trace next to it).
fn run_writer(
    child: &ChildCommand,
    case: &Case,
    db_dir: &Path,
    wrong: Option<WrongEngine>,
) -> Result<Ledger, SweepError> {
    run_writer_child(child, case, db_dir, wrong, true)
}

/// Runs the writer child of `case` in `db_dir` (its trace next to it) and returns its
/// ledger; with `must_finish`, a writer that did not run its workload to a clean end is
/// an error (otherwise a planned self-kill is how it ends).
pub(crate) fn run_writer_child(
    child: &ChildCommand,
    case: &Case,
    db_dir: &Path,
    wrong: Option<WrongEngine>,
    must_finish: bool,
) -> Result<Ledger, SweepError> {
    let stderr_path = db_dir.with_extension("stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(io_err(format!("creating {}", stderr_path.display())))?;
    let mut cmd = Command::new(&child.program);
    cmd.args(&child.args_prefix)
        .args(child_args(Role::Writer, db_dir, case));
    if let Some(w) = wrong.filter(|w| w.acts_in_writer()) {
        cmd.arg("--wrong")
            .arg(serde_json::to_string(&w).expect("a wrong engine serializes"));
    }
    let mut process = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .spawn()
        .map_err(|e| SweepError::Writer {
            detail: format!("cannot start {}: {e}", child.program.display()),
        })?;
    let mut ledger = Ledger::default();
    if let Some(stdout) = process.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(io_err("reading the writer's events"))?;
            let event = Event::parse(&line).map_err(|e| SweepError::Writer {
                detail: e.to_string(),
            })?;
            ledger.record(event);
        }
    }
    let status = process.wait().map_err(io_err("waiting for the writer"))?;
    if must_finish && (!status.success() || !ledger.done) {
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        return Err(SweepError::Writer {
            detail: format!(
                "exited with {status} ({}); close error: {}; stderr: {}",
                if ledger.done { "done" } else { "not done" },
                ledger.close_error.as_deref().unwrap_or("none"),
                stderr.trim()
            ),
        });
    }
    Ok(ledger)
}

// ---------------------------------------------------------------------------------------
// States of one point.

/// What a point offers: its files, its disk model and how its states are chosen.
struct PointStates {
    files: Vec<(PathBuf, Vec<u8>)>,
    wal_index: Option<usize>,
    model: Option<DiskModel>,
    /// Per unsynced sector: its start and the exhaustive alphabet.
    alphabets: Vec<(u64, Vec<Fate>)>,
    size_options: usize,
    /// `Some(n)`: exhaustive with n fate states; `None`: sampled.
    exhaustive: Option<usize>,
    fate_states: usize,
    undos: Vec<EntryUndo>,
    /// Where the writer stopped writing in the crashed `wal.log` (0: none).
    crash_len_bytes: u64,
    /// The oracle: every acknowledgement (process kill) and the power-loss one.
    ledger_kill: Ledger,
    ledger_power: Ledger,
}

/// One built state.
struct BuiltState {
    files: Vec<(PathBuf, Vec<u8>)>,
    description: String,
    /// State 0: exactly what a process kill leaves.
    process_kill: bool,
    first_changed_bytes: u64,
}

fn alphabet(model: &DiskModel, start: u64) -> Vec<Fate> {
    if model.unit_changed(start, SECTOR_BYTES) {
        return vec![
            Fate::Kept,
            Fate::Lost,
            Fate::Zeroed,
            Fate::Garbage,
            Fate::Torn {
                new_bytes: (SECTOR_BYTES / 2) as u16,
            },
        ];
    }
    let end = (start + SECTOR_BYTES).min(model.extent_bytes());
    let old_zero = (start..end).all(|b| !model.is_unsynced(b) || model.old_byte(b) == 0);
    if old_zero {
        vec![Fate::Kept, Fate::Garbage]
    } else {
        vec![Fate::Kept, Fate::Zeroed, Fate::Garbage]
    }
}

impl Run {
    fn point_states(&self, point: Point, cap: usize) -> Result<PointStates, SweepError> {
        let files = self.files_at(point);
        let wal_index = files
            .iter()
            .position(|(p, _)| p == Path::new(engine::WAL_FILE_NAME));
        let prefix = trace_prefix(&self.trace, point.lines);
        let model =
            wal_index.map(|i| DiskModel::build(&prefix, engine::WAL_FILE_NAME, files[i].1.clone()));
        let (alphabets, size_options) = match &model {
            Some(m) => (
                m.unsynced_units(SECTOR_BYTES)
                    .into_iter()
                    .map(|u| (u, alphabet(m, u)))
                    .collect::<Vec<_>>(),
                if m.size_uncovered() { 2 } else { 1 },
            ),
            None => (Vec::new(), 1),
        };
        let combos = alphabets
            .iter()
            .try_fold(size_options, |acc: usize, (_, a)| acc.checked_mul(a.len()));
        let exhaustive = combos.filter(|n| *n <= cap);
        let fate_states = exhaustive.unwrap_or(cap);
        let undos = uncovered_entries(&prefix);
        let mut ledger_kill = ledger_of(&self.trace, point.lines)?;
        let mut ledger_power = ledger_kill.clone();
        ledger_kill.mark_required(self.case.mode, false);
        ledger_power.mark_required(self.case.mode, true);
        let crash_len_bytes = wal_index.map_or(0, |i| crate::seam::written_end_bytes(&files[i].1));
        Ok(PointStates {
            crash_len_bytes,
            files,
            wal_index,
            model,
            alphabets,
            size_options,
            exhaustive,
            fate_states,
            undos,
            ledger_kill,
            ledger_power,
        })
    }

    fn n_states(ps: &PointStates) -> usize {
        ps.fate_states + usize::from(!ps.undos.is_empty())
    }

    /// Builds state `index` of a point (see the module comment for the numbering).
    fn build_state(&self, point_index: usize, ps: &PointStates, index: usize) -> BuiltState {
        let mut rng = self
            .case
            .rng_indexed(Purpose::Sweep, ((point_index as u64) << 20) | index as u64);
        let undo_entries = index >= ps.fate_states;
        let fate_index = if undo_entries { 0 } else { index };
        let (Some(model), Some(wal_index)) = (&ps.model, ps.wal_index) else {
            let mut files = ps.files.clone();
            let mut description = "no wal.log yet: the files as they are".to_string();
            if undo_entries {
                let changed = undo_in_memory(&self.db_dir, &mut files, &ps.undos);
                description = format!(
                    "directory entries no fsync covered undone: {}",
                    changed.join("; ")
                );
            }
            return BuiltState {
                files,
                description,
                process_kill: !undo_entries,
                first_changed_bytes: 0,
            };
        };
        let state: CrashState = match ps.exhaustive {
            Some(_) => {
                // Mixed radix: the size digit first, then one digit per unit.
                let mut rest = fate_index;
                let size_undone = rest % ps.size_options == 1;
                rest /= ps.size_options;
                let fates = ps
                    .alphabets
                    .iter()
                    .map(|(start, a)| {
                        let f = a[rest % a.len()];
                        rest /= a.len();
                        (*start, f)
                    })
                    .collect();
                power_loss::build(
                    model,
                    fate_index,
                    Shape::Enumerated,
                    SECTOR_BYTES,
                    size_undone,
                    fates,
                    &mut rng,
                )
            }
            None if fate_index == 0 => {
                let fates = ps.alphabets.iter().map(|(s, _)| (*s, Fate::Kept)).collect();
                power_loss::build(
                    model,
                    0,
                    Shape::Enumerated,
                    SECTOR_BYTES,
                    false,
                    fates,
                    &mut rng,
                )
            }
            None => power_loss::draw(model, fate_index, &mut rng),
        };
        let mut files = ps.files.clone();
        let mut description = state.describe(model);
        let process_kill = !undo_entries
            && !state.size_undone
            && state.fates.iter().all(|(_, f)| *f == Fate::Kept);
        files[wal_index].1 = state.image;
        if undo_entries {
            let changed = undo_in_memory(&self.db_dir, &mut files, &ps.undos);
            description = format!(
                "{description}, and directory entries no fsync covered undone: {}",
                changed.join("; ")
            );
        }
        BuiltState {
            files,
            description,
            process_kill,
            first_changed_bytes: state.first_changed_bytes,
        }
    }
}

/// [`crate::crash_state::apply_entry_undos`] on in-memory files: renames go back, then
/// created entries vanish (all of them when the database directory's own creation is
/// undone). Returns what changed.
fn undo_in_memory(
    db_dir: &Path,
    files: &mut Vec<(PathBuf, Vec<u8>)>,
    undos: &[EntryUndo],
) -> Vec<String> {
    let mut changed = Vec::new();
    for undo in undos {
        if let EntryUndo::Renamed { from, to } = undo {
            if let (Some(from_r), Some(to_r)) = (rel(db_dir, from), rel(db_dir, to)) {
                if let Some(f) = files.iter_mut().find(|(p, _)| *p == to_r) {
                    f.0 = from_r;
                    changed.push(format!(
                        "rename {} -> {} undone",
                        from.display(),
                        to.display()
                    ));
                }
            }
        }
    }
    for undo in undos {
        let EntryUndo::Created { path } = undo else {
            continue;
        };
        if db_dir.starts_with(path) {
            files.clear();
            changed.push(format!(
                "creation of {} undone (the database directory is gone)",
                path.display()
            ));
        } else if let Some(r) = rel(db_dir, path) {
            let before = files.len();
            files.retain(|(p, _)| *p != r);
            if files.len() < before {
                changed.push(format!("creation of {} undone", path.display()));
            }
        }
    }
    changed
}

/// The trace as it was once its first `lines` lines were written.
fn trace_prefix(trace: &Trace, lines: usize) -> Trace {
    let cut = |l: Option<usize>| l.filter(|l| *l < lines);
    Trace {
        files: trace
            .files
            .iter()
            .filter(|f| f.line < lines)
            .cloned()
            .collect(),
        ops: trace
            .ops
            .iter()
            .filter(|o| o.begin_line < lines)
            .map(|o| {
                let ended = cut(o.ended_line);
                crate::trace::FileOp {
                    done_line: cut(o.done_line),
                    ended_line: ended,
                    failed: o.failed && ended.is_some(),
                    skipped: o.skipped && ended.is_some(),
                    ..o.clone()
                }
            })
            .collect(),
        dir_ops: trace
            .dir_ops
            .iter()
            .filter(|d| d.begin_line < lines)
            .map(|d| crate::trace::DirOp {
                done_line: cut(d.done_line),
                failed: d.failed && d.done_line.is_none_or(|l| l < lines),
                ..d.clone()
            })
            .collect(),
        events: trace
            .events
            .iter()
            .filter(|(l, _)| *l < lines)
            .cloned()
            .collect(),
        bad_lines: 0,
    }
}

// ---------------------------------------------------------------------------------------
// Checking one state.

/// A fast 64-bit hash of a state's files and oracle, for deduplication (collisions among
/// a million states: about 1 in 10^7).
fn state_key(
    files: &[(PathBuf, Vec<u8>)],
    ledger: &Ledger,
    expected_end: Option<u64>,
) -> (u64, u64) {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |w: u64| {
        h = (h.rotate_left(23) ^ w).wrapping_mul(0x2545_f491_4f6c_dd1d);
    };
    for (path, content) in files {
        for b in path.as_os_str().as_encoded_bytes() {
            mix(u64::from(*b));
        }
        // Trailing zeros (preallocated space) are implied by the length.
        mix(content.len() as u64);
        let content = &content[..content.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)];
        let mut chunks = content.chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for b in chunks.remainder() {
            mix(u64::from(*b));
        }
    }
    let acked = ledger.attempts.iter().filter(|a| a.ack.is_some()).count() as u64;
    let oracle = (ledger.required_prefix_len() as u64)
        ^ ((ledger.attempts.len() as u64) << 16)
        ^ (acked << 32)
        ^ (expected_end.unwrap_or(u64::MAX).rotate_left(48));
    (h, oracle)
}

impl Run {
    /// Where recovery must end the log of a state whose first damaged byte is
    /// `first_changed_bytes`, when the crashed image ends its writing at `crash_len`
    /// ([`crate::seam::written_end_bytes`]; as a cycle computes it).
    fn expected_end(&self, crash_len: u64, first_changed_bytes: u64) -> Option<u64> {
        let header = engine::wal::HEADER_LEN as u64;
        (crash_len >= header).then(|| {
            crate::coverage::boundary_at_or_before(
                &self.written,
                first_changed_bytes.min(crash_len),
                header,
            )
        })
    }

    /// Recovers `files` in memory in `lock_dir` and checks them against `ledger`.
    fn check_state(
        &self,
        lock_dir: &Path,
        files: &[(PathBuf, Vec<u8>)],
        ledger: &Ledger,
        expected_end: Option<u64>,
    ) -> Result<(), Violation> {
        let wal = Path::new(engine::WAL_FILE_NAME);
        let fs = Arc::new(MemFs::new(lock_dir));
        for (p, c) in files {
            fs.put(p, c.clone());
        }
        let crashed_wal: Vec<u8> = files
            .iter()
            .find(|(p, _)| p == wal)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let open = |what: &str| {
            engine::DatabaseOptions::new()
                .storage_opener(fs.clone())
                .open(lock_dir)
                .map_err(|e| {
                    Violation::new(
                        checker::refusal_kind(&e),
                        format!("{what}: Database::open failed: {e}"),
                    )
                })
        };
        let db = open("first reopen")?;
        let stats = db.recovery_stats().clone();
        let recovered = checker::snapshot(&db);
        drop(db);
        let with_stats = |mut v: Violation| {
            v.stats = Some(Box::new(StatsSummary::from(&stats)));
            v
        };
        let base = Base::empty();
        let input = CheckInput {
            case: &self.case,
            workload: &self.workload,
            ledger,
            crashed_wal: &crashed_wal,
            expected_valid_end_bytes: expected_end,
            expect_exact_torn_bytes: true,
            corrupt_at: None,
            reference_state: None,
            base: &base,
            layout: &self.written,
            engine: &crate::checker::RealEngine,
        };
        checker::explain_recovered(
            &input,
            &self.states,
            &self.firsts,
            &recovered,
            stats.final_version,
        )
        .map_err(with_stats)?;
        // P4: what recovery accepted is durable.
        let len_before = crashed_wal.len() as u64;
        let valid_end = stats
            .end
            .as_ref()
            .map(|e| e.valid_end_offset_bytes())
            .unwrap_or(len_before);
        let synced = fs.synced_len_bytes(wal).unwrap_or(0);
        if synced < valid_end {
            return Err(with_stats(Violation::new(
                FindingKind::RecoveryNotDurable,
                format!("recovery accepted the log up to offset {valid_end} but its last completed fdatasync covered {synced} bytes"),
            )));
        }
        // R5: the torn tail is cut where the last whole record before the damage ends.
        let len_after = fs.content(wal).map_or(0, |c| c.len() as u64);
        if len_after != valid_end {
            return Err(with_stats(Violation::new(
                FindingKind::CorruptionNotDetected,
                format!("after recovery the WAL is {len_after} bytes, but reading ended at {valid_end}: the torn tail was not cut"),
            )));
        }
        if let Some(expected_end) = expected_end {
            if valid_end != expected_end {
                return Err(with_stats(Violation::new(
                    FindingKind::CorruptionNotDetected,
                    format!("recovery ended the log at offset {valid_end}, the last whole record ends at {expected_end}"),
                )));
            }
            let torn_expected = len_before.saturating_sub(expected_end);
            if stats.torn_tail_bytes != torn_expected {
                return Err(with_stats(Violation::new(
                    FindingKind::CorruptionNotDetected,
                    format!(
                        "the crash left {torn_expected} torn bytes after offset {expected_end}, replay reports {}",
                        stats.torn_tail_bytes
                    ),
                )));
            }
        }
        // R7: a second recovery sees the same state.
        let db = open("second reopen")?;
        let again = checker::snapshot(&db);
        drop(db);
        if again != recovered {
            let mut v = Violation::new(
                FindingKind::RecoveryNotIdempotent,
                "the second reopen recovered a different state than the first",
            );
            v.diffs = checker::diff_states(&recovered, &again, 5);
            return Err(with_stats(v));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The sweep.

struct Shared<'a> {
    run: &'a Run,
    opts: &'a SweepOptions,
    next_chunk: AtomicUsize,
    stop: AtomicBool,
    seen: Mutex<HashSet<(u64, u64)>>,
    findings: Mutex<Vec<SweepFinding>>,
    points_swept: AtomicUsize,
    points_exhaustive: AtomicUsize,
    points_sampled: AtomicUsize,
    states_exhaustive: AtomicU64,
    states_sampled: AtomicU64,
    states_entries_undone: AtomicU64,
    states_duplicate: AtomicU64,
    error: Mutex<Option<SweepError>>,
}

impl SweepOptions {
    /// The case the writer runs: the seed's workload under `limits`, one thread, traced,
    /// never killed.
    pub fn case(&self) -> Case {
        let mut case = Case::new(self.seed, self.mode, KillKind::Offset);
        case.power_loss = true;
        case.limits = self.limits;
        case.kill_offset_bytes = Some(NEVER_KILL_OFFSET_BYTES);
        case
    }

    /// The `torture sweep` arguments that rebuild state `state` of point `point`.
    pub fn repro_command(&self, point: usize, state: usize) -> String {
        let mut s = format!(
            "cargo run --release -p torture -- sweep --seed {:#018x} --mode {} --states-per-point {}",
            self.seed, self.mode, self.states_per_point
        );
        if let Some(n) = self.limits.txns_max {
            s.push_str(&format!(" --txns-max {n}"));
        }
        if let Some(n) = self.limits.ops_max {
            s.push_str(&format!(" --ops-max {n}"));
        }
        if let Some(n) = self.limits.value_len_max {
            s.push_str(&format!(" --value-len-max {n}"));
        }
        s.push_str(&format!(" --point {point} --state {state}"));
        s
    }
}

fn sweep_worker(shared: &Shared<'_>, worker: usize) -> Result<(), SweepError> {
    let run = shared.run;
    let opts = shared.opts;
    let lock_dir = opts.work_dir.join(format!("worker-{worker}"));
    std::fs::create_dir_all(&lock_dir)
        .map_err(io_err(format!("creating {}", lock_dir.display())))?;
    let range = |chunk: usize| {
        let from = chunk * POINTS_PER_CHUNK;
        from..(from + POINTS_PER_CHUNK).min(run.points.len())
    };
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let chunk = shared.next_chunk.fetch_add(1, Ordering::Relaxed);
        let points = match opts.only {
            Some((p, _)) if chunk == 0 => p..p + 1,
            Some(_) => return Ok(()),
            None if chunk * POINTS_PER_CHUNK >= run.points.len() => return Ok(()),
            None => range(chunk),
        };
        for point_index in points {
            if shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let point = run.points[point_index];
            let ps = run.point_states(point, opts.states_per_point)?;
            let n = Run::n_states(&ps);
            let states: Vec<usize> = match opts.only {
                Some((_, Some(s))) if s >= n => {
                    return Err(SweepError::NoSuchPoint {
                        detail: format!(
                            "point {point_index} has {n} states (0..{n}), not state {s}"
                        ),
                    })
                }
                Some((_, Some(s))) => vec![s],
                _ => (0..n).collect(),
            };
            shared.points_swept.fetch_add(1, Ordering::Relaxed);
            if ps.exhaustive.is_some() {
                shared.points_exhaustive.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.points_sampled.fetch_add(1, Ordering::Relaxed);
            }
            for index in states {
                let built = run.build_state(point_index, &ps, index);
                let ledger = if built.process_kill {
                    &ps.ledger_kill
                } else {
                    &ps.ledger_power
                };
                // A log whose creation was undone has no end to expect.
                let wal_kept = built
                    .files
                    .iter()
                    .any(|(p, _)| p == Path::new(engine::WAL_FILE_NAME));
                let expected_end = ps
                    .wal_index
                    .filter(|_| wal_kept)
                    .and_then(|_| run.expected_end(ps.crash_len_bytes, built.first_changed_bytes));
                let key = state_key(&built.files, ledger, expected_end);
                if opts.only.is_none()
                    && !shared
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key)
                {
                    shared.states_duplicate.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if index >= ps.fate_states {
                    shared.states_entries_undone.fetch_add(1, Ordering::Relaxed);
                } else if ps.exhaustive.is_some() {
                    shared.states_exhaustive.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.states_sampled.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(v) = run.check_state(&lock_dir, &built.files, ledger, expected_end) {
                    record_finding(shared, point_index, point, index, &ps, built, v)?;
                }
            }
        }
    }
}

fn record_finding(
    shared: &Shared<'_>,
    point_index: usize,
    point: Point,
    state: usize,
    ps: &PointStates,
    built: BuiltState,
    violation: Violation,
) -> Result<(), SweepError> {
    let run = shared.run;
    let opts = shared.opts;
    let mut findings = shared.findings.lock().unwrap_or_else(|p| p.into_inner());
    if findings.len() >= opts.findings_max {
        shared.stop.store(true, Ordering::Relaxed);
        return Ok(());
    }
    let ledger = &ps.ledger_power;
    let point_description = format!(
        "{} ({} commits attempted, {} acknowledged by then)",
        run.describe_point(point),
        ledger.attempts.len(),
        ledger.attempts.iter().filter(|a| a.ack.is_some()).count()
    );
    let artifacts_dir = match &opts.artifacts_dir {
        Some(root) => {
            let dir = root.join(format!(
                "sweep-{}-{:016x}-p{point_index}-s{state}",
                violation.kind, opts.seed
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let state_dir = dir.join("state");
            std::fs::create_dir_all(&state_dir)
                .map_err(io_err(format!("creating {}", state_dir.display())))?;
            for (p, c) in &built.files {
                let path = state_dir.join(p);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(format!("creating {}", parent.display())))?;
                }
                std::fs::write(&path, c).map_err(io_err(format!("writing {}", path.display())))?;
            }
            if let Some(i) = ps.wal_index {
                std::fs::write(dir.join("wal.log.crashed"), &ps.files[i].1)
                    .map_err(io_err("saving the crashed page-cache image"))?;
            }
            std::fs::write(dir.join("writer.trace"), &run.trace_text)
                .map_err(io_err("saving the trace"))?;
            Some(dir)
        }
        None => None,
    };
    let finding = SweepFinding {
        violation,
        point: point_index,
        state,
        point_description,
        state_description: built.description,
        artifacts_dir,
        repro: opts.repro_command(point_index, state),
    };
    if let Some(dir) = &finding.artifacts_dir {
        std::fs::write(dir.join("finding.txt"), format!("{finding}\n"))
            .map_err(io_err("saving finding.txt"))?;
    }
    findings.push(finding);
    if findings.len() >= opts.findings_max {
        shared.stop.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs the writer once and sweeps every crash point of its trace (or only
/// `opts.only`).
pub fn run_sweep(opts: &SweepOptions) -> Result<SweepReport, SweepError> {
    let started = Instant::now();
    let case = opts.case();
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(io_err(format!("creating {}", opts.work_dir.display())))?;
    let db_dir = opts.work_dir.join("db");
    if db_dir.exists() {
        std::fs::remove_dir_all(&db_dir)
            .map_err(io_err(format!("removing {}", db_dir.display())))?;
    }
    let pipe_ledger = run_writer(&opts.child, &case, &db_dir, opts.wrong)?;
    let trace_path = crate::trace::trace_path(&db_dir);
    let trace_text = std::fs::read_to_string(&trace_path)
        .map_err(io_err(format!("reading {}", trace_path.display())))?;
    let run = Run::load(case, &db_dir, trace_text)?;
    if run.full_ledger.attempts != pipe_ledger.attempts {
        return Err(SweepError::BadTrace {
            detail: "the events mirrored in the trace differ from those the writer reported"
                .to_string(),
        });
    }
    if let Some((p, _)) = opts.only {
        if p >= run.points.len() {
            return Err(SweepError::NoSuchPoint {
                detail: format!(
                    "the run has {} crash points (0..{}), not point {p}",
                    run.points.len(),
                    run.points.len()
                ),
            });
        }
    }
    let shared = Shared {
        run: &run,
        opts,
        next_chunk: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        seen: Mutex::new(HashSet::new()),
        findings: Mutex::new(Vec::new()),
        points_swept: AtomicUsize::new(0),
        points_exhaustive: AtomicUsize::new(0),
        points_sampled: AtomicUsize::new(0),
        states_exhaustive: AtomicU64::new(0),
        states_sampled: AtomicU64::new(0),
        states_entries_undone: AtomicU64::new(0),
        states_duplicate: AtomicU64::new(0),
        error: Mutex::new(None),
    };
    std::thread::scope(|scope| {
        for worker in 0..opts.jobs.max(1) {
            let shared = &shared;
            scope.spawn(move || {
                if let Err(e) = sweep_worker(shared, worker) {
                    shared.stop.store(true, Ordering::Relaxed);
                    shared
                        .error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = shared.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut findings = shared
        .findings
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    findings.sort_by_key(|f| (f.point, f.state));
    let elapsed_s = started.elapsed().as_secs_f64();
    let states_exhaustive = shared.states_exhaustive.into_inner();
    let states_sampled = shared.states_sampled.into_inner();
    let states_entries_undone = shared.states_entries_undone.into_inner();
    let states_checked = states_exhaustive + states_sampled + states_entries_undone;
    let points_swept = shared.points_swept.into_inner();
    let summary = SweepSummary {
        seed: format!("{:#018x}", opts.seed),
        mode: opts.mode,
        limits: opts.limits,
        states_per_point: opts.states_per_point,
        wal_bytes: run
            .files
            .iter()
            .find(|h| h.path_at(usize::MAX) == Path::new(engine::WAL_FILE_NAME))
            .map_or(0, |h| h.content_at(usize::MAX).len() as u64),
        trace_lines: run.is_event.len(),
        trace_ops: run.trace.ops.len() + run.trace.dir_ops.len() + run.trace.files.len(),
        commits_acked: run
            .full_ledger
            .attempts
            .iter()
            .filter(|a| a.ack.is_some())
            .count(),
        points: run.points.len(),
        boundary_points: run.boundary_points,
        write_byte_points: run.points.len() - run.boundary_points,
        points_swept,
        points_exhaustive: shared.points_exhaustive.into_inner(),
        points_sampled: shared.points_sampled.into_inner(),
        states_checked,
        states_exhaustive,
        states_sampled,
        states_entries_undone,
        states_duplicate: shared.states_duplicate.into_inner(),
        elapsed_s,
        states_per_s: states_checked as f64 / elapsed_s.max(1e-9),
        findings: findings.len(),
        stopped_early: opts.only.is_none() && points_swept < run.points.len(),
    };
    Ok(SweepReport { summary, findings })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoing a traced write, allocation and truncation gives back the content before
    /// each.
    #[test]
    fn undoing_operations_restores_what_they_overwrote() {
        let trace = Trace::parse(
            "open 1 1 1 0 /d/wal.log\nw 2 1 0 4 0 -\ndone 2\nal 3 1 4 8 4 -\ndone 3\n\
             w 4 1 2 4 12 0304\ndone 4\nsl 5 1 6 12 0000\ndone 5\n",
        );
        let mut content = vec![1u8, 2, 9, 9, 9, 9];
        let mut seen = vec![content.clone()];
        for op in trace.ops.iter().rev() {
            undo(op, &mut content);
            seen.push(content.clone());
        }
        assert_eq!(
            seen[1],
            vec![1, 2, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0],
            "cut bytes come back"
        );
        assert_eq!(seen[2], vec![1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(seen[3], vec![1, 2, 3, 4], "the allocation undone");
        assert_eq!(seen[4], Vec::<u8>::new());
    }

    #[test]
    fn limits_for_log_bytes_stay_within_the_budget() {
        for seed in [1u64, 2, 3] {
            let l = limits_for_log_bytes(seed, 8 * 1024);
            let w = Workload::generate(seed, &l);
            assert!(
                w.expected_wal_len_bytes() <= 8 * 1024 || w.txns.len() == 1,
                "{l:?}"
            );
            assert!(!w.txns.is_empty());
        }
    }
}
