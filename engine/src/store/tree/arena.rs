//! The block arena: fixed-size blocks for full leaves, carved from 2 MiB chunks that the
//! kernel is asked to back with transparent huge pages.
//!
//! Why: a store of 1M entries is ~15.6K full leaves, 80 MiB, and with the allocator's 4 KiB
//! pages every one of its 20K pages is a page fault on first touch (about a fifth of a
//! fresh-process open of 1M random keys on the 2-core VM) and a TLB miss on a random read
//! (most of a `get` is dependent misses already). Measured with the allocator told to use
//! huge pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, which only the host process can
//! set): open 0.41 s -> 0.35 s, reading every key 0.85 s -> 0.62 s, peak RSS +2.3 MiB.
//! The arena gets that for the leaves without asking the host for anything: `MADV_HUGEPAGE`
//! on memory the engine mapped itself (`store/huge_pages.rs`). Where the kernel has
//! transparent huge pages off, the advice does nothing and chunks are ordinary pages.
//!
//! Layout: a chunk is `CHUNK_BYTES`, aligned to `CHUNK_BYTES` (so a block finds its chunk by
//! masking its address), and starts with its `ChunkHeader`; the blocks follow. Each chunk
//! serves one block layout (a size class). A chunk keeps its own free list (freed blocks,
//! linked through their first word) and a bump offset (blocks never handed out yet).
//!
//! Invariants:
//! - a chunk is in its class's `partial` list exactly when it has a block to hand out;
//! - `live` counts the chunk's blocks handed out and not freed; a chunk whose `live` falls
//!   to 0 is unmapped, except up to `SPARES_MAX` per class kept as spares, so that a leaf
//!   freed and allocated again at a chunk boundary, or a process that opens and drops small
//!   stores on two threads (the crash harness's checker), does not map and zero a chunk
//!   each time;
//! - a block is freed with the layout it was allocated with (asserted through the chunk's
//!   class);
//! - a chunk is advised for huge pages only when mapped while its class already holds
//!   `BASE_PAGE_CHUNKS` chunks' worth of live blocks; before that it is base pages
//!   (`PageSize::Base`: a process with small stores touches a few pages of it, not a
//!   zeroed 2 MiB).

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Mutex;

use crate::store::huge_pages::{self, PageSize};

/// Empty chunks a class keeps mapped.
const SPARES_MAX: usize = 2;

/// Chunks' worth of live blocks a class holds before its new chunks are advised for huge
/// pages. Below it a store's leaves (up to ~100K entries) fit what the TLB covers with
/// base pages anyway (1.5K entries, 6 MiB), and a huge page, resident whole from its first
/// touch, is a large share of the store: with 1 here, a 100K random-key replay peaked at
/// 1.37x its store (1.11x before the arena), against the 1.3x target.
const BASE_PAGE_CHUNKS: usize = 4;

/// Bytes of a chunk, and its alignment: one transparent huge page.
const CHUNK_BYTES: usize = huge_pages::HUGE_PAGE_BYTES;

/// Largest block alignment served (a block must not straddle its chunk's alignment).
const BLOCK_ALIGN_MAX: usize = 4096;

/// The start of every chunk.
struct ChunkHeader {
    /// Index of the chunk's class in `Arena::classes`.
    class: usize,
    /// Blocks handed out and not freed.
    live: usize,
    /// Freed blocks, each holding the address of the next (null ends the list).
    free: *mut u8,
    /// Offset of the first block never handed out (`CHUNK_BYTES` rounded down to whole
    /// blocks when all have been).
    bump_offset: usize,
    /// Whether the chunk is in its class's `partial` list.
    listed: bool,
}

/// Chunks serving one block layout.
struct Class {
    layout: Layout,
    /// Bytes per block: the layout's size rounded up to hold a free-list link and to keep
    /// every block aligned.
    block_bytes: usize,
    /// Offset of the first block (after the header, aligned).
    first_offset: usize,
    /// Chunks with a block to hand out; allocation takes from the last.
    partial: Vec<NonNull<ChunkHeader>>,
    /// Empty chunks kept mapped, at most `SPARES_MAX` (see the module's invariants).
    spares: Vec<NonNull<ChunkHeader>>,
    /// Chunks of this class mapped now, the spares included.
    mapped: usize,
    /// Blocks of this class handed out and not freed, in all chunks.
    live_blocks: usize,
}

struct Arena {
    classes: Vec<Class>,
}

// SAFETY: the chunk pointers are only dereferenced under `ARENA`'s lock; the memory they
// point to belongs to the arena, not to any thread.
unsafe impl Send for Arena {}

static ARENA: Mutex<Arena> = Mutex::new(Arena {
    classes: Vec::new(),
});

fn arena() -> std::sync::MutexGuard<'static, Arena> {
    // Every update under the lock is completed before anything that can panic, so a
    // poisoned lock still guards consistent lists.
    ARENA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A block of `layout` (non-zero size, alignment at most 4 KiB) from the arena. Aborts
