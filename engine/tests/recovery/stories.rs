//! The original design's recovery stories, plus O1-O3 of docs/faults.md: hand-crafted histories
//! appended through `db.wal().append(..)` (or `WAL::open` + `append`), then reopened.

use std::collections::BTreeMap;

use engine::recovery::replay_wal;
use engine::wal::ReadEnd;
use engine::{
    Database, DurabilityMode, RunId, Timestamp, UnifiedStore, Value, WALEntry, WAL, WAL_FILE_NAME,
};

use crate::common::{capture_logs, fast_tempdir, key, HEADER_LEN_BYTES, RUN};
use crate::{open, state, State};

fn begin(txn_id: u64, timestamp: u64) -> WALEntry {
    WALEntry::BeginTxn {
        txn_id,
        run_id: RUN,
        timestamp: Timestamp(timestamp),
    }
}

fn write(txn_id: u64, name: &str, value: Value, version: u64) -> WALEntry {
    WALEntry::Write {
        txn_id,
        run_id: RUN,
        key: key(name),
        value,
        version,
    }
}

fn delete(txn_id: u64, name: &str, version: u64) -> WALEntry {
    WALEntry::Delete {
        txn_id,
        run_id: RUN,
        key: key(name),
        version,
    }
}

fn commit(txn_id: u64) -> WALEntry {
    WALEntry::CommitTxn {
        txn_id,
        run_id: RUN,
    }
}

fn abort(txn_id: u64) -> WALEntry {
    WALEntry::AbortTxn {
        txn_id,
        run_id: RUN,
    }
}

/// Opens a fresh database in `dir`, appends `entries` through its WAL, closes it and
/// reopens it: the reopened handle is what recovery produced.
fn replay_history(dir: &std::path::Path, entries: &[WALEntry]) -> Database {
    let db = open(dir);
    for entry in entries {
        db.wal().append(entry).expect("append hand-crafted record");
    }
    db.close().expect("close");
    open(dir)
}

/// Asserts that `db` holds exactly the keys of `expected` (name, value, version), no more.
#[track_caller]
fn assert_state(db: &Database, expected: &[(&str, Value, u64)]) {
    let expected_state: State = expected
        .iter()
        .map(|(name, value, version)| (name.to_string(), (value.clone(), *version)))
        .collect();
    assert_eq!(
        expected_state.len(),
        expected.len(),
        "expected names repeat"
    );
    assert_eq!(state(db), expected_state);
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

#[test]
fn replays_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[begin(1, 100), write(1, "a", Value::I64(1), 1), commit(1)],
    );
    assert_state(&db, &[("a", Value::I64(1), 1)]);
    let stats = db.recovery_stats();
    assert_eq!(stats.txns_applied, 1);
    assert_eq!(stats.writes_applied, 1);
    assert_eq!(stats.deletes_applied, 0);
    assert_eq!(stats.records_read, 3);
    assert_eq!(stats.final_version, 1);
    assert_eq!(stats.torn_tail_bytes, 0);
    assert_eq!(db.get(&key("a")).unwrap().timestamp, Timestamp(100));
}

#[test]
fn replay_wal_rebuilds_a_store_from_a_bare_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(WAL_FILE_NAME);
    {
        let wal = WAL::open(&path, DurabilityMode::Async).unwrap();
        for entry in [
            begin(3, 1),
            write(3, "x", s("one"), 4),
            delete(3, "y", 5),
            commit(3),
        ] {
            wal.append(&entry).unwrap();
        }
        wal.sync().unwrap();
    }
    let wal = WAL::open(&path, DurabilityMode::Strict).unwrap();
    let store = UnifiedStore::new();
    let stats = replay_wal(&wal, &store).unwrap();
    assert_eq!(stats.txns_applied, 1);
    assert_eq!(stats.writes_applied, 1);
    assert_eq!(stats.deletes_applied, 1);
    assert_eq!(stats.final_version, 5);
    assert_eq!(stats.max_txn_id, 3);
    let end = wal.written_offset_bytes();
    assert_eq!(
        stats.end,
        Some(ReadEnd::Clean {
            end_offset_bytes: end
        })
    );
    assert_eq!(stats.bytes_replayed, end - HEADER_LEN_BYTES);
    let got = store.get(&key("x")).unwrap();
    assert_eq!((got.value, got.version), (s("one"), 4));
    assert_eq!(store.len(), 1);
}

