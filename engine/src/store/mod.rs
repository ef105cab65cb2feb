//! `UnifiedStore`: the in-memory, ordered, versioned map that the WAL rebuilds.
//!
//! Invariant: `current_version` is at least the version of every value in the map, and it
//! never decreases. `put` allocates versions; the replay-only `*_with_version` methods never
//! allocate and only raise the global version.

mod huge_pages;
mod key;
mod merge;
mod replay;
mod spaces;
mod tree;
mod value;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::types::{Key, Namespace, Timestamp, TypeTag, Value, VersionedValue};
use key::{LocalKey, Probe, StoredKey};
pub(crate) use replay::{ReplayApplier, ReplayOp};
use spaces::Spaces;
use value::StoredValue;

/// Ordered versioned map, safe to share across threads.
#[derive(Debug, Default)]
pub struct UnifiedStore {
    contents: RwLock<Contents>,
    version: AtomicU64,
}

/// Everything behind the store's lock: one lock acquisition per read or write. The map is
/// one tree per namespace (`spaces.rs`), so stored keys do not repeat their namespace, and
/// a search compares user keys only.
#[derive(Debug, Default)]
struct Contents {
    map: Spaces<StoredValue>,
}

impl Contents {
    /// Stores `value` under `key`.
    fn insert(&mut self, key: Key, value: StoredValue) {
        self.map.insert(StoredKey::from_key(key), value);
    }

    /// Removes the entry of `key`.
    fn remove(&mut self, key: &Key) -> Option<StoredValue> {
        let probe = Probe::new(key.type_tag, &key.user_key);
        self.map.remove(&key.namespace, &probe)
    }
}

