//! Power-loss simulation: after the kill, damage the WAL bytes no completed fdatasync
//! covered, as a disk that lost power could leave them.

use std::io;
use std::path::Path;

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use crate::plan::PowerLossDamage;

/// Damages `wal_path` beyond `synced_bytes`. Returns the offset of the first byte that no
/// longer holds what the writer wrote (the file length when nothing was damaged).
///
/// Damage always runs to the end of the file: a later valid record after damaged bytes
/// would be a reordered write-back, which the engine rightly refuses as corruption.
pub fn apply(
    wal_path: &Path,
    synced_bytes: u64,
    damage: PowerLossDamage,
    rng: &mut ChaCha8Rng,
) -> io::Result<u64> {
    let original = std::fs::read(wal_path)?;
    let mut bytes = original.clone();
    let len = bytes.len() as u64;
    let synced = synced_bytes.min(len);
    let point = rng.gen_range(synced..=len);
    match damage {
        PowerLossDamage::Drop => bytes.truncate(synced as usize),
        PowerLossDamage::Cut => bytes.truncate(point as usize),
        PowerLossDamage::Zeros => bytes[point as usize..].fill(0),
        PowerLossDamage::Garbage => rng.fill_bytes(&mut bytes[point as usize..]),
    }
    std::fs::write(wal_path, &bytes)?;
    // The first byte that actually changed: zeros written over bytes that already were
    // zero (or garbage that happens to match) leave a record intact.
    let first_changed = original
        .iter()
        .zip(&bytes)
        .position(|(a, b)| a != b)
        .map_or(bytes.len(), |i| i) as u64;
    Ok(first_changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn synced_bytes_are_never_touched_and_damage_reaches_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        for (i, damage) in [
            PowerLossDamage::Drop,
            PowerLossDamage::Cut,
            PowerLossDamage::Zeros,
            PowerLossDamage::Garbage,
        ]
        .into_iter()
        .enumerate()
        {
            let original: Vec<u8> = (0..200u32).map(|b| (b % 251 + 1) as u8).collect();
            std::fs::write(&path, &original).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let first = apply(&path, 120, damage, &mut rng).unwrap();
            let after = std::fs::read(&path).unwrap();
            assert!(first >= 120, "{damage:?} damaged synced bytes");
            assert_eq!(&after[..120], &original[..120], "{damage:?}");
            match damage {
                PowerLossDamage::Drop => assert_eq!(after.len(), 120),
                PowerLossDamage::Cut => assert_eq!(after.len() as u64, first),
                PowerLossDamage::Zeros => {
                    assert_eq!(after.len(), 200);
                    assert!(after[first as usize..].iter().all(|b| *b == 0));
                }
                PowerLossDamage::Garbage => {
                    assert_eq!(after.len(), 200);
                    assert_eq!(&after[..first as usize], &original[..first as usize]);
                }
            }
        }
    }
}
