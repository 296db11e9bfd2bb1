//! Dense-vector ANN index of one segment: IVF (k-means centroids) with rows grouped by cluster,
//! candidates scored by codes (version 3: the segment graph's traversal codes, read by row;
//! version 2: 8-bit residual codes of its own) and an exact f32 rerank from the segment's own
//! vectors. Built once at compaction ([`build`]); served zero-copy from the section bytes
//! ([`AnnIndex::open`]); [`exact`] is the brute-force search with the same output shape.
//!
//! Section layout (all integers little-endian; every block starts on a 64-byte boundary of the
//! section, and the section itself is 64-byte aligned inside the segment):
//!
//! ```text
//! 0   magic "TPANNIVF"            8   version u32 (3; 2 and 1 read) 12 header_len u32 (=256; v1: 192)
//! 16  metric u8 (0 cosine, 1 euclidean_squared)   17 kind u8 (1 = IVF + SQ8 residuals, versions
//!     1–2; 2 = IVF lists scored with the graph's codes, version 3)  18 reserved u16 (0)
//! 20  dim u32      24 rows u32     28 nlist u32    32 code_stride u32 (dim rounded up to 64; v3: 0)
//! 36  default_nprobe u32 (calibrated: the cheapest nprobe measured at the default target)
//! 40  version 3: crc32c of the graph section (kind 20) it was calibrated with; else 0
//! 44  reserved (12 bytes, 0)
//! 56  crc32c u32 of bytes [0, 56) ++ [64, len)      60 reserved u32 (0)
//! 64  block table: 6 × (offset u64, len u64), offsets from the section start:
//!     0 centroids  f32 [nlist × dim]   (cosine: unit length)
//!     1 offsets    u32 [nlist + 1]     list c = list positions offsets[c] .. offsets[c+1]
//!     2 row_ids    u32 [rows]          segment row of each list position (a permutation of 0..rows)
//!     3 norms      f32 [rows]          per list position: cosine |x|, euclidean |x|²
//!     4 scales     f32 [dim]           per-dimension code scale s_j > 0
//!     5 codes      u8  [rows × code_stride]  per list position: round(r_j · s_j) + 128, padding 128
//!     version 3: blocks 3, 4 and 5 are (0, 0) (no norms, scales or codes)
//! 160 reserved (32 bytes, 0)
//! 192 calibration record, 48 bytes (version 2; `calibrate`: measured recall per (nprobe, rerank))
//! 240 reserved (16 bytes, 0)
//! ```
//! Version 1 (192-byte header, no calibration) still opens and searches with its stored
//! `default_nprobe` and the caller's rerank. Residual codes are already centred (on each row's
//! centroid), so a shared component does not eat their range; only the graph needed centring.
//! `r` is the residual of the row from its centroid (cosine: of the unit-normalised row).
//! Blocks are written in the physical order centroids, offsets, scales, row_ids, norms, codes, so
//! the header and the directory (centroids, offsets, scales) form one contiguous range (a cold
//! reader fetches it in one read, then the probed lists' ranges in parallel, then rerank rows).
//!
//! Search: clusters are ranked with 8-bit codes of the centroids (built at open, nlist × stride
//! bytes). Version 2: the exact q·c is computed for each probed cluster, each probed row's
//! similarity is estimated as q·c + q·r from its code (one AVX-512 VNNI / AVX2 integer scan per
//! list). Version 3 (issue 36 item 4: one set of per-row codes per segment) holds no codes: each
//! probed row is estimated from the segment's graph section (`graph::RowEstimator`, attached with
//! [`SharedAnnIndex::with_graph`] when its crc is the one the build named), or scored exactly from
//! the vectors when no such graph is attached (the recall is then at least the calibrated one:
//! the exact top k of the probed rows). Either way the best `max(rerank, 2k)` estimates are
//! re-scored exactly.
//!
//! Invariants:
//! - Within a list, positions are in ascending row order; lists are in centroid order. Rows are
//!   addressed by their segment row (u32); the caller's `vectors` slice is rows × dim in row order.
//! - [`build`] is deterministic: seeded RNG, fixed-order (`det_*`) float kernels, f64 centroid
//!   sums, so the same input gives the same bytes on every CPU.
//! - [`AnnIndex::open`] checks magic, version, the crc32c, every length and offset (checked
//!   arithmetic), monotone list offsets, that row ids form a permutation and that floats are
//!   finite; bad bytes give [`IndexError`], never a panic. `open_trusted` skips only the crc (for
//!   callers that verified the segment's section crc already).
//! - Search never ranks by quantized scores alone: the top `max(rerank, 2k)` candidates are
//!   re-scored with exact f32 distances. Results are sorted by (distance, row), at most k, no
//!   duplicate rows. A query of the wrong dimension gives no results; a `vectors` slice that does
//!   not match the index shape falls back to [`exact`] over that slice.
//! - Filtered search (`filter` = rows that may be returned, e.g. attribute filter AND not
//!   deleted): when the estimated matching rows are at most `exact_threshold` it runs [`exact`];
//!   otherwise it probes clusters in centroid order until `filter_min_scored` matching rows have
//!   been scored (not a fixed nprobe), scoring only matching rows.
//! - [`build`] calibrates like the graph (see `calibrate`); [`AnnIndex::effort`] turns a target
//!   recall into (nprobe, rerank), or `None` (search exactly) when no measured rung reaches it.

