//! Sorted runs of replayed operations, and merging them into the map in one pass.
//!
//! Replaying keys in random order one insert at a time searched the tree from the root for
//! every key and split leaves in half: 1M keys replayed 5.8x slower than ascending ones
//! (issue 11). Instead, replay collects operations into runs, sorts each run by key
//! (keeping only the last operation of each key, so later commits win), and merges all runs
//! with the map's own entries into a freshly built map: every entry moves once and every
//! leaf ends up full.
//!
//! A run keeps its entries in descending key order and is consumed from the back, so the
//! memory of the entries already merged can be returned as the merge goes (about one copy
//! of the data is live at any time, not two). It keeps each key's space (namespace) once
//! per stretch of keys that share it, and the merge goes space by space, moving and
//! comparing local keys only.

use std::cmp::Ordering;

use super::tree::OrderedMap;

/// Entries merged out of a run between two shrinks of its buffer (~90 KiB returned each
/// time: with 4096, a 100K-operation replay peaked 1.6x its store).
const RUN_SHRINK_EVERY: usize = 1024;

/// Entries ahead of a run's next one whose cache line `Run::pop` starts loading.
const RUN_PREFETCH_AHEAD: usize = 16;

/// One operation of a run: `Some(value)` stores, `None` deletes.
pub(crate) type RunEntry<K, V> = (K, Option<V>);

/// Bytes of a key's integer form (`RunKey::sort_bytes`).
pub(crate) const SORT_BYTES_LEN: usize = 24;

/// Keys that runs can mostly sort without calling `Ord::cmp`: within one class (for stored
/// keys, one namespace allocation and type tag), keys whose `sort_bytes` differ order as
/// those bytes do (compared as unsigned bytes, left to right).
///
/// A sorted run keeps a key in two parts: its `Space`, once per stretch of keys that share
/// it (for stored keys, the namespace), and its `Local` part per key (a stored key's 24
/// bytes without the namespace's 8: a run's entry 80 bytes instead of 88, which is what the
/// runs add to replay's peak over the store they become).
pub(crate) trait RunKey: Ord {
    type Class: Copy + Eq;
    type Space: Clone;
    type Local: Ord + Clone;
    fn class(&self) -> Self::Class;
    /// `None` for keys without such a form (long user keys).
    fn sort_bytes(&self) -> Option<[u8; SORT_BYTES_LEN]>;
    fn split(self) -> (Self::Space, Self::Local);
    #[cfg(test)]
    fn join(space: Self::Space, local: Self::Local) -> Self;
    /// How spaces order: keys order by space first, then by local key.
    fn cmp_space(a: &Self::Space, b: &Self::Space) -> Ordering;
}

/// Collects operations in the order they are applied, until they are sorted into a run.
///
/// The sort orders 4-byte positions, not the 88-byte operations (a stable sort of the
/// operations themselves took 1,150 instructions per operation), then moves each operation
/// to its place in one pass over the cycles of the permutation. The operations' buffer
/// itself becomes the run, so sealing allocates nothing but the positions: replay's peak
/// is the runs plus one run being filled (sorting into a second buffer put a 100K-operation
/// replay's peak at 1.46x its store).
///
/// When every key of a run has an integer form in one class (replay's common case: one
/// namespace, short user keys), the positions are sorted by that form, a comparison of
/// plain words, instead of through `Ord::cmp` on the operations.
#[derive(Debug)]
pub(crate) struct RunBuilder<K: RunKey, V> {
    ops: Vec<RunEntry<K, V>>,
    /// The class of the first key, and whether every key since shares it and has an
    /// integer form.
    class: Option<K::Class>,
    uniform: bool,
    /// Operations a run usually gets: the buffer is allocated at this size at once.
    run_len: usize,
}

/// Marks a position of the sort's order whose operation is in place.
const PLACED: u32 = u32::MAX;

