//! Nearest-centroid assignment for the IVF build: every k-means iteration and the final lists.
//!
//! Rows × centroids × dim is most of a segment's build time (a 255k-row segment has 1,363
//! centroids: ~1 TFLOP of f32 dot products over its 10 training iterations), so candidates are
//! ranked by 8-bit codes first and only the best few are scored in f32:
//! - the centroids and each row are centred on the centroids' mean `m` (a component every centroid
//!   shares spends no code range) and quantized per vector to 8 bits; the estimate
//!   `|ĉ|² − 2 x̂·ĉ` of `|x − c|²` (up to the row's constant `|x̂|²`) comes from an exact integer dot
//!   product ([`Kernels::u8i8_batch`]);
//! - the `rerank` lowest estimates (`AnnParams::assign_rerank`, default 4) are scored with the
//!   deterministic f32 kernels, as the exact assignment scores every centroid, and the best wins,
//!   ties to the lower centroid. `rerank` 0 (or ≥ the centroids, or fewer than [`EXACT_BELOW`]
//!   centroids) is the exact assignment.
//!
//! Invariants: the result is the same on every CPU and for every thread count (integer dots are
//! exact; the f32 steps are fixed-order scalar or deterministic kernels). It is the exact
//! assignment whenever the true nearest centroid is among the `rerank` best estimates; when it
//! is not, the row goes to the best of those, which the IVF's calibration measures like any list.
//! For cosine, rows and centroids are unit vectors, so the nearest in L2 is the most similar.

use super::dots4::{dots4, ROWS};
use super::*;

/// Below this many centroids (segments under ~2,250 rows with the automatic nlist) every row is
/// assigned exactly: the f32 pass is cheap there, and small sections keep the bytes every earlier
/// build wrote (the frozen fixtures are built from such inputs, some of them near-duplicate rows
/// whose centroids share one code: where the estimate's best 4 can miss the exact best by an ulp).
pub(super) const EXACT_BELOW: usize = 128;

/// The centroids as 8-bit codes around their mean, with what the estimate needs.
struct Coded {
    dim: usize,
    mean: Vec<f32>,
    /// Per centroid: `round((c − m)·s) + 128`, row-major.
    codes: Vec<u8>,
    /// Per centroid: `1 / s`.
    inv_scale: Vec<f32>,
    /// Per centroid: `|ĉ|²` of the decoded code.
    sq_norm: Vec<f32>,
}

impl Coded {
    fn new(centroids: &[f32], dim: usize) -> Coded {
        let nlist = centroids.len() / dim;
        let mut mean = vec![0f64; dim];
        for c in centroids.chunks_exact(dim) {
            mean.iter_mut().zip(c).for_each(|(m, v)| *m += f64::from(*v));
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / nlist.max(1) as f64) as f32).collect();
        let mut codes = vec![0u8; nlist * dim];
        let (mut inv_scale, mut sq_norm) = (Vec::with_capacity(nlist), Vec::with_capacity(nlist));
        let mut q = vec![0i8; dim];
        for (c, out) in centroids.chunks_exact(dim).zip(codes.chunks_exact_mut(dim)) {
            let inv = quantize(c, &mean, &mut q);
            let mut n = 0f32;
            for (o, v) in out.iter_mut().zip(&q) {
                *o = (i16::from(*v) + 128) as u8;
                let d = f32::from(*v) * inv;
                n += d * d;
            }
            inv_scale.push(inv);
            sq_norm.push(n);
        }
        Coded { dim, mean, codes, inv_scale, sq_norm }
    }
}

/// `q = round((x − m)·s)` with `s = 127 / max|x − m|`; returns `1 / s` (0 for a zero vector).
fn quantize(x: &[f32], mean: &[f32], q: &mut [i8]) -> f32 {
    let max = x.iter().zip(mean).map(|(v, m)| (v - m).abs()).fold(0f32, f32::max);
    if max == 0.0 || !max.is_finite() {
        q.iter_mut().for_each(|v| *v = 0);
        return 0.0;
    }
    let s = 127.0 / max;
    for ((o, v), m) in q.iter_mut().zip(x).zip(mean) {
        *o = crate::index::vector::round::round127((v - m) * s) as i8;
    }
    max / 127.0
}

