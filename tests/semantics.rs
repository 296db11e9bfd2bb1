//! turbopuffer semantics a second SDK relies on, over real HTTP:
//! - a uuid is 128 bits: letter case is not part of the value in ids
//!   declared uuid, in
//!   `uuid` attributes, in `Eq`/`In` filters (on WAL rows and on the
//!   attribute index of a segment alike), in deletes and patches, and values
//!   come back in canonical (lower-case) form; a plain string stays exact;
//! - a `datetime` is an instant: ISO 8601 values with any offset or
//!   precision are stored as UTC milliseconds and come back canonical
//!   (`YYYY-MM-DDTHH:MM:SS.mmmZ`); filters (on WAL rows and on a compacted
//!   segment) and ordering compare instants; a non-date value or literal is
//!   a 400 that writes nothing;
//! - deleting a namespace forgets its pin: one re-created under the same
//!   name starts unpinned;
//! - a `delete_by_filter` or `patch_by_filter` that matches nothing writes
//!   nothing (no WAL object, no generation);
//! - `In` on an array attribute holds when one of its elements is in the list (the
//!   TypeScript SDK's live tests filter `["numbers", "In", [2, 4]]`), on WAL rows and on a
//!   compacted segment alike, and `NotIn` is its negation;
//! - a BM25 query on a `pre_tokenized_array` attribute is an array of tokens: a string is a
//!   400 naming the field.

use crate::common;

use common::{client, get, post, Daemon};
use serde_json::{json, Value as Json};

const LOWER: &str = "942365da-2bd6-4b2c-9e4e-1f0f8e3a9c11";
const UPPER: &str = "942365DA-2BD6-4B2C-9E4E-1F0F8E3A9C11";
const OTHER: &str = "0b4d2f5e-8c1a-4e6b-9f3d-7a2c1e0b9d88";

async fn ids_where(c: &reqwest::Client, d: &Daemon, filter: Json) -> Vec<String> {
    let q = json!({"filters": filter, "rank_by": ["id", "asc"], "top_k": 10, "include_attributes": ["ref"]});
    let (s, b) = post(c, &d.at("/v2/namespaces/u/query"), &q).await;
    assert_eq!(s, 200, "{b}");
    b["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn uuid_letter_case_is_not_part_of_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows = json!([
        {"id": UPPER, "ref": UPPER, "s": UPPER, "n": 1},
        {"id": OTHER, "ref": OTHER.to_uppercase(), "n": 2}
    ]);
    let (s, b) =
        // Ids are uuids only when declared (a uuid-shaped string id is a string otherwise).
        post(&c, &d.at("/v2/namespaces/u"), &json!({"upsert_rows": rows, "schema": {"ref": "uuid", "id": "uuid"}}))
            .await;
    assert_eq!(s, 200, "{b}");

    // On WAL rows (scan), then on a compacted segment (attribute index).
    for compacted in [false, true] {
        if compacted {
            let (s, b) = post(&c, &d.at("/v1/namespaces/u/_admin/compact"), &json!({})).await;
            assert_eq!(s, 200, "{b}");
        }
        for lit in [UPPER, LOWER] {
            assert_eq!(ids_where(&c, &d, json!(["id", "Eq", lit])).await, vec![LOWER], "id Eq {lit}");
            assert_eq!(ids_where(&c, &d, json!(["id", "In", [lit]])).await, vec![LOWER], "id In {lit}");
            assert_eq!(ids_where(&c, &d, json!(["ref", "Eq", lit])).await, vec![LOWER], "ref Eq {lit}");
            let r#in = json!(["ref", "In", [lit, OTHER]]);
            assert_eq!(
                ids_where(&c, &d, r#in).await,
                vec![OTHER.to_owned(), LOWER.to_owned()],
                "ref In {lit}"
            );
            // A plain string attribute compares exactly: only uuid-typed values are uuids.
            assert_eq!(ids_where(&c, &d, json!(["s", "Eq", lit])).await.len(), usize::from(lit == UPPER));
        }
    }
    assert_eq!(ids_where(&c, &d, json!(["id", "NotEq", UPPER])).await, vec![OTHER]);
    let q = json!({"filters": ["id", "Eq", OTHER], "rank_by": ["id", "asc"], "include_attributes": ["ref"]});
    let (_, b) = post(&c, &d.at("/v2/namespaces/u/query"), &q).await;
    assert_eq!(b["rows"][0]["ref"], OTHER, "uuid values come back canonical: {b}");

    // Patches and deletes by an upper-case id reach the same document.
    let (s, b) = post(&c, &d.at("/v2/namespaces/u"), &json!({"patch_rows": [{"id": UPPER, "n": 10}]})).await;
    assert_eq!((s, b["rows_patched"].as_u64()), (200, Some(1)), "{b}");
    let (s, b) = post(&c, &d.at("/v2/namespaces/u"), &json!({"deletes": [OTHER.to_uppercase()]})).await;
    assert_eq!((s, b["rows_deleted"].as_u64()), (200, Some(1)), "{b}");
    let (s, b) =
        post(&c, &d.at("/v2/namespaces/u"), &json!({"delete_by_filter": ["ref", "Eq", UPPER]})).await;
    assert_eq!((s, b["rows_deleted"].as_u64()), (200, Some(1)), "{b}");
    assert!(ids_where(&c, &d, json!(["n", "Gte", 0])).await.is_empty());
}

