//! The engine under test, as the checker drives it: the real engine, or one the caller
//! made wrong on purpose (the self-test's wrong engines, [`crate::wrong_engine`]). The
//! checks never ask which; a wrong engine is a fault applied to the storage recovery runs
//! on or to what recovery produced.

use std::path::Path;
use std::sync::Arc;

use crate::checker::CheckInput;
use crate::faults::storage::Hook;
use crate::oracle::State;
use crate::workload::TxnPlan;

/// What the checker knows when it asks the engine for the recovered state.
#[derive(Debug)]
pub struct RecoveryContext<'a> {
    pub input: &'a CheckInput<'a>,
    /// The model's state after each prefix of the commits, in ledger order.
    pub states: &'a [State],
    /// The first version of each attempted commit, in ledger order.
    pub firsts: &'a [u64],
}

/// The log the engine appends its post-recovery commits to.
#[derive(Debug)]
pub struct AppendContext<'a> {
    pub wal_path: &'a Path,
    /// The log as the crash left it, before recovery.
    pub crashed_wal: &'a [u8],
    /// Where recovery ended the log.
    pub valid_end_bytes: u64,
    /// The highest txn id of the recovered prefix.
    pub max_txn_id: u64,
}

/// The engine under test. Every method's default is the real engine's behaviour.
pub trait EngineUnderTest: Send + Sync + std::fmt::Debug {
    /// Hooks under the first recovery's log, above the checker's sync tracker: a sync a
    /// hook answers itself is one the engine never made.
    fn recovery_storage(&self) -> Vec<Arc<dyn Hook>> {
        Vec::new()
    }

    /// The state the engine recovered, given the real engine's recovery of the files.
    fn recovered(&self, real: State, context: &RecoveryContext<'_>) -> State {
        let _ = context;
        real
    }

    /// Appends `post` after recovery by other means than Strict commits of the reopened
    /// database; `Some` with the expected state afterwards (from `expected`) when it did,
    /// `None` for the real engine's commits.
    fn append_after_recovery(
        &self,
        post: &[TxnPlan],
        context: &AppendContext<'_>,
        expected: &State,
    ) -> Option<std::io::Result<State>> {
        let _ = (post, context, expected);
        None
    }
}

/// The engine as built.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealEngine;

impl EngineUnderTest for RealEngine {}
