//! Build-time recall calibration of a dense-vector section (graph and IVF): a deterministic sample
//! of the segment's own vectors, and a perturbed copy of each ([`perturb_row`]: a query near the rows
//! but not on them, as far off its row as the row's own 10th neighbour — half as far for graph
//! sections built from stop 50 to stop 70, [`sample_rows_scaled`]), is searched at each rung of an effort ladder, every answer is compared with
//! the exact top-[`K`] (brute force over the segment), and the lower of the two query kinds'
//! recall@10 at every rung, less its sampling error, is stored in the section ([`Calibration::encode`], a fixed 48-byte
//! record). Queries then pick the cheapest rung that reaches their target ([`Calibration::pick`]);
//! when none does, the segment is searched exactly instead of returning poor neighbours.
//!
//! The record also keeps how far out the calibration's queries were: a high quantile
//! ([`REACH_QUANTILE`]) of their exact [`K`]-th neighbour distances ([`Calibration::reach`]),
//! the perturbed ones always at [`PERTURB`] × the radius, also where the rungs were measured
//! closer in (graph sections built from stop 50 to stop 70: 0.5×, which tightened the reach until 42 % of the near-copy
//! benchmark's held-out queries escalated, their plain recall 0.98; BENCHMARKS "stop 50"). A
//! query whose search found its [`K`]-th row farther out than that is outside what the stored
//! recall was measured on ([`Calibration::beyond_reach`]): the searches escalate it instead of
//! trusting the rung (`graph::GraphIndex::search_escalating`, `query/vector.rs`). No sample of the
//! rows predicts recall for queries far from every row (Debian dev queries over 28 noisy copies
//! of 1,071 other Debian vectors: 10th distance 0.558 against 0.26 for the rows' own, stored
//! 0.988 at ef 24, delivered 0.834; BENCHMARKS "stop 47"), but the search can see it happen.
//!
//! Why both kinds: own rows alone overstate recall on data that comes in near-copies (near-
//! duplicates, chunked documents): a row's copies crowd its top 10 at almost equal distance, so
//! almost any copy counts as a hit. On a million Debian-derived rows with 28 noisy copies each,
//! own rows measured 0.98 at ef 40 where the Debian dev queries got 0.85 (`bench/calib_probe.rs`,
//! BENCHMARKS "Calibration against outside queries"); queries perturbed by their row's own
//! 10th-neighbour radius measured within 0.02 of the dev queries at every rung up to ef 100.
//! The radius is local on purpose: a global scale (the distance from the rows' mean) is the
//! distance between clusters on clustered data, and over-pays there (ef 256 where 64 does).
//!
//! Record layout (little-endian, 48 bytes):
//!
//! ```text
//! 0  state u8 (0 = not calibrated: every other byte 0; 1 = calibrated)   1 rungs u8 (1..=6)
//! 2  target u16 (the build's default target recall × 10 000)   4 queries u16 (sample size)
//! 6  reserved u16 (0)
//! 8  6 × rung: effort u16 (graph ef / IVF nprobe), rerank u16, recall u16 (recall@10 × 10 000,
//!    rounded down); unused rungs 0
//! 44 reach f32: the REACH_QUANTILE quantile of the sampled queries' K-th exact distance
//!    (> 0, finite; 0 = not stored: records written before 2026-11-26 never escalate)
//! ```
//!
//! Invariants:
//! - Deterministic: sampled rows are one per equal stride at a seeded offset, exact distances use the fixed-order `det_*`
//!   kernels and the searches `distance::deterministic`, so the same section bytes give the same
//!   record on every CPU.
//! - Honest: a rung's recall is the worse of the own-row and the perturbed queries'; a sampled
//!   row is never its own neighbour (it is left out of the truth and of the
//!   answer; the graph search also hides it, so its links do not lead straight to the
//!   answer), and the tie rule is `_debug/recall`'s (a returned row is a hit when its exact
//!   distance is within the 10th exact distance).
//! - Stored recall is a lower confidence bound, never the bare sample mean: each kind's mean
//!   per-query recall less [`STD_ERRORS`] standard errors, rounded down (a few hundred sampled
//!   queries put a rung's mean within ±0.02 of the recall later queries get; a rung picked on its
//!   mean alone was, at 1M rows, the one falling short about half the time). Rungs are in
//!   increasing effort.
//! - [`Calibration::decode`] never panics and refuses inconsistent records.

