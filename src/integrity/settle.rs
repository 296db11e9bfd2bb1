//! First-read verification of a lazily opened object (a segment with range checksums, kind 22):
//! its stored chunks (16 KiB) are checked against the crc32c the object carries for each, not
//! when the object is opened but on the first read of each chunk, and only then are the fine
//! (1 KiB) crcs the guard checks later reads with computed, from the bytes that matched.
//!
//! Invariants:
//! - A fine crc of a stored chunk is read only after the chunk's settled bit was seen set
//!   (`Acquire`), and the bit is set (`Release`) only after every fine crc of the chunk was stored:
//!   a reader never checks against a crc that is not the chunk's.
//! - Settling is idempotent and lock-free: threads that meet the same unsettled chunk at once each
//!   check it and store the same fine crcs (they are computed from bytes that matched the same
//!   stored crc), so no thread waits on another and no global lock is on the read path.
//! - A chunk whose bytes do not match is never marked settled: every later read checks it again
//!   (and fails again) rather than trusting it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The stored chunks of a lazy guard: their crc32c and which were checked.
pub(super) struct Settle {
    log2: u32,
    crcs: Box<[u32]>,
    /// One bit per stored chunk: checked, its fine crcs kept.
    settled: Box<[AtomicU64]>,
}

impl Settle {
    pub(super) fn new(log2: u32, crcs: Vec<u32>) -> Settle {
        let settled = (0..crcs.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Settle { log2, crcs: crcs.into(), settled }
    }

    /// The stored chunk size, log2 bytes.
    pub(super) fn log2(&self) -> u32 {
        self.log2
    }

    pub(super) fn heap_bytes(&self) -> usize {
        self.crcs.len() * 4 + self.settled.len() * 8
    }

    /// Whether stored chunk `c` was checked (its fine crcs may be read).
    pub(super) fn is_settled(&self, c: usize) -> bool {
        self.settled.get(c / 64).is_some_and(|w| w.load(Ordering::Acquire) & (1 << (c % 64)) != 0)
    }

    /// Check stored chunk `c`'s `bytes` against its crc; on a match store the crc32c of each
    /// `2^fine_log2` granule of them into `fine` and mark the chunk settled. `Err((expected,
    /// actual))` on a mismatch (nothing is stored).
    pub(super) fn settle(
        &self,
        c: usize,
        bytes: &[u8],
        fine: &[AtomicU32],
        fine_log2: u32,
    ) -> Result<(), (u32, u32)> {
        let expected = self.crcs.get(c).copied().unwrap_or(0);
        let actual = crc32c::crc32c(bytes);
        if actual != expected || bytes.is_empty() {
            return Err((expected, if bytes.is_empty() { !expected } else { actual }));
        }
        let first = c << (self.log2 - fine_log2);
        for (i, granule) in bytes.chunks(1 << fine_log2).enumerate() {
            if let Some(slot) = fine.get(first + i) {
                slot.store(crc32c::crc32c(granule), Ordering::Relaxed);
            }
        }
        if let Some(w) = self.settled.get(c / 64) {
            w.fetch_or(1 << (c % 64), Ordering::Release);
        }
        Ok(())
    }

    /// Bytes settled, of an object whose guarded bytes are `covered` long.
    pub(super) fn settled_bytes(&self, covered: usize) -> usize {
        (0..self.crcs.len())
            .filter(|&c| self.is_settled(c))
            .map(|c| (covered - (c << self.log2)).min(1 << self.log2))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use crate::integrity::{take_unscoped, within, ChunkGuard, FileGuard};

    const STORED: u32 = 14;

    fn lazy(len: usize) -> (Vec<u8>, ChunkGuard) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let crcs = bytes.chunks(1 << STORED).map(crc32c::crc32c).collect();
        let mut g = ChunkGuard::lazy(10, len, STORED, crcs).unwrap();
        g.set_object("ns/segments/s/data.seg");
        (bytes, g)
    }

    #[test]
    fn a_stored_chunk_is_checked_on_its_first_read_and_a_changed_one_never_settles() {
        let (mut bytes, g) = lazy(3 * 16384 + 100);
        assert_eq!(g.settled_bytes(), 0, "nothing read at construction");
        assert!(within(|| g.check(&bytes, 100..200)).unwrap());
        assert_eq!(g.settled_bytes(), 16384, "the one stored chunk read");
        bytes[2 * 16384 + 7000] ^= 1;
        let rot = within(|| g.check(&bytes, 2 * 16384..2 * 16384 + 10)).unwrap_err();
        assert_eq!((rot.offset, rot.object.as_str()), (2 * 16384, "ns/segments/s/data.seg"));
        assert_ne!(rot.expected, rot.actual);
        assert_eq!(g.settled_bytes(), 16384, "the changed chunk is not settled");
        assert!(within(|| g.check(&bytes, 2 * 16384..2 * 16384 + 10)).is_err(), "and fails again");
        assert!(within(|| g.check(&bytes, 3 * 16384..3 * 16384 + 100)).unwrap(), "the short last chunk");
        assert_eq!(g.settled_bytes(), 16384 + 100);
        assert!(g.heap_bytes() >= 4 * (3 * 16 + 1), "{}", g.heap_bytes());
    }

    #[test]
    fn a_byte_changed_after_its_chunk_settled_is_caught_by_the_fine_crcs() {
        let (mut bytes, g) = lazy(2 * 16384);
        assert!(within(|| g.check(&bytes, 0..10)).unwrap());
        bytes[5000] ^= 4;
        let rot = within(|| g.check(&bytes, 5000..5001)).unwrap_err();
        assert_eq!(rot.offset, 4096, "the 1 KiB granule: the chunk was settled from matching bytes");
        take_unscoped();
        assert!(!g.check(&bytes, 5000..5001), "outside a scope too");
        assert!(take_unscoped().iter().any(|r| r.offset == 4096));
    }

    #[test]
    fn settle_hands_over_new_stretches_once_and_refuses_a_mismatch() {
        let (mut bytes, g) = lazy(4 * 16384);
        let handed = std::cell::Cell::new(0usize);
        let count = |b: &[u8]| handed.set(handed.get() + b.len());
        g.settle(&bytes, 100..16384 + 1, &count).unwrap();
        assert_eq!(handed.get(), 2 * 16384);
        g.settle(&bytes, 0..16384 * 2, &count).unwrap();
        assert_eq!(handed.get(), 2 * 16384, "settled chunks are not read again");
        bytes[3 * 16384] ^= 1;
        let rot = g.settle(&bytes, 0..bytes.len(), &count).unwrap_err();
        assert_eq!(rot.offset, 3 * 16384);
        let fg = FileGuard::new(&bytes, &g);
        assert!(within(|| fg.settle_slice(&bytes[3 * 16384 + 5..])).is_err(), "recorded in the scope");
        assert!(within(|| fg.copy_checked(&bytes[3 * 16384..3 * 16384 + 50]).is_none()).is_err());
        assert_eq!(
            fg.copy_checked(&bytes[16384 * 2 + 3..16384 * 2 + 9]).as_deref(),
            Some(&bytes[32771..32777])
        );
    }

    #[test]
    fn a_failed_positioned_read_settles_from_the_mapping() {
        let (bytes, g) = lazy(2 * 16384);
        let failing = |_: usize, _: &mut [u8]| false;
        assert!(within(|| g.check_read(100..200, &failing, &bytes)).unwrap());
        assert_eq!(g.settled_bytes(), 16384);
        let mut changed = bytes.clone();
        changed[20000] ^= 1;
        assert!(within(|| g.check_read(20000..20001, &failing, &changed)).is_err());
        let reading = |at: usize, out: &mut [u8]| {
            out.copy_from_slice(&bytes[at..at + out.len()]);
            true
        };
        assert!(
            within(|| g.check_read(20000..20001, &reading, &changed)).unwrap(),
            "the read bytes are checked"
        );
    }

    #[test]
    fn threads_meeting_one_chunk_first_agree() {
        let (bytes, g) = lazy(8 * 16384);
        std::thread::scope(|s| {
            for t in 0..8usize {
                let (bytes, g) = (&bytes, &g);
                s.spawn(move || {
                    for i in 0..64usize {
                        let at = ((i * 997 + t * 131) % 8) * 16384 + (i * 61) % 16000;
                        assert!(within(|| g.check(bytes, at..at + 300)).unwrap());
                    }
                });
            }
        });
        assert_eq!(g.settled_bytes(), 8 * 16384);
        let mut changed = bytes.clone();
        changed[5 * 16384 + 3] ^= 2;
        assert!(within(|| g.check(&changed, 5 * 16384..5 * 16384 + 8)).is_err());
    }

    #[test]
    fn a_lazy_guard_needs_stored_chunks_that_fit() {
        assert!(ChunkGuard::lazy(10, 40_000, 9, vec![0; 79]).is_none(), "finer than the reads");
        assert!(ChunkGuard::lazy(10, 40_000, 14, vec![0; 2]).is_none(), "too few crcs");
        assert!(ChunkGuard::lazy(10, 40_000, 14, vec![0; 3]).is_some());
    }
}
