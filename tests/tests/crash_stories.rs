//! The original crash-simulation stories, with real processes and real SIGKILL.
//!
//! Each test starts `crash-story-child` (fork+exec), reads its acknowledgements from a pipe,
//! kills it with SIGKILL at the scenario's chosen moment, reaps it (asserting it died of that
//! SIGKILL and of nothing else), reopens the database in this process and checks the
//! recovered state: every acknowledged transaction present with its values, nothing from an
//! incomplete transaction, and (for the commit loops) a consistent prefix of the commit
//! sequence. These pin the classic recovery bugs: acknowledged commits lost on a process
//! kill, incomplete transactions applied, and a database that refuses new commits after
//! recovery.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use engine::{Database, Key, Namespace, RunId, Value};

struct Story {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Story {
    fn start(scenario: &str, dir: &Path, mode: &str) -> Story {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-story-child"))
            .args([scenario, dir.to_str().unwrap(), mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash-story-child");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Story { child, lines }
    }

    /// Reads lines until `stop(line)` is true; returns the acks seen (commit index order).
    fn read_until(&mut self, mut stop: impl FnMut(&str, usize) -> bool) -> Vec<u64> {
        let mut acks = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.expect("read child stdout");
            if let Some(rest) = line.strip_prefix("ack ") {
                if let Some(i) = rest.split(' ').next().and_then(|s| s.parse::<u64>().ok()) {
                    acks.push(i);
                }
            }
            if stop(&line, acks.len()) {
                break;
            }
        }
        acks
    }

    /// SIGKILLs the child, reaps it, asserts that SIGKILL is what ended it, and returns
    /// the acknowledgements that were already in the pipe.
    fn kill(mut self) -> Vec<u64> {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed");
        let status = self.child.wait().expect("wait for child");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "child ended by {status:?}, not by our SIGKILL"
        );
        self.read_until(|_, _| false)
    }
}

fn key(name: &str) -> Key {
    Key::kv(
        Arc::new(Namespace::new("tenant", "app", "agent", RunId(1))),
        name,
    )
}

fn i64_at(db: &Database, name: &str) -> Option<i64> {
    db.get(&key(name)).map(|v| match v.value {
        Value::I64(i) => i,
        other => panic!("{name} holds {other:?}, expected I64"),
    })
}

/// Asserts the store equals the commit loop's model after exactly `n` commits.
fn assert_commit_loop_prefix(db: &Database, n: u64) {
    assert_eq!(
        i64_at(db, "last"),
        n.checked_sub(1).map(|x| x as i64),
        "last"
    );
    for slot in 0..7u64 {
        let expected = (0..n).rev().find(|i| i % 7 == slot).map(|i| i as i64);
        assert_eq!(
            i64_at(db, &format!("k{slot}")),
            expected,
            "k{slot} after {n} commits"
        );
    }
}

/// The number of commit-loop transactions recovered (from the `last` key).
fn recovered_commits(db: &Database) -> u64 {
    i64_at(db, "last").map(|i| i as u64 + 1).unwrap_or(0)
}

/// After recovery, the database must accept new commits that survive another reopen.
fn assert_accepts_new_commits(dir: &Path) {
    let marker = key("after-recovery");
    {
        let db = Database::open(dir).expect("reopen for new commits");
        let before = db.storage().current_version();
        let mut txn = db.begin(RunId(9));
        txn.put(marker.clone(), Value::Bool(true)).unwrap();
        let info = txn.commit().expect("commit after recovery");
        assert!(
            info.versions.start > before,
            "new version {info:?} not above {before}"
        );
    }
    let db = Database::open(dir).expect("second reopen");
    assert_eq!(db.get(&marker).map(|v| v.value), Some(Value::Bool(true)));
}

#[test]
fn crash_after_begin_txn_discards_the_incomplete_txn() {
    let tmp = tempfile::tempdir().unwrap();
    let mut story = Story::start("begin-then-hang", tmp.path(), "strict");
    let acks = story.read_until(|line, _| line == "ready");
    assert_eq!(acks, vec![0, 1, 2]);
    story.kill();
    let db = Database::open(tmp.path()).unwrap();
    let stats = db.recovery_stats();
    assert_eq!(stats.txns_applied, 3);
    assert_eq!(stats.discarded_txns, 1);
    assert_eq!(db.get(&key("incomplete")), None);
    assert_commit_loop_prefix(&db, 3);
    drop(db);
    assert_accepts_new_commits(tmp.path());
}

#[test]
fn crash_after_commit_in_strict_mode_recovers_every_acked_txn() {
    for target_acks in [1usize, 17, 60] {
        let tmp = tempfile::tempdir().unwrap();
        let mut story = Story::start("commit-forever", tmp.path(), "strict");
        story.read_until(|_, n| n >= target_acks);
        let late_acks = story.kill();
        let acked = (target_acks + late_acks.len()) as u64;
        let db = Database::open(tmp.path()).unwrap();
        let n = recovered_commits(&db);
        // Every acknowledged txn survives; at most one more (in flight at the kill).
        assert!(
            n == acked || n == acked + 1,
            "recovered {n} commits, {acked} were acknowledged"
        );
        assert_commit_loop_prefix(&db, n);
        assert_eq!(db.recovery_stats().txns_applied, n);
        drop(db);
        assert_accepts_new_commits(tmp.path());
    }
}

#[test]
fn crash_in_batched_and_async_modes_keeps_a_prefix_with_every_acked_txn() {
    // A process kill keeps what the OS already has, so even unsynced acknowledged commits
    // must survive; the recovered state must be exactly a prefix of the commit sequence.
    for mode in ["batched", "async"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut story = Story::start("commit-forever", tmp.path(), mode);
        story.read_until(|_, n| n >= 300);
        let late_acks = story.kill();
        let acked = (300 + late_acks.len()) as u64;
        let db = Database::open(tmp.path()).unwrap();
        let n = recovered_commits(&db);
        assert!(
            n == acked || n == acked + 1,
            "{mode}: recovered {n}, acknowledged {acked}"
        );
        assert_commit_loop_prefix(&db, n);
        drop(db);
        assert_accepts_new_commits(tmp.path());
    }
}

#[test]
fn several_incomplete_txns_are_all_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut story = Story::start("incomplete-many", tmp.path(), "strict");
    let acks = story.read_until(|line, _| line == "ready");
    assert_eq!(acks, vec![0, 1]);
    story.kill();
    let db = Database::open(tmp.path()).unwrap();
    assert_eq!(db.recovery_stats().discarded_txns, 5);
    assert_eq!(db.recovery_stats().txns_applied, 2);
    for t in 0..5 {
        for round in 0..3 {
            assert_eq!(db.get(&key(&format!("inc-{t}-{round}"))), None);
        }
    }
    assert_commit_loop_prefix(&db, 2);
    drop(db);
    assert_accepts_new_commits(tmp.path());
}

#[test]
fn committed_and_incomplete_interleaved_keeps_only_the_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut story = Story::start("committed-and-incomplete", tmp.path(), "strict");
    story.read_until(|line, _| line == "ready");
    story.kill();
    let db = Database::open(tmp.path()).unwrap();
    let stats = db.recovery_stats().clone();
    assert_eq!(stats.txns_applied, 3, "{stats:?}");
    assert_eq!(stats.discarded_txns, 2, "{stats:?}");
    let a = db.get(&key("a")).expect("committed hand-crafted txn a");
    assert_eq!(a.value, Value::String("a of txn 1000000".into()));
    assert_eq!(a.version, 500_010);
    assert_eq!(db.get(&key("b")), None);
    assert_eq!(db.get(&key("c")), None);
    assert_commit_loop_prefix(&db, 2);
    // Versions continue above everything seen in the log, even the discarded records.
    assert!(db.storage().current_version() >= 500_010);
    drop(db);
    assert_accepts_new_commits(tmp.path());
}
