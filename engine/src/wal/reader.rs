//! Streaming WAL reader: yields records with their offsets and ends with a typed reason.
//!
//! Memory is bounded by the read buffer (grown only to hold the largest record), never by
//! the length of the log. When a record cannot be read, the reader decides between a torn
//! tail and corruption by looking for any valid record after the damaged one: a crash can
//! only tear the end of the log, so a valid record after the damage means committed
//! history was damaged (docs/faults.md C1-C3), and nothing after the damage is ever yielded.

use std::path::{Path, PathBuf};

use super::entry::{DecodeError, NamespaceCache, WALEntry};
use super::format::{
    read_u32, FileHeader, Frame, FrameCodec, RecordType, HEADER_LEN, RECORD_HEADER_LEN,
    RECORD_PAYLOAD_LEN_MAX,
};
use super::storage::WalStorage;
use crate::error::{EngineError, Result};

/// Default read buffer size. Records larger than this grow the buffer for that record.
pub const READ_BUFFER_LEN_DEFAULT: usize = 1024 * 1024;
/// Window used when scanning past damage for a later valid record.
const SCAN_WINDOW_LEN: usize = 4 * 1024 * 1024;

/// One record as read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// File offset of the record's first byte (its length field).
    pub offset_bytes: u64,
    /// Length of the whole record, frame header included.
    pub len_bytes: u64,
    pub entry: WALEntry,
}

/// One record's frame, checksum verified, payload not decoded (see
/// [`WalReader::next_frame`]).
#[derive(Debug, Clone)]
pub struct FrameRef<'a> {
    /// File offset of the record's first byte (its length field).
    pub offset_bytes: u64,
    /// Length of the whole record, frame header included.
    pub len_bytes: u64,
    pub kind: RecordType,
    /// The synced offset the record carries (format version 2 on).
    pub synced_offset_bytes: Option<u64>,
    pub payload: &'a [u8],
}

/// A valid frame at the read position: its type, where its payload starts within the
/// record, the payload's length and the synced offset it carries.
#[derive(Debug, Clone, Copy)]
struct ValidFrame {
    kind: RecordType,
    payload_start: usize,
    payload_len: usize,
    synced_offset_bytes: Option<u64>,
}

impl ValidFrame {
    fn record_len(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// Why reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// Every byte up to `end_offset_bytes` (the file length) is a valid record.
    Clean { end_offset_bytes: u64 },
    /// The bytes from `offset_bytes` to the end of the file are not a complete valid record
    /// and no valid record follows them: the expected aftermath of a crash mid-append.
    ///
    /// From format version 2 on, valid records may follow the damage: a power loss keeps
    /// unsynced pages in any order. They are part of the torn tail when none of them
    /// carries a synced offset beyond the damage (`valid_records_after` counts them).
    TornTail {
        offset_bytes: u64,
        torn_bytes: u64,
        zero_filled: bool,
        reason: String,
        valid_records_after: u64,
    },
    /// The record at `offset_bytes` is damaged and a valid record follows at
    /// `next_valid_offset_bytes` (format version 2: one whose synced offset proves the
    /// damaged bytes had been synced): committed history is damaged.
    Corruption {
        offset_bytes: u64,
        next_valid_offset_bytes: u64,
        reason: String,
    },
}

impl ReadEnd {
    /// The end at a record whose checksum is valid but whose payload does not decode: it
    /// was written wrong, not torn, so it is never a tail to cut silently. The next record
    /// starts right after it.
    pub fn undecodable(
        offset_bytes: u64,
        len_bytes: u64,
        kind: RecordType,
        error: &DecodeError,
    ) -> ReadEnd {
        ReadEnd::Corruption {
            offset_bytes,
            next_valid_offset_bytes: offset_bytes + len_bytes,
            reason: format!(
                "{} record with a valid checksum does not decode: {error}",
                kind.name()
            ),
        }
    }

    /// Offset up to which the log is valid.
    pub fn valid_end_offset_bytes(&self) -> u64 {
        match self {
            ReadEnd::Clean { end_offset_bytes } => *end_offset_bytes,
            ReadEnd::TornTail { offset_bytes, .. } | ReadEnd::Corruption { offset_bytes, .. } => {
                *offset_bytes
            }
        }
    }
}

impl std::fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadEnd::Clean { end_offset_bytes } => write!(f, "clean end at offset {end_offset_bytes}"),
            ReadEnd::TornTail { offset_bytes, torn_bytes, zero_filled, reason, valid_records_after } => {
                write!(
                    f,
                    "torn tail at offset {offset_bytes}: {torn_bytes} bytes{} ({reason})",
                    if *zero_filled { ", all zero" } else { "" }
                )?;
                if *valid_records_after > 0 {
                    write!(
                        f,
                        "; {valid_records_after} valid records after it, none written after a sync that covered it"
                    )?;
                }
                Ok(())
            }
            ReadEnd::Corruption { offset_bytes, next_valid_offset_bytes, reason } => write!(
                f,
                "corruption at offset {offset_bytes}: {reason}; a valid record follows at offset {next_valid_offset_bytes}"
            ),
        }
    }
}

