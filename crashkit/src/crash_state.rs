//! The disk's view of one file after a crash, from the writer's trace
//! ([`crate::trace`]) and the file as the kill left it: which bytes a completed fdatasync
//! made durable, what every other byte held before the operations no sync covered, and
//! which size the file had durably. [`crate::power_loss`] draws legal crash states from it
//! (docs/recovery-contract.md, "Legal crash states"; docs/faults.md P1, P2, P5, P6).
//!
//! The model is the disk's, not the engine's: a sync counts only when its completion is
//! in the trace, and it covers exactly the operations whose completion precedes its start.

use crate::trace::{DataOp, FileOp, Trace};

/// A 512-byte sector: the smallest unit a disk writes (not assumed atomic either).
pub const SECTOR_BYTES: u64 = 512;
/// A page: the unit the page cache writes back, in any order.
pub const PAGE_BYTES: u64 = 4096;

/// One file as a power loss may leave it.
#[derive(Debug, Clone)]
pub struct DiskModel {
    /// The file as the kill left it: every write reached the page cache (what a process
    /// kill alone leaves, and the "new" content of every byte).
    pub crashed: Vec<u8>,
    /// Per byte up to [`DiskModel::extent_bytes`]: the content before the first operation
    /// no completed sync covered (the "old" content; zeros where the file had no byte).
    durable: Vec<u8>,
    /// Per byte: whether a power loss may change it (some uncovered operation touched it
    /// and no covered operation touched it afterwards).
    unsynced: Vec<bool>,
    /// The file's size as the last completed sync left it.
    pub durable_len_bytes: u64,
    /// Data operations (writes, size changes, allocations) no completed sync covered.
    pub uncovered_ops: usize,
    /// Data operations a completed sync covered.
    pub covered_ops: usize,
}

fn size_after(op: &FileOp, size: u64) -> u64 {
    match op.op {
        DataOp::Write {
            offset_bytes,
            len_bytes,
        }
        | DataOp::Allocate {
            offset_bytes,
            len_bytes,
        } => size.max(offset_bytes + len_bytes),
        DataOp::SetLen { len_bytes } => len_bytes,
        DataOp::Sync | DataOp::SyncDir => size,
    }
}

impl DiskModel {
    /// The model of the file named `file_name` (every file of that name the writer
    /// opened), crashed as `crashed`. Without a trace of it, nothing is unsynced.
    pub fn build(trace: &Trace, file_name: &str, crashed: Vec<u8>) -> DiskModel {
        let fids = trace.fids_named(file_name);
        let len_at_open = trace
            .files
            .iter()
            .find(|f| fids.contains(&f.fid))
            .map(|f| f.len_at_open_bytes);
        let Some(len_at_open) = len_at_open else {
            return DiskModel {
                durable: crashed.clone(),
                unsynced: vec![false; crashed.len()],
                durable_len_bytes: crashed.len() as u64,
                crashed,
                uncovered_ops: 0,
                covered_ops: 0,
            };
        };
        let ops: Vec<&FileOp> = trace
            .ops
            .iter()
            .filter(|o| fids.contains(&o.fid) && !o.skipped)
            .collect();
        // The latest start of a completed sync: it covers every operation that had
        // completed before it started (earlier completed syncs cover subsets of that).
        let sync_start = ops
            .iter()
            .filter(|o| o.op == DataOp::Sync && o.done_line.is_some())
            .map(|o| o.begin_line)
            .max();
        let covered = |o: &FileOp| match (o.done_line, sync_start) {
            (Some(done), Some(start)) => done < start,
            _ => false,
        };
        // Effect order: the order operations ended in (a failed one may have changed
        // bytes too), unfinished operations last (in start order).
        let mut data: Vec<&FileOp> = ops
            .into_iter()
            .filter(|o| o.touched_range().is_some())
            .collect();
        data.sort_by_key(|o| (o.ended_line.unwrap_or(usize::MAX), o.begin_line));
        let mut durable_len = len_at_open;
        let mut extent = crashed.len() as u64;
        let (mut covered_ops, mut uncovered_ops) = (0, 0);
        for o in &data {
            if covered(o) {
                durable_len = size_after(o, durable_len);
                covered_ops += 1;
            } else {
                uncovered_ops += 1;
                if let DataOp::SetLen { .. } = o.op {
                    extent = extent.max(o.size_before_bytes);
                }
            }
        }
        extent = extent.max(durable_len);
        let mut durable = crashed.clone();
        durable.resize(extent as usize, 0);
        let mut unsynced = vec![false; extent as usize];
        let mut pinned = vec![false; extent as usize];
        for o in data.iter().rev() {
            let (from, to) = o.touched_range().expect("data operations touch a range");
            let (from, to) = (from.min(extent) as usize, to.min(extent) as usize);
            if covered(o) {
                pinned[from..to].fill(true);
                continue;
            }
            for b in from..to {
                if pinned[b] {
                    continue;
                }
                let at = b - from;
                durable[b] = if b as u64 >= o.size_before_bytes {
                    0
                } else {
                    o.old.get(at).copied().unwrap_or(0)
                };
                unsynced[b] = true;
            }
        }
        DiskModel {
            crashed,
            durable,
            unsynced,
            durable_len_bytes: durable_len,
            uncovered_ops,
            covered_ops,
        }
    }

