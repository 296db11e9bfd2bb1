//! The object-store layer and the engine on a real S3-compatible server.
//!
//! Invariants guarded, over S3 (`s3://bucket/prefix`, path-style, plain http):
//! - `Store` reads back what it wrote, lists recursively and by directory
//!   relative to its prefix (and never outside it), treats a missing object
//!   as `NotFound` / absent, and `put_if_absent` reports `AlreadyExists` on a
//!   second create without changing the object.
//! - Every acknowledged engine write (upsert, patch, delete, delete_by_filter)
//!   is readable at once and from a new engine with a fresh data dir on the
//!   same bucket prefix (the bucket is the source of truth, not the data dir);
//!   so are namespace listing and deletion.
//! - Two engines writing one namespace through one bucket lose no write and
//!   create each manifest generation exactly once.
//! - A retried idempotency key is deduplicated, also by an engine that never
//!   saw the first attempt.
//! - A cold ANN query on a fresh node takes at most 3 sequential round trips
//!   to the bucket (ranged reads, measured by `store::trace`) and finds the
//!   same nearest row as the loaded namespace.
//! - Over HTTP, the daemon binary on a bucket answers such a query with
//!   `cache_temperature: "cold"`, then loads the namespace in the background
//!   so later queries are `hot`, with the same rows.
//!
//! The server: `TIDEPOOL_TEST_S3_ENDPOINT` (e.g. `http://127.0.0.1:5055`), or
//! else moto started by `scripts/s3-server.sh start` for this test binary and
//! stopped when it exits. If neither works every test fails: none is skipped.
//! moto's conditional create is a check-then-put without a lock, so writers
//! here take turns (sequential awaits) instead of racing truly concurrently.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::s3::{endpoint, new_bucket, s3_store};
use object_store::ObjectStoreExt;
use serde_json::{json, Value as Json};
use tidepool::engine::WriteRequest;
use tidepool::engine::{Engine, EngineConfig, EngineError, ErrorKind, WriteResponse};
use tidepool::layout::NsPath;
use tidepool::model::{DocId, Document, Value};
use tidepool::store::{CreateOutcome, Store, StoreError};

async fn engine_on(data_dir: &Path, url: &str) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data_dir.to_path_buf(), s3_store(url));
    // These tests count generations: no background compaction commits.
    cfg.compaction.auto = false;
    Engine::open(cfg).await.unwrap()
}

fn ns() -> NsPath {
    NsPath::new("acme", "search", "s3ns").unwrap()
}

async fn write(e: &Engine, body: Json) -> Result<WriteResponse, EngineError> {
    e.write(&ns(), WriteRequest::from_json(&body)?).await
}

/// Every live document, by a strong read.
async fn docs(e: &Engine) -> BTreeMap<DocId, Document> {
    let s = e.existing(&ns(), true).await.unwrap();
    s.state.iter().map(|d| (d.id.clone(), (*d).clone())).collect()
}

async fn doc(e: &Engine, id: u64) -> Option<Arc<Document>> {
    e.get(&ns(), &[DocId::U64(id)]).await.unwrap().pop().flatten()
}

async fn manifest_count(store: &Store) -> usize {
    store.list(&ns().manifests_prefix()).await.unwrap().iter().filter(|o| o.key.ends_with(".json")).count()
}

