//! Format compatibility of the vector index sections (IVF and graph,
//! `storage-format.md` 11.1, 11.5, 11.6): every released version stays
//! readable forever, and the current encoders write exactly the frozen bytes
//! (split from `format_compat.rs`).
//!
//! Invariants guarded here:
//! - `tests/fixtures/v3/`, `v5/` and `v6/` hold the same calibrated IVF and graph input as each
//!   build wrote it (own rows; own and perturbed rows; local perturbation and graph link
//!   slack). All read back; v6 was the canonical encoders' until the calibration reach.
//!
//! - `tests/fixtures/v16_reach/` holds the v3 input's IVF and graph pair and the v15 input's
//!   RaBitQ graph as the encoders write them since 2026-11-26: the calibration record stores its
//!   reach (`storage-format.md` 11.6, bytes 44..48), written once by `write_v16_reach_fixtures`;
//!   the v6 and v15 files equal them but for the reach, and read as "no reach".
//!
//! - `tests/fixtures/v15/graph_rabitq.bin` holds a graph section version 3 (RaBitQ traversal
//!   codes, `storage-format.md` 11.5) of the version-3 fixtures' input, written once by
//!   `write_v15_fixtures`.
//!
//! - `tests/fixtures/v16/ann_lists.bin` holds an IVF section version 3 (lists only, scored with
//!   the graph's codes, `storage-format.md` 11.1) of the same input, naming the graph section
//!   `v6/graph.bin` (the same input and encoder), written once by `write_v16_fixtures`.
//!
//! - `tests/fixtures/v17_packed/` holds the graph section version 4 (stop 49: either code kind,
//!   neighbour ids bit-packed, the wide calibration record over the finer ladders) of the same
//!   input as 8-bit and 1-bit RaBitQ sections, written once by `write_v17_packed_fixtures`; the
//!   canonical graph encoders until stop 50. The older graph fixtures read back and hold the same graph.
//!
//! - `tests/fixtures/v18_rungs/` holds the same two graph sections as the encoders write them
//!   since stop 50 (same layout, version 4; only the wide calibration record differs: the ladder
//!   starts at ef 10, measured as a k = 10 search, and the reach is taken over queries perturbed
//!   at 1.0 × the radius while the rungs' are at 0.5 ×; `storage-format.md` 11.6), written once by
//!   `write_v18_rungs_fixtures`; the canonical graph encoders since.
//!
//! - `tests/fixtures/v19_tight/graph_rabitq.bin` holds the graph section version 5 (issue 36
//!   item 4: RaBitQ records at their tight length, 20 bytes a row instead of 32 here) of the
//!   same input: the version-4 fixture with each record's padding cut, restamped and resealed
//!   from the specification (not by the encoder), which the encoder reproduces since.
//!
//! - `tests/fixtures/v20_tight_rungs/graph_rabitq.bin` holds what the encoder writes for that input
//!   since both stop-50 changes met: version 5 (tight records) with the `v18_rungs` record; written
//!   once by `write_v20_tight_rungs_fixtures`, the canonical RaBitQ encoder since.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_vectors::write_v6_fixtures format_compat_vectors::write_v15_fixtures format_compat_vectors::write_v16_fixtures format_compat_vectors::write_v16_reach_fixtures format_compat_vectors::write_v17_packed_fixtures format_compat_vectors::write_v18_rungs_fixtures format_compat_vectors::write_v20_tight_rungs_fixtures`

use crate::fixtures;

use bytes::Bytes;
use fixtures::{fixture_dir, read_fixture, write_missing};

/// Vectors of the version-3 fixtures: splitmix-derived, no libm (the same bits everywhere).
fn v3_vectors(rows: usize, dim: usize) -> Vec<f32> {
    (0..(rows * dim) as u64)
        .map(|i| {
            let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z >> 40) as f32 / (1u32 << 24) as f32) - 0.5
        })
        .collect()
}

