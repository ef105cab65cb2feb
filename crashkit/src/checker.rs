//! The checker: reopens a crashed database and proves its state is one a correct engine
//! may produce (docs/recovery-contract.md R1-R5, R7), then that it accepts commits that survive a restart.

use std::collections::BTreeSet;
use std::path::Path;

use engine::{Database, Key, ReplayStats, RunId, Value};
use rand::Rng;

use crate::case::{Case, Purpose};
use crate::corrupt::CorruptTarget;
use crate::finding::{describe_value, FindingKind, KeyDiff, StatsSummary, Violation};
use crate::oracle::{self, Ledger, State};
use crate::workload::{OpPlan, RecordSpan, TxnPlan, Workload};
pub use crate::wrong_engine::WrongEngine;
use crate::wrong_engine::{append_after_torn_tail, simulate_wrong_state};

/// What the checker needs besides the directory.
#[derive(Debug, Clone)]
pub struct CheckInput<'a> {
    pub case: &'a Case,
    pub workload: &'a Workload,
    pub ledger: &'a Ledger,
    /// The WAL as the crash (and any power loss) left it, before any recovery ran.
    pub crashed_wal: &'a [u8],
    /// Where the log must end after recovery (end of the last whole record before the
    /// first damaged byte), when the harness can know it.
    pub expected_valid_end_bytes: Option<u64>,
    /// Whether recovery must report exactly the torn bytes (false when an earlier,
    /// killed recovery may already have cut them).
    pub expect_exact_torn_bytes: bool,
    /// Flip this bit of committed history first; recovery must refuse it (R6).
    pub corrupt_at: Option<CorruptTarget>,
    /// What an uninterrupted recovery of the same crashed files gave (recovery-crash
    /// cycles): the recovery after a crashed recovery must give exactly this (R7).
    pub reference_state: Option<&'a State>,
    /// What this generation started from (an empty database for the first).
    pub base: &'a Base,
    /// The records a fault-free run writes (see `Workload::record_layout`).
    pub layout: &'a [RecordSpan],
    pub wrong: Option<WrongEngine>,
}

/// The checked state a generation starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Base {
    pub state: State,
    /// The version the engine allocates next.
    pub next_version: u64,
    /// Where the generation's first record goes.
    pub wal_len_bytes: u64,
}

impl Base {
    /// A fresh database.
    pub fn empty() -> Base {
        Base {
            state: State::new(),
            next_version: 1,
            wal_len_bytes: engine::wal::HEADER_LEN as u64,
        }
    }
}

/// A clean verdict's details.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Where the next generation starts: the state after recovery and the post-recovery
    /// commits, the next version the engine allocates, the WAL length.
    pub next: Base,
    /// The recovered prefix length.
    pub n: usize,
    pub stats: ReplayStats,
}

/// Reads a store into the model's shape.
pub fn snapshot(db: &Database) -> State {
    db.storage()
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, (v.value, v.version)))
        .collect()
}

/// How long a reopen waits for a lock held by an inherited descriptor (see `open`).
const LOCK_RETRY_MS: u64 = 2_000;

pub(crate) fn open(dir: &Path, what: &str) -> Result<Database, Violation> {
    open_with(dir, what, engine::DatabaseOptions::new)
}

/// The finding for a failed open of a state the crash left: any refusal is one of a
/// legal crash state (the checker's input never holds anything else); an I/O error is a
/// failed recovery.
fn refused(e: &engine::EngineError) -> FindingKind {
    match e {
        engine::EngineError::Io { .. } => FindingKind::RecoveryFailed,
        _ => FindingKind::LegalStateRefused,
    }
}

fn open_with(
    dir: &Path,
    what: &str,
    options: impl Fn() -> engine::DatabaseOptions,
) -> Result<Database, Violation> {
    open_classified(dir, what, options, |_| FindingKind::RecoveryFailed)
}

fn open_classified(
    dir: &Path,
    what: &str,
    options: impl Fn() -> engine::DatabaseOptions,
    kind: impl Fn(&engine::EngineError) -> FindingKind,
) -> Result<Database, Violation> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_RETRY_MS);
    loop {
        match options().open(dir) {
            Ok(db) => return Ok(db),
            // With several jobs, a child forked by another worker thread briefly inherits
            // this process's lock descriptor (until its exec closes it), so the lock can
            // outlive our handle by a moment. Waiting is the harness's problem, not a finding.
            Err(engine::EngineError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => {
                return Err(Violation::new(
                    kind(&e),
                    format!("{what}: Database::open failed: {e}"),
                ))
            }
        }
    }
}

