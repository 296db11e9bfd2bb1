//! Build-time recall calibration of a dense-vector section (graph and IVF): a deterministic sample
//! of the segment's own vectors is searched at each rung of an effort ladder, every answer is
//! compared with the exact top-[`K`] (brute force over the segment), and the measured recall@10 of
//! every rung is stored in the section ([`Calibration::encode`], a fixed 48-byte record). Queries
//! then pick the cheapest rung that reaches their target ([`Calibration::pick`]); when none does,
//! the segment is searched exactly instead of returning poor neighbours.
//!
//! Record layout (little-endian, 48 bytes):
//!
//! ```text
//! 0  state u8 (0 = not calibrated: every other byte 0; 1 = calibrated)   1 rungs u8 (1..=6)
//! 2  target u16 (the build's default target recall × 10 000)   4 queries u16 (sample size)
//! 6  reserved u16 (0)
//! 8  6 × rung: effort u16 (graph ef / IVF nprobe), rerank u16, recall u16 (recall@10 × 10 000,
//!    rounded down); unused rungs 0
//! 44 reserved u32 (0)
//! ```
//!
//! Invariants:
//! - Deterministic: sampled rows are evenly spaced, exact distances use the fixed-order `det_*`
//!   kernels and the searches `distance::deterministic`, so the same section bytes give the same
//!   record on every CPU.
//! - Honest: a sampled row is never its own neighbour (it is left out of the truth and of the
//!   answer; the graph search also hides it, so its links do not lead straight to the
//!   answer), and the tie rule is `_debug/recall`'s (a returned row is a hit when its exact
//!   distance is within the 10th exact distance).
//! - Stored recall never overstates the measurement (rounded down); rungs are in increasing effort.
//! - [`Calibration::decode`] never panics and refuses inconsistent records.

use super::distance::{det_dot, det_dot_batch, det_l2sq_batch, Metric};
use crate::index::{IndexError, IndexSection};

/// Neighbours compared per sampled query (recall@10).
pub const K: usize = 10;
/// Target recall@10 of a namespace that sets none.
pub const DEFAULT_TARGET: f32 = 0.95;
/// Rungs stored per section.
pub const MAX_RUNGS: usize = 6;
/// Bytes of the stored record.
pub const RECORD_LEN: usize = 48;
/// Sample size bounds: at least this many queries when the segment has them...
const MIN_QUERIES: usize = 50;
/// ...and at most this many.
const MAX_QUERIES: usize = 200;
/// Brute-force budget (queries × rows × dim multiply-adds): about a second of one core, a
/// small share of a graph build of the same segment.
const BRUTE_BUDGET: usize = 3_000_000_000;
/// Calibration stops at the first rung measuring this recall@10.
pub const ENOUGH: f32 = 0.99;
/// Recall is stored in units of 1/SCALE.
const SCALE: f32 = 10_000.0;

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

    /// The fixed-size record.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        if !self.is_calibrated() {
            return b;
        }
        b[0] = 1;
        b[1] = self.rungs.len().min(MAX_RUNGS) as u8;
        b[2..4].copy_from_slice(&self.target_bp.to_le_bytes());
        b[4..6].copy_from_slice(&self.queries.to_le_bytes());
        for (i, r) in self.rungs.iter().take(MAX_RUNGS).enumerate() {
            let at = 8 + 6 * i;
            let e = u16::try_from(r.effort).unwrap_or(u16::MAX);
            let k = u16::try_from(r.rerank).unwrap_or(u16::MAX);
            b[at..at + 2].copy_from_slice(&e.to_le_bytes());
            b[at + 2..at + 4].copy_from_slice(&k.to_le_bytes());
            b[at + 4..at + 6].copy_from_slice(&r.recall_bp.to_le_bytes());
        }
        b
    }

    /// Parses a record (`b` of at least [`RECORD_LEN`] bytes); all zeros = not calibrated.
    pub fn decode(b: &[u8]) -> Result<Calibration, IndexError> {
        let bad = || IndexError::corrupt(IndexSection::Ann, "bad calibration record");
        let b = b.get(..RECORD_LEN).ok_or_else(bad)?;
        let u16_at = |at: usize| crate::codec::u16_at(b, at).ok_or_else(bad);
        match b[0] {
            0 if b.iter().all(|x| *x == 0) => return Ok(Calibration::default()),
            1 => {}
            _ => return Err(bad()),
        }
        let n = usize::from(b[1]);
        if n == 0 || n > MAX_RUNGS {
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
        Ok(Calibration { queries: u16_at(4)?, target_bp: u16_at(2)?, rungs })
    }
}

/// The sampled queries and their exact neighbours.
pub struct Sample {
    /// Sampled rows (the queries are these rows' vectors).
    pub rows: Vec<u32>,
    /// Per query: the exact [`K`]-th distance of its neighbours (the query row left out).
    pub kth: Vec<f32>,
}

