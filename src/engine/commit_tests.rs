//! Unit tests of the commit unit on a memory store and on the fault wrapper:
//! publish + CURRENT, rebase after a lost race, an ambiguous create that
//! landed, a fenced generation, and what happens to new objects on a definite
//! loss (released) and on an unknown outcome (kept).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::format::manifest::{decode_current_full, WalRef};
use crate::store::fault::{Fault, FaultStore};

struct Fixture {
    log: ManifestLog,
    meta: Arc<Meta>,
    store: Store,
    _dir: tempfile::TempDir,
}

fn fixture(store: Store) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(Meta::open(dir.path()).unwrap());
    let cache = ObjectCache::open(&dir.path().join("cache"), 1 << 20, store.clone()).unwrap();
    let path = NsPath::new("acme", "search", "docs").unwrap();
    let log = ManifestLog::new(store.clone(), meta.clone(), cache, path, 0);
    Fixture { log, meta, store, _dir: dir }
}

fn commit_id(n: u64) -> String {
    format!("{n:032x}")
}

/// Generation `g` on `base`, naming one WAL object `key`.
fn manifest(base: Option<&Manifest>, key: &str, id: u64) -> Manifest {
    let g = base.map_or(1, |b| b.generation + 1);
    let mut wal = base.map(|b| b.wal.clone()).unwrap_or_default();
    let seq = wal.last().map_or(1, |w: &WalRef| w.seq + 1);
    wal.push(WalRef { key: key.to_owned(), seq, bytes: 1, crc32c: 0, requests: 1, rows: 1 });
    Manifest {
        namespace: "acme/search/docs".into(),
        generation: g,
        commit_id: commit_id(id),
        previous_generation: base.map(|b| b.generation),
        next_wal_seq: seq + 1,
        wal,
        ..Manifest::default()
    }
}

async fn new_object(f: &Fixture, name: &str) -> String {
    let key = f.log.path.wal_key(1, name);
    f.store.put(&key, Bytes::from_static(b"w")).await.unwrap();
    f.log.raise(std::slice::from_ref(&key)).await.unwrap();
    key
}

fn refcount(f: &Fixture, key: &str) -> u64 {
    f.meta.refcount("acme/search", key).unwrap()
}

async fn commit_one(
    f: &Fixture,
    base: Option<Arc<Manifest>>,
    key: &str,
    attempts: usize,
    derives: &AtomicUsize,
) -> Result<Committed, CommitError> {
    let key = key.to_owned();
    f.log
        .commit(
            base,
            std::slice::from_ref(&key),
            attempts,
            |_| async {},
            |b| {
                let n = derives.fetch_add(1, Ordering::SeqCst) as u64;
                Ok(Derived::Commit(manifest(b, &key, 100 + n)))
            },
        )
        .await
}

#[tokio::test]
async fn a_commit_publishes_the_generation_and_the_current_hint() {
    let f = fixture(Store::memory());
    let key = new_object(&f, "a").await;
    let c = commit_one(&f, None, &key, 1, &AtomicUsize::new(0)).await.ok().unwrap();
    assert_eq!(c.manifest.generation, 1);
    let newest = f.log.newest_from(f.log.generation_hint().await.unwrap()).await.unwrap().unwrap();
    assert_eq!(newest, c.manifest);
    let current = f.store.get(&f.log.path.current_key()).await.unwrap();
    assert_eq!(decode_current_full(&current).unwrap().0, 1);
    assert_eq!(refcount(&f, &key), 1, "the new object is counted, not released");
}

#[tokio::test]
async fn a_lost_race_rebases_on_the_newest_generation_and_commits_once() {
    let f = fixture(Store::memory());
    let first = new_object(&f, "a").await;
    let g1 = commit_one(&f, None, &first, 1, &AtomicUsize::new(0)).await.ok().unwrap().manifest;
    // Another writer takes generation 2 behind our back.
    let theirs = manifest(Some(&g1), &f.log.path.wal_key(2, "theirs"), 7);
    f.log.publish(&theirs).await.ok().unwrap();
    let ours = new_object(&f, "b").await;
    let derives = AtomicUsize::new(0);
    let c = commit_one(&f, Some(Arc::new(g1)), &ours, 4, &derives).await.ok().unwrap();
    assert_eq!(derives.load(Ordering::SeqCst), 2, "derived once on the stale base, once on the newest");
    assert_eq!(c.manifest.generation, 3);
    assert_eq!(c.manifest.previous_generation, Some(2));
    assert!(c.manifest.wal.iter().any(|w| w.key.contains("theirs")), "rebased on their generation");
    assert_eq!(refcount(&f, &ours), 1);
}

