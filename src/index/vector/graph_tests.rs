//! Tests of the graph section: recall, determinism, calibration, version-1 compatibility and
//! bad bytes.

use super::search;
use super::*;
use crate::index::vector::ann::{corrupt, exact};
use crate::index::vector::distance::Metric;

/// Clustered points of low intrinsic dimension (like text embeddings): 16 clusters in an
/// 8-dimensional latent space, mapped into `dim` dimensions by a fixed random matrix.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    const LAT: usize = 8;
    let mut m = 42u64;
    let mut um = || (splitmix(&mut m) >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
    let map: Vec<f32> = (0..LAT * dim).map(|_| um()).collect();
    let centers: Vec<f32> = (0..16 * LAT).map(|_| um() * 4.0).collect();
    let mut s = seed;
    let mut u = || (splitmix(&mut s) >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
    let mut v = Vec::with_capacity(n * dim);
    for i in 0..n {
        let lat: Vec<f32> = centers[(i % 16) * LAT..(i % 16 + 1) * LAT].iter().map(|c| c + u()).collect();
        for j in 0..dim {
            v.push((0..LAT).map(|l| lat[l] * map[l * dim + j]).sum::<f32>() + 0.01 * u());
        }
    }
    v
}

/// Recall@10 of `ix` on `queries` against exact search, at beam width `ef` (0 = default).
fn measured(ix: &GraphIndex, data: &[f32], queries: &[f32], metric: Metric, ef: u32) -> f64 {
    let (dim, k) = (ix.dim(), 10);
    let mut hit = 0usize;
    for q in queries.chunks_exact(dim) {
        let truth = exact(data, dim, metric, q, k, None);
        let kth = truth[k - 1].1;
        let got = ix.search(data, q, k, None, &GraphSearchParams { ef, rerank: 0 });
        hit += got.iter().filter(|(_, d)| *d <= kth + kth.abs() * 1e-5 + 1e-6).count();
    }
    hit as f64 / (queries.len() / dim * k) as f64
}

fn built(data: &[f32], dim: usize, metric: Metric, params: &GraphParams) -> GraphIndex {
    GraphIndex::open(bytes::Bytes::from(build(data, dim, metric, params))).unwrap()
}

/// Invariant: centred codes resolve vectors packed in a narrow cone (a shared component no
/// longer eats the 8-bit range): at the same beam width, recall is far above uncentred codes'.
#[test]
fn centred_codes_resolve_a_narrow_cone() {
    use crate::index::vector::synth::{generate, Kind};
    let (n, dim, m) = (3000, 64, Metric::CosineDistance);
    let data = generate(Kind::Cone, n, dim, 1);
    let queries = generate(Kind::Cone, 40, dim, 2);
    let centred = built(&data, dim, m, &sq8());
    let plain = built(&data, dim, m, &GraphParams { centred: false, ..sq8() });
    let (c, p) = (measured(&centred, &data, &queries, m, 40), measured(&plain, &data, &queries, m, 40));
    assert!(c >= 0.9 && c > p + 0.2, "cone recall@10 at ef 40: centred {c}, uncentred {p}");
}

/// Invariant: calibration is part of the deterministic build, is stored, and sets the default
/// beam width to the cheapest ef measured at the default target.
#[test]
fn calibration_is_stored_and_deterministic() {
    let (dim, m) = (32, Metric::EuclideanSquared);
    let data = clustered(2500, dim, 11);
    let a = build(&data, dim, m, &GraphParams::default());
    assert_eq!(a, build(&data, dim, m, &GraphParams::default()));
    let ix = GraphIndex::open(bytes::Bytes::from(a)).unwrap();
    let cal = ix.calibration();
    assert!(cal.is_calibrated() && cal.queries >= 50, "{cal:?}");
    assert!(cal.rungs.windows(2).all(|w| w[0].effort < w[1].effort));
    let pick = cal.pick(calibrate::DEFAULT_TARGET).expect("clustered data reaches 0.95");
    assert_eq!(ix.default_ef(), pick.effort as usize);
    assert_eq!(ix.effort(calibrate::DEFAULT_TARGET), Some(pick.effort));
    // The stored figure holds on fresh queries from the same distribution.
    let r = measured(&ix, &data, &clustered(40, dim, 12), m, 0);
    assert!(r >= 0.92, "default recall on fresh queries {r}, calibrated {}", pick.recall());
}

/// Invariant: on structureless data (i.i.d. Gaussian, cosine) the default effort either reaches
/// the target on fresh queries or the section says to search exactly; never poor neighbours.
#[test]
fn structureless_data_reaches_the_target_or_falls_back() {
    use crate::index::vector::synth::{generate, Kind};
    let (n, dim, m) = (2500, 96, Metric::CosineDistance);
    let data = generate(Kind::Gaussian, n, dim, 3);
    let ix = built(&data, dim, m, &GraphParams::default());
    assert!(ix.calibration().is_calibrated());
    match ix.effort(calibrate::DEFAULT_TARGET) {
        Some(ef) => {
            let r = measured(&ix, &data, &generate(Kind::Gaussian, 40, dim, 4), m, ef);
            assert!(r >= 0.92, "ef {ef}: recall {r}");
        }
        None => assert!(ix.calibration().rungs.iter().all(|r| r.recall() < 0.95)),
    }
    // A target no rung measured means exact search.
    let best = ix.calibration().rungs.iter().map(|r| r.recall_bp).max().unwrap_or(0);
    if best < 10_000 {
        assert_eq!(ix.effort(1.0), None);
    }
}

/// Every slot of row `u`'s list as stored (unused slots included): u32 slots of versions 1 to
/// 3, packed ids of version 4.
fn slots(ix: &GraphIndex, u: usize) -> Vec<u32> {
    let nb = &ix.bytes[ix.off_nb..ix.off_codes];
    match ix.links {
        search::Links::Wide => {
            (0..ix.degree).map(|i| crate::codec::u32_at(nb, 4 * (u * ix.degree + i)).unwrap()).collect()
        }
        search::Links::Packed { bits, bytes } => (0..ix.degree)
            .map(|i| {
                let bit = i * bits as usize;
                let v = (0..bits as usize).fold(0u32, |v, j| {
                    let b = bit + j;
                    v | u32::from(nb[u * bytes + b / 8] >> (b % 8) & 1) << j
                });
                if v as usize == ix.rows {
                    NONE
                } else {
                    v
                }
            })
            .collect(),
    }
}

/// The older section of the same graph (see [`downgrade`]).
fn to_old(v4: &[u8]) -> Vec<u8> {
    downgrade(v4).expect("a version-4 or -5 section")
}

/// Invariant: a version-4 section (packed links, wide record) searches exactly as the version-2
/// or version-3 section of the same graph (u32 links) — the same rows, the same f32 bits — for
/// both code kinds, and its lists take `ceil(log2(rows + 1))` bits an id instead of 32.
#[test]
fn packed_links_search_as_the_u32_links_of_older_versions() {
    let (dim, m) = (24, Metric::CosineDistance);
    let data = clustered(3000, dim, 13);
    for params in [sq8(), planes(2)] {
        let v4 = build(&data, dim, m, &params);
        let old = to_old(&v4);
        let (new, old) = (
            GraphIndex::open(bytes::Bytes::from(v4)).unwrap(),
            GraphIndex::open(bytes::Bytes::from(old)).unwrap(),
        );
        let version = if new.bytes[17] == KIND_SQ8 { VERSION } else { VERSION_TIGHT };
        assert_eq!(crate::codec::u32_at(&new.bytes, 8), Some(version));
        assert!(matches!(old.links, search::Links::Wide));
        let six = new.calibration.rungs.len().min(calibrate::MAX_RUNGS);
        assert_eq!(
            (&old.calibration.rungs[..], old.calibration.reach_bits),
            (&new.calibration.rungs[..six], new.calibration.reach_bits)
        );
        assert_eq!((new.link_row_bytes(), old.link_row_bytes()), (32 * 12 / 8, 32 * 4), "3000 rows: 12 bits");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for r in 0..3000u32 {
            a.clear();
            b.clear();
            new.neighbours(r, &mut a);
            old.neighbours(r, &mut b);
            assert_eq!(a, b, "row {r}");
        }
        for ef in [10, 40] {
            let p = GraphSearchParams { ef, rerank: 0 };
            for q in clustered(20, dim, 14).chunks_exact(dim) {
                let (x, y) = (new.search(&data, q, 10, None, &p), old.search(&data, q, 10, None, &p));
                assert!(
                    x.len() == y.len()
                        && x.iter().zip(&y).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits())
                );
            }
        }
    }
}

