//! Transactions: buffered puts and deletes, written to the WAL as one contiguous append at
//! commit. An aborted (or dropped) transaction writes nothing.

use std::ops::Range;

use super::Database;
use crate::error::{EngineError, Result};
use crate::store::StoreOp;
use crate::types::{Key, RunId, Timestamp, Value};
use crate::wal::entry::{
    encode_begin, encode_delete, encode_end, encode_namespace_def, encode_single_op_txn,
    encode_write, Framing, SingleOp,
};
use crate::wal::entry::{encoded_key_len, encoded_value_len};
use crate::wal::format::{RECORD_HEADER_LEN, RECORD_PAYLOAD_LEN_MAX, SYNCED_OFFSET_LEN_MAX};
use crate::wal::RecordType;

/// Fixed part of a Write/Delete payload: txn_id, run_id, version.
const WRITE_FIXED_LEN: usize = 24;

/// One buffered operation.
#[derive(Debug, Clone)]
pub(crate) enum PendingOp {
    Put { key: Key, value: Value },
    Delete { key: Key },
}

impl PendingOp {
    pub(crate) fn encoded_len_hint(&self) -> usize {
        RECORD_HEADER_LEN
            + SYNCED_OFFSET_LEN_MAX
            + WRITE_FIXED_LEN
            + match self {
                PendingOp::Put { key, value } => encoded_key_len(key) + encoded_value_len(value),
                PendingOp::Delete { key } => encoded_key_len(key),
            }
    }

    pub(crate) fn into_store_op(self, version: u64) -> StoreOp {
        match self {
            PendingOp::Put { key, value } => StoreOp::Put {
                key,
                value,
                version,
            },
            PendingOp::Delete { key } => StoreOp::Delete { key, version },
        }
    }
}

/// Encodes a whole transaction: BeginTxn, one record per op (versions `first_version..`),
/// CommitTxn. From format version 2 on, a transaction of one operation is one PutTxn or
/// DeleteTxn record instead (after a NamespaceDef when `namespace_id` says its namespace is
/// new to the log): about half the bytes, and atomic by its single checksum.
// One argument per field of the records it writes; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_txn(
    out: &mut Vec<u8>,
    framing: Framing,
    namespace_id: impl FnOnce(&std::sync::Arc<crate::types::Namespace>) -> (u64, bool),
    txn_id: u64,
    run_id: RunId,
    timestamp: Timestamp,
    first_version: u64,
    ops: &[PendingOp],
) {
    if let ([op], true) = (ops, framing.codec.carries_synced_offset()) {
        let (key, value) = match op {
            PendingOp::Put { key, value } => (key, Some(value)),
            PendingOp::Delete { key } => (key, None),
        };
        let (ns_id, new) = namespace_id(&key.namespace);
        if new {
            encode_namespace_def(out, framing, ns_id, &key.namespace);
        }
        let single = SingleOp {
            txn_id,
            run_id,
            timestamp,
            version: first_version,
            ns_id,
        };
        encode_single_op_txn(out, framing, single, key, value);
        return;
    }
    encode_begin(out, framing, txn_id, run_id, timestamp);
    for (i, op) in ops.iter().enumerate() {
        let version = first_version + i as u64;
        match op {
            PendingOp::Put { key, value } => {
                encode_write(out, framing, txn_id, run_id, key, value, version)
            }
            PendingOp::Delete { key } => encode_delete(out, framing, txn_id, run_id, key, version),
        };
    }
    encode_end(out, framing, RecordType::CommitTxn, txn_id, run_id);
}

/// What a successful commit produced. Returned only after the commit is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub txn_id: u64,
    /// The versions of the transaction's operations, in operation order.
    pub versions: Range<u64>,
    /// WAL offset just after the transaction's CommitTxn record.
    pub end_offset_bytes: u64,
    /// True when an fdatasync covered the transaction before `commit` returned.
    pub durable: bool,
}

/// A transaction in progress. Reads through the database see only committed data.
#[derive(Debug)]
pub struct Transaction<'db> {
    db: &'db Database,
    run_id: RunId,
    ops: Vec<PendingOp>,
    /// Encoded size of the buffered records, summed as each op is checked, so commit sizes
    /// its buffer without measuring every op again.
    encoded_len_bytes: usize,
}

impl<'db> Transaction<'db> {
    pub(crate) fn new(db: &'db Database, run_id: RunId) -> Transaction<'db> {
        Transaction {
            db,
            run_id,
            ops: Vec::new(),
            encoded_len_bytes: 0,
        }
    }

    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// Number of buffered operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Buffers a put. Fails if the record would exceed the WAL's record limit.
    pub fn put(&mut self, key: Key, value: Value) -> Result<()> {
        let op = PendingOp::Put { key, value };
        self.encoded_len_bytes += check_len(&op)?;
        self.ops.push(op);
        Ok(())
    }

    /// Buffers a delete.
    pub fn delete(&mut self, key: Key) -> Result<()> {
        let op = PendingOp::Delete { key };
        self.encoded_len_bytes += check_len(&op)?;
        self.ops.push(op);
        Ok(())
    }

    /// Writes the transaction to the WAL, waits as the durability mode says, applies it to
    /// the store, and returns. `Ok` means acknowledged.
    pub fn commit(self) -> Result<CommitInfo> {
        self.db
            .commit_ops(self.run_id, self.ops, self.encoded_len_bytes)
    }

    /// Discards the transaction. Nothing was written, so nothing is logged.
    pub fn abort(self) {}
}

/// Checks an op against the record and name limits; returns its encoded record length (an
/// upper bound: it counts the longest synced-offset prefix a format version 2 body has).
fn check_len(op: &PendingOp) -> Result<usize> {
    let record_len = op.encoded_len_hint();
    let len = record_len - RECORD_HEADER_LEN;
    if len > RECORD_PAYLOAD_LEN_MAX {
        return Err(EngineError::TooLarge {
            what: "encoded write record",
            len_bytes: len as u64,
            max_bytes: RECORD_PAYLOAD_LEN_MAX as u64,
        });
    }
    let names = match op {
        PendingOp::Put { key, .. } | PendingOp::Delete { key } => &key.namespace,
    };
    for name in [&names.tenant, &names.app, &names.agent] {
        if name.len() > crate::wal::entry::NAME_LEN_MAX {
            return Err(EngineError::TooLarge {
                what: "namespace name",
                len_bytes: name.len() as u64,
                max_bytes: crate::wal::entry::NAME_LEN_MAX as u64,
            });
        }
    }
    Ok(record_len)
}
