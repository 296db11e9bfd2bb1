//! Dense-vector ANN index of one segment: IVF (k-means centroids) with rows grouped by cluster,
//! 8-bit residual codes for the candidate scan and an exact f32 rerank from the segment's own
//! vectors. Built once at compaction ([`build`]); served zero-copy from the section bytes
//! ([`AnnIndex::open`]); [`exact`] is the brute-force search with the same output shape.
//!
//! Section layout (all integers little-endian; every block starts on a 64-byte boundary of the
//! section, and the section itself is 64-byte aligned inside the segment):
//!
//! ```text
//! 0   magic "TPANNIVF"            8   version u32 (=1)          12  header_len u32 (=192)
//! 16  metric u8 (0 cosine, 1 euclidean_squared)   17 kind u8 (1 = IVF + SQ8 residuals)  18 reserved u16 (0)
//! 20  dim u32      24 rows u32     28 nlist u32    32 code_stride u32 (dim rounded up to 64)
//! 36  default_nprobe u32           40 reserved (16 bytes, 0)
//! 56  crc32c u32 of bytes [0, 56) ++ [64, len)      60 reserved u32 (0)
//! 64  block table: 6 × (offset u64, len u64), offsets from the section start:
//!     0 centroids  f32 [nlist × dim]   (cosine: unit length)
//!     1 offsets    u32 [nlist + 1]     list c = list positions offsets[c] .. offsets[c+1]
//!     2 row_ids    u32 [rows]          segment row of each list position (a permutation of 0..rows)
//!     3 norms      f32 [rows]          per list position: cosine |x|, euclidean |x|²
//!     4 scales     f32 [dim]           per-dimension code scale s_j > 0
//!     5 codes      u8  [rows × code_stride]  per list position: round(r_j · s_j) + 128, padding 128
//! ```
//! `r` is the residual of the row from its centroid (cosine: of the unit-normalised row).
//! Blocks are written in the physical order centroids, offsets, scales, row_ids, norms, codes, so
//! the header and the directory (centroids, offsets, scales) form one contiguous range (a cold
//! reader fetches it in one read, then the probed lists' ranges in parallel, then rerank rows).
//!
//! Search: clusters are ranked with 8-bit codes of the centroids (built at open, nlist × stride
//! bytes), the exact q·c is computed for each probed cluster, each probed row's similarity is
//! estimated as q·c + q·r from its code (one AVX-512 VNNI / AVX2 integer scan per list), and the
//! best `max(rerank, 2k)` estimates are re-scored exactly.
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

use super::distance::{self, det_dot_batch, det_l2sq_batch, kernels, Kernels, Metric};
use super::Ranked;
use rand::seq::index::sample;
use rand::SeedableRng;
use std::borrow::Cow;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPANNIVF";
/// Current section version.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 192;
const BLOCKS: usize = 6;
const KIND_IVF_SQ8: u8 = 1;
const CRC_AT: usize = 56;

/// Errors opening an ANN section (all mean corrupt or unsupported bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Structurally invalid bytes.
    #[error("corrupt ann section: {0}")]
    Corrupt(&'static str),
    /// The crc32c does not match.
    #[error("ann section checksum mismatch")]
    Checksum,
    /// A version or kind this build cannot read.
    #[error("unsupported ann section (version {version}, kind {kind})")]
    Unsupported {
        /// Stored version.
        version: u32,
        /// Stored index kind.
        kind: u8,
    },
}

/// Build parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnParams {
    /// Number of clusters; 0 = automatic (≈ 2.7·√rows, at most rows / 16, at least 1).
    pub nlist: u32,
    /// k-means iterations.
    pub iterations: u32,
    /// Training sample cap per cluster (rows beyond `nlist × this` are sampled).
    pub max_train_per_list: u32,
    /// RNG seed (sampling and initial centroids).
    pub seed: u64,
    /// Threads used by the k-means assignment step (the output does not depend on it).
    pub threads: u32,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams {
            nlist: 0,
            iterations: 10,
            max_train_per_list: 256,
            seed: 0x7469_6465_706f_6f6c,
            threads: 1,
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

// ---------------------------------------------------------------------------------------------
// Top-k selection.

/// Keeps the `cap` smallest (distance, id) pairs.
struct TopK {
    cap: usize,
    heap: BinaryHeap<Ranked>,
    worst: f32,
}
impl TopK {
    fn new(cap: usize) -> Self {
        TopK { cap, heap: BinaryHeap::with_capacity(cap + 1), worst: f32::INFINITY }
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

// ---------------------------------------------------------------------------------------------
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
                let d = match metric {
                    Metric::CosineDistance => {
                        cosine_with_norms(kern.dot(query, x), qn, kern.dot(x, x).sqrt())
                    }
                    Metric::EuclideanSquared => kern.euclidean_squared(query, x),
                };
                top.push(d, row as u32);
            }
        }
    }
    top.sorted()
}

#[inline]
fn cosine_with_norms(dot: f32, qn: f32, xn: f32) -> f32 {
    let p = qn * xn;
    if p > 0.0 && p.is_finite() {
        1.0 - dot / p
    } else {
        1.0
    }
}

// ---------------------------------------------------------------------------------------------
// Build.

fn auto_nlist(n: usize) -> usize {
    let by_sqrt = (2.7 * (n as f64).sqrt()).round() as usize;
    by_sqrt.min(n / 16).max(1)
}

fn default_nprobe(n: usize, nlist: usize) -> usize {
    // Scan at least 1/9 of the lists, and at least ~512 rows (small segments: everything).
    let a = nlist.div_ceil(9);
    let b = if n == 0 { nlist } else { (512 * nlist).div_ceil(n) };
    a.max(b).clamp(1, nlist.max(1))
}

