//! Golden WAL images: the byte format is pinned, and each image recovers to an exact state.
//!
//! Property: the encoder produces exactly the bytes checked in under `tests/fixtures/`
//! (so any change to the format, deliberate or not, fails here and must come with a new
//! format version and docs/format.md), and recovering each image (clean, torn tail,
//! mid-log corruption, zero-filled tail) yields exactly the stats and state written below.
//! How: the images are generated deterministically from `WALEntry::encode` and
//! `FileHeader::encode` with fixed txn ids, versions, timestamps and database id, and
//! recovered from a temporary copy with a matching IDENTITY file.
//! Regenerate after an intended format change with
//! `cargo test -p engine --test fixtures -- --ignored regenerate_fixtures`.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine::wal::{CorruptionReport, ReadEnd};
use engine::{Database, DatabaseOptions, EngineError, RecoveryMode, ReplayStats, Value};
use engine::{WalReader, WAL_FILE_NAME};

use common::{install_wal, WalImage, HEADER_LEN_BYTES};

/// The database id every fixture's header carries.
const FIXTURE_DATABASE_ID: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
/// Timestamps of the fixture transactions: 2023-11-14T22:13:20Z plus one second per txn.
const T0_MICROS: u64 = 1_700_000_000_000_000;

const FIXTURES: [&str; 4] = [
    "clean",
    "torn_tail",
    "mid_log_corruption",
    "zero_filled_tail",
];

/// Bytes of txn 4's Write record kept in the torn fixture.
const TORN_KEPT_BYTES: usize = 20;
/// Zero bytes after the clean log in the zero-filled fixture (unwritten preallocation).
const ZERO_TAIL_BYTES: usize = 512;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The clean history: txn 1 committed, txn 2 aborted, txn 3 committed. Between them they
/// use every value tag and a delete.
fn clean() -> WalImage {
    let mut image = WalImage::v1(FIXTURE_DATABASE_ID);
    image.begin(1, T0_MICROS);
    image.write(1, "a", Value::String("alpha".into()), 1);
    image.write(1, "b", Value::I64(-2), 2);
    image.commit(1);
    image.begin(2, T0_MICROS + 1_000_000);
    image.write(2, "c", Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]), 3);
    image.abort(2);
    image.begin(3, T0_MICROS + 2_000_000);
    image.delete(3, "b", 4);
    image.write(3, "d", Value::Bool(true), 5);
    image.write(3, "e", Value::Null, 6);
    image.write(3, "f", Value::F64(0.25), 7);
    image.commit(3);
    image
}

/// Offset of the record in `image` that is the `nth` Write of `txn_id`.
fn write_offset(image: &WalImage, txn_id: u64, nth: usize) -> (u64, u64) {
    let (start, end, _) = image
        .records
        .iter()
        .filter(|(_, _, e)| matches!(e, engine::WALEntry::Write { txn_id: t, .. } if *t == txn_id))
        .nth(nth)
        .expect("fixture has that write");
    (*start, *end)
}

/// Every fixture's bytes, generated.
fn generate(name: &str) -> Vec<u8> {
    let image = clean();
    match name {
        "clean" => image.bytes,
        "torn_tail" => {
            // txn 4 was being appended when the process died: its BeginTxn is whole, its
            // Write record only partly written.
            let mut image = image;
            image.begin(4, T0_MICROS + 3_000_000);
            let write = image.write(4, "g", Value::Bytes(vec![0x47; 32]), 8);
            image.commit(4);
            image.bytes.truncate(write as usize + TORN_KEPT_BYTES);
            image.bytes
        }
        "mid_log_corruption" => {
            // One bit of txn 3's first Write payload flipped: valid records follow it.
            let (start, _) = write_offset(&image, 3, 0);
            let mut bytes = image.bytes;
            bytes[start as usize + 9 + 24] ^= 0x01;
            bytes
        }
        "zero_filled_tail" => {
            let mut bytes = image.bytes;
            bytes.resize(bytes.len() + ZERO_TAIL_BYTES, 0);
            bytes
        }
        other => panic!("unknown fixture {other}"),
    }
}