fn ids(d: &BTreeMap<DocId, Document>) -> Vec<u64> {
    d.keys()
        .map(|id| match id {
            DocId::U64(n) => *n,
            other => panic!("unexpected id {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn store_operations_on_an_s3_prefix() {
    let bucket = new_bucket().await;
    let s = s3_store(&format!("s3://{bucket}/pre/fix"));
    assert_eq!(s.description(), format!("s3://{bucket}/pre/fix"));
    assert!(s.list("").await.unwrap().is_empty(), "a new bucket is empty");
    assert!(s.list_dirs("o/p/namespaces/").await.unwrap().is_empty());

    let keys = ["o/p/namespaces/a/CURRENT", "o/p/namespaces/b/wal/1", "o/p/namespaces/b/wal/2", "o/p/other"];
    for (i, k) in keys.iter().enumerate() {
        s.put(k, Bytes::from(format!("value {i} of {k}"))).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(s.get(k).await.unwrap(), Bytes::from(format!("value {i} of {k}")));
        assert!(s.exists(k).await.unwrap(), "{k}");
    }
    assert!(!s.exists("o/p/namespaces/a/missing").await.unwrap());
    assert!(!s.exists("o/p/namespaces/b").await.unwrap(), "a 'directory' is not an object");
    assert!(matches!(s.get("o/p/missing").await, Err(StoreError::NotFound(k)) if k == "o/p/missing"));
    assert_eq!(s.get_opt("o/p/missing").await.unwrap(), None);
    assert_eq!(
        s.get_opt(keys[0]).await.unwrap().as_deref(),
        Some(&b"value 0 of o/p/namespaces/a/CURRENT"[..])
    );

    // Overwrite replaces the content.
    s.put(keys[3], Bytes::from_static(b"replaced")).await.unwrap();
    assert_eq!(&s.get(keys[3]).await.unwrap()[..], b"replaced");

    // Recursive listing, relative to the store's prefix, sorted, with sizes.
    let listed = s.list("o/p/namespaces/b/").await.unwrap();
    let names: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(names, vec!["o/p/namespaces/b/wal/1", "o/p/namespaces/b/wal/2"]);
    assert_eq!(listed[0].size, format!("value 1 of {}", keys[1]).len() as u64);
    assert!(listed.iter().all(|o| o.last_modified_ms > 1_600_000_000_000), "{listed:?}");
    let all: Vec<_> = s.list("").await.unwrap().into_iter().map(|o| o.key).collect();
    let mut sorted = keys.map(str::to_owned).to_vec();
    sorted.sort();
    assert_eq!(all, sorted);
    assert_eq!(s.list("o/p/namespaces/b").await.unwrap().len(), 2, "a trailing slash is optional");
    assert!(s.list("o/p/namespaces/c/").await.unwrap().is_empty());
    assert!(s.list("o/p/namespaces/b/wal/1x").await.unwrap().is_empty(), "prefixes match whole segments");

    // Immediate "directories" only.
    assert_eq!(s.list_dirs("o/p/namespaces/").await.unwrap(), vec!["a", "b"]);
    assert_eq!(s.list_dirs("o/p/namespaces/b/").await.unwrap(), vec!["wal"]);
    assert_eq!(s.list_dirs("o/p/").await.unwrap(), vec!["namespaces"], "objects are not directories");
    assert!(s.list_dirs("o/p/namespaces/a/").await.unwrap().is_empty());

    // The objects really live under the prefix, and a sibling prefix sees none of them.
    let root = s3_store(&format!("s3://{bucket}"));
    let raw: Vec<_> = root.list("").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(raw, sorted.iter().map(|k| format!("pre/fix/{k}")).collect::<Vec<_>>());
    assert!(s3_store(&format!("s3://{bucket}/pre/fi")).list("").await.unwrap().is_empty());
    assert_eq!(s3_store(&format!("s3://{bucket}/pre/")).list_dirs("").await.unwrap(), vec!["fix"]);

    // Conditional create.
    let k = "o/p/namespaces/b/manifests/00000000000000000001.json";
    assert_eq!(s.put_if_absent(k, Bytes::from_static(b"first")).await.unwrap(), CreateOutcome::Created);
    let before = s.inner().head(&k.into()).await.unwrap();
    assert_eq!(
        s.put_if_absent(k, Bytes::from_static(b"second!")).await.unwrap(),
        CreateOutcome::AlreadyExists
    );
    assert_eq!(&s.get(k).await.unwrap()[..], b"first", "the losing create did not change the object");
    let after = s.inner().head(&k.into()).await.unwrap();
    assert_eq!(
        (before.size, &before.e_tag, before.last_modified),
        (after.size, &after.e_tag, after.last_modified)
    );
    assert_eq!(
        s.put_if_absent(keys[0], Bytes::from_static(b"x")).await.unwrap(),
        CreateOutcome::AlreadyExists,
        "an object written by a plain put also blocks a create"
    );
    assert_eq!(&s.get(keys[0]).await.unwrap()[..], b"value 0 of o/p/namespaces/a/CURRENT");

    // Delete: idempotent, and the key can be created again afterwards.
    s.delete(k).await.unwrap();
    assert!(!s.exists(k).await.unwrap());
    assert!(matches!(s.get(k).await, Err(StoreError::NotFound(_))));
    s.delete(k).await.unwrap();
    s.delete("o/p/never/existed").await.unwrap();
    assert_eq!(s.put_if_absent(k, Bytes::from_static(b"third")).await.unwrap(), CreateOutcome::Created);
    assert_eq!(&s.get(k).await.unwrap()[..], b"third");
    for key in keys.iter().copied().chain([k]) {
        s.delete(key).await.unwrap();
    }
    assert!(s.list("").await.unwrap().is_empty());
    assert!(s.list_dirs("o/p/namespaces/").await.unwrap().is_empty());
}

#[tokio::test]
async fn every_acknowledged_engine_write_survives_a_new_engine_on_the_same_bucket() {
    let url = format!("s3://{}/cluster-a", new_bucket().await);
    let d1 = tempfile::tempdir().unwrap();
    let e1 = engine_on(d1.path(), &url).await;

    let r = write(
        &e1,
        json!({
            "distance_metric": "cosine_distance",
            "upsert_rows": [
                {"id": 1, "vector": [1.0, 0.0], "color": "red", "n": 1},
                {"id": 2, "vector": [0.0, 1.0], "color": "blue", "n": 2},
                {"id": 3, "vector": [0.5, 0.5], "color": "red", "n": 3},
                {"id": 4, "vector": [0.25, 0.75], "color": "blue", "n": 4},
                {"id": 5, "vector": [0.75, 0.25], "color": "green", "n": 5},
            ],
        }),
    )
    .await
    .unwrap();
    assert_eq!((r.counts.upserted, r.generation), (5, 1));
    assert_eq!(doc(&e1, 4).await.unwrap().attrs["color"], Value::Str("blue".into()), "read your write");

    let r =
        write(&e1, json!({"patch_rows": [{"id": 1, "n": 10, "tag": "patched"}, {"id": 3, "color": null}]}))
            .await
            .unwrap();
    assert_eq!((r.counts.patched, r.generation), (2, 2));
    let d = doc(&e1, 1).await.unwrap();
    assert_eq!((&d.attrs["n"], &d.attrs["tag"]), (&Value::Int(10), &Value::Str("patched".into())));
    assert_eq!(d.vector.as_deref(), Some(&[1.0f32, 0.0][..]), "a patch keeps the vector");
    assert!(!doc(&e1, 3).await.unwrap().attrs.contains_key("color"), "a null patch removes the attribute");

    let r = write(&e1, json!({"deletes": [5, 99]})).await.unwrap();
    assert_eq!(r.generation, 3);
    assert!(doc(&e1, 5).await.is_none());

    let r = write(&e1, json!({"delete_by_filter": ["color", "Eq", "blue"]})).await.unwrap();
    assert_eq!((r.counts.deleted, r.generation), (2, 4));
    assert!(doc(&e1, 2).await.is_none() && doc(&e1, 4).await.is_none());

    let r = write(
        &e1,
        json!({"upsert_rows": [{"id": 6, "vector": [0.0, 1.0], "color": "blue"}], "deletes": [3]}),
    )
    .await
    .unwrap();
    assert_eq!(r.generation, 5);
    let expected = docs(&e1).await;
    assert_eq!(ids(&expected), vec![1, 6]);
    assert_eq!(manifest_count(e1.store()).await, 5, "one manifest object per generation");
    assert!(!e1.store().list(&ns().prefix()).await.unwrap().is_empty());
    drop(e1);

    // A new engine with an empty data dir sees exactly the acknowledged state.
    let d2 = tempfile::tempdir().unwrap();
    let e2 = engine_on(d2.path(), &url).await;
    assert_eq!(e2.existing(&ns(), true).await.unwrap().generation(), 5);
    assert_eq!(docs(&e2).await, expected);
    // ...and keeps writing on top of it.
    let r = write(&e2, json!({"upsert_rows": [{"id": 7, "vector": [1.0, 1.0]}]})).await.unwrap();
    assert_eq!(r.generation, 6);
    drop(e2);
    let d3 = tempfile::tempdir().unwrap();
    let e3 = engine_on(d3.path(), &url).await;
    assert_eq!(ids(&docs(&e3).await), vec![1, 6, 7]);

    // Namespace listing (list_dirs on the bucket) and deletion (a tombstone
    // manifest) are seen by the next engine too; the name can be reused.
    let page = e3.list_namespaces("acme", "search", None, None, 100).await.unwrap();
    assert_eq!(page.namespaces, vec!["s3ns"]);
    e3.delete_namespace(&ns()).await.unwrap();
    drop(e3);
    let d5 = tempfile::tempdir().unwrap();
    let e5 = engine_on(d5.path(), &url).await;
    assert!(matches!(e5.existing(&ns(), true).await, Err(ref e) if e.kind() == ErrorKind::NotFound));
    assert!(e5.list_namespaces("acme", "search", None, None, 100).await.unwrap().namespaces.is_empty());
    let r = write(&e5, json!({"upsert_rows": [{"id": 8, "vector": [0.0, 1.0]}]})).await.unwrap();
    assert_eq!(r.generation, 8, "generation 7 is the deletion");
    assert_eq!(ids(&docs(&e5).await), vec![8]);

    // Another prefix of the same bucket is another cluster: it sees nothing.
    let d4 = tempfile::tempdir().unwrap();
    let other = engine_on(d4.path(), &format!("{url}-other")).await;
    assert!(matches!(other.existing(&ns(), true).await, Err(ref e) if e.kind() == ErrorKind::NotFound));
}

#[tokio::test]
async fn two_engines_taking_turns_on_one_bucket_lose_no_write() {
    let url = format!("s3://{}/shared", new_bucket().await);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let e1 = engine_on(d1.path(), &url).await;
    let e2 = engine_on(d2.path(), &url).await;
    write(&e1, json!({"upsert_rows": [{"id": 0, "count": 0}]})).await.unwrap();

    // Each turn: both insert their own id (each from a stale cached
    // generation, so each create first loses to the other engine's manifest
    // and is re-applied), then both increment a shared counter with a
    // read-modify-write guarded by if_version.
    let rounds = 8u64;
    let mut generations = Vec::new();
    for i in 0..rounds {
        for (w, e) in [(1u64, &e1), (2, &e2)] {
            let r = write(e, json!({"upsert_rows": [{"id": w * 1000 + i, "by": w}]})).await.unwrap();
            generations.push(r.generation);
            assert!(doc(e, w * 1000 + i).await.is_some(), "read your write");
        }
        for e in [&e1, &e2] {
            loop {
                let s = e.snapshot(&ns(), true).await.unwrap();
                let Some(Value::Int(c)) = s.state.get(&DocId::U64(0)).unwrap().attrs.get("count").cloned()
                else {
                    panic!("counter missing")
                };
                match write(
                    e,
                    json!({"if_version": s.generation(), "patch_rows": [{"id": 0, "count": c + 1}]}),
                )
                .await
                {
                    Ok(r) => {
                        generations.push(r.generation);
                        break;
                    }
                    Err(ref e) if matches!(e.kind(), ErrorKind::PreconditionFailed | ErrorKind::Conflict) => {
                        continue
                    }
                    Err(other) => panic!("{other}"),
                }
            }
        }
    }
    let mut distinct = generations.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, generations, "acknowledged generations are distinct and increasing");

    let check = tempfile::tempdir().unwrap();
    let fresh = engine_on(check.path(), &url).await;
    let s = fresh.existing(&ns(), true).await.unwrap();
    let want: Vec<u64> = std::iter::once(0)
        .chain((0..rounds).map(|i| 1000 + i))
        .chain((0..rounds).map(|i| 2000 + i))
        .collect();
    let have: Vec<u64> = ids(&s.state.iter().map(|d| (d.id.clone(), (*d).clone())).collect());
    assert_eq!(have, want, "every insert of both writers is present");
    assert_eq!(s.state.get(&DocId::U64(0)).unwrap().attrs["count"], Value::Int(i128::from(2 * rounds)));
    assert_eq!(s.generation(), 1 + 4 * rounds);
    assert_eq!(
        manifest_count(fresh.store()).await as u64,
        s.generation(),
        "each generation was created exactly once"
    );
    for e in [&e1, &e2] {
        assert_eq!(docs(e).await, docs(&fresh).await, "both writers converge on the same state");
    }
}

#[tokio::test]
async fn an_idempotency_key_retry_is_deduplicated_on_s3() {
    let url = format!("s3://{}/idem", new_bucket().await);
    let body = json!({"idempotency_key": "batch-42", "upsert_rows": [{"id": 1, "n": 1}, {"id": 2, "n": 2}]});
    let d1 = tempfile::tempdir().unwrap();
    let e1 = engine_on(d1.path(), &url).await;
    let first = write(&e1, body.clone()).await.unwrap();
    assert!(!first.deduplicated);
    write(&e1, json!({"patch_rows": [{"id": 1, "n": 100}]})).await.unwrap();
    let again = write(&e1, body.clone()).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.counts.upserted, 2);
    assert_eq!(doc(&e1, 1).await.unwrap().attrs["n"], Value::Int(100), "the retry did not re-apply");
    assert_eq!(
        e1.snapshot(&ns(), true).await.unwrap().generation(),
        first.generation + 1,
        "the retry committed nothing"
    );

    // An engine that never saw the first attempt (new data dir, so no local
    // record) still recognises the key, from the WAL on the bucket.
    let d2 = tempfile::tempdir().unwrap();
    let e2 = engine_on(d2.path(), &url).await;
    let again = write(&e2, body.clone()).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.counts.upserted, 2);
    assert_eq!(doc(&e2, 1).await.unwrap().attrs["n"], Value::Int(100));
    // A new key from the second engine is applied, and the first engine's
    // retry of the old key stays deduplicated after that.
    let other = write(&e2, json!({"idempotency_key": "batch-43", "upsert_rows": [{"id": 3}]})).await.unwrap();
    assert!(!other.deduplicated);
    assert!(write(&e1, body).await.unwrap().deduplicated);
    let s = e1.existing(&ns(), true).await.unwrap();
    assert_eq!(s.generation(), first.generation + 2);
    assert_eq!(manifest_count(e1.store()).await as u64, s.generation());
}

