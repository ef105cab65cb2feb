//! The checker: reopens a crashed database and proves its state is one a correct engine
//! may produce (docs/recovery-contract.md R1-R7), then that it accepts commits that
//! survive a restart.
//!
//! [`check`] is a sequence of small named checks, each its own function reporting one
//! finding kind; the first that fails is the verdict. The engine it drives is
//! [`CheckInput::engine`]: the checks do not know whether it is the real one.

mod after;
mod open;
mod prefix;
pub mod under_test;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::engine::ReplayStats;

use crate::case::Case;
use crate::corrupt::CorruptTarget;
use crate::faults::storage::FaultOpener;
use crate::faults::sync_report::{SyncReport, SyncTracker};
use crate::finding::{FindingKind, StatsSummary, Violation};
use crate::oracle::{self, Ledger, State};
use crate::workload::{RecordSpan, Workload};

pub use self::after::post_recovery_txns;
pub use self::open::{diff_states, snapshot};
use self::prefix::PrefixCheck;
pub use self::under_test::{AppendContext, EngineUnderTest, RealEngine, RecoveryContext};

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
    /// The engine that recovers: [`RealEngine`] unless the caller tests the checker.
    pub engine: &'a dyn EngineUnderTest,
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
            wal_len_bytes: ::engine::wal::HEADER_LEN as u64,
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

/// What the first recovery produced.
struct Recovery {
    state: State,
    stats: ReplayStats,
    /// The length the last completed fdatasync of the log during recovery covered.
    synced_bytes: u64,
    /// The log's length before recovery.
    len_before: u64,
}

impl Recovery {
    /// Where recovery ended the log.
    fn valid_end_bytes(&self) -> u64 {
        self.stats
            .end
            .as_ref()
            .map(|e| e.valid_end_offset_bytes())
            .unwrap_or(self.len_before)
    }
}

fn wal_len(wal_path: &Path) -> u64 {
    std::fs::metadata(wal_path).map(|m| m.len()).unwrap_or(0)
}

/// Runs every check. `Ok` = the engine behaved; `Err` = the first violation found.
pub fn check(dir: &Path, input: &CheckInput<'_>) -> Result<CheckReport, Violation> {
    check_poisoning(input.ledger)?;
    let start_version = input.base.next_version;
    let firsts = oracle::first_versions(input.workload, input.ledger, start_version);
    let states = oracle::prefix_states(input.workload, input.ledger, &input.base.state, &firsts);
    if let Some(target) = &input.corrupt_at {
        crate::faults::corrupt::check_refused(dir, target, input.layout, &states)?;
    }
    let first = recover(dir, input)?;
    let context = RecoveryContext {
        input,
        states: &states,
        firsts: &firsts,
    };
    let recovered = input.engine.recovered(first.state.clone(), &context);
    let summary = StatsSummary::from(&first.stats);
    let with_stats = |mut v: Violation| {
        v.stats = Some(Box::new(summary.clone()));
        v
    };
    check_matches_reference(input.reference_state, &recovered).map_err(with_stats)?;
    let (ordered, n) =
        explain_by_a_commit_order(input, &recovered, &first.stats).map_err(with_stats)?;
    check_recovery_durable(&first).map_err(with_stats)?;
    let wal_path = dir.join(::engine::WAL_FILE_NAME);
    check_torn_tail_cut(input, &first, wal_len(&wal_path)).map_err(with_stats)?;
    check_torn_bytes_kept(dir, input, &first).map_err(with_stats)?;

    let db = open::open(dir, "second reopen")?;
    let again = snapshot(&db);
    check_second_recovery(&recovered, &again).map_err(with_stats)?;

    // After recovery: new commits get fresh ids and versions and survive a restart.
    let firsts = oracle::first_versions(input.workload, &ordered, start_version);
    let max_acked_txn_id = ordered.attempts[..n]
        .iter()
        .filter_map(|a| a.ack.as_ref().map(|ack| ack.txn_id))
        .max()
        .unwrap_or(0);
    let prefix_final_version = final_version_of(input, &ordered, &firsts, n);
    let post = post_recovery_txns(input.case);
    let append = AppendContext {
        wal_path: &wal_path,
        crashed_wal: input.crashed_wal,
        valid_end_bytes: first.valid_end_bytes(),
        max_txn_id: max_acked_txn_id,
    };
    let expected_after = match input.engine.append_after_recovery(&post, &append, &again) {
        Some(appended) => {
            drop(db);
            appended.map_err(|e| {
                Violation::new(
                    FindingKind::RecoveryFailed,
                    format!("appending after recovery: {e}"),
                )
            })?
        }
        None => {
            let mut expected = again;
            for txn in &post {
                let info = after::commit_after_recovery(&db, txn).map_err(with_stats)?;
                after::check_fresh_ids(
                    &info,
                    max_acked_txn_id.max(first.stats.max_txn_id),
                    prefix_final_version.max(first.stats.final_version),
                )
                .map_err(with_stats)?;
                oracle::apply(&mut expected, txn, info.versions.start);
            }
            // Dropped without close: in Strict mode the commits are already durable.
            drop(db);
            expected
        }
    };
    let db = open::open(dir, "reopen after post-recovery commits")?;
    let after = snapshot(&db);
    let after_stats = db.recovery_stats().clone();
    drop(db);
    after::check_post_recovery_survived(&expected_after, &after).map_err(with_stats)?;
    Ok(CheckReport {
        n,
        stats: first.stats,
        next: Base {
            state: after,
            next_version: after_stats.final_version.max(after_stats.max_version_seen) + 1,
            wal_len_bytes: wal_len(&wal_path),
        },
    })
}

