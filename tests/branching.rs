//! Copy-on-write branches, shallow and deep copies, lineage and time travel.
//!
//! Invariants guarded: a branch costs the same number of object-store
//! mutations whatever the size of its source; writes and compactions on
//! either side are invisible to the other; branches of branches work;
//! deleting a parent leaves its children fully readable; a deep copy shares
//! no object with its source; destinations must be new (or empty) and in the
//! same project; an older retained generation can be read and branched.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::fault::FaultStore;
use tidepool::store::Store;

fn ns(name: &str) -> NsPath {
    NsPath::new("o", "p", name).unwrap()
}

async fn engine_with(data_dir: &std::path::Path, store: Store, auto_compact: bool) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data_dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: auto_compact, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

async fn write(e: &Engine, name: &str, body: Json) -> Result<tidepool::engine::WriteResponse, EngineError> {
    e.write(&ns(name), WriteRequest::from_json(&body)?).await
}

/// Every live document of a namespace, id → JSON.
async fn docs(e: &Engine, name: &str) -> BTreeMap<DocId, Json> {
    let s = e.existing(&ns(name), true).await.unwrap_or_else(|err| panic!("{name}: {err}"));
    s.state.iter_from(Bound::Unbounded).map(|d| (d.id.clone(), d.to_json())).collect()
}

fn rows(ids: impl IntoIterator<Item = u64>, tag: &str) -> Json {
    let rows: Vec<Json> = ids.into_iter().map(|i| json!({"id": i, "tag": tag, "n": i})).collect();
    json!({ "upsert_rows": rows })
}

fn model(ids: impl IntoIterator<Item = u64>, tag: &str) -> BTreeMap<DocId, Json> {
    ids.into_iter().map(|i| (DocId::U64(i), json!({"id": i, "n": i, "tag": tag}))).collect()
}

fn faulty(dir: &std::path::Path) -> (Store, Arc<FaultStore>) {
    let local = Store::local(dir).unwrap();
    let fault = FaultStore::new(local.inner().clone());
    (Store::new(fault.clone(), "faulty"), fault)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branch_cost_is_the_same_for_100_and_100000_documents() {
    let mut costs = Vec::new();
    for n in [100u64, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let (store, fault) = faulty(&dir.path().join("store"));
        let e = engine_with(&dir.path().join("data"), store, false).await;
        let per_write = 20_000u64.min(n);
        for start in (0..n).step_by(usize::try_from(per_write).unwrap()) {
            write(&e, "big", rows(start..start + per_write, "p")).await.unwrap();
        }
        assert_eq!(e.existing(&ns("big"), true).await.unwrap().state.len(), n);
        let before = fault.mutations();
        fault.count_reads_of("/wal/");
        let out = e.branch_namespace(&ns("big"), &ns("child"), None).await.unwrap();
        costs.push(fault.mutations() - before);
        assert_eq!(fault.reads(), 0, "a branch reads no data object");
        assert_eq!(out.objects_copied, 0);
        assert_eq!(e.existing(&ns("child"), true).await.unwrap().state.len(), n);
    }
    assert_eq!(costs[0], costs[1], "branch cost depends on the namespace size: {costs:?}");
    assert!(costs[0] <= 2, "a branch is one manifest create and a CURRENT hint: {costs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn branch_isolation_holds_in_both_directions_under_interleaved_writes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    write(&e, "parent", rows(0..20, "base")).await.unwrap();
    e.compact(&ns("parent"), true).await.unwrap();
    write(&e, "parent", rows(20..30, "base")).await.unwrap();
    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
    let mut parent = model(0..30, "base");
    let mut child = parent.clone();
    for round in 0..6u64 {
        // Parent: overwrite a shared range, delete one shared id, add new ids.
        let tag = format!("p{round}");
        write(&e, "parent", rows(round * 3..round * 3 + 3, &tag)).await.unwrap();
        parent.extend(model(round * 3..round * 3 + 3, &tag));
        write(&e, "parent", json!({"deletes": [25 + round % 5]})).await.unwrap();
        parent.remove(&DocId::U64(25 + round % 5));
        // Child: overwrite an overlapping range, delete another id, add its own.
        let tag = format!("c{round}");
        write(&e, "child", rows(round * 2 + 1..round * 2 + 4, &tag)).await.unwrap();
        child.extend(model(round * 2 + 1..round * 2 + 4, &tag));
        write(&e, "child", json!({"deletes": [10 + round]})).await.unwrap();
        child.remove(&DocId::U64(10 + round));
        write(&e, "child", rows([1000 + round], &tag)).await.unwrap();
        child.extend(model([1000 + round], &tag));
        if round % 2 == 0 {
            e.compact(&ns("parent"), true).await.unwrap();
        } else {
            e.compact(&ns("child"), true).await.unwrap();
        }
        assert_eq!(docs(&e, "parent").await, parent, "round {round}: parent");
        assert_eq!(docs(&e, "child").await, child, "round {round}: child");
    }
    // A cold engine (fresh data dir, same store) sees the same two histories.
    drop(e);
    let cold =
        engine_with(&dir.path().join("cold"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    assert_eq!(docs(&cold, "parent").await, parent);
    assert_eq!(docs(&cold, "child").await, child);
}

#[tokio::test]
async fn writes_to_one_side_only_touch_that_sides_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone(), false).await;
    write(&e, "parent", rows(0..5, "a")).await.unwrap();
    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
    let parent_before = store.list(&ns("parent").prefix()).await.unwrap();
    write(&e, "child", rows(0..3, "b")).await.unwrap();
    e.compact(&ns("child"), true).await.unwrap();
    let parent_after = store.list(&ns("parent").prefix()).await.unwrap();
    let keys = |v: &Vec<tidepool::store::ObjectInfo>| v.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&parent_before), keys(&parent_after), "a child's write or compaction touched the parent");
}

