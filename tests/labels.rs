//! Namespace labels over HTTP: set with a write or `PATCH .../metadata`,
//! removed with `null`, shown in metadata, used by the listing filter
//! (`?label=k:v[,k2:v2]`), kept by later writes and compaction, by copies and
//! branches, and by a snapshot restored elsewhere; invalid labels are a 400
//! that changes nothing.

use crate::common;

use common::{client, get, post, Daemon};
use serde_json::{json, Value as Json};

async fn patch(c: &reqwest::Client, url: &str, body: &Json) -> (u16, Json) {
    common::json_of(c.patch(url).json(body).send().await.unwrap()).await
}

async fn listed(c: &reqwest::Client, d: &Daemon, filter: &str) -> Vec<String> {
    let (s, b) = get(c, &d.at(&format!("/v1/namespaces?label={filter}"))).await;
    assert_eq!(s, 200, "{b}");
    b["namespaces"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn labels_are_set_shown_filtered_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let (s, b) = post(
        &c,
        &d.at("/v2/namespaces/web"),
        &json!({"upsert_rows": [{"id": 1, "t": "a"}], "labels": {"env": "prod", "team": "search"}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    post(&c, &d.at("/v2/namespaces/dev"), &json!({"upsert_rows": [{"id": 1}], "labels": {"env": "dev"}}))
        .await;
    post(&c, &d.at("/v2/namespaces/bare"), &json!({"upsert_rows": [{"id": 1}]})).await;
    let (_, md) = get(&c, &d.at("/v1/namespaces/web/metadata")).await;
    assert_eq!(md["labels"], json!({"env": "prod", "team": "search"}), "{md}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/bare/metadata")).await;
    assert!(md.get("labels").is_none(), "no labels, no field: {md}");

    let (s, md) =
        patch(&c, &d.at("/v1/namespaces/web/metadata"), &json!({"labels": {"team": null, "tier": "gold"}}))
            .await;
    assert_eq!(s, 200, "{md}");
    assert_eq!(md["labels"], json!({"env": "prod", "tier": "gold"}));
    assert_eq!(listed(&c, &d, "env:prod").await, vec!["web"]);
    assert_eq!(listed(&c, &d, "env:prod,tier:gold").await, vec!["web"]);
    assert_eq!(listed(&c, &d, "env:dev").await, vec!["dev"]);
    assert!(listed(&c, &d, "env:prod,tier:silver").await.is_empty());
    let (s, b) = get(&c, &d.at("/v1/namespaces?label=nocolon")).await;
    assert_eq!(s, 400, "{b}");

    // Invalid labels: 400, nothing changed (neither by PATCH nor by a write).
    for bad in [json!({"Bad Key": "x"}), json!({"k": "a,b"}), json!({"k": 3})] {
        let (s, b) = patch(&c, &d.at("/v1/namespaces/web/metadata"), &json!({"labels": bad})).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    let (s, _) =
        post(&c, &d.at("/v2/namespaces/web"), &json!({"upsert_rows": [{"id": 9}], "labels": {"X": "y"}}))
            .await;
    assert_eq!(s, 400);
    let (s, b) = patch(&c, &d.at("/v1/namespaces/ghost/metadata"), &json!({"labels": {"k": "v"}})).await;
    assert_eq!(s, 404, "{b}");

    // Later writes and a compaction keep them.
    post(&c, &d.at("/v2/namespaces/web"), &json!({"upsert_rows": [{"id": 2, "t": "b"}]})).await;
    let (s, b) = post(&c, &d.at("/v1/namespaces/web/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/web/metadata")).await;
    assert_eq!(md["labels"], json!({"env": "prod", "tier": "gold"}), "{md}");
    assert_eq!(md["approx_row_count"], 2);

    // Copies (shallow and deep) and a restored snapshot carry them.
    for (dst, deep) in [("branch", false), ("deep", true)] {
        let (s, b) = post(
            &c,
            &d.at(&format!("/v1/namespaces/{dst}/_admin/copy")),
            &json!({"source_namespace": "web", "deep": deep}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (_, md) = get(&c, &d.at(&format!("/v1/namespaces/{dst}/metadata"))).await;
        assert_eq!(md["labels"], json!({"env": "prod", "tier": "gold"}), "{dst}: {md}");
    }
    let snap = c.get(d.at("/v1/namespaces/web/_admin/snapshot")).send().await.unwrap().bytes().await.unwrap();
    let (s, b) = common::json_of(
        c.post(d.at("/v1/namespaces/restored/_admin/restore"))
            .header("content-type", "application/octet-stream")
            .body(snap)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/restored/metadata")).await;
    assert_eq!(md["labels"], json!({"env": "prod", "tier": "gold"}), "{md}");
    assert_eq!(listed(&c, &d, "tier:gold").await, vec!["branch", "deep", "restored", "web"]);
}

/// A write's labels commit in the write's own generation: the response's
/// `version` is the generation whose metadata shows them, and the write made
/// exactly one generation (no second, label-only commit after the rows).
#[tokio::test]
async fn a_writes_labels_commit_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let url = d.at("/v2/namespaces/one");
    let (s, first) = post(&c, &url, &json!({"upsert_rows": [{"id": 1}], "labels": {"env": "dev"}})).await;
    assert_eq!(s, 200, "{first}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/one/metadata")).await;
    assert_eq!(md["version"], first["version"], "the namespace's first write is its only generation: {md}");
    assert_eq!(md["labels"], json!({"env": "dev"}), "{md}");

    let body = json!({"upsert_rows": [{"id": 2}], "labels": {"env": "prod", "tier": "gold"}});
    let (s, w) = post(&c, &url, &body).await;
    assert_eq!(s, 200, "{w}");
    let v = w["version"].as_u64().unwrap();
    assert_eq!(v, first["version"].as_u64().unwrap() + 1, "one new generation: {w}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/one/metadata")).await;
    assert_eq!(md["version"], v, "no generation after the write's: {md}");
    assert_eq!(md["labels"], json!({"env": "prod", "tier": "gold"}), "{md}");
    assert_eq!(md["approx_row_count"], 2);

    // Labels alone (beside operations that change no row) are still one generation.
    let (s, w) =
        post(&c, &url, &json!({"delete_by_filter": ["id", "Eq", 99], "labels": {"tier": null}})).await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["version"].as_u64().unwrap(), v + 1, "{w}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/one/metadata")).await;
    assert_eq!((md["version"].as_u64().unwrap(), &md["labels"]), (v + 1, &json!({"env": "prod"})), "{md}");
}

/// A write whose labels would pass the per-namespace cap is refused before
/// anything is written: neither its rows nor its labels are committed.
#[tokio::test]
async fn a_write_over_the_label_cap_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let url = d.at("/v2/namespaces/capped");
    let (s, b) = post(&c, &url, &json!({"upsert_rows": [{"id": 1}]})).await;
    assert_eq!(s, 200, "{b}");
    let too_many: serde_json::Map<String, Json> = (0..=64).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (s, b) = post(&c, &url, &json!({"upsert_rows": [{"id": 2}], "labels": too_many})).await;
    assert_eq!(s, 400, "{b}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/capped/metadata")).await;
    assert_eq!(md["version"], 1, "{md}");
    assert_eq!(md["approx_row_count"], 1, "the refused write's row was not committed: {md}");
    assert!(md.get("labels").is_none(), "{md}");
}

