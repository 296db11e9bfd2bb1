//! What real clients send, over real loopback HTTP against the `tidepool`
//! binary: lookups without `rank_by` (langchain's `get_by_ids`) answered in
//! id order, string ids that survive byte for byte while declared uuid ids
//! compare case-insensitively, the legacy v1 vectors API
//! (`@langchain/community`'s store), `disable_cache`, and every
//! `performance` field the SDK types name that tidepool measures.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, get, json_of, post, Daemon};
use object_store::memory::InMemory;
use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, ReadOptions, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn ids(body: &Json) -> Vec<Json> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {body}"))
        .iter()
        .map(|r| r["id"].clone())
        .collect()
}

async fn write_ok(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> Json {
    let (s, b) = post(c, &d.at(&format!("/v2/namespaces/{ns}")), &body).await;
    assert_eq!(s, 200, "{body} → {b}");
    b
}

async fn query(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> (u16, Json) {
    post(c, &d.at(&format!("/v2/namespaces/{ns}/query")), &body).await
}

/// Invariant: a query with neither `rank_by` nor `aggregate_by` answers the
/// matching documents by id ascending, over the WAL and compacted segments
/// alike; `offset` still needs an order.
#[tokio::test]
async fn lookups_without_rank_by_answer_in_id_order() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> =
        (0..40u64).map(|i| json!({"id": i, "vector": [i as f32, 1.0], "k": i % 3})).collect();
    write_ok(&c, &d, "look", json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"})).await;
    let (s, b) = post(&c, &d.at("/v1/namespaces/look/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    // Some documents only in the WAL, one compacted document replaced there.
    write_ok(&c, &d, "look", json!({"upsert_rows": [{"id": 41, "vector": [0.0, 0.0], "k": 9}, {"id": 7, "vector": [0.0, 0.0], "k": 7}]})).await;

    let get_by_ids =
        json!({"filters": ["id", "In", [41, 7, 3, 999]], "include_attributes": true, "limit": 3});
    let (s, b) = query(&c, &d, "look", get_by_ids).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), vec![json!(3), json!(7), json!(41)]);
    assert_eq!(b["rows"][1]["k"], 7, "the newest version of a replaced document");
    assert!(b["rows"][0].get("$dist").is_none(), "a lookup is not scored");

    let (s, b) = query(&c, &d, "look", json!({"filters": ["id", "In", [5, 1]], "limit": 1})).await;
    assert_eq!((s, ids(&b)), (200, vec![json!(1)]), "the limit cuts the id order");
    let (s, b) = query(&c, &d, "look", json!({"filters": ["k", "Eq", 2], "limit": 3})).await;
    assert_eq!((s, ids(&b)), (200, vec![json!(2), json!(5), json!(8)]));
    let (s, b) = query(&c, &d, "look", json!({})).await;
    assert_eq!((s, ids(&b).len()), (200, 10), "the default limit");
    let (s, b) = query(&c, &d, "look", json!({"aggregate_by": {"n": ["Count"]}})).await;
    assert_eq!((s, b["aggregations"]["n"].as_u64(), b.get("rows")), (200, Some(41), None));

    let (s, b) = query(&c, &d, "look", json!({"filters": ["id", "In", [1, 2]], "offset": 1})).await;
    assert_eq!((s, b["status"].as_str()), (400, Some("error")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("offset requires rank_by"), "{b}");
    d.stop();
}

const UPPER: &str = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D";

/// Invariant: string ids are kept byte for byte, uuid-shaped or not, in a
/// namespace nothing declared uuid; integers and strings are inferred.
#[tokio::test]
async fn string_ids_survive_byte_for_byte() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let lower = "5f0e3a34-8d7c-4c0e-9f1a-2b3c4d5e6f70";
    // What langchain's standard suite does: a plain string first, then uuid4 strings.
    write_ok(&c, &d, "str", json!({"upsert_rows": [{"id": "dummy_document", "vector": [1.0, 0.0]}]})).await;
    write_ok(
        &c,
        &d,
        "str",
        json!({"upsert_rows": [{"id": UPPER, "vector": [0.0, 1.0]}, {"id": lower, "vector": [1.0, 1.0]}]}),
    )
    .await;
    let (s, b) =
        query(&c, &d, "str", json!({"filters": ["id", "In", [UPPER, lower, "dummy_document"]]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), vec![json!(UPPER), json!(lower), json!("dummy_document")], "byte order, as sent");
    let (_, b) = query(&c, &d, "str", json!({"filters": ["id", "Eq", UPPER.to_lowercase()]})).await;
    assert_eq!(ids(&b), Vec::<Json>::new(), "another spelling is another string");
    let (_, b) = query(&c, &d, "str", json!({"rank_by": ["vector", "ANN", [0.0, 1.0]], "top_k": 1})).await;
    assert_eq!(ids(&b), vec![json!(UPPER)]);
    let (_, schema) = get(&c, &d.at("/v1/namespaces/str/schema")).await;
    assert_eq!(schema["id"]["type"], "string", "{schema}");

    // A namespace whose first id is uuid-shaped is a string namespace too.
    write_ok(&c, &d, "str2", json!({"upsert_rows": [{"id": UPPER}]})).await;
    write_ok(&c, &d, "str2", json!({"upsert_rows": [{"id": "plain"}], "deletes": [UPPER]})).await;
    let (_, b) = query(&c, &d, "str2", json!({"rank_by": ["id", "asc"]})).await;
    assert_eq!(ids(&b), vec![json!("plain")]);

    // A declared string id type is honoured; a contradicting declaration is refused.
    write_ok(&c, &d, "str3", json!({"schema": {"id": {"type": "string"}}, "upsert_rows": [{"id": lower}]}))
        .await;
    let (s, b) = post(
        &c,
        &d.at("/v2/namespaces/str3"),
        &json!({"schema": {"id": "uuid"}, "upsert_rows": [{"id": lower}]}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = post(&c, &d.at("/v2/namespaces/str3"), &json!({"upsert_rows": [{"id": 5}]})).await;
    assert!(s == 400 && b["error"].as_str().unwrap().contains("mix id types"), "{b}");
    d.stop();
}

/// Invariant: in a namespace whose ids are declared uuid, any spelling of a
/// uuid names the same document (writes, filters, deletes), rendered in
/// canonical lower case.
#[tokio::test]
async fn declared_uuid_ids_compare_case_insensitively() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let lower = UPPER.to_lowercase();
    let body = json!({"schema": {"id": "uuid"}, "upsert_rows": [{"id": UPPER, "n": 1}]});
    write_ok(&c, &d, "u", body).await;
    write_ok(&c, &d, "u", json!({"upsert_rows": [{"id": lower, "n": 2}]})).await;
    let (_, b) =
        query(&c, &d, "u", json!({"filters": ["id", "Eq", UPPER], "include_attributes": ["n"]})).await;
    assert_eq!(b["rows"], json!([{"id": lower, "n": 2}]), "one document, upserted twice");
    let (_, b) = query(&c, &d, "u", json!({"filters": ["id", "In", [lower]]})).await;
    assert_eq!(ids(&b), vec![json!(lower)]);
    let (s, b) = post(&c, &d.at("/v2/namespaces/u"), &json!({"upsert_rows": [{"id": "not-a-uuid"}]})).await;
    assert!(s == 400 && b["error"].as_str().unwrap().contains("not a uuid"), "{b}");
    let b = write_ok(&c, &d, "u", json!({"delete_by_filter": ["id", "Eq", UPPER]})).await;
    assert_eq!(b["rows_deleted"], 1, "{b}");
    write_ok(&c, &d, "u", json!({"upsert_rows": [{"id": UPPER}]})).await;
    let b = write_ok(&c, &d, "u", json!({"deletes": [lower]})).await;
    assert_eq!(b["rows_deleted"], 1, "{b}");
    let (_, schema) = get(&c, &d.at("/v1/namespaces/u/schema")).await;
    assert_eq!(schema["id"]["type"], "uuid", "{schema}");

    // Declared on creation with no documents, the type holds for the first write.
    write_ok(&c, &d, "u2", json!({"schema": {"id": {"type": "uuid"}}, "create_namespace": true})).await;
    write_ok(&c, &d, "u2", json!({"upsert_rows": [{"id": UPPER}]})).await;
    let (_, b) = query(&c, &d, "u2", json!({"filters": ["id", "Eq", lower]})).await;
    assert_eq!(ids(&b), vec![json!(lower)]);
    d.stop();
}

/// Invariant: the legacy v1 vectors API (what `@langchain/community`'s
/// store speaks) writes, queries and deletes through the same engine, its
/// query answering the old top-level array of `{id, dist, attributes}`.
#[tokio::test]
async fn the_legacy_v1_vectors_api_round_trips() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let upsert = json!({
        "ids": ["a", "b", "c"],
        "vectors": [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]],
        "distance_metric": "cosine_distance",
        "attributes": {"__lc_page_content": ["alpha", "beta", "gamma"], "source": ["x", null, "y"]},
    });
    let (s, b) = post(&c, &d.at("/v1/vectors/legacy"), &upsert).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("OK")), "{b}");
    let q = json!({"vector": [1.0, 0.1], "top_k": 2, "distance_metric": "cosine_distance",
                   "include_attributes": true, "include_vectors": false});
    let (s, b) = post(&c, &d.at("/v1/vectors/legacy/query"), &q).await;
    assert_eq!(s, 200, "{b}");
    let rows = b.as_array().unwrap_or_else(|| panic!("a top-level array: {b}"));
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["id"].as_str(), rows[1]["id"].as_str()), (Some("a"), Some("c")));
    assert_eq!(rows[0]["attributes"], json!({"__lc_page_content": "alpha", "source": "x"}));
    assert!(rows[0]["dist"].as_f64().unwrap() < rows[1]["dist"].as_f64().unwrap());
    assert!(rows[0].get("vector").is_none());

    let q = json!({"vector": [0.0, 1.0], "top_k": 5, "filters": {"source": ["Eq", "y"]}, "include_vectors": true});
    let (_, b) = post(&c, &d.at("/v1/vectors/legacy/query"), &q).await;
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!((b[0]["id"].as_str(), b[0]["vector"].as_array().map(Vec::len)), (Some("c"), Some(2)));

    let (s, b) =
        post(&c, &d.at("/v1/vectors/legacy/query"), &json!({"vector": [1.0, 0.0], "bogus": 1})).await;
    assert_eq!((s, b["status"].as_str()), (400, Some("error")), "{b}");
    let resp = c.delete(d.at("/v1/vectors/legacy")).send().await.unwrap();
    assert_eq!(json_of(resp).await, (200, json!({"status": "OK"})));
    let (s, _) = get(&c, &d.at("/v1/namespaces/legacy/schema")).await;
    assert_eq!(s, 404, "deleted");
    d.stop();
}

