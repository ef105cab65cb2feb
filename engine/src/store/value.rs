//! `StoredValue`: a value as the map holds it, with its version and timestamp.

use crate::types::{Timestamp, Value, VersionedValue};
use crate::wal::entry::ValueRef;

/// Byte and string values up to this length are stored inside the map's entry: the
/// largest payload that fits the 40 bytes the entry spends on its value anyway (a boxed
/// slice is 16 bytes; tag and length take two). A `Value::Bytes` of 32 bytes held as a Vec
/// costs 32 bytes in the entry plus a 48-byte heap block, 1.9x the inline form.
pub(crate) const INLINE_VALUE_LEN_MAX: usize = 38;

/// A value as the map holds it: small byte and string payloads inline (no heap block),
/// larger ones boxed without spare capacity. Readers get a `VersionedValue` rebuilt from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredPayload {
    Null,
    Bool(bool),
    I64(i64),
    /// Bits of the f64: equality is bitwise, as for `Value`.
    F64(u64),
    InlineBytes {
        len: u8,
        bytes: [u8; INLINE_VALUE_LEN_MAX],
    },
    /// UTF-8, checked when stored (it came from a `String`).
    InlineString {
        len: u8,
        bytes: [u8; INLINE_VALUE_LEN_MAX],
    },
    Bytes(Box<[u8]>),
    String(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredValue {
    payload: StoredPayload,
    version: u64,
    timestamp: Timestamp,
}

fn inline(bytes: &[u8]) -> Option<(u8, [u8; INLINE_VALUE_LEN_MAX])> {
    if bytes.len() > INLINE_VALUE_LEN_MAX {
        return None;
    }
    let mut inline = [0u8; INLINE_VALUE_LEN_MAX];
    inline[..bytes.len()].copy_from_slice(bytes);
    Some((bytes.len() as u8, inline))
}

impl StoredPayload {
    /// The stored form of a value decoded from the log, copied once from the record.
    pub(crate) fn from_ref(value: ValueRef<'_>) -> StoredPayload {
        match value {
            ValueRef::Null => StoredPayload::Null,
            ValueRef::Bool(b) => StoredPayload::Bool(b),
            ValueRef::I64(i) => StoredPayload::I64(i),
            ValueRef::F64(f) => StoredPayload::F64(f.to_bits()),
            ValueRef::Bytes(b) => match inline(b) {
                Some((len, bytes)) => StoredPayload::InlineBytes { len, bytes },
                None => StoredPayload::Bytes(b.into()),
            },
            ValueRef::String(s) => match inline(s.as_bytes()) {
                Some((len, bytes)) => StoredPayload::InlineString { len, bytes },
                None => StoredPayload::String(s.into()),
            },
        }
    }
}

impl StoredValue {
    pub(crate) fn new(value: Value, version: u64, timestamp: Timestamp) -> StoredValue {
        let payload = match value {
            Value::Null => StoredPayload::Null,
            Value::Bool(b) => StoredPayload::Bool(b),
            Value::I64(i) => StoredPayload::I64(i),
            Value::F64(f) => StoredPayload::F64(f.to_bits()),
            Value::Bytes(b) => match inline(&b) {
                Some((len, bytes)) => StoredPayload::InlineBytes { len, bytes },
                None => StoredPayload::Bytes(b.into_boxed_slice()),
            },
            Value::String(s) => match inline(s.as_bytes()) {
                Some((len, bytes)) => StoredPayload::InlineString { len, bytes },
                None => StoredPayload::String(s.into_boxed_str()),
            },
        };
        StoredValue {
            payload,
            version,
            timestamp,
        }
    }

    /// A stored value from its parts (replay builds the payload before it knows whether
    /// the transaction commits).
    pub(crate) fn from_payload(
        payload: StoredPayload,
        version: u64,
        timestamp: Timestamp,
    ) -> StoredValue {
        StoredValue {
            payload,
            version,
            timestamp,
        }
    }

    #[cfg(test)]
    pub(crate) fn into_payload(self) -> StoredPayload {
        self.payload
    }

    fn value(&self) -> Value {
        match &self.payload {
            StoredPayload::Null => Value::Null,
            StoredPayload::Bool(b) => Value::Bool(*b),
            StoredPayload::I64(i) => Value::I64(*i),
            StoredPayload::F64(bits) => Value::F64(f64::from_bits(*bits)),
            StoredPayload::InlineBytes { len, bytes } => {
                Value::Bytes(bytes[..usize::from(*len)].to_vec())
            }
            StoredPayload::InlineString { len, bytes } => Value::String(
                std::str::from_utf8(&bytes[..usize::from(*len)])
                    .expect("stored from a String")
                    .to_owned(),
            ),
            StoredPayload::Bytes(b) => Value::Bytes(b.to_vec()),
            StoredPayload::String(s) => Value::String(s.to_string()),
        }
    }

    pub(crate) fn to_versioned(&self) -> VersionedValue {
        VersionedValue {
            value: self.value(),
            version: self.version,
            timestamp: self.timestamp,
        }
    }

    pub(crate) fn into_versioned(self) -> VersionedValue {
        let value = match self.payload {
            StoredPayload::Bytes(b) => Value::Bytes(b.into_vec()),
            StoredPayload::String(s) => Value::String(s.into_string()),
            _ => self.value(),
        };
        VersionedValue {
            value,
            version: self.version,
            timestamp: self.timestamp,
        }
    }
}
