//! Unit tests of the sequence log against the in-memory store and the
//! fault wrapper.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::layout::NsPath;
use crate::store::fault::{Fault, FaultStore};

fn manifests() -> Series {
    NsPath::new("o", "p", "n").unwrap().manifest_series()
}

fn faulty() -> (SeqLog, Arc<FaultStore>) {
    let fault = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    (SeqLog::new(Store::new(fault.clone(), "faulty"), manifests()), fault)
}

/// Objects hold their writer's name; ours is "me".
fn by(name: &str) -> Bytes {
    Bytes::from(name.to_owned())
}

fn mine(found: &[u8]) -> Result<bool, FormatError> {
    Ok(found == b"me")
}

/// Opens an object as its text; records nothing else.
struct Text;

impl OpenSeq for Text {
    type Item = String;
    type Error = StoreError;
    async fn open(&self, _n: u64, bytes: Bytes, _prev: Option<&String>) -> Result<String, StoreError> {
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[tokio::test]
async fn a_conditional_create_is_won_once_and_lost_by_everyone_after() {
    let log = SeqLog::new(Store::memory(), manifests());
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won);
    assert_eq!(log.create(1, by("you"), |b| Ok(b == b"you")).await.unwrap(), Created::Lost(by("me")));
    assert_eq!(log.get(1).await.unwrap(), Some(by("me")), "the loser did not touch the object");
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won, "a retry of ours is ours");
}

#[tokio::test]
async fn an_ambiguous_create_is_resolved_by_content() {
    let (log, fault) = faulty();
    // Landed, then reported an error: the retry finds our bytes and wins.
    fault.fail_next_put("00000000000000000001.json", Fault::After);
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won);
    // Failed before writing: the retry creates it.
    fault.fail_next_put("00000000000000000002.json", Fault::Before);
    assert_eq!(log.create(2, by("me"), mine).await.unwrap(), Created::Won);
    assert_eq!(log.get(2).await.unwrap(), Some(by("me")));
    // Another writer's object at the number is a loss, whatever the errors.
    log.create(3, by("you"), mine).await.unwrap();
    fault.fail_next_put("00000000000000000003.json", Fault::Before);
    assert_eq!(log.create(3, by("me"), mine).await.unwrap(), Created::Lost(by("you")));
    // An unreadable object at the number is an error that keeps its cause.
    log.create(4, by("junk"), mine).await.unwrap();
    let bad = |_: &[u8]| Err(FormatError::Malformed("junk".into()));
    let err = log.create(4, by("me"), bad).await.unwrap_err();
    assert!(matches!(err, SeqError::Unreadable { .. }), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_create_that_keeps_failing_fails_after_the_attempt_limit() {
    let (log, fault) = faulty();
    for _ in 0..CREATE_ATTEMPTS {
        fault.fail_next_put("00000000000000000001.json", Fault::Before);
    }
    assert!(matches!(log.create(1, by("me"), mine).await, Err(SeqError::Store(_))));
    assert_eq!(log.get(1).await.unwrap(), None);
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won, "healed");
}

#[tokio::test]
async fn fencing_refuses_a_zombie_and_removes_it() {
    let log = SeqLog::new(Store::memory(), manifests());
    for n in 1..=3 {
        log.create(n, by("me"), mine).await.unwrap();
    }
    log.collect(1, by("gc")).await.unwrap();
    // A slow writer whose create of 1 lands after the collection.
    assert_eq!(log.create(1, by("zombie"), |b| Ok(b == b"zombie")).await.unwrap(), Created::Fenced);
    assert_eq!(log.get(1).await.unwrap(), None, "the zombie was deleted again");
    let listing = log.list().await.unwrap();
    assert_eq!((listing.live, listing.dead, listing.tombstones), (vec![2, 3], vec![], vec![1]));
    // Collecting again is done already, not an error.
    log.collect(1, by("gc again")).await.unwrap();
}

