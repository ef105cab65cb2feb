//! `WALEntry`: the records of the log, and their hand-written little-endian encoding.
//! Decoding lives in `entry/decode.rs`; [`WALEntry::decode_payload`] goes through it.

mod decode;

use std::fmt;
use std::sync::Arc;

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
    /// Format version 2: namespace `ns_id` (dense from 0 within a log) is `namespace`.
    NamespaceDef {
        ns_id: u64,
        namespace: Arc<Namespace>,
    },
    /// Format version 2: a committed transaction of one put, in one record. `key`'s
    /// namespace is the one NamespaceDef `ns_id` defined.
    PutTxn {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
        version: u64,
        ns_id: u64,
        key: Key,
        value: Value,
    },
    /// Format version 2: a committed transaction of one delete, in one record.
    DeleteTxn {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
        version: u64,
        ns_id: u64,
        key: Key,
    },
}

impl WALEntry {
    /// The transaction the record belongs to (0 for a NamespaceDef).
    pub fn txn_id(&self) -> u64 {
        match self {
            WALEntry::BeginTxn { txn_id, .. }
            | WALEntry::Write { txn_id, .. }
            | WALEntry::Delete { txn_id, .. }
            | WALEntry::CommitTxn { txn_id, .. }
            | WALEntry::AbortTxn { txn_id, .. }
            | WALEntry::PutTxn { txn_id, .. }
            | WALEntry::DeleteTxn { txn_id, .. } => *txn_id,
            WALEntry::NamespaceDef { .. } => 0,
        }
    }

    /// The version the record's write or delete carries, if it carries one.
    pub fn version(&self) -> Option<u64> {
        match self {
            WALEntry::Write { version, .. }
            | WALEntry::Delete { version, .. }
            | WALEntry::PutTxn { version, .. }
            | WALEntry::DeleteTxn { version, .. } => Some(*version),
            _ => None,
        }
    }

    pub fn record_type(&self) -> RecordType {
        match self {
            WALEntry::BeginTxn { .. } => RecordType::BeginTxn,
            WALEntry::Write { .. } => RecordType::Write,
            WALEntry::Delete { .. } => RecordType::Delete,
            WALEntry::CommitTxn { .. } => RecordType::CommitTxn,
            WALEntry::AbortTxn { .. } => RecordType::AbortTxn,
            WALEntry::NamespaceDef { .. } => RecordType::NamespaceDef,
            WALEntry::PutTxn { .. } => RecordType::PutTxn,
            WALEntry::DeleteTxn { .. } => RecordType::DeleteTxn,
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
            WALEntry::NamespaceDef { ns_id, namespace } => {
                encode_namespace_def(out, f, *ns_id, namespace)
            }
            WALEntry::PutTxn {
                txn_id,
                run_id,
                timestamp,
                version,
                ns_id,
                key,
                value,
            } => encode_single_op_txn(
                out,
                f,
                SingleOp {
                    txn_id: *txn_id,
                    run_id: *run_id,
                    timestamp: *timestamp,
                    version: *version,
                    ns_id: *ns_id,
                },
                key,
                Some(value),
            ),
            WALEntry::DeleteTxn {
                txn_id,
                run_id,
                timestamp,
                version,
                ns_id,
                key,
            } => encode_single_op_txn(
                out,
                f,
                SingleOp {
                    txn_id: *txn_id,
                    run_id: *run_id,
                    timestamp: *timestamp,
                    version: *version,
                    ns_id: *ns_id,
                },
                key,
                None,
            ),
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
                fmt_value_brief(f, value)
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
            WALEntry::NamespaceDef { ns_id, namespace } => write!(
                f,
                "NamespaceDef ns={ns_id} {}/{}/{}/{}",
                namespace.tenant, namespace.app, namespace.agent, namespace.run_id
            ),
            WALEntry::PutTxn {
                txn_id,
                key,
                value,
                version,
                ..
            } => {
                write!(f, "PutTxn    txn={txn_id} v={version} key={key} value=")?;
                fmt_value_brief(f, value)
            }
            WALEntry::DeleteTxn {
                txn_id,
                key,
                version,
                ..
            } => write!(f, "DeleteTxn txn={txn_id} v={version} key={key}"),
        }
    }
}

