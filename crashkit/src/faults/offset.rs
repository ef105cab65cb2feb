//! `--kill offset` (whitebox): the writer's own storage SIGKILLs the process once exactly
//! K bytes of the WAL exist, splitting the write that crosses K.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use engine::wal::{WalStorage, RECORD_HEADER_LEN};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::storage::{FileRef, Hook, Next, Op, Reply};
use super::{stop_now, Stop};
use crate::workload::Workload;

/// The `--kill` value.
pub const NAME: &str = "offset";

/// Kill points of long logs cluster around multiples of this: the replay's pipelining
/// threshold, a quarter of the reader's 1 MiB buffer (engine/src/wal/reader.rs).
pub const BOUNDARY_BYTES: u64 = 256 * 1024;

/// Draws K, the WAL length at which the writer dies (also what a watch kill waits for).
/// Logs longer than [`BOUNDARY_BYTES`] get a third of their kills a few bytes around a
/// multiple of it (and so, in steps of four, of the reader's 1 MiB buffer), where a
/// buffer refill or a batch hand-off splits a record. Of the rest, half are uniform over
/// the expected log (mostly payload bytes, since values are large); the other half land
/// within the frame header or checksum of a random record, or exactly on its boundary,
/// which uniform draws would rarely hit. K always lies past the file header and at most
/// at the expected end of the log.
pub fn draw_kill_offset(workload: &Workload, rng: &mut ChaCha8Rng) -> u64 {
    let header = engine::wal::HEADER_LEN as u64;
    let expected = workload.expected_wal_len_bytes().max(header + 1);
    let layout = workload.record_layout();
    let boundaries = expected / BOUNDARY_BYTES;
    if boundaries > 0 && rng.gen_ratio(1, 3) {
        let at = rng.gen_range(1..=boundaries) * BOUNDARY_BYTES;
        let around = RECORD_HEADER_LEN as u64 + 1;
        (at + rng.gen_range(0..=2 * around) - around).clamp(header + 1, expected)
    } else if layout.is_empty() || rng.gen_bool(0.5) {
        rng.gen_range(header + 1..=expected)
    } else {
        let span = &layout[rng.gen_range(0..layout.len())];
        let within = rng.gen_range(0..=RECORD_HEADER_LEN as u64);
        (span.offset_bytes + within).clamp(header + 1, expected)
    }
}

/// Writes at most up to WAL offset K; the write that reaches K writes only the bytes
/// before it, then the process stops. K is given in the plan's coordinates (as if the log
/// held only its header when opened) and counted from where this process's first record
/// goes, so a later generation's writer dies K - header bytes into its own records.
/// Preallocated zeros ([`Op::Allocate`]) are not WAL bytes and count nothing.
#[derive(Debug)]
pub struct KillAtOffset {
    kill_offset_bytes: u64,
    stop: Stop,
    /// Absolute kill offset per open `wal.log`.
    at: Mutex<HashMap<u64, u64>>,
    fired: AtomicBool,
}

impl KillAtOffset {
    pub fn new(kill_offset_bytes: u64, stop: Stop) -> KillAtOffset {
        KillAtOffset {
            kill_offset_bytes,
            stop,
            at: Mutex::new(HashMap::new()),
            fired: AtomicBool::new(false),
        }
    }

    pub fn hook(kill_offset_bytes: u64) -> Arc<dyn Hook> {
        Arc::new(KillAtOffset::new(kill_offset_bytes, Stop::SigKill))
    }
}

impl Hook for KillAtOffset {
    fn opened(&self, file: &FileRef) -> io::Result<()> {
        if file.is_wal() {
            let header = engine::wal::HEADER_LEN as u64;
            let start = written_end_of(file.raw.as_ref())?.max(header);
            let k = start + self.kill_offset_bytes.saturating_sub(header);
            self.at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(file.id, k);
        }
        Ok(())
    }

    fn call(&self, file: Option<&FileRef>, op: Op<'_>, next: Next<'_>) -> io::Result<Reply> {
        let Op::Write { offset_bytes, data } = op else {
            return next(op);
        };
        let k = file.and_then(|f| {
            self.at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&f.id)
                .copied()
        });
        let end = offset_bytes + data.len() as u64;
        match k {
            Some(k) if !self.fired.load(Ordering::Acquire) && end >= k => {
                let keep = k.saturating_sub(offset_bytes) as usize;
                if keep > 0 {
                    next(Op::Write {
                        offset_bytes,
                        data: &data[..keep],
                    })?;
                }
                self.fired.store(true, Ordering::Release);
                Err(stop_now(self.stop, &format!("WAL offset {k}")))
            }
            _ => next(Op::Write { offset_bytes, data }),
        }
    }
}

/// [`crate::seam::written_end_bytes`] of the file behind `storage`.
fn written_end_of(storage: &dyn WalStorage) -> io::Result<u64> {
    let mut image = vec![0u8; storage.len_bytes()? as usize];
    let mut at = 0;
    while at < image.len() {
        match storage.read_at(at as u64, &mut image[at..])? {
            0 => break,
            n => at += n,
        }
    }
    image.truncate(at);
    Ok(crate::seam::written_end_bytes(&image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::storage::FaultOpener;
    use engine::wal::{FileOpener, StorageOpener};

    fn wal(dir: &std::path::Path, k: u64) -> Arc<dyn WalStorage> {
        let opener = FaultOpener::new(vec![Arc::new(KillAtOffset::new(k, Stop::Fail))]);
        opener.open(&dir.join("wal.log")).unwrap().storage
    }

    fn file_len(dir: &std::path::Path) -> u64 {
        FileOpener.file_len(&dir.join("wal.log")).unwrap().unwrap()
    }

    const H: u64 = engine::wal::HEADER_LEN as u64;

    #[test]
    fn kill_at_offset_splits_the_crossing_write_exactly_at_k() {
        let dir = tempfile::tempdir().unwrap();
        let s = wal(dir.path(), H + 13);
        s.write_at(0, &[1u8; H as usize + 10]).unwrap();
        let err = s.write_at(H + 10, &[2u8; 10]).unwrap_err();
        assert!(
            err.to_string().contains(&format!("offset {}", H + 13)),
            "{err}"
        );
        assert_eq!(
            file_len(dir.path()),
            H + 13,
            "exactly K bytes reach the file"
        );
        let bytes = std::fs::read(dir.path().join("wal.log")).unwrap();
        assert_eq!(&bytes[H as usize + 10..], &[2, 2, 2]);
    }

    #[test]
    fn kill_at_offset_fires_when_a_write_ends_exactly_at_k_and_ignores_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let s = wal(dir.path(), H + 40);
        assert!(s
            .allocate(0, 4096, engine::wal::SyncCadence::PerAppend)
            .unwrap());
        s.write_at(0, &[1u8; H as usize + 39]).unwrap();
        assert!(s.write_at(H + 39, &[3u8; 1]).is_err());
    }

    #[test]
    fn a_later_writer_dies_k_minus_header_bytes_into_its_own_records() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wal.log"), vec![9u8; H as usize + 100]).unwrap();
        let s = wal(dir.path(), H + 5);
        s.write_at(H + 100, &[1u8; 4]).unwrap();
        assert!(s.write_at(H + 104, &[1u8; 4]).is_err());
        assert_eq!(file_len(dir.path()), H + 105);
    }
}
