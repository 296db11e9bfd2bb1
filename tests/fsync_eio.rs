//! A real fsync failure (issue 37 item 2, "fsyncgate"): the daemon binary runs
//! with an LD_PRELOAD shim (`tests/common/fsync_eio_shim.c`, compiled here
//! with `cc`) that makes `fsync`/`fdatasync`/`syncfs` return EIO for file
//! descriptors whose path ends with an armed suffix, as many times as armed.
//!
//! Invariants checked:
//! - A write whose manifest directory fsync failed is not acknowledged (a 5xx
//!   JSON error), although the same directory is fsynced successfully right
//!   after: a failed fsync leaves the outcome unknown, and no later fsync of
//!   the same thing confirms it.
//! - The node re-establishes durability by itself: the next write (a new
//!   generation, written and fsynced in full) is acknowledged with a 200.
//! - A failed fsync of a WAL object's directory is refused the same way, and
//!   writes go on afterwards.
//! - After SIGKILL and a restart without the shim, every acknowledged
//!   document is there.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Daemon;
use serde_json::{json, Value as Json};

/// The shim, built into `dir` from the C source beside the harness.
fn build_shim(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/fsync_eio_shim.c");
    let out = dir.join("fsync_eio_shim.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to build the fsync shim");
    out
}

/// The shim's control and log files, and what it logged.
struct Shim {
    so: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
}

impl Shim {
    fn new(dir: &Path) -> Shim {
        let shim = Shim { so: build_shim(dir), ctl: dir.join("fsync.ctl"), log: dir.join("fsync.log") };
        shim.arm(0, "/manifests");
        shim
    }

    /// Fail the next `count` fsyncs of a path ending with `suffix`.
    fn arm(&self, count: u32, suffix: &str) {
        std::fs::write(&self.ctl, format!("{count} {suffix}\n")).unwrap();
    }

    /// The armed failures not yet injected.
    fn remaining(&self) -> u32 {
        let s = std::fs::read_to_string(&self.ctl).unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The logged calls since the log was last taken, as (verdict, path).
    fn take_log(&self) -> Vec<(String, String)> {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        s.lines().filter_map(|l| l.split_once(' ')).map(|(v, p)| (v.to_owned(), p.to_owned())).collect()
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.so.display().to_string()),
            ("FSYNC_SHIM_CTL", self.ctl.display().to_string()),
            ("FSYNC_SHIM_LOG", self.log.display().to_string()),
        ]
    }
}

