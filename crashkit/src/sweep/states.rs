//! The crash states of one point: the fate alphabet of each sector no fdatasync covered,
//! the choice between enumerating every combination and sampling ([`PointStates`]),
//! building state `i`'s files ([`BuiltState`], directory entries undone in memory) and
//! the key that recognises a state already checked ([`state_key`]).

use std::path::{Path, PathBuf};

use crate::case::Purpose;
use crate::crash_state::{
    uncovered_entries, undo_entries, DiskModel, EntryTarget, EntryUndo, SECTOR_BYTES,
};
use crate::oracle::Ledger;
use crate::power_loss::{self, CrashState, Fate, Shape};

use super::points::{ledger_of, trace_prefix, Point, Run};
use super::SweepError;

/// What a point offers: its files, its disk model and how its states are chosen.
pub(super) struct PointStates {
    pub(super) files: Vec<(PathBuf, Vec<u8>)>,
    pub(super) wal_index: Option<usize>,
    model: Option<DiskModel>,
    /// Per unsynced sector: its start and the exhaustive alphabet.
    alphabets: Vec<(u64, Vec<Fate>)>,
    size_options: usize,
    /// `Some(n)`: exhaustive with n fate states; `None`: sampled.
    pub(super) exhaustive: Option<usize>,
    pub(super) fate_states: usize,
    undos: Vec<EntryUndo>,
    /// Where the writer stopped writing in the crashed `wal.log` (0: none).
    pub(super) crash_len_bytes: u64,
    /// The oracle: every acknowledgement (process kill) and the power-loss one.
    pub(super) ledger_kill: Ledger,
    pub(super) ledger_power: Ledger,
}

/// One built state.
pub(super) struct BuiltState {
    pub(super) files: Vec<(PathBuf, Vec<u8>)>,
    pub(super) description: String,
    /// State 0: exactly what a process kill leaves.
    pub(super) process_kill: bool,
    pub(super) first_changed_bytes: u64,
}

fn alphabet(model: &DiskModel, start: u64) -> Vec<Fate> {
    if model.unit_changed(start, SECTOR_BYTES) {
        return vec![
            Fate::Kept,
            Fate::Lost,
            Fate::Zeroed,
            Fate::Garbage,
            Fate::Torn {
                new_bytes: (SECTOR_BYTES / 2) as u16,
            },
        ];
    }
    let end = (start + SECTOR_BYTES).min(model.extent_bytes());
    let old_zero = (start..end).all(|b| !model.is_unsynced(b) || model.old_byte(b) == 0);
    if old_zero {
        vec![Fate::Kept, Fate::Garbage]
    } else {
        vec![Fate::Kept, Fate::Zeroed, Fate::Garbage]
    }
}

impl Run {
    pub(super) fn point_states(&self, point: Point, cap: usize) -> Result<PointStates, SweepError> {
        let files = self.files_at(point);
        let wal_index = files
            .iter()
            .position(|(p, _)| p == Path::new(engine::WAL_FILE_NAME));
        let prefix = trace_prefix(&self.trace, point.lines);
        let model =
            wal_index.map(|i| DiskModel::build(&prefix, engine::WAL_FILE_NAME, files[i].1.clone()));
        let (alphabets, size_options) = match &model {
            Some(m) => (
                m.unsynced_units(SECTOR_BYTES)
                    .into_iter()
                    .map(|u| (u, alphabet(m, u)))
                    .collect::<Vec<_>>(),
                if m.size_uncovered() { 2 } else { 1 },
            ),
            None => (Vec::new(), 1),
        };
        let combos = alphabets
            .iter()
            .try_fold(size_options, |acc: usize, (_, a)| acc.checked_mul(a.len()));
        let exhaustive = combos.filter(|n| *n <= cap);
        let fate_states = exhaustive.unwrap_or(cap);
        let undos = uncovered_entries(&prefix);
        let mut ledger_kill = ledger_of(&self.trace, point.lines)?;
        let mut ledger_power = ledger_kill.clone();
        ledger_kill.mark_required(self.case.mode, false);
        ledger_power.mark_required(self.case.mode, true);
        let crash_len_bytes = wal_index.map_or(0, |i| crate::seam::written_end_bytes(&files[i].1));
        Ok(PointStates {
            crash_len_bytes,
            files,
            wal_index,
            model,
            alphabets,
            size_options,
            exhaustive,
            fate_states,
            undos,
            ledger_kill,
            ledger_power,
        })
    }

    pub(super) fn n_states(ps: &PointStates) -> usize {
        ps.fate_states + usize::from(!ps.undos.is_empty())
    }

