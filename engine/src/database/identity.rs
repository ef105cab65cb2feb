//! The directory's identity file: which database this directory holds.
//!
//! `<dir>/IDENTITY` holds a magic, the database id and a checksum. It is written (to a
//! temporary file, fdatasync, rename, directory fsync) before the WAL is created, so a WAL
//! without an IDENTITY beside it was not made by this directory: it was copied in or left
//! behind after the directory was wiped (FAULTS.md O4), and opening refuses it.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{EngineError, Result};
use crate::wal::storage::sync_directory;

pub const IDENTITY_FILE_NAME: &str = "IDENTITY";
const IDENTITY_MAGIC: [u8; 8] = *b"INMEMDID";
const IDENTITY_LEN: usize = 8 + 16 + 4;

/// Reads the directory's database id, or `None` if the directory has none yet.
pub fn read(dir: &Path) -> Result<Option<u128>> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
pub fn create(dir: &Path, database_id: u128) -> Result<()> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let tmp = dir.join(format!("{IDENTITY_FILE_NAME}.tmp"));
    let mut bytes = Vec::with_capacity(IDENTITY_LEN);
    bytes.extend_from_slice(&IDENTITY_MAGIC);
    bytes.extend_from_slice(&database_id.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let io_err = |what: &str, e| EngineError::io(format!("{what} {}", tmp.display()), e);
    let mut file = fs::File::create(&tmp).map_err(|e| io_err("creating", e))?;
    file.write_all(&bytes).map_err(|e| io_err("writing", e))?;
    file.sync_data().map_err(|e| io_err("fdatasync of", e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err("renaming", e))?;
    sync_directory(dir)
        .map_err(|e| EngineError::io(format!("fsync of directory {}", dir.display()), e))?;
    Ok(())
}
