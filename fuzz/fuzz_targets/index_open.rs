//! Fuzz target: ANN (kind 16, versions 1 to 3; a version-3 section, lists only, opens without its
//! graph and so searches its exact-scoring path), full-text (kind 17), cold IVF (kind 21),
//! named vector (kind 23: `NamedIndex::open`, then a filtered graph search and
//! an exact read of every present row) and named cold IVF (kind 24: the prefix
//! and IVF head parsed, then every list block read) index sections. Opening arbitrary bytes never panics (the crc check is
//! skipped for kinds 16 and 17 so the fuzzer reaches the structural checks),
//! and a section that opens can be searched. For kind 21 the head is parsed
//! (with its crc) and then every list block is read from the input's bytes.
//! Mode 6 (mode % 7 == 6, checked first): a bare graph section (kind 20, every version:
//! `GraphIndex::open_trusted`, so the structural checks of versions 1 to 5 are reached: version
//! 4's packed neighbour ids, each < rows or the unused-slot value, and its wide calibration
//! record; version 5's tight RaBitQ records), then a
//! search over zero vectors of its shape and a filtered one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::index::vector::ann::{AnnIndex, SearchParams};
use tidepool::index::vector::coldivf::ColdHead;
use tidepool::index::vector::graph::{GraphIndex, GraphSearchParams};
use tidepool::index::text::{Bm25Params, CorpusStats, TextIndex};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    if mode % 7 == 6 {
        if let Ok(g) = GraphIndex::open_trusted(bytes::Bytes::copy_from_slice(body)) {
            let (rows, dim) = (g.rows(), g.dim());
            if rows.saturating_mul(dim) <= 1 << 20 {
                let vectors = vec![0.5f32; rows * dim];
                let query = vec![0.25f32; dim];
                let p = GraphSearchParams { ef: 16, rerank: 0 };
                let found = g.search(&vectors, &query, 5, None, &p);
                assert!(found.len() <= 5 && found.iter().all(|(r, _)| (*r as usize) < rows));
                let _ = g.search(&vectors, &query, 5, Some(&|r| r % 2 == 0), &p);
            }
        }
    } else if mode % 5 == 4 {
        if let Ok(h) = tidepool::index::vector::coldnamed::NamedColdHead::parse(body) {
            let (ivf, at) = (h.ivf(), h.ivf_at());
            let query = vec![0.25f32; ivf.dim()];
            for c in ivf.probe(&query, 0) {
                let r = ivf.list_range(c);
                let (Ok(a), Ok(b)) = (usize::try_from(at + r.start), usize::try_from(at + r.end)) else { continue };
                if let Some(list) = body.get(a..b).and_then(|block| ivf.open_list(c, block).ok()) {
                    assert_eq!(list.vectors.len(), list.rows.len() * ivf.dim());
                }
            }
        }
    } else if mode % 4 == 3 {
        if let Ok(ix) = tidepool::index::vector::named::NamedIndex::open(bytes::Bytes::copy_from_slice(body)) {
            let query = vec![0.25f32; ix.dim()];
            let present = |r: u32| ix.present(r as usize);
            let p = tidepool::index::vector::graph::GraphSearchParams { ef: 16, rerank: 0 };
            for (row, _) in ix.graph().search(ix.vectors(), &query, 5, Some(&present), &p) {
                assert!(ix.present(row as usize), "a search returned an absent row");
            }
            for r in 0..ix.rows() {
                assert_eq!(ix.vector(r).is_some(), ix.present(r));
            }
        }
    } else if mode % 3 == 2 {
        if let Ok(head) = ColdHead::parse(body) {
            let query = vec![0.25f32; head.dim()];
            for c in head.probe(&query, 0) {
                let r = head.list_range(c);
                let (Ok(a), Ok(b)) = (usize::try_from(r.start), usize::try_from(r.end)) else { continue };
                if let Some(block) = body.get(a..b) {
                    if let Ok(list) = head.open_list(c, block) {
                        let _ = list.distances(head.metric(), &query, |r| r % 2 == 0);
                    }
                }
            }
        }
    } else if mode % 3 == 0 {
        if let Ok(idx) = AnnIndex::open_trusted(body) {
            let (rows, dim) = (idx.rows(), idx.dim());
            if dim > 0 && rows.saturating_mul(dim) <= 1 << 20 {
                let vectors = vec![0.5f32; rows * dim];
                let query = vec![0.25f32; dim];
                let _ = idx.search(&vectors, &query, 5, None, &SearchParams::default());
                let _ = idx.search(&vectors, &query, 5, Some(&|r| r % 2 == 0), &SearchParams::default());
            }
        }
    } else if let Ok(idx) = TextIndex::open_trusted(body) {
        let terms: Vec<String> = idx.terms_with_prefix("", 4).into_iter().map(|t| t.to_string()).collect();
        let mut stats = CorpusStats::default();
        stats.add_index(&idx, &terms);
        let params = Bm25Params { k1: 1.2, b: 0.75 };
        let _ = idx.search(&terms, &stats, params, 10, None);
        let _ = idx.search(&terms, &stats, params, 3, Some(&|r| r % 3 == 0));
    }
});
