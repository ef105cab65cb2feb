//! `RunBuffer`: the storage of one replay run (`merge.rs`), a vector of fixed capacity in a
//! mapping of its own (`huge_pages.rs`), whose consumed tail goes back to the system.
//!
//! Why not a `Vec`: runs are most of the memory a random-order replay touches for the first
//! time besides the leaves (1M operations: 88 MB of runs, 22K page faults of 4 KiB, each on
//! the thread that decodes the log). In a mapping that starts at a huge-page boundary every
//! whole 2 MiB is one fault. As a `Vec` the run's memory came from the allocator, which
//! gives large blocks their own mapping too, but at no particular alignment and without
//! the advice.
//!
//! A buffer asked for base pages (`PageSize::Base`: a replay's first run, usually its only
//! one) is a block of the global allocator instead, as a `Vec` would be: a long-lived
//! process that replays many small logs (the crash harness's checker opens every crash
//! state in-process) then reuses the allocator's warm memory, where a mapping of its own
//! each time cost fresh zeroed pages and a TLB shootdown per unmap (measured: `torture run`
//! 8% fewer cycles per second).
//!
//! A run is filled once (`push`), sorted in place, narrowed in place to its merge form
//! (`map_in_place`), then consumed from the back (`pop`); `release_unused` returns the
//! whole pages past the length, so a merge holds about one copy of the data, not two.
//!
//! Invariant: the first `len` items are initialised; `held_bytes` is the size of the block
//! or mapping still held (at least the bytes of `len` items; whole pages for a mapping).

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use super::huge_pages::{self, PageSize, PAGE_BYTES};

pub(crate) struct RunBuffer<T> {
    /// Start of the block or mapping (dangling while nothing is held).
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    held_bytes: usize,
    /// The alignment the block was allocated with (it outlives a `map_in_place`).
    block_align: usize,
    backing: Backing,
    _owns: PhantomData<T>,
}

/// Where a buffer's memory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    /// A block of the global allocator (`PageSize::Base`).
    Heap,
    /// A mapping of its own (`PageSize::Huge`).
    Mapping,
}

// SAFETY: a `RunBuffer` owns its items as a `Vec` does (runs are sorted on another thread).
unsafe impl<T: Send> Send for RunBuffer<T> {}
// SAFETY: as above; shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for RunBuffer<T> {}

/// Whole pages holding `n` items of `T`.
fn pages_for<T>(n: usize) -> usize {
    (n * size_of::<T>()).next_multiple_of(PAGE_BYTES)
}

impl<T> Default for RunBuffer<T> {
    fn default() -> RunBuffer<T> {
        RunBuffer::new()
    }
}

impl<T> RunBuffer<T> {
    /// An empty buffer with no capacity; maps nothing.
    pub(crate) fn new() -> RunBuffer<T> {
        RunBuffer {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
            held_bytes: 0,
            block_align: align_of::<T>(),
            backing: Backing::Heap,
            _owns: PhantomData,
        }
    }

