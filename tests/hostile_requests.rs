//! Requests a hostile client or web page sends, over real HTTP:
//! - an `offset` beyond the documented limit is a 400 naming it (it used to
//!   size a heap up front and abort the process), on a compacted namespace
//!   and on WAL rows, for ANN, BM25 and attribute order; the daemon stays up;
//! - in the open loopback mode (no API keys), a request with a foreign
//!   `Origin` or a non-loopback `Host` (DNS rebinding) is 403, a mutating
//!   request whose body is not declared `application/json` is 415, and the
//!   allow-lists (`--allowed-origins`, `--allowed-hosts`) let the listed ones in;
//! - with API keys configured, the bearer key is what counts;
//! - a restore checks every object against its manifest (length, crc32c,
//!   decoding) before anything is committed, and a namespace whose data is
//!   damaged can still be deleted.

use crate::common;

use common::{client, post, Daemon};
use serde_json::json;

#[tokio::test]
async fn huge_offsets_are_a_400_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let rows: Vec<_> = (0..50)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0], "t": format!("word{i} common")}))
        .collect();
    let schema = json!({"t": {"type": "string", "full_text_search": true}});
    post(&c, &d.at("/v2/namespaces/h"), &json!({"upsert_rows": rows, "schema": schema})).await;
    for compacted in [false, true] {
        if compacted {
            post(&c, &d.at("/v1/namespaces/h/_admin/compact"), &json!({})).await;
        }
        for rank in
            [json!(["vector", "ANN", [1.0, 1.0]]), json!(["t", "BM25", "common"]), json!(["id", "asc"])]
        {
            for offset in [1u64 << 40, 1u64 << 62, u64::MAX] {
                let q = json!({"rank_by": rank, "top_k": 10, "offset": offset});
                let (s, b) = post(&c, &d.at("/v2/namespaces/h/query"), &q).await;
                assert_eq!(s, 400, "{q}: {b}");
                assert!(b["error"].as_str().unwrap().contains("offset must be at most 100000"), "{b}");
            }
            let q = json!({"rank_by": rank, "top_k": 10, "offset": 100_000});
            let (s, b) = post(&c, &d.at("/v2/namespaces/h/query"), &q).await;
            assert_eq!((s, b["rows"].as_array().map(Vec::len)), (200, Some(0)), "{b}");
        }
    }
    let (s, _) = common::get(&c, &d.at("/health")).await;
    assert_eq!(s, 200, "still up");
}

