//! One conformance suite for `Store` (object_store's `integration.rs` is the
//! model): every backend and every wrapper runs the same checks, so the
//! commit protocol can rely on the same behaviour whatever it commits to.
//!
//! Guards (`storage-format.md` 1.6, 2 and 5): reads return exactly what was
//! written; a ranged read returns exactly the range or fails; `put_if_absent`
//! is a conditional create that never overwrites; `delete` of a missing key
//! is not an error; a missing object is `StoreError::NotFound` (and `None`
//! from `get_opt`, `false` from `exists`); `list` is recursive and sorted,
//! `list_dirs` gives the immediate children; keys with every character our
//! layout uses survive a round trip; empty and multi-megabyte objects work.
//!
//! Backends: memory, the local directory (with fsync), the S3 server of the
//! test suite (moto or `TIDEPOOL_TEST_S3_ENDPOINT`), and the fault, trace and
//! metered wrappers around memory (unarmed; then an armed fault must surface
//! as an error and leave the store consistent, the trace must record calls,
//! and the metrics must count the fault as an error), and the breaker around
//! the S3 server and around a faulty memory store (answers — errors included
//! — never open it).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::s3;
use tidepool::metrics::{Gauges, Metrics};
use tidepool::store::fault::{Fault, FaultStore};
use tidepool::store::trace::{Op, TraceStore};
use tidepool::store::{CreateOutcome, Store, StoreError};

/// Keys shaped like the layout's (`layout.rs`): org/project/namespaces/ns/...
fn key(rest: &str) -> String {
    format!("acme/search/namespaces/docs-1_x.y/{rest}")
}

async fn round_trips(s: &Store) {
    let k = key("wal/00000000000000000001-4f2a.wal");
    s.put(&k, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap(), Bytes::from_static(b"hello"), "{}", s.description());
    assert_eq!(s.get_opt(&k).await.unwrap().as_deref(), Some(&b"hello"[..]));
    assert!(s.exists(&k).await.unwrap());
    // A plain put overwrites (CURRENT is rewritten this way).
    s.put(&k, Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap(), Bytes::from_static(b"world"));
    let empty = key("empty");
    s.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(s.get(&empty).await.unwrap().len(), 0);
    // Multi-megabyte, not a multiple of any block size.
    let big: Vec<u8> = (0..3_000_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let bk = key("segments/seg-1/data.seg");
    s.put(&bk, Bytes::from(big.clone())).await.unwrap();
    assert_eq!(s.get(&bk).await.unwrap().as_ref(), &big[..]);
}

async fn ranged_reads(s: &Store) {
    let k = key("segments/seg-2/data.seg");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    s.put(&k, Bytes::from(data.clone())).await.unwrap();
    for (a, b) in [(0u64, 1u64), (0, 100_000), (4_096, 20_000), (99_999, 100_000)] {
        let got = s.get_range(&k, a..b).await.unwrap();
        assert_eq!(got.as_ref(), &data[a as usize..b as usize], "{} range {a}..{b}", s.description());
    }
    // Past the end is an error, never a short read.
    assert!(s.get_range(&k, 99_000..100_001).await.is_err(), "{}", s.description());
    assert!(matches!(s.get_range(&key("nope"), 0..1).await, Err(StoreError::NotFound(_))));
}

async fn missing_objects(s: &Store) {
    let k = key("manifests/00000000000000000099.json");
    assert!(matches!(s.get(&k).await, Err(StoreError::NotFound(_))), "{}", s.description());
    assert_eq!(s.get_opt(&k).await.unwrap(), None);
    assert!(!s.exists(&k).await.unwrap());
    // Deleting a missing key is not an error, and deleting twice is fine.
    s.delete(&k).await.unwrap();
    let d = key("deleted");
    s.put(&d, Bytes::from_static(b"x")).await.unwrap();
    s.delete(&d).await.unwrap();
    s.delete(&d).await.unwrap();
    assert!(!s.exists(&d).await.unwrap());
}

async fn conditional_create(s: &Store) {
    let k = key("manifests/00000000000000000001.json");
    assert_eq!(s.put_if_absent(&k, Bytes::from_static(b"one")).await.unwrap(), CreateOutcome::Created);
    assert_eq!(
        s.put_if_absent(&k, Bytes::from_static(b"two")).await.unwrap(),
        CreateOutcome::AlreadyExists,
        "{}",
        s.description()
    );
    // The loser did not overwrite the winner.
    assert_eq!(s.get(&k).await.unwrap(), Bytes::from_static(b"one"));
    // Concurrent creates: exactly one wins.
    let race = key("manifests/00000000000000000002.json");
    let tries = (0..8u8).map(|i| {
        let (s, race) = (s.clone(), race.clone());
        async move { (i, s.put_if_absent(&race, Bytes::from(vec![i])).await.unwrap()) }
    });
    let results = futures::future::join_all(tries).await;
    let winners: Vec<u8> =
        results.iter().filter(|(_, o)| *o == CreateOutcome::Created).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "{}: {results:?}", s.description());
    assert_eq!(s.get(&race).await.unwrap().as_ref(), &[winners[0]]);
}