/// Segments of a namespace on a real S3-compatible bucket are served through
/// the local disk cache: the first load fetches them, a restart on the same
/// data dir and every later query do not fetch them again.
#[tokio::test]
async fn segments_on_a_bucket_are_served_through_the_disk_cache() {
    let url = format!("s3://{}/cached", new_bucket().await);
    let data = tempfile::tempdir().unwrap();
    {
        let e = engine_on(data.path(), &url).await;
        let rows: Vec<Json> = (0..200u64).map(|i| json!({"id": i, "v": i % 7})).collect();
        write(&e, json!({"upsert_rows": rows})).await.unwrap();
        assert!(e.compact(&ns(), true).await.unwrap().performed);
    }
    // A fresh data dir: empty cache, so the segment comes from the bucket once.
    let cold = tempfile::tempdir().unwrap();
    let fault = tidepool::store::fault::FaultStore::new(s3_store(&url).inner().clone());
    fault.count_reads_of("/segments/");
    let mut cfg = EngineConfig::new(cold.path().to_path_buf(), Store::new(fault.clone(), "counted s3"));
    cfg.compaction.auto = false;
    {
        let e = Engine::open(cfg.clone()).await.unwrap();
        assert_eq!(e.cache_temperature(&ns()).await, ("cold", 0.0), "nothing local yet");
        assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 200);
        assert_eq!(e.cache_temperature(&ns()).await.0, "hot");
        assert_eq!(fault.reads(), 1, "the cold load fetched the segment once");
        assert!(e.get(&ns(), &[DocId::U64(5)]).await.unwrap()[0].is_some());
        assert_eq!(fault.reads(), 1, "a second query does not touch the bucket's segments");
        assert!(e.metadata(&ns()).await.unwrap().to_json()["cache"]["resident_bytes"].as_u64().unwrap() > 0);
    }
    // Restart on the same data dir: the disk cache survives.
    let e = Engine::open(cfg).await.unwrap();
    assert_eq!(e.cache_temperature(&ns()).await, ("warm", 1.0), "segments on local disk, state not loaded");
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 200);
    assert_eq!(fault.reads(), 1, "after a restart the segment comes from the disk cache");
}