/// The calibrated sections: IVF version 2 (euclidean) and graph version 2 (cosine).
fn v3_sections() -> (Vec<u8>, Vec<u8>) {
    use tidepool::index::vector::{ann, distance::Metric, graph};
    let v = v3_vectors(256, 8);
    (
        ann::build(&v, 8, Metric::EuclideanSquared, &ann::AnnParams::default()),
        graph::build(
            &v,
            8,
            Metric::CosineDistance,
            &graph::GraphParams { code: graph::GraphCode::Sq8, ..Default::default() },
        ),
    )
}

/// Decodes a frozen calibrated IVF and graph pair and checks its records count `queries`.
fn calibrated_pair_reads_back(version: &str, queries: u16) -> (Vec<u8>, Vec<u8>) {
    use tidepool::index::vector::{ann::AnnIndex, graph::GraphIndex};
    let (ivf, graph) = (read_fixture(version, "ann_ivf.bin"), read_fixture(version, "graph.bin"));
    let a = AnnIndex::open(&ivf).unwrap();
    let g = GraphIndex::open(Bytes::from(graph.clone())).unwrap();
    for cal in [a.calibration(), g.calibration()] {
        assert!(cal.is_calibrated() && cal.queries == queries, "{version}: {cal:?}");
    }
    assert_eq!(g.effort(0.5), Some(g.calibration().rungs[0].effort));
    (ivf, graph)
}

/// Invariant: the calibrated IVF and graph sections (version 2 of each) written by the first
/// calibration (own rows only, 128 queries here) decode with their calibration record.
#[test]
fn v3_calibrated_vector_sections_read_back() {
    calibrated_pair_reads_back("v3", 128);
}

/// Invariant: the sections calibrated on own rows and rows perturbed by |row − mean|
/// (2026-11-23; 128 rows, 256 queries) decode with their record.
#[test]
fn v5_calibration_with_perturbed_queries_reads_back() {
    calibrated_pair_reads_back("v5", 256);
}

/// Invariant: the sections written 2026-11-24 (rows perturbed by their own 10th-neighbour
/// radius, storage-format 11.6; the graph linked with in-link slack, 11.5) decode with a record
/// counting both kinds of queries and no reach (bytes 44..48 zero: they never escalate), and
/// equal today's encoders' output but for the reach.
#[test]
fn v6_local_perturbation_and_link_slack_read_back() {
    let (ivf, graph) = calibrated_pair_reads_back("v6", 256);
    let g = tidepool::index::vector::graph::GraphIndex::open(Bytes::from(graph.clone())).unwrap();
    assert_eq!(g.calibration().reach(), None);
    let (ivf_now, graph_now) = v3_sections();
    assert_eq!(without_reach(&ivf_now, IVF_CALIB_AT), ivf);
    same_graph(&graph, &graph_now);
}

/// Asserts that `old` (an older graph section) and `new` (a later layout of the same input:
/// version 4, or 5 for RaBitQ codes) hold the same graph: the same shape, codes and neighbour
/// lists, so that searches at any given ef return the same rows and f32 bits (only the link
/// layout, the record padding and the calibration differ, storage-format 11.5).
fn same_graph(old: &[u8], new: &[u8]) {
    use tidepool::index::vector::graph::{GraphIndex, GraphSearchParams};
    let (a, b) = (
        GraphIndex::open(Bytes::copy_from_slice(old)).unwrap(),
        GraphIndex::open(Bytes::copy_from_slice(new)).unwrap(),
    );
    assert!(matches!(new[8..12], [4 | 5, 0, 0, 0]), "version 4 or 5");
    assert_eq!(
        (a.rows(), a.dim(), a.metric(), a.code_bits()),
        (b.rows(), b.dim(), b.metric(), b.code_bits())
    );
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..a.rows() as u32 {
        x.clear();
        y.clear();
        a.neighbours(r, &mut x);
        b.neighbours(r, &mut y);
        assert_eq!(x, y, "row {r}");
    }
    let v = v3_vectors(a.rows(), a.dim());
    for ef in [16, 64] {
        let p = GraphSearchParams { ef, rerank: 0 };
        for q in v.chunks_exact(a.dim()).step_by(29) {
            let (f, g) = (a.search(&v, q, 10, None, &p), b.search(&v, q, 10, None, &p));
            assert!(
                f.len() == g.len()
                    && f.iter().zip(&g).all(|(f, g)| f.0 == g.0 && f.1.to_bits() == g.1.to_bits())
            );
        }
    }
}