impl<K: RunKey, V> RunBuilder<K, V> {
    /// A builder that allocates nothing until the first push.
    pub(crate) fn new(run_len: usize) -> RunBuilder<K, V> {
        RunBuilder {
            ops: Vec::new(),
            class: None,
            uniform: true,
            run_len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds the next operation (`None` deletes `key`).
    pub(crate) fn push(&mut self, key: K, val: Option<V>) {
        if self.ops.capacity() == 0 {
            self.ops.reserve_exact(self.run_len);
        }
        if self.uniform {
            let class = key.class();
            self.uniform = *self.class.get_or_insert(class) == class && key.sort_bytes().is_some();
        }
        self.ops.push((key, val));
    }

    /// Sorts what was pushed into a run and empties the builder: of several operations on
    /// one key only the last is kept, as applying them in order would leave it.
    #[cfg(test)]
    pub(crate) fn seal(&mut self) -> Run<K, V> {
        self.take_unsorted().sort()
    }

    /// Takes what was pushed, to be sorted into a run (`Unsorted::sort`), perhaps on
    /// another thread, and empties the builder.
    pub(crate) fn take_unsorted(&mut self) -> Unsorted<K, V> {
        let unsorted = Unsorted {
            ops: std::mem::take(&mut self.ops),
            uniform: self.uniform,
        };
        self.class = None;
        self.uniform = true;
        unsorted
    }
}

/// Operations in the order they were applied, not yet sorted into a run.
#[derive(Debug)]
pub(crate) struct Unsorted<K, V> {
    ops: Vec<RunEntry<K, V>>,
    /// Every key shares one class and has an integer form.
    uniform: bool,
}

impl<K: RunKey, V> Unsorted<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// The run: of several operations on one key only the last is kept, as applying them
    /// in order would leave it.
    pub(crate) fn sort(self) -> Run<K, V> {
        let Unsorted { mut ops, uniform } = self;
        let n_ops = ops.len();
        assert!(
            u32::try_from(n_ops).is_ok_and(|n| n < PLACED),
            "run too long"
        );
        // Descending key order and, among equal keys, latest first: the first of each key
        // is the one that stays. Positions are distinct, so the unstable sorts are exact.
        let mut order: Vec<u32> = if uniform && n_ops > 1 {
            let (skip, words) = distinguishing_words(&ops);
            // Keys that share `skip` bytes and differ in the next 8 order by those 8 bytes;
            // only keys equal there are compared whole. Latest first into the stable sort.
            debug_assert!(skip <= SORT_BYTES_LEN);
            let mut sorted: Vec<(u64, u32)> = words.rev().zip((0..n_ops as u32).rev()).collect();
            radix_sort_descending(&mut sorted);
            // Equal words (latest first, from the stable sort) are ordered by whole keys.
            for group in sorted.chunk_by_mut(|a, b| a.0 == b.0) {
                if group.len() > 1 {
                    group.sort_unstable_by(|a, b| {
                        ops[b.1 as usize]
                            .0
                            .cmp(&ops[a.1 as usize].0)
                            .then(b.1.cmp(&a.1))
                    });
                }
            }
            sorted.iter().map(|&(_, position)| position).collect()
        } else {
            let mut order: Vec<u32> = (0..n_ops as u32).collect();
            order.sort_unstable_by(|&a, &b| {
                ops[b as usize].0.cmp(&ops[a as usize].0).then(b.cmp(&a))
            });
            order
        };
        // Slot `at` must receive the operation at `order[at]`: follow each cycle of the
        // permutation, swapping every operation into place once.
        for start in 0..n_ops {
            let mut at = start;
            while order[at] != PLACED {
                let from = order[at] as usize;
                order[at] = PLACED;
                if from == start {
                    break;
                }
                ops.swap(at, from);
                at = from;
            }
        }
        drop(order);
        // `dedup_by` keeps the first of equal neighbours: the latest operation of the key.
        ops.dedup_by(|later, kept| later.0 == kept.0);
        // Keys give up their space to the stretches: collected in place (the buffer is
        // reused, then shrunk in place to the smaller entries).
        let mut spaces: Vec<(K::Space, usize)> = Vec::new();
        let mut entries: Vec<(K::Local, Option<V>)> = ops
            .into_iter()
            .map(|(key, val)| {
                let (space, local) = key.split();
                match spaces.last_mut() {
                    Some((last, len)) if K::cmp_space(last, &space).is_eq() => *len += 1,
                    _ => spaces.push((space, 1)),
                }
                (local, val)
            })
            .collect();
        entries.shrink_to_fit();
        Run {
            entries,
            spaces,
            popped_since_shrink: 0,
        }
    }
}

/// Sorts `items` by their words, descending, keeping the order of items with equal words
/// (a least-significant-digit radix sort, a byte per pass; passes over a byte that every
/// word shares are skipped). Measured on replay's runs of 32K random keys: the comparison
/// sort it replaced was ~375 instructions per operation, a sixth of a random replay.
fn radix_sort_descending(items: &mut Vec<(u64, u32)>) {
    let n_items = items.len();
    let mut counts = [[0usize; 256]; 8];
    for &(word, _) in items.iter() {
        for (digit, count) in counts.iter_mut().enumerate() {
            count[((word >> (8 * digit)) & 0xff) as usize] += 1;
        }
    }
    let mut scratch: Vec<(u64, u32)> = Vec::new();
    for (digit, count) in counts.iter().enumerate() {
        if count.contains(&n_items) {
            continue;
        }
        // Descending: the largest digit's items go first.
        let mut next = [0usize; 256];
        let mut at = 0;
        for byte in (0..256).rev() {
            next[byte] = at;
            at += count[byte];
        }
        scratch.resize(n_items, (0, 0));
        for &item in items.iter() {
            let byte = ((item.0 >> (8 * digit)) & 0xff) as usize;
            scratch[next[byte]] = item;
            next[byte] += 1;
        }
        std::mem::swap(items, &mut scratch);
    }
}

/// For the keys of a uniform run (one class, every key with sort bytes): how many leading
/// sort bytes all of them share, and for each key the next 8 bytes as a big-endian word
/// (zero past the end). Skipping the shared prefix matters: replay's keys often share
/// several bytes (`key_` and more), and a word of them would decide almost nothing.
fn distinguishing_words<K: RunKey, V>(
    ops: &[RunEntry<K, V>],
) -> (usize, impl DoubleEndedIterator<Item = u64> + '_) {
    let bytes_of = |key: &K| key.sort_bytes().expect("a uniform run");
    let first = bytes_of(&ops[0].0);
    let mut skip = SORT_BYTES_LEN;
    for (key, _) in &ops[1..] {
        let bytes = bytes_of(key);
        skip = skip.min(first.iter().zip(&bytes).take_while(|(a, b)| a == b).count());
    }
    let words = ops.iter().map(move |(key, _)| {
        let bytes = bytes_of(key);
        let mut word = [0u8; 8];
        let tail = &bytes[skip.min(SORT_BYTES_LEN)..];
        let n = tail.len().min(8);
        word[..n].copy_from_slice(&tail[..n]);
        u64::from_be_bytes(word)
    });
    (skip, words)
}

/// Operations sorted by key, at most one per key (the last one applied).
pub(crate) struct Run<K: RunKey, V> {
    /// Descending key order: the smallest key is last.
    entries: Vec<(K::Local, Option<V>)>,
    /// The space of each stretch of `entries` and its length, in the same order.
    spaces: Vec<(K::Space, usize)>,
    popped_since_shrink: usize,
}

impl<K: RunKey, V> std::fmt::Debug for Run<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("len", &self.entries.len())
            .field("spaces", &self.spaces.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
impl<K: RunKey, V> Run<K, V> {
    /// The run of `ops`, given in the order they were applied.
    pub(crate) fn from_ops(ops: Vec<RunEntry<K, V>>) -> Run<K, V> {
        let mut builder = RunBuilder::new(ops.len());
        for (key, val) in ops {
            builder.push(key, val);
        }
        builder.seal()
    }
}

impl<K: RunKey, V> Run<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The space of the stretch the next entry is in.
    fn next_space(&self) -> Option<&K::Space> {
        self.spaces.last().map(|(space, _)| space)
    }

    /// Entries left in the current stretch if it is in `space`, else 0.
    fn left_in(&self, space: &K::Space) -> usize {
        match self.spaces.last() {
            Some((next, left)) if K::cmp_space(next, space).is_eq() => *left,
            _ => 0,
        }
    }

    /// Takes the next entry, which must be in the current stretch.
    #[inline(always)]
    fn pop(&mut self) -> (K::Local, Option<V>) {
        let entry = self.entries.pop().expect("an entry left in the stretch");
        // The merge waits on each run's next entry: start loading a few entries ahead.
        if let Some(ahead) = self.entries.len().checked_sub(RUN_PREFETCH_AHEAD) {
            super::tree::prefetch(self.entries.as_ptr().wrapping_add(ahead));
        }
        let (_, left) = self.spaces.last_mut().expect("a stretch for every entry");
        *left -= 1;
        if *left == 0 {
            // The stretch's space goes (one reference per stretch, not per key).
            self.spaces.pop();
        }
        self.popped_since_shrink += 1;
        if self.popped_since_shrink == RUN_SHRINK_EVERY {
            // Returns the merged tail of the buffer to the allocator (a shrinking realloc
            // splits the block in place), so the new map can reuse it.
            self.entries.shrink_to_fit();
            self.popped_since_shrink = 0;
        }
        entry
    }
}

/// A map kept as one tree per space, in ascending space order (the store's `Spaces`).
pub(crate) type SpaceMaps<K, V> = Vec<(<K as RunKey>::Space, OrderedMap<<K as RunKey>::Local, V>)>;

/// Merges `runs` (oldest first, each newer than `maps`) into `maps`, space by space: the
/// result holds, for every key, what applying the maps' entries and then every run's
/// operations in order would leave (the newest operation of a key wins; a delete removes
/// it; a space left empty is dropped). Inside a space only local keys move and compare:
/// a space is cloned once per space, not per key (measured with stored keys: a reference
/// count taken and dropped per key made a 1M random-key replay 5-8% slower).
pub(crate) fn merge_spaces<K: RunKey, V>(
    maps: SpaceMaps<K, V>,
    runs: Vec<Run<K, V>>,
) -> SpaceMaps<K, V> {
    let mut maps = maps.into_iter().peekable();
    let mut runs = LoserTree::new(runs);
    let mut merged = Vec::new();
    loop {
        // The smallest space that the maps or any run still holds.
        let mut next: Option<&K::Space> = maps.peek().map(|(space, _)| space);
        for run in &runs.runs {
            if let Some(space) = run.next_space() {
                if next.is_none_or(|least| K::cmp_space(space, least).is_lt()) {
                    next = Some(space);
                }
            }
        }
        let Some(space) = next.cloned() else {
            break;
        };
        let base = match maps.peek() {
            Some((first, _)) if K::cmp_space(first, &space).is_eq() => {
                maps.next().map(|(_, map)| map)
            }
            _ => None,
        };
        runs.restrict_to(&space);
        let map = match base {
            Some(map) => OrderedMap::from_sorted(OverMap {
                map: map.into_sorted().peekable(),
                runs: (&mut runs).peekable(),
            }),
            // Deletes of keys that no older entry holds remove nothing.
            None => OrderedMap::from_sorted((&mut runs).filter_map(|(key, val)| Some((key, val?)))),
        };
        if !map.is_empty() {
            merged.push((space, map));
        }
    }
    merged
}

/// Merges `runs` (oldest first, each newer than `map`) into `map` (keys whole: each
/// space's tree is built and joined back).
#[cfg(test)]
pub(crate) fn merge_runs<K: RunKey + Clone, V>(
    map: OrderedMap<K, V>,
    runs: Vec<Run<K, V>>,
) -> OrderedMap<K, V> {
    let mut maps: SpaceMaps<K, V> = Vec::new();
    let mut entries = map.into_sorted().peekable();
    while let Some((first, _)) = entries.peek() {
        let space = first.clone().split().0;
        let map = OrderedMap::from_sorted(std::iter::from_fn(|| {
            let (key, _) = entries.peek()?;
            if !K::cmp_space(&key.clone().split().0, &space).is_eq() {
                return None;
            }
            let (key, val) = entries.next()?;
            Some((key.split().1, val))
        }));
        maps.push((space, map));
    }
    OrderedMap::from_sorted(
        merge_spaces(maps, runs)
            .into_iter()
            .flat_map(|(space, map)| {
                map.into_sorted()
                    .map(move |(local, val)| (K::join(space.clone(), local), val))
            }),
    )
}

/// The runs' merged operations laid over a space's map entries, in key order.
struct OverMap<B: Iterator, R: Iterator> {
    map: std::iter::Peekable<B>,
    runs: std::iter::Peekable<R>,
}

impl<K: Ord, V, B: Iterator<Item = (K, V)>, R: Iterator<Item = (K, Option<V>)>> Iterator
    for OverMap<B, R>
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            let order = match (self.map.peek(), self.runs.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((map_key, _)), Some((run_key, _))) => map_key.cmp(run_key),
            };
            if order == Ordering::Less {
                return self.map.next();
            }
            if order == Ordering::Equal {
                // The runs are newer: the map's entry of this key is replaced or deleted.
                self.map.next();
            }
            let (key, val) = self.runs.next().expect("peeked");
            if let Some(val) = val {
                return Some((key, val));
            }
        }
    }
}

