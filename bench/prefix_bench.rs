//! Search-as-you-type benchmark: `["title", "BM25", p, {"last_as_prefix": true}]` over a
//! vocabulary of ~100k distinct terms, with and without `full_text_search.index_prefixes`.
//!
//! Three namespaces get the same rows (one compacted segment each; the engine API, no HTTP):
//! `on` (index_prefixes, segment with the prefix dictionary), `off` (without it) and `late`
//! (compacted without it, then the option turned on: complete answers from the term range).
//! `N` rows, row `i` titled with term `i` of a random vocabulary of `N` distinct words
//! (4..=10 letters) plus two more terms drawn at random. For prefixes of 1..=6 letters of
//! one vocabulary word it reports, per namespace: the median wall time of the query
//! (top 10, and top 10,000 to count matches), the rows matched (at most 10,000) and the
//! rows that should match (every row holding a term with that prefix, counted from the
//! generated data). Without `index_prefixes` at most 64 expanded terms are searched.
//!
//! Usage: `CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example prefix_bench
//! -- [--rows N] [--reps R]`. Nothing here is asserted.

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, NsState, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::query::execute_request;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

fn vocabulary(n: usize, rng: &mut StdRng) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    while set.len() < n {
        let len = rng.random_range(4..=10);
        set.insert((0..len).map(|_| rng.random_range(b'a'..=b'z') as char).collect::<String>());
    }
    let mut v: Vec<String> = set.into_iter().collect();
    // Shuffled, so row order is not term order.
    for i in (1..v.len()).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    v
}

fn titles(vocab: &[String], rng: &mut StdRng) -> Vec<String> {
    (0..vocab.len())
        .map(|i| {
            let (a, b) = (rng.random_range(0..vocab.len()), rng.random_range(0..vocab.len()));
            format!("{} {} {}", vocab[i], vocab[a], vocab[b])
        })
        .collect()
}

async fn load(e: &Engine, ns: &NsPath, titles: &[String], index_prefixes: bool) -> Arc<NsState> {
    let schema = json!({"title": {"type": "string", "full_text_search": {"index_prefixes": index_prefixes}}});
    for (chunk_no, chunk) in titles.chunks(10_000).enumerate() {
        let rows: Vec<Json> =
            chunk.iter().enumerate().map(|(j, t)| json!({"id": chunk_no * 10_000 + j, "title": t})).collect();
        let body = json!({"upsert_rows": rows, "schema": schema});
        e.write(ns, WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }
    assert!(e.compact(ns, true).await.unwrap().performed);
    e.existing(ns, true).await.unwrap().state
}

/// (median ms, rows returned) of one query.
fn time_query(st: &NsState, prefix: &str, top_k: usize, reps: usize) -> (f64, usize) {
    let body = json!({"rank_by": ["title", "BM25", prefix, {"last_as_prefix": true}], "top_k": top_k});
    let req = parse_request(&body, false).unwrap();
    let mut times = Vec::with_capacity(reps);
    let mut rows = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let res = execute_request(&req, st).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        rows = res[0].to_json()["rows"].as_array().map_or(0, Vec::len);
    }
    times.sort_by(f64::total_cmp);
    (times[reps / 2], rows)
}

#[tokio::main]
async fn main() {
    let mut n = 100_000usize;
    let mut reps = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => n = args.next().and_then(|x| x.parse().ok()).expect("--rows N"),
            "--reps" => reps = args.next().and_then(|x| x.parse().ok()).expect("--reps R"),
            other => panic!("unknown argument {other}"),
        }
    }
    let mut rng = StdRng::seed_from_u64(34);
    let vocab = vocabulary(n, &mut rng);
    let titles = titles(&vocab, &mut rng);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.unwrap();
    let t = Instant::now();
    let on = load(&e, &NsPath::new("o", "p", "on").unwrap(), &titles, true).await;
    let build_on = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let off = load(&e, &NsPath::new("o", "p", "off").unwrap(), &titles, false).await;
    let build_off = t.elapsed().as_secs_f64();
    let late_ns = NsPath::new("o", "p", "late").unwrap();
    load(&e, &late_ns, &titles, false).await;
    let turn_on = json!({"upsert_rows": [{"id": n + 1, "title": ""}],
        "schema": {"title": {"type": "string", "full_text_search": {"index_prefixes": true}}}});
    e.write(&late_ns, WriteRequest::from_json(&turn_on).unwrap()).await.unwrap();
    let late = e.existing(&late_ns, true).await.unwrap().state;
    println!("rows {n}, vocabulary {} terms; write+compact {build_on:.1} s with index_prefixes, {build_off:.1} s without", vocab.len());
    let section = |index_prefixes: bool| {
        let opts = tidepool::schema::FullTextSearch { index_prefixes, ..Default::default() };
        let docs = titles.iter().enumerate().map(|(i, t)| (i as u32, t.as_str()));
        tidepool::index::text::build("title", docs, &opts).len()
    };
    println!("text index section: {} bytes with index_prefixes, {} without", section(true), section(false));
    println!(
        "| prefix | terms | rows that match | on: top10 ms | top10k ms | rows | late (term range): top10 ms | \
         top10k ms | off: top10 ms | top10k ms | rows |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let word = vocab.iter().find(|w| w.len() >= 6).expect("a long word");
    for len in 1..=6 {
        let p = &word[..len];
        let terms = vocab.iter().filter(|w| w.starts_with(p)).count();
        let matching = titles.iter().filter(|t| t.split(' ').any(|w| w.starts_with(p))).count();
        let (on10, _) = time_query(&on, p, 10, reps);
        let (on_all, on_rows) = time_query(&on, p, 10_000, reps);
        let (late10, _) = time_query(&late, p, 10, reps);
        let (late_all, _) = time_query(&late, p, 10_000, reps);
        let (off10, _) = time_query(&off, p, 10, reps);
        let (off_all, off_rows) = time_query(&off, p, 10_000, reps);
        println!(
            "| `{p}` | {terms} | {matching} | {on10:.2} | {on_all:.2} | {on_rows} | {late10:.2} | {late_all:.2} | \
             {off10:.2} | {off_all:.2} | {off_rows} |"
        );
    }
}
