//! Refcounted GC, crash safety of branch/copy/delete, repair and manifest GC.
//!
//! Invariants guarded: a crash between any two steps of a branch, a shallow
//! or deep copy, a namespace delete or a compaction loses no acknowledged
//! data and never leaves a refcount below the true number of live
//! references; repair rebuilds the counts exactly and its sweep reclaims
//! every leaked object but never one that a retained manifest references or
//! that is younger than the grace period; manifest GC collects old
//! generations in increasing order and never the newest.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value as Json};
use tidepool::engine::repair::RepairOptions;
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::fault::FaultStore;
use tidepool::store::Store;

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

fn rows(ids: std::ops::Range<u64>, tag: &str) -> Json {
    let rows: Vec<Json> = ids.map(|i| json!({"id": i, "tag": tag})).collect();
    json!({ "upsert_rows": rows })
}

async fn ids(e: &Engine, name: &str) -> Option<BTreeSet<DocId>> {
    match e.existing(&ns(name), true).await {
        Ok(s) => Some(s.state.iter_from(Bound::Unbounded).map(|d| d.id.clone()).collect()),
        Err(ref e) if e.kind() == ErrorKind::NotFound => None,
        Err(err) => panic!("{name}: {err}"),
    }
}

fn range(r: std::ops::Range<u64>) -> BTreeSet<DocId> {
    r.map(DocId::U64).collect()
}

fn faulty(dir: &std::path::Path) -> (Store, Arc<FaultStore>) {
    let local = Store::local(dir).unwrap();
    let fault = FaultStore::new(local.inner().clone());
    (Store::new(fault.clone(), "faulty"), fault)
}

/// Every refcount is at least the number of live references (computed from
/// the manifests); returns the keys whose count is too high (leaks).
async fn check_counts_not_below_truth(e: &Engine, ctx: &str) -> usize {
    let truth = e.project_references("o", "p").await.unwrap().counts;
    let counts = e.meta().refcounts("o/p").unwrap();
    for (k, n) in &truth {
        let have = counts.get(k).copied().unwrap_or(0);
        assert!(have >= *n, "{ctx}: refcount of {k} is {have}, below the true {n}");
    }
    counts.iter().filter(|(k, n)| truth.get(*k).copied().unwrap_or(0) < **n).count()
}

/// After repair with an immediate sweep: counts are exact, no object is
/// unreferenced, none referenced is missing.
async fn repair_and_check_clean(e: &Engine, store: &Store, ctx: &str) {
    let opts = RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: None };
    let report = e.repair("o", "p", opts).await.unwrap();
    assert!(report.missing_objects.is_empty(), "{ctx}: missing {:?}", report.missing_objects);
    let refs = e.project_references("o", "p").await.unwrap();
    assert_eq!(e.meta().refcounts("o/p").unwrap(), refs.counts, "{ctx}: counts not exact after repair");
    for o in store.list("o/p/namespaces/").await.unwrap() {
        let data = o.key.contains("/wal/") || o.key.contains("/segments/");
        assert!(!data || refs.roots.contains(&o.key), "{ctx}: leaked object {} survived the sweep", o.key);
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Branch,
    ShallowCopy,
    DeepCopy,
    DeleteParent,
    DeleteChild,
    CompactChild,
}