/// `acked-after-error`: nothing is acknowledged after a failed commit, flush or
/// fdatasync, and `close` does not report success after one (docs/faults.md E1-E3).
fn check_poisoning(ledger: &Ledger) -> Result<(), Violation> {
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
    Ok(())
}

/// `legal-state-refused` or `recovery-failed`: the first recovery opens the crashed
/// directory, with the engine's own storage faults above a sync tracker on its log.
fn recover(dir: &Path, input: &CheckInput<'_>) -> Result<Recovery, Violation> {
    let len_before = wal_len(&dir.join(::engine::WAL_FILE_NAME));
    let synced = Arc::new(AtomicU64::new(0));
    let seen = synced.clone();
    let mut hooks = input.engine.recovery_storage();
    hooks.push(SyncTracker::hook(Arc::new(move |r| {
        if let SyncReport::Completed { covered_bytes } = r {
            seen.fetch_max(covered_bytes, Ordering::AcqRel);
        }
    })));
    let opener = Arc::new(FaultOpener::new(hooks));
    let db = open::open_classified(
        dir,
        "first reopen",
        || ::engine::DatabaseOptions::new().storage_opener(opener.clone()),
        open::refused,
    )?;
    let recovery = Recovery {
        state: snapshot(&db),
        stats: db.recovery_stats().clone(),
        synced_bytes: 0,
        len_before,
    };
    drop(db);
    Ok(Recovery {
        synced_bytes: synced.load(Ordering::Acquire),
        ..recovery
    })
}

/// `recovery-not-idempotent` (R7): the recovery after a crashed recovery equals an
/// uninterrupted recovery of the same files.
fn check_matches_reference(reference: Option<&State>, recovered: &State) -> Result<(), Violation> {
    match reference {
        Some(reference) if reference != recovered => {
            let mut v = Violation::new(
                FindingKind::RecoveryNotIdempotent,
                "recovery after a crashed recovery differs from an uninterrupted recovery of the same files",
            );
            v.diffs = diff_states(reference, recovered, 5);
            Err(v)
        }
        _ => Ok(()),
    }
}

/// The version the engine's last commit of the first `n` (in `ordered`) ended at.
fn final_version_of(input: &CheckInput<'_>, ordered: &Ledger, firsts: &[u64], n: usize) -> u64 {
    if n == 0 {
        input.base.next_version - 1
    } else {
        let ops = input.workload.txns[ordered.attempts[n - 1].idx].ops.len();
        firsts[n - 1] + ops as u64 - 1
    }
}

