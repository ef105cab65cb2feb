//! Keys, values and the identifiers that scope them.
//!
//! A [`Key`] lives in a [`Namespace`] (tenant / app / agent / run) and carries a [`TypeTag`]
//! so that different primitives sharing a namespace never collide. Keys order by namespace,
//! then type tag, then user key bytes, which makes a namespace a contiguous range of the store.

use std::fmt;
use std::sync::Arc;

/// Identifies one agent run. Opaque to the engine; carried on every WAL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run-{:016x}", self.0)
    }
}

/// Microseconds since the Unix epoch, as recorded in a transaction's BeginTxn record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time. Only used to stamp new transactions; recovery reuses
    /// the stamp recorded in the log, so recovered values carry their original timestamps.
    pub fn now() -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Timestamp(micros)
    }
}

/// The scope of a key: who owns it and which run wrote it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace {
    pub tenant: String,
    pub app: String,
    pub agent: String,
    pub run_id: RunId,
}

impl Namespace {
    pub fn new(
        tenant: impl Into<String>,
        app: impl Into<String>,
        agent: impl Into<String>,
        run_id: RunId,
    ) -> Namespace {
        Namespace {
            tenant: tenant.into(),
            app: app.into(),
            agent: agent.into(),
            run_id,
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.tenant, self.app, self.agent, self.run_id
        )
    }
}

/// Which primitive a key belongs to. Encoded as one byte; unknown bytes are a decode error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TypeTag {
    /// Plain key-value data.
    Kv = 1,
    /// Append-only event log entries.
    Event = 2,
    /// State cells (compare-and-swap style values).
    State = 3,
    /// Trace spans.
    Trace = 4,
    /// Run metadata and indexes.
    RunIndex = 5,
}

impl TypeTag {
    /// Every tag, in encoding order.
    pub const ALL: [TypeTag; 5] = [
        TypeTag::Kv,
        TypeTag::Event,
        TypeTag::State,
        TypeTag::Trace,
        TypeTag::RunIndex,
    ];

    /// The tag's byte in the WAL encoding.
    pub fn as_byte(self) -> u8 {
        self as u8
    }

    /// The tag for an encoded byte, or `None` for a byte no tag uses.
    pub fn from_byte(byte: u8) -> Option<TypeTag> {
        TypeTag::ALL.into_iter().find(|tag| tag.as_byte() == byte)
    }
}

/// A fully scoped key. Ordered by namespace, type tag, then user key bytes.
///
/// The namespace is shared (`Arc`) because millions of keys typically share a handful of
/// namespaces; cloning a key never copies the four namespace fields.
#[derive(Debug, Clone, Eq)]
pub struct Key {
    pub namespace: Arc<Namespace>,
    pub type_tag: TypeTag,
    pub user_key: Vec<u8>,
}

impl Key {
    pub fn new(namespace: Arc<Namespace>, type_tag: TypeTag, user_key: impl Into<Vec<u8>>) -> Key {
        Key {
            namespace,
            type_tag,
            user_key: user_key.into(),
        }
    }

    /// A plain key-value key.
    pub fn kv(namespace: Arc<Namespace>, user_key: impl Into<Vec<u8>>) -> Key {
        Key::new(namespace, TypeTag::Kv, user_key)
    }
}

/// Compares namespaces by pointer first: keys in one store almost always share their
/// namespace allocation (replay interns it), and comparing the three names byte by byte on
/// every BTreeMap step was more than half of replay's time. Equal pointers mean equal
/// values, so the order is exactly the derived one (namespace, type tag, user key).
///
/// Inlined (with the by-value comparison kept out of line and cold) because BTreeMap search
/// calls it at every step: as a call it was ~3% of a replay + read-every-key run.
#[inline]
pub(crate) fn cmp_namespaces(a: &Arc<Namespace>, b: &Arc<Namespace>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        cmp_namespaces_by_value(a, b)
    }
}

#[cold]
#[inline(never)]
fn cmp_namespaces_by_value(a: &Namespace, b: &Namespace) -> std::cmp::Ordering {
    a.cmp(b)
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.type_tag == other.type_tag
            && self.user_key == other.user_key
            && cmp_namespaces(&self.namespace, &other.namespace).is_eq()
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The same fields as `eq`, by value: equal keys hash equally.
        self.namespace.hash(state);
        self.type_tag.hash(state);
        self.user_key.hash(state);
    }
}

