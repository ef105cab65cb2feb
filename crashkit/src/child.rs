//! The child processes: the writer that runs a workload until it is killed, and the
//! recoverer that opens a crashed database (and may be killed while recovering).
//!
//! Both are entered through [`main_from_args`] in a freshly exec'd process (never after a
//! bare fork of the multi-threaded parent). Events go to stdout (fd 1) one line at a time,
//! before the child does anything else, so the parent's ledger is the ground truth.

use std::path::PathBuf;
use std::sync::Arc;

use engine::{DatabaseOptions, DurabilityMode};

use crate::case::Case;
use crate::faults::storage::FaultOpener;
use crate::faults::sync_report::SyncReport;
use crate::plan::FaultPlan;
use crate::protocol::{Event, EventWriter};
use crate::workload::{OpPlan, Workload};
use crate::wrong_engine::WrongEngine;

/// Which job a child does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Recoverer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Recoverer => "recover",
        }
    }
}

/// The child's command-line arguments (after the subcommand that selects the child).
pub fn child_args(role: Role, dir: &std::path::Path, case: &Case) -> Vec<String> {
    vec![
        "--role".to_string(),
        role.name().to_string(),
        "--dir".to_string(),
        dir.display().to_string(),
        "--case".to_string(),
        serde_json::to_string(case).expect("a case always serializes"),
    ]
}

/// Exit code for a child that could not understand its arguments.
pub const EXIT_BAD_ARGS: i32 = 64;
/// Exit code for a child whose database failed to open.
pub const EXIT_OPEN_FAILED: i32 = 65;

/// Runs a child and exits. Never returns: a child must not fall back into the parent's code.
pub fn main_from_args(args: Vec<String>) -> ! {
    // A panic must never look like a clean exit (or like the planned SIGKILL): abort, and
    // the parent classifies SIGABRT as a finding.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("crashkit child panicked: {info}");
        std::process::abort();
    }));
    let mut role = None;
    let mut dir = None;
    let mut case = None;
    let mut wrong = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let value = it.next();
        match (arg.as_str(), value) {
            ("--role", Some(v)) if v == "writer" => role = Some(Role::Writer),
            ("--role", Some(v)) if v == "recover" => role = Some(Role::Recoverer),
            ("--dir", Some(v)) => dir = Some(PathBuf::from(v)),
            ("--case", Some(v)) => case = serde_json::from_str::<Case>(&v).ok(),
            // Self-test only: a wrong engine acting in the writer.
            ("--wrong", Some(v)) => wrong = serde_json::from_str::<WrongEngine>(&v).ok(),
            (other, _) => {
                eprintln!("crashkit child: unexpected argument {other:?}");
                std::process::exit(EXIT_BAD_ARGS);
            }
        }
    }
    let (Some(role), Some(dir), Some(case)) = (role, dir, case) else {
        eprintln!("crashkit child: needs --role writer|recover --dir DIR --case JSON");
        std::process::exit(EXIT_BAD_ARGS);
    };
    let out = Arc::new(EventWriter::new(1));
    match role {
        Role::Writer => run_writer(&dir, &case, wrong, out),
        Role::Recoverer => run_recoverer(&dir, &case, wrong, out),
    }
}

/// How long a child waits for the directory lock (as long as the checker does, and for
/// the same reason: `checker::open::LOCK_RETRY_MS`).
const LOCK_WAIT_MS: u64 = 10_000;

/// Opens, retrying while the directory is locked: the parent's checker has just closed
/// it, but a sibling child forked by another worker thread may hold an inherited copy of
/// its lock descriptor until that sibling's exec closes it.
fn open_waiting_for_lock(
    dir: &std::path::Path,
    options: impl Fn() -> DatabaseOptions,
) -> engine::Result<engine::Database> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
    loop {
        match options().open(dir) {
            Err(engine::EngineError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            other => return other,
        }
    }
}

