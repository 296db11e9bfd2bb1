//! Slow and greedy clients, over real HTTP on loopback (raw TCP where a
//! well-behaved client library would not misbehave on purpose):
//! - a body trickled one byte at a time, each just under the stall timeout,
//!   is cut at the total body deadline with a JSON 408, and the connection
//!   is closed;
//! - a connection that sends part of the HTTP/2 preface (or part of HTTP/1
//!   headers) is closed after the header-read timeout;
//! - over the connection cap, one more connection gets `503` with
//!   `retry-after` and is closed, the open ones keep working, and a new
//!   connection is served again once one closes;
//! - a small query on another connection answers promptly while slow
//!   clients hold connections open;
//! - a slow restore upload holds no lock: a repair of the same project (which
//!   excludes restores) finishes while the upload is half sent, and the
//!   upload then restores; an upload past its own deadline is a 408 and its
//!   spool file is gone.

mod common;

use std::time::{Duration, Instant};

use common::{client, json_of, post, Daemon};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(d: &Daemon) -> TcpStream {
    TcpStream::connect(d.url.trim_start_matches("http://")).await.unwrap()
}

/// Read until the peer closes (or resets); None if it is still open after `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// One response of a keep-alive connection: (status, head, body).
async fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before a response head: {}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    while data.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed mid-body");
        data.extend_from_slice(&buf[..n]);
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, data[head_end..head_end + len].to_vec())
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

#[tokio::test]
async fn a_trickled_body_is_cut_at_the_total_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Stall timeout (the idle timeout) 1 s; the whole body must arrive within 2 s.
    let d = Daemon::start(dir.path(), &["--idle-timeout-secs", "1", "--body-timeout-secs", "2"]);
    let mut s = connect(&d).await;
    let head = "POST /v2/namespaces/slow HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                content-length: 1000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut r, mut w) = s.into_split();
    let trickle = tokio::spawn(async move {
        // One byte every 700 ms: under the 1 s stall timeout, for ~12 s unless cut.
        for _ in 0..17 {
            if w.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    });
    let mut out = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(8), r.read_to_end(&mut out)).await.is_ok_and(|r| r.is_ok());
    let elapsed = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&out).to_string();
    assert!(closed, "the connection is closed after the 408 (got {text:?} in {elapsed:?})");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    let body: Json = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["status"], "error", "{body}");
    assert!(body["error"].as_str().unwrap().contains("not received within 2 s"), "{body}");
    assert!(elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn partial_handshakes_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--header-read-timeout-secs", "1"]);
    let partial: [&[u8]; 3] = [
        b"PRI * HTTP/2.0\r\n",                                   // part of the HTTP/2 preface
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", // preface + SETTINGS, no request
        b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n",          // HTTP/1 headers without their end
    ];
    let mut conns = Vec::new();
    for bytes in partial {
        let mut s = connect(&d).await;
        s.write_all(bytes).await.unwrap();
        conns.push(s);
    }
    let started = Instant::now();
    for (i, s) in conns.iter_mut().enumerate() {
        let out = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(out.is_some(), "connection {i} is still open after 5 s");
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(4), "{elapsed:?}");
    let (s, _) = common::get(&client(), &d.at("/health")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn the_connection_cap_refuses_one_more_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--max-connections", "4"]);
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&d).await;
        s.write_all(HEALTH).await.unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        open.push(s);
    }
    let mut extra = connect(&d).await;
    extra.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").await.unwrap();
    let out = read_until_closed(&mut extra, Duration::from_secs(3)).await.expect("refused and closed");
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains(r#""status":"error""#), "{text}");
    for s in &mut open {
        s.write_all(HEALTH).await.unwrap();
        assert_eq!(read_response(s).await.0, 200, "an open connection keeps working");
    }
    drop(open.pop());
    let started = Instant::now();
    loop {
        let mut s = connect(&d).await;
        s.write_all(HEALTH).await.unwrap();
        let out = read_until_closed(&mut s, Duration::from_millis(300)).await;
        if out.is_none() || out.as_ref().is_some_and(|o| o.starts_with(b"HTTP/1.1 200")) {
            break; // a kept-alive 200 (still open) or a 200 then close
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no slot freed: {:?}",
            out.map(String::from_utf8)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_query_answers_promptly_while_slow_clients_are_connected() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<_> = (0..20).map(|i| json!({"id": i, "vector": [i as f32, 1.0]})).collect();
    assert_eq!(post(&c, &d.at("/v2/namespaces/q"), &json!({"upsert_rows": rows})).await.0, 200);
    let mut slow = Vec::new();
    for i in 0..30 {
        let mut s = connect(&d).await;
        let bytes: &[u8] = match i % 3 {
            0 => b"PRI * HTTP/2.0\r\n",
            1 => b"GET /health HTTP/1.1\r\nhost: 1",
            _ => b"POST /v2/namespaces/q HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 99\r\n\r\n{",
        };
        s.write_all(bytes).await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let (s, b) =
        post(&c, &d.at("/v2/namespaces/q/query"), &json!({"rank_by": ["id", "asc"], "top_k": 5})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"].as_array().unwrap().len(), 5);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    drop(slow);
}

#[tokio::test]
async fn a_slow_restore_upload_holds_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<_> = (0..20).map(|i| json!({"id": i, "vector": [i as f32, 1.0]})).collect();
    assert_eq!(post(&c, &d.at("/v2/namespaces/src"), &json!({"upsert_rows": rows})).await.0, 200);
    let snap = c.get(d.at("/v1/namespaces/src/_admin/snapshot")).send().await.unwrap();
    let bytes = snap.bytes().await.unwrap().to_vec();
    let mut s = connect(&d).await;
    let head = format!(
        "POST /v1/namespaces/dst/_admin/restore HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        bytes.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Header, manifest and some objects: enough for a restore that locks
    // before reading the rest to be holding its locks now.
    let half = bytes.len() / 2;
    s.write_all(&bytes[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let repair = c.post(d.at("/v1/_admin/repair")).json(&json!({})).timeout(Duration::from_secs(3)).send();
    let (status, b) = json_of(repair.await.expect("repair is not held up by the upload")).await;
    assert_eq!(status, 200, "{b}");
    s.write_all(&bytes[half..]).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    let body: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    let q = json!({"rank_by": ["id", "asc"], "top_k": 100});
    let (_, got) = post(&c, &d.at("/v2/namespaces/dst/query"), &q).await;
    assert_eq!(got["rows"].as_array().map(Vec::len), Some(20), "{got}");
}

#[tokio::test]
async fn a_restore_upload_past_its_deadline_is_a_408_and_leaves_no_spool_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--upload-timeout-secs", "1"]);
    let mut s = connect(&d).await;
    let head = "POST /v1/namespaces/late/_admin/restore HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                content-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\nTIDE.SNP";
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let out = read_until_closed(&mut s, Duration::from_secs(5)).await.expect("answered and closed");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("not received within 1 s"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let left: Vec<_> = std::fs::read_dir(dir.path().join("scratch")).unwrap().collect();
    assert!(left.is_empty(), "spool files left: {left:?}");
}
