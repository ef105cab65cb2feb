//! `Leaf`: a leaf's entries, keys and values in one block, at most `LEAF_LEN_MAX` of each.
//!
//! The block holds the keys first, then the values, each a contiguous array (a search
//! touches only keys). Its capacity is either below `LEAF_LEN_MAX`, for a root leaf that
//! grows as a `Vec` does (a small namespace's tree: most would never fill a leaf), in a
//! block of the global allocator; or exactly `LEAF_LEN_MAX`, in an arena block
//! (`arena.rs`), so that an insert into a child leaf never reallocates. Keys and values in one block rather than two: one size class in the arena, so
//! one fresh 2 MiB chunk at a time is partly used instead of two (peak RSS of a 1M-key
//! replay), and one allocation per leaf.
//!
//! Invariant: the first `len` keys and the first `len` values are initialised, nothing else
//! is. Inserting past `LEAF_LEN_MAX` is a bug (leaves split first) and panics.

use std::alloc::Layout;
use std::marker::PhantomData;
use std::ptr::NonNull;

use super::{arena, LEAF_LEN_MAX};

/// Capacity of a growing root leaf's first block.
const GROWING_CAP_MIN: usize = 4;
const _: () = assert!(GROWING_CAP_MIN <= LEAF_LEN_MAX);

pub(super) struct Leaf<K, V> {
    /// Keys at the start, values at `vals_offset(cap)`; `dangling()` while `cap` is 0 or
    /// the block would be empty (zero-sized keys and values).
    block: NonNull<u8>,
    len: usize,
    /// 0 (nothing allocated), below `LEAF_LEN_MAX` (global allocator), or `LEAF_LEN_MAX`
    /// (arena).
    cap: usize,
    _owns: PhantomData<(K, V)>,
}

// SAFETY: a `Leaf` owns its keys and values as a pair of `Vec`s would.
unsafe impl<K: Send, V: Send> Send for Leaf<K, V> {}
// SAFETY: as above; shared access only hands out shared references.
unsafe impl<K: Sync, V: Sync> Sync for Leaf<K, V> {}

/// Offset of the values in a block of `cap` entries.
fn vals_offset<K, V>(cap: usize) -> usize {
    (cap * size_of::<K>()).next_multiple_of(align_of::<V>())
}

fn layout_of<K, V>(cap: usize) -> Layout {
    let size = vals_offset::<K, V>(cap) + cap * size_of::<V>();
    Layout::from_size_align(size, align_of::<K>().max(align_of::<V>()))
        .expect("a leaf's block is small")
}

/// A non-null address aligned for both keys and values, for a leaf with no block (an
/// empty slice, or a zero-length copy, still needs an aligned pointer).
fn dangling<K, V>() -> NonNull<u8> {
    let align = align_of::<K>().max(align_of::<V>());
    NonNull::new(std::ptr::without_provenance_mut(align)).expect("alignments are non-zero")
}

impl<K, V> Leaf<K, V> {
    /// A leaf that allocates nothing until its first entry, for a root: it grows as a `Vec`
    /// does, and `fit` gives it its full size when it becomes a child.
    pub(super) fn empty() -> Leaf<K, V> {
        Leaf {
            block: dangling::<K, V>(),
            len: 0,
            cap: 0,
            _owns: PhantomData,
        }
    }