/// Invariant: every `performance` field of SDK 3.1.0's `QueryPerformance`
/// (but the embedding ones) is reported by queries and multi-queries, and
/// `WritePerformance.server_total_ms` by writes, with sane values.
#[tokio::test]
async fn performance_fields_are_present_and_sane() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> = (0..25u64).map(|i| json!({"id": i, "vector": [i as f32, 1.0]})).collect();
    let w = write_ok(&c, &d, "perf", json!({"upsert_rows": rows})).await;
    assert!(w["performance"]["server_total_ms"].is_u64(), "{w}");
    assert!(w["performance"].get("embedding_ms").is_none(), "no embedding happened");
    let single = json!({"rank_by": ["vector", "ANN", [1.0, 1.0]], "top_k": 3, "disable_cache": true});
    let multi = json!({"queries": [{"rank_by": ["id", "asc"]}, {"filters": ["id", "In", [1, 2]]}]});
    for (path, body) in [
        ("/v2/namespaces/perf/query", single),
        ("/v2/namespaces/perf/query?stainless_overload=multiQuery", multi),
    ] {
        let (s, b) = post(&c, &d.at(path), &body).await;
        assert_eq!(s, 200, "{b}");
        let p = &b["performance"];
        assert_eq!(p["approx_namespace_size"], 25, "{p}");
        let ratio = p["cache_hit_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ratio), "{p}");
        assert!(["hot", "warm", "cold"].contains(&p["cache_temperature"].as_str().unwrap()), "{p}");
        let exhaustive = p["exhaustive_search_count"].as_u64().unwrap();
        assert!((1..=2 * 25).contains(&exhaustive), "{p}");
        let (exec, total) =
            (p["query_execution_ms"].as_u64().unwrap(), p["server_total_ms"].as_u64().unwrap());
        assert!(exec <= total, "{p}");
    }
    let (s, b) = query(&c, &d, "perf", json!({"rank_by": ["id", "asc"], "disable_cache": "yes"})).await;
    assert!(s == 400 && b["error"].as_str().unwrap().contains("disable_cache"), "{b}");
    d.stop();
}