    /// Bytes the model knows: the crashed file, and any bytes an uncovered truncation cut.
    pub fn extent_bytes(&self) -> u64 {
        self.durable.len() as u64
    }

    /// Whether byte `b` may change in a power loss.
    pub fn is_unsynced(&self, b: u64) -> bool {
        self.unsynced.get(b as usize).copied().unwrap_or(false)
    }

    /// The content of byte `b` before every uncovered operation.
    pub fn old_byte(&self, b: u64) -> u8 {
        self.durable.get(b as usize).copied().unwrap_or(0)
    }

    /// The content of byte `b` after every operation (zero where the crashed file has no
    /// such byte).
    pub fn new_byte(&self, b: u64) -> u8 {
        match self.crashed.get(b as usize) {
            Some(v) => *v,
            None => self.old_byte(b),
        }
    }

    /// Whether an uncovered size change may be undone.
    pub fn size_uncovered(&self) -> bool {
        self.durable_len_bytes != self.crashed.len() as u64
    }

    /// The starts of the `unit_bytes`-aligned units holding any unsynced byte.
    pub fn unsynced_units(&self, unit_bytes: u64) -> Vec<u64> {
        let mut units = Vec::new();
        let mut b = 0u64;
        let extent = self.extent_bytes();
        while b < extent {
            let end = (b + unit_bytes).min(extent);
            if self.unsynced[b as usize..end as usize].iter().any(|u| *u) {
                units.push(b);
            }
            b = end;
        }
        units
    }

    /// Whether a unit holds unsynced bytes whose new content differs from the old (so
    /// that keeping or losing it makes a difference).
    pub fn unit_changed(&self, start: u64, unit_bytes: u64) -> bool {
        let end = (start + unit_bytes).min(self.extent_bytes());
        (start..end).any(|b| self.is_unsynced(b) && self.new_byte(b) != self.old_byte(b))
    }