/// Queries sampled from a segment of `rows` × `dim`: [`MIN_QUERIES`]..=[`MAX_QUERIES`] within the
/// brute-force budget.
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
pub trait Rows {
    /// Rows held.
    fn count(&self) -> usize;
    /// Rows `[start, start + n)` (within `count`), contiguous: borrowed, or written to `buf`.
    fn block<'a>(&'a self, start: usize, n: usize, buf: &'a mut Vec<f32>) -> &'a [f32];
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
/// vector, evenly spaced, and computes each one's exact [`K`]-th neighbour distance.
pub fn sample(space: &[f32], dim: usize, metric: Metric) -> Sample {
    sample_rows(&Flat { rows: space, dim }, dim, metric)
}

/// [`sample`] over rows read in blocks (one pass over the rows for every query at once).
pub fn sample_rows(space: &dyn Rows, dim: usize, metric: Metric) -> Sample {
    let n = space.count();
    let want = sample_size(n, dim);
    let mut rows = Vec::with_capacity(want);
    if want == 0 || n <= K || dim == 0 {
        return Sample { rows, kth: Vec::new() };
    }
    let step = n / want;
    let mut buf = Vec::new();
    let mut queries = Vec::with_capacity(want * dim);
    for i in 0..want {
        let r = i * step + step / 2;
        let x = space.block(r, 1, &mut buf);
        if x.iter().any(|v| *v != 0.0) {
            rows.push(r as u32);
            queries.extend_from_slice(x);
        }
    }
    // The K smallest distances of every query (ascending, `total_cmp`), the query row left out.
    let mut best: Vec<Vec<f32>> = vec![Vec::with_capacity(K + 1); rows.len()];
    let mut out = vec![0f32; BLOCK];
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let block = space.block(start, len, &mut buf);
        for ((&q, qv), best) in rows.iter().zip(queries.chunks_exact(dim)).zip(&mut best) {
            let o = &mut out[..len];
            match metric {
                Metric::CosineDistance => {
                    det_dot_batch(qv, block, o);
                    o.iter_mut().for_each(|d| *d = 1.0 - *d);
                }
                Metric::EuclideanSquared => det_l2sq_batch(qv, block, o),
            }
            if let Some(d) = (q as usize).checked_sub(start).and_then(|i| o.get_mut(i)) {
                *d = f32::INFINITY;
            }
            for d in o.iter() {
                if best.len() < K || d.total_cmp(&best[K - 1]).is_lt() {
                    let at = best.partition_point(|b| b.total_cmp(d).is_le());
                    best.insert(at, *d);
                    best.truncate(K);
                }
            }
        }
    }
    let kth = best.iter().map(|b| b[K - 1]).collect();
    Sample { rows, kth }
}

/// Fraction of a sampled query's answer (`found`: rows, best first) within its exact K-th
/// distance; the query row itself is dropped from the answer.
fn hits(space: &dyn Rows, metric: Metric, q: u32, kth: f32, found: &[u32]) -> usize {
    let mut buf = Vec::new();
    let qv = space.block(q as usize, 1, &mut buf).to_vec();
    let bound = kth + kth.abs() * 1e-5 + 1e-6;
    found
        .iter()
        .filter(|r| **r != q)
        .take(K)
        .filter(|r| {
            (**r as usize) < space.count() && {
                let x = space.block(**r as usize, 1, &mut buf);
                det_distance(metric, &qv, x) <= bound
            }
        })
        .count()
}

/// Measures the rungs of `ladder` ((effort, rerank), increasing effort) with `search(query
/// row, effort, rerank)` → up to K + 1 rows, best first. Stops after the first rung that
/// measures [`ENOUGH`]: more effort buys little, and a query asking more than the last
/// measured rung gives is answered exactly.
pub fn calibrate(
    space: &[f32],
    dim: usize,
    metric: Metric,
    sample: &Sample,
    ladder: &[(u32, u32)],
    search: impl FnMut(u32, u32, u32) -> Vec<u32>,
) -> Calibration {
    calibrate_rows(&Flat { rows: space, dim }, metric, sample, ladder, search)
}

/// [`calibrate`] over rows read in blocks.
pub fn calibrate_rows(
    space: &dyn Rows,
    metric: Metric,
    sample: &Sample,
    ladder: &[(u32, u32)],
    mut search: impl FnMut(u32, u32, u32) -> Vec<u32>,
) -> Calibration {
    if sample.rows.is_empty() || ladder.is_empty() {
        return Calibration::default();
    }
    let mut rungs = Vec::new();
    for &(effort, rerank) in ladder.iter().take(MAX_RUNGS) {
        let mut hit = 0usize;
        for (&q, &kth) in sample.rows.iter().zip(&sample.kth) {
            hit += hits(space, metric, q, kth, &search(q, effort, rerank));
        }
        let recall = hit as f32 / (sample.rows.len() * K) as f32;
        let recall_bp = (recall * SCALE).floor().clamp(0.0, SCALE) as u16;
        rungs.push(Rung { effort, rerank, recall_bp });
        if recall_bp >= to_bp(ENOUGH) {
            break;
        }
    }
    Calibration {
        queries: u16::try_from(sample.rows.len()).unwrap_or(u16::MAX),
        target_bp: to_bp(DEFAULT_TARGET),
        rungs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_refuses_bad_bytes() {
        let c = Calibration {
            queries: 200,
            target_bp: 9500,
            rungs: vec![
                Rung { effort: 24, rerank: 24, recall_bp: 9012 },
                Rung { effort: 64, rerank: 64, recall_bp: 9733 },
            ],
        };
        let b = c.encode();
        assert_eq!(Calibration::decode(&b).unwrap(), c);
        assert_eq!(c.pick(0.95).map(|r| r.effort), Some(64));
        assert_eq!(c.pick(0.9).map(|r| r.effort), Some(24));
        assert_eq!(c.pick(0.99), None, "no rung reaches it: exact");
        assert_eq!(Calibration::decode(&[0; RECORD_LEN]).unwrap(), Calibration::default());
        assert!(Calibration::decode(&b[..10]).is_err());
        for (at, v) in [(0, 2u8), (1, 0), (1, 7), (8, 0), (13, 0xff), (16, 1), (17, 0)] {
            let mut x = b;
            x[at] = v;
            if at == 16 || at == 17 {
                // Second rung's effort below the first's.
                x[14] = 1;
                x[15] = 0;
            }
            assert!(Calibration::decode(&x).is_err(), "byte {at} = {v}");
        }
    }
}