fn checked_in(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(format!("{name}.wal"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn fixtures_match_the_encoder_byte_for_byte() {
    for name in FIXTURES {
        let generated = generate(name);
        let stored = checked_in(name);
        let first_difference = generated.iter().zip(&stored).position(|(a, b)| a != b);
        assert!(
            generated == stored,
            "fixture {name}: generated {} bytes, checked in {} bytes, first difference at {:?}; \
             the WAL format changed (bump FORMAT_VERSION, update docs/format.md, regenerate)",
            generated.len(),
            stored.len(),
            first_difference
        );
    }
    // Lengths pinned independently of the generator.
    assert_eq!(checked_in("clean").len(), 715);
    assert_eq!(checked_in("torn_tail").len(), 715 + 33 + TORN_KEPT_BYTES);
    assert_eq!(checked_in("mid_log_corruption").len(), 715);
    assert_eq!(checked_in("zero_filled_tail").len(), 715 + ZERO_TAIL_BYTES);
}

/// Writes the fixtures. Run only after an intended format change.
#[test]
#[ignore]
fn regenerate_fixtures() {
    std::fs::create_dir_all(fixture_dir()).unwrap();
    for name in FIXTURES {
        let path = fixture_dir().join(format!("{name}.wal"));
        std::fs::write(&path, generate(name)).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

/// Copies a checked-in fixture into a fresh database directory with a matching IDENTITY.
fn install(name: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(
        &root.path().join("db"),
        FIXTURE_DATABASE_ID,
        &checked_in(name),
    );
    (root, dir)
}

type State = BTreeMap<String, (Value, u64, u64)>;

/// user key -> (value, version, timestamp)
fn state(db: &Database) -> State {
    db.storage()
        .snapshot()
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.user_key).unwrap(),
                (v.value, v.version, v.timestamp.0),
            )
        })
        .collect()
}

fn clean_state() -> State {
    BTreeMap::from([
        (
            "a".to_string(),
            (Value::String("alpha".into()), 1, T0_MICROS),
        ),
        (
            "d".to_string(),
            (Value::Bool(true), 5, T0_MICROS + 2_000_000),
        ),
        ("e".to_string(), (Value::Null, 6, T0_MICROS + 2_000_000)),
        (
            "f".to_string(),
            (Value::F64(0.25), 7, T0_MICROS + 2_000_000),
        ),
    ])
}

/// The stats of replaying the clean history completely.
fn clean_stats() -> ReplayStats {
    ReplayStats {
        txns_applied: 2,
        writes_applied: 5,
        deletes_applied: 1,
        discarded_txns: 0,
        aborted_txns: 1,
        orphaned_entries: 0,
        final_version: 7,
        max_version_seen: 7,
        max_txn_id: 3,
        records_read: 13,
        bytes_replayed: 715 - HEADER_LEN_BYTES,
        torn_tail_bytes: 0,
        torn_tail_zero_filled: false,
        torn_tail_valid_records: 0,
        torn_tail_saved_to: None,
        sidecars_removed: Vec::new(),
        corruption: None,
        end: Some(ReadEnd::Clean {
            end_offset_bytes: 715,
        }),
    }
}

#[test]
fn clean_fixture_recovers_exactly() {
    let (_root, dir) = install("clean");
    let db = Database::open(&dir).unwrap();
    assert_eq!(state(&db), clean_state());
    assert_eq!(db.recovery_stats(), &clean_stats());
}

#[test]
fn torn_tail_fixture_recovers_the_committed_prefix() {
    let (_root, dir) = install("torn_tail");
    let db = Database::open(&dir).unwrap();
    assert_eq!(state(&db), clean_state());
    let torn_offset = 715 + 33;
    let expected = ReplayStats {
        discarded_txns: 1,
        max_txn_id: 4,
        records_read: 14,
        bytes_replayed: torn_offset - HEADER_LEN_BYTES,
        torn_tail_bytes: TORN_KEPT_BYTES as u64,
        end: Some(ReadEnd::TornTail {
            offset_bytes: torn_offset,
            torn_bytes: TORN_KEPT_BYTES as u64,
            zero_filled: false,
            reason: format!(
                "record needs {} bytes, the file ends {TORN_KEPT_BYTES} bytes after its start",
                torn_write_record_len(4)
            ),
            valid_records_after: 0,
        }),
        // The torn bytes are not all zero: kept beside the log before the cut.
        torn_tail_saved_to: Some((
            dir.join(format!("wal.log.torn-1-{torn_offset}")),
            TORN_KEPT_BYTES as u64,
        )),
        ..clean_stats()
    };
    assert_eq!(db.recovery_stats(), &expected);
    assert_eq!(
        std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len(),
        torn_offset
    );
}

/// Length of the Write record of txn 4 in the torn fixture (before it was cut).
fn torn_write_record_len(txn_id: u64) -> u64 {
    let mut image = clean();
    image.begin(txn_id, T0_MICROS + 3_000_000);
    image.write(txn_id, "g", Value::Bytes(vec![0x47; 32]), 8);
    let (start, end) = write_offset(&image, txn_id, 0);
    end - start
}

#[test]
fn mid_log_corruption_fixture_is_refused_then_cut_in_point_in_time_mode() {
    let (start, next) = write_offset(&clean(), 3, 0);
    assert_eq!((start, next), (477, 546));
    let (_root, dir) = install("mid_log_corruption");
    let err = Database::open(&dir).unwrap_err();
    match &err {
        EngineError::Corruption {
            offset_bytes,
            reason,
            ..
        } => {
            assert_eq!(*offset_bytes, start);
            assert!(reason.starts_with("record checksum mismatch"), "{reason}");
            assert!(
                reason.ends_with("next valid record at offset 546"),
                "{reason}"
            );
        }
        other => panic!("expected Corruption, got {other:?}"),
    }

    let db = DatabaseOptions::new()
        .recovery(RecoveryMode::PointInTime)
        .open(&dir)
        .unwrap();
    let txn1_state: State = BTreeMap::from([
        (
            "a".to_string(),
            (Value::String("alpha".into()), 1, T0_MICROS),
        ),
        ("b".to_string(), (Value::I64(-2), 2, T0_MICROS)),
    ]);
    assert_eq!(state(&db), txn1_state);
    let stats = db.recovery_stats().clone();
    let corruption = stats.corruption.clone().expect("a corruption report");
    assert_eq!(
        corruption,
        CorruptionReport {
            offset_bytes: 477,
            next_valid_offset_bytes: 546,
            reason: corruption.reason.clone(),
            dropped_bytes: 715 - 477,
            saved_to: dir.join("wal.log.dropped-477"),
        }
    );
    assert!(corruption.reason.starts_with("record checksum mismatch"));
    let expected = ReplayStats {
        txns_applied: 1,
        writes_applied: 2,
        deletes_applied: 0,
        discarded_txns: 1,
        aborted_txns: 1,
        orphaned_entries: 0,
        final_version: 2,
        // txn 3's Delete (version 4), read before the damage, counts as seen.
        max_version_seen: 4,
        max_txn_id: 3,
        records_read: 9,
        bytes_replayed: 477 - HEADER_LEN_BYTES,
        torn_tail_bytes: 0,
        torn_tail_zero_filled: false,
        torn_tail_valid_records: 0,
        torn_tail_saved_to: None,
        sidecars_removed: Vec::new(),
        corruption: Some(corruption.clone()),
        end: Some(ReadEnd::Corruption {
            offset_bytes: 477,
            next_valid_offset_bytes: 546,
            reason: corruption.reason.clone(),
        }),
    };
    assert_eq!(stats, expected);
    assert_eq!(
        std::fs::read(dir.join("wal.log.dropped-477")).unwrap(),
        &checked_in("mid_log_corruption")[477..]
    );
    assert_eq!(
        std::fs::read(dir.join(WAL_FILE_NAME)).unwrap(),
        &checked_in("clean")[..477]
    );
}

#[test]
fn zero_filled_tail_fixture_recovers_everything() {
    let (_root, dir) = install("zero_filled_tail");
    let db = Database::open(&dir).unwrap();
    assert_eq!(state(&db), clean_state());
    let got = db.recovery_stats();
    // The reason names the checksum of the first zero frame; the rest is exact.
    let reason = match &got.end {
        Some(ReadEnd::TornTail { reason, .. }) => reason.clone(),
        other => panic!("expected a torn tail, got {other:?}"),
    };
    assert!(
        reason.starts_with("record checksum mismatch (stored 0x00000000"),
        "{reason}"
    );
    let expected = ReplayStats {
        torn_tail_bytes: ZERO_TAIL_BYTES as u64,
        torn_tail_zero_filled: true,
        end: Some(ReadEnd::TornTail {
            offset_bytes: 715,
            torn_bytes: ZERO_TAIL_BYTES as u64,
            zero_filled: true,
            reason,
            valid_records_after: 0,
        }),
        ..clean_stats()
    };
    assert_eq!(got, &expected);
    assert_eq!(
        std::fs::read(dir.join(WAL_FILE_NAME)).unwrap(),
        checked_in("clean")
    );
}

/// The record layout of the clean fixture, as docs/format.md's worked example shows it.
#[test]
fn clean_fixture_record_offsets() {
    let bytes = checked_in("clean");
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(WAL_FILE_NAME);
    std::fs::write(&path, &bytes).unwrap();
    let opened = engine::wal::FileOpener;
    let storage = engine::wal::StorageOpener::open(&opened, &path)
        .unwrap()
        .storage;
    let mut reader = WalReader::new(storage.as_ref(), &path).unwrap();
    let mut layout = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        layout.push((
            record.offset_bytes,
            record.len_bytes,
            record.entry.record_type().name(),
        ));
    }
    assert_eq!(
        layout,
        vec![
            (32, 33, "BeginTxn"),
            (65, 77, "Write"),
            (142, 76, "Write"),
            (218, 25, "CommitTxn"),
            (243, 33, "BeginTxn"),
            (276, 76, "Write"),
            (352, 25, "AbortTxn"),
            (377, 33, "BeginTxn"),
            (410, 67, "Delete"),
            (477, 69, "Write"),
            (546, 68, "Write"),
            (614, 76, "Write"),
            (690, 25, "CommitTxn"),
        ]
    );
}