    /// The first unsynced byte and the end of the last one (`None`: all durable).
    pub fn unsynced_span(&self) -> Option<(u64, u64)> {
        let first = self.unsynced.iter().position(|u| *u)?;
        let last = self.unsynced.iter().rposition(|u| *u)?;
        Some((first as u64, last as u64 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(trace: &str, crashed: Vec<u8>) -> DiskModel {
        let trace = Trace::parse(trace);
        assert_eq!(trace.bad_lines, 0);
        DiskModel::build(&trace, "wal.log", crashed)
    }

    #[test]
    fn only_operations_completed_before_a_completed_sync_began_are_durable() {
        // Header written and synced; a write completes after the second sync began (not
        // covered by it); a third sync never completes.
        let t = "open 1 1 1 0 /d/wal.log\n\
                 w 2 1 0 32 0 -\ndone 2\ns 3 1\ndone 3\n\
                 w 4 1 32 100 32 -\ns 5 1\ndone 4\ndone 5\n\
                 w 6 1 132 50 132 -\ndone 6\ns 7 1\n";
        let crashed: Vec<u8> = (0..182u32).map(|b| (b % 200 + 1) as u8).collect();
        let m = model(t, crashed.clone());
        assert_eq!(m.durable_len_bytes, 32);
        assert!((0..32).all(|b| !m.is_unsynced(b)));
        assert!((32..182).all(|b| m.is_unsynced(b)));
        assert!(
            (32..182).all(|b| m.old_byte(b) == 0),
            "past the old end of file"
        );
        assert_eq!(m.uncovered_ops, 2);
        assert_eq!(m.unsynced_units(SECTOR_BYTES), vec![0]);
        assert!(m.size_uncovered());
    }

    #[test]
    fn an_uncovered_truncation_can_bring_back_the_cut_bytes_and_a_later_covered_write_is_pinned() {
        // 600 bytes synced; a failed write over 10..20 (old 0xaa), a covered write over
        // 15..20 after it; an uncovered cut to 500 whose old bytes are 0xbb.
        let old_cut = "bb".repeat(100);
        let t = format!(
            "open 1 1 0 600 /d/wal.log\n\
             w 2 1 10 10 600 {}\nfail 2\nw 3 1 15 5 600 -\ndone 3\ns 4 1\ndone 4\n\
             sl 5 1 500 600 {old_cut}\ndone 5\n",
            "aa".repeat(10)
        );
        let m = model(&t, vec![1u8; 500]);
        assert_eq!(m.durable_len_bytes, 600);
        assert_eq!(m.extent_bytes(), 600);
        assert!(m.is_unsynced(12), "the failed write proves nothing");
        assert_eq!(m.old_byte(12), 0xaa);
        assert!(
            !m.is_unsynced(17),
            "overwritten by a covered write after it"
        );
        assert!((500..600).all(|b| m.is_unsynced(b) && m.old_byte(b) == 0xbb));
        assert_eq!(m.new_byte(550), 0xbb, "past the crashed end: the old bytes");
        assert_eq!(m.unsynced_units(SECTOR_BYTES), vec![0, 512]);
        assert!(
            m.unit_changed(0, SECTOR_BYTES),
            "bytes 500..512 were 0xbb, now 1"
        );
    }
}

/// A directory entry a power loss may take back (docs/faults.md P3): no completed fsync
/// of its directory began after the operation that made it had finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryUndo {
    /// A file or directory was created: it vanishes.
    Created { path: std::path::PathBuf },
    /// A rename: the new name vanishes and the old one comes back with the content.
    Renamed {
        from: std::path::PathBuf,
        to: std::path::PathBuf,
    },
}

/// The directory entries of `trace` that no completed directory fsync covered: file
/// creations (an `open` that created the file), `mkdir`s and renames. (Unlinks are not
/// undone: the trace does not hold the removed file's content.)
pub fn uncovered_entries(trace: &Trace) -> Vec<EntryUndo> {
    use std::path::{Path, PathBuf};
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_default();
    // Completed directory fsyncs: (directory, line their fsync began on).
    let mut syncs: Vec<(PathBuf, usize)> = trace
        .dir_ops
        .iter()
        .filter(|d| d.verb == "fsyncdir" && d.done_line.is_some())
        .map(|d| (d.path.clone(), d.begin_line))
        .collect();
    for op in &trace.ops {
        if op.op == DataOp::SyncDir && op.done_line.is_some() {
            if let Some(file) = trace.files.iter().find(|f| f.fid == op.fid) {
                syncs.push((parent(&file.path), op.begin_line));
            }
        }
    }
    let covered = |entry: &Path, finished_line: usize| {
        let dir = parent(entry);
        syncs
            .iter()
            .any(|(synced, began)| *synced == dir && *began > finished_line)
    };
    let mut undos = Vec::new();
    for file in trace.files.iter().filter(|f| f.created) {
        if !covered(&file.path, file.line) {
            undos.push(EntryUndo::Created {
                path: file.path.clone(),
            });
        }
    }
    // Only operations that finished: one the kill interrupted may or may not have
    // happened, and undoing one that did not (a `mkdir` of a directory that existed) would
    // take away what was durable. Leaving it as it is stays a legal state either way.
    for d in &trace.dir_ops {
        let Some(finished) = d.done_line else {
            continue;
        };
        match (d.verb.as_str(), &d.to) {
            ("mkdir", _) if !covered(&d.path, finished) => undos.push(EntryUndo::Created {
                path: d.path.clone(),
            }),
            ("rename", Some(to)) if !covered(to, finished) => undos.push(EntryUndo::Renamed {
                from: d.path.clone(),
                to: to.clone(),
            }),
            _ => {}
        }
    }
    undos
}

/// A database directory's entries as a crash state is laid out: a copy on disk
/// ([`apply_entry_undos`]) or the sweep's in-memory files. Paths are relative to the
/// database directory.
pub trait EntryTarget {
    /// Renames `to` back to `from`; false when `to` is not there.
    fn rename_back(
        &mut self,
        to: &std::path::Path,
        from: &std::path::Path,
    ) -> std::io::Result<bool>;
    /// Removes the entry (a directory with everything below it); false when it is not there.
    fn remove(&mut self, path: &std::path::Path) -> std::io::Result<bool>;
    /// Removes every entry.
    fn clear(&mut self) -> std::io::Result<()>;
}

/// Undoes `undos` (paths as the writer saw them, under `db_dir`) in `target`: renames go
/// back first, then created entries vanish. Undoing the creation of `db_dir` itself or of
/// a directory above it empties the target (a database whose directory vanished has
/// nothing left). Returns what it changed, for the finding.
pub fn undo_entries(
    db_dir: &std::path::Path,
    undos: &[EntryUndo],
    target: &mut impl EntryTarget,
) -> std::io::Result<Vec<String>> {
    let mut changed = Vec::new();
    let rel = |p: &std::path::Path| {
        p.strip_prefix(db_dir)
            .ok()
            .map(std::path::Path::to_path_buf)
    };
    for undo in undos {
        if let EntryUndo::Renamed { from, to } = undo {
            if let (Some(from_r), Some(to_r)) = (rel(from), rel(to)) {
                if target.rename_back(&to_r, &from_r)? {
                    changed.push(format!(
                        "rename {} -> {} undone",
                        from.display(),
                        to.display()
                    ));
                }
            }
        }
    }
    for undo in undos {
        let EntryUndo::Created { path } = undo else {
            continue;
        };
        if db_dir.starts_with(path) {
            target.clear()?;
            changed.push(format!(
                "creation of {} undone (the database directory is gone)",
                path.display()
            ));
        } else if let Some(r) = rel(path) {
            if target.remove(&r)? {
                changed.push(format!("creation of {} undone", path.display()));
            }
        }
    }
    Ok(changed)
}

/// A copy of the database directory on disk.
struct CopyDir<'a>(&'a std::path::Path);

impl EntryTarget for CopyDir<'_> {
    fn rename_back(
        &mut self,
        to: &std::path::Path,
        from: &std::path::Path,
    ) -> std::io::Result<bool> {
        let to = self.0.join(to);
        if !to.exists() {
            return Ok(false);
        }
        std::fs::rename(&to, self.0.join(from))?;
        Ok(true)
    }

