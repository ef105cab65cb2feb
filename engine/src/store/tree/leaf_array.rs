//! `LeafArray`: a leaf's keys or values, a vector of at most `LEAF_LEN_MAX` items whose
//! storage is an arena block once it has full capacity (`arena.rs`).
//!
//! Capacity is either below `LEAF_LEN_MAX`, for a root leaf that grows as a `Vec` does
//! (a small namespace's tree: most would never fill a leaf), in a block of the global
//! allocator; or exactly `LEAF_LEN_MAX`, in an arena block, which never moves while the
//! leaf lives (`Internal::leaf_keys_at` relies on it). Pushing past `LEAF_LEN_MAX` is a
//! bug (leaves split first) and panics.

use std::alloc::Layout;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::{arena, LEAF_LEN_MAX};

/// Capacity of a growing root leaf's first block.
const GROWING_CAP_MIN: usize = 4;
const _: () = assert!(GROWING_CAP_MIN <= LEAF_LEN_MAX);

pub(super) struct LeafArray<T> {
    ptr: NonNull<T>,
    len: usize,
    /// 0 (nothing allocated), below `LEAF_LEN_MAX` (global allocator), or `LEAF_LEN_MAX`
    /// (arena). Always `LEAF_LEN_MAX` for zero-sized items, which allocate nothing.
    cap: usize,
    _owns: PhantomData<T>,
}

// SAFETY: a `LeafArray` owns its items as a `Vec` does.
unsafe impl<T: Send> Send for LeafArray<T> {}
// SAFETY: as above; shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for LeafArray<T> {}

fn layout_of<T>(cap: usize) -> Layout {
    Layout::array::<T>(cap).expect("a leaf's arrays are small")
}

/// A block for `cap` items: from the arena at full capacity, else from the global allocator.
fn allocate<T>(cap: usize) -> NonNull<T> {
    debug_assert!(cap > 0 && cap <= LEAF_LEN_MAX && size_of::<T>() > 0);
    let layout = layout_of::<T>(cap);
    if cap == LEAF_LEN_MAX {
        return arena::alloc(layout).cast();
    }
    // SAFETY: `layout` has a non-zero size (sized items, `cap > 0`).
    let ptr = unsafe { std::alloc::alloc(layout) };
    NonNull::new(ptr)
        .unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
        .cast()
}

/// # Safety
/// `ptr` came from `allocate::<T>(cap)` and is not used afterwards.
unsafe fn deallocate<T>(ptr: NonNull<T>, cap: usize) {
    let layout = layout_of::<T>(cap);
    if cap == LEAF_LEN_MAX {
        // SAFETY (caller): an arena block of this layout.
        unsafe { arena::free(ptr.cast(), layout) };
    } else {
        // SAFETY (caller): a global-allocator block of this layout.
        unsafe { std::alloc::dealloc(ptr.as_ptr().cast(), layout) };
    }
}

impl<T> LeafArray<T> {
    /// An empty array that allocates nothing until its first item.
    pub(super) fn new() -> LeafArray<T> {
        LeafArray {
            ptr: NonNull::dangling(),
            len: 0,
            cap: if size_of::<T>() == 0 { LEAF_LEN_MAX } else { 0 },
            _owns: PhantomData,
        }
    }

