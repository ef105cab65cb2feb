//! Damage to committed history (docs/faults.md C1-C3) and record sizes across read-buffer
//! boundaries (C4).
//!
//! A damaged record followed by valid records is refused by default with
//! `EngineError::Corruption` naming its offset, and nothing on disk changes. In
//! point-in-time mode the database opens at the last good record, reports the loss in
//! `ReplayStats::corruption`, saves the dropped bytes to `wal.log.dropped-<offset>` and
//! never applies a record after the damage.

use std::collections::BTreeMap;

use engine::wal::{ReadEnd, WalReader};
use engine::{
    Database, DatabaseOptions, DurabilityMode, EngineError, RecoveryMode, Value, WALEntry,
    WAL_FILE_NAME,
};

use crate::common::{install_wal, key, WalImage, RUN};
use crate::{open, state};
use engine::wal::MemStorage;

const DATABASE_ID: u128 = 0xc0_44u128 << 64;
const N_TXNS: u64 = 8;
const RECORDS_PER_TXN: usize = 4;

/// Transactions 1..=8, each `Begin, Write own key, Write "shared", Commit`.
fn history() -> WalImage {
    let mut image = WalImage::new(DATABASE_ID);
    for txn in 1..=N_TXNS {
        image.begin(txn, txn);
        image.write(
            txn,
            &format!("own{txn}"),
            Value::I64(txn as i64),
            2 * txn - 1,
        );
        image.write(txn, "shared", Value::I64(txn as i64), 2 * txn);
        image.commit(txn);
    }
    image
}

/// The state after transactions `1..=n`.
fn state_after(n: u64) -> BTreeMap<String, (Value, u64)> {
    let mut out = BTreeMap::new();
    for txn in 1..=n {
        out.insert(format!("own{txn}"), (Value::I64(txn as i64), 2 * txn - 1));
        out.insert("shared".to_string(), (Value::I64(txn as i64), 2 * txn));
    }
    out
}

/// (start, end) of record `record_idx` of transaction `txn` (1-based txn, 0-based record).
fn record(image: &WalImage, txn: u64, record_idx: usize) -> (u64, u64) {
    let r = &image.records[(txn as usize - 1) * RECORDS_PER_TXN + record_idx];
    (r.0, r.1)
}

/// A copy of `image`'s bytes with the byte at `index` XORed with `mask`: one damaged byte in
/// an otherwise intact log.
fn flipped(image: &WalImage, index: usize, mask: u8) -> Vec<u8> {
    let mut bytes = image.bytes.clone();
    bytes[index] ^= mask;
    bytes
}

/// Checks both recovery modes on a log whose history is damaged from `damage_offset`,
/// with the next valid record at `next_valid_offset`. Transactions before `intact_txns`
/// (inclusive) are untouched.
fn check_corruption(
    name: &str,
    bytes: &[u8],
    damage_offset: u64,
    next_valid_offset: u64,
    intact_txns: u64,
) {
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, bytes);
    let wal_path = dir.join(WAL_FILE_NAME);

    // Default mode: refuse, name the offset, touch nothing.
    let err = Database::open(&dir).unwrap_err();
    match &err {
        EngineError::Corruption {
            path,
            offset_bytes,
            reason,
        } => {
            assert_eq!(*offset_bytes, damage_offset, "{name}: {err}");
            assert_eq!(path, &wal_path, "{name}");
            assert!(
                reason.contains(&format!("next valid record at offset {next_valid_offset}")),
                "{name}: {reason}"
            );
        }
        other => panic!("{name}: expected Corruption, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("offset {damage_offset}")),
        "{name}: message does not name the offset: {err}"
    );
    assert_eq!(
        std::fs::read(&wal_path).unwrap(),
        bytes,
        "{name}: refusing must change nothing"
    );

    // Point-in-time mode: open at the last good record and report what was dropped.
    let db = DatabaseOptions::new()
        .recovery(RecoveryMode::PointInTime)
        .open(&dir)
        .unwrap_or_else(|e| panic!("{name}: point-in-time open failed: {e}"));
    assert_eq!(state(&db), state_after(intact_txns), "{name}");
    let stats = db.recovery_stats().clone();
    assert_eq!(stats.txns_applied, intact_txns, "{name}");
    let report = stats
        .corruption
        .clone()
        .unwrap_or_else(|| panic!("{name}: no corruption report"));
    assert_eq!(report.offset_bytes, damage_offset, "{name}");
    assert_eq!(report.next_valid_offset_bytes, next_valid_offset, "{name}");
    assert_eq!(
        report.dropped_bytes,
        bytes.len() as u64 - damage_offset,
        "{name}"
    );
    assert!(!report.reason.is_empty());
    let sidecar = dir.join(format!("{WAL_FILE_NAME}.dropped-{damage_offset}"));
    assert_eq!(report.saved_to, sidecar, "{name}");
    assert_eq!(
        std::fs::read(&sidecar).unwrap(),
        &bytes[damage_offset as usize..],
        "{name}: the sidecar must hold exactly the dropped bytes"
    );
    assert!(
        matches!(stats.end, Some(ReadEnd::Corruption { offset_bytes, .. }) if offset_bytes == damage_offset)
    );
    assert_eq!(
        std::fs::metadata(&wal_path).unwrap().len(),
        damage_offset,
        "{name}"
    );
    assert_eq!(stats.torn_tail_bytes, 0, "{name}");

    // The cut log takes new commits, and the default mode opens it cleanly afterwards.
    let mut txn = db.begin(RUN);
    txn.put(key("after"), Value::Null).unwrap();
    let info = txn.commit().unwrap();
    assert!(info.versions.start > 2 * intact_txns, "{name}: {info:?}");
    drop(db);
    let db = open(&dir);
    let mut expected = state_after(intact_txns);
    expected.insert("after".to_string(), (Value::Null, info.versions.start));
    assert_eq!(state(&db), expected, "{name}");
    assert!(db.recovery_stats().corruption.is_none());
}

