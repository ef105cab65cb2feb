//! Deliberately wrong engines, simulated on top of the real one, for the checker's
//! self-test ([`crate::selftest`]): each must be reported, or the checker cannot be trusted.

use std::sync::Arc;

use engine::{Key, RunId, Value};

use crate::checker::{AppendContext, EngineUnderTest, RealEngine, RecoveryContext};
use crate::faults::storage::Hook;
use crate::faults::wrong_storage::{Skipped, SkippedSyncs};
use crate::oracle::{self, State};
use crate::workload::{OpPlan, TxnPlan};

/// Deliberately wrong engines, simulated on top of the real one, for the checker's
/// self-test: each must be reported, or the checker cannot be trusted. Each is a fault:
/// applied to what the first recovery produced, to the storage that recovery (or the
/// writer child) runs on, or to the writer's options; the checker only ever sees an
/// [`EngineUnderTest`]. Those acting in the writer show only in power-loss crash states.
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
    /// Recovers without an fdatasync of what it accepted: the storage under the first
    /// recovery answers every fdatasync of the log itself, above the checker's tracker.
    SkipsRecoverySync,
    /// The writer's storage reports every fdatasync complete at once and never issues it
    /// ([`Skipped::LogSyncs`]): Strict commits are acknowledged before any
    /// sync made them durable. A process kill cannot tell; a power loss can.
    AcksBeforeSyncReturns,
    /// The writer creates its database in format version 1, whose reader takes any valid
    /// record after damage for proof of corruption, and so refuses a legal crash state
    /// that lost an unsynced sector while a later one reached the disk.
    RefusesOutOfOrderStates,
    /// The writer never fsyncs a directory ([`Skipped::DirSyncs`]): the creation of
    /// `wal.log` and `IDENTITY` (and the rename that makes IDENTITY) is not durable, and a
    /// power loss may undo it. Only a crash state that undoes directory entries shows it.
    SkipsDirSync,
    /// Recovery cuts a torn tail (`set_len`) but does not fdatasync the cut before new
    /// records are appended ([`Skipped::SyncAfterRecoveryCut`], under the first recovery,
    /// above the checker's tracker): a power loss may bring the cut bytes back behind
    /// the new records (docs/faults.md P6).
    CutNotSyncedBeforeAppends,
    /// Recovery copies a torn tail into its sidecar and cuts it from the log, but never
    /// fdatasyncs the copy ([`Skipped::SidecarSyncs`], in the recovering child and under
    /// the first recovery): the cut can be durable while the kept bytes are not, and a
    /// power loss then destroys them (R5, docs/faults.md P7). Only the crash states of an
    /// interrupted recovery show it.
    SkipsSidecarSync,
}

impl WrongEngine {
    pub const ALL: [WrongEngine; 11] = [
        WrongEngine::DropsLastAcked,
        WrongEngine::AppliesIncompleteTxn,
        WrongEngine::AppliesInWrongOrder,
        WrongEngine::ShiftsVersions,
        WrongEngine::KeepsTornTailAndAppends,
        WrongEngine::SkipsRecoverySync,
        WrongEngine::AcksBeforeSyncReturns,
        WrongEngine::RefusesOutOfOrderStates,
        WrongEngine::SkipsDirSync,
        WrongEngine::CutNotSyncedBeforeAppends,
        WrongEngine::SkipsSidecarSync,
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

    /// Whether it acts inside the recovering child (the one a recovery crash kills), and
    /// under the checker's first recovery too.
    pub fn acts_in_recoverer(self) -> bool {
        self == WrongEngine::SkipsSidecarSync
    }

    /// What a case needs for it to show: `(power loss, recovery crash)`. One acting in
    /// the writer shows only in power-loss crash states, one acting in the recovering
    /// child only in the crash states of an interrupted recovery.
    pub fn needs(self) -> (bool, bool) {
        (
            self.acts_in_writer() || self.acts_in_recoverer(),
            self.acts_in_recoverer(),
        )
    }

    /// The hook it puts under the recovering child's storage (outside the trace of
    /// recovery's I/O, so the trace shows only what reached the files), if it acts there.
    pub fn recoverer_storage(self) -> Option<Arc<dyn Hook>> {
        match self {
            WrongEngine::SkipsSidecarSync => Some(SkippedSyncs::hook(Skipped::SidecarSyncs)),
            _ => None,
        }
    }

    /// The hook it puts under the writer child's storage (below the sync tracker, above
    /// the trace), if it acts there.
    pub fn writer_storage(self) -> Option<Arc<dyn Hook>> {
        match self {
            WrongEngine::AcksBeforeSyncReturns => Some(SkippedSyncs::hook(Skipped::LogSyncs)),
            WrongEngine::SkipsDirSync => Some(SkippedSyncs::hook(Skipped::DirSyncs)),
            _ => None,
        }
    }

    /// The format version its writer creates a database with, when not the current one.
    pub fn writer_format_version(self) -> Option<u32> {
        (self == WrongEngine::RefusesOutOfOrderStates).then_some(1)
    }

    /// The engine the checker drives when the cycle tests this wrong engine: the real one
    /// when it acts in the writer (the checker then knows nothing of it).
    pub fn under_test(wrong: Option<WrongEngine>) -> Box<dyn EngineUnderTest> {
        match wrong {
            Some(w) if !w.acts_in_writer() => Box::new(w),
            _ => Box::new(RealEngine),
        }
    }
}

impl EngineUnderTest for WrongEngine {
    fn recovery_storage(&self) -> Vec<Arc<dyn Hook>> {
        match self {
            WrongEngine::SkipsRecoverySync => vec![SkippedSyncs::hook(Skipped::LogSyncs)],
            WrongEngine::CutNotSyncedBeforeAppends => {
                vec![SkippedSyncs::hook(Skipped::SyncAfterRecoveryCut)]
            }
            // The same fault as in the recovering child.
            WrongEngine::SkipsSidecarSync => self.recoverer_storage().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn recovered(&self, real: State, context: &RecoveryContext<'_>) -> State {
        distort_recovered(*self, context, real)
    }

    fn append_after_recovery(
        &self,
        post: &[TxnPlan],
        context: &AppendContext<'_>,
        expected: &State,
    ) -> Option<std::io::Result<State>> {
        (*self == WrongEngine::KeepsTornTailAndAppends).then(|| {
            let mut expected = expected.clone();
            append_after_torn_tail(context, post, &mut expected).map(|()| expected)
        })
    }
}

/// What the wrong engines that change the recovered state recover instead of `recovered`.
fn distort_recovered(wrong: WrongEngine, context: &RecoveryContext<'_>, recovered: State) -> State {
    let (input, states, firsts) = (context.input, context.states, context.firsts);
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
        | WrongEngine::SkipsDirSync
        | WrongEngine::CutNotSyncedBeforeAppends
        | WrongEngine::SkipsSidecarSync => recovered,
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
fn append_after_torn_tail(
    context: &AppendContext<'_>,
    post: &[TxnPlan],
    expected: &mut State,
) -> std::io::Result<()> {
    let (wal_path, crashed_wal, valid_end, max_txn_id) = (
        context.wal_path,
        context.crashed_wal,
        context.valid_end_bytes,
        context.max_txn_id,
    );
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