fn start(data: &Path, env: &[(&'static str, String)]) -> Daemon {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match Daemon::try_start_with_env(data, &[], &env) {
        Ok(d) => d,
        Err(f) => panic!("daemon failed to start ({:?}): {}", f.status, f.stderr),
    }
}

async fn write(d: &Daemon, id: u64) -> (u16, Json) {
    write_to(d, "ns", id).await
}

async fn write_to(d: &Daemon, ns: &str, id: u64) -> (u16, Json) {
    let body = json!({"upsert_rows": [{"id": id, "v": id}]});
    common::post(&common::client(), &d.at(&format!("/v2/namespaces/{ns}")), &body).await
}

async fn ids(d: &Daemon) -> HashSet<u64> {
    ids_of(d, "ns").await
}

async fn ids_of(d: &Daemon, ns: &str) -> HashSet<u64> {
    let q = json!({"rank_by": ["id", "asc"], "top_k": 10000, "consistency": {"level": "strong"}});
    let (status, v) = common::post(&common::client(), &d.at(&format!("/v2/namespaces/{ns}/query")), &q).await;
    assert_eq!(status, 200, "{v}");
    v["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

/// A refused write: a 5xx with a JSON message.
fn assert_refused(what: &str, (status, body): &(u16, Json)) {
    assert!((500..600).contains(status), "{what}: acknowledged after a failed fsync: {status} {body}");
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a JSON message: {body}");
}

/// Whether the log holds a call with `verdict` on a path ending with `suffix`.
fn logged(log: &[(String, String)], verdict: &str, suffix: &str) -> bool {
    log.iter().any(|(v, p)| v == verdict && p.ends_with(suffix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_fsync_failed_is_not_acknowledged_on_a_later_fsync() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let shim = Shim::new(t.path());
    let d = start(&data, &shim.env());
    let mut acked = HashSet::new();
    assert_eq!(write(&d, 1).await.0, 200, "{}", d.stderr());
    acked.insert(1);
    assert!(logged(&shim.take_log(), "ok", "/manifests"), "the shim sees the manifests directory fsync");

    // The manifest lands, its directory fsync fails with EIO: not acknowledged,
    // although the retry finds its own manifest and the directory fsyncs fine.
    shim.arm(1, "/manifests");
    let r = write(&d, 2).await;
    assert_eq!(shim.remaining(), 0, "the armed failure was injected");
    assert_refused("write 2 (manifest directory EIO)", &r);
    eprintln!("refused: {r:?}");
    let log = shim.take_log();
    assert!(logged(&log, "fail", "/manifests"), "{log:?}");

    // The next write is a new generation, written and fsynced in full: acked,
    // and the directory whose fsync failed is fsynced successfully again.
    let r = write(&d, 3).await;
    assert_eq!(r.0, 200, "writes go on once fsync works: {r:?}");
    acked.insert(3);
    let log = shim.take_log();
    assert!(logged(&log, "ok", "/manifests"), "a later fsync of the same directory succeeded: {log:?}");

    // The same for a WAL object's directory.
    shim.arm(1, "/wal");
    let r = write(&d, 4).await;
    assert_eq!(shim.remaining(), 0, "the armed failure was injected");
    assert_refused("write 4 (WAL directory EIO)", &r);
    assert!(logged(&shim.take_log(), "fail", "/wal"));
    assert_eq!(write(&d, 5).await.0, 200);
    acked.insert(5);

    let seen = ids(&d).await;
    assert!(acked.is_subset(&seen), "acknowledged {acked:?}, visible {seen:?}");
    drop(d); // SIGKILL

    let d = start(&data, &[]);
    let seen = ids(&d).await;
    assert!(acked.is_subset(&seen), "after a restart: acknowledged {acked:?}, visible {seen:?}");
    assert_eq!(write(&d, 6).await.0, 200);
    eprintln!("refused writes visible after recovery: {:?}", seen.difference(&acked).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_whose_fsync_failed_at_its_creation_is_created_again() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let shim = Shim::new(t.path());
    let d = start(&data, &shim.env());
    assert_eq!(write_to(&d, "ns", 1).await.0, 200, "{}", d.stderr());

    // The first write of a new namespace creates its directories; the fsync
    // of the one that holds the new `wal/` entry fails.
    shim.arm(1, "/namespaces/fresh");
    let r = write_to(&d, "fresh", 1).await;
    assert_eq!(shim.remaining(), 0, "the armed failure was injected");
    assert_refused("first write of a namespace (directory EIO)", &r);
    shim.take_log();

    // Fsyncing that directory again would prove nothing, so the next write
    // creates the namespace's directories afresh: `namespaces/` gets a new
    // entry and is fsynced with it (it is not touched when they exist).
    shim.arm(0, "/namespaces");
    assert_eq!(write_to(&d, "fresh", 2).await.0, 200);
    let log = shim.take_log();
    assert!(logged(&log, "ok", "/namespaces"), "the namespace directory was created again: {log:?}");
    assert_eq!(write_to(&d, "fresh", 3).await.0, 200);
    drop(d); // SIGKILL

    let d = start(&data, &[]);
    let seen = ids_of(&d, "fresh").await;
    assert!(seen.contains(&2) && seen.contains(&3), "acknowledged writes kept: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_refused_write_is_acknowledged_only_on_a_new_generation() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let shim = Shim::new(t.path());
    let d = start(&data, &shim.env());
    let (status, v) = write(&d, 1).await;
    assert_eq!(status, 200, "{v} {}", d.stderr());
    let first = v["version"].as_u64().unwrap();

    // Refused: its manifest landed, but the directory fsync failed.
    let body = json!({"upsert_rows": [{"id": 2, "v": 2}], "idempotency_key": "k2"});
    let url = d.at("/v2/namespaces/ns");
    shim.arm(1, "/manifests");
    assert_refused("write 2 (manifest directory EIO)", &common::post(&common::client(), &url, &body).await);
    shim.take_log();

    // The client retries with its idempotency key. The refused generation
    // holds the request, but it is not durable: the answer may not rest on
    // it, so a new generation is written in full first.
    let (status, v) = common::post(&common::client(), &url, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deduplicated"], true, "{v}");
    assert!(v["version"].as_u64() >= Some(first + 2), "answered past the refused generation: {v}");
    let log = shim.take_log();
    assert!(logged(&log, "ok", "/manifests"), "acknowledged without a new manifest: {v} {log:?}");
    drop(d); // SIGKILL

    let d = start(&data, &[]);
    let seen = ids(&d).await;
    assert!(seen.contains(&1) && seen.contains(&2), "acknowledged writes kept: {seen:?}");
}
