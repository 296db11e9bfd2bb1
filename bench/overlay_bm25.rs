//! BM25 over an unindexed backlog (issue 39, item 3): the same title-like queries over
//! 100,000 Debian-like documents while they all wait in the WAL overlay, and again once
//! compacted into a segment.
//!
//! Documents: `docs.jsonl` (36,000) repeated to `--rows` (default 100,000); copy `k` of
//! row `i` keeps its body and takes the title of row `(i·7919) mod 36000`; row `j` has id `j`.
//! `title` and `body` are full-text with tantivy's `en_stem` analysis (word_v3, stemming,
//! no stop words). Written through the engine in requests of 1,000 rows with automatic
//! compaction off, so every row is in the overlay. Queries: the first `--queries`
//! (default 200) dev titles (lowercased, non-alphanumerics → spaces), ranked by
//! `Sum(title BM25, body BM25)`, top 10, evaluated in-process (`execute_request` on
//! the namespace's state, one thread). Each query is timed as the best of `--reps` (3)
//! runs; the report gives p50/p90/mean over the queries:
//! * backlog: the overlay read through its inverted index (`state::text`);
//! * backlog, scan: the same state with the index dropped (the path before the index;
//!   only the first `--scan` queries, default 5, since each takes seconds);
//! * compacted: after `compact`, one segment with its text index;
//!
//! and whether every query returns the same ids and score bits on each pair of paths.
//! With `--base N`, N further rows are written and compacted first (a segment under the
//! backlog, as a namespace mid-ingest has). Last, what keeping the index costs a write:
//! the rows applied to an in-memory state in requests of 1,000 (`apply_request`, no
//! storage), once with `title`/`body` full-text and once as plain strings (no index).
//!
//! Usage: `CARGO_TARGET_DIR=target/bench cargo run --release --example overlay_bm25 --
//! [--data DIR] [--rows N] [--queries Q] [--reps R] [--scan S] [--base N] [--apply-only]
//! [--apply-batch ROWS]` (rows per request of the in-memory apply, default 1,000).
//! Nothing here is asserted.

use std::time::Instant;

use serde_json::{json, Value as Json};
use tidepool::engine::apply::apply_request;
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, NsState, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::query::{execute_request, QueryRequest, Row};
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

fn read_lines(path: &str) -> Vec<Json> {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    s.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("json line")).collect()
}

fn query_text(title: &str) -> String {
    title.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect()
}

/// Row `j` of the synthetic corpus.
fn row(docs: &[Json], j: usize) -> Json {
    let n = docs.len();
    let base = &docs[j % n];
    let title_from = if j < n { j } else { (j * 7919) % n };
    json!({"id": j, "title": docs[title_from]["title"], "body": base["body"]})
}

fn schema() -> Json {
    let en_stem = json!({"tokenizer": "word_v3", "stemming": true, "remove_stopwords": false});
    json!({"title": {"type": "string", "full_text_search": en_stem},
           "body": {"type": "string", "full_text_search": en_stem}})
}

async fn write_rows(e: &Engine, ns: &NsPath, docs: &[Json], rows: std::ops::Range<usize>) {
    let all: Vec<usize> = rows.collect();
    for chunk in all.chunks(1_000) {
        let rows: Vec<Json> = chunk.iter().map(|&j| row(docs, j)).collect();
        let body = json!({"upsert_rows": rows, "schema": schema()});
        e.write(ns, WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }
}

/// Seconds to apply the rows to an in-memory state, with or without full-text attributes.
fn apply_cost(docs: &[Json], rows: usize, batch: usize, full_text: bool) -> f64 {
    let schema =
        if full_text { schema() } else { json!({"title": {"type": "string"}, "body": {"type": "string"}}) };
    let mut st = NsState::default();
    let t = Instant::now();
    for start in (0..rows).step_by(batch) {
        let rows: Vec<Json> = (start..(start + batch).min(rows)).map(|j| row(docs, j)).collect();
        let req = WriteRequest::from_json(&json!({"upsert_rows": rows, "schema": schema})).unwrap();
        apply_request(&mut st, &req.record, None).unwrap();
    }
    t.elapsed().as_secs_f64()
}

/// (ids, score bits) of a query's rows.
fn answer(rows: &[Row]) -> Vec<(String, u64)> {
    rows.iter().map(|r| (r.doc.id.to_string(), r.dist.unwrap_or(f64::NAN).to_bits())).collect()
}

/// Per query: best-of-`reps` ms and the answer.
fn run(st: &NsState, queries: &[QueryRequest], reps: usize) -> Vec<(f64, Vec<(String, u64)>)> {
    queries
        .iter()
        .map(|q| {
            let mut best = f64::MAX;
            let mut out = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                let res = execute_request(q, st).unwrap();
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
                out = answer(res[0].rows.as_deref().unwrap_or_default());
            }
            (best, out)
        })
        .collect()
}

