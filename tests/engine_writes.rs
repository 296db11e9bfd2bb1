//! Engine write path through the public library API, on a real local
//! directory: every write operation and validation error, read-your-writes,
//! reopen durability, idempotency, conditional writes, the data-dir lock, and the overlay text
//! index's chunk merges run beside a commit.

use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::{DocId, Value};
use tidepool::store::Store;

async fn open(dir: &std::path::Path) -> Arc<Engine> {
    let store = Store::local(&dir.join("store")).unwrap();
    Engine::open(EngineConfig::new(dir.to_path_buf(), store)).await.unwrap()
}

fn ns(name: &str) -> NsPath {
    NsPath::new("acme", "search", name).unwrap()
}

async fn write(e: &Engine, p: &NsPath, body: Json) -> Result<tidepool::engine::WriteResponse, EngineError> {
    e.write(p, WriteRequest::from_json(&body)?).await
}

async fn doc(e: &Engine, p: &NsPath, id: u64) -> Option<Arc<tidepool::model::Document>> {
    e.get(p, &[DocId::U64(id)]).await.unwrap().pop().flatten()
}

#[tokio::test]
async fn every_write_operation_is_read_back_immediately() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("ops");
    let r = write(
        &e,
        &p,
        json!({
            "distance_metric": "cosine_distance",
            "upsert_rows": [{"id": 1, "vector": [1.0, 0.0], "color": "red", "n": 1},
                            {"id": 2, "vector": [0.0, 1.0], "color": "blue", "n": 2}],
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.counts.upserted, 2);
    write(&e, &p, json!({"upsert_columns": {"id": [3, 4], "vector": [[1.0, 1.0], [2.0, 2.0]], "color": ["red", "green"], "n": [3, 4]}}))
        .await
        .unwrap();
    assert_eq!(doc(&e, &p, 4).await.unwrap().attrs["color"], Value::Str("green".into()));

    let r = write(&e, &p, json!({"patch_rows": [{"id": 1, "n": null, "tag": "x"}, {"id": 99, "n": 5}]}))
        .await
        .unwrap();
    assert_eq!(r.counts.patched, 1, "patching a missing id is ignored");
    let d1 = doc(&e, &p, 1).await.unwrap();
    assert!(!d1.attrs.contains_key("n"), "a null patch removes the attribute");
    assert_eq!(d1.attrs["tag"], Value::Str("x".into()));
    assert!(doc(&e, &p, 99).await.is_none());

    write(&e, &p, json!({"patch_columns": {"id": [2, 3], "tag": ["y", "z"]}})).await.unwrap();
    assert_eq!(doc(&e, &p, 3).await.unwrap().attrs["tag"], Value::Str("z".into()));

    let r = write(&e, &p, json!({"deletes": [4, 404]})).await.unwrap();
    assert_eq!(r.counts.deleted, 1);
    assert!(doc(&e, &p, 4).await.is_none());

    let r = write(&e, &p, json!({"delete_by_filter": ["color", "Eq", "blue"]})).await.unwrap();
    assert_eq!(r.counts.deleted, 1);
    assert!(doc(&e, &p, 2).await.is_none());
    assert!(doc(&e, &p, 1).await.is_some());

    let r = write(
        &e,
        &p,
        json!({"patch_by_filter": {"filters": ["color", "Eq", "red"], "patch": {"hot": true}}}),
    )
    .await
    .unwrap();
    assert_eq!(r.counts.patched, 2);
    assert_eq!(doc(&e, &p, 3).await.unwrap().attrs["hot"], Value::Bool(true));
}

#[tokio::test]
async fn one_request_combining_operations_applies_atomically_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("combo");
    write(&e, &p, json!({"upsert_rows": [{"id": 1, "k": "old"}, {"id": 2, "k": "old"}]})).await.unwrap();
    // delete_by_filter runs first, then upserts, then patches, then deletes.
    let r = write(
        &e,
        &p,
        json!({
            "delete_by_filter": ["k", "Eq", "old"],
            "upsert_rows": [{"id": 3, "k": "new"}],
            "patch_rows": [{"id": 3, "p": 1}],
            "deletes": [2],
        }),
    )
    .await
    .unwrap();
    assert_eq!((r.counts.deleted, r.counts.upserted, r.counts.patched), (2, 1, 1));
    let snap = e.snapshot(&p, true).await.unwrap();
    assert_eq!(snap.state.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), vec![DocId::U64(3)]);

    // A request that fails validation changes nothing, not even its valid parts.
    let before = snap.generation();
    let err =
        write(&e, &p, json!({"upsert_rows": [{"id": 5, "k": "fine"}, {"id": 6, "k": 7}]})).await.unwrap_err();
    assert!((err).kind() == ErrorKind::InvalidInput, "{err}");
    let after = e.snapshot(&p, true).await.unwrap();
    assert_eq!(after.generation(), before);
    assert!(after.state.get(&DocId::U64(5)).is_none());
}

