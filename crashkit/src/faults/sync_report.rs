//! The sync tracker: an observer under the seam, not a fault. It reports, after each
//! fdatasync of `wal.log`, the length it covered, and each failed fdatasync: the writer
//! sends these to the parent (the ledger's ground truth of what was durable), and the
//! checker uses them to prove recovery made what it accepted durable (docs/faults.md P4).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use super::storage::{FileRef, Hook, Next, Op, Reply};

/// What a [`SyncTracker`] reports about one fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncReport {
    /// The sync completed and covered the first `covered_bytes` of the file.
    Completed { covered_bytes: u64 },
    /// The sync failed (reported before the error reaches the engine).
    Failed,
}

/// A callback receiving [`SyncReport`]s (called on the syncing thread).
pub type SyncReporter = Arc<dyn Fn(SyncReport) + Send + Sync>;

/// Reports, after each successful fdatasync of `wal.log`, the length it covered: the
/// largest end of any write completed before the sync started, or the length a completed
/// `set_len` left (the file's length when opened, before either). Preallocated zeros are
/// not counted as written: they hold no records, and counting them would claim that a
/// later sync covered records written over them after it started.
pub struct SyncTracker {
    written_end_bytes: Mutex<HashMap<u64, u64>>,
    report: SyncReporter,
}

impl std::fmt::Debug for SyncTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncTracker")
            .field("written_end_bytes", &self.written_end_bytes)
            .finish_non_exhaustive()
    }
}

impl SyncTracker {
    pub fn new(report: SyncReporter) -> SyncTracker {
        SyncTracker {
            written_end_bytes: Mutex::new(HashMap::new()),
            report,
        }
    }

    pub fn hook(report: SyncReporter) -> Arc<dyn Hook> {
        Arc::new(SyncTracker::new(report))
    }

    fn update(&self, file: &FileRef, f: impl FnOnce(&mut u64)) {
        let mut ends = self
            .written_end_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(end) = ends.get_mut(&file.id) {
            f(end);
        }
    }
}

impl Hook for SyncTracker {
    fn opened(&self, file: &FileRef) -> io::Result<()> {
        if file.is_wal() {
            let len = file.raw.len_bytes()?;
            self.written_end_bytes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(file.id, len);
        }
        Ok(())
    }

    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        let Some(file) = file.filter(|f| f.is_wal()) else {
            return next(op);
        };
        match op {
            Op::Write { offset_bytes, data } => {
                let end = offset_bytes + data.len() as u64;
                let reply = next(Op::Write { offset_bytes, data })?;
                self.update(file, |e| *e = (*e).max(end));
                Ok(reply)
            }
            Op::SetLen { len_bytes } => {
                let reply = next(op)?;
                self.update(file, |e| *e = len_bytes);
                Ok(reply)
            }
            Op::SyncData => {
                let mut covered = 0;
                self.update(file, |e| covered = *e);
                match next(op) {
                    Ok(reply) => {
                        (self.report)(SyncReport::Completed {
                            covered_bytes: covered,
                        });
                        Ok(reply)
                    }
                    Err(e) => {
                        (self.report)(SyncReport::Failed);
                        Err(e)
                    }
                }
            }
            other => next(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::io_error::{FailOp, FailingIo};
    use crate::faults::storage::FaultOpener;
    use engine::wal::StorageOpener;

    #[test]
    fn sync_tracker_reports_the_length_written_before_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let opener = FaultOpener::new(vec![
            SyncTracker::hook(Arc::new(move |r| s2.lock().unwrap().push(r))),
            FailingIo::hook(FailOp::Sync, 3),
        ]);
        let s = opener.open(&dir.path().join("wal.log")).unwrap().storage;
        s.write_at(32, &[0u8; 8]).unwrap();
        s.sync_data().unwrap();
        s.write_at(40, &[0u8; 8]).unwrap();
        assert!(s
            .allocate(48, 4096, engine::wal::SyncCadence::PerAppend)
            .unwrap());
        s.set_len(44).unwrap();
        s.sync_data().unwrap();
        assert!(s.sync_data().is_err(), "the third sync fails");
        let completed = |covered_bytes| SyncReport::Completed { covered_bytes };
        assert_eq!(
            *seen.lock().unwrap(),
            vec![completed(40), completed(44), SyncReport::Failed]
        );
    }
}
