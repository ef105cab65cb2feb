//! The applying stage of replay: records are decoded and grouped by transaction, and a transaction's operations reach the store, in record order with
//! the BeginTxn timestamp, exactly when its CommitTxn is seen. Everything else is
//! discarded, counted and logged. A record that does not decode ends the log there.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::ControlFlow;

use super::batch::{Batch, BatchedRecord};
use crate::store::{ReplayApplier, ReplayOp};
use crate::types::{Namespace, RunId, Timestamp};
use crate::wal::entry::{EntryRef, NamespaceCache};
use crate::wal::ReadEnd;
use std::sync::Arc;

#[derive(Debug)]
struct OpenTxn {
    run_id: RunId,
    timestamp: Timestamp,
    ops: Vec<ReplayOp>,
}

/// Emptied per-transaction op vectors kept for reuse (a log of single-put transactions
/// would otherwise allocate and free one vector per transaction).
const OPS_POOL_LEN_MAX: usize = 64;
/// Op vectors larger than this are freed rather than pooled.
const POOLED_OPS_CAPACITY_MAX: usize = 1024;

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

/// What the applying stage counts: every record up to the end of the log (or up to the
/// first that does not decode), applied or not, and what became of it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct GroupTally {
    pub(super) records_read: u64,
    pub(super) bytes_replayed: u64,
    pub(super) max_txn_id: u64,
    pub(super) max_version_seen: u64,
    pub(super) txns_applied: u64,
    pub(super) writes_applied: u64,
    pub(super) deletes_applied: u64,
    pub(super) discarded_txns: u64,
    pub(super) aborted_txns: u64,
    pub(super) orphaned_entries: u64,
}

/// Decodes records, groups them by transaction and applies committed transactions.
#[derive(Debug)]
pub(super) struct Grouper<'a> {
    applier: ReplayApplier<'a>,
    open: OpenTxns,
    ops_pool: Vec<Vec<ReplayOp>>,
    namespaces: NamespaceCache,
    tally: GroupTally,
    /// Set at the first record that does not decode; nothing after it is taken.
    undecodable: Option<ReadEnd>,
}