#[tokio::test]
async fn a_cold_ann_query_takes_three_round_trips_to_the_bucket() {
    let url = format!("s3://{}/coldq", new_bucket().await);
    let data = tempfile::tempdir().unwrap();
    {
        let e = engine_on(data.path(), &url).await;
        let rows: Vec<Json> = (0..1500u64).map(|i| json!({"id": i, "vector": spread_vector(i)})).collect();
        write(&e, json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"})).await.unwrap();
        assert!(e.compact(&ns(), true).await.unwrap().performed);
        write(&e, json!({"upsert_rows": [{"id": 9999, "vector": spread_vector(3)}]})).await.unwrap();
    }
    let fresh = tempfile::tempdir().unwrap();
    let trace =
        tidepool::store::trace::TraceStore::new(s3_store(&url).inner().clone(), std::time::Duration::ZERO);
    let mut cfg = EngineConfig::new(fresh.path().to_path_buf(), Store::new(trace.clone(), "traced s3"));
    cfg.compaction.auto = false;
    let e = Engine::open(cfg).await.unwrap();
    let body = json!({"rank_by": ["vector", "ANN", spread_vector(1234)], "top_k": 3});
    let req = tidepool::wire::query::parse_request(&body, false).unwrap();
    trace.take();
    let cold = e.try_cold_query(&ns(), &req).await.unwrap().expect("answered cold");
    let t = trace.take();
    assert!(t.sequential_round_trips() <= 3, "{} round trips: {:?}", t.sequential_round_trips(), t.events);
    let rows = cold.results[0].to_json()["rows"].as_array().cloned().unwrap();
    assert_eq!(rows[0]["id"], json!(1234));
    // The loaded namespace agrees on the nearest row, and sees the WAL row too.
    let warm = tidepool::query::execute_request(&req, &e.existing(&ns(), true).await.unwrap().state).unwrap();
    assert_eq!(warm[0].to_json()["rows"].as_array().cloned().unwrap()[0], rows[0]);
    let body = json!({"rank_by": ["vector", "ANN", spread_vector(3)], "top_k": 2});
    let req = tidepool::wire::query::parse_request(&body, false).unwrap();
    let other = tempfile::tempdir().unwrap();
    let e2 = engine_on(other.path(), &url).await;
    let two = e2.try_cold_query(&ns(), &req).await.unwrap().unwrap().results[0].to_json()["rows"]
        .as_array()
        .cloned()
        .unwrap();
    let mut ids: Vec<u64> = two.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![3, 9999], "the WAL row ties with its twin in the segment");
}