/// Where the calibration record sits in an IVF section (version 2), and where its reach sits
/// in it (storage-format 11.1, 11.6).
const IVF_CALIB_AT: usize = 192;
const REACH_AT: usize = 44;

/// A section's bytes with its record's reach zeroed and its crc32c resealed (both kinds keep it
/// at 56, over bytes [0, 56) ++ [64, len)): what the same build wrote before the reach existed.
fn without_reach(section: &[u8], calib_at: usize) -> Vec<u8> {
    let mut b = section.to_vec();
    b[calib_at + REACH_AT..calib_at + REACH_AT + 4].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..56]), &b[64..]);
    b[56..60].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Invariant: the current encoders are canonical — the same input gives these bytes — and the
/// records carry the reach (2026-11-26, storage-format 11.6): a finite positive distance, which a
/// search of the sections reads back as the bound it escalates beyond.
#[test]
fn v16_calibration_reach_is_canonical() {
    use tidepool::index::vector::{ann::AnnIndex, graph::GraphIndex};
    let pair = calibrated_pair_reads_back("v16_reach", 256);
    let now = v3_sections();
    assert_eq!(now.0, pair.0, "the IVF encoder is canonical");
    // Graphs are written as version 4 since stop 49 (v17_packed): the same graph.
    same_graph(&pair.1, &now.1);
    let rabitq = read_fixture("v16_reach", "graph_rabitq.bin");
    same_graph(&rabitq, &v15_graph());
    let a = AnnIndex::open(&pair.0).unwrap();
    let g = GraphIndex::open(Bytes::from(pair.1)).unwrap();
    let r = GraphIndex::open(Bytes::from(rabitq)).unwrap();
    for cal in [a.calibration(), g.calibration(), r.calibration()] {
        let reach = cal.reach().expect("stored");
        assert!(reach.is_finite() && reach > 0.0, "{cal:?}");
        assert!(cal.beyond_reach(reach * 1.01) && !cal.beyond_reach(reach));
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v16_reach_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v16_reach");
    std::fs::create_dir_all(&dir).unwrap();
    let (ivf, graph) = v3_sections();
    write_missing(&dir, vec![("ann_ivf.bin", ivf), ("graph.bin", graph), ("graph_rabitq.bin", v15_graph())]);
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v6_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    // Older pairs stay as their builds wrote them; the current encoders' output of the same
    // input is the version-6 pair.
    let dir = fixture_dir("v6");
    std::fs::create_dir_all(&dir).unwrap();
    let (ivf, graph) = v3_sections();
    write_missing(&dir, vec![("ann_ivf.bin", ivf), ("graph.bin", graph)]);
}

/// Bits per dimension of the frozen version-3 graph fixture.
const V15_BITS: u32 = 1;

/// The version-3 graph section (RaBitQ codes) of the version-3 fixtures' input.
fn v15_graph() -> Vec<u8> {
    use tidepool::index::vector::{distance::Metric, graph};
    let params =
        graph::GraphParams { code: graph::GraphCode::RaBitQ { bits: V15_BITS }, ..Default::default() };
    graph::build(&v3_vectors(256, 8), 8, Metric::CosineDistance, &params)
}

/// Invariant: the graph section version 3 (2026-11-25, `tests/fixtures/v15/graph_rabitq.bin`:
/// RaBitQ traversal codes, code kind byte 1) reads back calibrated over its ladder, the encoder
/// is canonical, and after a full-depth exact rerank it answers like the version-2 graph of the
/// same input (the same links); version 2 (8-bit codes) is still what `GraphCode::Sq8` writes.
#[test]
fn v15_graph_with_rabitq_codes_reads_back() {
    use tidepool::index::vector::graph::{
        GraphCode, GraphIndex, GraphParams, GraphSearchParams, PLANES_LADDER_V3,
    };
    let bytes = read_fixture("v15", "graph_rabitq.bin");
    assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
    assert_eq!((bytes[17], u32::from(bytes[18])), (1, V15_BITS));
    let g = GraphIndex::open(Bytes::from(bytes.clone())).unwrap();
    assert_eq!((g.rows(), g.dim(), g.code_bits()), (256, 8, V15_BITS));
    let cal = g.calibration();
    assert!(cal.is_calibrated() && cal.queries == 256, "{cal:?}");
    assert!(cal.rungs.iter().zip(PLANES_LADDER_V3).all(|(r, ef)| r.effort == ef));
    assert_eq!(g.calibration().reach(), None, "written before the reach");
    same_graph(&bytes, &v15_graph());
    let v = v3_vectors(256, 8);
    let sq8 = tidepool::index::vector::graph::build(
        &v,
        8,
        tidepool::index::vector::distance::Metric::CosineDistance,
        &GraphParams { code: GraphCode::Sq8, ..Default::default() },
    );
    assert_eq!(&sq8[8..12], &4u32.to_le_bytes(), "version 4 since stop 49, either code kind");
    let old = GraphIndex::open(Bytes::from(sq8)).unwrap();
    let p = GraphSearchParams { ef: 256, rerank: 256 };
    for q in v.chunks_exact(8).step_by(37) {
        assert_eq!(g.search(&v, q, 10, None, &p), old.search(&v, q, 10, None, &p));
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v15_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v15");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("graph_rabitq.bin", v15_graph())]);
}

/// The version-3 IVF section (lists only, scored with the graph's codes) of the version-3
/// fixtures' input, and the graph (8-bit codes, cosine) it names.
fn v16_sections() -> (Vec<u8>, Vec<u8>) {
    use tidepool::index::vector::{ann, distance::Metric, graph};
    let v = v3_vectors(256, 8);
    let g = graph::build(
        &v,
        8,
        Metric::CosineDistance,
        &graph::GraphParams { code: graph::GraphCode::Sq8, ..Default::default() },
    );
    let opened = graph::GraphIndex::open(Bytes::from(g.clone())).unwrap();
    (ann::build_lists(&v, 8, Metric::CosineDistance, &ann::AnnParams::default(), &opened), g)
}

/// Invariant: the IVF section version 3 (2026-11-26, `tests/fixtures/v16/ann_lists.bin`: kind
/// byte 2, no codes, the crc of `v6/graph.bin` at offset 40) reads back calibrated, attaches the
/// graph it names and no other, the encoder is canonical, and probing every list answers like the
/// exact search whether scored by the graph's codes (full-depth rerank) or exactly. The version-2
/// sections (v3, v5, v6 fixtures) still read with codes of their own.
#[test]
fn v16_ivf_lists_scored_with_the_graph_read_back() {
    use tidepool::index::vector::ann::{exact, AnnIndex, SearchParams, SharedAnnIndex};
    use tidepool::index::vector::distance::Metric;
    use tidepool::index::vector::graph::GraphIndex;
    // The graph it names is the version-6 fixture's (the same input and encoder).
    let (ivf, graph) = (read_fixture("v16", "ann_lists.bin"), read_fixture("v6", "graph.bin"));
    assert_eq!((&ivf[8..12], ivf[17]), (&3u32.to_le_bytes()[..], 2));
    let g = GraphIndex::open(Bytes::from(graph.clone())).unwrap();
    assert_eq!(&ivf[40..44], &g.stored_crc().to_le_bytes());
    let shared = SharedAnnIndex::open(Bytes::from(ivf.clone())).unwrap();
    assert!(shared.wants_graph());
    let other = GraphIndex::open(Bytes::from(read_fixture("v15", "graph_rabitq.bin"))).unwrap();
    assert!(!shared.clone().with_graph(other).has_graph(), "another graph is not attached");
    let ix = AnnIndex::open(&ivf).unwrap();
    assert!(ix.lists_only() && ix.calibration().is_calibrated() && ix.calibration().queries == 256);
    assert_eq!((ix.rows(), ix.dim(), ix.metric()), (256, 8, Metric::CosineDistance));
    // Written before the calibration reach (v16_reach): today's encoders' bytes but for it.
    // The IVF names its graph by crc: today's graph (with its reach) has another one.
    let (ivf_now, graph_now) = v16_sections();
    let now_graph_crc = GraphIndex::open(Bytes::from(graph_now.clone())).unwrap().stored_crc();
    assert_eq!(&ivf_now[40..44], &now_graph_crc.to_le_bytes(), "today's IVF names today's graph");
    let mut ivf_then = ivf_now.clone();
    ivf_then[40..44].copy_from_slice(&ivf[40..44]);
    assert_eq!(without_reach(&ivf_then, IVF_CALIB_AT), ivf, "the IVF encoder is canonical");
    same_graph(&graph, &graph_now);
    assert!(AnnIndex::open(&ivf_now).unwrap().calibration().reach().is_some(), "today's carries a reach");
    let v = v3_vectors(256, 8);
    let all = SearchParams { nprobe: ix.nlist() as u32, rerank: 256, ..SearchParams::default() };
    let scored = AnnIndex::open(&ivf).unwrap().with_graph(&g);
    assert!(scored.has_graph() && !ix.has_graph());
    let rows = |r: &[(u32, f32)]| r.iter().map(|x| x.0).collect::<Vec<_>>();
    for q in v.chunks_exact(8).step_by(37) {
        let want = rows(&exact(&v, 8, Metric::CosineDistance, q, 10, None));
        assert_eq!(rows(&ix.search(&v, q, 10, None, &all)), want);
        assert_eq!(rows(&scored.search(&v, q, 10, None, &all)), want);
    }
    for version in ["v3", "v5", "v6"] {
        let bytes = read_fixture(version, "ann_ivf.bin");
        let old = AnnIndex::open(&bytes).unwrap();
        assert!(!old.lists_only() && old.calibration().is_calibrated(), "{version}");
        assert_eq!(old.search(&v, &v[..8], 10, None, &SearchParams::default()).len(), 10);
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v16_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v16");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("ann_lists.bin", v16_sections().0)]);
}

/// Invariant: the graph section version 4 (stop 49, `tests/fixtures/v17_packed/`: the version-3
/// fixtures' input as 8-bit and 1-bit RaBitQ sections) reads back — header 192 bytes, code kind
/// 0 and 1, neighbour ids packed at 9 bits (256 rows: the value 256 marks an unused slot), the
/// wide calibration record over the stop-49 ladder with its reach — and each holds the graph of
/// its version-2/3 predecessor (`v16_reach`) and of today's build (`v18_rungs`), searched alike.
#[test]
fn v17_packed_links_read_back() {
    use tidepool::index::vector::graph::{downgrade, GraphIndex, EF_LADDER_V4};
    let (sq8, rabitq) =
        (read_fixture("v17_packed", "graph.bin"), read_fixture("v17_packed", "graph_rabitq.bin"));
    same_graph(&sq8, &v3_sections().1);
    same_graph(&rabitq, &v15_graph());
    for (bytes, kind) in [(&sq8, 0u8), (&rabitq, 1)] {
        assert_eq!((&bytes[8..16], bytes[17]), (&[4, 0, 0, 0, 192, 0, 0, 0][..], kind));
        let g = GraphIndex::open(Bytes::from(bytes.clone())).unwrap();
        assert_eq!((g.rows(), g.dim(), g.link_row_bytes()), (256, 8, 32 * 9 / 8));
        let cal = g.calibration();
        assert!(cal.is_calibrated() && cal.queries == 256 && cal.reach().is_some(), "{cal:?}");
        assert!(
            cal.rungs.iter().zip(EF_LADDER_V4).all(|(r, ef)| r.effort == ef && r.rerank == ef),
            "{cal:?}"
        );
        assert_eq!(g.effort(0.0), Some(EF_LADDER_V4[0]));
        // The older layout of the same graph opens and searches alike.
        same_graph(&downgrade(bytes).unwrap(), bytes);
    }
    same_graph(&read_fixture("v16_reach", "graph.bin"), &sq8);
    same_graph(&read_fixture("v16_reach", "graph_rabitq.bin"), &rabitq);
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v17_packed_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v17_packed");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("graph.bin", v3_sections().1), ("graph_rabitq.bin", v15_graph())]);
}

/// Invariant: the graph encoders since stop 50 (`tests/fixtures/v18_rungs/`) are canonical and
/// write the stop-49 layout (version 4, the same graph as `v17_packed`) with a record whose
/// ladder starts at ef 10, each rung measured reranking its beam (a k = 10 search), and whose
/// reach is the 0.99 quantile (nearest rank) of the own rows' and of the rows perturbed at 1.0 ×
/// their 10th-neighbour radius (`calibrate::sample`, the IVF's scale), not of the 0.5 × queries
/// the rungs were measured on.
#[test]
fn v18_narrow_rungs_and_the_reach_at_full_scale_are_canonical() {
    use tidepool::index::vector::{calibrate, distance::Metric, graph::GraphIndex, graph::EF_LADDER};
    let (sq8, rabitq) =
        (read_fixture("v18_rungs", "graph.bin"), read_fixture("v18_rungs", "graph_rabitq.bin"));
    // Canonical until stop 70 (its rungs measured at 0.5 ×); since then the encoder writes the same
    // bytes but for the record and the crc (`v22_full_perturb`).
    same_but_the_record(&v3_sections().1, &sq8);
    let unit: Vec<f32> = v3_vectors(256, 8)
        .chunks_exact(8)
        .flat_map(|x| {
            let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            x.iter().map(move |v| v / n).collect::<Vec<_>>()
        })
        .collect();
    let mut kth = calibrate::sample(&unit, 8, Metric::CosineDistance).kth;
    kth.sort_unstable_by(f32::total_cmp);
    let quantile = kth[(calibrate::REACH_QUANTILE * kth.len() as f64).ceil() as usize - 1];
    for (bytes, kind) in [(&sq8, 0u8), (&rabitq, 1)] {
        assert_eq!((&bytes[8..16], bytes[17]), (&[4, 0, 0, 0, 192, 0, 0, 0][..], kind));
        let g = GraphIndex::open(Bytes::from(bytes.clone())).unwrap();
        let cal = g.calibration();
        assert!(cal.is_calibrated() && cal.queries == 256, "{cal:?}");
        assert!(cal.rungs.iter().zip(EF_LADDER).all(|(r, ef)| r.effort == ef && r.rerank == ef), "{cal:?}");
        assert_eq!((cal.rungs[0].effort, g.effort(0.0)), (10, Some(10)));
        assert!(cal.rungs.last().unwrap().rerank >= calibrate::FULL_RERANK, "{cal:?}");
        // The build normalises its rows itself: the same distances but for rounding.
        let reach = cal.reach().expect("a reach");
        assert!((reach - quantile).abs() <= 1e-4 * quantile, "reach {reach}, at 1.0 × {quantile}");
    }
}

/// Invariant: the graph section version 5 (`tests/fixtures/v19_tight/graph_rabitq.bin`: the
/// v15 input's 1-bit RaBitQ section with records at their tight length, 8 code bytes and 12 of
/// factors; the encoder wrote it until the narrow-rung record) holds the graph of the version-4
/// fixture (`v17_packed/graph_rabitq.bin`, records padded to 32): the same lists and codes,
/// searched alike, 12 bytes a row smaller; its downgrade is the version-3 layout of that graph.
#[test]
fn v19_tight_records_read_back() {
    use tidepool::index::vector::graph::{downgrade, GraphIndex};
    let tight = read_fixture("v19_tight", "graph_rabitq.bin");
    // Canonical until the stop-50 calibration (its record is stop 49's); `v20_tight_rungs` since.
    assert_eq!((&tight[8..16], tight[17], tight[52]), (&[5, 0, 0, 0, 192, 0, 0, 0][..], 1, 20));
    let padded = read_fixture("v17_packed", "graph_rabitq.bin");
    assert_eq!((padded[52], padded.len() - tight.len()), (32, 256 * 12));
    let (a, b) = (
        GraphIndex::open(Bytes::from(tight.clone())).unwrap(),
        GraphIndex::open(Bytes::from(padded.clone())).unwrap(),
    );
    assert_eq!(a.calibration().rungs, b.calibration().rungs, "the same estimates, the same calibration");
    same_graph(&padded, &tight);
    let v3 = downgrade(&tight).unwrap();
    assert_eq!(&v3[8..12], &3u32.to_le_bytes());
    same_graph(&v3, &tight);
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v18_rungs_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v18_rungs");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("graph.bin", v3_sections().1), ("graph_rabitq.bin", v15_graph())]);
}

/// Invariant: the RaBitQ graph encoder since stop 50 (`tests/fixtures/v20_tight_rungs/`) is
/// canonical: version 5 (tight records, `v19_tight`'s layout and graph) carrying the narrow-rung
/// record of `v18_rungs` (same rungs and reach as that version-4 fixture).
#[test]
fn v20_tight_records_with_narrow_rungs_are_canonical() {
    use tidepool::index::vector::graph::GraphIndex;
    let bytes = read_fixture("v20_tight_rungs", "graph_rabitq.bin");
    // Canonical until stop 70; since then the same bytes but for the record (`v22_full_perturb`).
    same_but_the_record(&v15_graph(), &bytes);
    assert_eq!((&bytes[8..16], bytes[17]), (&[5, 0, 0, 0, 192, 0, 0, 0][..], 1));
    same_graph(&bytes, &read_fixture("v19_tight", "graph_rabitq.bin"));
    let (g, v18) = (
        GraphIndex::open(Bytes::from(bytes.clone())).unwrap(),
        GraphIndex::open(Bytes::from(read_fixture("v18_rungs", "graph_rabitq.bin"))).unwrap(),
    );
    assert_eq!(g.calibration(), v18.calibration());
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v20_tight_rungs_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v20_tight_rungs");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("graph_rabitq.bin", v15_graph())]);
}

/// Asserts that two version-4/5 graph sections differ at most in their calibration record
/// (bytes 64..152) and the crc32c over it (56..60).
fn same_but_the_record(a: &[u8], b: &[u8]) {
    assert_eq!(a.len(), b.len());
    let outside = |x: &[u8]| [&x[..56], &x[60..64], &x[152..]].concat();
    assert!(outside(a) == outside(b), "only the record and the crc differ");
}

/// Invariant: the graph encoders since stop 70 (`tests/fixtures/v22_full_perturb/`) are
/// canonical: the layouts and graphs of `v18_rungs` (8-bit, version 4) and `v20_tight_rungs`
/// (RaBitQ, version 5) with a record whose rungs are measured on own rows and rows perturbed at
/// 1.0 × their 10th-neighbour radius (`graph::DEFAULT_PERTURB`, the IVF's scale; was 0.5), the
/// reach as before. Fewer than 512 rows: no seeds, so the searches are those of the earlier
/// fixtures, and every rung's bound is at most the 0.5 × record's.
#[test]
fn v22_records_at_full_perturbation_are_canonical() {
    use tidepool::index::vector::graph::{GraphIndex, DEFAULT_PERTURB};
    assert_eq!(DEFAULT_PERTURB, tidepool::index::vector::calibrate::PERTURB);
    let pairs = [
        (v3_sections().1, "graph.bin", read_fixture("v18_rungs", "graph.bin")),
        (v15_graph(), "graph_rabitq.bin", read_fixture("v20_tight_rungs", "graph_rabitq.bin")),
    ];
    for (today, name, before) in pairs {
        let frozen = read_fixture("v22_full_perturb", name);
        assert_eq!(today, frozen, "{name}: the encoder is canonical");
        same_but_the_record(&frozen, &before);
        same_graph(&before, &frozen);
        let (new, old) =
            (GraphIndex::open(Bytes::from(frozen)).unwrap(), GraphIndex::open(Bytes::from(before)).unwrap());
        let (new, old) = (new.calibration(), old.calibration());
        assert_eq!((new.queries, new.reach()), (old.queries, old.reach()), "{name}");
        assert!(new.is_calibrated() && new.rungs.len() >= old.rungs.len().min(2), "{name}: {new:?}");
        for (n, o) in new.rungs.iter().zip(&old.rungs) {
            assert_eq!(n.effort, o.effort, "{name}");
            assert!(n.recall_bp <= o.recall_bp, "{name}: a farther query kind, no higher bound: {n:?} {o:?}");
        }
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v22_full_perturb_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v22_full_perturb");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("graph.bin", v3_sections().1), ("graph_rabitq.bin", v15_graph())]);
}
