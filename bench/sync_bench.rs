//! Sync benchmark (issue 11), in one process against a real S3-compatible
//! server (`bench/sync.sh` starts moto and runs this):
//!
//! 1. A backlog of offline writes: `--hours H` (default 1) at 100 docs/s of
//!    384-d vectors (Debian vectors + deterministic noise), written in
//!    100-doc requests with no sync round, then compacted as an offline node
//!    would. Reconnect: one round; time to converge, bytes uploaded vs the
//!    bytes of the objects the bucket lacked, and the same objects uploaded
//!    by a plain copy with the same client and concurrency (ratio).
//! 2. Then 10 more requests and a round: bytes uploaded vs bytes of new objects.
//! 3. The 36k-doc Debian namespace pushed, then pulled by a fresh node (one
//!    round) vs a plain download of the same objects into a directory store.
//!
//! cargo run --profile profiling --example sync_bench -- --s3-endpoint URL --bucket B [--hours H] [--data DIR]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value as Json};
use tidepool::engine::{Engine, EngineConfig, WriteRequest};
use tidepool::format::manifest::ObjectRef;
use tidepool::layout::NsPath;
use tidepool::store::{S3Options, Store};
use tidepool::sync::config::SyncFile;
use tidepool::sync::transfer::object_refs;
use tidepool::sync::{SyncConfig, Syncer};

const DIM: usize = 384;
const DOCS_PER_REQUEST: usize = 100;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn s3(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        access_key_id: Some("bench".into()),
        secret_access_key: Some("bench".into()),
        allow_http: true,
        ..S3Options::default()
    }
}

async fn node(dir: &Path, remote: &str, endpoint: &str, rules: &str) -> (Arc<Engine>, Arc<Syncer>) {
    let store = Store::local(&dir.join("store")).expect("store");
    let engine = Engine::open(EngineConfig::new(dir.to_path_buf(), store)).await.expect("engine");
    let file = SyncFile {
        remote: Some(remote.to_owned()),
        endpoint: Some(endpoint.to_owned()),
        access_key_id: Some("bench".into()),
        secret_access_key: Some("bench".into()),
        allow_http: Some(true),
        namespaces: tidepool::sync::config::parse_rules(rules).expect("rules"),
        ..SyncFile::default()
    };
    let syncer =
        Syncer::open(engine.clone(), SyncConfig::resolve(file).expect("sync config")).await.expect("syncer");
    (engine, syncer)
}

fn vectors(dir: &Path) -> Vec<f32> {
    let raw = std::fs::read(dir.join("vectors.f32")).expect("vectors.f32");
    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Deterministic noise in [-0.01, 0.01).
fn noise(i: usize, j: usize) -> f32 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02
}

async fn write_docs(e: &Engine, ns: &NsPath, ids: std::ops::Range<usize>, vecs: &[f32]) {
    let n = vecs.len() / DIM;
    let ids: Vec<usize> = ids.collect();
    for chunk in ids.chunks(DOCS_PER_REQUEST) {
        let rows: Vec<Json> = chunk
            .iter()
            .map(|&i| {
                let base = &vecs[(i % n) * DIM..(i % n + 1) * DIM];
                let v: Vec<f32> = base.iter().enumerate().map(|(j, x)| x + noise(i, j)).collect();
                json!({"id": i, "vector": v, "n": i})
            })
            .collect();
        let body = json!({"upsert_rows": rows, "distance_metric": "cosine_distance"});
        e.write(ns, WriteRequest::from_json(&body).expect("request")).await.expect("write");
    }
}

async fn settle(e: &Engine, ns: &NsPath) {
    while e.compact(ns, false).await.expect("compact").performed {}
}

fn counters(s: &Syncer, ns: &str) -> (u64, u64, u64, u64) {
    let v = s.status(None);
    let n = v.namespaces.iter().find(|n| n.namespace == ns).cloned().unwrap_or_default();
    (n.uploaded_objects, n.uploaded_bytes, n.downloaded_objects, n.downloaded_bytes)
}