use super::det4::det_dot4_batch;
use super::distance::{det_dot, det_dot_batch, det_l2sq_batch, Metric};
use super::splitmix;
use crate::index::{IndexError, IndexSection};

/// Neighbours compared per sampled query (recall@10).
pub const K: usize = 10;
/// Target recall@10 of a namespace that sets none.
pub const DEFAULT_TARGET: f32 = 0.95;
/// Rungs stored per section (the 48-byte record: IVF sections, graph versions 2 and 3).
pub const MAX_RUNGS: usize = 6;
/// Bytes of the stored record.
pub const RECORD_LEN: usize = 48;
/// Rungs of the wide record (graph sections from version 4: a finer ladder).
pub const WIDE_RUNGS: usize = 12;
/// Bytes of the wide record: the same fields with 12 rung slots, the reach after them.
pub const WIDE_RECORD_LEN: usize = 88;
/// Sample size bounds: at least this many rows (each giving two queries) when the segment has
/// them...
const MIN_QUERIES: usize = 100;
/// ...and at most this many: the stored bound sits [`STD_ERRORS`] standard errors under the
/// sample's mean, and on a 30k-row segment (brute force ~1 s) 200 rows left that margin at
/// 0.025 and put the pick a rung above what fresh queries needed (BENCHMARKS "stop 46");
/// 400 halve the variance. Large segments are held to fewer by [`BRUTE_BUDGET`].
const MAX_QUERIES: usize = 400;
/// Brute-force budget (queries × rows × dim multiply-adds): about a second of one core, a
/// small share of a graph build of the same segment.
const BRUTE_BUDGET: usize = 3_000_000_000;
/// Calibration stops at the first rung measuring this recall@10 (and reranking
/// [`FULL_RERANK`])...
pub const ENOUGH: f32 = 0.99;
/// ...at least this many candidates: a narrower rung (the graph's ladder starts under it since
/// stop 50) never ends the ladder, so a record holds at least the rungs it held before (a target
/// above what the narrow rung measured still finds a rung instead of an exact scan).
pub const FULL_RERANK: u32 = 2 * K as u32;
/// Recall is stored in units of 1/SCALE.
const SCALE: f32 = 10_000.0;
/// The quantile of the sampled queries' [`K`]-th exact distances stored as the record's reach.
/// Own rows sit closer than perturbed ones (those are off their row by its own 10th-neighbour
/// radius), so the reach is about the farthest perturbed queries' 10th distance: held-out queries
/// of the rows' distribution stay under it (Debian dev queries over Debian rows: none of 200
/// over 0.701), queries far from every row go over (0.435 on the 28-copies set: 182 of 200).
pub const REACH_QUANTILE: f64 = 0.99;
/// The two record shapes: rung slots, length, where the reach sits.
#[derive(Clone, Copy)]
struct Shape {
    rungs: usize,
    len: usize,
    reach_at: usize,
}
const NARROW: Shape = Shape { rungs: MAX_RUNGS, len: RECORD_LEN, reach_at: 44 };
const WIDE: Shape = Shape { rungs: WIDE_RUNGS, len: WIDE_RECORD_LEN, reach_at: 8 + 6 * WIDE_RUNGS };

/// One measured point of the effort ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    /// Graph beam width or IVF clusters probed.
    pub effort: u32,
    /// Candidates re-scored exactly.
    pub rerank: u32,
    /// Measured recall@10 × 10 000 (rounded down).
    pub recall_bp: u16,
}

impl Rung {
    /// Measured recall@10.
    pub fn recall(&self) -> f64 {
        f64::from(self.recall_bp) / f64::from(SCALE)
    }
}