/// Up to `max` keys whose entries differ between `expected` and `recovered`.
pub fn diff_states(expected: &State, recovered: &State, max: usize) -> Vec<KeyDiff> {
    let keys: BTreeSet<&Key> = expected.keys().chain(recovered.keys()).collect();
    keys.into_iter()
        .filter(|k| expected.get(*k) != recovered.get(*k))
        .take(max)
        .map(|k| KeyDiff {
            key: k.to_string(),
            expected: expected.get(k).map(|(v, ver)| describe_value(v, *ver)),
            recovered: recovered.get(k).map(|(v, ver)| describe_value(v, *ver)),
        })
        .collect()
}

fn n_diffs(a: &State, b: &State) -> usize {
    let keys: BTreeSet<&Key> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).count()
}

/// Runs every check. `Ok` = the engine behaved; `Err` = the first violation found.
pub fn check(dir: &Path, input: &CheckInput<'_>) -> Result<CheckReport, Violation> {
    let ledger = input.ledger;
    if let Some(idx) = ledger.acked_after_error.first() {
        return Err(Violation::new(
            FindingKind::AckedAfterError,
            format!("txn {idx} was acknowledged although it was attempted after a commit, flush or fdatasync had failed"),
        ));
    }
    let any_failure = ledger.saw_error || ledger.sync_failed_before_attempt.is_some();
    if any_failure && ledger.done && ledger.close_error.is_none() {
        return Err(Violation::new(
            FindingKind::AckedAfterError,
            "close() returned Ok although an earlier commit, flush or fsync failed (docs/faults.md E3)",
        ));
    }
    let wal_path = dir.join(engine::WAL_FILE_NAME);
    let len_before = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);

    let start_version = input.base.next_version;
    let firsts = oracle::first_versions(input.workload, ledger, start_version);
    let states = oracle::prefix_states(input.workload, ledger, &input.base.state, &firsts);
    if let Some(target) = &input.corrupt_at {
        crate::corrupt::check_refused(dir, target, input.layout, &states)?;
    }

    // First recovery, with a sync tracker under the WAL to see what it made durable.
    let recovery_synced = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let db = {
        let seen = recovery_synced.clone();
        let hide = input.wrong == Some(WrongEngine::SkipsRecoverySync);
        let report: crate::seam::SyncReporter = std::sync::Arc::new(move |r| {
            if let (crate::seam::SyncReport::Completed { covered_bytes }, false) = (r, hide) {
                seen.fetch_max(covered_bytes, std::sync::atomic::Ordering::AcqRel);
            }
        });
        let opener = std::sync::Arc::new(crate::seam::FaultOpener::new(
            crate::seam::Layers::default(),
            Some(report),
        ));
        open_classified(
            dir,
            "first reopen",
            || engine::DatabaseOptions::new().storage_opener(opener.clone()),
            refused,
        )?
    };
    let stats = db.recovery_stats().clone();
    let mut recovered = snapshot(&db);
    drop(db);
    let summary = StatsSummary::from(&stats);
    let with_stats = |mut v: Violation| {
        v.stats = Some(Box::new(summary.clone()));
        v
    };
    if let Some(wrong) = input.wrong {
        recovered = simulate_wrong_state(wrong, input, &states, &firsts, recovered);
    }
    if let Some(reference) = input.reference_state {
        if input.wrong.is_none() && *reference != recovered {
            let mut v = Violation::new(
                FindingKind::RecoveryNotIdempotent,
                "recovery after a crashed recovery differs from an uninterrupted recovery of the same files",
            );
            v.diffs = diff_states(reference, &recovered, 5);
            return Err(with_stats(v));
        }
    }
    // Try each possible commit order (one for a single writer thread); the first that
    // explains the recovered state is the one the rest of the checks use.
    let orders = oracle::commit_orders(
        ledger,
        input.workload,
        input.case.writer_threads(),
        start_version,
    );
    let mut explained = None;
    let mut first_violation = None;
    for order in &orders {
        let ordered = ledger.reordered(order);
        let firsts = oracle::first_versions(input.workload, &ordered, start_version);
        let states = oracle::prefix_states(input.workload, &ordered, &input.base.state, &firsts);
        let ordered_input = CheckInput {
            ledger: &ordered,
            ..input.clone()
        };
        match check_prefix(&ordered_input, &states, &firsts, &recovered) {
            Ok(n) => {
                let fits = fitting_prefix(
                    &ordered_input,
                    &states,
                    &firsts,
                    &recovered,
                    n,
                    stats.final_version,
                );
                match fits {
                    Some(m) => {
                        explained = Some((ordered, m));
                        break;
                    }
                    None if input.wrong.is_some() => {
                        explained = Some((ordered, n));
                        break;
                    }
                    None => {
                        first_violation.get_or_insert(Violation::new(
                            FindingKind::VersionMismatch,
                            format!(
                                "recovered prefix n = {n} ends at version {}, replay reports final_version {}",
                                final_version_of(&ordered_input, &firsts, n),
                                stats.final_version
                            ),
                        ));
                    }
                }
            }
            Err(v) => {
                first_violation.get_or_insert(v);
            }
        }
    }
    let Some((ordered, n)) = explained else {
        let mut v = first_violation.expect("at least one candidate order");
        if orders.len() > 1 {
            v.detail = format!(
                "{} (no commit order of {} candidates fits; shown: the first)",
                v.detail,
                orders.len()
            );
        }
        return Err(with_stats(v));
    };
    let ledger = &ordered;
    let firsts = oracle::first_versions(input.workload, ledger, start_version);
    let expected_final = if n == 0 {
        start_version - 1
    } else {
        firsts[n - 1] + input.workload.txns[ledger.attempts[n - 1].idx].ops.len() as u64 - 1
    };

    // P4: what recovery accepted is durable before anything builds on it.
    let synced_by_recovery = recovery_synced.load(std::sync::atomic::Ordering::Acquire);
    let accepted_end = stats
        .end
        .as_ref()
        .map(|e| e.valid_end_offset_bytes())
        .unwrap_or(len_before);
    if synced_by_recovery < accepted_end {
        return Err(with_stats(Violation::new(
            FindingKind::RecoveryNotDurable,
            format!(
                "recovery accepted the log up to offset {accepted_end} but its last completed fdatasync covered {synced_by_recovery} bytes"
            ),
        )));
    }

    // R5: the torn tail is reported and cut.
    let valid_end = stats
        .end
        .as_ref()
        .map(|e| e.valid_end_offset_bytes())
        .unwrap_or(len_before);
    let len_after = std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
    if len_after != valid_end {
        return Err(with_stats(Violation::new(
            FindingKind::CorruptionNotDetected,
            format!("after recovery the WAL is {len_after} bytes, but reading ended at {valid_end}: the torn tail was not cut"),
        )));
    }
    if let Some(expected_end) = input.expected_valid_end_bytes {
        if valid_end != expected_end {
            return Err(with_stats(Violation::new(
                FindingKind::CorruptionNotDetected,
                format!("recovery ended the log at offset {valid_end}, the last whole record ends at {expected_end}"),
            )));
        }
        // A log shorter than its header (a power loss undid the size of a file created and
        // not yet synced) holds nothing torn: recovery writes the header again.
        let torn_expected = len_before.saturating_sub(expected_end);
        if input.expect_exact_torn_bytes && stats.torn_tail_bytes != torn_expected {
            return Err(with_stats(Violation::new(
                FindingKind::CorruptionNotDetected,
                format!(
                    "the crash left {} torn bytes after offset {expected_end}, replay reports {}",
                    torn_expected, stats.torn_tail_bytes
                ),
            )));
        }
    }

    // R7: a second recovery sees the same state.
    let db = open(dir, "second reopen")?;
    let again = snapshot(&db);
    if input.wrong.is_none() && again != recovered {
        let mut v = Violation::new(
            FindingKind::RecoveryNotIdempotent,
            "the second reopen recovered a different state than the first",
        );
        v.diffs = diff_states(&recovered, &again, 5);
        return Err(with_stats(v));
    }

    // After recovery: new commits get fresh ids and versions and survive a restart.
    let max_acked_txn_id = ledger.attempts[..n]
        .iter()
        .filter_map(|a| a.ack.as_ref().map(|ack| ack.txn_id))
        .max()
        .unwrap_or(0);
    let max_prefix_version = expected_final;
    let post = post_recovery_txns(input.case);
    let mut expected_after = again;
    if input.wrong == Some(WrongEngine::KeepsTornTailAndAppends) {
        drop(db);
        append_after_torn_tail(
            &wal_path,
            input.crashed_wal,
            valid_end,
            &post,
            max_acked_txn_id,
            &mut expected_after,
        )
        .map_err(|e| {
            Violation::new(FindingKind::RecoveryFailed, format!("self-test setup: {e}"))
        })?;
    } else {
        for txn in &post {
            let mut t = db.begin(txn.run_id);
            for op in &txn.ops {
                if let OpPlan::Put { key, value } = op {
                    t.put(key.clone(), value.clone()).map_err(|e| {
                        Violation::new(
                            FindingKind::RecoveryFailed,
                            format!("post-recovery put: {e}"),
                        )
                    })?;
                }
            }
            let info = t.commit().map_err(|e| {
                with_stats(Violation::new(
                    FindingKind::RecoveryFailed,
                    format!("a Strict commit after recovery failed: {e}"),
                ))
            })?;
            if info.txn_id <= max_acked_txn_id.max(stats.max_txn_id) {
                return Err(with_stats(Violation::new(
                    FindingKind::IdReused,
                    format!(
                        "a commit after recovery got txn id {}, but txn id {} was already used",
                        info.txn_id,
                        max_acked_txn_id.max(stats.max_txn_id)
                    ),
                )));
            }
            if info.versions.start <= max_prefix_version.max(stats.final_version) {
                return Err(with_stats(Violation::new(
                    FindingKind::IdReused,
                    format!(
                        "a commit after recovery got version {}, not above final_version {}",
                        info.versions.start,
                        max_prefix_version.max(stats.final_version)
                    ),
                )));
            }
            oracle::apply(&mut expected_after, txn, info.versions.start);
        }
        // Dropped without close: in Strict mode the commits are already durable.
        drop(db);
    }
    let db = open(dir, "reopen after post-recovery commits")?;
    let after = snapshot(&db);
    let after_stats = db.recovery_stats().clone();
    drop(db);
    if after != expected_after {
        let mut v = Violation::new(
            FindingKind::LostAckedTxn,
            "Strict commits made after recovery did not survive the next reopen",
        );
        v.diffs = diff_states(&expected_after, &after, 5);
        return Err(with_stats(v));
    }
    Ok(CheckReport {
        n,
        stats,
        next: Base {
            state: after,
            next_version: after_stats.final_version.max(after_stats.max_version_seen) + 1,
            wal_len_bytes: std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0),
        },
    })
}