#[test]
fn replays_many_transactions_committed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    {
        let db = Database::open_with_mode(dir.path(), DurabilityMode::Async).unwrap();
        for i in 0..100u64 {
            let mut txn = db.begin(RunId(i % 3));
            let name = format!("k{}", i % 17);
            txn.put(key(&name), Value::I64(i as i64)).unwrap();
            let info = txn.commit().unwrap();
            assert_eq!(info.txn_id, i + 1);
            assert_eq!(info.versions, i + 1..i + 2);
            expected.insert(name, (Value::I64(i as i64), i + 1));
        }
        assert_eq!(state(&db), expected);
        db.close().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(state(&db), expected);
    assert_eq!(db.recovery_stats().txns_applied, 100);
    assert_eq!(db.recovery_stats().writes_applied, 100);
    assert_eq!(db.recovery_stats().final_version, 100);
}

#[test]
fn versions_and_timestamps_are_preserved_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Gaps and a large version: replay must copy versions, never renumber them.
    let db = replay_history(
        dir.path(),
        &[
            begin(10, 1111),
            write(10, "a", Value::F64(2.5), 10),
            write(10, "b", Value::Bool(false), 20),
            commit(10),
            begin(11, 2222),
            write(11, "c", Value::Bytes(vec![0, 255]), 1_000_035),
            commit(11),
        ],
    );
    assert_state(
        &db,
        &[
            ("a", Value::F64(2.5), 10),
            ("b", Value::Bool(false), 20),
            ("c", Value::Bytes(vec![0, 255]), 1_000_035),
        ],
    );
    assert_eq!(db.get(&key("a")).unwrap().timestamp, Timestamp(1111));
    assert_eq!(db.get(&key("c")).unwrap().timestamp, Timestamp(2222));
    assert_eq!(db.storage().current_version(), 1_000_035);
    // New commits continue above the recovered versions and transaction ids (R4).
    let mut txn = db.begin(RUN);
    txn.put(key("d"), Value::Null).unwrap();
    let info = txn.commit().unwrap();
    assert_eq!(info.versions, 1_000_036..1_000_037);
    assert_eq!(info.txn_id, 12);
}

#[test]
fn mixed_writes_and_deletes_apply_in_record_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[
            begin(1, 1),
            write(1, "a", s("a1"), 1),
            write(1, "b", s("b1"), 2),
            write(1, "c", s("c1"), 3),
            commit(1),
            begin(2, 2),
            delete(2, "a", 4),
            write(2, "b", s("b2"), 5),
            write(2, "a", s("a2"), 6),
            delete(2, "c", 7),
            delete(2, "never-written", 8),
            commit(2),
        ],
    );
    assert_state(&db, &[("a", s("a2"), 6), ("b", s("b2"), 5)]);
    let stats = db.recovery_stats();
    assert_eq!(stats.writes_applied, 5);
    assert_eq!(stats.deletes_applied, 3);
    assert_eq!(stats.final_version, 8);
}

#[test]
fn incomplete_transaction_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[begin(1, 1), write(1, "a", s("never"), 1), delete(1, "b", 2)],
    );
    assert!(state(&db).is_empty());
    let stats = db.recovery_stats();
    assert_eq!(stats.discarded_txns, 1);
    assert_eq!(stats.txns_applied, 0);
    assert_eq!(stats.writes_applied, 0);
    assert_eq!(stats.final_version, 0);
    // The discarded transaction's id and versions are still never reused (R4).
    assert_eq!(stats.max_txn_id, 1);
    assert_eq!(stats.max_version_seen, 2);
    let mut txn = db.begin(RUN);
    txn.put(key("c"), Value::Null).unwrap();
    let info = txn.commit().unwrap();
    assert_eq!(info.txn_id, 2);
    assert_eq!(info.versions, 3..4);
}