    /// A leaf with room for `LEAF_LEN_MAX` entries (an arena block), as every leaf under
    /// an internal node has.
    pub(super) fn new() -> Leaf<K, V> {
        let mut leaf = Leaf::empty();
        leaf.reserve_to(LEAF_LEN_MAX);
        leaf
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    fn keys_ptr(&self) -> *mut K {
        self.block.as_ptr().cast()
    }

    fn vals_ptr(&self) -> *mut V {
        // In bounds of the block, or the aligned dangling address (offset 0) without one.
        self.block
            .as_ptr()
            .wrapping_add(vals_offset::<K, V>(self.cap))
            .cast()
    }

    /// The address of the keys (for prefetching them).
    pub(super) fn keys_at(&self) -> usize {
        self.block.as_ptr() as usize
    }

    #[inline(always)]
    pub(super) fn keys(&self) -> &[K] {
        // SAFETY: the first `len` keys are initialised; the pointer is aligned and non-null
        // even without a block.
        unsafe { std::slice::from_raw_parts(self.keys_ptr(), self.len) }
    }

    #[inline(always)]
    pub(super) fn vals(&self) -> &[V] {
        // SAFETY: as for `keys`.
        unsafe { std::slice::from_raw_parts(self.vals_ptr(), self.len) }
    }

    #[inline(always)]
    pub(super) fn vals_mut(&mut self) -> &mut [V] {
        // SAFETY: as for `keys`, with `&mut self` unique.
        unsafe { std::slice::from_raw_parts_mut(self.vals_ptr(), self.len) }
    }

    /// Moves the entries to a block of `cap` entries (at least `len`).
    fn reserve_to(&mut self, cap: usize) {
        assert!(
            self.len <= cap && cap <= LEAF_LEN_MAX,
            "a leaf holds at most LEAF_LEN_MAX entries"
        );
        if cap == self.cap {
            return;
        }
        let mut moved = Leaf::<K, V> {
            block: allocate::<K, V>(cap),
            len: 0,
            cap,
            _owns: PhantomData,
        };
        // SAFETY: the first `len` keys and values are initialised, both blocks hold at
        // least `len` entries, and the blocks are distinct; this leaf's length drops to 0
        // so its drop frees the old block without dropping the moved entries.
        unsafe {
            std::ptr::copy_nonoverlapping(self.keys_ptr(), moved.keys_ptr(), self.len);
            std::ptr::copy_nonoverlapping(self.vals_ptr(), moved.vals_ptr(), self.len);
        }
        moved.len = std::mem::take(&mut self.len);
        std::mem::swap(self, &mut moved);
    }

    /// Makes the capacity exactly `LEAF_LEN_MAX` (an arena block that never moves).
    pub(super) fn fit(&mut self) {
        self.reserve_to(LEAF_LEN_MAX);
    }

    /// Makes the capacity exactly the length, for a root leaf that is not full.
    pub(super) fn shrink_to_fit(&mut self) {
        if self.len < LEAF_LEN_MAX {
            self.reserve_to(self.len);
        }
    }

    /// Room for one more entry: a growing root doubles; a full-capacity leaf is full.
    fn grow_for_one(&mut self) {
        if self.len == self.cap {
            let cap = (self.cap * 2).clamp(GROWING_CAP_MIN, LEAF_LEN_MAX);
            self.reserve_to(cap.max(self.len + 1));
        }
    }

    /// Appends an entry (a bulk build's and the append path's only write).
    #[inline]
    pub(super) fn push(&mut self, key: K, val: V) {
        self.grow_for_one();
        // SAFETY: `len < cap` after growing; slot `len` is uninitialised.
        unsafe {
            self.keys_ptr().add(self.len).write(key);
            self.vals_ptr().add(self.len).write(val);
        }
        self.len += 1;
    }

    /// Inserts an entry at `idx`, shifting the entries after it right.
    pub(super) fn insert(&mut self, idx: usize, key: K, val: V) {
        assert!(
            idx <= self.len,
            "insert at {idx} past the length {}",
            self.len
        );
        self.grow_for_one();
        // SAFETY: `len < cap` after growing; entries `idx..len` move one slot right within
        // their arrays, and slot `idx` is then written without dropping its stale copy.
        unsafe {
            let key_at = self.keys_ptr().add(idx);
            std::ptr::copy(key_at, key_at.add(1), self.len - idx);
            key_at.write(key);
            let val_at = self.vals_ptr().add(idx);
            std::ptr::copy(val_at, val_at.add(1), self.len - idx);
            val_at.write(val);
        }
        self.len += 1;
    }

    /// Removes and returns the entry at `idx`, shifting the entries after it left.
    pub(super) fn remove(&mut self, idx: usize) -> (K, V) {
        assert!(
            idx < self.len,
            "remove at {idx} past the length {}",
            self.len
        );
        // SAFETY: slot `idx` is initialised and read out once; the entries after it move
        // one slot left, and the length drops, so the last slot's stale copy is never read.
        unsafe {
            let key_at = self.keys_ptr().add(idx);
            let key = key_at.read();
            std::ptr::copy(key_at.add(1), key_at, self.len - idx - 1);
            let val_at = self.vals_ptr().add(idx);
            let val = val_at.read();
            std::ptr::copy(val_at.add(1), val_at, self.len - idx - 1);
            self.len -= 1;
            (key, val)
        }
    }

    /// Moves the entries from `at` on to the end of `to`, keeping their order.
    pub(super) fn move_tail(&mut self, at: usize, to: &mut Leaf<K, V>) {
        assert!(at <= self.len);
        let n_moved = self.len - at;
        to.reserve_to(to.cap.max(to.len + n_moved));
        // SAFETY: entries `at..len` are initialised and `to` has room for them; the leaves
        // are distinct (`&mut` both); the source's length drops, so the moved entries are
        // owned by `to` alone.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.keys_ptr().add(at),
                to.keys_ptr().add(to.len),
                n_moved,
            );
            std::ptr::copy_nonoverlapping(
                self.vals_ptr().add(at),
                to.vals_ptr().add(to.len),
                n_moved,
            );
        }
        self.len = at;
        to.len += n_moved;
    }

    /// Moves every entry of `other` to the end of this leaf.
    pub(super) fn append(&mut self, other: &mut Leaf<K, V>) {
        other.move_tail(0, self);
    }
}

