//! Warm-path graph index of one segment's dense vectors (section kind 20): a single-layer
//! proximity graph (HNSW layer 0 built by incremental insertion with the HNSW neighbour-selection
//! heuristic) of fixed degree, bit-packed neighbour ids (version 4; u32 before), greedy beam search over 8-bit codes (or, version
//! 3, compact RaBitQ codes) and an
//! exact f32 rerank of the best candidates from the segment's own vectors. Built at compaction
//! ([`build`]) next to the IVF section (which stays the index for narrow filters and cold reads);
//! served zero-copy from the section bytes ([`GraphIndex::open`]).
//!
//! Section layout of version 2 (little-endian; blocks start on 64-byte boundaries of the
//! section; versions 2 and 3 are still read, version 4 below is what builds write):
//!
//! ```text
//! 0   magic "TPGRAPH0"   8 version u32 (=2)   12 header_len u32 (=128; version 1: 64)
//! 16  metric u8 (0 cosine, 1 euclidean_squared)   17 reserved 3 bytes (0)
//! 20  dim u32   24 rows u32   28 degree u32   32 code_stride u32 (dim rounded up to 64)
//! 36  entry u32 (start row of every search)   40 default_ef u32   44 reserved 12 bytes (0)
//! 56  crc32c u32 of bytes [0, 56) ++ [64, len)   60 reserved u32 (0)
//! 64  calibration record, 48 bytes (version 2; `calibrate` module: measured recall per ef)
//! 112 reserved 16 bytes (0)
//! 128 scales    f32 [dim]                 per-dimension code scale
//!     mean      f32 [dim]                 m: mean of the indexed vectors (version 2 only)
//!     norms2    f32 [rows]                |x − m|² of the indexed vector (cosine: unit-normalised)
//!     neighbors u32 [rows × degree]       neighbour rows, unused slots u32::MAX (trailing)
//!     codes     u8  [rows × code_stride]  round((x_j − m_j) · s_j) + 128, padding 128
//! ```
//! Block offsets follow from the header (each block padded to 64 bytes); the section length must
//! equal the end of the codes block. Version 1 (64-byte header, no mean block, uncentred codes,
//! no calibration) still opens: it is searched as if `m` = 0 with its stored `default_ef`.
//!
//! Version 3 (compact traversal codes, [`GraphCode::RaBitQ`], until version 4):
//!
//! ```text
//! header as version 2, except: 8 version u32 (=3)   17 code kind u8 (1 = RaBitQ)
//! 18 code bits u8 (1..=8)   19 query bits u8 (= min(bits + 3, 8))   32 code_stride = P (dim
//! rounded up to 64)   44 rotation seed u64   52 record_len u32   (64: calibration, ladder
//! PLANES_LADDER)
//! 128 mean      f32 [dim]
//!     neighbors u32 [rows × degree]
//!     records   [rows × record_len]: bits planes of P/8 bytes (bit j % 8 of byte j / 8 of
//!               plane b = bit b of u_j), then |r|², a, su (f32), zero padding to record_len
//! ```
//! `r` = rotation(x − m) (see the `rabitq` module). The links are the version-2 build's (made
//! over temporary 8-bit codes, then dropped): only what the traversal reads changes, and the
//! exact rerank from the full vectors is the same.
//!
//! Version 4 (what every build writes, either code kind; `storage-format.md` 11.5):
//!
//! ```text
//! header as version 3, except: 8 version u32 (=4)   12 header_len u32 (=192)   17 code kind u8
//! (0 = 8-bit: 18 bits = 8, 19 query bits = 8, 44 seed = 0, 52 record_len = code_stride;
//! 1 = RaBitQ as version 3)   60 reserved u32 (0)   64 wide calibration record, 88 bytes (up to 12
//! rungs: EF_LADDER / PLANES_LADDER)   152 reserved 40 bytes (0)
//! 192 scales    f32 [dim]       8-bit codes only
//!     mean      f32 [dim]
//!     norms2    f32 [rows]      8-bit codes only
//!     links     [rows × L] + 8 zero bytes: L = ceil(degree × w / 8), w = bit length of rows;
//!               slot i of a list in bits [i·w, (i+1)·w), LSB first; unused slots = rows (trailing)
//!     codes     u8 [rows × code_stride] (8-bit) or records [rows × record_len] (RaBitQ)
//! ```
//! Version 5 (what builds write for RaBitQ codes): version 4 with code kind 1 only, 8 version
//! u32 (=5) and records of `rabitq::record_len_tight` bytes (codes and factors, no padding to
//! 16): 204 bytes a row instead of 208 at 4 bits and 384 dimensions. 8-bit sections stay
//! version 4, byte for byte.
//!
//! The packed ids are the lists of versions 2 and 3 (the graph is built alike; [`downgrade`]
//! writes the older layout of the same graph): 20 bits an id at 1M rows, 48 bytes a row less
//! than u32 ids. A list is unpacked with one unaligned 8-byte load a slot (the trailing zero
//! bytes keep the last list's loads inside the block).
//!
//! Centred codes: the graph works on `x − m`. Squared L2 is translation invariant (and cosine
//! on unit rows is half of it), so every distance is unchanged, but a component all rows share
//! (a narrow cone) no longer spends the 8-bit range of its dimension: the codes resolve the
//! spread between rows, not their common offset.
//!
//! Invariants:
//! - Rows are segment rows; the caller's `vectors` slice is rows × dim in row order.
//! - [`build`] is deterministic: fixed seed for the insertion order, integer (exact) code dot
//!   products for every build-time distance, so the same input gives the same bytes on every CPU
//!   and for every thread count ([`GraphParams::threads`]; see "Parallel linking").
//! - [`GraphIndex::open`] checks magic, version, crc32c (unless `open_trusted`), every length
//!   (checked arithmetic), that every neighbour id is < rows or the padding value (version 4:
//!   every packed id ≤ rows, the bytes after the lists zero), reserved header bytes (version 4)
//!   and that floats are finite; bad bytes give [`IndexError`], never a panic.
//! - Search never ranks by quantized scores alone: the best `max(rerank, rerank_floor(k))`
//!   candidates (2k; min(2k, 10) for k ≤ 10, the calibrated recall@10's own search) are
//!   re-scored with exact f32 distances; results are sorted by (distance, row), at most k, no
//!   duplicate rows. A query of the wrong dimension gives no results; a `vectors` slice that does
//!   not match the index shape falls back to [`super::ann::exact`].
//! - A search starts from the entry and from one seed row per 512 rows (at most 64, chosen by
//!   farthest point among 8× as many evenly spaced rows by their codes: the `seeds` module), all
//!   derived from the section's bytes, so a section's calibration and its queries walk alike.
//!   One layer has no upper layers to bring a narrow beam near its answer; from the entry
//!   alone it settled in the wrong cluster (0.906 recall@10 at ef 24 on the 64-cluster
//!   benchmark set, 0.945 with the seeds; BENCHMARKS "stop 46").
//! - With a filter, the traversal visits every row but only matching rows enter the result list
//!   (suited to wide filters; callers route narrow filters to the IVF index or exact search).
//! - [`build`] calibrates: the stored record gives the recall@10 measured at each ef of
//!   [`EF_LADDER`] ([`PLANES_LADDER`]) on a sample of the segment's own rows and of rows
//!   perturbed by [`GraphParams::perturb`] × their 10th-neighbour radius; [`GraphIndex::effort`] turns a target
//!   recall into an ef, or into `None` (search exactly) when no measured ef reaches it.
//! - [`GraphIndex::search_escalating`] checks its answer against the record's reach (how far out
//!   the calibration's queries had their 10th row): a query whose 10th row lies beyond it was
//!   not measured by any rung and is searched again at [`escalated_ef`] (4× the ef, at most 256);
//!   within the reach its answer is the plain search's, bit for bit.