    fn remove(&mut self, path: &std::path::Path) -> std::io::Result<bool> {
        let path = self.0.join(path);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn clear(&mut self) -> std::io::Result<()> {
        for entry in std::fs::read_dir(self.0)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

/// Applies `undos` (paths as the writer saw them, under `db_dir`) to `copy_dir`, a copy of
/// that directory ([`undo_entries`]). Returns what it changed, for the finding.
pub fn apply_entry_undos(
    db_dir: &std::path::Path,
    copy_dir: &std::path::Path,
    undos: &[EntryUndo],
) -> std::io::Result<Vec<String>> {
    undo_entries(db_dir, undos, &mut CopyDir(copy_dir))
}

#[cfg(test)]
mod entry_tests {
    use super::*;
    use std::path::PathBuf;

    const TRACE: &str = "open 1 1 1 0 /d/db/wal.log
w 2 1 0 32 0 -
done 2
s 3 1
done 3
sd 4 1
done 4
open 5 2 1 0 /d/db/IDENTITY.tmp
dir 6 rename /d/db/IDENTITY.tmp -> /d/db/IDENTITY
done 6
open 7 3 1 0 /d/db/other
dir 9 mkdir /d
fail 9
";

    /// A creation is covered by a completed fsync of its directory that began after it (a
    /// file's own directory fsync counts); what no such fsync covered may be undone.
    #[test]
    fn entries_no_directory_fsync_covered_are_undoable() {
        let undos = uncovered_entries(&Trace::parse(TRACE));
        assert_eq!(
            undos,
            vec![
                EntryUndo::Created {
                    path: PathBuf::from("/d/db/IDENTITY.tmp")
                },
                EntryUndo::Created {
                    path: PathBuf::from("/d/db/other")
                },
                EntryUndo::Renamed {
                    from: PathBuf::from("/d/db/IDENTITY.tmp"),
                    to: PathBuf::from("/d/db/IDENTITY")
                },
            ]
        );
        let synced = format!("{TRACE}dir 8 fsyncdir /d/db\ndone 8\n");
        assert!(uncovered_entries(&Trace::parse(&synced)).is_empty());
        // An fsync that never completed covers nothing.
        let unfinished = format!("{TRACE}dir 8 fsyncdir /d/db\n");
        assert_eq!(uncovered_entries(&Trace::parse(&unfinished)).len(), 3);
        // A rename the kill interrupted (no `done`) is left as the crash left it.
        let interrupted = "dir 1 rename /d/db/a -> /d/db/b\n";
        assert!(uncovered_entries(&Trace::parse(interrupted)).is_empty());
    }

    #[test]
    fn undoing_entries_moves_renames_back_and_removes_creations() {
        let root = tempfile::tempdir().unwrap();
        let copy = root.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::write(copy.join("IDENTITY"), b"id").unwrap();
        std::fs::write(copy.join("other"), b"x").unwrap();
        std::fs::write(copy.join("wal.log"), b"log").unwrap();
        let undos = uncovered_entries(&Trace::parse(TRACE));
        let changed = apply_entry_undos(std::path::Path::new("/d/db"), &copy, &undos).unwrap();
        assert_eq!(changed.len(), 3, "{changed:?}");
        assert!(!copy.join("IDENTITY").exists());
        assert!(
            !copy.join("IDENTITY.tmp").exists(),
            "created, then renamed: gone"
        );
        assert!(!copy.join("other").exists());
        assert!(copy.join("wal.log").exists());
        // Undoing the database directory's own creation leaves nothing in it.
        let gone = [EntryUndo::Created {
            path: PathBuf::from("/d/db"),
        }];
        apply_entry_undos(std::path::Path::new("/d/db"), &copy, &gone).unwrap();
        assert_eq!(std::fs::read_dir(&copy).unwrap().count(), 0);
    }
}
