//! Checking states: one state of a point recovered in memory and checked against its
//! oracle ([`Run::check_state`], with the log end it must recover to,
//! [`Run::expected_end`]), the workers that take points in chunks and check each of their
//! states once ([`sweep_worker`] over [`Shared`]), and the findings they record.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::checker::{self, Base, CheckInput};
use crate::finding::{FindingKind, StatsSummary, Violation};
use crate::mem_storage::MemFs;
use crate::oracle::Ledger;

use super::points::{Point, Run};
use super::states::{state_key, BuiltState, PointStates};
use super::{io_err, SweepError, SweepFinding, SweepOptions};

/// Points a worker takes at a time (neighbouring points share their trace prefix).
const POINTS_PER_CHUNK: usize = 64;

impl Run {
    /// Where recovery must end the log of a state whose first damaged byte is
    /// `first_changed_bytes`, when the crashed image ends its writing at `crash_len`
    /// ([`crate::seam::written_end_bytes`]; as a cycle computes it).
    pub(super) fn expected_end(&self, crash_len: u64, first_changed_bytes: u64) -> Option<u64> {
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
    pub(super) fn check_state(
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

/// What the workers of one sweep share: the run, the next chunk of points, the states
/// already seen, the findings and the counters the summary reports.
pub(super) struct Shared<'a> {
    run: &'a Run,
    opts: &'a SweepOptions,
    next_chunk: AtomicUsize,
    pub(super) stop: AtomicBool,
    seen: Mutex<HashSet<(u64, u64)>>,
    pub(super) findings: Mutex<Vec<SweepFinding>>,
    pub(super) points_swept: AtomicUsize,
    pub(super) points_exhaustive: AtomicUsize,
    pub(super) points_sampled: AtomicUsize,
    pub(super) states_exhaustive: AtomicU64,
    pub(super) states_sampled: AtomicU64,
    pub(super) states_entries_undone: AtomicU64,
    pub(super) states_duplicate: AtomicU64,
    pub(super) error: Mutex<Option<SweepError>>,
}

impl<'a> Shared<'a> {
    pub(super) fn new(run: &'a Run, opts: &'a SweepOptions) -> Shared<'a> {
        Shared {
            run,
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
        }
    }
}

/// One worker: takes chunks of points (or the one `--point`) until none are left or the
/// sweep stops, and checks every state of each.
pub(super) fn sweep_worker(shared: &Shared<'_>, worker: usize) -> Result<(), SweepError> {
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