    /// An empty buffer with room for `cap` items: a heap block for `PageSize::Base`, a
    /// mapping of its own advised for huge pages for `PageSize::Huge`. Aborts through
    /// `handle_alloc_error` if memory cannot be had, as a `Vec` would.
    pub(crate) fn with_capacity(cap: usize, pages: PageSize) -> RunBuffer<T> {
        assert!(
            align_of::<T>() <= PAGE_BYTES,
            "items aligned beyond a page are not supported"
        );
        if cap == 0 || size_of::<T>() == 0 {
            return RunBuffer {
                cap: if size_of::<T>() == 0 { usize::MAX } else { 0 },
                ..RunBuffer::new()
            };
        }
        let (ptr, held_bytes, backing) = match pages {
            PageSize::Base => {
                let layout = std::alloc::Layout::array::<T>(cap).expect("a run fits memory");
                // SAFETY: the layout has a non-zero size (sized items, `cap > 0`).
                let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })
                    .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
                (ptr, layout.size(), Backing::Heap)
            }
            PageSize::Huge => {
                let bytes = pages_for::<T>(cap);
                let ptr = huge_pages::map(bytes, PageSize::Huge).unwrap_or_else(|| {
                    let layout = std::alloc::Layout::from_size_align(bytes, PAGE_BYTES)
                        .expect("a mapping's size is a valid layout");
                    std::alloc::handle_alloc_error(layout)
                });
                (ptr, bytes, Backing::Mapping)
            }
        };
        RunBuffer {
            ptr: ptr.cast(),
            len: 0,
            cap,
            held_bytes,
            block_align: align_of::<T>(),
            backing,
            _owns: PhantomData,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Appends `item`; the buffer must have room (its capacity is fixed).
    pub(crate) fn push(&mut self, item: T) {
        assert!(self.len < self.cap, "a run buffer is full at {}", self.cap);
        // SAFETY: slot `len` is inside the mapping (below `cap`) and uninitialised.
        unsafe { self.ptr.as_ptr().add(self.len).write(item) };
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` was initialised and is now past the length: read out once.
        Some(unsafe { self.ptr.as_ptr().add(self.len).read() })
    }

    /// Removes consecutive items that `same(later, kept)` calls equal, keeping the first of
    /// each such stretch (as `Vec::dedup_by`).
    pub(crate) fn dedup_by(&mut self, mut same: impl FnMut(&mut T, &mut T) -> bool) {
        let len = self.len;
        if len < 2 {
            return;
        }
        // Should `same` panic, the items leak (the length is 0 meanwhile); nothing is
        // dropped twice.
        self.len = 0;
        let items = self.ptr.as_ptr();
        let mut kept = 1;
        for read in 1..len {
            // SAFETY: `kept <= read < len`; items `0..kept` and `read..len` are live and
            // distinct, so the two references never alias; a removed item is dropped once
            // and a kept one moved once (to a slot already vacated or its own).
            unsafe {
                let later = &mut *items.add(read);
                let last_kept = &mut *items.add(kept - 1);
                if same(later, last_kept) {
                    std::ptr::drop_in_place(later);
                } else {
                    if read != kept {
                        std::ptr::copy_nonoverlapping(items.add(read), items.add(kept), 1);
                    }
                    kept += 1;
                }
            }
        }
        self.len = kept;
    }

    /// Turns every item into a `U` in place, in order, keeping the mapping (`U` must be no
    /// larger than `T`: item `i`'s new form is written where only items up to `i` were).
    pub(crate) fn map_in_place<U>(self, mut f: impl FnMut(T) -> U) -> RunBuffer<U> {
        assert!(
            size_of::<U>() <= size_of::<T>() && align_of::<U>() <= PAGE_BYTES,
            "an item's new form must fit where the old one was"
        );
        assert!(
            align_of::<U>() <= self.block_align,
            "an item's new form must be aligned within the block"
        );
        let source = std::mem::ManuallyDrop::new(self);
        let (len, held_bytes) = (source.len, source.held_bytes);
        let from = source.ptr.as_ptr();
        // The new buffer owns the memory from here on; its length counts the items
        // converted, so a panic in `f` drops those, leaks the rest, and frees it.
        let mut mapped = RunBuffer::<U> {
            ptr: source.ptr.cast(),
            len: 0,
            cap: if size_of::<U>() == 0 {
                usize::MAX
            } else {
                held_bytes / size_of::<U>()
            },
            held_bytes,
            block_align: source.block_align,
            backing: source.backing,
            _owns: PhantomData,
        };
        if size_of::<T>() == 0 {
            mapped.ptr = NonNull::dangling();
        }
        let to = mapped.ptr.as_ptr();
        for i in 0..len {
            // SAFETY: item `i` of `T` is live and read once. `U` item `i` occupies bytes
            // `i * size_of::<U>()..(i + 1) * size_of::<U>()`, at or below the bytes of `T`
            // item `i`, which was just read: it overwrites only items already converted or
            // read. The block is aligned for `U` (asserted above).
            unsafe {
                let item = from.add(i).read();
                to.add(i).write(f(item));
            }
            mapped.len = i + 1;
        }
        mapped
    }

    /// Returns the memory past the last item: a mapping's whole pages to the system, a
    /// heap block's tail to the allocator (a shrinking `realloc`, as `Vec::shrink_to_fit`).
    pub(crate) fn release_unused(&mut self) {
        let keep_bytes = match self.backing {
            Backing::Mapping => pages_for::<T>(self.len),
            Backing::Heap => self.len * size_of::<T>(),
        };
        if keep_bytes >= self.held_bytes {
            return;
        }
        if keep_bytes == 0 {
            // SAFETY: no item is live; the memory is this buffer's and is not used again.
            unsafe { self.free_all() };
            self.ptr = NonNull::dangling();
        } else {
            match self.backing {
                // SAFETY: the range is page-aligned, inside this buffer's mapping, still
                // mapped, and past every live item.
                Backing::Mapping => unsafe {
                    let at = self.ptr.as_ptr().cast::<u8>().add(keep_bytes);
                    huge_pages::unmap(NonNull::new_unchecked(at), self.held_bytes - keep_bytes);
                },
                Backing::Heap => {
                    let layout = self.held_layout();
                    // SAFETY: the block was allocated with `layout`, and `keep_bytes` is
                    // non-zero; the live items move with the block if it moves.
                    let moved = unsafe {
                        std::alloc::realloc(self.ptr.as_ptr().cast(), layout, keep_bytes)
                    };
                    self.ptr = NonNull::new(moved)
                        .unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
                        .cast();
                }
            }
        }
        self.held_bytes = keep_bytes;
        self.cap = self.cap.min(keep_bytes / size_of::<T>().max(1));
    }

    /// The layout of the heap block held.
    fn held_layout(&self) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(self.held_bytes, self.block_align)
            .expect("the block was allocated with this layout")
    }

    /// Frees the memory held, without dropping any item.
    ///
    /// # Safety
    /// Nothing refers into the memory afterwards, and it is not freed again.
    unsafe fn free_all(&mut self) {
        if self.held_bytes == 0 {
            return;
        }
        match self.backing {
            // SAFETY (caller): the mapping is this buffer's and unused.
            Backing::Mapping => unsafe { huge_pages::unmap(self.ptr.cast(), self.held_bytes) },
            // SAFETY (caller): the block was allocated with this layout and is unused.
            Backing::Heap => unsafe {
                std::alloc::dealloc(self.ptr.as_ptr().cast(), self.held_layout())
            },
        }
        self.held_bytes = 0;
    }
}

impl<T> Drop for RunBuffer<T> {
    fn drop(&mut self) {
        // SAFETY: the first `len` items are initialised and dropped once; the mapping is
        // this buffer's and nothing refers into it afterwards.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
            self.free_all();
        }
    }
}

impl<T> Deref for RunBuffer<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` items are initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for RunBuffer<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, with `&mut self` unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for RunBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunBuffer")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .field("held_bytes", &self.held_bytes)
            .field("backing", &self.backing)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn push_pop_and_release_keep_the_items() {
        let n = 3 * PAGE_BYTES / size_of::<u64>() + 5;
        let mut buffer = RunBuffer::with_capacity(n, PageSize::Huge);
        for i in 0..n as u64 {
            buffer.push(i);
        }
        assert_eq!(buffer.len(), n);
        assert!(buffer.iter().enumerate().all(|(i, &v)| v == i as u64));
        for i in (PAGE_BYTES / size_of::<u64>()..n).rev() {
            assert_eq!(buffer.pop(), Some(i as u64));
        }
        buffer.release_unused();
        assert_eq!(buffer.held_bytes, PAGE_BYTES, "three pages went back");
        assert_eq!(buffer.last(), Some(&(PAGE_BYTES as u64 / 8 - 1)));
        while buffer.pop().is_some() {}
        buffer.release_unused();
        assert_eq!(buffer.held_bytes, 0);
    }

    #[test]
    #[should_panic(expected = "full")]
    fn pushing_past_the_capacity_panics() {
        let mut buffer = RunBuffer::with_capacity(2, PageSize::Huge);
        buffer.push(1u8);
        buffer.push(2u8);
        buffer.push(3u8);
    }

    /// `dedup_by` keeps what `Vec::dedup_by` keeps, and drops each removed item once.
    #[test]
    fn dedup_matches_a_vec_and_drops_once() {
        let drops = Rc::new(());
        let keys = [1, 1, 2, 3, 3, 3, 1, 4, 4];
        {
            let mut buffer = RunBuffer::with_capacity(keys.len(), PageSize::Huge);
            let mut model = Vec::new();
            for (i, &k) in keys.iter().enumerate() {
                buffer.push((k, i, Rc::clone(&drops)));
                model.push((k, i, Rc::clone(&drops)));
            }
            buffer.dedup_by(|later, kept| later.0 == kept.0);
            model.dedup_by(|later, kept| later.0 == kept.0);
            let pairs = |items: &[(i32, usize, Rc<()>)]| {
                items.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>()
            };
            assert_eq!(pairs(&buffer), pairs(&model));
            assert_eq!(Rc::strong_count(&drops), 1 + 2 * model.len());
        }
        assert_eq!(
            Rc::strong_count(&drops),
            1,
            "an item leaked or was dropped twice"
        );
    }

    /// Narrowing in place converts every item in order and keeps the mapping.
    #[test]
    fn map_in_place_narrows_every_item_in_order() {
        let n = 2 * PAGE_BYTES / 16 + 3;
        let mut buffer = RunBuffer::with_capacity(n, PageSize::Huge);
        for i in 0..n as u64 {
            buffer.push((i, u64::MAX - i));
        }
        let narrowed: RunBuffer<u32> = buffer.map_in_place(|(i, _)| i as u32 * 2);
        assert_eq!(narrowed.len(), n);
        assert!(narrowed.iter().enumerate().all(|(i, &v)| v == i as u32 * 2));
        assert!(narrowed.capacity() >= n);
    }

    #[test]
    fn an_empty_buffer_maps_nothing() {
        let mut buffer: RunBuffer<u64> = RunBuffer::new();
        assert_eq!((buffer.capacity(), buffer.pop()), (0, None));
        buffer.release_unused();
        let zero_sized: RunBuffer<()> = RunBuffer::with_capacity(10, PageSize::Huge);
        assert_eq!(zero_sized.held_bytes, 0);
    }
}