/// Streams the records of one WAL file, starting after its header.
#[derive(Debug)]
pub struct WalReader<'a> {
    storage: &'a dyn WalStorage,
    path: PathBuf,
    codec: FrameCodec,
    file_len_bytes: u64,
    buf: Vec<u8>,
    buf_offset_bytes: u64,
    pos: usize,
    filled: usize,
    namespaces: NamespaceCache,
    end: Option<ReadEnd>,
}

impl<'a> WalReader<'a> {
    /// A reader over `storage` from the first record to the file's current length. The
    /// file's header is read and validated first; it says how records are framed.
    pub fn new(storage: &'a dyn WalStorage, path: &Path) -> Result<WalReader<'a>> {
        WalReader::with_buffer_len(storage, path, READ_BUFFER_LEN_DEFAULT)
    }

    /// Like [`WalReader::new`] with a chosen initial read buffer size (tests use small ones
    /// to put record boundaries across buffer refills).
    pub fn with_buffer_len(
        storage: &'a dyn WalStorage,
        path: &Path,
        buffer_len: usize,
    ) -> Result<WalReader<'a>> {
        let mut header = [0u8; HEADER_LEN];
        read_exact_at(storage, 0, &mut header)
            .map_err(|e| EngineError::io(format!("reading the header of {}", path.display()), e))?;
        let codec = FrameCodec::for_header(&FileHeader::decode(&header, path)?);
        WalReader::with_codec(storage, path, codec, buffer_len)
    }