/// Per-thread buffers.
struct Scratch {
    /// [`ROWS`] rows' codes.
    q: Vec<i8>,
    /// Their inverse scales.
    inv: [f32; ROWS],
    /// Their dots with every centroid, row-major.
    dots: Vec<i32>,
    cands: Vec<(f32, u32)>,
    gathered: Vec<f32>,
    exact: Vec<f32>,
}

/// Assign each row to its best centroid: (cluster, score) per row, where score is the similarity
/// (cosine: larger is better) or the squared distance (euclidean: smaller is better) to it;
/// `rerank` centroids scored in f32 per row (0: all of them, the exact assignment).
pub(super) fn assign(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    metric: Metric,
    (threads, rerank): (usize, usize),
) -> Vec<(u32, f32)> {
    let n = data.len() / dim;
    let nlist = centroids.len() / dim;
    let coded = (rerank > 0 && rerank < nlist && nlist >= EXACT_BELOW).then(|| Coded::new(centroids, dim));
    let work = |rows: &[f32]| -> Vec<(u32, f32)> {
        match &coded {
            None => exhaustive(rows, dim, centroids, metric),
            Some(coded) => {
                let mut s = Scratch {
                    q: vec![0i8; ROWS * dim],
                    inv: [0.0; ROWS],
                    dots: vec![0i32; ROWS * nlist],
                    cands: Vec::with_capacity(rerank + 1),
                    gathered: Vec::with_capacity(rerank * dim),
                    exact: vec![0f32; rerank],
                };
                nearest_all(rows, centroids, coded, metric, &mut s)
            }
        }
    };
    let threads = threads.clamp(1, 16);
    if threads == 1 || n < 1024 {
        return work(data);
    }
    crate::index::vector::in_parts(n, threads, |r| work(&data[r.start * dim..r.end * dim]))
}

/// The exact assignment: every centroid scored in f32, ties to the lower one.
fn exhaustive(rows: &[f32], dim: usize, centroids: &[f32], metric: Metric) -> Vec<(u32, f32)> {
    let mut buf = vec![0f32; centroids.len() / dim];
    rows.chunks_exact(dim)
        .map(|x| {
            match metric {
                Metric::CosineDistance => det_dot_batch(x, centroids, &mut buf),
                Metric::EuclideanSquared => det_l2sq_batch(x, centroids, &mut buf),
            }
            let mut best = (0u32, buf.first().copied().unwrap_or(0.0));
            for (c, &v) in buf.iter().enumerate().skip(1) {
                if better(metric, v, best.1) {
                    best = (c as u32, v);
                }
            }
            best
        })
        .collect()
}

/// Whether score `a` beats `b` (strictly: the first of equals stays).
fn better(metric: Metric, a: f32, b: f32) -> bool {
    match metric {
        Metric::CosineDistance => a > b,
        Metric::EuclideanSquared => a < b,
    }
}

/// [`nearest`] of every row of `rows`, their codes' dots [`ROWS`] rows at a time ([`dots4`]).
fn nearest_all(
    rows: &[f32],
    centroids: &[f32],
    coded: &Coded,
    metric: Metric,
    s: &mut Scratch,
) -> Vec<(u32, f32)> {
    let dim = coded.dim;
    let n = s.dots.len() / ROWS;
    let mut out = Vec::with_capacity(rows.len() / dim);
    let mut blocks = rows.chunks_exact(dim * ROWS);
    for block in &mut blocks {
        for (r, x) in block.chunks_exact(dim).enumerate() {
            s.inv[r] = quantize(x, &coded.mean, &mut s.q[r * dim..(r + 1) * dim]);
        }
        dots4(kernels(), &s.q, dim, &coded.codes, &mut s.dots);
        for (r, x) in block.chunks_exact(dim).enumerate() {
            out.push(nearest(x, r, centroids, coded, metric, s));
        }
    }
    for x in blocks.remainder().chunks_exact(dim) {
        s.inv[0] = quantize(x, &coded.mean, &mut s.q[..dim]);
        kernels().u8i8_batch(&s.q[..dim], &coded.codes, &mut s.dots[..n]);
        out.push(nearest(x, 0, centroids, coded, metric, s));
    }
    out
}

