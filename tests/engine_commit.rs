//! The commit protocol under concurrency and faults.
//!
//! Invariants guarded: two writers racing on one namespace never both win a
//! generation and never lose an update; concurrent requests are group
//! committed; an ambiguous manifest create is resolved by the commit id; a
//! crash at any mutation leaves every acknowledged write readable and no
//! manifest pointing at a missing object; a generation fenced by a GC
//! tombstone is never acknowledged.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tidepool::engine::{Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::{DocId, Value};
use tidepool::store::fault::{Fault, FaultStore};
use tidepool::store::Store;

fn ns() -> NsPath {
    NsPath::new("o", "p", "ns").unwrap()
}

async fn engine_on(data_dir: &std::path::Path, store: Store) -> Arc<Engine> {
    Engine::open(EngineConfig::new(data_dir.to_path_buf(), store)).await.unwrap()
}

fn faulty_local(dir: &std::path::Path) -> (Store, Arc<FaultStore>) {
    let local = Store::local(dir).unwrap();
    let fault = FaultStore::new(local.inner().clone());
    (Store::new(fault.clone(), "faulty"), fault)
}

async fn write(e: &Engine, body: serde_json::Value) -> Result<tidepool::engine::WriteResponse, EngineError> {
    e.write(&ns(), WriteRequest::from_json(&body)?).await
}

