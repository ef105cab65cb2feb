//! The `corrupt` fault: a bit flip in committed history (a record with a valid record after
//! it). Default recovery must refuse to open, name the damaged record's offset and change
//! nothing on disk; point-in-time recovery (on a copy) must open at the last good record
//! with exactly the commits before it (docs/recovery-contract.md R6, docs/faults.md C1-C3).

use std::path::Path;

use engine::{DatabaseOptions, EngineError, RecoveryMode};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::checker::{diff_states, snapshot};
use crate::finding::{FindingKind, Violation};
use crate::oracle::State;
use crate::workload::RecordSpan;

/// Which bit to flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptTarget {
    /// Offset of the record the flipped byte belongs to.
    pub record_offset_bytes: u64,
    pub byte_offset_bytes: u64,
    pub bit: u8,
}

/// The highest synced offset carried by any whole record of `image` (a WAL file) before
/// `valid_end_bytes`: from format version 2 on, every record says how far the log had been
/// synced when it was written, so the bytes before this offset are provably committed
/// history (a record after them proves the sync). For a version 1 log, `valid_end_bytes`
/// (any record with a valid record after it counts as committed history there).
pub fn proved_synced_end_bytes(image: &[u8], valid_end_bytes: u64) -> u64 {
    use engine::wal::format::Frame;
    let Some(codec) = engine::wal::FrameCodec::for_image(image) else {
        return 0;
    };
    if !codec.carries_synced_offset() {
        return valid_end_bytes;
    }
    let mut at = engine::wal::HEADER_LEN;
    let mut proved = 0;
    let end = (valid_end_bytes as usize).min(image.len());
    while at < end {
        match codec.inspect(at as u64, &image[at..end]) {
            Frame::Valid {
                payload_start,
                payload_len,
                synced_offset_bytes,
                ..
            } => {
                proved = proved.max(synced_offset_bytes.unwrap_or(0));
                at += payload_start + payload_len;
            }
            _ => break,
        }
    }
    proved
}

/// Picks a byte of a whole record within the first `valid_end_bytes` of the log that lies
/// in provably committed history: the record starts before `proved_synced_end_bytes` (see
/// [`proved_synced_end_bytes`]) and another whole record follows it. Damage anywhere else
/// is, for all the log can tell, the torn end of a power loss. `None` when no record
/// qualifies.
pub fn pick_target(
    layout: &[RecordSpan],
    valid_end_bytes: u64,
    proved_synced_end_bytes: u64,
    rng: &mut ChaCha8Rng,
) -> Option<CorruptTarget> {
    let whole: Vec<&RecordSpan> = layout
        .iter()
        .filter(|s| s.offset_bytes + s.len_bytes <= valid_end_bytes)
        .collect();
    if whole.len() < 2 {
        return None;
    }
    let eligible: Vec<&RecordSpan> = whole[..whole.len() - 1]
        .iter()
        .copied()
        .filter(|s| s.offset_bytes < proved_synced_end_bytes)
        .collect();
    if eligible.is_empty() {
        return None;
    }
    let span = eligible[rng.gen_range(0..eligible.len())];
    Some(CorruptTarget {
        record_offset_bytes: span.offset_bytes,
        byte_offset_bytes: span.offset_bytes + rng.gen_range(0..span.len_bytes),
        bit: rng.gen_range(0..8),
    })
}

fn flip(wal: &Path, target: &CorruptTarget) -> std::io::Result<()> {
    let mut bytes = std::fs::read(wal)?;
    bytes[target.byte_offset_bytes as usize] ^= 1 << target.bit;
    std::fs::write(wal, bytes)
}

fn harness(e: std::io::Error, what: &str) -> Violation {
    // Not an engine finding, but the cycle cannot go on; reported with the context.
    Violation::new(FindingKind::RecoveryFailed, format!("harness: {what}: {e}"))
}

