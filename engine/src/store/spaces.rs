//! `Spaces`: the store's map as one ordered tree per namespace.
//!
//! A key's namespace is the first part of its order, so the entries of one namespace are
//! contiguous: the map keeps them in a tree of their own, keyed by `LocalKey` (type tag and
//! user key), and the namespaces in a vector sorted by value. A key no longer repeats its
//! namespace pointer: 8 bytes less per entry (a 1M-key replay of 20-byte keys and 32-byte
//! values: store 84 MiB -> 76 MiB).
//!
//! Invariants (checked by `check_invariants` in the tests): the spaces are in strictly
//! ascending namespace order (by value: no two spaces hold equal namespaces) and none is
//! empty.

use std::cmp::Ordering;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::key::{LocalKey, Probe, StoredKey};
use super::merge::SpaceMaps;
use super::tree::OrderedMap;
use crate::types::{cmp_namespaces, Namespace};

/// One namespace's entries.
#[derive(Debug)]
struct Space<V> {
    namespace: Arc<Namespace>,
    map: OrderedMap<LocalKey, V>,
}

/// The map: namespaces in ascending order, each with its tree.
#[derive(Debug)]
pub(crate) struct Spaces<V> {
    spaces: Vec<Space<V>>,
}

impl<V> Default for Spaces<V> {
    fn default() -> Spaces<V> {
        Spaces { spaces: Vec::new() }
    }
}

impl<V> Spaces<V> {
    /// Where `namespace`'s space is (`Ok`), or would go (`Err`). One space (the common
    /// case) costs one comparison, a pointer compare when the caller's namespace is the
    /// store's own allocation.
    #[inline]
    fn find(&self, namespace: &Arc<Namespace>) -> Result<usize, usize> {
        self.spaces
            .binary_search_by(|space| cmp_namespaces(&space.namespace, namespace))
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.spaces.iter().map(|space| space.map.len()).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }

    /// The value stored under `probe` in `namespace`.
    #[inline]
    pub(crate) fn get(&self, namespace: &Arc<Namespace>, probe: &Probe<'_>) -> Option<&V> {
        let idx = self.find(namespace).ok()?;
        self.spaces[idx]
            .map
            .get_by(|stored| stored.cmp_probe(probe))
    }

    /// Stores `val` under `key`; returns the value it replaced, if any.
    pub(crate) fn insert(&mut self, key: StoredKey, val: V) -> Option<V> {
        let (namespace, local) = key.into_parts();
        match self.find(&namespace) {
            Ok(idx) => self.spaces[idx].map.insert(local, val),
            Err(idx) => {
                let mut map = OrderedMap::new();
                map.insert(local, val);
                self.spaces.insert(idx, Space { namespace, map });
                None
            }
        }
    }

    /// Removes the entry of `probe` in `namespace` (and the space, if that empties it).
    pub(crate) fn remove(&mut self, namespace: &Arc<Namespace>, probe: &Probe<'_>) -> Option<V> {
        let idx = self.find(namespace).ok()?;
        let (_, val) = self.spaces[idx]
            .map
            .remove_by(|stored| stored.cmp_probe(probe))?;
        if self.spaces[idx].map.is_empty() {
            self.spaces.remove(idx);
        }
        Some(val)
    }

    /// Removes the entry of `key` (replay's form of a key).
    pub(crate) fn remove_key(&mut self, key: &StoredKey) -> Option<V> {
        let idx = self.find(key.namespace()).ok()?;
        let (_, val) = self.spaces[idx]
            .map
            .remove_by(|stored| stored.cmp(key.local()))?;
        if self.spaces[idx].map.is_empty() {
            self.spaces.remove(idx);
        }
        Some(val)
    }

