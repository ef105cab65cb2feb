//! Identity and ownership (docs/faults.md O4, O5; docs/recovery-contract.md R8, R9): a WAL from another
//! database, a WAL without an IDENTITY file, a future format version, an unknown record
//! type, a foreign file and a damaged header are refused with clear errors; a second open
//! of a directory that is open (here or in another process) fails with `Locked`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::database::identity;
use engine::wal::format::FileHeader;
use engine::wal::{RecordType, WalOptions};
use engine::{Database, DurabilityMode, EngineError, Value, WAL, WAL_FILE_NAME};

use crate::common::{install_wal, key, WalImage, RUN};
use crate::open;

fn commit_one(db: &Database, name: &str) {
    let mut txn = db.begin(RUN);
    txn.put(key(name), Value::Null).unwrap();
    txn.commit().unwrap();
}

/// O4: a WAL copied from another database is refused.
#[test]
fn o4_wal_from_another_database_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    for dir in [&a, &b] {
        let db = open(dir);
        commit_one(&db, "x");
        db.close().unwrap();
    }
    std::fs::copy(a.join(WAL_FILE_NAME), b.join(WAL_FILE_NAME)).unwrap();
    let err = Database::open(&b).unwrap_err();
    assert!(
        matches!(&err, EngineError::IdentityMismatch { path, .. } if *path == b.join(WAL_FILE_NAME)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("does not belong to this database"),
        "{err}"
    );
}

/// O4: a WAL left behind after the rest of the directory was wiped (no IDENTITY) is refused.
#[test]
fn o4_wal_without_identity_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    {
        let db = open(root.path());
        commit_one(&db, "x");
    }
    std::fs::remove_file(root.path().join(identity::IDENTITY_FILE_NAME)).unwrap();
    let err = Database::open(root.path()).unwrap_err();
    match &err {
        EngineError::IdentityMismatch { reason, .. } => {
            assert!(reason.contains("no IDENTITY file"), "{reason}")
        }
        other => panic!("expected IdentityMismatch, got {other:?}"),
    }
}

/// A damaged IDENTITY file is corruption of the directory, not a reason to mint a new id.
#[test]
fn damaged_identity_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    open(root.path()).close().unwrap();
    let path = root.path().join(identity::IDENTITY_FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    for (what, bytes) in [
        ("short", good[..10].to_vec()),
        ("bad magic", [b"X", &good[1..]].concat()),
        ("bad checksum", {
            let mut b = good.clone();
            b[12] ^= 1;
            b
        }),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = Database::open(root.path()).unwrap_err();
        assert!(
            matches!(&err, EngineError::Corruption { path: p, .. } if *p == path),
            "{what}: {err:?}"
        );
    }
    std::fs::write(&path, &good).unwrap();
    open(root.path());
}

/// O5: a WAL written by a newer format version is refused, naming both versions.
#[test]
fn o5_future_format_version_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let id = 0x0f_u128;
    let header = FileHeader {
        format_version: engine::wal::FORMAT_VERSION + 1,
        database_id: id,
    };
    let dir = install_wal(root.path(), id, &header.encode());
    let err = Database::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::UnsupportedFormatVersion {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version 3"), "{err}");
}

/// O5: a record with a valid checksum but a type this build does not know is refused, in
/// the middle of the log and as its last record; it is never cut off as a torn tail.
#[test]
fn o5_unknown_record_type_is_refused() {
    let id = 0x0e_u128;
    for last in [false, true] {
        let mut image = WalImage::new(id);
        image.begin(1, 1);
        image.write(1, "a", Value::I64(1), 1);
        image.commit(1);
        let offset = image.len_bytes();
        // A validly checksummed frame of type 9, which no format version defines.
        let frame = image.hand_frame(9, &[0xabu8; 16]);
        image.bytes.extend_from_slice(&frame);
        if !last {
            image.begin(2, 2);
            image.commit(2);
        }
        let root = tempfile::tempdir().unwrap();
        let dir = install_wal(root.path(), id, &image.bytes);
        let err = Database::open(&dir).unwrap_err();
        assert!(
            matches!(
                err,
                EngineError::UnknownRecordType {
                    offset_bytes,
                    record_type: 9,
                    ..
                } if offset_bytes == offset
            ),
            "last={last}: {err:?}"
        );
        assert!(err.to_string().contains("unknown type 9"), "{err}");
        assert_eq!(
            std::fs::read(dir.join(WAL_FILE_NAME)).unwrap(),
            image.bytes,
            "refusing must not cut the log"
        );
    }
    assert_eq!(RecordType::from_byte(9), None);
}

/// A file that is not a WAL, and a WAL whose header checksum fails, are refused.
#[test]
fn foreign_file_and_damaged_header_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("not-a-wal");
    std::fs::write(&path, b"this is a text file, not a write-ahead log at all").unwrap();
    let err = WAL::open(&path, DurabilityMode::Strict).unwrap_err();
    assert!(matches!(err, EngineError::NotAWal { .. }), "{err:?}");
    std::fs::write(&path, b"short").unwrap();
    let err = WAL::open(&path, DurabilityMode::Strict).unwrap_err();
    assert!(matches!(err, EngineError::NotAWal { .. }), "{err:?}");

    let mut header = FileHeader {
        format_version: 1,
        database_id: 5,
    }
    .encode();
    header[20] ^= 1;
    std::fs::write(&path, header).unwrap();
    let err = WAL::open(&path, DurabilityMode::Strict).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Corruption {
                offset_bytes: 0,
                ..
            }
        ),
        "{err:?}"
    );

    // A WAL opened with an expected id refuses a header carrying another one.
    let other = root.path().join("other");
    WAL::open(&other, DurabilityMode::Strict).unwrap();
    let err = WAL::open_with(
        &other,
        WalOptions {
            database_id: Some(1),
            ..WalOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, EngineError::IdentityMismatch { .. }),
        "{err:?}"
    );
}