/// Invariant: an id is packed at the bit length of the row count (the count itself marks an
/// unused slot); ids past it are refused, and an unused slot ends the list.
#[test]
fn packed_ids_take_the_bit_length_of_the_row_count() {
    let bits = |rows: usize| super::link_bits(rows);
    assert_eq!([bits(0), bits(1), bits(2), bits(3), bits(4), bits(255), bits(256)], [1, 1, 2, 2, 3, 8, 9]);
    assert_eq!((bits(1_000_000), bits(1 << 20), bits(u32::MAX as usize)), (20, 21, 32));
    assert_eq!(super::link_bytes(1_000_000, 32), Some(80), "48 bytes a row less than u32 ids");
    // 300 rows: 9 bits; ids 301..511 fit the field and must be refused.
    let (dim, rows) = (8, 300);
    let data = clustered(rows, dim, 5);
    let good = build(&data, dim, Metric::EuclideanSquared, &sq8());
    let ix = GraphIndex::open(bytes::Bytes::from(good.clone())).unwrap();
    let search::Links::Packed { bits: 9, bytes: 36 } = ix.links else { panic!("{:?}", ix.links) };
    let set = |slot: usize, v: u32| {
        let mut b = good.clone();
        let bit = 36 * 8 * 7 + slot * 9;
        for j in 0..9 {
            let (at, sh) = (ix.off_nb + (bit + j) / 8, (bit + j) % 8);
            b[at] = b[at] & !(1 << sh) | (((v >> j) & 1) as u8) << sh;
        }
        b
    };
    assert!(GraphIndex::open_trusted(bytes::Bytes::from(set(3, 299))).is_ok());
    for v in [301, 511] {
        assert_eq!(
            GraphIndex::open_trusted(bytes::Bytes::from(set(3, v))).err(),
            Some(corrupt("neighbour out of range"))
        );
    }
    let cut = GraphIndex::open_trusted(bytes::Bytes::from(set(3, rows as u32))).unwrap();
    let mut nb = Vec::new();
    cut.neighbours(7, &mut nb);
    assert_eq!(nb, slots(&ix, 7)[..3].to_vec(), "the unused-slot value ends the list");
    let mut tail = good.clone();
    tail[ix.off_codes - 1] = 1;
    assert!(GraphIndex::open_trusted(bytes::Bytes::from(tail)).is_err(), "padding after the lists");
}

