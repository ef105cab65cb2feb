//! Recovery: rebuild the store from the WAL.
//!
//! [`replay_wal`] streams the log once. Records are grouped by `txn_id`; a transaction is
//! applied, whole and with its original versions, when its `CommitTxn` is read, so commit
//! order (not begin order or txn-id order) decides which write of a key wins. Memory is
//! bounded by the transactions open at any point in the log, not by its length.
//!
//! Two stages of about equal work, in log order: `batch` reads and checksums frames into
//! batches of undecoded payloads; `group` decodes them, collects operations per transaction
//! and applies committed ones. For a log of
//! at least `PIPELINE_MIN_BYTES` the first stage runs on a second thread, handing batches
//! over through a bounded channel, so on two cores reading and applying overlap. Smaller
//! logs run both stages on the calling thread; the result is the same either way (tests
//! replay one log both ways, with corruption and undecodable records too).
//!
//! Invariants: nothing after a damaged record is applied (the reading stage stops at the
//! damage, and the applying stage sees only what it handed over; a record that does not
//! decode ends the log at that record, whatever the reading stage met after it); an
//! incomplete, aborted or orphaned record never reaches the store; each is counted and
//! logged as a warning.

mod batch;
mod group;

use std::ops::ControlFlow;
use std::sync::mpsc;

use crate::durability::RecoveryMode;
use crate::error::{EngineError, Result};
use crate::store::UnifiedStore;
use crate::wal::{CorruptionReport, ReadEnd, WalReader, WAL};
use batch::{read_records, Batch};
use group::Grouper;

/// Logs at least this long replay with the reading stage on its own thread. Starting a
/// thread costs about as much as replaying 20 KiB of log, so from 256 KiB (~0.7 ms of
/// replay on one core) on the overlap pays; it also means the crash harness's logs take
/// both paths (measured: about a quarter of its recoveries are pipelined).
const PIPELINE_MIN_BYTES: u64 = 256 << 10;
/// Records per batch handed from the reading stage to the applying stage (~40 KiB of
/// entries and ~50 KiB of payload bytes). Measured on 2 cores for 1M single-put
/// transactions: 1024 beat 4096 (batches written while the other core still holds their
/// cache lines) and 256 (more hand-overs).
const BATCH_RECORDS_LEN: usize = 1024;
/// Batches queued between the stages at most: bounds replay's extra memory (a few hundred
/// KiB). With the stages' work even, 4 measured as fast as 16 (1M transactions: 0.23-0.24 s
/// against 0.27 s) and kept a 100K-transaction replay's peak at 1.12-1.17x its store
/// instead of 1.25-1.30x.
const BATCHES_QUEUED_MAX: usize = 4;

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
    /// Valid records inside the torn tail (format version 2: unsynced pages that reached
    /// the disk after an earlier unsynced page was lost). Never applied.
    pub torn_tail_valid_records: u64,
    /// Where the torn tail's bytes were saved before the cut (none when they were all
    /// zero), and how many bytes the sidecar holds.
    pub torn_tail_saved_to: Option<(std::path::PathBuf, u64)>,
    /// Old torn-tail sidecars removed by this recovery (at most
    /// [`crate::wal::TORN_SIDECARS_KEPT`] are kept).
    pub sidecars_removed: Vec<std::path::PathBuf>,
    /// Set when point-in-time recovery cut off damaged history.
    pub corruption: Option<CorruptionReport>,
    /// Why reading stopped.
    pub end: Option<ReadEnd>,
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
    replay(wal, store, recovery_mode, PIPELINE_MIN_BYTES)
}