#[tokio::test]
async fn deleting_a_namespace_forgets_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    post(&c, &d.at("/v2/namespaces/p"), &json!({"upsert_rows": [{"id": 1}]})).await;
    let r = c.patch(d.at("/v1/namespaces/p/metadata")).json(&json!({"pinning": true})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, md) = get(&c, &d.at("/v1/namespaces/p/metadata")).await;
    assert_eq!(md["cache"]["pinned"], true, "{md}");
    let r = c.delete(d.at("/v2/namespaces/p")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    post(&c, &d.at("/v2/namespaces/p"), &json!({"upsert_rows": [{"id": 2}]})).await;
    let (_, md) = get(&c, &d.at("/v1/namespaces/p/metadata")).await;
    assert_eq!(md["cache"]["pinned"], false, "the re-created namespace starts unpinned: {md}");
    assert!(md.get("pinning").is_none(), "{md}");
    // Also after a restart (the pin set in meta.redb forgot it).
    drop(d);
    let d = Daemon::start(dir.path(), &[]);
    let (_, md) = get(&c, &d.at("/v1/namespaces/p/metadata")).await;
    assert_eq!(md["cache"]["pinned"], false, "{md}");
}

fn wal_objects(dir: &std::path::Path) -> usize {
    let wal = dir.join("store/default/default/namespaces/n/wal");
    std::fs::read_dir(wal).map_or(0, |d| d.count())
}

#[tokio::test]
async fn filter_writes_that_match_nothing_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let (_, b) = post(&c, &d.at("/v2/namespaces/n"), &json!({"upsert_rows": [{"id": 1, "k": "a"}]})).await;
    let version = b["version"].as_u64().unwrap();
    let before = wal_objects(dir.path());
    assert_eq!(before, 1);
    for body in [
        json!({"delete_by_filter": ["k", "Eq", "zzz"]}),
        json!({"patch_by_filter": {"filters": ["k", "Eq", "zzz"], "patch": {"k": "b"}}}),
        json!({"delete_by_filter": ["k", "Eq", "zzz"], "return_affected_ids": true}),
    ] {
        let (s, b) = post(&c, &d.at("/v2/namespaces/n"), &body).await;
        assert_eq!(s, 200, "{body}: {b}");
        assert_eq!(b["rows_affected"], 0, "{b}");
        assert_eq!(b["version"].as_u64(), Some(version), "no new generation: {b}");
    }
    assert_eq!(wal_objects(dir.path()), before, "no WAL object");
    let (_, md) = get(&c, &d.at("/v1/namespaces/n/metadata")).await;
    assert_eq!(md["version"].as_u64(), Some(version), "{md}");
    // A filter write that matches does write.
    let (_, b) = post(&c, &d.at("/v2/namespaces/n"), &json!({"delete_by_filter": ["k", "Eq", "a"]})).await;
    assert_eq!((b["rows_deleted"].as_u64(), b["version"].as_u64()), (Some(1), Some(version + 1)), "{b}");
}

