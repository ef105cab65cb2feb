//! `LocalKey`: a key as a namespace's tree holds it, 24 bytes with short user keys inline;
//! `StoredKey`: the same with its namespace, as replay buffers it.
//!
//! A [`Key`] keeps its user key in a `Vec` (24 bytes plus a heap block). In the map that cost
//! a heap block per key and, worse, a pointer chase on every comparison of a search: a
//! lookup compares with ~20 keys on its way down, each in another heap block. A stored key
//! holds its type tag and up to [`USER_KEY_INLINE_LEN_MAX`] user-key bytes inline, so a
//! search compares keys that sit in the leaf's own array, and longer user keys are boxed
//! without spare capacity. The order is exactly `Key`'s (namespace, type tag, user key);
//! inside one namespace, `LocalKey`'s (type tag, user key).

use std::cmp::Ordering;
use std::sync::Arc;

use super::merge::{RunKey, SORT_BYTES_LEN};
use crate::types::{cmp_namespaces, cmp_user_keys, Key, Namespace, TypeTag};

/// User keys up to this many bytes are stored inline: what fits next to the discriminant,
/// the type tag and the length in the 24 bytes a boxed slice takes with its tag anyway.
pub(crate) const USER_KEY_INLINE_LEN_MAX: usize = 21;

/// A key with its namespace: the form replay buffers, sorts and merges (runs span
/// namespaces). The map itself keeps one tree per namespace, keyed by [`LocalKey`].
#[derive(Clone)]
pub(crate) struct StoredKey {
    namespace: Arc<Namespace>,
    local: LocalKey,
}

/// A key as a namespace's tree holds it, 24 bytes: the type tag and the user key, inline
/// up to [`USER_KEY_INLINE_LEN_MAX`] bytes. The namespace is the tree's, not the key's:
/// 8 bytes per entry (9% of a 1M-key store of 20-byte keys and 32-byte values) that every
/// key of a namespace repeated.
#[derive(Clone)]
pub(crate) enum LocalKey {
    Inline {
        type_tag: TypeTag,
        len: u8,
        bytes: [u8; USER_KEY_INLINE_LEN_MAX],
    },
    Boxed {
        type_tag: TypeTag,
        bytes: Box<[u8]>,
    },
}

impl LocalKey {
    /// The stored form of a type tag and user key.
    pub(crate) fn new(type_tag: TypeTag, user_key: &[u8]) -> LocalKey {
        if user_key.len() <= USER_KEY_INLINE_LEN_MAX {
            let mut inline = [0u8; USER_KEY_INLINE_LEN_MAX];
            inline[..user_key.len()].copy_from_slice(user_key);
            LocalKey::Inline {
                type_tag,
                len: user_key.len() as u8,
                bytes: inline,
            }
        } else {
            LocalKey::Boxed {
                type_tag,
                bytes: user_key.into(),
            }
        }
    }

    pub(crate) fn type_tag(&self) -> TypeTag {
        match self {
            LocalKey::Inline { type_tag, .. } | LocalKey::Boxed { type_tag, .. } => *type_tag,
        }
    }

    pub(crate) fn user_key(&self) -> &[u8] {
        match self {
            LocalKey::Inline { len, bytes, .. } => &bytes[..usize::from(*len)],
            LocalKey::Boxed { bytes, .. } => bytes,
        }
    }

    /// The public form, in `namespace` (allocates the user key).
    pub(crate) fn to_key(&self, namespace: &Arc<Namespace>) -> Key {
        Key::new(namespace.clone(), self.type_tag(), self.user_key())
    }

    #[inline(never)]
    fn cmp_general(&self, other: &LocalKey) -> Ordering {
        self.type_tag()
            .cmp(&other.type_tag())
            .then_with(|| cmp_user_keys(self.user_key(), other.user_key()))
    }