/// Assign each row to its best centroid: returns (cluster, score) per row, where score is the
/// similarity (cosine: larger is better) or the squared distance (euclidean: smaller is better).
fn assign(data: &[f32], dim: usize, centroids: &[f32], metric: Metric, threads: usize) -> Vec<(u32, f32)> {
    let n = data.len() / dim;
    let nlist = centroids.len() / dim;
    let work = |rows: &[f32]| -> Vec<(u32, f32)> {
        let mut buf = vec![0f32; nlist];
        rows.chunks_exact(dim)
            .map(|x| {
                let mut best = (0u32, 0f32);
                match metric {
                    Metric::CosineDistance => {
                        det_dot_batch(x, centroids, &mut buf);
                        let mut b = f32::NEG_INFINITY;
                        for (c, s) in buf.iter().enumerate() {
                            if *s > b {
                                b = *s;
                                best = (c as u32, *s);
                            }
                        }
                    }
                    Metric::EuclideanSquared => {
                        det_l2sq_batch(x, centroids, &mut buf);
                        let mut b = f32::INFINITY;
                        for (c, s) in buf.iter().enumerate() {
                            if *s < b {
                                b = *s;
                                best = (c as u32, *s);
                            }
                        }
                    }
                }
                best
            })
            .collect()
    };
    let threads = threads.clamp(1, 16);
    if threads == 1 || n < 1024 {
        return work(data);
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = data.chunks(per * dim).map(|part| s.spawn(move || work(part))).collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

fn normalize_in_place(x: &mut [f32]) -> f32 {
    let n = distance::det_dot(x, x).sqrt();
    if n > 0.0 && n.is_finite() {
        x.iter_mut().for_each(|v| *v /= n);
    }
    n
}

/// Builds the ANN section for `vectors` (rows × dim, row order). Rows beyond the last full row
/// are ignored; `dim == 0` gives an empty index. Non-finite components are treated as 0.
pub fn build(vectors: &[f32], dim: usize, metric: Metric, params: &AnnParams) -> Vec<u8> {
    let n = vectors.len().checked_div(dim).unwrap_or(0).min(u32::MAX as usize - 1);
    // Working copy: finite values; cosine rows normalised.
    let mut data: Vec<f32> =
        vectors[..n * dim].iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect();
    let mut norms_row = vec![0f32; n];
    if dim > 0 {
        for (x, nr) in data.chunks_exact_mut(dim).zip(norms_row.iter_mut()) {
            *nr = match metric {
                Metric::CosineDistance => normalize_in_place(x),
                Metric::EuclideanSquared => distance::det_dot(x, x),
            };
        }
    }
    let nlist = if n == 0 {
        0
    } else if params.nlist == 0 {
        auto_nlist(n)
    } else {
        (params.nlist as usize).min(n)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
    let threads = params.threads.max(1) as usize;

    // --- k-means on a sample.
    let mut centroids = vec![0f32; nlist * dim];
    if nlist > 0 {
        let cap = nlist.saturating_mul(params.max_train_per_list.max(1) as usize);
        let train_rows: Vec<usize> = if n > cap {
            let mut v = sample(&mut rng, n, cap).into_vec();
            v.sort_unstable();
            v
        } else {
            (0..n).collect()
        };
        let mut train = Vec::with_capacity(train_rows.len() * dim);
        for &r in &train_rows {
            train.extend_from_slice(&data[r * dim..(r + 1) * dim]);
        }
        let m = train_rows.len();
        let mut init = sample(&mut rng, m, nlist).into_vec();
        init.sort_unstable();
        for (c, &r) in init.iter().enumerate() {
            centroids[c * dim..(c + 1) * dim].copy_from_slice(&train[r * dim..(r + 1) * dim]);
        }
        let mut sums = vec![0f64; nlist * dim];
        let mut counts = vec![0usize; nlist];
        for _ in 0..params.iterations {
            let a = assign(&train, dim, &centroids, metric, threads);
            sums.iter_mut().for_each(|s| *s = 0.0);
            counts.iter_mut().for_each(|c| *c = 0);
            for (x, (c, _)) in train.chunks_exact(dim).zip(&a) {
                let c = *c as usize;
                counts[c] += 1;
                for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                    *s += f64::from(*v);
                }
            }
            // Empty clusters take the worst-served training points (deterministic order).
            let mut worst: Vec<usize> = (0..m).collect();
            match metric {
                Metric::CosineDistance => worst.sort_by(|&i, &j| a[i].1.total_cmp(&a[j].1).then(i.cmp(&j))),
                Metric::EuclideanSquared => worst.sort_by(|&i, &j| a[j].1.total_cmp(&a[i].1).then(i.cmp(&j))),
            }
            let mut next_worst = worst.into_iter();
            for c in 0..nlist {
                let cent = &mut centroids[c * dim..(c + 1) * dim];
                if counts[c] == 0 {
                    if let Some(r) = next_worst.next() {
                        cent.copy_from_slice(&train[r * dim..(r + 1) * dim]);
                    }
                    continue;
                }
                let inv = 1.0 / counts[c] as f64;
                for (v, s) in cent.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *v = (*s * inv) as f32;
                }
                if metric == Metric::CosineDistance {
                    normalize_in_place(cent);
                }
            }
        }
    }

    // --- Final assignment and list order.
    let assignment = if nlist > 0 { assign(&data, dim, &centroids, metric, threads) } else { Vec::new() };
    let mut offsets = vec![0u32; nlist + 1];
    for (c, _) in &assignment {
        offsets[*c as usize + 1] += 1;
    }
    for c in 0..nlist {
        offsets[c + 1] += offsets[c];
    }
    let mut fill: Vec<u32> = offsets[..nlist].to_vec();
    let mut row_ids = vec![0u32; n];
    for (row, (c, _)) in assignment.iter().enumerate() {
        let p = &mut fill[*c as usize];
        row_ids[*p as usize] = row as u32;
        *p += 1;
    }

    // --- Residuals, per-dimension scales, codes.
    let stride = dim.div_ceil(64) * 64;
    let mut maxabs = vec![0f32; dim];
    for (row, (c, _)) in assignment.iter().enumerate() {
        let x = &data[row * dim..(row + 1) * dim];
        let cent = &centroids[*c as usize * dim..(*c as usize + 1) * dim];
        for j in 0..dim {
            maxabs[j] = maxabs[j].max((x[j] - cent[j]).abs());
        }
    }
    let scales: Vec<f32> =
        maxabs.iter().map(|m| if *m > 0.0 && m.is_finite() { 127.0 / m } else { 1.0 }).collect();
    let mut codes = vec![128u8; n * stride];
    let mut norms = vec![0f32; n];
    for (pos, &row) in row_ids.iter().enumerate() {
        let row = row as usize;
        let c = assignment[row].0 as usize;
        let x = &data[row * dim..(row + 1) * dim];
        let cent = &centroids[c * dim..(c + 1) * dim];
        let out = &mut codes[pos * stride..pos * stride + dim];
        for j in 0..dim {
            let q = ((x[j] - cent[j]) * scales[j]).round().clamp(-127.0, 127.0);
            out[j] = (q as i32 + 128) as u8;
        }
        norms[pos] = norms_row[row];
    }

    // --- Serialize.
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(BLOCKS);
    blocks.push(centroids.iter().flat_map(|v| v.to_le_bytes()).collect());
    blocks.push(offsets.iter().flat_map(|v| v.to_le_bytes()).collect());
    blocks.push(row_ids.iter().flat_map(|v| v.to_le_bytes()).collect());
    blocks.push(norms.iter().flat_map(|v| v.to_le_bytes()).collect());
    blocks.push(scales.iter().flat_map(|v| v.to_le_bytes()).collect());
    blocks.push(codes);
    let mut out = vec![0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out[16] = metric_code(metric);
    out[17] = KIND_IVF_SQ8;
    out[20..24].copy_from_slice(&(dim as u32).to_le_bytes());
    out[24..28].copy_from_slice(&(n as u32).to_le_bytes());
    out[28..32].copy_from_slice(&(nlist as u32).to_le_bytes());
    out[32..36].copy_from_slice(&(stride as u32).to_le_bytes());
    out[36..40].copy_from_slice(&(default_nprobe(n, nlist) as u32).to_le_bytes());
    // Physical order: the small directory blocks (centroids, offsets, scales) first, so the
    // header and directory are one contiguous range; then ids, norms and codes.
    for i in [0usize, 1, 4, 2, 3, 5] {
        let b = &blocks[i];
        let off = out.len();
        out[64 + 16 * i..72 + 16 * i].copy_from_slice(&(off as u64).to_le_bytes());
        out[72 + 16 * i..80 + 16 * i].copy_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
        out.resize(out.len().div_ceil(64) * 64, 0);
    }
    let crc = section_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The metric of a stored metric byte (0 cosine, 1 euclidean_squared), the inverse of
/// [`metric_code`]; shared by every index section that stores one.
pub(crate) fn metric_from_code(c: u8) -> Result<Metric, IndexError> {
    match c {
        0 => Ok(Metric::CosineDistance),
        1 => Ok(Metric::EuclideanSquared),
        _ => Err(IndexError::Corrupt("unknown metric")),
    }
}

pub(crate) fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::CosineDistance => 0,
        Metric::EuclideanSquared => 1,
    }
}

fn section_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(&b[..CRC_AT]);
    crc32c::crc32c_append(c, &b[64..])
}

