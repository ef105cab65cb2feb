//! Edges of the public API that recovery and the harness rely on: limits refused before
//! anything is written, errors that say what and where, the WAL used directly (append to a
//! log that was never replayed must first cut its torn tail, docs/faults.md T3), the first
//! poison reason kept, and an fdatasync failure during recovery failing the open (P4).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use engine::database::lock::{DirLock, LOCK_FILE_NAME};
use engine::wal::{ReadEnd, WalOptions};
use engine::{
    Database, DatabaseOptions, DurabilityMode, EngineError, Key, Namespace, RunId, Value, WALEntry,
    WAL, WAL_FILE_NAME,
};

use crate::common::{key, open_faulty, Faults, WalImage, HEADER_LEN_BYTES, RUN};
use crate::{open, state};

/// A value above the 16 MiB record limit, or a namespace name above 64 KiB, is refused
/// when it is put, and nothing reaches the log.
#[test]
fn oversized_values_and_names_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut txn = db.begin(RUN);
    let err = txn
        .put(key("big"), Value::Bytes(vec![0; 16 * 1024 * 1024]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::TooLarge {
                max_bytes: 16_777_216,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("the limit is 16777216 bytes"),
        "{err}"
    );
    let long_name = Arc::new(Namespace::new("t".repeat(70_000), "a", "g", RUN));
    let err = txn.delete(Key::kv(long_name, "k")).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::TooLarge {
                what: "namespace name",
                len_bytes: 70_000,
                max_bytes: 65_535
            }
        ),
        "{err:?}"
    );
    assert!(txn.is_empty(), "a refused operation was buffered");
    txn.commit().unwrap();
    assert_eq!(db.recovery_stats().records_read, 0);
    drop(db);
    assert_eq!(open(dir.path()).recovery_stats().records_read, 2);
}

/// Every error variant's message names what failed and where.
#[test]
fn error_messages_say_what_and_where() {
    let path = std::path::PathBuf::from("/data/db/wal.log");
    let cases: Vec<(EngineError, &[&str])> = vec![
        (
            EngineError::io("reading x", std::io::Error::from_raw_os_error(libc::EIO)),
            &["reading x", "I/O error"],
        ),
        (
            EngineError::Corruption {
                path: path.clone(),
                offset_bytes: 4242,
                reason: "bad crc".into(),
            },
            &["/data/db/wal.log", "4242", "bad crc", "PointInTime"],
        ),
        (
            EngineError::Corruption {
                path: path.clone(),
                offset_bytes: 0,
                reason: "file header checksum mismatch".into(),
            },
            &[
                "/data/db/wal.log",
                "offset 0",
                "checksum mismatch",
                "restore",
            ],
        ),
        (
            EngineError::Locked { path: path.clone() },
            &["/data/db/wal.log", "locked"],
        ),
        (
            EngineError::Poisoned {
                reason: "fsync failed".into(),
            },
            &["poisoned", "fsync failed", "reopen"],
        ),
        (
            EngineError::NotAWal { path: path.clone() },
            &["/data/db/wal.log", "magic"],
        ),
        (
            EngineError::UnsupportedFormatVersion {
                path: path.clone(),
                found: 9,
                supported: 2,
            },
            &["version 9", "versions 1 to 2"],
        ),
        (
            EngineError::WalMissing { path: path.clone() },
            &["/data/db/wal.log", "missing", "IDENTITY"],
        ),
        (
            EngineError::UnknownRecordType {
                path: path.clone(),
                offset_bytes: 77,
                record_type: 200,
            },
            &["type 200", "offset 77"],
        ),
        (
            EngineError::IdentityMismatch {
                path: path.clone(),
                reason: "copied".into(),
            },
            &["does not belong", "copied"],
        ),
        (
            EngineError::InvalidArgument {
                reason: "zero interval".into(),
            },
            &["invalid argument", "zero interval"],
        ),
        (EngineError::Closed, &["closed"]),
    ];
    for (err, needles) in cases {
        let text = err.to_string();
        // Advice must work: point-in-time recovery cannot help a damaged header.
        if matches!(
            err,
            EngineError::Corruption {
                offset_bytes: 0,
                ..
            }
        ) {
            assert!(!text.contains("PointInTime"), "{text}");
        }
        for needle in needles {
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
        let has_source = std::error::Error::source(&err).is_some();
        assert_eq!(has_source, matches!(err, EngineError::Io { .. }), "{err:?}");
    }
}

#[test]
fn read_end_messages_and_valid_end() {
    let clean = ReadEnd::Clean {
        end_offset_bytes: 100,
    };
    let torn = ReadEnd::TornTail {
        offset_bytes: 90,
        torn_bytes: 10,
        zero_filled: true,
        reason: "short".into(),
        valid_records_after: 0,
    };
    let corrupt = ReadEnd::Corruption {
        offset_bytes: 50,
        next_valid_offset_bytes: 70,
        reason: "crc".into(),
    };
    assert_eq!(clean.valid_end_offset_bytes(), 100);
    assert_eq!(torn.valid_end_offset_bytes(), 90);
    assert_eq!(corrupt.valid_end_offset_bytes(), 50);
    assert_eq!(clean.to_string(), "clean end at offset 100");
    assert_eq!(
        torn.to_string(),
        "torn tail at offset 90: 10 bytes, all zero (short)"
    );
    assert!(corrupt
        .to_string()
        .contains("valid record follows at offset 70"));
}

#[test]
fn value_payload_lengths() {
    assert_eq!(Value::Null.payload_len_bytes(), 0);
    assert_eq!(Value::Bool(true).payload_len_bytes(), 1);
    assert_eq!(Value::I64(1).payload_len_bytes(), 8);
    assert_eq!(Value::F64(1.0).payload_len_bytes(), 8);
    assert_eq!(Value::String("héllo".into()).payload_len_bytes(), 6);
    assert_eq!(Value::Bytes(vec![1, 2, 3]).payload_len_bytes(), 3);
}

/// The directory lock names its file, and a second acquisition fails while it is held.
#[test]
fn dir_lock_is_exclusive_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let held = DirLock::acquire(dir.path()).unwrap();
    assert_eq!(held.path(), dir.path().join(LOCK_FILE_NAME));
    assert!(matches!(
        DirLock::acquire(dir.path()),
        Err(EngineError::Locked { .. })
    ));
    drop(held);
    DirLock::acquire(dir.path()).unwrap();
}

