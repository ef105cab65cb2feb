//! Sidecars: copies of log bytes that recovery cut off, kept next to the log.
//!
//! Recovery destroys nothing it cannot prove redundant (docs/recovery-contract.md, R7):
//! before it cuts bytes that are not all zero from the end of the log, it copies them to a
//! sidecar, fdatasyncs the sidecar and fsyncs the directory, and only then truncates.
//!
//! - `wal.log.dropped-<offset>` (then `.1`, `.2`, ... if taken): point-in-time recovery cut
//!   damaged committed history at `<offset>`. Kept until a person deletes it: it may hold
//!   acknowledged commits, and the ids and versions in it are never handed out again.
//! - `wal.log.torn-<seq>-<offset>`: a torn tail with non-zero bytes cut at `<offset>` by the
//!   `<seq>`-th such cut. Bounded: only the newest [`TORN_SIDECARS_KEPT`] are kept, older
//!   ones are removed when a new one is written.
//!
//! A sidecar holds the cut bytes unchanged, from `<offset>` to where the file ended. Only
//! the bytes up to the last non-zero one are written; the trailing zeros (preallocated
//! space, often a megabyte) are a hole made by extending the sidecar's length, so they
//! read back as the zeros they were and take no disk space.

use std::path::{Path, PathBuf};

use super::format::FrameCodec;
use super::storage::{StorageOpener, WalStorage};
use crate::error::{EngineError, Result};

/// Point-in-time recovery saves the bytes it cuts to `<wal file name><DROPPED_SUFFIX><offset>`.
pub const DROPPED_SUFFIX: &str = ".dropped-";
/// A cut torn tail is saved to `<wal file name><TORN_SUFFIX><seq>-<offset>`.
pub const TORN_SUFFIX: &str = ".torn-";
/// Torn-tail sidecars kept: the newest eight cuts. Eight recoveries in a row that each cut
/// a non-zero torn tail (eight power losses mid-write) are a long history of evidence; an
/// unbounded count would let a crash loop fill the disk.
pub const TORN_SIDECARS_KEPT: u64 = 8;

/// Which recovery wrote a sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarKind {
    /// Point-in-time recovery cut damaged history.
    Dropped,
    /// A torn tail was cut; `seq` orders the cuts.
    Torn { seq: u64 },
}

/// A sidecar found in a database directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    pub path: PathBuf,
    pub kind: SidecarKind,
    /// The log offset its first byte came from.
    pub offset_bytes: u64,
}

/// Parses a directory entry's name as a sidecar of the log named `wal_file_name`.
pub fn parse_name(wal_file_name: &str, name: &str) -> Option<(SidecarKind, u64)> {
    let rest = name.strip_prefix(wal_file_name)?;
    if let Some(offset) = rest.strip_prefix(DROPPED_SUFFIX) {
        // `<offset>` or `<offset>.<copy>`.
        let offset = offset.split('.').next()?;
        return Some((SidecarKind::Dropped, offset.parse().ok()?));
    }
    let rest = rest.strip_prefix(TORN_SUFFIX)?;
    let (seq, offset) = rest.split_once('-')?;
    Some((
        SidecarKind::Torn {
            seq: seq.parse().ok()?,
        },
        offset.parse().ok()?,
    ))
}

/// The sidecars of the log at `wal_path`, in no particular order.
pub fn list(wal_path: &Path) -> Result<Vec<Sidecar>> {
    list_with(&super::FileOpener, wal_path)
}

/// [`list`] through the engine's seam.
pub fn list_with(opener: &dyn StorageOpener, wal_path: &Path) -> Result<Vec<Sidecar>> {
    let dir = parent_dir(wal_path);
    let wal_file_name = file_name(wal_path);
    let names = opener
        .list_dir(&dir)
        .map_err(|e| EngineError::io(format!("listing directory {}", dir.display()), e))?;
    let mut found = Vec::new();
    for name in names {
        let Some((kind, offset_bytes)) = parse_name(&wal_file_name, &name.to_string_lossy()) else {
            continue;
        };
        found.push(Sidecar {
            path: dir.join(&name),
            kind,
            offset_bytes,
        });
    }
    Ok(found)
}

/// The highest txn id and version in any record found in the sidecars of `wal_path` (zeros
/// when there are none). Their records may be acknowledged commits (point-in-time) or
/// commits a crashed writer acknowledged before the power loss (torn): their ids and
/// versions are never handed out again (R4).
pub fn max_ids(
    opener: &dyn StorageOpener,
    wal_path: &Path,
    codec: FrameCodec,
) -> Result<(u64, u64)> {
    let (mut max_txn_id, mut max_version) = (0, 0);
    for sidecar in list_with(opener, wal_path)? {
        let read_err = |e| EngineError::io(format!("reading {}", sidecar.path.display()), e);
        // Listed a moment ago; gone now only if someone removed it meanwhile.
        let bytes = opener
            .read_file(&sidecar.path)
            .map_err(read_err)?
            .unwrap_or_default();
        let (txn_id, version) = super::max_ids_in_records(&bytes, codec, sidecar.offset_bytes);
        max_txn_id = max_txn_id.max(txn_id);
        max_version = max_version.max(version);
    }
    Ok((max_txn_id, max_version))
}

/// What a new sidecar keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A torn tail (named with the next sequence number).
    TornTail,
    /// Damaged history cut by point-in-time recovery.
    PointInTime,
}

