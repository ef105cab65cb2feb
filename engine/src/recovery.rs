//! Recovery: rebuild the store from the WAL.
//!
//! [`replay_wal`] streams the log once. Records are grouped by `txn_id`; a transaction is
//! applied, whole and with its original versions, when its `CommitTxn` is read, so commit
//! order (not begin order or txn-id order) decides which write of a key wins. Memory is
//! bounded by the transactions open at any point in the log, not by its length.
//!
//! Invariants: nothing after a damaged record is applied; an incomplete, aborted or
//! orphaned record never reaches the store; each is counted and logged as a warning.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::durability::RecoveryMode;
use crate::error::Result;
use crate::store::{ReplayOp, UnifiedStore};
use crate::types::{RunId, Timestamp};
use crate::wal::entry::EntryRef;
use crate::wal::{CorruptionReport, ReadEnd, WAL};

/// What replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Committed transactions applied to the store.
    pub txns_applied: u64,
    /// Write records applied (inside committed transactions).
    pub writes_applied: u64,
    /// Delete records applied (inside committed transactions).
    pub deletes_applied: u64,
    /// Transactions begun but neither committed nor aborted when the log ended.
    pub discarded_txns: u64,
    /// Transactions that ended with an AbortTxn record.
    pub aborted_txns: u64,
    /// Write/Delete/CommitTxn/AbortTxn records whose transaction had no open BeginTxn.
    pub orphaned_entries: u64,
    /// Highest version in the store after replay.
    pub final_version: u64,
    /// Highest version seen in any record, applied or not.
    pub max_version_seen: u64,
    /// Highest transaction id seen in any record, applied or not.
    pub max_txn_id: u64,
    /// Records read (valid frames).
    pub records_read: u64,
    /// Bytes of valid records read (header excluded).
    pub bytes_replayed: u64,
    /// Bytes cut off as a torn tail (0 for a clean end).
    pub torn_tail_bytes: u64,
    /// True when the torn tail was all zeros (e.g. unwritten preallocated space).
    pub torn_tail_zero_filled: bool,
    /// Set when point-in-time recovery cut off damaged history.
    pub corruption: Option<CorruptionReport>,
    /// Why reading stopped.
    pub end: Option<ReadEnd>,
}

#[derive(Debug)]
struct OpenTxn {
    run_id: RunId,
    timestamp: Timestamp,
    ops: Vec<ReplayOp>,
}

/// Emptied per-transaction op vectors kept for reuse (a log of single-put transactions
/// would otherwise allocate and free one vector per transaction).
const OPS_POOL_LEN_MAX: usize = 64;

/// Hashes a txn id with one multiply. Txn ids are dense integers chosen by the engine, so
/// SipHash's flooding resistance buys nothing here and costs a visible share of replay.
#[derive(Debug, Default)]
struct TxnIdHasher(u64);

impl Hasher for TxnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The transactions open at the current point of the log.
///
/// Almost every log writes each transaction's records back to back (the engine writes a
/// transaction as one contiguous append), so the most recently begun transaction sits in
/// `latest` and is begun, extended and committed without hashing; only transactions that
/// interleave with a later BeginTxn move to the map.
#[derive(Debug, Default)]
struct OpenTxns {
    latest: Option<(u64, OpenTxn)>,
    others: HashMap<u64, OpenTxn, BuildHasherDefault<TxnIdHasher>>,
}

impl OpenTxns {
    /// Opens `txn_id`; returns the transaction it replaces if that id was still open.
    fn begin(&mut self, txn_id: u64, txn: OpenTxn) -> Option<OpenTxn> {
        match self.latest.replace((txn_id, txn)) {
            Some((latest_id, previous)) if latest_id == txn_id => Some(previous),
            Some((latest_id, earlier)) => {
                let replaced = self.others.remove(&txn_id);
                self.others.insert(latest_id, earlier);
                replaced
            }
            None => self.others.remove(&txn_id),
        }
    }

    fn get_mut(&mut self, txn_id: u64) -> Option<&mut OpenTxn> {
        match &mut self.latest {
            Some((latest_id, txn)) if *latest_id == txn_id => Some(txn),
            _ => self.others.get_mut(&txn_id),
        }
    }

    fn remove(&mut self, txn_id: u64) -> Option<OpenTxn> {
        match &self.latest {
            Some((latest_id, _)) if *latest_id == txn_id => self.latest.take().map(|(_, txn)| txn),
            _ => self.others.remove(&txn_id),
        }
    }

    /// Every transaction still open, by txn id.
    fn into_sorted(self) -> Vec<(u64, OpenTxn)> {
        let mut open: Vec<_> = self.others.into_iter().chain(self.latest).collect();
        open.sort_by_key(|(txn_id, _)| *txn_id);
        open
    }
}