#[tokio::test]
async fn three_level_branches_each_keep_their_own_history() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    write(&e, "a", rows(0..10, "a")).await.unwrap();
    e.branch_namespace(&ns("a"), &ns("b"), None).await.unwrap();
    write(&e, "b", rows(10..20, "b")).await.unwrap();
    e.compact(&ns("b"), true).await.unwrap();
    e.branch_namespace(&ns("b"), &ns("c"), None).await.unwrap();
    write(&e, "c", json!({"deletes": [0, 15]})).await.unwrap();
    write(&e, "a", rows(100..101, "a")).await.unwrap();

    let mut a = model(0..10, "a");
    a.extend(model(100..101, "a"));
    let mut b = model(0..10, "a");
    b.extend(model(10..20, "b"));
    let mut c = b.clone();
    c.remove(&DocId::U64(0));
    c.remove(&DocId::U64(15));
    assert_eq!(docs(&e, "a").await, a);
    assert_eq!(docs(&e, "b").await, b);
    assert_eq!(docs(&e, "c").await, c);
    let l = e.lineage(&ns("c")).await.unwrap().unwrap();
    assert_eq!(l.parent, "o/p/b");
    assert_eq!(e.lineage(&ns("b")).await.unwrap().unwrap().parent, "o/p/a");
    assert!(e.lineage(&ns("a")).await.unwrap().is_none());
}

#[tokio::test]
async fn deleting_the_parent_leaves_the_child_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let e = engine_with(&dir.path().join("data"), Store::local(&store_dir).unwrap(), false).await;
    write(&e, "parent", rows(0..50, "p")).await.unwrap();
    e.compact(&ns("parent"), true).await.unwrap();
    write(&e, "parent", rows(50..60, "p")).await.unwrap();
    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
    e.delete_namespace(&ns("parent")).await.unwrap();
    let expected = model(0..60, "p");
    assert_eq!(docs(&e, "child").await, expected);
    // Repair with an immediate sweep must not touch anything the child uses.
    let opts =
        tidepool::engine::repair::RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: Some(0) };
    e.repair("o", "p", opts).await.unwrap();
    drop(e);
    let cold = engine_with(&dir.path().join("cold"), Store::local(&store_dir).unwrap(), false).await;
    assert_eq!(docs(&cold, "child").await, expected);
    // The child keeps working: writes and compaction after its parent is gone.
    write(&cold, "child", rows(60..61, "c")).await.unwrap();
    cold.compact(&ns("child"), true).await.unwrap();
    let mut more = expected.clone();
    more.extend(model(60..61, "c"));
    assert_eq!(docs(&cold, "child").await, more);
}

#[tokio::test]
async fn deleting_the_child_leaves_the_parent_readable_and_shared_objects_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone(), false).await;
    write(&e, "parent", rows(0..10, "p")).await.unwrap();
    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
    let shared = e.latest_manifest(&ns("parent")).await.unwrap().unwrap().object_keys();
    e.delete_namespace(&ns("child")).await.unwrap();
    for k in &shared {
        assert!(store.exists(k).await.unwrap(), "{k} was deleted while the parent references it");
        assert_eq!(e.meta().refcount("o/p", k).unwrap(), 1);
    }
    assert_eq!(docs(&e, "parent").await, model(0..10, "p"));
}

