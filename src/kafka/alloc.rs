//! The process's global allocator: the system allocator, except that very large requests are
//! served by an `mmap(MAP_NORESERVE)` mapping that only costs memory for the pages touched.
//!
//! Why: the `kafka-protocol` decoders call `Vec::with_capacity(n)` with an array length read from
//! the request before checking it against the bytes that follow, so a 20-byte request claiming
//! 2^31 elements asks for ~150 GB. The system allocator refuses that and Rust aborts the whole
//! broker. Reserved lazily instead, the decoder runs out of input after a few elements, returns
//! an error, and the mapping is released untouched. This module owns that, and nothing else; it
//! holds the crate's only `unsafe` outside the storage mmap module.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations from this size up are mapped lazily.
const HUGE_BYTES: usize = 1 << 30;
/// mmap returns page-aligned memory; larger alignments stay with the system allocator.
const PAGE_BYTES: usize = 4096;

struct LazyHugeAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

// SAFETY: every method either forwards to `System` with the caller's arguments unchanged, or
// (for huge layouts, decided by the same `is_huge` test on alloc and dealloc) returns a fresh
// private anonymous mapping of at least `layout.size()` bytes, page aligned (which satisfies
// `layout.align() <= PAGE_BYTES`), zero-filled, and unmaps exactly that range on dealloc.
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            // SAFETY: same contract as ours, arguments passed through.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: a new anonymous private mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED { ptr::null_mut() } else { p.cast() }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            // SAFETY: same contract as ours, arguments passed through.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: anonymous mappings are zero-filled by the kernel.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if !is_huge(&layout) {
            // SAFETY: `p` came from `System.alloc` with this layout (same `is_huge` decision).
            return unsafe { System.dealloc(p, layout) };
        }
        // SAFETY: `p` is the start of a mapping of `layout.size()` bytes made by `alloc`.
        unsafe {
            libc::munmap(p.cast(), layout.size());
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The caller guarantees `new_size` forms a valid layout with the same alignment.
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides belong to the system allocator.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        // SAFETY: allocate, copy the overlapping prefix, free the old block with its own layout.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

#[global_allocator]
static GLOBAL: LazyHugeAlloc = LazyHugeAlloc;

#[cfg(test)]
mod tests {
    #[test]
    fn a_huge_claimed_capacity_is_reserved_lazily_not_fatal() {
        // 64 GiB of capacity: refused by the system allocator under heuristic overcommit.
        let mut v: Vec<u64> = Vec::with_capacity(8 << 30);
        v.push(1);
        v.push(2);
        assert_eq!(v.iter().sum::<u64>(), 3);
        v.shrink_to_fit();
        assert_eq!(v.capacity(), 2);
    }
}