async fn ids_by_ts(c: &reqwest::Client, d: &Daemon, filter: Json) -> Vec<u64> {
    let q = json!({"filters": filter, "rank_by": ["ts", "asc"], "top_k": 10});
    let (s, b) = post(c, &d.at("/v2/namespaces/t/query"), &q).await;
    assert_eq!(s, 200, "{b}");
    b["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn datetimes_are_instants_whatever_offset_or_precision() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--compaction-idle-ms", "0"]);
    let c = client();
    let rows = json!([
        {"id": 1, "ts": "2015-01-20T12:34:56-04:00", "tss": ["2015-01-20T12:34:56-04:00"]},
        {"id": 2, "ts": "2015-01-20T12:40:00Z", "tss": ["2015-01-20"]},
        {"id": 3, "ts": "2015-01-20"},
        {"id": 4, "ts": "2015-01-20T16:34:56.5+00:00"},
        {"id": 5, "ts": "2015-01-21T01:00:00+10:00"}
    ]);
    let schema = json!({"ts": "datetime", "tss": "[]datetime"});
    let (s, b) = post(&c, &d.at("/v2/namespaces/t"), &json!({"upsert_rows": rows, "schema": schema})).await;
    assert_eq!(s, 200, "{b}");

    for compacted in [false, true] {
        if compacted {
            let (s, b) = post(&c, &d.at("/v1/namespaces/t/_admin/compact"), &json!({})).await;
            assert_eq!(s, 200, "{b}");
        }
        // 3 = 00:00Z, 2 = 12:40Z, 5 = 15:00Z, 1 = 16:34:56Z, 4 = 16:34:56.500Z
        assert_eq!(ids_by_ts(&c, &d, json!(["ts", "Gte", "2015-01-20T12:40:00Z"])).await, vec![2, 5, 1, 4]);
        assert_eq!(
            ids_by_ts(&c, &d, json!(["ts", "Gte", "2015-01-20T08:40:00-04:00"])).await,
            vec![2, 5, 1, 4]
        );
        assert_eq!(ids_by_ts(&c, &d, json!(["ts", "Lt", "2015-01-20T16:34:56.2Z"])).await, vec![3, 2, 5, 1]);
        assert_eq!(
            ids_by_ts(&c, &d, json!(["ts", "Eq", "2015-01-20T16:34:56Z"])).await,
            vec![1],
            "compacted {compacted}"
        );
        assert_eq!(
            ids_by_ts(
                &c,
                &d,
                json!(["ts", "In", ["2015-01-20T00:00:00+00:00", "2015-01-20T11:00:00-04:00"]])
            )
            .await,
            vec![3, 5]
        );
        assert_eq!(ids_by_ts(&c, &d, json!(["tss", "Contains", "2015-01-20T16:34:56Z"])).await, vec![1]);
        assert_eq!(ids_by_ts(&c, &d, json!(["tss", "Contains", "2015-01-20T00:00:00.000Z"])).await, vec![2]);
    }
    let q =
        json!({"filters": ["id", "Eq", 1], "rank_by": ["id", "asc"], "include_attributes": ["ts", "tss"]});
    let (_, b) = post(&c, &d.at("/v2/namespaces/t/query"), &q).await;
    assert_eq!(b["rows"][0]["ts"], "2015-01-20T16:34:56.000Z", "{b}");
    assert_eq!(b["rows"][0]["tss"], json!(["2015-01-20T16:34:56.000Z"]), "{b}");

    // Non-dates: a clear 400 that writes nothing.
    let (_, md) = get(&c, &d.at("/v1/namespaces/t/metadata")).await;
    let version = md["version"].as_u64();
    for body in [
        json!({"upsert_rows": [{"id": 6, "ts": "not a date"}]}),
        json!({"patch_rows": [{"id": 1, "ts": "2015-02-30"}]}),
        json!({"upsert_rows": [{"id": 7, "tss": ["2015-01-20", "soon"]}]}),
        json!({"delete_by_filter": ["ts", "Lt", "yesterday"]}),
    ] {
        let (s, b) = post(&c, &d.at("/v2/namespaces/t"), &body).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(b["error"].as_str().is_some_and(|e| e.contains("date")), "{b}");
    }
    let q = json!({"filters": ["ts", "Gt", "tomorrow"], "rank_by": ["id", "asc"]});
    let (s, b) = post(&c, &d.at("/v2/namespaces/t/query"), &q).await;
    assert_eq!(s, 400, "{b}");
    let (_, md) = get(&c, &d.at("/v1/namespaces/t/metadata")).await;
    assert_eq!(md["version"].as_u64(), version, "nothing committed: {md}");
    assert_eq!(ids_by_ts(&c, &d, json!(["id", "Gte", 0])).await, vec![3, 2, 5, 1, 4]);
}

