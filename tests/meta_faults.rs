//! I/O faults in `meta.redb`, injected at redb's storage backend (every
//! write, `set_len` and fsync of the database file goes through it), driven
//! over real HTTP against an in-process server on loopback.
//!
//! Invariants checked:
//! - One I/O error does not latch the node: once the fault clears, the next
//!   write succeeds without a restart (the database is reopened), within
//!   seconds.
//! - `/ready` is truthful: 503 while the metadata cannot take writes, 200
//!   again after the reopen; `/health` stays 200 throughout.
//! - Nothing acknowledged is lost, whichever metadata write of a request the
//!   fault hits (refcounts before the commit, the best-effort commit record
//!   after the acknowledgement).

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use serde_json::{json, Value as Json};
use tidepool::engine::{Engine, EngineConfig};
use tidepool::meta::MetaOpener;
use tidepool::store::Store;

/// Which operations fail: the countdown of successful mutating calls left
/// before every mutating call fails (negative: no fault armed).
#[derive(Debug, Default)]
struct Faults {
    ok_left: AtomicI64,
}

impl Faults {
    fn disarmed() -> Arc<Self> {
        Arc::new(Faults { ok_left: AtomicI64::new(-1) })
    }

    /// From now on, `n` more writes/fsyncs succeed, then every one fails.
    fn fail_after(&self, n: i64) {
        self.ok_left.store(n, Ordering::SeqCst);
    }

    fn clear(&self) {
        self.ok_left.store(-1, Ordering::SeqCst);
    }

    fn check(&self, what: &str) -> std::io::Result<()> {
        let left = self.ok_left.load(Ordering::SeqCst);
        if left < 0 {
            return Ok(());
        }
        if left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("injected ENOSPC on {what}"),
            ));
        }
        self.ok_left.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// redb's file backend with injected failures on every mutating call.
#[derive(Debug)]
struct FaultyFile {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.faults.check("set_len")?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.faults.check("fsync")?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.faults.check("write")?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

fn faulty_opener(faults: Arc<Faults>) -> MetaOpener {
    MetaOpener::new(move |dir: &Path| {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("meta.redb"))
            .map_err(redb::DatabaseError::from)?;
        let backend = FaultyFile { inner: FileBackend::new(file)?, faults: faults.clone() };
        redb::Builder::new().create_with_backend(backend)
    })
}

/// A daemon (engine + HTTP server, in process) whose `meta.redb` has faults.
struct Node {
    base: String,
    faults: Arc<Faults>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::disarmed();
        let store = Store::local(&dir.path().join("objects")).unwrap();
        let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
        cfg.meta_opener = faulty_opener(faults.clone());
        let engine: Arc<Engine> = Engine::open(cfg).await.unwrap();
        let state = Arc::new(tidepool::api::AppState::new(
            engine,
            tidepool::api::auth::Auth::new(vec![]),
            tidepool::api::Limits {
                max_body_bytes: 1 << 20,
                body_stall_timeout: Duration::from_secs(5),
                body_timeout: Duration::from_secs(60),
                upload_timeout: Duration::from_secs(60),
                max_restore_bytes: 1 << 30,
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let opts = tidepool::api::server::ServerOptions {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(1),
            max_connections: 1024,
        };
        tokio::spawn(tidepool::api::server::serve(listener, state, opts, std::future::pending()));
        Node { base, faults, client: tidepool::tls::client(), _dir: dir }
    }

    async fn write(&self, id: u64) -> (u16, Json) {
        let body = json!({"upsert_rows": [{"id": id, "v": id}]});
        let r = self.client.post(format!("{}/v2/namespaces/ns", self.base)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Json::Null))
    }

    async fn status(&self, route: &str) -> u16 {
        self.client.get(format!("{}/{route}", self.base)).send().await.unwrap().status().as_u16()
    }

    async fn ids(&self) -> Vec<u64> {
        let body = json!({"rank_by": ["id", "asc"], "top_k": 1000});
        let r = self
            .client
            .post(format!("{}/v2/namespaces/ns/query", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Json = r.json().await.unwrap();
        v["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
    }

    /// Poll `/ready` until 200; the time it took.
    async fn until_ready(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        while self.status("ready").await != 200 {
            assert!(t.elapsed() < limit, "not ready {limit:?} after the fault cleared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        t.elapsed()
    }
}

/// Invariant: one I/O error does not latch the node; `/ready` tells the truth meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_io_error_recovers_without_a_restart() {
    let node = Node::start().await;
    assert_eq!(node.write(1).await.0, 200);
    node.faults.fail_after(0);
    let (status, body) = node.write(2).await;
    assert!((500..600).contains(&status), "a write whose metadata cannot be written fails: {status} {body}");
    assert!(body["error"].as_str().is_some_and(|m| m.contains("I/O")), "a clear message: {body}");
    assert_eq!(node.status("ready").await, 503, "not ready while the metadata cannot take writes");
    assert_eq!(node.status("health").await, 200, "alive all along");
    let (status, _) = node.write(3).await;
    assert!((500..600).contains(&status), "still failing while the fault holds");
    node.faults.clear();
    let took = node.until_ready(Duration::from_secs(5)).await;
    eprintln!("ready again {took:?} after the fault cleared");
    assert_eq!(node.write(4).await.0, 200, "writes work again without a restart");
    let ids = node.ids().await;
    assert!(ids.contains(&1) && ids.contains(&4), "acknowledged writes are there: {ids:?}");
}

/// Invariant: whichever metadata write of a request fails — refcounts before
/// the commit or the best-effort record after the acknowledgement — the node
/// recovers and every acknowledged write is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_any_metadata_step_of_a_write_loses_nothing_acknowledged() {
    let node = Node::start().await;
    let mut acked = Vec::new();
    let mut failed = 0;
    for step in 0..12u64 {
        node.faults.fail_after(i64::try_from(step).unwrap());
        let id = 100 + step;
        let (status, body) = node.write(id).await;
        match status {
            200 => acked.push(id),
            500..=599 => failed += 1,
            other => panic!("write {id}: unexpected {other} {body}"),
        }
        node.faults.clear();
        node.until_ready(Duration::from_secs(5)).await;
        let after = 1000 + step;
        assert_eq!(node.write(after).await.0, 200, "step {step}: a write after recovery succeeds");
        acked.push(after);
        let ids = node.ids().await;
        let lost: Vec<_> = acked.iter().filter(|id| !ids.contains(id)).collect();
        assert!(lost.is_empty(), "step {step}: acknowledged writes lost: {lost:?}");
    }
    assert!(failed > 0, "some injected faults failed a write");
    assert!(acked.iter().any(|id| (100..200).contains(id)), "some faults hit after the acknowledgement");
}