/// Crash after k store mutations of each operation, for every k until the
/// operation completes without reaching the crash point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_at_any_step_of_branch_copy_delete_or_compaction_loses_nothing_and_repair_reclaims_every_leak(
) {
    for op in [Op::Branch, Op::ShallowCopy, Op::DeepCopy, Op::DeleteParent, Op::DeleteChild, Op::CompactChild]
    {
        for k in 0..64u64 {
            let dir = tempfile::tempdir().unwrap();
            let store_dir = dir.path().join("store");
            let data = dir.path().join("data");
            let ctx = format!("{op:?} crash after {k}");
            let (acked, completed);
            {
                let (store, fault) = faulty(&store_dir);
                let e = engine_with(&data, store).await;
                write(&e, "parent", rows(0..20, "a")).await.unwrap();
                e.compact(&ns("parent"), true).await.unwrap();
                write(&e, "parent", rows(20..30, "a")).await.unwrap();
                if matches!(op, Op::DeleteParent | Op::DeleteChild | Op::CompactChild) {
                    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
                    write(&e, "child", rows(30..35, "c")).await.unwrap();
                }
                let before = fault.mutations();
                fault.crash_after_mutations(k);
                acked = match op {
                    Op::Branch => e.branch_namespace(&ns("parent"), &ns("child"), None).await.is_ok(),
                    Op::ShallowCopy => {
                        e.copy_namespace(&ns("parent"), &ns("child"), false, None).await.is_ok()
                    }
                    Op::DeepCopy => e.copy_namespace(&ns("parent"), &ns("child"), true, None).await.is_ok(),
                    Op::DeleteParent => e.delete_namespace(&ns("parent")).await.is_ok(),
                    Op::DeleteChild => e.delete_namespace(&ns("child")).await.is_ok(),
                    Op::CompactChild => e.compact(&ns("child"), true).await.is_ok(),
                };
                completed = fault.mutations() - before < k;
            }
            // "Restart": a fresh engine on the same data dir and a healthy store.
            let store = Store::local(&store_dir).unwrap();
            let e = engine_with(&data, store.clone()).await;
            let parent = ids(&e, "parent").await;
            let child = ids(&e, "child").await;
            let mut child_expected = range(0..30);
            child_expected.extend(range(30..35));
            match op {
                Op::Branch | Op::ShallowCopy | Op::DeepCopy => {
                    assert_eq!(parent, Some(range(0..30)), "{ctx}");
                    if acked {
                        assert_eq!(child, Some(range(0..30)), "{ctx}: acknowledged copy lost");
                    } else {
                        assert!(child.is_none() || child == Some(range(0..30)), "{ctx}: {child:?}");
                    }
                }
                Op::DeleteParent => {
                    assert_eq!(child, Some(child_expected.clone()), "{ctx}: child damaged");
                    assert!(parent.is_none() || !acked, "{ctx}: acknowledged delete undone");
                }
                Op::DeleteChild => {
                    assert_eq!(parent, Some(range(0..30)), "{ctx}: parent damaged");
                    assert!(child.is_none() || !acked, "{ctx}");
                }
                Op::CompactChild => {
                    assert_eq!(parent, Some(range(0..30)), "{ctx}");
                    assert_eq!(child, Some(child_expected.clone()), "{ctx}");
                }
            }
            check_counts_not_below_truth(&e, &ctx).await;
            repair_and_check_clean(&e, &store, &ctx).await;
            // Everything still reads after the sweep, from a cold engine too.
            assert_eq!(ids(&e, "parent").await, parent, "{ctx}: sweep damaged the parent");
            assert_eq!(ids(&e, "child").await, child, "{ctx}: sweep damaged the child");
            drop(e);
            let cold = engine_with(&dir.path().join("cold"), Store::local(&store_dir).unwrap()).await;
            assert_eq!(ids(&cold, "parent").await, parent, "{ctx}: cold read");
            assert_eq!(ids(&cold, "child").await, child, "{ctx}: cold read");
            if completed {
                break;
            }
        }
    }
}

#[tokio::test]
async fn repair_rebuilds_refcounts_exactly_from_the_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    write(&e, "a", rows(0..10, "a")).await.unwrap();
    e.branch_namespace(&ns("a"), &ns("b"), None).await.unwrap();
    e.branch_namespace(&ns("b"), &ns("c"), None).await.unwrap();
    write(&e, "c", rows(10..12, "c")).await.unwrap();
    let truth = e.project_references("o", "p").await.unwrap().counts;
    assert_eq!(e.meta().refcounts("o/p").unwrap(), truth, "the engine's own accounting is exact");
    // Damage: a too-high count, an unknown key, and a lost row.
    let some = truth.keys().next().unwrap().clone();
    e.meta().incr_refs("o/p", &[some.clone(), "o/p/namespaces/a/wal/ghost".into()]).unwrap();
    let mut lowered = e.meta().refcounts("o/p").unwrap();
    let last = truth.keys().last().unwrap().clone();
    lowered.remove(&last);
    e.meta().replace_refcounts("o/p", &lowered).unwrap();
    let report = e.repair("o", "p", RepairOptions::default()).await.unwrap();
    assert_eq!(e.meta().refcounts("o/p").unwrap(), truth);
    assert!(report.refcounts_raised >= 1 && report.refcounts_lowered >= 2, "{report:?}");
    assert!(report.swept.is_empty(), "no sweep unless asked");
}

