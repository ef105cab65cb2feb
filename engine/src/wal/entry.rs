//! `WALEntry`: the records of the log, and their hand-written little-endian encoding.
//!
//! Decoding never panics: every length is checked against the bytes that remain, and any
//! malformed payload is a [`DecodeError`] naming the field.

use std::fmt;
use std::sync::Arc;

use super::format::{
    record_crc, RecordType, RECORD_CRC_OFFSET, RECORD_HEADER_LEN, RECORD_PAYLOAD_LEN_MAX,
};
use crate::types::{Key, Namespace, RunId, Timestamp, TypeTag, Value};

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

    /// Appends this entry to `out` as one framed record (header, then payload).
    /// Returns the record's length in bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> usize {
        match self {
            WALEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => encode_begin(out, *txn_id, *run_id, *timestamp),
            WALEntry::Write {
                txn_id,
                run_id,
                key,
                value,
                version,
            } => encode_write(out, *txn_id, *run_id, key, value, *version),
            WALEntry::Delete {
                txn_id,
                run_id,
                key,
                version,
            } => encode_delete(out, *txn_id, *run_id, key, *version),
            WALEntry::CommitTxn { txn_id, run_id } => {
                encode_end(out, RecordType::CommitTxn, *txn_id, *run_id)
            }
            WALEntry::AbortTxn { txn_id, run_id } => {
                encode_end(out, RecordType::AbortTxn, *txn_id, *run_id)
            }
        }
    }

    /// Encodes this entry as a standalone framed record.
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
        EntryRef::decode(record_type, payload, namespaces).map(|entry| entry.to_entry())
    }
}

/// A decoded record whose key and value borrow the payload they were decoded from: replay
/// moves them straight into the store's own representation without a `Vec` per field.
/// [`WALEntry::decode_payload`] is this decoder plus [`EntryRef::to_entry`], so both paths
/// accept and reject exactly the same payloads.
#[derive(Debug, Clone)]
pub enum EntryRef<'a> {
    BeginTxn {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
    },
    Write {
        txn_id: u64,
        run_id: RunId,
        key: KeyRef<'a>,
        value: ValueRef<'a>,
        version: u64,
    },
    Delete {
        txn_id: u64,
        run_id: RunId,
        key: KeyRef<'a>,
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

/// A decoded key: the interned namespace and the user key's bytes in the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub namespace: Arc<Namespace>,
    pub type_tag: TypeTag,
    pub user_key: &'a [u8],
}

impl KeyRef<'_> {
    pub fn to_key(&self) -> Key {
        Key::new(self.namespace.clone(), self.type_tag, self.user_key)
    }
}

/// A decoded value; strings are already checked to be UTF-8.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    String(&'a str),
    Bytes(&'a [u8]),
}

impl ValueRef<'_> {
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::I64(i) => Value::I64(i),
            ValueRef::F64(f) => Value::F64(f),
            ValueRef::String(s) => Value::String(s.to_owned()),
            ValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
        }
    }
}