/// A k-way merge of runs with a tournament tree of losers: each entry out costs one
/// comparison per level (log2 of the run count), against two per level and a heap
/// rebuilt through an enum of sources before (~800 instructions per entry). Yields each
/// key once, with the operation of the newest run that holds it. It merges one space at a
/// time (`restrict_to`): a run takes part with the stretch it holds of that space.
struct LoserTree<K: RunKey, V> {
    runs: Vec<Run<K, V>>,
    /// Entries each run has left in the space being merged.
    left: Vec<usize>,
    /// `nodes[0]` is the current winner; `nodes[p]` for `1 <= p < runs.len()` the loser
    /// of the match at node `p`. Run `r` is the leaf at node `runs.len() + r`; the parent
    /// of node `p` is `p / 2`.
    nodes: Vec<usize>,
}

impl<K: RunKey, V> LoserTree<K, V> {
    fn new(runs: Vec<Run<K, V>>) -> LoserTree<K, V> {
        LoserTree {
            left: vec![0; runs.len()],
            nodes: vec![0; runs.len().max(1)],
            runs,
        }
    }

    /// Starts merging the runs' stretches of `space`.
    fn restrict_to(&mut self, space: &K::Space) {
        for (left, run) in self.left.iter_mut().zip(&self.runs) {
            *left = run.left_in(space);
        }
        if !self.runs.is_empty() {
            self.nodes[0] = self.play(1);
        }
    }