async fn listing(s: &Store) {
    let root = "org1/proj/namespaces/";
    for k in ["a/manifests/1.json", "a/wal/2.wal", "a/wal/1.wal", "b/CURRENT", "c/segments/s/data.seg"] {
        s.put(&format!("{root}{k}"), Bytes::from_static(b"v")).await.unwrap();
    }
    s.put("org1/proj/namespacesX/z", Bytes::from_static(b"v")).await.unwrap();
    let listed: Vec<String> =
        s.list(&format!("{root}a/")).await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(
        listed,
        [
            "org1/proj/namespaces/a/manifests/1.json",
            "org1/proj/namespaces/a/wal/1.wal",
            "org1/proj/namespaces/a/wal/2.wal"
        ],
        "{}",
        s.description()
    );
    let all = s.list(root).await.unwrap();
    assert_eq!(all.len(), 5, "a prefix is a path: namespacesX is not under namespaces/");
    assert!(all.iter().all(|o| o.size == 1));
    assert_eq!(s.list_dirs(root).await.unwrap(), ["a", "b", "c"]);
    assert_eq!(s.list_dirs("org1/").await.unwrap(), ["proj"]);
    assert!(s.list("nothing/here/").await.unwrap().is_empty());
    assert!(s.list_dirs("nothing/here/").await.unwrap().is_empty());
}

/// Every check, on one store (each works under its own keys).
async fn conformance(s: Store) {
    round_trips(&s).await;
    ranged_reads(&s).await;
    missing_objects(&s).await;
    conditional_create(&s).await;
    listing(&s).await;
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(Store::memory()).await;
}

#[tokio::test]
async fn local_directory_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Store::local(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn s3_store_conforms() {
    let bucket = s3::new_bucket().await;
    conformance(s3::s3_store(&format!("s3://{bucket}/tp"))).await;
}

#[tokio::test]
async fn fault_wrapper_conforms_unarmed_and_fails_loudly_when_armed() {
    let fault = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    let s = Store::new(fault.clone(), "fault(memory)");
    conformance(s.clone()).await;
    // Before: nothing is written and the caller sees an error.
    let k = key("manifests/00000000000000000010.json");
    fault.fail_next_put("manifests/00000000000000000010", Fault::Before);
    assert!(s.put_if_absent(&k, Bytes::from_static(b"a")).await.is_err());
    assert!(!s.exists(&k).await.unwrap());
    // After: the object lands but the caller sees an error (an ambiguous
    // outcome); a retry then sees it exists, with the first bytes.
    fault.fail_next_put("manifests/00000000000000000010", Fault::After);
    assert!(s.put_if_absent(&k, Bytes::from_static(b"b")).await.is_err());
    assert_eq!(s.put_if_absent(&k, Bytes::from_static(b"c")).await.unwrap(), CreateOutcome::AlreadyExists);
    assert_eq!(s.get(&k).await.unwrap(), Bytes::from_static(b"b"));
}

#[tokio::test]
async fn trace_wrapper_conforms_and_records_every_call() {
    let trace = TraceStore::new(Arc::new(object_store::memory::InMemory::new()), Duration::ZERO);
    let s = Store::new(trace.clone(), "trace(memory)");
    conformance(s.clone()).await;
    let _ = trace.take();
    let k = key("CURRENT");
    s.put(&k, Bytes::from_static(b"7")).await.unwrap();
    s.get(&k).await.unwrap();
    s.get_range(&k, 0..1).await.unwrap();
    s.exists(&k).await.unwrap();
    s.list(&key("")).await.unwrap();
    let t = trace.take();
    for op in [Op::Put, Op::Get, Op::GetRange, Op::Head, Op::List] {
        assert_eq!(t.count(op), 1, "{op:?}");
    }
    assert_eq!(t.requests(), 5);
}

#[tokio::test]
async fn metered_wrapper_conforms_and_counts_faults_as_errors() {
    let fault = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    let metrics = Arc::new(Metrics::default());
    let s = Store::new(fault.clone(), "fault(memory)").metered(metrics.clone());
    conformance(s.clone()).await;
    let errors = |op: &str| {
        let text = metrics.render(&Gauges::default(), None);
        let line = format!("tidepool_store_errors_total{{op=\"{op}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(line.as_str())).map(|v| v.parse::<u64>().unwrap())
    };
    assert_eq!(errors("put_if_absent"), Some(0), "not-found and already-exists answers are not errors");
    assert_eq!(errors("get"), Some(0));
    let k = key("manifests/00000000000000000011.json");
    fault.fail_next_put("manifests/00000000000000000011", Fault::Before);
    assert!(s.put_if_absent(&k, Bytes::from_static(b"a")).await.is_err());
    assert_eq!(errors("put_if_absent"), Some(1));
}

#[tokio::test]
async fn breaker_wrapper_conforms_and_answers_never_open_it() {
    let bucket = s3::new_bucket().await;
    let s3 = s3::s3_store(&format!("s3://{bucket}/tp")).with_breaker(Duration::from_secs(1));
    conformance(s3.clone()).await;
    assert!(s3.circuit_open().is_none(), "not found and already-exists answers leave it closed");
    let fault = FaultStore::new(Arc::new(object_store::memory::InMemory::new()));
    let s = Store::new(fault.clone(), "fault(memory)").with_breaker(Duration::from_secs(1));
    conformance(s.clone()).await;
    let k = key("manifests/00000000000000000012.json");
    fault.fail_next_put("manifests/00000000000000000012", Fault::Before);
    assert!(s.put_if_absent(&k, Bytes::from_static(b"a")).await.is_err());
    assert!(s.circuit_open().is_none(), "a failure that is an answer leaves it closed");
    assert_eq!(s.put_if_absent(&k, Bytes::from_static(b"b")).await.unwrap(), CreateOutcome::Created);
}