//!
//! Parallel linking: the first [`build::SEQUENTIAL`] rows of the insertion order are inserted one
//! at a time (HNSW layer 0). The rest go in batches of at most 1/[`build::BATCH_FRACTION`] of the
//! rows already inserted (and at most [`build::MAX_BATCH`]): every row of a batch searches the
//! graph as frozen at the batch start and selects its neighbours (in parallel, read-only); then
//! the batch's rows get their links, and the reverse links are applied grouped by target row,
//! each target taking its new in-links in insertion order (targets in parallel: each one's
//! update reads and writes only its own list). Batch bounds depend only on the row count, so
//! the result is the same for any thread count. Rows of one batch do not link to each other
//! directly; batches small against the graph keep that loss negligible. A list takes in-links
//! up to [`build::SLACK_TENTHS`]/10 × degree before the heuristic prunes it back to the degree
//! (most of the build's work was one prune per in-link of a full list); lists still over the
//! degree after the last batch are pruned at the end, so a stored list never exceeds it.
//!
//! Code map: [`build`] (`build.rs`: codes, parallel linking, compact records, calibration),
//! [`GraphIndex`] (`search.rs`: open, validate, search over either code kind), the beam both
//! walk with (`beam.rs`) and where searches start (`seeds.rs`).

use super::calibrate;
use super::splitmix;

