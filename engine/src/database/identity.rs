//! The directory's identity file: which database this directory holds.
//!
//! `<dir>/IDENTITY` holds a magic, the database id and a checksum. It is written (to a
//! temporary file, fdatasync, rename, directory fsync) right *after* the WAL's header is
//! durable and before any record is appended, so:
//! - an IDENTITY without a WAL beside it means the log was lost (refused, `WalMissing`);
//! - a WAL holding records without an IDENTITY was copied in or left behind after the
//!   directory was wiped (docs/faults.md O4): refused;
//! - a WAL holding only its header (or less) without an IDENTITY is a first open that died
//!   part-way: it is finished, with the id from the header when the header is whole.
//!
//! Every file operation goes through the engine's seam ([`StorageOpener`]).

use std::path::Path;

use crate::error::{EngineError, Result};
use crate::wal::StorageOpener;

pub const IDENTITY_FILE_NAME: &str = "IDENTITY";
const IDENTITY_MAGIC: [u8; 8] = *b"INMEMDID";
const IDENTITY_LEN: usize = 8 + 16 + 4;

/// Reads the directory's database id, or `None` if the directory has none yet.
pub fn read(opener: &dyn StorageOpener, dir: &Path) -> Result<Option<u128>> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let bytes = match opener.read_file(&path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => return Err(EngineError::io(format!("reading {}", path.display()), e)),
    };
    let damaged = |reason: String| EngineError::Corruption {
        path: path.clone(),
        offset_bytes: 0,
        reason,
    };
    if bytes.len() != IDENTITY_LEN {
        return Err(damaged(format!(
            "identity file is {} bytes, expected {IDENTITY_LEN}",
            bytes.len()
        )));
    }
    if bytes[..8] != IDENTITY_MAGIC {
        return Err(damaged("identity file has a bad magic".to_string()));
    }
    let stored = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    if stored != crc32fast::hash(&bytes[..24]) {
        return Err(damaged("identity file checksum mismatch".to_string()));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[8..24]);
    Ok(Some(u128::from_le_bytes(id)))
}

/// Durably writes a new identity for `dir`.
pub fn create(opener: &dyn StorageOpener, dir: &Path, database_id: u128) -> Result<()> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let tmp = dir.join(format!("{IDENTITY_FILE_NAME}.tmp"));
    let mut bytes = Vec::with_capacity(IDENTITY_LEN);
    bytes.extend_from_slice(&IDENTITY_MAGIC);
    bytes.extend_from_slice(&database_id.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let io_err = |what: &str, e| EngineError::io(format!("{what} {}", tmp.display()), e);
    let file = opener
        .open(&tmp)
        .map_err(|e| io_err("creating", e))?
        .storage;
    // A temporary file an earlier attempt left behind may be longer.
    file.set_len(0).map_err(|e| io_err("truncating", e))?;
    file.write_at(0, &bytes).map_err(|e| io_err("writing", e))?;
    file.sync_data().map_err(|e| io_err("fdatasync of", e))?;
    drop(file);
    opener
        .rename(&tmp, &path)
        .map_err(|e| io_err("renaming", e))?;
    opener
        .sync_dir(dir)
        .map_err(|e| EngineError::io(format!("fsync of directory {}", dir.display()), e))?;
    Ok(())
}
