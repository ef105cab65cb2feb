//! Faults as first-class types: one module per fault kind a case can name, each owning
//! its plan drawn from the case seed, its hook under the engine's seam (where it has one),
//! its damage after the crash (where it has one) and its command-line spelling.
//!
//! - kills (`--kill <name>`): [`offset`], [`watch`], [`time`], [`io_error`];
//! - damages after the kill (`--<flag>`): [`power_loss`], [`recovery_crash`], [`corrupt`].
//!
//! Every hook runs in the one fault-injecting storage, [`storage::FaultOpener`]; the
//! observers that are not faults live next to it ([`sync_report`], and the trace's hook
//! in [`crate::trace`]), and so do the self-test's wrong storages ([`wrong_storage`]).

pub mod corrupt;
pub mod io_error;
pub mod offset;
pub mod power_loss;
pub mod recovery_crash;
pub mod storage;
pub mod sync_report;
pub mod time;
pub mod watch;
pub mod wrong_storage;

use std::io;

use crate::case::{Case, KillKind};

/// What a hook does when its trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL the current process: the crash under test.
    SigKill,
    /// Return an I/O error instead (for in-process tests of the hook itself).
    Fail,
}

/// Stops as `stop` says; the error is returned only for [`Stop::Fail`].
pub(crate) fn stop_now(stop: Stop, what: &str) -> io::Error {
    if stop == Stop::SigKill {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL cannot be caught; reaching this line means the kernel refused it.
        std::process::abort();
    }
    io::Error::other(format!("crashkit: stopped at {what}"))
}

/// Every kill kind's name, in [`KillKind::ALL`] order.
pub const KILL_NAMES: [&str; 4] = [offset::NAME, watch::NAME, time::NAME, io_error::NAME];

/// The command-line value of `--kill` that names `kill` (also its JSON spelling).
pub fn kill_name(kill: KillKind) -> &'static str {
    match kill {
        KillKind::Offset => offset::NAME,
        KillKind::Watch => watch::NAME,
        KillKind::Time => time::NAME,
        KillKind::IoError => io_error::NAME,
    }
}

/// The optional damages a case adds after its kill, each a flag of `torture run` and
/// `torture repro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    PowerLoss,
    RecoveryCrash,
    Corrupt,
}

impl Damage {
    pub const ALL: [Damage; 3] = [Damage::PowerLoss, Damage::RecoveryCrash, Damage::Corrupt];

    /// The flag's name, without the leading dashes.
    pub fn flag(self) -> &'static str {
        match self {
            Damage::PowerLoss => power_loss::FLAG,
            Damage::RecoveryCrash => recovery_crash::FLAG,
            Damage::Corrupt => corrupt::FLAG,
        }
    }

    /// Whether `case` asks for it.
    pub fn is_on(self, case: &Case) -> bool {
        match self {
            Damage::PowerLoss => case.power_loss,
            Damage::RecoveryCrash => case.recovery_crash,
            Damage::Corrupt => case.corrupt,
        }
    }

    /// The `repro` flags that turn on the damages `case` asks for (each with a leading
    /// space), in [`Damage::ALL`] order.
    pub fn repro_flags(case: &Case) -> String {
        let mut flags: String = Damage::ALL
            .iter()
            .filter(|d| d.is_on(case))
            .map(|d| format!(" --{}", d.flag()))
            .collect();
        // State i is drawn only when at least i + 1 states are: a run with more states than
        // the default must say so, or its finding's state is never rebuilt.
        let states = crate::power_loss::crash_states_per_crash();
        if case.power_loss && states != crate::power_loss::DEFAULT_STATES_PER_CRASH {
            flags.push_str(&format!(" --crash-states {states}"));
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::ModeName;

    #[test]
    fn every_kill_and_damage_has_its_own_spelling_and_repro_flags_follow_the_case() {
        let names: std::collections::BTreeSet<_> = KillKind::ALL
            .iter()
            .map(|k| kill_name(*k))
            .chain(Damage::ALL.iter().map(|d| d.flag()))
            .collect();
        assert_eq!(names.len(), KillKind::ALL.len() + Damage::ALL.len());
        let mut case = Case::new(1, ModeName::Strict, KillKind::Offset);
        assert_eq!(Damage::repro_flags(&case), "");
        case.power_loss = true;
        case.corrupt = true;
        assert_eq!(Damage::repro_flags(&case), " --power-loss --corrupt");
    }
}