/// R1-R4 over every commit order the acknowledgements allow (one for a single writer
/// thread): the first order with an allowed prefix that equals the recovered state and
/// whose last version is the replay's final version explains it. Otherwise the first
/// order's violation: a prefix kind ([`PrefixCheck`]) or `version-mismatch` for the final
/// version.
fn explain_by_a_commit_order(
    input: &CheckInput<'_>,
    recovered: &State,
    stats: &ReplayStats,
) -> Result<(Ledger, usize), Violation> {
    let start_version = input.base.next_version;
    let orders = oracle::commit_orders(
        input.ledger,
        input.workload,
        input.case.writer_threads(),
        start_version,
    );
    let mut first_violation = None;
    for order in &orders {
        let ordered = input.ledger.reordered(order);
        let firsts = oracle::first_versions(input.workload, &ordered, start_version);
        let states = oracle::prefix_states(input.workload, &ordered, &input.base.state, &firsts);
        let ordered_input = CheckInput {
            ledger: &ordered,
            ..input.clone()
        };
        let prefix = PrefixCheck {
            input: &ordered_input,
            states: &states,
            firsts: &firsts,
            recovered,
        };
        let result = prefix.matching_prefix().and_then(|n| {
            check_final_version(&ordered_input, &states, &firsts, recovered, stats, n)
        });
        match result {
            Ok(n) => return Ok((ordered, n)),
            Err(v) => {
                first_violation.get_or_insert(v);
            }
        }
    }
    let mut v = first_violation.expect("at least one candidate order");
    if orders.len() > 1 {
        v.detail = format!(
            "{} (no commit order of {} candidates fits; shown: the first)",
            v.detail,
            orders.len()
        );
    }
    Err(v)
}

/// `version-mismatch` (R4): the replay's final version is the last version of the
/// recovered prefix. Several prefix lengths can give the same state (a txn that only
/// deletes absent keys changes nothing but the version), so any allowed n up to the
/// matching one whose last version agrees will do; returns it.
fn check_final_version(
    input: &CheckInput<'_>,
    states: &[State],
    firsts: &[u64],
    recovered: &State,
    stats: &ReplayStats,
    n: usize,
) -> Result<usize, Violation> {
    (input.ledger.required_prefix_len()..=n)
        .rev()
        .find(|m| {
            states[*m] == *recovered
                && final_version_of(input, input.ledger, firsts, *m) == stats.final_version
        })
        .ok_or_else(|| {
            Violation::new(
                FindingKind::VersionMismatch,
                format!(
                    "recovered prefix n = {n} ends at version {}, replay reports final_version {}",
                    final_version_of(input, input.ledger, firsts, n),
                    stats.final_version
                ),
            )
        })
}

/// R1-R4 for one commit order (a single writer's, `input.ledger` as it is): the recovered
/// state must equal the model after an allowed prefix (every required commit, no hole,
/// no partial or phantom commit) whose last version is the `final_version` replay
/// reported. `states` and `firsts` are [`oracle::prefix_states`] and
/// [`oracle::first_versions`] of a ledger whose attempts start with `input.ledger`'s (they
/// may cover more attempts: a sweep computes them once for the whole run). Returns the
/// prefix length, with the same verdicts [`check`] gives.
pub fn explain_recovered(
    input: &CheckInput<'_>,
    states: &[State],
    firsts: &[u64],
    recovered: &State,
    final_version: u64,
) -> Result<usize, Violation> {
    let prefix = PrefixCheck {
        input,
        states,
        firsts,
        recovered,
    };
    let n = prefix.matching_prefix()?;
    (input.ledger.required_prefix_len()..=n)
        .rev()
        .find(|m| {
            states[*m] == *recovered
                && final_version_of(input, input.ledger, firsts, *m) == final_version
        })
        .ok_or_else(|| {
            Violation::new(
                FindingKind::VersionMismatch,
                format!(
                    "recovered prefix n = {n} ends at version {}, replay reports final_version {final_version}",
                    final_version_of(input, input.ledger, firsts, n),
                ),
            )
        })
}

/// The finding kind of a failed open of a crash state: `legal-state-refused` for a
/// refusal, `recovery-failed` for anything else.
pub fn refusal_kind(e: &::engine::EngineError) -> FindingKind {
    open::refused(e)
}

/// `recovery-not-durable` (docs/faults.md P4): what recovery accepted is covered by a
/// completed fdatasync before anything builds on it.
fn check_recovery_durable(recovery: &Recovery) -> Result<(), Violation> {
    let accepted_end = recovery.valid_end_bytes();
    if recovery.synced_bytes < accepted_end {
        return Err(Violation::new(
            FindingKind::RecoveryNotDurable,
            format!(
                "recovery accepted the log up to offset {accepted_end} but its last completed fdatasync covered {} bytes",
                recovery.synced_bytes
            ),
        ));
    }
    Ok(())
}

