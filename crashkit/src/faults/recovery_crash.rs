//! `--recovery-crash`: a first recovery of the crashed database is killed part-way, at its
//! n-th storage call on `wal.log`; the next recovery must equal an uninterrupted recovery
//! of a copy (docs/recovery-contract.md R7, docs/faults.md T4, T5).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::storage::{FileRef, Hook, Next, Op, Reply};
use super::{stop_now, Stop};
use crate::case::{Case, Purpose};

/// The flag of `torture run` and `torture repro`.
pub const FLAG: &str = "recovery-crash";

/// Draws the storage call the first recovery dies at. A recovery makes a handful of
/// storage calls (length, header, record reads, truncate, fdatasync); draws past the last
/// call let recovery finish and the process exit before any new write (docs/faults.md T4).
/// With a power loss too, the draw counts changing calls only ([`Counted::Changes`]).
pub fn draw_kill_call(case: &Case) -> u64 {
    let n = case.rng(Purpose::RecoveryCrash).gen_range(1..=12);
    match Counted::with_power_loss(case.power_loss) {
        Counted::Changes => (n - 1) % CHANGES_MAX + 1,
        Counted::WalCalls => n,
    }
}

/// Which calls a [`KillAfterCalls`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Every call on `wal.log`, reads included.
    WalCalls,
    /// Calls that change some file or directory (writes, size changes, allocations,
    /// syncs, renames, removals), on any file: with a power loss after the
    /// kill, every draw lands among the operations a crash state can undo, for example
    /// between cutting a torn tail and the fdatasync that makes the cut durable.
    Changes,
}

impl Counted {
    /// What the first recovery's kill counts: changing calls when a power loss follows
    /// (its crash states come from recovery's own trace), else every call on `wal.log`.
    pub fn with_power_loss(power_loss: bool) -> Counted {
        if power_loss {
            Counted::Changes
        } else {
            Counted::WalCalls
        }
    }

    fn counts(self, file: Option<&FileRef>, op: &Op<'_>) -> bool {
        match self {
            Counted::WalCalls => file.is_some_and(FileRef::is_wal),
            Counted::Changes => match op {
                Op::Write { .. }
                | Op::SetLen { .. }
                | Op::Allocate { .. }
                | Op::SyncData
                | Op::SyncFileDir
                | Op::SyncDir { .. }
                | Op::Rename { .. }
                | Op::RemoveFile { .. } => true,
                // Recovery of an existing database asks for its directories again
                // (create_dir_all): no change, and counting them would spend the draws.
                Op::CreateDir { .. }
                | Op::Len
                | Op::Read { .. }
                | Op::Open { .. }
                | Op::FileLen { .. }
                | Op::OpenLockFile { .. }
                | Op::ListDir { .. }
                | Op::ReadFile { .. } => false,
            },
        }
    }
}

/// Changing calls a recovery makes at most when it cuts a torn tail (sidecar created,
/// written, fdatasynced, its directory fsynced, the log cut and fdatasynced, and a few
/// to spare): [`Counted::Changes`] kills are drawn in `1..=CHANGES_MAX`.
pub const CHANGES_MAX: u64 = 8;

/// Stops the process at its `nth` counted call.
#[derive(Debug)]
pub struct KillAfterCalls {
    nth: u64,
    counted: Counted,
    count: AtomicU64,
    stop: Stop,
}

impl KillAfterCalls {
    pub fn new(nth: u64, counted: Counted, stop: Stop) -> KillAfterCalls {
        KillAfterCalls {
            nth,
            counted,
            count: AtomicU64::new(0),
            stop,
        }
    }

    pub fn hook(nth: u64, counted: Counted) -> Arc<dyn Hook> {
        Arc::new(KillAfterCalls::new(nth, counted, Stop::SigKill))
    }
}

impl Hook for KillAfterCalls {
    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        if self.counted.counts(file, &op)
            && self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.nth
        {
            return Err(stop_now(
                self.stop,
                &format!("storage call {} ({})", self.nth, op.name()),
            ));
        }
        next(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::storage::FaultOpener;
    use engine::wal::StorageOpener;

    #[test]
    fn kill_after_calls_stops_at_the_nth_call_on_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let opener = FaultOpener::new(vec![Arc::new(KillAfterCalls::new(
            3,
            Counted::WalCalls,
            Stop::Fail,
        ))]);
        let other = opener.open(&dir.path().join("IDENTITY")).unwrap().storage;
        let s = opener.open(&dir.path().join("wal.log")).unwrap().storage;
        s.len_bytes().unwrap();
        other.sync_data().unwrap();
        s.write_at(0, b"ab").unwrap();
        let err = s.sync_data().unwrap_err();
        assert!(err.to_string().contains("sync_data"), "{err}");
        s.sync_data().unwrap();
    }
}