/// Invariant: on a local data dir, a `disable_cache` query runs on a state
/// built for it and neither uses nor fills the memory tier: after a restart
/// it reports `warm`, and so does the next ordinary query (which loads it);
/// only the one after that is `hot`.
#[tokio::test]
async fn disable_cache_on_a_local_data_dir_bypasses_the_memory_tier() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> = (0..30u64).map(|i| json!({"id": i, "vector": [i as f32, 1.0]})).collect();
    write_ok(&c, &d, "local", json!({"upsert_rows": rows})).await;
    post(&c, &d.at("/v1/namespaces/local/_admin/compact"), &json!({})).await;
    write_ok(&c, &d, "local", json!({"upsert_rows": [{"id": 100, "vector": [2.0, 1.0]}]})).await;
    let ann = json!({"rank_by": ["vector", "ANN", [2.0, 1.0]], "top_k": 2, "disable_cache": true});
    let (_, loaded) = query(&c, &d, "local", ann.clone()).await;
    assert_eq!(
        loaded["performance"]["cache_temperature"], "warm",
        "a loaded namespace is not used: {loaded}"
    );
    assert!(d.stop().success());

    let d = Daemon::start(dir.path(), &[]);
    let temperature = |b: &Json| b["performance"]["cache_temperature"].as_str().unwrap().to_owned();
    let (s, uncached) = query(&c, &d, "local", ann.clone()).await;
    assert_eq!((s, temperature(&uncached)), (200, "warm".to_owned()), "{uncached}");
    assert_eq!(uncached["rows"], loaded["rows"], "the same answer");
    assert_eq!(ids(&uncached), vec![json!(2), json!(100)]);
    let plain = json!({"rank_by": ["vector", "ANN", [2.0, 1.0]], "top_k": 2});
    let (_, first) = query(&c, &d, "local", plain.clone()).await;
    assert_eq!(temperature(&first), "warm", "the disable_cache query filled no memory tier");
    let (_, second) = query(&c, &d, "local", plain).await;
    assert_eq!(temperature(&second), "hot");
    let (s, b) = query(&c, &d, "missing", ann).await;
    assert_eq!((s, b["status"].as_str()), (404, Some("error")), "{b}");
    d.stop();
}