#[tokio::test]
async fn every_invalid_input_gets_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("invalid");
    write(&e, &p, json!({"distance_metric": "euclidean_squared", "upsert_rows": [{"id": 1, "vector": [1.0, 2.0, 3.0], "n": 1}]}))
        .await
        .unwrap();
    let cases = [
        (json!({"upsert_rows": [{"id": "", "vector": [1.0, 2.0, 3.0]}]}), "empty"),
        (json!({"upsert_rows": [{"id": "x".repeat(65), "vector": [1.0, 2.0, 3.0]}]}), "64"),
        (json!({"upsert_rows": [{"id": "abc", "vector": [1.0, 2.0, 3.0]}]}), "mix id types"),
        (json!({"upsert_rows": [{"id": 2, "vector": [1.0, 2.0]}]}), "dimension mismatch"),
        (json!({"upsert_rows": [{"id": 2, "vector": [1.0, 2.0, 3.0], "n": "one"}]}), "type mismatch"),
        (
            json!({"distance_metric": "cosine_distance", "upsert_rows": [{"id": 2, "vector": [1.0, 2.0, 3.0]}]}),
            "cannot change",
        ),
        (json!({"distance_metric": "dot"}), "invalid distance_metric"),
        (json!({"delete_by_filter": ["n", "Near", 1]}), "Near"),
        (json!({"upsert_rows": [{"id": 2, "vector": "!!notbase64"}]}), "base64"),
        (json!({}), "no operations"),
    ];
    for (body, needle) in cases {
        let err = write(&e, &p, body.clone()).await.unwrap_err();
        assert!((err).kind() == ErrorKind::InvalidInput, "{body}: {err:?}");
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }
    let rows: Vec<Json> = (0..50_001).map(|i| json!(i)).collect();
    let err = write(&e, &p, json!({"deletes": rows})).await.unwrap_err();
    assert!(err.to_string().contains("50000"), "batch cap: {err}");
    assert_eq!(
        e.snapshot(&p, true).await.unwrap().state.len() as usize,
        1,
        "no invalid write changed anything"
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = ns("durable");
    {
        let e = open(dir.path()).await;
        for i in 0..30u64 {
            write(&e, &p, json!({"upsert_rows": [{"id": i, "v": i * 10}]})).await.unwrap();
        }
        write(&e, &p, json!({"deletes": [0, 1]})).await.unwrap();
        write(&e, &p, json!({"patch_rows": [{"id": 2, "v": null}]})).await.unwrap();
    }
    let e = open(dir.path()).await;
    let s = e.existing(&p, true).await.unwrap();
    assert_eq!(s.state.len() as usize, 28);
    assert!(s.state.get(&DocId::U64(2)).unwrap().attrs.is_empty());
    assert_eq!(s.state.get(&DocId::U64(29)).unwrap().attrs["v"], Value::Int(290));
}