    /// A reader that frames records with `codec` (the caller validated the header).
    pub fn with_codec(
        storage: &'a dyn WalStorage,
        path: &Path,
        codec: FrameCodec,
        buffer_len: usize,
    ) -> Result<WalReader<'a>> {
        assert!(
            buffer_len >= RECORD_HEADER_LEN,
            "read buffer smaller than a record header"
        );
        let file_len_bytes = storage
            .len_bytes()
            .map_err(|e| EngineError::io(format!("reading the length of {}", path.display()), e))?;
        // No bigger than the records can be: a small log's open does not zero (and fault in)
        // a whole 1 MiB buffer. `fill` grows it when a record needs more.
        let records_len = file_len_bytes.saturating_sub(HEADER_LEN as u64);
        let buffer_len = buffer_len
            .min(usize::try_from(records_len).unwrap_or(usize::MAX))
            .max(RECORD_HEADER_LEN);
        Ok(WalReader {
            storage,
            path: path.to_path_buf(),
            codec,
            file_len_bytes,
            buf: vec![0u8; buffer_len],
            buf_offset_bytes: HEADER_LEN as u64,
            pos: 0,
            filled: 0,
            namespaces: NamespaceCache::default(),
            end: None,
        })
    }

    /// The namespaces decoded so far (with the NamespaceDef ids the log defined).
    pub fn namespaces(&self) -> &NamespaceCache {
        &self.namespaces
    }

    /// How this log frames its records.
    pub fn codec(&self) -> FrameCodec {
        self.codec
    }

    /// Length of the file when the reader was created.
    pub fn file_len_bytes(&self) -> u64 {
        self.file_len_bytes
    }

    /// Why reading stopped; `None` until [`WalReader::next_record`] has returned `Ok(None)`.
    pub fn end(&self) -> Option<&ReadEnd> {
        self.end.as_ref()
    }

    /// Makes at least `need` bytes available from `pos`, unless the file ends first.
    /// Returns how many bytes are available.
    fn fill(&mut self, need: usize) -> Result<usize> {
        let available = self.filled - self.pos;
        if available >= need {
            return Ok(available);
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.buf_offset_bytes += self.pos as u64;
        self.filled = available;
        self.pos = 0;
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        let file_remaining = self.file_len_bytes.saturating_sub(self.buf_offset_bytes);
        let target = (self.buf.len() as u64).min(file_remaining) as usize;
        while self.filled < target {
            let offset = self.buf_offset_bytes + self.filled as u64;
            let n = self
                .storage
                .read_at(offset, &mut self.buf[self.filled..target])
                .map_err(|e| {
                    EngineError::io(
                        format!("reading {} at offset {offset}", self.path.display()),
                        e,
                    )
                })?;
            if n == 0 {
                // The file shrank under us; treat what we have as the end.
                self.file_len_bytes = offset;
                break;
            }
            self.filled += n;
        }
        Ok(self.filled - self.pos)
    }

    /// The next record, or `Ok(None)` at the end (then [`WalReader::end`] says why).
    ///
    /// Errors are reserved for what recovery must not paper over: I/O failures and a
    /// checksummed record of a type this build does not know.
    pub fn next_record(&mut self) -> Result<Option<WalRecord>> {
        let Some(frame) = self.next_valid_frame()? else {
            return Ok(None);
        };
        let (kind, payload_len) = (frame.kind, frame.payload_len);
        let offset_bytes = self.buf_offset_bytes + self.pos as u64;
        let start = self.pos + frame.payload_start;
        let len_bytes = frame.record_len() as u64;
        let payload = &self.buf[start..start + payload_len];
        match WALEntry::decode_payload(kind, payload, &mut self.namespaces) {
            Ok(entry) => {
                self.pos = start + payload_len;
                Ok(Some(WalRecord {
                    offset_bytes,
                    len_bytes,
                    entry,
                }))
            }
            Err(e) => {
                self.end = Some(ReadEnd::undecodable(offset_bytes, len_bytes, kind, &e));
                Ok(None)
            }
        }
    }

    /// The next record's frame, checksum verified but payload not decoded, or `Ok(None)` at
    /// the end (then [`WalReader::end`] says why). The payload borrows the read buffer until
    /// the next call.
    ///
    /// For a caller that decodes elsewhere (replay decodes on another thread). Such a
    /// caller owns the rule that a checksummed record whose payload does not decode is
    /// corruption: [`ReadEnd::undecodable`] builds the end this reader would have reported,
    /// and nothing after that record may be used.
    #[inline]
    pub fn next_frame(&mut self) -> Result<Option<FrameRef<'_>>> {
        let Some(frame) = self.next_valid_frame()? else {
            return Ok(None);
        };
        let offset_bytes = self.buf_offset_bytes + self.pos as u64;
        let start = self.pos + frame.payload_start;
        self.pos = start + frame.payload_len;
        Ok(Some(FrameRef {
            offset_bytes,
            len_bytes: frame.record_len() as u64,
            kind: frame.kind,
            synced_offset_bytes: frame.synced_offset_bytes,
            payload: &self.buf[start..start + frame.payload_len],
        }))
    }

    /// Positions at the next valid frame and returns its type and payload length, or sets
    /// the end and returns `None`.
    #[inline]
    fn next_valid_frame(&mut self) -> Result<Option<ValidFrame>> {
        match self.buffered_valid_record() {
            Some(frame) => Ok(Some(frame)),
            None => self.next_valid_frame_slow(),
        }
    }

    /// The type and payload length of the record at the read position when all of it is
    /// already buffered and its frame is valid; `None` sends the caller to the slow path,
    /// which judges the same bytes again (and reads, classifies damage, reports errors).
    #[inline]
    fn buffered_valid_record(&self) -> Option<ValidFrame> {
        if self.end.is_some() {
            return None;
        }
        let buffered = &self.buf[self.pos..self.filled];
        if buffered.len() < RECORD_HEADER_LEN {
            return None;
        }
        let body_len = read_u32(buffered) as usize;
        if body_len > buffered.len() - RECORD_HEADER_LEN {
            return None;
        }
        let offset_bytes = self.buf_offset_bytes + self.pos as u64;
        valid_frame(
            self.codec,
            self.codec
                .inspect(offset_bytes, &buffered[..RECORD_HEADER_LEN + body_len]),
        )
    }

    #[inline(never)]
    fn next_valid_frame_slow(&mut self) -> Result<Option<ValidFrame>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let offset_bytes = self.buf_offset_bytes + self.pos as u64;
        if offset_bytes >= self.file_len_bytes {
            self.end = Some(ReadEnd::Clean {
                end_offset_bytes: offset_bytes,
            });
            return Ok(None);
        }
        let available = self.fill(RECORD_HEADER_LEN)?;
        if available == 0 && offset_bytes >= self.file_len_bytes {
            // The file shrank to exactly this record boundary while we read it: a clean
            // end, not a torn tail of zero bytes.
            self.end = Some(ReadEnd::Clean {
                end_offset_bytes: offset_bytes,
            });
            return Ok(None);
        }
        let frame = if available < RECORD_HEADER_LEN {
            Frame::Incomplete {
                needed_bytes: RECORD_HEADER_LEN,
            }
        } else {
            let payload_len = read_u32(&self.buf[self.pos..]) as usize;
            if payload_len <= RECORD_PAYLOAD_LEN_MAX {
                self.fill(RECORD_HEADER_LEN + payload_len)?;
            }
            self.codec
                .inspect(offset_bytes, &self.buf[self.pos..self.filled])
        };
        match frame {
            Frame::Valid { record_type, .. } => match valid_frame(self.codec, frame.clone()) {
                Some(valid) => Ok(Some(valid)),
                None => Err(EngineError::UnknownRecordType {
                    path: self.path.clone(),
                    offset_bytes,
                    record_type,
                }),
            },
            Frame::Incomplete { needed_bytes } => {
                let reason = format!(
                    "record needs {needed_bytes} bytes, the file ends {} bytes after its start",
                    self.file_len_bytes - offset_bytes
                );
                self.end = Some(self.classify_damage(offset_bytes, reason)?);
                Ok(None)
            }
            Frame::Invalid { reason } => {
                self.end = Some(self.classify_damage(offset_bytes, reason)?);
                Ok(None)
            }
        }
    }

    fn classify_damage(&self, offset_bytes: u64, reason: String) -> Result<ReadEnd> {
        let scan = scan_after_damage(
            self.storage,
            &self.path,
            self.codec,
            offset_bytes,
            self.file_len_bytes,
        )?;
        Ok(match scan.proof {
            Some(proof) => ReadEnd::Corruption {
                offset_bytes,
                next_valid_offset_bytes: proof.offset_bytes,
                reason: match proof.synced_offset_bytes {
                    Some(synced) => format!(
                        "{reason}; the valid record at offset {} was written after a sync had \
                         covered {synced} bytes, so the damaged bytes were synced",
                        proof.offset_bytes
                    ),
                    None => reason,
                },
            },
            None => ReadEnd::TornTail {
                offset_bytes,
                torn_bytes: self.file_len_bytes - offset_bytes,
                zero_filled: scan.all_zero,
                reason,
                valid_records_after: scan.valid_records_after,
            },
        })
    }
}

