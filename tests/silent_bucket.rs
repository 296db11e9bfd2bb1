//! A bucket-primary node (`--store s3://`, moto behind the tests' forwarder)
//! whose uplink goes **silent** — a TCP blackhole: connections accepted and
//! never answered, packets dropped rather than refused, the common failure of
//! a cellular or satellite link (issue 37 item 1).
//!
//! Invariants guarded (read timeout 1 s, connect timeout 1 s, probe every 1 s):
//! - The first request after the uplink goes silent answers within 2× the
//!   read timeout: a write with 503, a default read with 200 from the last
//!   known generation (also the first read after a restart while silent).
//! - After that one call went unanswered the store's breaker is open and every
//!   request answers within 100 ms: default reads 200 with every acknowledged
//!   document, writes and reads demanding `strong` 503 with `retry-after`,
//!   metadata 200 with `store.reachable: false`, `/ready` 503.
//! - `/ready` answers within a second also while its own probe of the silent
//!   bucket hangs, and that probe's timeout opens the breaker.
//! - With the uplink back, the breaker's probe notices without a restart:
//!   `/ready` 200, writes and strong reads work, nothing acknowledged is lost.

use crate::common;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use common::proxy::Uplink;
use common::{client, get, s3, Daemon};
use serde_json::{json, Value as Json};

const NS: &str = "notes";
/// `--s3-request-timeout-secs` of these daemons.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// What a request may take once the breaker is open.
const FAST: Duration = Duration::from_millis(100);