#[tokio::test]
async fn conditional_writes_compare_against_the_current_document() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("cond");
    write(&e, &p, json!({"upsert_rows": [{"id": 1, "version": 5, "body": "v5"}, {"id": 2, "version": 1, "body": "v1"}]}))
        .await
        .unwrap();
    let newer_only = json!(["version", "Lt", {"$ref_new": "version"}]);
    let r = write(&e, &p, json!({
        "upsert_rows": [{"id": 1, "version": 4, "body": "stale"}, {"id": 2, "version": 2, "body": "v2"}, {"id": 3, "version": 1, "body": "new"}],
        "upsert_condition": newer_only,
    })).await.unwrap();
    assert_eq!(r.counts.upserted, 2, "the stale upsert is skipped, not an error");
    assert_eq!(doc(&e, &p, 1).await.unwrap().attrs["body"], Value::Str("v5".into()));
    assert_eq!(doc(&e, &p, 2).await.unwrap().attrs["body"], Value::Str("v2".into()));
    assert_eq!(
        doc(&e, &p, 3).await.unwrap().attrs["body"],
        Value::Str("new".into()),
        "a missing document is inserted"
    );

    let r = write(&e, &p, json!({"patch_rows": [{"id": 1, "body": "p"}, {"id": 2, "body": "p"}], "patch_condition": ["version", "Gte", 5]}))
        .await
        .unwrap();
    assert_eq!(r.counts.patched, 1);
    let r =
        write(&e, &p, json!({"deletes": [1, 2, 3], "delete_condition": ["body", "Eq", "p"]})).await.unwrap();
    assert_eq!(r.counts.deleted, 1);
    assert!(doc(&e, &p, 1).await.is_none());
    assert!(doc(&e, &p, 2).await.is_some());
}

#[tokio::test]
async fn if_version_is_a_whole_request_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("ifv");
    write(&e, &p, json!({"if_version": 0, "upsert_rows": [{"id": 1}]})).await.unwrap();
    let g = e.snapshot(&p, true).await.unwrap().generation();
    let err = write(&e, &p, json!({"if_version": g + 7, "upsert_rows": [{"id": 2}]})).await.unwrap_err();
    assert!((err).kind() == ErrorKind::PreconditionFailed, "{err:?}");
    let r = write(&e, &p, json!({"if_version": g, "upsert_rows": [{"id": 2}]})).await.unwrap();
    assert_eq!(r.generation, g + 1);
    let err = write(&e, &p, json!({"if_version": g, "upsert_rows": [{"id": 3}]})).await.unwrap_err();
    assert!((err).kind() == ErrorKind::PreconditionFailed);
    assert!(doc(&e, &p, 3).await.is_none());
}

#[tokio::test]
async fn if_version_survives_compaction_and_labels_but_not_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("ifvc");
    let v = write(&e, &p, json!({"upsert_rows": [{"id": 1, "n": 1}]})).await.unwrap().generation;
    // Generations that only reorganize storage or relabel keep the content v names.
    let compacted = e.compact(&p, true).await.unwrap().generation;
    assert!(compacted > v);
    let changes = [("env".to_owned(), Some("test".to_owned()))].into();
    let labelled = e.set_labels(&p, &changes).await.unwrap().generation;
    assert!(labelled > compacted, "{labelled} {compacted}");
    let r = write(&e, &p, json!({"if_version": v, "patch_rows": [{"id": 1, "n": 2}]})).await.unwrap();
    assert_eq!(doc(&e, &p, 1).await.unwrap().attrs["n"], Value::Int(2));
    // That write changed the content: v (and the compacted generation) are stale now.
    for stale in [v, compacted, labelled] {
        let err =
            write(&e, &p, json!({"if_version": stale, "patch_rows": [{"id": 1, "n": 3}]})).await.unwrap_err();
        assert!(err.kind() == ErrorKind::PreconditionFailed, "{stale}: {err:?}");
    }
    write(&e, &p, json!({"if_version": r.generation, "patch_rows": [{"id": 1, "n": 4}]})).await.unwrap();
    assert_eq!(doc(&e, &p, 1).await.unwrap().attrs["n"], Value::Int(4));
}

#[tokio::test]
async fn idempotent_retry_returns_the_first_result_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = ns("idem");
    let body = json!({"idempotency_key": "batch-42", "upsert_rows": [{"id": 1, "n": 1}, {"id": 2, "n": 2}]});
    let first_gen;
    {
        let e = open(dir.path()).await;
        let first = write(&e, &p, body.clone()).await.unwrap();
        assert!(!first.deduplicated);
        first_gen = first.generation;
        write(&e, &p, json!({"patch_rows": [{"id": 1, "n": 100}]})).await.unwrap();
        let again = write(&e, &p, body.clone()).await.unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.counts.upserted, 2);
        assert_eq!(doc(&e, &p, 1).await.unwrap().attrs["n"], Value::Int(100), "the retry did not re-apply");
        assert_eq!(
            e.snapshot(&p, true).await.unwrap().generation(),
            first_gen + 1,
            "the retry committed nothing"
        );
    }
    // After a restart the key is still known (from the WAL and the local record).
    let e = open(dir.path()).await;
    let again = write(&e, &p, body).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(e.snapshot(&p, true).await.unwrap().generation(), first_gen + 1);
}

