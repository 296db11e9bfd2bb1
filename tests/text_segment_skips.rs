//! BM25 over several segments with the query side's shortcuts (`query/bm25.rs`): a segment whose
//! dictionaries hold none of the query's terms is not searched, a segment searched after others
//! drops rows below the k-th score they gave, and ids are read only for rows that can still rank.
//!
//! Invariant guarded: none of these changes an answer. The query for every matching row (no floor
//! is set, no row is dropped before its id is read) is the reference for each smaller `top_k`:
//! its first rows, same order (ties by id) and `$dist` bits; and it holds the same rows as the
//! same documents unindexed (the WAL), so a skipped segment dropped none. Queries whose terms
//! live in one segment, in several, in none, and ties spread over segments.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, NsState, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::query::execute_request;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

fn ns() -> NsPath {
    NsPath::new("o", "p", "q").unwrap()
}

async fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let store = Store::local(&dir.join("store")).unwrap();
    let mut cfg = EngineConfig::new(dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, max_segments: 64, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

async fn write(e: &Engine, body: Json) {
    e.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
}

async fn state(e: &Engine) -> Arc<NsState> {
    e.existing(&ns(), true).await.unwrap().state
}

fn rows(s: &NsState, q: &str, top_k: usize) -> Vec<Json> {
    let body = json!({"rank_by": ["Sum", [["title", "BM25", q], ["body", "BM25", q]]], "top_k": top_k});
    let req = parse_request(&body, false).unwrap();
    let mut res = execute_request(&req, s).unwrap_or_else(|e| panic!("{body}: {e}"));
    res.remove(0).to_json()["rows"].as_array().cloned().unwrap_or_default()
}

/// Batch `b`'s documents: each batch has words of its own (`only{b}_*`), words every batch has,
/// and the same "tie" document under ids from every batch (equal scores across segments).
fn batch(b: u64) -> Vec<Json> {
    let shared = ["river", "stone", "light", "paper", "green"];
    (0..40u64)
        .map(|i| {
            let id = i * 4 + b;
            let (title, body) = if i % 10 == 7 {
                ("tie tie".to_owned(), "tie shared words".to_owned())
            } else {
                let own = format!("only{b}_{}", i % 6);
                let words: Vec<&str> =
                    (0..(2 + (i * 3 + b) % 7)).map(|k| shared[((i + k * b) % 5) as usize]).collect();
                (format!("{own} {}", shared[(i % 5) as usize]), format!("{} {own} {}", words.join(" "), own))
            };
            json!({"id": id, "title": title, "body": body})
        })
        .collect()
}

#[tokio::test]
async fn skipped_segments_floors_and_late_ids_leave_answers_unchanged() {
    let schema = json!({
        "title": {"type": "string", "full_text_search": {"stemming": false, "remove_stopwords": false}},
        "body": {"type": "string", "full_text_search": {"stemming": false, "remove_stopwords": false}},
    });
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (segs, wal) = (engine(d1.path()).await, engine(d2.path()).await);
    for b in 0..4u64 {
        write(&segs, json!({"upsert_rows": batch(b), "schema": schema})).await;
        assert!(segs.compact(&ns(), true).await.unwrap().performed);
        write(&wal, json!({"upsert_rows": batch(b), "schema": schema})).await;
    }
    let (s, w) = (state(&segs).await, state(&wal).await);
    assert!(s.segments().len() >= 3, "{} segments", s.segments().len());
    assert_eq!(s.overlay().len(), 0);
    assert!(w.segments().is_empty());
    let queries = [
        "only0_1",              // one segment's word: the others are skipped
        "only3_2 only3_4",      // the last segment's words
        "only1_0 only2_5",      // two segments', none in the others
        "absentword",           // in no segment
        "tie",                  // equal scores in every segment: ties by id across them
        "tie river",            // ties, and a word everywhere
        "river stone light",    // every segment, many rows
        "only2_3 tie green",    // mixed
        "paper only0_0 absent", // mixed with a missing word
    ];
    for q in queries {
        // Every matching row: no floor is ever set (fewer hits than top_k) and no row is dropped
        // before its id is read. Its first `top_k` rows are what a smaller top_k must return.
        let all = rows(&s, q, 1000);
        assert!(all.len() < 1000);
        for top_k in [1, 2, 3, 4, 5, 7, 10, 16, 200] {
            let want = &all[..top_k.min(all.len())];
            assert_eq!(rows(&s, q, top_k), want, "query {q:?} top_k {top_k}");
        }
        // The unindexed reference: the same rows (a skipped segment dropped none), the same
        // scores up to the order a row's parts are added in (its own path's).
        let (mut got, mut want) = (all.clone(), rows(&w, q, 1000));
        let key = |r: &Json| r["id"].as_u64().unwrap();
        got.sort_by_key(key);
        want.sort_by_key(key);
        assert_eq!(got.iter().map(key).collect::<Vec<_>>(), want.iter().map(key).collect::<Vec<_>>(), "{q}");
        for (g, w) in got.iter().zip(&want) {
            let (a, b) = (g["$dist"].as_f64().unwrap(), w["$dist"].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5 * b.abs(), "{q}: {g} vs {w}");
        }
        assert!(q.contains("absent") || !all.is_empty(), "{q}");
    }
    // The tie document: its rows in every segment score alike and come by ascending id.
    let tie = rows(&s, "tie", 3);
    let ids: Vec<u64> = tie.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![28, 29, 30], "{tie:?}");
}
