//! The WAL byte layout: constants, the file header and record framing.
//!
//! This module mirrors docs/format.md; change one only together with the other.
//!
//! ```text
//! file   := header record*
//! header := magic[8] "INMEMWAL" | format_version u32 LE | database_id u128 LE | header_crc u32 LE
//! record := body_len u32 LE | record_type u8 | crc u32 LE | body[body_len]
//! v1: body = payload;                         crc = crc32(len ++ type ++ body)
//! v2: body = synced_offset LEB128 ++ payload; crc = crc32(len ++ type ++ body) ^ salt,
//!     salt = crc32(database_id as 16 LE bytes)
//! ```
//!
//! [`FrameCodec`] is the one place that knows the difference between the versions.

use crate::error::EngineError;
use std::path::Path;

/// First eight bytes of every WAL file.
pub const MAGIC: [u8; 8] = *b"INMEMWAL";
/// The format version this build writes for new logs.
pub const FORMAT_VERSION: u32 = FORMAT_VERSION_V2;
/// Format version 1: unsalted checksums, no synced offset in records. Still read, and
/// appended to in its own framing (a log never mixes versions).
pub const FORMAT_VERSION_V1: u32 = 1;
/// Format version 2: every record carries the synced offset known when it was written, and
/// every checksum is salted with the database id (docs/format.md, "Format version 2").
pub const FORMAT_VERSION_V2: u32 = 2;
/// The versions this build reads, oldest first.
pub const FORMAT_VERSIONS_SUPPORTED: [u32; 2] = [FORMAT_VERSION_V1, FORMAT_VERSION_V2];
/// Longest LEB128 encoding of a u64 (the v2 synced offset).
pub const SYNCED_OFFSET_LEN_MAX: usize = 10;

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
    /// Version 2 on: gives a namespace a small id that later records refer to.
    NamespaceDef = 6,
    /// Version 2 on: a whole committed transaction of one put (begin, write and commit in
    /// one checksummed record, so it is applied whole or not at all).
    PutTxn = 7,
    /// Version 2 on: a whole committed transaction of one delete.
    DeleteTxn = 8,
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
            6 => Some(RecordType::NamespaceDef),
            7 => Some(RecordType::PutTxn),
            8 => Some(RecordType::DeleteTxn),
            _ => None,
        }
    }

    /// True for the record types format version 1 defines (1-5).
    pub fn in_v1(self) -> bool {
        (self as u8) <= RecordType::AbortTxn as u8
    }

    /// True when reading this record commits a transaction (CommitTxn, PutTxn, DeleteTxn).
    pub fn commits(self) -> bool {
        matches!(
            self,
            RecordType::CommitTxn | RecordType::PutTxn | RecordType::DeleteTxn
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            RecordType::BeginTxn => "BeginTxn",
            RecordType::Write => "Write",
            RecordType::Delete => "Delete",
            RecordType::CommitTxn => "CommitTxn",
            RecordType::AbortTxn => "AbortTxn",
            RecordType::NamespaceDef => "NamespaceDef",
            RecordType::PutTxn => "PutTxn",
            RecordType::DeleteTxn => "DeleteTxn",
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
        if !FORMAT_VERSIONS_SUPPORTED.contains(&format_version) {
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

#[cfg(test)]
thread_local! {
    /// Payload bytes this thread has checksummed (tests of scan costs read it).
    pub(crate) static CHECKSUMMED_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The checksum of a format-version-1 record: covers the length and type bytes, then the
/// payload. (Version 2 salts it: [`FrameCodec::crc`].)
pub fn record_crc(len_and_type: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(len_and_type.len(), RECORD_LEN_LEN + RECORD_TYPE_LEN);
    // `Hasher::new` detects CPU features on every call (~110 instructions, as much as
    // checksumming a small record); a clone of one detected hasher skips that.
    static DETECTED: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    let mut hasher = DETECTED.get_or_init(crc32fast::Hasher::new).clone();
    #[cfg(test)]
    CHECKSUMMED_BYTES.with(|n| n.set(n.get() + payload.len() as u64));
    hasher.update(len_and_type);
    hasher.update(payload);
    hasher.finalize()
}

/// How the records of one log are framed: the format version's checksum and body layout.
///
/// Version 1: the body is the payload, the checksum plain crc32. Version 2: the body starts
/// with the log's synced offset when the record was written (LEB128), and the checksum is
/// XORed with a salt derived from the database id, so records of another database (or a
/// value holding one) never pass for records of this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    format_version: u32,
    salt: u32,
}

impl FrameCodec {
    /// Format version 1 framing.
    pub const V1: FrameCodec = FrameCodec {
        format_version: FORMAT_VERSION_V1,
        salt: 0,
    };

    /// Format version 2 framing for the database `database_id`.
    pub fn v2(database_id: u128) -> FrameCodec {
        FrameCodec {
            format_version: FORMAT_VERSION_V2,
            salt: crc32fast::hash(&database_id.to_le_bytes()),
        }
    }

    /// The framing a (validated) file header announces.
    pub fn for_header(header: &FileHeader) -> FrameCodec {
        match header.format_version {
            FORMAT_VERSION_V1 => FrameCodec::V1,
            version => {
                assert_eq!(
                    version, FORMAT_VERSION_V2,
                    "header versions are validated on decode"
                );
                FrameCodec::v2(header.database_id)
            }
        }
    }

    /// The framing of the WAL image `image` (a whole file or at least its header), or
    /// `None` when its header does not decode.
    pub fn for_image(image: &[u8]) -> Option<FrameCodec> {
        let header: &[u8; HEADER_LEN] = image.get(..HEADER_LEN)?.try_into().ok()?;
        FileHeader::decode(header, Path::new(""))
            .ok()
            .map(|h| FrameCodec::for_header(&h))
    }

    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// True when records carry the synced offset (format version 2 on).
    pub fn carries_synced_offset(&self) -> bool {
        self.format_version >= FORMAT_VERSION_V2
    }

    /// The record type `byte` names in this format version (types 6-8 exist from version 2
    /// on; in a version 1 log they are unknown types).
    pub fn record_type(&self, byte: u8) -> Option<RecordType> {
        RecordType::from_byte(byte).filter(|t| self.carries_synced_offset() || t.in_v1())
    }

    /// The salt XORed into every checksum (0 for version 1).
    pub fn salt(&self) -> u32 {
        self.salt
    }

    /// The checksum stored in a record with these length-and-type bytes and this body.
    #[inline]
    pub fn crc(&self, len_and_type: &[u8], body: &[u8]) -> u32 {
        record_crc(len_and_type, body) ^ self.salt
    }

    /// Bytes the body spends before the payload for a record written when the log was
    /// synced up to `synced_offset_bytes`.
    pub fn body_prefix_len(&self, synced_offset_bytes: u64) -> usize {
        if self.carries_synced_offset() {
            leb128_len(synced_offset_bytes)
        } else {
            0
        }
    }

    /// Judges the frame that starts at `bytes[0]`, which lies at file offset
    /// `offset_bytes`. `bytes` holds everything up to the end of the file that is currently
    /// known, or at least one whole record.
    #[inline]
    pub fn inspect(&self, offset_bytes: u64, bytes: &[u8]) -> Frame {
        match self.judge(offset_bytes, bytes) {
            Judged::Valid(frame) => frame,
            Judged::Incomplete { needed_bytes } => Frame::Incomplete { needed_bytes },
            Judged::Invalid(why) => Frame::Invalid {
                reason: why.describe(offset_bytes),
            },
        }
    }

    /// What the header starting at `bytes[0]` (file offset `offset_bytes`) claims, read
    /// from the header and as much of the body as `bytes` holds: `Some((kind, record_len))`
    /// when its type is known in this format version, its length is within the format's
    /// limit, and (version 2) its synced offset is in range, or not yet in `bytes` whole.
    /// A scan that reads records in windows asks this before it reads the rest of a
    /// candidate record.
    #[inline]
    pub fn claimed_header(&self, offset_bytes: u64, bytes: &[u8]) -> Option<(RecordType, usize)> {
        let (kind, body_len, _) = self.claim(offset_bytes, bytes)?;
        Some((kind, RECORD_HEADER_LEN + body_len))
    }

    /// What the frame starting at `bytes[0]` (file offset `offset_bytes`) claims to be,
    /// read without its checksum: [`FrameCodec::claimed_header`], with the whole record in
    /// `bytes`. Every valid frame passes; most damaged or foreign byte offsets do not.
    /// Scans that try every byte offset ask this first: a checksum costs the claimed
    /// length, up to 16 MiB, so checking it at every offset whose length field happens to
    /// fit made a scan of a multi-MiB torn tail quadratic.
    #[inline]
    pub fn claimed_frame(&self, offset_bytes: u64, bytes: &[u8]) -> Option<ClaimedFrame> {
        let (kind, body_len, prefix_len) = self.claim(offset_bytes, bytes)?;
        if bytes.len() < RECORD_HEADER_LEN + body_len {
            return None;
        }
        // With the whole body in `bytes`, a version 2 synced offset was read (or refused).
        let prefix_len = prefix_len.unwrap_or(0);
        Some(ClaimedFrame {
            kind,
            payload_start: RECORD_HEADER_LEN + prefix_len,
            payload_len: body_len - prefix_len,
        })
    }

    /// The claim behind [`FrameCodec::claimed_header`]: the kind, the body's length, and
    /// (version 2) the synced offset's encoded length once `bytes` holds it (`Some(0)` in
    /// version 1).
    #[inline]
    fn claim(&self, offset_bytes: u64, bytes: &[u8]) -> Option<(RecordType, usize, Option<usize>)> {
        if bytes.len() < RECORD_HEADER_LEN {
            return None;
        }
        let kind = self.record_type(bytes[RECORD_TYPE_OFFSET])?;
        let body_len = read_u32(&bytes[RECORD_LEN_OFFSET..]) as usize;
        if body_len > RECORD_PAYLOAD_LEN_MAX {
            return None;
        }
        if !self.carries_synced_offset() {
            return Some((kind, body_len, Some(0)));
        }
        let body = &bytes[RECORD_HEADER_LEN..bytes.len().min(RECORD_HEADER_LEN + body_len)];
        match read_leb128(body) {
            Some((synced_offset_bytes, prefix_len)) => {
                if synced_offset_bytes > offset_bytes || synced_offset_bytes < HEADER_LEN as u64 {
                    return None;
                }
                Some((kind, body_len, Some(prefix_len)))
            }
            // A bad encoding, or one cut short by the body's end: not a frame.
            None if body.len() == body_len || body.len() >= SYNCED_OFFSET_LEN_MAX => None,
            // The rest of the encoding is not in `bytes` yet.
            None => Some((kind, body_len, None)),
        }
    }

    /// [`FrameCodec::inspect`] without building a reason for an invalid frame: scans that
    /// try every byte offset of damaged or foreign bytes call this (building the reason
    /// string at each offset cost most of such a scan). Frames whose type is unknown in
    /// this version count as not valid here.
    #[inline]
    pub fn valid_frame(&self, offset_bytes: u64, bytes: &[u8]) -> Option<Frame> {
        if bytes.len() >= RECORD_HEADER_LEN && self.claimed_frame(offset_bytes, bytes).is_none() {
            return None;
        }
        match self.judge(offset_bytes, bytes) {
            Judged::Valid(frame) => Some(frame),
            _ => None,
        }
    }

    #[inline]
    fn judge(&self, offset_bytes: u64, bytes: &[u8]) -> Judged {
        if bytes.len() < RECORD_HEADER_LEN {
            return Judged::Incomplete {
                needed_bytes: RECORD_HEADER_LEN,
            };
        }
        let body_len = read_u32(&bytes[RECORD_LEN_OFFSET..]) as usize;
        let record_type = bytes[RECORD_TYPE_OFFSET];
        if body_len > RECORD_PAYLOAD_LEN_MAX {
            return Judged::Invalid(Invalidity::TooLong { body_len });
        }
        let total_len = RECORD_HEADER_LEN + body_len;
        if bytes.len() < total_len {
            return Judged::Incomplete {
                needed_bytes: total_len,
            };
        }
        let stored = read_u32(&bytes[RECORD_CRC_OFFSET..]);
        let body = &bytes[RECORD_HEADER_LEN..total_len];
        let computed = self.crc(&bytes[..RECORD_CRC_OFFSET], body);
        if stored != computed {
            return Judged::Invalid(Invalidity::Checksum { stored, computed });
        }
        if record_type == RECORD_TYPE_RESERVED {
            return Judged::Invalid(Invalidity::ReservedType);
        }
        if !self.carries_synced_offset() {
            return Judged::Valid(Frame::Valid {
                record_type,
                payload_start: RECORD_HEADER_LEN,
                payload_len: body_len,
                synced_offset_bytes: None,
            });
        }
        let Some((synced_offset_bytes, prefix_len)) = read_leb128(body) else {
            return Judged::Invalid(Invalidity::SyncedOffsetEncoding);
        };
        // A checksummed record claiming a sync beyond its own start was written wrong; so
        // was one claiming less than the header, which is synced when the file is created.
        if synced_offset_bytes > offset_bytes || synced_offset_bytes < HEADER_LEN as u64 {
            return Judged::Invalid(Invalidity::SyncedOffsetRange {
                synced_offset_bytes,
            });
        }
        Judged::Valid(Frame::Valid {
            record_type,
            payload_start: RECORD_HEADER_LEN + prefix_len,
            payload_len: body_len - prefix_len,
            synced_offset_bytes: Some(synced_offset_bytes),
        })
    }
}

/// A frame's shape as its header and synced offset claim it, before its checksum is
/// checked ([`FrameCodec::claimed_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimedFrame {
    pub kind: RecordType,
    /// The payload is `bytes[payload_start..payload_start + payload_len]`.
    pub payload_start: usize,
    pub payload_len: usize,
}

/// A frame judged without formatting anything.
enum Judged {
    Valid(Frame),
    Incomplete { needed_bytes: usize },
    Invalid(Invalidity),
}

/// Why a frame is invalid, as values (the message is built only when asked for).
#[derive(Debug, Clone, Copy)]
enum Invalidity {
    TooLong { body_len: usize },
    Checksum { stored: u32, computed: u32 },
    ReservedType,
    SyncedOffsetEncoding,
    SyncedOffsetRange { synced_offset_bytes: u64 },
}

impl Invalidity {
    #[cold]
    fn describe(self, offset_bytes: u64) -> String {
        match self {
            Invalidity::TooLong { body_len } => {
                format!("record length {body_len} exceeds the maximum {RECORD_PAYLOAD_LEN_MAX}")
            }
            Invalidity::Checksum { stored, computed } => format!(
                "record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Invalidity::ReservedType => "record type 0 is reserved".to_string(),
            Invalidity::SyncedOffsetEncoding => {
                "record's synced offset is not a valid LEB128 u64".to_string()
            }
            Invalidity::SyncedOffsetRange {
                synced_offset_bytes,
            } => format!(
                "record at offset {offset_bytes} claims synced offset {synced_offset_bytes}, \
                 outside [{HEADER_LEN}, {offset_bytes}]"
            ),
        }
    }
}

/// Bytes of the LEB128 encoding of `value` (7 bits per byte, low first).
pub fn leb128_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends the LEB128 encoding of `value`.
pub fn put_leb128(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 u64 from the start of `bytes`: the value and the bytes it took, or
/// `None` when the encoding runs off the end, is longer than 10 bytes, overflows, or is not
/// the shortest one (a last byte of zero after the first): each value has one encoding, so
/// a record re-encodes to exactly its bytes.
#[inline]
pub fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    // Most of a record's varints (ids, tags, lengths) are one byte: no loop for them.
    if let Some(&first) = bytes.first() {
        if first & 0x80 == 0 {
            return Some((u64::from(first), 1));
        }
    }
    // Up to 8 bytes with 8 readable (timestamps, versions, offsets): one word, no loop.
    if let Some(word) = bytes.first_chunk::<8>() {
        let word = u64::from_le_bytes(*word);
        let ends = !word & 0x8080_8080_8080_8080;
        if ends != 0 {
            let len = (ends.trailing_zeros() / 8 + 1) as usize;
            // Not the shortest encoding: a last byte of zero after the first.
            if len > 1 && bytes[len - 1] == 0 {
                return None;
            }
            let kept = if len == 8 {
                word
            } else {
                word & ((1u64 << (8 * len)) - 1)
            };
            // The 7-bit groups, packed: pairs, then quads, then the two halves.
            let x = kept & 0x7f7f_7f7f_7f7f_7f7f;
            let x = ((x & 0x7f00_7f00_7f00_7f00) >> 1) | (x & 0x007f_007f_007f_007f);
            let x = ((x & 0x3fff_0000_3fff_0000) >> 2) | (x & 0x0000_3fff_0000_3fff);
            let x = ((x & 0x0fff_ffff_0000_0000) >> 4) | (x & 0x0000_0000_0fff_ffff);
            return Some((x, len));
        }
    }
    read_leb128_bytewise(bytes)
}

/// `read_leb128` a byte at a time (encodings of 9 or 10 bytes, and the end of a buffer).
fn read_leb128_bytewise(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (idx, byte) in bytes.iter().take(SYNCED_OFFSET_LEN_MAX).enumerate() {
        let low = u64::from(byte & 0x7f);
        let shift = 7 * idx as u32;
        if shift == 63 && low > 1 {
            return None;
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            if idx > 0 && *byte == 0 {
                return None;
            }
            return Some((value, idx + 1));
        }
    }
    None
}

/// What the bytes at one offset are, judged from the frame alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete record whose checksum matches. Its payload is
    /// `bytes[payload_start..payload_start + payload_len]`; the record ends at
    /// `payload_start + payload_len`.
    Valid {
        record_type: u8,
        payload_start: usize,
        payload_len: usize,
        /// The synced offset the record carries (format version 2 on).
        synced_offset_bytes: Option<u64>,
    },
    /// The bytes end before the frame does (fewer than `needed_bytes` are available).
    Incomplete { needed_bytes: usize },
    /// The frame is damaged: zero type, oversized length, checksum mismatch, or (version 2)
    /// an impossible synced offset.
    Invalid { reason: String },
}

impl Frame {
    /// The whole record's length, when the frame is valid.
    pub fn record_len(&self) -> Option<usize> {
        match self {
            Frame::Valid {
                payload_start,
                payload_len,
                ..
            } => Some(payload_start + payload_len),
            _ => None,
        }
    }
}

/// Judges a format-version-1 frame at `bytes[0]` ([`FrameCodec::inspect`] with
/// [`FrameCodec::V1`]). Tools and tests that build version 1 images use it.
pub fn inspect_frame(bytes: &[u8]) -> Frame {
    FrameCodec::V1.inspect(HEADER_LEN as u64, bytes)
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
            format_version: 3,
            database_id: 1,
        }
        .encode();
        assert!(matches!(
            FileHeader::decode(&future, path),
            Err(EngineError::UnsupportedFormatVersion {
                found: 3,
                supported: FORMAT_VERSION,
                ..
            })
        ));
        let old = FileHeader {
            format_version: FORMAT_VERSION_V1,
            database_id: 1,
        };
        assert_eq!(FileHeader::decode(&old.encode(), path).unwrap(), old);
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

    proptest::proptest! {
        /// The word-at-a-time reading agrees with the byte-at-a-time one on any bytes:
        /// values, lengths and refusals (cut short, not shortest, too long, overflow).
        #[test]
        fn leb128_word_reading_equals_bytewise(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![proptest::num::u8::ANY, 0x80u8..=0xff, proptest::strategy::Just(0u8)],
                0..14,
            ),
        ) {
            proptest::prop_assert_eq!(read_leb128(&bytes), read_leb128_bytewise(&bytes));
        }
    }

    #[test]
    fn leb128_round_trips_and_rejects_overlong() {
        for value in [0, 1, 127, 128, 300, 1 << 32, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            put_leb128(&mut out, value);
            assert_eq!(out.len(), leb128_len(value), "{value}");
            assert_eq!(read_leb128(&out), Some((value, out.len())));
            assert_eq!(read_leb128(&out[..out.len() - 1]), None, "cut short");
        }
        assert_eq!(read_leb128(&[0xff; 11]), None, "longer than 10 bytes");
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert_eq!(read_leb128(&overflow), None, "more than 64 bits");
        assert_eq!(
            read_leb128(&[0x80, 0x00]),
            None,
            "zero in two bytes is not the shortest"
        );
        assert_eq!(read_leb128(&[0x00]), Some((0, 1)));
        // Every length, with bytes after the value (the word path reads 8 at once).
        for shift in 0..64 {
            for value in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift] {
                let mut out = Vec::new();
                put_leb128(&mut out, value);
                let len = out.len();
                out.extend_from_slice(&[0xff; 9]);
                assert_eq!(read_leb128(&out), Some((value, len)), "{value}");
            }
        }
    }

    /// A version 2 checksum is salted by the database id: the same record framed for one
    /// database is damage in another, and the v1 framing of it is damage in both.
    #[test]
    fn salted_checksums_tell_databases_apart() {
        let (a, b) = (FrameCodec::v2(1), FrameCodec::v2(2));
        assert_ne!(a.salt(), b.salt());
        let mut record = vec![0u8; RECORD_HEADER_LEN];
        put_leb128(&mut record, 32);
        record.extend_from_slice(b"payload");
        let body_len = (record.len() - RECORD_HEADER_LEN) as u32;
        record[..4].copy_from_slice(&body_len.to_le_bytes());
        record[4] = 2;
        let crc = a.crc(&record[..5], &record[RECORD_HEADER_LEN..]);
        record[5..9].copy_from_slice(&crc.to_le_bytes());
        match a.inspect(100, &record) {
            Frame::Valid {
                payload_start,
                payload_len,
                synced_offset_bytes,
                ..
            } => {
                assert_eq!(
                    &record[payload_start..payload_start + payload_len],
                    b"payload"
                );
                assert_eq!(synced_offset_bytes, Some(32));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(b.inspect(100, &record), Frame::Invalid { .. }));
        assert!(matches!(inspect_frame(&record), Frame::Invalid { .. }));
        // A synced offset beyond the record's own start is impossible.
        assert!(matches!(a.inspect(31, &record), Frame::Invalid { .. }));
    }

    /// The header-only claim agrees with the whole-frame claim once the record is there,
    /// and before that judges what the bytes it has hold: a header alone passes, a synced
    /// offset out of range (or a type or length no frame has) does not.
    #[test]
    fn a_header_claim_needs_only_the_bytes_it_has() {
        let codec = FrameCodec::v2(1);
        let mut record = vec![0u8; RECORD_HEADER_LEN];
        put_leb128(&mut record, 4096);
        record.extend_from_slice(&[7u8; 40]);
        let body_len = (record.len() - RECORD_HEADER_LEN) as u32;
        record[..4].copy_from_slice(&body_len.to_le_bytes());
        record[4] = 2;
        let whole = codec.claimed_frame(5000, &record).unwrap();
        assert_eq!(
            codec.claimed_header(5000, &record),
            Some((whole.kind, record.len()))
        );
        // Only the header: nothing to refuse yet. The synced offset's first byte: still
        // unreadable. Both bytes of it: beyond offset 4000, so not a frame there.
        assert!(codec
            .claimed_header(4000, &record[..RECORD_HEADER_LEN])
            .is_some());
        assert!(codec
            .claimed_header(4000, &record[..RECORD_HEADER_LEN + 1])
            .is_some());
        assert!(codec
            .claimed_header(4000, &record[..RECORD_HEADER_LEN + 2])
            .is_none());
        assert!(codec
            .claimed_frame(5000, &record[..record.len() - 1])
            .is_none());
        let mut bad = record.clone();
        bad[4] = 0;
        assert!(codec.claimed_header(5000, &bad).is_none());
        bad[4] = 2;
        bad[..4].copy_from_slice(&(RECORD_PAYLOAD_LEN_MAX as u32 + 1).to_le_bytes());
        assert!(codec
            .claimed_header(5000, &bad[..RECORD_HEADER_LEN])
            .is_none());
    }

    #[test]
    fn record_types_round_trip() {
        for byte in 0..=255u8 {
            if let Some(t) = RecordType::from_byte(byte) {
                assert_eq!(t as u8, byte);
                assert!(!t.name().is_empty());
            } else {
                assert!(byte == 0 || byte > 8);
            }
        }
    }
}