/// The last version of the first `m` commits of `input.ledger` (R4: the final version
/// recovery must report for that prefix).
fn final_version_of(input: &CheckInput<'_>, firsts: &[u64], m: usize) -> u64 {
    if m == 0 {
        input.base.next_version - 1
    } else {
        let ops = input.workload.txns[input.ledger.attempts[m - 1].idx]
            .ops
            .len();
        firsts[m - 1] + ops as u64 - 1
    }
}

/// R4: several prefix lengths can give the same state (a txn that only deletes absent
/// keys changes nothing but the version), so any allowed `m <= n` whose state is the
/// recovered one and whose last version is the reported final version explains it.
fn fitting_prefix(
    input: &CheckInput<'_>,
    states: &[State],
    firsts: &[u64],
    recovered: &State,
    n: usize,
    final_version: u64,
) -> Option<usize> {
    (input.ledger.required_prefix_len()..=n)
        .rev()
        .find(|m| states[*m] == *recovered && final_version_of(input, firsts, *m) == final_version)
}

/// R1-R4 for one commit order (a single writer's, `input.ledger` as it is): the recovered
/// state must equal the model after an allowed prefix (every required commit, no hole,
/// no partial or phantom commit) whose last version is the `final_version` replay
/// reported. `states` and `firsts` are [`oracle::prefix_states`] and
/// [`oracle::first_versions`] of a ledger whose attempts start with `input.ledger`'s (they
/// may cover more attempts: a sweep computes them once for the whole run). Returns the
/// prefix length; the same verdicts [`check`] gives.
pub fn explain_recovered(
    input: &CheckInput<'_>,
    states: &[State],
    firsts: &[u64],
    recovered: &State,
    final_version: u64,
) -> Result<usize, Violation> {
    let n = check_prefix(input, states, firsts, recovered)?;
    fitting_prefix(input, states, firsts, recovered, n, final_version).ok_or_else(|| {
        Violation::new(
            FindingKind::VersionMismatch,
            format!(
                "recovered prefix n = {n} ends at version {}, replay reports final_version {final_version}",
                final_version_of(input, firsts, n),
            ),
        )
    })
}

