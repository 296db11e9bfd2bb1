//! Cold queries ranked by a named vector attribute: a node with nothing cached answers
//! `[attr, "ANN", q]` by ranged reads of the attribute's kind-24 lists
//! (`tidepool::engine::cold`, `storage-format.md` 11.8), through a recording store with 20 ms
//! added per request.
//!
//! Invariants guarded:
//! - Each attribute is read from its own lists, in its own metric: at most 3 sequential round
//!   trips, distances exact, recall@10 against brute force above a floor, the WAL's upserts,
//!   overwrites and deletes applied.
//! - With attributes, one more round trip; the values are the current ones; a page that asks
//!   for rows' `vector` (which this path does not read) falls back instead.
//! - Shapes not covered fall back (`None`): kNN, a segment where a row lacks the attribute.
//! - A damaged named cold head is a `Corrupted` error, never an answer.

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
use tidepool::store::trace::TraceStore;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

/// The two named attributes: name, dimension, metric (true: euclidean squared).
const ATTRS: [(&str, usize, bool); 2] = [("a", 16, true), ("b", 8, false)];

fn ns() -> NsPath {
    NsPath::new("o", "p", "coldnamed").unwrap()
}

async fn engine(dir: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

fn dist(euclid: bool, a: &[f32], b: &[f32]) -> f32 {
    if euclid {
        return a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (na * nb)
}

/// A document's values: `vector` (4-d) and one vector per named attribute.
#[derive(Clone)]
struct Doc {
    vector: Vec<f32>,
    named: [Vec<f32>; 2],
}

struct World {
    _dirs: Vec<tempfile::TempDir>,
    inner: Arc<InMemory>,
    trace: Arc<TraceStore>,
    writer: Arc<Engine>,
    truth: BTreeMap<u64, Doc>,
    /// Values ids held before they were overwritten or deleted.
    stale: Vec<(u64, Doc)>,
    rng: StdRng,
}

impl World {
    async fn build() -> World {
        let inner = Arc::new(InMemory::new());
        let trace = TraceStore::new(inner.clone(), Duration::from_millis(20));
        let dir = tempfile::tempdir().unwrap();
        let writer = engine(dir.path(), Store::new(trace.clone(), "trace(memory)")).await;
        let rng = StdRng::seed_from_u64(5);
        let mut w =
            World { _dirs: vec![dir], inner, trace, writer, truth: BTreeMap::new(), stale: Vec::new(), rng };
        // Segment 1: ids 0..1500; segment 2: ids 1500..2700 and 40 overwrites of segment 1;
        // then unindexed WAL upserts (new ids and overwrites) and deletes.
        w.upsert((0..1500).collect()).await;
        w.writer.compact(&ns(), true).await.unwrap();
        w.upsert((1500..2700).chain((0..40).map(|i| i * 37)).collect()).await;
        w.writer.compact(&ns(), true).await.unwrap();
        w.upsert((0..20).map(|i| 9000 + i).chain((0..10).map(|i| i * 101 + 3)).collect()).await;
        let deleted: Vec<u64> = (0..10).map(|i| i * 89 + 5).collect();
        w.writer.write(&ns(), WriteRequest::from_json(&json!({"deletes": deleted})).unwrap()).await.unwrap();
        for id in deleted {
            if let Some(old) = w.truth.remove(&id) {
                w.stale.push((id, old));
            }
        }
        w
    }

    fn random(&mut self, dim: usize) -> Vec<f32> {
        let c = self.rng.random_range(0..12) as f32;
        (0..dim).map(|j| ((c + j as f32) * 0.7).sin() + self.rng.random_range(-0.2f32..0.2)).collect()
    }

    async fn upsert(&mut self, ids: Vec<u64>) {
        let mut rows = Vec::new();
        for id in ids {
            let doc = Doc { vector: self.random(4), named: [self.random(16), self.random(8)] };
            rows.push(json!({"id": id, "vector": doc.vector, "a": doc.named[0], "b": doc.named[1], "t": format!("t{id} {:.3}", doc.named[0][0])}));
            if let Some(old) = self.truth.insert(id, doc) {
                self.stale.push((id, old));
            }
        }
        let body = json!({
            "distance_metric": "cosine_distance",
            "schema": {
                "a": {"type": "[16]f32", "ann": {"distance_metric": "euclidean_squared"}},
                "b": {"type": "[8]f32", "ann": true},
            },
            "upsert_rows": rows,
        });
        self.writer.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }

    async fn fresh_node(&mut self) -> Arc<Engine> {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), Store::new(self.trace.clone(), "trace(memory)")).await;
        self._dirs.push(dir);
        e
    }

    fn exact(&self, attr: usize, q: &[f32], k: usize) -> Vec<u64> {
        let euclid = ATTRS[attr].2;
        let mut all: Vec<(u64, f32)> =
            self.truth.iter().map(|(id, d)| (*id, dist(euclid, q, &d.named[attr]))).collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.into_iter().take(k).map(|x| x.0).collect()
    }
}

