//! Power loss: legal crash states of the WAL drawn from the disk model
//! ([`crate::crash_state::DiskModel`]) of one crash.
//!
//! A state keeps every byte a completed fdatasync covered. Every other byte the writer
//! touched belongs to a unit (a 512-byte sector, or a 4 KiB page whose sectors share one
//! fate) that is independently kept (new content), lost (the content before the
//! unsynced operations: zeros for preallocated space), zeroed, filled with garbage, or
//! torn (its first bytes new, the rest old: sector writes are not atomic). A size change
//! no completed sync covered is kept or undone. docs/recovery-contract.md, "Legal crash
//! states"; docs/faults.md P1, P2, P5, P6.
//!
//! State `i` of a case derives from the case seed alone (its own ChaCha8 stream), so a
//! repro rebuilds it bit-exactly from the same trace.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::case::{Case, Purpose};
use crate::crash_state::{DiskModel, PAGE_BYTES, SECTOR_BYTES};

/// Crash states checked per power-loss crash unless [`set_crash_states_per_crash`] said
/// otherwise.
pub const DEFAULT_STATES_PER_CRASH: usize = 6;

static STATES_PER_CRASH: AtomicUsize = AtomicUsize::new(DEFAULT_STATES_PER_CRASH);

/// Sets how many crash states every later power-loss crash of this process checks (at
/// least one). State `i` is the same whatever the count, so a finding in state `i`
/// reproduces with any count above `i`.
pub fn set_crash_states_per_crash(n: usize) {
    STATES_PER_CRASH.store(n.max(1), Ordering::Relaxed);
}

/// How many crash states each power-loss crash checks.
pub fn crash_states_per_crash() -> usize {
    STATES_PER_CRASH.load(Ordering::Relaxed)
}

/// What happens to one unit of unsynced bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fate {
    /// The new content reached the disk.
    Kept,
    /// The old content stayed (zeros for preallocated space).
    Lost,
    /// The unit reads as zeros.
    Zeroed,
    /// The unit reads as random bytes (stale disk content).
    Garbage,
    /// The first `new_bytes` of the unit are new, the rest old.
    Torn { new_bytes: u16 },
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Kept => f.write_str("kept"),
            Fate::Lost => f.write_str("lost"),
            Fate::Zeroed => f.write_str("zeroed"),
            Fate::Garbage => f.write_str("garbage"),
            Fate::Torn { new_bytes } => write!(f, "torn after {new_bytes} new bytes"),
        }
    }
}

/// How a state's fates were drawn (for reading findings and for the figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Every unit kept but one to three changed ones: a hole in the unsynced bytes.
    Hole,
    /// Each unit's fate drawn on its own.
    Independent,
    /// Units kept up to a point, one fate after it (the classic torn tail).
    Prefix,
    /// Every unit lost.
    AllLost,
    /// One combination of an exhaustive enumeration ([`crate::sweep`]), or fates set by
    /// hand (a shrunk state, [`crate::state_shrink`]).
    Enumerated,
}

/// One legal crash state of the WAL.
#[derive(Debug, Clone)]
pub struct CrashState {
    /// Index among the case's states (its random stream).
    pub index: usize,
    pub shape: Shape,
    pub unit_bytes: u64,
    /// Whether an uncovered size change was undone (the file has its durable size).
    pub size_undone: bool,
    /// `(unit start, fate)` for every unit holding unsynced bytes, in file order.
    pub fates: Vec<(u64, Fate)>,
    /// The file content of this state.
    pub image: Vec<u8>,
    /// The first byte that differs from the crashed file (its length when none does,
    /// the shorter length when only the length differs).
    pub first_changed_bytes: u64,
    /// Whether new bytes survive after a damaged one: a loss in the middle of the
    /// unsynced bytes, which a damage running to the end of the file never makes.
    pub damage_in_middle: bool,
}