/// A block for a leaf of `cap` entries: from the arena at full capacity, else from the
/// global allocator; `dangling()` when `cap` is 0 or the layout is empty.
fn allocate<K, V>(cap: usize) -> NonNull<u8> {
    let layout = layout_of::<K, V>(cap);
    if cap == 0 || layout.size() == 0 {
        return dangling::<K, V>();
    }
    if cap == LEAF_LEN_MAX {
        return arena::alloc(layout);
    }
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) };
    NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}

impl<K, V> Drop for Leaf<K, V> {
    fn drop(&mut self) {
        let layout = layout_of::<K, V>(self.cap);
        // SAFETY: the first `len` keys and values are initialised and dropped once; the
        // block came from `allocate` with this capacity and layout.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.keys_ptr(),
                self.len,
            ));
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.vals_ptr(),
                self.len,
            ));
            if self.cap == 0 || layout.size() == 0 {
                return;
            }
            if self.cap == LEAF_LEN_MAX {
                arena::free(self.block, layout);
            } else {
                std::alloc::dealloc(self.block.as_ptr(), layout);
            }
        }
    }
}

/// The entries of a leaf by value, front to back; the block is freed with it.
pub(super) struct IntoIter<K, V> {
    leaf: Leaf<K, V>,
    /// Entries before this were moved out.
    next: usize,
}

impl<K, V> IntoIterator for Leaf<K, V> {
    type Item = (K, V);
    type IntoIter = IntoIter<K, V>;

    fn into_iter(self) -> IntoIter<K, V> {
        IntoIter {
            leaf: self,
            next: 0,
        }
    }
}

impl<K, V> Iterator for IntoIter<K, V> {
    type Item = (K, V);

    #[inline]
    fn next(&mut self) -> Option<(K, V)> {
        if self.next == self.leaf.len {
            return None;
        }
        // SAFETY: entry `next` is initialised and not moved out yet; `next` passes it.
        let entry = unsafe {
            (
                self.leaf.keys_ptr().add(self.next).read(),
                self.leaf.vals_ptr().add(self.next).read(),
            )
        };
        self.next += 1;
        Some(entry)
    }
}