fn ann(attr: usize, q: &[f32], k: usize) -> Json {
    json!({"rank_by": [ATTRS[attr].0, "ANN", q], "top_k": k})
}

async fn cold_rows(e: &Engine, body: &Json) -> Option<Vec<Json>> {
    let req = parse_request(body, false).unwrap();
    let ans = e.try_cold_query(&ns(), &req).await.unwrap()?;
    Some(ans.results[0].to_json()["rows"].as_array().cloned().unwrap())
}

async fn cold(e: &Engine, body: &Json) -> Option<Vec<(u64, f32)>> {
    let rows = cold_rows(e, body).await?;
    Some(rows.iter().map(|r| (r["id"].as_u64().unwrap(), r["$dist"].as_f64().unwrap() as f32)).collect())
}

/// Invariant: each attribute answered cold from its own lists in its metric — round trips,
/// exact distances, recall, the WAL applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_named_attribute_is_answered_cold_in_its_metric() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    for (ai, (_, dim, euclid)) in ATTRS.into_iter().enumerate() {
        let q = w.truth[&2000].named[ai].clone();
        w.trace.take();
        let got = cold(&node, &ann(ai, &q, 10)).await.expect("the cold path answers");
        let t = w.trace.take();
        assert_eq!(got[0].0, 2000, "attribute {ai}: the row itself is nearest");
        assert!(t.sequential_round_trips() <= 3, "round trips: {}", t.sequential_round_trips());
        for id in [9000u64, 9013, 3, 104] {
            let got = cold(&node, &ann(ai, &w.truth[&id].named[ai].clone(), 5)).await.unwrap();
            assert_eq!(got[0].0, id, "attribute {ai}: WAL row {id}");
        }
        for (id, old) in w.stale.clone() {
            for (gid, d) in cold(&node, &ann(ai, &old.named[ai], 10)).await.unwrap() {
                if gid == id {
                    let now = w.truth.get(&id).expect("a deleted row was returned");
                    let want = dist(euclid, &old.named[ai], &now.named[ai]);
                    assert!((d - want).abs() <= 1e-4 * want.max(1.0), "row {id} returned with a stale value");
                }
            }
        }
        let (mut hits, queries) = (0, 30);
        for _ in 0..queries {
            let q = w.random(dim);
            let got = cold(&node, &ann(ai, &q, 10)).await.unwrap();
            assert_eq!(got.len(), 10);
            for (id, d) in &got {
                let want = dist(euclid, &q, &w.truth[id].named[ai]);
                assert!((d - want).abs() <= 1e-4 * want.abs().max(1.0), "attribute {ai}: distance of {id}");
            }
            let want = w.exact(ai, &q, 10);
            hits += got.iter().filter(|(id, _)| want.contains(id)).count();
        }
        let recall = hits as f64 / f64::from(queries * 10);
        assert!(recall >= 0.9, "attribute {ai}: recall@10 {recall}");
    }
}

