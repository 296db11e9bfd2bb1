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