impl CrashState {
    /// One line naming the state: which units kept, lost, zeroed, garbage or torn, and
    /// the size.
    pub fn describe(&self, model: &DiskModel) -> String {
        const RUNS_SHOWN: usize = 16;
        let mut runs: Vec<(u64, u64, Fate)> = Vec::new();
        for (start, fate) in &self.fates {
            let end = (start + self.unit_bytes).min(model.extent_bytes());
            match runs.last_mut() {
                Some((_, run_end, f)) if *f == *fate && *run_end == *start => *run_end = end,
                _ => runs.push((*start, end, *fate)),
            }
        }
        let mut s = format!(
            "crash state {} ({:?}, {}-byte units): ",
            self.index, self.shape, self.unit_bytes
        );
        for (i, (from, to, fate)) in runs.iter().enumerate() {
            if i == RUNS_SHOWN {
                let _ = write!(s, ", ... {} more runs", runs.len() - RUNS_SHOWN);
                break;
            }
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}[{from}..{to}) {fate}");
        }
        let _ = write!(
            s,
            "; size {} ({} bytes; crashed {}, durable {})",
            if self.size_undone { "undone" } else { "kept" },
            self.image.len(),
            model.crashed.len(),
            model.durable_len_bytes
        );
        s
    }
}

/// Draws `n` crash states of `model` for `case` (state `i` from stream `i`), dropping
/// states whose bytes equal an earlier one's (they would check the same thing twice).
pub fn draw_states(model: &DiskModel, case: &Case, n: usize) -> Vec<CrashState> {
    let mut states: Vec<CrashState> = Vec::with_capacity(n);
    for index in 0..n {
        let mut rng = case.rng_indexed(Purpose::PowerLoss, index as u64);
        let state = draw(model, index, &mut rng);
        if states.iter().all(|s| s.image != state.image) {
            states.push(state);
        }
    }
    states
}

const DAMAGE: [Fate; 3] = [Fate::Lost, Fate::Zeroed, Fate::Garbage];

fn any_fate(rng: &mut ChaCha8Rng, unit_bytes: u64) -> Fate {
    match rng.gen_range(0..20) {
        0..=7 => Fate::Kept,
        8..=12 => Fate::Lost,
        13..=14 => Fate::Zeroed,
        15..=16 => Fate::Garbage,
        _ => torn(rng, unit_bytes),
    }
}

fn damage(rng: &mut ChaCha8Rng, unit_bytes: u64) -> Fate {
    if rng.gen_ratio(1, 4) {
        torn(rng, unit_bytes)
    } else {
        DAMAGE[rng.gen_range(0..DAMAGE.len())]
    }
}

fn torn(rng: &mut ChaCha8Rng, unit_bytes: u64) -> Fate {
    Fate::Torn {
        new_bytes: rng.gen_range(1..unit_bytes) as u16,
    }
}

/// Draws one state.
pub fn draw(model: &DiskModel, index: usize, rng: &mut ChaCha8Rng) -> CrashState {
    let unit_bytes = if rng.gen_ratio(3, 5) {
        SECTOR_BYTES
    } else {
        PAGE_BYTES
    };
    let units = model.unsynced_units(unit_bytes);
    let changed: Vec<usize> = (0..units.len())
        .filter(|i| model.unit_changed(units[*i], unit_bytes))
        .collect();
    let shape = match rng.gen_range(0..20) {
        0..=6 if !changed.is_empty() => Shape::Hole,
        0..=12 => Shape::Independent,
        13..=17 => Shape::Prefix,
        _ => Shape::AllLost,
    };
    let mut fates: Vec<(u64, Fate)> = units.iter().map(|u| (*u, Fate::Kept)).collect();
    // Units past the last changed one hold only zeros no record was written over
    // (preallocated space). Damage there is legal, but each byte of garbage becomes a
    // sidecar byte that recovery writes and every later open scans for ids, and one unit
    // of it shows what many would: most shapes stop there.
    let records_end = changed
        .last()
        .map_or(fates.len(), |last| (last + 2).min(fates.len()));
    match shape {
        Shape::Hole => {
            // One to three holes among the units whose content changed, each a short
            // run: the unsynced bytes around them reach the disk.
            for _ in 0..rng.gen_range(1..=3) {
                let at = changed[rng.gen_range(0..changed.len())];
                let fate = damage(rng, unit_bytes);
                let run = rng.gen_range(1..=2usize);
                for f in fates.iter_mut().skip(at).take(run) {
                    f.1 = fate;
                }
            }
        }
        Shape::Independent => {
            // Units whose bytes did not change stay zeros but for some garbage, most of
            // it next to the records (see `records_end`).
            for (i, f) in fates.iter_mut().enumerate() {
                f.1 = if changed.binary_search(&i).is_ok() {
                    any_fate(rng, unit_bytes)
                } else if (i < records_end && rng.gen_ratio(1, 8)) || rng.gen_ratio(1, 512) {
                    Fate::Garbage
                } else {
                    Fate::Kept
                };
            }
        }
        Shape::Prefix => {
            // Mostly inside the units that changed, so the cut lands in records.
            let cut = match (changed.is_empty(), rng.gen_ratio(4, 5)) {
                (false, true) => changed[rng.gen_range(0..changed.len())],
                _ => rng.gen_range(0..=fates.len()),
            };
            let fate = DAMAGE[rng.gen_range(0..DAMAGE.len())];
            let torn_first = rng.gen_bool(0.5);
            // One prefix state in four damages to the end of the file, the old way.
            let end = if rng.gen_ratio(1, 4) {
                fates.len()
            } else {
                records_end.max(cut + 1)
            };
            for (i, f) in fates.iter_mut().enumerate().take(end).skip(cut) {
                f.1 = if i == cut && torn_first {
                    torn(rng, unit_bytes)
                } else {
                    fate
                };
            }
        }
        Shape::AllLost => {
            for f in &mut fates {
                f.1 = Fate::Lost;
            }
        }
        Shape::Enumerated => unreachable!("draw never picks Enumerated"),
    }
    let size_undone = model.size_uncovered()
        && match shape {
            Shape::AllLost => rng.gen_ratio(4, 5),
            _ => rng.gen_ratio(1, 3),
        };
    build(model, index, shape, unit_bytes, size_undone, fates, rng)
}

