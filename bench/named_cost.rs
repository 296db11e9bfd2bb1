//! Cost of a second vector attribute (issue 34): a query ranking by `vector` in a namespace that
//! also holds a named vector attribute (`title_vec`, `[384]f32`, its own index section) against
//! the same query in a namespace without it. Same rows, same `vector`s, same scalars; both
//! compacted into one indexed segment, then a tail of unindexed rows written on top.
//!
//! Per query shape it reports the single-thread per-query time (median and mean over the
//! queries, best of `rounds`) in each namespace and the ratio with/without; shapes: `ANN` ids
//! only, `ANN` with a filter passing half the rows (filters decode rows' attributes), `ANN`
//! returning a scalar attribute, `kNN` with that filter, and — for the attribute itself —
//! `ANN`/`kNN` ranking by `title_vec`. Nothing is asserted.
//!
//! Usage: `CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example named_cost --
//! [--rows N] [--tail N] [--queries N] [--rounds N]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, WriteRequest};
use tidepool::index::vector::synth::{generate, Kind};
use tidepool::layout::NsPath;
use tidepool::query::execute_request;
use tidepool::state::NsState;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

const DIM: usize = 128;
const NAMED_DIM: usize = 384;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(default)
}

/// A namespace of `rows` compacted rows plus `tail` unindexed ones, with or without `title_vec`.
async fn build(e: &Engine, name: &str, rows: usize, tail: usize, named: bool) -> Arc<NsState> {
    let ns = NsPath::new("bench", "bench", name).expect("ns");
    let vecs = generate(Kind::Clustered, rows + tail, DIM, 1);
    let titles = generate(Kind::Clustered, rows + tail, NAMED_DIM, 2);
    let schema = json!({"title_vec": {"type": format!("[{NAMED_DIM}]f32"), "ann": true}});
    let write = |from: usize, to: usize| {
        let body_rows: Vec<Json> = (from..to)
            .map(|i| {
                let mut r = json!({"id": i, "vector": &vecs[i * DIM..(i + 1) * DIM], "g": i % 10,
                    "title": format!("row {i}")});
                if named {
                    r["title_vec"] = json!(&titles[i * NAMED_DIM..(i + 1) * NAMED_DIM]);
                }
                r
            })
            .collect();
        let mut body = json!({"upsert_rows": body_rows, "distance_metric": "cosine_distance"});
        if named {
            body["schema"] = schema.clone();
        }
        WriteRequest::from_json(&body).expect("body")
    };
    for start in (0..rows).step_by(1000) {
        e.write(&ns, write(start, (start + 1000).min(rows))).await.expect("write");
    }
    assert!(e.compact(&ns, true).await.expect("compact").performed);
    if tail > 0 {
        e.write(&ns, write(rows, rows + tail)).await.expect("tail");
    }
    e.existing(&ns, true).await.expect("state").state
}

/// Per-query times of `bodies` on `st`, best of `rounds` per query.
fn time(st: &NsState, bodies: &[Json], rounds: usize) -> Vec<Duration> {
    let reqs: Vec<_> = bodies.iter().map(|b| parse_request(b, false).expect("query")).collect();
    let mut best = vec![Duration::MAX; reqs.len()];
    for _ in 0..rounds {
        for (i, r) in reqs.iter().enumerate() {
            let t = Instant::now();
            let out = execute_request(r, st).expect("execute");
            best[i] = best[i].min(t.elapsed());
            std::hint::black_box(out);
        }
    }
    best
}

fn median_mean_us(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), v.iter().map(|d| us(*d)).sum::<f64>() / v.len() as f64)
}

/// A query body for a query vector.
type Shape = Box<dyn Fn(&[f32]) -> Json>;

#[tokio::main]
async fn main() {
    let (rows, tail, queries, rounds) =
        (arg("--rows", 20_000), arg("--tail", 2_000), arg("--queries", 50), arg("--rounds", 5));
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::local(&dir.path().join("store")).expect("store");
    let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.expect("engine");
    let t = Instant::now();
    let one = build(&e, "one", rows, tail, false).await;
    let two = build(&e, "two", rows, tail, true).await;
    println!(
        "rows {rows} (+{tail} unindexed), vector {DIM}-d, title_vec {NAMED_DIM}-d; built in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let qs = generate(Kind::Clustered, queries, DIM, 77);
    let shapes: Vec<(&str, Shape)> = vec![
        ("vector ANN, ids", Box::new(|q| json!({"rank_by": ["vector", "ANN", q], "top_k": 10}))),
        (
            "vector ANN, filter g<5",
            Box::new(|q| json!({"rank_by": ["vector", "ANN", q], "top_k": 10, "filters": ["g", "Lt", 5]})),
        ),
        (
            "vector ANN, returns title",
            Box::new(
                |q| json!({"rank_by": ["vector", "ANN", q], "top_k": 10, "include_attributes": ["title"]}),
            ),
        ),
        (
            "vector kNN, filter g<5",
            Box::new(|q| json!({"rank_by": ["vector", "kNN", q], "top_k": 10, "filters": ["g", "Lt", 5]})),
        ),
    ];
    println!("{:<28} {:>14} {:>14} {:>8}", "query", "without µs", "with µs", "ratio");
    for (name, shape) in &shapes {
        let bodies: Vec<Json> = qs.chunks_exact(DIM).map(shape).collect();
        let (m1, a1) = median_mean_us(time(&one, &bodies, rounds));
        let (m2, a2) = median_mean_us(time(&two, &bodies, rounds));
        println!("{name:<28} {m1:>7.0} ({a1:>4.0}) {m2:>7.0} ({a2:>4.0}) {:>8.2}  median (mean)", m2 / m1);
    }
    let tq = generate(Kind::Clustered, queries, NAMED_DIM, 78);
    for op in ["ANN", "kNN"] {
        let bodies: Vec<Json> = tq
            .chunks_exact(NAMED_DIM)
            .map(|q| json!({"rank_by": ["title_vec", op, q], "top_k": 10}))
            .collect();
        let (m, a) = median_mean_us(time(&two, &bodies, rounds));
        println!("{:<28} {:>14} {m:>7.0} ({a:>4.0})", format!("title_vec {op}"), "-");
    }
}