    /// Builds state `index` of a point (see the [`crate::sweep`] module comment for the
    /// numbering).
    pub(super) fn build_state(
        &self,
        point_index: usize,
        ps: &PointStates,
        index: usize,
    ) -> BuiltState {
        let mut rng = self
            .case
            .rng_indexed(Purpose::Sweep, ((point_index as u64) << 20) | index as u64);
        let undo_entries = index >= ps.fate_states;
        let fate_index = if undo_entries { 0 } else { index };
        let (Some(model), Some(wal_index)) = (&ps.model, ps.wal_index) else {
            let mut files = ps.files.clone();
            let mut description = "no wal.log yet: the files as they are".to_string();
            if undo_entries {
                let changed = undo_in_memory(&self.db_dir, &mut files, &ps.undos);
                description = format!(
                    "directory entries no fsync covered undone: {}",
                    changed.join("; ")
                );
            }
            return BuiltState {
                files,
                description,
                process_kill: !undo_entries,
                first_changed_bytes: 0,
            };
        };
        let state: CrashState = match ps.exhaustive {
            Some(_) => {
                // Mixed radix: the size digit first, then one digit per unit.
                let mut rest = fate_index;
                let size_undone = rest % ps.size_options == 1;
                rest /= ps.size_options;
                let fates = ps
                    .alphabets
                    .iter()
                    .map(|(start, a)| {
                        let f = a[rest % a.len()];
                        rest /= a.len();
                        (*start, f)
                    })
                    .collect();
                power_loss::build(
                    model,
                    fate_index,
                    Shape::Enumerated,
                    SECTOR_BYTES,
                    size_undone,
                    fates,
                    &mut rng,
                )
            }
            None if fate_index == 0 => {
                let fates = ps.alphabets.iter().map(|(s, _)| (*s, Fate::Kept)).collect();
                power_loss::build(
                    model,
                    0,
                    Shape::Enumerated,
                    SECTOR_BYTES,
                    false,
                    fates,
                    &mut rng,
                )
            }
            None => power_loss::draw(model, fate_index, &mut rng),
        };
        let mut files = ps.files.clone();
        let mut description = state.describe(model);
        let process_kill = !undo_entries
            && !state.size_undone
            && state.fates.iter().all(|(_, f)| *f == Fate::Kept);
        files[wal_index].1 = state.image;
        if undo_entries {
            let changed = undo_in_memory(&self.db_dir, &mut files, &ps.undos);
            description = format!(
                "{description}, and directory entries no fsync covered undone: {}",
                changed.join("; ")
            );
        }
        BuiltState {
            files,
            description,
            process_kill,
            first_changed_bytes: state.first_changed_bytes,
        }
    }
}

/// The sweep's in-memory files (paths relative to the database directory) as a target
/// of [`undo_entries`].
struct MemEntries<'a>(&'a mut Vec<(PathBuf, Vec<u8>)>);

impl EntryTarget for MemEntries<'_> {
    fn rename_back(&mut self, to: &Path, from: &Path) -> std::io::Result<bool> {
        match self.0.iter_mut().find(|(p, _)| p == to) {
            Some(file) => {
                file.0 = from.to_path_buf();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn remove(&mut self, path: &Path) -> std::io::Result<bool> {
        let before = self.0.len();
        self.0.retain(|(p, _)| !p.starts_with(path));
        Ok(self.0.len() < before)
    }

    fn clear(&mut self) -> std::io::Result<()> {
        self.0.clear();
        Ok(())
    }
}

/// [`undo_entries`] on in-memory files. Returns what changed.
fn undo_in_memory(
    db_dir: &Path,
    files: &mut Vec<(PathBuf, Vec<u8>)>,
    undos: &[EntryUndo],
) -> Vec<String> {
    undo_entries(db_dir, undos, &mut MemEntries(files)).expect("in-memory undos cannot fail")
}

/// A fast 64-bit hash of a state's files and oracle, for deduplication (collisions among
/// a million states: about 1 in 10^7).
pub(super) fn state_key(
    files: &[(PathBuf, Vec<u8>)],
    ledger: &Ledger,
    expected_end: Option<u64>,
) -> (u64, u64) {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut mix = |w: u64| {
        h = (h.rotate_left(23) ^ w).wrapping_mul(0x2545_f491_4f6c_dd1d);
    };
    for (path, content) in files {
        for b in path.as_os_str().as_encoded_bytes() {
            mix(u64::from(*b));
        }
        // Trailing zeros (preallocated space) are implied by the length.
        mix(content.len() as u64);
        let content = &content[..content.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)];
        let mut chunks = content.chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for b in chunks.remainder() {
            mix(u64::from(*b));
        }
    }
    let acked = ledger.attempts.iter().filter(|a| a.ack.is_some()).count() as u64;
    let oracle = (ledger.required_prefix_len() as u64)
        ^ ((ledger.attempts.len() as u64) << 16)
        ^ (acked << 32)
        ^ (expected_end.unwrap_or(u64::MAX).rotate_left(48));
    (h, oracle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep's in-memory files and a copy on disk get the same undos with the same
    /// outcome: one rule, two backings (a rename back, a creation undone, the database
    /// directory's own creation emptying everything).
    #[test]
    fn in_memory_undos_match_undos_on_disk() {
        let db_dir = Path::new("/d/db");
        let undos = vec![
            EntryUndo::Created {
                path: db_dir.join("other"),
            },
            EntryUndo::Renamed {
                from: db_dir.join("IDENTITY.tmp"),
                to: db_dir.join("IDENTITY"),
            },
        ];
        let files = vec![
            (PathBuf::from("IDENTITY"), b"id".to_vec()),
            (PathBuf::from("other"), b"x".to_vec()),
            (PathBuf::from("wal.log"), b"log".to_vec()),
        ];
        let root = tempfile::tempdir().unwrap();
        for (path, content) in &files {
            std::fs::write(root.path().join(path), content).unwrap();
        }
        let on_disk = crate::crash_state::apply_entry_undos(db_dir, root.path(), &undos).unwrap();
        let mut in_memory = files.clone();
        assert_eq!(undo_in_memory(db_dir, &mut in_memory, &undos), on_disk);
        let mut disk_files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    PathBuf::from(e.file_name()),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        disk_files.sort();
        in_memory.sort();
        assert_eq!(in_memory, disk_files);
        assert_eq!(
            in_memory,
            vec![
                (PathBuf::from("IDENTITY.tmp"), b"id".to_vec()),
                (PathBuf::from("wal.log"), b"log".to_vec())
            ]
        );
        let gone = [EntryUndo::Created {
            path: PathBuf::from("/d"),
        }];
        assert_eq!(undo_in_memory(db_dir, &mut in_memory, &gone).len(), 1);
        assert!(in_memory.is_empty());
    }
}