/// What a section knows about its own recall (empty `rungs`: not calibrated, e.g. built before
/// calibration existed; searches then use the stored defaults).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Calibration {
    /// Sampled queries.
    pub queries: u16,
    /// The build's default target × 10 000 (informational; queries bring their own).
    pub target_bp: u16,
    /// Measured rungs, increasing effort.
    pub rungs: Vec<Rung>,
    /// f32 bits of the reach ([`REACH_QUANTILE`] of the sampled queries' [`K`]-th exact distance;
    /// 0: not stored, records written before 2026-11-26). Bits keep the record `Eq`.
    pub reach_bits: u32,
}

/// A target recall in stored units (clamped to 0..=1).
pub fn to_bp(target: f32) -> u16 {
    (target.clamp(0.0, 1.0) * SCALE).round() as u16
}

impl Calibration {
    /// Whether the section was calibrated.
    pub fn is_calibrated(&self) -> bool {
        !self.rungs.is_empty()
    }

    /// The cheapest rung whose measured recall reaches `target`; `None` when none does (search
    /// exactly). Uncalibrated sections never get here (callers use their defaults).
    pub fn pick(&self, target: f32) -> Option<Rung> {
        let want = to_bp(target);
        self.rungs.iter().find(|r| r.recall_bp >= want).copied()
    }

    /// How far out the calibration's queries had their [`K`]-th neighbour ([`REACH_QUANTILE`]);
    /// `None` for records that predate it.
    pub fn reach(&self) -> Option<f32> {
        (self.reach_bits != 0).then(|| f32::from_bits(self.reach_bits))
    }

    /// Whether a search whose [`K`]-th found row lies at `found_kth` (an exact distance; found
    /// rows are at or beyond the exact ones, so a miss only raises it) went beyond what the
    /// calibration measured: its rung's recall does not hold for such a query. False without a
    /// reach (older records behave as before) and for a NaN distance.
    pub fn beyond_reach(&self, found_kth: f32) -> bool {
        self.reach().is_some_and(|r| found_kth > r)
    }

    /// The fixed-size record (at most [`MAX_RUNGS`] rungs: the first ones are kept).
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        self.encode_as(NARROW, &mut b);
        b
    }

    /// The wide record (at most [`WIDE_RUNGS`] rungs).
    pub fn encode_wide(&self) -> [u8; WIDE_RECORD_LEN] {
        let mut b = [0u8; WIDE_RECORD_LEN];
        self.encode_as(WIDE, &mut b);
        b
    }

    fn encode_as(&self, shape: Shape, b: &mut [u8]) {
        if !self.is_calibrated() {
            return;
        }
        b[0] = 1;
        b[1] = self.rungs.len().min(shape.rungs) as u8;
        b[2..4].copy_from_slice(&self.target_bp.to_le_bytes());
        b[4..6].copy_from_slice(&self.queries.to_le_bytes());
        for (i, r) in self.rungs.iter().take(shape.rungs).enumerate() {
            let at = 8 + 6 * i;
            let e = u16::try_from(r.effort).unwrap_or(u16::MAX);
            let k = u16::try_from(r.rerank).unwrap_or(u16::MAX);
            b[at..at + 2].copy_from_slice(&e.to_le_bytes());
            b[at + 2..at + 4].copy_from_slice(&k.to_le_bytes());
            b[at + 4..at + 6].copy_from_slice(&r.recall_bp.to_le_bytes());
        }
        b[shape.reach_at..shape.reach_at + 4].copy_from_slice(&self.reach_bits.to_le_bytes());
    }

    /// Parses a record (`b` of at least [`RECORD_LEN`] bytes); all zeros = not calibrated.
    pub fn decode(b: &[u8]) -> Result<Calibration, IndexError> {
        Self::decode_as(NARROW, b)
    }

    /// Parses a wide record (`b` of at least [`WIDE_RECORD_LEN`] bytes).
    pub fn decode_wide(b: &[u8]) -> Result<Calibration, IndexError> {
        Self::decode_as(WIDE, b)
    }

    fn decode_as(shape: Shape, b: &[u8]) -> Result<Calibration, IndexError> {
        let bad = || IndexError::corrupt(IndexSection::Ann, "bad calibration record");
        let b = b.get(..shape.len).ok_or_else(bad)?;
        let u16_at = |at: usize| crate::codec::u16_at(b, at).ok_or_else(bad);
        match b[0] {
            0 if b.iter().all(|x| *x == 0) => return Ok(Calibration::default()),
            1 => {}
            _ => return Err(bad()),
        }
        let n = usize::from(b[1]);
        if n == 0 || n > shape.rungs {
            return Err(bad());
        }
        let mut rungs = Vec::with_capacity(n);
        for i in 0..n {
            let at = 8 + 6 * i;
            let r = Rung {
                effort: u32::from(u16_at(at)?),
                rerank: u32::from(u16_at(at + 2)?),
                recall_bp: u16_at(at + 4)?,
            };
            let grows = rungs.last().is_none_or(|p: &Rung| p.effort <= r.effort);
            if r.effort == 0 || r.recall_bp > SCALE as u16 || !grows {
                return Err(bad());
            }
            rungs.push(r);
        }
        // The wide record is strict: reserved bytes, unused rung slots and its tail are zero.
        let unused = b[6..8].iter().chain(&b[8 + 6 * n..shape.reach_at]).chain(&b[shape.reach_at + 4..]);
        if shape.rungs == WIDE_RUNGS && unused.into_iter().any(|x| *x != 0) {
            return Err(bad());
        }
        let reach_bits = crate::codec::u32_at(b, shape.reach_at).ok_or_else(bad)?;
        let reach = f32::from_bits(reach_bits);
        if reach_bits != 0 && !(reach.is_finite() && reach > 0.0) {
            return Err(bad());
        }
        Ok(Calibration { queries: u16_at(4)?, target_bp: u16_at(2)?, rungs, reach_bits })
    }
}