mod beam;
mod build;
mod search;
mod seeds;

pub use build::{build, build_over, downgrade};
pub use search::{escalated_ef, rerank_floor, GraphIndex, ESCALATED_EF, ESCALATION};

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPGRAPH0";
/// Section version with either code kind (code-kind byte), bit-packed neighbour ids and the
/// wide calibration record: what builds write for 8-bit codes (and wrote for RaBitQ codes
/// until version 5; still read).
pub const VERSION: u32 = 4;
/// Version 4 with RaBitQ codes whose records take their tight length (`rabitq::record_len_tight`:
/// no padding to 16 bytes, 4 bytes a row less at 4 bits and 384 dimensions): what builds write
/// for RaBitQ codes since issue 36 item 4. Code kind 1 only.
pub const VERSION_TIGHT: u32 = 5;
/// Sections with 8-bit codes and u32 links (written until version 4; still read).
pub const VERSION_SQ8: u32 = 2;
/// Sections with RaBitQ codes and u32 links (written until version 4; still read).
pub const VERSION_RABITQ: u32 = 3;
/// Code kind byte (version 4): centred 8-bit codes.
const KIND_SQ8: u8 = 0;
/// Code kind byte (versions 3 and 4): RaBitQ bit-plane codes.
const KIND_RABITQ: u8 = 1;
/// Where versions 3 and 4 store the rotation seed (u64) and record length (u32).
const SEED_AT: usize = 44;
const RECORD_AT: usize = 52;
/// Header length of versions 2 and 3.
const HEADER_LEN: usize = 128;
/// Header length of version 4 (room for the wide calibration record).
const HEADER_LEN_V4: usize = 192;
/// Zero bytes after the last packed neighbour list (a list is unpacked with 8-byte loads).
const LINK_SLACK: usize = 8;
/// Header length of version 1 sections (no calibration, no mean block).
const HEADER_LEN_V1: usize = 64;
/// Where the calibration record sits (version 2).
const CALIB_AT: usize = 64;
/// Beam widths measured at build time (rerank = ef), cheapest first. From version 4 (the wide
/// record) the ladder steps by 8 up to 48: with 24, 40, 64 the pick jumped to 64 where held-out
/// queries reached 0.95 at 32–48 (BENCHMARKS "stop 48", "stop 49"). Since stop 50 it starts at
/// 10: a calibration query is a k = [`calibrate::K`] search, whose rerank floor is K
/// ([`rerank_floor`]), so a rung of 10 is measured and served alike (hnswlib reaches 0.95 at ef
/// 10 on 8-d uniform and near-copy data; our floor of 2k held those at 20). The rungs under 20
/// never end the ladder ([`calibrate::FULL_RERANK`]).
pub const EF_LADDER: [u32; 11] = [10, 12, 16, 22, 32, 40, 48, 64, 100, 160, 256];
/// The ladder version-4 sections were built with from stop 49 to stop 50 (their records' rungs).
pub const EF_LADDER_V4: [u32; 8] = [22, 32, 40, 48, 64, 100, 160, 256];
/// The ladder of compact-code sections (rerank = ef: a wider beam is also a deeper rerank): the
/// same rungs, up to 256: a 4-bit section that needs 400 (i.i.d. Gaussian) is slower than the
/// IVF the calibration then routes to.
pub const PLANES_LADDER: [u32; 11] = EF_LADDER;
/// Version-2 sections' ladder (the 48-byte record's six rungs).
pub const EF_LADDER_V2: [u32; calibrate::MAX_RUNGS] = [24, 40, 64, 100, 160, 256];
/// Version-3 sections' ladder.
pub const PLANES_LADDER_V3: [u32; calibrate::MAX_RUNGS] = [32, 48, 64, 100, 160, 256];