/// Replays the WAL into `store` with the default recovery mode
/// ([`RecoveryMode::TolerateCorruptTail`]), cutting a torn tail and refusing on corruption.
pub fn replay_wal(wal: &WAL, store: &UnifiedStore) -> Result<ReplayStats> {
    replay_wal_with_mode(wal, store, RecoveryMode::default())
}

/// Replays the WAL into `store` under `recovery_mode`.
///
/// On success the log ends exactly after its last valid record (a torn tail is truncated
/// and the file fdatasynced) and the WAL accepts appends.
pub fn replay_wal_with_mode(
    wal: &WAL,
    store: &UnifiedStore,
    recovery_mode: RecoveryMode,
) -> Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let mut open = OpenTxns::default();
    let mut ops_pool: Vec<Vec<ReplayOp>> = Vec::new();
    // Holds the store's write lock until replay ends: readers never see a partial replay.
    let mut applier = store.replay_applier();
    let mut reader = wal.reader()?;
    // Transactions are applied as their CommitTxn records are read, so a corruption found
    // later would leave the store ahead of what the caller accepts. The store handed to
    // replay is owned by the opening database, which discards it on error.
    while let Some(record) = reader.next_entry()? {
        stats.records_read += 1;
        stats.bytes_replayed += record.len_bytes;
        stats.max_txn_id = stats.max_txn_id.max(record.entry.txn_id());
        match record.entry {
            EntryRef::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => {
                let txn = OpenTxn {
                    run_id,
                    timestamp,
                    ops: ops_pool.pop().unwrap_or_default(),
                };
                if let Some(previous) = open.begin(txn_id, txn) {
                    stats.discarded_txns += 1;
                    log::warn!(
                        "WAL replay: BeginTxn for txn {txn_id} at offset {} while txn {txn_id} ({}, {} ops) \
                         was still open; discarding the earlier one",
                        record.offset_bytes,
                        previous.run_id,
                        previous.ops.len()
                    );
                }
            }
            EntryRef::Write {
                txn_id,
                key,
                value,
                version,
                ..
            } => {
                stats.max_version_seen = stats.max_version_seen.max(version);
                match open.get_mut(txn_id) {
                    Some(txn) => txn
                        .ops
                        .push(ReplayOp::put(&key, value, version, txn.timestamp)),
                    None => orphan(&mut stats, "Write", txn_id, record.offset_bytes),
                }
            }
            EntryRef::Delete {
                txn_id,
                key,
                version,
                ..
            } => {
                stats.max_version_seen = stats.max_version_seen.max(version);
                match open.get_mut(txn_id) {
                    Some(txn) => txn.ops.push(ReplayOp::delete(&key, version)),
                    None => orphan(&mut stats, "Delete", txn_id, record.offset_bytes),
                }
            }
            EntryRef::CommitTxn { txn_id, .. } => match open.remove(txn_id) {
                Some(mut txn) => {
                    stats.txns_applied += 1;
                    for op in txn.ops.drain(..) {
                        if op.is_put() {
                            stats.writes_applied += 1;
                        } else {
                            stats.deletes_applied += 1;
                        }
                        applier.apply(op);
                    }
                    if ops_pool.len() < OPS_POOL_LEN_MAX && txn.ops.capacity() <= 1024 {
                        ops_pool.push(txn.ops);
                    }
                }
                None => orphan(&mut stats, "CommitTxn", txn_id, record.offset_bytes),
            },
            EntryRef::AbortTxn { txn_id, .. } => match open.remove(txn_id) {
                Some(txn) => {
                    stats.aborted_txns += 1;
                    log::warn!(
                        "WAL replay: discarding aborted txn {txn_id} ({}, {} ops)",
                        txn.run_id,
                        txn.ops.len()
                    );
                }
                None => orphan(&mut stats, "AbortTxn", txn_id, record.offset_bytes),
            },
        }
    }
    applier.finish();
    let end = reader
        .end()
        .cloned()
        .expect("reader returned None, so it has an end");
    drop(reader);
    for (txn_id, txn) in open.into_sorted() {
        stats.discarded_txns += 1;
        log::warn!(
            "WAL replay: discarding incomplete txn {txn_id} ({}, {} ops, no CommitTxn or AbortTxn)",
            txn.run_id,
            txn.ops.len()
        );
    }
    stats.corruption = wal.accept_end(&end, recovery_mode)?;
    if let ReadEnd::TornTail {
        torn_bytes,
        zero_filled,
        ..
    } = &end
    {
        stats.torn_tail_bytes = *torn_bytes;
        stats.torn_tail_zero_filled = *zero_filled;
    }
    stats.end = Some(end);
    stats.final_version = store.current_version();
    Ok(stats)
}

fn orphan(stats: &mut ReplayStats, kind: &str, txn_id: u64, offset_bytes: u64) {
    stats.orphaned_entries += 1;
    log::warn!("WAL replay: discarding orphaned {kind} record of txn {txn_id} at offset {offset_bytes} (no open BeginTxn)");
}
