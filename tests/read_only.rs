//! Read-only namespaces over HTTP (`PATCH .../metadata {"read_only": bool}`, the SDK's
//! `update_metadata(read_only=...)`).
//!
//! Invariants guarded:
//! - While set, every change is refused with 403 and a JSON message, and nothing is written:
//!   v2 writes of every kind, schema updates, the legacy v1 upsert, and deleting the namespace.
//! - Reads, compaction, labels and pinning still work; the metadata shows `"read_only": true`.
//! - The flag survives a restart, and a branch carries it (a copy too).
//! - Clearing it makes the namespace writable again; a retried write with an idempotency key
//!   that landed before the flag was set still answers as the first time.

use crate::common;

use common::{client, get, post, Daemon};
use serde_json::{json, Value as Json};

async fn patch(c: &reqwest::Client, url: &str, body: &Json) -> (u16, Json) {
    common::json_of(c.patch(url).json(body).send().await.unwrap()).await
}

async fn delete(c: &reqwest::Client, url: &str) -> (u16, Json) {
    common::json_of(c.delete(url).send().await.unwrap()).await
}

async fn ids(c: &reqwest::Client, d: &Daemon, ns: &str) -> Vec<u64> {
    let (s, b) = post(
        c,
        &d.at(&format!("/v2/namespaces/{ns}/query")),
        &json!({"rank_by": ["id", "asc"], "top_k": 100}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

fn refused(status: u16, body: &Json) {
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("read-only"), "{body}");
}

#[tokio::test]
async fn a_read_only_namespace_refuses_changes_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let write = |body: Json| {
        let (c, url) = (c.clone(), d.at("/v2/namespaces/docs"));
        async move { post(&c, &url, &body).await }
    };
    let keyed = json!({"upsert_rows": [{"id": 1, "t": "a"}, {"id": 2, "t": "b"}], "idempotency_key": "k1"});
    let (s, first) = write(keyed.clone()).await;
    assert_eq!(s, 200, "{first}");

    let (s, md) = patch(&c, &d.at("/v1/namespaces/docs/metadata"), &json!({"read_only": true})).await;
    assert_eq!((s, &md["read_only"]), (200, &json!(true)), "{md}");
    let version = md["version"].clone();
    for body in [
        json!({"upsert_rows": [{"id": 3}]}),
        json!({"patch_rows": [{"id": 1, "t": "x"}]}),
        json!({"deletes": [2]}),
        json!({"delete_by_filter": ["id", "Eq", 1]}),
        json!({"schema": {"t": {"type": "string", "full_text_search": true}}}),
    ] {
        let (s, b) = write(body).await;
        refused(s, &b);
    }
    let (s, b) = post(&c, &d.at("/v1/namespaces/docs/schema"), &json!({"u": {"type": "string"}})).await;
    refused(s, &b);
    let (s, b) = post(&c, &d.at("/v1/vectors/docs"), &json!({"ids": [9], "vectors": [null]})).await;
    refused(s, &b);
    let (s, b) = delete(&c, &d.at("/v2/namespaces/docs")).await;
    refused(s, &b);
    // The retried write that landed before answers as it did.
    let (s, again) = write(keyed).await;
    assert_eq!((s, &again["rows_upserted"]), (200, &first["rows_upserted"]), "{again}");

    // Nothing changed; reads, compaction, labels and pinning still work.
    assert_eq!(ids(&c, &d, "docs").await, vec![1, 2]);
    let (s, b) = post(&c, &d.at("/v1/namespaces/docs/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, md) = patch(
        &c,
        &d.at("/v1/namespaces/docs/metadata"),
        &json!({"labels": {"env": "prod"}, "pinning": true}),
    )
    .await;
    assert_eq!((s, &md["read_only"], &md["labels"]["env"]), (200, &json!(true), &json!("prod")), "{md}");
    assert_ne!(md["version"], version);

    // A branch carries the flag; a restart keeps it.
    let (s, b) = post(&c, &d.at("/v2/namespaces/fork"), &json!({"branch_from_namespace": "docs"})).await;
    assert_eq!(s, 200, "{b}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/fork/metadata")).await;
    assert_eq!(md["read_only"], json!(true), "{md}");
    let (s, b) = post(&c, &d.at("/v2/namespaces/fork"), &json!({"upsert_rows": [{"id": 5}]})).await;
    refused(s, &b);
    d.sigterm();
    d.wait(std::time::Duration::from_secs(30)).expect("daemon exits");
    d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let (_, md) = get(&c, &d.at("/v1/namespaces/docs/metadata")).await;
    assert_eq!(md["read_only"], json!(true), "after restart: {md}");
    let (s, b) = post(&c, &d.at("/v2/namespaces/docs"), &json!({"upsert_rows": [{"id": 3}]})).await;
    refused(s, &b);

    // Cleared: writable again, and the field is gone.
    let (s, md) = patch(&c, &d.at("/v1/namespaces/docs/metadata"), &json!({"read_only": false})).await;
    assert_eq!(s, 200, "{md}");
    assert!(md.get("read_only").is_none(), "{md}");
    let (s, b) = post(&c, &d.at("/v2/namespaces/docs"), &json!({"upsert_rows": [{"id": 3}]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&c, &d, "docs").await, vec![1, 2, 3]);
    let (s, b) = delete(&c, &d.at("/v2/namespaces/docs")).await;
    assert_eq!(s, 200, "{b}");
    // Bad values are a 400 that changes nothing.
    let (s, b) = patch(&c, &d.at("/v1/namespaces/fork/metadata"), &json!({"read_only": "no"})).await;
    assert_eq!(s, 400, "{b}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/fork/metadata")).await;
    assert_eq!(md["read_only"], json!(true), "{md}");
}