/// A version-1 section (64-byte header, no mean block, no calibration) of the same graph:
/// valid as such when the data's mean is exactly zero (centred codes are then uncentred codes).
fn to_v1(v2: &[u8], ix: &GraphIndex) -> Vec<u8> {
    let [o_sc, o_m, o_n, _, _, end] = layout(false, ix.dim, ix.rows, ix.degree, ix.stride).unwrap();
    let mut b = v2[..HEADER_LEN_V1].to_vec();
    b[8..12].copy_from_slice(&1u32.to_le_bytes());
    b[12..16].copy_from_slice(&(HEADER_LEN_V1 as u32).to_le_bytes());
    b[40..44].copy_from_slice(&24u32.to_le_bytes());
    b.extend_from_slice(&v2[o_sc..o_m]);
    b.extend_from_slice(&v2[o_n..end]);
    let crc = section_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Invariant: a clone — what a segment reader hands every query — shares the decoded blocks (a
/// norm per row, the mean, the scales) instead of copying them: at 950k rows the copy was 3.8 MB
/// and 2.5 ms of a 3.6 ms query.
#[test]
fn a_clone_shares_the_decoded_blocks() {
    let (dim, m) = (16, Metric::CosineDistance);
    let data = clustered(3000, dim, 9);
    let ix = built(&data, dim, m, &sq8());
    let c = ix.clone();
    assert_eq!(ix.norms2.len(), 3000);
    assert!(std::sync::Arc::ptr_eq(&ix.norms2, &c.norms2));
    assert!(std::sync::Arc::ptr_eq(&ix.mean, &c.mean) && std::sync::Arc::ptr_eq(&ix.scales, &c.scales));
    let p = GraphSearchParams { ef: 40, rerank: 40 };
    let q = &data[..dim];
    assert_eq!(ix.search(&data, q, 10, None, &p), c.search(&data, q, 10, None, &p));
}

/// Invariant: sections written before calibration (version 1) still open, report no
/// calibration and search with their stored default beam width.
#[test]
fn version_1_sections_open_with_their_defaults() {
    let (dim, m) = (24, Metric::EuclideanSquared);
    let half = clustered(1200, dim, 5);
    // x and −x for every row: the f64 mean is exactly zero.
    let data: Vec<f32> =
        half.chunks_exact(dim).flat_map(|x| x.iter().copied().chain(x.iter().map(|v| -v))).collect();
    let v2 = to_old(&build(&data, dim, m, &sq8()));
    let ix2 = GraphIndex::open(bytes::Bytes::from(v2.clone())).unwrap();
    assert!(ix2.mean.iter().all(|v| *v == 0.0));
    let ix1 = GraphIndex::open(bytes::Bytes::from(to_v1(&v2, &ix2))).unwrap();
    assert!(!ix1.calibration().is_calibrated());
    assert_eq!((ix1.default_ef(), ix1.effort(0.99)), (24, Some(24)));
    let q = clustered(30, dim, 6);
    let p = GraphSearchParams { ef: 64, rerank: 0 };
    for x in q.chunks_exact(dim) {
        assert_eq!(ix1.search(&data, x, 10, None, &p), ix2.search(&data, x, 10, None, &p));
    }
    assert!(measured(&ix1, &data, &q, m, 0) >= 0.8);
}

fn recall(metric: Metric, ef: u32) -> f64 {
    let (n, dim, k) = (3000, 48, 10);
    let data = clustered(n, dim, 7);
    let bytes = build(&data, dim, metric, &GraphParams::default());
    let ix = GraphIndex::open(bytes::Bytes::from(bytes)).unwrap();
    let queries = clustered(50, dim, 99);
    let mut hit = 0usize;
    for q in queries.chunks_exact(dim) {
        let truth = exact(&data, dim, metric, q, k, None);
        let kth = truth[k - 1].1;
        let got = ix.search(&data, q, k, None, &GraphSearchParams { ef, rerank: 0 });
        assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
        hit += got.iter().filter(|(_, d)| *d <= kth + 1e-5).count();
    }
    hit as f64 / (50 * k) as f64
}

#[test]
fn recall_above_floor() {
    for m in [Metric::CosineDistance, Metric::EuclideanSquared] {
        let r = recall(m, 0);
        let wide = recall(m, 64);
        assert!(wide >= 0.95, "{m:?} ef 64 recall {wide}");
        assert!(r >= 0.9, "{m:?} recall {r}");
    }
}

#[test]
fn deterministic_and_filtered() {
    let dim = 16;
    let data = clustered(600, dim, 3);
    let a = build(&data, dim, Metric::CosineDistance, &GraphParams::default());
    let b = build(&data, dim, Metric::CosineDistance, &GraphParams::default());
    assert_eq!(a, b);
    let ix = GraphIndex::open(bytes::Bytes::from(a)).unwrap();
    let f = |r: u32| r.is_multiple_of(2);
    let got = ix.search(&data, &data[..dim], 5, Some(&f), &GraphSearchParams::default());
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|(r, _)| r.is_multiple_of(2)));
    assert_eq!(got[0].0, 0);
}