/// The sampled queries and their exact neighbours: first the sampled rows themselves (each
/// hidden from its own search), then the same rows perturbed ([`perturb_row`]; nothing hidden).
pub struct Sample {
    /// Query vectors in index space, `dim` each.
    pub queries: Vec<f32>,
    /// Per query: the row left out of its truth and answer (its own row), `None` for a
    /// perturbed query.
    pub hidden: Vec<Option<u32>>,
    /// Per query: the exact [`K`]-th distance of its neighbours.
    pub kth: Vec<f32>,
    /// The exact [`K`]-th distances the reach is the quantile of: the own rows' and those of the
    /// rows perturbed at [`PERTURB`] (`kth` itself when the queries were perturbed at that scale).
    reach_kth: Vec<f32>,
    dim: usize,
}

impl Sample {
    /// Queries held.
    pub fn len(&self) -> usize {
        self.kth.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.kth.is_empty()
    }

    /// Query `i`'s vector (index space).
    pub fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }
}

/// Rows sampled from a segment of `rows` × `dim`: [`MIN_QUERIES`]..=[`MAX_QUERIES`] within the
/// brute-force budget (each also gives a perturbed query: twice the queries in all).
fn sample_size(rows: usize, dim: usize) -> usize {
    let per_query = rows.saturating_mul(dim).max(1);
    (BRUTE_BUDGET / per_query).clamp(MIN_QUERIES, MAX_QUERIES).min(rows / 2)
}

/// Exact distance in index space (cosine rows unit-normalised: `1 − a·b`).
fn det_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::CosineDistance => 1.0 - det_dot(a, b),
        Metric::EuclideanSquared => {
            let mut o = [0f32];
            det_l2sq_batch(a, b, &mut o);
            o[0]
        }
    }
}