#[test]
fn orphaned_entries_are_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[
            write(5, "a", s("orphan"), 1),
            delete(6, "b", 2),
            commit(7),
            abort(8),
            begin(9, 1),
            write(9, "c", s("kept"), 3),
            commit(9),
            // A second commit of an already committed transaction has no open BeginTxn.
            commit(9),
        ],
    );
    assert_state(&db, &[("c", s("kept"), 3)]);
    let stats = db.recovery_stats();
    assert_eq!(stats.orphaned_entries, 5);
    assert_eq!(stats.txns_applied, 1);
    assert_eq!(stats.discarded_txns, 0);
    assert_eq!(stats.aborted_txns, 0);
}

#[test]
fn committed_and_incomplete_transactions_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[
            begin(1, 1),
            write(1, "a", s("committed"), 1),
            begin(2, 2),
            write(2, "a", s("incomplete"), 2),
            write(2, "b", s("incomplete"), 3),
            commit(1),
            begin(3, 3),
            write(3, "c", s("committed"), 4),
            commit(3),
            begin(4, 4),
            delete(4, "c", 5),
        ],
    );
    assert_state(&db, &[("a", s("committed"), 1), ("c", s("committed"), 4)]);
    let stats = db.recovery_stats();
    assert_eq!(stats.txns_applied, 2);
    assert_eq!(stats.discarded_txns, 2);
    assert_eq!(stats.max_txn_id, 4);
}

#[test]
fn aborted_transaction_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[
            begin(1, 1),
            write(1, "a", s("kept"), 1),
            commit(1),
            begin(2, 2),
            write(2, "a", s("aborted"), 2),
            delete(2, "a", 3),
            write(2, "b", s("aborted"), 4),
            abort(2),
        ],
    );
    assert_state(&db, &[("a", s("kept"), 1)]);
    let stats = db.recovery_stats();
    assert_eq!(stats.aborted_txns, 1);
    assert_eq!(stats.txns_applied, 1);
    assert_eq!(stats.discarded_txns, 0);
}

#[test]
fn discarded_records_are_logged_as_warnings_naming_the_txn() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        for entry in [
            begin(424_201, 1),
            write(424_201, "a", s("incomplete"), 1),
            begin(424_202, 1),
            abort(424_202),
            write(424_203, "b", s("orphan"), 2),
            // A second BeginTxn for a txn that is still open discards the first one.
            begin(424_204, 1),
            begin(424_204, 1),
            commit(424_204),
        ] {
            db.wal().append(&entry).unwrap();
        }
        db.close().unwrap();
    }
    let (db, logs) = capture_logs(|| open(dir.path()));
    let warnings: Vec<&str> = logs
        .iter()
        .filter(|r| r.level == log::Level::Warn)
        .map(|r| r.message.as_str())
        .collect();
    let mentions = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(
        mentions("incomplete txn 424201"),
        "no warning about the incomplete txn in {warnings:#?}"
    );
    assert!(
        mentions("aborted txn 424202"),
        "no warning about the aborted txn in {warnings:#?}"
    );
    assert!(
        mentions("orphaned Write record of txn 424203"),
        "no warning about the orphan in {warnings:#?}"
    );
    assert!(
        mentions("BeginTxn for txn 424204"),
        "no warning about the reopened txn in {warnings:#?}"
    );
    assert!(
        logs.iter()
            .any(|r| r.level == log::Level::Info && r.message.contains("1 txns applied")),
        "open does not log its stats: {logs:#?}"
    );
    let stats = db.recovery_stats();
    assert_eq!(stats.discarded_txns, 2);
    assert_eq!(stats.aborted_txns, 1);
    assert_eq!(stats.orphaned_entries, 1);
    assert_eq!(stats.txns_applied, 1);
}