    /// How this key orders against `probe`. The common case (both user keys inline) is a
    /// handful of instructions inlined into the search loop; anything else takes the
    /// general comparison out of line, which keeps the loop small enough to stay inlined
    /// (with the general case inlined too, each step was a call).
    #[inline(always)]
    pub(crate) fn cmp_probe(&self, probe: &Probe<'_>) -> Ordering {
        if let (
            LocalKey::Inline {
                type_tag,
                len,
                bytes,
            },
            Some(words),
        ) = (self, &probe.words)
        {
            return cmp_inline(
                (*type_tag, &inline_words(bytes), usize::from(*len)),
                (probe.type_tag, words, probe.user_key.len()),
            );
        }
        self.cmp_probe_general(probe)
    }

    #[inline(never)]
    fn cmp_probe_general(&self, probe: &Probe<'_>) -> Ordering {
        self.type_tag()
            .cmp(&probe.type_tag)
            .then_with(|| cmp_user_keys(self.user_key(), probe.user_key))
    }
}

impl Ord for LocalKey {
    /// The common case (both user keys inline) inlined into sorts, merges and tree
    /// inserts; anything else out of line (as for `cmp_probe`): as one function it stayed a
    /// call per comparison, ~15% of a random-order replay.
    #[inline(always)]
    fn cmp(&self, other: &LocalKey) -> Ordering {
        if let (
            LocalKey::Inline {
                type_tag,
                len,
                bytes,
            },
            LocalKey::Inline {
                type_tag: other_type_tag,
                len: other_len,
                bytes: other_bytes,
            },
        ) = (self, other)
        {
            return cmp_inline(
                (*type_tag, &inline_words(bytes), usize::from(*len)),
                (
                    *other_type_tag,
                    &inline_words(other_bytes),
                    usize::from(*other_len),
                ),
            );
        }
        self.cmp_general(other)
    }
}

impl PartialOrd for LocalKey {
    fn partial_cmp(&self, other: &LocalKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for LocalKey {
    fn eq(&self, other: &LocalKey) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for LocalKey {}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}/{:?}", self.type_tag(), self.user_key())
    }
}

impl StoredKey {
    /// The stored form of a key given by parts (the namespace is shared, not copied).
    pub(crate) fn new(namespace: Arc<Namespace>, type_tag: TypeTag, user_key: &[u8]) -> StoredKey {
        StoredKey {
            namespace,
            local: LocalKey::new(type_tag, user_key),
        }
    }

    /// A key from its namespace and its key inside that namespace.
    pub(crate) fn from_parts(namespace: Arc<Namespace>, local: LocalKey) -> StoredKey {
        StoredKey { namespace, local }
    }

    /// The namespace and the key inside it.
    pub(crate) fn into_parts(self) -> (Arc<Namespace>, LocalKey) {
        (self.namespace, self.local)
    }

    /// The stored form of `key`, reusing its namespace and (for long keys) its buffer.
    pub(crate) fn from_key(key: Key) -> StoredKey {
        if key.user_key.len() <= USER_KEY_INLINE_LEN_MAX {
            return StoredKey::new(key.namespace, key.type_tag, &key.user_key);
        }
        StoredKey {
            namespace: key.namespace,
            local: LocalKey::Boxed {
                type_tag: key.type_tag,
                bytes: key.user_key.into_boxed_slice(),
            },
        }
    }

    pub(crate) fn namespace(&self) -> &Arc<Namespace> {
        &self.namespace
    }

    pub(crate) fn local(&self) -> &LocalKey {
        &self.local
    }

    /// The public form (allocates the user key).
    pub(crate) fn to_key(&self) -> Key {
        self.local.to_key(&self.namespace)
    }

    #[inline(never)]
    fn cmp_general(&self, other: &StoredKey) -> Ordering {
        cmp_namespaces(&self.namespace, &other.namespace).then_with(|| self.local.cmp(&other.local))
    }
}