/// A segment's rows in index space (cosine: unit-normalised), read in blocks: lets a builder
/// calibrate without holding a contiguous normalised copy of its rows.
pub trait Rows: Sync {
    /// Rows held.
    fn count(&self) -> usize;
    /// Rows `[start, start + n)` (within `count`), contiguous: borrowed, or written to `buf`.
    fn block<'a>(&'a self, start: usize, n: usize, buf: &'a mut Vec<f32>) -> &'a [f32];
    /// Row `r` alone: the scattered reads (sample rows, checked results). Rows mapped from a
    /// file read it without mapping it (see `rows::RowSource`).
    fn one<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        self.block(r, 1, buf)
    }
}

/// Contiguous rows × dim.
pub struct Flat<'a> {
    /// The rows.
    pub rows: &'a [f32],
    /// Their dimension (> 0).
    pub dim: usize,
}

impl Rows for Flat<'_> {
    fn count(&self) -> usize {
        self.rows.len().checked_div(self.dim).unwrap_or(0)
    }
    fn block<'a>(&'a self, start: usize, n: usize, _: &'a mut Vec<f32>) -> &'a [f32] {
        &self.rows[start * self.dim..(start + n) * self.dim]
    }
}

/// Rows the exact pass reads at a time.
const BLOCK: usize = 4096;

/// Samples rows of `space` (rows × dim, index space: cosine rows unit-normalised) with a non-zero
/// vector, one per equal stride at a seeded offset, adds a perturbed copy of each, and computes every query's exact [`K`]-th
/// neighbour distance.
pub fn sample(space: &[f32], dim: usize, metric: Metric) -> Sample {
    sample_rows(&Flat { rows: space, dim }, dim, metric)
}

/// [`sample`] over rows read in blocks: one pass for the own rows' truth, which scales their
/// perturbations, and one for the perturbed queries'.
pub fn sample_rows(space: &dyn Rows, dim: usize, metric: Metric) -> Sample {
    sample_rows_scaled(space, dim, metric, PERTURB)
}

/// [`sample_rows`] with perturbations of norm `perturb` × the row's own [`K`]-th neighbour
/// radius ([`PERTURB`] for the IVF; graph sections from version 4 pass their own,
/// `graph::GraphParams::perturb`). The reach's distances are those of the own rows and of the
/// same rows perturbed at [`PERTURB`] (one exact pass computes both scales' truth).
pub fn sample_rows_scaled(space: &dyn Rows, dim: usize, metric: Metric, perturb: f32) -> Sample {
    let n = space.count();
    let want = sample_size(n, dim);
    let mut s =
        Sample { queries: Vec::new(), hidden: Vec::new(), kth: Vec::new(), reach_kth: Vec::new(), dim };
    if want == 0 || n <= K || dim == 0 {
        return s;
    }
    let step = n / want;
    let (mut buf, mut offsets) = (Vec::new(), SAMPLE_SEED);
    for i in 0..want {
        // One row at a seeded offset in each of `want` equal strides: evenly spaced rows alias
        // with any period in the row order (rows written in cycles would sample a few groups).
        let r = i * step + (splitmix(&mut offsets) % step as u64) as usize;
        let x = space.one(r, &mut buf);
        if x.iter().any(|v| *v != 0.0) {
            s.hidden.push(Some(r as u32));
            s.queries.extend_from_slice(x);
        }
    }
    // The own rows' truth first: each perturbation is scaled by its row's K-th neighbour radius.
    s.kth = kth_distances(space, dim, metric, &s.queries, &s.hidden);
    let own = s.hidden.len();
    // The reach's queries sit at [`PERTURB`] whatever the rungs' scale: one exact pass for both.
    let scales: &[f32] = if perturb == PERTURB { &[perturb] } else { &[perturb, PERTURB] };
    let mut perturbed = Vec::with_capacity(own * dim * scales.len());
    for scale in scales {
        for i in 0..own {
            let r = s.hidden[i].map_or(0, u64::from);
            let x = &s.queries[i * dim..(i + 1) * dim];
            perturbed.extend(perturb_row(x, scale * radius(metric, s.kth[i]), metric, r));
        }
    }
    let kth = kth_distances(space, dim, metric, &perturbed, &vec![None; own * scales.len()]);
    // The last `own` are at [`PERTURB`] (with one scale, the same ones as the first).
    s.reach_kth = s.kth.iter().chain(&kth[kth.len() - own..]).copied().collect();
    s.queries.extend_from_slice(&perturbed[..own * dim]);
    s.hidden.extend(vec![None; own]);
    s.kth.extend_from_slice(&kth[..own]);
    s
}

