//! The self-test's wrong storages: hooks that make the real engine behave as a wrong one
//! would ([`crate::wrong_engine::WrongEngine`]). Each answers some sync itself, returning
//! success at once without reaching the file; hooks below it (the trace) never see that
//! sync, and neither does a sync tracker below it.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

use super::storage::{FileRef, Hook, Next, Op, Reply};

/// Which syncs a [`SkippedSyncs`] answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Every fdatasync of `wal.log` (a Strict commit is acknowledged before any sync made
    /// it durable).
    LogSyncs,
    /// Every directory fsync, of a file's directory or of a directory by path (a file's
    /// creation or rename may be undone by a power loss).
    DirSyncs,
    /// The fdatasync of `wal.log` that directly follows a `set_len` before this process
    /// wrote any record: recovery's sync after it cut a torn tail (docs/faults.md P6),
    /// so the cut is not durable when the first new records are appended.
    SyncAfterRecoveryCut,
    /// Every fdatasync of a torn-tail sidecar (`wal.log.torn-*`): recovery copies a torn
    /// tail out and cuts it from the log, but the copy may never reach the disk.
    SidecarSyncs,
}

/// Answers the syncs its [`Skipped`] names with success, doing nothing.
#[derive(Debug)]
pub struct SkippedSyncs {
    which: Skipped,
    /// `wal.log` files whose last operation was a `set_len` before any record write.
    cut_pending: Mutex<HashSet<u64>>,
    /// `wal.log` files that got a record write (at or past the header).
    wrote_record: Mutex<HashSet<u64>>,
}

/// Whether `path` names a torn-tail sidecar of the log.
fn is_torn_sidecar(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| engine::wal::sidecar::parse_name(engine::WAL_FILE_NAME, n))
        .is_some_and(|(kind, _)| matches!(kind, engine::wal::sidecar::SidecarKind::Torn { .. }))
}

impl SkippedSyncs {
    pub fn new(which: Skipped) -> SkippedSyncs {
        SkippedSyncs {
            which,
            cut_pending: Mutex::new(HashSet::new()),
            wrote_record: Mutex::new(HashSet::new()),
        }
    }

    pub fn hook(which: Skipped) -> Arc<dyn Hook> {
        Arc::new(SkippedSyncs::new(which))
    }

    /// Tracks recovery's cut; true when `op` is the sync right after it.
    fn is_sync_after_cut(&self, file: &FileRef, op: &Op<'_>) -> bool {
        let mut pending = self.cut_pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut wrote = self.wrote_record.lock().unwrap_or_else(|p| p.into_inner());
        match op {
            Op::SetLen { .. } if !wrote.contains(&file.id) => {
                pending.insert(file.id);
                false
            }
            Op::SyncData => pending.remove(&file.id),
            Op::Write { offset_bytes, .. } => {
                pending.remove(&file.id);
                if *offset_bytes >= engine::wal::HEADER_LEN as u64 {
                    wrote.insert(file.id);
                }
                false
            }
            Op::SetLen { .. } | Op::Allocate { .. } => {
                pending.remove(&file.id);
                false
            }
            _ => false,
        }
    }
}

impl Hook for SkippedSyncs {
    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        let skip = match (self.which, file) {
            (Skipped::LogSyncs, Some(f)) => f.is_wal() && matches!(op, Op::SyncData),
            (Skipped::DirSyncs, Some(_)) => matches!(op, Op::SyncFileDir),
            (Skipped::DirSyncs, None) => matches!(op, Op::SyncDir { .. }),
            (Skipped::SyncAfterRecoveryCut, Some(f)) => {
                f.is_wal() && self.is_sync_after_cut(f, &op)
            }
            (Skipped::SidecarSyncs, Some(f)) => {
                matches!(op, Op::SyncData) && is_torn_sidecar(&f.path)
            }
            (_, None) => false,
        };
        if skip {
            return Ok(Reply::Done);
        }
        next(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::storage::FaultOpener;
    use crate::faults::sync_report::{SyncReport, SyncTracker};
    use engine::wal::StorageOpener;

    /// Opens `wal.log` under `which` with a sync tracker below it; returns the storage
    /// and the syncs that reached the tracker.
    fn open(
        dir: &std::path::Path,
        which: Skipped,
    ) -> (
        Arc<dyn engine::wal::WalStorage>,
        Arc<Mutex<Vec<SyncReport>>>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let opener = FaultOpener::new(vec![
            SkippedSyncs::hook(which),
            SyncTracker::hook(Arc::new(move |r| s2.lock().unwrap().push(r))),
        ]);
        (opener.open(&dir.join("wal.log")).unwrap().storage, seen)
    }

    #[test]
    fn only_the_sync_right_after_a_cut_before_any_record_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (s, seen) = open(dir.path(), Skipped::SyncAfterRecoveryCut);
        // A new log: cut to 0, header written, synced: that sync is kept.
        s.set_len(0).unwrap();
        s.write_at(0, &[1u8; 32]).unwrap();
        s.sync_data().unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
        // Recovery's cut of a torn tail, then its sync: skipped.
        s.set_len(32).unwrap();
        s.sync_data().unwrap();
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "the sync after the cut never ran"
        );
        s.sync_data().unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2, "the next one runs");
        // After a record was appended, a cut (close trimming zeros) is synced for real.
        s.write_at(32, &[3u8; 10]).unwrap();
        s.set_len(42).unwrap();
        s.sync_data().unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[test]
    fn log_syncs_and_dir_syncs_are_skipped_where_named() {
        let dir = tempfile::tempdir().unwrap();
        let (s, seen) = open(dir.path(), Skipped::LogSyncs);
        s.write_at(0, b"x").unwrap();
        s.sync_data().unwrap();
        assert!(seen.lock().unwrap().is_empty());
        let (s, seen) = open(dir.path(), Skipped::DirSyncs);
        s.sync_dir().unwrap();
        s.sync_data().unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    /// Passes every call on, noting the files whose fdatasync reached it.
    #[derive(Debug, Default)]
    struct SyncedFiles(Mutex<Vec<String>>);

    impl Hook for SyncedFiles {
        fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
            if let (Some(f), Op::SyncData) = (file, &op) {
                let name = f.path.file_name().unwrap().to_string_lossy().into_owned();
                self.0.lock().unwrap().push(name);
            }
            next(op)
        }
    }

    #[test]
    fn only_torn_sidecar_syncs_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let synced = Arc::new(SyncedFiles::default());
        let opener = FaultOpener::new(vec![
            SkippedSyncs::hook(Skipped::SidecarSyncs),
            synced.clone(),
        ]);
        for name in [
            "wal.log.torn-1-64",
            "wal.log.dropped-64",
            "wal.log",
            "IDENTITY.tmp",
        ] {
            let storage = opener.open(&dir.path().join(name)).unwrap().storage;
            storage.write_at(0, b"x").unwrap();
            storage.sync_data().unwrap();
        }
        assert_eq!(
            *synced.0.lock().unwrap(),
            ["wal.log.dropped-64", "wal.log", "IDENTITY.tmp"],
            "only the torn-tail sidecar's fdatasync is skipped"
        );
    }
}