// ---------------------------------------------------------------------------------------------
// Open and search.

/// An opened ANN section, borrowing the section bytes (zero-copy when they are 4-byte aligned
/// on a little-endian host; otherwise the float/int blocks are decoded once at open). Cheap to
/// create from a [`SharedAnnIndex`] (no validation, no allocation beyond an `Arc` clone).
pub struct AnnIndex<'a> {
    bytes: &'a [u8],
    meta: Arc<Meta>,
    kern: &'static Kernels,
}

/// A validated section kept alive by its `Bytes` (e.g. an mmap'd segment): open once per segment,
/// cache it, and call [`SharedAnnIndex::index`] per query. `Clone`, `Send`, `Sync`.
#[derive(Clone)]
pub struct SharedAnnIndex {
    bytes: bytes::Bytes,
    meta: Arc<Meta>,
}

impl SharedAnnIndex {
    /// Opens and validates a section (crc32c included).
    pub fn open(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        let meta = Arc::new(parse(&bytes, true)?);
        Ok(SharedAnnIndex { bytes, meta })
    }
    /// As [`SharedAnnIndex::open`] without the crc check (the caller verified the bytes).
    pub fn open_trusted(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        let meta = Arc::new(parse(&bytes, false)?);
        Ok(SharedAnnIndex { bytes, meta })
    }
    /// A search view over the cached section.
    pub fn index(&self) -> AnnIndex<'_> {
        AnnIndex { bytes: &self.bytes, meta: Arc::clone(&self.meta), kern: kernels() }
    }
    /// Bytes of derived data held in memory besides the section (centroid codes, decoded blocks).
    pub fn heap_bytes(&self) -> usize {
        self.meta.heap_bytes()
    }
}

/// Validated shape of a section plus data derived at open.
struct Meta {
    metric: Metric,
    dim: usize,
    rows: usize,
    nlist: usize,
    stride: usize,
    default_nprobe: usize,
    /// Byte range of each block inside the section.
    ranges: [(usize, usize); BLOCKS],
    /// Decoded copies of the 4-byte blocks when the bytes cannot be viewed in place.
    decoded: Option<Decoded>,
    centroid_norm2: Vec<f32>,
    centroid_scales: Vec<f32>,
    centroid_codes: Vec<u8>,
}

struct Decoded {
    centroids: Vec<f32>,
    offsets: Vec<u32>,
    row_ids: Vec<u32>,
    norms: Vec<f32>,
    scales: Vec<f32>,
}

impl Meta {
    fn heap_bytes(&self) -> usize {
        let d = self.decoded.as_ref().map_or(0, |d| {
            4 * (d.centroids.len() + d.offsets.len() + d.row_ids.len() + d.norms.len() + d.scales.len())
        });
        d + 4 * (self.centroid_norm2.len() + self.centroid_scales.len()) + self.centroid_codes.len()
    }
}