#[tokio::test]
async fn the_sweep_never_deletes_a_referenced_object_nor_a_young_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    write(&e, "a", rows(0..10, "a")).await.unwrap();
    write(&e, "a", rows(10..20, "a")).await.unwrap();
    e.branch_namespace(&ns("a"), &ns("b"), None).await.unwrap();
    // An orphan, as left by a crashed write (object written, never committed).
    let orphan = ns("a").wal_key(99, "orphan");
    store.put(&orphan, Bytes::from_static(b"not referenced")).await.unwrap();
    let referenced: Vec<String> = e.project_references("o", "p").await.unwrap().roots.into_iter().collect();

    let young = RepairOptions { sweep: true, grace_ms: 3_600_000, manifest_retention_ms: None };
    let r = e.repair("o", "p", young).await.unwrap();
    assert!(r.swept.is_empty(), "{r:?}");
    assert_eq!(r.kept_young, 1);
    assert!(store.exists(&orphan).await.unwrap(), "a young orphan was swept");

    let now = RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: None };
    let r = e.repair("o", "p", now).await.unwrap();
    assert_eq!(r.swept, vec![orphan.clone()]);
    assert!(!store.exists(&orphan).await.unwrap());
    for k in &referenced {
        assert!(store.exists(k).await.unwrap(), "referenced object {k} was swept");
    }
    // Objects only an older retained generation references are kept too.
    e.compact(&ns("a"), true).await.unwrap();
    let old = e.manifest_at(&ns("a"), Some(2)).await.unwrap().object_keys();
    e.repair("o", "p", now).await.unwrap();
    for k in &old {
        assert!(store.exists(k).await.unwrap(), "{k}, referenced by b and a's generation 2, was swept");
    }
    assert_eq!(ids(&e, "b").await, Some(range(0..20)));
}

