//! The reading stage of replay: records, with their checksums verified, collected in
//! batches in log order.
//!
//! Reading and checksumming frames (crc32 over every byte) is about as much work as
//! decoding and applying them, so the work splits there: this stage only copies each
//! checksummed payload into the batch's byte buffer; the applying stage decodes it (so a
//! record that does not decode is judged in one place). A batch is written on one core and
//! read on another, so its entries stay small.

use std::ops::{ControlFlow, Range};

use crate::error::Result;
use crate::wal::{RecordType, WalReader};

/// One record whose frame checked out: where it is in the file, its type, and its payload
/// as a range of the batch's bytes (not yet decoded).
#[derive(Debug)]
pub(super) struct BatchedRecord {
    pub(super) offset_bytes: u64,
    /// The whole record's length, frame header included (at most 9 + 16 MiB).
    pub(super) len_bytes: u32,
    pub(super) kind: RecordType,
    pub(super) payload: Range<usize>,
}

/// Records in log order and the payload bytes they refer to.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) records: Vec<BatchedRecord>,
    pub(super) bytes: Vec<u8>,
}

impl Batch {
    pub(super) fn with_capacity(records_len: usize) -> Batch {
        Batch {
            records: Vec::with_capacity(records_len),
            // A typical transaction is a 24-byte BeginTxn payload, a ~100-byte Write and a
            // 16-byte CommitTxn; the buffer grows when a batch needs more, and is reused.
            bytes: Vec::with_capacity(records_len * 48),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Reads `reader` to its end (or until `full` breaks), collecting records into `batch`
/// and calling `full` whenever it holds `batch_len` of them, and once more at the end if
/// any are left. `full` must leave `batch` empty (it consumes it or swaps in an empty one).
/// Unless it stopped early, `reader.end()` says why the log ended. On a reader error the
/// records read before it are handed to `full` first: one of them may end the log earlier
/// (a record that does not decode), which then decides the outcome.
pub(super) fn read_records(
    reader: &mut WalReader<'_>,
    batch: &mut Batch,
    batch_len: usize,
    mut full: impl FnMut(&mut Batch) -> ControlFlow<()>,
) -> Result<()> {
    assert!(batch_len > 0, "batches hold at least one record");
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                if !batch.is_empty() {
                    let _ = full(batch);
                }
                return Err(e);
            }
        };
        let start = batch.bytes.len();
        batch.bytes.extend_from_slice(frame.payload);
        batch.records.push(BatchedRecord {
            offset_bytes: frame.offset_bytes,
            len_bytes: u32::try_from(frame.len_bytes).expect("records are at most 9 + 16 MiB"),
            kind: frame.kind,
            payload: start..batch.bytes.len(),
        });
        if batch.records.len() >= batch_len {
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
