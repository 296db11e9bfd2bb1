//! Unindexed rows keep their vectors out of the heap (issue 16 item 2, peak
//! memory during ingest): through the engine, every vector a write or a WAL
//! replay puts into the overlay lives in the spill's unlinked chunk files
//! under `<data-dir>/scratch`, and everything that reads the overlay reads
//! the same floats — a query's exhaustive scan, a get, a compaction folding
//! the rows into a segment, a reload that replays the WAL. Once folded, the
//! chunks go with the rows. Named vector attributes spill the same way.

use std::sync::Arc;

use serde_json::json;
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::query::execute_request;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

const DIM: usize = 64;
const ROWS: u64 = 3_000;

fn ns() -> NsPath {
    NsPath::new("o", "p", "spill").unwrap()
}

/// Row `i`'s vector: SplitMix64 of (i, j) mapped into [-1, 1) (distinct rows).
fn vector(i: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|j| {
            let mut z = (i << 8 | j).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

async fn engine(data: &std::path::Path) -> Arc<Engine> {
    let store = Store::local(&data.join("store")).unwrap();
    let mut cfg = EngineConfig::new(data.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

async fn write_rows(e: &Engine) {
    for start in (0..ROWS).step_by(1000) {
        let rows: Vec<_> =
            (start..start + 1000).map(|i| json!({"id": i, "vector": vector(i), "n": i})).collect();
        let req =
            WriteRequest::from_json(&json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"}))
                .unwrap();
        e.write(&ns(), req).await.unwrap();
    }
}

/// Every overlay document's vector: spilled, and the floats written.
async fn assert_overlay_spilled(e: &Engine) {
    let s = e.existing(&ns(), true).await.unwrap();
    assert_eq!(s.state.overlay().len() as u64, ROWS);
    for (id, doc) in s.state.overlay() {
        let DocId::U64(i) = id else { panic!("u64 ids") };
        let v = doc.as_ref().and_then(|d| d.vector.as_ref()).expect("a vector");
        assert!(v.is_spilled(), "row {i} kept its vector on the heap");
        assert_eq!(**v, vector(*i)[..], "row {i}");
    }
}

async fn nearest(e: &Engine, i: u64) -> u64 {
    let body = json!({"rank_by": ["vector", "ANN", vector(i)], "top_k": 1});
    let st = e.existing(&ns(), true).await.unwrap().state;
    let req = parse_request(&body, false).unwrap();
    let r = execute_request(&req, &st).unwrap().remove(0).to_json();
    r["rows"][0]["id"].as_u64().expect("an id")
}

#[tokio::test]
async fn overlay_vectors_live_in_the_spill_and_read_back_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    write_rows(&e).await;
    assert_overlay_spilled(&e).await;
    for i in [0, 1234, ROWS - 1] {
        assert_eq!(nearest(&e, i).await, i, "exhaustive scan of the spilled overlay");
    }
    let chunk_maps = |dir: &std::path::Path| {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let scratch = dir.join("scratch");
        maps.lines().filter(|l| l.contains(scratch.to_str().unwrap()) && l.ends_with("(deleted)")).count()
    };
    assert!(chunk_maps(dir.path()) >= 1, "the chunk is an unlinked file mapped from the scratch dir");

    // A restart replays the WAL into a spilled overlay again.
    drop(e);
    let e = engine(dir.path()).await;
    assert_overlay_spilled(&e).await;

    // Compaction folds the spilled rows into a segment with the same floats.
    let r = e.compact(&ns(), true).await.unwrap();
    assert_eq!(r.rows_written, ROWS, "{r:?}");
    let s = e.existing(&ns(), true).await.unwrap();
    assert!(s.state.overlay().is_empty());
    for i in [0, 777, ROWS - 1] {
        let d = s.state.get(&DocId::U64(i)).unwrap();
        assert_eq!(d.vector.as_deref(), Some(&vector(i)[..]), "row {i} in the segment");
        assert_eq!(nearest(&e, i).await, i);
    }
    // The folded rows are gone from every state; only the chunk still being
    // appended to may be left.
    drop(s);
    let live = e.existing(&ns(), true).await.unwrap().state.spill().map(|sp| sp.live_chunks());
    assert!(live.is_some_and(|n| n <= 1), "chunks left after the fold: {live:?}");
}

/// Named vector attributes (issue 34) spill like `vector`: written as floats, applied as dense
/// values, kept in the spill's chunk files (also after a replay), and a ranking by the
/// attribute reads the same floats.
#[tokio::test]
async fn overlay_named_vectors_live_in_the_spill_too() {
    let dir = tempfile::tempdir().unwrap();
    let check = |st: &tidepool::state::NsState| {
        for (id, doc) in st.overlay() {
            let DocId::U64(i) = id else { panic!("u64 ids") };
            let Some(tidepool::model::Value::Dense(v)) = doc.as_ref().and_then(|d| d.attrs.get("t")) else {
                panic!("row {i} has no dense t")
            };
            assert!(v.is_spilled(), "row {i} kept its named vector on the heap");
            assert_eq!(**v, vector(*i + 7)[..], "row {i}");
        }
    };
    {
        let e = engine(dir.path()).await;
        let rows: Vec<_> = (0..500u64).map(|i| json!({"id": i, "t": vector(i + 7)})).collect();
        let body =
            json!({"upsert_rows": rows, "schema": {"t": {"type": format!("[{DIM}]f32"), "ann": true}}});
        e.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
        let st = e.existing(&ns(), true).await.unwrap().state;
        check(&st);
        let body = json!({"rank_by": ["t", "kNN", vector(42 + 7)], "top_k": 1});
        let r = execute_request(&parse_request(&body, false).unwrap(), &st).unwrap().remove(0).to_json();
        assert_eq!(r["rows"][0]["id"], 42, "{r}");
    }
    let e = engine(dir.path()).await;
    check(&e.existing(&ns(), true).await.unwrap().state);
}
