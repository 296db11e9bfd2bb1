//! Calibration probe: how well does a graph section's build-time calibration (its own rows as
//! queries) predict the recall of queries from outside? Rows are the scale benchmark's
//! (`normalize(debian[i % 36000] + sigma·g)`, noise 0.6× the base norm); per rung of the ef
//! ladder it prints the stored calibration and the measured recall@10 of: the Debian dev queries,
//! midpoints of two rows, and rows plus noise. Also each family's mean exact 1st/10th distance.
//!
//! Run: `cargo build --profile profiling --example calib_probe` then
//! `target/profiling/examples/calib_probe ROWS [NOISE]` (NOISE: the noise's norm, default 0.6).

use tidepool::index::vector::ann;
use tidepool::index::vector::distance::Metric;
use tidepool::index::vector::graph::{self, GraphIndex, GraphParams, GraphSearchParams, EF_LADDER};

const DIM: usize = 384;
const K: usize = 10;
const QUERIES: usize = 200;

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn normal(s: &mut u64) -> f32 {
    let u = ((next(s) >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
    let v = (next(s) >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Recall@10 per ef and the mean exact 1st and 10th distances of `queries`.
fn measure(ix: &GraphIndex, vectors: &[f32], queries: &[f32]) -> (Vec<f64>, f64, f64) {
    let truths: Vec<Vec<(u32, f32)>> = queries
        .chunks_exact(DIM)
        .map(|q| ann::exact(vectors, DIM, Metric::CosineDistance, q, K, None))
        .collect();
    let nq = truths.len() as f64;
    let d1 = truths.iter().map(|t| t[0].1 as f64).sum::<f64>() / nq;
    let d10 = truths.iter().map(|t| t[K - 1].1 as f64).sum::<f64>() / nq;
    let recalls = EF_LADDER
        .iter()
        .map(|&ef| {
            let mut hit = 0usize;
            for (q, t) in queries.chunks_exact(DIM).zip(&truths) {
                let got = ix.search(vectors, q, K, None, &GraphSearchParams { ef, rerank: ef });
                hit += got.iter().filter(|(_, d)| *d <= t[K - 1].1 + 1e-5).count();
            }
            hit as f64 / (nq * K as f64)
        })
        .collect();
    (recalls, d1, d10)
}

fn main() {
    let rows: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let root = "/work/shared/data/debian";
    let base = read_f32(&format!("{root}/vectors.f32"));
    let dev = read_f32(&format!("{root}/queries/query_vectors.f32"));
    let n0 = base.len() / DIM;
    // Noise norm as a share of the (unit) base: 0.6 is the scale benchmark's; 0.2 gives near-copies
    // like `graph_build`'s.
    let noise: f32 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(0.6);
    let sigma = noise / (DIM as f32).sqrt();
    let mut s = 16u64;
    let mut vectors = Vec::with_capacity(rows * DIM);
    for i in 0..rows {
        let mut v: Vec<f32> = base[(i % n0) * DIM..(i % n0 + 1) * DIM].to_vec();
        v.iter_mut().for_each(|x| *x += sigma * normal(&mut s));
        normalize(&mut v);
        vectors.extend_from_slice(&v);
    }
    let t = std::time::Instant::now();
    let section = graph::build(&vectors, DIM, Metric::CosineDistance, &GraphParams::default());
    eprintln!("build {:.1}s", t.elapsed().as_secs_f64());
    let ix = GraphIndex::open(bytes::Bytes::from(section)).expect("graph section");
    println!("rows {rows} default_ef {}", ix.default_ef());
    for r in &ix.calibration().rungs {
        println!("stored  ef {:4} recall {:.4}", r.effort, r.recall());
    }
    let row = |i: usize| &vectors[i * DIM..(i + 1) * DIM];
    let mut fam: Vec<(String, Vec<f32>)> = vec![("dev".into(), dev[..QUERIES * DIM].to_vec())];
    let mut s = 99u64;
    let mut mid = Vec::new();
    for _ in 0..QUERIES {
        let (a, b) = (next(&mut s) as usize % rows, next(&mut s) as usize % rows);
        let mut v: Vec<f32> = row(a).iter().zip(row(b)).map(|(x, y)| x + y).collect();
        normalize(&mut v);
        mid.extend_from_slice(&v);
    }
    fam.push(("mid".into(), mid));
    let mut mu = vec![0f64; DIM];
    for r in vectors.chunks_exact(DIM) {
        mu.iter_mut().zip(r).for_each(|(m, x)| *m += *x as f64);
    }
    mu.iter_mut().for_each(|m| *m /= rows as f64);
    println!("mean norm {:.3}", mu.iter().map(|m| m * m).sum::<f64>().sqrt());
    // Perturbations: absolute norm t; norm = |x - mean| × t; norm = the row's K-th neighbour radius × t.
    for (kind, t) in [("abs", 1.0f32), ("dev", 0.75), ("dev", 1.0), ("kth", 1.0), ("kth", 1.5)] {
        let mut noisy = Vec::new();
        let mut s = 7u64;
        for _ in 0..QUERIES {
            let a = next(&mut s) as usize % rows;
            let x = row(a);
            let scale = match kind {
                "abs" => 1.0,
                "dev" => x.iter().zip(&mu).map(|(x, m)| (*x as f64 - m).powi(2)).sum::<f64>().sqrt() as f32,
                _ => {
                    let t = ann::exact(&vectors, DIM, Metric::CosineDistance, x, K + 1, None);
                    (2.0 * t[K].1).max(0.0).sqrt()
                }
            };
            let sd = t * scale / (DIM as f32).sqrt();
            let mut v: Vec<f32> = x.iter().map(|x| x + sd * normal(&mut s)).collect();
            normalize(&mut v);
            noisy.extend_from_slice(&v);
        }
        fam.push((format!("{kind}{t}"), noisy));
    }
    for (name, q) in &fam {
        let (rec, d1, d10) = measure(&ix, &vectors, q);
        let r: Vec<String> = EF_LADDER.iter().zip(&rec).map(|(e, r)| format!("{e}:{r:.3}")).collect();
        println!("{name:8} d1 {d1:.3} d10 {d10:.3}  {}", r.join(" "));
    }
}
