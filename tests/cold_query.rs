//! Cold queries: a node with nothing cached answers an ANN query by ranged
//! reads (`tidepool::engine::cold`), measured through a recording store with
//! 20 ms added per request.
//!
//! Invariants guarded:
//! - At most 3 sequential object-store round trips, and far fewer bytes than
//!   the segments hold.
//! - The answer is the namespace's current state: WAL upserts found, deleted
//!   and overwritten rows never returned with their old vectors, distances
//!   exact, recall against brute force above a floor.
//! - Attributes, when asked for, come from ranged reads of the docs section
//!   verified by the range checksums: one more round trip (4 in all), the
//!   values of the current version of each row, paging by `offset` intact.
//! - Query shapes the cold path does not cover fall back (return `None`):
//!   filters, exact kNN, a loaded namespace, attributes with a patch in the WAL.
//! - A corrupted list block is an error, never a wrong answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::store::trace::{Op, TraceStore};
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

const DIM: usize = 16;

fn ns() -> NsPath {
    NsPath::new("o", "p", "cold").unwrap()
}

async fn engine(dir: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

fn clustered(rng: &mut StdRng, centers: &[Vec<f32>]) -> Vec<f32> {
    let c = &centers[rng.random_range(0..centers.len())];
    c.iter().map(|x| x + rng.random_range(-0.15f32..0.15)).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (na * nb)
}

struct World {
    _dirs: Vec<tempfile::TempDir>,
    inner: Arc<InMemory>,
    trace: Arc<TraceStore>,
    writer: Arc<Engine>,
    /// The namespace's documents as they should be now: id → vector.
    truth: BTreeMap<u64, Vec<f32>>,
    /// Vectors that ids held before they were overwritten or deleted.
    stale: Vec<(u64, Vec<f32>)>,
    rng: StdRng,
}

impl World {
    async fn build() -> World {
        let inner = Arc::new(InMemory::new());
        let trace = TraceStore::new(inner.clone(), Duration::from_millis(20));
        let store = Store::new(trace.clone(), "trace(memory)");
        let dir = tempfile::tempdir().unwrap();
        let writer = engine(dir.path(), store).await;
        let mut rng = StdRng::seed_from_u64(11);
        let centers: Vec<Vec<f32>> =
            (0..24).map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let mut w =
            World { _dirs: vec![dir], inner, trace, writer, truth: BTreeMap::new(), stale: Vec::new(), rng };
        // Segment 1: ids 0..2000; segment 2: ids 2000..3200 plus 60 overwrites of segment 1
        // (a deletion set on segment 1); then unindexed WAL writes.
        let first: Vec<(u64, Vec<f32>)> = (0..2000).map(|i| (i, clustered(&mut w.rng, &centers))).collect();
        w.upsert(first).await;
        w.writer.compact(&ns(), true).await.unwrap();
        let mut batch: Vec<(u64, Vec<f32>)> =
            (2000..3200).map(|i| (i, clustered(&mut w.rng, &centers))).collect();
        batch.extend((0..60).map(|i| (i * 31, clustered(&mut w.rng, &centers))));
        w.upsert(batch).await;
        w.writer.compact(&ns(), true).await.unwrap();
        let ids: Vec<u64> = (0..20).map(|i| 5000 + i).chain((0..15).map(|i| i * 97 + 1)).collect();
        let wal: Vec<(u64, Vec<f32>)> =
            ids.into_iter().map(|i| (i, clustered(&mut w.rng, &centers))).collect();
        w.upsert(wal).await;
        let deleted: Vec<u64> = (0..15).map(|i| i * 89 + 2).collect();
        w.delete(&deleted).await;
        w
    }

    async fn upsert(&mut self, rows: Vec<(u64, Vec<f32>)>) {
        let body = json!({
            "distance_metric": "cosine_distance",
            "upsert_rows": rows.iter().map(|(id, v)| json!({"id": id, "vector": v, "t": label(*id, v)})).collect::<Vec<_>>(),
        });
        self.writer.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
        for (id, v) in rows {
            if let Some(old) = self.truth.insert(id, v) {
                self.stale.push((id, old));
            }
        }
    }

    async fn delete(&mut self, ids: &[u64]) {
        let body = json!({"deletes": ids});
        self.writer.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
        for id in ids {
            if let Some(old) = self.truth.remove(id) {
                self.stale.push((*id, old));
            }
        }
    }

    /// A node that has never seen the namespace: fresh data dir, empty cache.
    async fn fresh_node(&mut self) -> Arc<Engine> {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), Store::new(self.trace.clone(), "trace(memory)")).await;
        self._dirs.push(dir);
        e
    }

    fn exact(&self, q: &[f32], k: usize) -> Vec<(u64, f32)> {
        let mut all: Vec<(u64, f32)> = self.truth.iter().map(|(id, v)| (*id, cosine(q, v))).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    fn segment_bytes(&self) -> u64 {
        futures::executor::block_on(async {
            use futures::TryStreamExt;
            let all: Vec<_> = self.inner.list(None).try_collect().await.unwrap();
            all.iter().filter(|o| o.location.as_ref().ends_with("data.seg")).map(|o| o.size).sum()
        })
    }
}

