//! Bulk operations on `OrderedMap`: building a tree from a sorted stream of entries, taking
//! a tree apart into one, and appending above the maximum without a search.
//!
//! Replay of keys in random order merges sorted runs into the tree (`store/merge.rs`):
//! taking the tree apart and building it again from the merged stream moves each entry once
//! and fills every leaf, where inserting key by key searched from the root for every key
//! and left the leaves it split half empty.

use std::collections::VecDeque;

use super::{
    append_rightmost, leaf, prefetch, Inserted, Internal, Leaf, Node, OrderedMap, CHILDREN_MAX,
    LEAF_LEN_MAX,
};

/// Cache lines of the next leaf's keys and of its values that `IntoSorted` starts loading.
const LEAF_PREFETCH_LINES: usize = 4;

impl<K: Ord + Clone, V> OrderedMap<K, V> {
    /// Stores `key` and `val` if `key` is above every key in the map (one walk down the
    /// rightmost path, one comparison); otherwise changes nothing and hands them back.
    pub(crate) fn try_append(&mut self, key: K, val: V) -> Result<(), (K, V)> {
        match append_rightmost(&mut self.root, key, val)? {
            Inserted::Replaced(_) => unreachable!("an appended key is above every stored key"),
            Inserted::Fits => {}
            Inserted::Split { sep, right } => self.grow_root(sep, right),
        }
        self.len += 1;
        Ok(())
    }

    /// Builds a map from `entries`, whose keys must be strictly ascending (asserted: a
    /// map built from anything else would lose keys to searches silently). Every leaf is
    /// full except the last two, which share what is left evenly; internal nodes likewise.
    pub(crate) fn from_sorted(entries: impl IntoIterator<Item = (K, V)>) -> OrderedMap<K, V> {
        // Each node with the smallest key under it (its separator in the parent).
        let mut level: Vec<(K, Node<K, V>)> = Vec::new();
        let mut leaf: Leaf<K, V> = Leaf::new();
        let mut len = 0usize;
        for (key, val) in entries {
            if let Some(last) = leaf.keys().last() {
                assert!(*last < key, "bulk build needs strictly ascending keys");
            }
            if leaf.len() == LEAF_LEN_MAX {
                let full = std::mem::replace(&mut leaf, Leaf::new());
                level.push((full.keys()[0].clone(), Node::Leaf(full)));
            }
            leaf.push(key, val);
            len += 1;
        }
        if len == 0 {
            return OrderedMap::new();
        }
        // The last leaf may hold a single entry: share with its full left neighbour, so
        // that no leaf starts out far below a quarter full (deletes would merge it).
        if let Some((_, Node::Leaf(previous))) = level.last_mut() {
            let total = previous.len() + leaf.len();
            let keep = total - total / 2;
            if previous.len() > keep {
                // A new full-capacity leaf takes the previous leaf's tail and the last
                // leaf's entries (at most `LEAF_LEN_MAX`: the previous leaf keeps `keep`).
                let mut shared = Leaf::new();
                previous.move_tail(keep, &mut shared);
                shared.append(&mut leaf);
                leaf = shared;
            }
        }
        if level.is_empty() {
            // A lone leaf is the root: only as large as its entries (a small namespace's
            // tree), it grows like a `Vec` and is fitted if it ever becomes a child.
            leaf.shrink_to_fit();
        }
        level.push((leaf.keys()[0].clone(), Node::Leaf(leaf)));
        while level.len() > 1 {
            level = build_parents(level);
        }
        let (_, root) = level.pop().expect("one node left");
        OrderedMap { root, len }
    }

    /// Takes the map apart into its entries in ascending key order. Each leaf is freed as
    /// soon as the iterator has passed it, so a merge that builds a new map from this one
    /// holds about one copy of the entries, not two.
    pub(crate) fn into_sorted(self) -> IntoSorted<K, V> {
        let mut leaves = VecDeque::new();
        collect_leaves(self.root, &mut leaves);
        IntoSorted {
            leaves,
            current: None,
        }
    }
}

