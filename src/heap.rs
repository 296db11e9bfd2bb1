//! Giving freed heap memory back to the operating system after a large
//! release.
//!
//! glibc's allocator keeps freed chunks in its arenas and returns only the top
//! of each heap on its own; a compaction that drops the overlay of a million
//! rows (each row a vector of its own) leaves hundreds of megabytes free but
//! resident, fragmented by the few allocations that outlived them. On an edge
//! node that memory is what other namespaces and the page cache need.
//!
//! Invariants:
//! - Only freed memory is returned (`malloc_trim` releases whole free pages;
//!   live allocations are untouched), so calling [`give_back_freed`] is
//!   always safe; it is a no-op where the allocator is not glibc's.
//! - It walks every arena under its lock: called after rare, large releases
//!   (a compaction round), on a blocking thread, never per request.
//!
//! Large allocations: glibc serves an allocation of at least its mmap
//! threshold with a mapping of its own, returned to the OS on free, but it
//! raises that threshold (up to 32 MiB) each time such a block is freed. After
//! an ingest and a compaction every per-batch buffer and build array lives in
//! the arenas instead, and freeing them leaves their pages resident: measured
//! on 150k rows (ingest + compaction + queries), RssAnon settled at 68 MB and
//! the arenas held 457 MB of address space for 3.6 MB in use; `malloc_trim`
//! gave back under 3 MB of it. [`return_large_frees_directly`] pins the
//! threshold at [`LARGE_ALLOCATION`] (the same run settled at 9.6 MB RssAnon,
//! and its peak fell from 545 MB to 480 MB VmHWM).
//! - The threshold is set once, by the daemon, before its threads start.
//!
//! Huge pages: an index build reads its codes and links at random across hundreds of
//! megabytes; [`advise_huge_pages`] asks for transparent huge pages on such a buffer before it
//! is written (a 900k-row graph build: 305 → 281 CPU s, BENCHMARKS.md "Segment builds"). A hint
//! only: the contents and the allocation are the caller's as before.

/// Allocations of at least this many bytes get a mapping of their own.
pub const LARGE_ALLOCATION: usize = 1 << 20;

/// Serve allocations of [`LARGE_ALLOCATION`] bytes or more from mappings of
/// their own and keep that threshold fixed (see the module docs); true if the
/// allocator took the setting (false where it is not glibc's).
pub fn return_large_frees_directly() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
        extern "C" {
            fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
        }
        // SAFETY: mallopt takes no pointers; setting M_MMAP_THRESHOLD only
        // changes how later allocations are served (a block is freed the way
        // it was allocated, whatever the threshold is then).
        unsafe { mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION as std::os::raw::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Return free pages of every allocator arena to the OS; true if the
/// allocator released any.
pub fn give_back_freed() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and only releases
        // memory the allocator holds as free; it is thread-safe.
        unsafe { malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Huge pages are this large (x86-64 and aarch64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Ask the kernel to back the whole 2 MiB pages inside `buf` with transparent huge pages when
/// they are first touched (`MADV_HUGEPAGE`; the default `madvise` THP mode grants them only to
/// regions that ask). For a large buffer read at random, as an index build's codes and links
/// are: with 4 KiB pages every such read also missed the TLB. Call it before the buffer is
/// written: pages already touched stay small until the kernel collapses them. A hint: false
/// (and nothing changed) where it is not granted.
pub fn advise_huge_pages<T>(buf: &mut [T]) -> bool {
    let (start, len) = (buf.as_mut_ptr() as usize, std::mem::size_of_val(buf));
    let from = start.div_ceil(HUGE_PAGE) * HUGE_PAGE;
    let to = (start + len) / HUGE_PAGE * HUGE_PAGE;
    if to <= from {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        const MADV_HUGEPAGE: std::os::raw::c_int = 14;
        extern "C" {
            fn madvise(
                addr: *mut std::ffi::c_void,
                len: usize,
                advice: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        // SAFETY: [from, to) lies inside `buf`, which this call borrows mutably; MADV_HUGEPAGE
        // changes only how the kernel backs the range, never its contents.
        unsafe { madvise(from as *mut std::ffi::c_void, to - from, MADV_HUGEPAGE) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc takes the fixed threshold (the effect on RSS is measured by
    /// bench/scale.sh: BENCHMARKS.md).
    #[test]
    fn glibc_takes_the_fixed_mmap_threshold() {
        let glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
        assert_eq!(return_large_frees_directly(), glibc);
    }

    /// A buffer holding no whole huge page is not advised; one that does is, on Linux (the
    /// kernel takes the hint in every THP mode, `never` included), and its contents stay.
    #[test]
    fn huge_pages_are_asked_for_whole_pages_only_and_leave_the_contents() {
        let mut small = vec![7u8; HUGE_PAGE - 1];
        assert!(!advise_huge_pages(&mut small));
        // 2 huge pages of bytes always hold one whole aligned page.
        let mut big = vec![0u32; 2 * HUGE_PAGE / 4];
        let advised = advise_huge_pages(&mut big);
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists();
        assert_eq!(advised, cfg!(target_os = "linux") && thp);
        big.iter_mut().enumerate().for_each(|(i, v)| *v = i as u32);
        assert!(big.iter().enumerate().all(|(i, v)| *v == i as u32));
    }
}
