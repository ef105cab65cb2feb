//! The reading stage of replay: records, with their checksums verified, become events in
//! log order, collected in batches.
//!
//! Reading and checking frames (crc32 over every byte) is about as much work as decoding
//! and applying them, so the work splits there: this stage decodes only the fixed-size
//! BeginTxn, CommitTxn and AbortTxn records and copies Write and Delete payloads, undecoded,
//! into the batch's byte buffer; the applying stage decodes them. Events stay small, which
//! matters because a batch is written on one core and read on another.

use std::ops::{ControlFlow, Range};

use crate::error::Result;
use crate::types::{RunId, Timestamp};
use crate::wal::entry::{EntryRef, NamespaceCache};
use crate::wal::{ReadEnd, RecordType, WalReader};

/// One record's meaning for replay.
#[derive(Debug)]
pub(super) enum ReplayEvent {
    Begin {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
    },
    /// A Write or Delete record whose payload is `payload` of the batch's bytes, checksum
    /// verified, not yet decoded.
    Undecoded {
        kind: RecordType,
        payload: Range<usize>,
    },
    Commit {
        txn_id: u64,
    },
    Abort {
        txn_id: u64,
    },
    /// A checksummed record that does not decode: the log ends here as corruption, and no
    /// event follows.
    Undecodable {
        end: ReadEnd,
    },
}

/// An event and where its record is in the file.
#[derive(Debug)]
pub(super) struct Located {
    pub(super) offset_bytes: u64,
    /// The whole record's length, frame header included (at most 9 + 16 MiB).
    pub(super) len_bytes: u32,
    pub(super) event: ReplayEvent,
}

/// Events in log order and the payload bytes they refer to.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) events: Vec<Located>,
    pub(super) bytes: Vec<u8>,
}

impl Batch {
    pub(super) fn with_capacity(events_len: usize) -> Batch {
        Batch {
            events: Vec::with_capacity(events_len),
            // A third of the events are Writes of ~100-byte payloads in a typical log; the
            // buffer grows when a batch needs more, and is reused from batch to batch.
            bytes: Vec::with_capacity(events_len * 48),
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
}

/// Reads `reader` to its end (or until `full` breaks, or to an undecodable record),
/// collecting events into `batch` and calling `full` whenever it holds `batch_len` events,
/// and once more at the end if any are left. `full` must leave `batch` empty (it consumes
/// it or swaps in an empty one). Unless it stopped early, `reader.end()` says why the log
/// ended; an `Undecodable` event, when there is one, is the last and overrides that. On a
/// reader error the events read before it are handed to `full` first.
pub(super) fn read_events(
    reader: &mut WalReader<'_>,
    batch: &mut Batch,
    batch_len: usize,
    mut full: impl FnMut(&mut Batch) -> ControlFlow<()>,
) -> Result<()> {
    assert!(batch_len > 0, "batches hold at least one event");
    // BeginTxn/CommitTxn/AbortTxn payloads hold no key, so this cache stays empty.
    let mut no_keys = NamespaceCache::default();
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                // What was read before the error still counts: a record in it may end
                // the log earlier (one that does not decode), which decides the outcome.
                if !batch.is_empty() {
                    let _ = full(batch);
                }
                return Err(e);
            }
        };
        let event = match frame.kind {
            RecordType::Write | RecordType::Delete => ReplayEvent::Undecoded {
                kind: frame.kind,
                payload: batch.push_bytes(frame.payload),
            },
            kind => match EntryRef::decode(kind, frame.payload, &mut no_keys) {
                Ok(EntryRef::BeginTxn {
                    txn_id,
                    run_id,
                    timestamp,
                }) => ReplayEvent::Begin {
                    txn_id,
                    run_id,
                    timestamp,
                },
                Ok(EntryRef::CommitTxn { txn_id, .. }) => ReplayEvent::Commit { txn_id },
                Ok(EntryRef::AbortTxn { txn_id, .. }) => ReplayEvent::Abort { txn_id },
                Ok(other) => unreachable!("a {} frame decoded as {other:?}", kind.name()),
                Err(e) => ReplayEvent::Undecodable {
                    end: ReadEnd::undecodable(frame.offset_bytes, frame.len_bytes, kind, &e),
                },
            },
        };
        let undecodable = matches!(event, ReplayEvent::Undecodable { .. });
        batch.events.push(Located {
            offset_bytes: frame.offset_bytes,
            len_bytes: u32::try_from(frame.len_bytes).expect("records are at most 9 + 16 MiB"),
            event,
        });
        if undecodable {
            break;
        }
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
