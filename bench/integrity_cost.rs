//! What checking reads after verification costs (issue 37 item 3, `src/integrity.rs`): the same
//! queries on the same loaded namespace with the checks on and off, alternating in one run.
//!
//! Loads the Debian corpus (36,000 documents, 384-d vectors, BM25 on title and body, `section`
//! filterable) into one compacted segment on a local store, then times, single-threaded through
//! the engine's read path (`Engine::read` → `ReadView::query`, the query pool included):
//! * `filter`: `section Eq games`, top 1,000, ids only (attribute index + rows);
//! * `scan`: every document by id with every attribute (the docs section whole);
//! * `bm25`: the 500 dev titles on `title` (postings, norms, then rows);
//! * `ann`: the 500 dev query vectors, top 10 (graph codes, rerank rows, result rows);
//! * `get`: 2,000 documents by id.
//!
//! Usage: `CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example integrity_cost --
//! [--corpus DIR] [--rounds N]`. Reports best-of-rounds per query class and the ratio on/off.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, ReadOptions, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

const DIM: usize = 384;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn lines(path: &std::path::Path) -> Vec<Json> {
    std::io::BufReader::new(std::fs::File::open(path).expect("open"))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect()
}

fn f32s(path: &std::path::Path) -> Vec<f32> {
    let raw = std::fs::read(path).expect("vectors");
    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

async fn run(e: &Arc<Engine>, ns: &NsPath, bodies: &[Json]) -> Duration {
    let t = Instant::now();
    for b in bodies {
        let req = parse_request(b, false).expect("request");
        let mut view = e.read(ns, ReadOptions::default()).await.expect("read");
        view.query(&req).await.expect("query");
    }
    t.elapsed()
}

async fn gets(e: &Engine, ns: &NsPath) -> Duration {
    let t = Instant::now();
    let mut x = 7u64;
    for _ in 0..2000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let got = e.get(ns, &[DocId::U64((x >> 33) % 36_000)]).await.expect("get");
        assert!(got[0].is_some());
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let corpus = PathBuf::from(arg("--corpus").unwrap_or_else(|| "../shared/data/debian".into()));
    let rounds: usize = arg("--rounds").and_then(|r| r.parse().ok()).unwrap_or(5);
    let docs = lines(&corpus.join("docs.jsonl"));
    let vecs = f32s(&corpus.join("vectors.f32"));
    let queries = lines(&corpus.join("queries/queries.jsonl"));
    let qvecs = f32s(&corpus.join("queries/query_vectors.f32"));

    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::local(&tmp.path().join("store")).expect("store");
    let mut cfg = EngineConfig::new(tmp.path().join("data"), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.expect("engine");
    let ns = NsPath::new("bench", "bench", "debian").expect("ns");
    let schema = json!({"title": {"type": "string", "full_text_search": true},
        "body": {"type": "string", "full_text_search": true}, "section": {"type": "string", "filterable": true}});
    for (c, chunk) in docs.chunks(1000).enumerate() {
        let rows: Vec<Json> = chunk
            .iter()
            .enumerate()
            .map(|(j, d)| {
                let i = c * 1000 + j;
                json!({"id": i, "vector": &vecs[i * DIM..(i + 1) * DIM], "title": d["title"], "body": d["body"],
                    "section": d["section"]})
            })
            .collect();
        let body = json!({"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema});
        e.write(&ns, WriteRequest::from_json(&body).expect("request")).await.expect("write");
    }
    e.compact(&ns, true).await.expect("compact");

    let filter =
        vec![json!({"rank_by": ["id", "asc"], "top_k": 1000, "filters": ["section", "Eq", "games"]})];
    let scan = vec![json!({"rank_by": ["id", "asc"], "top_k": 10_000, "include_attributes": true})];
    let bm25: Vec<Json> =
        queries.iter().map(|q| json!({"rank_by": ["title", "BM25", q["text"]], "top_k": 10})).collect();
    let ann: Vec<Json> = (0..queries.len())
        .map(|i| json!({"rank_by": ["vector", "ANN", &qvecs[i * DIM..(i + 1) * DIM]], "top_k": 10}))
        .collect();
    let classes: [(&str, &[Json]); 4] =
        [("filter", &filter), ("scan", &scan), ("bm25", &bm25), ("ann", &ann)];
    // Warm both ways once (the namespace loaded, pages faulted in).
    for (_, b) in classes {
        run(&e, &ns, b).await;
    }
    println!("class    checks on     checks off    on/off");
    for (name, bodies) in classes {
        let (mut on, mut off) = (Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            tidepool::integrity::set_checking(true);
            on = on.min(run(&e, &ns, bodies).await);
            tidepool::integrity::set_checking(false);
            off = off.min(run(&e, &ns, bodies).await);
        }
        tidepool::integrity::set_checking(true);
        println!("{name:<8} {on:>12.2?} {off:>12.2?}    {:.3}", on.as_secs_f64() / off.as_secs_f64());
    }
    let (mut on, mut off) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        tidepool::integrity::set_checking(true);
        on = on.min(gets(&e, &ns).await);
        tidepool::integrity::set_checking(false);
        off = off.min(gets(&e, &ns).await);
    }
    tidepool::integrity::set_checking(true);
    println!("{:<8} {on:>12.2?} {off:>12.2?}    {:.3}", "get", on.as_secs_f64() / off.as_secs_f64());
}