#[test]
fn open_creates_the_directory_and_its_files() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested").join("db");
    assert!(!dir.exists());
    let db = open(&dir);
    assert!(dir.is_dir());
    assert_eq!(db.path(), dir.as_path());
    for name in [WAL_FILE_NAME, "IDENTITY", "LOCK"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    // A new WAL is exactly its header, already durable.
    assert_eq!(db.wal().written_offset_bytes(), HEADER_LEN_BYTES);
    assert_eq!(db.wal().synced_offset_bytes(), HEADER_LEN_BYTES);
    assert_eq!(
        std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len(),
        HEADER_LEN_BYTES
    );
    assert_eq!(db.durability_mode(), DurabilityMode::Strict);
}

#[test]
fn open_refuses_a_path_that_is_a_file() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Database::open(&file).unwrap_err();
    assert!(
        matches!(err, engine::EngineError::InvalidArgument { .. }),
        "{err}"
    );
}

#[test]
fn data_is_recovered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let live;
    {
        let db = open(dir.path());
        let mut txn = db.begin(RUN);
        txn.put(key("a"), s("first")).unwrap();
        txn.put(key("b"), Value::I64(-7)).unwrap();
        assert_eq!(txn.len(), 2);
        assert_eq!(txn.run_id(), RUN);
        let info = txn.commit().unwrap();
        assert!(info.durable, "Strict commits are durable when acknowledged");
        let mut txn = db.begin(RUN);
        txn.delete(key("a")).unwrap();
        txn.put(key("c"), Value::Null).unwrap();
        txn.commit().unwrap();
        // An aborted (or dropped) transaction writes nothing.
        let mut txn = db.begin(RUN);
        assert!(txn.is_empty());
        txn.put(key("z"), s("aborted")).unwrap();
        txn.abort();
        live = (db.get(&key("b")).unwrap(), db.get(&key("c")).unwrap());
        drop(db); // no close: Strict acknowledged everything already
    }
    let db = open(dir.path());
    assert_state(&db, &[("b", Value::I64(-7), 2), ("c", Value::Null, 4)]);
    // Recovered values carry the timestamps they had when committed, not the reopen's.
    assert_eq!(db.get(&key("b")).unwrap(), live.0);
    assert_eq!(db.get(&key("c")).unwrap(), live.1);
    assert_eq!(db.recovery_stats().txns_applied, 2);
    assert_eq!(db.recovery_stats().aborted_txns, 0);
}

#[test]
fn empty_wal_recovers_to_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path()).close().unwrap();
    let db = open(dir.path());
    assert!(state(&db).is_empty());
    assert!(db.storage().is_empty());
    let stats = db.recovery_stats();
    assert_eq!(stats.records_read, 0);
    assert_eq!(stats.txns_applied, 0);
    assert_eq!(stats.final_version, 0);
    assert_eq!(stats.torn_tail_bytes, 0);
    assert_eq!(
        stats.end,
        Some(ReadEnd::Clean {
            end_offset_bytes: HEADER_LEN_BYTES
        })
    );
    // A directory whose WAL is zero bytes long (a crash before the header was written)
    // opens too: the header is written again.
    drop(db);
    std::fs::write(dir.path().join(WAL_FILE_NAME), b"").unwrap();
    let db = open(dir.path());
    assert_eq!(db.wal().written_offset_bytes(), HEADER_LEN_BYTES);
}

/// O1: two transactions write the same key and commit in the opposite order of their txn
/// ids and begin order: the later CommitTxn wins.
#[test]
fn o1_later_commit_wins_over_higher_txn_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = replay_history(
        dir.path(),
        &[
            begin(1, 1),
            begin(2, 2),
            write(2, "k", s("txn 2"), 5),
            commit(2),
            write(1, "k", s("txn 1"), 6),
            commit(1),
        ],
    );
    assert_state(&db, &[("k", s("txn 1"), 6)]);
    assert_eq!(db.recovery_stats().txns_applied, 2);
}

