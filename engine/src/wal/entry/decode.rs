//! The decoder: payload bytes to [`EntryRef`], which borrows key and value bytes from the
//! payload. Decoding never panics: every length is checked against the bytes that remain,
//! and any malformed payload is a [`DecodeError`] naming the field.

use std::fmt;
use std::sync::Arc;

use super::{
    encode_namespace, WALEntry, VALUE_BOOL, VALUE_BYTES, VALUE_F64, VALUE_I64, VALUE_NULL,
    VALUE_STRING,
};
use crate::types::{Key, Namespace, RunId, Timestamp, TypeTag, Value};
use crate::wal::format::RecordType;

/// A decoded record whose key and value borrow the payload they were decoded from: replay
/// moves them straight into the store's own representation without a `Vec` per field.
/// [`WALEntry::decode_payload`] is this decoder plus [`EntryRef::into_entry`], so both paths
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
    NamespaceDef {
        ns_id: u64,
        namespace: Arc<Namespace>,
    },
    PutTxn {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
        version: u64,
        ns_id: u64,
        key: KeyRef<'a>,
        value: ValueRef<'a>,
    },
    DeleteTxn {
        txn_id: u64,
        run_id: RunId,
        timestamp: Timestamp,
        version: u64,
        ns_id: u64,
        key: KeyRef<'a>,
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
    pub fn into_key(self) -> Key {
        Key::new(self.namespace, self.type_tag, self.user_key)
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
        if !record_type.in_v1() {
            let entry = decode_compact(record_type, &mut cursor, namespaces)?;
            cursor.finish()?;
            return Ok(entry);
        }
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
            RecordType::NamespaceDef | RecordType::PutTxn | RecordType::DeleteTxn => {
                unreachable!("compact records are decoded above")
            }
        };
        cursor.finish()?;
        Ok(entry)
    }

    /// The transaction the record belongs to (0 for a NamespaceDef, which belongs to none).
    pub fn txn_id(&self) -> u64 {
        match self {
            EntryRef::BeginTxn { txn_id, .. }
            | EntryRef::Write { txn_id, .. }
            | EntryRef::Delete { txn_id, .. }
            | EntryRef::CommitTxn { txn_id, .. }
            | EntryRef::AbortTxn { txn_id, .. }
            | EntryRef::PutTxn { txn_id, .. }
            | EntryRef::DeleteTxn { txn_id, .. } => *txn_id,
            EntryRef::NamespaceDef { .. } => 0,
        }
    }

    /// The owned entry (allocates the key and value bytes; the namespace moves over).
    pub fn into_entry(self) -> WALEntry {
        match self {
            EntryRef::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            } => WALEntry::BeginTxn {
                txn_id,
                run_id,
                timestamp,
            },
            EntryRef::Write {
                txn_id,
                run_id,
                key,
                value,
                version,
            } => WALEntry::Write {
                txn_id,
                run_id,
                key: key.into_key(),
                value: value.to_value(),
                version,
            },
            EntryRef::Delete {
                txn_id,
                run_id,
                key,
                version,
            } => WALEntry::Delete {
                txn_id,
                run_id,
                key: key.into_key(),
                version,
            },
            EntryRef::CommitTxn { txn_id, run_id } => WALEntry::CommitTxn { txn_id, run_id },
            EntryRef::AbortTxn { txn_id, run_id } => WALEntry::AbortTxn { txn_id, run_id },
            EntryRef::NamespaceDef { ns_id, namespace } => {
                WALEntry::NamespaceDef { ns_id, namespace }
            }
            EntryRef::PutTxn {
                txn_id,
                run_id,
                timestamp,
                version,
                ns_id,
                key,
                value,
            } => WALEntry::PutTxn {
                txn_id,
                run_id,
                timestamp,
                version,
                ns_id,
                key: key.into_key(),
                value: value.to_value(),
            },
            EntryRef::DeleteTxn {
                txn_id,
                run_id,
                timestamp,
                version,
                ns_id,
                key,
            } => WALEntry::DeleteTxn {
                txn_id,
                run_id,
                timestamp,
                version,
                ns_id,
                key: key.into_key(),
            },
        }
    }
}