/// The codes the beam search traverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphCode {
    /// Centred 8-bit codes, one byte per dimension (version-2 sections, and version 4 code kind 0).
    Sq8,
    /// Rotated `bits`-bit RaBitQ codes (1..=8 bits per dimension, `rabitq` module; version 3, and version 4 code kind 1).
    RaBitQ {
        /// Bits per dimension.
        bits: u32,
    },
}
const CRC_AT: usize = 56;
const NONE: u32 = u32::MAX;

/// Build parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphParams {
    /// Maximum out-degree (fixed slots per row).
    pub degree: u32,
    /// Beam width while inserting.
    pub ef_construction: u32,
    /// Seed of the insertion order.
    pub seed: u64,
    /// Beam width stored as the search default when calibration cannot run (tiny segments).
    pub default_ef: u32,
    /// Centre the codes on the mean (always, except to measure what centring buys).
    pub centred: bool,
    /// Threads linking the graph (and coding the rows); the output bytes do not depend on it.
    pub threads: u32,
    /// Traversal codes stored in the section (the linking always uses 8-bit codes).
    pub code: GraphCode,
    /// The calibration's perturbed queries sit this share of their row's 10th-neighbour
    /// radius off it ([`DEFAULT_PERTURB`]; the IVF's calibration uses `calibrate::PERTURB`).
    pub perturb: f32,
}

/// The graph calibration's perturbation scale (see [`GraphParams::perturb`]): the IVF's
/// (`calibrate::PERTURB`). From stop 50 to stop 70 graph builds measured at 0.5: at 1.0 the
/// perturbed kind's lower bound picked ef 64 where held-out queries reached 0.95 at 32–48 on the
/// clustered and histogram sets. With seeds by farthest point (the `seeds` module) both scales
/// pick the same rungs there (22 and 32), and 0.5 overstated the narrow rungs on near-copy data
/// by up to 0.03 against queries from outside the copy groups (`calibrate::tests::
/// near_copies_do_not_inflate_the_stored_recall`; BENCHMARKS "Seeds by farthest point").
pub const DEFAULT_PERTURB: f32 = 1.0;

/// The code a build gets when its caller names none: the 8-bit codes (a version-4 section of code kind 0). 4-bit
/// RaBitQ (BENCHMARKS "Compact graph codes") takes 208 bytes a row instead of 388 at 384
/// dimensions with about the same recall per beam width, but measured 7–24 % fewer QPS where the
/// codes fit in cache (30k rows). Compaction chooses per round by the memory budget
/// (`graph_codes = "auto"`, `engine::budget`): these codes while the namespace fits a quarter of
/// it with them, 4-bit RaBitQ past it.
pub const DEFAULT_CODE: GraphCode = GraphCode::Sq8;

/// Most threads a build uses by default.
pub const MAX_DEFAULT_THREADS: u32 = 8;

