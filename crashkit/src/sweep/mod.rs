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
//!
//! [`DiskModel`]: crate::crash_state::DiskModel
//! [`Purpose::Sweep`]: crate::case::Purpose::Sweep
//! [`MemFs`]: crate::mem_storage::MemFs
//! [`checker::explain_recovered`]: crate::checker::explain_recovered
//! [`Ledger::mark_required`]: crate::oracle::Ledger::mark_required

mod check;
mod points;
mod states;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use crate::case::{Case, KillKind, Limits, ModeName};
use crate::cycle::ChildCommand;
use crate::finding::Violation;
use crate::workload::Workload;
use crate::wrong_engine::WrongEngine;

use check::{sweep_worker, Shared};
pub(crate) use points::run_writer_child;
use points::{run_writer, Run};

/// Crash states per crash point unless told otherwise: every combination up to this many,
/// else this many (state 0 and drawn ones).
pub const DEFAULT_STATES_PER_POINT: usize = 5;
/// Findings after which a sweep stops (a broken engine fails almost everywhere).
pub const DEFAULT_FINDINGS_MAX: usize = 5;
/// The kill offset that never fires: the writer runs to completion.
const NEVER_KILL_OFFSET_BYTES: u64 = 1 << 40;

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
    let shared = Shared::new(&run, opts);
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
