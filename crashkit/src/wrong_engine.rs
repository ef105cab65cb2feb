//! Deliberately wrong engines, simulated on top of the real one, for the checker's
//! self-test ([`crate::selftest`]): each must be reported, or the checker cannot be trusted.

use std::path::Path;

use engine::{Key, RunId, Value};

use crate::checker::CheckInput;
use crate::oracle::{self, State};
use crate::workload::{OpPlan, TxnPlan};

/// Deliberately wrong engines, simulated on top of the real one, for the checker's
/// self-test: each must be reported, or the checker cannot be trusted. The first six are
/// simulated by the checker's caller; the last two are real wrong behaviour inside the
/// writer child (its storage, its options), which only power-loss crash states expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WrongEngine {
    /// Recovers everything but the last acknowledged txn.
    DropsLastAcked,
    /// Also applies the first half of a txn that never committed.
    AppliesIncompleteTxn,
    /// Applies the committed txns in reverse commit order.
    AppliesInWrongOrder,
    /// Recovers every value with its version off by one.
    ShiftsVersions,
    /// Keeps the torn tail and appends new commits after it.
    KeepsTornTailAndAppends,
    /// Recovers without an fdatasync of what it accepted (its syncs are hidden from the
    /// tracker, as if they never happened).
    SkipsRecoverySync,
    /// The writer's storage reports every fdatasync complete at once and never issues it
    /// ([`crate::seam::SkippedSyncs`]): Strict commits are acknowledged before any
    /// sync made them durable. A process kill cannot tell; a power loss can.
    AcksBeforeSyncReturns,
    /// The writer creates its database in format version 1, whose reader takes any valid
    /// record after damage for proof of corruption, and so refuses a legal crash state
    /// that lost an unsynced sector while a later one reached the disk.
    RefusesOutOfOrderStates,
    /// The writer never fsyncs a directory ([`crate::seam::SkippedSyncs`]): the creation of
    /// `wal.log` and `IDENTITY` (and the rename that makes IDENTITY) is not durable, and a
    /// power loss may undo it. Only a crash state that undoes directory entries shows it.
    SkipsDirSync,
}

impl WrongEngine {
    pub const ALL: [WrongEngine; 9] = [
        WrongEngine::DropsLastAcked,
        WrongEngine::AppliesIncompleteTxn,
        WrongEngine::AppliesInWrongOrder,
        WrongEngine::ShiftsVersions,
        WrongEngine::KeepsTornTailAndAppends,
        WrongEngine::SkipsRecoverySync,
        WrongEngine::AcksBeforeSyncReturns,
        WrongEngine::RefusesOutOfOrderStates,
        WrongEngine::SkipsDirSync,
    ];

    /// Whether it acts inside the writer child (handed over with the case); the checker
    /// then knows nothing of it.
    pub fn acts_in_writer(self) -> bool {
        matches!(
            self,
            WrongEngine::AcksBeforeSyncReturns
                | WrongEngine::RefusesOutOfOrderStates
                | WrongEngine::SkipsDirSync
        )
    }
}

pub(crate) fn simulate_wrong_state(
    wrong: WrongEngine,
    input: &CheckInput<'_>,
    states: &[State],
    firsts: &[u64],
    recovered: State,
) -> State {
    let ledger = input.ledger;
    let acked: Vec<usize> = (0..ledger.attempts.len())
        .filter(|m| ledger.attempts[*m].ack.is_some())
        .collect();
    match wrong {
        WrongEngine::DropsLastAcked => match acked.last() {
            Some(last) => states[*last].clone(),
            None => recovered,
        },
        WrongEngine::AppliesIncompleteTxn => {
            // The first half of the in-flight (attempted, unacknowledged) txn, with the
            // versions it would have had; without one, half of a fabricated txn.
            let mut s = recovered;
            let in_flight = ledger
                .attempts
                .iter()
                .zip(firsts)
                .rev()
                .find(|(a, _)| a.ack.is_none() && input.workload.txns[a.idx].ops.len() >= 2);
            let (mut partial, first) = match in_flight {
                Some((a, first)) => (input.workload.txns[a.idx].clone(), *first),
                None => (fabricated_txn(3), 1_000_000),
            };
            partial.ops.truncate(partial.ops.len().div_ceil(2));
            oracle::apply(&mut s, &partial, first);
            s
        }
        WrongEngine::AppliesInWrongOrder => {
            let mut s = State::new();
            for m in acked.iter().rev() {
                oracle::apply(
                    &mut s,
                    &input.workload.txns[ledger.attempts[*m].idx],
                    firsts[*m],
                );
            }
            s
        }
        WrongEngine::ShiftsVersions => recovered
            .into_iter()
            .map(|(k, (v, ver))| (k, (v, ver + 1)))
            .collect(),
        WrongEngine::KeepsTornTailAndAppends
        | WrongEngine::SkipsRecoverySync
        | WrongEngine::AcksBeforeSyncReturns
        | WrongEngine::RefusesOutOfOrderStates
        | WrongEngine::SkipsDirSync => recovered,
    }
}

fn fabricated_txn(n_ops: usize) -> TxnPlan {
    let ns = std::sync::Arc::new(engine::Namespace::new("phantom", "app", "x", RunId(7)));
    TxnPlan {
        run_id: RunId(7),
        ops: (0..n_ops)
            .map(|i| OpPlan::Put {
                key: Key::kv(ns.clone(), format!("p{i}").into_bytes()),
                value: Value::I64(i as i64),
            })
            .collect(),
        abort: false,
        flush_after: false,
    }
}

/// The wrong engine of [`WrongEngine::KeepsTornTailAndAppends`]: puts the torn bytes
/// back after the valid end and appends the new commits' records after them.
pub(crate) fn append_after_torn_tail(
    wal_path: &Path,
    crashed_wal: &[u8],
    valid_end: u64,
    post: &[TxnPlan],
    max_txn_id: u64,
    expected: &mut State,
) -> std::io::Result<()> {
    use engine::wal::entry::{encode_begin, encode_end, encode_write};
    use std::io::Write;
    debug_assert!(valid_end as usize <= crashed_wal.len());
    let mut bytes = crashed_wal.to_vec();
    // Framed as the log's own records, claiming nothing more synced than the valid end.
    let framing = engine::wal::Framing {
        codec: engine::wal::FrameCodec::for_image(crashed_wal)
            .unwrap_or(engine::wal::FrameCodec::V1),
        synced_offset_bytes: valid_end.max(engine::wal::HEADER_LEN as u64),
    };
    let mut version = expected.values().map(|(_, v)| *v).max().unwrap_or(0) + 1_000;
    for (i, txn) in post.iter().enumerate() {
        let txn_id = max_txn_id + 100 + i as u64;
        encode_begin(
            &mut bytes,
            framing,
            txn_id,
            txn.run_id,
            engine::Timestamp(1),
        );
        for op in &txn.ops {
            if let OpPlan::Put { key, value } = op {
                encode_write(&mut bytes, framing, txn_id, txn.run_id, key, value, version);
            }
        }
        encode_end(
            &mut bytes,
            framing,
            engine::wal::RecordType::CommitTxn,
            txn_id,
            txn.run_id,
        );
        oracle::apply(expected, txn, version);
        version += txn.ops.len() as u64;
    }
    let mut f = std::fs::File::create(wal_path)?;
    f.write_all(&bytes)?;
    f.sync_all()
}