use super::distance::{self, det_dot_batch, det_l2sq_batch, kernels, Kernels, Metric};
use super::Ranked;
use rand::seq::index::sample;
use rand::SeedableRng;
use std::borrow::Cow;
use std::collections::BinaryHeap;
use std::sync::Arc;

mod assign;
mod build;
mod dots4;
pub use build::*;
mod search;
pub use search::*;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPANNIVF";
/// Current section version: lists only, scored with the graph section's codes.
pub const VERSION: u32 = 3;
/// The version [`build`] writes (8-bit residual codes of its own; unchanged bytes).
pub const VERSION_SQ8: u32 = 2;
const HEADER_LEN: usize = 256;
/// Header length of version 1 sections (no calibration record).
const HEADER_LEN_V1: usize = 192;
/// Where the calibration record sits (version 2).
const CALIB_AT: usize = 192;
/// IVF effort ladder: multiples of the uncalibrated default nprobe, with their rerank depth.
const LADDER: [(usize, u32); super::calibrate::MAX_RUNGS] =
    [(1, 40), (2, 40), (3, 60), (4, 80), (6, 120), (9, 160)];
const BLOCKS: usize = 6;
const KIND_IVF_SQ8: u8 = 1;
/// Kind byte of version 3: lists only, candidates scored with the graph section's codes.
const KIND_IVF_LISTS: u8 = 2;
const CRC_AT: usize = 56;
/// Version 3: where the crc32c of the graph section the build calibrated with is stored.
const GRAPH_CRC_AT: usize = 40;

use crate::index::error::IndexError;
use crate::index::error::{IndexErrorKind, IndexSection};

/// Bad bytes in a dense-vector section (ann, graph, cold IVF share the message).
pub(crate) fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(IndexSection::Ann, what)
}

/// A dense-vector section whose crc32c does not match.
pub(crate) fn checksum() -> IndexError {
    IndexError::new(IndexSection::Ann, IndexErrorKind::Checksum)
}

/// A dense-vector section of a version or kind this build cannot read.
pub(crate) fn unsupported(version: u32, kind: u8) -> IndexError {
    IndexError::new(IndexSection::Ann, IndexErrorKind::Unsupported { version, kind })
}

/// Build parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnParams {
    /// Number of clusters; 0 = automatic (≈ 2.7·√rows, at most rows / 16, at least 1).
    pub nlist: u32,
    /// k-means iterations.
    pub iterations: u32,
    /// Training sample cap per cluster (rows beyond `nlist × this` are sampled). 64 (was 256):
    /// k-means was most of the IVF build and the IVF build more than the graph's (200k Debian
    /// rows: 43 s → 20 s on 2 threads, dev recall@10 at the calibrated default 0.987 → 0.984).
    pub max_train_per_list: u32,
    /// RNG seed (sampling and initial centroids).
    pub seed: u64,
    /// Threads used by the k-means assignment step (the output does not depend on it).
    pub threads: u32,
    /// Centroids each row's assignment scores in f32, the best by 8-bit estimates (`assign.rs`);
    /// 0: every centroid (the exact assignment). 4: the IVF build of 100k / 300k Debian-derived
    /// 384-d rows took 2.2× / 2.5× less CPU than with 0, at the same calibration and recall.
    pub assign_rerank: u32,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            nlist: 0,
            iterations: 10,
            max_train_per_list: 64,
            seed: 0x7469_6465_706f_6f6c,
            threads: 1,
            assign_rerank: 4,
        }
    }
}