/// Copies `[offset_bytes, end_bytes)` of `storage` (the log at `wal_path`) into a new
/// sidecar for `cut` (trailing zeros as a hole), made durable (fdatasync of the sidecar,
/// fsync of the directory) before this returns. Returns the sidecar's path and its length,
/// or `None` when the range is all zero (nothing to keep).
pub fn save(
    opener: &dyn StorageOpener,
    storage: &dyn WalStorage,
    wal_path: &Path,
    cut: Cut,
    offset_bytes: u64,
    end_bytes: u64,
) -> Result<Option<(PathBuf, u64)>> {
    const CHUNK_BYTES: u64 = 1 << 20;
    let read_err = |at: u64, e| {
        EngineError::io(
            format!("reading {} at offset {at} to save it", wal_path.display()),
            e,
        )
    };
    // The last non-zero byte, searched backwards chunk by chunk.
    let mut nonzero_end = offset_bytes;
    let mut chunk = Vec::new();
    let mut to = end_bytes;
    while to > offset_bytes {
        let from = to.saturating_sub(CHUNK_BYTES).max(offset_bytes);
        chunk.resize((to - from) as usize, 0);
        super::reader::read_exact_at(storage, from, &mut chunk).map_err(|e| read_err(from, e))?;
        if let Some(idx) = chunk.iter().rposition(|b| *b != 0) {
            nonzero_end = from + idx as u64 + 1;
            break;
        }
        to = from;
    }
    if nonzero_end == offset_bytes {
        return Ok(None);
    }
    let path = new_path(opener, wal_path, cut, offset_bytes)?;
    let io_err = |what: &str, e| EngineError::io(format!("{what} {}", path.display()), e);
    let opened = opener.open(&path).map_err(|e| io_err("creating", e))?;
    // A fresh name (never an existing sidecar), so the file starts empty.
    let sidecar = opened.storage;
    let mut at = offset_bytes;
    while at < nonzero_end {
        let len = (nonzero_end - at).min(CHUNK_BYTES);
        chunk.resize(len as usize, 0);
        super::reader::read_exact_at(storage, at, &mut chunk).map_err(|e| read_err(at, e))?;
        sidecar
            .write_at(at - offset_bytes, &chunk)
            .map_err(|e| io_err("writing", e))?;
        at += len;
    }
    sidecar
        .set_len(end_bytes - offset_bytes)
        .map_err(|e| io_err("extending", e))?;
    sidecar.sync_data().map_err(|e| io_err("fdatasync of", e))?;
    sidecar
        .sync_dir()
        .map_err(|e| io_err("fsync of the directory of", e))?;
    Ok(Some((path, end_bytes - offset_bytes)))
}

/// Removes torn-tail sidecars beyond the newest [`TORN_SIDECARS_KEPT`]. Point-in-time
/// sidecars are never removed by the engine.
pub fn prune(opener: &dyn StorageOpener, wal_path: &Path) -> Result<Vec<PathBuf>> {
    let mut torn: Vec<(u64, PathBuf)> = list_with(opener, wal_path)?
        .into_iter()
        .filter_map(|s| match s.kind {
            SidecarKind::Torn { seq } => Some((seq, s.path)),
            SidecarKind::Dropped => None,
        })
        .collect();
    torn.sort();
    let excess = torn.len().saturating_sub(TORN_SIDECARS_KEPT as usize);
    let mut removed = Vec::new();
    for (_, path) in torn.into_iter().take(excess) {
        opener
            .remove_file(&path)
            .map_err(|e| EngineError::io(format!("removing old sidecar {}", path.display()), e))?;
        removed.push(path);
    }
    Ok(removed)
}

/// A name no sidecar has yet: the next sequence number for a torn tail, or the first free
/// copy number for a point-in-time cut at the same offset as an earlier one (never
/// overwrite evidence).
fn new_path(
    opener: &dyn StorageOpener,
    wal_path: &Path,
    cut: Cut,
    offset_bytes: u64,
) -> Result<PathBuf> {
    let wal_file_name = file_name(wal_path);
    let existing = list_with(opener, wal_path)?;
    let name = match cut {
        Cut::TornTail => {
            let seq = existing
                .iter()
                .filter_map(|s| match s.kind {
                    SidecarKind::Torn { seq } => Some(seq),
                    SidecarKind::Dropped => None,
                })
                .max()
                .map_or(1, |seq| seq + 1);
            format!("{wal_file_name}{TORN_SUFFIX}{seq}-{offset_bytes}")
        }
        Cut::PointInTime => {
            let base = format!("{wal_file_name}{DROPPED_SUFFIX}{offset_bytes}");
            let mut name = base.clone();
            let mut copy_idx = 1u32;
            while existing
                .iter()
                .any(|s| s.path.file_name() == Some(name.as_ref()))
            {
                name = format!("{base}.{copy_idx}");
                copy_idx += 1;
            }
            name
        }
    };
    Ok(wal_path.with_file_name(name))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name("wal.log", "wal.log.dropped-477"),
            Some((SidecarKind::Dropped, 477))
        );
        assert_eq!(
            parse_name("wal.log", "wal.log.dropped-477.2"),
            Some((SidecarKind::Dropped, 477))
        );
        assert_eq!(
            parse_name("wal.log", "wal.log.torn-12-4096"),
            Some((SidecarKind::Torn { seq: 12 }, 4096))
        );
        assert_eq!(parse_name("wal.log", "wal.log"), None);
        assert_eq!(parse_name("wal.log", "wal.log.torn-x-1"), None);
        assert_eq!(parse_name("wal.log", "IDENTITY"), None);
    }
}