const DIM: usize = 16;

fn bucket_ns() -> NsPath {
    NsPath::new("default", "default", "cold").unwrap()
}

async fn engine(dir: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

/// Invariant: on a bucket store, `disable_cache` answers a query the cold
/// path covers by ranged reads of the bucket even when the namespace is
/// loaded, and loads nothing in the background; without it, a loaded
/// namespace answers hot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_cache_reads_the_bucket_and_fills_no_cache() {
    let bucket = Arc::new(InMemory::new());
    let (d1, d2) = (tmp(), tmp());
    let writer = engine(d1.path(), Store::new(bucket.clone(), "memory")).await;
    // Clustered pseudo-random vectors: enough rows for segments with cold IVF sections.
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let centers: Vec<Vec<f32>> = (0..24).map(|_| (0..DIM).map(|_| next() * 2.0 - 1.0).collect()).collect();
    let rows: Vec<Json> = (0..1500usize)
        .map(|i| {
            let v: Vec<f32> = centers[i % 24].iter().map(|x| x + (next() - 0.5) * 0.3).collect();
            json!({"id": i, "vector": v})
        })
        .collect();
    let body = json!({"distance_metric": "euclidean_squared", "upsert_rows": rows});
    writer.write(&bucket_ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
    writer.compact(&bucket_ns(), true).await.unwrap();

    let reader = engine(d2.path(), Store::new(bucket, "memory")).await;
    let q = json!({"rank_by": ["vector", "ANN", vec![1.0f32; DIM]], "top_k": 5, "disable_cache": true});
    let req = parse_request(&q, false).unwrap();
    assert!(req.disable_cache);
    let opts = |disable_cache| ReadOptions {
        allow_cold: true,
        measure_temperature: true,
        allow_stale: true,
        disable_cache,
        ..ReadOptions::default()
    };
    let cold = reader.read(&bucket_ns(), opts(true)).await.unwrap().query(&req).await.unwrap();
    assert_eq!((cold.temperature.level, cold.results[0].rows.as_ref().map(Vec::len)), ("cold", Some(5)));
    // A query the cold path does not cover runs on a state built for it alone.
    let filtered =
        json!({"filters": ["id", "Lt", 10], "rank_by": ["id", "desc"], "top_k": 3, "disable_cache": true});
    let filtered = parse_request(&filtered, false).unwrap();
    let built = reader.read(&bucket_ns(), opts(true)).await.unwrap().query(&filtered).await.unwrap();
    let got: Vec<_> = built.results[0].rows.iter().flatten().map(|r| r.doc.id.to_json()).collect();
    assert_eq!(got, vec![json!(9), json!(8), json!(7)]);
    assert_ne!(built.temperature.level, "hot");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.loaded_namespaces().contains(&bucket_ns()), "nothing loaded, in the background or not");

    // Loaded (a read without disable_cache loads it), then: hot without, cold with.
    let load = ReadOptions { allow_cold: false, ..opts(false) };
    let warm = reader.read(&bucket_ns(), load).await.unwrap().query(&req).await.unwrap();
    assert!(reader.loaded_namespaces().contains(&bucket_ns()));
    let again = reader.read(&bucket_ns(), opts(false)).await.unwrap().query(&req).await.unwrap();
    assert_eq!(again.temperature.level, "hot");
    let bypass = reader.read(&bucket_ns(), opts(true)).await.unwrap().query(&req).await.unwrap();
    assert_eq!(bypass.temperature.level, "cold", "the bucket is read although the namespace is loaded");
    let id_set = |a: &tidepool::engine::QueryAnswer| {
        let mut v: Vec<_> = a.results[0].rows.iter().flatten().map(|r| r.doc.id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(id_set(&bypass).len(), 5);
    assert_eq!(id_set(&warm), id_set(&again));
}