#[tokio::test]
async fn manifest_gc_collects_old_generations_in_order_and_never_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    for i in 0..5u64 {
        write(&e, "g", rows(i..i + 1, "x")).await.unwrap();
    }
    assert_eq!(e.gc_manifests(&ns("g"), 3_600_000).await.unwrap(), 0, "inside the retention");
    assert_eq!(e.gc_manifests(&ns("g"), 0).await.unwrap(), 4);
    for g in 1..=4u64 {
        assert!(store.exists(&ns("g").manifest_tombstone_key(g)).await.unwrap());
        assert!(!store.exists(&ns("g").manifest_key(g)).await.unwrap());
    }
    assert!(store.exists(&ns("g").manifest_key(5)).await.unwrap(), "the newest was collected");
    let err = e.snapshot_at(&ns("g"), Some(2), true).await.unwrap_err();
    assert!(err.to_string().contains("no longer retained"), "{err}");
    assert_eq!(e.gc_manifests(&ns("g"), 0).await.unwrap(), 0, "nothing left to collect");
    // Readers and writers carry on past the tombstones, also from a cold start.
    write(&e, "g", rows(5..6, "x")).await.unwrap();
    drop(e);
    let cold = engine_with(&dir.path().join("cold"), store.clone()).await;
    assert_eq!(ids(&cold, "g").await, Some(range(0..6)));
    let mut counts = BTreeMap::new();
    for o in store.list(&ns("g").manifests_prefix()).await.unwrap() {
        *counts.entry(o.key.rsplit('.').next().unwrap().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(counts.get("json"), Some(&2));
    assert_eq!(counts.get("gc"), Some(&4));
}

#[tokio::test]
async fn a_crash_at_any_step_of_restore_leaves_no_half_restored_namespace() {
    let src_dir = tempfile::tempdir().unwrap();
    let src =
        engine_with(&src_dir.path().join("data"), Store::local(&src_dir.path().join("store")).unwrap()).await;
    write(&src, "s", rows(0..20, "a")).await.unwrap();
    src.compact(&ns("s"), true).await.unwrap();
    write(&src, "s", rows(20..25, "a")).await.unwrap();
    let mut snap = Vec::new();
    src.write_snapshot(&ns("s"), None, &mut snap).await.unwrap();
    for k in 0..16u64 {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let ctx = format!("restore crash after {k}");
        let (acked, completed);
        {
            let (store, fault) = faulty(&store_dir);
            let e = engine_with(&dir.path().join("data"), store).await;
            fault.crash_after_mutations(k);
            acked = e.restore_snapshot(&ns("r"), &mut snap.as_slice()).await.is_ok();
            completed = fault.mutations() < k;
        }
        let store = Store::local(&store_dir).unwrap();
        let e = engine_with(&dir.path().join("data"), store.clone()).await;
        let got = ids(&e, "r").await;
        if acked {
            assert_eq!(got, Some(range(0..25)), "{ctx}: acknowledged restore lost");
        } else {
            assert!(got.is_none() || got == Some(range(0..25)), "{ctx}: half-restored: {got:?}");
        }
        check_counts_not_below_truth(&e, &ctx).await;
        repair_and_check_clean(&e, &store, &ctx).await;
        assert_eq!(ids(&e, "r").await, got, "{ctx}: sweep damaged the restored namespace");
        if completed {
            break;
        }
    }
}

#[tokio::test]
async fn an_ambiguous_manifest_create_during_a_branch_is_resolved_and_counts_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fault) = faulty(&dir.path().join("store"));
    let e = engine_with(&dir.path().join("data"), store).await;
    write(&e, "parent", rows(0..5, "a")).await.unwrap();
    // The create lands but its response is lost: the retry sees our commit id.
    fault.fail_next_put("namespaces/child/manifests/", tidepool::store::fault::Fault::After);
    e.branch_namespace(&ns("parent"), &ns("child"), None).await.unwrap();
    assert_eq!(ids(&e, "child").await, Some(range(0..5)));
    let truth = e.project_references("o", "p").await.unwrap().counts;
    assert_eq!(e.meta().refcounts("o/p").unwrap(), truth);
    // A create that fails before writing gives the counts back exactly.
    fault.fail_next_put("namespaces/other/manifests/", tidepool::store::fault::Fault::Before);
    fault.fail_next_put("namespaces/other/manifests/", tidepool::store::fault::Fault::Before);
    fault.fail_next_put("namespaces/other/manifests/", tidepool::store::fault::Fault::Before);
    assert!(e.branch_namespace(&ns("parent"), &ns("other"), None).await.is_err());
    assert!(ids(&e, "other").await.is_none());
    check_counts_not_below_truth(&e, "failed create").await;
}

/// Repair racing compactions (which release what they dropped after their
/// commit), writes and branches must never leave a count below the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repair_racing_compactions_writes_and_branches_never_lowers_a_count_below_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    write(&e, "p", rows(0..10, "a")).await.unwrap();
    for round in 0..12u64 {
        let child = format!("c{round}");
        e.branch_namespace(&ns("p"), &ns(&child), None).await.unwrap();
        let base = 100 + round * 10;
        let (e1, e2, e3) = (e.clone(), e.clone(), e.clone());
        let writer = tokio::spawn(async move {
            for i in 0..3 {
                write(&e1, "p", rows(base + i..base + i + 1, "w")).await.unwrap();
            }
        });
        let compactor = tokio::spawn(async move {
            e2.compact(&ns("p"), true).await.unwrap();
        });
        let repairer = tokio::spawn(async move {
            let opts = RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: None };
            e3.repair("o", "p", opts).await.unwrap();
        });
        writer.await.unwrap();
        compactor.await.unwrap();
        repairer.await.unwrap();
        check_counts_not_below_truth(&e, &format!("round {round}")).await;
        assert_eq!(ids(&e, &child).await.map(|s| s.len()), Some(10 + 3 * usize::try_from(round).unwrap()));
    }
    repair_and_check_clean(&e, &store, "end").await;
    for round in 0..12u64 {
        assert!(ids(&e, &format!("c{round}")).await.is_some());
    }
}
