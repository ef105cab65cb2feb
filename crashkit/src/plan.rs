//! The fault plan of a case: the concrete kill point, delay, failing call, power-loss
//! damage and recovery kill, each drawn from the case seed by its fault's module
//! ([`crate::faults`]), and the hooks the writer child runs under.

use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::case::{Case, KillKind, Purpose};
use crate::faults::io_error::{FailOp, FailingIo};
use crate::faults::offset::KillAtOffset;
use crate::faults::storage::Hook;
use crate::faults::sync_report::{SyncReporter, SyncTracker};
use crate::faults::{io_error, offset, power_loss, recovery_crash, time, watch};
use crate::workload::Workload;
use crate::wrong_engine::WrongEngine;

pub use crate::faults::power_loss::PowerLossPlan;
pub use crate::faults::time::{TIME_KILL_DELAY_US_MAX, TIME_KILL_DELAY_US_MIN};

/// The writer child's hooks, outermost first, and its I/O trace when it keeps one.
#[derive(Debug)]
pub struct WriterHooks {
    pub hooks: Vec<Arc<dyn Hook>>,
    pub trace: Option<Arc<crate::trace::TraceLog>>,
}

/// Concrete fault parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultPlan {
    /// Offset and watch kills: the WAL length at which the child dies.
    pub kill_offset_bytes: Option<u64>,
    /// Time kills: microseconds after spawning the child.
    pub delay_us: Option<u64>,
    /// io-error faults: which call fails.
    #[serde(skip)]
    pub fail: Option<(FailOp, u64)>,
    pub power_loss: Option<PowerLossPlan>,
    /// Recovery crash: the first recovery dies at this storage call (on `wal.log`; with a
    /// power loss too, at this changing call on any file, and its trace gives more crash
    /// states: `faults::recovery_crash::Counted`).
    pub recovery_kill_call: Option<u64>,
    /// Self-test only: a wrong engine acting in the writer (its storage or options) or in
    /// the recovering child (its storage), handed to the child on its command line, never
    /// derived from the case.
    #[serde(skip)]
    pub wrong: Option<WrongEngine>,
}

impl FaultPlan {
    /// The plan of `case`: a pure function of the case (the kill kind's draw uses the
    /// `KillPoint` stream; `case.kill_offset_bytes` overrides the drawn K).
    pub fn derive(case: &Case, workload: &Workload) -> FaultPlan {
        let mut rng = case.rng(Purpose::KillPoint);
        let mut plan = FaultPlan {
            kill_offset_bytes: None,
            delay_us: None,
            fail: None,
            power_loss: power_loss::draw_plan(case),
            recovery_kill_call: case
                .recovery_crash
                .then(|| recovery_crash::draw_kill_call(case)),
            wrong: None,
        };
        match case.kill {
            KillKind::Offset => {
                let k = offset::draw_kill_offset(workload, &mut rng);
                plan.kill_offset_bytes = Some(case.kill_offset_bytes.unwrap_or(k));
            }
            KillKind::Watch => {
                let k = watch::draw_watch_len(workload, &mut rng);
                plan.kill_offset_bytes = Some(case.kill_offset_bytes.unwrap_or(k));
            }
            KillKind::Time => plan.delay_us = Some(time::draw_delay_us(&mut rng)),
            KillKind::IoError => plan.fail = Some(io_error::draw_failure(workload, &mut rng)),
        }
        plan
    }

    /// The hooks the writer child runs under, outermost first: the sync tracker (the
    /// ledger's syncs, as the engine saw them), the kill at offset K, the failing I/O, a
    /// wrong engine's storage, and innermost the power-loss trace (what reached the files).
    /// Also returns the trace, when there is one: the writer mirrors its events into it
    /// (`crate::sweep` orders acknowledgements among the operations).
    pub fn writer_hooks(
        &self,
        case: &Case,
        db_dir: &Path,
        report_synced: SyncReporter,
    ) -> io::Result<WriterHooks> {
        let mut hooks = vec![SyncTracker::hook(report_synced)];
        if let (KillKind::Offset, Some(k)) = (case.kill, self.kill_offset_bytes) {
            hooks.push(KillAtOffset::hook(k));
        }
        if let Some((op, nth)) = self.fail {
            hooks.push(FailingIo::hook(op, nth));
        }
        if let Some(hook) = self.wrong.and_then(WrongEngine::writer_storage) {
            hooks.push(hook);
        }
        let mut trace = None;
        if self.power_loss.is_some() {
            let log = power_loss::writer_trace_log(db_dir)?;
            hooks.push(Arc::new(crate::trace::TraceHook::new(log.clone())));
            trace = Some(log);
        }
        Ok(WriterHooks { hooks, trace })
    }

    /// The hooks of the recoverer child: the recovery crash's kill, if planned, and (with a
    /// power loss too) the trace of recovery's own I/O, innermost.
    pub fn recoverer_hooks(&self, db_dir: &Path) -> io::Result<Vec<Arc<dyn Hook>>> {
        // The draw's rule (a power loss is planned exactly when the case asks for one).
        let counted = recovery_crash::Counted::with_power_loss(self.power_loss.is_some());
        let mut hooks: Vec<Arc<dyn Hook>> = self
            .recovery_kill_call
            .map(|n| recovery_crash::KillAfterCalls::hook(n, counted))
            .into_iter()
            .collect();
        if let Some(hook) = self.wrong.and_then(WrongEngine::recoverer_storage) {
            hooks.insert(0, hook);
        }
        if self.power_loss.is_some() && self.recovery_kill_call.is_some() {
            hooks.push(power_loss::recoverer_hook(db_dir)?);
        }
        Ok(hooks)
    }

    /// The format version the writer creates a new database with.
    pub fn writer_format_version(&self) -> u32 {
        self.wrong
            .and_then(WrongEngine::writer_format_version)
            .unwrap_or(engine::wal::FORMAT_VERSION)
    }
}
