//! The HTTP API over real loopback HTTP against the `tidepool` binary: every
//! route, every error status, gzip, base64 vectors, auth scoping, start-up
//! refusals, the data-dir lock, and graceful shutdown keeping every
//! acknowledged write.

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine as _;
use common::{client, get, json_of, post, Daemon};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ids(body: &Json) -> Vec<Json> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {body}"))
        .iter()
        .map(|r| r["id"].clone())
        .collect()
}

#[tokio::test]
async fn health_ready_unknown_routes_and_methods() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    assert_eq!(get(&c, &d.at("/health")).await, (200, json!({"status": "ok"})));
    assert_eq!(get(&c, &d.at("/ready")).await.0, 200);
    let (s, b) = get(&c, &d.at("/v9/nothing")).await;
    assert_eq!((s, b["status"].as_str()), (404, Some("error")));
    let resp = c.get(d.at("/v2/namespaces/x/query")).send().await.unwrap();
    assert_eq!(resp.headers().get("allow").unwrap(), "POST");
    assert_eq!(json_of(resp).await.0, 405);
    let resp = c.put(d.at("/v2/namespaces/x")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(d.stop().code(), Some(0));
}

#[tokio::test]
async fn every_namespace_route_round_trips() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let w = json!({"upsert_rows": [{"id": 1, "title": "a", "n": 3}, {"id": 2, "title": "b", "n": 1}],
                   "distance_metric": "cosine_distance"});
    let (s, b) = post(&c, &d.at("/v2/namespaces/docs-1"), &w).await;
    assert_eq!((s, b["status"].as_str(), b["rows_upserted"].as_u64()), (200, Some("OK"), Some(2)), "{b}");
    assert!(b["performance"]["server_total_ms"].is_u64());
    post(&c, &d.at("/v2/namespaces/docs-2"), &json!({"upsert_rows": [{"id": 9}]})).await;

    let (s, b) = post(
        &c,
        &d.at("/v2/namespaces/docs-1/query"),
        &json!({"rank_by": ["n", "asc"], "include_attributes": ["title"]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"], json!([{"id": 2, "title": "b"}, {"id": 1, "title": "a"}]));
    assert_eq!(b["performance"]["approx_namespace_size"], 2);
    assert_eq!(b["performance"]["cache_temperature"], "hot");
    assert!(b["billing"]["billable_logical_bytes_queried"].is_u64());

    let (s, b) = post(
        &c,
        &d.at("/v2/namespaces/docs-1/explain_query"),
        &json!({"rank_by": ["id", "asc"], "filters": ["id", "Gt", 1]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["plan_text"].as_str().unwrap().contains("id range scan"), "{b}");

    for v in ["v1", "v2"] {
        let (s, b) = get(&c, &d.at(&format!("/{v}/namespaces/docs-1/metadata"))).await;
        assert_eq!((s, b["approx_row_count"].as_u64()), (200, Some(2)), "{b}");
    }
    let (s, b) = json_of(
        c.patch(d.at("/v1/namespaces/docs-1/metadata"))
            .json(&json!({"pinning": {"replicas": 1}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["pinning"]["replicas"], 1, "{b}");
    let (s, b) = json_of(
        c.patch(d.at("/v1/namespaces/docs-1/metadata"))
            .json(&json!({"pinning": false, "read_only": false}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(b.get("pinning").is_none(), "{b}");

    let (s, b) = get(&c, &d.at("/v1/namespaces/docs-1/schema")).await;
    assert_eq!((s, b["title"]["type"].as_str()), (200, Some("string")), "{b}");
    let (s, b) = post(
        &c,
        &d.at("/v1/namespaces/docs-1/schema"),
        &json!({"body": {"type": "string", "full_text_search": true}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["body"]["full_text_search"].is_object(), "{b}");
    assert_eq!(get(&c, &d.at("/v1/namespaces/missing/schema")).await.0, 404);

    let (s, b) = get(&c, &d.at("/v1/namespaces/docs-1/hint_cache_warm")).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ACCEPTED")));

    let (s, b) = get(&c, &d.at("/v1/namespaces?prefix=docs&page_size=1")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["namespaces"], json!([{"id": "docs-1"}]));
    let cursor = b["next_cursor"].as_str().unwrap().to_owned();
    let (_, b) =
        get(&c, &d.at(&format!("/v1/namespaces?prefix=docs&page_size=1&cursor={cursor}&unknown=1"))).await;
    assert_eq!(b["namespaces"], json!([{"id": "docs-2"}]));
    assert_eq!(get(&c, &d.at("/v1/namespaces?page_size=0")).await.0, 400);

    let (s, b) = post(&c, &d.at("/v1/namespaces/docs-1/_debug/recall"), &json!({"num": 5})).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["avg_recall"].is_number(), "{b}");

    let (s, b) = json_of(c.delete(d.at("/v2/namespaces/docs-1")).send().await.unwrap()).await;
    assert_eq!((s, b), (200, json!({"status": "OK"})));
    assert_eq!(
        post(&c, &d.at("/v2/namespaces/docs-1/query"), &json!({"rank_by": ["id", "asc"]})).await.0,
        404
    );
    assert_eq!(get(&c, &d.at("/v1/namespaces/docs-1/metadata")).await.0, 404);
    assert_eq!(json_of(c.delete(d.at("/v2/namespaces/docs-1")).send().await.unwrap()).await.0, 404);
    let (_, b) = get(&c, &d.at("/v1/namespaces")).await;
    assert_eq!(b["namespaces"], json!([{"id": "docs-2"}]));
}

#[tokio::test]
async fn error_statuses() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let ns = d.at("/v2/namespaces/errs");
    let raw = |body: &'static str| c.post(&ns).header("content-type", "application/json").body(body).send();
    let (s, b) = json_of(raw("{not json").await.unwrap()).await;
    assert_eq!((s, b["status"].as_str()), (400, Some("error")));
    assert!(b["error"].as_str().unwrap().contains("malformed JSON"), "{b}");
    assert_eq!(json_of(raw("").await.unwrap()).await.0, 400);
    assert_eq!(post(&c, &ns, &json!({"bogus_key": 1})).await.0, 400);
    assert_eq!(post(&c, &ns, &json!({"upsert_rows": [{"no_id": 1}]})).await.0, 400);
    assert_eq!(
        post(&c, &d.at("/v2/namespaces/bad%20name"), &json!({"upsert_rows": [{"id": 1}]})).await.0,
        400
    );
    assert_eq!(post(&c, &d.at("/v2/namespaces/nope/query"), &json!({"rank_by": ["id", "asc"]})).await.0, 404);

    let (s, b) = post(&c, &ns, &json!({"upsert_rows": [{"id": 1, "vector": [1.0, 0.0]}]})).await;
    assert_eq!(s, 200, "{b}");
    let version = b["version"].as_u64().unwrap();
    let resp = c
        .post(&ns)
        .json(&json!({"upsert_rows": [{"id": 2, "vector": [0.0, 1.0]}], "if_version": version + 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("x-should-retry").unwrap(), "false");
    assert_eq!(json_of(resp).await.0, 412);
    let ok = json!({"upsert_rows": [{"id": 2, "vector": [0.0, 1.0]}], "if_version": version});
    assert_eq!(post(&c, &ns, &ok).await.0, 200);
    assert_eq!(
        post(&c, &ns, &json!({"upsert_rows": [{"id": 3, "vector": [1.0]}]})).await.0,
        400,
        "dimension mismatch"
    );
    let (s, _) = post(&c, &ns, &json!({"branch_from_namespace": "x"})).await;
    assert_eq!(s, 404, "branching from a missing namespace");

    let q = d.at("/v2/namespaces/errs/query");
    let resp = c
        .post(&q)
        .json(&json!({"rank_by": ["id", "asc"], "aggregate_by": {"a": ["Avg", "n"]}, "top_k": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("x-should-retry").unwrap(), "false");
    let (s, b) = json_of(resp).await;
    assert_eq!(s, 501);
    assert!(b["error"].as_str().unwrap().contains("not implemented yet"), "{b}");
    assert_eq!(
        post(&c, &q, &json!({"rank_by": ["text", "BM25", "hello"]})).await.0,
        400,
        "not a full-text attribute"
    );
    // A lookup without rank_by answers (by id); offset still needs an order.
    assert_eq!(post(&c, &q, &json!({"top_k": 3, "offset": 1})).await.0, 400, "offset needs rank_by");
    assert_eq!(
        post(&c, &q, &json!({"rank_by": ["id", "asc"], "filters": ["nope", "Bogus", 1]})).await.0,
        400
    );
    assert_eq!(post(&c, &q, &json!({"rank_by": ["id", "asc"], "top_k": 20000})).await.0, 400);
    let resp = c.post(&q).header("content-encoding", "br").body("{}").send().await.unwrap();
    assert_eq!(json_of(resp).await.0, 415);

    let key = json!({"upsert_rows": [{"id": 7, "vector": [1.0, 1.0]}]});
    let send = || c.post(&ns).header("idempotency-key", "k-1").json(&key).send();
    let (_, first) = json_of(send().await.unwrap()).await;
    let (s, second) = json_of(send().await.unwrap()).await;
    assert_eq!(
        (s, first["deduplicated"].as_bool(), second["deduplicated"].as_bool()),
        (200, Some(false), Some(true))
    );
}

#[tokio::test]
async fn body_limit_gzip_requests_and_responses() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &["--max-body-bytes", "4096"]);
    let c = client();
    let ns = d.at("/v2/namespaces/gz");
    let big = json!({"upsert_rows": [{"id": 1, "text": "x".repeat(8000)}]});
    let (s, b) = post(&c, &ns, &big).await;
    assert_eq!(s, 413, "{b}");
    let bomb = gzip(
        format!("{{\"upsert_rows\": [{{\"id\": 1, \"t\": \"{}\"}}]}}", "y".repeat(1_000_000)).as_bytes(),
    );
    assert!(bomb.len() < 4096);
    let gz = |body: Vec<u8>| {
        c.post(&ns)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };
    let resp = gz(bomb).await.unwrap();
    assert_eq!(json_of(resp).await.0, 413);
    let resp = gz(b"not gzip at all".to_vec()).await.unwrap();
    assert_eq!(json_of(resp).await.0, 400);

    let rows: Vec<Json> = (0..40).map(|i| json!({"id": i, "label": format!("label number {i}")})).collect();
    let body = serde_json::to_vec(&json!({ "upsert_rows": rows })).unwrap();
    let resp = c
        .post(&ns)
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gzip(&body))
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(resp).await;
    assert_eq!((s, b["rows_upserted"].as_u64()), (200, Some(40)), "{b}");

    let raw = tidepool::tls::client_builder().no_gzip().build().unwrap();
    let query = json!({"rank_by": ["id", "asc"], "include_attributes": true, "top_k": 40});
    let resp = raw
        .post(d.at("/v2/namespaces/gz/query"))
        .header("accept-encoding", "gzip")
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers().get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&resp.bytes().await.unwrap()[..]).read_to_string(&mut text).unwrap();
    let v: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 40);
    let resp = raw.post(d.at("/v2/namespaces/gz/query")).json(&query).send().await.unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn base64_vectors_in_and_out() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let (v1, v2, v3) = ([0.5f32, -1.25, 3.0], [1.0f32, 2.0, 4.5], [0.0f32, 0.0, 1.0]);
    let w = json!({"upsert_rows": [{"id": "a", "vector": b64(&v1)}, {"id": "b", "vector": v2}],
                   "upsert_columns": {"id": ["c"], "vector": [b64(&v3)]}});
    let (s, b) = post(&c, &d.at("/v2/namespaces/vec"), &w).await;
    assert_eq!(s, 200, "{b}");
    let q = d.at("/v2/namespaces/vec/query");
    let (s, b) = post(
        &c,
        &q,
        &json!({"rank_by": ["id", "asc"], "include_attributes": ["vector"], "vector_encoding": "base64"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["rows"],
        json!([{"id": "a", "vector": b64(&v1)}, {"id": "b", "vector": b64(&v2)}, {"id": "c", "vector": b64(&v3)}])
    );
    let (_, b) =
        post(&c, &q, &json!({"rank_by": ["id", "asc"], "include_attributes": true, "top_k": 1})).await;
    assert_eq!(b["rows"], json!([{"id": "a", "vector": [0.5, -1.25, 3.0]}]));
    let (s, _) =
        post(&c, &d.at("/v2/namespaces/vec"), &json!({"upsert_rows": [{"id": "d", "vector": "AAA="}]})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn filters_ordering_multi_query_aggregates_and_export_paging() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> = (0..250u64)
        .map(|i| {
            let cat = ["red", "green", "blue"][(i % 3) as usize];
            let mut r = json!({"id": i, "cat": cat});
            if i % 5 != 0 {
                r["score"] = json!(i % 7);
            }
            r
        })
        .collect();
    assert_eq!(post(&c, &d.at("/v2/namespaces/exp"), &json!({ "upsert_rows": rows })).await.0, 200);
    let q = d.at("/v2/namespaces/exp/query");

    let (s, b) = post(&c, &q, &json!({"rank_by": ["score", "desc"], "filters": ["cat", "Eq", "red"], "top_k": 5, "include_attributes": ["score", "cat"]})).await;
    assert_eq!(s, 200, "{b}");
    let got: Vec<(u64, u64)> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["score"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![(6, 6), (27, 6), (48, 6), (69, 6), (111, 6)],
        "desc by score, ties by id, id%3==0 && id%5!=0"
    );
    assert!(b["rows"].as_array().unwrap().iter().all(|r| r["cat"] == "red"));

    let (_, b) =
        post(&c, &q, &json!({"rank_by": ["score", "asc"], "filters": ["id", "Lt", 11], "top_k": 100})).await;
    assert_eq!(
        ids(&b),
        [7, 1, 8, 2, 9, 3, 4, 6, 0, 5, 10].map(|i| json!(i)).to_vec(),
        "nulls (ids 0, 5, 10) last"
    );

    let mut seen = Vec::new();
    let mut last: Option<u64> = None;
    loop {
        let mut body = json!({"rank_by": ["id", "asc"], "top_k": 100});
        if let Some(l) = last {
            body["filters"] = json!(["id", "Gt", l]);
        }
        let (s, b) = post(&c, &q, &body).await;
        assert_eq!(s, 200, "{b}");
        let page: Vec<u64> = ids(&b).iter().map(|v| v.as_u64().unwrap()).collect();
        if page.is_empty() {
            break;
        }
        last = page.last().copied();
        seen.extend(page);
    }
    assert_eq!(seen, (0..250).collect::<Vec<u64>>());
    let (_, b) = post(&c, &q, &json!({"rank_by": ["id", "desc"], "top_k": 2, "offset": 1})).await;
    assert_eq!(ids(&b), vec![json!(248), json!(247)]);

    let multi = json!({"queries": [
        {"rank_by": ["id", "asc"], "top_k": 1},
        {"aggregate_by": {"n": ["Count"]}, "filters": ["cat", "Eq", "blue"]},
        {"aggregate_by": {"n": ["Count"]}, "group_by": ["cat"]}
    ]});
    let (s, b) = post(&c, &d.at("/v2/namespaces/exp/query?stainless_overload=multiQuery"), &multi).await;
    assert_eq!(s, 200, "{b}");
    let r = b["results"].as_array().unwrap();
    assert_eq!(r[0]["rows"], json!([{"id": 0}]));
    assert_eq!(r[1]["aggregations"], json!({"n": 83}));
    assert_eq!(
        r[2]["aggregation_groups"],
        json!([{"cat": "blue", "n": 83}, {"cat": "green", "n": 83}, {"cat": "red", "n": 84}])
    );
    let too_many = json!({"queries": vec![json!({"rank_by": ["id", "asc"]}); 17]});
    assert_eq!(post(&c, &q, &too_many).await.0, 400);
    let (s, _) =
        post(&c, &q, &json!({"queries": [{"rank_by": ["id", "asc"]}], "rerank_by": ["RRF", {}]})).await;
    assert_eq!(s, 200, "RRF fusion of one subquery");
    let (s, b) =
        post(&c, &q, &json!({"rank_by": ["id", "asc"], "consistency": {"level": "eventual"}, "top_k": 1}))
            .await;
    assert_eq!((s, ids(&b)), (200, vec![json!(0)]));
}

fn keys_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tidepool.toml");
    std::fs::write(
        &path,
        r#"
[[api_keys]]
key = "key-a"
org = "acme"
project = "alpha"

[[api_keys]]
key = "key-b"
org = "acme"
project = "beta"

[[api_keys]]
key = "key-a-ro"
org = "acme"
project = "alpha"
read_only = true
"#,
    )
    .unwrap();
    path
}

#[tokio::test]
async fn api_keys_authenticate_scope_and_enforce_read_only() {
    let dir = tmp();
    let cfg = keys_config(dir.path());
    let data = dir.path().join("data");
    let d = Daemon::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let ns = d.at("/v2/namespaces/shared-name");
    let q = d.at("/v2/namespaces/shared-name/query");
    let w = json!({"upsert_rows": [{"id": 1, "owner": "alpha"}]});
    let query = json!({"rank_by": ["id", "asc"], "include_attributes": true});

    assert_eq!(json_of(c.post(&ns).json(&w).send().await.unwrap()).await.0, 401);
    assert_eq!(json_of(c.post(&ns).bearer_auth("wrong").json(&w).send().await.unwrap()).await.0, 401);
    assert_eq!(json_of(c.post(&ns).bearer_auth("key-a-ro").json(&w).send().await.unwrap()).await.0, 403);
    assert_eq!(get(&c, &d.at("/health")).await.0, 200, "health is public");
    assert_eq!(json_of(c.post(&ns).bearer_auth("key-a").json(&w).send().await.unwrap()).await.0, 200);

    let (s, b) = json_of(c.post(&q).bearer_auth("key-a-ro").json(&query).send().await.unwrap()).await;
    assert_eq!(
        (s, &b["rows"]),
        (200, &json!([{"id": 1, "owner": "alpha"}])),
        "read-only key reads its project"
    );
    let (s, _) = json_of(c.post(&q).bearer_auth("key-b").json(&query).send().await.unwrap()).await;
    assert_eq!(s, 404, "key B's project has no such namespace");
    let (_, b) = json_of(c.get(d.at("/v1/namespaces")).bearer_auth("key-b").send().await.unwrap()).await;
    assert_eq!(b["namespaces"], json!([]));
    let wb = json!({"upsert_rows": [{"id": 1, "owner": "beta"}]});
    assert_eq!(json_of(c.post(&ns).bearer_auth("key-b").json(&wb).send().await.unwrap()).await.0, 200);
    let (_, b) = json_of(c.post(&q).bearer_auth("key-a").json(&query).send().await.unwrap()).await;
    assert_eq!(b["rows"][0]["owner"], "alpha", "same name, separate projects");
    let (s, _) = json_of(c.delete(&ns).bearer_auth("key-a-ro").send().await.unwrap()).await;
    assert_eq!(s, 403);
    assert!(data.join("store/acme/alpha/namespaces/shared-name").is_dir());
    assert!(data.join("store/acme/beta/namespaces/shared-name").is_dir());
}

#[tokio::test]
async fn non_loopback_listen_requires_api_keys() {
    let dir = tmp();
    let f = Daemon::try_start(&dir.path().join("a"), &["--listen", "0.0.0.0:0"]).err().expect("must refuse");
    assert!(!f.status.expect("exited").success());
    assert!(f.stderr.contains("refusing to listen") && f.stderr.contains("api_keys"), "{}", f.stderr);

    let cfg = keys_config(dir.path());
    let d =
        Daemon::start(&dir.path().join("b"), &["--listen", "0.0.0.0:0", "--config", cfg.to_str().unwrap()]);
    let port = d.url.rsplit(':').next().unwrap().to_owned();
    assert_eq!(get(&client(), &format!("http://127.0.0.1:{port}/health")).await.0, 200);
}

#[tokio::test]
async fn second_daemon_on_the_same_data_dir_fails_fast_naming_the_holder() {
    let dir = tmp();
    let first = Daemon::start(dir.path(), &[]);
    let started = std::time::Instant::now();
    let f = Daemon::try_start(dir.path(), &[]).err().expect("second daemon must not start");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!f.status.expect("exited").success());
    assert!(f.stderr.contains("locked"), "{}", f.stderr);
    assert!(f.stderr.contains(&format!("pid={}", first.pid())), "{}", f.stderr);
    assert_eq!(first.stop().code(), Some(0));
    let again = Daemon::start(dir.path(), &[]);
    assert_eq!(again.stop().code(), Some(0), "the lock is released at exit");
}

#[tokio::test]
async fn config_errors_exit_with_status_2() {
    let dir = tmp();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "no_such_setting = 1\n").unwrap();
    let f = Daemon::try_start(dir.path(), &["--config", cfg.to_str().unwrap()]).err().expect("must fail");
    assert_eq!(f.status.and_then(|s| s.code()), Some(2));
    assert!(f.stderr.contains("no_such_setting"), "{}", f.stderr);
}

/// Reads until the server closes the connection (or 5 s pass: a failure).
async fn read_until_closed(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept the connection open: {}", String::from_utf8_lossy(&buf));
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slow_stalled_and_idle_connections_are_closed() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &["--header-read-timeout-secs", "1", "--idle-timeout-secs", "1"]);
    let addr = d.url.trim_start_matches("http://").to_owned();

    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    read_until_closed(&mut slow).await;

    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = "POST /v2/namespaces/s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"upsert";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn flags_override_env_and_env_overrides_the_config_file() {
    let dir = tmp();
    let cfg = dir.path().join("limits.toml");
    std::fs::write(&cfg, "max_body_bytes = 2048\n").unwrap();
    let body = json!({"upsert_rows": [{"id": 1, "t": "z".repeat(3000)}]});
    let c = client();
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], u16);
    let cases: [Case; 3] = [
        (&[], &[], 413),
        (&[], &[("TIDEPOOL_MAX_BODY_BYTES", "8192")], 200),
        (&["--max-body-bytes", "2048"], &[("TIDEPOOL_MAX_BODY_BYTES", "8192")], 413),
    ];
    for (i, (flags, env, want)) in cases.into_iter().enumerate() {
        let mut args = vec!["--config", cfg.to_str().unwrap()];
        args.extend_from_slice(flags);
        let data = dir.path().join(format!("d{i}"));
        let d = Daemon::try_start_with_env(&data, &args, env).unwrap_or_else(|f| panic!("{}", f.stderr));
        assert_eq!(post(&c, &d.at("/v2/namespaces/p"), &body).await.0, want, "case {i}");
    }
}

#[tokio::test]
async fn graceful_shutdown_keeps_every_acknowledged_write() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let url = d.at("/v2/namespaces/drain");
    let c = client();
    let mut tasks = Vec::new();
    for writer in 0..24u64 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for j in 0..10_000u64 {
                let id = writer * 100_000 + j;
                let sent = c.post(&url).json(&json!({"upsert_rows": [{"id": id, "w": writer}]})).send().await;
                match sent {
                    Ok(r) if r.status().is_success() => acked.push(id),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut d = d;
    d.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let s = d.wait(Duration::from_secs(30));
        (s, d)
    })
    .await
    .unwrap();
    let (status, d) = status;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", d.stderr());
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(!acked.is_empty(), "no write was acknowledged before SIGTERM");
    eprintln!("acknowledged writes before shutdown: {}", acked.len());
    drop(d);

    let d = Daemon::start(dir.path(), &[]);
    let (s, b) =
        post(&c, &d.at("/v2/namespaces/drain/query"), &json!({"rank_by": ["id", "asc"], "top_k": 10_000}))
            .await;
    assert_eq!(s, 200, "{b}");
    let present: std::collections::HashSet<u64> = ids(&b).iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(present.len() < 10_000, "more rows than one page; raise the page");
    let missing: Vec<_> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Runs the `tidepool` CLI against a daemon; returns (success, stdout, stderr).
fn cli(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .arg("--url")
        .arg(&d.url)
        .arg("--json")
        .args(args)
        .env_remove("TIDEPOOL_URL")
        .env_remove("TIDEPOOL_API_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every id of a namespace through turbopuffer-style paging (`id Gt last`).
async fn page_all_ids(c: &reqwest::Client, d: &Daemon, ns: &str, extra: &str) -> Vec<Json> {
    let mut out = Vec::new();
    let mut last: Option<Json> = None;
    loop {
        let mut body = json!({"rank_by": ["id", "asc"], "top_k": 3});
        if let Some(l) = &last {
            body["filters"] = json!(["id", "Gt", l]);
        }
        let (s, b) = post(c, &d.at(&format!("/v2/namespaces/{ns}/query{extra}")), &body).await;
        assert_eq!(s, 200, "{b}");
        let page = ids(&b);
        if page.is_empty() {
            return out;
        }
        last = page.last().cloned();
        out.extend(page);
    }
}

#[tokio::test]
async fn branches_copies_time_travel_export_snapshots_and_repair_over_http() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> =
        (0..10).map(|i| json!({"id": i, "vector": [i as f32, 1.0], "t": format!("d{i}")})).collect();
    let (s, b) = post(&c, &d.at("/v2/namespaces/src"), &json!({"upsert_rows": rows})).await;
    assert_eq!(s, 200, "{b}");
    let g1 = b["version"].as_u64().unwrap();

    // Branch through the turbopuffer write body; lineage shows in metadata.
    let (s, b) = post(&c, &d.at("/v2/namespaces/br"), &json!({"branch_from_namespace": "src"})).await;
    assert_eq!(s, 200, "{b}");
    let (_, meta) = get(&c, &d.at("/v2/namespaces/br/metadata")).await;
    assert_eq!(meta["lineage"]["parent"], "src", "{meta}");
    let (s, b) = post(&c, &d.at("/v2/namespaces/br"), &json!({"branch_from_namespace": "src"})).await;
    assert_eq!(s, 412, "a destination with documents is refused: {b}");
    let (s, _) = post(&c, &d.at("/v2/namespaces/x"), &json!({"branch_from_namespace": "nope"})).await;
    assert_eq!(s, 404);

    // Isolation, paging by id, and time travel with ?generation=.
    post(
        &c,
        &d.at("/v2/namespaces/src"),
        &json!({"upsert_rows": [{"id": 10, "vector": [1.0, 1.0]}], "deletes": [0]}),
    )
    .await;
    assert_eq!(page_all_ids(&c, &d, "br", "").await, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    assert_eq!(page_all_ids(&c, &d, "src", "").await, (1..11).map(|i| json!(i)).collect::<Vec<_>>());
    let old = page_all_ids(&c, &d, "src", &format!("?generation={g1}")).await;
    assert_eq!(old, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    let (s, _) =
        post(&c, &d.at("/v2/namespaces/src/query?generation=99"), &json!({"rank_by": ["id", "asc"]})).await;
    assert_eq!(s, 404);

    // Export: NDJSON of one generation, streamed.
    let resp = c.get(d.at("/v1/namespaces/src/export")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<Json> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0], json!({"id": 1, "vector": [1.0, 1.0], "t": "d1"}));
    let old = c.get(d.at(&format!("/v1/namespaces/src/export?generation={g1}"))).send().await.unwrap();
    assert_eq!(old.text().await.unwrap().lines().count(), 10);
    assert_eq!(c.get(d.at("/v1/namespaces/none/export")).send().await.unwrap().status().as_u16(), 404);

    // Deep copy through the admin route.
    let (s, b) =
        post(&c, &d.at("/v1/namespaces/deep/_admin/copy"), &json!({"source_namespace": "src", "deep": true}))
            .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["objects_copied"].as_u64().unwrap() > 0 && b["objects_shared"] == 0, "{b}");
    assert_eq!(page_all_ids(&c, &d, "deep", "").await.len(), 10);

    // Snapshot download, restore, and a corrupted upload refused.
    let snap = c.get(d.at("/v1/namespaces/src/_admin/snapshot")).send().await.unwrap();
    assert_eq!(snap.status().as_u16(), 200);
    let bytes = snap.bytes().await.unwrap().to_vec();
    assert_eq!(&bytes[..8], b"TIDE.SNP");
    let mut bad = bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    let (s, b) = json_of(
        c.post(d.at("/v1/namespaces/restored/_admin/restore"))
            .header("content-type", "application/octet-stream")
            .body(bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("invalid snapshot file"), "{b}");
    let (s, b) = json_of(
        c.post(d.at("/v1/namespaces/restored/_admin/restore"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(page_all_ids(&c, &d, "restored", "").await, page_all_ids(&c, &d, "src", "").await);

    // Repair: counts rebuilt, nothing live swept.
    let (s, b) = post(&c, &d.at("/v1/_admin/repair"), &json!({"sweep": true, "grace_secs": 0})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["missing_objects"], json!([]), "{b}");
    for ns in ["src", "br", "deep", "restored"] {
        assert!(!page_all_ids(&c, &d, ns, "").await.is_empty(), "{ns} after repair");
    }
    let (s, _) = post(&c, &d.at("/v1/_admin/repair"), &json!({"bogus": 1})).await;
    assert_eq!(s, 400);
    assert_eq!(d.stop().code(), Some(0));
}

#[tokio::test]
async fn cli_branch_copy_export_import_snapshot_restore_and_repair() {
    let dir = tmp();
    let d = Daemon::start(&dir.path().join("data"), &[]);
    let c = client();
    let rows: Vec<Json> = (0..25).map(|i| json!({"id": i, "a": i * 2})).collect();
    post(&c, &d.at("/v2/namespaces/src"), &json!({"upsert_rows": rows})).await;

    let (ok, _, err) = cli(&d, &["ns", "branch", "src", "b1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&d, &["ns", "copy", "src", "c1", "--deep"]);
    assert!(ok, "{err}");
    let export = dir.path().join("src.ndjson");
    let (ok, _, err) = cli(&d, &["export", "src", export.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&d, &["write", "imported", export.to_str().unwrap()]);
    assert!(ok, "{err}");
    let snap = dir.path().join("src.snap");
    let (ok, out, err) = cli(&d, &["snapshot", "src", snap.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("\"objects\""), "{out}");
    let (ok, _, err) = cli(&d, &["restore", snap.to_str().unwrap(), "r1"]);
    assert!(ok, "{err}");
    let mut corrupt = std::fs::read(&snap).unwrap();
    let n = corrupt.len();
    corrupt[n - 3] ^= 0xff;
    let bad = dir.path().join("bad.snap");
    std::fs::write(&bad, corrupt).unwrap();
    let (ok, _, err) = cli(&d, &["restore", bad.to_str().unwrap(), "r2"]);
    assert!(!ok && err.contains("invalid snapshot file"), "{err}");
    let (ok, out, err) = cli(&d, &["repair", "--sweep", "--grace-secs", "0"]);
    assert!(ok && out.contains("\"swept\""), "{out} {err}");

    let want = page_all_ids(&c, &d, "src", "").await;
    assert_eq!(want.len(), 25);
    for ns in ["b1", "c1", "imported", "r1"] {
        assert_eq!(page_all_ids(&c, &d, ns, "").await, want, "{ns}");
    }
    // The exports of the original and of the import are byte-identical.
    let again = dir.path().join("imported.ndjson");
    assert!(cli(&d, &["export", "imported", again.to_str().unwrap()]).0);
    assert_eq!(std::fs::read(&export).unwrap(), std::fs::read(&again).unwrap());
    assert_eq!(d.stop().code(), Some(0));
}

/// Compaction over HTTP and the CLI: the admin route folds the WAL into a
/// segment, metadata's index status follows, and reads are unchanged.
#[tokio::test]
async fn compaction_route_and_cli_fold_the_wal_and_update_index_status() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &["--compaction-wal-objects", "1000", "--compaction-idle-ms", "0"]);
    let c = client();
    for i in 0..3u64 {
        post(&c, &d.at("/v2/namespaces/cmp"), &json!({"upsert_rows": [{"id": i, "n": i}]})).await;
    }
    let (_, md) = get(&c, &d.at("/v2/namespaces/cmp/metadata")).await;
    assert_eq!(md["index"]["status"], "updating", "{md}");
    assert_eq!(md["index"]["unindexed_rows"], 3, "{md}");
    let (s, b) = post(&c, &d.at("/v1/namespaces/cmp/_admin/compact"), &json!({})).await;
    assert_eq!((s, b["performed"].as_bool(), b["rows_written"].as_u64()), (200, Some(true), Some(3)), "{b}");
    let (_, md) = get(&c, &d.at("/v2/namespaces/cmp/metadata")).await;
    assert_eq!(md["index"]["status"], "up-to-date", "{md}");
    let (s, b) =
        post(&c, &d.at("/v2/namespaces/cmp/query"), &json!({"rank_by": ["id", "desc"], "top_k": 2})).await;
    assert_eq!((s, b["rows"].clone()), (200, json!([{"id": 2}, {"id": 1}])), "{b}");
    post(&c, &d.at("/v2/namespaces/cmp"), &json!({"deletes": [0]})).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["--url", &d.at(""), "ns", "compact", "cmp"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let body: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["performed"], true, "{body}");
    let (_, md) = get(&c, &d.at("/v2/namespaces/cmp/metadata")).await;
    assert_eq!(md["approx_row_count"], 2, "{md}");
}