impl<K, V> Drop for IntoIter<K, V> {
    fn drop(&mut self) {
        // The entries before `next` were moved out: drop only the rest, then the block
        // (with the leaf, whose length now covers nothing).
        let (next, len) = (self.next, self.leaf.len);
        self.leaf.len = 0;
        // SAFETY: entries `next..len` are initialised and not moved out; dropped once.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.leaf.keys_ptr().add(next),
                len - next,
            ));
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.leaf.vals_ptr().add(next),
                len - next,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn ids<V>(leaf: &Leaf<usize, V>) -> Vec<usize> {
        leaf.keys().to_vec()
    }

    #[test]
    fn a_growing_leaf_moves_to_full_capacity_and_stays_there() {
        let mut leaf = Leaf::empty();
        assert_eq!(leaf.capacity(), 0);
        for i in 0..LEAF_LEN_MAX {
            leaf.push(i as u64, i as u8);
        }
        assert_eq!(leaf.capacity(), LEAF_LEN_MAX);
        let expected: Vec<u64> = (0..LEAF_LEN_MAX as u64).collect();
        assert_eq!(leaf.keys(), &expected[..]);
        assert!(leaf.vals().iter().enumerate().all(|(i, &v)| v == i as u8));
        let at = leaf.keys_at();
        leaf.remove(0);
        leaf.insert(1, 99, 99);
        assert_eq!(leaf.keys_at(), at, "a full-capacity leaf moved");
        leaf.shrink_to_fit();
        assert_eq!(leaf.capacity(), LEAF_LEN_MAX, "a full leaf is not shrunk");
    }

    #[test]
    #[should_panic(expected = "at most LEAF_LEN_MAX")]
    fn inserting_past_the_leaf_size_panics() {
        let mut leaf = Leaf::new();
        for i in 0..=LEAF_LEN_MAX {
            leaf.push(i, i);
        }
    }

    /// Inserts, removes, moves and iteration keep the entries and their order as a `Vec`
    /// of pairs does, and every value is dropped exactly once, whether iterated out or not.
    #[test]
    fn operations_match_a_vec_and_drop_each_entry_once() {
        let drops = Rc::new(());
        {
            let mut leaf = Leaf::empty();
            let mut model: Vec<(usize, Rc<()>)> = Vec::new();
            for i in 0..LEAF_LEN_MAX {
                let idx = (i * 7) % (model.len() + 1);
                leaf.insert(idx, i, Rc::clone(&drops));
                model.insert(idx, (i, Rc::clone(&drops)));
            }
            let model_ids = |m: &[(usize, Rc<()>)]| m.iter().map(|e| e.0).collect::<Vec<_>>();
            assert_eq!(ids(&leaf), model_ids(&model));
            let removed = leaf.remove(1);
            assert_eq!(removed.0, model.remove(1).0);
            let mut tail = Leaf::new();
            leaf.move_tail(1, &mut tail);
            let model_tail = model.split_off(1);
            assert_eq!(
                (ids(&leaf), ids(&tail)),
                (model_ids(&model), model_ids(&model_tail))
            );
            leaf.append(&mut tail);
            model.extend(model_tail);
            assert!(tail.is_empty());
            assert_eq!(ids(&leaf), model_ids(&model));
            // Take two by value and drop the iterator with the rest still in it.
            let mut entries = leaf.into_iter();
            assert_eq!(entries.next().map(|e| e.0), Some(model[0].0));
            assert_eq!(entries.next().map(|e| e.0), Some(model[1].0));
            drop(entries);
            drop(model);
            drop(removed);
            drop(tail);
        }
        assert_eq!(
            Rc::strong_count(&drops),
            1,
            "a value leaked or was dropped twice"
        );
    }

    #[test]
    fn a_shrunk_root_holds_exactly_its_entries() {
        let mut leaf = Leaf::empty();
        for i in 0..3u32 {
            leaf.push(i, u64::from(i) * 10);
        }
        leaf.shrink_to_fit();
        assert_eq!((leaf.capacity(), leaf.keys()), (3, &[0, 1, 2][..]));
        leaf.fit();
        assert_eq!(
            (leaf.capacity(), leaf.vals()),
            (LEAF_LEN_MAX, &[0, 10, 20][..])
        );
        leaf.vals_mut()[1] = 11;
        assert_eq!(
            leaf.into_iter().collect::<Vec<_>>(),
            [(0, 0), (1, 11), (2, 20)]
        );
    }

    #[test]
    fn zero_sized_entries_allocate_nothing() {
        let mut leaf = Leaf::empty();
        for _ in 0..LEAF_LEN_MAX {
            leaf.push((), ());
        }
        assert_eq!(leaf.len(), LEAF_LEN_MAX);
        assert_eq!(leaf.into_iter().count(), LEAF_LEN_MAX);
    }

    /// Keys and values of different alignments share a block without overlapping.
    #[test]
    fn keys_and_values_of_other_alignments_do_not_overlap() {
        let mut leaf: Leaf<u8, u64> = Leaf::new();
        for i in 0..LEAF_LEN_MAX {
            leaf.push(i as u8, u64::MAX - i as u64);
        }
        assert!(leaf.keys().iter().enumerate().all(|(i, &k)| k == i as u8));
        assert!(leaf
            .vals()
            .iter()
            .enumerate()
            .all(|(i, &v)| v == u64::MAX - i as u64));
        assert_eq!(leaf.vals().as_ptr() as usize % align_of::<u64>(), 0);
    }
}
