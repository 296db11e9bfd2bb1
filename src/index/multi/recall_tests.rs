//! Recall of the MUVERA section against exact late-interaction distance on clustered
//! synthetic data (several vectors per document): candidates by encoding inner product,
//! reranked exactly, at [`candidate_depth`]'s default must reach recall@10 ≥ 0.95.

use super::candidate_depth;
use super::fde::FdeParams;
use super::maxsim::{multi_distance, Scratch};
use super::section::{build, MuveraIndex};
use crate::index::vector::distance::Metric;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn pick(&mut self, n: usize) -> usize {
        (((self.next() + 1.0) / 2.0) * n as f32) as usize % n
    }
}

/// `n` documents of 4..=16 vectors near 2 of `c` cluster centres, and `nq` queries of
/// 4..=8 vectors near 2 centres.
/// A set of vectors (a document or a query).
type Set = Vec<Vec<f32>>;

fn clustered(seed: u64, dim: usize, n: usize, nq: usize) -> (Vec<Set>, Vec<Set>) {
    let mut r = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..32).map(|_| (0..dim).map(|_| r.next()).collect()).collect();
    let set = |r: &mut Rng, lo: usize, hi: usize| {
        let topics = [r.pick(centres.len()), r.pick(centres.len())];
        let m = lo + r.pick(hi - lo + 1);
        (0..m).map(|i| centres[topics[i % 2]].iter().map(|c| c + 0.35 * r.next()).collect()).collect::<Set>()
    };
    let docs = (0..n).map(|_| set(&mut r, 4, 16)).collect();
    let queries = (0..nq).map(|_| set(&mut r, 4, 8)).collect();
    (docs, queries)
}

fn recall_at_10(metric: Metric, dim: usize) -> f64 {
    let (docs, queries) = clustered(11, dim, 3000, 40);
    let p = FdeParams::defaults(dim);
    let bytes =
        build("t", docs.len(), metric, p, docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_slice())));
    let ix = MuveraIndex::open(&bytes).unwrap();
    let mut s = Scratch::default();
    let mut hit = 0usize;
    for q in &queries {
        let mut exact: Vec<(f32, usize)> =
            docs.iter().enumerate().map(|(i, d)| (multi_distance(metric, q, d, &mut s), i)).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut got: Vec<(f32, usize)> = ix
            .candidates(q, candidate_depth(10), |_| true)
            .into_iter()
            .map(|i| (multi_distance(metric, q, &docs[i], &mut s), i))
            .collect();
        got.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<usize> = exact.iter().take(10).map(|x| x.1).collect();
        hit += got.iter().take(10).filter(|x| want.contains(&x.1)).count();
    }
    hit as f64 / (10 * queries.len()) as f64
}

#[test]
fn recall_at_10_reaches_095_at_the_default_depth() {
    let r = recall_at_10(Metric::CosineDistance, 32);
    eprintln!("muvera recall@10 (cosine, dim 32, 3000 docs): {r:.3}");
    assert!(r >= 0.95, "recall@10 {r}");
}