/// Replay, with the reading stage on a second thread for logs of `pipeline_min_bytes` or
/// more (tests force either path).
fn replay(
    wal: &WAL,
    store: &UnifiedStore,
    recovery_mode: RecoveryMode,
    pipeline_min_bytes: u64,
) -> Result<ReplayStats> {
    // Holds the store's write lock until replay ends: readers never see a partial replay.
    // Transactions are applied as their CommitTxn records are read, so a corruption found
    // later would leave the store ahead of what the caller accepts. The store handed to
    // replay is owned by the opening database, which discards it on error.
    let mut grouper = Grouper::new(store.replay_applier());
    let mut reader = wal.reader()?;
    // Pipelining pays on long logs only. A file that is long because it was preallocated
    // holds zeros at the threshold: one 4 KiB read tells, and a small log's open then
    // spawns no thread (a zero page there could also be damage; reading inline is as
    // correct, only not overlapped).
    let long_log = reader.file_len_bytes() >= pipeline_min_bytes
        && !crate::wal::reader::region_is_all_zero(
            wal.storage().as_ref(),
            pipeline_min_bytes.saturating_sub(PROBE_BYTES),
            pipeline_min_bytes,
        )
        .unwrap_or(false);
    let read = if long_log {
        read_on_second_thread(reader, &mut grouper)
    } else {
        let mut batch = Batch::with_capacity(BATCH_RECORDS_LEN);
        read_records(&mut reader, &mut batch, BATCH_RECORDS_LEN, |batch| {
            grouper.take_batch(batch)
        })
        .map(|()| reader)
    };
    let (grouped, undecodable, namespaces) = grouper.finish();
    // A record that does not decode ends the log there. The reading stage, which only
    // checks frames, may have read on past it, and even failed further on (an unknown
    // record type, an I/O error): the log ended before that, as it would have for a reader
    // that decodes as it goes.
    let end = match (undecodable, read) {
        (Some(end), _) => end,
        (None, Ok(reader)) => reader
            .end()
            .cloned()
            .expect("without an undecodable record the reading stage reads to the end"),
        (None, Err(e)) => return Err(e),
    };
    let mut stats = ReplayStats {
        txns_applied: grouped.txns_applied,
        writes_applied: grouped.writes_applied,
        deletes_applied: grouped.deletes_applied,
        discarded_txns: grouped.discarded_txns,
        aborted_txns: grouped.aborted_txns,
        orphaned_entries: grouped.orphaned_entries,
        max_version_seen: grouped.max_version_seen,
        max_txn_id: grouped.max_txn_id,
        records_read: grouped.records_read,
        bytes_replayed: grouped.bytes_replayed,
        ..ReplayStats::default()
    };
    let accepted = wal.accept_end(&end, recovery_mode)?;
    // The writer goes on numbering namespaces after the ones the kept log defines.
    wal.set_defined_namespaces(&namespaces);
    stats.corruption = accepted.corruption;
    stats.torn_tail_saved_to = accepted.torn_tail_saved_to;
    stats.sidecars_removed = accepted.sidecars_removed;
    if let ReadEnd::TornTail {
        torn_bytes,
        zero_filled,
        valid_records_after,
        ..
    } = &end
    {
        stats.torn_tail_bytes = *torn_bytes;
        stats.torn_tail_zero_filled = *zero_filled;
        stats.torn_tail_valid_records = *valid_records_after;
    }
    stats.end = Some(end);
    stats.final_version = store.current_version();
    Ok(stats)
}

/// Bytes read just before the pipelining threshold to tell a long log from a
/// preallocated short one.
const PROBE_BYTES: u64 = 4096;

