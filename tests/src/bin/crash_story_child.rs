//! Child writer for the crash stories in `tests/tests/crash_stories.rs`.
//!
//! Usage: `crash-story-child <scenario> <db-dir> <strict|batched|async>`. It opens the
//! database, runs the scenario, and prints one line per acknowledged commit (`ack <i>
//! <txn_id>`) and `ready` when it has reached the point where the parent should kill it;
//! then it keeps running (or hangs) until SIGKILLed. Every line is flushed before the next
//! step, so the parent's ledger of acknowledgements is exact.
//! A panic aborts the process, so it can never look like a planned SIGKILL or a clean exit.

use std::io::Write;
use std::sync::Arc;

use engine::{Database, DurabilityMode, Key, Namespace, RunId, Timestamp, Value, WALEntry};

/// Txn ids for hand-crafted records start here, far above anything the API allocates.
const HAND_TXN_ID_BASE: u64 = 1_000_000;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("crash-story-child panicked: {info}");
        std::process::abort();
    }));
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: crash-story-child <scenario> <db-dir> <strict|batched|async>");
        std::process::exit(2);
    }
    let mode = match args[3].as_str() {
        "strict" => DurabilityMode::Strict,
        "batched" => DurabilityMode::Batched {
            interval_ms: 20,
            batch_size: 64,
        },
        "async" => DurabilityMode::Async,
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    };
    let db = Database::open_with_mode(&args[2], mode).expect("open database");
    let mut out = std::io::stdout().lock();
    match args[1].as_str() {
        "begin-then-hang" => {
            commit_loop(&db, &mut out, 3);
            hand_begin(&db, HAND_TXN_ID_BASE, 1);
            hand_write(&db, HAND_TXN_ID_BASE, "incomplete", 1);
            ready_and_hang(&mut out);
        }
        "commit-forever" => commit_loop(&db, &mut out, u64::MAX),
        "incomplete-many" => {
            commit_loop(&db, &mut out, 2);
            for t in 0..5 {
                hand_begin(&db, HAND_TXN_ID_BASE + t, t);
            }
            for round in 0..3 {
                for t in 0..5 {
                    hand_write(
                        &db,
                        HAND_TXN_ID_BASE + t,
                        &format!("inc-{t}-{round}"),
                        round,
                    );
                }
            }
            db.flush().expect("flush");
            ready_and_hang(&mut out);
        }
        "committed-and-incomplete" => {
            // Interleave: A begins, B begins, A writes, B writes, A commits, C begins,
            // C writes, (B and C never finish).
            let (a, b, c) = (HAND_TXN_ID_BASE, HAND_TXN_ID_BASE + 1, HAND_TXN_ID_BASE + 2);
            hand_begin(&db, a, 1);
            hand_begin(&db, b, 2);
            hand_write(&db, a, "a", 10);
            hand_write(&db, b, "b", 20);
            db.wal()
                .append(&WALEntry::CommitTxn {
                    txn_id: a,
                    run_id: RunId(1),
                })
                .expect("append");
            hand_begin(&db, c, 3);
            hand_write(&db, c, "c", 30);
            db.flush().expect("flush");
            writeln!(out, "ack hand {a}")
                .and_then(|()| out.flush())
                .expect("stdout");
            commit_loop(&db, &mut out, 2);
            ready_and_hang(&mut out);
        }
        other => {
            eprintln!("unknown scenario {other}");
            std::process::exit(2);
        }
    }
}

fn namespace() -> Arc<Namespace> {
    Arc::new(Namespace::new("tenant", "app", "agent", RunId(1)))
}

/// Commits txn i: `k{i % 7}` = i and `last` = i. Prints `ack <i> <txn_id>` after each.
fn commit_loop(db: &Database, out: &mut impl Write, n_txns: u64) {
    let ns = namespace();
    for i in 0..n_txns {
        let mut txn = db.begin(RunId(1));
        txn.put(
            Key::kv(ns.clone(), format!("k{}", i % 7)),
            Value::I64(i as i64),
        )
        .expect("put");
        txn.put(Key::kv(ns.clone(), "last"), Value::I64(i as i64))
            .expect("put");
        let info = txn.commit().expect("commit");
        writeln!(out, "ack {i} {}", info.txn_id)
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}

fn hand_begin(db: &Database, txn_id: u64, run: u64) {
    let entry = WALEntry::BeginTxn {
        txn_id,
        run_id: RunId(run),
        timestamp: Timestamp(1),
    };
    db.wal().append(&entry).expect("append BeginTxn");
}

fn hand_write(db: &Database, txn_id: u64, name: &str, version_offset: u64) {
    let entry = WALEntry::Write {
        txn_id,
        run_id: RunId(1),
        key: Key::kv(namespace(), name),
        value: Value::String(format!("{name} of txn {txn_id}")),
        version: 500_000 + version_offset,
    };
    db.wal().append(&entry).expect("append Write");
}

fn ready_and_hang(out: &mut impl Write) -> ! {
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