/// The default build thread count: the available parallelism, at most [`MAX_DEFAULT_THREADS`].
pub fn default_threads() -> u32 {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(n).unwrap_or(1).clamp(1, MAX_DEFAULT_THREADS)
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            degree: 32,
            ef_construction: 96,
            seed: 0x7469_6465_6772_6170,
            default_ef: 24,
            centred: true,
            threads: default_threads(),
            code: DEFAULT_CODE,
            perturb: DEFAULT_PERTURB,
        }
    }
}

/// Search parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphSearchParams {
    /// Beam width; 0 = the index default. At least `max(k, rerank)` is used.
    pub ef: u32,
    /// Candidates re-scored exactly; 0 = the beam width (at least [`rerank_floor`] of k always).
    pub rerank: u32,
}

fn pad64(n: usize) -> Option<usize> {
    n.checked_add(63).map(|v| v / 64 * 64)
}

/// Block offsets (scales, mean, norms, neighbors, codes, end) for a shape; None on overflow.
/// Version 1 (`v1`) has a 64-byte header and no mean block (`mean` = `norms`).
fn layout(v1: bool, dim: usize, rows: usize, degree: usize, stride: usize) -> Option<[usize; 6]> {
    let scales = if v1 { HEADER_LEN_V1 } else { HEADER_LEN };
    let mean = scales.checked_add(pad64(dim.checked_mul(4)?)?)?;
    let norms = if v1 { mean } else { mean.checked_add(pad64(dim.checked_mul(4)?)?)? };
    let nb = norms.checked_add(pad64(rows.checked_mul(4)?)?)?;
    let codes = nb.checked_add(pad64(rows.checked_mul(degree)?.checked_mul(4)?)?)?;
    let end = codes.checked_add(rows.checked_mul(stride)?)?;
    Some([scales, mean, norms, nb, codes, end])
}

/// Bits of one packed neighbour id (version 4) in a section of `rows` rows: the bit length of
/// `rows` (ids are 0..rows; the value `rows` marks an unused slot), at least 1.
pub(super) fn link_bits(rows: usize) -> u32 {
    (usize::BITS - rows.leading_zeros()).max(1)
}

/// Bytes of one row's packed list (version 4); None on overflow.
pub(super) fn link_bytes(rows: usize, degree: usize) -> Option<usize> {
    Some(degree.checked_mul(link_bits(rows) as usize)?.div_ceil(8))
}

/// Block offsets of a version-4 section (scales, mean, norms, links, codes, end); None on
/// overflow. Scales and norms exist for 8-bit codes only (`sq8`); otherwise they are empty
/// blocks at the offset of the next one. `record` = bytes of a row's code.
fn layout_v4(sq8: bool, dim: usize, rows: usize, degree: usize, record: usize) -> Option<[usize; 6]> {
    let floats = pad64(dim.checked_mul(4)?)?;
    let scales = HEADER_LEN_V4;
    let mean = if sq8 { scales.checked_add(floats)? } else { scales };
    let norms = mean.checked_add(floats)?;
    let links = if sq8 { norms.checked_add(pad64(rows.checked_mul(4)?)?)? } else { norms };
    let packed = rows.checked_mul(link_bytes(rows, degree)?)?.checked_add(LINK_SLACK)?;
    let codes = links.checked_add(pad64(packed)?)?;
    let end = codes.checked_add(rows.checked_mul(record)?)?;
    Some([scales, mean, norms, links, codes, end])
}

/// Block offsets of a version-3 section (mean, neighbors, records, end); None on overflow.
fn layout_v3(dim: usize, rows: usize, degree: usize, record: usize) -> Option<[usize; 4]> {
    let mean = HEADER_LEN;
    let nb = mean.checked_add(pad64(dim.checked_mul(4)?)?)?;
    let recs = nb.checked_add(pad64(rows.checked_mul(degree)?.checked_mul(4)?)?)?;
    let end = recs.checked_add(rows.checked_mul(record)?)?;
    Some([mean, nb, recs, end])
}