impl<'a> EntryRef<'a> {
    /// Decodes a payload of the given record type (see [`WALEntry::decode_payload`]).
    pub fn decode(
        record_type: RecordType,
        payload: &'a [u8],
        namespaces: &mut NamespaceCache,
    ) -> Result<EntryRef<'a>, DecodeError> {
        // BeginTxn, CommitTxn and AbortTxn payloads have one exact length: read them as
        // fixed arrays (two thirds of a typical log's records). Any other length takes the
        // cursor below, which names the field that is short or the bytes left over.
        let word = |at: usize| {
            u64::from_le_bytes(
                payload[at..at + 8]
                    .try_into()
                    .expect("8 bytes inside a checked length"),
            )
        };
        match (record_type, payload.len()) {
            (RecordType::BeginTxn, BEGIN_PAYLOAD_LEN) => {
                return Ok(EntryRef::BeginTxn {
                    txn_id: word(0),
                    run_id: RunId(word(8)),
                    timestamp: Timestamp(word(16)),
                })
            }
            (RecordType::CommitTxn, END_PAYLOAD_LEN) => {
                return Ok(EntryRef::CommitTxn {
                    txn_id: word(0),
                    run_id: RunId(word(8)),
                })
            }
            (RecordType::AbortTxn, END_PAYLOAD_LEN) => {
                return Ok(EntryRef::AbortTxn {
                    txn_id: word(0),
                    run_id: RunId(word(8)),
                })
            }
            _ => {}
        }
        let mut cursor = Cursor {
            bytes: payload,
            pos: 0,
        };
        let txn_id = cursor.u64("txn_id")?;
        let run_id = RunId(cursor.u64("run_id")?);
        let entry = match record_type {
            RecordType::BeginTxn => EntryRef::BeginTxn {
                txn_id,
                run_id,
                timestamp: Timestamp(cursor.u64("timestamp")?),
            },
            RecordType::Write => {
                let version = cursor.u64("version")?;
                let key = decode_key(&mut cursor, namespaces)?;
                let value = decode_value(&mut cursor)?;
                EntryRef::Write {
                    txn_id,
                    run_id,
                    key,
                    value,
                    version,
                }
            }
            RecordType::Delete => {
                let version = cursor.u64("version")?;
                let key = decode_key(&mut cursor, namespaces)?;
                EntryRef::Delete {
                    txn_id,
                    run_id,
                    key,
                    version,
                }
            }
            RecordType::CommitTxn => EntryRef::CommitTxn { txn_id, run_id },
            RecordType::AbortTxn => EntryRef::AbortTxn { txn_id, run_id },
        };
        if cursor.pos != payload.len() {
            return Err(DecodeError {
                field: "payload",
                reason: format!(
                    "{} trailing bytes after the last field",
                    payload.len() - cursor.pos
                ),
            });
        }
        Ok(entry)
    }

    pub fn txn_id(&self) -> u64 {
        match self {
            EntryRef::BeginTxn { txn_id, .. }
            | EntryRef::Write { txn_id, .. }
            | EntryRef::Delete { txn_id, .. }
            | EntryRef::CommitTxn { txn_id, .. }
            | EntryRef::AbortTxn { txn_id, .. } => *txn_id,
        }
    }

    /// The owned entry (allocates the key and value).
    pub fn to_entry(&self) -> WALEntry {
        match self {
            EntryRef::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => WALEntry::BeginTxn {
                txn_id: *txn_id,
                run_id: *run_id,
                timestamp: *timestamp,
            },
            EntryRef::Write {
                txn_id,
                run_id,
                key,
                value,
                version,
            } => WALEntry::Write {
                txn_id: *txn_id,
                run_id: *run_id,
                key: key.to_key(),
                value: value.to_value(),
                version: *version,
            },
            EntryRef::Delete {
                txn_id,
                run_id,
                key,
                version,
            } => WALEntry::Delete {
                txn_id: *txn_id,
                run_id: *run_id,
                key: key.to_key(),
                version: *version,
            },
            EntryRef::CommitTxn { txn_id, run_id } => WALEntry::CommitTxn {
                txn_id: *txn_id,
                run_id: *run_id,
            },
            EntryRef::AbortTxn { txn_id, run_id } => WALEntry::AbortTxn {
                txn_id: *txn_id,
                run_id: *run_id,
            },
        }
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

/// A payload that does not decode: which field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// Interns namespaces during decoding: consecutive records almost always share one.
#[derive(Debug, Default)]
pub struct NamespaceCache {
    recent: Vec<Arc<Namespace>>,
    /// The encoded form of `recent[0]` (names with their lengths, then the run id): a key
    /// that starts with exactly these bytes has that namespace, found with one comparison.
    front_encoded: Vec<u8>,
}

/// How many distinct namespaces the cache remembers (most recent first).
const NAMESPACE_CACHE_ENTRIES_MAX: usize = 16;

impl NamespaceCache {
    /// The cached namespace whose names are exactly these bytes (moved to the front).
    fn lookup_raw(
        &mut self,
        tenant: &[u8],
        app: &[u8],
        agent: &[u8],
        run_id: RunId,
    ) -> Option<Arc<Namespace>> {
        let idx = self.recent.iter().position(|ns| {
            ns.run_id == run_id
                && ns.tenant.as_bytes() == tenant
                && ns.app.as_bytes() == app
                && ns.agent.as_bytes() == agent
        })?;
        if idx != 0 {
            self.recent[..=idx].rotate_right(1);
            self.encode_front();
        }
        Some(self.recent[0].clone())
    }

    /// The front namespace and its encoded length, if `key_bytes` starts with its encoding.
    #[inline]
    fn front_match(&self, key_bytes: &[u8]) -> Option<(Arc<Namespace>, usize)> {
        let front = self.recent.first()?;
        key_bytes
            .starts_with(&self.front_encoded)
            .then(|| (front.clone(), self.front_encoded.len()))
    }

    fn encode_front(&mut self) {
        self.front_encoded.clear();
        if let Some(front) = self.recent.first() {
            encode_namespace(&mut self.front_encoded, front);
        }
    }

    fn intern(&mut self, tenant: &str, app: &str, agent: &str, run_id: RunId) -> Arc<Namespace> {
        if let Some(idx) = self.recent.iter().position(|ns| {
            ns.run_id == run_id && ns.tenant == tenant && ns.app == app && ns.agent == agent
        }) {
            let ns = self.recent[idx].clone();
            if idx != 0 {
                self.recent[..=idx].rotate_right(1);
                self.encode_front();
            }
            return ns;
        }
        let ns = Arc::new(Namespace::new(tenant, app, agent, run_id));
        if self.recent.len() == NAMESPACE_CACHE_ENTRIES_MAX {
            self.recent.pop();
        }
        self.recent.insert(0, ns.clone());
        self.encode_front();
        ns
    }
}

const VALUE_NULL: u8 = 0;
const VALUE_BOOL: u8 = 1;
const VALUE_I64: u8 = 2;
const VALUE_F64: u8 = 3;
const VALUE_STRING: u8 = 4;
const VALUE_BYTES: u8 = 5;

/// Payload length of a BeginTxn record: txn id, run id, timestamp.
const BEGIN_PAYLOAD_LEN: usize = 24;
/// Payload length of a CommitTxn or AbortTxn record: txn id, run id.
const END_PAYLOAD_LEN: usize = 16;

/// Longest tenant, app or agent name, in bytes (a u16 length prefix).
pub const NAME_LEN_MAX: usize = u16::MAX as usize;

/// Frames the payload that `write_payload` appends: reserves the header, then fills in the
/// length, type and checksum. Returns the record's length in bytes.
fn frame(
    out: &mut Vec<u8>,
    record_type: RecordType,
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    write_payload(out);
    let payload_len = out.len() - start - RECORD_HEADER_LEN;
    assert!(
        payload_len <= RECORD_PAYLOAD_LEN_MAX,
        "encoded record exceeds the payload limit"
    );
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4] = record_type as u8;
    let crc = record_crc(
        &out[start..start + RECORD_CRC_OFFSET],
        &out[start + RECORD_HEADER_LEN..],
    );
    out[start + RECORD_CRC_OFFSET..start + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Encodes a BeginTxn record without building a `WALEntry`.
pub fn encode_begin(out: &mut Vec<u8>, txn_id: u64, run_id: RunId, timestamp: Timestamp) -> usize {
    frame(out, RecordType::BeginTxn, |out| {
        put_u64(out, txn_id);
        put_u64(out, run_id.0);
        put_u64(out, timestamp.0);
    })
}

/// Encodes a Write record from borrowed parts (the commit path never clones keys or values).
pub fn encode_write(
    out: &mut Vec<u8>,
    txn_id: u64,
    run_id: RunId,
    key: &Key,
    value: &Value,
    version: u64,
) -> usize {
    frame(out, RecordType::Write, |out| {
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
    txn_id: u64,
    run_id: RunId,
    key: &Key,
    version: u64,
) -> usize {
    frame(out, RecordType::Delete, |out| {
        put_u64(out, txn_id);
        put_u64(out, run_id.0);
        put_u64(out, version);
        encode_key(out, key);
    })
}

/// Encodes a CommitTxn or AbortTxn record.
pub fn encode_end(out: &mut Vec<u8>, record_type: RecordType, txn_id: u64, run_id: RunId) -> usize {
    assert!(matches!(
        record_type,
        RecordType::CommitTxn | RecordType::AbortTxn
    ));
    frame(out, record_type, |out| {
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

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// The error of a field that runs past the payload, built out of line: the field readers
/// below are inlined into the decoder, and with the message formatting kept cold their
/// `Ok` path stays in registers (it was ~50 instructions per field read).
#[cold]
#[inline(never)]
fn short_field(field: &'static str, len: usize, remaining: usize) -> DecodeError {
    DecodeError {
        field,
        reason: format!("needs {len} bytes, only {remaining} remain"),
    }
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let remaining = self.bytes.len() - self.pos;
        if len > remaining {
            return Err(short_field(field, len, remaining));
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    #[inline(always)]
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    #[inline(always)]
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    #[inline(always)]
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline(always)]
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(b);
        Ok(u64::from_le_bytes(arr))
    }

    fn name(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u16(field)? as usize;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError {
            field,
            reason: format!("not UTF-8: {e}"),
        })
    }

    #[inline(always)]
    fn blob(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        self.take(len, field)
    }
}

fn decode_key<'a>(
    cursor: &mut Cursor<'a>,
    namespaces: &mut NamespaceCache,
) -> Result<KeyRef<'a>, DecodeError> {
    // Fast path: the namespace's raw bytes equal a cached (already validated) namespace, so
    // neither UTF-8 validation nor a new allocation is needed. On a miss, or any error, the
    // cursor rewinds and the checked path below decodes (and reports errors) as always.
    let start = cursor.pos;
    let front = namespaces.front_match(&cursor.bytes[start..]);
    let cached = match front {
        Some((namespace, encoded_len_bytes)) => {
            cursor.pos += encoded_len_bytes;
            Some(namespace)
        }
        None => cached_namespace(cursor, namespaces),
    };
    if let Some(namespace) = cached {
        let tag_byte = cursor.u8("key.type_tag")?;
        let type_tag = TypeTag::from_byte(tag_byte).ok_or_else(|| DecodeError {
            field: "key.type_tag",
            reason: format!("unknown type tag {tag_byte}"),
        })?;
        let user_key = cursor.blob("key.user_key")?;
        return Ok(KeyRef {
            namespace,
            type_tag,
            user_key,
        });
    }
    cursor.pos = start;
    let tenant = cursor.name("key.tenant")?;
    let app = cursor.name("key.app")?;
    let agent = cursor.name("key.agent")?;
    let run_id = RunId(cursor.u64("key.run_id")?);
    let tag_byte = cursor.u8("key.type_tag")?;
    let type_tag = TypeTag::from_byte(tag_byte).ok_or_else(|| DecodeError {
        field: "key.type_tag",
        reason: format!("unknown type tag {tag_byte}"),
    })?;
    let user_key = cursor.blob("key.user_key")?;
    Ok(KeyRef {
        namespace: namespaces.intern(tenant, app, agent, run_id),
        type_tag,
        user_key,
    })
}

/// Reads the namespace fields raw and returns the cached namespace with exactly those bytes,
/// or `None` (cursor position then unspecified) on a miss or a short payload.
fn cached_namespace<'a>(
    cursor: &mut Cursor<'a>,
    namespaces: &mut NamespaceCache,
) -> Option<Arc<Namespace>> {
    fn raw_name<'a>(cursor: &mut Cursor<'a>) -> Option<&'a [u8]> {
        let len = cursor.u16("key.name").ok()? as usize;
        cursor.take(len, "key.name").ok()
    }
    let tenant = raw_name(cursor)?;
    let app = raw_name(cursor)?;
    let agent = raw_name(cursor)?;
    let run_id = RunId(cursor.u64("key.run_id").ok()?);
    namespaces.lookup_raw(tenant, app, agent, run_id)
}