/// The finding kind of a failed open of a crash state (see `refused`).
pub fn refusal_kind(e: &engine::EngineError) -> FindingKind {
    refused(e)
}

/// Finds the prefix length the recovered state equals, or explains why there is none.
fn check_prefix(
    input: &CheckInput<'_>,
    states: &[State],
    firsts: &[u64],
    recovered: &State,
) -> Result<usize, Violation> {
    let ledger = input.ledger;
    let required = ledger.required_prefix_len();
    let attempted = ledger.attempts.len();
    if let Some(n) = (required..=attempted)
        .rev()
        .find(|n| states[*n] == *recovered)
    {
        return Ok(n);
    }
    // No allowed prefix matches: find the closest state and explain the difference.
    let closest = (0..=attempted)
        .min_by_key(|n| (n_diffs(&states[*n], recovered), attempted - *n))
        .expect("at least the empty prefix");
    let exact_short = states[closest] == *recovered && closest < required;
    let target = if exact_short { required } else { closest };
    let mut v = Violation::new(FindingKind::WrongValue, String::new());
    v.n_range = Some((required, attempted));
    v.closest_n = Some(closest);
    v.diffs = diff_states(&states[target], recovered, 5);
    if exact_short {
        let lost = &ledger.attempts[closest];
        v.kind = FindingKind::LostAckedTxn;
        v.detail = format!(
            "recovered the first {closest} commits, but commit {} (workload txn {}, txn id {:?}) was acknowledged{}",
            closest + 1,
            lost.idx,
            lost.ack.as_ref().map(|a| a.txn_id),
            if input.case.power_loss { " durably" } else { " (a process kill keeps every acknowledged txn)" }
        );
        return Err(v);
    }
    let same_keys_values = states[closest].len() == recovered.len()
        && states[closest]
            .iter()
            .all(|(k, (val, _))| recovered.get(k).map(|(v2, _)| v2) == Some(val));
    if same_keys_values {
        v.kind = FindingKind::VersionMismatch;
        v.detail = format!("values match the first {closest} commits, versions do not");
        return Err(v);
    }
    // A hole: some prefix with exactly one txn skipped.
    for (skip, skip_state) in states.iter().enumerate().take(attempted) {
        let mut s = skip_state.clone();
        for m in skip + 1..=attempted {
            let a = &ledger.attempts[m - 1];
            oracle::apply(&mut s, &input.workload.txns[a.idx], firsts[m - 1]);
            if s == *recovered {
                v.kind = FindingKind::Hole;
                v.detail = format!(
                    "the state equals the first {m} commits without commit {} (workload txn {})",
                    skip + 1,
                    ledger.attempts[skip].idx
                );
                return Err(v);
            }
        }
    }
    // A partial or phantom txn: a recovered (value, version) that only a txn outside the
    // allowed prefix wrote.
    let written_by = |key: &Key, value: &Value, version: u64| -> Option<(usize, bool)> {
        for (m, a) in ledger.attempts.iter().enumerate() {
            for (i, op) in input.workload.txns[a.idx].ops.iter().enumerate() {
                if let OpPlan::Put { key: k, value: val } = op {
                    if k == key && val == value && firsts[m] + i as u64 == version {
                        return Some((m, true));
                    }
                }
            }
        }
        None
    };
    for (key, (value, version)) in recovered {
        if states[closest].get(key) == Some(&(value.clone(), *version)) {
            continue;
        }
        match written_by(key, value, *version) {
            Some((m, _)) if m >= closest => {
                v.kind = FindingKind::PartialTxn;
                v.detail = format!(
                    "key {key} holds a write of commit {} (workload txn {}), whose other writes are missing",
                    m + 1,
                    ledger.attempts[m].idx
                );
                return Err(v);
            }
            None => {
                v.kind = FindingKind::PhantomTxn;
                v.detail = format!(
                    "key {key} holds {}, which no attempted commit wrote",
                    describe_value(value, *version)
                );
                return Err(v);
            }
            _ => {}
        }
    }
    v.detail = format!(
        "the recovered state equals no prefix of the {attempted} attempted commits (required at least {required})"
    );
    Err(v)
}

/// Two small Strict transactions for after recovery: a fresh key and an overwrite.
pub fn post_recovery_txns(case: &Case) -> Vec<TxnPlan> {
    let mut rng = case.rng(Purpose::PostRecovery);
    let ns = std::sync::Arc::new(engine::Namespace::new("post", "app", "checker", RunId(9)));
    (0..2)
        .map(|i| TxnPlan {
            run_id: RunId(9),
            ops: vec![OpPlan::Put {
                key: Key::kv(ns.clone(), format!("after-{}", i % 2).into_bytes()),
                value: Value::I64(rng.gen()),
            }],
            abort: false,
            flush_after: false,
        })
        .collect()
}
