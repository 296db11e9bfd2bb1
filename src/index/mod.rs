//! Per-segment search indexes: pure functions over byte slices (no I/O), so they run directly
//! on mmap'd segment sections. `distance` holds the SIMD kernels, `ann` the dense-vector index,
//! `text` the BM25 full-text index.

use std::cmp::Ordering;

pub mod ann;
pub mod attr;
pub mod coldivf;
pub mod distance;
pub mod graph;
pub mod sparse;
pub mod text;

/// A (distance, row) pair ordered by distance, then row (`total_cmp`, so NaN is ordered too):
/// the element of every nearest-first heap in the vector indexes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ranked(pub f32, pub u32);

impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}
