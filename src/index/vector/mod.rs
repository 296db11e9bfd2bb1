//! Dense-vector indexes of one segment: the SIMD `distance` kernels (and the bit-plane `planes` kernel
//! of the RaBitQ codes), the IVF-SQ8 `ann` index,
//! the `graph` index, the cold-read IVF layout (`coldivf`, and
//! `coldnamed` for a named vector attribute) and the build-time recall
//! `calibrate`ion both searchable sections store, the `rows` their exact rerank reads, and the
//! compact `rabitq` bit-plane codes the graph can traverse instead of 8-bit codes.
//! Pure functions over section bytes (no I/O but what a caller's [`rows::RowSource`] does).
//! Their nearest-first heaps all order by [`Ranked`] (distance, then row), so ties break the
//! same way everywhere.

use std::cmp::Ordering;

pub mod ann;
pub mod calibrate;
pub mod coldivf;
pub mod coldnamed;
mod det4;
pub mod distance;
pub mod graph;
pub mod named;
pub mod planes;
pub mod rabitq;
mod round;
pub mod rows;
pub mod synth;

/// The next draw of a SplitMix64 stream (`state` advances): the deterministic randomness of the
/// builds (graph insertion order, calibration samples and perturbations).
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A (distance, row) pair ordered by distance, then row (`total_cmp`, so NaN is ordered too):
/// the element of every nearest-first heap in the vector indexes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ranked(pub f32, pub u32);

/// `part` over `n` items split into at most `threads` contiguous ranges, a thread each, the
/// results concatenated in item order: what one call over `0..n` returns when `part` works item
/// by item. A panic in a part is resumed on the caller.
pub(crate) fn in_parts<R: Send>(
    n: usize,
    threads: usize,
    part: impl Fn(std::ops::Range<usize>) -> Vec<R> + Sync,
) -> Vec<R> {
    let per = n.div_ceil(threads.max(1)).max(1);
    if n <= per {
        return part(0..n);
    }
    let part = &part;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..n).step_by(per).map(|a| s.spawn(move || part(a..(a + per).min(n)))).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

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