    /// Stores `key` and `val` if `key` is above every key in the map (one walk down the
    /// last tree's rightmost path, or a new last space); otherwise changes nothing and
    /// hands them back.
    pub(crate) fn try_append(&mut self, key: StoredKey, val: V) -> Result<(), (StoredKey, V)> {
        let order = match self.spaces.last() {
            Some(last) => cmp_namespaces(key.namespace(), &last.namespace),
            None => Ordering::Greater,
        };
        match order {
            Ordering::Less => Err((key, val)),
            Ordering::Equal => {
                let (namespace, local) = key.into_parts();
                let last = self
                    .spaces
                    .last_mut()
                    .expect("compared with the last space");
                last.map
                    .try_append(local, val)
                    .map_err(|(local, val)| (StoredKey::from_parts(namespace, local), val))
            }
            Ordering::Greater => {
                let (namespace, local) = key.into_parts();
                let mut map = OrderedMap::new();
                map.insert(local, val);
                self.spaces.push(Space { namespace, map });
                Ok(())
            }
        }
    }

    /// Each namespace with its tree, in ascending namespace order (for `merge_spaces`).
    pub(crate) fn into_maps(self) -> SpaceMaps<StoredKey, V> {
        self.spaces
            .into_iter()
            .map(|space| (space.namespace, space.map))
            .collect()
    }

    /// The map of `maps`: namespaces strictly ascending, none empty (as `merge_spaces`
    /// leaves them; checked in debug builds).
    pub(crate) fn from_maps(maps: SpaceMaps<StoredKey, V>) -> Spaces<V> {
        debug_assert!(maps.windows(2).all(|pair| pair[0].0 < pair[1].0));
        debug_assert!(maps.iter().all(|(_, map)| !map.is_empty()));
        Spaces {
            spaces: maps
                .into_iter()
                .map(|(namespace, map)| Space { namespace, map })
                .collect(),
        }
    }

    /// Builds the map from entries in strictly ascending key order (each namespace's trees
    /// as `OrderedMap::from_sorted` builds them).
    #[cfg(test)]
    pub(crate) fn from_sorted(entries: impl IntoIterator<Item = (StoredKey, V)>) -> Spaces<V> {
        let mut entries = entries.into_iter().peekable();
        let mut spaces = Vec::new();
        while let Some((first, _)) = entries.peek() {
            let namespace = first.namespace().clone();
            let map = OrderedMap::from_sorted(std::iter::from_fn(|| {
                let (key, _) = entries.peek()?;
                if !cmp_namespaces(key.namespace(), &namespace).is_eq() {
                    return None;
                }
                let (key, val) = entries.next()?;
                Some((key.into_parts().1, val))
            }));
            spaces.push(Space { namespace, map });
        }
        Spaces { spaces }
    }

    /// Takes the map apart into its entries in ascending key order, freeing each leaf once
    /// passed (see `OrderedMap::into_sorted`).
    #[cfg(test)]
    pub(crate) fn into_sorted(self) -> impl Iterator<Item = (StoredKey, V)> {
        self.spaces.into_iter().flat_map(|space| {
            let namespace = space.namespace;
            space
                .map
                .into_sorted()
                .map(move |(local, val)| (StoredKey::from_parts(namespace.clone(), local), val))
        })
    }

    /// Calls `visit` on every entry of `namespace` from the first whose key does not order
    /// below `lower`, in key order, until `visit` breaks.
    pub(crate) fn visit_from<'a>(
        &'a self,
        namespace: &Arc<Namespace>,
        lower: &Probe<'_>,
        mut visit: impl FnMut(&'a Arc<Namespace>, &'a LocalKey, &'a V) -> ControlFlow<()>,
    ) {
        if let Ok(idx) = self.find(namespace) {
            let space = &self.spaces[idx];
            space.map.visit_from(
                |stored| stored.cmp_probe(lower),
                |key, val| visit(&space.namespace, key, val),
            );
        }
    }

    /// Calls `visit` on every entry in key order until it breaks.
    pub(crate) fn visit_all<'a>(
        &'a self,
        mut visit: impl FnMut(&'a Arc<Namespace>, &'a LocalKey, &'a V) -> ControlFlow<()>,
    ) {
        for space in &self.spaces {
            let mut stopped = false;
            space.map.visit_all(|key, val| {
                let flow = visit(&space.namespace, key, val);
                stopped = flow.is_break();
                flow
            });
            if stopped {
                return;
            }
        }
    }
}