/// Query lengths (dimensions) whose 8-bit dot product [`RowEstimator`] computes inline.
const INLINE_DOT: usize = 16;

/// Code-estimated distances of single rows: what the graph's own search walks by, and what the
/// IVF section of the same segment (kind 16 version 3, issue 36 item 4) ranks its candidates
/// with instead of holding codes of its own. Estimates rank like the exact distance (squared L2 of the centred,
/// cosine: unit-normalised, vectors, minus the query's constant |q − m|²); callers rerank exactly.
pub struct RowEstimator<'g> {
    kern: &'static super::distance::Kernels,
    codes: &'g [u8],
    kind: EstimatorKind<'g>,
}

enum EstimatorKind<'g> {
    Sq8 { qq: Vec<i8>, bias: i32, inv: f32, stride: usize, norms2: &'g [f32] },
    Planes { q: super::rabitq::Query, bits: u32, qbits: u32, record: usize, p: usize },
}

/// A low-dimensional 8-bit estimator's fields by value, for a beam compiled for it: the same
/// estimates as [`RowEstimator::estimate`] without its match on the code kind and the query's
/// length per row, and with the code read only as far as the query (5 % of an 8-d search at ef
/// 10, BENCHMARKS "stop 72").
#[derive(Clone, Copy)]
pub(super) struct LowDim<'a> {
    codes: &'a [u8],
    qq: &'a [i8],
    bias: i32,
    inv: f32,
    stride: usize,
    norms2: &'a [f32],
}

impl LowDim<'_> {
    /// The estimated distance of row `r` (infinite when `r` is out of range).
    #[inline(always)]
    pub(super) fn estimate(&self, r: u32) -> f32 {
        let at = r as usize * self.stride;
        match (self.codes.get(at..at + self.qq.len()), self.norms2.get(r as usize)) {
            (Some(c), Some(n2)) => sq8_estimate(*n2, inline_dot(self.qq, c), self.bias, self.inv),
            _ => f32::INFINITY,
        }
    }
}

/// An 8-bit estimate from the row's norm and the dot product of its code with the query.
#[inline(always)]
fn sq8_estimate(n2: f32, dot: i32, bias: i32, inv: f32) -> f32 {
    n2 - 2.0 * (dot - bias) as f32 * inv
}

/// The 8-bit dot product of a query of at most [`INLINE_DOT`] bytes, inlined (`c` may be longer:
/// the query's length counts).
#[inline(always)]
fn inline_dot(qq: &[i8], c: &[u8]) -> i32 {
    qq.iter().zip(c).fold(0, |a, (&q, &c)| a + i32::from(q) * i32::from(c))
}