/// An IDENTITY that cannot be read is an I/O error, never a reason to mint a new identity.
#[test]
fn unreadable_identity_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("IDENTITY")).unwrap();
    let err = Database::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, EngineError::Io { context, .. } if context.contains("IDENTITY")),
        "{err:?}"
    );
}

/// Appending to a WAL that was opened but never replayed first reads it to the end and
/// cuts a torn tail, so the new record is not stranded after garbage (T3); it refuses to
/// append after corruption.
#[test]
fn appending_to_an_unreplayed_wal_cuts_its_torn_tail_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(WAL_FILE_NAME);
    let mut image = WalImage::new(9);
    image.begin(1, 1);
    image.write(1, "a", Value::I64(1), 1);
    image.commit(1);
    let valid_len = image.len_bytes();
    let mut bytes = image.bytes.clone();
    bytes.extend_from_slice(
        &WALEntry::CommitTxn {
            txn_id: 2,
            run_id: RUN,
        }
        .encode()[..7],
    );
    std::fs::write(&path, &bytes).unwrap();

    let wal = WAL::open(&path, DurabilityMode::Strict).unwrap();
    assert_eq!(wal.mode(), DurabilityMode::Strict);
    assert_eq!(wal.database_id(), 9);
    assert_eq!(wal.path(), path.as_path());
    let offset = wal
        .append(&WALEntry::AbortTxn {
            txn_id: 3,
            run_id: RUN,
        })
        .unwrap();
    assert_eq!(
        offset, valid_len,
        "the new record must start where the valid log ends"
    );
    let mut reader = wal.reader().unwrap();
    let mut n_records = 0;
    while reader.next_record().unwrap().is_some() {
        n_records += 1;
    }
    assert_eq!(n_records, 4);
    assert!(matches!(reader.end(), Some(ReadEnd::Clean { .. })));
    assert_eq!(
        wal.verify_tail().unwrap(),
        ReadEnd::Clean {
            end_offset_bytes: wal.written_offset_bytes()
        }
    );
    drop(wal);

    // Damage the first record: valid records follow, so appending is refused.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN_BYTES as usize + 12] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let wal = WAL::open(&path, DurabilityMode::Async).unwrap();
    let err = wal
        .append(&WALEntry::AbortTxn {
            txn_id: 4,
            run_id: RUN,
        })
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Corruption { offset_bytes, .. } if offset_bytes == HEADER_LEN_BYTES),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "refusing must not write"
    );
}