impl Ord for Key {
    #[inline]
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        cmp_namespaces(&self.namespace, &other.namespace)
            .then_with(|| self.type_tag.cmp(&other.type_tag))
            .then_with(|| cmp_user_keys(&self.user_key, &other.user_key))
    }
}

/// Lexicographic byte order, as `<[u8]>::cmp`, compared eight bytes at a time inline.
/// BTreeMap search compares a key with most keys of every node on its path, and for the
/// short keys of typical workloads a call into libc's memcmp cost more than the comparison.
#[inline]
pub(crate) fn cmp_user_keys(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    const CHUNK_LEN: usize = 8;
    let common = a.len().min(b.len());
    let mut a_chunks = a[..common].chunks_exact(CHUNK_LEN);
    let mut b_chunks = b[..common].chunks_exact(CHUNK_LEN);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        let x = u64::from_be_bytes(x.try_into().expect("chunk of 8"));
        let y = u64::from_be_bytes(y.try_into().expect("chunk of 8"));
        if x != y {
            return x.cmp(&y);
        }
    }
    // Both remainders have the same length (under 8): zero-padded, they compare as numbers.
    let pad = |rest: &[u8]| {
        rest.iter()
            .enumerate()
            .fold(0u64, |word, (i, b)| word | (u64::from(*b) << (56 - 8 * i)))
    };
    pad(a_chunks.remainder())
        .cmp(&pad(b_chunks.remainder()))
        .then(a.len().cmp(&b.len()))
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{:?}/{}",
            self.namespace,
            self.type_tag,
            String::from_utf8_lossy(&self.user_key)
        )
    }
}

/// A stored value.
///
/// Equality is bitwise for floats (`NaN == NaN` when the bits agree), because the store and
/// the crash checker compare what was written with what was recovered, not numbers.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    String(String),
    Bytes(Vec<u8>),
}

impl Value {
    /// Size of the value's payload in bytes (for strings and byte arrays), else its width.
    pub fn payload_len_bytes(&self) -> usize {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::I64(_) | Value::F64(_) => 8,
            Value::String(s) => s.len(),
            Value::Bytes(b) => b.len(),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::I64(a), Value::I64(b)) => a == b,
            (Value::F64(a), Value::F64(b)) => a.to_bits() == b.to_bits(),
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

/// A value as the store holds it: with the version of the write that produced it and the
/// timestamp of the transaction that committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    pub value: Value,
    pub version: u64,
    pub timestamp: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_tag_bytes_round_trip_and_zero_is_not_a_tag() {
        for tag in TypeTag::ALL {
            assert_eq!(TypeTag::from_byte(tag.as_byte()), Some(tag));
        }
        assert_eq!(TypeTag::from_byte(0), None);
        assert_eq!(TypeTag::from_byte(200), None);
    }

    #[test]
    fn float_values_compare_bitwise() {
        assert_eq!(Value::F64(f64::NAN), Value::F64(f64::NAN));
        assert_ne!(Value::F64(0.0), Value::F64(-0.0));
        assert_ne!(Value::I64(1), Value::F64(1.0));
    }

    #[test]
    fn user_key_order_is_byte_order() {
        let samples: [&[u8]; 9] = [
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefghi",
            b"abcdefgi",
            b"abcdefgh\x00",
            b"\xffabcdefgh",
            b"key-0000000000000001",
        ];
        for a in samples {
            for b in samples {
                assert_eq!(cmp_user_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn keys_order_by_namespace_then_tag_then_bytes() {
        let a = Arc::new(Namespace::new("t", "a", "x", RunId(1)));
        let b = Arc::new(Namespace::new("t", "b", "x", RunId(1)));
        let k1 = Key::new(a.clone(), TypeTag::Kv, b"z".to_vec());
        let k2 = Key::new(a.clone(), TypeTag::Event, b"a".to_vec());
        let k3 = Key::new(b, TypeTag::Kv, b"a".to_vec());
        assert!(k1 < k2);
        assert!(k2 < k3);
        assert_eq!(k1.to_string(), "t/a/x/run-0000000000000001/Kv/z");
    }
}