#[tokio::test]
async fn a_deep_copy_shares_no_object_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone(), false).await;
    write(&e, "src", rows(0..30, "s")).await.unwrap();
    e.compact(&ns("src"), true).await.unwrap();
    write(&e, "src", rows(30..40, "s")).await.unwrap();
    let out = e.copy_namespace(&ns("src"), &ns("deep"), true, None).await.unwrap();
    assert!(out.objects_copied > 0 && out.objects_shared == 0);
    let m = e.latest_manifest(&ns("deep")).await.unwrap().unwrap();
    assert!(m.lineage.is_none());
    for k in m.object_keys() {
        assert!(ns("deep").owns(&k), "deep copy references {k}");
    }
    e.delete_namespace(&ns("src")).await.unwrap();
    let opts =
        tidepool::engine::repair::RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: Some(0) };
    e.repair("o", "p", opts).await.unwrap();
    assert!(store.list(&format!("{}wal/", ns("src").prefix())).await.unwrap().is_empty());
    assert_eq!(docs(&e, "deep").await, model(0..40, "s"));
}

#[tokio::test]
async fn a_shallow_copy_shares_objects_without_lineage_and_via_the_write_body() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    write(&e, "src", rows(0..5, "s")).await.unwrap();
    let r = write(&e, "copy", json!({"copy_from_namespace": "src"})).await.unwrap();
    assert_eq!(r.generation, 1);
    assert!(e.lineage(&ns("copy")).await.unwrap().is_none());
    write(&e, "br", json!({"branch_from_namespace": {"source_namespace": "src"}})).await.unwrap();
    assert_eq!(e.lineage(&ns("br")).await.unwrap().unwrap().parent, "o/p/src");
    assert_eq!(docs(&e, "copy").await, model(0..5, "s"));
    assert_eq!(docs(&e, "br").await, model(0..5, "s"));
    let keys = e.latest_manifest(&ns("src")).await.unwrap().unwrap().object_keys();
    for k in keys {
        assert_eq!(e.meta().refcount("o/p", &k).unwrap(), 3, "{k}");
    }
}

#[tokio::test]
async fn branch_destinations_must_be_new_or_empty_and_in_the_same_project() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    write(&e, "src", rows(0..3, "s")).await.unwrap();
    write(&e, "full", rows(0..1, "f")).await.unwrap();
    let err = e.branch_namespace(&ns("src"), &ns("full"), None).await.unwrap_err();
    assert!((err).kind() == ErrorKind::PreconditionFailed, "{err:?}");
    let other = NsPath::new("o", "q", "dst").unwrap();
    assert!(
        matches!(e.branch_namespace(&ns("src"), &other, None).await, Err(ref e) if e.kind() == ErrorKind::InvalidInput)
    );
    assert!(matches!(
        e.branch_namespace(&ns("src"), &ns("src"), None).await,
        Err(ref e) if e.kind() == ErrorKind::InvalidInput
    ));
    assert!(matches!(
        e.branch_namespace(&ns("missing"), &ns("x"), None).await,
        Err(ref e) if e.kind() == ErrorKind::NotFound
    ));
    let bad = WriteRequest::from_json(&json!({"branch_from_namespace": "src", "upsert_rows": [{"id": 1}]}));
    assert!(matches!(bad, Err(ref e) if e.kind() == ErrorKind::InvalidInput));
    // A deleted namespace, or one whose documents were all deleted, may be a destination.
    e.delete_namespace(&ns("full")).await.unwrap();
    e.branch_namespace(&ns("src"), &ns("full"), None).await.unwrap();
    assert_eq!(docs(&e, "full").await, model(0..3, "s"));
    write(&e, "emptied", rows(0..2, "x")).await.unwrap();
    write(&e, "emptied", json!({"deletes": [0, 1]})).await.unwrap();
    e.branch_namespace(&ns("src"), &ns("emptied"), None).await.unwrap();
    assert_eq!(docs(&e, "emptied").await, model(0..3, "s"));
}

#[tokio::test]
async fn concurrent_forks_in_opposite_directions_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    write(&e, "a", rows(0..3, "a")).await.unwrap();
    write(&e, "b", rows(0..3, "b")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let (s, d) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
            // Refused (the destination holds documents), but must not hang.
            let _ = e.branch_namespace(&ns(s), &ns(d), None).await;
            e.branch_namespace(&ns(s), &ns(&format!("x{i}")), None).await.unwrap();
        }));
    }
    let all = futures::future::join_all(tasks);
    tokio::time::timeout(std::time::Duration::from_secs(30), all).await.expect("deadlock");
}

