//! Ingest to searchable (issue 39): the write side of `bench/bm25_scale.rs` alone, on the same
//! corpus (`bench/bm25_corpus.py`), with the times and CPU that split it, and tantivy's build
//! (`bench/tantivy_scale.py build`, 2 writer threads) in the same run.
//!
//! Ours, as in `bm25_scale`: `--writers` concurrent writers of `--batch`-row requests through
//! `Engine::write`, automatic compaction on. Reported:
//! - "acked": the last write acknowledged. Every row is then queryable, through the overlay's
//!   inverted index for the rows still in the WAL; the `title` query class (200 queries,
//!   `Sum(title BM25, body BM25)`, top 10, best of 2) is timed there, and again
//! - "folded": after compacting until the WAL is empty (every row in a segment), which is what
//!   `bm25_scale` calls "searchable". Its time leaves out the at-ack queries, during which background
//!   compaction goes on; the line also gives the time from the start with them.
//!
//! CPU is the process's user+system time (`/proc/self/stat`) at each point. Compaction rounds are
//! logged as they finish (`RUST_LOG=tidepool=info` style filter `--log`).
//!
//! Usage: `target/bench-venv/bin/python bench/bm25_corpus.py --n N --out DIR && cargo build
//! --profile profiling --example ingest_scale && target/profiling/examples/ingest_scale --dir DIR
//! [--writers 2] [--batch 1000] [--max-segments N] [--wal-objects N] [--wal-bytes N] [--no-peer]
//! [--log]`. The engine writes under `DIR/tp-ingest` (deleted first), tantivy under `DIR/tantivy-ingest` (deleted first).
//! `--max-segments` sets the compaction's `max_segments` (default 8), `--wal-objects` its
//! `wal_objects` (default 64), `--wal-bytes` its `wal_bytes` (default 64 MiB).

use std::path::Path;

use std::time::Instant;

use serde_json::{json, Value as Json};
use tidepool::engine::{Engine, EngineConfig, NsState};
use tidepool::layout::NsPath;
use tidepool::query::{execute_request, QueryRequest};
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

#[path = "bm25_writers.rs"]
mod bm25_writers;
use bm25_writers::{fold_thresholds, write_all};

/// User + system CPU seconds of this process so far.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // The fields after the comm field, from the state (field 3): utime and stime are fields 14, 15.
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn title_queries(dir: &Path) -> Vec<QueryRequest> {
    let s = std::fs::read_to_string(dir.join("queries.jsonl")).expect("queries.jsonl");
    s.lines()
        .map(|l| serde_json::from_str::<Json>(l).expect("query line"))
        .filter(|v| v["class"] == "title")
        .map(|v| {
            let t = v["text"].as_str().expect("text");
            let body = json!({"rank_by": ["Sum", [["title", "BM25", t], ["body", "BM25", t]]], "top_k": 10});
            parse_request(&body, false).unwrap()
        })
        .collect()
}

/// p50 ms of the queries on `state`, each the best of 2.
fn p50_ms(state: &NsState, qs: &[QueryRequest]) -> f64 {
    let mut best = vec![f64::MAX; qs.len()];
    for _ in 0..2 {
        for (q, b) in qs.iter().zip(best.iter_mut()) {
            let t = Instant::now();
            std::hint::black_box(tidepool::integrity::within(|| execute_request(q, state).unwrap()).unwrap());
            *b = b.min(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    best.sort_by(f64::total_cmp);
    best[best.len() / 2]
}

fn tantivy_build(dir: &Path, writers: usize) -> Json {
    let index = dir.join("tantivy-ingest");
    let _ = std::fs::remove_dir_all(&index);
    let out = std::process::Command::new("target/bench-venv/bin/python")
        .args(["bench/tantivy_scale.py", "build"])
        .arg(dir)
        .arg(&index)
        .arg(writers.to_string())
        .output()
        .expect("tantivy build (bash bench/peers.sh first)");
    assert!(out.status.success(), "tantivy build: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&index);
    serde_json::from_slice(&out.stdout).expect("build json")
}

#[tokio::main]
async fn main() {
    let (mut dir, mut writers, mut batch, mut peer, mut log) = (None, 2usize, 1000usize, true, false);
    let (mut max_segments, mut wal_objects, mut wal_bytes) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match x.as_str() {
            "--dir" => dir = it.next(),
            "--writers" => writers = num(),
            "--batch" => batch = num(),
            "--max-segments" => max_segments = Some(num()),
            "--wal-objects" => wal_objects = Some(num()),
            "--wal-bytes" => wal_bytes = Some(num() as u64),
            "--no-peer" => peer = false,
            "--log" => log = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = std::path::PathBuf::from(dir.expect("--dir DIR"));
    if log {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("tidepool=info"))
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .init();
    }
    let qs = title_queries(&dir);
    let data = dir.join("tp-ingest");
    let _ = std::fs::remove_dir_all(&data);
    let store = Store::local(&data.join("store")).unwrap();
    let mut cfg = EngineConfig::new(data.clone(), store);
    if let Some(n) = max_segments {
        cfg.compaction.max_segments = n;
    }
    fold_thresholds(&mut cfg.compaction, wal_objects, wal_bytes);
    let e = Engine::open(cfg).await.unwrap();
    let ns = NsPath::new("bench", "scale", "docs").unwrap();

    let (t, c0) = (Instant::now(), cpu_s());
    write_all(&e, &ns, &dir, writers, batch).await;
    let (acked, acked_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c0);
    let at_ack = e.existing(&ns, true).await.unwrap().state;
    let (overlay_rows, segs_at_ack) = (at_ack.overlay().len(), at_ack.segments().len());
    let q_ack = p50_ms(&at_ack, &qs);
    drop(at_ack);
    let (t2, c2) = (Instant::now(), cpu_s());
    let mut rounds = 0;
    while e.compact(&ns, true).await.unwrap().performed {
        rounds += 1;
    }
    // Background compaction goes on while the at-ack queries are timed, so `folded` (which leaves
    // their time out) flatters a run that acks with a larger backlog; `to_empty` counts it.
    let folded = acked + t2.elapsed().as_secs_f64();
    let to_empty = t.elapsed().as_secs_f64();
    let folded_cpu = acked_cpu + (cpu_s() - c2);
    let state = e.existing(&ns, true).await.unwrap().state;
    let q_folded = p50_ms(&state, &qs);
    println!(
        "tidepool ({writers} writers, {batch}-row requests): {} docs; last write acked {acked:.1} s (cpu {acked_cpu:.1} s), \
         {overlay_rows} rows then in the overlay over {segs_at_ack} segments; WAL folded {folded:.1} s (cpu {folded_cpu:.1} s, \
         {rounds} final rounds, {} segments; {to_empty:.1} s from the start with the at-ack queries)",
        state.len(),
        state.segments().len()
    );
    println!(
        "title queries p50: at the last ack {q_ack:.3} ms, folded {q_folded:.3} ms (ratio {:.2})",
        q_ack / q_folded
    );
    drop(state);
    drop(e);
    let _ = std::fs::remove_dir_all(&data);
    if peer {
        let b = tantivy_build(&dir, writers);
        let ts = b["build_s"].as_f64().unwrap();
        println!(
            "tantivy ({writers} writer threads): built and committed in {ts:.1} s; ours / tantivy: acked {:.2}, folded {:.2}",
            acked / ts,
            folded / ts
        );
    }
}
