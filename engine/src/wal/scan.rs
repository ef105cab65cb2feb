//! Scans that try every byte offset of damaged or foreign bytes for records: the search
//! for durable records after damage (`reader::classify_damage`) and for the ids in bytes
//! recovery cut off (`max_ids_in_records`). Both ask the same two cheap questions before
//! a checksum, which costs the whole claimed length (up to 16 MiB): checking it at every
//! offset whose length field happened to fit made such a scan quadratic.

use super::entry::{EntryRef, NamespaceCache};
use super::format::{
    Frame, FrameCodec, RECORD_HEADER_LEN, RECORD_TYPE_OFFSET, RECORD_TYPE_RESERVED,
};

/// How far a scan can jump from `bytes[0]` when no frame can start there because its type
/// byte would be zero (no frame has type 0): to the next offset whose type byte is not, or
/// to the end of `bytes`. 0 when the type byte is not zero. Preallocated zeros and holes
/// then cost one vectorised search instead of a frame check per byte.
#[inline]
pub(crate) fn zero_type_run_len(bytes: &[u8]) -> usize {
    match bytes.get(RECORD_TYPE_OFFSET) {
        Some(&t) if t == RECORD_TYPE_RESERVED => bytes[RECORD_TYPE_OFFSET..]
            .iter()
            .position(|b| *b != RECORD_TYPE_RESERVED)
            .unwrap_or(bytes.len() - RECORD_TYPE_OFFSET)
            .max(1),
        _ => 0,
    }
}

/// The valid frame at `bytes[0]` (file offset `offset_bytes`), judged in order of cost:
/// its header and synced offset ([`FrameCodec::claimed_frame`]), then its payload's
/// structure (with any namespace id accepted: its definition may lie before the scanned
/// bytes), and only then its checksum. `bytes` must hold the whole claimed record.
#[inline]
pub(crate) fn valid_frame_at(codec: FrameCodec, offset_bytes: u64, bytes: &[u8]) -> Option<Frame> {
    if bytes.len() < RECORD_HEADER_LEN {
        return None;
    }
    let claim = codec.claimed_frame(offset_bytes, bytes)?;
    let payload = &bytes[claim.payload_start..][..claim.payload_len];
    EntryRef::decode(claim.kind, payload, &mut NamespaceCache::lenient()).ok()?;
    codec.valid_frame(offset_bytes, bytes)
}