/// The `t` attribute written with a row (depends on its vector, so an overwrite changes it).
fn label(id: u64, v: &[f32]) -> String {
    format!("doc {id} {:.3}", v[0])
}

fn ann(q: &[f32], k: usize) -> Json {
    json!({"rank_by": ["vector", "ANN", q], "top_k": k})
}

async fn cold(e: &Engine, body: &Json) -> Option<Vec<(u64, f32)>> {
    let req = parse_request(body, false).unwrap();
    let ans = e.try_cold_query(&ns(), &req).await.unwrap()?;
    let rows = ans.results[0].to_json()["rows"].as_array().cloned().unwrap();
    Some(rows.iter().map(|r| (r["id"].as_u64().unwrap(), r["$dist"].as_f64().unwrap() as f32)).collect())
}

/// Invariant: at most 3 sequential round trips, bytes far below the segments'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_query_takes_three_round_trips_and_reads_a_fraction() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    let q = w.truth[&2500].clone();
    w.trace.take();
    let got = cold(&node, &ann(&q, 10)).await.expect("the cold path answers");
    let t = w.trace.take();
    assert_eq!(got[0].0, 2500, "the row itself is nearest");
    assert!(t.sequential_round_trips() <= 3, "round trips: {} ({:?})", t.sequential_round_trips(), t.events);
    assert_eq!(t.count(Op::List), 0, "no listing on the cold path");
    assert_eq!(t.count(Op::Get) + t.count(Op::GetRange) + t.count(Op::Head), t.requests());
    let seg = w.segment_bytes();
    eprintln!(
        "cold query: {} round trips, {} requests, {} of {seg} segment bytes read",
        t.sequential_round_trips(),
        t.requests(),
        t.bytes_read()
    );
    assert!(t.bytes_read() * 3 < seg, "read {} bytes of {seg}", t.bytes_read());
}

/// Invariant: the cold answer is the current state (WAL upserts, overwrites and deletes
/// applied; exact distances) with recall@10 against brute force above 0.9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_answers_reflect_the_wal_and_keep_recall() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    // Every WAL upsert is found as its own nearest row.
    for id in [5000u64, 5007, 5019, 1, 98] {
        let got = cold(&node, &ann(&w.truth[&id].clone(), 5)).await.unwrap();
        assert_eq!(got[0].0, id);
        assert!(got[0].1.abs() < 1e-5);
    }
    // Old vectors of overwritten or deleted rows never come back at distance 0.
    for (id, old) in w.stale.clone() {
        let got = cold(&node, &ann(&old, 10)).await.unwrap();
        for (gid, d) in &got {
            if *gid == id {
                let now = w.truth.get(&id).expect("a deleted row was returned");
                assert!((d - cosine(&old, now)).abs() < 1e-4, "row {id} returned with its stale vector");
            }
        }
    }
    // Distances are exact; recall against brute force.
    let mut hits = 0;
    let queries = 30;
    for _ in 0..queries {
        let q: Vec<f32> = (0..DIM).map(|_| w.rng.random_range(-1.0f32..1.0)).collect();
        let got = cold(&node, &ann(&q, 10)).await.unwrap();
        assert_eq!(got.len(), 10);
        for (id, d) in &got {
            assert!((d - cosine(&q, &w.truth[id])).abs() < 1e-4, "distance of {id}");
        }
        let want: Vec<u64> = w.exact(&q, 10).into_iter().map(|x| x.0).collect();
        hits += got.iter().filter(|(id, _)| want.contains(id)).count();
    }
    let recall = hits as f64 / (queries * 10) as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
}