/// Decodes the records format version 2 added (NamespaceDef, PutTxn, DeleteTxn): integers
/// as LEB128, the namespace by the id a NamespaceDef gave it.
fn decode_compact<'a>(
    record_type: RecordType,
    cursor: &mut Cursor<'a>,
    namespaces: &mut NamespaceCache,
) -> Result<EntryRef<'a>, DecodeError> {
    if record_type == RecordType::NamespaceDef {
        let ns_id = cursor.varint("ns_id")?;
        let tenant = cursor.name("namespace.tenant")?;
        let app = cursor.name("namespace.app")?;
        let agent = cursor.name("namespace.agent")?;
        let run_id = RunId(cursor.varint("namespace.run_id")?);
        let namespace = namespaces.define(ns_id, tenant, app, agent, run_id)?;
        return Ok(EntryRef::NamespaceDef { ns_id, namespace });
    }
    let txn_id = cursor.varint("txn_id")?;
    let run_id = RunId(cursor.varint("run_id")?);
    let timestamp = Timestamp(cursor.varint("timestamp")?);
    let version = cursor.varint("version")?;
    let ns_id = cursor.varint("key.ns_id")?;
    let namespace = namespaces.resolve(ns_id)?;
    let tag_byte = cursor.u8("key.type_tag")?;
    let type_tag = TypeTag::from_byte(tag_byte).ok_or_else(|| DecodeError {
        field: "key.type_tag",
        reason: format!("unknown type tag {tag_byte}"),
    })?;
    let len = cursor.varint_len("key.user_key")?;
    let user_key = cursor.take(len, "key.user_key")?;
    let key = KeyRef {
        namespace,
        type_tag,
        user_key,
    };
    Ok(match record_type {
        RecordType::PutTxn => EntryRef::PutTxn {
            txn_id,
            run_id,
            timestamp,
            version,
            ns_id,
            key,
            value: decode_value_with(cursor, BlobLen::Varint)?,
        },
        _ => EntryRef::DeleteTxn {
            txn_id,
            run_id,
            timestamp,
            version,
            ns_id,
            key,
        },
    })
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

/// Interns namespaces during decoding: consecutive records almost always share one. Also
/// holds the namespaces a log's NamespaceDef records defined, by id (format version 2).
#[derive(Debug, Default)]
pub struct NamespaceCache {
    recent: Vec<Arc<Namespace>>,
    /// `defined[id]`: the namespace NamespaceDef `id` defined. Ids are dense from 0, in log
    /// order.
    defined: Vec<Arc<Namespace>>,
    /// Judging records by structure alone (after damage, in a sidecar): a namespace id that
    /// was never defined here resolves to a placeholder instead of an error.
    lenient: bool,
    /// The encoded form of `recent[0]` (names with their lengths, then the run id): a key
    /// that starts with exactly these bytes has that namespace, found with one comparison.
    front_encoded: Vec<u8>,
}

/// How many distinct namespaces the cache remembers (most recent first).
const NAMESPACE_CACHE_ENTRIES_MAX: usize = 16;

impl NamespaceCache {
    /// A cache for judging records out of their log's context (see `lenient`).
    pub fn lenient() -> NamespaceCache {
        NamespaceCache {
            lenient: true,
            ..NamespaceCache::default()
        }
    }

    /// The namespaces the log's NamespaceDef records defined so far, by id.
    pub fn defined(&self) -> &[Arc<Namespace>] {
        &self.defined
    }