#[tokio::test]
async fn time_travel_reads_and_branches_an_older_retained_generation() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    let g1 = write(&e, "t", rows(0..3, "v1")).await.unwrap().generation;
    let g2 = write(&e, "t", rows(0..2, "v2")).await.unwrap().generation;
    write(&e, "t", json!({"deletes": [0]})).await.unwrap();
    let at = |g| {
        let e = e.clone();
        async move {
            let s = e.snapshot_at(&ns("t"), Some(g), true).await.unwrap();
            s.state
                .iter_from(Bound::Unbounded)
                .map(|d| (d.id.clone(), d.to_json()))
                .collect::<BTreeMap<_, _>>()
        }
    };
    assert_eq!(at(g1).await, model(0..3, "v1"));
    let mut v2 = model(0..3, "v1");
    v2.extend(model(0..2, "v2"));
    assert_eq!(at(g2).await, v2);
    e.branch_namespace(&ns("t"), &ns("old"), Some(g1)).await.unwrap();
    assert_eq!(docs(&e, "old").await, model(0..3, "v1"));
    assert_eq!(e.lineage(&ns("old")).await.unwrap().unwrap().parent_generation, g1);
    assert!(
        matches!(e.snapshot_at(&ns("t"), Some(99), true).await, Err(ref e) if e.kind() == ErrorKind::NotFound)
    );
}

#[tokio::test]
async fn a_deep_copy_into_a_deleted_parent_never_touches_objects_its_branch_still_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone(), false).await;
    write(&e, "p", rows(0..10, "p")).await.unwrap();
    e.compact(&ns("p"), true).await.unwrap();
    e.branch_namespace(&ns("p"), &ns("c"), None).await.unwrap();
    e.delete_namespace(&ns("p")).await.unwrap();
    let shared = e.latest_manifest(&ns("c")).await.unwrap().unwrap().object_keys();
    assert!(shared.iter().all(|k| ns("p").owns(k)), "c still uses p's objects");
    // Copy the child back into the (deleted) parent's name: fresh keys only.
    e.copy_namespace(&ns("c"), &ns("p"), true, None).await.unwrap();
    let copied = e.latest_manifest(&ns("p")).await.unwrap().unwrap().object_keys();
    assert!(copied.iter().all(|k| !shared.contains(k)), "{copied:?} overlaps {shared:?}");
    e.delete_namespace(&ns("p")).await.unwrap();
    let opts =
        tidepool::engine::repair::RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: Some(0) };
    e.repair("o", "p", opts).await.unwrap();
    for k in &shared {
        assert!(store.exists(k).await.unwrap(), "{k} was deleted while c references it");
    }
    assert_eq!(docs(&e, "c").await, model(0..10, "p"));
}

#[tokio::test]
async fn time_travel_to_a_generation_whose_objects_were_reclaimed_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    let g1 = write(&e, "t", rows(0..3, "v1")).await.unwrap().generation;
    write(&e, "t", rows(3..4, "v1")).await.unwrap();
    e.compact(&ns("t"), true).await.unwrap(); // folds and reclaims the WAL batches of g1
    let counts_before = e.meta().refcounts("o/p").unwrap();
    let err = e.snapshot_at(&ns("t"), Some(g1), true).await.unwrap_err();
    assert!((err).kind() == ErrorKind::NotFound, "{err:?}");
    assert!(err.to_string().contains("can no longer be read"), "{err}");
    let err = e.branch_namespace(&ns("t"), &ns("old"), Some(g1)).await.unwrap_err();
    assert!((err).kind() == ErrorKind::Conflict, "{err:?}");
    assert!(e.latest_manifest(&ns("old")).await.unwrap().is_none(), "nothing was created");
    assert_eq!(e.meta().refcounts("o/p").unwrap(), counts_before, "the refused branch gave its counts back");
    assert_eq!(docs(&e, "t").await, model(0..4, "v1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_branch_taken_during_concurrent_writes_is_exactly_one_parent_generation() {
    let dir = tempfile::tempdir().unwrap();
    let e =
        engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap(), false).await;
    write(&e, "p", rows(0..5, "p")).await.unwrap();
    let writer = {
        let e = e.clone();
        tokio::spawn(async move {
            for i in 5..60u64 {
                write(&e, "p", rows(i..i + 1, "p")).await.unwrap();
            }
        })
    };
    let mut branches = Vec::new();
    for b in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        let name = format!("b{b}");
        e.branch_namespace(&ns("p"), &ns(&name), None).await.unwrap();
        branches.push(name);
    }
    writer.await.unwrap();
    for name in branches {
        let g = e.lineage(&ns(&name)).await.unwrap().unwrap().parent_generation;
        let at = e.snapshot_at(&ns("p"), Some(g), true).await.unwrap();
        let want: BTreeMap<DocId, Json> =
            at.state.iter_from(Bound::Unbounded).map(|d| (d.id.clone(), d.to_json())).collect();
        assert_eq!(docs(&e, &name).await, want, "{name} is not parent generation {g}");
    }
    assert_eq!(docs(&e, "p").await, model(0..60, "p"));
}
