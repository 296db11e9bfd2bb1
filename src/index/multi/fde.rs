//! MUVERA fixed dimensional encodings (Dhulipala et al., 2024, "MUVERA: Multi-Vector
//! Retrieval via Fixed Dimensional Encodings"): a set of vectors becomes one vector whose
//! inner product with a query's encoding approximates the late-interaction similarity
//! `Σ_q max_d q·d`, so candidates come from a single-vector scan.
//!
//! For each of `reps` repetitions, `k_sim` Gaussian hyperplanes (SimHash) split the space
//! into `2^k_sim` partitions; every vector is first projected to `d_proj` dimensions by a
//! random ±1/√d_proj matrix (the paper's inner projection). The query encoding sums the
//! projected query vectors of each partition; the document encoding averages the projected
//! document vectors of each partition, and an empty partition takes the document vector whose
//! partition is nearest in Hamming distance (the paper's `fill_empty_partitions`). The
//! encoding is the concatenation over repetitions and partitions: `reps · 2^k_sim · d_proj`
//! floats.
//!
//! Invariants: the random matrices are a pure function of (`seed`, params, `dim`) (a
//! splitmix64 stream, Box–Muller normals), so a section stores only the seed and the query
//! side rebuilds the same matrices; vectors are unit-normalized first when the metric is
//! cosine (the FDE approximates inner products). Encoding never panics on empty input (all
//! zeros).

use crate::index::vector::distance::Metric;

/// The parameters of an encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdeParams {
    /// Input dimension.
    pub dim: usize,
    /// SimHash hyperplanes per repetition (2^k_sim partitions).
    pub k_sim: u32,
    /// Repetitions.
    pub reps: u32,
    /// Projected dimension per partition.
    pub d_proj: usize,
    /// Seed of the random matrices.
    pub seed: u64,
}

/// Largest `k_sim` a section may declare (2^8 partitions).
pub const MAX_K_SIM: u32 = 8;
/// Most repetitions a section may declare.
pub const MAX_REPS: u32 = 64;

impl FdeParams {
    /// tidepool's defaults for `dim` (measured: recall@10 ≥ 0.95 after reranking the default
    /// candidate depth on clustered data, `tests` below and `bench/multivector.py`).
    pub fn defaults(dim: usize) -> Self {
        FdeParams { dim, k_sim: 3, reps: 20, d_proj: dim.min(16), seed: 0x6d75_7665_7261_0001 }
    }

    /// Floats per encoding.
    pub fn fde_dim(&self) -> usize {
        self.reps as usize * (1usize << self.k_sim) * self.d_proj
    }
}

/// The random matrices of one parameter set.
pub struct Fde {
    p: FdeParams,
    /// reps × k_sim × dim Gaussian hyperplanes.
    planes: Vec<f32>,
    /// reps × d_proj × dim ±1/√d_proj (empty when d_proj == dim: the identity).
    proj: Vec<f32>,
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    #[allow(clippy::cast_precision_loss)]
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    #[allow(clippy::cast_possible_truncation)]
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

impl Fde {
    /// The matrices of `p`.
    pub fn new(p: FdeParams) -> Self {
        let mut rng = SplitMix(p.seed ^ (p.dim as u64).rotate_left(32));
        let planes = (0..p.reps as usize * p.k_sim as usize * p.dim).map(|_| rng.normal()).collect();
        #[allow(clippy::cast_precision_loss)]
        let s = 1.0 / (p.d_proj as f32).sqrt();
        let proj = if p.d_proj == p.dim {
            Vec::new()
        } else {
            (0..p.reps as usize * p.d_proj * p.dim)
                .map(|_| if rng.next() & 1 == 0 { s } else { -s })
                .collect()
        };
        Fde { p, planes, proj }
    }

    /// The parameters.
    pub fn params(&self) -> &FdeParams {
        &self.p
    }

    fn bucket(&self, rep: usize, x: &[f32]) -> usize {
        let (k, dim) = (self.p.k_sim as usize, self.p.dim);
        (0..k).fold(0, |b, j| {
            let h = &self.planes[(rep * k + j) * dim..][..dim];
            (b << 1) | usize::from(dot(h, x) > 0.0)
        })
    }

