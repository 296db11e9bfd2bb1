//! Read-only file mappings the cache hands out, and the one thing the memory
//! tier may do to them: give their resident pages back.
//!
//! A segment is verified whole when it is opened (every checksum), which
//! leaves every page of the file resident in this process. A query afterwards
//! touches the graph (codes and links) of its segments and a few rows'
//! vectors and attributes; keeping the rest resident would make a served
//! namespace cost its whole file in RSS. [`release_resident`] drops a
//! mapping's pages from this process (the kernel's page cache keeps them, so
//! the next touch is a minor fault, not a disk read).
//!
//! Invariants:
//! - Only mappings made here are ever advised: a slice is looked up in the
//!   registry of live mappings, and anything else (heap bytes of a memory
//!   store, a copy) is left alone — `MADV_DONTNEED` on anonymous memory would
//!   zero it.
//! - A mapped file is immutable (the caller's contract, as for every cache
//!   mapping), so re-faulting a released page reads the same bytes.
//! - The registry entry lives exactly as long as the mapping (removed when
//!   the last `Bytes` that owns it is dropped).

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Live mappings: start address → (length, the mapping).
static LIVE: Mutex<BTreeMap<usize, (usize, std::sync::Weak<memmap2::Mmap>)>> = Mutex::new(BTreeMap::new());

/// The owner of a mapping inside `Bytes`; unregisters it when dropped.
struct Mapping(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(PoisonError::into_inner).remove(&(self.0.as_ptr() as usize));
    }
}

/// Map an open, immutable file of `len` bytes read-only.
pub(crate) fn map(file: &File, len: u64) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the file is immutable by contract (cache files are only created
    // by rename and never written again; store objects passed here are
    // immutable objects), so the mapped bytes cannot change under us. An
    // unlink (eviction, GC) leaves the mapping valid.
    let m = Arc::new(unsafe { memmap2::Mmap::map(file)? });
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(m.as_ptr() as usize, (m.len(), Arc::downgrade(&m)));
    Ok(Bytes::from_owner(Mapping(m)))
}

/// Drop the resident pages of `bytes` (whole pages inside it) from this
/// process, if it lies in a mapping made by [`map`]; true if it did.
pub(crate) fn release_resident(bytes: &[u8]) -> bool {
    let at = bytes.as_ptr() as usize;
    let found = {
        let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.range(..=at).next_back().and_then(|(start, (len, m))| {
            (at + bytes.len() <= start + len).then(|| (*start, m.upgrade())).and_then(|(s, m)| Some((s, m?)))
        })
    };
    let Some((start, map)) = found else { return false };
    let page = page_size();
    let from = (at - start).div_ceil(page) * page;
    let to = (at - start + bytes.len()) / page * page;
    if to <= from {
        return false;
    }
    // SAFETY: `map` is a read-only mapping of an immutable file (see `map`):
    // after MADV_DONTNEED the next access faults the same bytes back in from
    // the file, so every live reference into it keeps reading what it read.
    let r = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) };
    if let Err(e) = &r {
        tracing::debug!(error = %e, "madvise(DONTNEED) on a read-only mapping failed");
    }
    r.is_ok()
}

fn page_size() -> usize {
    // Every Linux page size in use is a multiple of 4 KiB; rounding to 64 KiB
    // keeps the advised range whole pages on any of them.
    64 << 10
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The Rss (KiB) of the mapping starting at `addr`, from /proc/self/smaps.
    fn mapping_rss_kib(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let head = format!("{addr:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
        lines.next().expect("the mapping is listed");
        let rss = lines.find(|l| l.starts_with("Rss:")).expect("an Rss line");
        rss.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn released_pages_leave_the_process_and_read_back_the_same() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        f.write_all(&data).unwrap();
        let bytes = map(&f, data.len() as u64).unwrap();
        let addr = bytes.as_ptr() as usize;
        assert_eq!(crc32c::crc32c(&bytes), crc32c::crc32c(&data)); // touches every page
        assert!(mapping_rss_kib(addr) >= 8 << 10, "every page resident after a full read");
        assert!(release_resident(&bytes));
        assert!(mapping_rss_kib(addr) < 256, "released: {} KiB resident", mapping_rss_kib(addr));
        assert_eq!(crc32c::crc32c(&bytes), crc32c::crc32c(&data), "the same bytes after the release");
        // A slice of the mapping is found too; heap bytes are never advised.
        assert!(release_resident(&bytes[100_000..4_000_000]));
        assert!(!release_resident(&data));
        drop(bytes);
        assert!(LIVE.lock().unwrap().get(&addr).is_none(), "unregistered with its last owner");
    }
}