#[tokio::test]
async fn a_definite_loss_releases_the_new_objects() {
    let f = fixture(Store::memory());
    let first = new_object(&f, "a").await;
    let g1 = commit_one(&f, None, &first, 1, &AtomicUsize::new(0)).await.ok().unwrap().manifest;
    f.log.publish(&manifest(Some(&g1), &f.log.path.wal_key(2, "theirs"), 7)).await.ok().unwrap();
    let ours = new_object(&f, "b").await;
    let lost = commit_one(&f, Some(Arc::new(g1)), &ours, 1, &AtomicUsize::new(0)).await;
    assert!(matches!(lost, Err(CommitError::Lost)));
    assert_eq!(refcount(&f, &ours), 0);
    assert!(!f.store.exists(&ours).await.unwrap(), "an own object at zero is deleted");
}

#[tokio::test]
async fn a_refused_base_releases_the_new_objects() {
    let f = fixture(Store::memory());
    let ours = new_object(&f, "a").await;
    let refused =
        f.log.commit(None, std::slice::from_ref(&ours), 1, |_| async {}, |_| Ok(Derived::Refuse)).await;
    assert!(matches!(refused, Err(CommitError::Lost)));
    assert!(!f.store.exists(&ours).await.unwrap());
}

#[tokio::test]
async fn an_ambiguous_create_that_landed_is_recognised_by_its_commit_id() {
    let fault = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    let f = fixture(Store::new(fault.clone(), "fault(memory)"));
    let key = new_object(&f, "a").await;
    // The create lands but reports an error; the retry sees our own manifest.
    fault.fail_next_put("manifests/00000000000000000001.json", Fault::After);
    let c = commit_one(&f, None, &key, 1, &AtomicUsize::new(0)).await.ok().unwrap();
    assert_eq!(c.manifest.generation, 1);
    assert_eq!(refcount(&f, &key), 1);
}

#[tokio::test]
async fn an_unknown_outcome_keeps_the_new_objects() {
    let fault = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    let f = fixture(Store::new(fault.clone(), "fault(memory)"));
    let key = new_object(&f, "a").await;
    for _ in 0..3 {
        fault.fail_next_put("manifests/00000000000000000001.json", Fault::Before);
    }
    let failed = commit_one(&f, None, &key, 1, &AtomicUsize::new(0)).await;
    assert!(matches!(failed, Err(CommitError::Failed(_))));
    assert_eq!(refcount(&f, &key), 1, "kept: the manifest might reference it");
    assert!(f.store.exists(&key).await.unwrap());
}

#[tokio::test]
async fn a_fenced_generation_is_removed_and_re_derived_above_the_fence() {
    let f = fixture(Store::memory());
    let first = new_object(&f, "a").await;
    let g1 = commit_one(&f, None, &first, 1, &AtomicUsize::new(0)).await.ok().unwrap().manifest;
    // GC collected generation 2 (a zombie's) and a newer writer went on to 3.
    let g2 = manifest(Some(&g1), &f.log.path.wal_key(2, "z"), 8);
    f.store.put(&f.log.path.manifest_tombstone_key(2), Bytes::from_static(b"{}")).await.unwrap();
    let g3 = manifest(Some(&g2), &f.log.path.wal_key(3, "n"), 9);
    f.log.publish(&g3).await.ok().unwrap();
    let ours = new_object(&f, "b").await;
    let derives = AtomicUsize::new(0);
    let c = commit_one(&f, Some(Arc::new(g1)), &ours, 4, &derives).await.ok().unwrap();
    assert!(!f.store.exists(&f.log.path.manifest_key(2)).await.unwrap(), "the fenced manifest is removed");
    assert_eq!(c.manifest.generation, 4, "re-derived on the newest live generation");
    assert_eq!(derives.load(Ordering::SeqCst), 2);
}