    /// An empty array with room for `LEAF_LEN_MAX` items (an arena block).
    pub(super) fn full_capacity() -> LeafArray<T> {
        let mut array = LeafArray::new();
        array.reserve_to(LEAF_LEN_MAX);
        array
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    /// Moves the items to a block of `cap` items (at least `len`).
    fn reserve_to(&mut self, cap: usize) {
        assert!(
            self.len <= cap && cap <= LEAF_LEN_MAX,
            "a leaf holds at most LEAF_LEN_MAX"
        );
        if cap == self.cap || size_of::<T>() == 0 {
            return;
        }
        let new_ptr = if cap == 0 {
            NonNull::dangling()
        } else {
            allocate::<T>(cap)
        };
        if self.cap > 0 {
            // SAFETY: the first `len` items are initialised, both blocks hold at least
            // `len` items, and the blocks are distinct; the old block is freed once and its
            // items are now only in the new one.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), new_ptr.as_ptr(), self.len);
                deallocate(self.ptr, self.cap);
            }
        }
        self.ptr = new_ptr;
        self.cap = cap;
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

    /// Room for one more item: a growing root doubles; a full-capacity array is full.
    fn grow_for_one(&mut self) {
        if self.len == self.cap {
            let cap = (self.cap * 2).clamp(GROWING_CAP_MIN, LEAF_LEN_MAX);
            self.reserve_to(cap.max(self.len + 1));
        }
    }

    pub(super) fn push(&mut self, item: T) {
        self.insert(self.len, item);
    }

    /// Inserts `item` at `idx`, shifting the items after it right.
    pub(super) fn insert(&mut self, idx: usize, item: T) {
        assert!(
            idx <= self.len,
            "insert at {idx} past the length {}",
            self.len
        );
        self.grow_for_one();
        // SAFETY: `len < cap` after growing; items `idx..len` move one slot right within
        // the block, and slot `idx` is then written without dropping its stale copy.
        unsafe {
            let at = self.ptr.as_ptr().add(idx);
            std::ptr::copy(at, at.add(1), self.len - idx);
            at.write(item);
        }
        self.len += 1;
    }

    /// Removes and returns the item at `idx`, shifting the items after it left.
    pub(super) fn remove(&mut self, idx: usize) -> T {
        assert!(
            idx < self.len,
            "remove at {idx} past the length {}",
            self.len
        );
        // SAFETY: slot `idx` is initialised and read out once; the items after it move
        // one slot left within the block, and the length drops so the last slot's stale
        // copy is never read.
        unsafe {
            let at = self.ptr.as_ptr().add(idx);
            let item = at.read();
            std::ptr::copy(at.add(1), at, self.len - idx - 1);
            self.len -= 1;
            item
        }
    }

    /// Moves the items from `at` on to the end of `to`, keeping their order.
    pub(super) fn move_tail(&mut self, at: usize, to: &mut LeafArray<T>) {
        assert!(at <= self.len);
        let n_moved = self.len - at;
        to.reserve_to(to.cap.max((to.len + n_moved).min(LEAF_LEN_MAX)));
        assert!(
            to.len + n_moved <= to.cap,
            "a leaf holds at most LEAF_LEN_MAX"
        );
        // SAFETY: items `at..len` are initialised and `to` has room for them; the arrays
        // are distinct (`&mut` both); the source's length drops, so the moved items are
        // owned by `to` alone.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(at),
                to.ptr.as_ptr().add(to.len),
                n_moved,
            );
        }
        self.len = at;
        to.len += n_moved;
    }

    /// Moves every item of `other` to the end of this array.
    pub(super) fn append(&mut self, other: &mut LeafArray<T>) {
        other.move_tail(0, self);
    }
}

impl<T> Drop for LeafArray<T> {
    fn drop(&mut self) {
        // SAFETY: the first `len` items are initialised and dropped once; the block came
        // from `allocate` with this capacity.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
            if self.cap > 0 && size_of::<T>() > 0 {
                deallocate(self.ptr, self.cap);
            }
        }
    }
}