async fn manifest_count(store: &Store) -> usize {
    store.list(&ns().manifests_prefix()).await.unwrap().iter().filter(|o| o.key.ends_with(".json")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_racing_on_one_namespace_lose_no_update() {
    let store_dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let e1 = engine_on(d1.path(), Store::local(store_dir.path()).unwrap()).await;
    let e2 = engine_on(d2.path(), Store::local(store_dir.path()).unwrap()).await;
    write(&e1, json!({"upsert_rows": [{"id": 0, "count": 0}]})).await.unwrap();

    // Each engine inserts its own ids and increments a shared counter with a
    // read-modify-write guarded by if_version (retrying on a stale version).
    let mut tasks = Vec::new();
    for (w, e) in [(1u64, e1.clone()), (2, e2.clone())] {
        tasks.push(tokio::spawn(async move {
            for i in 0..15u64 {
                write(&e, json!({"upsert_rows": [{"id": w * 1000 + i, "by": w}]})).await.unwrap();
                loop {
                    let s = e.snapshot(&ns(), true).await.unwrap();
                    let Some(Value::Int(c)) =
                        s.state.get(&DocId::U64(0)).unwrap().attrs.get("count").cloned()
                    else {
                        panic!("counter missing")
                    };
                    let body =
                        json!({"if_version": s.generation(), "patch_rows": [{"id": 0, "count": c + 1}]});
                    match write(&e, body).await {
                        Ok(_) => break,
                        Err(ref e)
                            if matches!(e.kind(), ErrorKind::PreconditionFailed | ErrorKind::Conflict) =>
                        {
                            continue
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let check = tempfile::tempdir().unwrap();
    let fresh = engine_on(check.path(), Store::local(store_dir.path()).unwrap()).await;
    let s = fresh.existing(&ns(), true).await.unwrap();
    assert_eq!(s.state.len() as usize, 31, "every insert of both writers is present");
    assert_eq!(s.state.get(&DocId::U64(0)).unwrap().attrs["count"], Value::Int(30), "no increment was lost");
    let gens = s.generation() as usize;
    assert_eq!(manifest_count(fresh.store()).await, gens, "each generation was created exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_on(dir.path(), Store::local(&dir.path().join("store")).unwrap()).await;
    write(&e, json!({"upsert_rows": [{"id": 0}]})).await.unwrap();
    let before = e.snapshot(&ns(), true).await.unwrap().generation();
    let n = 64u64;
    let tasks: Vec<_> = (1..=n)
        .map(|i| {
            let e = e.clone();
            tokio::spawn(
                async move { write(&e, json!({"upsert_rows": [{"id": i}]})).await.unwrap().generation },
            )
        })
        .collect();
    let mut gens = Vec::new();
    for t in tasks {
        gens.push(t.await.unwrap());
    }
    let s = e.snapshot(&ns(), true).await.unwrap();
    assert_eq!(s.state.len(), n + 1);
    let commits = s.generation() - before;
    assert!(commits < n / 2, "{n} concurrent writes took {commits} commits: group commit is not grouping");
    gens.sort_unstable();
    gens.dedup();
    assert_eq!(gens.len() as u64, commits, "every acknowledged generation is a real commit");
}

#[tokio::test]
async fn an_ambiguous_manifest_create_is_recognised_as_our_own() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fault) = faulty_local(&dir.path().join("store"));
    let e = engine_on(dir.path(), store).await;
    write(&e, json!({"upsert_rows": [{"id": 1}]})).await.unwrap();
    fault.fail_next_put("/manifests/", Fault::After);
    let r = write(&e, json!({"upsert_rows": [{"id": 2}]})).await.unwrap();
    assert_eq!(r.generation, 2, "applied once, not twice, and not reported as failed");
    assert_eq!(manifest_count(e.store()).await, 2);
    let s = e.existing(&ns(), true).await.unwrap();
    assert_eq!(s.state.len() as usize, 2);
}

#[tokio::test]
async fn a_failed_wal_upload_commits_nothing_and_the_next_write_works() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fault) = faulty_local(&dir.path().join("store"));
    let e = engine_on(dir.path(), store).await;
    write(&e, json!({"upsert_rows": [{"id": 1}]})).await.unwrap();
    fault.fail_next_put("/wal/", Fault::Before);
    let err = write(&e, json!({"upsert_rows": [{"id": 2}]})).await.unwrap_err();
    assert!((err).kind() == ErrorKind::Unavailable, "{err:?}");
    assert!(e.get(&ns(), &[DocId::U64(2)]).await.unwrap()[0].is_none());
    write(&e, json!({"upsert_rows": [{"id": 3}]})).await.unwrap();
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len() as usize, 2);
}

/// Crash after k mutations of a write, for every k: reopen and check.
#[tokio::test]
async fn a_crash_at_any_step_loses_no_acknowledged_write() {
    for k in 0..6u64 {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let data_a = dir.path().join("a");
        let acked_last;
        {
            let (store, fault) = faulty_local(&store_dir);
            let e = engine_on(&data_a, store).await;
            for i in 0..3u64 {
                write(&e, json!({"upsert_rows": [{"id": i, "v": i}]})).await.unwrap();
            }
            fault.crash_after_mutations(k);
            acked_last = write(&e, json!({"upsert_rows": [{"id": 99}], "deletes": [0]})).await.is_ok();
        }
        let e = engine_on(&data_a, Store::local(&store_dir).unwrap()).await;
        let s = e
            .existing(&ns(), true)
            .await
            .unwrap_or_else(|err| panic!("crash after {k}: reload failed: {err}"));
        assert!(s.state.contains(&DocId::U64(1)) && s.state.contains(&DocId::U64(2)), "k={k}");
        if acked_last {
            assert!(s.state.contains(&DocId::U64(99)), "k={k}: an acknowledged write was lost");
            assert!(!s.state.contains(&DocId::U64(0)), "k={k}");
        }
        // Whatever happened, the namespace keeps working.
        write(&e, json!({"upsert_rows": [{"id": 100}]})).await.unwrap();
        assert!(e.existing(&ns(), true).await.unwrap().state.contains(&DocId::U64(100)));
    }
}

/// The zombie race: GC collected generation g (tombstone, then delete) while a
/// slow writer still held g-1 as its base. The writer's create of g succeeds,
/// but it must notice the tombstone and re-apply on the newest generation.
#[tokio::test]
async fn a_generation_fenced_by_a_gc_tombstone_is_never_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let slow = engine_on(&da, Store::local(&store_dir).unwrap()).await;
    write(&slow, json!({"upsert_rows": [{"id": 1}]})).await.unwrap(); // gen 1, cached by `slow`
    let other = engine_on(&db, Store::local(&store_dir).unwrap()).await;
    write(&other, json!({"upsert_rows": [{"id": 2}]})).await.unwrap(); // gen 2
    write(&other, json!({"upsert_rows": [{"id": 3}]})).await.unwrap(); // gen 3
                                                                       // GC collects generation 2: tombstone first, then the manifest.
    let store = Store::local(&store_dir).unwrap();
    store.put_if_absent(&ns().manifest_tombstone_key(2), Bytes::new()).await.unwrap();
    store.delete(&ns().manifest_key(2)).await.unwrap();

    let r = write(&slow, json!({"upsert_rows": [{"id": 4}]})).await.unwrap();
    assert_eq!(r.generation, 4, "the fenced generation 2 was not acknowledged");
    assert!(!store.exists(&ns().manifest_key(2)).await.unwrap(), "the zombie manifest was removed");
    let check = engine_on(&dir.path().join("c"), Store::local(&store_dir).unwrap()).await;
    let s = check.existing(&ns(), true).await.unwrap();
    let ids: Vec<_> = s.state.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, vec![DocId::U64(1), DocId::U64(2), DocId::U64(3), DocId::U64(4)]);
}

#[tokio::test]
async fn a_stale_current_hint_is_corrected_by_probing() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    {
        let e = engine_on(&dir.path().join("a"), Store::local(&store_dir).unwrap()).await;
        for i in 0..4u64 {
            write(&e, json!({"upsert_rows": [{"id": i}]})).await.unwrap();
        }
    }
    let store = Store::local(&store_dir).unwrap();
    store.put(&ns().current_key(), Bytes::from(tidepool::format::manifest::encode_current(1))).await.unwrap();
    let e = engine_on(&dir.path().join("b"), Store::local(&store_dir).unwrap()).await;
    assert_eq!(e.existing(&ns(), true).await.unwrap().generation(), 4);
    store.delete(&ns().current_key()).await.unwrap();
    let e2 = engine_on(&dir.path().join("c"), Store::local(&store_dir).unwrap()).await;
    assert_eq!(
        e2.existing(&ns(), true).await.unwrap().state.len() as usize,
        4,
        "no CURRENT: found by listing"
    );
}