/// Format version 2 golden images (docs/format.md, "Format version 2"): the same pinning,
/// for the salted frame with its synced offset and the compact records. The images model a
/// log whose records were each synced before the next was written, except where a fixture
/// says otherwise.
mod v2 {
    use super::*;
    use engine::wal::sidecar;
    use engine::{Key, Timestamp, WALEntry};

    use crate::common::{namespace, RUN};

    pub(super) const FIXTURES_V2: [&str; 3] = ["v2_clean", "v2_unsynced_gap", "v2_synced_damage"];

    /// NamespaceDef 0; txn 1 a one-put PutTxn (`a`); txn 2 a two-operation transaction
    /// (Begin, Write `b`, Write `c`, Commit); txn 3 aborted; txn 4 a one-delete DeleteTxn
    /// of `c`.
    pub(super) fn clean() -> WalImage {
        let mut image = WalImage::new(FIXTURE_DATABASE_ID);
        image.push(WALEntry::NamespaceDef {
            ns_id: 0,
            namespace: namespace(),
        });
        image.push(WALEntry::PutTxn {
            txn_id: 1,
            run_id: RUN,
            timestamp: Timestamp(T0_MICROS),
            version: 1,
            ns_id: 0,
            key: Key::kv(namespace(), "a"),
            value: Value::String("alpha".into()),
        });
        image.begin(2, T0_MICROS + 1_000_000);
        image.write(2, "b", Value::I64(-2), 2);
        image.write(2, "c", Value::Bytes(vec![0xde, 0xad]), 3);
        image.commit(2);
        image.begin(3, T0_MICROS + 2_000_000);
        image.write(3, "z", Value::Null, 4);
        image.abort(3);
        image.push(WALEntry::DeleteTxn {
            txn_id: 4,
            run_id: RUN,
            timestamp: Timestamp(T0_MICROS + 3_000_000),
            version: 5,
            ns_id: 0,
            key: Key::kv(namespace(), "c"),
        });
        image
    }

