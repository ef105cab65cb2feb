//! `WALEntry`: the records of the log, and their hand-written little-endian encoding.
//! Decoding lives in `entry/decode.rs`; [`WALEntry::decode_payload`] goes through it.

mod decode;

use std::fmt;

pub use decode::{DecodeError, EntryRef, KeyRef, NamespaceCache, ValueRef};

use super::format::{
    put_leb128, FrameCodec, RecordType, HEADER_LEN, RECORD_CRC_OFFSET, RECORD_HEADER_LEN,
    RECORD_PAYLOAD_LEN_MAX,
};
use crate::types::{Key, Namespace, RunId, Timestamp, Value};

/// One record of the write-ahead log.
///
/// Every record carries its `txn_id`, so transactions may interleave in the log; replay
/// groups records by `txn_id` and applies a transaction when its `CommitTxn` is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WALEntry {
    BeginTxn {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
    },
    Write {
        txn_id: u64,
        run_id: RunId,
        key: Key,
        value: Value,
        version: u64,
    },
    Delete {
        txn_id: u64,
        run_id: RunId,
        key: Key,
        version: u64,
    },
    CommitTxn {
        txn_id: u64,
        run_id: RunId,
    },
    AbortTxn {
        txn_id: u64,
        run_id: RunId,
    },
}

impl WALEntry {
    pub fn txn_id(&self) -> u64 {
        match self {
            WALEntry::BeginTxn { txn_id, .. }
            | WALEntry::Write { txn_id, .. }
            | WALEntry::Delete { txn_id, .. }
            | WALEntry::CommitTxn { txn_id, .. }
            | WALEntry::AbortTxn { txn_id, .. } => *txn_id,
        }
    }

    pub fn record_type(&self) -> RecordType {
        match self {
            WALEntry::BeginTxn { .. } => RecordType::BeginTxn,
            WALEntry::Write { .. } => RecordType::Write,
            WALEntry::Delete { .. } => RecordType::Delete,
            WALEntry::CommitTxn { .. } => RecordType::CommitTxn,
            WALEntry::AbortTxn { .. } => RecordType::AbortTxn,
        }
    }

    /// Appends this entry to `out` as one record in format version 1 framing (tools and
    /// tests that build version 1 images). Returns the record's length in bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> usize {
        self.encode_framed(out, Framing::V1)
    }

    /// Appends this entry to `out` as one record framed by `framing` (the log's format
    /// version, salt and synced offset). Returns the record's length in bytes.
    pub fn encode_framed(&self, out: &mut Vec<u8>, framing: Framing) -> usize {
        let f = framing;
        match self {
            WALEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => encode_begin(out, f, *txn_id, *run_id, *timestamp),
            WALEntry::Write {
                txn_id,
                run_id,
                key,
                value,
                version,
            } => encode_write(out, f, *txn_id, *run_id, key, value, *version),
            WALEntry::Delete {
                txn_id,
                run_id,
                key,
                version,
            } => encode_delete(out, f, *txn_id, *run_id, key, *version),
            WALEntry::CommitTxn { txn_id, run_id } => {
                encode_end(out, f, RecordType::CommitTxn, *txn_id, *run_id)
            }
            WALEntry::AbortTxn { txn_id, run_id } => {
                encode_end(out, f, RecordType::AbortTxn, *txn_id, *run_id)
            }
        }
    }

    /// Encodes this entry as a standalone record in format version 1 framing.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Decodes a payload of the given record type. `namespaces` interns namespaces so that
    /// replaying millions of records allocates each distinct namespace once.
    pub fn decode_payload(
        record_type: RecordType,
        payload: &[u8],
        namespaces: &mut NamespaceCache,
    ) -> Result<WALEntry, DecodeError> {
        EntryRef::decode(record_type, payload, namespaces).map(EntryRef::into_entry)
    }
}