fn args(store: &str, endpoint: &str) -> Vec<String> {
    [
        "--store",
        store,
        "--s3-endpoint",
        endpoint,
        "--s3-allow-http",
        "--s3-access-key-id",
        "t",
        "--s3-secret-access-key",
        "t",
        "--s3-connect-timeout-secs",
        "1",
        "--s3-request-timeout-secs",
        "1",
        "--s3-probe-interval-secs",
        "1",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(dir: &Path, args: &[String]) -> Daemon {
    Daemon::start(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The outcome of `f` and how long it took.
async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

/// Status, `retry-after` header and body of a POST.
async fn post_full(url: &str, body: &Json) -> (u16, Option<String>, Json) {
    let resp = client().post(url).json(body).send().await.unwrap();
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, body) = common::json_of(resp).await;
    (status, retry_after, body)
}

async fn upsert(d: &Daemon, ids: std::ops::Range<u64>) -> (u16, Option<String>, Json) {
    let rows: Vec<Json> = ids.map(|i| json!({"id": i, "vector": [i as f32, 1.0]})).collect();
    let body = json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"});
    post_full(&d.at(&format!("/v2/namespaces/{NS}")), &body).await
}

/// A query by id; `strong` demands strong consistency (no stale answer).
async fn query(d: &Daemon, strong: bool) -> (u16, Option<String>, Json) {
    let mut q = json!({"rank_by": ["id", "asc"], "top_k": 1000});
    if strong {
        q["consistency"] = json!({"level": "strong"});
    }
    post_full(&d.at(&format!("/v2/namespaces/{NS}/query")), &q).await
}

fn ids(body: &Json) -> Vec<u64> {
    body["rows"].as_array().map_or(vec![], |r| r.iter().filter_map(|r| r["id"].as_u64()).collect())
}

async fn ready(d: &Daemon) -> (u16, Json) {
    get(&client(), &d.at("/ready")).await
}

/// Polls `/ready` until 200 (the probe noticed the bucket), at most `within`.
async fn ready_again(d: &Daemon, within: Duration) -> Duration {
    let t = Instant::now();
    while ready(d).await.0 != 200 {
        assert!(t.elapsed() < within, "/ready still not 200 after {:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed()
}

/// With the breaker open: every kind of request answers within [`FAST`].
async fn answers_fast_while_open(d: &Daemon, want: &[u64]) {
    let ((status, _, body), took) = timed(query(d, false)).await;
    assert_eq!((status, ids(&body).as_slice()), (200, want), "default read: last known generation: {body}");
    assert!(took < FAST, "a default read with the breaker open took {took:?}");

    let ((status, retry_after, body), took) = timed(upsert(d, 100..101)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"), "a 503 of a silent store says when to retry: {body}");
    assert!(took < FAST, "a write with the breaker open took {took:?}");

    let ((status, retry_after, body), took) = timed(query(d, true)).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")), "strong read: {body}");
    assert!(took < FAST, "a strong read with the breaker open took {took:?}");

    let ((status, meta), took) = timed(get(&client(), &d.at(&format!("/v1/namespaces/{NS}/metadata")))).await;
    assert_eq!((status, &meta["store"]["reachable"]), (200, &json!(false)), "{meta}");
    assert!(took < FAST, "metadata with the breaker open took {took:?}");

    let ((status, body), took) = timed(ready(d)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("unreachable"), "{body}");
    assert!(took < FAST, "/ready with the breaker open took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_bucket_costs_one_read_timeout_then_requests_fail_fast() {
    let started = Instant::now();
    let bucket = s3::new_bucket().await;
    let uplink = Uplink::start(s3::endpoint());
    let dir = tempfile::tempdir().unwrap();
    let args = args(&format!("s3://{bucket}/edge"), &uplink.url);
    let d = start(dir.path(), &args);
    assert_eq!(upsert(&d, 0..20).await.0, 200);
    let want: Vec<u64> = (0..20).collect();
    assert_eq!(ids(&query(&d, false).await.2), want);

    uplink.blackhole();
    let ((status, _, body), took) = timed(upsert(&d, 20..25)).await;
    assert_eq!(status, 503, "{body}");
    assert!(took < 2 * READ_TIMEOUT, "the first write against a silent bucket took {took:?}");
    eprintln!("first write against the silent bucket: {status} after {took:?}");
    answers_fast_while_open(&d, &want).await;

    // Restarted while silent: one read timeout for the first read, then fast.
    d.stop();
    let d = start(dir.path(), &args);
    let ((status, _, body), took) = timed(query(&d, false)).await;
    assert_eq!((status, ids(&body)), (200, want.clone()), "served from the caches after a restart: {body}");
    assert!(took < 2 * READ_TIMEOUT, "the first read after a restart while silent took {took:?}");
    eprintln!("first read after a restart while silent: {status} after {took:?}");
    answers_fast_while_open(&d, &want).await;

    uplink.restore();
    let noticed = ready_again(&d, Duration::from_secs(10)).await;
    assert_eq!(upsert(&d, 20..25).await.0, 200, "writes resume without a restart");
    let (status, _, body) = query(&d, true).await;
    assert_eq!((status, ids(&body)), (200, (0..25).collect::<Vec<_>>()), "{body}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    eprintln!("uplink back: /ready 200 after {noticed:?}; whole test {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_answers_within_a_second_while_its_probe_of_a_silent_bucket_hangs() {
    let bucket = s3::new_bucket().await;
    let uplink = Uplink::start(s3::endpoint());
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), &args(&format!("s3://{bucket}/edge"), &uplink.url));
    assert_eq!(upsert(&d, 0..5).await.0, 200);

    // A refused uplink fails fast by itself (no breaker) and marks the store
    // unreachable, so `/ready` probes it ...
    uplink.cut();
    assert_eq!(query(&d, false).await.0, 200);
    assert_eq!(ready(&d).await.0, 503);
    // ... and when the bucket then goes silent, that probe hangs: `/ready` does not.
    uplink.blackhole();
    for _ in 0..3 {
        let ((status, body), took) = timed(ready(&d)).await;
        assert_eq!(status, 503, "{body}");
        assert!(took < Duration::from_secs(1), "/ready took {took:?} against a silent bucket");
    }
    // The probe's own timeout opened the breaker: from now on it answers at once.
    tokio::time::sleep(2 * READ_TIMEOUT).await;
    let ((status, body), took) = timed(ready(&d)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("has not answered"), "{body}");
    assert!(took < FAST, "/ready with the breaker open took {took:?}");

    uplink.restore();
    ready_again(&d, Duration::from_secs(10)).await;
    assert_eq!(upsert(&d, 5..10).await.0, 200);
}