/// Invariant: the thread count never changes the bytes, also past the sequential prefix (this
/// set is linked in several parallel batches).
#[test]
fn any_thread_count_builds_the_same_bytes() {
    let dim = 8;
    let n = build::SEQUENTIAL + 700;
    let data = clustered(n, dim, 21);
    let with = |threads| {
        build(&data, dim, Metric::CosineDistance, &GraphParams { threads, ..GraphParams::default() })
    };
    let one = with(1);
    assert_eq!(one, with(2));
    assert_eq!(one, with(4));
}

/// Invariant: with in-link slack and the final prune, every stored list holds at most `degree`
/// distinct neighbours other than the row, padding only after them (the in-place packing of the
/// build's wider lists kept every list whole).
#[test]
fn stored_lists_are_packed_and_distinct() {
    let (dim, n) = (8, build::SEQUENTIAL + 900);
    let data = clustered(n, dim, 31);
    let ix = built(&data, dim, Metric::EuclideanSquared, &GraphParams::default());
    let degree = ix.degree;
    let mut links = 0usize;
    for r in 0..n {
        let slots = slots(&ix, r);
        let used = slots.iter().take_while(|v| **v != NONE).count();
        assert!(slots[used..].iter().all(|v| *v == NONE), "row {r}: padding inside {slots:?}");
        let distinct: std::collections::BTreeSet<u32> = slots[..used].iter().copied().collect();
        assert!(used > 0 && distinct.len() == used && !distinct.contains(&(r as u32)), "row {r}: {slots:?}");
        links += used;
    }
    // The slack lets lists fill: most rows hold a full list (the heuristic fills up to degree).
    assert!(links > n * degree * 9 / 10, "{links} links over {n} rows");
}

#[test]
fn tiny_inputs() {
    for n in [0usize, 1, 2, 5] {
        let dim = 3;
        let data: Vec<f32> = (0..n * dim).map(|i| i as f32 + 1.0).collect();
        let bytes = build(&data, dim, Metric::EuclideanSquared, &GraphParams::default());
        let ix = GraphIndex::open(bytes::Bytes::from(bytes)).unwrap();
        let got = ix.search(&data, &[1.0, 2.0, 3.0], 10, None, &GraphSearchParams::default());
        assert_eq!(got.len(), n);
        if n > 0 {
            assert_eq!(got[0], (0, 0.0));
        }
        assert!(ix.search(&data, &[1.0], 3, None, &GraphSearchParams::default()).is_empty());
    }
}

#[test]
fn corrupt_bytes_are_errors() {
    let dim = 8;
    let data = clustered(200, dim, 5);
    let good = build(&data, dim, Metric::CosineDistance, &GraphParams::default());
    assert!(GraphIndex::open(bytes::Bytes::from(good.clone())).is_ok());
    for cut in [0, 10, 63, 64, good.len() / 2, good.len() - 1] {
        assert!(GraphIndex::open(bytes::Bytes::copy_from_slice(&good[..cut])).is_err());
    }
    let mut s = 1u64;
    for _ in 0..200 {
        let mut b = good.clone();
        let at = (splitmix(&mut s) % b.len() as u64) as usize;
        b[at] ^= 1 << (splitmix(&mut s) % 8);
        assert!(GraphIndex::open(bytes::Bytes::from(b.clone())).is_err());
        // Without the crc, structural checks still never panic.
        if let Ok(ix) = GraphIndex::open_trusted(bytes::Bytes::from(b)) {
            let _ = ix.search(&data, &data[..dim], 5, None, &GraphSearchParams::default());
        }
    }
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(GraphIndex::open(bytes::Bytes::from(b)).err(), Some(corrupt("bad magic")));
}

fn sq8() -> GraphParams {
    GraphParams { code: GraphCode::Sq8, ..GraphParams::default() }
}

fn planes(bits: u32) -> GraphParams {
    GraphParams { code: GraphCode::RaBitQ { bits }, ..GraphParams::default() }
}

/// Invariant: version-3 sections (RaBitQ codes of 1, 2 and 4 bits) traverse the same graph
/// and, after the exact rerank, find the true neighbours at a moderate beam width; returned
/// distances are the exact ones, sorted.
#[test]
fn compact_codes_reach_recall_after_the_rerank() {
    let (n, dim) = (3000, 48);
    let data = clustered(n, dim, 7);
    let queries = clustered(50, dim, 99);
    for m in [Metric::CosineDistance, Metric::EuclideanSquared] {
        for bits in [1, 2, 4] {
            let ix = built(&data, dim, m, &planes(bits));
            assert_eq!(ix.code_bits(), bits);
            let r = measured(&ix, &data, &queries, m, 100);
            assert!(r >= 0.95, "{m:?} {bits} bits: recall@10 at ef 100 {r}");
            let q = &queries[..dim];
            let got = ix.search(&data, q, 10, None, &GraphSearchParams { ef: 100, rerank: 0 });
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
            for (row, d) in got {
                let want = ix.kern.distance(m, q, &data[row as usize * dim..(row as usize + 1) * dim]);
                assert_eq!(d.to_bits(), want.to_bits());
            }
        }
    }
}