/// Views 4-byte-aligned little-endian bytes as `T` (f32 or u32); None when not viewable in place.
fn view_4<T: Copy>(b: &[u8]) -> Option<&[T]> {
    debug_assert_eq!(std::mem::size_of::<T>(), 4);
    #[cfg(target_endian = "little")]
    {
        // SAFETY: only instantiated with f32 and u32 (every bit pattern valid); align_to only
        // reinterprets the aligned middle.
        let (pre, mid, post) = unsafe { b.align_to::<T>() };
        if pre.is_empty() && post.is_empty() {
            return Some(mid);
        }
    }
    let _ = b;
    None
}

pub(crate) fn rd_u32(b: &[u8], at: usize) -> Result<u32, IndexError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(IndexError::Corrupt("truncated header"))
}
pub(crate) fn rd_u64(b: &[u8], at: usize) -> Result<u64, IndexError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(IndexError::Corrupt("truncated header"))
}

/// The decoded copy if any, else the in-place view (empty if neither; callers check lengths).
fn pick<'x, T: Copy>(decoded: Option<&'x Vec<T>>, b: &'x [u8]) -> &'x [T] {
    match decoded {
        Some(v) => v,
        None => view_4(b).unwrap_or(&[]),
    }
}

pub(crate) fn decode_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
pub(crate) fn decode_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Quantizes a query for codes with per-dimension scales `scales`: returns the i8 query (padded
/// to `stride`), the bias to subtract from the raw biased-u8 dot product (128 · Σq), and the
/// factor turning the corrected integer dot product back into `q · x`.
pub(crate) fn quantize_query(q: &[f32], scales: &[f32], stride: usize) -> (Vec<i8>, i32, f32) {
    let mut qq = vec![0i8; stride];
    let mut maxq = 0f32;
    for (v, s) in q.iter().zip(scales) {
        maxq = maxq.max((v / s).abs());
    }
    let t = if maxq > 0.0 && maxq.is_finite() { 127.0 / maxq } else { 1.0 };
    let mut qsum = 0i32;
    for ((o, v), s) in qq.iter_mut().zip(q).zip(scales) {
        let x = (v / s * t).round().clamp(-127.0, 127.0) as i8;
        *o = x;
        qsum += i32::from(x);
    }
    (qq, 128 * qsum, 1.0 / t)
}

/// Per-dimension max-abs scales and biased 8-bit codes (row stride `stride`) of `rows`.
pub(crate) fn quantize_rows(rows: &[f32], dim: usize, stride: usize) -> (Vec<f32>, Vec<u8>) {
    let mut maxabs = vec![0f32; dim];
    if dim == 0 {
        return (maxabs, Vec::new());
    }
    for x in rows.chunks_exact(dim) {
        for (m, v) in maxabs.iter_mut().zip(x) {
            *m = m.max(v.abs());
        }
    }
    let scales: Vec<f32> =
        maxabs.iter().map(|m| if *m > 0.0 && m.is_finite() { 127.0 / m } else { 1.0 }).collect();
    let n = rows.len() / dim;
    let mut codes = vec![128u8; n * stride];
    for (x, out) in rows.chunks_exact(dim).zip(codes.chunks_exact_mut(stride)) {
        for ((o, v), s) in out.iter_mut().zip(x).zip(&scales) {
            *o = ((v * s).round().clamp(-127.0, 127.0) as i32 + 128) as u8;
        }
    }
    (scales, codes)
}

fn parse(bytes: &[u8], check_crc: bool) -> Result<Meta, IndexError> {
    if bytes.len() < HEADER_LEN {
        return Err(IndexError::Corrupt("shorter than the header"));
    }
    if bytes[0..8] != MAGIC {
        return Err(IndexError::Corrupt("bad magic"));
    }
    let version = rd_u32(bytes, 8)?;
    let kind = bytes[17];
    if version != VERSION || kind != KIND_IVF_SQ8 {
        return Err(IndexError::Unsupported { version, kind });
    }
    if rd_u32(bytes, 12)? as usize != HEADER_LEN {
        return Err(IndexError::Corrupt("bad header length"));
    }
    if check_crc && rd_u32(bytes, CRC_AT)? != section_crc(bytes) {
        return Err(IndexError::Checksum);
    }
    let metric = metric_from_code(bytes[16])?;
    let dim = rd_u32(bytes, 20)? as usize;
    let rows = rd_u32(bytes, 24)? as usize;
    let nlist = rd_u32(bytes, 28)? as usize;
    let stride = rd_u32(bytes, 32)? as usize;
    let default_nprobe = rd_u32(bytes, 36)? as usize;
    if stride != dim.div_ceil(64) * 64 {
        return Err(IndexError::Corrupt("bad code stride"));
    }
    if (rows > 0 && (nlist == 0 || nlist > rows || dim == 0)) || (rows == 0 && nlist != 0) {
        return Err(IndexError::Corrupt("bad list count"));
    }
    if nlist > 0 && (default_nprobe == 0 || default_nprobe > nlist) {
        return Err(IndexError::Corrupt("bad default nprobe"));
    }
    let too_big = IndexError::Corrupt("size overflow");
    let expect = [
        nlist.checked_mul(dim).and_then(|v| v.checked_mul(4)).ok_or(too_big.clone())?,
        (nlist + 1).checked_mul(4).ok_or(too_big.clone())?,
        rows.checked_mul(4).ok_or(too_big.clone())?,
        rows.checked_mul(4).ok_or(too_big.clone())?,
        dim.checked_mul(4).ok_or(too_big.clone())?,
        rows.checked_mul(stride).ok_or(too_big)?,
    ];
    let mut blk: [&[u8]; BLOCKS] = [&[]; BLOCKS];
    let mut ranges = [(0usize, 0usize); BLOCKS];
    for (i, want) in expect.iter().enumerate() {
        let off = rd_u64(bytes, 64 + 16 * i)?;
        let len = rd_u64(bytes, 72 + 16 * i)?;
        if len != *want as u64 {
            return Err(IndexError::Corrupt("block length does not match the header"));
        }
        if off % 64 != 0 || off < HEADER_LEN as u64 {
            return Err(IndexError::Corrupt("misaligned block"));
        }
        let end = off.checked_add(len).ok_or(IndexError::Corrupt("block out of bounds"))?;
        if end > bytes.len() as u64 {
            return Err(IndexError::Corrupt("block out of bounds"));
        }
        blk[i] = &bytes[off as usize..end as usize];
        ranges[i] = (off as usize, end as usize);
    }
    let in_place = view_4::<f32>(bytes).is_some() || bytes.is_empty();
    let decoded = if in_place {
        None
    } else {
        Some(Decoded {
            centroids: decode_f32(blk[0]),
            offsets: decode_u32(blk[1]),
            row_ids: decode_u32(blk[2]),
            norms: decode_f32(blk[3]),
            scales: decode_f32(blk[4]),
        })
    };
    let centroids = pick(decoded.as_ref().map(|d| &d.centroids), blk[0]);
    let offsets = pick(decoded.as_ref().map(|d| &d.offsets), blk[1]);
    let row_ids = pick(decoded.as_ref().map(|d| &d.row_ids), blk[2]);
    let norms = pick(decoded.as_ref().map(|d| &d.norms), blk[3]);
    let scales = pick(decoded.as_ref().map(|d| &d.scales), blk[4]);
    if centroids.len() * 4 != blk[0].len()
        || offsets.len() * 4 != blk[1].len()
        || row_ids.len() * 4 != blk[2].len()
        || norms.len() * 4 != blk[3].len()
        || scales.len() * 4 != blk[4].len()
    {
        return Err(IndexError::Corrupt("unaligned block"));
    }
    if !centroids.iter().all(|v| v.is_finite()) {
        return Err(IndexError::Corrupt("non-finite centroid"));
    }
    if !scales.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(IndexError::Corrupt("bad code scale"));
    }
    if !norms.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return Err(IndexError::Corrupt("bad row norm"));
    }
    if offsets.first() != Some(&0)
        || offsets.last().map(|v| *v as usize) != Some(rows)
        || offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(IndexError::Corrupt("bad list offsets"));
    }
    let mut seen = vec![false; rows];
    for r in row_ids.iter() {
        match seen.get_mut(*r as usize) {
            Some(s) if !*s => *s = true,
            _ => return Err(IndexError::Corrupt("row ids are not a permutation")),
        }
    }
    let centroid_norm2 = if metric == Metric::EuclideanSquared && dim > 0 {
        centroids.chunks_exact(dim).map(|c| distance::det_dot(c, c)).collect()
    } else {
        Vec::new()
    };
    let (centroid_scales, centroid_codes) = quantize_rows(centroids, dim, stride);
    Ok(Meta {
        metric,
        dim,
        rows,
        nlist,
        stride,
        default_nprobe,
        ranges,
        decoded,
        centroid_norm2,
        centroid_scales,
        centroid_codes,
    })
}

