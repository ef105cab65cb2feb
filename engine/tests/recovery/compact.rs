//! Format version 2's compact records (docs/format.md): a one-operation transaction is one
//! PutTxn or DeleteTxn record naming its namespace by the id a NamespaceDef gave it.
//! Property: mixed with multi-operation transactions, over several namespaces and across
//! reopens (the writer continues the log's namespace ids, never redefining one), every
//! committed transaction comes back with its version; a version 1 database keeps writing
//! version 1 records; a version 1 log holding a type 6-8 record refuses it as unknown.

use std::sync::Arc;

use engine::wal::{RecordType, WalReader};
use engine::{
    Database, DatabaseOptions, EngineError, Key, Namespace, RunId, Value, WALEntry, WAL_FILE_NAME,
};

use crate::common::{install_wal, WalImage, RUN};

fn ns(agent: &str) -> Arc<Namespace> {
    Arc::new(Namespace::new("t", "a", agent, RunId(1)))
}

fn record_types(db: &Database) -> Vec<RecordType> {
    let storage = db.wal().storage().clone();
    let mut reader = WalReader::new(storage.as_ref(), db.wal().path()).unwrap();
    let mut types = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        types.push(r.entry.record_type());
    }
    types
}

#[test]
fn single_op_transactions_share_namespace_ids_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for round in 0..3u64 {
        let db = Database::open(dir.path()).unwrap();
        for (i, agent) in ["x", "y", "x", "z"].iter().enumerate() {
            let key = Key::kv(ns(agent), format!("k{round}-{i}"));
            let mut txn = db.begin(RUN);
            txn.put(key.clone(), Value::I64(i as i64)).unwrap();
            let version = txn.commit().unwrap().versions.start;
            expected.push((key, Some(version)));
        }
        // A two-operation transaction and a one-delete transaction.
        let mut txn = db.begin(RUN);
        let a = Key::kv(ns("y"), format!("multi{round}"));
        txn.put(a.clone(), Value::Null).unwrap();
        txn.delete(expected[0].0.clone()).unwrap();
        let versions = txn.commit().unwrap().versions;
        expected.push((a, Some(versions.start)));
        expected[0].1 = None;
        let mut txn = db.begin(RUN);
        txn.delete(expected[1].0.clone()).unwrap();
        txn.commit().unwrap();
        expected[1].1 = None;
        drop(db);
    }
    let db = Database::open(dir.path()).unwrap();
    for (key, version) in &expected {
        assert_eq!(db.get(key).map(|v| v.version), *version, "{key}");
    }
    let types = record_types(&db);
    let defs = types
        .iter()
        .filter(|t| **t == RecordType::NamespaceDef)
        .count();
    assert_eq!(
        defs, 3,
        "x, y, z defined once each across three opens: {types:?}"
    );
    assert!(types.contains(&RecordType::PutTxn));
    assert!(types.contains(&RecordType::DeleteTxn));
    assert!(
        types.contains(&RecordType::BeginTxn),
        "multi-op txns keep Begin/Commit"
    );
}

#[test]
fn a_version_1_database_keeps_writing_version_1_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = DatabaseOptions::new()
        .create_format_version(1)
        .open(dir.path())
        .unwrap();
    let mut txn = db.begin(RUN);
    txn.put(Key::kv(ns("x"), "k"), Value::I64(1)).unwrap();
    txn.commit().unwrap();
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(db.wal().format_version(), 1);
    assert_eq!(
        record_types(&db),
        [
            RecordType::BeginTxn,
            RecordType::Write,
            RecordType::CommitTxn
        ]
    );
    assert_eq!(db.recovery_stats().txns_applied, 1);
}

#[test]
fn compact_record_types_are_unknown_in_a_version_1_log() {
    let root = tempfile::tempdir().unwrap();
    let mut image = WalImage::v1(7);
    image.begin(1, 1);
    image.commit(1);
    let offset = image.len_bytes();
    let frame = image.hand_frame(RecordType::PutTxn as u8, &[1, 2, 3]);
    image.bytes.extend_from_slice(&frame);
    let dir = install_wal(root.path(), 7, &image.bytes);
    let err = Database::open(&dir).unwrap_err();
    assert!(
        matches!(err, EngineError::UnknownRecordType { offset_bytes, record_type: 7, .. } if offset_bytes == offset),
        "{err:?}"
    );
    assert!(dir.join(WAL_FILE_NAME).exists());
}

#[test]
fn a_put_txn_naming_an_undefined_namespace_is_corruption() {
    let root = tempfile::tempdir().unwrap();
    let mut image = WalImage::new(8);
    image.begin(1, 1);
    image.commit(1);
    let offset = image.len_bytes();
    image.push(WALEntry::PutTxn {
        txn_id: 2,
        run_id: RUN,
        timestamp: engine::Timestamp(5),
        version: 1,
        ns_id: 3,
        key: Key::kv(ns("x"), "k"),
        value: Value::Null,
    });
    let dir = install_wal(root.path(), 8, &image.bytes);
    let err = Database::open(&dir).unwrap_err();
    assert!(
        matches!(&err, EngineError::Corruption { offset_bytes, reason, .. } if *offset_bytes == offset && reason.contains("never defined")),
        "{err:?}"
    );
}