/// Invariant: a version-3 section is calibrated over its own ladder, and one bit per dimension
/// costs the traversal far fewer bytes a row than the 8-bit codes.
#[test]
fn compact_sections_calibrate_and_shrink_the_traversal() {
    let (dim, m) = (96, Metric::EuclideanSquared);
    let data = clustered(2500, dim, 11);
    let eight = built(&data, dim, m, &sq8());
    let one = built(&data, dim, m, &planes(1));
    let cal = one.calibration();
    assert!(cal.is_calibrated(), "{cal:?}");
    assert!(cal.rungs.iter().zip(PLANES_LADDER).all(|(r, ef)| r.effort == ef && r.rerank == ef));
    if let Some(pick) = cal.pick(calibrate::DEFAULT_TARGET) {
        assert_eq!(one.default_ef(), pick.effort as usize);
        let r = measured(&one, &data, &clustered(40, dim, 12), m, 0);
        assert!(r >= 0.92, "default recall on fresh queries {r}, calibrated {}", pick.recall());
    }
    // 48 bytes of neighbours either way (32 ids of 12 bits); 1 bit: 16 code bytes (96
    // dimensions padded to 128) + 12 of factors, not padded to 32 since version 5.
    assert_eq!(eight.traversal_bytes_per_row(), 48 + 128 + 4);
    assert_eq!(one.traversal_bytes_per_row(), 48 + 28);
}

/// Invariant: version 5 is RaBitQ codes with records at their tight length, and only that: its
/// records take `record_len_tight` bytes (44 at 4 bits over 64 padded dimensions, not 48), a
/// version-5 header over 8-bit codes and tight records stated as version 4 are refused.
#[test]
fn version_5_holds_rabitq_records_at_their_tight_length_only() {
    use crate::index::vector::rabitq;
    let (dim, m) = (24, Metric::CosineDistance);
    let data = clustered(1500, dim, 5);
    let tight = build(&data, dim, m, &planes(4));
    let g = GraphIndex::open(bytes::Bytes::from(tight.clone())).unwrap();
    let p = rabitq::padded(dim);
    assert_eq!((rabitq::record_len(4, p), rabitq::record_len_tight(4, p)), (48, 44));
    assert_eq!(g.code_layout(), (false, 44));
    let restamped = |mut b: Vec<u8>, version: u32| {
        b[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = section_crc(&b);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        bytes::Bytes::from(b)
    };
    assert!(
        GraphIndex::open(restamped(tight.clone(), VERSION_TIGHT)).is_ok(),
        "resealing alone changes nothing"
    );
    assert!(GraphIndex::open(restamped(tight, VERSION)).is_err(), "version 4 pads records to 16");
    let eight = build(&data, dim, m, &sq8());
    assert_eq!(crate::codec::u32_at(&eight, 8), Some(VERSION), "8-bit sections stay version 4");
    assert!(GraphIndex::open(restamped(eight, VERSION_TIGHT)).is_err(), "version 5 is RaBitQ only");
}

/// Invariant: the compact build is deterministic for any thread count (the graph is linked as
/// version 2 links it; records are a pure function of each row).
#[test]
fn compact_builds_are_the_same_bytes_for_any_thread_count() {
    let dim = 8;
    let n = build::SEQUENTIAL + 700;
    let data = clustered(n, dim, 21);
    let with = |threads| build(&data, dim, Metric::CosineDistance, &GraphParams { threads, ..planes(1) });
    let one = with(1);
    assert_eq!(&one[..8], &MAGIC);
    assert_eq!(crate::codec::u32_at(&one, 8), Some(VERSION_TIGHT));
    assert_eq!(one, with(2));
    assert_eq!(one, with(4));
    // The neighbour lists are the 8-bit build's.
    let v2 = build(&data, dim, Metric::CosineDistance, &sq8());
    let (a, b) = (
        GraphIndex::open(bytes::Bytes::from(one)).unwrap(),
        GraphIndex::open(bytes::Bytes::from(v2)).unwrap(),
    );
    assert_eq!(&a.bytes[a.off_nb..a.off_codes], &b.bytes[b.off_nb..b.off_codes]);
}

/// Invariant: damaged version-3 sections are errors (crc, shape, lengths, non-finite factors,
/// unknown code kinds), never panics, also when opened without the crc.
#[test]
fn corrupt_compact_sections_are_errors() {
    let dim = 20;
    let data = clustered(300, dim, 5);
    let good = build(&data, dim, Metric::CosineDistance, &planes(2));
    let ix = GraphIndex::open(bytes::Bytes::from(good.clone())).unwrap();
    for cut in [0, 10, 63, 64, 127, 128, good.len() / 2, good.len() - 1] {
        assert!(GraphIndex::open_trusted(bytes::Bytes::copy_from_slice(&good[..cut])).is_err(), "cut {cut}");
    }
    let mut s = 3u64;
    for _ in 0..300 {
        let mut b = good.clone();
        let at = (splitmix(&mut s) % b.len() as u64) as usize;
        b[at] ^= 1 << (splitmix(&mut s) % 8);
        assert!(GraphIndex::open(bytes::Bytes::from(b.clone())).is_err());
        if let Ok(ix) = GraphIndex::open_trusted(bytes::Bytes::from(b)) {
            let _ = ix.search(&data, &data[..dim], 5, None, &GraphSearchParams::default());
        }
    }
    let reopen = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        edit(&mut b);
        GraphIndex::open_trusted(bytes::Bytes::from(b)).err()
    };
    assert!(reopen(&|b| b[17] = 2).is_some(), "unknown code kind");
    assert!(reopen(&|b| b[18] = 9).is_some(), "too many bits");
    assert!(reopen(&|b| b[19] = 1).is_some(), "query bits off the rule");
    assert!(reopen(&|b| b[RECORD_AT] ^= 16).is_some(), "record length");
    let nan_factor = |b: &mut Vec<u8>| {
        let at = ix.off_codes + 2 * ix.stride / 8;
        b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    };
    assert_eq!(reopen(&nan_factor), Some(corrupt("non-finite float")));
}

