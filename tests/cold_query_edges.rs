//! Cold queries at the edges of the reader protocol (found in review).
//!
//! Invariants guarded:
//! - `?generation=N` (time travel) is never answered by the cold path.
//! - The cold path probes for a newer generation at every consistency level:
//!   a stale CURRENT does not hide an acknowledged write.
//! - Objects of a stale generation that a newer one already released make the
//!   cold path fall back (`None`), not fail.
//! - When the nearest lists hold only retired rows, more lists are read: the
//!   page is full.

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::query::execute_request;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

const DIM: usize = 16;

fn ns() -> NsPath {
    NsPath::new("default", "default", "cold").unwrap()
}

async fn engine(dir: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

struct W {
    _dirs: Vec<tempfile::TempDir>,
    inner: Arc<InMemory>,
    writer: Arc<Engine>,
    vecs: Vec<Vec<f32>>,
}

impl W {
    async fn new(n: u64) -> W {
        let inner = Arc::new(InMemory::new());
        let dir = tempfile::tempdir().unwrap();
        let writer = engine(dir.path(), Store::new(inner.clone(), "memory")).await;
        let mut rng = StdRng::seed_from_u64(3);
        let centers: Vec<Vec<f32>> =
            (0..24).map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let vecs: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                let c = &centers[rng.random_range(0..centers.len())];
                c.iter().map(|x| x + rng.random_range(-0.15f32..0.15)).collect()
            })
            .collect();
        let w = W { _dirs: vec![dir], inner, writer, vecs };
        let rows: Vec<Json> = w
            .vecs
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"id": i, "vector": v, "t": format!("r{i}")}))
            .collect();
        w.write(json!({"distance_metric": "cosine_distance", "upsert_rows": rows})).await;
        w.writer.compact(&ns(), true).await.unwrap();
        w
    }
    async fn write(&self, body: Json) {
        self.writer.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }
    async fn fresh(&mut self) -> Arc<Engine> {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), Store::new(self.inner.clone(), "memory")).await;
        self._dirs.push(dir);
        e
    }
    async fn current(&self) -> bytes::Bytes {
        let k = ObjPath::from(ns().current_key());
        self.inner.get(&k).await.unwrap().bytes().await.unwrap()
    }
    async fn set_current(&self, b: bytes::Bytes) {
        self.inner.put(&ObjPath::from(ns().current_key()), PutPayload::from(b)).await.unwrap();
    }
}

