//! Data-dir compatibility: a whole data dir written by an earlier build opens
//! in today's build with every document and every query answer unchanged,
//! and keeps taking writes, idempotent retries and compactions.
//!
//! Invariant guarded: the bytes a released build left on disk (WAL batches
//! with filtered deletes and patches, conditional writes, schema updates and
//! idempotency keys; manifests with labels, a branch's lineage and compacted
//! segments; `meta.redb` with pins and idempotency records) are read by every
//! later build exactly as that build read them. A format change must keep
//! `tests/fixtures/datadir-v1/` (and each later `datadir-v{N}`) green.
//!
//! Each fixture was written once, through the HTTP API of the real binary, by
//! the build that preceded a format change — `datadir-v1` before the second
//! restructure (issue 33: own WAL encodings, manifest v3), `datadir-v2` before
//! issue 34 (vector attributes) — with the same calls, so each holds its
//! build's encodings; none is ever regenerated (`storage-format.md` 1.4). `expected.json` holds what
//! that build answered: every query (path, body, status, response without
//! the timing-dependent `performance` and `billing`), the sorted export of
//! every namespace, the metadata fields that must not change, and each
//! idempotent write (key, body, first response, the response to a retry).
//!
//! To write a missing fixture (an existing folder is never touched):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored datadir_compat::write_datadir_v2_fixture`

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{client, get, json_of, post, Daemon};
use serde_json::{json, Value as Json};

/// Compaction only when asked (`_admin/compact`), so the WAL tail stays a
/// tail and the answers do not depend on a timer.
const FLAGS: &[&str] = &["--compaction-idle-ms", "0", "--compaction-wal-objects", "100000"];

/// The namespaces of the fixture (all in the default org and project).
const NAMESPACES: [&str; 4] = ["docs", "docs-br", "ids-uuid", "ids-str"];

const UUIDS: [&str; 8] = [
    "0b4d2f5e-8c1a-4e6b-9f3d-7a2c1e0b9d88",
    "1c5e3a6f-9d2b-4f7c-8a4e-8b3d2f1cae99",
    "2d6f4b70-ae3c-4a8d-9b5f-9c4e3a2dbfaa",
    "3e705c81-bf4d-4b9e-8c60-ad5f4b3ec0bb",
    "4f816d92-c05e-4caf-9d71-be605c4fd1cc",
    "50927ea3-d16f-4db0-8e82-cf716d50e2dd",
    "61a38fb4-e270-4ec1-9f93-d0827e61f3ee",
    "72b490c5-f381-4fd2-80a4-e1938f7204ff",
];

const WORDS: [&str; 12] =
    ["quick", "brown", "fox", "lazy", "dog", "jumps", "river", "stone", "cloud", "tide", "pool", "search"];

/// `tests/fixtures/datadir-v{version}`: v1 written by the build before issue 33's format changes,
/// v2 by the build before issue 34's (the same API calls, so each holds its build's encodings).
fn fixture_dir(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/datadir-v{version}"))
}

// ---------------------------------------------------------------------------------------------
// Documents and queries
// ---------------------------------------------------------------------------------------------

/// An 8-d vector of exact sixteenths (no rounding anywhere), never zero;
/// each component cycles with another prime, so no two documents of the
/// fixture share a vector (ANN answers without distance ties).
fn vector(i: u64) -> Json {
    const PRIMES: [u64; 8] = [97, 89, 83, 79, 73, 71, 67, 61];
    let v: Vec<f32> =
        (0..8u64).map(|j| ((i * (j + 3) + j * 5) % PRIMES[j as usize] + 1) as f32 / 16.0).collect();
    json!(v)
}

