//! A query spread over helper threads (`tidepool::fanout`) answers exactly as on one thread.
//!
//! Invariant guarded: BM25 (sums, `Max`, single common words, filtered) and vector (`ANN`,
//! `kNN`, filtered) queries over a namespace of several segments return the same rows with the
//! same score bits whether each segment is searched on the query's own thread or its segments
//! (for BM25, row ranges of them) are spread over helpers that share the best scores found so
//! far — and the spread really happens (helpers ran pieces).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common;
use serde_json::{json, Value as Json};
use tidepool::engine::WriteRequest;
use tidepool::fanout::{self, Lender};
use tidepool::layout::NsPath;
use tidepool::query::execute_request;
use tidepool::state::NsState;
use tidepool::wire::query::parse_request;

const DIM: usize = 8;
/// Rows per segment: above the ANN threshold (1024), small enough for the debug test profile.
const SEG_ROWS: usize = 1100;
const SEGMENTS: usize = 4;
const WORDS: [&str; 12] =
    ["tide", "pool", "rock", "crab", "kelp", "wave", "sand", "salt", "shell", "reef", "foam", "gull"];

fn ns() -> NsPath {
    NsPath::new("o", "p", "fanout").unwrap()
}

/// Deterministic text of row `i`: common words in most rows, rarer ones in few.
fn text(i: usize, len: usize) -> String {
    (0..len)
        .map(|j| WORDS[(i * 7 + j * j * 5 + i / 3) % (3 + (i + j) % (WORDS.len() - 3))])
        .collect::<Vec<_>>()
        .join(" ")
}

fn vector(i: usize) -> Vec<f32> {
    (0..DIM).map(|d| (((i * 31 + d * 17) % 97) as f32 / 97.0) + (i % 5) as f32).collect()
}

/// [`SEGMENTS`] segments of [`SEG_ROWS`] rows with title, body, a number and a vector each.
async fn segmented() -> (tempfile::TempDir, Arc<NsState>) {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine_compacting_by_hand(dir.path()).await;
    for s in 0..SEGMENTS {
        let rows: Vec<Json> = (s * SEG_ROWS..(s + 1) * SEG_ROWS)
            .map(|i| json!({"id": i, "vector": vector(i), "title": text(i, 3), "body": text(i + 1, 12), "n": i % 10}))
            .collect();
        let body = json!({
            "upsert_rows": rows,
            "distance_metric": "euclidean_squared",
            "schema": {"title": {"type": "string", "full_text_search": true},
                       "body": {"type": "string", "full_text_search": true}},
        });
        e.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
        assert!(e.compact(&ns(), true).await.unwrap().performed);
    }
    let st = e.existing(&ns(), true).await.unwrap().state;
    assert_eq!((st.segments().len(), st.overlay().len()), (SEGMENTS, 0));
    (dir, st)
}

/// Lends every helper asked for, as a pool with idle cores does.
struct Idle(AtomicUsize);

impl Lender for Idle {
    fn lend(&self) -> Option<Box<dyn Send>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Some(Box::new(()))
    }
}

/// Each row's id and score bits.
fn answer(st: &NsState, body: &Json) -> Vec<(Json, u64)> {
    let req = parse_request(body, false).unwrap_or_else(|e| panic!("{body}: {e}"));
    let mut res = execute_request(&req, st).unwrap();
    let rows = res.remove(0).to_json()["rows"].as_array().cloned().unwrap_or_default();
    rows.iter().map(|r| (r["id"].clone(), r["$dist"].as_f64().map_or(0, f64::to_bits))).collect()
}

fn queries() -> Vec<Json> {
    let mut out = Vec::new();
    for q in ["tide pool", "rock crab kelp", "foam", "shell reef foam wave", "sand"] {
        out.push(json!({"rank_by": ["Sum", [["title", "BM25", q], ["body", "BM25", q]]], "top_k": 10}));
        out.push(json!({"rank_by": ["Max", [["title", "BM25", q], ["body", "BM25", q]]], "top_k": 5}));
        out.push(json!({"rank_by": ["body", "BM25", q], "top_k": 20, "filters": ["n", "Lt", 4]}));
    }
    for i in [3usize, 1500, 4000] {
        out.push(json!({"rank_by": ["vector", "ANN", vector(i)], "top_k": 10}));
        out.push(json!({"rank_by": ["vector", "kNN", vector(i)], "top_k": 10}));
        out.push(json!({"rank_by": ["vector", "ANN", vector(i)], "top_k": 10, "filters": ["n", "Eq", 2]}));
    }
    out
}

#[tokio::test]
async fn a_query_spread_over_helpers_answers_as_on_one_thread() {
    let (_dir, st) = segmented().await;
    let lender = Arc::new(Idle(AtomicUsize::new(0)));
    let before = fanout::helped();
    for body in queries() {
        let alone = answer(&st, &body);
        assert!(!alone.is_empty(), "{body}: no rows");
        let spread = fanout::with_lender(lender.clone(), || fanout::always(|| answer(&st, &body)));
        assert_eq!(spread, alone, "{body}");
    }
    // A helper takes a segment only if it starts before the query's own thread has taken them
    // all (a quick query's may), so this counts over every query, not per query.
    assert!(fanout::helped() > before, "no segment ran on a helper");
    // Below the work that pays for a thread, nothing is lent even with a lender installed.
    let lent = lender.0.load(Ordering::SeqCst);
    let small = fanout::with_lender(lender.clone(), || answer(&st, &queries()[0]));
    assert_eq!(small, answer(&st, &queries()[0]));
    assert_eq!(lender.0.load(Ordering::SeqCst), lent, "a query of {} rows fanned out", SEGMENTS * SEG_ROWS);
}