#[tokio::test]
async fn a_series_without_tombstones_is_never_fenced_and_needs_no_head() {
    let store = Store::memory();
    let log = SeqLog::new(store.clone(), Series::leases("_tidepool/sync/leases/o/p/n/"));
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won);
    assert!(!log.tombstoned(1).await.unwrap());
    assert_eq!(store.list("_tidepool/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_probe_finds_the_newest_and_skips_tombstoned_generations() {
    let log = SeqLog::new(Store::memory(), manifests());
    assert_eq!(log.newest(Start::Unknown, &Text).await.unwrap(), None, "empty");
    for n in 1..=6 {
        log.create(n, Bytes::from(format!("m{n}")), |_| Ok(false)).await.unwrap();
    }
    for n in 1..=3 {
        log.collect(n, by("gc")).await.unwrap();
    }
    let six = Some((6, "m6".to_owned()));
    assert_eq!(log.newest(Start::Unknown, &Text).await.unwrap(), six, "listing");
    assert_eq!(log.newest(Start::At(2), &Text).await.unwrap(), six, "a hint at a collected number");
    assert_eq!(log.newest(Start::At(4), &Text).await.unwrap(), six, "probing forward");
    // A stale known generation whose successor is collected: the tombstone
    // makes it list and jump.
    assert_eq!(log.newest(Start::Known(2, "old".into()), &Text).await.unwrap(), six);
    // A zombie (object and tombstone) is never the newest.
    log.create(7, by("m7"), |_| Ok(false)).await.unwrap();
    log.collect(7, by("gc")).await.unwrap();
    log.store.put(&log.key(7), by("zombie")).await.unwrap();
    assert_eq!(log.newest(Start::At(5), &Text).await.unwrap(), six);
    assert_eq!(log.list().await.unwrap().dead, vec![7]);
}

#[tokio::test]
async fn the_probe_steps_get_then_head() {
    let log = SeqLog::new(Store::memory(), manifests());
    log.create(1, by("a"), mine).await.unwrap();
    log.create(2, by("b"), mine).await.unwrap();
    let (next, head) = log.probe_after(1).get().await.unwrap();
    assert_eq!((next, head.number()), (Some(by("b")), 2));
    assert!(!head.tombstoned().await.unwrap());
    log.collect(1, by("gc")).await.unwrap();
    let (next, head) = log.probe_after(0).get().await.unwrap();
    assert_eq!(next, None);
    assert!(head.tombstoned().await.unwrap(), "collected: tombstoned");
    assert!(log.successor_exists(1).await.unwrap());
    assert!(!log.successor_exists(2).await.unwrap());
}

/// A local store whose directory fsync fails while `healthy` is false, over
/// the fault wrapper.
fn local_faulty(dir: &std::path::Path) -> (SeqLog, Arc<FaultStore>, Arc<std::sync::atomic::AtomicBool>) {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let sync = crate::store::durability::DirSync::new(move |_| {
        if h.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(5))
        }
    });
    let fault = std::sync::OnceLock::new();
    let store = Store::local(dir).unwrap().with_dir_sync(sync).with_inner(|inner| {
        let f = FaultStore::new(inner);
        let _ = fault.set(f.clone());
        f
    });
    (SeqLog::new(store, manifests()), fault.get().unwrap().clone(), healthy)
}

#[tokio::test]
async fn an_object_judged_ours_is_never_acknowledged_after_a_failed_write() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fault, healthy) = local_faulty(dir.path());
    // Landed, then reported an error (on a local directory: an fsync
    // failed); the read back finds ours: the outcome is unknown, never a win.
    fault.fail_next_put("00000000000000000001.json", Fault::After);
    assert!(matches!(log.create(1, by("me"), mine).await, Err(SeqError::Store(_))));
    assert_eq!(log.get(1).await.unwrap(), Some(by("me")), "visible, not durable");
    // The disk answers again: a fsync of the directory would now succeed,
    // but it proves nothing about the failed one.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let again = log.create(1, by("me"), mine).await;
    assert!(
        matches!(again, Err(SeqError::Store(StoreError::DurabilityUnknown { .. }))),
        "still unknown: {again:?}"
    );
    // A new object, written and fsynced in full, is ours.
    assert_eq!(log.create(2, by("me"), mine).await.unwrap(), Created::Won);
}

#[tokio::test]
async fn a_create_whose_first_try_failed_before_landing_is_won_by_a_full_retry() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fault, healthy) = local_faulty(dir.path());
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    fault.fail_next_put("00000000000000000001.json", Fault::Before);
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won, "the retry created it in full");
}

#[tokio::test]
async fn a_tombstone_whose_create_failed_is_written_again_before_the_object_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, fault, healthy) = local_faulty(dir.path());
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(log.create(1, by("me"), mine).await.unwrap(), Created::Won);
    let tombstone = log.series().tombstone_key(1).unwrap();
    fault.fail_next_put("00000000000000000001.gc", Fault::After);
    log.collect(1, by("gc")).await.unwrap();
    assert!(!log.store.durability_unknown(&tombstone), "rewritten in full, not trusted as found");
    assert!(log.tombstoned(1).await.unwrap());
    assert_eq!(log.get(1).await.unwrap(), None, "then the object went");

    // The rewrite fails too: the object it fences is kept.
    assert_eq!(log.create(2, by("me"), mine).await.unwrap(), Created::Won);
    fault.fail_next_put("00000000000000000002.gc", Fault::After);
    fault.fail_next_put("00000000000000000002.gc", Fault::Before);
    assert!(log.collect(2, by("gc")).await.is_err());
    assert_eq!(log.get(2).await.unwrap(), Some(by("me")));
}
