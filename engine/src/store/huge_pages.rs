//! Anonymous mappings the store makes itself and may advise for transparent huge pages:
//! the leaf arena's chunks (`tree/arena.rs`).
//!
//! Only long-lived memory that is read at random gets the advice (the leaves: fewer TLB
//! misses on every read and insert). Replay's runs, written once and read once in order,
//! stay on the allocator's base pages: in mappings of their own advised for huge pages
//! (measured, then dropped) a 1M random-key open went 0.40 s -> 0.35 s while freed memory
//! was still warm, but 0.46 s -> 0.54 s on this VM once the host had taken freed huge
//! pages back (a huge page then costs ~1.4 ms to zero against ~0.15 ms warm; the VM
//! reports free 2 MiB blocks to the host within seconds).
//!
//! A mapping starts at a huge-page boundary, so every whole 2 MiB of it can be one huge
//! page: one fault and one TLB entry instead of 512. `MADV_HUGEPAGE` is advice: where the
//! kernel has transparent huge pages off (or none free), the mapping is ordinary pages
//! and nothing else changes. Parts of a mapping may be unmapped on their own (`unmap`
//! takes any page-aligned range inside one).

use std::ptr::NonNull;

/// Bytes of an x86-64 transparent huge page; mappings start at a multiple of it.
pub(crate) const HUGE_PAGE_BYTES: usize = 2 << 20;

/// Bytes of a base page: lengths passed to `unmap` are multiples of it.
pub(crate) const PAGE_BYTES: usize = 4096;

/// How memory asks to be backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageSize {
    /// Base pages: each 4 KiB is faulted in (and zeroed) when first touched, so memory
    /// costs only what is used. For memory that may stay mostly unused: a small store
    /// touches a few pages of what one huge page would zero whole (2 MiB).
    Base,
    /// Advised for transparent huge pages (`MADV_HUGEPAGE`): each whole 2 MiB is one
    /// fault and one TLB entry once touched. For memory the data has grown into.
    Huge,
}

/// Maps `bytes` (a non-zero multiple of `PAGE_BYTES`) of zeroed, writable memory starting
/// at a huge-page boundary, backed as `pages` asks. `None` if the system refuses.
pub(crate) fn map(bytes: usize, pages: PageSize) -> Option<NonNull<u8>> {
    assert!(
        bytes > 0 && bytes.is_multiple_of(PAGE_BYTES),
        "a mapping is whole pages"
    );
    // Over-map by a huge page, then trim both ends to the aligned range.
    let map_bytes = bytes.checked_add(HUGE_PAGE_BYTES)?;
    // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
    // existing memory.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return None;
    }
    let start = mapped as usize;
    let aligned = start.next_multiple_of(HUGE_PAGE_BYTES);
    let head_bytes = aligned - start;
    let tail_bytes = map_bytes - head_bytes - bytes;
    // SAFETY: both trimmed ranges are parts of the mapping above, outside the range kept;
    // the advice only changes how the kernel backs the range, never its contents.
    unsafe {
        if head_bytes > 0 {
            libc::munmap(start as *mut libc::c_void, head_bytes);
        }
        if tail_bytes > 0 {
            libc::munmap((aligned + bytes) as *mut libc::c_void, tail_bytes);
        }
        if pages == PageSize::Huge {
            // Best effort: without transparent huge pages the range is ordinary pages.
            libc::madvise(aligned as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
        }
    }
    NonNull::new(aligned as *mut u8)
}

/// Unmaps `bytes` (a multiple of `PAGE_BYTES`) at `at`.
///
/// # Safety
/// The range is page-aligned, inside one mapping made by `map`, still mapped, and nothing
/// refers to memory in it any more.
pub(crate) unsafe fn unmap(at: NonNull<u8>, bytes: usize) {
    debug_assert!(
        bytes.is_multiple_of(PAGE_BYTES) && (at.as_ptr() as usize).is_multiple_of(PAGE_BYTES)
    );
    if bytes == 0 {
        return;
    }
    // SAFETY (caller): the range is mapped and unused. munmap of a valid range fails only
    // when the kernel cannot split a mapping (out of mapping slots): the pages then stay
    // mapped, which wastes memory but breaks nothing.
    unsafe { libc::munmap(at.as_ptr().cast(), bytes) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_aligned_zeroed_and_writable_and_can_be_trimmed() {
        let bytes = HUGE_PAGE_BYTES + 3 * PAGE_BYTES;
        let at = map(bytes, PageSize::Huge).expect("mapped");
        assert!((at.as_ptr() as usize).is_multiple_of(HUGE_PAGE_BYTES));
        // SAFETY: the whole range is mapped and writable, and nothing else uses it.
        let memory = unsafe { std::slice::from_raw_parts_mut(at.as_ptr(), bytes) };
        assert!(memory.iter().step_by(PAGE_BYTES / 2).all(|&b| b == 0));
        memory[bytes - 1] = 7;
        assert_eq!(memory[bytes - 1], 7);
        // SAFETY: page-aligned ranges of the mapping, not used afterwards.
        unsafe {
            unmap(
                NonNull::new_unchecked(at.as_ptr().add(HUGE_PAGE_BYTES)),
                3 * PAGE_BYTES,
            );
            unmap(at, HUGE_PAGE_BYTES);
        }
    }
}