/// A write that creates a namespace by branching (or copying) with `labels` is one generation: the
/// fork's, carrying the source's labels with the write's changes applied; a refused label change
/// creates nothing.
#[tokio::test]
async fn a_branch_write_carries_its_labels_in_the_forks_generation() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let body = json!({"upsert_rows": [{"id": 1}], "labels": {"env": "dev", "team": "a"}});
    let (s, b) = post(&c, &d.at("/v2/namespaces/src"), &body).await;
    assert_eq!(s, 200, "{b}");
    let fork = json!({"branch_from_namespace": "src", "labels": {"env": "test", "team": null}});
    let (s, w) = post(&c, &d.at("/v2/namespaces/br"), &fork).await;
    assert_eq!(s, 200, "{w}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/br/metadata")).await;
    assert_eq!(md["version"], w["version"], "no generation after the fork's: {md}");
    assert_eq!(md["version"], 1, "the branch's first and only generation: {md}");
    assert_eq!(md["labels"], json!({"env": "test"}), "{md}");
    assert_eq!(md["approx_row_count"], 1, "{md}");

    let too_many: serde_json::Map<String, Json> = (0..64).map(|i| (format!("k{i}"), json!("v"))).collect();
    let fork = json!({"copy_from_namespace": "src", "labels": too_many});
    let (s, b) = post(&c, &d.at("/v2/namespaces/cp"), &fork).await;
    assert_eq!(s, 400, "65 labels with the source's two: {b}");
    let (s, md) = get(&c, &d.at("/v1/namespaces/cp/metadata")).await;
    assert_eq!(s, 404, "the refused copy created nothing: {md}");
}