/// The bytes of a state, given its fates.
pub fn build(
    model: &DiskModel,
    index: usize,
    shape: Shape,
    unit_bytes: u64,
    size_undone: bool,
    fates: Vec<(u64, Fate)>,
    rng: &mut ChaCha8Rng,
) -> CrashState {
    let len = if size_undone {
        model.durable_len_bytes
    } else {
        model.crashed.len() as u64
    };
    // Every byte starts as its new content (past the crashed end: the old content, which
    // is what `new_byte` gives there); a kept unit changes nothing, so only the others are
    // visited (the same bytes as setting every unit, far cheaper on a large extent).
    let crashed_len = model.crashed.len() as u64;
    let mut image: Vec<u8> = model.crashed[..len.min(crashed_len) as usize].to_vec();
    image.extend((crashed_len..len).map(|b| model.old_byte(b)));
    let mut garbage = vec![0u8; unit_bytes as usize];
    for (start, fate) in &fates {
        let end = (start + unit_bytes).min(len);
        if *fate == Fate::Garbage {
            rng.fill_bytes(&mut garbage);
        }
        if *fate == Fate::Kept {
            continue;
        }
        for b in *start..end {
            if !model.is_unsynced(b) {
                continue;
            }
            let at = (b - start) as usize;
            // Bytes an uncovered truncation cut come back as they were.
            let fate = if b >= crashed_len { Fate::Lost } else { *fate };
            image[b as usize] = match fate {
                Fate::Kept => model.new_byte(b),
                Fate::Lost => model.old_byte(b),
                Fate::Zeroed => 0,
                Fate::Garbage => garbage[at],
                Fate::Torn { new_bytes } if at < usize::from(new_bytes) => model.new_byte(b),
                Fate::Torn { .. } => model.old_byte(b),
            };
        }
    }
    let common = image.len().min(model.crashed.len());
    let first_changed_bytes = image[..common]
        .iter()
        .zip(&model.crashed[..common])
        .position(|(a, b)| a != b)
        .unwrap_or(common) as u64;
    // Only unsynced bytes count, so only their span is scanned.
    let damage_in_middle = model.unsynced_span().is_some_and(|(from, to)| {
        ((first_changed_bytes + 1).max(from)..(common as u64).min(to)).any(|b| {
            model.is_unsynced(b)
                && image[b as usize] == model.crashed[b as usize]
                && model.crashed[b as usize] != model.old_byte(b)
        })
    });
    CrashState {
        index,
        shape,
        unit_bytes,
        size_undone,
        fates,
        image,
        first_changed_bytes,
        damage_in_middle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{KillKind, ModeName};
    use crate::trace::Trace;

    /// A synced header, then two uncovered writes of 1500 and 700 bytes (old content:
    /// preallocated zeros), the first one in flight when the process died.
    fn model() -> DiskModel {
        let t = "open 1 1 1 0 /d/wal.log\n\
                 w 2 1 0 32 0 -\ndone 2\ns 3 1\ndone 3\n\
                 al 4 1 32 4064 32 -\ndone 4\n\
                 w 5 1 32 1500 4096 -\ndone 5\nw 6 1 1532 700 4096 -\n";
        let trace = Trace::parse(t);
        let mut crashed = vec![0u8; 4096];
        for (b, v) in crashed.iter_mut().enumerate().take(2232) {
            *v = (b % 251 + 1) as u8;
        }
        DiskModel::build(&trace, "wal.log", crashed)
    }

    #[test]
    fn every_state_keeps_synced_bytes_and_draws_only_legal_bytes() {
        let m = model();
        assert_eq!(m.durable_len_bytes, 32);
        let case = Case::new(7, ModeName::Async, KillKind::Offset);
        let states = draw_states(&m, &case, 64);
        assert!(states.len() > 20, "distinct states: {}", states.len());
        for s in &states {
            let d = s.describe(&m);
            assert_eq!(&s.image[..32], &m.crashed[..32], "{d}");
            let len = s.image.len() as u64;
            assert!(len == 32 || len == 4096, "{d}");
            assert_eq!(s.size_undone, len == 32, "{d}");
            for (start, fate) in &s.fates {
                let end = (start + s.unit_bytes).min(len);
                for b in (*start..end).filter(|b| m.is_unsynced(*b)) {
                    let got = s.image[b as usize];
                    let ok = match fate {
                        Fate::Kept => got == m.new_byte(b),
                        Fate::Lost | Fate::Zeroed => got == 0,
                        Fate::Garbage => true,
                        Fate::Torn { new_bytes } => {
                            got == if b - start < u64::from(*new_bytes) {
                                m.new_byte(b)
                            } else {
                                0
                            }
                        }
                    };
                    assert!(ok, "{d}: byte {b} = {got}");
                }
            }
        }
        assert!(
            states.iter().any(|s| s.damage_in_middle),
            "some state loses bytes in the middle while keeping later ones"
        );
        // Every state that undoes the size is the 32 synced bytes: one survives the
        // deduplication, whichever shape drew it.
        assert_eq!(states.iter().filter(|s| s.size_undone).count(), 1);
        assert!(
            states
                .iter()
                .any(|s| s.image.len() == 4096 && s.image[32..].iter().all(|b| *b == 0)),
            "some state keeps the size and loses every unsynced byte"
        );
    }

    #[test]
    fn a_state_is_a_pure_function_of_the_case_seed_and_its_index() {
        let m = model();
        let case = Case::new(99, ModeName::Strict, KillKind::Watch);
        let a = draw_states(&m, &case, 8);
        let b = draw_states(&m, &case, 8);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.image, y.image);
            assert_eq!(x.describe(&m), y.describe(&m));
        }
        let mut other = case;
        other.seed = 100;
        assert_ne!(
            draw_states(&m, &other, 8)
                .iter()
                .map(|s| s.image.clone())
                .collect::<Vec<_>>(),
            a.iter().map(|s| s.image.clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_hole_keeps_the_units_after_it() {
        let m = model();
        let units = m.unsynced_units(SECTOR_BYTES);
        assert_eq!(units, vec![0, 512, 1024, 1536, 2048, 2560, 3072, 3584]);
        let mut fates: Vec<(u64, Fate)> = units.iter().map(|u| (*u, Fate::Kept)).collect();
        fates[1].1 = Fate::Lost;
        let mut rng = Case::new(1, ModeName::Strict, KillKind::Offset).rng(Purpose::PowerLoss);
        let s = build(&m, 0, Shape::Hole, SECTOR_BYTES, false, fates, &mut rng);
        assert_eq!(s.first_changed_bytes, 512);
        assert!(s.image[512..1024].iter().all(|b| *b == 0));
        assert_eq!(&s.image[1024..2232], &m.crashed[1024..2232]);
        assert!(s.damage_in_middle);
        assert!(
            s.describe(&m).contains("[512..1024) lost"),
            "{}",
            s.describe(&m)
        );
    }
}