/// Search parameters; `Default` gives recall@10 ≥ 0.95 on the Debian benchmark set.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    /// Clusters probed without a filter; 0 = the index's default (stored at build).
    pub nprobe: u32,
    /// Candidates re-scored with exact distances (at least 2·k are always re-scored).
    pub rerank: u32,
    /// Filtered search: probe until this many matching rows were scored; 0 = automatic
    /// (rows an unfiltered search scans × √(estimated selectivity), at least the rerank depth).
    pub filter_min_scored: u32,
    /// Filtered search: run exact search when the estimated matching rows are at most this.
    pub exact_threshold: u32,
    /// Filtered search: the caller's estimate of matching rows (e.g. from attribute postings);
    /// None = estimate by evaluating the filter on an evenly spaced sample of 256 rows.
    pub filter_estimate: Option<u32>,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            nprobe: 0,
            rerank: 40,
            filter_min_scored: 0,
            exact_threshold: 1024,
            filter_estimate: None,
        }
    }
}

// Top-k selection.

/// Keeps the `cap` smallest (distance, id) pairs.
struct TopK {
    cap: usize,
    heap: BinaryHeap<Ranked>,
    worst: f32,
}
impl TopK {
    fn new(cap: usize) -> Self {
        // Grows with what is pushed: `cap` comes from a request.
        TopK { cap, heap: BinaryHeap::with_capacity(cap.min(4096) + 1), worst: f32::INFINITY }
    }
    #[inline]
    fn push(&mut self, d: f32, id: u32) {
        if self.cap == 0 || d.is_nan() {
            return;
        }
        if self.heap.len() < self.cap {
            self.heap.push(Ranked(d, id));
            if self.heap.len() == self.cap {
                self.worst = self.heap.peek().map_or(f32::INFINITY, |c| c.0);
            }
        } else if d <= self.worst {
            let c = Ranked(d, id);
            if self.heap.peek().is_some_and(|w| c < *w) {
                self.heap.pop();
                self.heap.push(c);
                self.worst = self.heap.peek().map_or(f32::INFINITY, |c| c.0);
            }
        }
    }
    fn sorted(self) -> Vec<(u32, f32)> {
        let mut v = self.heap.into_sorted_vec();
        v.truncate(self.cap);
        v.into_iter().map(|c| (c.1, c.0)).collect()
    }
}

// Exact search.

/// Brute-force k nearest rows of `vectors` (rows × dim, row order) to `query`, optionally only
/// rows for which `filter(row)` holds. Sorted by (distance, row); at most k results. A query of
/// the wrong dimension (or dim 0) gives no results.
pub fn exact(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    query: &[f32],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> Vec<(u32, f32)> {
    exact_with(kernels(), vectors, dim, metric, query, k, filter)
}

fn exact_with(
    kern: &Kernels,
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    query: &[f32],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> Vec<(u32, f32)> {
    if dim == 0 || query.len() != dim || k == 0 {
        return Vec::new();
    }
    let n = (vectors.len() / dim).min(u32::MAX as usize);
    let mut top = TopK::new(k);
    match filter {
        None => {
            const CHUNK: usize = 256;
            let mut buf = [0f32; CHUNK];
            let mut start = 0;
            while start < n {
                let end = (start + CHUNK).min(n);
                let rows = &vectors[start * dim..end * dim];
                let out = &mut buf[..end - start];
                match metric {
                    Metric::CosineDistance => kern.cosine_batch(query, rows, out),
                    Metric::EuclideanSquared => kern.euclidean_squared_batch(query, rows, out),
                }
                for (i, d) in out.iter().enumerate() {
                    top.push(*d, (start + i) as u32);
                }
                start = end;
            }
        }
        Some(f) => {
            let qn = kern.dot(query, query).sqrt();
            for row in 0..n {
                if !f(row as u32) {
                    continue;
                }
                let x = &vectors[row * dim..(row + 1) * dim];
                top.push(kern.distance_with_norm(metric, query, qn, x), row as u32);
            }
        }
    }
    top.sorted()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lists;