#[tokio::test]
async fn in_on_an_array_attribute_matches_any_element() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows = json!([
        {"id": 1, "vector": [1.0, 2.0], "numbers": [1, 2, 3], "tags": ["a", "b"]},
        {"id": 2, "vector": [3.0, 4.0], "numbers": [2, 3, 4], "tags": ["c"]},
        {"id": 3, "vector": [3.0, 4.0], "numbers": [17], "tags": []},
    ]);
    let (s, b) = post(
        &c,
        &d.at("/v2/namespaces/arr"),
        &json!({"upsert_rows": rows, "distance_metric": "cosine_distance"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let ids = |filter: Json| {
        let (c, url) = (c.clone(), d.at("/v2/namespaces/arr/query"));
        async move {
            let (s, b) =
                post(&c, &url, &json!({"filters": filter, "rank_by": ["id", "asc"], "top_k": 10})).await;
            assert_eq!(s, 200, "{b}");
            b["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>()
        }
    };
    for round in ["WAL", "segment"] {
        assert_eq!(ids(json!(["numbers", "In", [2, 4]])).await, vec![1, 2], "{round}");
        assert_eq!(ids(json!(["numbers", "In", [4, 17]])).await, vec![2, 3], "{round}");
        assert_eq!(ids(json!(["numbers", "NotIn", [2, 4]])).await, vec![3], "{round}");
        assert_eq!(ids(json!(["tags", "In", ["a", "z"]])).await, vec![1], "{round}");
        assert_eq!(ids(json!(["tags", "NotIn", ["a", "c"]])).await, vec![3], "{round}");
        let (s, b) = post(&c, &d.at("/v1/namespaces/arr/_admin/compact"), &json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    // The query of the same test: ANN with the filter.
    let q =
        json!({"rank_by": ["vector", "ANN", [1.0, 1.0]], "filters": ["numbers", "In", [2, 4]], "top_k": 10});
    let (s, b) = post(&c, &d.at("/v2/namespaces/arr/query"), &q).await;
    assert_eq!(s, 200, "{b}");
    let got: Vec<u64> = b["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(got, vec![2, 1], "{b}");
}

#[tokio::test]
async fn a_pre_tokenized_attribute_is_queried_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let body = json!({
        "schema": {"content": {"type": "[]string", "full_text_search": {"tokenizer": "pre_tokenized_array"}}},
        "upsert_rows": [{"id": 1, "content": ["the", "dog", "jumped"]}, {"id": 2, "content": ["dog"]}],
    });
    let (s, b) = post(&c, &d.at("/v2/namespaces/tok"), &body).await;
    assert_eq!(s, 200, "{b}");
    let query = |q: Json| {
        let (c, url) = (c.clone(), d.at("/v2/namespaces/tok/query"));
        async move { post(&c, &url, &json!({"rank_by": ["content", "BM25", q], "top_k": 10})).await }
    };
    let (s, b) = query(json!(["jumped"])).await;
    assert_eq!((s, b["rows"].as_array().map(Vec::len)), (200, Some(1)), "{b}");
    let (s, b) = query(json!("jumped")).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("for rank_by field \"content\", expecting []string"),
        "{b}"
    );
}
