//! Storage benchmark (issue 4): ingest of the Debian corpus, compaction,
//! bytes on storage vs raw, cold vs warm get-by-id and filter latency, and
//! start-up with many namespaces. Figures are reported as ratios against a
//! peer measured in the same run (these machines are noisy).
//!
//! cargo run --profile profiling --example storage_bench -- [--data DIR] [--s3 s3://bucket/prefix --s3-endpoint URL]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::{S3Options, Store};

const DIM: usize = 384;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn load_corpus(dir: &std::path::Path) -> (Vec<Json>, Vec<f32>, u64) {
    let docs_path = dir.join("docs.jsonl");
    let vec_path = dir.join("vectors.f32");
    let docs: Vec<Json> = std::io::BufReader::new(std::fs::File::open(&docs_path).expect("docs.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect();
    let raw = std::fs::read(&vec_path).expect("vectors.f32");
    let vecs: Vec<f32> = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let raw_bytes = std::fs::metadata(&docs_path).map(|m| m.len()).unwrap_or(0) + raw.len() as u64;
    (docs, vecs, raw_bytes)
}

fn row(i: usize, d: &Json, vecs: &[f32]) -> Json {
    json!({
        "id": i, "vector": &vecs[i * DIM..(i + 1) * DIM], "package": d["id"], "title": d["title"],
        "body": d["body"], "section": d["section"], "priority": d["priority"],
        "installed_size": d["installed_size"], "version": d["version"],
    })
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn engine(data: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.expect("engine")
}

async fn lookups(e: &Engine, ns: &NsPath, n: usize, seed: u64) -> Vec<Duration> {
    let mut x = seed;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let id = (x >> 33) % 36_000;
        let t = Instant::now();
        let got = e.get(ns, &[DocId::U64(id)]).await.expect("get");
        assert!(got[0].is_some());
        out.push(t.elapsed());
    }
    out
}

async fn filter_scan(e: &Engine, ns: &NsPath) -> (Duration, usize) {
    let f = tidepool::filter::Filter::parse(&json!(["section", "Eq", "games"])).expect("filter");
    let t = Instant::now();
    let s = e.existing(ns, true).await.expect("snapshot");
    let n = s.state.iter().filter(|d| f.matches(d, None)).count();
    (t.elapsed(), n)
}

#[tokio::main]
async fn main() {
    let corpus = PathBuf::from(arg("--corpus").unwrap_or_else(|| "../shared/data/debian".into()));
    let (docs, vecs, raw_bytes) = load_corpus(&corpus);
    let tmp = tempfile::tempdir().expect("tmp");
    let data = arg("--data").map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let store = match arg("--s3") {
        Some(url) => {
            let opts = S3Options {
                endpoint: arg("--s3-endpoint"),
                access_key_id: Some("test".into()),
                secret_access_key: Some("test".into()),
                allow_http: true,
                ..S3Options::default()
            };
            Store::from_url(Some(&url), &data, &opts).expect("s3 store")
        }
        None => Store::local(&data.join("store")).expect("store"),
    };
    println!("store: {}", store.description());
    let ns = NsPath::new("bench", "bench", "debian").expect("ns");

    // Peer for ingest: writing the same bytes to one file with one fsync.
    let bodies: Vec<Vec<u8>> = docs
        .chunks(1000)
        .enumerate()
        .map(|(c, chunk)| {
            let rows: Vec<Json> =
                chunk.iter().enumerate().map(|(j, d)| row(c * 1000 + j, d, &vecs)).collect();
            serde_json::to_vec(&json!({"upsert_rows": rows, "distance_metric": "cosine_distance"}))
                .expect("json")
        })
        .collect();
    let peer_t = Instant::now();
    {
        let mut f = std::fs::File::create(tmp.path().join("peer.bin")).expect("peer");
        for b in &bodies {
            f.write_all(b).expect("write");
            f.sync_data().expect("fsync");
        }
    }
    let peer = peer_t.elapsed();

    let e = engine(&data.join("a"), store.clone()).await;
    let t = Instant::now();
    for b in &bodies {
        let v: Json = serde_json::from_slice(b).expect("json");
        e.write(&ns, WriteRequest::from_json(&v).expect("request")).await.expect("write");
    }
    let ingest = t.elapsed();
    let wal_bytes: u64 = store.list(&ns.prefix()).await.expect("list").iter().map(|o| o.size).sum();
    let t = Instant::now();
    let report = e.compact(&ns, true).await.expect("compact");
    let compaction = t.elapsed();
    let seg_bytes: u64 = store.list(&ns.prefix()).await.expect("list").iter().map(|o| o.size).sum();
    println!(
        "ingest: {} docs in {:.2?} ({:.0} docs/s); same bytes to one file with an fsync per batch: {:.2?} (ratio {:.2}x)",
        docs.len(),
        ingest,
        docs.len() as f64 / ingest.as_secs_f64(),
        peer,
        ingest.as_secs_f64() / peer.as_secs_f64()
    );
    println!(
        "compaction: {compaction:.2?} ({} rows, {} segment(s))",
        report.rows_written, report.segments_written
    );
    println!(
        "bytes on storage: WAL {:.1} MB, after compaction {:.1} MB; raw corpus {:.1} MB (ratio {:.2}x)",
        wal_bytes as f64 / 1e6,
        seg_bytes as f64 / 1e6,
        raw_bytes as f64 / 1e6,
        seg_bytes as f64 / raw_bytes as f64
    );
    drop(e);

    // Cold: a fresh data dir (empty disk cache, no manifest cache) on the same store.
    let cold_e = engine(&tmp.path().join("cold"), store.clone()).await;
    let t = Instant::now();
    let first = cold_e.get(&ns, &[DocId::U64(17)]).await.expect("get");
    let cold_first = t.elapsed();
    assert!(first[0].is_some());
    let warm = lookups(&cold_e, &ns, 2000, 7).await;
    let (warm_p50, warm_p99) = (pct(warm.clone(), 0.5), pct(warm, 0.99));
    println!(
        "get by id: cold first {cold_first:.2?}; warm p50 {warm_p50:.2?} p99 {warm_p99:.2?} (cold/warm ratio {:.0}x)",
        cold_first.as_secs_f64() / warm_p50.as_secs_f64()
    );
    let (scan, matches) = filter_scan(&cold_e, &ns).await;
    println!("filter scan section=games: {matches} matches in {scan:.2?} (warm)");
    drop(cold_e);

    // Start-up with 1,000 namespaces: open is O(pins), never lists the store.
    let many = tempfile::tempdir().expect("tmp");
    let mstore = Store::local(&many.path().join("store")).expect("store");
    {
        let e = engine(many.path(), mstore.clone()).await;
        for i in 0..1000 {
            let p = NsPath::new("bench", "bench", &format!("ns{i:04}")).expect("ns");
            e.write(&p, WriteRequest::from_json(&json!({"upsert_rows": [{"id": 1}]})).expect("req"))
                .await
                .expect("w");
            if i % 10 == 0 {
                e.set_pinned(&p, true).await.expect("pin");
            }
        }
    }
    let t = Instant::now();
    let e = engine(many.path(), mstore).await;
    let open = t.elapsed();
    let t = Instant::now();
    e.get(&NsPath::new("bench", "bench", "ns0500").expect("ns"), &[DocId::U64(1)]).await.expect("get");
    let first_query = t.elapsed();
    println!(
        "start-up with 1000 namespaces (100 pinned, warmed in the background): ready in {open:.2?}; first query on an unpinned namespace {first_query:.2?}"
    );
}