    /// Run `r`'s next entry in the space being merged.
    #[inline(always)]
    fn peek(&self, r: usize) -> Option<&K::Local> {
        if self.left[r] == 0 {
            return None;
        }
        self.runs[r].entries.last().map(|(local, _)| local)
    }

    /// Plays the matches under node `p`, records their losers, returns the winner.
    fn play(&mut self, p: usize) -> usize {
        let n_runs = self.runs.len();
        if p >= n_runs {
            return p - n_runs;
        }
        let left = self.play(2 * p);
        let right = self.play(2 * p + 1);
        if self.beats(left, right) {
            self.nodes[p] = right;
            left
        } else {
            self.nodes[p] = left;
            right
        }
    }

    /// True when run `a`'s next entry comes out before run `b`'s: a smaller key, or the
    /// same key in a newer run. An exhausted run loses every match.
    #[inline(always)]
    fn beats(&self, a: usize, b: usize) -> bool {
        match (self.peek(a), self.peek(b)) {
            (Some(a_key), Some(b_key)) => match a_key.cmp(b_key) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => a > b,
            },
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Takes the winner's entry and replays its run's path to the root.
    #[inline]
    fn pop(&mut self) -> Option<(K::Local, Option<V>)> {
        let mut winner = *self.nodes.first()?;
        if self.runs.is_empty() || self.left[winner] == 0 {
            return None;
        }
        self.left[winner] -= 1;
        let entry = self.runs[winner].pop();
        let mut p = (winner + self.runs.len()) / 2;
        while p > 0 {
            if self.beats(self.nodes[p], winner) {
                std::mem::swap(&mut self.nodes[p], &mut winner);
            }
            p /= 2;
        }
        self.nodes[0] = winner;
        Some(entry)
    }
}

impl<K: RunKey, V> Iterator for LoserTree<K, V> {
    type Item = (K::Local, Option<V>);