impl fmt::Display for WALEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WALEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => {
                write!(f, "BeginTxn  txn={txn_id} {run_id} ts={}", timestamp.0)
            }
            WALEntry::Write {
                txn_id,
                key,
                value,
                version,
                ..
            } => {
                write!(f, "Write     txn={txn_id} v={version} key={key} value=")?;
                match value {
                    Value::Bytes(b) => write!(f, "Bytes[{}]", b.len()),
                    Value::String(s) if s.len() > 32 => write!(f, "String[{}]", s.len()),
                    other => write!(f, "{other:?}"),
                }
            }
            WALEntry::Delete {
                txn_id,
                key,
                version,
                ..
            } => {
                write!(f, "Delete    txn={txn_id} v={version} key={key}")
            }
            WALEntry::CommitTxn { txn_id, run_id } => write!(f, "CommitTxn txn={txn_id} {run_id}"),
            WALEntry::AbortTxn { txn_id, run_id } => write!(f, "AbortTxn  txn={txn_id} {run_id}"),
        }
    }
}

const VALUE_NULL: u8 = 0;
const VALUE_BOOL: u8 = 1;
const VALUE_I64: u8 = 2;
const VALUE_F64: u8 = 3;
const VALUE_STRING: u8 = 4;
const VALUE_BYTES: u8 = 5;

/// Longest tenant, app or agent name, in bytes (a u16 length prefix).
pub const NAME_LEN_MAX: usize = u16::MAX as usize;

/// How the records being encoded are framed: the log's codec (format version and salt) and,
/// from format version 2 on, the offset a completed fdatasync had covered when they were
/// encoded (recovery uses it to tell a torn unsynced region from damaged history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub codec: FrameCodec,
    pub synced_offset_bytes: u64,
}

impl Framing {
    /// Format version 1 framing (no salt, no synced offset).
    pub const V1: Framing = Framing {
        codec: FrameCodec::V1,
        synced_offset_bytes: HEADER_LEN as u64,
    };
}