/// A value for a one-line listing: byte strings and long strings by their length only.
fn fmt_value_brief(f: &mut fmt::Formatter<'_>, value: &Value) -> fmt::Result {
    match value {
        Value::Bytes(b) => write!(f, "Bytes[{}]", b.len()),
        Value::String(s) if s.len() > 32 => write!(f, "String[{}]", s.len()),
        other => write!(f, "{other:?}"),
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

/// The fixed fields of a one-operation transaction record (PutTxn, DeleteTxn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleOp {
    pub txn_id: u64,
    pub run_id: RunId,
    pub timestamp: Timestamp,
    pub version: u64,
    /// The id a NamespaceDef earlier in the log gave the key's namespace.
    pub ns_id: u64,
}

/// Encodes a NamespaceDef record (format version 2 only).
pub fn encode_namespace_def(
    out: &mut Vec<u8>,
    framing: Framing,
    ns_id: u64,
    namespace: &Namespace,
) -> usize {
    assert!(
        framing.codec.carries_synced_offset(),
        "NamespaceDef needs format version 2"
    );
    frame(out, framing, RecordType::NamespaceDef, |out| {
        put_leb128(out, ns_id);
        put_name(out, &namespace.tenant);
        put_name(out, &namespace.app);
        put_name(out, &namespace.agent);
        put_leb128(out, namespace.run_id.0);
    })
}

/// Encodes a whole committed one-operation transaction as one record: PutTxn when `value`
/// is given, DeleteTxn otherwise (format version 2 only). The key's namespace must be the
/// one `op.ns_id` names.
pub fn encode_single_op_txn(
    out: &mut Vec<u8>,
    framing: Framing,
    op: SingleOp,
    key: &Key,
    value: Option<&Value>,
) -> usize {
    assert!(
        framing.codec.carries_synced_offset(),
        "PutTxn/DeleteTxn need format version 2"
    );
    let record_type = if value.is_some() {
        RecordType::PutTxn
    } else {
        RecordType::DeleteTxn
    };
    frame(out, framing, record_type, |out| {
        put_leb128(out, op.txn_id);
        put_leb128(out, op.run_id.0);
        put_leb128(out, op.timestamp.0);
        put_leb128(out, op.version);
        put_leb128(out, op.ns_id);
        out.push(key.type_tag.as_byte());
        put_leb128(out, key.user_key.len() as u64);
        out.extend_from_slice(&key.user_key);
        if let Some(value) = value {
            encode_value_compact(out, value);
        }
    })
}

/// A value as in version 1, but a string's or byte string's length as LEB128.
fn encode_value_compact(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => {
            out.push(VALUE_STRING);
            put_leb128(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(VALUE_BYTES);
            put_leb128(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        other => encode_value(out, other),
    }
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

    /// The records format version 2 adds: a NamespaceDef, then one-operation transactions
    /// that refer to it (every value kind, long and empty keys, large ids).
    fn compact_entries() -> Vec<WALEntry> {
        let ns = Arc::new(Namespace::new("tenant", "app", "agent", RunId(7)));
        let other = Arc::new(Namespace::new("t2", "", "g", RunId(u64::MAX)));
        let mut entries = vec![
            WALEntry::NamespaceDef {
                ns_id: 0,
                namespace: ns.clone(),
            },
            WALEntry::NamespaceDef {
                ns_id: 1,
                namespace: other.clone(),
            },
        ];
        let values = [
            Value::Null,
            Value::Bool(false),
            Value::I64(-5),
            Value::F64(f64::NAN),
            Value::String("héllo".into()),
            Value::Bytes(vec![9; 300]),
            Value::Bytes(Vec::new()),
        ];
        for (i, value) in values.into_iter().enumerate() {
            entries.push(WALEntry::PutTxn {
                txn_id: 1 << (7 * i),
                run_id: RunId(i as u64),
                timestamp: Timestamp(1_700_000_000_000_000 + i as u64),
                version: u64::MAX - i as u64,
                ns_id: (i % 2) as u64,
                key: Key::new(
                    if i % 2 == 0 {
                        ns.clone()
                    } else {
                        other.clone()
                    },
                    TypeTag::State,
                    vec![b'k'; i * 40],
                ),
                value,
            });
        }
        entries.push(WALEntry::DeleteTxn {
            txn_id: 3,
            run_id: RunId(7),
            timestamp: Timestamp(0),
            version: 9,
            ns_id: 0,
            key: Key::kv(ns, "gone"),
        });
        entries
    }

    /// The compact records round-trip through version 2 framing (in log order, so the
    /// definitions precede their use); a one-put transaction of a 20-byte key and a
    /// 32-byte value takes under 90 bytes, less than half its v1 form (173 bytes).
    #[test]
    fn compact_records_round_trip_and_are_small() {
        let framing = Framing {
            codec: FrameCodec::v2(0x5eed),
            synced_offset_bytes: 1 << 20,
        };
        let mut cache = NamespaceCache::default();
        for entry in compact_entries() {
            let mut bytes = Vec::new();
            entry.encode_framed(&mut bytes, framing);
            let Frame::Valid {
                record_type,
                payload_start,
                ..
            } = framing.codec.inspect(1 << 21, &bytes)
            else {
                panic!("frame of {entry:?} is not valid");
            };
            let kind = framing.codec.record_type(record_type).unwrap();
            let decoded =
                WALEntry::decode_payload(kind, &bytes[payload_start..], &mut cache).unwrap();
            assert_eq!(decoded, entry);
            assert!(!decoded.to_string().is_empty());
            // Every cut of the payload is an error, never a shorter record.
            let payload = &bytes[payload_start..];
            for cut in 0..payload.len() {
                let mut fresh = NamespaceCache::lenient();
                assert!(
                    WALEntry::decode_payload(kind, &payload[..cut], &mut fresh).is_err(),
                    "{entry:?} cut at {cut} decoded"
                );
            }
        }
        assert!(FrameCodec::V1
            .record_type(RecordType::PutTxn as u8)
            .is_none());
        let ns = Arc::new(Namespace::new("t", "a", "g", RunId(1)));
        let put = WALEntry::PutTxn {
            txn_id: 1_000_000,
            run_id: RunId(1),
            timestamp: Timestamp(1_700_000_000_000_000),
            version: 1_000_000,
            ns_id: 0,
            key: Key::kv(ns, vec![b'k'; 20]),
            value: Value::Bytes(vec![7; 32]),
        };
        let mut bytes = Vec::new();
        put.encode_framed(&mut bytes, framing);
        assert!(bytes.len() < 90, "{} bytes", bytes.len());
    }

    /// A PutTxn naming a namespace id no NamespaceDef defined does not decode; a
    /// definition that skips an id or redefines one differently does not either.
    #[test]
    fn undefined_or_conflicting_namespace_ids_are_decode_errors() {
        let framing = Framing {
            codec: FrameCodec::v2(1),
            synced_offset_bytes: 32,
        };
        let payload_of = |entry: &WALEntry| {
            let mut bytes = Vec::new();
            entry.encode_framed(&mut bytes, framing);
            let start = framing.codec.inspect(64, &bytes);
            let Frame::Valid { payload_start, .. } = start else {
                panic!("invalid frame")
            };
            bytes[payload_start..].to_vec()
        };
        let entries = compact_entries();
        let mut cache = NamespaceCache::default();
        let err =
            WALEntry::decode_payload(RecordType::PutTxn, &payload_of(&entries[2]), &mut cache)
                .unwrap_err();
        assert_eq!(err.field, "key.ns_id");
        let err = WALEntry::decode_payload(
            RecordType::NamespaceDef,
            &payload_of(&entries[1]),
            &mut cache,
        )
        .unwrap_err();
        assert!(err.reason.contains("skips"), "{err}");
        WALEntry::decode_payload(
            RecordType::NamespaceDef,
            &payload_of(&entries[0]),
            &mut cache,
        )
        .unwrap();
        let redefined = WALEntry::NamespaceDef {
            ns_id: 0,
            namespace: Arc::new(Namespace::new("x", "y", "z", RunId(2))),
        };
        let err = WALEntry::decode_payload(
            RecordType::NamespaceDef,
            &payload_of(&redefined),
            &mut cache,
        )
        .unwrap_err();
        assert!(err.reason.contains("already defined"), "{err}");
        // The same definition again changes nothing.
        WALEntry::decode_payload(
            RecordType::NamespaceDef,
            &payload_of(&entries[0]),
            &mut cache,
        )
        .unwrap();
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