/// `corruption-not-detected` (R5): the torn tail is cut (the log ends where reading
/// ended), reading ended after the last whole record, and the torn bytes are reported.
fn check_torn_tail_cut(
    input: &CheckInput<'_>,
    recovery: &Recovery,
    len_after: u64,
) -> Result<(), Violation> {
    let valid_end = recovery.valid_end_bytes();
    if len_after != valid_end {
        return Err(Violation::new(
            FindingKind::CorruptionNotDetected,
            format!("after recovery the WAL is {len_after} bytes, but reading ended at {valid_end}: the torn tail was not cut"),
        ));
    }
    let Some(expected_end) = input.expected_valid_end_bytes else {
        return Ok(());
    };
    if valid_end != expected_end {
        return Err(Violation::new(
            FindingKind::CorruptionNotDetected,
            format!("recovery ended the log at offset {valid_end}, the last whole record ends at {expected_end}"),
        ));
    }
    // A log shorter than its header (a power loss undid the size of a file created and
    // not yet synced) holds nothing torn: recovery writes the header again.
    let torn_expected = recovery.len_before.saturating_sub(expected_end);
    if input.expect_exact_torn_bytes && recovery.stats.torn_tail_bytes != torn_expected {
        return Err(Violation::new(
            FindingKind::CorruptionNotDetected,
            format!(
                "the crash left {torn_expected} torn bytes after offset {expected_end}, replay reports {}",
                recovery.stats.torn_tail_bytes
            ),
        ));
    }
    Ok(())
}

/// `corruption-not-detected` (R5: "non-zero damaged bytes are kept in a sidecar"): after
/// recovery, the non-zero bytes the crash left after the last whole record are in a
/// torn-tail sidecar named for that offset, byte for byte (zeros after them, if any). The
/// sidecar may be this recovery's or one an interrupted recovery made durable before it
/// cut the log (docs/faults.md P7: a power loss may take a sidecar's bytes only while the
/// log still holds them).
fn check_torn_bytes_kept(
    dir: &Path,
    input: &CheckInput<'_>,
    recovery: &Recovery,
) -> Result<(), Violation> {
    // Where the log ends: known from the layout, or (several writer threads) where this
    // recovery ended it; whether that end is right is the other checks' business.
    let expected_end = match input.expected_valid_end_bytes {
        Some(end) if end != recovery.valid_end_bytes() => return Ok(()), // `check_torn_tail_cut`
        Some(end) => end,
        None => recovery.valid_end_bytes(),
    };
    let torn = input
        .crashed_wal
        .get(usize::try_from(expected_end).unwrap_or(usize::MAX)..)
        .unwrap_or_default();
    let Some(nonzero_len) = torn.iter().rposition(|b| *b != 0).map(|at| at + 1) else {
        return Ok(());
    };
    let torn = &torn[..nonzero_len];
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((::engine::wal::sidecar::SidecarKind::Torn { .. }, offset)) =
            ::engine::wal::sidecar::parse_name(::engine::WAL_FILE_NAME, &name)
        else {
            continue;
        };
        if offset != expected_end {
            continue;
        }
        let kept = std::fs::read(entry.path()).unwrap_or_default();
        let holds = kept.len() >= torn.len()
            && kept[..torn.len()] == *torn
            && kept[torn.len()..].iter().all(|b| *b == 0);
        if holds {
            return Ok(());
        }
        let differs_at = kept.iter().zip(torn).position(|(a, b)| a != b);
        seen.push(format!(
            "{name} ({} bytes, {})",
            kept.len(),
            match differs_at {
                Some(at) => format!("differs at byte {at}"),
                None => "shorter".to_string(),
            }
        ));
    }
    Err(Violation::new(
        FindingKind::CorruptionNotDetected,
        format!(
            "the crash left {nonzero_len} torn bytes (not all zero) after offset {expected_end}, and no \
             sidecar keeps them: {}",
            if seen.is_empty() {
                "no torn-tail sidecar for that offset".to_string()
            } else {
                seen.join("; ")
            }
        ),
    ))
}

/// `recovery-not-idempotent` (R7): a second recovery sees the same state as the first.
fn check_second_recovery(first: &State, again: &State) -> Result<(), Violation> {
    if again == first {
        return Ok(());
    }
    let mut v = Violation::new(
        FindingKind::RecoveryNotIdempotent,
        "the second reopen recovered a different state than the first",
    );
    v.diffs = diff_states(first, again, 5);
    Err(v)
}
