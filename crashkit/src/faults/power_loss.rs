//! `--power-loss`: the writer records its I/O in a trace that survives SIGKILL (its hook
//! under the seam); after the kill the parent builds legal crash states from it, each
//! recovered and checked on its own copy (docs/faults.md P1, P2, P5, P6). The damage
//! itself is drawn by [`crate::power_loss`]; this module is the fault's entry point.

use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::storage::Hook;
use crate::case::Case;
use crate::crash_state::DiskModel;
use crate::power_loss::CrashState;
use crate::trace::{trace_path, TraceHook, TraceLog};

/// The flag of `torture run` and `torture repro`.
pub const FLAG: &str = "power-loss";

/// A power loss after the kill: the writer traces its I/O, and the parent checks this
/// many legal crash states built from the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PowerLossPlan {
    pub crash_states: usize,
}

/// The plan when `case` asks for a power loss: the process-wide number of crash states
/// per crash ([`crate::power_loss::crash_states_per_crash`]).
pub fn draw_plan(case: &Case) -> Option<PowerLossPlan> {
    case.power_loss.then(|| PowerLossPlan {
        crash_states: crate::power_loss::crash_states_per_crash(),
    })
}

/// The writer's hook: traces every operation on every file of the database in `db_dir`
/// to [`trace_path`] (created empty now, before the engine makes any call). It must be
/// the innermost hook, so that it records exactly what reaches the files.
pub fn writer_hook(db_dir: &Path) -> io::Result<Arc<dyn Hook>> {
    Ok(Arc::new(TraceHook::new(writer_trace_log(db_dir)?)))
}

/// The writer's trace file ([`trace_path`] of `db_dir`), created empty, for
/// [`writer_hook`]'s hook and for the events the writer mirrors into it.
pub fn writer_trace_log(db_dir: &Path) -> io::Result<Arc<TraceLog>> {
    Ok(Arc::new(TraceLog::create(&trace_path(db_dir))?))
}

/// The recoverer's hook when a power loss and a recovery crash meet: the recovering
/// process traces its own I/O to [`crate::trace::recovery_trace_path`], so that the
/// parent builds the next crash states from what recovery itself left unsynced (a cut
/// tail not yet synced, a sidecar whose directory entry no fsync covered).
pub fn recoverer_hook(db_dir: &Path) -> io::Result<Arc<dyn Hook>> {
    let log = TraceLog::create(&crate::trace::recovery_trace_path(db_dir))?;
    Ok(Arc::new(TraceHook::new(Arc::new(log))))
}

/// The case whose seed draws the crash states of an interrupted recovery: its own
/// streams, so that they neither repeat the writer's states nor change when those do.
pub fn recovery_states_case(case: &Case) -> Case {
    let mut sub = *case;
    sub.seed = crate::case::cycle_seed(case.seed, 2_000_000);
    sub
}

/// The damage: `n` legal crash states of the log `model` describes, each a pure
/// function of the case seed, the trace and its index.
pub fn crash_states(model: &DiskModel, case: &Case, n: usize) -> Vec<CrashState> {
    crate::power_loss::draw_states(model, case, n)
}
