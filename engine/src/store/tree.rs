//! `OrderedMap`: the B+ tree under the store.
//!
//! Why not std's `BTreeMap`: replay inserts a million keys in mostly ascending order, and
//! std's map (a) searches from the root for every insert, comparing with about six keys per
//! level, (b) leaves every node it splits half full, and (c) has no way to extend its right
//! edge in O(1); the previous store bulk-loaded ascending runs with `append`, which rebuilds
//! the whole map each time (about five moves per entry). This tree keeps keys and values in
//! separate arrays per leaf (a search touches only keys), appends a key above the maximum by
//! walking the rightmost path with no comparison but one, and splits a node that overflows at
//! its right end unevenly (the left node stays full), so ascending inserts build full leaves.
//!
//! Invariants (checked by `check_invariants` in the tests after every operation):
//! - keys are strictly ascending along the leaves, left to right;
//! - in an internal node, `seps[i]` is greater than every key under `children[i]` and at most
//!   every key under `children[i + 1]`; `seps.len() + 1 == children.len()`;
//! - every leaf is at the same depth; no node but the root is empty;
//! - no leaf holds more than `LEAF_LEN_MAX` entries, no internal node more than `CHILDREN_MAX`
//!   children; `len` is the number of entries.
//!
//! Deletes never rebalance by borrowing: an emptied node is unlinked, and a node that falls
//! below a quarter full is merged with a neighbour when the two fit in one. Lookups stay
//! correct whatever the fill; fill only affects memory.

mod arena;
mod bulk;
mod leaf;

use std::cmp::Ordering;
use std::fmt;
use std::ops::ControlFlow;

use leaf::Leaf;

/// Entries per leaf. 64 keeps a leaf's keys (24 bytes each in the store) within 1.5 KiB, so a
/// binary search touches a handful of cache lines, and keeps a mid-leaf insert's shift short.
const LEAF_LEN_MAX: usize = if cfg!(test) { 4 } else { 64 };
/// Children per internal node (1M keys: 15.6K full leaves, 245 parents, 4 grandparents).
const CHILDREN_MAX: usize = if cfg!(test) { 4 } else { 64 };
/// A non-root node below this fill is merged with a neighbour when both fit in one node.
const LEAF_LEN_MERGE_BELOW: usize = LEAF_LEN_MAX / 4;
const CHILDREN_MERGE_BELOW: usize = CHILDREN_MAX / 4;

const _: () = assert!(LEAF_LEN_MAX >= 4 && CHILDREN_MAX >= 4);
const _: () = assert!(LEAF_LEN_MERGE_BELOW >= 1 && CHILDREN_MERGE_BELOW >= 1);

/// An ordered map from `K` to `V` (a B+ tree). Searches take a comparator, `cmp(stored)`,
/// saying how a stored key orders against the probe, so callers can search with a borrowed
/// key of another type without building a `K`.
pub(crate) struct OrderedMap<K, V> {
    root: Node<K, V>,
    len: usize,
}

enum Node<K, V> {
    Leaf(Leaf<K, V>),
    /// Boxed, so that a child in its parent's `children` takes a leaf's 24 bytes (the
    /// tag hides in the leaf's non-null block pointer), not an internal node's: the
    /// parent's `children` is read on every lookup, and unboxed it made ascending replay
    /// 13% slower (same run).
    Internal(Box<Internal<K, V>>),
}

struct Internal<K, V> {
    seps: Vec<K>,
    children: Vec<Node<K, V>>,
}

impl<K, V> Internal<K, V> {
    fn new(seps: Vec<K>, children: Vec<Node<K, V>>) -> Internal<K, V> {
        Internal { seps, children }
    }
}

/// What an insert below a node did to it.
enum Inserted<K, V> {
    /// The key existed; this is its previous value.
    Replaced(V),
    /// A new entry, and the node still fits.
    Fits,
    /// A new entry, and the node split: `right` goes after it, every key in `right` is at
    /// least `sep`.
    Split { sep: K, right: Node<K, V> },
}

impl<K, V> Node<K, V> {
    /// Entries of a leaf, children of an internal node.
    fn fill(&self) -> usize {
        match self {
            Node::Leaf(leaf) => leaf.len(),
            Node::Internal(internal) => internal.children.len(),
        }
    }
}

