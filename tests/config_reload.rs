//! Configuration at run time. `tidepool config check` resolves exactly as
//! `serve` would and prints every effective setting with its source, secrets
//! redacted; an invalid configuration is exit status 2 with the reason.
//! `SIGHUP` re-reads the file: a new API key set takes effect for new requests
//! while a request authenticated under the old set completes on its open
//! connection; settings that need a restart are reported and keep running; a
//! malformed file changes nothing; the service manager sees `RELOADING=1`
//! then `READY=1` with the outcome in `STATUS=`.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;

const BIN: &str = env!("CARGO_BIN_EXE_tidepool");

fn keys_file(path: &Path, key: &str, extra: &str) {
    let text = format!(
        "{extra}\ncompaction_wal_objects = 16\n\n[[api_keys]]\nkey = \"{key}\"\norg = \"acme\"\nproject = \"edge\"\n"
    );
    std::fs::write(path, text).unwrap();
}

fn config_check(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(BIN).args(["config", "check"]).args(args).env_remove("TIDEPOOL_LOG").output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn config_check_prints_the_effective_configuration_with_sources_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    keys_file(&file, "sekrit-key-1", "s3_secret_access_key = \"hunter2\"\nmax_loaded_namespaces = 7");
    let file_arg = file.to_str().unwrap();
    let (code, out, err) = config_check(&["--config", file_arg, "--listen", "127.0.0.1:9999"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("sekrit-key-1") && !out.contains("hunter2"), "secrets leak: {out}");
    assert!(out.contains("<redacted>"), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:9999\"  # flag"), "{out}");
    assert!(out.contains("max_loaded_namespaces = 7  # file, reloadable"), "{out}");
    assert!(out.contains("idle_timeout_secs = 60  # default"), "{out}");
    assert!(out.contains("org = \"acme\""), "{out}");

    let out = Command::new(BIN)
        .args(["--json", "config", "check", "--config", file_arg])
        .env("TIDEPOOL_IDLE_TIMEOUT_SECS", "5")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let idle = json["settings"].as_array().unwrap().iter().find(|s| s["key"] == "idle_timeout_secs").unwrap();
    assert_eq!(idle["value"], 5);
    assert_eq!(idle["source"], "env TIDEPOOL_IDLE_TIMEOUT_SECS");
    assert_eq!(json["valid"], true);

    std::fs::write(&file, "max_body_bytes = 12\n").unwrap();
    let (code, _, err) = config_check(&["--config", file_arg]);
    assert_eq!(code, 2);
    assert!(err.contains("max_body_bytes must be at least 1024"), "{err}");
    std::fs::write(&file, "listen = [\n").unwrap();
    let (code, _, err) = config_check(&["--config", file_arg]);
    assert_eq!(code, 2);
    assert!(err.contains("config file"), "{err}");
}

/// The notify messages received so far, waiting up to 10 s for one containing `want`.
fn await_notify(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str) {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(want)) {
        assert!(t.elapsed() < Duration::from_secs(10), "no {want:?}; got {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn hangup(d: &Daemon) {
    assert!(Command::new("kill").args(["-HUP", &d.pid().to_string()]).status().unwrap().success());
}

async fn status_with(d: &Daemon, key: &str) -> u16 {
    let c = common::client();
    c.get(d.at("/v1/namespaces")).bearer_auth(key).send().await.unwrap().status().as_u16()
}

/// Wait until `key` gets `want` (a reload is asynchronous to the signal).
async fn await_status(d: &Daemon, key: &str, want: u16) {
    let t = Instant::now();
    while status_with(d, key).await != want {
        assert!(t.elapsed() < Duration::from_secs(10), "{key} never got {want}: {}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_api_keys_without_dropping_a_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    keys_file(&file, "key-a", "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let data = dir.path().join("data");
    let d = Daemon::try_start_with_env(
        &data,
        &["--config", file.to_str().unwrap()],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    )
    .unwrap_or_else(|f| panic!("{f:?}"));
    let mut seen = Vec::new();
    await_notify(&sock, &mut seen, "READY=1");
    assert_eq!(status_with(&d, "key-a").await, 200);
    assert_eq!(status_with(&d, "key-b").await, 401);

    // A write authenticated with key-a whose body is still on the way.
    let body = br#"{"upsert_rows": [{"id": 1, "note": "sent across a reload"}]}"#;
    let addr = d.url.trim_start_matches("http://");
    let mut inflight = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v2/namespaces/inflight HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer key-a\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    inflight.write_all(head.as_bytes()).unwrap();
    inflight.write_all(&body[..10]).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Key b replaces key a; the retention changes too (it needs a restart).
    keys_file(
        &file,
        "key-b",
        "retention_secs = 10\nmax_loaded_namespaces = 3\nmax_body_bytes = 4096\nquery_timeout_ms = 5000",
    );
    hangup(&d);
    await_status(&d, "key-b", 200).await;
    assert_eq!(status_with(&d, "key-a").await, 401, "the old key is gone for new requests");
    await_notify(&sock, &mut seen, "RELOADING=1");
    await_notify(&sock, &mut seen, "configuration reloaded");
    let ready = seen.iter().find(|m| m.contains("configuration reloaded")).unwrap();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains("applied max_body_bytes, query_timeout_ms, max_loaded_namespaces, api_keys"),
        "{ready}"
    );
    assert!(ready.contains("not applied until a restart: retention_secs"), "{ready}");

    inflight.write_all(&body[10..]).unwrap();
    inflight.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut resp = [0u8; 1024];
    let n = inflight.read(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp[..n]);
    assert!(resp.starts_with("HTTP/1.1 200"), "the in-flight request completes: {resp}");
    let c = common::client();
    let q = c
        .post(d.at("/v2/namespaces/inflight/query"))
        .bearer_auth("key-b")
        .json(&serde_json::json!({"filters": ["id", "Eq", 1], "rank_by": ["id", "asc"], "include_attributes": ["note"]}))
        .send()
        .await
        .unwrap();
    let q: serde_json::Value = q.json().await.unwrap();
    assert_eq!(q["rows"][0]["note"], "sent across a reload", "{q}");
    // The reloaded body limit applies to new requests.
    let big = serde_json::json!({"upsert_rows": [{"id": 2, "note": "x".repeat(5000)}]});
    let r = c.post(d.at("/v2/namespaces/inflight")).bearer_auth("key-b").json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413, "max_body_bytes was reloaded");

    // A malformed file changes nothing and says why.
    std::fs::write(&file, "[[api_keys]\nkey = ").unwrap();
    hangup(&d);
    await_notify(&sock, &mut seen, "reload failed");
    assert_eq!(status_with(&d, "key-b").await, 200, "the running keys stay");
    assert!(
        d.stderr().contains("reload failed, the previous configuration stays in force"),
        "{}",
        d.stderr()
    );
    d.stop();
}