    /// Offset of the first record whose entry matches `pick`.
    fn offset_of(image: &WalImage, pick: impl Fn(&WALEntry) -> bool) -> (u64, u64) {
        let (start, end, _) = image.records.iter().find(|r| pick(&r.2)).unwrap();
        (*start, *end)
    }

    pub(super) fn generate(name: &str) -> Vec<u8> {
        let mut image = clean();
        match name {
            "v2_clean" => image.bytes,
            "v2_unsynced_gap" => {
                // Two one-put transactions written after the last completed sync (both
                // carry the clean log's end as their synced offset); a power loss kept the
                // second and lost (zeroed) the middle of the first.
                let synced = image.len_bytes();
                image.set_synced(Some(synced));
                for (txn, name) in [(5u64, "g"), (6, "h")] {
                    image.push(WALEntry::PutTxn {
                        txn_id: txn,
                        run_id: RUN,
                        timestamp: Timestamp(T0_MICROS + txn * 1_000_000),
                        version: txn,
                        ns_id: 0,
                        key: Key::kv(namespace(), name),
                        value: Value::Bytes(vec![0x47; 40]),
                    });
                }
                let (start, end) =
                    offset_of(&image, |e| matches!(e, WALEntry::PutTxn { txn_id: 5, .. }));
                let mut bytes = image.bytes;
                bytes[start as usize + 20..end as usize - 10].fill(0);
                bytes
            }
            "v2_synced_damage" => {
                // One bit of txn 1's PutTxn flipped; every later record says it was synced.
                let (start, _) =
                    offset_of(&image, |e| matches!(e, WALEntry::PutTxn { txn_id: 1, .. }));
                let mut bytes = image.bytes;
                bytes[start as usize + 12] ^= 0x01;
                bytes
            }
            other => panic!("unknown fixture {other}"),
        }
    }