#[cfg(test)]
impl<V> Spaces<V> {
    /// Asserts the invariants in the module comment and every tree's own.
    pub(crate) fn check_invariants(&self) {
        for pair in self.spaces.windows(2) {
            assert_eq!(
                pair[0].namespace.cmp(&pair[1].namespace),
                Ordering::Less,
                "spaces out of order"
            );
        }
        for space in &self.spaces {
            assert!(!space.map.is_empty(), "empty space kept");
            space.map.check_invariants();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Key, RunId, TypeTag};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ns(run: u64) -> Arc<Namespace> {
        Arc::new(Namespace::new("tenant", "app", "agent", RunId(run)))
    }

    proptest! {
        /// Inserts, removes, appends and a rebuild through `into_sorted`/`from_sorted`
        /// over keys in several namespaces (each given by fresh but equal allocations, so
        /// spaces must be found by value) agree with a BTreeMap of `Key`s, and spaces stay
        /// ordered and non-empty.
        #[test]
        fn spaces_match_a_map_of_keys(
            ops in proptest::collection::vec((0u64..4, 0u8..40, 0u8..4), 0..400),
        ) {
            let mut spaces: Spaces<u64> = Spaces::default();
            let mut model: BTreeMap<Key, u64> = BTreeMap::new();
            for (step, &(run, name, kind)) in ops.iter().enumerate() {
                let key = Key::kv(ns(run), format!("k{name:02}"));
                let probe = Probe::new(key.type_tag, &key.user_key);
                match kind {
                    0 => prop_assert_eq!(
                        spaces.remove(&key.namespace, &probe),
                        model.remove(&key)
                    ),
                    1 => prop_assert_eq!(
                        spaces.remove_key(&StoredKey::from_key(key.clone())),
                        model.remove(&key)
                    ),
                    2 => {
                        let above = model.keys().next_back().is_none_or(|max| key > *max);
                        let appended = spaces
                            .try_append(StoredKey::from_key(key.clone()), step as u64)
                            .is_ok();
                        prop_assert_eq!(appended, above);
                        if appended {
                            model.insert(key.clone(), step as u64);
                        }
                    }
                    _ => prop_assert_eq!(
                        spaces.insert(StoredKey::from_key(key.clone()), step as u64),
                        model.insert(key.clone(), step as u64)
                    ),
                }
                let probe = Probe::new(key.type_tag, &key.user_key);
                prop_assert_eq!(spaces.get(&ns(run), &probe), model.get(&key));
                prop_assert_eq!(spaces.len(), model.len());
                spaces.check_invariants();
            }
            let mut visited = Vec::new();
            spaces.visit_all(|namespace, key, val| {
                visited.push((key.to_key(namespace), *val));
                ControlFlow::Continue(())
            });
            let expected: Vec<(Key, u64)> = model.into_iter().collect();
            prop_assert_eq!(&visited, &expected);
            let rebuilt = Spaces::from_sorted(spaces.into_sorted());
            rebuilt.check_invariants();
            let back: Vec<(Key, u64)> = rebuilt.into_sorted().map(|(k, v)| (k.to_key(), v)).collect();
            prop_assert_eq!(back, expected);
        }
    }

    /// A visit from a bound stays in the bound's namespace and starts at the bound.
    #[test]
    fn visit_from_starts_at_the_bound_inside_its_namespace() {
        let mut spaces: Spaces<u32> = Spaces::default();
        for run in 1..=3 {
            for name in ["a", "b", "c"] {
                spaces.insert(StoredKey::new(ns(run), TypeTag::Kv, name.as_bytes()), 0);
            }
        }
        let mut seen = Vec::new();
        spaces.visit_from(
            &ns(2),
            &Probe::new(TypeTag::Kv, b"b"),
            |namespace, key, _| {
                seen.push((namespace.run_id, key.user_key().to_vec()));
                ControlFlow::Continue(())
            },
        );
        assert_eq!(
            seen,
            vec![(RunId(2), b"b".to_vec()), (RunId(2), b"c".to_vec())]
        );
    }
}