/// R9: a second open of an open directory fails with `Locked`; after the first handle is
/// dropped the directory opens again.
#[test]
fn r9_second_open_in_process_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let first = open(root.path());
    let err = Database::open(root.path()).unwrap_err();
    assert!(
        matches!(&err, EngineError::Locked { path } if path == root.path()),
        "{err:?}"
    );
    assert!(err.to_string().contains("locked"), "{err}");
    first.close().unwrap();
    let again = open(root.path());
    drop(again);
    open(root.path());
}

/// R9 across processes: while `flock(1)` holds the directory's LOCK file in another
/// process, open fails with `Locked`; while we hold it, that process cannot take it.
#[test]
fn r9_lock_is_exclusive_across_processes() {
    if Command::new("flock").arg("--version").output().is_err() {
        eprintln!("flock(1) is not installed; the in-process R9 test covers the lock");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let lock_path = root.path().join("LOCK");
    {
        let _db = open(root.path());
        let status = Command::new("flock")
            .args(["--nonblock", "--exclusive"])
            .arg(&lock_path)
            .arg("true")
            .status()
            .unwrap();
        assert!(!status.success(), "another process took the lock we hold");
    }
    // `--close` keeps the lock in flock(1) itself; `cat` exits when we close its stdin, and
    // flock releases the lock and exits with it, so no process outlives the test.
    let mut holder = Command::new("flock")
        .args(["--exclusive", "--close"])
        .arg(&lock_path)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child holds the lock: our own open fails with Locked then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match Database::open(root.path()) {
            Err(e) => break e,
            Ok(db) => {
                drop(db);
                assert!(Instant::now() < deadline, "flock child never took the lock");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    assert!(matches!(err, EngineError::Locked { .. }), "{err:?}");
    open(root.path());
}

/// A directory whose IDENTITY names a database but whose `wal.log` is gone is refused with
/// `WalMissing`, never opened as an empty database (pins the finding that a deleted log
/// opened empty with nothing in the result saying so). Nothing is created.
#[test]
fn identity_without_wal_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("db");
    let db = open(&dir);
    commit_one(&db, "x");
    db.close().unwrap();
    std::fs::remove_file(dir.join(WAL_FILE_NAME)).unwrap();
    let err = Database::open(&dir).unwrap_err();
    assert!(
        matches!(&err, EngineError::WalMissing { path } if *path == dir.join(WAL_FILE_NAME)),
        "{err:?}"
    );
    assert!(
        !dir.join(WAL_FILE_NAME).exists(),
        "no empty log was created"
    );
}

/// A crash during the very first open leaves, depending on how far it got and which
/// directory entries the power loss kept: nothing; a WAL cut inside its header, or all
/// zeros (size extended, data never written); a whole header; a header and a stray
/// `IDENTITY.tmp`. Every one opens as a new, empty database whose IDENTITY matches its
/// WAL header, and accepts commits that survive a reopen.
#[test]
fn a_crash_during_the_first_open_recovers_as_a_fresh_database() {
    let header = FileHeader {
        format_version: engine::wal::FORMAT_VERSION,
        database_id: 0xabc,
    }
    .encode();
    // Until the header's fdatasync returns, a power loss may leave its bytes as anything.
    let garbage: Vec<u8> = (0..header.len() as u8)
        .map(|b| b.wrapping_mul(37) ^ 0x5a)
        .collect();
    let states: [(&str, Option<Vec<u8>>, bool); 8] = [
        ("nothing", None, false),
        ("garbage header", Some(garbage.clone()), false),
        ("garbage short header", Some(garbage[..13].to_vec()), true),
        ("empty wal", Some(Vec::new()), false),
        ("torn header", Some(header[..13].to_vec()), false),
        ("zeroed header", Some(vec![0u8; header.len()]), false),
        ("whole header", Some(header.to_vec()), false),
        ("header and tmp", Some(header.to_vec()), true),
    ];
    for (what, wal, tmp) in states {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("db");
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(bytes) = &wal {
            std::fs::write(dir.join(WAL_FILE_NAME), bytes).unwrap();
        }
        if tmp {
            std::fs::write(dir.join("IDENTITY.tmp"), b"half").unwrap();
        }
        let db = Database::open(&dir).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(db.storage().len(), 0, "{what}");
        let id = identity::read(&engine::wal::FileOpener, &dir).unwrap();
        assert_eq!(id, Some(db.wal().database_id()), "{what}");
        if what.starts_with("whole") || what.starts_with("header") {
            assert_eq!(
                db.wal().database_id(),
                0xabc,
                "{what}: the header's id is kept"
            );
        }
        commit_one(&db, "first");
        drop(db);
        let db = open(&dir);
        assert_eq!(db.recovery_stats().txns_applied, 1, "{what}");
    }
}

/// An empty path is an invalid argument, refused before anything is created (pins the
/// finding that `Database::open("")` created IDENTITY, LOCK and wal.log in the current
/// directory, then failed naming an empty path).
#[test]
fn an_empty_path_is_refused_before_anything_is_created() {
    let before: Vec<_> = std::fs::read_dir(".")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let err = Database::open("").unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidArgument { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty"), "{err}");
    let after: Vec<_> = std::fs::read_dir(".")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        before, after,
        "nothing was created in the current directory"
    );
}