/// O2: B begins, A begins, their records interleave, A commits, B commits: each is applied
/// whole and in commit order.
#[test]
fn o2_interleaved_transactions_apply_whole_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (21, 20);
    let db = replay_history(
        dir.path(),
        &[
            begin(b, 1),
            begin(a, 2),
            write(a, "x", s("A"), 1),
            write(b, "x", s("B"), 3),
            write(a, "only-a", s("A"), 2),
            write(b, "only-b", s("B"), 4),
            commit(a),
            delete(b, "only-a", 5),
            commit(b),
        ],
    );
    assert_state(&db, &[("x", s("B"), 3), ("only-b", s("B"), 4)]);
    assert_eq!(db.recovery_stats().txns_applied, 2);
    assert_eq!(db.recovery_stats().deletes_applied, 1);
}

/// O3: across many restarts, transaction ids and versions strictly increase; nothing is
/// reused, not even the ids of transactions that were discarded.
#[test]
fn o3_txn_ids_and_versions_increase_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut last_txn_id = 0;
    let mut last_version = 0;
    for round in 0..25u64 {
        let db = Database::open_with_mode(dir.path(), DurabilityMode::Async).unwrap();
        assert_eq!(db.recovery_stats().txns_applied, round);
        let mut txn = db.begin(RUN);
        txn.put(key("k"), Value::I64(round as i64)).unwrap();
        txn.put(key(&format!("r{round}")), Value::Null).unwrap();
        let info = txn.commit().unwrap();
        assert!(info.txn_id > last_txn_id, "round {round}: {info:?}");
        assert!(
            info.versions.start > last_version,
            "round {round}: {info:?}"
        );
        assert_eq!(info.versions.end - info.versions.start, 2);
        last_txn_id = info.txn_id;
        last_version = info.versions.end - 1;
        if round % 5 == 4 {
            // An incomplete transaction with a high id must push later ids above it.
            db.wal().append(&begin(last_txn_id + 10, 0)).unwrap();
            last_txn_id += 10;
        }
        db.close().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(db.get(&key("k")).unwrap().value, Value::I64(24));
    assert_eq!(db.recovery_stats().max_txn_id, last_txn_id);
    assert_eq!(db.recovery_stats().final_version, last_version);
}

/// Replay at scale: 80 000 puts of ascending keys (enough to cross any bulk-loading
/// threshold a replay fast path may use for keys that ascend past the end of the map),
/// interleaved with deletes and overwrites of earlier keys and with puts below the end.
/// The recovered store equals a model applied one operation at a time, versions included.
#[test]
fn replay_of_many_ascending_puts_with_deletes_and_overwrites() {
    const TXNS: u64 = 80;
    const PUTS_PER_TXN: u64 = 1_000;
    let dir = fast_tempdir();
    let mut model: BTreeMap<String, (Value, u64)> = BTreeMap::new();
    {
        let db = Database::open_with_mode(dir.path(), DurabilityMode::Async).unwrap();
        for t in 0..TXNS {
            let mut txn = db.begin(RUN);
            let mut names = Vec::new();
            for i in t * PUTS_PER_TXN..(t + 1) * PUTS_PER_TXN {
                let name = format!("k{i:08}");
                txn.put(key(&name), Value::I64(i as i64)).unwrap();
                names.push((name, Some(Value::I64(i as i64))));
                if t >= 70 && i % 97 == 0 {
                    // After 70 000 purely ascending puts (one unbroken run), reach back
                    // below the end of the map: a delete and an overwrite.
                    let old = format!("k{:08}", i - PUTS_PER_TXN / 2);
                    txn.delete(key(&old)).unwrap();
                    names.push((old, None));
                    let older = format!("k{:08}", i / 3);
                    txn.put(key(&older), s("overwritten")).unwrap();
                    names.push((older, Some(s("overwritten"))));
                }
            }
            let info = txn.commit().unwrap();
            for (offset, (name, value)) in names.into_iter().enumerate() {
                let version = info.versions.start + offset as u64;
                match value {
                    Some(v) => model.insert(name, (v, version)),
                    None => model.remove(&name),
                };
            }
        }
        assert_eq!(state(&db), model, "live store");
        db.close().unwrap();
    }
    let db = open(dir.path());
    let recovered = state(&db);
    assert_eq!(recovered.len(), model.len());
    assert!(recovered == model, "recovered store differs from the model");
    assert_eq!(db.recovery_stats().txns_applied, TXNS);
}
