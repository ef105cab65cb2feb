//! `torture bench`: the engine's performance checks, printed as one table per run.
//!
//! One run measures, in this order: replay of a crashed WAL of single-put transactions (two
//! sizes, each with keys in random order and in ascending order: see `KeyOrder`) against
//! the floor of a plain read + crc32 pass over the same file, and against the naive log
//! (`naive.rs`: the peer benchmark's baseline) replaying the same puts; reopen + read every
//! key (and the naive log's reads); recovery's peak RSS against the recovered store's RSS
//! (in a fresh child process); WAL bytes per transaction; commit throughput per durability
//! mode with 1, 2, 4 and 8 threads, keys in random order (Async also in ascending order);
//! Strict single-thread commits against a plain write + fdatasync loop, and Async
//! single-thread commits against the naive log's write loop, over the same file system in
//! the same run. Every figure is a median of repeated runs.
//!
//! The WALs are built by encoding the records with the engine's own encoder and appending
//! them through an Async database that is then dropped without `close`: the bytes on disk
//! are exactly what a SIGKILL after the last acknowledged commit leaves.

mod commit;
mod memory;
mod naive;
mod replay;
mod report;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use memory::{recover_only, RecoveryMemory};
pub use replay::{build_crashed_wal, KeyOrder};
pub use report::Report;

/// Options of `torture bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Print JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Smaller sizes, for a smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Directory for the benchmark databases (default: a fresh temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Measure replay, reopen + read and recovery memory only (skip commit throughput).
    #[arg(long)]
    pub replay_only: bool,
    /// Internal: recover the database in this directory, print its memory figures as one
    /// JSON line, and exit. The bench re-executes itself with this flag so that recovery's
    /// peak RSS is measured in a fresh process.
    #[arg(long, hide = true)]
    pub recover_only: Option<PathBuf>,
    /// Internal: replay the naive log at this path, print the time as one JSON line, and
    /// exit (the bench runs it in a fresh process, as it runs the engine's recovery).
    #[arg(long, hide = true)]
    pub naive_replay_only: Option<PathBuf>,
}

/// Why the benchmark could not produce its figures.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// A file-system call of the benchmark itself failed.
    Io { context: String, source: io::Error },
    /// The engine refused an operation the benchmark needs.
    Engine {
        context: String,
        source: engine::EngineError,
    },
    /// The recovered database does not hold what was written (a correctness failure that
    /// makes every figure meaningless).
    Verify { reason: String },
    /// The recovery child process failed or printed something unreadable.
    Child { reason: String },
}

impl BenchError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> BenchError {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn engine(context: impl Into<String>, source: engine::EngineError) -> BenchError {
        BenchError::Engine {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Io { context, source } => write!(f, "I/O error while {context}: {source}"),
            BenchError::Engine { context, source } => {
                write!(f, "engine error while {context}: {source}")
            }
            BenchError::Verify { reason } => {
                write!(f, "recovered state is wrong, figures are void: {reason}")
            }
            BenchError::Child { reason } => write!(f, "recovery child process: {reason}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Io { source, .. } => Some(source),
            BenchError::Engine { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Runs this executable as `bench <flag> <path>` in a fresh process (the bench measures
/// recoveries there: nothing this process allocated helps them) and returns the last JSON
/// line of its stdout whose `type` is `line_type`, read by `parse`; or why it failed
/// (`what` names the child).
pub(crate) fn child_line<T>(
    flag: &str,
    path: &std::path::Path,
    what: &str,
    line_type: &str,
    parse: impl Fn(&serde_json::Value) -> Option<T>,
) -> Result<T, BenchError> {
    let output = std::process::Command::new("/proc/self/exe")
        .arg("bench")
        .arg(flag)
        .arg(path)
        .output()
        .map_err(|e| BenchError::io(format!("starting the {what} child"), e))?;
    if !output.status.success() {
        return Err(BenchError::Child {
            reason: format!(
                "{what} child exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["type"] == line_type).then_some(())?;
            parse(&v)
        })
        .ok_or_else(|| BenchError::Child {
            reason: format!("no {line_type} line in its output: {}", stdout.trim()),
        })
}

/// `repeats` (at least one) measurements, each in a fresh child (`child`), or in this
/// process (`here`) when a child cannot run (a library caller whose executable does not
/// understand the bench's hidden flags); `what` names the measurement in the warning.
pub(crate) fn in_fresh_processes<T>(
    repeats: usize,
    what: &str,
    child: impl Fn() -> Result<T, BenchError>,
    here: impl Fn() -> Result<T, BenchError>,
) -> Result<Vec<T>, BenchError> {
    (0..repeats.max(1))
        .map(|_| match child() {
            Ok(figures) => Ok(figures),
            Err(e) => {
                log::warn!("measuring {what} in-process instead of in a child: {e}");
                here()
            }
        })
        .collect()
}

/// Sizes of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Transaction counts of the replay measurements.
    pub replay_txns: Vec<u64>,
    /// How often each replay figure is measured (the median is reported).
    pub repeats: usize,
    /// How long each commit-throughput cell runs.
    pub commit_duration: Duration,
    pub commit_threads: Vec<usize>,
}

impl Plan {
    fn for_options(options: &BenchOptions) -> Plan {
        if options.quick {
            Plan {
                replay_txns: vec![10_000, 100_000],
                repeats: 3,
                commit_duration: Duration::from_millis(250),
                commit_threads: vec![1, 2, 4, 8],
            }
        } else {
            Plan {
                replay_txns: vec![100_000, 1_000_000],
                repeats: 5,
                commit_duration: Duration::from_secs(1),
                commit_threads: vec![1, 2, 4, 8],
            }
        }
    }
}

/// Runs `torture bench` and prints its table (or JSON Lines) on stdout.
pub fn run_command(options: &BenchOptions) -> Result<(), BenchError> {
    if let Some(dir) = &options.recover_only {
        let figures = recover_only(dir)?;
        println!("{}", figures.to_json());
        return Ok(());
    }
    if let Some(path) = &options.naive_replay_only {
        println!("{}", naive::replay_only(path)?);
        return Ok(());
    }
    let plan = Plan::for_options(options);
    let temp;
    let root = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| BenchError::io(format!("creating {}", dir.display()), e))?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("torture-bench-")
                .tempdir()
                .map_err(|e| BenchError::io("creating a temporary directory", e))?;
            temp.path().to_path_buf()
        }
    };
    let mut report = Report::new(options.quick);
    for &n_txns in &plan.replay_txns {
        for key_order in KeyOrder::ALL {
            let dir = root.join(format!("replay-{n_txns}-{}", key_order.name()));
            let figures = replay::measure(&dir, n_txns, key_order, plan.repeats)?;
            let memory = memory::measure(&dir, n_txns, plan.repeats)?;
            report.replay.push((figures, memory));
            std::fs::remove_dir_all(&dir)
                .map_err(|e| BenchError::io(format!("removing {}", dir.display()), e))?;
        }
    }
    if !options.replay_only {
        report.commit = Some(commit::measure(&root, &plan)?);
    }
    report.print(options.json);
    Ok(())
}