#[tokio::test]
async fn browsers_are_kept_out_of_the_open_loopback_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &["--allowed-origins", "http://localhost:3000", "--allowed-hosts", "search.lan"],
    );
    let c = client();
    let ns = d.at("/v2/namespaces/b");
    let body = r#"{"upsert_rows": [{"id": 1}]}"#;
    let send = |origin: Option<&str>, host: Option<&str>, ct: Option<&str>| {
        let mut r = c.post(&ns).body(body);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(t) = ct {
            r = r.header("content-type", t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(Some("https://evil.example"), None, Some("application/json")).await, 403);
    assert_eq!(send(None, Some("evil.example:7474"), Some("application/json")).await, 403, "DNS rebinding");
    assert_eq!(send(None, None, Some("text/plain")).await, 415, "a no-preflight form post");
    assert_eq!(send(None, None, None).await, 415);
    assert_eq!(send(Some("http://localhost:3000"), None, Some("application/json")).await, 200);
    assert_eq!(send(None, Some("search.lan:7474"), Some("application/json")).await, 200);
    assert_eq!(send(None, Some("localhost"), Some("application/json; charset=utf-8")).await, 200);
    let q = c.post(d.at("/v2/namespaces/b/query")).header("origin", "https://evil.example");
    let q = q.json(&json!({"rank_by": ["id", "asc"]}));
    assert_eq!(q.send().await.unwrap().status(), 403, "reads too (rebinding would read them)");
}

#[tokio::test]
async fn with_api_keys_the_key_is_what_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, "[[api_keys]]\nkey = \"k\"\norg = \"o\"\nproject = \"p\"\n").unwrap();
    let d = Daemon::start(&dir.path().join("data"), &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let r = c
        .post(d.at("/v2/namespaces/k"))
        .bearer_auth("k")
        .header("origin", "https://app.example")
        .json(&json!({"upsert_rows": [{"id": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a keyed request from a page the user configured");
    let r = c.post(d.at("/v2/namespaces/k")).json(&json!({"upsert_rows": [{"id": 1}]})).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

fn segment_files(store: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for seg in std::fs::read_dir(store).unwrap() {
        let p = seg.unwrap().path().join("data.seg");
        if p.is_file() {
            out.push(p);
        }
    }
    out
}

/// A snapshot carrying an object that is not what its manifest names (here:
/// taken from a store whose segment was altered, so the file's own checksums
/// are all valid) is refused whole; a namespace whose segment is damaged can
/// still be deleted.
#[tokio::test]
async fn restore_verifies_every_object_and_delete_needs_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let rows: Vec<_> = (0..20).map(|i| json!({"id": i, "t": format!("row {i}")})).collect();
    post(&c, &d.at("/v2/namespaces/src"), &json!({"upsert_rows": rows})).await;
    let (s, b) = post(&c, &d.at("/v1/namespaces/src/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let segs = segment_files(&dir.path().join("store/default/default/namespaces/src/segments"));
    assert_eq!(segs.len(), 1);
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&segs[0], bytes).unwrap();

    let snap = c.get(d.at("/v1/namespaces/src/_admin/snapshot")).send().await.unwrap();
    assert_eq!(snap.status(), 200);
    let snap = snap.bytes().await.unwrap();
    let r = c
        .post(d.at("/v1/namespaces/copy/_admin/restore"))
        .header("content-type", "application/octet-stream")
        .body(snap)
        .send()
        .await
        .unwrap();
    let (s, b) = common::json_of(r).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("data.seg"), "the object is named: {b}");
    let (s, _) = common::get(&c, &d.at("/v1/namespaces/copy/metadata")).await;
    assert_eq!(s, 404, "nothing was committed");
    let leftovers = dir.path().join("store/default/default/namespaces/copy");
    let objects = walk(&leftovers);
    assert!(objects.is_empty(), "the refused restore wrote nothing: {objects:?}");

    let r = c.delete(d.at("/v2/namespaces/src")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (s, _) = common::get(&c, &d.at("/v1/namespaces/src/metadata")).await;
    assert_eq!(s, 404);
}

/// A restore upload larger than `max_restore_bytes` is refused with a 413
/// naming the limit while it arrives (its spool file is removed); one within
/// it restores.
#[tokio::test]
async fn restore_uploads_are_bounded_by_their_own_limit() {
    const LIMIT: usize = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--max-restore-bytes", &LIMIT.to_string()]);
    let c = client();
    let snapshot = |ns: &'static str, n: usize| {
        let (c, d) = (c.clone(), &d);
        async move {
            let rows: Vec<_> =
                (0..n).map(|i| json!({"id": i, "t": format!("row {i} {}", "x".repeat(64))})).collect();
            assert_eq!(
                post(&c, &d.at(&format!("/v2/namespaces/{ns}")), &json!({"upsert_rows": rows})).await.0,
                200
            );
            c.get(d.at(&format!("/v1/namespaces/{ns}/_admin/snapshot")))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    let restore = |to: &'static str, body: bytes::Bytes| {
        let (c, d) = (c.clone(), &d);
        async move {
            let r = c
                .post(d.at(&format!("/v1/namespaces/{to}/_admin/restore")))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap();
            common::json_of(r).await
        }
    };
    let big = snapshot("big", 1000).await;
    assert!(big.len() > LIMIT, "{}", big.len());
    let (s, b) = restore("big-copy", big).await;
    assert_eq!(s, 413, "{b}");
    assert!(b["error"].as_str().unwrap().contains("max_restore_bytes"), "{b}");
    assert!(walk(&dir.path().join("scratch")).is_empty(), "the spool file is removed");
    let small = snapshot("small", 3).await;
    assert!(small.len() <= LIMIT, "{}", small.len());
    let (s, b) = restore("small-copy", small).await;
    assert_eq!(s, 200, "{b}");
    let q = json!({"rank_by": ["id", "asc"], "top_k": 10});
    let (s, b) = post(&c, &d.at("/v2/namespaces/small-copy/query"), &q).await;
    assert_eq!((s, b["rows"].as_array().map(Vec::len)), (200, Some(3)), "{b}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flat_map(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p)
        } else {
            vec![p]
        }
    })
    .collect()
}