impl UnifiedStore {
    pub fn new() -> UnifiedStore {
        UnifiedStore::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Contents> {
        // A panic while holding the lock cannot leave the map half-updated (every mutation
        // is a single map call), so a poisoned lock is still consistent.
        self.contents
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Contents> {
        self.contents
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The highest version allocated or replayed so far (0 for an empty store).
    pub fn current_version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Stores `value` under a newly allocated version and returns that version.
    pub fn put(&self, key: Key, value: Value) -> u64 {
        let mut contents = self.write();
        let version = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        contents.insert(key, StoredValue::new(value, version, Timestamp::now()));
        version
    }

    /// Removes `key` under a newly allocated version; returns the removed value, if any.
    pub fn delete(&self, key: &Key) -> Option<VersionedValue> {
        let mut contents = self.write();
        self.version.fetch_add(1, Ordering::AcqRel);
        contents.remove(key).map(StoredValue::into_versioned)
    }

    /// Replay only: stores `value` with exactly `version`, raising the global version to at
    /// least `version`. Never allocates.
    pub fn put_with_version(&self, key: Key, value: Value, version: u64, timestamp: Timestamp) {
        let mut contents = self.write();
        self.version.fetch_max(version, Ordering::AcqRel);
        contents.insert(key, StoredValue::new(value, version, timestamp));
    }

    /// Replay only: removes `key`, raising the global version to at least `version`.
    pub fn delete_with_version(&self, key: &Key, version: u64) -> Option<VersionedValue> {
        let mut contents = self.write();
        self.version.fetch_max(version, Ordering::AcqRel);
        contents.remove(key).map(StoredValue::into_versioned)
    }

    /// Applies a batch of committed operations under one lock acquisition, in order, so
    /// that a committed transaction becomes visible all at once. (Replay uses the
    /// `ReplayApplier` instead, which holds the lock for the whole log.)
    pub fn apply_batch<I>(&self, ops: I, timestamp: Timestamp)
    where
        I: IntoIterator<Item = StoreOp>,
    {
        let mut contents = self.write();
        let mut version_max = 0;
        for op in ops {
            match op {
                StoreOp::Put {
                    key,
                    value,
                    version,
                } => {
                    version_max = version_max.max(version);
                    contents.insert(key, StoredValue::new(value, version, timestamp));
                }
                StoreOp::Delete { key, version } => {
                    version_max = version_max.max(version);
                    contents.remove(&key);
                }
            }
        }
        // Raised while the write lock is held, so no reader sees a value above it.
        self.version.fetch_max(version_max, Ordering::AcqRel);
    }

    /// Replay only: an applier that holds the write lock until it is finished, so readers
    /// see the store before replay or after it, never in between.
    pub(crate) fn replay_applier(&self) -> ReplayApplier<'_> {
        ReplayApplier::new(self, self.write())
    }

    /// Raises the global version to at least `version` without touching any key.
    pub fn raise_version(&self, version: u64) {
        self.version.fetch_max(version, Ordering::AcqRel);
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &Key) -> Option<VersionedValue> {
        let contents = self.read();
        let probe = Probe::new(key.type_tag, &key.user_key);
        contents
            .map
            .get(&key.namespace, &probe)
            .map(StoredValue::to_versioned)
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.read().map.is_empty()
    }

    /// Every key of `namespace` (all type tags), in key order.
    pub fn scan_namespace(&self, namespace: &Namespace) -> Vec<(Key, VersionedValue)> {
        let namespace = Arc::new(namespace.clone());
        self.collect_from(&namespace, TypeTag::ALL[0], &[], |_| true)
    }

    /// Every key of `namespace` with `type_tag` whose user key starts with `prefix`.
    pub fn scan_prefix(
        &self,
        namespace: &Namespace,
        type_tag: TypeTag,
        prefix: &[u8],
    ) -> Vec<(Key, VersionedValue)> {
        let namespace = Arc::new(namespace.clone());
        self.collect_from(&namespace, type_tag, prefix, |key| {
            key.type_tag() == type_tag && key.user_key().starts_with(prefix)
        })
    }

    /// Copies the entries of `namespace` from (`type_tag`, `user_key`) on, in key order,
    /// while `inside` holds.
    fn collect_from(
        &self,
        namespace: &Arc<Namespace>,
        type_tag: TypeTag,
        user_key: &[u8],
        mut inside: impl FnMut(&LocalKey) -> bool,
    ) -> Vec<(Key, VersionedValue)> {
        let mut out = Vec::new();
        let contents = self.read();
        let probe = Probe::new(type_tag, user_key);
        contents
            .map
            .visit_from(namespace, &probe, |namespace, k, v| {
                if !inside(k) {
                    return ControlFlow::Break(());
                }
                out.push((k.to_key(namespace), v.to_versioned()));
                ControlFlow::Continue(())
            });
        out
    }

    /// A copy of the whole map, in key order (for checkers and tests).
    pub fn snapshot(&self) -> Vec<(Key, VersionedValue)> {
        let contents = self.read();
        let mut out = Vec::with_capacity(contents.map.len());
        contents.map.visit_all(|namespace, k, v| {
            out.push((k.to_key(namespace), v.to_versioned()));
            ControlFlow::Continue(())
        });
        out
    }

    /// Calls `visit` for every entry in key order under one read lock (each key and value
    /// is rebuilt from its stored form).
    pub fn for_each(&self, mut visit: impl FnMut(&Key, &VersionedValue)) {
        self.read().map.visit_all(|namespace, k, v| {
            visit(&k.to_key(namespace), &v.to_versioned());
            ControlFlow::Continue(())
        });
    }
}

/// One committed operation, ready to apply to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    Put {
        key: Key,
        value: Value,
        version: u64,
    },
    Delete {
        key: Key,
        version: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::value::{StoredPayload, INLINE_VALUE_LEN_MAX};
    use super::*;
    use crate::types::RunId;

    fn ns(run: u64) -> Arc<Namespace> {
        Arc::new(Namespace::new("tenant", "app", "agent", RunId(run)))
    }

    /// Keys stored with separate but equal namespace allocations end up sharing one, and a
    /// read through yet another equal allocation finds them (reads swap in the shared one).
    #[test]
    fn equal_namespaces_share_one_allocation_and_reads_find_them() {
        let store = UnifiedStore::new();
        store.put(Key::kv(ns(1), "a"), Value::I64(1));
        store.put_with_version(Key::kv(ns(1), "b"), Value::I64(2), 9, Timestamp(1));
        store.apply_batch(
            [StoreOp::Put {
                key: Key::kv(ns(1), "c"),
                value: Value::I64(3),
                version: 10,
            }],
            Timestamp(2),
        );
        store.put(Key::kv(ns(2), "a"), Value::I64(4));
        let snapshot = store.snapshot();
        assert_eq!(snapshot.len(), 4);
        assert!(Arc::ptr_eq(
            &snapshot[0].0.namespace,
            &snapshot[2].0.namespace
        ));
        assert!(!Arc::ptr_eq(
            &snapshot[0].0.namespace,
            &snapshot[3].0.namespace
        ));
        for (name, value) in [("a", 1), ("b", 2), ("c", 3)] {
            let got = store.get(&Key::kv(ns(1), name)).expect("found by value");
            assert_eq!(got.value, Value::I64(value));
        }
        assert_eq!(
            store.get(&Key::kv(ns(2), "a")).unwrap().value,
            Value::I64(4)
        );
        assert_eq!(store.get(&Key::kv(ns(3), "a")), None);
    }

    /// The replay applier (one write lock, appends down the map's right edge) must leave
    /// exactly the state that applying every operation one by one leaves: long ascending runs interleaved with overwrites, deletes and keys below the
    /// maximum, in two namespaces.
    #[test]
    fn replay_applier_equals_one_by_one_application() {
        use rand::{Rng, SeedableRng};
        let seed = 0x5eed_0000_0000_0004_u64;
        println!("seed {seed:#018x}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // The second namespace orders below the first, so its keys interrupt ascending runs
        // without ending them for good.
        let namespaces = [ns(2), ns(1)];
        let mut ops = Vec::new();
        let mut next_key = 0u64;
        // Phases: a long ascending run (the append path), then a short burst
        // of out-of-order puts, overwrites and deletes (many of keys still in the run).
        let mut ascending_left = 0u64;
        let mut burst_left = 0u64;
        for version in 1..=50_000u64 {
            if ascending_left == 0 && burst_left == 0 {
                ascending_left = rng.gen_range(0..2_000);
                burst_left = rng.gen_range(1..40);
            }
            let key_in = |namespace: &Arc<Namespace>, idx: u64| {
                Key::kv(namespace.clone(), format!("k{idx:012}"))
            };
            if ascending_left > 0 {
                ascending_left -= 1;
                next_key += 1;
                ops.push(StoreOp::Put {
                    key: key_in(&namespaces[0], next_key),
                    value: Value::I64(version as i64),
                    version,
                });
                continue;
            }
            burst_left -= 1;
            let namespace = &namespaces[usize::from(rng.gen_range(0..4) == 0)];
            let idx = if rng.gen() {
                next_key.saturating_sub(rng.gen_range(0..64))
            } else {
                rng.gen_range(0..=next_key)
            };
            let key = key_in(namespace, idx);
            ops.push(if rng.gen() {
                StoreOp::Delete { key, version }
            } else {
                StoreOp::Put {
                    key,
                    value: Value::I64(version as i64),
                    version,
                }
            });
        }
        let expected = UnifiedStore::new();
        for op in ops.clone() {
            expected.apply_batch([op], Timestamp(7));
        }
        let store = UnifiedStore::new();
        let mut applier = store.replay_applier();
        for op in ops {
            let op = match op {
                StoreOp::Put {
                    key,
                    value,
                    version,
                } => ReplayOp::Put {
                    key: StoredKey::from_key(key),
                    payload: StoredValue::new(value, version, Timestamp(7)).into_payload(),
                    version,
                },
                StoreOp::Delete { key, version } => ReplayOp::Delete {
                    key: StoredKey::from_key(key),
                    version,
                },
            };
            applier.apply(op, Timestamp(7));
        }
        applier.finish();
        assert_eq!(store.current_version(), expected.current_version());
        assert_eq!(store.snapshot(), expected.snapshot());
    }

    /// Every value kind, and byte/string payloads on both sides of the inline limit
    /// (including multi-byte UTF-8), reads back equal through get, scans, snapshot,
    /// for_each and delete; and the inline form really fits the 40 bytes it is sized for.
    #[test]
    fn stored_values_round_trip_on_both_sides_of_the_inline_limit() {
        assert_eq!(std::mem::size_of::<StoredPayload>(), 40);
        let mut values = vec![
            Value::Null,
            Value::Bool(true),
            Value::I64(-7),
            Value::F64(f64::NAN),
            Value::F64(-0.0),
        ];
        for len in [
            0,
            1,
            INLINE_VALUE_LEN_MAX - 1,
            INLINE_VALUE_LEN_MAX,
            INLINE_VALUE_LEN_MAX + 1,
            1000,
        ] {
            values.push(Value::Bytes((0..len).map(|i| i as u8 ^ 0xa5).collect()));
            values.push(Value::String("é".repeat(len / 2) + &"x".repeat(len % 2)));
        }
        let store = UnifiedStore::new();
        let key = |i: usize| Key::kv(ns(1), format!("k{i:03}"));
        for (i, value) in values.iter().enumerate() {
            store.put_with_version(key(i), value.clone(), i as u64 + 1, Timestamp(i as u64));
        }
        for (i, value) in values.iter().enumerate() {
            let got = store.get(&key(i)).expect("stored");
            assert_eq!(
                (&got.value, got.version, got.timestamp),
                (value, i as u64 + 1, Timestamp(i as u64))
            );
        }
        let snapshot: Vec<Value> = store.snapshot().into_iter().map(|(_, v)| v.value).collect();
        assert_eq!(snapshot, values);
        let scanned: Vec<Value> = store
            .scan_namespace(&ns(1))
            .into_iter()
            .map(|(_, v)| v.value)
            .collect();
        assert_eq!(scanned, values);
        let mut visited = Vec::new();
        store.for_each(|_, v| visited.push(v.value.clone()));
        assert_eq!(visited, values);
        for (i, value) in values.iter().enumerate() {
            assert_eq!(store.delete(&key(i)).map(|v| v.value).as_ref(), Some(value));
        }
        assert!(store.is_empty());
    }

    #[test]
    fn put_allocates_increasing_versions_and_delete_removes() {
        let store = UnifiedStore::new();
        let k = Key::kv(ns(1), "a");
        assert_eq!(store.put(k.clone(), Value::I64(1)), 1);
        assert_eq!(store.put(k.clone(), Value::I64(2)), 2);
        assert_eq!(
            store.get(&k).map(|v| (v.value, v.version)),
            Some((Value::I64(2), 2))
        );
        assert!(store.delete(&k).is_some());
        assert_eq!(store.get(&k), None);
        assert_eq!(store.current_version(), 3);
        assert!(store.is_empty());
    }

    #[test]
    fn replay_methods_keep_versions_and_never_lower_the_global_version() {
        let store = UnifiedStore::new();
        let k = Key::kv(ns(1), "a");
        store.put_with_version(k.clone(), Value::Null, 10, Timestamp(5));
        assert_eq!(store.current_version(), 10);
        store.put_with_version(k.clone(), Value::Bool(true), 7, Timestamp(6));
        assert_eq!(store.get(&k).unwrap().version, 7);
        assert_eq!(store.current_version(), 10);
        store.delete_with_version(&k, 12);
        assert_eq!(store.current_version(), 12);
        assert_eq!(store.put(Key::kv(ns(1), "b"), Value::Null), 13);
        store.raise_version(11);
        assert_eq!(store.current_version(), 13);
    }

    #[test]
    fn scans_stay_inside_namespace_and_prefix() {
        let store = UnifiedStore::new();
        for run in 1..=3 {
            for name in ["ab", "ac", "b"] {
                store.put(Key::kv(ns(run), name), Value::I64(run as i64));
            }
            store.put(Key::new(ns(run), TypeTag::Event, "ab"), Value::Null);
        }
        let all = store.scan_namespace(&ns(2));
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|(k, _)| k.namespace.run_id == RunId(2)));
        let prefixed = store.scan_prefix(&ns(2), TypeTag::Kv, b"a");
        let names: Vec<_> = prefixed.iter().map(|(k, _)| k.user_key.clone()).collect();
        assert_eq!(names, vec![b"ab".to_vec(), b"ac".to_vec()]);
        assert_eq!(store.len(), 12);
        assert_eq!(store.snapshot().len(), 12);
        let mut visited = 0;
        store.for_each(|_, _| visited += 1);
        assert_eq!(visited, 12);
    }

    #[test]
    fn apply_batch_applies_in_order() {
        let store = UnifiedStore::new();
        let k = Key::kv(ns(1), "a");
        store.apply_batch(
            vec![
                StoreOp::Put {
                    key: k.clone(),
                    value: Value::I64(1),
                    version: 4,
                },
                StoreOp::Delete {
                    key: k.clone(),
                    version: 5,
                },
                StoreOp::Put {
                    key: k.clone(),
                    value: Value::I64(3),
                    version: 6,
                },
            ],
            Timestamp(9),
        );
        let got = store.get(&k).unwrap();
        assert_eq!(
            (got.value, got.version, got.timestamp),
            (Value::I64(3), 6, Timestamp(9))
        );
        assert_eq!(store.current_version(), 6);
    }
}