/// C1: a record in the middle fails its checksum while later records are valid.
#[test]
fn c1_bad_checksum_mid_log() {
    let image = history();
    let (start, end) = record(&image, 4, 1);
    let bytes = flipped(&image, start as usize + 9 + 5, 0x01); // inside the payload
    check_corruption("payload bit flip", &bytes, start, end, 3);

    let bytes = flipped(&image, start as usize + 5, 0xff); // inside the stored checksum
    check_corruption("checksum damaged", &bytes, start, end, 3);

    // The very first record: point-in-time recovery keeps nothing but the header.
    let (start, end) = record(&image, 1, 0);
    let bytes = flipped(&image, start as usize + 9, 0x01);
    check_corruption("first record", &bytes, start, end, 0);
}

/// C2: a damaged length field (high bit flipped) is corruption, never a torn tail that
/// would truncate synced data.
#[test]
fn c2_damaged_length_field_mid_log() {
    let image = history();
    let (start, end) = record(&image, 5, 2);
    let bytes = flipped(&image, start as usize + 3, 0x80);
    check_corruption("length high bit", &bytes, start, end, 4);

    // A length that still fits in the file but is wrong fails the checksum instead.
    let bytes = flipped(&image, start as usize, 0x04);
    check_corruption("length low bits", &bytes, start, end, 4);
}

/// C3: a run of zeros inside the valid region followed by valid records is corruption,
/// not the end of the log.
#[test]
fn c3_zeros_inside_the_valid_region() {
    let image = history();
    let (start, _) = record(&image, 3, 2);
    let (_, zeros_end) = record(&image, 5, 3);
    let mut bytes = image.bytes.clone();
    bytes[start as usize..zeros_end as usize].fill(0);
    check_corruption("zero run", &bytes, start, zeros_end, 2);
}

/// A checksummed record whose payload does not decode (a writer bug, not a torn write) is
/// corruption as well, even when it is the last record.
#[test]
fn undecodable_record_with_valid_checksum_is_corruption() {
    let mut image = history();
    let start = image.len_bytes();
    // A CommitTxn frame with a one-byte payload: framing and checksum are valid, the
    // payload is too short for the txn id.
    let frame = image.hand_frame(4, &[7u8]);
    image.bytes.extend_from_slice(&frame);
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, &image.bytes);
    let err = Database::open(&dir).unwrap_err();
    assert!(
        matches!(&err, EngineError::Corruption { offset_bytes, reason, .. }
            if *offset_bytes == start && reason.contains("does not decode")),
        "{err}"
    );
}

fn commit_value(db: &Database, name: &str, len: usize) -> u64 {
    let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut txn = db.begin(RUN);
    txn.put(key(name), Value::Bytes(value)).unwrap();
    txn.commit().unwrap().versions.start
}

/// Reads every record of `db`'s WAL with a reader of `buffer_len` bytes.
fn read_all(db: &Database, buffer_len: usize) -> Vec<engine::WalRecord> {
    let storage = db.wal().storage().clone();
    let mut reader = WalReader::with_buffer_len(storage.as_ref(), db.wal().path(), buffer_len)
        .expect("create reader");
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        out.push(record);
    }
    assert_eq!(
        reader.end(),
        Some(&ReadEnd::Clean {
            end_offset_bytes: reader.file_len_bytes()
        }),
        "buffer {buffer_len}"
    );
    out
}