fn decode_value<'a>(cursor: &mut Cursor<'a>) -> Result<ValueRef<'a>, DecodeError> {
    let tag = cursor.u8("value.tag")?;
    Ok(match tag {
        VALUE_NULL => ValueRef::Null,
        VALUE_BOOL => match cursor.u8("value.bool")? {
            0 => ValueRef::Bool(false),
            1 => ValueRef::Bool(true),
            other => {
                return Err(DecodeError {
                    field: "value.bool",
                    reason: format!("byte {other} is not 0 or 1"),
                })
            }
        },
        VALUE_I64 => ValueRef::I64(cursor.u64("value.i64")? as i64),
        VALUE_F64 => ValueRef::F64(f64::from_bits(cursor.u64("value.f64")?)),
        VALUE_STRING => {
            let bytes = cursor.blob("value.string")?;
            ValueRef::String(std::str::from_utf8(bytes).map_err(|e| DecodeError {
                field: "value.string",
                reason: format!("not UTF-8: {e}"),
            })?)
        }
        VALUE_BYTES => ValueRef::Bytes(cursor.blob("value.bytes")?),
        other => {
            return Err(DecodeError {
                field: "value.tag",
                reason: format!("unknown value tag {other}"),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{inspect_frame, Frame};

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

    #[test]
    fn every_entry_round_trips_through_a_frame() {
        let mut cache = NamespaceCache::default();
        for entry in sample_entries() {
            let bytes = entry.encode();
            let Frame::Valid {
                record_type,
                payload_len,
            } = inspect_frame(&bytes)
            else {
                panic!("frame of {entry:?} is not valid");
            };
            assert_eq!(payload_len + RECORD_HEADER_LEN, bytes.len());
            let record_type = RecordType::from_byte(record_type).unwrap();
            let decoded =
                WALEntry::decode_payload(record_type, &bytes[RECORD_HEADER_LEN..], &mut cache)
                    .unwrap();
            assert_eq!(decoded, entry);
            assert!(!decoded.to_string().is_empty());
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
        let len = encode_begin(&mut out, 1, RunId(2), Timestamp(3));
        assert_eq!(len, RECORD_HEADER_LEN + BEGIN_PAYLOAD_LEN);
        for kind in [RecordType::CommitTxn, RecordType::AbortTxn] {
            out.clear();
            let len = encode_end(&mut out, kind, 1, RunId(2));
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

    #[test]
    fn namespace_cache_shares_allocations() {
        let mut cache = NamespaceCache::default();
        let a = cache.intern("t", "a", "g", RunId(1));
        let b = cache.intern("t", "a", "g", RunId(1));
        assert!(Arc::ptr_eq(&a, &b));
        for i in 0..40 {
            cache.intern("t", "a", "g", RunId(100 + i));
        }
        assert_eq!(cache.recent.len(), NAMESPACE_CACHE_ENTRIES_MAX);
        let c = cache.intern("t", "a", "g", RunId(1));
        assert_eq!(*c, *a);
    }
}