#[tokio::test]
async fn the_daemon_answers_a_cold_query_then_warms_up() {
    let url = format!("s3://{}/daemon", new_bucket().await);
    let flags = [
        "--store",
        &url,
        "--s3-endpoint",
        endpoint(),
        "--s3-allow-http",
        "--s3-access-key-id",
        "test",
        "--s3-secret-access-key",
        "test",
    ];
    let c = common::client();
    let writer_dir = tempfile::tempdir().unwrap();
    {
        let d = common::Daemon::start(writer_dir.path(), &flags);
        let rows: Vec<Json> =
            (0..1200u64).map(|i| json!({"id": i, "vector": spread_vector(i), "n": i})).collect();
        let (st, body) = common::post(&c, &d.at("/v2/namespaces/cold"), &json!({"upsert_rows": rows})).await;
        assert_eq!(st, 200, "{body}");
        let (st, body) = common::post(&c, &d.at("/v1/namespaces/cold/_admin/compact"), &json!({})).await;
        assert_eq!(st, 200, "{body}");
        d.stop();
    }
    // Another node: empty data dir, nothing cached.
    let fresh = tempfile::tempdir().unwrap();
    let d = common::Daemon::start(fresh.path(), &flags);
    let q = json!({"rank_by": ["vector", "ANN", spread_vector(77)], "top_k": 3, "include_attributes": ["n"]});
    let (st, cold) = common::post(&c, &d.at("/v2/namespaces/cold/query"), &q).await;
    assert_eq!(st, 200, "{cold}");
    assert_eq!(cold["performance"]["cache_temperature"], "cold", "{cold}");
    assert_eq!(cold["rows"][0]["id"], 77);
    assert_eq!(cold["rows"][0]["n"], 77);
    let mut hot = Json::Null;
    for _ in 0..100 {
        let (st, body) = common::post(&c, &d.at("/v2/namespaces/cold/query"), &q).await;
        assert_eq!(st, 200, "{body}");
        hot = body;
        if hot["performance"]["cache_temperature"] == "hot" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(hot["performance"]["cache_temperature"], "hot", "the background load finished: {hot}");
    assert_eq!(hot["rows"], cold["rows"]);
}

/// A distinct pseudo-random 8-d vector per id (splitmix64 of id and dimension).
fn spread_vector(i: u64) -> Vec<f32> {
    (0..8u64)
        .map(|j| {
            let mut z = (i * 8 + j).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % 2001) as f32 / 100.0 - 10.0
        })
        .collect()
}