/// Index of the child of `seps` whose range holds the probe: the number of separators at or
/// below it.
///
/// A hand-written binary search: through `partition_point` the comparator stayed an
/// out-of-line call per step, and searching is most of a read.
#[inline(always)]
fn route<K>(seps: &[K], cmp: &mut impl FnMut(&K) -> Ordering) -> usize {
    let (mut lo, mut hi) = (0, seps.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if cmp(&seps[mid]) == Ordering::Greater {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Asks the CPU to start loading the cache line holding `ptr` into its caches (a no-op
/// where there is no stable prefetch instruction).
#[inline(always)]
pub(crate) fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no state, whatever
    // the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Keys of a leaf prefetched by a lookup: every key the first four steps of a binary search
/// over a full leaf may compare with.
const LEAF_PREFETCH_SAMPLES: usize = 16;

/// If `child` is a leaf, starts loading those of its keys that the first steps of a
/// lookup's binary search may compare with. A random read of a 1M-key store spent most of
/// its time waiting for dependent cache misses (~170 ns each on the 2-core VM, 10 ns when
/// 16 are in flight): the child's fields in its parent, then the binary search's keys one
/// after another. The child is 24 bytes in its parent's array (its block's address among
/// them), so the address costs one load of an array the route has just searched beside.
#[inline(always)]
fn prefetch_leaf_keys<K, V>(child: &Node<K, V>) {
    let Node::Leaf(leaf) = child else {
        return;
    };
    let keys = leaf.keys_at() as *const K;
    for sample in 1..LEAF_PREFETCH_SAMPLES {
        prefetch(keys.wrapping_add(LEAF_LEN_MAX * sample / LEAF_PREFETCH_SAMPLES));
    }
}

/// Index of the key comparing `Equal` in a leaf's keys, if any (binary search, as `route`).
#[inline(always)]
fn find<K>(keys: &[K], cmp: &mut impl FnMut(&K) -> Ordering) -> Option<usize> {
    let idx = route(keys, cmp);
    (idx > 0 && cmp(&keys[idx - 1]) == Ordering::Equal).then(|| idx - 1)
}

impl<K: Ord + Clone, V> OrderedMap<K, V> {
    pub(crate) fn new() -> OrderedMap<K, V> {
        OrderedMap {
            root: Node::Leaf(Leaf::empty()),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value whose key compares `Equal` under `cmp`.
    #[inline]
    pub(crate) fn get_by(&self, mut cmp: impl FnMut(&K) -> Ordering) -> Option<&V> {
        let mut node = &self.root;
        loop {
            match node {
                Node::Internal(internal) => {
                    let idx = route(&internal.seps, &mut cmp);
                    prefetch_leaf_keys(&internal.children[idx]);
                    node = &internal.children[idx];
                }
                Node::Leaf(leaf) => {
                    let idx = find(leaf.keys(), &mut cmp)?;
                    return Some(&leaf.vals()[idx]);
                }
            }
        }
    }

    /// The largest entry.
    #[cfg(test)]
    fn last(&self) -> Option<(&K, &V)> {
        let mut node = &self.root;
        loop {
            match node {
                Node::Internal(internal) => {
                    node = internal
                        .children
                        .last()
                        .expect("internal nodes are never empty");
                }
                Node::Leaf(leaf) => return Some((leaf.keys().last()?, leaf.vals().last()?)),
            }
        }
    }

    /// Stores `val` under `key`; returns the value it replaced, if any.
    pub(crate) fn insert(&mut self, key: K, val: V) -> Option<V> {
        // Keys above the maximum (logs usually write ascending keys) skip every search:
        // one walk down the rightmost path, one comparison at its leaf.
        let inserted = match append_rightmost(&mut self.root, key, val) {
            Ok(inserted) => inserted,
            Err((key, val)) => insert_into(&mut self.root, key, val),
        };
        match inserted {
            Inserted::Replaced(old) => return Some(old),
            Inserted::Fits => {}
            Inserted::Split { sep, right } => self.grow_root(sep, right),
        }
        self.len += 1;
        None
    }

    /// Makes the root split into (root, `right`) the two children of a new root.
    fn grow_root(&mut self, sep: K, right: Node<K, V>) {
        let mut left = std::mem::replace(&mut self.root, Node::Leaf(Leaf::empty()));
        if let Node::Leaf(leaf) = &mut left {
            leaf.fit();
        }
        let mut children = Vec::with_capacity(CHILDREN_MAX + 1);
        children.push(left);
        children.push(right);
        let mut seps = Vec::with_capacity(CHILDREN_MAX);
        seps.push(sep);
        self.root = Node::Internal(Box::new(Internal::new(seps, children)));
    }

    /// Removes the entry whose key compares `Equal` under `cmp`.
    pub(crate) fn remove_by(&mut self, mut cmp: impl FnMut(&K) -> Ordering) -> Option<(K, V)> {
        let removed = remove_from(&mut self.root, &mut cmp)?;
        self.len -= 1;
        // A root left with one child hands over to it (the tree gets shallower everywhere at
        // once, so leaves stay at one depth); a root left with none becomes an empty leaf.
        while let Node::Internal(internal) = &mut self.root {
            match internal.children.len() {
                0 => self.root = Node::Leaf(Leaf::empty()),
                1 => self.root = internal.children.pop().expect("one child"),
                _ => break,
            }
        }
        Some(removed)
    }

    /// Calls `visit` on every entry from the first whose key `lower(stored)` does not order
    /// below the bound (`lower` returns how a stored key orders against the bound), in key
    /// order, until `visit` breaks.
    pub(crate) fn visit_from<'a>(
        &'a self,
        mut lower: impl FnMut(&K) -> Ordering,
        mut visit: impl FnMut(&'a K, &'a V) -> ControlFlow<()>,
    ) {
        let _ = visit_node(&self.root, Some(&mut lower), &mut visit);
    }

    /// Calls `visit` on every entry in key order until it breaks.
    pub(crate) fn visit_all<'a>(&'a self, mut visit: impl FnMut(&'a K, &'a V) -> ControlFlow<()>) {
        let _ = visit_node::<K, V, fn(&K) -> Ordering>(&self.root, None, &mut visit);
    }
}

impl<K: Ord + Clone, V> Default for OrderedMap<K, V> {
    fn default() -> OrderedMap<K, V> {
        OrderedMap::new()
    }
}

impl<K, V> fmt::Debug for OrderedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderedMap")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

fn visit_node<'a, K, V, F: FnMut(&K) -> Ordering>(
    node: &'a Node<K, V>,
    lower: Option<&mut F>,
    visit: &mut impl FnMut(&'a K, &'a V) -> ControlFlow<()>,
) -> ControlFlow<()> {
    match node {
        Node::Leaf(leaf) => {
            let start = match lower {
                Some(lower) => leaf.keys().partition_point(|k| lower(k) == Ordering::Less),
                None => 0,
            };
            for (k, v) in leaf.keys()[start..].iter().zip(&leaf.vals()[start..]) {
                visit(k, v)?;
            }
        }
        Node::Internal(internal) => {
            let (first, lower) = match lower {
                Some(lower) => (route(&internal.seps, lower), Some(lower)),
                None => (0, None),
            };
            // Only the child holding the bound needs it; everything after is above it.
            visit_node(&internal.children[first], lower, visit)?;
            for child in &internal.children[first + 1..] {
                visit_node::<K, V, F>(child, None, visit)?;
            }
        }
    }
    ControlFlow::Continue(())
}

/// Inserts into a full `leaf` at `idx` by splitting it. An insert at the right end keeps
/// the left leaf full and starts the right one with the new entry (ascending loads build
/// full leaves); anywhere else splits in half.
fn split_leaf<K: Clone, V>(leaf: &mut Leaf<K, V>, idx: usize, key: K, val: V) -> Inserted<K, V> {
    debug_assert_eq!(leaf.len(), LEAF_LEN_MAX);
    let at = if idx == LEAF_LEN_MAX {
        LEAF_LEN_MAX
    } else {
        LEAF_LEN_MAX / 2
    };
    let mut right = Leaf::new();
    leaf.move_tail(at, &mut right);
    if idx < at {
        leaf.insert(idx, key, val);
    } else {
        right.insert(idx - at, key, val);
    }
    Inserted::Split {
        sep: right.keys()[0].clone(),
        right: Node::Leaf(right),
    }
}

/// Puts the child split off `children[idx]` after it; splits `internal` if that overflows it
/// (unevenly when the new child is the last, as for leaves).
fn adopt<K, V>(
    internal: &mut Internal<K, V>,
    idx: usize,
    sep: K,
    right: Node<K, V>,
) -> Inserted<K, V> {
    internal.seps.insert(idx, sep);
    internal.children.insert(idx + 1, right);
    let n_children = internal.children.len();
    if n_children <= CHILDREN_MAX {
        return Inserted::Fits;
    }
    let at = if idx + 2 == n_children {
        CHILDREN_MAX
    } else {
        n_children / 2
    };
    let mut children = Vec::with_capacity(CHILDREN_MAX + 1);
    children.extend(internal.children.drain(at..));
    let mut seps = Vec::with_capacity(CHILDREN_MAX);
    seps.extend(internal.seps.drain(at - 1..));
    let up = seps.remove(0);
    Inserted::Split {
        sep: up,
        right: Node::Internal(Box::new(Internal::new(seps, children))),
    }
}

fn insert_into<K: Ord + Clone, V>(node: &mut Node<K, V>, key: K, val: V) -> Inserted<K, V> {
    match node {
        Node::Leaf(leaf) => match leaf.keys().binary_search(&key) {
            Ok(idx) => Inserted::Replaced(std::mem::replace(&mut leaf.vals_mut()[idx], val)),
            Err(idx) if leaf.len() < LEAF_LEN_MAX => {
                leaf.insert(idx, key, val);
                Inserted::Fits
            }
            Err(idx) => split_leaf(leaf, idx, key, val),
        },
        Node::Internal(internal) => {
            let idx = route(&internal.seps, &mut |sep: &K| sep.cmp(&key));
            // As in `get_by`: the leaf's binary search was half of a random insert's time,
            // each step waiting for its own cache miss (200K random commits: 0.185 s ->
            // 0.150 s). An unsorted leaf tail that saved the insert's memmove gained nothing
            // on top: the moves are in cache, the misses are not.
            prefetch_leaf_keys(&internal.children[idx]);
            match insert_into(&mut internal.children[idx], key, val) {
                Inserted::Split { sep, right } => adopt(internal, idx, sep, right),
                other => other,
            }
        }
    }
}

/// Inserts `key` down the rightmost path if it is above every key in the tree (the last
/// key of the rightmost leaf); otherwise changes nothing and hands `key` and `val` back.
fn append_rightmost<K: Ord + Clone, V>(
    node: &mut Node<K, V>,
    key: K,
    val: V,
) -> Result<Inserted<K, V>, (K, V)> {
    match node {
        Node::Leaf(leaf) => {
            if leaf.keys().last().is_some_and(|last| key <= *last) {
                return Err((key, val));
            }
            if leaf.len() < LEAF_LEN_MAX {
                leaf.push(key, val);
                Ok(Inserted::Fits)
            } else {
                Ok(split_leaf(leaf, LEAF_LEN_MAX, key, val))
            }
        }
        Node::Internal(internal) => {
            // Below the rightmost child's lower bound: not above the maximum, and no need
            // to walk down to see it (random keys mostly stop here, at the root).
            if internal.seps.last().is_some_and(|sep| key < *sep) {
                return Err((key, val));
            }
            let idx = internal.children.len() - 1;
            Ok(
                match append_rightmost(&mut internal.children[idx], key, val)? {
                    Inserted::Split { sep, right } => adopt(internal, idx, sep, right),
                    other => other,
                },
            )
        }
    }
}

fn remove_from<K, V>(
    node: &mut Node<K, V>,
    cmp: &mut impl FnMut(&K) -> Ordering,
) -> Option<(K, V)> {
    match node {
        Node::Leaf(leaf) => {
            let idx = find(leaf.keys(), cmp)?;
            Some(leaf.remove(idx))
        }
        Node::Internal(internal) => {
            let idx = route(&internal.seps, cmp);
            let removed = remove_from(&mut internal.children[idx], cmp)?;
            repair_child(internal, idx);
            Some(removed)
        }
    }
}

/// After a removal under `children[idx]`: unlinks the child if it is empty, or merges it with
/// a neighbour if it fell below a quarter full and the two fit in one node.
fn repair_child<K, V>(internal: &mut Internal<K, V>, idx: usize) {
    let fill = internal.children[idx].fill();
    if fill == 0 {
        internal.children.remove(idx);
        // The separator bounding the removed child from below goes with it; for the first
        // child that is the one bounding its right neighbour, now first (needs no bound).
        if !internal.seps.is_empty() {
            internal.seps.remove(idx.saturating_sub(1));
        }
        return;
    }
    let (merge_below, fill_max) = match internal.children[idx] {
        Node::Leaf(_) => (LEAF_LEN_MERGE_BELOW, LEAF_LEN_MAX),
        Node::Internal(_) => (CHILDREN_MERGE_BELOW, CHILDREN_MAX),
    };
    if fill >= merge_below || internal.children.len() < 2 {
        return;
    }
    let left_idx = if idx + 1 < internal.children.len() {
        idx
    } else {
        idx - 1
    };
    if internal.children[left_idx].fill() + internal.children[left_idx + 1].fill() > fill_max {
        return;
    }
    let right = internal.children.remove(left_idx + 1);
    let sep = internal.seps.remove(left_idx);
    match (&mut internal.children[left_idx], right) {
        (Node::Leaf(left), Node::Leaf(mut right)) => {
            left.append(&mut right);
        }
        (Node::Internal(left), Node::Internal(mut right)) => {
            left.seps.push(sep);
            left.seps.append(&mut right.seps);
            left.children.append(&mut right.children);
        }
        _ => unreachable!("siblings are at the same depth"),
    }
}

#[cfg(test)]
impl<K: Ord + Clone + fmt::Debug, V> OrderedMap<K, V> {
    /// Asserts every invariant in the module comment.
    pub(crate) fn check_invariants(&self) {
        fn walk<K: Ord + fmt::Debug, V>(
            node: &Node<K, V>,
            depth: usize,
            is_root: bool,
            lower: Option<&K>,
            upper: Option<&K>,
            leaf_depth: &mut Option<usize>,
        ) -> usize {
            assert!(is_root || node.fill() > 0, "non-root node is empty");
            match node {
                Node::Leaf(leaf) => {
                    if !is_root {
                        assert_eq!(
                            leaf.capacity(),
                            LEAF_LEN_MAX,
                            "a child leaf could reallocate on insert"
                        );
                    }
                    assert!(leaf.len() <= LEAF_LEN_MAX);
                    assert_eq!(
                        *leaf_depth.get_or_insert(depth),
                        depth,
                        "leaves at two depths"
                    );
                    for k in leaf.keys() {
                        assert!(lower.is_none_or(|l| k >= l), "{k:?} below its bound");
                        assert!(upper.is_none_or(|u| k < u), "{k:?} at or above its bound");
                    }
                    leaf.len()
                }
                Node::Internal(internal) => {
                    assert_eq!(internal.seps.len() + 1, internal.children.len());
                    assert!(internal.children.len() <= CHILDREN_MAX);
                    let mut n = 0;
                    for (i, child) in internal.children.iter().enumerate() {
                        let lo = if i == 0 {
                            lower
                        } else {
                            Some(&internal.seps[i - 1])
                        };
                        let hi = internal.seps.get(i).or(upper);
                        n += walk(child, depth + 1, false, lo, hi, leaf_depth);
                    }
                    n
                }
            }
        }
        let n = walk(&self.root, 0, true, None, None, &mut None);
        assert_eq!(n, self.len);
        let mut previous: Option<&K> = None;
        self.visit_all(|k, _| {
            assert!(
                previous.is_none_or(|p| p < k),
                "keys not ascending at {k:?}"
            );
            previous = Some(k);
            ControlFlow::Continue(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn contents(map: &OrderedMap<u32, u64>) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        map.visit_all(|k, v| {
            out.push((*k, *v));
            ControlFlow::Continue(())
        });
        out
    }

    /// Random inserts, overwrites, removes and range visits agree with std's BTreeMap after
    /// every operation, and every structural invariant holds throughout. Key ranges switch
    /// between ascending runs (the append path), descending runs, and uniform keys, and
    /// remove-heavy phases drive merges and root collapses (nodes of 4 in tests, so a few
    /// thousand operations split and merge at every level).
    #[test]
    fn a_child_is_a_leaf_s_three_words() {
        assert_eq!(std::mem::size_of::<Node<u64, u64>>(), 24);
    }

    #[test]
    fn random_operations_match_btreemap() {
        let seed = 0x7eee_0000_0000_0001_u64;
        println!("seed {seed:#018x}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut map: OrderedMap<u32, u64> = OrderedMap::new();
        let mut model = BTreeMap::new();
        let mut ascending = 0u32;
        for step in 0..30_000u64 {
            let phase = (step / 2_000) % 4;
            let key: u32 = match phase {
                0 => {
                    ascending += rng.gen_range(1..3);
                    ascending
                }
                1 => rng.gen_range(0..=ascending.max(1)),
                2 => ascending.saturating_sub(rng.gen_range(0..500)),
                _ => rng.gen_range(0..=ascending.max(1)),
            };
            let removes = if phase == 3 { 3 } else { 1 };
            if rng.gen_range(0..4) < removes {
                assert_eq!(
                    map.remove_by(|k| k.cmp(&key)),
                    model.remove_entry(&key),
                    "step {step}: remove {key}"
                );
            } else {
                assert_eq!(
                    map.insert(key, step),
                    model.insert(key, step),
                    "step {step}: insert {key}"
                );
            }
            assert_eq!(map.len(), model.len());
            assert_eq!(map.get_by(|k| k.cmp(&key)), model.get(&key));
            if step % 97 == 0 {
                map.check_invariants();
                let bound = rng.gen_range(0..=ascending.max(1));
                let mut seen = Vec::new();
                map.visit_from(
                    |k| k.cmp(&bound),
                    |k, v| {
                        seen.push((*k, *v));
                        if seen.len() == 50 {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    },
                );
                let expected: Vec<_> = model
                    .range(bound..)
                    .take(50)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                assert_eq!(seen, expected, "step {step}: visit from {bound}");
            }
        }
        map.check_invariants();
        assert_eq!(contents(&map), model.into_iter().collect::<Vec<_>>());
        assert_eq!(
            map.last().map(|(k, _)| *k),
            contents(&map).last().map(|(k, _)| *k)
        );
    }

    /// Ascending inserts leave every leaf but the last full (the uneven split), which is what
    /// keeps a replayed store's memory near its entries' size.
    #[test]
    fn ascending_inserts_fill_leaves() {
        let mut map: OrderedMap<u32, u64> = OrderedMap::new();
        let n = 1000u32;
        for k in 0..n {
            assert_eq!(map.insert(k, u64::from(k)), None);
        }
        map.check_invariants();
        let mut fills = Vec::new();
        fn leaves(node: &Node<u32, u64>, fills: &mut Vec<usize>) {
            match node {
                Node::Leaf(leaf) => fills.push(leaf.len()),
                Node::Internal(internal) => internal.children.iter().for_each(|c| leaves(c, fills)),
            }
        }
        leaves(&map.root, &mut fills);
        let last = fills.pop().expect("leaves");
        assert!(fills.iter().all(|&f| f == LEAF_LEN_MAX), "{fills:?}");
        assert!(last >= 1);
        assert_eq!(fills.len() * LEAF_LEN_MAX + last, n as usize);
    }

    /// Removing every key (in an order unrelated to insertion) empties the tree to a root
    /// leaf, and it is usable again afterwards.
    #[test]
    fn removing_everything_collapses_to_an_empty_root() {
        let mut map: OrderedMap<u32, u64> = OrderedMap::new();
        for k in 0..500u32 {
            map.insert(k.wrapping_mul(7919) % 500, u64::from(k));
        }
        for k in (0..500u32).rev() {
            let key = k.wrapping_mul(31) % 500;
            assert!(map.remove_by(|s| s.cmp(&key)).is_some(), "{key}");
            map.check_invariants();
        }
        assert!(map.is_empty());
        assert!(matches!(map.root, Node::Leaf(_)));
        assert_eq!(map.remove_by(|s| s.cmp(&1)), None);
        map.insert(3, 3);
        assert_eq!(contents(&map), vec![(3, 3)]);
    }
}