/// through `handle_alloc_error` if no chunk can be mapped, as the global allocator does.
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    assert!(
        layout.size() > 0 && layout.align() <= BLOCK_ALIGN_MAX,
        "the arena serves sized blocks aligned to at most {BLOCK_ALIGN_MAX} bytes"
    );
    let mut arena = arena();
    let class_idx = arena.class_of(layout);
    let class = &mut arena.classes[class_idx];
    let chunk = match class.partial.last() {
        Some(&chunk) => chunk,
        None => {
            let chunk = match class.spares.pop() {
                Some(chunk) => chunk,
                None => {
                    // Huge pages only once the leaves fill `BASE_PAGE_CHUNKS` chunks (see
                    // there).
                    let blocks_per_chunk = (CHUNK_BYTES - class.first_offset) / class.block_bytes;
                    let pages = if class.live_blocks >= BASE_PAGE_CHUNKS * blocks_per_chunk {
                        PageSize::Huge
                    } else {
                        PageSize::Base
                    };
                    let chunk = map_chunk(class_idx, class.first_offset, pages)
                        .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
                    class.mapped += 1;
                    chunk
                }
            };
            class.partial.push(chunk);
            // SAFETY: a mapped chunk starts with its initialised header; the lock is held.
            unsafe { (*chunk.as_ptr()).listed = true };
            chunk
        }
    };
    // SAFETY: `chunk` is a mapped chunk of this class (it was in `partial`); the lock is
    // held, so nothing else reads or writes its header or free list.
    unsafe {
        let header = &mut *chunk.as_ptr();
        let base = chunk.as_ptr().cast::<u8>();
        let block = if header.free.is_null() {
            let block = base.add(header.bump_offset);
            header.bump_offset += class.block_bytes;
            block
        } else {
            let block = header.free;
            header.free = block.cast::<*mut u8>().read();
            block
        };
        header.live += 1;
        class.live_blocks += 1;
        if header.free.is_null() && header.bump_offset + class.block_bytes > CHUNK_BYTES {
            class.partial.pop();
            header.listed = false;
        }
        NonNull::new_unchecked(block)
    }
}

/// Returns a block to the arena.
///
/// # Safety
/// `block` came from `alloc(layout)` with this `layout` and is not used afterwards.
pub(crate) unsafe fn free(block: NonNull<u8>, layout: Layout) {
    let mut arena = arena();
    let chunk_at = block.as_ptr() as usize & !(CHUNK_BYTES - 1);
    let chunk = NonNull::new(chunk_at as *mut ChunkHeader).expect("a block is inside a chunk");
    // SAFETY (caller): the block is live in a chunk this arena mapped, so the chunk's
    // header is initialised; the lock is held.
    let header = unsafe { &mut *chunk.as_ptr() };
    let class = &mut arena.classes[header.class];
    assert_eq!(class.layout, layout, "a block freed with another layout");
    assert!(header.live > 0, "a block freed twice");
    // SAFETY: the block is at least a pointer wide and aligned for one (`block_bytes`).
    unsafe { block.as_ptr().cast::<*mut u8>().write(header.free) };
    header.free = block.as_ptr();
    header.live -= 1;
    class.live_blocks -= 1;
    if header.live == 0 {
        if header.listed {
            let at = class
                .partial
                .iter()
                .rposition(|&c| c == chunk)
                .expect("a listed chunk is in the list");
            class.partial.swap_remove(at);
        }
        // Back to a fresh chunk: its free list is forgotten with its blocks.
        header.free = std::ptr::null_mut();
        header.bump_offset = class.first_offset;
        header.listed = false;
        if class.spares.len() < SPARES_MAX {
            class.spares.push(chunk);
        } else {
            // SAFETY: the chunk has no live block and is in no list.
            unsafe { unmap_chunk(chunk) };
            class.mapped -= 1;
        }
    } else if !header.listed {
        class.partial.push(chunk);
        header.listed = true;
    }
}

impl Arena {
    /// Index of the class serving `layout`, added if new.
    fn class_of(&mut self, layout: Layout) -> usize {
        if let Some(idx) = self.classes.iter().position(|c| c.layout == layout) {
            return idx;
        }
        let link = std::mem::size_of::<*mut u8>();
        let align = layout.align().max(std::mem::align_of::<*mut u8>());
        let block_bytes = layout.size().max(link).next_multiple_of(align);
        let first_offset = std::mem::size_of::<ChunkHeader>().next_multiple_of(align);
        assert!(
            first_offset + block_bytes <= CHUNK_BYTES,
            "a block of {} bytes does not fit a chunk",
            layout.size()
        );
        self.classes.push(Class {
            layout,
            block_bytes,
            first_offset,
            partial: Vec::new(),
            spares: Vec::new(),
            mapped: 0,
            live_blocks: 0,
        });
        self.classes.len() - 1
    }
}

