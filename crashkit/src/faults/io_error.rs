//! `--kill io-error`: the n-th record write or fdatasync of `wal.log` fails; nothing is
//! killed. The engine must stay poisoned (docs/faults.md E1-E3).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::storage::{FileRef, Hook, Next, Op, Reply};
use crate::workload::Workload;

/// The `--kill` value.
pub const NAME: &str = "io-error";

/// Which operation [`FailingIo`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOp {
    /// The n-th record write; the first half of its bytes reach the file.
    Write,
    /// The n-th fdatasync after this process's first record write (recovery's own
    /// syncs on open are not counted: the fault is in the workload, not in open).
    Sync,
}

/// Draws the failing operation (write or fdatasync, even odds) and n, at most the
/// workload's number of commits, so the failure is usually reached.
pub fn draw_failure(workload: &Workload, rng: &mut ChaCha8Rng) -> (FailOp, u64) {
    let commits = workload.txns.iter().filter(|t| !t.abort).count().max(1) as u64;
    let op = if rng.gen_bool(0.5) {
        FailOp::Write
    } else {
        FailOp::Sync
    };
    (op, rng.gen_range(1..=commits))
}

/// Fails the `nth` (1-based) record write or fdatasync of `wal.log`; every later call
/// succeeds again, as a flaky disk would (the engine must stay poisoned anyway:
/// docs/faults.md E1). Writes of the file header are not records and count nothing.
#[derive(Debug)]
pub struct FailingIo {
    op: FailOp,
    nth: u64,
    count: AtomicU64,
    wrote_record: AtomicBool,
}

impl FailingIo {
    pub fn new(op: FailOp, nth: u64) -> FailingIo {
        FailingIo {
            op,
            nth,
            count: AtomicU64::new(0),
            wrote_record: AtomicBool::new(false),
        }
    }

    pub fn hook(op: FailOp, nth: u64) -> Arc<dyn Hook> {
        Arc::new(FailingIo::new(op, nth))
    }

    fn is_nth(&self) -> bool {
        self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.nth
    }
}

impl Hook for FailingIo {
    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        if !file.is_some_and(FileRef::is_wal) {
            return next(op);
        }
        let header = engine::wal::HEADER_LEN as u64;
        match op {
            Op::Write { offset_bytes, data } if offset_bytes >= header => {
                self.wrote_record.store(true, Ordering::Release);
                if self.op == FailOp::Write && self.is_nth() {
                    next(Op::Write {
                        offset_bytes,
                        data: &data[..data.len() / 2],
                    })?;
                    return Err(io::Error::other(format!(
                        "crashkit: injected write failure at offset {offset_bytes}"
                    )));
                }
                next(Op::Write { offset_bytes, data })
            }
            Op::SyncData
                if self.op == FailOp::Sync
                    && self.wrote_record.load(Ordering::Acquire)
                    && self.is_nth() =>
            {
                Err(io::Error::other("crashkit: injected fdatasync failure"))
            }
            other => next(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::storage::FaultOpener;
    use engine::wal::StorageOpener;

    #[test]
    fn failing_io_fails_only_the_nth_record_write_and_leaves_half_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let opener = FaultOpener::new(vec![FailingIo::hook(FailOp::Write, 2)]);
        let s = opener.open(&dir.path().join("wal.log")).unwrap().storage;
        s.write_at(0, &[0u8; 32]).unwrap(); // header: not counted
        s.write_at(32, &[1u8; 10]).unwrap();
        assert!(s.write_at(42, &[2u8; 10]).is_err());
        assert_eq!(s.len_bytes().unwrap(), 47);
        s.write_at(47, &[3u8; 1]).unwrap();
    }

    #[test]
    fn failing_syncs_count_only_after_a_record_and_only_on_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let opener = FaultOpener::new(vec![FailingIo::hook(FailOp::Sync, 1)]);
        let other = opener.open(&dir.path().join("IDENTITY")).unwrap().storage;
        let s = opener.open(&dir.path().join("wal.log")).unwrap().storage;
        s.sync_data().unwrap(); // before any record: recovery's own
        other.write_at(40, b"x").unwrap();
        other.sync_data().unwrap();
        s.write_at(40, b"record").unwrap();
        assert!(s.sync_data().is_err());
        s.sync_data().unwrap();
    }
}
