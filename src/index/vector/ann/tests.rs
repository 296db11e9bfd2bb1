use super::*;
use rand::rngs::StdRng;
use rand::Rng;

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(1e-12..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` rows around `centers` gaussian blobs (spread `sigma`), fixed seed.
fn blobs(seed: u64, n: usize, dim: usize, centers: usize, sigma: f32) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let c: Vec<f32> = (0..centers * dim).map(|_| gauss(&mut rng)).collect();
    let mut v = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let k = rng.random_range(0..centers);
        for j in 0..dim {
            v.push(c[k * dim + j] + sigma * gauss(&mut rng));
        }
    }
    v
}

fn reference(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    q: &[f32],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> Vec<(u32, f64)> {
    let mut all: Vec<(u32, f64)> = vectors
        .chunks_exact(dim)
        .enumerate()
        .filter(|(r, _)| filter.is_none_or(|f| f(*r as u32)))
        .map(|(r, x)| {
            let d = match metric {
                Metric::CosineDistance => {
                    let dot: f64 = q.iter().zip(x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                    let qq: f64 = q.iter().map(|a| f64::from(*a).powi(2)).sum();
                    let xx: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
                    if qq == 0.0 || xx == 0.0 {
                        1.0
                    } else {
                        1.0 - dot / (qq.sqrt() * xx.sqrt())
                    }
                }
                Metric::EuclideanSquared => {
                    q.iter().zip(x).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum()
                }
            };
            (r as u32, d)
        })
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Tie-aware recall: a hit when the returned distance ≤ the reference k-th distance + tol.
fn recall(got: &[(u32, f32)], want: &[(u32, f64)], tol: f64) -> f64 {
    if want.is_empty() {
        return 1.0;
    }
    let kth = want[want.len() - 1].1;
    got.iter().take(want.len()).filter(|(_, d)| f64::from(*d) <= kth + tol).count() as f64 / want.len() as f64
}

const METRICS: [Metric; 2] = [Metric::CosineDistance, Metric::EuclideanSquared];

/// Small k-means budget: these tests also run unoptimised.
fn test_params() -> AnnParams {
    AnnParams { nlist: 64, iterations: 5, ..AnnParams::default() }
}

#[test]
fn exact_equals_brute_force_reference() {
    let dim = 17;
    let mut rng = StdRng::seed_from_u64(1);
    let vectors: Vec<f32> = (0..400 * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let even = |r: u32| r.is_multiple_of(3);
    for metric in METRICS {
        for qi in 0..20 {
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let filters: [Option<&dyn Fn(u32) -> bool>; 2] = [None, Some(&even)];
            for filter in filters {
                let got = exact(&vectors, dim, metric, &q, 15, filter);
                let want = reference(&vectors, dim, metric, &q, 15, filter);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!((f64::from(g.1) - w.1).abs() < 1e-4, "{metric:?} q{qi}: {g:?} vs {w:?}");
                    if let Some(f) = filter {
                        assert!(f(g.0));
                    }
                }
                assert_eq!(recall(&got, &want, 1e-5), 1.0);
                // Rows are distinct and sorted by (distance, row).
                assert!(got.windows(2).all(|w| (w[0].1, w[0].0) < (w[1].1, w[1].0)));
            }
        }
    }
}

#[test]
fn ann_recall_on_clustered_blobs_above_floor() {
    let (n, dim) = (5000, 32);
    let vectors = blobs(42, n, dim, 40, 0.6);
    let queries = blobs(43, 50, dim, 40, 0.6);
    for metric in METRICS {
        let bytes = build(&vectors, dim, metric, &test_params());
        let idx = AnnIndex::open(&bytes).expect("open");
        assert_eq!((idx.rows(), idx.dim(), idx.metric(), idx.nlist()), (n, dim, metric, 64));
        let mut total = 0.0;
        for q in queries.chunks_exact(dim) {
            let got = idx.search(&vectors, q, 10, None, &SearchParams::default());
            assert_eq!(got.len(), 10);
            total += recall(&got, &reference(&vectors, dim, metric, q, 10, None), 1e-4);
        }
        let r = total / 50.0;
        assert!(r >= 0.9, "{metric:?}: recall {r}");
    }
}

#[test]
fn filtered_ann_at_one_percent_keeps_recall() {
    let (n, dim) = (5000, 32);
    let vectors = blobs(7, n, dim, 40, 0.6);
    let queries = blobs(8, 40, dim, 40, 0.6);
    // ~1% of rows, scattered.
    let keep: Vec<bool> = (0..n).map(|r| (r * 7919) % 100 == 3).collect();
    let f = |r: u32| keep[r as usize];
    for metric in METRICS {
        let bytes = build(&vectors, dim, metric, &test_params());
        let idx = AnnIndex::open(&bytes).expect("open");
        let forced = SearchParams { exact_threshold: 0, ..SearchParams::default() };
        let (mut r_forced, mut r_default) = (0.0, 0.0);
        for q in queries.chunks_exact(dim) {
            let want = exact(&vectors, dim, metric, q, 10, Some(&f));
            let want64: Vec<(u32, f64)> = want.iter().map(|(r, d)| (*r, f64::from(*d))).collect();
            let got = idx.search(&vectors, q, 10, Some(&f), &forced);
            assert!(got.iter().all(|(r, _)| f(*r)));
            r_forced += recall(&got, &want64, 1e-5);
            // Default settings: 50 matching rows is below the exact threshold → exact.
            let got = idx.search(&vectors, q, 10, Some(&f), &SearchParams::default());
            assert_eq!(got, want);
            r_default += recall(&got, &want64, 1e-5);
        }
        assert!(r_forced / 40.0 >= 0.9, "{metric:?}: forced ivf filtered recall {}", r_forced / 40.0);
        assert_eq!(r_default / 40.0, 1.0);
        // A caller estimate overrides sampling: a large estimate forces the probing path.
        let sp = SearchParams { filter_estimate: Some(5000), ..SearchParams::default() };
        let got = idx.search(&vectors, &queries[..dim], 10, Some(&f), &sp);
        assert!(got.iter().all(|(r, _)| f(*r)) && !got.is_empty());
    }
}

#[test]
fn build_is_deterministic_and_thread_independent() {
    let vectors = blobs(3, 1500, 24, 10, 0.5);
    for metric in METRICS {
        let a = build(&vectors, 24, metric, &test_params());
        let b = build(&vectors, 24, metric, &AnnParams { threads: 3, ..test_params() });
        assert_eq!(a, b);
    }
}

#[test]
fn corrupt_sections_are_errors_not_panics() {
    let vectors = blobs(5, 300, 8, 5, 0.5);
    let bytes = build(&vectors, 8, Metric::CosineDistance, &AnnParams::default());
    assert!(AnnIndex::open(&bytes).is_ok());
    // Truncation at every length.
    for len in 0..bytes.len() {
        assert!(AnnIndex::open(&bytes[..len]).is_err(), "truncated to {len}");
    }
    // Any single flipped byte fails the crc.
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let mut b = bytes.clone();
        let i = rng.random_range(0..b.len());
        b[i] ^= 1 << rng.random_range(0..8);
        assert!(AnnIndex::open(&b).is_err());
    }
    // Structural corruption with a valid crc (or crc skipped) must not panic, and an index
    // that opens must search safely.
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = if rng.random_bool(0.5) {
                rng.random_range(0..HEADER_LEN)
            } else {
                rng.random_range(0..b.len())
            };
            b[i] = rng.random();
        }
        let crc = section_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        for idx in [AnnIndex::open(&b), AnnIndex::open_trusted(&b)].into_iter().flatten() {
            let q = &vectors[..8];
            let _ = idx.search(&vectors, q, 5, None, &SearchParams::default());
            let all = |_: u32| true;
            let _ = idx.search(
                &vectors,
                q,
                5,
                Some(&all),
                &SearchParams { exact_threshold: 0, ..SearchParams::default() },
            );
        }
    }
    assert_eq!(AnnIndex::open(b"TPANNIVF").err(), Some(corrupt("shorter than the header")));
    let mut b = bytes.clone();
    b[8] = 9;
    assert!(
        matches!(AnnIndex::open(&b), Err(e) if matches!(e.kind(), crate::index::IndexErrorKind::Unsupported { version: 9, .. }))
    );
}

#[test]
fn tiny_inputs_and_edge_cases() {
    for metric in METRICS {
        for n in [0usize, 1, 2, 3] {
            let dim = 3;
            let vectors: Vec<f32> = (0..n * dim).map(|i| i as f32 + 1.0).collect();
            let bytes = build(&vectors, dim, metric, &AnnParams::default());
            let idx = AnnIndex::open(&bytes).expect("open");
            assert_eq!(idx.rows(), n);
            let q = [1.0, 2.0, 3.5];
            let got = idx.search(&vectors, &q, 10, None, &SearchParams::default());
            let want = exact(&vectors, dim, metric, &q, 10, None);
            assert_eq!(got.len(), n, "k > rows returns every row");
            assert_eq!(
                got.iter().map(|x| x.0).collect::<Vec<_>>(),
                want.iter().map(|x| x.0).collect::<Vec<_>>()
            );
            assert!(idx.search(&vectors, &q, 0, None, &SearchParams::default()).is_empty());
            assert!(idx.search(&vectors, &q[..2], 5, None, &SearchParams::default()).is_empty());
            let none = |_: u32| false;
            assert!(idx.search(&vectors, &q, 5, Some(&none), &SearchParams::default()).is_empty());
        }
        // dim 0 and a ragged tail.
        let bytes = build(&[1.0, 2.0], 0, metric, &AnnParams::default());
        assert_eq!(AnnIndex::open(&bytes).expect("open").rows(), 0);
        let bytes = build(&[1.0, 2.0, 3.0], 2, metric, &AnnParams::default());
        assert_eq!(AnnIndex::open(&bytes).expect("open").rows(), 1);
        assert!(exact(&[], 0, metric, &[], 3, None).is_empty());
    }
}

#[test]
fn zero_and_mismatched_inputs() {
    let dim = 8;
    let vectors = blobs(9, 500, dim, 5, 0.5);
    let bytes = build(&vectors, dim, Metric::CosineDistance, &AnnParams::default());
    let idx = AnnIndex::open(&bytes).expect("open");
    // A zero query has cosine distance 1 to everything: rows 0..k.
    let got = idx.search(&vectors, &[0.0; 8], 3, None, &SearchParams::default());
    assert_eq!(got, vec![(0, 1.0), (1, 1.0), (2, 1.0)]);
    // A vectors slice of the wrong shape falls back to exact search over it.
    let short = &vectors[..100 * dim];
    let q = &vectors[5 * dim..6 * dim];
    assert_eq!(
        idx.search(short, q, 4, None, &SearchParams::default()),
        exact(short, dim, Metric::CosineDistance, q, 4, None)
    );
    // Unaligned section bytes still open (decoded copies instead of borrowed views).
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let idx2 = AnnIndex::open(&shifted[1..]).expect("open unaligned");
    // The shared (cached) form searches identically and is cheap to view.
    let shared = SharedAnnIndex::open(bytes::Bytes::from(bytes.clone())).expect("shared");
    assert!(SharedAnnIndex::open(bytes::Bytes::from(shifted[..bytes.len()].to_vec())).is_err());
    assert_eq!(
        shared.index().search(&vectors, q, 5, None, &SearchParams::default()),
        idx.search(&vectors, q, 5, None, &SearchParams::default())
    );
    assert!(shared.heap_bytes() > 0);
    assert_eq!(
        idx2.search(&vectors, q, 5, None, &SearchParams::default()),
        idx.search(&vectors, q, 5, None, &SearchParams::default())
    );
}

/// Invariant: the IVF build calibrates deterministically; on structureless data (i.i.d.
/// Gaussian) the effort it picks for 0.95 holds on fresh queries, or no rung reaches 0.95 and
/// the caller is told to search exactly.
#[test]
fn calibration_reaches_the_target_or_says_exact() {
    use crate::index::vector::calibrate::DEFAULT_TARGET;
    use crate::index::vector::synth::{generate, Kind};
    let (n, dim, m) = (3000, 48, Metric::CosineDistance);
    let data = generate(Kind::Gaussian, n, dim, 5);
    let bytes = build(&data, dim, m, &AnnParams::default());
    assert_eq!(bytes, build(&data, dim, m, &AnnParams::default()));
    let ix = AnnIndex::open(&bytes).unwrap();
    let cal = ix.calibration();
    assert!(cal.is_calibrated() && cal.rungs.iter().all(|r| r.effort as usize <= ix.nlist()), "{cal:?}");
    match ix.effort(DEFAULT_TARGET) {
        Some((nprobe, rerank)) => {
            assert_eq!(ix.default_nprobe(), nprobe as usize);
            let p = SearchParams { nprobe, rerank, ..SearchParams::default() };
            let queries = generate(Kind::Gaussian, 40, dim, 6);
            let mut hit = 0usize;
            for q in queries.chunks_exact(dim) {
                let kth = exact(&data, dim, m, q, 10, None)[9].1;
                let bound = kth + kth.abs() * 1e-5 + 1e-6;
                hit += ix.search(&data, q, 10, None, &p).iter().filter(|r| r.1 <= bound).count();
            }
            let r = hit as f64 / 400.0;
            assert!(r >= 0.92, "nprobe {nprobe} rerank {rerank}: fresh recall {r}");
        }
        None => assert!(cal.rungs.iter().all(|r| r.recall() < 0.95)),
    }
}