/// Invariant: a key stays answered after a crash even once compaction folded its WAL batch
/// away. The commit record (`meta.redb`) is not fsynced on its own; the commit that folds the
/// batch makes it durable before its manifest. The crash is taken right after that manifest is
/// created (its CURRENT hint held), before the compaction lowers any count, and nothing else
/// raised a count durably since the key's write (the last one; no segment: every row deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_survives_a_crash_after_its_batch_is_folded() {
    use tidepool::engine::CompactionConfig;
    let dir = tempfile::tempdir().unwrap();
    let p = ns("idem-fold");
    let fault = std::sync::OnceLock::new();
    let store = Store::local(&dir.path().join("store")).unwrap().with_inner(|inner| {
        let f = tidepool::store::fault::FaultStore::new(inner);
        let _ = fault.set(f.clone());
        f
    });
    let fault = fault.get().unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.unwrap();
    write(&e, &p, json!({"upsert_rows": [{"id": 1, "n": 1}]})).await.unwrap();
    let body = json!({"idempotency_key": "k1", "deletes": [1]});
    assert_eq!(write(&e, &p, body.clone()).await.unwrap().counts.deleted, 1);

    fault.hold_puts("CURRENT");
    let compaction = tokio::spawn({
        let (e, p) = (Arc::clone(&e), p.clone());
        async move { e.compact(&p, true).await.unwrap() }
    });
    while fault.waiting_puts() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // What a kill -9 leaves now: the metadata file as the page cache holds it (redb recovers
    // it on open), beside the same store.
    let crashed = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("meta.redb"), crashed.path().join("meta.redb")).unwrap();
    fault.release_puts();
    compaction.await.unwrap();
    assert!(e.snapshot(&p, true).await.unwrap().manifest.unwrap().wal.is_empty(), "the batch is folded");

    let store = Store::local(&dir.path().join("store")).unwrap();
    let after = Engine::open(EngineConfig::new(crashed.path().to_path_buf(), store)).await.unwrap();
    let again = write(&after, &p, body).await.unwrap();
    assert!(again.deduplicated && again.counts.deleted == 1, "the retry applied again: {again:?}");
    assert!(doc(&after, &p, 1).await.is_none());
}

#[tokio::test]
async fn namespaces_are_created_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    for name in ["alpha", "beta", "beta2", "gamma"] {
        write(&e, &ns(name), json!({"upsert_rows": [{"id": 1}]})).await.unwrap();
    }
    let all = e.list_namespaces("acme", "search", None, None, 100).await.unwrap();
    assert_eq!(all.namespaces, vec!["alpha", "beta", "beta2", "gamma"]);
    let page = e.list_namespaces("acme", "search", None, None, 2).await.unwrap();
    assert_eq!(page.namespaces, vec!["alpha", "beta"]);
    let next = e.list_namespaces("acme", "search", None, page.next_cursor.as_deref(), 2).await.unwrap();
    assert_eq!(next.namespaces, vec!["beta2", "gamma"]);
    assert_eq!(
        e.list_namespaces("acme", "search", Some("beta"), None, 10).await.unwrap().namespaces,
        vec!["beta", "beta2"]
    );
    assert!(e.list_namespaces("other", "search", None, None, 10).await.unwrap().namespaces.is_empty());

    e.delete_namespace(&ns("beta")).await.unwrap();
    assert!(matches!(e.delete_namespace(&ns("beta")).await, Err(ref e) if e.kind() == ErrorKind::NotFound));
    assert!(matches!(e.metadata(&ns("beta")).await, Err(ref e) if e.kind() == ErrorKind::NotFound));
    assert_eq!(
        e.list_namespaces("acme", "search", Some("beta"), None, 10).await.unwrap().namespaces,
        vec!["beta2"]
    );
    // The deleted namespace's WAL objects are gone.
    let keys = e.store().list(&ns("beta").prefix()).await.unwrap();
    assert!(keys.iter().all(|o| !o.key.contains("/wal/")), "{keys:?}");

    // A later write re-creates it, empty.
    write(&e, &ns("beta"), json!({"upsert_rows": [{"id": "s"}]})).await.unwrap();
    let s = e.existing(&ns("beta"), true).await.unwrap();
    assert_eq!(s.state.len() as usize, 1, "ids from before the delete are gone, and the id type was reset");

    let err = write(&e, &ns("nope"), json!({"create_namespace": false, "upsert_rows": [{"id": 1}]}))
        .await
        .unwrap_err();
    assert!((err).kind() == ErrorKind::NotFound);
    let md = e.metadata(&ns("alpha")).await.unwrap().to_json();
    assert_eq!(md["approx_row_count"], 1);
    assert_eq!(md["schema"]["id"]["type"], "uint");
}