/// p50, p90, mean of the times.
fn summary(runs: &[(f64, Vec<(String, u64)>)]) -> (f64, f64, f64) {
    let mut t: Vec<f64> = runs.iter().map(|r| r.0).collect();
    t.sort_by(f64::total_cmp);
    let at = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.9), t.iter().sum::<f64>() / t.len() as f64)
}

fn agree(a: &[(f64, Vec<(String, u64)>)], b: &[(f64, Vec<(String, u64)>)]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x.1 == y.1).count()
}

#[tokio::main]
async fn main() {
    let mut data = String::from("/work/shared/data/debian");
    let (mut rows, mut nq, mut reps, mut scan, mut base) = (100_000usize, 200usize, 3usize, 5usize, 0usize);
    let (mut apply_only, mut batch) = (false, 1_000usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|x| x.parse().ok()).expect("a number");
        match a.as_str() {
            "--data" => data = args.next().expect("--data DIR"),
            "--rows" => rows = num(),
            "--queries" => nq = num(),
            "--reps" => reps = num(),
            "--scan" => scan = num(),
            "--base" => base = num(),
            "--apply-only" => apply_only = true,
            "--apply-batch" => batch = num(),
            other => panic!("unknown argument {other}"),
        }
    }
    let docs = read_lines(&format!("{data}/docs.jsonl"));
    if apply_only {
        let (with, without) = (apply_cost(&docs, rows, batch, true), apply_cost(&docs, rows, batch, false));
        println!(
            "applying {rows} rows in memory, {batch} a request: {with:.2} s with the overlay index, {without:.2} s \
             as plain strings"
        );
        return;
    }
    let queries: Vec<QueryRequest> = read_lines(&format!("{data}/queries/queries.jsonl"))
        .iter()
        .take(nq)
        .map(|q| {
            let text = query_text(q["text"].as_str().unwrap());
            let body =
                json!({"rank_by": ["Sum", [["title", "BM25", text], ["body", "BM25", text]]], "top_k": 10});
            parse_request(&body, false).unwrap()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.unwrap();
    let ns = NsPath::new("o", "p", "backlog").unwrap();
    if base > 0 {
        write_rows(&e, &ns, &docs, rows..rows + base).await;
        assert!(e.compact(&ns, true).await.unwrap().performed);
    }
    let t = Instant::now();
    write_rows(&e, &ns, &docs, 0..rows).await;
    let ingest = t.elapsed().as_secs_f64();
    let backlog = e.existing(&ns, true).await.unwrap().state;
    println!(
        "{rows} rows in the overlay ({} in segments), written in {ingest:.1} s ({:.0} rows/s); {} queries, best of {reps}",
        backlog.len() - backlog.overlay().len() as u64,
        rows as f64 / ingest,
        queries.len()
    );
    let indexed = run(&backlog, &queries, reps);
    let scan_state = backlog.as_ref().clone().without_text_index();
    let text_bytes: usize = backlog
        .overlay()
        .values()
        .flatten()
        .flat_map(|d| ["title", "body"].map(|a| d.attrs.get(a).map_or(0, tidepool::model::value_bytes)))
        .sum();
    println!(
        "overlay index (estimated heap, NsState::memory_weight with and without it): {:.1} MB for {:.1} MB of overlay text",
        (backlog.memory_weight() - scan_state.memory_weight()) as f64 / 1e6,
        text_bytes as f64 / 1e6
    );
    let scanned = run(&scan_state, &queries[..scan.min(queries.len())], 1);
    assert!(e.compact(&ns, true).await.unwrap().performed);
    let compacted_state = e.existing(&ns, true).await.unwrap().state;
    assert!(compacted_state.overlay().is_empty());
    let compacted = run(&compacted_state, &queries, reps);
    println!("| path | p50 ms | p90 ms | mean ms | queries |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, r) in
        [("backlog (overlay index)", &indexed), ("backlog, scan", &scanned), ("compacted", &compacted)]
    {
        if !r.is_empty() {
            let (p50, p90, mean) = summary(r);
            println!("| {name} | {p50:.3} | {p90:.3} | {mean:.3} | {} |", r.len());
        }
    }
    let (b50, c50) = (summary(&indexed).0, summary(&compacted).0);
    println!("p50 ratio backlog / compacted: {:.2}", b50 / c50);
    println!(
        "same ids and score bits: overlay index = scan for {}/{}; overlay index = compacted for {}/{}",
        agree(&indexed, &scanned),
        scanned.len(),
        agree(&indexed, &compacted),
        queries.len()
    );
    let ids_only = indexed
        .iter()
        .zip(&compacted)
        .filter(|(a, b)| a.1.iter().map(|x| &x.0).eq(b.1.iter().map(|x| &x.0)))
        .count();
    println!("same ids (order included): {ids_only}/{}", queries.len());
    let (with, without) = (apply_cost(&docs, rows, batch, true), apply_cost(&docs, rows, batch, false));
    println!(
        "applying the {rows} rows in memory: {with:.2} s with the overlay index, {without:.2} s as plain strings"
    );
}