/// The frame's type, payload position and synced offset when it is valid and of a type
/// this build knows.
#[inline]
fn valid_frame(codec: FrameCodec, frame: Frame) -> Option<ValidFrame> {
    match frame {
        Frame::Valid {
            record_type,
            payload_start,
            payload_len,
            synced_offset_bytes,
        } => Some(ValidFrame {
            kind: codec.record_type(record_type)?,
            payload_start,
            payload_len,
            synced_offset_bytes,
        }),
        _ => None,
    }
}

/// A valid record after damage that proves the damaged bytes were part of committed
/// history: any valid record in format version 1; in version 2, one whose synced offset
/// lies beyond the damage.
struct DamageProof {
    offset_bytes: u64,
    synced_offset_bytes: Option<u64>,
}

struct DamageScan {
    proof: Option<DamageProof>,
    all_zero: bool,
    /// Valid records after the damage that prove nothing (version 2): unsynced pages that
    /// reached the disk while earlier ones did not.
    valid_records_after: u64,
}

/// Looks for a valid, decodable record starting anywhere after `damage_offset_bytes` that
/// proves the damage lies in synced history (see [`DamageProof`]). In format version 2 the
/// scan goes on after a record that proves nothing, from the end of that record.
fn scan_after_damage(
    storage: &dyn WalStorage,
    path: &Path,
    codec: FrameCodec,
    damage_offset_bytes: u64,
    file_len_bytes: u64,
) -> Result<DamageScan> {
    let read_err = |offset: u64, e| {
        EngineError::io(
            format!(
                "scanning {} after damage at offset {offset}",
                path.display()
            ),
            e,
        )
    };
    // Preallocated space is megabytes of zeros, where no record can start: answer without
    // trying every byte offset as a record start.
    if region_is_all_zero(storage, damage_offset_bytes, file_len_bytes)
        .map_err(|e| read_err(damage_offset_bytes, e))?
    {
        return Ok(DamageScan {
            proof: None,
            all_zero: true,
            valid_records_after: 0,
        });
    }
    let mut all_zero = true;
    let mut valid_records_after = 0u64;
    let mut window = Vec::new();
    let mut window_start = damage_offset_bytes;
    // Records after damage may refer to namespaces defined before it or in the damaged
    // region: judged by their structure, any namespace id is taken as defined.
    let mut namespaces = NamespaceCache::lenient();
    let mut candidate = damage_offset_bytes + 1;
    // Bytes of the damaged record itself count towards the zero check.
    let mut zero_checked_to = damage_offset_bytes;
    while candidate < file_len_bytes {
        let window_end = window_start + window.len() as u64;
        if candidate + RECORD_HEADER_LEN as u64 > window_end && window_end < file_len_bytes {
            window_start = candidate.min(zero_checked_to);
            let len = ((file_len_bytes - window_start) as usize).min(SCAN_WINDOW_LEN);
            window.resize(len, 0);
            read_exact_at(storage, window_start, &mut window)
                .map_err(|e| read_err(window_start, e))?;
            let from = (zero_checked_to - window_start) as usize;
            all_zero &= window[from..].iter().all(|b| *b == 0);
            zero_checked_to = window_start + window.len() as u64;
        }
        let rel = (candidate - window_start) as usize;
        if rel + RECORD_HEADER_LEN > window.len() {
            break; // fewer than a header's bytes remain in the file
        }
        let header = &window[rel..];
        let zeros = super::scan::zero_type_run_len(header);
        if zeros > 0 {
            candidate += zeros as u64;
            continue;
        }
        // The header (and a version 2 synced offset) rules most candidates out before the
        // rest of their bytes are read and checksummed.
        let claimed = codec.claimed_header(candidate, header);
        if let Some((_, total)) =
            claimed.filter(|(_, total)| candidate + *total as u64 <= file_len_bytes)
        {
            let owned;
            let bytes: &[u8] = if rel + total <= window.len() {
                &window[rel..rel + total]
            } else {
                let mut v = vec![0u8; total];
                read_exact_at(storage, candidate, &mut v).map_err(|e| read_err(candidate, e))?;
                owned = v;
                &owned
            };
            let judged = super::scan::valid_frame_at(codec, candidate, bytes);
            if let Some(frame) = judged.and_then(|f| valid_frame(codec, f)) {
                let payload = &bytes[frame.payload_start..frame.payload_start + frame.payload_len];
                if WALEntry::decode_payload(frame.kind, payload, &mut namespaces).is_ok() {
                    let proves_synced = match frame.synced_offset_bytes {
                        None => true,
                        Some(synced) => synced > damage_offset_bytes,
                    };
                    if proves_synced {
                        return Ok(DamageScan {
                            proof: Some(DamageProof {
                                offset_bytes: candidate,
                                synced_offset_bytes: frame.synced_offset_bytes,
                            }),
                            all_zero: false,
                            valid_records_after,
                        });
                    }
                    // An unsynced record that reached the disk: part of the torn tail. Go
                    // on after it (bytes inside it are not records of their own).
                    valid_records_after += 1;
                    all_zero = false;
                    candidate += frame.record_len() as u64;
                    if candidate > zero_checked_to {
                        zero_checked_to = candidate;
                        // Refill from the next candidate on.
                        window.clear();
                        window_start = candidate;
                    }
                    continue;
                }
            }
        }
        candidate += 1;
    }
    if zero_checked_to < file_len_bytes {
        let mut rest = vec![0u8; (file_len_bytes - zero_checked_to) as usize];
        read_exact_at(storage, zero_checked_to, &mut rest)
            .map_err(|e| read_err(zero_checked_to, e))?;
        all_zero &= rest.iter().all(|b| *b == 0);
    }
    Ok(DamageScan {
        proof: None,
        all_zero,
        valid_records_after,
    })
}

