//! The reading stage of replay: records, checked and decoded, become events in the store's
//! own form, in log order.

use std::ops::ControlFlow;

use crate::error::Result;
use crate::store::ReplayOp;
use crate::types::{RunId, Timestamp};
use crate::wal::entry::EntryRef;
use crate::wal::WalReader;

/// One record's meaning for replay.
#[derive(Debug)]
pub(super) enum ReplayEvent {
    Begin {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
    },
    /// A Write or Delete record.
    Op {
        txn_id: u64,
        op: ReplayOp,
    },
    Commit {
        txn_id: u64,
    },
    Abort {
        txn_id: u64,
    },
}

/// An event and the file offset of its record (for warnings).
#[derive(Debug)]
pub(super) struct Located {
    pub(super) offset_bytes: u64,
    pub(super) event: ReplayEvent,
}

/// What the reading stage counts: every valid record, applied or not.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReadTally {
    pub(super) records_read: u64,
    pub(super) bytes_replayed: u64,
    pub(super) max_txn_id: u64,
    pub(super) max_version_seen: u64,
}

/// Reads `reader` to its end (or until `sink` breaks), handing each record to `sink` as an
/// event. On return without error, `reader.end()` says why the log ended.
pub(super) fn read_events(
    reader: &mut WalReader<'_>,
    tally: &mut ReadTally,
    mut sink: impl FnMut(Located) -> ControlFlow<()>,
) -> Result<()> {
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
                ReplayEvent::Op {
                    txn_id,
                    op: ReplayOp::put(&key, value, version),
                }
            }
            EntryRef::Delete {
                txn_id,
                key,
                version,
                ..
            } => {
                tally.max_version_seen = tally.max_version_seen.max(version);
                ReplayEvent::Op {
                    txn_id,
                    op: ReplayOp::delete(&key, version),
                }
            }
            EntryRef::CommitTxn { txn_id, .. } => ReplayEvent::Commit { txn_id },
            EntryRef::AbortTxn { txn_id, .. } => ReplayEvent::Abort { txn_id },
        };
        let located = Located {
            offset_bytes: record.offset_bytes,
            event,
        };
        if sink(located).is_break() {
            break;
        }
    }
    Ok(())
}