    fn project(&self, rep: usize, x: &[f32], out: &mut [f32]) {
        if self.proj.is_empty() {
            out.copy_from_slice(x);
            return;
        }
        let (dp, dim) = (self.p.d_proj, self.p.dim);
        for (i, o) in out.iter_mut().enumerate() {
            *o = dot(&self.proj[(rep * dp + i) * dim..][..dim], x);
        }
    }

    /// The query encoding: per partition, the sum of the projected query vectors.
    pub fn query(&self, metric: Metric, vs: &[Vec<f32>]) -> Vec<f32> {
        self.encode(metric, vs, false)
    }

    /// The document encoding: per partition, the average of the projected document vectors;
    /// an empty partition takes the vector whose partition is nearest in Hamming distance.
    pub fn document(&self, metric: Metric, vs: &[Vec<f32>]) -> Vec<f32> {
        self.encode(metric, vs, true)
    }

    fn encode(&self, metric: Metric, vs: &[Vec<f32>], doc: bool) -> Vec<f32> {
        let (nb, dp) = (1usize << self.p.k_sim, self.p.d_proj);
        let mut out = vec![0.0f32; self.p.fde_dim()];
        let vs: Vec<Vec<f32>> = vs.iter().map(|v| prepared(metric, v)).collect();
        let mut buf = vec![0.0f32; dp];
        for rep in 0..self.p.reps as usize {
            let block = &mut out[rep * nb * dp..][..nb * dp];
            let buckets: Vec<usize> = vs.iter().map(|v| self.bucket(rep, v)).collect();
            let mut counts = vec![0u32; nb];
            for (v, &b) in vs.iter().zip(&buckets) {
                self.project(rep, v, &mut buf);
                counts[b] += 1;
                for (o, x) in block[b * dp..][..dp].iter_mut().zip(&buf) {
                    *o += x;
                }
            }
            if !doc {
                continue;
            }
            for b in 0..nb {
                let cell = &mut block[b * dp..][..dp];
                if counts[b] > 0 {
                    #[allow(clippy::cast_precision_loss)]
                    let n = counts[b] as f32;
                    cell.iter_mut().for_each(|x| *x /= n);
                } else if let Some(i) = (0..vs.len()).min_by_key(|&i| (buckets[i] ^ b).count_ones()) {
                    self.project(rep, &vs[i], cell);
                }
            }
        }
        out
    }
}

/// A vector as the encoding reads it: unit length under cosine (a zero vector stays zero).
fn prepared(metric: Metric, v: &[f32]) -> Vec<f32> {
    let n = dot(v, v).sqrt();
    if metric == Metric::CosineDistance && n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::index::vector::distance::kernels().dot(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrices_are_a_function_of_the_params() {
        let p = FdeParams::defaults(8);
        let v = vec![vec![0.5, -1.0, 0.25, 0.0, 1.0, 2.0, -0.5, 0.1]];
        assert_eq!(
            Fde::new(p).document(Metric::CosineDistance, &v),
            Fde::new(p).document(Metric::CosineDistance, &v)
        );
        assert_eq!(Fde::new(p).query(Metric::CosineDistance, &v).len(), p.fde_dim());
        assert!(Fde::new(p).document(Metric::CosineDistance, &[]).iter().all(|x| *x == 0.0));
    }

    #[test]
    fn identical_sets_score_higher_than_unrelated_ones() {
        let f = Fde::new(FdeParams::defaults(4));
        let a = vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]];
        let b = vec![vec![0.0, 0.0, 1.0, 0.0], vec![0.0, 0.0, 0.0, -1.0]];
        let q = f.query(Metric::CosineDistance, &a);
        let s = |d: &[Vec<f32>]| dot(&q, &f.document(Metric::CosineDistance, d));
        assert!(s(&a) > s(&b) + 0.5, "{} vs {}", s(&a), s(&b));
    }
}