/// Runs the reading stage on a scoped thread and the applying stage here (the store's
/// write guard stays on the thread that took it). Returns the reader once it has ended.
fn read_on_second_thread<'w>(
    mut reader: WalReader<'w>,
    grouper: &mut Grouper<'_>,
) -> Result<WalReader<'w>> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(BATCHES_QUEUED_MAX);
        // Emptied batches go back to the reading stage, so steady state allocates nothing.
        let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
        let reading = std::thread::Builder::new()
            .name("wal-replay-read".to_string())
            .spawn_scoped(scope, move || -> Result<WalReader<'w>> {
                let mut batch = Batch::with_capacity(BATCH_RECORDS_LEN);
                read_records(&mut reader, &mut batch, BATCH_RECORDS_LEN, |batch| {
                    let empty = empty_rx
                        .try_recv()
                        .unwrap_or_else(|_| Batch::with_capacity(BATCH_RECORDS_LEN));
                    // A closed channel: the applying stage stopped (at a record that does
                    // not decode) or panicked. Either way nothing more is needed.
                    match full_tx.send(std::mem::replace(batch, empty)) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    }
                })?;
                Ok(reader)
            })
            .map_err(|e| EngineError::io("spawning the WAL replay reading thread", e))?;
        for mut batch in full_rx {
            if grouper.take_batch(&mut batch).is_break() {
                break;
            }
            let _ = empty_tx.send(batch);
        }
        match reading.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Key, Namespace, RunId, Timestamp, Value};
    use crate::wal::entry::{encode_begin, encode_delete, encode_end, encode_write, Framing};
    use crate::wal::{RecordType, RECORD_HEADER_LEN};
    use crate::DurabilityMode;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    /// A log over many batch boundaries that exercises every grouping rule: interleaved
    /// transactions, multi-op transactions, deletes, aborts, orphaned records, a re-begun
    /// txn id, incomplete transactions at the end, and a torn tail (half a record).
    fn mixed_log(seed: u64) -> Vec<u8> {
        let mut log = mixed_records(seed, 6 * BATCH_RECORDS_LEN + BATCH_RECORDS_LEN / 3);
        // A torn tail: the first half of one more record.
        let mut last = Vec::new();
        encode_begin(&mut last, Framing::V1, u64::MAX / 2, RunId(7), Timestamp(1));
        log.extend_from_slice(&last[..last.len() / 2]);
        log
    }

    /// About `events_min` whole records of the mix `mixed_log` describes (not a multiple of
    /// the batch length, so the last batch is a partial one).
    fn mixed_records(seed: u64, events_min: usize) -> Vec<u8> {
        println!("seed {seed:#018x}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let namespaces = [
            Arc::new(Namespace::new("t", "a", "x", RunId(1))),
            Arc::new(Namespace::new("t", "b", "y", RunId(2))),
        ];
        let mut log = Vec::new();
        let mut open: Vec<u64> = Vec::new();
        let (mut next_txn_id, mut next_version) = (1u64, 1u64);
        let mut events = 0;
        while events < events_min {
            events += 1;
            let run_id = RunId(7);
            match rng.gen_range(0..100) {
                // Begin a transaction (sometimes re-beginning an open id).
                0..=24 => {
                    let txn_id = if !open.is_empty() && rng.gen_range(0..50) == 0 {
                        open[rng.gen_range(0..open.len())]
                    } else {
                        next_txn_id += 1;
                        open.push(next_txn_id);
                        next_txn_id
                    };
                    encode_begin(
                        &mut log,
                        Framing::V1,
                        txn_id,
                        run_id,
                        Timestamp(txn_id * 10),
                    );
                }
                // Write or delete in an open transaction, or (rarely) in none: an orphan.
                25..=74 => {
                    let txn_id = if open.is_empty() || rng.gen_range(0..40) == 0 {
                        next_txn_id + 1_000_000
                    } else {
                        open[rng.gen_range(0..open.len())]
                    };
                    let namespace = namespaces[rng.gen_range(0..2)].clone();
                    let key = Key::kv(namespace, format!("k{:05}", rng.gen_range(0..3_000)));
                    next_version += 1;
                    if rng.gen_range(0..4) == 0 {
                        encode_delete(&mut log, Framing::V1, txn_id, run_id, &key, next_version);
                    } else {
                        let value = Value::Bytes(vec![rng.gen(); rng.gen_range(0..60)]);
                        encode_write(
                            &mut log,
                            Framing::V1,
                            txn_id,
                            run_id,
                            &key,
                            &value,
                            next_version,
                        );
                    }
                }
                // Commit or abort an open transaction (or an unknown id: an orphan).
                _ => {
                    let (txn_id, known) = if open.is_empty() || rng.gen_range(0..40) == 0 {
                        (next_txn_id + 2_000_000, false)
                    } else {
                        (open.swap_remove(rng.gen_range(0..open.len())), true)
                    };
                    let kind = if known && rng.gen_range(0..10) == 0 {
                        RecordType::AbortTxn
                    } else {
                        RecordType::CommitTxn
                    };
                    encode_end(&mut log, Framing::V1, kind, txn_id, run_id);
                }
            }
        }
        assert!(
            !open.is_empty(),
            "the log should end with incomplete transactions"
        );
        log
    }

    /// Writes `log` after a fresh WAL header at `dir/name` and replays it, with the reading
    /// stage on a second thread when `pipelined`.
    fn replay_log(
        dir: &std::path::Path,
        name: &str,
        log: &[u8],
        recovery_mode: RecoveryMode,
        pipelined: bool,
    ) -> Result<(ReplayStats, Vec<(Key, crate::VersionedValue)>)> {
        let path = dir.join(name);
        // These logs are framed by hand in format version 1 (its reading rules are the
        // ones under test here; version 2's damage rules have tests of their own).
        drop(WAL::open_with(
            &path,
            crate::wal::WalOptions {
                mode: DurabilityMode::Async,
                create_format_version: crate::wal::format::FORMAT_VERSION_V1,
                ..crate::wal::WalOptions::default()
            },
        )?);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, log).unwrap();
        drop(file);
        let wal = WAL::open(&path, DurabilityMode::Async)?;
        let store = UnifiedStore::new();
        let pipeline_min_bytes = if pipelined { 0 } else { u64::MAX };
        let stats = replay(&wal, &store, recovery_mode, pipeline_min_bytes)?;
        Ok((stats, store.snapshot()))
    }

    /// The pipelined replay (reading on a second thread, batches through a bounded channel)
    /// leaves exactly the store and the ReplayStats of the single-thread replay.
    #[test]
    fn pipelined_replay_equals_single_thread_replay() {
        let log = mixed_log(0x9e11_0000_0000_0001);
        let dir = tempfile::tempdir().unwrap();
        let mode = RecoveryMode::default();
        let mut pipelined = replay_log(dir.path(), "pipelined", &log, mode, true).unwrap();
        let mut single = replay_log(dir.path(), "single", &log, mode, false).unwrap();
        // The torn tail's sidecar is named after each copy's own path.
        for stats in [&mut pipelined.0, &mut single.0] {
            let saved = stats.torn_tail_saved_to.as_mut().expect("torn bytes saved");
            saved.0 = std::path::PathBuf::new();
        }
        assert!(single.0.txns_applied > 1_000, "{:?}", single.0);
        assert!(single.0.aborted_txns > 0 && single.0.orphaned_entries > 0);
        assert!(single.0.discarded_txns > 0 && single.0.deletes_applied > 0);
        assert!(single.0.torn_tail_bytes > 0);
        assert_eq!(pipelined.0, single.0);
        assert_eq!(pipelined.1.len(), single.1.len());
        assert!(pipelined.1 == single.1, "stores differ");
    }

    /// With one byte of committed history flipped (mid-log, several batches in), both paths
    /// refuse with the same Corruption offset by default, and in point-in-time mode both
    /// open at the same record with the same store: the reading stage hands over nothing
    /// from after the damage.
    #[test]
    fn pipelined_replay_stops_at_corruption_like_single_thread_replay() {
        let mut log = mixed_log(0x9e11_0000_0000_0002);
        let flipped_at = log.len() * 3 / 5;
        log[flipped_at] ^= 0x40;
        let dir = tempfile::tempdir().unwrap();
        let mut offsets = Vec::new();
        for (name, pipelined) in [("pipelined", true), ("single", false)] {
            match replay_log(dir.path(), name, &log, RecoveryMode::default(), pipelined) {
                Err(crate::EngineError::Corruption { offset_bytes, .. }) => {
                    offsets.push(offset_bytes)
                }
                other => panic!("{name}: expected Corruption, got {:?}", other.map(|r| r.0)),
            }
        }
        assert_eq!(offsets[0], offsets[1]);
        let header_len = crate::wal::HEADER_LEN as u64;
        assert!(offsets[0] <= header_len + flipped_at as u64);
        let mut point_in_time = Vec::new();
        for (name, pipelined) in [("pit-pipelined", true), ("pit-single", false)] {
            let (mut stats, snapshot) =
                replay_log(dir.path(), name, &log, RecoveryMode::PointInTime, pipelined).unwrap();
            let report = stats.corruption.as_mut().expect("point-in-time cut damage");
            assert_eq!(report.offset_bytes, offsets[0]);
            // The sidecar is named after each copy's own path.
            report.saved_to = std::path::PathBuf::new();
            point_in_time.push((stats, snapshot));
        }
        assert_eq!(point_in_time[0].0, point_in_time[1].0);
        assert!(point_in_time[0].1 == point_in_time[1].1, "stores differ");
        assert!(point_in_time[0].0.txns_applied > 0);
    }

    /// A frame of `record_type` around `payload` with a valid checksum.
    fn framed(record_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.push(record_type);
        let crc = crate::wal::format::record_crc(&out[..5], payload);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A checksummed record that does not decode ends the log there on both paths, even
    /// though the reading stage, which only checks frames, reads past it and then meets a
    /// record of an unknown type (which alone would refuse the open with
    /// `UnknownRecordType`): the outcome is the one a decoding reader gives, Corruption at
    /// the undecodable record. Covered for a Write (decoded by the applying stage) and a
    /// BeginTxn of the wrong length (decoded by the reading stage).
    #[test]
    fn undecodable_record_ends_the_log_on_both_paths() {
        let mut bad_write = Vec::new();
        let key = Key::kv(Arc::new(Namespace::new("t", "a", "x", RunId(1))), "k");
        encode_write(
            &mut bad_write,
            Framing::V1,
            3,
            RunId(7),
            &key,
            &Value::Null,
            9,
        );
        let payload_len = bad_write.len() - RECORD_HEADER_LEN;
        let mut payload = bad_write[RECORD_HEADER_LEN..].to_vec();
        *payload.last_mut().expect("value tag") = 9; // no value has tag 9
        let bad_write = framed(RecordType::Write as u8, &payload);
        assert_eq!(bad_write.len(), RECORD_HEADER_LEN + payload_len);
        let bad_begin = framed(RecordType::BeginTxn as u8, &[0u8; 25]);
        let unknown_type = framed(6, &[0u8; 16]);
        let dir = tempfile::tempdir().unwrap();
        for (name, bad) in [("write", bad_write), ("begin", bad_begin)] {
            let mut log = mixed_records(0x9e11_0000_0000_0003, 3 * BATCH_RECORDS_LEN + 100);
            let bad_offset = (crate::wal::HEADER_LEN + log.len()) as u64;
            log.extend_from_slice(&bad);
            log.extend_from_slice(&mixed_records(0x9e11_0000_0000_0004, 40));
            log.extend_from_slice(&unknown_type);
            log.extend_from_slice(&mixed_records(0x9e11_0000_0000_0005, 2 * BATCH_RECORDS_LEN));
            for pipelined in [true, false] {
                let label = format!("{name}-{pipelined}");
                match replay_log(dir.path(), &label, &log, RecoveryMode::default(), pipelined) {
                    Err(crate::EngineError::Corruption { offset_bytes, .. }) => {
                        assert_eq!(offset_bytes, bad_offset, "{label}")
                    }
                    other => panic!("{label}: expected Corruption, got {:?}", other.map(|r| r.0)),
                }
            }
            let mut point_in_time = Vec::new();
            for pipelined in [true, false] {
                let label = format!("pit-{name}-{pipelined}");
                let (mut stats, snapshot) = replay_log(
                    dir.path(),
                    &label,
                    &log,
                    RecoveryMode::PointInTime,
                    pipelined,
                )
                .unwrap();
                let report = stats.corruption.as_mut().expect("point-in-time cut damage");
                assert_eq!(report.offset_bytes, bad_offset, "{label}");
                report.saved_to = std::path::PathBuf::new();
                point_in_time.push((stats, snapshot));
            }
            assert_eq!(point_in_time[0].0, point_in_time[1].0, "{name}");
            assert!(
                point_in_time[0].1 == point_in_time[1].1,
                "{name}: stores differ"
            );
            assert_eq!(
                point_in_time[0].0.bytes_replayed + crate::wal::HEADER_LEN as u64,
                bad_offset,
                "{name}: every record before the undecodable one, and none after it"
            );
        }
    }
}