/// Invariant: shapes the cold path does not cover fall back; a loaded namespace is not cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_shapes_fall_back() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    let q = w.truth[&10].clone();
    let shapes = [
        json!({"rank_by": ["vector", "kNN", q], "top_k": 3}),
        json!({"rank_by": ["vector", "ANN", q], "top_k": 3, "filters": ["id", "Gt", 5]}),
        json!({"rank_by": ["id", "asc"], "top_k": 3}),
    ];
    for body in &shapes {
        assert!(cold(&node, body).await.is_none(), "{body}");
    }
    assert!(cold(&node, &ann(&q, 3)).await.is_some());
    node.snapshot(&ns(), true).await.unwrap();
    assert!(cold(&node, &ann(&q, 3)).await.is_none(), "loaded: answered from memory");
    // A patch in the WAL: ids and distances are still answered cold, attributes are not.
    let body = json!({"patch_rows": [{"id": 7, "t": "patched"}]});
    w.writer.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
    let patched = w.fresh_node().await;
    assert!(cold(&patched, &ann(&q, 3)).await.is_some());
    let with_attrs = json!({"rank_by": ["vector", "ANN", q], "top_k": 3, "include_attributes": ["t"]});
    assert!(cold(&patched, &with_attrs).await.is_none());
    // A WAL request whose effect depends on stored rows (delete_by_filter) also falls back.
    let body = json!({"delete_by_filter": ["id", "Eq", 3]});
    w.writer.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
    let other = w.fresh_node().await;
    assert!(cold(&other, &ann(&q, 3)).await.is_none());
}

/// Invariant: a flipped bit in a list block is a `Corrupted` error, not an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_list_is_an_error() {
    let mut w = World::build().await;
    use futures::TryStreamExt;
    let all: Vec<_> = w.inner.list(None).try_collect().await.unwrap();
    for o in all.iter().filter(|o| o.location.as_ref().ends_with("data.seg")) {
        let mut b = w.inner.get(&o.location).await.unwrap().bytes().await.unwrap().to_vec();
        // Flip bits all over the file's second half (the cold lists are near the end).
        for i in (b.len() / 2..b.len()).step_by(4096) {
            b[i] ^= 0x40;
        }
        w.inner.put(&o.location, PutPayload::from(b)).await.unwrap();
    }
    let node = w.fresh_node().await;
    let q = w.truth[&100].clone();
    let req = parse_request(&ann(&q, 10), false).unwrap();
    match node.try_cold_query(&ns(), &req).await {
        Err(ref e) if e.kind() == ErrorKind::Corrupted => {}
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

/// Invariant: with attributes, a fourth round trip fetches exactly the page's rows, whose
/// attributes are the current ones; the page agrees with the id-only answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_query_with_attributes_takes_four_round_trips() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    for (id, offset) in [(2500u64, 0usize), (1, 0), (5003, 2)] {
        let q = w.truth[&id].clone();
        let body = json!({"rank_by": ["vector", "ANN", q], "top_k": 5, "offset": offset, "include_attributes": true});
        let req = parse_request(&body, false).unwrap();
        w.trace.take();
        let ans = node.try_cold_query(&ns(), &req).await.unwrap().expect("answered cold");
        let t = w.trace.take();
        assert!(t.sequential_round_trips() <= 4, "{} round trips", t.sequential_round_trips());
        let rows = ans.results[0].to_json()["rows"].as_array().cloned().unwrap();
        assert_eq!(rows.len(), 5);
        let ids_only =
            cold(&node, &json!({"rank_by": ["vector", "ANN", w.truth[&id]], "top_k": 5 + offset})).await;
        let ids_only: Vec<u64> = ids_only.unwrap().into_iter().skip(offset).map(|x| x.0).collect();
        let got: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(got, ids_only, "same page as the id-only query");
        if offset == 0 {
            assert_eq!(got[0], id);
        }
        for r in &rows {
            let rid = r["id"].as_u64().unwrap();
            let v = &w.truth[&rid];
            assert_eq!(r["t"], json!(label(rid, v)), "current attributes of {rid}");
            let stored: Vec<f32> =
                r["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(&stored, v);
        }
    }
}

/// Invariant: the regular load of a namespace on a fresh node needs 4 sequential round trips
/// (CURRENT with its manifest; GET of the next generation, then HEAD of its tombstone, in that
/// order (5.2); segments, deletion sets and WAL batches together), and reads every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_load_takes_four_round_trips() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    w.trace.take();
    let s = node.existing(&ns(), true).await.unwrap();
    let t = w.trace.take();
    assert_eq!(s.state.len() as usize, w.truth.len());
    assert!(t.sequential_round_trips() <= 4, "{} round trips: {:?}", t.sequential_round_trips(), t.events);
    assert!(t.bytes_read() >= w.segment_bytes());
}
