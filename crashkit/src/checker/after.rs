//! After recovery: two Strict commits get fresh ids and versions (R4) and survive the
//! next reopen.

use engine::{CommitInfo, Database, Key, RunId, Value};
use rand::Rng;

use crate::case::{Case, Purpose};
use crate::finding::{FindingKind, Violation};
use crate::oracle::State;
use crate::workload::{OpPlan, TxnPlan};

use super::open::diff_states;

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

/// `recovery-failed`: commits `txn` in the reopened database; it must succeed.
pub(crate) fn commit_after_recovery(db: &Database, txn: &TxnPlan) -> Result<CommitInfo, Violation> {
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
    t.commit().map_err(|e| {
        Violation::new(
            FindingKind::RecoveryFailed,
            format!("a Strict commit after recovery failed: {e}"),
        )
    })
}

/// `id-reused`: a commit after recovery got a txn id or version at or below one already
/// used (`max_txn_id`, `max_version`).
pub(crate) fn check_fresh_ids(
    info: &CommitInfo,
    max_txn_id: u64,
    max_version: u64,
) -> Result<(), Violation> {
    if info.txn_id <= max_txn_id {
        return Err(Violation::new(
            FindingKind::IdReused,
            format!(
                "a commit after recovery got txn id {}, but txn id {max_txn_id} was already used",
                info.txn_id
            ),
        ));
    }
    if info.versions.start <= max_version {
        return Err(Violation::new(
            FindingKind::IdReused,
            format!(
                "a commit after recovery got version {}, not above final_version {max_version}",
                info.versions.start
            ),
        ));
    }
    Ok(())
}

/// `lost-acked-txn`: the state after the post-recovery commits and a reopen is what they
/// should have made.
pub(crate) fn check_post_recovery_survived(
    expected: &State,
    after: &State,
) -> Result<(), Violation> {
    if after == expected {
        return Ok(());
    }
    let mut v = Violation::new(
        FindingKind::LostAckedTxn,
        "Strict commits made after recovery did not survive the next reopen",
    );
    v.diffs = diff_states(expected, after, 5);
    Err(v)
}