impl<T> Deref for LeafArray<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` items are initialised (a dangling pointer is fine for
        // an empty slice).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for LeafArray<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, with `&mut self` unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<'a, T> IntoIterator for &'a LeafArray<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> std::slice::Iter<'a, T> {
        self.iter()
    }
}

/// The items of a `LeafArray` by value, front to back; the block is freed with it.
pub(super) struct IntoIter<T> {
    array: LeafArray<T>,
    /// Items before this were moved out.
    next: usize,
}

impl<T> IntoIterator for LeafArray<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;

    fn into_iter(self) -> IntoIter<T> {
        IntoIter {
            array: self,
            next: 0,
        }
    }
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.next == self.array.len {
            return None;
        }
        // SAFETY: item `next` is initialised and not moved out yet; `next` passes it.
        let item = unsafe { self.array.ptr.as_ptr().add(self.next).read() };
        self.next += 1;
        Some(item)
    }
}

impl<T> Drop for IntoIter<T> {
    fn drop(&mut self) {
        // The items before `next` were moved out: drop only the rest, then the block
        // (with the array, whose length now covers nothing).
        let (next, len) = (self.next, self.array.len);
        self.array.len = 0;
        // SAFETY: items `next..len` are initialised and not moved out; dropped once.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.array.ptr.as_ptr().add(next),
                len - next,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// Items that count their drops, to see that every item is dropped exactly once.
    fn counted(n: usize, drops: &Rc<()>) -> Vec<Rc<()>> {
        (0..n).map(|_| Rc::clone(drops)).collect()
    }

    #[test]
    fn a_growing_array_moves_to_full_capacity_and_stays_there() {
        let mut array = LeafArray::new();
        assert_eq!(array.capacity(), 0);
        for i in 0..LEAF_LEN_MAX {
            array.push(i as u64);
        }
        assert_eq!(array.capacity(), LEAF_LEN_MAX);
        assert_eq!(
            &array[..],
            &(0..LEAF_LEN_MAX as u64).collect::<Vec<_>>()[..]
        );
        let at = array.as_ptr();
        array.remove(0);
        array.insert(1, 99);
        assert_eq!(array.as_ptr(), at, "a full-capacity array moved");
        array.shrink_to_fit();
        assert_eq!(array.capacity(), LEAF_LEN_MAX, "a full array is not shrunk");
    }

    #[test]
    #[should_panic(expected = "at most LEAF_LEN_MAX")]
    fn pushing_past_the_leaf_size_panics() {
        let mut array = LeafArray::full_capacity();
        for i in 0..=LEAF_LEN_MAX {
            array.push(i);
        }
    }

    /// Inserts, removes, moves and iteration keep the items and their order as a `Vec`
    /// does, and every item is dropped exactly once, whether iterated out or not.
    #[test]
    fn operations_match_a_vec_and_drop_each_item_once() {
        let drops = Rc::new(());
        {
            let mut array = LeafArray::new();
            let mut model = Vec::new();
            for (i, item) in counted(LEAF_LEN_MAX, &drops).into_iter().enumerate() {
                let idx = (i * 7) % (model.len() + 1);
                array.insert(idx, (i, item.clone()));
                model.insert(idx, (i, item));
            }
            let ids = |items: &[(usize, Rc<()>)]| items.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(ids(&array), ids(&model));
            let removed = array.remove(1);
            assert_eq!(removed.0, model.remove(1).0);
            let mut tail = LeafArray::full_capacity();
            array.move_tail(1, &mut tail);
            let model_tail = model.split_off(1);
            assert_eq!((ids(&array), ids(&tail)), (ids(&model), ids(&model_tail)));
            array.append(&mut tail);
            model.extend(model_tail);
            assert!(tail.is_empty());
            assert_eq!(ids(&array), ids(&model));
            // Take two by value and drop the iterator with the rest still in it.
            let mut items = array.into_iter();
            assert_eq!(items.next().map(|x| x.0), Some(model[0].0));
            assert_eq!(items.next().map(|x| x.0), Some(model[1].0));
            drop(items);
            drop(model);
            drop(removed);
            drop(tail);
        }
        assert_eq!(
            Rc::strong_count(&drops),
            1,
            "an item leaked or was dropped twice"
        );
    }

    #[test]
    fn a_shrunk_root_holds_exactly_its_items() {
        let mut array = LeafArray::new();
        for i in 0..3u32 {
            array.push(i);
        }
        array.shrink_to_fit();
        assert_eq!((array.capacity(), &array[..]), (3, &[0, 1, 2][..]));
        array.fit();
        assert_eq!(
            (array.capacity(), &array[..]),
            (LEAF_LEN_MAX, &[0, 1, 2][..])
        );
    }

    #[test]
    fn zero_sized_items_allocate_nothing() {
        let mut array = LeafArray::new();
        for _ in 0..LEAF_LEN_MAX {
            array.push(());
        }
        assert_eq!(array.len(), LEAF_LEN_MAX);
        assert_eq!(array.into_iter().count(), LEAF_LEN_MAX);
    }
}