/// True when every byte of `[from_bytes, to_bytes)` is zero (and true for an empty range).
/// Reads windows that start at 4 KiB and double up to 1 MiB, stopping at the first
/// non-zero one: a region that is not zero (a damaged record, a WAL header) usually costs
/// one small read, a long zero run few syscalls.
pub(crate) fn region_is_all_zero(
    storage: &dyn WalStorage,
    from_bytes: u64,
    to_bytes: u64,
) -> std::io::Result<bool> {
    const WINDOW_LEN_MIN: u64 = 4 << 10;
    const WINDOW_LEN_MAX: u64 = 1 << 20;
    let mut window = Vec::new();
    let mut window_len = WINDOW_LEN_MIN;
    let mut at = from_bytes;
    while at < to_bytes {
        let len = (to_bytes - at).min(window_len) as usize;
        window.resize(len, 0);
        read_exact_at(storage, at, &mut window)?;
        if window.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += len as u64;
        window_len = (window_len * 2).min(WINDOW_LEN_MAX);
    }
    Ok(true)
}

pub(crate) fn read_exact_at(
    storage: &dyn WalStorage,
    mut offset: u64,
    mut buf: &mut [u8],
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = storage.read_at(offset, buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while reading",
            ));
        }
        offset += n as u64;
        buf = &mut buf[n..];
    }
    Ok(())
}