/// C4: values whose sizes sit around every power of two up to 1 MiB, so that records
/// straddle the 1 MiB read buffer's boundaries and outgrow it; all are recovered. The same
/// log read with tiny buffers yields identical records.
#[test]
fn c4_record_sizes_around_read_buffer_boundaries() {
    let root = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for shift in 0..=20u32 {
        let p = 1usize << shift;
        sizes.extend([p.saturating_sub(1), p, p + 1]);
    }
    // Whole-record sizes near the default buffer length as well (key "c4-NN" encodes
    // to the same length for every NN). A one-put transaction is one PutTxn record whose
    // integers are LEB128: its overhead is measured on a probe database, where ids,
    // versions, the synced offset and the value's length take as many bytes as below.
    let record_overhead = {
        let probe = tempfile::tempdir().unwrap();
        let db = engine::DatabaseOptions::new()
            .durability(DurabilityMode::Async)
            .preallocate(0)
            .open(probe.path())
            .unwrap();
        let len = (1 << 20) - 100;
        commit_value(&db, "c4-00", len);
        let records = read_all(&db, 1 << 20);
        let put = records.last().expect("the PutTxn");
        assert!(matches!(put.entry, engine::WALEntry::PutTxn { .. }));
        put.len_bytes as usize - len
    };
    for delta in [-2i64, -1, 0, 1, 2] {
        sizes.push(((1i64 << 20) + delta) as usize - record_overhead);
    }
    let mut versions = Vec::new();
    {
        let db = Database::open_with_mode(root.path(), DurabilityMode::Async).unwrap();
        for (i, len) in sizes.iter().enumerate() {
            versions.push(commit_value(&db, &format!("c4-{i:02}"), *len));
        }
        db.close().unwrap();
    }
    let db = open(root.path());
    assert_eq!(db.recovery_stats().txns_applied, sizes.len() as u64);
    for (i, len) in sizes.iter().enumerate() {
        let got = db.get(&key(&format!("c4-{i:02}"))).unwrap();
        assert_eq!(got.version, versions[i], "size {len}");
        match got.value {
            Value::Bytes(b) => {
                assert_eq!(b.len(), *len);
                assert!(
                    b.iter().enumerate().all(|(j, x)| *x == (j % 251) as u8),
                    "size {len}"
                );
            }
            other => panic!("size {len}: got {other:?}"),
        }
    }
    let reference = read_all(&db, engine::wal::reader::READ_BUFFER_LEN_DEFAULT);
    // One PutTxn per commit, and one NamespaceDef before the first.
    assert_eq!(reference.len(), sizes.len() + 1);
    assert!(
        reference.iter().any(|r| r.len_bytes == 1 << 20),
        "no record is exactly one buffer long"
    );
    for pair in reference.windows(2) {
        assert_eq!(
            pair[0].offset_bytes + pair[0].len_bytes,
            pair[1].offset_bytes
        );
    }
    assert_eq!(read_all(&db, 4096), reference);
}

/// C4 with small read buffers: record boundaries fall at every position of a refill.
#[test]
fn c4_small_read_buffers_read_the_same_records() {
    let root = tempfile::tempdir().unwrap();
    // Without preallocation the file ends at the log, so every reader ends cleanly there.
    let db = engine::DatabaseOptions::new()
        .durability(DurabilityMode::Async)
        .preallocate(0)
        .open(root.path())
        .unwrap();
    for i in 0..120 {
        commit_value(&db, &format!("s{i}"), (i * 7) % 130);
    }
    let reference = read_all(&db, 1 << 20);
    assert_eq!(
        reference.len(),
        121,
        "120 PutTxn records and one NamespaceDef"
    );
    for buffer_len in [9, 10, 11, 16, 33, 64, 100, 255, 4096] {
        assert_eq!(read_all(&db, buffer_len), reference, "buffer {buffer_len}");
    }
}