/// Flips the target bit, checks both recovery modes, and flips it back.
pub fn check_refused(
    dir: &Path,
    target: &CorruptTarget,
    layout: &[RecordSpan],
    states: &[State],
) -> Result<(), Violation> {
    let wal = dir.join(engine::WAL_FILE_NAME);
    flip(&wal, target).map_err(|e| harness(e, "flipping a bit"))?;
    let damaged = std::fs::read(&wal).map_err(|e| harness(e, "reading the WAL"))?;
    let where_ = format!(
        "bit {} of byte {} (record at offset {})",
        target.bit, target.byte_offset_bytes, target.record_offset_bytes
    );
    let refused = loop {
        match DatabaseOptions::new().open(dir) {
            Err(EngineError::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            other => break other,
        }
    };
    match refused {
        Ok(_) => {
            return Err(Violation::new(
                FindingKind::CorruptionNotDetected,
                format!("flipped {where_}, a valid record follows, yet the default recovery opened the database"),
            ))
        }
        Err(EngineError::Corruption { offset_bytes, .. }) if offset_bytes == target.record_offset_bytes => {}
        Err(e) => {
            return Err(Violation::new(
                FindingKind::CorruptionNotDetected,
                format!("flipped {where_}; expected a Corruption error at offset {}, got: {e}", target.record_offset_bytes),
            ))
        }
    }
    if std::fs::read(&wal).map_err(|e| harness(e, "reading the WAL"))? != damaged {
        return Err(Violation::new(
            FindingKind::CorruptionNotDetected,
            format!("flipped {where_}; the refused open changed the WAL on disk"),
        ));
    }

    // Point-in-time recovery on a copy: exactly the commits whose CommitTxn precedes the damage.
    let copy = dir.with_extension("pit");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).map_err(|e| harness(e, "creating the point-in-time copy"))?;
    for name in [
        engine::WAL_FILE_NAME,
        engine::database::identity::IDENTITY_FILE_NAME,
    ] {
        std::fs::copy(dir.join(name), copy.join(name))
            .map_err(|e| harness(e, "copying the database"))?;
    }
    let n_before = layout
        .iter()
        .filter(|s| {
            s.record_type.commits() && s.offset_bytes + s.len_bytes <= target.record_offset_bytes
        })
        .count();
    let result = DatabaseOptions::new()
        .recovery(RecoveryMode::PointInTime)
        .open(&copy);
    let verdict = match result {
        Err(e) => Err(Violation::new(
            FindingKind::RecoveryFailed,
            format!("flipped {where_}; point-in-time recovery failed: {e}"),
        )),
        Ok(db) => {
            let recovered = snapshot(&db);
            let cut_at = db
                .recovery_stats()
                .corruption
                .as_ref()
                .map(|c| c.offset_bytes);
            drop(db);
            match states.get(n_before) {
                Some(expected) if *expected != recovered => {
                    let mut v = Violation::new(
                        FindingKind::WrongValue,
                        format!("flipped {where_}; point-in-time recovery should hold exactly the first {n_before} commits"),
                    );
                    v.diffs = diff_states(expected, &recovered, 5);
                    Err(v)
                }
                _ if cut_at != Some(target.record_offset_bytes) => Err(Violation::new(
                    FindingKind::CorruptionNotDetected,
                    format!(
                        "flipped {where_}; point-in-time recovery reported the cut at {cut_at:?}"
                    ),
                )),
                _ => Ok(()),
            }
        }
    };
    let _ = std::fs::remove_dir_all(&copy);
    verdict?;
    flip(&wal, target).map_err(|e| harness(e, "restoring the flipped bit"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Database, Key, Namespace, RunId, Value};
    use std::sync::Arc;

    /// A database with `n` one-put transactions, its record layout and prefix states.
    fn db_with_txns(dir: &Path, n: u64) -> (Vec<RecordSpan>, Vec<State>) {
        let db = Database::open(dir).unwrap();
        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let mut states = vec![State::new()];
        for i in 0..n {
            let mut t = db.begin(RunId(1));
            let key = Key::kv(ns.clone(), format!("k{i}"));
            t.put(key.clone(), Value::I64(i as i64)).unwrap();
            let info = t.commit().unwrap();
            let mut s = states.last().unwrap().clone();
            s.insert(key, (Value::I64(i as i64), info.versions.start));
            states.push(s);
        }
        let mut layout = Vec::new();
        let mut reader = db.wal().reader().unwrap();
        while let Some(r) = reader.next_record().unwrap() {
            layout.push(RecordSpan {
                record_type: r.entry.record_type(),
                offset_bytes: r.offset_bytes,
                len_bytes: r.len_bytes,
                txn_idx: 0,
            });
        }
        drop(reader);
        drop(db);
        (layout, states)
    }

    #[test]
    fn a_flip_before_a_valid_record_is_refused_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        let (layout, states) = db_with_txns(&db_dir, 3);
        let before = std::fs::read(db_dir.join("wal.log")).unwrap();
        // NamespaceDef, then one PutTxn per transaction: flip a byte of the second put,
        // which the third (written after a sync covered it) proves synced.
        assert_eq!(layout.len(), 4, "{layout:?}");
        let target = CorruptTarget {
            record_offset_bytes: layout[2].offset_bytes,
            byte_offset_bytes: layout[2].offset_bytes + 12,
            bit: 3,
        };
        check_refused(&db_dir, &target, &layout, &states).unwrap();
        assert_eq!(
            std::fs::read(db_dir.join("wal.log")).unwrap(),
            before,
            "the bit is flipped back"
        );
    }

    #[test]
    fn a_flip_the_engine_may_treat_as_a_torn_tail_is_reported_as_not_refused() {
        // The last record has no valid record after it, so a correct engine cuts it as a
        // torn tail; the checker must say that nothing was refused (it never picks such a
        // target itself, see `pick_target`).
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        let (layout, states) = db_with_txns(&db_dir, 2);
        let last = layout.last().unwrap();
        let end = last.offset_bytes + last.len_bytes;
        // Read before the check: a correct engine cuts the flipped last record.
        let image = std::fs::read(db_dir.join("wal.log")).unwrap();
        let proved = proved_synced_end_bytes(&image, end);
        let target = CorruptTarget {
            record_offset_bytes: last.offset_bytes,
            byte_offset_bytes: last.offset_bytes + 10,
            bit: 0,
        };
        let v = check_refused(&db_dir, &target, &layout, &states).unwrap_err();
        assert_eq!(v.kind, FindingKind::CorruptionNotDetected, "{v:?}");
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..50 {
            let t = pick_target(&layout, end, proved, &mut rng)
                .unwrap_or_else(|| panic!("no target: proved {proved}, {layout:?}"));
            assert!(
                t.record_offset_bytes < last.offset_bytes,
                "never the last whole record"
            );
        }
    }
}