/// Frames the payload that `write_payload` appends: reserves the header and (version 2)
/// writes the synced offset, then fills in the length, type and checksum. Returns the
/// record's length in bytes.
fn frame(
    out: &mut Vec<u8>,
    framing: Framing,
    record_type: RecordType,
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    if framing.codec.carries_synced_offset() {
        debug_assert!(framing.synced_offset_bytes >= HEADER_LEN as u64);
        put_leb128(out, framing.synced_offset_bytes);
    }
    write_payload(out);
    let body_len = out.len() - start - RECORD_HEADER_LEN;
    assert!(
        body_len <= RECORD_PAYLOAD_LEN_MAX,
        "encoded record exceeds the payload limit"
    );
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    out[start + 4] = record_type as u8;
    let crc = framing.codec.crc(
        &out[start..start + RECORD_CRC_OFFSET],
        &out[start + RECORD_HEADER_LEN..],
    );
    out[start + RECORD_CRC_OFFSET..start + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Encodes a BeginTxn record without building a `WALEntry`.
pub fn encode_begin(
    out: &mut Vec<u8>,
    framing: Framing,
    txn_id: u64,
    run_id: RunId,
    timestamp: Timestamp,
) -> usize {
    frame(out, framing, RecordType::BeginTxn, |out| {
        put_u64(out, txn_id);
        put_u64(out, run_id.0);
        put_u64(out, timestamp.0);
    })
}

/// Encodes a Write record from borrowed parts (the commit path never clones keys or values).
pub fn encode_write(
    out: &mut Vec<u8>,
    framing: Framing,
    txn_id: u64,
    run_id: RunId,
    key: &Key,
    value: &Value,
    version: u64,
) -> usize {
    frame(out, framing, RecordType::Write, |out| {
        put_u64(out, txn_id);
        put_u64(out, run_id.0);
        put_u64(out, version);
        encode_key(out, key);
        encode_value(out, value);
    })
}

/// Encodes a Delete record from borrowed parts.
pub fn encode_delete(
    out: &mut Vec<u8>,
    framing: Framing,
    txn_id: u64,
    run_id: RunId,
    key: &Key,
    version: u64,
) -> usize {
    frame(out, framing, RecordType::Delete, |out| {
        put_u64(out, txn_id);
        put_u64(out, run_id.0);
        put_u64(out, version);
        encode_key(out, key);
    })
}

/// Encodes a CommitTxn or AbortTxn record.
pub fn encode_end(
    out: &mut Vec<u8>,
    framing: Framing,
    record_type: RecordType,
    txn_id: u64,
    run_id: RunId,
) -> usize {
    assert!(matches!(
        record_type,
        RecordType::CommitTxn | RecordType::AbortTxn
    ));
    frame(out, framing, record_type, |out| {
        put_u64(out, txn_id);
        put_u64(out, run_id.0);
    })
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    assert!(
        name.len() <= NAME_LEN_MAX,
        "namespace name longer than {NAME_LEN_MAX} bytes"
    );
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    assert!(
        blob.len() <= RECORD_PAYLOAD_LEN_MAX,
        "blob larger than the record limit"
    );
    out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    out.extend_from_slice(blob);
}

fn encode_namespace(out: &mut Vec<u8>, namespace: &Namespace) {
    put_name(out, &namespace.tenant);
    put_name(out, &namespace.app);
    put_name(out, &namespace.agent);
    put_u64(out, namespace.run_id.0);
}

fn encode_key(out: &mut Vec<u8>, key: &Key) {
    encode_namespace(out, &key.namespace);
    out.push(key.type_tag.as_byte());
    put_blob(out, &key.user_key);
}

fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(VALUE_NULL),
        Value::Bool(b) => {
            out.push(VALUE_BOOL);
            out.push(u8::from(*b));
        }
        Value::I64(v) => {
            out.push(VALUE_I64);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::F64(v) => {
            out.push(VALUE_F64);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            out.push(VALUE_STRING);
            put_blob(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(VALUE_BYTES);
            put_blob(out, b);
        }
    }
}

/// Encoded size of a key, for limit checks before encoding.
pub fn encoded_key_len(key: &Key) -> usize {
    2 * 3
        + key.namespace.tenant.len()
        + key.namespace.app.len()
        + key.namespace.agent.len()
        + 8
        + 1
        + 4
        + key.user_key.len()
}

/// Encoded size of a value, for limit checks before encoding.
pub fn encoded_value_len(value: &Value) -> usize {
    match value {
        Value::Null => 1,
        Value::Bool(_) => 2,
        Value::I64(_) | Value::F64(_) => 9,
        Value::String(s) => 5 + s.len(),
        Value::Bytes(b) => 5 + b.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::decode::{BEGIN_PAYLOAD_LEN, END_PAYLOAD_LEN};
    use super::*;
    use crate::types::TypeTag;
    use crate::wal::format::Frame;
    use std::sync::Arc;

    fn sample_entries() -> Vec<WALEntry> {
        let ns = Arc::new(Namespace::new("tenant", "app", "agent", RunId(7)));
        let run_id = RunId(7);
        vec![
            WALEntry::BeginTxn {
                txn_id: 1,
                run_id,
                timestamp: Timestamp(99),
            },
            WALEntry::Write {
                txn_id: 1,
                run_id,
                key: Key::kv(ns.clone(), "k"),
                value: Value::Bytes(vec![1, 2, 3]),
                version: 5,
            },
            WALEntry::Write {
                txn_id: 1,
                run_id,
                key: Key::new(ns.clone(), TypeTag::Event, ""),
                value: Value::String("héllo".into()),
                version: 6,
            },
            WALEntry::Write {
                txn_id: 1,
                run_id,
                key: Key::kv(ns.clone(), "n"),
                value: Value::Null,
                version: 7,
            },
            WALEntry::Write {
                txn_id: 1,
                run_id,
                key: Key::kv(ns.clone(), "b"),
                value: Value::Bool(true),
                version: 8,
            },
            WALEntry::Write {
                txn_id: 1,
                run_id,
                key: Key::kv(ns.clone(), "i"),
                value: Value::I64(-3),
                version: 9,
            },
            WALEntry::Write {
                txn_id: 1,
                run_id,
                key: Key::kv(ns.clone(), "f"),
                value: Value::F64(1.5),
                version: 10,
            },
            WALEntry::Delete {
                txn_id: 1,
                run_id,
                key: Key::kv(ns, "k"),
                version: 11,
            },
            WALEntry::CommitTxn { txn_id: 1, run_id },
            WALEntry::AbortTxn { txn_id: 2, run_id },
        ]
    }

    /// Every entry round-trips through version 1 framing and through version 2 framing
    /// (salted, with the synced offset, which comes back from the frame).
    #[test]
    fn every_entry_round_trips_through_a_frame() {
        let mut cache = NamespaceCache::default();
        let v2 = Framing {
            codec: FrameCodec::v2(0x5eed),
            synced_offset_bytes: 1000,
        };
        for framing in [Framing::V1, v2] {
            for entry in sample_entries() {
                let mut bytes = Vec::new();
                let len = entry.encode_framed(&mut bytes, framing);
                assert_eq!(len, bytes.len());
                let Frame::Valid {
                    record_type,
                    payload_start,
                    payload_len,
                    synced_offset_bytes,
                } = framing.codec.inspect(4096, &bytes)
                else {
                    panic!("frame of {entry:?} is not valid");
                };
                assert_eq!(payload_start + payload_len, bytes.len());
                let expected_synced = framing
                    .codec
                    .carries_synced_offset()
                    .then_some(framing.synced_offset_bytes);
                assert_eq!(synced_offset_bytes, expected_synced);
                let record_type = RecordType::from_byte(record_type).unwrap();
                let payload = &bytes[payload_start..];
                let decoded = WALEntry::decode_payload(record_type, payload, &mut cache).unwrap();
                assert_eq!(decoded, entry);
                assert!(!decoded.to_string().is_empty());
            }
        }
    }

    #[test]
    fn every_truncation_of_a_payload_is_a_decode_error() {
        let mut cache = NamespaceCache::default();
        for entry in sample_entries() {
            let bytes = entry.encode();
            let payload = &bytes[RECORD_HEADER_LEN..];
            for cut in 0..payload.len() {
                let result =
                    WALEntry::decode_payload(entry.record_type(), &payload[..cut], &mut cache);
                assert!(result.is_err(), "{entry:?} cut at {cut} decoded");
            }
        }
    }

    #[test]
    fn trailing_bytes_and_bad_tags_are_rejected() {
        let mut cache = NamespaceCache::default();
        let entry = WALEntry::CommitTxn {
            txn_id: 1,
            run_id: RunId(1),
        };
        let mut payload = entry.encode()[RECORD_HEADER_LEN..].to_vec();
        payload.push(0);
        let err =
            WALEntry::decode_payload(RecordType::CommitTxn, &payload, &mut cache).unwrap_err();
        assert_eq!(err.field, "payload");

        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let write = WALEntry::Write {
            txn_id: 1,
            run_id: RunId(1),
            key: Key::kv(ns, "k"),
            value: Value::Bool(true),
            version: 1,
        };
        let mut payload = write.encode()[RECORD_HEADER_LEN..].to_vec();
        *payload.last_mut().unwrap() = 7;
        let err = WALEntry::decode_payload(RecordType::Write, &payload, &mut cache).unwrap_err();
        assert_eq!(err.field, "value.bool");
        let last = payload.len() - 2;
        payload[last] = 99;
        let err = WALEntry::decode_payload(RecordType::Write, &payload, &mut cache).unwrap_err();
        assert_eq!(err.field, "value.tag");
    }

    #[test]
    fn fixed_payload_lengths_match_the_encoder() {
        let mut out = Vec::new();
        let len = encode_begin(&mut out, Framing::V1, 1, RunId(2), Timestamp(3));
        assert_eq!(len, RECORD_HEADER_LEN + BEGIN_PAYLOAD_LEN);
        for kind in [RecordType::CommitTxn, RecordType::AbortTxn] {
            out.clear();
            let len = encode_end(&mut out, Framing::V1, kind, 1, RunId(2));
            assert_eq!(len, RECORD_HEADER_LEN + END_PAYLOAD_LEN);
        }
    }

    #[test]
    fn encoded_lengths_match_the_encoder() {
        for entry in sample_entries() {
            if let WALEntry::Write { key, value, .. } = &entry {
                let bytes = entry.encode();
                assert_eq!(
                    bytes.len(),
                    RECORD_HEADER_LEN + 24 + encoded_key_len(key) + encoded_value_len(value)
                );
            }
        }
    }
}
