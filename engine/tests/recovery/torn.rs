//! Torn tails (docs/faults.md T1-T3): a log cut at any byte, or whose unsynced end was replaced
//! by zeros or garbage, recovers exactly the transactions whose CommitTxn record is whole;
//! the damaged bytes are reported as a torn tail (never as corruption), cut off before
//! anything new is appended, and new commits then survive another reopen.

use std::collections::BTreeMap;

use engine::wal::ReadEnd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use engine::{
    Database, DatabaseOptions, DurabilityMode, EngineError, RecoveryMode, Value, WAL_FILE_NAME,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{
    announce_seed, fast_tempdir, install_wal, key, Faults, WalImage, HEADER_LEN_BYTES, RUN,
};
use crate::{open, state, State};

const DATABASE_ID: u128 = 0x5eed_0000_0000_0000_0000_0000_0000_0001;

/// A log of `n_txns` committed transactions (one aborted, one left incomplete in the
/// middle) and, for each CommitTxn record, its end offset and the state once it applied.
struct History {
    image: WalImage,
    /// (end offset of the CommitTxn record, expected state after it)
    commits: Vec<(u64, State)>,
}

fn history(n_txns: u64, value_len: usize) -> History {
    let mut image = WalImage::new(DATABASE_ID);
    let mut model = BTreeMap::new();
    let mut commits = Vec::new();
    let mut version = 0;
    for txn in 1..=n_txns {
        image.begin(txn, 1000 + txn);
        let mut ops = Vec::new();
        for i in 0..2 {
            version += 1;
            let name = format!("k{}", (txn * 3 + i) % 5);
            let value = Value::Bytes(vec![txn as u8; value_len + i as usize]);
            image.write(txn, &name, value.clone(), version);
            ops.push((name, Some((value, version))));
        }
        if txn % 3 == 0 {
            version += 1;
            let name = format!("k{}", txn % 5);
            image.delete(txn, &name, version);
            ops.push((name, None));
        }
        if txn == 4 {
            image.abort(txn);
            continue;
        }
        let end = image.commit(txn);
        let end = image.records.iter().find(|r| r.0 == end).unwrap().1;
        for (name, op) in ops {
            match op {
                Some(v) => model.insert(name, v),
                None => model.remove(&name),
            };
        }
        commits.push((end, model.clone()));
    }
    History { image, commits }
}

/// The state recovery must produce from the first `len` bytes of the history's log.
fn expected_prefix(history: &History, len: u64) -> State {
    history
        .commits
        .iter()
        .take_while(|(end, _)| *end <= len)
        .last()
        .map(|(_, state)| state.clone())
        .unwrap_or_default()
}

/// End of the last whole record within the first `len` bytes (the header counts).
fn last_record_end(image: &WalImage, len: u64) -> u64 {
    image
        .records
        .iter()
        .map(|r| r.1)
        .filter(|end| *end <= len)
        .max()
        .unwrap_or(HEADER_LEN_BYTES)
}

/// T1 + T3: cut the log at every byte offset, including inside record headers, length
/// fields and checksums. Each cut opens with exactly the committed prefix and reports the
/// torn bytes; then a new commit is appended after the cut and survives another reopen.
#[test]
fn t1_t3_truncation_at_every_offset_recovers_the_committed_prefix() {
    let history = history(9, 40);
    let full = &history.image.bytes;
    assert!(
        (2_000..6_000).contains(&full.len()),
        "keep this log a few KiB: the test opens it {} times",
        full.len()
    );
    let root = fast_tempdir();
    for cut in 0..=full.len() as u64 {
        let dir = root.path().join(format!("cut-{cut}"));
        install_wal(&dir, DATABASE_ID, &full[..cut as usize]);
        let expected = expected_prefix(&history, cut);
        let valid_end = if cut < HEADER_LEN_BYTES {
            HEADER_LEN_BYTES // a torn header is rewritten: the log holds no records
        } else {
            last_record_end(&history.image, cut)
        };
        let after_version;
        {
            let db = open(&dir);
            assert_eq!(state(&db), expected, "cut at {cut}");
            let stats = db.recovery_stats();
            let torn = cut.saturating_sub(valid_end);
            assert_eq!(stats.torn_tail_bytes, torn, "cut at {cut}");
            match &stats.end {
                Some(ReadEnd::Clean { end_offset_bytes }) => {
                    assert_eq!(torn, 0, "cut at {cut}");
                    assert_eq!(*end_offset_bytes, valid_end, "cut at {cut}");
                }
                Some(ReadEnd::TornTail {
                    offset_bytes,
                    torn_bytes,
                    ..
                }) => {
                    assert_eq!(*offset_bytes, valid_end, "cut at {cut}");
                    assert_eq!(*torn_bytes, torn, "cut at {cut}");
                }
                other => panic!("cut at {cut}: unexpected end {other:?}"),
            }
            assert_eq!(
                std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len(),
                valid_end,
                "cut at {cut}: the torn tail must be truncated before any append"
            );
            let mut txn = db.begin(RUN);
            txn.put(key("after"), Value::I64(cut as i64)).unwrap();
            let info = txn.commit().unwrap();
            after_version = info.versions.start;
            assert!(
                expected.values().all(|(_, v)| *v < after_version),
                "cut at {cut}: new version {after_version} not above recovered ones"
            );
        }
        let db = open(&dir);
        let mut expected = expected;
        expected.insert("after".to_string(), (Value::I64(cut as i64), after_version));
        assert_eq!(
            state(&db),
            expected,
            "cut at {cut}, after the second reopen"
        );
        assert_eq!(db.recovery_stats().torn_tail_bytes, 0, "cut at {cut}");
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Overwrites (or appends) a tail region, reopens, and checks that the result is the
/// committed prefix before the region, reported as a torn tail.
fn check_damaged_tail(name: &str, history: &History, bytes: Vec<u8>, damage_start: u64) {
    let root = fast_tempdir();
    let dir = install_wal(root.path(), DATABASE_ID, &bytes);
    let valid_end = last_record_end(&history.image, damage_start);
    let expected = expected_prefix(history, valid_end);
    let db = open(&dir);
    assert_eq!(state(&db), expected, "{name}");
    let stats = db.recovery_stats().clone();
    assert_eq!(
        stats.torn_tail_bytes,
        bytes.len() as u64 - valid_end,
        "{name}"
    );
    assert!(stats.corruption.is_none(), "{name}");
    assert!(
        matches!(stats.end, Some(ReadEnd::TornTail { offset_bytes, .. }) if offset_bytes == valid_end),
        "{name}: {:?}",
        stats.end
    );
    let mut txn = db.begin(RUN);
    txn.put(key("after"), Value::Null).unwrap();
    txn.commit().unwrap();
    drop(db);
    let db = open(&dir);
    assert_eq!(state(&db).len(), expected.len() + 1, "{name}");
}

/// T2: zeros or garbage over the last 512 B and the last 4 KiB of a valid log, and zeros
/// appended after it (preallocated space): all are the end of the log, not corruption.
#[test]
fn t2_zeros_or_garbage_over_the_tail_are_a_torn_tail() {
    let seed = announce_seed("t2", 0x7a11_0002);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let history = history(24, 150);
    let full = history.image.bytes.clone();
    assert!(full.len() > 4096 + 1024, "log too short: {}", full.len());
    for region_len in [512usize, 4096] {
        let start = full.len() - region_len;
        let mut zeros = full.clone();
        zeros[start..].fill(0);
        check_damaged_tail(
            &format!("zeros over last {region_len}"),
            &history,
            zeros,
            start as u64,
        );

        let mut garbage = full.clone();
        rng.fill_bytes(&mut garbage[start..]);
        check_damaged_tail(
            &format!("garbage over last {region_len}"),
            &history,
            garbage,
            start as u64,
        );

        let mut appended = full.clone();
        appended.resize(full.len() + region_len, 0);
        let root = fast_tempdir();
        let dir = install_wal(root.path(), DATABASE_ID, &appended);
        let db = open(&dir);
        let stats = db.recovery_stats();
        assert_eq!(stats.torn_tail_bytes, region_len as u64);
        assert!(stats.torn_tail_zero_filled);
        assert_eq!(state(&db), expected_prefix(&history, full.len() as u64));
    }
}

/// T3 through the transaction API: a Strict database whose log ends in a torn record
/// accepts N commits after reopening, and all N survive the next reopen.
#[test]
fn t3_commits_after_a_torn_tail_survive_the_next_reopen() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    {
        let db = Database::open_with_mode(dir, DurabilityMode::Strict).unwrap();
        for i in 0..5 {
            let mut txn = db.begin(RUN);
            txn.put(key(&format!("before{i}")), Value::I64(i)).unwrap();
            txn.commit().unwrap();
        }
    }
    // Tear the last transaction (one PutTxn record) 7 bytes before its end.
    let path = dir.join(WAL_FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);
    {
        let db = open(dir);
        assert_eq!(db.recovery_stats().txns_applied, 4);
        assert_eq!(
            db.recovery_stats().discarded_txns,
            0,
            "a torn PutTxn is no txn at all"
        );
        assert!(db.recovery_stats().torn_tail_bytes > 0);
        for i in 0..10 {
            let mut txn = db.begin(RUN);
            txn.put(key(&format!("after{i}")), Value::I64(i)).unwrap();
            txn.commit().unwrap();
        }
    }
    let db = open(dir);
    let got = state(&db);
    assert_eq!(got.len(), 14);
    assert!((0..10).all(|i| got.contains_key(&format!("after{i}"))));
    assert!(!got.contains_key("before4"));
    assert_eq!(db.recovery_stats().torn_tail_bytes, 0);
    // The torn transaction was one PutTxn record: cut whole, nothing left to discard.
    assert_eq!(db.recovery_stats().discarded_txns, 0);
}

/// T4, T5 and R7: recovery interrupted before it cuts the log (its truncation fails), then
/// run again, and reopened again and again without new writes: the state is the same every
/// time, the WAL's length stays put once cut, and nothing recovery read is lost.
#[test]
fn t4_t5_interrupted_and_repeated_recovery_is_idempotent() {
    let history = history(6, 10);
    let full = &history.image.bytes;
    // Cut inside the last transaction's CommitTxn: a torn tail of 5 bytes.
    let cut = full.len() as u64 - 20;
    let expected = expected_prefix(&history, cut);
    let valid_end = last_record_end(&history.image, cut);
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, &full[..cut as usize]);
    for round in 0..6 {
        let faults = Arc::new(Faults::default());
        if round == 0 {
            faults
                .failing_set_len_call
                // Call 1 gives the torn tail's sidecar its length; call 2 cuts the log.
                .store(2, Ordering::SeqCst);
            let err = DatabaseOptions::new()
                .storage_opener(faults.opener())
                .open(&dir)
                .unwrap_err();
            assert!(
                matches!(&err, EngineError::Io { context, .. } if context.contains("truncating")),
                "round {round}: {err:?}"
            );
            assert_eq!(
                std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len(),
                cut,
                "an interrupted recovery must leave the log as it was"
            );
            continue;
        }
        let db = DatabaseOptions::new()
            .storage_opener(faults.opener())
            .open(&dir)
            .unwrap();
        assert_eq!(state(&db), expected, "round {round}");
        assert_eq!(
            std::fs::metadata(dir.join(WAL_FILE_NAME)).unwrap().len(),
            valid_end,
            "round {round}"
        );
        // Only the first successful recovery finds the torn bytes.
        let torn = if round == 1 { cut - valid_end } else { 0 };
        assert_eq!(db.recovery_stats().torn_tail_bytes, torn, "round {round}");
    }
}

/// R7 for point-in-time recovery: interrupted after it saved the dropped bytes but before
/// it cut the log, it leaves the log whole, and the next run produces the same state and
/// the same sidecar.
#[test]
fn r7_interrupted_point_in_time_recovery_is_idempotent() {
    let history = history(6, 10);
    let mut bytes = history.image.bytes.clone();
    // Damage the first record of txn 3: its BeginTxn.
    let (damage, _, _) = history
        .image
        .records
        .iter()
        .find(|r| matches!(r.2, engine::WALEntry::BeginTxn { txn_id: 3, .. }))
        .cloned()
        .unwrap();
    bytes[damage as usize + 12] ^= 0x40;
    let expected = expected_prefix(&history, damage);
    let root = tempfile::tempdir().unwrap();
    let dir = install_wal(root.path(), DATABASE_ID, &bytes);
    let sidecar = dir.join(format!("{WAL_FILE_NAME}.dropped-{damage}"));
    let open_pit = |failing_call: usize| {
        let faults = Arc::new(Faults::default());
        faults
            .failing_set_len_call
            .store(failing_call, Ordering::SeqCst);
        DatabaseOptions::new()
            .recovery(RecoveryMode::PointInTime)
            .storage_opener(faults.opener())
            .open(&dir)
    };
    // Call 1 gives the sidecar its length (trailing zeros as a hole); call 2 cuts the log.
    let err = open_pit(2).unwrap_err();
    assert!(matches!(err, EngineError::Io { .. }), "{err:?}");
    assert_eq!(std::fs::read(dir.join(WAL_FILE_NAME)).unwrap(), bytes);
    assert_eq!(std::fs::read(&sidecar).unwrap(), &bytes[damage as usize..]);
    let db = open_pit(0).unwrap();
    assert_eq!(state(&db), expected);
    assert_eq!(
        db.recovery_stats()
            .corruption
            .as_ref()
            .unwrap()
            .offset_bytes,
        damage
    );
    assert_eq!(std::fs::read(&sidecar).unwrap(), &bytes[damage as usize..]);
    drop(db);
    let db = open(&dir);
    assert_eq!(state(&db), expected);
}