impl RowEstimator<'_> {
    /// The estimated distance of row `r` (infinite when `r` is out of range).
    #[inline]
    pub fn estimate(&self, r: u32) -> f32 {
        let u = r as usize;
        match &self.kind {
            EstimatorKind::Sq8 { qq, bias, inv, stride, norms2 } => {
                match (self.codes.get(u * stride..(u + 1) * stride), norms2.get(u)) {
                    (Some(c), Some(n2)) => sq8_estimate(*n2, self.u8i8(qq, c), *bias, *inv),
                    _ => f32::INFINITY,
                }
            }
            EstimatorKind::Planes { q, bits, qbits, record, p } => {
                let Some(rec) = self.codes.get(u * record..(u + 1) * record) else { return f32::INFINITY };
                let ip = self.kern.planes_dot(&rec[..*bits as usize * p / 8], &q.planes, *bits, *qbits);
                super::rabitq::estimate(q, super::rabitq::factors(rec, *bits, *p), ip)
            }
        }
    }

    /// The 8-bit dot product: inlined for a query cut to at most [`INLINE_DOT`] dimensions (a
    /// kernel call and its 16-lane reduction for 8 bytes was a fifth of an 8-d search), the
    /// kernel's otherwise. Integer sums: the same value either way.
    #[inline(always)]
    fn u8i8(&self, qq: &[i8], c: &[u8]) -> i32 {
        if qq.len() <= INLINE_DOT {
            inline_dot(qq, c)
        } else {
            self.kern.u8i8(qq, c)
        }
    }

    /// This estimator as a [`LowDim`] when it is one: 8-bit codes, a query cut to at most
    /// [`INLINE_DOT`] dimensions.
    pub(super) fn low_dim(&self) -> Option<LowDim<'_>> {
        match &self.kind {
            EstimatorKind::Sq8 { qq, bias, inv, stride, norms2 } if qq.len() <= INLINE_DOT => {
                Some(LowDim { codes: self.codes, qq, bias: *bias, inv: *inv, stride: *stride, norms2 })
            }
            _ => None,
        }
    }

    /// Bytes of one row's code.
    pub fn code_len(&self) -> usize {
        match &self.kind {
            EstimatorKind::Sq8 { stride, .. } => *stride,
            EstimatorKind::Planes { record, .. } => *record,
        }
    }

    /// Hints the CPU to load what [`RowEstimator::estimate`] reads of row `r`: its code (at most
    /// 384 bytes) and, for 8-bit codes, its norm (a block of its own: a second miss otherwise).
    #[inline]
    pub fn prefetch(&self, r: u32) {
        let len = self.code_len();
        super::distance::prefetch(self.codes.get(r as usize * len..).unwrap_or(&[]), len.min(384));
        if let EstimatorKind::Sq8 { norms2, .. } = &self.kind {
            super::distance::prefetch_f32(norms2.get(r as usize..).unwrap_or(&[]));
        }
    }
}

impl GraphIndex {
    /// The crc32c stored in the section header (what an IVF section built beside it names).
    pub fn stored_crc(&self) -> u32 {
        self.bytes.get(CRC_AT..CRC_AT + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An estimator of rows' distances to `query` from the traversal codes, computed with `kern`
    /// (a build's calibration passes the deterministic kernels); None for a query of the wrong
    /// dimension or (cosine) without a direction.
    pub fn row_estimator(
        &self,
        query: &[f32],
        kern: &'static super::distance::Kernels,
    ) -> Option<RowEstimator<'_>> {
        if query.len() != self.dim {
            return None;
        }
        let qn: Vec<f32> = match self.metric {
            super::distance::Metric::CosineDistance => {
                let n = kern.dot(query, query).sqrt();
                if !(n > 0.0 && n.is_finite()) {
                    return None;
                }
                query.iter().map(|v| v / n).collect()
            }
            super::distance::Metric::EuclideanSquared => query.to_vec(),
        };
        let qc: Vec<f32> = qn.iter().zip(self.mean.iter()).map(|(v, m)| v - m).collect();
        let codes = self.bytes.get(self.off_codes..).unwrap_or(&[]);
        let kind = match &self.code {
            search::Code::Sq8 => {
                let (mut qq, bias, inv) = super::ann::quantize_query(&qc, &self.scales, self.stride);
                if self.dim <= INLINE_DOT {
                    // The padding's query bytes are 0: the dot product over `dim` bytes is whole.
                    qq.truncate(self.dim);
                }
                EstimatorKind::Sq8 { qq, bias, inv, stride: self.stride, norms2: &self.norms2 }
            }
            search::Code::Planes { bits, qbits, record, rot } => {
                let mut qr = vec![0f32; self.stride];
                rot.apply(&qc, &mut qr);
                let q = super::rabitq::quantize(&qr, *bits);
                EstimatorKind::Planes { q, bits: *bits, qbits: *qbits, record: *record, p: self.stride }
            }
        };
        Some(RowEstimator { kern, codes, kind })
    }
}

fn section_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(&b[..CRC_AT]);
    crc32c::crc32c_append(c, &b[HEADER_LEN_V1..])
}

#[cfg(test)]
#[path = "../graph_tests.rs"]
mod tests;
