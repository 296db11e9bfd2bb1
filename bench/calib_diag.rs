//! Calibration diagnosis for `bench/ann_robust.rs` (`ANN_ROBUST_DIAG=1`): per set, the graph
//! calibration's query kinds (own rows hidden from their search; rows perturbed by their own
//! 10th-neighbour radius, as `calibrate::sample` makes them) and variants of the perturbation,
//! against the set's held-out queries: recall@10 (mean and mean − 2 standard errors, and in
//! brackets the queries that found at most half of their 10 neighbours: lost in another region
//! of the graph) at every ef of a fine ladder, and each kind's mean exact 1st / 10th distance. One
//! line per kind on stderr.

use tidepool::index::vector::ann;
use tidepool::index::vector::calibrate;
use tidepool::index::vector::distance::Metric;
use tidepool::index::vector::graph::{self, GraphIndex, GraphParams, GraphSearchParams};
use tidepool::index::vector::rows::SliceRows;
use tidepool::index::vector::synth::Rng;

const K: usize = 10;
const FINE: [u32; 11] = [16, 24, 32, 40, 48, 64, 80, 100, 128, 160, 256];

/// Queries of one kind: vectors (index space), the row each hides.
struct Kind {
    name: String,
    queries: Vec<f32>,
    hidden: Vec<Option<u32>>,
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Euclidean radius of a distance in `m`'s units.
fn radius(m: Metric, d: f32) -> f32 {
    match m {
        Metric::CosineDistance => (2.0 * d).max(0.0).sqrt(),
        Metric::EuclideanSquared => d.max(0.0).sqrt(),
    }
}

pub fn run(name: &str, base: &[f32], held: &[f32], dim: usize, m: Metric) {
    let mut space = base.to_vec();
    let mut held = held.to_vec();
    if m == Metric::CosineDistance {
        space.chunks_exact_mut(dim).for_each(unit);
        held.chunks_exact_mut(dim).for_each(unit);
    }
    let g = GraphIndex::open(bytes::Bytes::from(graph::build(base, dim, m, &GraphParams::default())))
        .expect("graph");
    let cal: Vec<String> =
        g.calibration().rungs.iter().map(|r| format!("{}:{:.3}", r.effort, r.recall())).collect();
    eprintln!("== {name}: stored calibration {} -> ef {:?}", cal.join(" "), g.effort(0.95));
    let s = calibrate::sample(&space, dim, m);
    let own = s.hidden.iter().filter(|h| h.is_some()).count();
    let rows: Vec<usize> = s.hidden[..own].iter().map(|h| h.unwrap() as usize).collect();
    // Each sampled row's exact 1st and 10th neighbour (itself left out).
    let nn: Vec<Vec<(u32, f32)>> = rows
        .iter()
        .map(|&r| {
            let not = |x: u32| x as usize != r;
            ann::exact(&space, dim, m, &space[r * dim..(r + 1) * dim], K, Some(&not))
        })
        .collect();
    let mut kinds = vec![
        Kind {
            name: "own".into(),
            queries: s.queries[..own * dim].to_vec(),
            hidden: s.hidden[..own].to_vec(),
        },
        Kind { name: "pert10".into(), queries: s.queries[own * dim..].to_vec(), hidden: vec![None; own] },
        Kind { name: "held".into(), queries: held.clone(), hidden: vec![None; held.len() / dim] },
    ];
    // Gaussian perturbations scaled by the 1st / 10th neighbour radius.
    for (label, at, f) in
        [("g1x1.0", 0, 1.0f32), ("g10x0.7", K - 1, 0.7), ("g10x0.5", K - 1, 0.5), ("g1x0.7", 0, 0.7)]
    {
        let mut rng = Rng::new(77);
        let mut q = Vec::new();
        for (i, &r) in rows.iter().enumerate() {
            let x = &space[r * dim..(r + 1) * dim];
            let sd = f * radius(m, nn[i][at].1) / (dim as f32).sqrt();
            let mut v: Vec<f32> = x.iter().map(|a| a + sd * rng.normal() as f32).collect();
            if m == Metric::CosineDistance {
                unit(&mut v);
            }
            q.extend(v);
        }
        kinds.push(Kind { name: label.into(), queries: q, hidden: vec![None; own] });
    }
    let r1 = nn.iter().map(|t| t[0].1 as f64).sum::<f64>() / own as f64;
    let r10 = nn.iter().map(|t| t[K - 1].1 as f64).sum::<f64>() / own as f64;
    eprintln!("   sampled rows {own}: mean 1st-neighbour distance {r1:.4}, 10th {r10:.4}");
    let src = SliceRows { vectors: base, dim };
    for k in &kinds {
        let truth: Vec<Vec<(u32, f32)>> = k
            .queries
            .chunks_exact(dim)
            .zip(&k.hidden)
            .map(|(q, h)| {
                let not = |x: u32| Some(x) != *h;
                ann::exact(&space, dim, m, q, K, Some(&not))
            })
            .collect();
        let nq = truth.len() as f64;
        let d1 = truth.iter().map(|t| t[0].1 as f64).sum::<f64>() / nq;
        let d10 = truth.iter().map(|t| t[K - 1].1 as f64).sum::<f64>() / nq;
        let mut line = format!("   {:<8} d1 {d1:.4} d10 {d10:.4} |", k.name);
        for ef in FINE {
            let p = GraphSearchParams { ef, rerank: ef };
            let per: Vec<f64> = k
                .queries
                .chunks_exact(dim)
                .zip(&k.hidden)
                .zip(&truth)
                .map(|((q, h), t)| {
                    let kth = t[K - 1].1;
                    let bound = kth + kth.abs() * 1e-5 + 1e-6;
                    let found = g.search_hiding(&src, q, K + 1, None, &p, *h);
                    found.iter().filter(|r| Some(r.0) != *h).take(K).filter(|r| r.1 <= bound).count() as f64
                        / K as f64
                })
                .collect();
            let mean = per.iter().sum::<f64>() / nq;
            let var = per.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (nq - 1.0);
            let poor = per.iter().filter(|r| **r <= 0.5).count();
            line += &format!(" {ef}:{mean:.3}/{:.3}[{poor}]", mean - 2.0 * (var / nq).sqrt());
        }
        eprintln!("{line}");
    }
}