/// Maps a chunk aligned to its size, backed as `pages` asks, and writes its header.
fn map_chunk(class: usize, first_offset: usize, pages: PageSize) -> Option<NonNull<ChunkHeader>> {
    let header = huge_pages::map(CHUNK_BYTES, pages)?.cast::<ChunkHeader>();
    // SAFETY: the chunk is mapped, writable, and aligned far beyond the header's needs.
    unsafe {
        header.as_ptr().write(ChunkHeader {
            class,
            live: 0,
            free: std::ptr::null_mut(),
            bump_offset: first_offset,
            listed: false,
        });
    }
    Some(header)
}

/// # Safety
/// `chunk` was mapped by `map_chunk`, has no live block, and is in no list.
unsafe fn unmap_chunk(chunk: NonNull<ChunkHeader>) {
    // SAFETY (caller): the whole chunk is this arena's mapping and nothing points into it.
    unsafe { huge_pages::unmap(chunk.cast(), CHUNK_BYTES) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunk holding `block`.
    fn chunk_of(block: NonNull<u8>) -> usize {
        block.as_ptr() as usize & !(CHUNK_BYTES - 1)
    }

    /// Blocks are distinct, aligned, writable, and freed ones are handed out again before
    /// new ones; a chunk's blocks fill it before another chunk is mapped.
    #[test]
    fn blocks_are_distinct_aligned_and_reused() {
        // An odd size no other test uses, so this class is this test's alone.
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let per_chunk = {
            let probe = alloc(layout);
            let mut arena = arena();
            let class_idx = arena.class_of(layout);
            let class = &arena.classes[class_idx];
            let n = (CHUNK_BYTES - class.first_offset) / class.block_bytes;
            drop(arena);
            unsafe { free(probe, layout) };
            n
        };
        let blocks: Vec<NonNull<u8>> = (0..per_chunk + 3).map(|_| alloc(layout)).collect();
        let mut addresses: Vec<usize> = blocks.iter().map(|b| b.as_ptr() as usize).collect();
        for (i, block) in blocks.iter().enumerate() {
            assert_eq!(block.as_ptr() as usize % 8, 0);
            unsafe { block.as_ptr().write_bytes(i as u8, layout.size()) };
        }
        for (i, block) in blocks.iter().enumerate() {
            let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), layout.size()) };
            assert!(
                bytes.iter().all(|&b| b == i as u8),
                "block {i} was overwritten"
            );
        }
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), blocks.len(), "a block handed out twice");
        // The first chunk filled up before the second was used.
        let first_chunk = chunk_of(blocks[0]);
        assert!(blocks[..per_chunk]
            .iter()
            .all(|&b| chunk_of(b) == first_chunk));
        assert!(blocks[per_chunk..]
            .iter()
            .all(|&b| chunk_of(b) != first_chunk));
        // A block freed in the full first chunk is the next one handed out there.
        let freed = blocks[5];
        unsafe { free(freed, layout) };
        let again = alloc(layout);
        assert_eq!(again, freed);
        for block in blocks {
            unsafe { free(block, layout) };
        }
    }

    /// Chunks whose blocks are all freed are kept as spares up to `SPARES_MAX`, and any
    /// more are unmapped (memory goes back to the system when a store is dropped).
    #[test]
    fn emptied_chunks_beyond_the_spares_are_unmapped() {
        let layout = Layout::from_size_align(1000 * 1024, 16).unwrap();
        // Two blocks per chunk at most: seven blocks need four chunks.
        let blocks: Vec<NonNull<u8>> = (0..7).map(|_| alloc(layout)).collect();
        let mut chunks: Vec<usize> = blocks.iter().map(|&b| chunk_of(b)).collect();
        chunks.dedup();
        assert_eq!(chunks.len(), 4);
        for block in blocks {
            unsafe { free(block, layout) };
        }
        let mut arena = arena();
        let class_idx = arena.class_of(layout);
        let class = &arena.classes[class_idx];
        assert!(class.partial.is_empty(), "an empty chunk is still listed");
        assert_eq!(class.spares.len(), SPARES_MAX);
        assert!(class
            .spares
            .iter()
            .all(|spare| chunks.contains(&(spare.as_ptr() as usize))));
        assert_eq!(
            class.mapped, SPARES_MAX,
            "emptied chunks beyond the spares are mapped"
        );
        assert_eq!(class.live_blocks, 0);
    }

    #[test]
    #[should_panic(expected = "another layout")]
    fn a_block_freed_with_another_layout_is_refused() {
        let layout = Layout::from_size_align(1008, 8).unwrap();
        let block = alloc(layout);
        unsafe { free(block, Layout::from_size_align(1016, 8).unwrap()) };
    }
}