fn ids(rows: &Json) -> Vec<u64> {
    rows.as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

/// Invariant: `?generation=N` is honoured (the cold path stays out of time travel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_is_not_answered_cold() {
    let mut w = W::new(1500).await; // gen 1 (write), gen 2 (compaction)
    let q = vec![0.5f32; DIM];
    w.write(json!({"upsert_rows": [{"id": 999_999, "vector": q}]})).await; // gen 3
    let reader = w.fresh().await;
    let state = Arc::new(tidepool::api::AppState::new(
        reader,
        tidepool::api::auth::Auth::new(vec![]),
        tidepool::api::Limits {
            max_body_bytes: 1 << 20,
            body_stall_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(60),
            max_restore_bytes: 1 << 30,
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = tidepool::api::server::ServerOptions {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(1),
        max_connections: 1024,
    };
    tokio::spawn(tidepool::api::server::serve(listener, state, opts, std::future::pending()));
    let c = tidepool::tls::client();
    let url = format!("http://{addr}/v2/namespaces/cold/query?generation=2");
    let body = json!({"rank_by": ["vector", "ANN", q], "top_k": 1});
    let r: Json = c.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
    let filtered = json!({"rank_by": ["vector", "ANN", q], "top_k": 1, "filters": ["id", "Gte", 0]});
    let r2: Json = c.post(&url).json(&filtered).send().await.unwrap().json().await.unwrap();
    assert!(!ids(&r2["rows"]).contains(&999_999), "regular path honours generation=2");
    assert!(!ids(&r["rows"]).contains(&999_999), "cold path answered generation 3 for ?generation=2: {r}");
}

/// Invariant: CURRENT is never trusted alone, also for eventual consistency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_cold_query_never_serves_a_stale_current() {
    let mut w = W::new(1500).await;
    let old = w.current().await;
    let q = vec![0.5f32; DIM];
    w.write(json!({"upsert_rows": [{"id": 999_999, "vector": q}]})).await;
    w.set_current(old).await; // e.g. a slow writer's CURRENT overwrite, or a failed CURRENT put
    let node = w.fresh().await;
    let body = json!({"rank_by": ["vector", "ANN", q], "top_k": 1, "consistency": {"level": "eventual"}});
    let req = parse_request(&body, false).unwrap();
    let regular = w.fresh().await;
    let snap = regular.snapshot(&ns(), false).await.unwrap();
    let want = execute_request(&req, &snap.state).unwrap()[0].to_json()["rows"].as_array().cloned().unwrap();
    assert_eq!(want[0]["id"], json!(999_999), "regular eventual load sees the write");
    // The probe finds the newer generation: the cold path steps aside (the caller loads).
    if let Some(got) = node.try_cold_query(&ns(), &req).await.unwrap() {
        let got = got.results[0].to_json()["rows"].as_array().cloned().unwrap();
        assert_eq!(got[0]["id"], json!(999_999), "a cold answer misses an acknowledged write: {got:?}");
    }
}

/// Invariant: released objects of a stale generation give a fallback, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_objects_of_a_stale_generation_give_a_fallback() {
    let mut w = W::new(1500).await;
    w.write(json!({"upsert_rows": [{"id": 999_999, "vector": vec![0.5f32; DIM]}]})).await; // gen 3
    let at_gen3 = w.current().await;
    w.writer.compact(&ns(), true).await.unwrap(); // gen 4: folds and deletes the WAL object
    w.set_current(at_gen3).await; // same as a reader that read CURRENT just before gen 4
    let node = w.fresh().await;
    let req =
        parse_request(&json!({"rank_by": ["vector", "ANN", vec![0.5f32; DIM]], "top_k": 3}), false).unwrap();
    let r = node.try_cold_query(&ns(), &req).await;
    assert!(matches!(r, Ok(None)), "expected a fallback (newer generation exists), got {r:?}");
}

/// Invariant: lists holding only retired rows do not shorten the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_rows_in_the_nearest_lists_do_not_shorten_the_page() {
    use tidepool::format::segment::{section_table, SECTION_COLD_IVF};
    use tidepool::index::vector::coldivf::ColdHead;
    let mut w = W::new(2000).await;
    let q = w.vecs[7].clone();
    // The rows of the lists the cold path probes for q (single segment: row r = id r).
    use futures::TryStreamExt;
    let all: Vec<_> = w.inner.list(None).try_collect().await.unwrap();
    let seg = all.iter().find(|o| o.location.as_ref().ends_with("data.seg")).unwrap();
    let bytes = w.inner.get(&seg.location).await.unwrap().bytes().await.unwrap();
    let t = section_table(&bytes).unwrap();
    let s = t.iter().find(|s| s.kind == SECTION_COLD_IVF).unwrap();
    let sec = &bytes[s.offset as usize..(s.offset + s.len) as usize];
    let head = ColdHead::parse(sec).unwrap();
    let mut dead = Vec::new();
    for c in head.probe(&q, 0) {
        let r = head.list_range(c);
        dead.extend(head.open_list(c, &sec[r.start as usize..r.end as usize]).unwrap().rows);
    }
    eprintln!(
        "nlist {} nprobe {} -> {} rows probed of 2000",
        head.nlist(),
        head.default_nprobe(),
        dead.len()
    );
    w.write(json!({"deletes": dead})).await;
    let body = json!({"rank_by": ["vector", "ANN", q], "top_k": 10});
    let req = parse_request(&body, false).unwrap();
    let warm = w.fresh().await;
    let snap = warm.existing(&ns(), true).await.unwrap();
    let want = execute_request(&req, &snap.state).unwrap()[0].to_json()["rows"].as_array().cloned().unwrap();
    let node = w.fresh().await;
    let got = node.try_cold_query(&ns(), &req).await.unwrap().expect("cold answered");
    let got = got.results[0].to_json()["rows"].as_array().cloned().unwrap();
    eprintln!("warm {} rows, cold {} rows", want.len(), got.len());
    assert_eq!(want.len(), 10);
    assert_eq!(got.len(), 10, "cold page is short");
}

/// Invariant: `Engine::read` makes the read's choices. A query that allows
/// cold reads on a namespace this node never loaded is answered by ranged
/// reads (`cold`), and the namespace is then loaded in the background (the
/// next read is `hot`); a read that does not allow cold reads loads first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_entry_point_answers_cold_then_loads() {
    use tidepool::engine::ReadOptions;
    let mut w = W::new(1500).await;
    let q = w.vecs[3].clone();
    let req = parse_request(&json!({"rank_by": ["vector", "ANN", q], "top_k": 5}), false).unwrap();
    let opts = ReadOptions {
        allow_cold: true,
        measure_temperature: true,
        allow_stale: true,
        ..ReadOptions::default()
    };
    let node = w.fresh().await;
    let cold = node.read(&ns(), opts).await.unwrap().query(&req).await.unwrap();
    assert_eq!(cold.temperature.level, "cold");
    assert_eq!(cold.results[0].rows.as_ref().unwrap().len(), 5);
    assert_eq!(cold.approx_rows, 1500);
    for _ in 0..400 {
        if node.loaded_namespaces().contains(&ns()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(node.loaded_namespaces().contains(&ns()), "a cold answer loads the namespace in the background");
    let hot = node.read(&ns(), opts).await.unwrap().query(&req).await.unwrap();
    assert_eq!(hot.temperature.level, "hot");
    assert_eq!(hot.results[0].rows.as_ref().unwrap().len(), 5);

    let other = w.fresh().await;
    let loading = ReadOptions { allow_cold: false, ..opts };
    let view = other.read(&ns(), loading).await.unwrap();
    assert!(other.loaded_namespaces().contains(&ns()), "a read that may not be cold loads first");
    let mut view = view;
    let answer = view.query(&req).await.unwrap();
    assert_eq!(answer.generation, view.snapshot().await.unwrap().generation());
    assert_eq!(answer.temperature.level, "cold", "measured before loading: no segment was on local disk");
}