/// The Euclidean radius of a [`K`]-th neighbour distance in `metric`'s units.
fn radius(metric: Metric, kth: f32) -> f32 {
    match metric {
        // Unit rows: |a − b|² = 2 (1 − a·b).
        Metric::CosineDistance => (2.0 * kth).max(0.0).sqrt(),
        Metric::EuclideanSquared => kth.max(0.0).sqrt(),
    }
}

/// Seed of the stream placing a sampled row within its stride.
const SAMPLE_SEED: u64 = 0x7361_6d70_6c65;

/// Scale of a perturbation: its norm is this share of the row's own [`K`]-th neighbour radius.
pub const PERTURB: f32 = 1.0;

/// A query near row `x` but not on it: `x` plus a deterministic random direction (seeded by
/// the row) of norm `radius`, a share ([`PERTURB`]) of the row's own [`K`]-th neighbour radius (cosine: then
/// unit-normalised): the query lands about as far from the row as the row's 10th neighbour,
/// at the local density (|x − mean| was the distance between clusters on clustered data, and put
/// the query outside every cluster). Own rows as
/// queries are too easy where rows come in near-copies (any copy within the K-th distance
/// counts, and the copies are close together): an outside query sits among the rows without
/// such a crowd of equidistant neighbours. The direction is a sum of three uniforms per
/// component (no transcendental functions: the same bits on every platform).
fn perturb_row(x: &[f32], radius: f32, metric: Metric, row: u64) -> Vec<f32> {
    let mut state = row ^ 0x6361_6c69_6272_6174;
    let mut uniform = || (splitmix(&mut state) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
    let noise: Vec<f32> = (0..x.len()).map(|_| uniform() + uniform() + uniform()).collect();
    let scale = radius / norm(noise.iter().copied()).max(f32::MIN_POSITIVE);
    let mut q: Vec<f32> = x.iter().zip(&noise).map(|(a, e)| a + scale * e).collect();
    if metric == Metric::CosineDistance {
        let len = norm(q.iter().copied()).max(f32::MIN_POSITIVE);
        q.iter_mut().for_each(|v| *v /= len);
    }
    q
}

/// Euclidean norm (summed in order: deterministic).
fn norm(v: impl Iterator<Item = f32>) -> f32 {
    v.map(|a| a * a).sum::<f32>().sqrt()
}

/// The exact [`K`]-th neighbour distance of every query (one pass over the rows), each query's
/// hidden row left out. The queries are split over the cores (each part one pass over the rows):
/// a compaction's builds are otherwise parallel, and this exact pass ran on one core while the
/// other idled. Each query's distances are the same bits whatever the split.
fn kth_distances(
    space: &dyn Rows,
    dim: usize,
    metric: Metric,
    queries: &[f32],
    hidden: &[Option<u32>],
) -> Vec<f32> {
    if dim == 0 {
        return kth_part(space, dim, metric, queries, hidden);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_THREADS);
    super::in_parts(hidden.len(), threads, |r| {
        kth_part(space, dim, metric, &queries[r.start * dim..r.end * dim], &hidden[r])
    })
}

/// Threads of [`kth_distances`] at most.
const MAX_THREADS: usize = 8;

/// [`kth_distances`] on the calling thread: each block of rows scored against four queries at a
/// time (cosine: [`det_dot4_batch`], each distance the bits of [`det_dot_batch`]'s), so a block is
/// read once per four queries.
fn kth_part(
    space: &dyn Rows,
    dim: usize,
    metric: Metric,
    queries: &[f32],
    hidden: &[Option<u32>],
) -> Vec<f32> {
    let n = space.count();
    let mut best: Vec<Vec<f32>> = vec![Vec::with_capacity(K + 1); hidden.len()];
    let (mut buf, mut out) = (Vec::new(), vec![0f32; 4 * BLOCK]);
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let block = space.block(start, len, &mut buf);
        for q0 in (0..hidden.len()).step_by(4) {
            let group = (hidden.len() - q0).min(4);
            let outs = &mut out[..group * BLOCK];
            distances_into(metric, &queries[q0 * dim..(q0 + group) * dim], dim, block, len, outs);
            for (j, o) in outs.chunks_exact_mut(BLOCK).enumerate() {
                let o = &mut o[..len];
                if let Some(d) =
                    hidden[q0 + j].and_then(|q| (q as usize).checked_sub(start)).and_then(|i| o.get_mut(i))
                {
                    *d = f32::INFINITY;
                }
                keep_smallest(&mut best[q0 + j], o);
            }
        }
    }
    best.iter().map(|b| b[K - 1]).collect()
}

