//! Version 3 (lists only, candidates scored with the graph section's codes): recall with and
//! without the graph, the exact fallback, size, determinism, and bad bytes.

use super::*;
use crate::index::vector::graph::{self, GraphCode, GraphIndex, GraphParams};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;

const METRICS: [Metric; 2] = [Metric::CosineDistance, Metric::EuclideanSquared];

/// `n` rows around 40 random centres (spread 0.6), fixed seed.
fn blobs(seed: u64, n: usize, dim: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = || {
        let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    };
    let c: Vec<f32> = (0..40 * dim).map(|_| g()).collect();
    let mut v = Vec::with_capacity(n * dim);
    for i in 0..n {
        let k = (i * 7919) % 40;
        for j in 0..dim {
            v.push(c[k * dim + j] + 0.6 * g());
        }
    }
    v
}

fn graph_of(v: &[f32], dim: usize, metric: Metric, code: GraphCode) -> GraphIndex {
    let p = GraphParams { code, threads: 2, ..GraphParams::default() };
    GraphIndex::open(bytes::Bytes::from(graph::build(v, dim, metric, &p))).unwrap()
}

/// The same rows in the same order at the same distances (up to the kernels' rounding: exact
/// search and the rerank may sum in different orders).
fn same(got: &[(u32, f32)], want: &[(u32, f32)]) {
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want.iter().map(|w| w.0).collect::<Vec<_>>());
    assert!(
        got.iter().zip(want).all(|(g, w)| (g.1 - w.1).abs() <= 1e-5 * (1.0 + w.1.abs())),
        "{got:?} vs {want:?}"
    );
}

/// Share of `got` within the k-th distance of `want` (ties count).
fn recall(got: &[(u32, f32)], want: &[(u32, f32)]) -> f64 {
    let Some(kth) = want.last().map(|w| w.1) else { return 1.0 };
    let bound = kth + kth.abs() * 1e-5 + 1e-6;
    got.iter().filter(|g| g.1 <= bound).count() as f64 / want.len() as f64
}

/// Invariant: a version-3 section with its graph attached keeps unfiltered recall at its
/// calibrated default and filtered recall (1% forced through the lists, 10%), returns only
/// matching rows, and holds about 4 bytes a row.
#[test]
fn lists_scored_with_the_graph_keep_recall() {
    let (n, dim) = (4000, 24);
    let v = blobs(1, n, dim);
    let queries = blobs(2, 40, dim);
    for (metric, code) in [
        (Metric::CosineDistance, GraphCode::Sq8),
        (Metric::EuclideanSquared, GraphCode::Sq8),
        (Metric::CosineDistance, GraphCode::RaBitQ { bits: 4 }),
    ] {
        let g = graph_of(&v, dim, metric, code);
        let bytes = build_lists(&v, dim, metric, &AnnParams::default(), &g);
        let sq8 = build(&v, dim, metric, &AnnParams::default());
        let ix = AnnIndex::open(&bytes).unwrap().with_graph(&g);
        assert!(ix.lists_only() && ix.has_graph() && ix.calibration().is_calibrated());
        let directory = n * 4 + ix.nlist() * (dim + 1) * 4;
        assert!(bytes.len() <= directory + 1024, "{} bytes", bytes.len());
        assert!(bytes.len() * 8 < sq8.len(), "{} vs {} bytes", bytes.len(), sq8.len());
        let keep1: Vec<bool> = (0..n).map(|r| (r * 7919) % 100 == 3).collect();
        let keep10: Vec<bool> = (0..n).map(|r| (r * 7919) % 10 == 3).collect();
        let (f1, f10) = (|r: u32| keep1[r as usize], |r: u32| keep10[r as usize]);
        let forced = SearchParams { exact_threshold: 0, ..SearchParams::default() };
        let (mut plain, mut one, mut ten) = (0.0, 0.0, 0.0);
        for q in queries.chunks_exact(dim) {
            plain += recall(
                &ix.search(&v, q, 10, None, &SearchParams::default()),
                &exact(&v, dim, metric, q, 10, None),
            );
            for (f, sum) in [(&f1 as &dyn Fn(u32) -> bool, &mut one), (&f10, &mut ten)] {
                let got = ix.search(&v, q, 10, Some(f), &forced);
                assert!(got.iter().all(|(r, _)| f(*r)));
                *sum += recall(&got, &exact(&v, dim, metric, q, 10, Some(f)));
            }
        }
        let nq = 40.0;
        assert!(plain / nq >= 0.9, "{metric:?} {code:?}: recall {}", plain / nq);
        assert!(one / nq >= 0.9, "{metric:?} {code:?}: 1% filtered recall {}", one / nq);
        assert!(ten / nq >= 0.9, "{metric:?} {code:?}: 10% filtered recall {}", ten / nq);
    }
}