/// Invariant: attributes come from one more round trip and are current; asking for rows'
/// `vector` falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_read_by_range_and_vector_falls_back() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    let q = w.truth[&1700].named[1].clone();
    let body = json!({"rank_by": ["b", "ANN", q], "top_k": 5, "include_attributes": ["t", "a", "b"]});
    w.trace.take();
    let rows = cold_rows(&node, &body).await.expect("answered cold");
    assert!(w.trace.take().sequential_round_trips() <= 4);
    assert_eq!(rows[0]["id"], json!(1700));
    for r in &rows {
        let id = r["id"].as_u64().unwrap();
        let d = &w.truth[&id];
        assert_eq!(r["t"], json!(format!("t{id} {:.3}", d.named[0][0])));
        for (ai, (name, _, _)) in ATTRS.into_iter().enumerate() {
            let got: Vec<f32> =
                r[name].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(got, d.named[ai], "{name} of {id}");
        }
    }
    for projection in [json!(true), json!(["vector", "t"])] {
        let body = json!({"rank_by": ["b", "ANN", q], "top_k": 5, "include_attributes": projection});
        assert!(cold_rows(&node, &body).await.is_none(), "{projection}");
    }
    // `vector`'s own cold path still answers, with the named values from the rows.
    let v = w.truth[&1700].vector.clone();
    let body = json!({"rank_by": ["vector", "ANN", v], "top_k": 3, "include_attributes": ["a"]});
    let rows = cold_rows(&node, &body).await.expect("vector answered cold");
    assert_eq!(rows[0]["id"], json!(1700));
    assert_eq!(rows[0]["a"].as_array().unwrap().len(), 16);
}

/// Invariant: kNN and a segment where a row lacks the attribute fall back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_named_shapes_fall_back() {
    let mut w = World::build().await;
    let node = w.fresh_node().await;
    let q = w.truth[&10].named[0].clone();
    assert!(cold(&node, &json!({"rank_by": ["a", "kNN", q], "top_k": 3})).await.is_none());
    assert!(cold(&node, &json!({"rank_by": ["a", "ANN", [1.0, 2.0]], "top_k": 3})).await.is_none());
    assert!(cold(&node, &ann(0, &q, 3)).await.is_some());
    // A third segment where one row has no `a`: no kind-24 section for `a` there.
    let rows: Vec<Json> = (20_000..21_100)
        .map(|id| {
            if id == 20_000 {
                json!({"id": id, "vector": [1.0, 0.5, 0.25, 0.0], "b": vec![1.0f32; 8]})
            } else {
                json!({"id": id, "vector": [1.0, 0.5, 0.25, 0.0], "a": vec![0.5f32; 16]})
            }
        })
        .collect();
    w.writer.write(&ns(), WriteRequest::from_json(&json!({"upsert_rows": rows})).unwrap()).await.unwrap();
    w.writer.compact(&ns(), true).await.unwrap();
    let later = w.fresh_node().await;
    assert!(cold(&later, &ann(0, &q, 3)).await.is_none());
}

/// Invariant: a flipped byte in a named cold head is `Corrupted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_named_head_is_an_error() {
    let mut w = World::build().await;
    use futures::TryStreamExt;
    let all: Vec<_> = w.inner.list(None).try_collect().await.unwrap();
    let mut flipped = 0;
    for o in all.iter().filter(|o| o.location.as_ref().ends_with("data.seg")) {
        let mut b = w.inner.get(&o.location).await.unwrap().bytes().await.unwrap().to_vec();
        let at = b.windows(8).position(|x| x == b"TPNCOLDV").expect("a named cold section");
        b[at + 30] ^= 0x01; // inside the prefix's name padding: covered by its crc
        w.inner.put(&o.location, PutPayload::from(b)).await.unwrap();
        flipped += 1;
    }
    assert_eq!(flipped, 2);
    let node = w.fresh_node().await;
    let q = w.truth[&100].named[0].clone();
    let req = parse_request(&ann(0, &q, 10), false).unwrap();
    match node.try_cold_query(&ns(), &req).await {
        Err(ref e) if e.kind() == ErrorKind::Corrupted => {}
        other => panic!("expected Corrupted, got {other:?}"),
    }
}