/// The distances of `block` (`len` rows) from each query of `queries` (one to four), query `j`'s
/// in `outs[j·BLOCK..][..len]`.
fn distances_into(metric: Metric, queries: &[f32], dim: usize, block: &[f32], len: usize, outs: &mut [f32]) {
    let cosine = metric == Metric::CosineDistance;
    let four = (cosine && dim > 0 && queries.len() == 4 * dim)
        .then(|| outs.get_disjoint_mut([0, 1, 2, 3].map(|j| j * BLOCK..j * BLOCK + len)).ok())
        .flatten();
    if let Some(four) = four {
        det_dot4_batch([0, 1, 2, 3].map(|j| &queries[j * dim..(j + 1) * dim]), block, four);
    } else {
        for (qv, o) in queries.chunks_exact(dim.max(1)).zip(outs.chunks_exact_mut(BLOCK)) {
            match metric {
                Metric::CosineDistance => det_dot_batch(qv, block, &mut o[..len]),
                Metric::EuclideanSquared => det_l2sq_batch(qv, block, &mut o[..len]),
            }
        }
    }
    if cosine {
        for o in outs.chunks_exact_mut(BLOCK) {
            o[..len].iter_mut().for_each(|d| *d = 1.0 - *d);
        }
    }
}

/// Keeps in `best` the [`K`] smallest of `best` and `o` (ascending, `total_cmp`).
fn keep_smallest(best: &mut Vec<f32>, o: &[f32]) {
    for d in o {
        if best.len() < K || d.total_cmp(&best[K - 1]).is_lt() {
            let at = best.partition_point(|b| b.total_cmp(d).is_le());
            best.insert(at, *d);
            best.truncate(K);
        }
    }
}

/// Hits of query `i`'s answer (`found`: rows, best first; its hidden row dropped): rows within
/// its exact K-th distance.
fn hits(space: &dyn Rows, metric: Metric, sample: &Sample, i: usize, found: &[u32]) -> usize {
    let mut buf = Vec::new();
    let (qv, kth, hidden) = (sample.query(i), sample.kth[i], sample.hidden[i]);
    let bound = kth + kth.abs() * 1e-5 + 1e-6;
    found
        .iter()
        .filter(|r| Some(**r) != hidden)
        .take(K)
        .filter(|r| {
            (**r as usize) < space.count() && {
                let x = space.one(**r as usize, &mut buf);
                det_distance(metric, qv, x) <= bound
            }
        })
        .count()
}

/// Standard errors a stored recall sits below its sample's mean: the sample is a few hundred
/// queries, and a rung measured just above the target on them is about as likely as not to fall
/// short on the queries that follow (at 1M rows, 100 sampled rows put the recall at the chosen ef
/// anywhere from 0.93 to 0.99 between builds of the same data: BENCHMARKS "Confidence bound").
/// 2 is a one-sided bound of about 97.7%.
const STD_ERRORS: f64 = 2.0;

/// Per-query recall of one query kind: count, sum and sum of squares.
#[derive(Default)]
struct Tally {
    n: f64,
    sum: f64,
    sum_sq: f64,
}

