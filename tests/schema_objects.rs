//! Schemas stored once per change (`storage-format.md` 4.5), end to end on
//! real files.
//!
//! Invariants guarded: after a write that makes the schema large, one-row
//! writes add a small manifest and no schema object (the schema is stored
//! once per change, and a change stores exactly one new object, releasing the
//! old; compaction stores none); every reader resolves the schema — a restart with the same data dir,
//! a cold start with an empty one, the CURRENT-embedded manifest, the offline
//! path from `meta.redb`; branches share the parent's schema object by
//! refcount and keep it alive after the parent is deleted; a deep copy and a
//! snapshot restore get their own copy; deleting the last holder deletes it
//! (directly, or by repair's sweep); a damaged schema object is a corruption
//! (never an empty schema), reported by verify, and the namespace can still
//! be deleted. The HTTP test checks the same bound through the daemon.

use crate::common;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value as Json};
use tidepool::engine::repair::RepairOptions;
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::format::manifest::{Manifest, SCHEMA_INLINE_MAX_BYTES};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::Store;

const ATTRS: usize = 200;

fn ns(name: &str) -> NsPath {
    NsPath::new("o", "p", name).unwrap()
}

async fn engine_with(data_dir: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data_dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

async fn write(e: &Engine, name: &str, body: Json) -> Result<tidepool::engine::WriteResponse, EngineError> {
    e.write(&ns(name), WriteRequest::from_json(&body)?).await
}

fn attr(i: usize) -> String {
    format!("a_long_and_descriptive_attribute_name_for_schema_storage_tests_{i:03}")
}

/// One row carrying every one of the many attributes.
fn wide_row(id: u64) -> Json {
    let mut row = Map::new();
    row.insert("id".into(), json!(id));
    for i in 0..ATTRS {
        row.insert(attr(i), json!(format!("v{i}")));
    }
    json!({ "upsert_rows": [Json::Object(row)] })
}

/// A one-row write that does not change the schema.
fn narrow_row(id: u64) -> Json {
    json!({ "upsert_rows": [{"id": id, (attr(0)): format!("n{id}")}] })
}

async fn ids(e: &Engine, name: &str) -> Option<BTreeSet<DocId>> {
    match e.existing(&ns(name), true).await {
        Ok(s) => Some(s.state.iter_from(Bound::Unbounded).map(|d| d.id.clone()).collect()),
        Err(ref err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => panic!("{name}: {err}"),
    }
}

async fn newest(e: &Engine, name: &str) -> Arc<Manifest> {
    e.latest_manifest(&ns(name)).await.unwrap().unwrap()
}

/// Schema objects stored under a namespace's prefix.
async fn schema_objects(store: &Store, name: &str) -> Vec<String> {
    let prefix = format!("{}schemas/", ns(name).prefix());
    store.list(&prefix).await.unwrap().into_iter().map(|o| o.key).collect()
}

/// The stored size of every manifest of a namespace, by generation.
async fn manifest_sizes(store: &Store, name: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = store
        .list(&ns(name).manifests_prefix())
        .await
        .unwrap()
        .into_iter()
        .filter_map(|o| tidepool::layout::manifest_generation(&o.key).map(|g| (g, o.size)))
        .collect();
    out.sort_unstable();
    out
}

/// A namespace `name` holding one wide row (the large schema) and 50 one-row writes.
async fn wide_namespace(e: &Engine, name: &str) {
    write(e, name, wide_row(0)).await.unwrap();
    for id in 1..=50 {
        write(e, name, narrow_row(id)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_writes_after_a_large_schema_store_small_manifests_and_no_schema_object() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    wide_namespace(&e, "w").await;

    let m = newest(&e, "w").await;
    assert_eq!(m.generation, 51);
    assert_eq!(m.schema.len(), ATTRS, "the resolved schema");
    let schema_len = tidepool::format::manifest::schema_json(&m.schema).len();
    assert!(schema_len > 4 * SCHEMA_INLINE_MAX_BYTES, "the schema is large: {schema_len} bytes");
    let objects = schema_objects(&store, "w").await;
    assert_eq!(objects.len(), 1, "one schema object for one schema change: {objects:?}");
    assert_eq!(m.schema_ref.as_ref().map(|r| &r.key), Some(&objects[0]));
    // Each generation adds one WAL reference (folded away by compaction), never the schema.
    let sizes = manifest_sizes(&store, "w").await;
    assert!(sizes[0].1 < 2048, "the first manifest references the schema: {:?}", sizes[0]);
    for w in sizes.windows(2) {
        let grew = w[1].1.saturating_sub(w[0].1);
        assert!(grew < 256, "manifest {} grew by {grew} bytes over {}: {sizes:?}", w[1].0, w[0].0);
    }
    eprintln!(
        "schema {schema_len} bytes; manifests {} (first) .. {} (generation 51) bytes",
        sizes[0].1,
        sizes.last().unwrap().1
    );
    let current = store.get(&ns("w").current_key()).await.unwrap();
    let last = sizes.last().unwrap().1;
    assert!(
        (current.len() as u64) < last + 256,
        "CURRENT embeds the small manifest: {} bytes",
        current.len()
    );
    // Compaction folds the WAL references away and keeps the schema object.
    e.compact(&ns("w"), true).await.unwrap();
    let compacted = manifest_sizes(&store, "w").await.last().copied().unwrap();
    assert!(compacted.1 < 4096, "the compacted manifest is small: {compacted:?}");
    eprintln!("compacted manifest {} bytes", compacted.1);
    assert_eq!(schema_objects(&store, "w").await, objects, "compaction stores no schema object");
    assert_eq!(newest(&e, "w").await.schema_ref, m.schema_ref);
    assert_eq!(ids(&e, "w").await.unwrap().len(), 51);

    // A schema change stores exactly one new object and releases the old one.
    let old = objects[0].clone();
    write(&e, "w", json!({"upsert_rows": [{"id": 99, "one_more_attribute": 1}]})).await.unwrap();
    let objects = schema_objects(&store, "w").await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_ne!(objects[0], old, "a new schema object for the change");
    assert!(!store.exists(&old).await.unwrap(), "the superseded schema object was deleted at refcount zero");
    assert_eq!(newest(&e, "w").await.schema.len(), ATTRS + 1);

    // Restart on the same data dir: the manifest cached in meta.redb (the
    // offline path) resolves its schema too.
    drop(e);
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    let offline = e.offline_snapshot(&ns("w")).await.unwrap();
    assert_eq!(offline.manifest.as_ref().unwrap().schema.len(), ATTRS + 1);
    assert!(offline.state.schema.contains_key("one_more_attribute"));
    drop(e);
    // Then a restart, and a cold start with nothing local.
    for (extra, data) in [(0u64, "data"), (1, "cold")] {
        let e = engine_with(&dir.path().join(data), store.clone()).await;
        let s = e.existing(&ns("w"), true).await.unwrap();
        assert_eq!(s.state.len(), 52 + extra, "{data}");
        assert_eq!(s.manifest.as_ref().unwrap().schema.len(), ATTRS + 1, "{data}");
        assert!(s.state.schema.contains_key(&attr(ATTRS - 1)), "{data}: the state has the stored schema");
        // Writes after the restart keep the object.
        write(&e, "w", narrow_row(100 + extra)).await.unwrap();
        assert_eq!(schema_objects(&store, "w").await, objects, "{data}");
    }

    // Deleting the namespace releases its schema object.
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    e.delete_namespace(&ns("w")).await.unwrap();
    assert!(schema_objects(&store, "w").await.is_empty(), "the schema object outlived its namespace");
    assert_eq!(ids(&e, "w").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_share_the_schema_object_and_copies_and_restores_get_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    wide_namespace(&e, "parent").await;
    let parent_obj = schema_objects(&store, "parent").await;
    assert_eq!(parent_obj.len(), 1);

    // A branch references the parent's object; its one-row writes add none.
    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
    write(&e, "child", narrow_row(500)).await.unwrap();
    let child = newest(&e, "child").await;
    assert_eq!(child.schema_ref.as_ref().map(|r| &r.key), Some(&parent_obj[0]));
    assert!(schema_objects(&store, "child").await.is_empty());
    assert_eq!(e.meta().refcounts("o/p").unwrap().get(&parent_obj[0]).copied(), Some(2));

    // A deep copy gets its own object under its prefix.
    e.copy_namespace(&ns("parent"), &ns("deep"), true, None).await.unwrap();
    let deep_obj = schema_objects(&store, "deep").await;
    assert_eq!(deep_obj.len(), 1);
    assert_eq!(newest(&e, "deep").await.schema_ref.as_ref().map(|r| &r.key), Some(&deep_obj[0]));
    assert_eq!(newest(&e, "deep").await.schema, newest(&e, "parent").await.schema);

    // A snapshot carries the object; a restore on another node writes its own.
    let mut snap = Vec::new();
    let info = e.write_snapshot(&ns("parent"), None, &mut snap).await.unwrap();
    assert_eq!(info.objects, 52, "51 WAL batches and the schema object");
    let other = tempfile::tempdir().unwrap();
    let other_store = Store::local(&other.path().join("store")).unwrap();
    let o = engine_with(&other.path().join("data"), other_store.clone()).await;
    let (restored, _) = o.restore_snapshot(&ns("r"), &mut snap.as_slice()).await.unwrap();
    assert_eq!(restored.schema, newest(&e, "parent").await.schema, "the restore answers with the schema");
    let r_obj = schema_objects(&other_store, "r").await;
    assert_eq!(r_obj.len(), 1);
    assert_eq!(restored.schema_ref.as_ref().map(|r| &r.key), Some(&r_obj[0]));
    drop(o);
    let o = engine_with(&other.path().join("cold"), other_store.clone()).await;
    assert_eq!(ids(&o, "r").await.unwrap().len(), 51);
    assert_eq!(newest(&o, "r").await.schema.len(), ATTRS);

    // Deleting the parent keeps the object its branch references.
    e.delete_namespace(&ns("parent")).await.unwrap();
    assert_eq!(schema_objects(&store, "parent").await, parent_obj, "the branch still references it");
    drop(e);
    let e = engine_with(&dir.path().join("cold"), store.clone()).await;
    assert_eq!(ids(&e, "child").await.unwrap().len(), 52);
    assert_eq!(newest(&e, "child").await.schema.len(), ATTRS);
    drop(e);

    // Then deleting the branch drops the last reference: the sweep reclaims the object.
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    e.delete_namespace(&ns("child")).await.unwrap();
    // (Older retained generations still reference it until manifest GC collects them.)
    let opts = RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: None };
    e.repair("o", "p", opts).await.unwrap();
    assert_eq!(schema_objects(&store, "parent").await, parent_obj, "retained generations reference it");
    let opts = RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: Some(0) };
    e.repair("o", "p", opts).await.unwrap();
    assert!(schema_objects(&store, "parent").await.is_empty(), "no manifest references it any more");
    assert_eq!(schema_objects(&store, "deep").await, deep_obj, "the deep copy's own object is live");
    assert_eq!(ids(&e, "deep").await.unwrap().len(), 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_schema_object_is_a_corruption_reported_by_verify_and_the_namespace_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    write(&e, "d", wide_row(0)).await.unwrap();
    write(&e, "d", narrow_row(1)).await.unwrap();
    let key = schema_objects(&store, "d").await.pop().unwrap();
    let mut bytes = store.get(&key).await.unwrap().to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    store.delete(&key).await.unwrap();
    store.put(&key, Bytes::from(bytes)).await.unwrap();
    drop(e);

    // A restart (the refcounts of this data dir know the object).
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    let err = e.existing(&ns("d"), true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.to_string().contains("schema object"), "{err}");
    let report = e.verify("o", "p", &|_, _| {}).await.unwrap();
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(report.damaged[0].key, key);
    assert_eq!(report.damaged[0].namespaces, vec!["d".to_owned()]);
    e.delete_namespace(&ns("d")).await.unwrap();
    assert_eq!(ids(&e, "d").await, None);
    assert!(schema_objects(&store, "d").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_http_one_row_writes_after_a_large_schema_keep_manifests_small() {
    let dir = tempfile::tempdir().unwrap();
    let d = common::Daemon::start(dir.path(), &[]);
    let c = common::client();
    let url = d.at("/v2/namespaces/h");
    let (status, body) = common::post(&c, &url, &wide_row(0)).await;
    assert_eq!(status, 200, "{body}");
    for id in 1..=20 {
        let (status, body) = common::post(&c, &url, &narrow_row(id)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = common::post(
        &c,
        &d.at("/v2/namespaces/h/query"),
        &json!({"filters": [(attr(ATTRS - 1)), "Eq", "v199"], "rank_by": ["id", "asc"], "top_k": 5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(d.stop().success(), "the daemon stops cleanly");
    let ns_dir = std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).map(|e| e.path());
    let manifests: Vec<std::path::PathBuf> = ns_dir
        .flat_map(|p| walk(&p))
        .filter(|p| p.to_string_lossy().contains("/namespaces/h/manifests/"))
        .collect();
    assert_eq!(manifests.len(), 21, "{manifests:?}");
    let mut sizes: Vec<(String, u64)> = manifests
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::metadata(p).unwrap().len()))
        .collect();
    sizes.sort();
    // The schema (over 20 KB) is in no manifest: the first is small, and each
    // later one grows by at most its new WAL reference.
    assert!(sizes[0].1 < 2048, "{sizes:?}");
    for w in sizes.windows(2) {
        assert!(w[1].1 < w[0].1 + 256, "{sizes:?}");
    }
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    if p.is_dir() {
        std::fs::read_dir(p).unwrap().filter_map(Result::ok).flat_map(|e| walk(&e.path())).collect()
    } else {
        vec![p.to_path_buf()]
    }
}

/// A stored schema the API would refuse today (an unknown tokenizer, a `k1` below 0) still
/// loads, cold from the bucket: the load path takes the manifest's typed schema as stored
/// (`storage-format.md` 4.2.1) and never runs it through the API's parser again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_schema_the_api_refuses_today_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    let body = json!({
        "upsert_rows": [{"id": 1, "title": "hello world"}],
        "schema": {"title": {"type": "string", "full_text_search": true}},
    });
    write(&e, "odd", body).await.unwrap();
    // Folded into a segment: a WAL batch replayed at load would re-apply its schema update.
    e.compact(&ns("odd"), true).await.unwrap();
    let mut m = (*newest(&e, "odd").await).clone();
    assert!(m.wal.is_empty());
    drop(e);
    // The next generation, as a later build might have written it, published by hand.
    let fts = m.schema.get_mut("title").unwrap().full_text_search.as_mut().unwrap();
    fts.tokenizer = "word_v9".into();
    fts.k1 = -1.0;
    let api = tidepool::schema::parse_schema(&tidepool::schema::schema_to_json(&m.schema));
    assert!(api.is_err(), "the API refuses this schema today");
    m.previous_generation = Some(m.generation);
    m.generation += 1;
    m.commit_id = "ab".repeat(16);
    m.data_generation = None;
    store.put(&ns("odd").manifest_key(m.generation), Bytes::from(m.try_encode().unwrap())).await.unwrap();

    let e = engine_with(&dir.path().join("cold"), store.clone()).await;
    let s = e.existing(&ns("odd"), true).await.unwrap();
    assert_eq!(s.manifest.as_ref().unwrap().generation, m.generation);
    assert_eq!(s.state.schema, m.schema, "the state has the stored schema");
    assert_eq!(s.state.len(), 1);
}