impl Ord for StoredKey {
    /// Keys of one namespace allocation (replay's common case) compare their local keys
    /// inline; anything else out of line.
    #[inline(always)]
    fn cmp(&self, other: &StoredKey) -> Ordering {
        if Arc::ptr_eq(&self.namespace, &other.namespace) {
            return self.local.cmp(&other.local);
        }
        self.cmp_general(other)
    }
}

/// The inline bytes (zero-padded) as three big-endian words that order like the bytes.
/// Zero padding keeps byte order: where two padded keys first differ inside one key's
/// padding, that key is a prefix of the other (and so the smaller); equal padded bytes
/// leave the order to the lengths. The third word overlaps the second (bytes 13..21): it is
/// compared only when bytes 0..16 are equal, so it decides on bytes 16..21 alone.
#[inline(always)]
fn inline_words(bytes: &[u8; USER_KEY_INLINE_LEN_MAX]) -> [u64; 3] {
    let word = |at: usize| {
        u64::from_be_bytes(
            bytes[at..at + 8]
                .try_into()
                .expect("8 bytes inside the inline array"),
        )
    };
    [word(0), word(8), word(USER_KEY_INLINE_LEN_MAX - 8)]
}

const _: () = assert!(USER_KEY_INLINE_LEN_MAX > 16 && USER_KEY_INLINE_LEN_MAX <= 24);

/// The order of two keys in one namespace whose user keys are inline: type tag, then the
/// `inline_words` word by word, then length. Every comparison of the common case (map
/// inserts and searches alike) goes through here.
#[inline(always)]
fn cmp_inline(a: (TypeTag, &[u64; 3], usize), b: (TypeTag, &[u64; 3], usize)) -> Ordering {
    let ((a_tag, a_words, a_len), (b_tag, b_words, b_len)) = (a, b);
    if a_tag != b_tag {
        return a_tag.cmp(&b_tag);
    }
    for (x, y) in a_words.iter().zip(b_words) {
        if x != y {
            return x.cmp(y);
        }
    }
    a_len.cmp(&b_len)
}

/// A search key inside one namespace, prepared once per search, so that each comparison
/// with a stored key is a tag compare and (for user keys short enough to be inline) three
/// word compares: searching the map is most of a read.
pub(crate) struct Probe<'a> {
    type_tag: TypeTag,
    user_key: &'a [u8],
    /// `user_key` as `inline_words` of its inline form, when it fits inline.
    words: Option<[u64; 3]>,
}

impl<'a> Probe<'a> {
    /// A probe for the key given by parts (its namespace chose the tree).
    pub(crate) fn new(type_tag: TypeTag, user_key: &'a [u8]) -> Probe<'a> {
        let words = (user_key.len() <= USER_KEY_INLINE_LEN_MAX).then(|| {
            let mut padded = [0u8; USER_KEY_INLINE_LEN_MAX];
            padded[..user_key.len()].copy_from_slice(user_key);
            inline_words(&padded)
        });
        Probe {
            type_tag,
            user_key,
            words,
        }
    }
}

impl RunKey for StoredKey {
    /// The namespace allocation and the type tag.
    type Class = (usize, TypeTag);
    type Space = Arc<Namespace>;
    type Local = LocalKey;

    fn split(self) -> (Arc<Namespace>, LocalKey) {
        self.into_parts()
    }

    #[cfg(test)]
    fn join(namespace: Arc<Namespace>, local: LocalKey) -> StoredKey {
        StoredKey::from_parts(namespace, local)
    }

    fn cmp_space(a: &Arc<Namespace>, b: &Arc<Namespace>) -> Ordering {
        cmp_namespaces(a, b)
    }

    fn class(&self) -> (usize, TypeTag) {
        (Arc::as_ptr(&self.namespace) as usize, self.local.type_tag())
    }