    fn clean_state() -> State {
        BTreeMap::from([
            (
                "a".to_string(),
                (Value::String("alpha".into()), 1, T0_MICROS),
            ),
            ("b".to_string(), (Value::I64(-2), 2, T0_MICROS + 1_000_000)),
        ])
    }

    #[test]
    fn v2_fixtures_match_the_encoder_byte_for_byte() {
        for name in FIXTURES_V2 {
            let generated = generate(name);
            let stored = checked_in(name);
            assert!(
                generated == stored,
                "fixture {name}: generated {} bytes, checked in {} bytes; the WAL format \
                 changed (new format version, docs/format.md, regenerate)",
                generated.len(),
                stored.len()
            );
        }
        assert_eq!(&checked_in("v2_clean")[8..12], &2u32.to_le_bytes());
    }

    #[test]
    fn v2_clean_fixture_recovers_every_kind_of_record() {
        let (_root, dir) = install("v2_clean");
        let db = Database::open(&dir).unwrap();
        assert_eq!(state(&db), clean_state());
        let stats = db.recovery_stats();
        assert_eq!(
            (
                stats.txns_applied,
                stats.writes_applied,
                stats.deletes_applied
            ),
            (3, 3, 1)
        );
        assert_eq!(stats.aborted_txns, 1);
        assert_eq!(stats.final_version, 5);
        assert!(matches!(stats.end, Some(ReadEnd::Clean { .. })));
    }

    /// P5 pinned in bytes: a lost middle of an unsynced record with a later unsynced record
    /// present opens at the synced prefix, keeps the cut bytes, and reports the record.
    #[test]
    fn v2_unsynced_gap_fixture_opens_at_the_synced_prefix() {
        let (_root, dir) = install("v2_unsynced_gap");
        let clean_len = checked_in("v2_clean").len() as u64;
        let db = Database::open(&dir).unwrap();
        assert_eq!(state(&db), clean_state());
        let stats = db.recovery_stats();
        assert_eq!(stats.torn_tail_valid_records, 1);
        assert_eq!(
            stats.end.as_ref().unwrap().valid_end_offset_bytes(),
            clean_len
        );
        let (saved, len) = stats.torn_tail_saved_to.clone().unwrap();
        assert_eq!(
            std::fs::read(&saved).unwrap(),
            &checked_in("v2_unsynced_gap")[clean_len as usize..]
        );
        assert_eq!(len, checked_in("v2_unsynced_gap").len() as u64 - clean_len);
        assert!(sidecar::list(&dir.join(WAL_FILE_NAME)).unwrap().len() == 1);
    }

    /// C1 pinned in bytes: damage that later records prove synced is refused by default
    /// and cut at exactly that record in point-in-time mode.
    #[test]
    fn v2_synced_damage_fixture_is_refused_then_cut_in_point_in_time_mode() {
        let (_root, dir) = install("v2_synced_damage");
        let clean = clean();
        let (start, _, _) = clean.records[1].clone();
        match Database::open(&dir) {
            Err(EngineError::Corruption {
                offset_bytes,
                reason,
                ..
            }) => {
                assert_eq!(offset_bytes, start);
                assert!(reason.contains("synced"), "{reason}");
            }
            other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
        }
        let db = DatabaseOptions::new()
            .recovery(RecoveryMode::PointInTime)
            .open(&dir)
            .unwrap();
        assert!(state(&db).is_empty());
        assert_eq!(
            db.recovery_stats()
                .corruption
                .as_ref()
                .unwrap()
                .offset_bytes,
            start
        );
    }

    /// Writes the v2 fixtures. Run only after an intended format change.
    #[test]
    #[ignore]
    fn regenerate_v2_fixtures() {
        for name in FIXTURES_V2 {
            let path = fixture_dir().join(format!("{name}.wal"));
            std::fs::write(&path, generate(name)).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
}