/// The best centroid of row `x` (block row `row` of `s`: its code, scale and dots computed)
/// among its best estimates (as many as `s.exact` holds), and its f32 score.
fn nearest(
    x: &[f32],
    row: usize,
    centroids: &[f32],
    coded: &Coded,
    metric: Metric,
    s: &mut Scratch,
) -> (u32, f32) {
    let dim = coded.dim;
    let n = s.dots.len() / ROWS;
    let (q, dots) = (&s.q[row * dim..(row + 1) * dim], &s.dots[row * n..(row + 1) * n]);
    // The codes carry +128: Σ u·q = Σ ĉ·q + 128 Σ q.
    let offset = 128 * q.iter().map(|v| i32::from(*v)).sum::<i32>();
    // The `r` lowest estimates, ascending; a later centroid displaces only a strictly lower one,
    // so equal estimates keep the lower centroid.
    let r = s.exact.len().min(dots.len());
    if r == 0 {
        return (0, 0.0);
    }
    s.cands.clear();
    let f = 2.0 * s.inv[row];
    for (c, &d) in dots.iter().enumerate() {
        let est = coded.sq_norm[c] - (d - offset) as f32 * coded.inv_scale[c] * f;
        if s.cands.len() == r {
            if est >= s.cands[r - 1].0 {
                continue;
            }
            s.cands.pop();
        }
        let at = s.cands.partition_point(|e| e.0 <= est);
        s.cands.insert(at, (est, c as u32));
    }
    let best = &mut s.cands[..r];
    best.sort_unstable_by_key(|c| c.1);
    s.gathered.clear();
    for &(_, c) in best.iter() {
        s.gathered.extend_from_slice(&centroids[c as usize * dim..(c as usize + 1) * dim]);
    }
    let exact = &mut s.exact[..r];
    match metric {
        Metric::CosineDistance => det_dot_batch(x, &s.gathered, exact),
        Metric::EuclideanSquared => det_l2sq_batch(x, &s.gathered, exact),
    }
    let mut pick = (best[0].1, exact[0]);
    for (&(_, c), &e) in best.iter().zip(exact.iter()).skip(1) {
        if better(metric, e, pick.1) {
            pick = (c, e);
        }
    }
    pick
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::synth;

    fn agreement(metric: Metric, data: &[f32], dim: usize, nlist: usize) -> f64 {
        let centroids: Vec<f32> = data[..nlist * dim].to_vec();
        let rows = &data[nlist * dim..];
        let got = assign(rows, dim, &centroids, metric, (2, 4));
        let want = assign(rows, dim, &centroids, metric, (1, 0));
        assert_eq!(want, exhaustive(rows, dim, &centroids, metric));
        assert_eq!(got, assign(rows, dim, &centroids, metric, (1, 4)), "thread count changed the result");
        for (g, w) in got.iter().zip(&want) {
            if g.0 == w.0 {
                assert_eq!(g.1.to_bits(), w.1.to_bits(), "the winner's score is its f32 score");
            }
        }
        got.iter().zip(&want).filter(|(g, w)| g.0 == w.0).count() as f64 / want.len() as f64
    }

    #[test]
    fn the_estimate_finds_the_exact_nearest_centroid_on_every_synthetic_distribution() {
        let dim = 96;
        for kind in synth::Kind::ALL {
            let mut data = synth::generate(kind, 6000, dim, 7);
            for metric in [Metric::EuclideanSquared, Metric::CosineDistance] {
                if metric == Metric::CosineDistance {
                    data.chunks_exact_mut(dim).for_each(|r| {
                        build::normalize_in_place(r);
                    });
                }
                let a = agreement(metric, &data, dim, 200);
                assert!(a >= 0.995, "{} {metric:?}: {a}", kind.name());
            }
        }
    }

    #[test]
    fn ties_and_degenerate_centroids_go_to_the_lower_centroid() {
        // Enough centroids for the estimate's path: two equal nearest ones, then equal far ones.
        let dim = 8;
        let mut centroids = [vec![1f32; dim], vec![1f32; dim]].concat();
        centroids.extend(std::iter::repeat_n(0f32, dim * EXACT_BELOW));
        let rows = [vec![1f32; dim * 3], vec![0f32; dim]].concat();
        let got = assign(&rows, dim, &centroids, Metric::EuclideanSquared, (1, 2));
        assert_eq!(got[..3], [(0, 0.0); 3], "the first of the nearest");
        assert_eq!(got[3], (2, 0.0), "the first of the far ones");
    }
}
