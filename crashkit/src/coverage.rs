//! Where a kill landed in the WAL: inside which part of which record type.
//!
//! Judged against the workload's record layout (the bytes a fault-free run writes), using
//! the engine's framing constants, so the summary can show that kills explored headers,
//! checksums, payloads and boundaries of every record type.

use std::fmt;

use engine::wal::format::{RECORD_CRC_OFFSET, RECORD_HEADER_LEN};
use serde::Serialize;

use crate::workload::RecordSpan;

/// The part of a record a kill offset falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Region {
    /// Exactly between two records (or right after the file header).
    Boundary,
    /// Inside the length and type bytes of the frame header.
    RecordHeader,
    /// Inside the checksum bytes of the frame header.
    Checksum,
    /// Inside the payload.
    Payload,
    /// Beyond the last record of the workload.
    PastEnd,
}

/// A classified kill point: `bytes [0, offset)` were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct KillSite {
    pub region: Region,
    /// The record the kill tore (or, at a boundary, the record just completed).
    pub record_type: Option<&'static str>,
}

impl fmt::Display for KillSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let region = match self.region {
            Region::Boundary => "boundary after",
            Region::RecordHeader => "header of",
            Region::Checksum => "checksum of",
            Region::Payload => "payload of",
            Region::PastEnd => "past the end",
        };
        match (self.record_type, self.region) {
            (Some(t), _) => write!(f, "{region} {t}"),
            (None, Region::Boundary) => write!(f, "{region} file header"),
            (None, _) => write!(f, "{region} a record (torn inside its length field)"),
        }
    }
}

impl KillSite {
    /// Short key for summary tables, e.g. `payload/Write`.
    pub fn key(&self) -> String {
        let region = match self.region {
            Region::Boundary => "boundary",
            Region::RecordHeader => "header",
            Region::Checksum => "checksum",
            Region::Payload => "payload",
            Region::PastEnd => "past-end",
        };
        let record = match (self.record_type, self.region) {
            (Some(t), _) => t,
            (None, Region::Boundary) => "FileHeader",
            (None, _) => "unknown",
        };
        format!("{region}/{record}")
    }
}

impl Region {
    /// The region a cut `rel_bytes` into a record (0 < rel_bytes < its length) lands in.
    fn inside_record(rel_bytes: usize) -> Region {
        if rel_bytes <= RECORD_CRC_OFFSET {
            Region::RecordHeader
        } else if rel_bytes <= RECORD_HEADER_LEN {
            Region::Checksum
        } else {
            Region::Payload
        }
    }
}

/// Classifies a WAL length `offset_bytes` against the layout.
pub fn classify(layout: &[RecordSpan], offset_bytes: u64) -> KillSite {
    let mut last_complete = None;
    for span in layout {
        let end = span.offset_bytes + span.len_bytes;
        if offset_bytes >= end {
            last_complete = Some(span.record_type.name());
            continue;
        }
        if offset_bytes <= span.offset_bytes {
            break;
        }
        let rel = (offset_bytes - span.offset_bytes) as usize;
        let region = Region::inside_record(rel);
        return KillSite {
            region,
            record_type: Some(span.record_type.name()),
        };
    }
    let past_end = layout
        .last()
        .is_some_and(|s| offset_bytes > s.offset_bytes + s.len_bytes);
    KillSite {
        region: if past_end {
            Region::PastEnd
        } else {
            Region::Boundary
        },
        record_type: last_complete,
    }
}

/// Classifies the end of a crashed WAL image by walking its frames (for cases whose
/// layout is not known in advance: several writer threads interleave transactions).
/// A tear inside the length field leaves the record type unknown (`None`).
pub fn classify_image(image: &[u8]) -> KillSite {
    use engine::wal::format::{RECORD_LEN_LEN, RECORD_TYPE_OFFSET};
    use engine::wal::RecordType;
    let len = image.len();
    let type_at = |pos: usize| {
        image
            .get(pos + RECORD_TYPE_OFFSET)
            .and_then(|b| RecordType::from_byte(*b))
            .map(|t| t.name())
    };
    let mut pos = engine::wal::HEADER_LEN;
    let mut last_complete = None;
    while pos < len {
        if len - pos < RECORD_LEN_LEN {
            return KillSite {
                region: Region::RecordHeader,
                record_type: None,
            };
        }
        let payload_len =
            u32::from_le_bytes(image[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let total = RECORD_HEADER_LEN + payload_len;
        if pos + total <= len {
            last_complete = type_at(pos);
            pos += total;
            continue;
        }
        let rel = len - pos;
        let region = Region::inside_record(rel);
        return KillSite {
            region,
            record_type: type_at(pos),
        };
    }
    KillSite {
        region: Region::Boundary,
        record_type: last_complete,
    }
}

/// The end of the last whole record in `layout` at or before `offset_bytes`, or
/// `start_bytes` (where the layout's first record goes) when there is none.
pub fn boundary_at_or_before(layout: &[RecordSpan], offset_bytes: u64, start_bytes: u64) -> u64 {
    layout
        .iter()
        .map(|s| s.offset_bytes + s.len_bytes)
        .take_while(|end| *end <= offset_bytes)
        .last()
        .unwrap_or(start_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::wal::RecordType;

    #[test]
    fn offsets_classify_by_frame_part() {
        let layout = vec![
            RecordSpan {
                record_type: RecordType::BeginTxn,
                offset_bytes: 32,
                len_bytes: 33,
                txn_idx: 0,
            },
            RecordSpan {
                record_type: RecordType::Write,
                offset_bytes: 65,
                len_bytes: 50,
                txn_idx: 0,
            },
        ];
        let at = |k| classify(&layout, k);
        assert_eq!(at(32).region, Region::Boundary);
        assert_eq!(at(32).record_type, None);
        assert_eq!(at(33).region, Region::RecordHeader);
        assert_eq!(at(37).region, Region::RecordHeader);
        assert_eq!(at(38).region, Region::Checksum);
        assert_eq!(at(41).region, Region::Checksum);
        assert_eq!(at(42).region, Region::Payload);
        assert_eq!(
            at(65),
            KillSite {
                region: Region::Boundary,
                record_type: Some("BeginTxn")
            }
        );
        assert_eq!(at(70).record_type, Some("Write"));
        assert_eq!(at(115).region, Region::Boundary);
        assert_eq!(at(116).region, Region::PastEnd);
        assert_eq!(boundary_at_or_before(&layout, 100, 32), 65);

        // The same judgement from the bytes alone.
        let mut image = vec![0u8; 32];
        engine::wal::entry::encode_end(
            &mut image,
            engine::wal::Framing::V1,
            RecordType::CommitTxn,
            1,
            engine::RunId(1),
        );
        let end = image.len();
        assert_eq!(
            classify_image(&image),
            KillSite {
                region: Region::Boundary,
                record_type: Some("CommitTxn")
            }
        );
        engine::wal::entry::encode_end(
            &mut image,
            engine::wal::Framing::V1,
            RecordType::CommitTxn,
            2,
            engine::RunId(1),
        );
        assert_eq!(classify_image(&image[..end + 2]).record_type, None);
        assert_eq!(classify_image(&image[..end + 7]).region, Region::Checksum);
        assert_eq!(
            classify_image(&image[..end + 12]),
            KillSite {
                region: Region::Payload,
                record_type: Some("CommitTxn")
            }
        );
        assert_eq!(
            classify_image(&image[..32]),
            KillSite {
                region: Region::Boundary,
                record_type: None
            }
        );
        assert_eq!(boundary_at_or_before(&layout, 40, 32), 32);
    }
}