impl Tally {
    fn add(&mut self, recall: f64) {
        self.n += 1.0;
        self.sum += recall;
        self.sum_sq += recall * recall;
    }

    /// The mean less [`STD_ERRORS`] standard errors of the mean (sample variance); `None` when
    /// the kind has no queries. One query has no spread to measure: its bound is its recall.
    fn lower_bound(&self) -> Option<f64> {
        if self.n == 0.0 {
            return None;
        }
        let mean = self.sum / self.n;
        let var =
            if self.n > 1.0 { ((self.sum_sq - self.n * mean * mean) / (self.n - 1.0)).max(0.0) } else { 0.0 };
        Some((mean - STD_ERRORS * (var / self.n).sqrt()).max(0.0))
    }
}

/// Measures the rungs of `ladder` ((effort, rerank), increasing effort) with `search(query,
/// hidden row, effort, rerank)` → up to K + 1 rows, best first. A rung's recall is the lower of
/// the own-row and the perturbed queries' lower bound (mean recall less [`STD_ERRORS`] standard
/// errors). Stops after the first rung that measures
/// [`ENOUGH`] reranking [`FULL_RERANK`] or more: more effort buys little, and a query asking more
/// than the last measured rung gives is answered exactly. The reach is the [`REACH_QUANTILE`]
/// quantile of the own rows' and the [`PERTURB`]-scaled queries' [`K`]-th distances, whatever
/// scale the rungs' perturbed queries had ([`sample_rows_scaled`]).
pub fn calibrate(
    space: &[f32],
    dim: usize,
    metric: Metric,
    sample: &Sample,
    ladder: &[(u32, u32)],
    search: impl FnMut(&[f32], Option<u32>, u32, u32) -> Vec<u32>,
) -> Calibration {
    calibrate_rows(&Flat { rows: space, dim }, metric, sample, ladder, search)
}

/// [`calibrate`] over rows read in blocks.
pub fn calibrate_rows(
    space: &dyn Rows,
    metric: Metric,
    sample: &Sample,
    ladder: &[(u32, u32)],
    mut search: impl FnMut(&[f32], Option<u32>, u32, u32) -> Vec<u32>,
) -> Calibration {
    if sample.is_empty() || ladder.is_empty() {
        return Calibration::default();
    }
    let mut rungs = Vec::new();
    for &(effort, rerank) in ladder.iter().take(WIDE_RUNGS) {
        // Per-query recall of the own-row and of the perturbed queries.
        let mut kinds = [Tally::default(), Tally::default()];
        for i in 0..sample.len() {
            let found = search(sample.query(i), sample.hidden[i], effort, rerank);
            let recall = hits(space, metric, sample, i, &found) as f64 / K as f64;
            kinds[usize::from(sample.hidden[i].is_none())].add(recall);
        }
        let recall = kinds.iter().filter_map(Tally::lower_bound).fold(1.0f64, f64::min);
        let recall_bp = (recall * f64::from(SCALE)).floor().clamp(0.0, f64::from(SCALE)) as u16;
        rungs.push(Rung { effort, rerank, recall_bp });
        if recall_bp >= to_bp(ENOUGH) && rerank >= FULL_RERANK {
            break;
        }
    }
    Calibration {
        queries: u16::try_from(sample.len()).unwrap_or(u16::MAX),
        target_bp: to_bp(DEFAULT_TARGET),
        rungs,
        reach_bits: reach(&sample.reach_kth).map_or(0, f32::to_bits),
    }
}

/// The [`REACH_QUANTILE`] quantile of `kth` (nearest rank), when it is a usable bound: finite and
/// positive (a segment of identical rows has no distance to bound; it stores none).
fn reach(kth: &[f32]) -> Option<f32> {
    let mut v: Vec<f32> = kth.iter().copied().filter(|d| d.is_finite()).collect();
    v.sort_unstable_by(f32::total_cmp);
    let at = ((REACH_QUANTILE * v.len() as f64).ceil() as usize).checked_sub(1)?;
    v.get(at).copied().filter(|d| *d > 0.0)
}

#[cfg(test)]
mod tests;