/// Document `i` with every attribute kind; some leave `price` out (nulls).
fn doc(id: Json, i: u64) -> Json {
    let body = format!(
        "{} {} {}",
        WORDS[(i % 12) as usize],
        WORDS[(i * 5 % 12) as usize],
        WORDS[(i * 7 % 11) as usize]
    );
    let cat = ["red", "green", "blue", "grey"][(i % 4) as usize];
    let mut d = json!({
        "id": id,
        "vector": vector(i),
        "body": body,
        "cat": cat,
        "n": i,
        "ok": !i.is_multiple_of(3),
        "tags": [format!("t{}", i % 3), format!("g{}", i % 2)],
        "ts": format!("2026-01-{:02}T{:02}:30:00+0{}:00", 1 + i % 28, i % 24, i % 3),
    });
    if !i.is_multiple_of(5) {
        d["price"] = json!(i as f64 * 2.5 + 0.25);
    }
    d
}

fn schema() -> Json {
    json!({
        "body": {"type": "string", "full_text_search": true},
        "cat": {"type": "string", "filterable": true},
        "ts": "datetime",
        "tags": "[]string",
    })
}

/// The queries asked of every namespace: ANN, exact kNN, BM25, datetime,
/// glob, `In`, nested boolean filters, attribute order, aggregations,
/// `include_attributes` and a multi-query fused by RRF.
fn common_queries() -> Vec<(String, Json)> {
    let q = [1.5, 0.25, 3.0, 2.0, 4.5, 1.0, 2.5, 3.5];
    let plain = vec![
        json!({"rank_by": ["vector", "ANN", q], "top_k": 5, "include_attributes": ["cat", "n"]}),
        json!({"rank_by": ["vector", "kNN", q], "filters": ["ok", "Eq", true], "top_k": 4}),
        json!({"rank_by": ["body", "BM25", "quick fox"], "top_k": 5, "include_attributes": ["body"]}),
        json!({"rank_by": ["body", "BM25", "tide pool search"], "filters": ["cat", "NotEq", "red"], "top_k": 3}),
        json!({"filters": ["ts", "Gte", "2026-01-10T00:00:00+01:00"], "rank_by": ["ts", "asc"], "top_k": 10,
               "include_attributes": ["ts"]}),
        json!({"filters": ["And", [["ts", "Lt", "2026-01-20T00:00:00Z"], ["cat", "Glob", "gr*"]]],
               "rank_by": ["n", "desc"], "top_k": 50}),
        json!({"filters": ["n", "In", [3, 5, 7, 11, 13, 24]], "rank_by": ["price", "desc"], "top_k": 10,
               "include_attributes": true}),
        json!({"filters": ["And", [["tags", "ContainsAny", ["t1", "x"]], ["Or", [["ok", "Eq", false], ["price", "Gt", 20.0]]]]],
               "rank_by": ["n", "desc"], "top_k": 20, "include_attributes": ["tags", "ok", "price"]}),
        json!({"filters": ["price", "Eq", null], "rank_by": ["id", "asc"], "top_k": 20}),
        json!({"aggregate_by": {"count": ["Count"], "sum": ["Sum", "n"], "priced": ["Count", "price"]}}),
        json!({"aggregate_by": {"count": ["Count"]}, "group_by": ["cat"]}),
        json!({"aggregate_by": {"count": ["Count"]}, "group_by": ["cat", "ok"], "filters": ["n", "Lt", 20]}),
        json!({"rank_by": ["id", "asc"], "top_k": 100, "include_attributes": true}),
        json!({"rank_by": [["cat", "asc"], ["n", "desc"]], "top_k": 100, "include_attributes": ["cat", "note"]}),
    ];
    let multi = json!({"queries": [
        {"rank_by": ["vector", "ANN", q], "top_k": 6},
        {"rank_by": ["body", "BM25", "lazy dog river"], "top_k": 6}
    ], "rerank_by": ["RRF", {}]});
    let mut out: Vec<(String, Json)> = plain.into_iter().map(|b| ("query".to_owned(), b)).collect();
    out.push(("query?stainless_overload=multiQuery".to_owned(), multi));
    out
}