fn run_writer(
    dir: &std::path::Path,
    case: &Case,
    wrong: Option<WrongEngine>,
    out: Arc<EventWriter>,
) -> ! {
    let workload = Workload::for_case(case);
    let mut plan = FaultPlan::derive(case, &workload);
    plan.wrong = wrong;
    let reporter = out.clone();
    let hooks = plan
        .writer_hooks(
            case,
            dir,
            Arc::new(move |report| {
                reporter.send(&match report {
                    SyncReport::Completed { covered_bytes } => Event::Synced {
                        offset_bytes: covered_bytes,
                    },
                    SyncReport::Failed => Event::SyncFailed,
                })
            }),
        )
        .unwrap_or_else(|e| panic!("crashkit child: cannot create the I/O trace: {e}"));
    let crate::plan::WriterHooks { hooks, trace } = hooks;
    if let Some(trace) = trace {
        out.mirror_to(trace); // events in the trace: crate::sweep orders acks among operations
    }
    let opener = FaultOpener::new(hooks);
    let opener: Arc<dyn engine::wal::StorageOpener> = Arc::new(opener);
    let db = match open_waiting_for_lock(dir, || {
        DatabaseOptions::new()
            .durability(case.mode.durability())
            .create_format_version(plan.writer_format_version())
            .storage_opener(opener.clone())
    }) {
        Ok(db) => db,
        Err(e) => {
            out.send(&Event::OpenError {
                message: e.to_string(),
            });
            std::process::exit(EXIT_OPEN_FAILED);
        }
    };
    let threads = case.writer_threads();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (db, workload, out) = (&db, &workload, &out);
            scope.spawn(move || {
                for idx in (t..workload.txns.len()).step_by(threads) {
                    run_txn(db, idx, &workload.txns[idx], out);
                }
            });
        }
    });
    match db.close() {
        Ok(()) => out.send(&Event::Done),
        Err(e) => out.send(&Event::CloseError {
            message: e.to_string(),
        }),
    }
    std::process::exit(0);
}

/// Commits (or aborts) one workload transaction and reports what happened.
fn run_txn(db: &engine::Database, idx: usize, plan: &crate::workload::TxnPlan, out: &EventWriter) {
    let mut txn = db.begin(plan.run_id);
    for op in &plan.ops {
        let buffered = match op {
            OpPlan::Put { key, value } => txn.put(key.clone(), value.clone()),
            OpPlan::Delete { key } => txn.delete(key.clone()),
        };
        if let Err(e) = buffered {
            // The workload stays within every documented limit, so a refusal here is
            // an engine bug; the panic hook turns it into SIGABRT, a finding.
            panic!("buffering operation of txn {idx} failed: {e}");
        }
    }
    if plan.abort {
        txn.abort();
        return;
    }
    out.send(&Event::Attempt { idx });
    match txn.commit() {
        Ok(info) => out.send(&Event::Ack {
            idx,
            txn_id: info.txn_id,
            versions: info.versions,
            end_offset_bytes: info.end_offset_bytes,
            durable: info.durable,
        }),
        Err(e) => out.send(&Event::Error {
            idx,
            message: e.to_string(),
        }),
    }
    if plan.flush_after {
        if let Err(e) = db.flush() {
            out.send(&Event::FlushError {
                idx,
                message: e.to_string(),
            });
        }
    }
}

fn run_recoverer(
    dir: &std::path::Path,
    case: &Case,
    wrong: Option<WrongEngine>,
    out: Arc<EventWriter>,
) -> ! {
    let workload = Workload::for_case(case);
    let mut plan = FaultPlan::derive(case, &workload);
    plan.wrong = wrong;
    // Strict, so that a recoverer that survives and drops its handle adds nothing.
    let hooks = plan
        .recoverer_hooks(dir)
        .unwrap_or_else(|e| panic!("crashkit child: cannot create the recovery's I/O trace: {e}"));
    let opener: Arc<dyn engine::wal::StorageOpener> = Arc::new(FaultOpener::new(hooks));
    match open_waiting_for_lock(dir, || {
        DatabaseOptions::new()
            .durability(DurabilityMode::Strict)
            .storage_opener(opener.clone())
    }) {
        Ok(db) => {
            out.send(&Event::Opened);
            drop(db);
            std::process::exit(0);
        }
        Err(e) => {
            out.send(&Event::OpenError {
                message: e.to_string(),
            });
            std::process::exit(EXIT_OPEN_FAILED);
        }
    }
}