/// The first poison reason is the one reported: later failures are consequences.
#[test]
fn poison_keeps_the_first_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wal = WAL::open_with(
        dir.path().join(WAL_FILE_NAME),
        WalOptions {
            mode: DurabilityMode::Async,
            ..WalOptions::default()
        },
    )
    .unwrap();
    wal.check_poisoned().unwrap();
    wal.poison("first failure".into());
    wal.poison("second failure".into());
    match wal.check_poisoned() {
        Err(EngineError::Poisoned { reason }) => assert_eq!(reason, "first failure"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        wal.append(&WALEntry::CommitTxn {
            txn_id: 1,
            run_id: RunId(1)
        }),
        Err(EngineError::Poisoned { .. })
    ));
    assert!(matches!(wal.sync(), Err(EngineError::Poisoned { .. })));
}

/// P4: recovery makes what it read durable before the database builds on it; if that
/// fdatasync fails, the open fails instead of acknowledging commits on top of it.
#[test]
fn failing_fsync_during_recovery_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let mut txn = db.begin(RUN);
        txn.put(key("a"), Value::Null).unwrap();
        txn.commit().unwrap();
    }
    let faults = Arc::new(Faults::default());
    faults.failing_syncs.store(1, Ordering::SeqCst);
    let err = DatabaseOptions::new()
        .storage_opener(faults.opener())
        .open(dir.path())
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Io { context, .. } if context.contains("after recovery")),
        "{err:?}"
    );
    assert_eq!(state(&open(dir.path())).len(), 1);
}

/// Concurrent first appends to a WAL that was opened without replaying it: each one
/// triggers the tail check, and the check must run under the write lock. Before the fix a
/// slower check could cut a record another thread had just appended (and been told was
/// written). Every append must be in the log afterwards.
#[test]
fn concurrent_first_appends_to_an_unverified_wal_are_all_kept() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WAL_FILE_NAME);
        {
            let wal = WAL::open(&path, DurabilityMode::Async).unwrap();
            for txn_id in 1..=20 {
                wal.append(&WALEntry::BeginTxn {
                    txn_id,
                    run_id: RUN,
                    timestamp: engine::Timestamp(txn_id),
                })
                .unwrap();
            }
        }
        let wal = Arc::new(WAL::open(&path, DurabilityMode::Async).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    wal.append(&WALEntry::AbortTxn {
                        txn_id: 100 + t,
                        run_id: RUN,
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(wal);
        let wal = WAL::open(&path, DurabilityMode::Async).unwrap();
        let mut reader = wal.reader().unwrap();
        let mut n_records = 0;
        while reader.next_record().unwrap().is_some() {
            n_records += 1;
        }
        assert_eq!(
            n_records, 28,
            "round {round}: an acknowledged append was cut"
        );
        assert!(matches!(reader.end(), Some(ReadEnd::Clean { .. })));
    }
}

/// A power loss before the new WAL's header was fdatasynced can leave a header-sized (or
/// larger) file of zeros: an unfinished create with no records. It opens as an empty
/// database instead of failing with NotAWal forever.
#[test]
fn an_all_zero_wal_is_an_unfinished_create() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let wal_path = dir.path().join(WAL_FILE_NAME);
    std::fs::write(&wal_path, vec![0u8; 4096]).unwrap();
    let db = open(dir.path());
    assert_eq!(db.recovery_stats().txns_applied, 0);
    let mut txn = db.begin(RUN);
    txn.put(key("k"), Value::I64(1)).unwrap();
    txn.commit().unwrap();
    drop(db);
    assert_eq!(state(&open(dir.path())).len(), 1);
    // A zero header in front of non-zero bytes is not an unfinished create.
    let mut bytes = vec![0u8; 4096];
    bytes[100] = 1;
    std::fs::write(&wal_path, bytes).unwrap();
    assert!(matches!(
        Database::open(dir.path()),
        Err(EngineError::NotAWal { .. })
    ));
}

/// P3: every open fsyncs the WAL's directory, not only the open that created the file, so
/// a first open that died (or failed) before its directory fsync is repaired by the next.
#[test]
fn every_open_fsyncs_the_wal_directory() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let (db, faults) = open_faulty(dir.path(), DurabilityMode::default());
    assert!(faults.dir_syncs.load(Ordering::SeqCst) >= 1);
    drop(db);
}
