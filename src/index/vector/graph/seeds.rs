//! Where a graph search starts: the entry, then seed rows spread over the section, chosen once
//! per opened section ([`GraphIndex::seeds`]).
//!
//! A single-layer graph has no upper layers to bring a query near its answer: from the one entry
//! a narrow beam crosses the graph hop by hop and, on clustered data, settles in the wrong
//! cluster. The seeds' code distances (a few dozen, a small share of a search) let the beam
//! start near the query instead (0.906 -> 0.945 recall@10 at ef 24 on the 64-cluster set,
//! BENCHMARKS "stop 46"). Rows taken at even steps follow the row order, not the data: a large
//! cluster gets many of them and small ones none; the farthest-point choice among 8× as many
//! evenly spaced candidates spreads them over the data instead (the clustered benchmark set's
//! pick ef 48 -> 22, held-out recall@10 0.979; BENCHMARKS "Seeds by farthest point").
//!
//! Invariants:
//! - The entry first, then `min(rows / SEED_ROWS, MAX_SEEDS)` seeds, distinct, none the entry,
//!   all < rows; a section of fewer than [`SEED_ROWS`] rows starts from its entry alone.
//! - Derived from the section's bytes alone (row count, entry, codes, scales) with the
//!   deterministic kernel, so the build's calibration and every later search, on any CPU, start
//!   from the same rows.
//! - The candidates are [`CANDIDATES_PER_SEED`] × seeds rows at even steps (the
//!   entry excluded); each next seed is the candidate whose decoded code is farthest from the
//!   entry and every seed chosen before it (ties to the earlier candidate). RaBitQ sections
//!   decode a record to `a · (u − c)` in the rotated space (`rabitq::decode`; the rotation keeps
//!   distances).
//! - Computed at the first search of an opened section (at most 512 decoded rows and 64 passes
//!   over them: 12.6 M multiply-adds at 384 dimensions) and shared by its clones.

use super::search::{Code, GraphIndex};
use crate::index::vector::distance::det_l2sq_batch;
use crate::index::vector::rabitq;

/// Rows per extra search seed.
pub(super) const SEED_ROWS: usize = 512;
/// Extra search seeds at most.
pub(super) const MAX_SEEDS: usize = 64;
/// Candidate rows per seed the farthest-point choice picks among.
pub(super) const CANDIDATES_PER_SEED: usize = 8;

impl GraphIndex {
    /// Where every search of this section starts (see the module invariants).
    pub(super) fn seeds(&self) -> &[u32] {
        self.seeds.get_or_init(|| self.choose_seeds().into())
    }

    fn choose_seeds(&self) -> Vec<u32> {
        let n = (self.rows / SEED_ROWS).min(MAX_SEEDS);
        let candidates = self.candidates(n * CANDIDATES_PER_SEED);
        let mut s = Vec::with_capacity(n + 1);
        s.push(self.entry);
        s.extend(self.farthest_points(&candidates, n));
        s
    }

    /// `m` rows at even steps (fewer when the section has fewer rows), the entry left out. With
    /// `m ≤ rows` the steps are at least one row: the rows are distinct and increasing.
    fn candidates(&self, m: usize) -> Vec<u32> {
        let m = m.min(self.rows);
        (0..m).map(|i| (i * self.rows / m) as u32).filter(|&r| r != self.entry).collect()
    }

    /// `n` of `candidates` by farthest-point choice over their decoded codes, starting from the
    /// entry.
    fn farthest_points(&self, candidates: &[u32], n: usize) -> Vec<u32> {
        let decoded: Vec<f32> = candidates.iter().flat_map(|&r| self.decoded(r)).collect();
        let width = decoded.len() / candidates.len().max(1);
        let mut nearest = vec![f32::INFINITY; candidates.len()];
        let mut dist = vec![0f32; candidates.len()];
        let mut from = self.decoded(self.entry);
        let mut chosen = Vec::with_capacity(n);
        for _ in 0..n.min(candidates.len()) {
            det_l2sq_batch(&from, &decoded, &mut dist);
            for (m, d) in nearest.iter_mut().zip(&dist) {
                *m = m.min(*d);
            }
            // Chosen candidates hold -inf; the first of equal distances wins.
            let mut best = 0;
            for (i, d) in nearest.iter().enumerate() {
                if *d > nearest[best] {
                    best = i;
                }
            }
            nearest[best] = f32::NEG_INFINITY;
            chosen.push(candidates[best]);
            from = decoded[best * width..(best + 1) * width].to_vec();
        }
        chosen
    }

    /// Row `r` as its code stores it: 8-bit codes, the centred vector `(code − 128) / scale` per
    /// dimension; RaBitQ records, the rotated centred vector (the rotation keeps distances).
    fn decoded(&self, r: u32) -> Vec<f32> {
        let codes = self.bytes.get(self.off_codes..).unwrap_or(&[]);
        match &self.code {
            Code::Sq8 => {
                let code = codes.get(r as usize * self.stride..).unwrap_or(&[]);
                (0..self.dim)
                    .map(|j| {
                        let c = code.get(j).map_or(0.0, |&c| f32::from(c) - 128.0);
                        c / self.scales.get(j).copied().unwrap_or(1.0)
                    })
                    .collect()
            }
            Code::Planes { bits, record, .. } => {
                let rec = codes.get(r as usize * record..).unwrap_or(&[]);
                rabitq::decode(&rec[..rec.len().min(*record)], *bits, self.stride)
            }
        }
    }
}