    /// The zero-padded inline bytes: within one namespace and type tag, keys whose padded
    /// bytes differ order as those bytes (the argument of `inline_words`).
    fn sort_bytes(&self) -> Option<[u8; SORT_BYTES_LEN]> {
        match &self.local {
            LocalKey::Inline { bytes, .. } => {
                let mut padded = [0u8; SORT_BYTES_LEN];
                padded[..USER_KEY_INLINE_LEN_MAX].copy_from_slice(bytes);
                Some(padded)
            }
            LocalKey::Boxed { .. } => None,
        }
    }
}

impl PartialOrd for StoredKey {
    fn partial_cmp(&self, other: &StoredKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for StoredKey {
    fn eq(&self, other: &StoredKey) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for StoredKey {}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RunId;

    /// The layout this module is sized for: a tree's key is 24 bytes (no namespace, no
    /// heap block for short user keys); with its namespace, 32.
    #[test]
    fn local_key_is_24_bytes() {
        assert_eq!(std::mem::size_of::<LocalKey>(), 24);
        assert_eq!(std::mem::size_of::<StoredKey>(), 32);
    }

    /// Stored keys order, compare and convert exactly like the keys they came from, on both
    /// sides of the inline limit, across type tags and namespaces (shared or not); within
    /// one class, their sort bytes, where they differ, order like them too.
    #[test]
    fn stored_keys_order_like_keys() {
        let a = Arc::new(Namespace::new("t", "a", "x", RunId(1)));
        let a_copy = Arc::new(Namespace::new("t", "a", "x", RunId(1)));
        let b = Arc::new(Namespace::new("t", "b", "x", RunId(1)));
        let mut keys = Vec::new();
        for ns in [&a, &a_copy, &b] {
            for tag in [TypeTag::Kv, TypeTag::Event] {
                for len in [
                    0,
                    1,
                    USER_KEY_INLINE_LEN_MAX - 1,
                    USER_KEY_INLINE_LEN_MAX,
                    USER_KEY_INLINE_LEN_MAX + 1,
                    40,
                ] {
                    for fill in [0u8, 0x7f, 0xff] {
                        keys.push(Key::new(ns.clone(), tag, vec![fill; len]));
                    }
                    // Keys that differ only in one byte of each inline word, and only in
                    // length where the extra byte is zero (like padding).
                    for at in [0, 7, 8, 13, 15, 16, USER_KEY_INLINE_LEN_MAX - 1] {
                        if at < len {
                            let mut user_key = vec![0x41u8; len];
                            user_key[at] = 0x42;
                            keys.push(Key::new(ns.clone(), tag, user_key));
                        }
                    }
                    let mut with_zero = vec![0x41u8; len];
                    with_zero.push(0);
                    keys.push(Key::new(ns.clone(), tag, with_zero));
                }
            }
        }
        let stored: Vec<StoredKey> = keys.iter().cloned().map(StoredKey::from_key).collect();
        for (k1, s1) in keys.iter().zip(&stored) {
            assert_eq!(s1.to_key(), *k1);
            assert_eq!(s1.local().user_key(), &k1.user_key[..]);
            for (k2, s2) in keys.iter().zip(&stored) {
                assert_eq!(s1.cmp(s2), k1.cmp(k2), "{k1} vs {k2}");
                if *k1.namespace == *k2.namespace {
                    // Inside one namespace the tree's keys and probes order as the keys.
                    let probe = Probe::new(k2.type_tag, &k2.user_key);
                    assert_eq!(
                        s1.local().cmp_probe(&probe),
                        k1.cmp(k2),
                        "{k1} vs probe {k2}"
                    );
                    assert_eq!(s1.local().cmp(s2.local()), k1.cmp(k2), "{k1} vs {k2}");
                }
                if let (Some(b1), Some(b2)) = (s1.sort_bytes(), s2.sort_bytes()) {
                    if s1.class() == s2.class() && b1 != b2 {
                        assert_eq!(b1.cmp(&b2), k1.cmp(k2), "sort bytes of {k1} vs {k2}");
                    }
                }
            }
        }
    }
}