/// Invariant: a search starts from the entry, then one seed per `SEED_ROWS` rows (at most
/// `MAX_SEEDS`), distinct, none the entry, in range; a graph of fewer rows starts from its entry
/// alone (small sections search, and calibrate, as before the seeds). The seeds follow the
/// codes, not the links: the graphs here are linked narrowly (two default builds of 36k rows were
/// most of this test's 59 s at the test build's opt-level 1).
#[test]
fn searches_start_from_the_entry_and_seeds_spread_over_the_rows() {
    use super::seeds::{MAX_SEEDS, SEED_ROWS};
    let (dim, m) = (8, Metric::EuclideanSquared);
    let small = built(&clustered(SEED_ROWS - 1, dim, 3), dim, m, &GraphParams::default());
    assert_eq!(small.seeds(), [small.entry]);
    let narrow = GraphParams { degree: 8, ef_construction: 16, ..GraphParams::default() };
    for (rows, n) in [(5 * SEED_ROWS + 7, 5), (70 * SEED_ROWS, MAX_SEEDS)] {
        for code in [GraphCode::Sq8, GraphCode::RaBitQ { bits: 4 }] {
            let p = GraphParams { code, ..narrow.clone() };
            let ix = built(&clustered(rows, dim, 3), dim, m, &p);
            let s = ix.seeds();
            assert_eq!((s[0], s.len()), (ix.entry, 1 + n), "{code:?}");
            let distinct: std::collections::HashSet<u32> = s.iter().copied().collect();
            assert_eq!(distinct.len(), s.len(), "{code:?}: {s:?}");
            assert!(s.iter().all(|r| (*r as usize) < rows), "{code:?}: {s:?}");
            assert_eq!(ix.clone().seeds(), s, "a clone starts alike");
        }
    }
}

/// Invariant: seeds spread over the data, not the row order, with either code kind. Four small
/// clusters after one holding most rows: the rows at even steps all fall in the big cluster (as
/// the seeds before stop 70 did); the farthest-point seeds (with the entry) reach every cluster.
#[test]
fn seeds_reach_small_clusters_the_row_order_hides() {
    use super::seeds::SEED_ROWS;
    let (dim, m) = (8, Metric::EuclideanSquared);
    let sizes = [5 * SEED_ROWS - 400 + 7, 100, 100, 100, 100];
    let mut data = Vec::new();
    let mut cluster_of = Vec::new();
    let mut s = 7u64;
    for (c, &n) in sizes.iter().enumerate() {
        for _ in 0..n {
            for j in 0..dim {
                let centre = if j == c % dim { 100.0 * (1 + c / dim) as f32 } else { 0.0 };
                data.push(centre + (splitmix(&mut s) % 1000) as f32 / 1000.0);
            }
            cluster_of.push(c);
        }
    }
    for code in [GraphCode::Sq8, GraphCode::RaBitQ { bits: 4 }] {
        let ix = built(&data, dim, m, &GraphParams { code, ..GraphParams::default() });
        let reached: std::collections::HashSet<usize> =
            ix.seeds().iter().map(|&r| cluster_of[r as usize]).collect();
        assert_eq!(reached.len(), sizes.len(), "{code:?}: seeds {:?} reach {reached:?}", ix.seeds());
    }
}

/// Invariant: on well separated clusters (64 Gaussian clusters, `synth::Kind::Clustered`), a
/// narrow beam finds the query's cluster from the seeds: recall@10 of fresh queries at ef 24 is
/// high (from the entry alone, 0.906 on the 30k-row benchmark set, BENCHMARKS "stop 46"), and
/// the calibrated default reaches the target on them.
#[test]
fn seeds_find_the_cluster_of_a_narrow_beam() {
    use crate::index::vector::synth::{generate, Kind};
    let (n, dim, m) = (8192, 32, Metric::EuclideanSquared);
    let data = generate(Kind::Clustered, n, dim, 1);
    let queries = generate(Kind::Clustered, 100, dim, 2);
    let ix = built(&data, dim, m, &GraphParams::default());
    let narrow = measured(&ix, &data, &queries, m, 24);
    assert!(narrow >= 0.95, "recall@10 at ef 24: {narrow}");
    let ef = ix.effort(calibrate::DEFAULT_TARGET).expect("calibrated");
    let r = measured(&ix, &data, &queries, m, ef);
    assert!(r >= calibrate::DEFAULT_TARGET as f64, "at the calibrated ef {ef}: {r}");
}