#[tokio::test]
async fn schema_is_explicit_or_inferred_and_types_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path()).await;
    let p = ns("schema");
    write(
        &e,
        &p,
        json!({
            "schema": {"body": {"type": "string", "full_text_search": true}, "price": "float"},
            "upsert_rows": [{"id": 1, "body": "hello world", "price": 3, "tags": ["a", "b"]}],
        }),
    )
    .await
    .unwrap();
    let s = e.existing(&p, true).await.unwrap();
    let schema = tidepool::wire::namespace::schema_json(&s.state);
    assert_eq!(schema["price"]["type"], "float");
    assert_eq!(schema["tags"]["type"], "[]string");
    assert_eq!(schema["body"]["filterable"], false);
    let err = write(&e, &p, json!({"upsert_rows": [{"id": 2, "tags": "notarray"}]})).await.unwrap_err();
    assert!(err.to_string().contains("tags"), "{err}");
    let update = |v: serde_json::Value| tidepool::wire::admin::parse_schema_update(&v).unwrap();
    let err = e.update_schema(&p, update(json!({"price": "string"}))).await.unwrap_err();
    assert!(err.to_string().contains("cannot change"), "{err}");
    e.update_schema(
        &p,
        update(json!({"body": {"type": "string", "full_text_search": true, "filterable": true}})),
    )
    .await
    .unwrap();
    let s = e.existing(&p, true).await.unwrap();
    assert_eq!(tidepool::wire::namespace::schema_json(&s.state)["body"]["filterable"], true);
}

#[tokio::test]
async fn a_second_engine_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _e = open(dir.path()).await;
    let store = Store::local(&dir.path().join("store")).unwrap();
    let err = Engine::open(EngineConfig::new(dir.path().to_path_buf(), store)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("locked") && msg.contains("pid="), "{msg}");
}

/// A group's overlay text chunks are merged beside its commit (`state/text_settle.rs`): after
/// many writes the cached state's index of a full-text attribute is in a few chunks, not one
/// per write, and BM25 over it answers as the scan of the overlay does.
#[tokio::test]
async fn a_writes_text_chunks_are_merged_beside_its_commit() {
    use tidepool::engine::CompactionConfig;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.unwrap();
    let p = ns("text-merges");
    let words = ["red", "fox", "runs", "lazy", "dog", "blue"];
    for w in 0..48u64 {
        // 100 rows with text: a prebuilt chunk per request.
        let rows: Vec<Json> = (0..100u64)
            .map(|i| {
                let id = w * 100 + i;
                let t = format!(
                    "{} {} {}",
                    words[(id % 6) as usize],
                    words[(id / 6 % 6) as usize],
                    words[(w % 6) as usize]
                );
                json!({"id": id, "t": t})
            })
            .collect();
        let mut body = json!({"upsert_rows": rows});
        body["schema"] = json!({"t": {"type": "string", "full_text_search": true}});
        write(&e, &p, body).await.unwrap();
    }
    let s = e.existing(&p, true).await.unwrap();
    let view = s.state.overlay_text("t").expect("indexed");
    assert_eq!(view.num_docs(), 4800);
    assert!(view.chunks() <= 12, "48 written chunks merged to a few: {}", view.chunks());
    let scan = (*s.state).clone().without_text_index();
    for q in ["fox", "red dog", "lazy blue runs"] {
        let body = json!({"rank_by": ["t", "BM25", q], "top_k": 20});
        let r = tidepool::wire::query::parse_request(&body, false).unwrap();
        let indexed = tidepool::query::execute(&r.queries[0], &s.state).unwrap();
        let scanned = tidepool::query::execute(&r.queries[0], &scan).unwrap();
        assert_eq!(indexed.rows, scanned.rows, "query {q}");
        assert_eq!(indexed.rows.map_or(0, |r| r.len()), 20);
    }
}