/// Groups `children` (with their smallest keys) into parents of at most `CHILDREN_MAX`,
/// as evenly as possible, and returns the parents with their smallest keys.
fn build_parents<K, V>(children: Vec<(K, Node<K, V>)>) -> Vec<(K, Node<K, V>)> {
    let n_children = children.len();
    let n_parents = n_children.div_ceil(CHILDREN_MAX);
    let mut parents = Vec::with_capacity(n_parents);
    let mut children = children.into_iter();
    for parent_idx in 0..n_parents {
        // The first `n_children % n_parents` parents take one child more.
        let take = n_children / n_parents + usize::from(parent_idx < n_children % n_parents);
        let mut seps = Vec::with_capacity(CHILDREN_MAX);
        let mut nodes = Vec::with_capacity(CHILDREN_MAX + 1);
        let mut first = None;
        for (key, node) in children.by_ref().take(take) {
            if first.is_none() {
                first = Some(key);
            } else {
                seps.push(key);
            }
            nodes.push(node);
        }
        let first = first.expect("every parent takes at least one child");
        parents.push((first, Node::Internal(Box::new(Internal::new(seps, nodes)))));
    }
    parents
}

fn collect_leaves<K, V>(node: Node<K, V>, leaves: &mut VecDeque<Leaf<K, V>>) {
    match node {
        Node::Leaf(leaf) => {
            if !leaf.is_empty() {
                leaves.push_back(leaf);
            }
        }
        Node::Internal(internal) => {
            for child in internal.children {
                collect_leaves(child, leaves);
            }
        }
    }
}

/// The entries of a map taken apart, in ascending key order (see `OrderedMap::into_sorted`).
pub(crate) struct IntoSorted<K, V> {
    leaves: VecDeque<Leaf<K, V>>,
    current: Option<leaf::IntoIter<K, V>>,
}

impl<K, V> Iterator for IntoSorted<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(entries) = &mut self.current {
                if let Some(entry) = entries.next() {
                    return Some(entry);
                }
            }
            // Dropping the passed leaf's iterators frees its arrays.
            let leaf = self.leaves.pop_front()?;
            // A merge reads the leaves in order, but each is its own allocation: start
            // loading the next one's first lines while this one is read.
            if let Some(next) = self.leaves.front() {
                for line in 0..LEAF_PREFETCH_LINES {
                    prefetch(next.keys().as_ptr().cast::<u8>().wrapping_add(64 * line));
                    prefetch(next.vals().as_ptr().cast::<u8>().wrapping_add(64 * line));
                }
            }
            self.current = Some(leaf.into_iter());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// A map built from a sorted stream holds exactly that stream, keeps every
        /// invariant, and works as a map afterwards (inserts, removes); taking it apart
        /// gives the stream back. Sizes cross every leaf and level boundary (nodes of 4).
        #[test]
        fn from_sorted_and_into_sorted_round_trip(
            keys in proptest::collection::btree_set(0u32..10_000, 0..600),
            extra in proptest::collection::vec((0u32..10_000, any::<bool>()), 0..200),
        ) {
            let entries: Vec<(u32, u64)> = keys.iter().map(|&k| (k, u64::from(k) * 3)).collect();
            let mut map = OrderedMap::from_sorted(entries.clone());
            map.check_invariants();
            prop_assert_eq!(map.len(), entries.len());
            let mut model: BTreeMap<u32, u64> = entries.iter().copied().collect();
            for &(k, _) in &entries {
                prop_assert_eq!(map.get_by(|s| s.cmp(&k)), model.get(&k));
            }
            for (step, &(k, insert)) in extra.iter().enumerate() {
                if insert {
                    prop_assert_eq!(map.insert(k, step as u64), model.insert(k, step as u64));
                } else {
                    prop_assert_eq!(map.remove_by(|s| s.cmp(&k)), model.remove_entry(&k));
                }
                map.check_invariants();
            }
            let back: Vec<(u32, u64)> = map.into_sorted().collect();
            prop_assert_eq!(back, model.into_iter().collect::<Vec<_>>());
        }

        /// `try_append` takes exactly the keys above the maximum and leaves the map
        /// untouched for the others.
        #[test]
        fn try_append_takes_only_keys_above_the_maximum(
            keys in proptest::collection::vec(0u32..1_000, 0..400),
        ) {
            let mut map: OrderedMap<u32, u32> = OrderedMap::new();
            let mut model = BTreeMap::new();
            for k in keys {
                let above = model.keys().next_back().is_none_or(|&max| k > max);
                match map.try_append(k, k) {
                    Ok(()) => {
                        prop_assert!(above, "{} appended below the maximum", k);
                        model.insert(k, k);
                    }
                    Err((back, _)) => {
                        prop_assert!(!above, "{} refused above the maximum", k);
                        prop_assert_eq!(back, k);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            map.check_invariants();
            prop_assert_eq!(map.into_sorted().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    #[should_panic(expected = "strictly ascending")]
    fn from_sorted_refuses_unsorted_input() {
        let _ = OrderedMap::from_sorted([(1u32, ()), (3, ()), (2, ())]);
    }
}