/// Queries that only make sense for one namespace (its ids or attributes).
fn own_queries(ns: &str) -> Vec<Json> {
    match ns {
        "docs" | "docs-br" => vec![
            json!({"filters": ["note", "NotEq", null], "rank_by": ["id", "desc"], "top_k": 50,
                   "include_attributes": ["note"]}),
            json!({"filters": ["id", "In", [2, 3, 5, 8, 11, 12, 24, 25, 30]], "rank_by": ["id", "asc"],
                   "top_k": 20, "include_attributes": ["cat", "n", "ok", "price", "note"]}),
        ],
        "ids-uuid" => vec![
            json!({"filters": ["id", "In", [UUIDS[1].to_uppercase(), UUIDS[4], UUIDS[6]]], "rank_by": ["id", "asc"],
                   "top_k": 10, "include_attributes": ["n"]}),
            json!({"filters": ["id", "Gt", UUIDS[3]], "rank_by": ["id", "asc"], "top_k": 10}),
        ],
        _ => vec![
            json!({"filters": ["id", "Glob", "doc-0*"], "rank_by": ["id", "desc"], "top_k": 20}),
            json!({"filters": ["id", "In", ["doc-03", "doc-07", "doc-11", "nope"]], "rank_by": ["id", "asc"],
                   "top_k": 10, "include_attributes": ["body", "n"]}),
        ],
    }
}

fn all_queries(ns: &str) -> Vec<(String, Json)> {
    let mut out = common_queries();
    out.extend(own_queries(ns).into_iter().map(|b| ("query".to_owned(), b)));
    out
}

/// A response without the fields that vary with timing and caches.
fn stable(mut v: Json) -> Json {
    if let Some(o) = v.as_object_mut() {
        o.remove("performance");
        o.remove("billing");
    }
    v
}

/// The metadata fields that must read the same from the same bytes.
fn stable_metadata(md: &Json) -> Json {
    let mut out = serde_json::Map::new();
    for k in [
        "approx_logical_bytes",
        "approx_row_count",
        "created_at",
        "updated_at",
        "schema",
        "version",
        "distance_metric",
        "labels",
        "lineage",
        "index",
    ] {
        if let Some(v) = md.get(k) {
            out.insert(k.to_owned(), v.clone());
        }
    }
    out.insert("pinned".to_owned(), md["cache"]["pinned"].clone());
    Json::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Talking to a daemon
// ---------------------------------------------------------------------------------------------

struct Api<'a> {
    c: reqwest::Client,
    d: &'a Daemon,
}