impl<'a> Grouper<'a> {
    pub(super) fn new(applier: ReplayApplier<'a>) -> Grouper<'a> {
        Grouper {
            applier,
            open: OpenTxns::default(),
            ops_pool: Vec::new(),
            namespaces: NamespaceCache::default(),
            tally: GroupTally::default(),
            undecodable: None,
        }
    }

    /// Takes the records of `batch` in order and leaves it empty. Breaks once the log has
    /// ended at a record that does not decode (the records after it are dropped).
    pub(super) fn take_batch(&mut self, batch: &mut Batch) -> ControlFlow<()> {
        let bytes = &batch.bytes;
        let mut flow = ControlFlow::Continue(());
        for record in batch.records.drain(..) {
            if flow.is_continue() {
                flow = self.record(record, bytes);
            }
        }
        batch.bytes.clear();
        flow
    }

    /// Takes the next record of the log; `bytes` holds the batch's payload bytes.
    fn record(&mut self, record: BatchedRecord, bytes: &[u8]) -> ControlFlow<()> {
        let offset_bytes = record.offset_bytes;
        let len_bytes = u64::from(record.len_bytes);
        let payload = &bytes[record.payload];
        let entry = match EntryRef::decode(record.kind, payload, &mut self.namespaces) {
            Ok(entry) => entry,
            Err(e) => {
                self.undecodable = Some(ReadEnd::undecodable(
                    offset_bytes,
                    len_bytes,
                    record.kind,
                    &e,
                ));
                return ControlFlow::Break(());
            }
        };
        self.tally.records_read += 1;
        self.tally.bytes_replayed += len_bytes;
        self.tally.max_txn_id = self.tally.max_txn_id.max(entry.txn_id());
        match entry {
            EntryRef::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => {
                let txn = OpenTxn {
                    run_id,
                    timestamp,
                    ops: self.ops_pool.pop().unwrap_or_default(),
                };
                if let Some(previous) = self.open.begin(txn_id, txn) {
                    self.tally.discarded_txns += 1;
                    log::warn!(
                        "WAL replay: BeginTxn for txn {txn_id} at offset {offset_bytes} while txn \
                         {txn_id} ({}, {} ops) was still open; discarding the earlier one",
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
                self.tally.max_version_seen = self.tally.max_version_seen.max(version);
                match self.open.get_mut(txn_id) {
                    Some(txn) => txn.ops.push(ReplayOp::put(key, value, version)),
                    None => self.orphan("Write", txn_id, offset_bytes),
                }
            }
            EntryRef::Delete {
                txn_id,
                key,
                version,
                ..
            } => {
                self.tally.max_version_seen = self.tally.max_version_seen.max(version);
                match self.open.get_mut(txn_id) {
                    Some(txn) => txn.ops.push(ReplayOp::delete(key, version)),
                    None => self.orphan("Delete", txn_id, offset_bytes),
                }
            }
            EntryRef::CommitTxn { txn_id, .. } => match self.open.remove(txn_id) {
                Some(mut txn) => {
                    self.tally.txns_applied += 1;
                    for op in txn.ops.drain(..) {
                        if op.is_put() {
                            self.tally.writes_applied += 1;
                        } else {
                            self.tally.deletes_applied += 1;
                        }
                        self.applier.apply(op, txn.timestamp);
                    }
                    if self.ops_pool.len() < OPS_POOL_LEN_MAX
                        && txn.ops.capacity() <= POOLED_OPS_CAPACITY_MAX
                    {
                        self.ops_pool.push(txn.ops);
                    }
                }
                None => self.orphan("CommitTxn", txn_id, offset_bytes),
            },
            EntryRef::NamespaceDef { .. } => {}
            // A whole one-operation transaction: committed by being read, applied now.
            EntryRef::PutTxn {
                key,
                value,
                version,
                timestamp,
                ..
            } => {
                self.tally.max_version_seen = self.tally.max_version_seen.max(version);
                self.tally.txns_applied += 1;
                self.tally.writes_applied += 1;
                self.applier
                    .apply(ReplayOp::put(key, value, version), timestamp);
            }
            EntryRef::DeleteTxn {
                key,
                version,
                timestamp,
                ..
            } => {
                self.tally.max_version_seen = self.tally.max_version_seen.max(version);
                self.tally.txns_applied += 1;
                self.tally.deletes_applied += 1;
                self.applier
                    .apply(ReplayOp::delete(key, version), timestamp);
            }
            EntryRef::AbortTxn { txn_id, .. } => match self.open.remove(txn_id) {
                Some(txn) => {
                    self.tally.aborted_txns += 1;
                    log::warn!(
                        "WAL replay: discarding aborted txn {txn_id} ({}, {} ops)",
                        txn.run_id,
                        txn.ops.len()
                    );
                }
                None => self.orphan("AbortTxn", txn_id, offset_bytes),
            },
        }
        ControlFlow::Continue(())
    }

    fn orphan(&mut self, kind: &str, txn_id: u64, offset_bytes: u64) {
        self.tally.orphaned_entries += 1;
        log::warn!(
            "WAL replay: discarding orphaned {kind} record of txn {txn_id} at offset \
             {offset_bytes} (no open BeginTxn)"
        );
    }

    /// Discards (and logs) the transactions still open, releases the store, and returns the
    /// counts and, if the log ended at a record that does not decode, that end, and the
    /// namespaces the log's NamespaceDef records defined (by id).
    pub(super) fn finish(mut self) -> (GroupTally, Option<ReadEnd>, Vec<Arc<Namespace>>) {
        self.applier.finish();
        for (txn_id, txn) in self.open.into_sorted() {
            self.tally.discarded_txns += 1;
            log::warn!(
                "WAL replay: discarding incomplete txn {txn_id} ({}, {} ops, no CommitTxn or AbortTxn)",
                txn.run_id,
                txn.ops.len()
            );
        }
        let defined = self.namespaces.defined().to_vec();
        (self.tally, self.undecodable, defined)
    }
}
