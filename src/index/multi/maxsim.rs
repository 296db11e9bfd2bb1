//! Exact late-interaction distance: `Σ_q min_d dist(q, d)` over a query's vectors and a
//! document's vectors, using the batch SIMD kernels of `index/vector/distance.rs` (one call
//! scores a query vector against all of a document's vectors).
//!
//! Invariants: every vector of both sides has the same dimension (callers check it; the
//! kernels tolerate a mismatch by using the shorter length); a document with no vectors
//! has distance +∞ (never ranked ahead of one that has vectors).

use crate::index::vector::distance::{kernels, Metric};

/// Scratch space reused across documents of one query (no allocation per document).
#[derive(Default)]
pub struct Scratch {
    flat: Vec<f32>,
    out: Vec<f32>,
}

/// The late-interaction distance of document vectors `doc` to query vectors `query`.
pub fn multi_distance(metric: Metric, query: &[Vec<f32>], doc: &[Vec<f32>], s: &mut Scratch) -> f32 {
    if doc.is_empty() {
        return f32::INFINITY;
    }
    s.flat.clear();
    for d in doc {
        s.flat.extend_from_slice(d);
    }
    multi_distance_flat(metric, query, &s.flat, doc.len(), &mut s.out)
}

/// As [`multi_distance`], the document's `n` vectors given row-major in `flat`.
pub fn multi_distance_flat(
    metric: Metric,
    query: &[Vec<f32>],
    flat: &[f32],
    n: usize,
    out: &mut Vec<f32>,
) -> f32 {
    if n == 0 {
        return f32::INFINITY;
    }
    let k = kernels();
    out.clear();
    out.resize(n, 0.0);
    let mut total = 0.0f32;
    for q in query {
        match metric {
            Metric::CosineDistance => k.cosine_batch(q, flat, out),
            Metric::EuclideanSquared => k.euclidean_squared_batch(q, flat, out),
        }
        total += out.iter().copied().fold(f32::INFINITY, f32::min);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::distance::{cosine_distance, euclidean_squared};

    fn reference(metric: Metric, q: &[Vec<f32>], d: &[Vec<f32>]) -> f32 {
        let dist = |a: &[f32], b: &[f32]| match metric {
            Metric::CosineDistance => cosine_distance(a, b),
            Metric::EuclideanSquared => euclidean_squared(a, b),
        };
        q.iter().map(|q| d.iter().map(|d| dist(q, d)).fold(f32::INFINITY, f32::min)).sum()
    }

    #[test]
    fn matches_the_scalar_definition() {
        let q = vec![vec![1.0, 0.0, 0.5], vec![0.0, 1.0, -1.0]];
        let d = vec![vec![0.9, 0.1, 0.4], vec![-1.0, 2.0, 0.0], vec![0.0, 0.0, 1.0]];
        let mut s = Scratch::default();
        for m in [Metric::CosineDistance, Metric::EuclideanSquared] {
            let got = multi_distance(m, &q, &d, &mut s);
            assert!((got - reference(m, &q, &d)).abs() < 1e-5, "{m:?}: {got}");
        }
        // Cosine: |Q| − MaxSim; a document holding the query vectors themselves is at 0.
        assert!(multi_distance(Metric::CosineDistance, &q, &q, &mut s).abs() < 1e-5);
        assert_eq!(multi_distance(Metric::CosineDistance, &q, &[], &mut s), f32::INFINITY);
    }
}