impl<'a> AnnIndex<'a> {
    /// Opens a section, verifying its crc32c and structure.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Ok(AnnIndex { bytes, meta: Arc::new(parse(bytes, true)?), kern: kernels() })
    }

    /// Opens a section whose bytes were already checksummed by the caller (e.g. the segment's
    /// section crc); every structural check still runs.
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Ok(AnnIndex { bytes, meta: Arc::new(parse(bytes, false)?), kern: kernels() })
    }

    fn block(&self, i: usize) -> &'a [u8] {
        let (a, b) = self.meta.ranges[i];
        self.bytes.get(a..b).unwrap_or(&[])
    }
    fn centroids(&self) -> &[f32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.centroids), self.block(0))
    }
    fn offsets(&self) -> &[u32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.offsets), self.block(1))
    }
    fn row_ids(&self) -> &[u32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.row_ids), self.block(2))
    }
    fn norms(&self) -> &[f32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.norms), self.block(3))
    }
    fn scales(&self) -> &[f32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.scales), self.block(4))
    }
    fn codes(&self) -> &'a [u8] {
        self.block(5)
    }

    /// The IVF directory: centroids (nlist × dim; cosine: unit length), list offsets
    /// (nlist + 1) and the row of each list position (lists in centroid order, rows ascending
    /// within a list). The cold-read section ([`super::coldivf`]) is built from it.
    pub fn directory(&self) -> (&[f32], &[u32], &[u32]) {
        (self.centroids(), self.offsets(), self.row_ids())
    }

    /// Distance metric the index was built for.
    pub fn metric(&self) -> Metric {
        self.meta.metric
    }
    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.meta.dim
    }
    /// Indexed rows.
    pub fn rows(&self) -> usize {
        self.meta.rows
    }
    /// Number of clusters.
    pub fn nlist(&self) -> usize {
        self.meta.nlist
    }
    /// Clusters probed by an unfiltered search with `nprobe = 0`.
    pub fn default_nprobe(&self) -> usize {
        self.meta.default_nprobe
    }
    /// Rows in cluster `c` (0 when out of range).
    pub fn list_len(&self, c: usize) -> usize {
        match (self.offsets().get(c), self.offsets().get(c + 1)) {
            (Some(a), Some(b)) => (*b - *a) as usize,
            _ => 0,
        }
    }

    /// Approximate k nearest rows (see the module docs for the filtered strategy). `vectors` is
    /// the segment's rows × dim in row order; results are (row, exact distance) sorted by
    /// (distance, row).
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &SearchParams,
    ) -> Vec<(u32, f32)> {
        if k == 0 || query.len() != self.meta.dim || self.meta.rows == 0 {
            return Vec::new();
        }
        if vectors.len() != self.meta.rows * self.meta.dim {
            return exact_with(self.kern, vectors, self.meta.dim, self.meta.metric, query, k, filter);
        }
        let mut est_matches = self.meta.rows;
        if let Some(f) = filter {
            est_matches = match params.filter_estimate {
                Some(e) => e as usize,
                None => self.estimate_matches(f),
            };
            if est_matches <= params.exact_threshold as usize {
                return exact_with(self.kern, vectors, self.meta.dim, self.meta.metric, query, k, filter);
            }
        }
        let kern = self.kern;
        let dim = self.meta.dim;
        // Query in index space.
        let qnorm = kern.dot(query, query).sqrt();
        let qn: Cow<[f32]> = match self.meta.metric {
            Metric::CosineDistance => {
                if !(qnorm > 0.0 && qnorm.is_finite()) {
                    return exact_with(kern, vectors, dim, self.meta.metric, query, k, filter);
                }
                Cow::Owned(query.iter().map(|v| v / qnorm).collect())
            }
            Metric::EuclideanSquared => Cow::Borrowed(query),
        };
        // Centroid ranking (smaller is better) from 8-bit centroid codes; the exact q·c of a
        // probed cluster is computed when it is scanned.
        let (cq, cbias, cinv) = quantize_query(&qn, &self.meta.centroid_scales, self.meta.stride);
        let mut craw = vec![0i32; self.meta.nlist];
        kern.u8i8_batch(&cq, &self.meta.centroid_codes, &mut craw);
        let cdot: Vec<f32> = craw.iter().map(|r| (*r - cbias) as f32 * cinv).collect();
        let mut order: Vec<(f32, u32)> = match self.meta.metric {
            Metric::CosineDistance => cdot.iter().enumerate().map(|(c, s)| (-*s, c as u32)).collect(),
            Metric::EuclideanSquared => cdot
                .iter()
                .zip(&self.meta.centroid_norm2)
                .enumerate()
                .map(|(c, (s, n2))| (n2 - 2.0 * s, c as u32))
                .collect(),
        };
        let nprobe = if params.nprobe == 0 { self.meta.default_nprobe } else { params.nprobe as usize }
            .clamp(1, self.meta.nlist);
        let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if filter.is_none() && nprobe < self.meta.nlist {
            order.select_nth_unstable_by(nprobe - 1, cmp);
            order.truncate(nprobe);
        }
        order.sort_unstable_by(cmp);
        let (qq, bias, inv_t) = quantize_query(&qn, self.scales(), self.meta.stride);
        let r = (params.rerank as usize).max(2 * k);
        let mut cands = TopK::new(r);
        // Filtered stop rule: the rows an unfiltered search would scan, times √selectivity
        // (a selective filter's k-th match is farther away, so a larger share of the matching
        // rows must be scored), at least the rerank depth.
        let target = if params.filter_min_scored == 0 {
            let scan = (nprobe * self.meta.rows).div_ceil(self.meta.nlist) as f64;
            let sel = (est_matches as f64 / self.meta.rows as f64).clamp(0.0, 1.0);
            ((scan * sel.sqrt()).ceil() as usize).max(r)
        } else {
            params.filter_min_scored as usize
        };
        let mut raw = Vec::new();
        let mut scored = 0usize;
        for (oi, &(_, c)) in order.iter().enumerate() {
            if let Some(&(_, nc)) = order.get(oi + 1) {
                let na = self.offsets()[nc as usize] as usize * self.meta.stride;
                let nb = self.offsets()[nc as usize + 1] as usize * self.meta.stride;
                distance::prefetch(&self.codes()[na..nb], 4 * self.meta.stride);
            }
            let (a, b) = (self.offsets()[c as usize] as usize, self.offsets()[c as usize + 1] as usize);
            if a == b {
                continue;
            }
            raw.resize(b - a, 0i32);
            let base = kern.dot(&qn, &self.centroids()[c as usize * dim..(c as usize + 1) * dim]);
            let ids = &self.row_ids()[a..b];
            let norms = &self.norms()[a..b];
            match filter {
                None => {
                    kern.u8i8_batch(&qq, &self.codes()[a * self.meta.stride..b * self.meta.stride], &mut raw);
                    for (i, d) in raw.iter().enumerate() {
                        let ip = base + (*d - bias) as f32 * inv_t;
                        let est = match self.meta.metric {
                            Metric::CosineDistance => -ip,
                            Metric::EuclideanSquared => norms[i] - 2.0 * ip,
                        };
                        cands.push(est, (a + i) as u32);
                    }
                }
                Some(f) => {
                    for (i, row) in ids.iter().enumerate() {
                        if !f(*row) {
                            continue;
                        }
                        let p = a + i;
                        let d =
                            kern.u8i8(&qq, &self.codes()[p * self.meta.stride..(p + 1) * self.meta.stride]);
                        let ip = base + (d - bias) as f32 * inv_t;
                        let est = match self.meta.metric {
                            Metric::CosineDistance => -ip,
                            Metric::EuclideanSquared => norms[i] - 2.0 * ip,
                        };
                        cands.push(est, p as u32);
                        scored += 1;
                    }
                    if scored >= target {
                        break;
                    }
                }
            }
        }
        // Exact rerank.
        let mut top = TopK::new(k);
        for (p, _) in cands.sorted() {
            let p = p as usize;
            let row = self.row_ids()[p] as usize;
            let x = &vectors[row * dim..(row + 1) * dim];
            let d = match self.meta.metric {
                Metric::CosineDistance => cosine_with_norms(kern.dot(query, x), qnorm, self.norms()[p]),
                Metric::EuclideanSquared => kern.euclidean_squared(query, x),
            };
            top.push(d, row as u32);
        }
        top.sorted()
    }

    /// Estimated rows matching `filter`: evaluates it on up to 256 evenly spaced rows.
    pub fn estimate_matches(&self, filter: &dyn Fn(u32) -> bool) -> usize {
        if self.meta.rows == 0 {
            return 0;
        }
        let samples = self.meta.rows.min(256);
        let hits = (0..samples).filter(|i| filter((i * self.meta.rows / samples) as u32)).count();
        (hits * self.meta.rows).div_ceil(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::Rng;

    fn gauss(rng: &mut StdRng) -> f32 {
        let u1: f64 = rng.random_range(1e-12..1.0);
        let u2: f64 = rng.random();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// `n` rows around `centers` gaussian blobs (spread `sigma`), fixed seed.
    fn blobs(seed: u64, n: usize, dim: usize, centers: usize, sigma: f32) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let c: Vec<f32> = (0..centers * dim).map(|_| gauss(&mut rng)).collect();
        let mut v = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let k = rng.random_range(0..centers);
            for j in 0..dim {
                v.push(c[k * dim + j] + sigma * gauss(&mut rng));
            }
        }
        v
    }

    fn reference(
        vectors: &[f32],
        dim: usize,
        metric: Metric,
        q: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<(u32, f64)> {
        let mut all: Vec<(u32, f64)> = vectors
            .chunks_exact(dim)
            .enumerate()
            .filter(|(r, _)| filter.is_none_or(|f| f(*r as u32)))
            .map(|(r, x)| {
                let d = match metric {
                    Metric::CosineDistance => {
                        let dot: f64 = q.iter().zip(x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                        let qq: f64 = q.iter().map(|a| f64::from(*a).powi(2)).sum();
                        let xx: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
                        if qq == 0.0 || xx == 0.0 {
                            1.0
                        } else {
                            1.0 - dot / (qq.sqrt() * xx.sqrt())
                        }
                    }
                    Metric::EuclideanSquared => {
                        q.iter().zip(x).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum()
                    }
                };
                (r as u32, d)
            })
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    /// Tie-aware recall: a hit when the returned distance ≤ the reference k-th distance + tol.
    fn recall(got: &[(u32, f32)], want: &[(u32, f64)], tol: f64) -> f64 {
        if want.is_empty() {
            return 1.0;
        }
        let kth = want[want.len() - 1].1;
        got.iter().take(want.len()).filter(|(_, d)| f64::from(*d) <= kth + tol).count() as f64
            / want.len() as f64
    }

    const METRICS: [Metric; 2] = [Metric::CosineDistance, Metric::EuclideanSquared];

    /// Small k-means budget: these tests also run unoptimised.
    fn test_params() -> AnnParams {
        AnnParams { nlist: 64, iterations: 5, ..AnnParams::default() }
    }

    #[test]
    fn exact_equals_brute_force_reference() {
        let dim = 17;
        let mut rng = StdRng::seed_from_u64(1);
        let vectors: Vec<f32> = (0..400 * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let even = |r: u32| r.is_multiple_of(3);
        for metric in METRICS {
            for qi in 0..20 {
                let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let filters: [Option<&dyn Fn(u32) -> bool>; 2] = [None, Some(&even)];
                for filter in filters {
                    let got = exact(&vectors, dim, metric, &q, 15, filter);
                    let want = reference(&vectors, dim, metric, &q, 15, filter);
                    assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(&want) {
                        assert!((f64::from(g.1) - w.1).abs() < 1e-4, "{metric:?} q{qi}: {g:?} vs {w:?}");
                        if let Some(f) = filter {
                            assert!(f(g.0));
                        }
                    }
                    assert_eq!(recall(&got, &want, 1e-5), 1.0);
                    // Rows are distinct and sorted by (distance, row).
                    assert!(got.windows(2).all(|w| (w[0].1, w[0].0) < (w[1].1, w[1].0)));
                }
            }
        }
    }

    #[test]
    fn ann_recall_on_clustered_blobs_above_floor() {
        let (n, dim) = (5000, 32);
        let vectors = blobs(42, n, dim, 40, 0.6);
        let queries = blobs(43, 50, dim, 40, 0.6);
        for metric in METRICS {
            let bytes = build(&vectors, dim, metric, &test_params());
            let idx = AnnIndex::open(&bytes).expect("open");
            assert_eq!((idx.rows(), idx.dim(), idx.metric(), idx.nlist()), (n, dim, metric, 64));
            let mut total = 0.0;
            for q in queries.chunks_exact(dim) {
                let got = idx.search(&vectors, q, 10, None, &SearchParams::default());
                assert_eq!(got.len(), 10);
                total += recall(&got, &reference(&vectors, dim, metric, q, 10, None), 1e-4);
            }
            let r = total / 50.0;
            assert!(r >= 0.9, "{metric:?}: recall {r}");
        }
    }

    #[test]
    fn filtered_ann_at_one_percent_keeps_recall() {
        let (n, dim) = (5000, 32);
        let vectors = blobs(7, n, dim, 40, 0.6);
        let queries = blobs(8, 40, dim, 40, 0.6);
        // ~1% of rows, scattered.
        let keep: Vec<bool> = (0..n).map(|r| (r * 7919) % 100 == 3).collect();
        let f = |r: u32| keep[r as usize];
        for metric in METRICS {
            let bytes = build(&vectors, dim, metric, &test_params());
            let idx = AnnIndex::open(&bytes).expect("open");
            let forced = SearchParams { exact_threshold: 0, ..SearchParams::default() };
            let (mut r_forced, mut r_default) = (0.0, 0.0);
            for q in queries.chunks_exact(dim) {
                let want = exact(&vectors, dim, metric, q, 10, Some(&f));
                let want64: Vec<(u32, f64)> = want.iter().map(|(r, d)| (*r, f64::from(*d))).collect();
                let got = idx.search(&vectors, q, 10, Some(&f), &forced);
                assert!(got.iter().all(|(r, _)| f(*r)));
                r_forced += recall(&got, &want64, 1e-5);
                // Default settings: 50 matching rows is below the exact threshold → exact.
                let got = idx.search(&vectors, q, 10, Some(&f), &SearchParams::default());
                assert_eq!(got, want);
                r_default += recall(&got, &want64, 1e-5);
            }
            assert!(r_forced / 40.0 >= 0.9, "{metric:?}: forced ivf filtered recall {}", r_forced / 40.0);
            assert_eq!(r_default / 40.0, 1.0);
            // A caller estimate overrides sampling: a large estimate forces the probing path.
            let sp = SearchParams { filter_estimate: Some(5000), ..SearchParams::default() };
            let got = idx.search(&vectors, &queries[..dim], 10, Some(&f), &sp);
            assert!(got.iter().all(|(r, _)| f(*r)) && !got.is_empty());
        }
    }

    #[test]
    fn build_is_deterministic_and_thread_independent() {
        let vectors = blobs(3, 1500, 24, 10, 0.5);
        for metric in METRICS {
            let a = build(&vectors, 24, metric, &test_params());
            let b = build(&vectors, 24, metric, &AnnParams { threads: 3, ..test_params() });
            assert_eq!(a, b);
        }
    }

    #[test]
    fn corrupt_sections_are_errors_not_panics() {
        let vectors = blobs(5, 300, 8, 5, 0.5);
        let bytes = build(&vectors, 8, Metric::CosineDistance, &AnnParams::default());
        assert!(AnnIndex::open(&bytes).is_ok());
        // Truncation at every length.
        for len in 0..bytes.len() {
            assert!(AnnIndex::open(&bytes[..len]).is_err(), "truncated to {len}");
        }
        // Any single flipped byte fails the crc.
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let mut b = bytes.clone();
            let i = rng.random_range(0..b.len());
            b[i] ^= 1 << rng.random_range(0..8);
            assert!(AnnIndex::open(&b).is_err());
        }
        // Structural corruption with a valid crc (or crc skipped) must not panic, and an index
        // that opens must search safely.
        for _ in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = if rng.random_bool(0.5) {
                    rng.random_range(0..HEADER_LEN)
                } else {
                    rng.random_range(0..b.len())
                };
                b[i] = rng.random();
            }
            let crc = section_crc(&b);
            b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
            for idx in [AnnIndex::open(&b), AnnIndex::open_trusted(&b)].into_iter().flatten() {
                let q = &vectors[..8];
                let _ = idx.search(&vectors, q, 5, None, &SearchParams::default());
                let all = |_: u32| true;
                let _ = idx.search(
                    &vectors,
                    q,
                    5,
                    Some(&all),
                    &SearchParams { exact_threshold: 0, ..SearchParams::default() },
                );
            }
        }
        assert_eq!(AnnIndex::open(b"TPANNIVF").err(), Some(IndexError::Corrupt("shorter than the header")));
        let mut b = bytes.clone();
        b[8] = 9;
        assert!(matches!(AnnIndex::open(&b), Err(IndexError::Unsupported { version: 9, .. })));
    }

    #[test]
    fn tiny_inputs_and_edge_cases() {
        for metric in METRICS {
            for n in [0usize, 1, 2, 3] {
                let dim = 3;
                let vectors: Vec<f32> = (0..n * dim).map(|i| i as f32 + 1.0).collect();
                let bytes = build(&vectors, dim, metric, &AnnParams::default());
                let idx = AnnIndex::open(&bytes).expect("open");
                assert_eq!(idx.rows(), n);
                let q = [1.0, 2.0, 3.5];
                let got = idx.search(&vectors, &q, 10, None, &SearchParams::default());
                let want = exact(&vectors, dim, metric, &q, 10, None);
                assert_eq!(got.len(), n, "k > rows returns every row");
                assert_eq!(
                    got.iter().map(|x| x.0).collect::<Vec<_>>(),
                    want.iter().map(|x| x.0).collect::<Vec<_>>()
                );
                assert!(idx.search(&vectors, &q, 0, None, &SearchParams::default()).is_empty());
                assert!(idx.search(&vectors, &q[..2], 5, None, &SearchParams::default()).is_empty());
                let none = |_: u32| false;
                assert!(idx.search(&vectors, &q, 5, Some(&none), &SearchParams::default()).is_empty());
            }
            // dim 0 and a ragged tail.
            let bytes = build(&[1.0, 2.0], 0, metric, &AnnParams::default());
            assert_eq!(AnnIndex::open(&bytes).expect("open").rows(), 0);
            let bytes = build(&[1.0, 2.0, 3.0], 2, metric, &AnnParams::default());
            assert_eq!(AnnIndex::open(&bytes).expect("open").rows(), 1);
            assert!(exact(&[], 0, metric, &[], 3, None).is_empty());
        }
    }

    #[test]
    fn zero_and_mismatched_inputs() {
        let dim = 8;
        let vectors = blobs(9, 500, dim, 5, 0.5);
        let bytes = build(&vectors, dim, Metric::CosineDistance, &AnnParams::default());
        let idx = AnnIndex::open(&bytes).expect("open");
        // A zero query has cosine distance 1 to everything: rows 0..k.
        let got = idx.search(&vectors, &[0.0; 8], 3, None, &SearchParams::default());
        assert_eq!(got, vec![(0, 1.0), (1, 1.0), (2, 1.0)]);
        // A vectors slice of the wrong shape falls back to exact search over it.
        let short = &vectors[..100 * dim];
        let q = &vectors[5 * dim..6 * dim];
        assert_eq!(
            idx.search(short, q, 4, None, &SearchParams::default()),
            exact(short, dim, Metric::CosineDistance, q, 4, None)
        );
        // Unaligned section bytes still open (decoded copies instead of borrowed views).
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let idx2 = AnnIndex::open(&shifted[1..]).expect("open unaligned");
        // The shared (cached) form searches identically and is cheap to view.
        let shared = SharedAnnIndex::open(bytes::Bytes::from(bytes.clone())).expect("shared");
        assert!(SharedAnnIndex::open(bytes::Bytes::from(shifted[..bytes.len()].to_vec())).is_err());
        assert_eq!(
            shared.index().search(&vectors, q, 5, None, &SearchParams::default()),
            idx.search(&vectors, q, 5, None, &SearchParams::default())
        );
        assert!(shared.heap_bytes() > 0);
        assert_eq!(
            idx2.search(&vectors, q, 5, None, &SearchParams::default()),
            idx.search(&vectors, q, 5, None, &SearchParams::default())
        );
    }
}