/// The beam as it was before entries were cut to those it can expand: every entry in both
/// heaps (here ordered sets). The oracle of the test below.
fn beam_over_every_entry(
    entries: &[u32],
    ef: usize,
    dist: &dyn Fn(u32) -> f32,
    adj: &[Vec<u32>],
    accept: &dyn Fn(u32) -> bool,
) -> Vec<crate::index::vector::Ranked> {
    use crate::index::vector::Ranked;
    use std::collections::{BTreeSet, HashSet};
    let (mut seen, mut cand, mut res) = (HashSet::new(), BTreeSet::new(), BTreeSet::<Ranked>::new());
    let offer = |u: u32, cand: &mut BTreeSet<Ranked>, res: &mut BTreeSet<Ranked>, always: bool| {
        let d = dist(u);
        if always || res.len() < ef || res.last().is_some_and(|w| d < w.0) {
            cand.insert(Ranked(d, u));
            if accept(u) {
                res.insert(Ranked(d, u));
                if res.len() > ef {
                    res.pop_last();
                }
            }
        }
    };
    for &e in entries.iter().filter(|&&e| seen.insert(e)) {
        offer(e, &mut cand, &mut res, true);
    }
    while let Some(c) = cand.pop_first() {
        if res.len() >= ef && res.last().is_some_and(|w| c.0 > w.0) {
            break;
        }
        for &u in adj[c.1 as usize].iter().filter(|&&u| seen.insert(u)) {
            offer(u, &mut cand, &mut res, false);
        }
    }
    res.into_iter().collect()
}

/// Invariant: the beam scores every entry but queues only those it can expand (no farther
/// than the `ef`-th nearest accepted one), and finds exactly what a beam queueing every entry
/// finds: random graphs, distances with ties, filters, entry lists longer and shorter than `ef`.
/// One scratch serves every case, as a thread's does its searches: nothing a search leaves in it
/// changes the next one's answer.
#[test]
fn a_beam_finds_what_queueing_every_entry_finds() {
    use super::beam::{beam, BeamScratch};
    let mut s = 11u64;
    let mut draw = |n: u64| (crate::index::vector::splitmix(&mut s) % n) as u32;
    let mut v = BeamScratch::new(320);
    for case in 0..400 {
        let n = 20 + draw(300) as usize;
        let adj: Vec<Vec<u32>> =
            (0..n).map(|_| (0..1 + draw(12)).map(|_| draw(n as u64)).collect()).collect();
        // Few distinct distances: ties between entries and the ef-th one are common.
        let d: Vec<f32> = (0..n).map(|_| draw(40) as f32 / 4.0).collect();
        let modulus = 1 + draw(4);
        let accept = move |u: u32| u % modulus != 1;
        let entries: Vec<u32> = (0..1 + draw(70)).map(|_| draw(n as u64)).collect();
        let ef = 1 + draw(30) as usize;
        let want = beam_over_every_entry(&entries, ef, &|u| d[u as usize], &adj, &accept);
        let got = beam(
            &entries,
            ef,
            (&mut v, None),
            |u| d[u as usize],
            |u, out| out.extend(&adj[u as usize]),
            |_, _| {},
            &accept,
        );
        let pairs =
            |r: &[crate::index::vector::Ranked]| r.iter().map(|x| (x.0.to_bits(), x.1)).collect::<Vec<_>>();
        assert_eq!(pairs(&got), pairs(&want), "case {case}: ef {ef}, {} entries", entries.len());
    }
}