/// Copy `refs` between stores with the same concurrency as a sync transfer.
async fn plain_copy(from: &Store, to: &Store, refs: &[ObjectRef], prefix: &str) -> Duration {
    let t = Instant::now();
    let copies: Vec<_> = refs
        .iter()
        .map(|r| async move {
            let b = from.get(&r.key).await?;
            to.put(&format!("{prefix}{}", r.key), b).await
        })
        .collect();
    let _: Vec<()> = futures::stream::iter(copies).buffer_unordered(4).try_collect().await.expect("copy");
    t.elapsed()
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

#[tokio::main]
async fn main() {
    let endpoint = arg("--s3-endpoint").expect("--s3-endpoint URL");
    let bucket = arg("--bucket").expect("--bucket NAME");
    let hours: f64 = arg("--hours").map_or(1.0, |h| h.parse().expect("--hours"));
    let data = PathBuf::from(arg("--data").unwrap_or_else(|| "../shared/data/debian".into()));
    let vecs = vectors(&data);
    let corpus = vecs.len() / DIM;
    let tmp = tempfile::tempdir().expect("tmp");
    let remote = format!("s3://{bucket}/bench");
    let remote_store = Store::from_url(Some(&remote), tmp.path(), &s3(&endpoint)).expect("remote");

    // 1. Backlog of offline writes, then one round.
    let (a, sa) = node(&tmp.path().join("a"), &remote, &endpoint, "*=push").await;
    let ns = NsPath::new("default", "default", "backlog").unwrap();
    let docs = (hours * 3600.0 * 100.0) as usize;
    let t = Instant::now();
    write_docs(&a, &ns, 0..docs, &vecs).await;
    settle(&a, &ns).await;
    let wrote = t.elapsed();
    let m = a.latest_manifest(&ns).await.unwrap().unwrap();
    let refs = object_refs(&m);
    let new_bytes: u64 = refs.iter().map(|r| r.bytes).sum();
    // The plain upload first (to another prefix), so a warm server does not favour it.
    let plain_up = plain_copy(a.store(), &remote_store, &refs, "plain-upload/").await;
    let t = Instant::now();
    sa.run_round().await;
    let converge = t.elapsed();
    let (up_objects, up_bytes, _, _) = counters(&sa, "backlog");
    println!("backlog: {docs} docs ({hours} h at 100 docs/s) in {} requests, written + compacted offline in {wrote:.2?}", docs / DOCS_PER_REQUEST);
    println!("  {} objects, {:.1} MB in the newest generation; uploaded {up_objects} objects, {:.1} MB (ratio {:.3})",
        refs.len(), mb(new_bytes), mb(up_bytes), up_bytes as f64 / new_bytes as f64);
    println!("  converge after reconnect: {converge:.2?}; plain upload of the same objects: {plain_up:.2?} (ratio {:.2})",
        converge.as_secs_f64() / plain_up.as_secs_f64());

    // 2. Only new objects travel.
    let before = m.object_keys();
    write_docs(&a, &ns, docs..docs + 10 * DOCS_PER_REQUEST, &vecs).await;
    let m2 = a.latest_manifest(&ns).await.unwrap().unwrap();
    let fresh: u64 = object_refs(&m2).iter().filter(|r| !before.contains(&r.key)).map(|r| r.bytes).sum();
    sa.run_round().await;
    let (_, up_bytes2, _, _) = counters(&sa, "backlog");
    println!(
        "incremental: 10 requests later, new objects {:.3} MB, uploaded {:.3} MB (ratio {:.3})",
        mb(fresh),
        mb(up_bytes2 - up_bytes),
        (up_bytes2 - up_bytes) as f64 / fresh as f64
    );

    // 3. Pull of the Debian namespace by a fresh node vs a plain download.
    let deb = NsPath::new("default", "default", "debian").unwrap();
    write_docs(&a, &deb, 0..corpus, &vecs).await;
    settle(&a, &deb).await;
    sa.run_round().await;
    let md = a.latest_manifest(&deb).await.unwrap().unwrap();
    let drefs = object_refs(&md);
    let plain_dir = Store::local(&tmp.path().join("plain")).expect("plain");
    let plain_down = plain_copy(&remote_store, &plain_dir, &drefs, "").await;
    let (b, sb) = node(&tmp.path().join("b"), &remote, &endpoint, "debian=pull").await;
    let t = Instant::now();
    sb.run_round().await;
    let pulled = t.elapsed();
    let (_, _, down_objects, down_bytes) = counters(&sb, "debian");
    let rows = b.existing(&deb, false).await.expect("pulled").state.len();
    println!("pull: {rows} docs, {down_objects} objects, {:.1} MB in {pulled:.2?} (downloaded, verified, adopted); plain download: {plain_down:.2?} (ratio {:.2})",
        mb(down_bytes), pulled.as_secs_f64() / plain_down.as_secs_f64());
}