    /// Records NamespaceDef `ns_id`. Ids come dense and in order; defining an id again is
    /// allowed only with the same namespace (a writer after recovery never does, but a
    /// repeated definition changes nothing).
    fn define(
        &mut self,
        ns_id: u64,
        tenant: &str,
        app: &str,
        agent: &str,
        run_id: RunId,
    ) -> Result<Arc<Namespace>, DecodeError> {
        let namespace = self.intern(tenant, app, agent, run_id);
        if self.lenient {
            return Ok(namespace);
        }
        let next = self.defined.len() as u64;
        match ns_id.cmp(&next) {
            std::cmp::Ordering::Equal => {
                self.defined.push(namespace.clone());
                Ok(namespace)
            }
            std::cmp::Ordering::Less if self.defined[ns_id as usize] == namespace => Ok(namespace),
            std::cmp::Ordering::Less => Err(DecodeError {
                field: "ns_id",
                reason: format!("namespace id {ns_id} is already defined as another namespace"),
            }),
            std::cmp::Ordering::Greater => Err(DecodeError {
                field: "ns_id",
                reason: format!("namespace id {ns_id} skips ids (next is {next})"),
            }),
        }
    }

    /// The namespace `ns_id` names.
    fn resolve(&mut self, ns_id: u64) -> Result<Arc<Namespace>, DecodeError> {
        if let Some(namespace) = usize::try_from(ns_id)
            .ok()
            .and_then(|i| self.defined.get(i))
        {
            return Ok(namespace.clone());
        }
        if self.lenient {
            return Ok(self.intern("?", "?", "?", RunId(ns_id)));
        }
        Err(DecodeError {
            field: "key.ns_id",
            reason: format!(
                "namespace id {ns_id} was never defined ({} are)",
                self.defined.len()
            ),
        })
    }

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

/// Payload length of a BeginTxn record: txn id, run id, timestamp.
pub(super) const BEGIN_PAYLOAD_LEN: usize = 24;
/// Payload length of a CommitTxn or AbortTxn record: txn id, run id.
pub(super) const END_PAYLOAD_LEN: usize = 16;

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

    #[inline(always)]
    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        match crate::wal::format::read_leb128(&self.bytes[self.pos..]) {
            Some((value, len)) => {
                self.pos += len;
                Ok(value)
            }
            None => Err(DecodeError {
                field,
                reason: "not a LEB128 u64 (cut short, over 10 bytes or over 64 bits)".to_string(),
            }),
        }
    }

    /// A LEB128 length, which must fit the bytes that remain.
    fn varint_len(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let len = self.varint(field)?;
        let remaining = self.bytes.len() - self.pos;
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= remaining)
            .ok_or_else(|| short_field(field, len.min(usize::MAX as u64) as usize, remaining))
    }

    /// Every byte of the payload must be consumed.
    fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.bytes.len() {
            return Err(DecodeError {
                field: "payload",
                reason: format!(
                    "{} trailing bytes after the last field",
                    self.bytes.len() - self.pos
                ),
            });
        }
        Ok(())
    }
}

/// How a string or byte value's length is written: u32 LE (version 1 records) or LEB128
/// (the compact records of version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobLen {
    U32,
    Varint,
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
    decode_value_with(cursor, BlobLen::U32)
}

#[inline(always)]
fn decode_value_with<'a>(
    cursor: &mut Cursor<'a>,
    blob_len: BlobLen,
) -> Result<ValueRef<'a>, DecodeError> {
    let blob = |cursor: &mut Cursor<'a>, field| match blob_len {
        BlobLen::U32 => cursor.blob(field),
        BlobLen::Varint => {
            let len = cursor.varint_len(field)?;
            cursor.take(len, field)
        }
    };
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
            let bytes = blob(cursor, "value.string")?;
            ValueRef::String(std::str::from_utf8(bytes).map_err(|e| DecodeError {
                field: "value.string",
                reason: format!("not UTF-8: {e}"),
            })?)
        }
        VALUE_BYTES => ValueRef::Bytes(blob(cursor, "value.bytes")?),
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