impl Api<'_> {
    async fn write(&self, ns: &str, body: &Json) -> Json {
        let (s, b) = post(&self.c, &self.d.at(&format!("/v2/namespaces/{ns}")), body).await;
        assert_eq!(s, 200, "write to {ns} {body}: {b}");
        stable(b)
    }

    async fn write_keyed(&self, ns: &str, key: &str, body: &Json) -> Json {
        let resp = self
            .c
            .post(self.d.at(&format!("/v2/namespaces/{ns}")))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let (s, b) = json_of(resp).await;
        assert_eq!(s, 200, "keyed write to {ns} {body}: {b}");
        stable(b)
    }

    async fn admin(&self, path: &str, body: &Json) -> Json {
        let (s, b) = post(&self.c, &self.d.at(path), body).await;
        assert_eq!(s, 200, "{path} {body}: {b}");
        b
    }

    async fn patch_metadata(&self, ns: &str, body: &Json) {
        let resp = self.c.patch(self.d.at(&format!("/v1/namespaces/{ns}/metadata"))).json(body).send().await;
        let (s, b) = json_of(resp.unwrap()).await;
        assert_eq!(s, 200, "PATCH metadata {ns} {body}: {b}");
    }

    async fn query(&self, ns: &str, path: &str, body: &Json) -> (u16, Json) {
        let (s, b) = post(&self.c, &self.d.at(&format!("/v2/namespaces/{ns}/{path}")), body).await;
        (s, stable(b))
    }

    /// Every document of `ns`, ordered by the id's JSON text.
    async fn export(&self, ns: &str) -> Vec<Json> {
        let resp = self.c.get(self.d.at(&format!("/v1/namespaces/{ns}/export"))).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "export {ns}");
        let text = resp.text().await.unwrap();
        let mut docs: Vec<Json> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        docs.sort_by_key(|d| d["id"].to_string());
        docs
    }

    async fn metadata(&self, ns: &str) -> Json {
        let (s, md) = get(&self.c, &self.d.at(&format!("/v1/namespaces/{ns}/metadata"))).await;
        assert_eq!(s, 200, "metadata {ns}: {md}");
        stable_metadata(&md)
    }

    async fn listing(&self) -> Json {
        let (s, b) = get(&self.c, &self.d.at("/v1/namespaces")).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    async fn count(&self, ns: &str) -> u64 {
        let (s, b) = self.query(ns, "query", &json!({"aggregate_by": {"c": ["Count"]}})).await;
        assert_eq!(s, 200, "{b}");
        b["aggregations"]["c"].as_u64().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the fixture (once, with the build before the format change)
// ---------------------------------------------------------------------------------------------

/// One idempotent write as the old build answered it.
struct Keyed {
    ns: &'static str,
    key: &'static str,
    body: Json,
    response: Json,
}

async fn keyed(api: &Api<'_>, log: &mut Vec<Keyed>, ns: &'static str, key: &'static str, body: Json) {
    let response = api.write_keyed(ns, key, &body).await;
    log.push(Keyed { ns, key, body, response });
}

/// `docs` (integer ids): seeded, conditionally rewritten, patched and
/// deleted under conditions, schema extended, filtered delete and patch,
/// compacted, pinned and relabelled; then branched.
async fn build_docs(api: &Api<'_>, log: &mut Vec<Keyed>) {
    let seed: Vec<Json> = (1..=20).map(|i| doc(json!(i), i)).collect();
    let body = json!({"upsert_rows": seed, "distance_metric": "cosine_distance", "schema": schema()});
    keyed(api, log, "docs", "docs-seed", body).await;
    let mut rewrite: Vec<Json> = (5..=8).map(|i| doc(json!(i), i + 100)).collect();
    rewrite.extend((21..=22).map(|i| doc(json!(i), i)));
    // Labels ride on a write without a key: this build applies a keyed
    // write's labels again on every retry (a second commit after the write).
    let body = json!({"upsert_rows": rewrite, "upsert_condition": ["n", "Lt", 7],
                      "labels": {"env": "prod", "team": "search"}});
    api.write("docs", &body).await;
    let patch = json!({"patch_rows": [{"id": 2, "price": 9.5}, {"id": 3, "price": 1.25}],
                       "patch_condition": ["ok", "Eq", true]});
    api.write("docs", &patch).await;
    api.write("docs", &json!({"deletes": [4, 9], "delete_condition": ["cat", "Eq", "red"]})).await;
    let extend = json!({"schema": {"note": {"type": "string", "filterable": true}},
                        "upsert_rows": [{"id": 23, "vector": vector(23), "body": "tide pool", "note": "added",
                                         "n": 23, "ts": "2026-02-01T00:00:00Z"}]});
    api.write("docs", &extend).await;
    api.write("docs", &json!({"delete_by_filter": ["ts", "Lt", "2026-01-03T00:00:00Z"]})).await;
    let pbf = json!({"patch_by_filter": {"filters": ["tags", "Contains", "t1"], "patch": {"ok": false, "note": "t1"}}});
    api.write("docs", &pbf).await;
    api.admin("/v1/namespaces/docs/_admin/compact", &json!({})).await;
    api.patch_metadata("docs", &json!({"pinning": true})).await;
    api.patch_metadata("docs", &json!({"labels": {"team": null, "tier": "gold"}})).await;
    api.admin("/v1/namespaces/docs-br/_admin/copy", &json!({"source_namespace": "docs", "branch": true}))
        .await;
}

/// The WAL tail of `docs` after its compaction, and the branch's own writes.
async fn build_tails(api: &Api<'_>, log: &mut Vec<Keyed>) {
    let tail = json!({"upsert_rows": [doc(json!(24), 24), doc(json!(25), 25)], "deletes": [10]});
    keyed(api, log, "docs", "docs-tail", tail).await;
    api.write("docs", &json!({"delete_by_filter": ["And", [["cat", "Glob", "gr*"], ["n", "Lt", 12]]]})).await;
    let pbf = json!({"patch_by_filter": {"filters": ["And", [["n", "Gte", 15], ["price", "Lt", 50.0]]],
                                         "patch": {"note": "late", "price": 49.75}}});
    api.write("docs", &pbf).await;
    let cond: Vec<Json> = [11, 12, 26].iter().map(|&i| doc(json!(i), i + 200)).collect();
    api.write("docs", &json!({"upsert_rows": cond, "upsert_condition": ["ok", "Eq", true]})).await;
    let mixed = json!({"patch_rows": [{"id": 13, "cat": "violet"}, {"id": 14, "cat": "violet"}],
                       "patch_condition": ["n", "Gt", 13],
                       "deletes": [16, 17], "delete_condition": ["ok", "Eq", false]});
    api.write("docs", &mixed).await;
    let branch = json!({"upsert_rows": [doc(json!(30), 30)], "patch_rows": [{"id": 11, "note": "branch"}],
                        "deletes": [12]});
    keyed(api, log, "docs-br", "branch-own", branch).await;
    api.write("docs-br", &json!({"delete_by_filter": ["cat", "Eq", "red"]})).await;
}

/// `ids-uuid` (uuid ids, compacted then a tail) and `ids-str` (string ids,
/// WAL only).
async fn build_id_kinds(api: &Api<'_>, log: &mut Vec<Keyed>) {
    let rows: Vec<Json> = (0..8u64).map(|i| doc(json!(UUIDS[i as usize].to_uppercase()), i + 1)).collect();
    let mut uuid_schema = schema();
    uuid_schema["id"] = json!("uuid");
    let body = json!({"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": uuid_schema});
    keyed(api, log, "ids-uuid", "uuid-seed", body).await;
    api.write("ids-uuid", &json!({"deletes": [UUIDS[2]], "labels": {"kind": "uuid"}})).await;
    api.admin("/v1/namespaces/ids-uuid/_admin/compact", &json!({})).await;
    api.write("ids-uuid", &json!({"delete_by_filter": ["id", "In", [UUIDS[5].to_uppercase()]]})).await;
    let pbf = json!({"patch_by_filter": {"filters": ["n", "Lte", 3], "patch": {"cat": "patched"}}});
    api.write("ids-uuid", &pbf).await;

    let rows: Vec<Json> = (0..14u64).map(|i| doc(json!(format!("doc-{i:02}")), i + 30)).collect();
    let body = json!({"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema()});
    keyed(api, log, "ids-str", "str-seed", body).await;
    api.write("ids-str", &json!({"delete_by_filter": ["id", "Glob", "doc-1[23]"]})).await;
    let pbf = json!({"patch_by_filter": {"filters": ["body", "ContainsAnyToken", "fox"], "patch": {"note": "fox"}}});
    api.write("ids-str", &pbf).await;
    let cond = json!({"upsert_rows": [doc(json!("doc-03"), 3), doc(json!("doc-20"), 20)],
                      "upsert_condition": ["n", "Gt", 32]});
    keyed(api, log, "ids-str", "str-cond", cond).await;
}

/// What the running daemon answers: queries, exports, metadata, listing.
async fn observe(api: &Api<'_>) -> Json {
    let mut queries = Vec::new();
    let mut exports = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    for ns in NAMESPACES {
        for (path, body) in all_queries(ns) {
            let (status, response) = api.query(ns, &path, &body).await;
            assert_eq!(status, 200, "{ns} {body}: {response}");
            queries.push(
                json!({"namespace": ns, "path": path, "body": body, "status": status, "response": response}),
            );
        }
        exports.insert(ns.to_owned(), Json::Array(api.export(ns).await));
        metadata.insert(ns.to_owned(), api.metadata(ns).await);
    }
    json!({"queries": queries, "exports": exports, "metadata": metadata, "listing": api.listing().await})
}

/// Copy what a daemon needs from `from` (the store and `meta.redb`; `LOCK`,
/// `scratch/` and `cache/` are re-created at start-up) to `to`.
fn copy_data_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("meta.redb"), to.join("meta.redb")).unwrap();
    copy_tree(&from.join("store"), &to.join("store"));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
#[ignore = "writes the fixture; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
async fn write_datadir_v1_fixture() {
    write_fixture(1).await;
}

#[tokio::test]
#[ignore = "writes the fixture; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
async fn write_datadir_v2_fixture() {
    write_fixture(2).await;
}

/// Writes `datadir-v{version}` with the build under test, unless it exists.
async fn write_fixture(version: u32) {
    if std::env::var("TIDEPOOL_WRITE_FIXTURES").as_deref() != Ok("1") {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write the fixture");
        return;
    }
    let target = fixture_dir(version);
    if target.exists() {
        eprintln!("{} exists; fixtures are never overwritten", target.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start(&data, FLAGS);
    let api = Api { c: client(), d: &d };
    let mut log = Vec::new();
    build_docs(&api, &mut log).await;
    build_tails(&api, &mut log).await;
    build_id_kinds(&api, &mut log).await;
    let before = observe(&api).await;
    let mut idempotent = Vec::new();
    for k in &log {
        let retry = api.write_keyed(k.ns, k.key, &k.body).await;
        assert_eq!(retry["deduplicated"], true, "{retry}");
        idempotent.push(json!({"namespace": k.ns, "key": k.key, "body": k.body, "response": k.response,
                               "retry_response": retry}));
    }
    let mut expected = observe(&api).await;
    assert_eq!(expected, before, "retries applied nothing");
    expected["idempotent_writes"] = Json::Array(idempotent);
    assert!(d.stop().success(), "the daemon stops cleanly");
    copy_data_dir(&data, &target.join("data"));
    let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
    std::fs::write(target.join("expected.json"), text).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Reading it with today's build
// ---------------------------------------------------------------------------------------------

fn expected(version: u32) -> Json {
    let path = fixture_dir(version).join("expected.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A daemon on a fresh copy of the fixture's data dir.
fn start_on_copy(version: u32, dir: &tempfile::TempDir) -> Daemon {
    let data = dir.path().join("data");
    copy_data_dir(&fixture_dir(version).join("data"), &data);
    Daemon::start(&data, FLAGS)
}

async fn assert_answers_as_recorded(api: &Api<'_>, expected: &Json) {
    for q in expected["queries"].as_array().unwrap() {
        let (ns, path) = (q["namespace"].as_str().unwrap(), q["path"].as_str().unwrap());
        let (status, response) = api.query(ns, path, &q["body"]).await;
        assert_eq!(status, q["status"].as_u64().unwrap() as u16, "{ns} {path} {}: {response}", q["body"]);
        assert_eq!(response, q["response"], "{ns} {path} {}", q["body"]);
    }
    for ns in NAMESPACES {
        assert_eq!(Json::Array(api.export(ns).await), expected["exports"][ns], "export of {ns}");
        assert_eq!(api.metadata(ns).await, expected["metadata"][ns], "metadata of {ns}");
    }
    assert_eq!(api.listing().await, expected["listing"], "namespace listing");
}

#[tokio::test]
async fn a_data_dir_written_before_the_format_change_opens_identically() {
    opens_identically(1).await;
}

#[tokio::test]
async fn a_data_dir_written_before_the_second_format_change_opens_identically() {
    opens_identically(2).await;
}

async fn opens_identically(version: u32) {
    let expected = expected(version);
    assert!(expected["queries"].as_array().unwrap().len() >= 60, "the fixture covers every namespace");
    let dir = tempfile::tempdir().unwrap();
    let d = start_on_copy(version, &dir);
    let api = Api { c: client(), d: &d };
    assert_answers_as_recorded(&api, &expected).await;
    // And again after a restart (caches rebuilt from the same bytes).
    assert!(d.stop().success());
    let d = Daemon::start(&dir.path().join("data"), FLAGS);
    assert_answers_as_recorded(&Api { c: client(), d: &d }, &expected).await;
}

/// `docs` as the recorded export says, keyed by id.
fn recorded_docs(expected: &Json, ns: &str) -> BTreeMap<u64, Json> {
    let docs = expected["exports"][ns].as_array().unwrap();
    docs.iter().map(|d| (d["id"].as_u64().unwrap(), d.clone())).collect()
}

fn sorted_export(docs: &BTreeMap<u64, Json>) -> Json {
    let mut v: Vec<Json> = docs.values().cloned().collect();
    v.sort_by_key(|d| d["id"].to_string());
    Json::Array(v)
}

fn int_attr(d: &Json, k: &str) -> Option<i64> {
    d.get(k).and_then(Json::as_i64)
}

/// Retries of every recorded idempotent write answer as the old build did
/// and apply nothing.
async fn retry_recorded_writes(api: &Api<'_>, expected: &Json) {
    for k in expected["idempotent_writes"].as_array().unwrap() {
        let ns = k["namespace"].as_str().unwrap();
        let retry = api.write_keyed(ns, k["key"].as_str().unwrap(), &k["body"]).await;
        assert_eq!(retry, k["retry_response"], "retry of {} on {ns}", k["key"]);
        for field in ["rows_upserted", "rows_patched", "rows_deleted", "rows_affected"] {
            assert_eq!(retry[field], k["response"][field], "{field} of the retried {}", k["key"]);
        }
    }
    for ns in NAMESPACES {
        assert_eq!(Json::Array(api.export(ns).await), expected["exports"][ns], "{ns} after the retries");
        assert_eq!(api.metadata(ns).await, expected["metadata"][ns], "no new generation in {ns}");
    }
}

#[tokio::test]
async fn writes_and_compaction_continue_on_an_old_data_dir() {
    writes_and_compaction_continue(1).await;
}

#[tokio::test]
async fn writes_and_compaction_continue_on_the_second_old_data_dir() {
    writes_and_compaction_continue(2).await;
}

async fn writes_and_compaction_continue(version: u32) {
    let expected = expected(version);
    let dir = tempfile::tempdir().unwrap();
    let d = start_on_copy(version, &dir);
    let api = Api { c: client(), d: &d };
    retry_recorded_writes(&api, &expected).await;
    let mut docs = recorded_docs(&expected, "docs");

    // New documents.
    let new: Vec<Json> = (100..=101).map(|i| doc(json!(i), i)).collect();
    let b = api.write("docs", &json!({"upsert_rows": new.clone()})).await;
    assert_eq!(b["rows_upserted"], 2, "{b}");
    for d in new {
        let mut d = d;
        // Stored form: datetimes canonical UTC ms, as the export shows them.
        d["ts"] = canonical_ts(&d["ts"]);
        docs.insert(d["id"].as_u64().unwrap(), d);
    }

    // A filtered delete.
    let gone: Vec<u64> =
        docs.iter().filter(|(_, d)| int_attr(d, "n").is_some_and(|n| n < 8)).map(|(&id, _)| id).collect();
    assert!(!gone.is_empty() && gone.len() < docs.len(), "the filter splits the documents: {gone:?}");
    let b = api.write("docs", &json!({"delete_by_filter": ["n", "Lt", 8]})).await;
    assert_eq!(b["rows_deleted"].as_u64(), Some(gone.len() as u64), "{b}");
    for id in &gone {
        docs.remove(id);
    }

    // A filtered patch.
    let blue: Vec<u64> = docs.iter().filter(|(_, d)| d["cat"] == "blue").map(|(&id, _)| id).collect();
    assert!(!blue.is_empty(), "some documents are blue");
    let b = api
        .write(
            "docs",
            &json!({"patch_by_filter": {"filters": ["cat", "Eq", "blue"], "patch": {"note": "now"}}}),
        )
        .await;
    assert_eq!(b["rows_patched"].as_u64(), Some(blue.len() as u64), "{b}");
    blue.iter().for_each(|id| docs.get_mut(id).unwrap()["note"] = json!("now"));

    // A conditional upsert: existing documents are replaced only where the
    // condition holds; a new id is always written.
    let candidates: Vec<u64> = docs.keys().copied().take(4).chain([102]).collect();
    let rows: Vec<Json> = candidates.iter().map(|&id| doc(json!(id), id + 300)).collect();
    let b = api
        .write("docs", &json!({"upsert_rows": rows.clone(), "upsert_condition": ["ok", "Eq", true]}))
        .await;
    let mut applied = 0;
    for (id, row) in candidates.iter().zip(rows) {
        if docs.get(id).is_none_or(|d| d["ok"] == true) {
            let mut row = row;
            row["ts"] = canonical_ts(&row["ts"]);
            docs.insert(*id, row);
            applied += 1;
        }
    }
    assert_eq!(b["rows_upserted"].as_u64(), Some(applied), "{b}");
    assert!(applied < candidates.len() as u64, "the condition refused some rows");

    // Compaction folds the old tail and these writes.
    api.admin("/v1/namespaces/docs/_admin/compact", &json!({})).await;
    assert_eq!(Json::Array(api.export("docs").await), sorted_export(&docs), "docs after the new writes");
    assert_eq!(api.count("docs").await, docs.len() as u64);
    let (s, b) = api
        .query(
            "docs",
            "query",
            &json!({"filters": ["note", "Eq", "now"], "rank_by": ["id", "asc"], "top_k": 100}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let want: Vec<Json> =
        docs.iter().filter(|(_, d)| d["note"] == "now").map(|(&id, _)| json!({"id": id})).collect();
    assert_eq!(b["rows"], Json::Array(want), "the patched documents, through the attribute index");

    // The branch still reads its own divergent content, untouched by the parent's writes.
    let branch = expected["exports"]["docs-br"].clone();
    assert_eq!(Json::Array(api.export("docs-br").await), branch, "the branch after the parent's writes");
    let own = branch.as_array().unwrap().iter().find(|d| d["id"] == 30).cloned();
    assert!(own.is_some(), "the branch holds its own document 30");
    assert!(!docs.contains_key(&30), "the parent never saw it");
    // And keeps taking writes and compactions of its own.
    api.write("docs-br", &json!({"deletes": [30]})).await;
    api.admin("/v1/namespaces/docs-br/_admin/compact", &json!({})).await;
    let mut br = recorded_docs(&expected, "docs-br");
    br.remove(&30);
    assert_eq!(
        Json::Array(api.export("docs-br").await),
        sorted_export(&br),
        "the branch after its own delete"
    );

    // The other namespaces' old WAL batches (filtered deletes and patches, a
    // conditional upsert) fold into segments with the same documents.
    for ns in ["ids-uuid", "ids-str"] {
        api.admin(&format!("/v1/namespaces/{ns}/_admin/compact"), &json!({})).await;
        assert_eq!(Json::Array(api.export(ns).await), expected["exports"][ns], "{ns} after a compaction");
        let listing =
            all_queries(ns).into_iter().find(|(_, b)| b["include_attributes"] == true && b["top_k"] == 100);
        let (path, body) = listing.unwrap();
        let recorded = expected["queries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["namespace"] == ns && q["body"] == body);
        assert_eq!(
            api.query(ns, &path, &body).await.1,
            recorded.unwrap()["response"],
            "{ns} rows after a compaction"
        );
    }
    assert!(d.stop().success());
}

/// `YYYY-MM-DDTHH:MM:SS+0H:00` → the canonical UTC-ms form the daemon stores.
fn canonical_ts(v: &Json) -> Json {
    let s = v.as_str().unwrap();
    let (day, hour) = (s[8..10].parse::<i64>().unwrap(), s[11..13].parse::<i64>().unwrap());
    let offset = s[20..22].parse::<i64>().unwrap();
    let minutes = ((day - 1) * 24 + hour - offset) * 60 + s[14..16].parse::<i64>().unwrap();
    assert!(minutes >= 0, "the test's datetimes stay within January 2026: {s}");
    let (d, h, m) = (minutes / 1440 + 1, minutes % 1440 / 60, minutes % 60);
    json!(format!("2026-01-{d:02}T{h:02}:{m:02}:00.000Z"))
}
