//! Crash states of the files beside the log (docs/faults.md P7): every file other than
//! `wal.log` and `LOCK` that a trace shows written, such as the torn-tail sidecars recovery
//! writes and `IDENTITY.tmp`. Before this, a crash state kept such a file exactly as the
//! kill left it (or undid its creation): a sidecar whose bytes a power loss lost or tore
//! was never recovered from.
//!
//! A power loss writes back each file's unsynced pages independently of every other
//! file's, so each file's state is drawn from its own disk model ([`DiskModel`]) on its
//! own random stream, derived from the case seed and the file's name: the states replay
//! exactly and do not change when the log's states do.

use std::io;
use std::path::Path;

use crate::case::Case;
use crate::crash_state::DiskModel;
use crate::power_loss::{draw_states, CrashState};
use crate::trace::Trace;

/// Files a trace may show written that are never damaged here: the log has its own
/// states, and `LOCK` holds no data.
const NOT_SIDE_FILES: [&str; 2] = [engine::WAL_FILE_NAME, "LOCK"];

/// Added to the stream index of a side file's states (the writer's states use the case's
/// own streams, an interrupted recovery's `2_000_000`).
const SIDE_FILE_STREAMS: u64 = 3_000_000;

/// One side file with unsynced operations, its model and its drawn states.
#[derive(Debug)]
struct SideFile {
    name: String,
    model: DiskModel,
    states: Vec<CrashState>,
}

/// The side files of one trace, each with `n` crash states.
#[derive(Debug, Default)]
pub struct SideFiles {
    files: Vec<SideFile>,
}

/// A stream index for `name`: FNV-1a of its bytes, so every file gets its own stream.
fn name_stream(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl SideFiles {
    /// The side files `trace` wrote that are in `db_dir` now (as the kill left them) and
    /// hold operations no completed sync covered, each with `n` states drawn for `case`.
    pub fn build(trace: &Trace, db_dir: &Path, case: &Case, n: usize) -> io::Result<SideFiles> {
        let mut names: Vec<String> = trace
            .files
            .iter()
            .filter_map(|f| f.path.file_name()?.to_str().map(str::to_string))
            .filter(|name| !NOT_SIDE_FILES.contains(&name.as_str()))
            .collect();
        names.sort();
        names.dedup();
        let mut files = Vec::new();
        for name in names {
            // Gone since (renamed, removed): nothing of it is on the disk to damage.
            let crashed = match std::fs::read(db_dir.join(&name)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let model = DiskModel::build(trace, &name, crashed);
            if model.uncovered_ops == 0 {
                continue;
            }
            let mut sub = *case;
            sub.seed = crate::case::cycle_seed(
                case.seed,
                SIDE_FILE_STREAMS + (name_stream(&name) % SIDE_FILE_STREAMS),
            );
            let states = draw_states(&model, &sub, n.max(1));
            files.push(SideFile {
                name,
                model,
                states,
            });
        }
        Ok(SideFiles { files })
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes each side file's state number `index` (cycling through its states) over its
    /// copy in `dir`; a file not in `dir` (its creation undone) stays absent. Returns what
    /// changed, as a suffix for the crash state's description (empty when nothing did).
    pub fn lay_out(&self, dir: &Path, index: usize) -> io::Result<String> {
        let mut changed = Vec::new();
        for file in &self.files {
            let path = dir.join(&file.name);
            if !path.exists() {
                continue;
            }
            let state = &file.states[index % file.states.len()];
            std::fs::write(&path, &state.image)?;
            if state.image != file.model.crashed {
                changed.push(format!("{}: {}", file.name, state.describe(&file.model)));
            }
        }
        Ok(if changed.is_empty() {
            String::new()
        } else {
            format!("{BESIDE_THE_LOG}{}", changed.join("; "))
        })
    }
}

/// Starts the part of a crash state's description that is about side files.
pub const BESIDE_THE_LOG: &str = ", and beside the log ";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{KillKind, ModeName};

    /// A trace that writes a sidecar and dies before its fdatasync: the sidecar is a side
    /// file with states, some of which change it; one fully synced is not.
    #[test]
    fn an_unsynced_sidecar_gets_states_and_a_synced_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let sidecar = "wal.log.torn-1-64";
        let content = vec![0xabu8; 3000];
        std::fs::write(dir.path().join(sidecar), &content).unwrap();
        std::fs::write(dir.path().join("LOCK"), b"").unwrap();
        let old = "-";
        let unsynced = format!(
            "open 1 1 1 0 /d/{sidecar}\nw 2 1 0 3000 0 {old}\ndone 2\nopen 3 2 1 0 /d/LOCK\n"
        );
        let trace = Trace::parse(&unsynced);
        let case = Case::new(7, ModeName::Strict, KillKind::Offset);
        let side = SideFiles::build(&trace, dir.path(), &case, 8).unwrap();
        assert!(!side.is_empty());
        let mut changed = 0;
        for index in 0..8 {
            let state_dir = dir.path().join(format!("s{index}"));
            std::fs::create_dir(&state_dir).unwrap();
            std::fs::write(state_dir.join(sidecar), &content).unwrap();
            let description = side.lay_out(&state_dir, index).unwrap();
            let now = std::fs::read(state_dir.join(sidecar)).unwrap();
            assert_eq!(description.is_empty(), now == content, "{description}");
            changed += usize::from(now != content);
        }
        assert!(changed > 0, "no state changed the unsynced sidecar");
        // The same file, synced: nothing to damage.
        let synced = format!("{unsynced}s 4 1\ndone 4\n");
        let side = SideFiles::build(&Trace::parse(&synced), dir.path(), &case, 8).unwrap();
        assert!(side.is_empty());
    }
}
