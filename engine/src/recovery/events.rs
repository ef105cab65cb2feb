//! The reading stage of replay: records, checked and decoded, become events in log order,
//! collected in batches.
//!
//! A batch keeps the key and value bytes of its events back to back in one buffer, and an
//! event refers to them by range: the reading stage (the busier one) only copies bytes,
//! and the applying stage builds the store's own form from them. Events stay small (a
//! cache line), which matters because a batch is written on one core and read on another.

use std::ops::{ControlFlow, Range};
use std::sync::Arc;

use crate::error::Result;
use crate::types::{Namespace, RunId, Timestamp, TypeTag};
use crate::wal::entry::{EntryRef, KeyRef, ValueRef};
use crate::wal::WalReader;

/// One record's meaning for replay.
#[derive(Debug)]
pub(super) enum ReplayEvent {
    Begin {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
    },
    Put {
        txn_id: u64,
        version: u64,
        key: RawKey,
        value: RawValue,
    },
    Delete {
        txn_id: u64,
        version: u64,
        key: RawKey,
    },
    Commit {
        txn_id: u64,
    },
    Abort {
        txn_id: u64,
    },
}

/// A key whose user key bytes are `user_key` of the batch's bytes.
#[derive(Debug)]
pub(super) struct RawKey {
    pub(super) namespace: Arc<Namespace>,
    pub(super) type_tag: TypeTag,
    pub(super) user_key: Range<usize>,
}

/// A value whose string or byte payload is a range of the batch's bytes (strings were
/// checked to be UTF-8 when decoded).
#[derive(Debug)]
pub(super) enum RawValue {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    String(Range<usize>),
    Bytes(Range<usize>),
}

impl RawValue {
    /// The value, borrowing its bytes from `bytes` (the batch's).
    pub(super) fn to_ref<'a>(&self, bytes: &'a [u8]) -> ValueRef<'a> {
        match self {
            RawValue::Null => ValueRef::Null,
            RawValue::Bool(b) => ValueRef::Bool(*b),
            RawValue::I64(i) => ValueRef::I64(*i),
            RawValue::F64(f) => ValueRef::F64(*f),
            RawValue::String(range) => ValueRef::String(
                std::str::from_utf8(&bytes[range.clone()])
                    .expect("checked to be UTF-8 when the record was decoded"),
            ),
            RawValue::Bytes(range) => ValueRef::Bytes(&bytes[range.clone()]),
        }
    }
}

/// An event and the file offset of its record (for warnings).
#[derive(Debug)]
pub(super) struct Located {
    pub(super) offset_bytes: u64,
    pub(super) event: ReplayEvent,
}

/// Events in log order and the key and value bytes they refer to.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) events: Vec<Located>,
    pub(super) bytes: Vec<u8>,
}

impl Batch {
    pub(super) fn with_capacity(events_len: usize) -> Batch {
        Batch {
            events: Vec::with_capacity(events_len),
            // Room for the keys and values of typical small records.
            bytes: Vec::with_capacity(events_len * 64),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    fn raw_key(&mut self, key: &KeyRef<'_>) -> RawKey {
        RawKey {
            namespace: key.namespace.clone(),
            type_tag: key.type_tag,
            user_key: self.push_bytes(key.user_key),
        }
    }

    fn raw_value(&mut self, value: ValueRef<'_>) -> RawValue {
        match value {
            ValueRef::Null => RawValue::Null,
            ValueRef::Bool(b) => RawValue::Bool(b),
            ValueRef::I64(i) => RawValue::I64(i),
            ValueRef::F64(f) => RawValue::F64(f),
            ValueRef::String(s) => RawValue::String(self.push_bytes(s.as_bytes())),
            ValueRef::Bytes(b) => RawValue::Bytes(self.push_bytes(b)),
        }
    }
}

/// What the reading stage counts: every valid record, applied or not.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReadTally {
    pub(super) records_read: u64,
    pub(super) bytes_replayed: u64,
    pub(super) max_txn_id: u64,
    pub(super) max_version_seen: u64,
}

/// Reads `reader` to its end (or until `full` breaks), collecting events into `batch` and
/// calling `full` whenever it holds `batch_len` events, and once more at the end if any
/// are left. `full` must leave `batch` empty (it consumes it or swaps in an empty one). On
/// return without error and without a break, `reader.end()` says why the log ended.
pub(super) fn read_events(
    reader: &mut WalReader<'_>,
    tally: &mut ReadTally,
    batch: &mut Batch,
    batch_len: usize,
    mut full: impl FnMut(&mut Batch) -> ControlFlow<()>,
) -> Result<()> {
    assert!(batch_len > 0, "batches hold at least one event");
    while let Some(record) = reader.next_entry()? {
        tally.records_read += 1;
        tally.bytes_replayed += record.len_bytes;
        tally.max_txn_id = tally.max_txn_id.max(record.entry.txn_id());
        let event = match record.entry {
            EntryRef::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => ReplayEvent::Begin {
                txn_id,
                run_id,
                timestamp,
            },
            EntryRef::Write {
                txn_id,
                key,
                value,
                version,
                ..
            } => {
                tally.max_version_seen = tally.max_version_seen.max(version);
                ReplayEvent::Put {
                    txn_id,
                    version,
                    key: batch.raw_key(&key),
                    value: batch.raw_value(value),
                }
            }
            EntryRef::Delete {
                txn_id,
                key,
                version,
                ..
            } => {
                tally.max_version_seen = tally.max_version_seen.max(version);
                ReplayEvent::Delete {
                    txn_id,
                    version,
                    key: batch.raw_key(&key),
                }
            }
            EntryRef::CommitTxn { txn_id, .. } => ReplayEvent::Commit { txn_id },
            EntryRef::AbortTxn { txn_id, .. } => ReplayEvent::Abort { txn_id },
        };
        batch.events.push(Located {
            offset_bytes: record.offset_bytes,
            event,
        });
        if batch.events.len() >= batch_len {
            let flow = full(batch);
            debug_assert!(batch.is_empty(), "`full` leaves the batch empty");
            if flow.is_break() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = full(batch);
    }
    Ok(())
}