    fn next(&mut self) -> Option<(K::Local, Option<V>)> {
        let (local, val) = self.pop()?;
        // Older runs' operations on the same key come out next: they lost.
        while self.peek(self.nodes[0]).is_some_and(|next| *next == local) {
            self.pop();
        }
        Some((local, val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Keys from 250 on have no integer form, so runs holding one take the general sort.
    impl RunKey for u16 {
        type Class = ();
        type Space = ();
        type Local = u16;
        fn class(&self) {}
        fn split(self) -> ((), u16) {
            ((), self)
        }
        fn join((): (), local: u16) -> u16 {
            local
        }
        fn cmp_space((): &(), (): &()) -> Ordering {
            Ordering::Equal
        }
        fn sort_bytes(&self) -> Option<[u8; SORT_BYTES_LEN]> {
            let mut bytes = [0u8; SORT_BYTES_LEN];
            // Big-endian in the middle: shared leading zeros are skipped, and bytes after
            // the word leave some keys equal in it (decided by the full comparison).
            bytes[7..9].copy_from_slice(&self.to_be_bytes());
            (*self < 250).then_some(bytes)
        }
    }

    /// Runs of keys of one parity sort by their bytes; mixed runs take the general sort.
    /// The high half is the space (so runs hold several stretches).
    impl RunKey for u32 {
        type Class = bool;
        type Space = u16;
        type Local = u16;
        fn split(self) -> (u16, u16) {
            ((self >> 16) as u16, self as u16)
        }
        fn join(space: u16, local: u16) -> u32 {
            u32::from(space) << 16 | u32::from(local)
        }
        fn cmp_space(a: &u16, b: &u16) -> Ordering {
            a.cmp(b)
        }
        fn class(&self) -> bool {
            self.is_multiple_of(2)
        }
        fn sort_bytes(&self) -> Option<[u8; SORT_BYTES_LEN]> {
            let mut bytes = [0u8; SORT_BYTES_LEN];
            bytes[..4].copy_from_slice(&self.to_be_bytes());
            Some(bytes)
        }
    }

    /// Merges `runs` (each in applied order) into a map of `base`, and applies the same
    /// operations to `base` one by one as the model; the merged map's invariants hold.
    fn merge_and_apply<K: RunKey + Clone + Copy + std::fmt::Debug, V: Copy + Send>(
        base: BTreeMap<K, V>,
        runs: Vec<Vec<(K, Option<V>)>>,
    ) -> (OrderedMap<K, V>, BTreeMap<K, V>) {
        let mut model = base.clone();
        for &(k, v) in runs.iter().flatten() {
            match v {
                Some(v) => {
                    model.insert(k, v);
                }
                None => {
                    model.remove(&k);
                }
            }
        }
        let map = OrderedMap::from_sorted(base);
        let merged = merge_runs(map, runs.into_iter().map(Run::from_ops).collect());
        merged.check_invariants();
        (merged, model)
    }

    /// Operations as replay produces them: keys from a small range (so runs hold duplicate
    /// keys, and runs overlap each other and the map), a third of them deletes.
    fn ops_strategy() -> impl Strategy<Value = Vec<(u16, Option<u32>)>> {
        proptest::collection::vec(
            (
                0u16..300,
                prop_oneof![2 => any::<u32>().prop_map(Some), 1 => Just(None)],
            ),
            0..400,
        )
    }

    proptest! {
        /// The radix sort orders like a stable sort by descending word, whatever the words
        /// share (few distinct words, so equal ones keep their order).
        #[test]
        fn radix_sort_is_a_stable_descending_sort(
            words in proptest::collection::vec(
                prop_oneof![any::<u64>(), 0u64..4, (0u64..4).prop_map(|w| w << 40 | 0xff)],
                0..300,
            ),
        ) {
            let mut items: Vec<(u64, u32)> = words.iter().copied().zip(0..).collect();
            let mut expected = items.clone();
            expected.sort_by_key(|item| std::cmp::Reverse(item.0));
            radix_sort_descending(&mut items);
            prop_assert_eq!(items, expected);
        }

        /// A run keeps exactly the last operation of every key, in key order.
        #[test]
        fn run_keeps_the_last_operation_of_each_key(ops in ops_strategy()) {
            let mut model = BTreeMap::new();
            for &(k, v) in &ops {
                model.insert(k, v);
            }
            let mut run = Run::from_ops(ops);
            prop_assert_eq!(run.len(), model.len());
            let mut got = Vec::new();
            while run.len() > 0 {
                let (local, val) = run.pop();
                got.push((u16::join((), local), val));
            }
            prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
        }

        /// Merging runs into a map leaves exactly what applying the map's entries and then
        /// every operation one by one to a BTreeMap leaves: duplicates within and across
        /// runs, deletes of keys in the map, in older runs and nowhere, and empty runs.
        #[test]
        fn merge_equals_applying_every_operation_in_order(
            base in proptest::collection::btree_map(0u16..300, any::<u32>(), 0..200),
            runs in proptest::collection::vec(ops_strategy(), 0..6),
        ) {
            let (merged, model) = merge_and_apply(base, runs);
            prop_assert_eq!(merged.len(), model.len());
            prop_assert_eq!(
                merged.into_sorted().collect::<Vec<_>>(),
                model.into_iter().collect::<Vec<_>>()
            );
        }
    }

    proptest! {
        /// Runs whose keys fall into several spaces (u32 keys: the high half) keep one
        /// stretch per space and still merge exactly like applying every operation in
        /// order; parity classes mix, so both sorts run.
        #[test]
        fn runs_over_several_spaces_merge_in_order(
            base in proptest::collection::btree_map((0u32..4, 0u32..60).prop_map(|(hi, lo)| hi << 16 | lo), any::<u8>(), 0..100),
            runs in proptest::collection::vec(
                proptest::collection::vec(
                    ((0u32..4, 0u32..60).prop_map(|(hi, lo)| hi << 16 | lo), proptest::option::of(any::<u8>())),
                    0..150,
                ),
                0..5,
            ),
        ) {
            let (merged, model) = merge_and_apply(base, runs);
            prop_assert_eq!(
                merged.into_sorted().collect::<Vec<_>>(),
                model.into_iter().collect::<Vec<_>>()
            );
        }
    }

    /// Runs longer than the shrink interval shrink as they are merged and still yield
    /// every entry in order; one run alone and no run at all merge too.
    #[test]
    fn long_runs_merge_completely() {
        let n = 3 * RUN_SHRINK_EVERY as u32 + 5;
        let evens: Vec<_> = (0..n).map(|i| (2 * i, Some(i))).collect();
        let odds: Vec<_> = (0..n).rev().map(|i| (2 * i + 1, Some(i))).collect();
        let merged = merge_runs(
            OrderedMap::new(),
            vec![Run::from_ops(evens), Run::from_ops(odds)],
        );
        merged.check_invariants();
        let keys: Vec<u32> = merged.into_sorted().map(|(k, _)| k).collect();
        assert_eq!(keys, (0..2 * n).collect::<Vec<_>>());
        let single = merge_runs(
            OrderedMap::from_sorted([(1u32, 1u32)]),
            vec![Run::from_ops(vec![(1, None), (0, Some(0))])],
        );
        assert_eq!(single.into_sorted().collect::<Vec<_>>(), vec![(0, 0)]);
        let none = merge_runs(OrderedMap::from_sorted([(1u32, 1u32)]), Vec::new());
        assert_eq!(none.into_sorted().collect::<Vec<_>>(), vec![(1, 1)]);
    }
}