/// Invariant: without its graph (none attached, or a graph of other rows whose crc it does not
/// name) a version-3 section scores its probed rows exactly: probing every list gives exactly
/// the exact search (ids, order, distances), filtered or not.
#[test]
fn lists_without_their_graph_score_exactly() {
    let (n, dim) = (2000, 16);
    let v = blobs(3, n, dim);
    for metric in METRICS {
        let g = graph_of(&v, dim, metric, GraphCode::Sq8);
        let bytes = build_lists(&v, dim, metric, &AnnParams::default(), &g);
        let other = graph_of(&blobs(4, n, dim), dim, metric, GraphCode::Sq8);
        let shared = SharedAnnIndex::open(bytes::Bytes::from(bytes.clone())).unwrap();
        assert!(shared.wants_graph() && !shared.clone().with_graph(other.clone()).has_graph());
        assert!(shared.clone().with_graph(g.clone()).has_graph());
        let ix = AnnIndex::open(&bytes).unwrap().with_graph(&other);
        assert!(!ix.has_graph());
        let all = SearchParams { nprobe: ix.nlist() as u32, ..SearchParams::default() };
        let odd = |r: u32| r % 2 == 1;
        for q in blobs(5, 10, dim).chunks_exact(dim) {
            same(&ix.search(&v, q, 10, None, &all), &exact(&v, dim, metric, q, 10, None));
            let forced = SearchParams { exact_threshold: 0, filter_min_scored: n as u32, ..all.clone() };
            same(&ix.search(&v, q, 10, Some(&odd), &forced), &exact(&v, dim, metric, q, 10, Some(&odd)));
        }
    }
}

/// Invariant: the version-3 build is deterministic and independent of its thread count, and
/// names the crc of the graph it was calibrated with; `ann::build` still writes version 2.
#[test]
fn lists_build_is_deterministic_and_names_its_graph() {
    let v = blobs(6, 1500, 12);
    let g = graph_of(&v, 12, Metric::CosineDistance, GraphCode::Sq8);
    let a = build_lists(&v, 12, Metric::CosineDistance, &AnnParams::default(), &g);
    let b =
        build_lists(&v, 12, Metric::CosineDistance, &AnnParams { threads: 3, ..AnnParams::default() }, &g);
    assert_eq!(a, b);
    assert_eq!((&a[8..12], a[17], &a[32..36]), (&3u32.to_le_bytes()[..], 2, &[0u8; 4][..]));
    assert_eq!(&a[GRAPH_CRC_AT..GRAPH_CRC_AT + 4], &g.stored_crc().to_le_bytes());
    let old = build(&v, 12, Metric::CosineDistance, &AnnParams::default());
    assert_eq!((&old[8..12], old[17]), (&2u32.to_le_bytes()[..], 1));
    assert!(!AnnIndex::open(&old).unwrap().lists_only());
}

fn small_lists() -> (Vec<f32>, Vec<u8>) {
    let v = blobs(7, 300, 8);
    let g = graph_of(&v, 8, Metric::CosineDistance, GraphCode::Sq8);
    let bytes = build_lists(&v, 8, Metric::CosineDistance, &AnnParams::default(), &g);
    (v, bytes)
}

/// Opens `b` both ways; whatever opens searches (filtered and not) without panicking.
fn open_and_search(b: &[u8], v: &[f32]) {
    for ix in [AnnIndex::open(b), AnnIndex::open_trusted(b)].into_iter().flatten() {
        let q = &v[..8];
        let _ = ix.search(v, q, 5, None, &SearchParams::default());
        let forced = SearchParams { exact_threshold: 0, ..SearchParams::default() };
        let got = ix.search(v, q, 5, Some(&|r| r % 3 == 0), &forced);
        assert!(got.iter().all(|(r, _)| r % 3 == 0));
    }
}

/// Invariant: a damaged version-3 section is an error, never a panic: every truncation, every
/// flipped bit (crc), a version/kind mismatch, a stride or an empty block entry that is not 0.
#[test]
fn damaged_lists_sections_are_errors() {
    let (v, bytes) = small_lists();
    assert!(AnnIndex::open(&bytes).is_ok());
    for len in 0..bytes.len() {
        assert!(AnnIndex::open(&bytes[..len]).is_err(), "truncated to {len}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        assert!(AnnIndex::open(&b).is_err(), "byte {i} flipped");
    }
    let resealed = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        edit(&mut b);
        let crc = section_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        b
    };
    let unsupported = |b: &[u8]| matches!(AnnIndex::open(b), Err(e) if matches!(e.kind(), crate::index::IndexErrorKind::Unsupported { .. }));
    assert!(unsupported(&resealed(&|b| b[17] = KIND_IVF_SQ8)), "version 3 of kind 1");
    assert!(
        unsupported(&resealed(&|b| b[8..12].copy_from_slice(&2u32.to_le_bytes()))),
        "version 2 of kind 2"
    );
    assert!(AnnIndex::open(&resealed(&|b| b[32..36].copy_from_slice(&64u32.to_le_bytes()))).is_err());
    for entry in 3..BLOCKS {
        let at = 64 + 16 * entry;
        assert!(AnnIndex::open(&resealed(&|b| b[at..at + 8].copy_from_slice(&128u64.to_le_bytes()))).is_err());
        assert!(
            AnnIndex::open(&resealed(&|b| b[at + 8..at + 16].copy_from_slice(&4u64.to_le_bytes()))).is_err()
        );
    }
    open_and_search(&bytes, &v);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Invariant: arbitrary edits of a version-3 section, resealed with a valid crc (or opened
    /// without the crc check), never panic on open or search.
    #[test]
    fn edited_lists_sections_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), header_only in any::<bool>()) {
        static SMALL: std::sync::OnceLock<(Vec<f32>, Vec<u8>)> = std::sync::OnceLock::new();
        let (v, bytes) = SMALL.get_or_init(small_lists);
        let mut b = bytes.clone();
        for (at, val) in edits {
            let i = if header_only { at.index(HEADER_LEN) } else { at.index(b.len()) };
            b[i] = val;
        }
        open_and_search(&b, v);
        let crc = section_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        open_and_search(&b, v);
    }
}