/// Invariant: the visited set's byte stamps wrap every 255 searches without a search seeing a
/// row as visited that it never entered: across more than two wraps, a stamp set in an earlier
/// epoch never counts, and repeated searches answer bit for bit alike.
#[test]
fn visited_stamps_wrap_without_leaking_between_searches() {
    use super::beam::Visited;
    let mut v = Visited::new(8);
    for round in 0..700u32 {
        v.next();
        let row = round % 8;
        assert!(v.insert(row), "round {round}: row {row} fresh in a new epoch");
        assert!(!v.insert(row), "round {round}: row {row} visited twice");
        assert!(v.insert((row + 1) % 8), "round {round}: another row fresh");
        assert!(!v.insert(8), "out of range counts as visited");
        let mut ids = vec![row, (row + 2) % 8, 8, (row + 2) % 8, (row + 3) % 8];
        v.keep_fresh(&mut ids);
        assert_eq!(ids, vec![(row + 2) % 8, (row + 3) % 8], "round {round}: fresh rows once, in order");
    }
    let dim = 16;
    let data = clustered(600, dim, 5);
    let ix = built(&data, dim, Metric::EuclideanSquared, &GraphParams::default());
    let p = GraphSearchParams { ef: 24, rerank: 0 };
    let first: Vec<Vec<(u32, f32)>> =
        data.chunks_exact(dim).take(4).map(|q| ix.search(&data, q, 10, None, &p)).collect();
    for _ in 0..200 {
        for (q, want) in data.chunks_exact(dim).zip(&first) {
            let got = ix.search(&data, q, 10, None, &p);
            assert!(got.iter().zip(want).all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits()));
            assert_eq!(got.len(), want.len());
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Invariant: a version-4 section of either code kind with bytes overwritten anywhere (the
    /// crc resealed, so the structural checks decide), or cut short, opens to an error or to an
    /// index whose searches return rows in range; never a panic.
    #[test]
    fn damaged_version_4_sections_are_errors_or_searchable(
        rabitq in proptest::prelude::any::<bool>(),
        edits in proptest::collection::vec((proptest::prelude::any::<u32>(), proptest::prelude::any::<u8>()), 1..6),
        cut in proptest::prelude::any::<u16>(),
    ) {
        use std::sync::OnceLock;
        static SECTIONS: OnceLock<(Vec<f32>, [Vec<u8>; 2])> = OnceLock::new();
        let (data, sections) = SECTIONS.get_or_init(|| {
            let data = clustered(300, 8, 17);
            let s = [sq8(), planes(2)].map(|p| build(&data, 8, Metric::EuclideanSquared, &p));
            (data, s)
        });
        let mut b = sections[usize::from(rabitq)].clone();
        for (at, v) in &edits {
            let at = *at as usize % b.len();
            b[at] = *v;
        }
        if cut % 4 == 0 {
            b.truncate(usize::from(cut) % b.len());
        }
        if b.len() >= HEADER_LEN_V4 {
            let crc = section_crc(&b);
            b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        }
        if let Ok(ix) = GraphIndex::open(bytes::Bytes::from(b)) {
            for q in data.chunks_exact(8).step_by(50) {
                let got = ix.search(data, q, 5, None, &GraphSearchParams { ef: 16, rerank: 0 });
                proptest::prop_assert!(got.iter().all(|(r, _)| (*r as usize) < ix.rows()));
            }
        }
    }
}

/// Invariant (stop 50): a search for k ≤ 10 rows re-scores at least min(2k, 10) candidates, one
/// for more at least 2k. Where a beam of 10 holds recall (8-d uniform rows: hnswlib's ef 10
/// reaches 0.95 there), the calibration measures the rungs under 20 as they are served and picks
/// one, fresh queries get the target at it, and the record still ends on a full rung.
#[test]
fn narrow_rungs_are_measured_as_served() {
    use crate::index::vector::synth::{generate, Kind};
    assert_eq!([1, 5, 10, 11, 20].map(super::rerank_floor), [2, 10, 10, 22, 40]);
    let (n, dim, m) = (8192, 8, Metric::EuclideanSquared);
    let data = generate(Kind::Uniform, n, dim, 1);
    let ix = built(&data, dim, m, &GraphParams::default());
    let cal = ix.calibration();
    let ef = ix.effort(calibrate::DEFAULT_TARGET).expect("calibrated");
    assert!(ef < 20, "a narrow rung reaches the target: {cal:?}");
    let r = measured(&ix, &data, &generate(Kind::Uniform, 200, dim, 2), m, ef);
    assert!(r >= f64::from(calibrate::DEFAULT_TARGET), "fresh queries at ef {ef}: {r} ({cal:?})");
    assert!(cal.rungs.last().is_some_and(|r| r.rerank >= calibrate::FULL_RERANK), "{cal:?}");
}

/// Invariant: an 8-bit estimate is the same f32 whether its dot product is inlined (queries of at
/// most `INLINE_DOT` dimensions, cut to their length) or the kernel's over the whole padded code:
/// the padding's query bytes are 0 and the sums are integers. The low-dimensional estimator a
/// beam is compiled for (`RowEstimator::low_dim`) exists exactly for those queries and gives the
/// same bits.
#[test]
fn inlined_dot_products_estimate_as_the_kernel_does() {
    for dim in [3, 8, INLINE_DOT, INLINE_DOT + 1] {
        let data = clustered(600, dim, 5);
        let ix = built(&data, dim, Metric::EuclideanSquared, &GraphParams::default());
        let kern = crate::index::vector::distance::kernels();
        for q in clustered(4, dim, 9).chunks_exact(dim) {
            let est = ix.row_estimator(q, kern).unwrap();
            let EstimatorKind::Sq8 { qq, bias, inv, stride, norms2 } = &est.kind else { panic!("sq8") };
            let low = est.low_dim();
            assert_eq!(low.is_some(), dim <= INLINE_DOT, "dim {dim}");
            assert_eq!(qq.len(), if dim <= INLINE_DOT { dim } else { *stride }, "dim {dim}");
            let qc: Vec<f32> = q.iter().zip(ix.mean.iter()).map(|(v, m)| v - m).collect();
            let (whole, ..) = crate::index::vector::ann::quantize_query(&qc, &ix.scales, *stride);
            for r in 0..600u32 {
                let c = &est.codes[r as usize * stride..][..*stride];
                let by_kernel = norms2[r as usize] - 2.0 * (kern.u8i8(&whole, c) - bias) as f32 * inv;
                assert_eq!(est.estimate(r).to_bits(), by_kernel.to_bits(), "dim {dim}, row {r}");
                if let Some(low) = &low {
                    assert_eq!(low.estimate(r).to_bits(), by_kernel.to_bits(), "dim {dim}, row {r}: low_dim");
                }
            }
        }
    }
}
