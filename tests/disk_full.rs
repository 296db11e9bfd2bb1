//! A real full disk: the daemon's data dir on a 40 MiB tmpfs, mounted in a
//! private mount namespace (`unshare -rm`, no privileges needed), with a
//! 6 MiB filler file beside it. Writes (with compactions every few WAL
//! objects) run until the disk is full.
//!
//! Invariants guarded:
//! - A full disk is answered with 507 and a JSON message (never a 500, never
//!   a crash): on writes, and on compactions, which run while there is room
//!   and refuse before filling the disk further.
//! - Every acknowledged write is readable while the disk is full.
//! - Once space is freed (the filler removed, through `/proc/PID/root`), writes
//!   succeed again without a restart, `/ready` is 200, and every acknowledged
//!   write is still there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_tidepool");

struct Node {
    child: Child,
    url: String,
    mount: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon on a fresh tmpfs at `mount` (in its own mount namespace).
fn start_on_tmpfs(mount: &str) -> Node {
    let script = format!(
        "set -e; mount -t tmpfs -o size=40m tmpfs {mount}; \
         head -c 6291456 /dev/zero > {mount}/filler; \
         exec {BIN} serve --data-dir {mount}/data --listen 127.0.0.1:0 \
           --compaction-wal-objects 4 --retention-secs 0 --gc-interval-secs 0"
    );
    let mut child = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .env("TIDEPOOL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("unshare (util-linux) runs the daemon in a private mount namespace");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(20)).expect("the daemon starts on the tmpfs");
    Node { child, url, mount: mount.to_owned() }
}

async fn write(c: &reqwest::Client, url: &str, ids: std::ops::Range<u64>) -> (u16, Value) {
    // Incompressible text: 8 KiB per row.
    let rows: Vec<Value> = ids
        .map(|i| {
            let text: String =
                (0..8192).map(|k| char::from(b'a' + ((i * 7919 + k * 104_729) % 26) as u8)).collect();
            json!({"id": i, "body": text})
        })
        .collect();
    let r =
        c.post(format!("{url}/v2/namespaces/full")).json(&json!({"upsert_rows": rows})).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Compactions (performed, failed) from `/metrics`.
async fn compactions(c: &reqwest::Client, url: &str) -> (f64, f64) {
    let text = c.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |outcome: &str| {
        let prefix = format!("tidepool_compactions_total{{outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0.0, |v| v.trim().parse().unwrap())
    };
    (value("compacted"), value("failed"))
}

async fn count(c: &reqwest::Client, url: &str) -> u64 {
    let q = json!({"aggregate_by": {"n": ["Count"]}});
    let r: Value = c
        .post(format!("{url}/v2/namespaces/full/query"))
        .json(&q)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["aggregations"]["n"].as_u64().unwrap_or_else(|| panic!("count: {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_loses_nothing_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    let node = start_on_tmpfs(mount.to_str().unwrap());
    let c = tidepool::tls::client_builder().timeout(Duration::from_secs(60)).build().unwrap();

    let (mut acked, mut next, mut full) = (0u64, 0u64, 0);
    let started = Instant::now();
    while full < 5 {
        assert!(started.elapsed() < Duration::from_secs(120), "the disk never filled");
        let (status, body) = write(&c, &node.url, next..next + 32).await;
        match status {
            200 => acked = next + 32,
            507 => {
                full += 1;
                assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "a JSON message: {body}");
            }
            other => panic!("a write on a full disk answered {other}: {body}"),
        }
        next += 32;
    }
    assert!(acked >= 256, "some writes fit before the disk filled ({acked})");
    let (compacted, failed) = compactions(&c, &node.url).await;
    assert!(compacted >= 1.0, "compactions ran while the disk filled");
    assert!(failed >= 1.0, "compactions were refused once it was nearly full");
    let r = c.post(format!("{}/v1/namespaces/full/_admin/compact", node.url)).send().await.unwrap();
    let status = r.status().as_u16();
    assert!(
        status == 200 || status == 507,
        "compaction on a full disk: {status} {}",
        r.text().await.unwrap()
    );
    assert_eq!(c.get(format!("{}/health", node.url)).send().await.unwrap().status(), 200);
    assert_eq!(count(&c, &node.url).await, acked, "every acknowledged write is readable on a full disk");

    // Free space from outside the daemon's mount namespace.
    let filler = format!("/proc/{}/root{}/filler", node.child.id(), node.mount);
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("remove {filler}: {e}"));
    let t = Instant::now();
    loop {
        let (status, body) = write(&c, &node.url, 1_000_000..1_000_002).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 507, "{body}");
        assert!(t.elapsed() < Duration::from_secs(15), "writes never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.get(format!("{}/ready", node.url)).send().await.unwrap().status(), 200);
    assert_eq!(count(&c, &node.url).await, acked + 2, "nothing acknowledged was lost");
}