/// C1 with a record larger than the 4 MiB window the damage scan reads at a time right
/// after the damage: the scan must still find it, or committed history behind a bit flip
/// would be cut off as if it were a torn tail.
#[test]
fn c1_damage_followed_by_a_record_larger_than_the_scan_window() {
    let mut image = WalImage::new(DATABASE_ID);
    image.begin(1, 1);
    image.write(1, "small", Value::I64(1), 1);
    image.commit(1);
    image.begin(2, 2);
    let damaged = image.write(2, "small", Value::I64(2), 2);
    let big = image.write(2, "big", Value::Bytes(vec![0x5a; 5 * 1024 * 1024]), 3);
    image.commit(2);
    let bytes = flipped(&image, damaged as usize + 20, 0x10);
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, &bytes);
    match Database::open(&dir) {
        Err(EngineError::Corruption {
            offset_bytes,
            reason,
            ..
        }) => {
            assert_eq!(offset_bytes, damaged);
            assert!(
                reason.contains(&format!("next valid record at offset {big}")),
                "{reason}"
            );
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
}

/// Reads an in-memory image to its end and returns how it ended.
fn read_end(bytes: Vec<u8>) -> ReadEnd {
    let storage = MemStorage::new(bytes);
    let path = std::path::Path::new("mem.wal");
    let mut reader = WalReader::new(&storage, path).unwrap();
    while reader.next_record().unwrap().is_some() {}
    reader.end().cloned().unwrap()
}

/// The damage scan reads the rest of the file in windows of 4 MiB. A zero run longer than
/// several windows is a zero-filled torn tail only if every byte to the end is zero, and
/// it is corruption if a valid record follows it, however far away.
#[test]
fn long_zero_runs_are_classified_across_scan_windows() {
    let mut image = WalImage::new(DATABASE_ID);
    image.begin(1, 1);
    image.commit(1);
    let valid_end = image.len_bytes();
    let zeros_len = 9 * 1024 * 1024 + 3;
    let mut zeros = image.bytes.clone();
    zeros.resize(zeros.len() + zeros_len, 0);

    match read_end(zeros.clone()) {
        ReadEnd::TornTail {
            offset_bytes,
            torn_bytes,
            zero_filled,
            ..
        } => {
            assert_eq!(offset_bytes, valid_end);
            assert_eq!(torn_bytes, zeros_len as u64);
            assert!(zero_filled);
        }
        other => panic!("expected a torn tail, got {other:?}"),
    }

    let mut last_byte_set = zeros.clone();
    *last_byte_set.last_mut().unwrap() = 1;
    assert!(matches!(
        read_end(last_byte_set),
        ReadEnd::TornTail { offset_bytes, zero_filled: false, .. } if offset_bytes == valid_end
    ));

    let mut record_after = zeros;
    let next = record_after.len() as u64;
    WALEntry::CommitTxn {
        txn_id: 1,
        run_id: RUN,
    }
    .encode_framed(
        &mut record_after,
        engine::wal::Framing {
            codec: image.codec,
            synced_offset_bytes: next,
        },
    );
    assert!(matches!(
        read_end(record_after),
        ReadEnd::Corruption { offset_bytes, next_valid_offset_bytes, .. }
            if offset_bytes == valid_end && next_valid_offset_bytes == next
    ));
}

/// Two point-in-time recoveries that cut at the same offset (the log was damaged again
/// after the first one and the same history re-installed) keep both sidecars: recovery
/// never overwrites bytes it saved earlier.
#[test]
fn second_point_in_time_cut_at_the_same_offset_keeps_the_first_sidecar() {
    let image = history();
    let (damage_offset, _) = record(&image, 3, 1);
    let bytes = flipped(&image, damage_offset as usize + 12, 0x40);
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, &bytes);
    let point_in_time = || {
        DatabaseOptions::new()
            .recovery(RecoveryMode::PointInTime)
            .open(&dir)
            .unwrap()
    };
    let first = point_in_time().recovery_stats().corruption.clone().unwrap();
    // Put the damaged history back, with a different tail, and cut again.
    let mut second_bytes = bytes.clone();
    let last = second_bytes.len() - 1;
    second_bytes[last] ^= 0xff;
    std::fs::write(dir.join(WAL_FILE_NAME), &second_bytes).unwrap();
    let second = point_in_time().recovery_stats().corruption.clone().unwrap();
    assert_eq!(first.offset_bytes, second.offset_bytes);
    assert_ne!(first.saved_to, second.saved_to);
    assert_eq!(
        std::fs::read(&first.saved_to).unwrap(),
        &bytes[damage_offset as usize..]
    );
    assert_eq!(
        std::fs::read(&second.saved_to).unwrap(),
        &second_bytes[damage_offset as usize..]
    );
}

/// R4 across point-in-time recovery: the cut-off bytes held acknowledged commits (txns 4..=8
/// here), so the next txn id and version must be above theirs, both in the open that cuts
/// and in every later open, which no longer sees them in the log (they live in the sidecar).
#[test]
fn point_in_time_never_reuses_ids_or_versions_of_the_dropped_commits() {
    let image = history();
    let (damage_offset, _) = record(&image, 3, 3);
    let bytes = flipped(&image, damage_offset as usize + 12, 0x01);
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, &bytes);
    let commit_one = |db: &Database| {
        let mut txn = db.begin(RUN);
        txn.put(key("after"), Value::Null).unwrap();
        txn.commit().unwrap()
    };
    let db = DatabaseOptions::new()
        .recovery(RecoveryMode::PointInTime)
        .open(&dir)
        .unwrap();
    assert_eq!(db.recovery_stats().txns_applied, 2);
    drop(db);
    for round in 0..2 {
        let db = open(&dir);
        let info = commit_one(&db);
        assert!(
            info.txn_id > N_TXNS,
            "round {round}: txn id {} reuses a dropped one",
            info.txn_id
        );
        assert!(
            info.versions.start > 2 * N_TXNS,
            "round {round}: versions {:?} reuse dropped ones",
            info.versions
        );
    }
}
