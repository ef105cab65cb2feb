//! The WAL byte layout: constants, the file header and record framing.
//!
//! This module mirrors docs/format.md; change one only together with the other.
//!
//! ```text
//! file   := header record*
//! header := magic[8] "INMEMWAL" | format_version u32 LE | database_id u128 LE | header_crc u32 LE
//! record := payload_len u32 LE | record_type u8 | crc u32 LE | payload[payload_len]
//!           crc = crc32(payload_len bytes ++ record_type byte ++ payload)
//! ```

use crate::error::EngineError;
use std::path::Path;

/// First eight bytes of every WAL file.
pub const MAGIC: [u8; 8] = *b"INMEMWAL";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

pub const MAGIC_OFFSET: usize = 0;
pub const MAGIC_LEN: usize = 8;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC_LEN;
pub const VERSION_LEN: usize = 4;
pub const DATABASE_ID_OFFSET: usize = VERSION_OFFSET + VERSION_LEN;
pub const DATABASE_ID_LEN: usize = 16;
pub const HEADER_CRC_OFFSET: usize = DATABASE_ID_OFFSET + DATABASE_ID_LEN;
pub const HEADER_CRC_LEN: usize = 4;
/// Size of the file header; the first record starts here.
pub const HEADER_LEN: usize = HEADER_CRC_OFFSET + HEADER_CRC_LEN;

pub const RECORD_LEN_OFFSET: usize = 0;
pub const RECORD_LEN_LEN: usize = 4;
pub const RECORD_TYPE_OFFSET: usize = RECORD_LEN_OFFSET + RECORD_LEN_LEN;
pub const RECORD_TYPE_LEN: usize = 1;
pub const RECORD_CRC_OFFSET: usize = RECORD_TYPE_OFFSET + RECORD_TYPE_LEN;
pub const RECORD_CRC_LEN: usize = 4;
/// Size of a record's frame header; the payload starts here.
pub const RECORD_HEADER_LEN: usize = RECORD_CRC_OFFSET + RECORD_CRC_LEN;
/// Largest payload a record may carry. A length field above this is damage, not a record.
pub const RECORD_PAYLOAD_LEN_MAX: usize = 16 * 1024 * 1024;

const _: () = assert!(HEADER_LEN == 32);
const _: () = assert!(RECORD_HEADER_LEN == 9);
const _: () = assert!(RECORD_PAYLOAD_LEN_MAX < u32::MAX as usize);

/// Record types. Zero is reserved so that zero-filled space never frames a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    BeginTxn = 1,
    Write = 2,
    Delete = 3,
    CommitTxn = 4,
    AbortTxn = 5,
}

/// The reserved record type byte; never written.
pub const RECORD_TYPE_RESERVED: u8 = 0;

impl RecordType {
    pub fn from_byte(byte: u8) -> Option<RecordType> {
        match byte {
            1 => Some(RecordType::BeginTxn),
            2 => Some(RecordType::Write),
            3 => Some(RecordType::Delete),
            4 => Some(RecordType::CommitTxn),
            5 => Some(RecordType::AbortTxn),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordType::BeginTxn => "BeginTxn",
            RecordType::Write => "Write",
            RecordType::Delete => "Delete",
            RecordType::CommitTxn => "CommitTxn",
            RecordType::AbortTxn => "AbortTxn",
        }
    }
}

/// The decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub format_version: u32,
    pub database_id: u128,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[MAGIC_OFFSET..MAGIC_OFFSET + MAGIC_LEN].copy_from_slice(&MAGIC);
        out[VERSION_OFFSET..VERSION_OFFSET + VERSION_LEN]
            .copy_from_slice(&self.format_version.to_le_bytes());
        out[DATABASE_ID_OFFSET..DATABASE_ID_OFFSET + DATABASE_ID_LEN]
            .copy_from_slice(&self.database_id.to_le_bytes());
        let crc = crc32fast::hash(&out[..HEADER_CRC_OFFSET]);
        out[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a header: magic, checksum, then version (in that order, so a
    /// damaged header is reported as damage rather than as a strange version).
    pub fn decode(bytes: &[u8; HEADER_LEN], path: &Path) -> Result<FileHeader, EngineError> {
        if bytes[MAGIC_OFFSET..MAGIC_OFFSET + MAGIC_LEN] != MAGIC {
            return Err(EngineError::NotAWal {
                path: path.to_path_buf(),
            });
        }
        let stored_crc = read_u32(&bytes[HEADER_CRC_OFFSET..]);
        let actual_crc = crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]);
        if stored_crc != actual_crc {
            return Err(EngineError::Corruption {
                path: path.to_path_buf(),
                offset_bytes: 0,
                reason: format!(
                    "file header checksum mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x})"
                ),
            });
        }
        let format_version = read_u32(&bytes[VERSION_OFFSET..]);
        if format_version != FORMAT_VERSION {
            return Err(EngineError::UnsupportedFormatVersion {
                path: path.to_path_buf(),
                found: format_version,
                supported: FORMAT_VERSION,
            });
        }
        let mut id = [0u8; DATABASE_ID_LEN];
        id.copy_from_slice(&bytes[DATABASE_ID_OFFSET..DATABASE_ID_OFFSET + DATABASE_ID_LEN]);
        Ok(FileHeader {
            format_version,
            database_id: u128::from_le_bytes(id),
        })
    }
}

pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The checksum of a record: covers the length and type bytes, then the payload.
pub fn record_crc(len_and_type: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(len_and_type.len(), RECORD_LEN_LEN + RECORD_TYPE_LEN);
    // `Hasher::new` detects CPU features on every call (~110 instructions, as much as
    // checksumming a small record); a clone of one detected hasher skips that.
    static DETECTED: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    let mut hasher = DETECTED.get_or_init(crc32fast::Hasher::new).clone();
    hasher.update(len_and_type);
    hasher.update(payload);
    hasher.finalize()
}

/// What the bytes at one offset are, judged from the frame alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete record whose checksum matches.
    Valid { record_type: u8, payload_len: usize },
    /// The bytes end before the frame does (fewer than `needed_bytes` are available).
    Incomplete { needed_bytes: usize },
    /// The frame is damaged: zero type, oversized length or checksum mismatch.
    Invalid { reason: String },
}

/// Judges the frame that starts at `bytes[0]`. `bytes` holds everything up to the end of
/// the file that is currently known, or at least one whole record.
pub fn inspect_frame(bytes: &[u8]) -> Frame {
    if bytes.len() < RECORD_HEADER_LEN {
        return Frame::Incomplete {
            needed_bytes: RECORD_HEADER_LEN,
        };
    }
    let payload_len = read_u32(&bytes[RECORD_LEN_OFFSET..]) as usize;
    let record_type = bytes[RECORD_TYPE_OFFSET];
    if payload_len > RECORD_PAYLOAD_LEN_MAX {
        return Frame::Invalid {
            reason: format!(
                "record length {payload_len} exceeds the maximum {RECORD_PAYLOAD_LEN_MAX}"
            ),
        };
    }
    let total_len = RECORD_HEADER_LEN + payload_len;
    if bytes.len() < total_len {
        return Frame::Incomplete {
            needed_bytes: total_len,
        };
    }
    let stored_crc = read_u32(&bytes[RECORD_CRC_OFFSET..]);
    let actual_crc = record_crc(
        &bytes[..RECORD_CRC_OFFSET],
        &bytes[RECORD_HEADER_LEN..total_len],
    );
    if stored_crc != actual_crc {
        return Frame::Invalid {
            reason: format!(
                "record checksum mismatch (stored {stored_crc:#010x}, computed {actual_crc:#010x})"
            ),
        };
    }
    if record_type == RECORD_TYPE_RESERVED {
        return Frame::Invalid {
            reason: "record type 0 is reserved".to_string(),
        };
    }
    Frame::Valid {
        record_type,
        payload_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let path = Path::new("wal.log");
        let header = FileHeader {
            format_version: FORMAT_VERSION,
            database_id: 0xabc,
        };
        let bytes = header.encode();
        assert_eq!(FileHeader::decode(&bytes, path).unwrap(), header);

        let mut bad_magic = bytes;
        bad_magic[0] ^= 1;
        assert!(matches!(
            FileHeader::decode(&bad_magic, path),
            Err(EngineError::NotAWal { .. })
        ));

        let mut bad_crc = bytes;
        bad_crc[DATABASE_ID_OFFSET] ^= 1;
        assert!(matches!(
            FileHeader::decode(&bad_crc, path),
            Err(EngineError::Corruption {
                offset_bytes: 0,
                ..
            })
        ));

        let future = FileHeader {
            format_version: 2,
            database_id: 1,
        }
        .encode();
        assert!(matches!(
            FileHeader::decode(&future, path),
            Err(EngineError::UnsupportedFormatVersion {
                found: 2,
                supported: 1,
                ..
            })
        ));
    }

    #[test]
    fn zero_filled_bytes_never_frame_a_record() {
        let zeros = [0u8; 64];
        assert!(matches!(inspect_frame(&zeros), Frame::Invalid { .. }));
        assert!(matches!(
            inspect_frame(&zeros[..4]),
            Frame::Incomplete { .. }
        ));
    }

    #[test]
    fn record_types_round_trip() {
        for byte in 0..=255u8 {
            if let Some(t) = RecordType::from_byte(byte) {
                assert_eq!(t as u8, byte);
                assert!(!t.name().is_empty());
            } else {
                assert!(byte == 0 || byte > 5);
            }
        }
    }
}
