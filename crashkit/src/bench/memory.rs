//! Recovery in a fresh process: peak RSS while recovering against the RSS of the
//! recovered store, and how long open took there (what a restart after a crash costs:
//! nothing the benchmark allocated before helps, every page of the store is new).
//!
//! Measured in a fresh child process (`<current exe> bench --recover-only <dir>`, fork+exec
//! through `std::process::Command`), so that nothing the benchmark allocated before counts.
//! The child reads VmRSS before opening (the baseline), VmHWM after opening (the peak), and
//! VmRSS after returning freed heap to the OS with `malloc_trim` (the store). If the current
//! executable does not understand the flag (a library caller other than `torture`), the
//! same figures are taken in-process after resetting VmHWM through `/proc/self/clear_refs`,
//! and the report says so.

use std::path::Path;
use std::time::{Duration, Instant};

use engine::{Database, DurabilityMode};

use super::BenchError;

/// Memory figures of one recovery, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryMemory {
    pub txns_applied: u64,
    /// VmRSS before opening.
    pub baseline_bytes: u64,
    /// VmHWM after opening: the peak during recovery.
    pub peak_bytes: u64,
    /// VmRSS with the database open, after freed heap went back to the OS.
    pub store_bytes: u64,
    /// "child" (fresh process) or "in-process" (VmHWM reset in the benchmark's process).
    pub method: String,
    /// How long `Database::open` took (the median of the fresh processes measured).
    pub open: Duration,
}

impl RecoveryMemory {
    /// Peak RSS added by recovery.
    pub fn peak_delta_bytes(&self) -> u64 {
        self.peak_bytes.saturating_sub(self.baseline_bytes)
    }

    /// RSS added by the recovered store.
    pub fn store_delta_bytes(&self) -> u64 {
        self.store_bytes.saturating_sub(self.baseline_bytes)
    }

    /// Peak of recovery over the store it produced (target: at most 1.3).
    pub fn peak_to_store_ratio(&self) -> f64 {
        self.peak_delta_bytes() as f64 / self.store_delta_bytes().max(1) as f64
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "type": "recovery_memory",
            "txns_applied": self.txns_applied,
            "baseline_bytes": self.baseline_bytes,
            "peak_bytes": self.peak_bytes,
            "store_bytes": self.store_bytes,
            "method": self.method,
            "open_s": self.open.as_secs_f64(),
        })
        .to_string()
    }

    fn from_json(v: &serde_json::Value) -> Option<RecoveryMemory> {
        Some(RecoveryMemory {
            txns_applied: v.get("txns_applied")?.as_u64()?,
            baseline_bytes: v.get("baseline_bytes")?.as_u64()?,
            peak_bytes: v.get("peak_bytes")?.as_u64()?,
            store_bytes: v.get("store_bytes")?.as_u64()?,
            method: "child".to_string(),
            open: Duration::from_secs_f64(v.get("open_s")?.as_f64()?),
        })
    }
}

/// Reads a `kB` field of /proc/self/status, in bytes.
pub(crate) fn proc_status_bytes(field: &str) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| BenchError::io("reading /proc/self/status", e))?;
    let parse_err = || BenchError::Io {
        context: format!("parsing {field} in /proc/self/status"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected format"),
    };
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(parse_err)?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| parse_err())?;
    Ok(kib * 1024)
}

fn return_freed_heap() {
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Recovers `dir` in this process and returns the memory figures (the `--recover-only`
/// mode). VmHWM is reset first so that the peak is recovery's own.
pub fn recover_only(dir: &Path) -> Result<RecoveryMemory, BenchError> {
    // Opening would create a database; this mode only ever measures an existing one.
    let wal_path = dir.join(engine::WAL_FILE_NAME);
    if !wal_path.is_file() {
        return Err(BenchError::io(
            format!("--recover-only {}", dir.display()),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", wal_path.display()),
            ),
        ));
    }
    return_freed_heap();
    std::fs::write("/proc/self/clear_refs", "5")
        .map_err(|e| BenchError::io("resetting VmHWM through /proc/self/clear_refs", e))?;
    let baseline_bytes = proc_status_bytes("VmRSS:")?;
    let started = Instant::now();
    let db = Database::open_with_mode(dir, DurabilityMode::Async)
        .map_err(|e| BenchError::engine(format!("recovering {}", dir.display()), e))?;
    let open = started.elapsed();
    let peak_bytes = proc_status_bytes("VmHWM:")?;
    return_freed_heap();
    let store_bytes = proc_status_bytes("VmRSS:")?;
    let txns_applied = db.recovery_stats().txns_applied;
    drop(db);
    Ok(RecoveryMemory {
        txns_applied,
        baseline_bytes,
        peak_bytes,
        store_bytes,
        method: "in-process".to_string(),
        open,
    })
}

fn recover_in_child(dir: &Path) -> Result<RecoveryMemory, BenchError> {
    super::child_line(
        "--recover-only",
        dir,
        "recovery",
        "recovery_memory",
        RecoveryMemory::from_json,
    )
}

/// Recovers the crashed WAL at `dir` in `repeats` fresh processes (in-process if a child
/// cannot run): the memory figures of the first, the median open time of all.
pub(crate) fn measure(
    dir: &Path,
    n_txns: u64,
    repeats: usize,
) -> Result<RecoveryMemory, BenchError> {
    let mut runs = super::in_fresh_processes(
        repeats,
        "recovery",
        || recover_in_child(dir),
        || recover_only(dir),
    )?;
    let open = super::replay::median(runs.iter().map(|run| run.open).collect());
    let mut figures = runs.swap_remove(0);
    figures.open = open;
    if figures.txns_applied != n_txns {
        return Err(BenchError::Verify {
            reason: format!(
                "recovery for the memory figure applied {} of {n_txns} txns",
                figures.txns_applied
            ),
        });
    }
    Ok(figures)
}
