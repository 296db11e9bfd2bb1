//! Local models behind the turbopuffer API, over real loopback HTTP against the `tidepool` binary
//! with the real all-MiniLM-L6-v2 (installed by `scripts/models.sh`, the weights that embedded
//! `../shared/data/debian`):
//! - a string attribute with `"embed": MODEL` gets `$embed_<attr>` at write time, equal to the
//!   shipped vector of the same Debian text (cosine ≥ 0.999), returned by `include_attributes`;
//!   writes report `embedding_ms` / `embedding_tokens`; a patch embeds only what it sets;
//! - `[attr, "ANN", ["Embed", text]]` (by the source or by `$embed_<attr>`) ranks as the shipped
//!   query vector does; `rerank_by {attribute, model, query}` reorders the rows by the model;
//! - an unknown model, a non-string value, an `Embed` on an attribute nothing embeds are 400s that
//!   write nothing; a node without the model still serves the stored vectors (a replica, a
//!   restart without `--model`), and a missing model directory stops the daemon naming it;
//! - offline end to end: a syncing node with its uplink cut embeds, writes, searches and reranks as
//!   before, and a pull replica without the model serves the `$embed_` vectors it received.

use crate::common;

use std::path::PathBuf;

use common::proxy::Uplink;
use common::{client, get, post, s3, sync_node, Daemon};
use serde_json::{json, Value as Json};

const MODEL: &str = "minilm";
const DIM: usize = 384;

/// The installed all-MiniLM-L6-v2 directory (`scripts/models.sh` puts it there).
fn model_dir() -> PathBuf {
    let root = std::env::var_os("TIDEPOOL_TEST_MODELS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-models"), PathBuf::from);
    let dir = root.join("all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the test model is not installed at {}: run scripts/models.sh {} (scripts/test.sh does)",
        dir.display(),
        root.display()
    );
    dir
}

fn model_flag() -> String {
    format!("{MODEL}={}", model_dir().display())
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/debian")
}

/// The first `n` Debian docs as (text, shipped vector): `title + ". " + body`, as the data was made.
fn debian(n: usize) -> Vec<(String, Vec<f32>)> {
    let docs = std::fs::read_to_string(data_dir().join("docs.jsonl")).expect("docs.jsonl");
    let vecs = std::fs::read(data_dir().join("vectors.f32")).expect("vectors.f32");
    docs.lines()
        .take(n)
        .enumerate()
        .map(|(i, line)| {
            let d: Json = serde_json::from_str(line).unwrap();
            let text = format!("{}. {}", d["title"].as_str().unwrap(), d["body"].as_str().unwrap());
            let row = &vecs[i * DIM * 4..(i + 1) * DIM * 4];
            (text, row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn floats(v: &Json) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a vector: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(body: &Json) -> Vec<u64> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {body}"))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

async fn write(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> (u16, Json) {
    post(c, &d.at(&format!("/v2/namespaces/{ns}")), &body).await
}

async fn query_at(c: &reqwest::Client, d: &Daemon, path: &str, body: Json) -> (u16, Json) {
    post(c, &d.at(&format!("/v2/namespaces/{path}")), &body).await
}

async fn query(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> (u16, Json) {
    post(c, &d.at(&format!("/v2/namespaces/{ns}/query")), &body).await
}

fn embed_schema() -> Json {
    json!({"text": {"type": "string", "embed": MODEL, "full_text_search": true}})
}

/// Writes the first `n` Debian docs (ids 0..n) with `text` embedded.
async fn write_debian(c: &reqwest::Client, d: &Daemon, ns: &str, docs: &[(String, Vec<f32>)]) -> Json {
    let rows: Vec<Json> =
        docs.iter().enumerate().map(|(i, (t, _))| json!({"id": i, "text": t, "n": i})).collect();
    let (s, body) = write(c, d, ns, json!({"upsert_rows": rows, "schema": embed_schema()})).await;
    assert_eq!(s, 200, "{body}");
    body
}

async fn stored_vectors(c: &reqwest::Client, d: &Daemon, ns: &str, n: usize) -> Vec<Vec<f32>> {
    let (s, body) =
        query(c, d, ns, json!({"rank_by": ["id", "asc"], "top_k": n, "include_attributes": ["$embed_text"]}))
            .await;
    assert_eq!(s, 200, "{body}");
    // A row without the attribute (its text removed) gives an empty vector.
    let of = |r: &Json| r.get("$embed_text").map_or_else(Vec::new, floats);
    body["rows"].as_array().unwrap().iter().map(of).collect()
}

#[tokio::test]
async fn embedded_writes_store_the_shipped_vectors_and_embed_queries_rank_by_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--model", &model_flag()]);
    let c = client();
    let docs = debian(120);
    let body = write_debian(&c, &d, "deb", &docs).await;
    let perf = &body["performance"];
    assert!(perf["embedding_ms"].as_u64().unwrap() >= 1, "{body}");
    assert!(perf["embedding_tokens"].as_u64().unwrap() > 120 * 10, "{body}");

    let stored = stored_vectors(&c, &d, "deb", docs.len()).await;
    assert_eq!(stored.len(), docs.len());
    let worst = stored.iter().zip(&docs).map(|(s, (_, v))| cosine(s, v)).fold(f32::MAX, f32::min);
    assert!(worst >= 0.999, "worst cosine with the shipped vectors {worst}");

    // The schema shows the setting and the computed attribute.
    let (s, meta) = get(&c, &d.at("/v1/namespaces/deb/schema")).await;
    assert_eq!(s, 200, "{meta}");
    assert_eq!(meta["text"]["embed"], json!(MODEL), "{meta}");
    assert_eq!(meta["$embed_text"]["type"], json!("[384]f32"), "{meta}");

    // Each doc's own title finds it among the first five, by the source attribute and by the
    // computed one.
    for (target, (text, _)) in docs.iter().enumerate().step_by(17) {
        let title = text.split(". ").next().unwrap();
        for attr in ["text", "$embed_text"] {
            let (s, body) =
                query(&c, &d, "deb", json!({"rank_by": [attr, "ANN", ["Embed", title]], "top_k": 5})).await;
            assert_eq!(s, 200, "{body}");
            assert!(body["performance"]["embedding_ms"].as_u64().unwrap() >= 1, "{body}");
            assert!(body["performance"]["embedding_tokens"].as_u64().unwrap() >= 3, "{body}");
            let got = ids(&body);
            assert!(got.contains(&(target as u64)), "{title:?} by {attr}: {got:?}");
        }
    }
    // compute_attributes: the text's embedding, and each row's distance to it.
    let title = docs[10].0.split(". ").next().unwrap();
    let (s, body) = query(
        &c,
        &d,
        "deb",
        json!({"rank_by": ["id", "asc"], "top_k": 12, "compute_attributes": {
            "e": ["Embed", title], "sim": ["text", "VectorDist", ["Embed", title]]}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body["performance"]["embedding_tokens"].as_u64().unwrap() > 0, "{body}");
    for (i, row) in body["rows"].as_array().unwrap().iter().enumerate() {
        let e = floats(&row["e"]);
        assert_eq!(e.len(), DIM);
        let sim = row["sim"].as_f64().unwrap() as f32;
        assert!((sim - (1.0 - cosine(&e, &stored[i]))).abs() < 1e-4, "row {i}: {sim}");
    }
    // explain_query names the vector attribute and the model, running none.
    let (s, body) =
        query_at(&c, &d, "deb/explain_query", json!({"rank_by": ["text", "ANN", ["Embed", "mail"]]})).await;
    assert_eq!(s, 200, "{body}");
    let plan = body["plan_text"].as_str().unwrap();
    assert!(plan.contains("$embed_text") && plan.contains("minilm"), "{plan}");
    // With an explicit model override, the same.
    let title = docs[3].0.split(". ").next().unwrap();
    let (s, body) = query(
        &c,
        &d,
        "deb",
        json!({"rank_by": ["text", "ANN", ["Embed", title, {"model": MODEL}]], "top_k": 3}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(ids(&body).contains(&3), "{body}");
}

#[tokio::test]
async fn patches_embed_only_what_they_set_and_a_restart_without_the_model_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--model", &model_flag()]);
    let c = client();
    let docs = debian(8);
    write_debian(&c, &d, "p", &docs).await;
    let before = stored_vectors(&c, &d, "p", 8).await;

    // A patch of another attribute embeds nothing and keeps the vector.
    let (s, body) = write(&c, &d, "p", json!({"patch_rows": [{"id": 1, "n": 100}]})).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["performance"].get("embedding_ms").is_none(), "{body}");
    // A patch of the text embeds that text alone.
    let (s, body) = write(&c, &d, "p", json!({"patch_rows": [{"id": 2, "text": docs[5].0}]})).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["performance"]["embedding_tokens"].as_u64().unwrap() > 0, "{body}");
    // A null text drops the embedding too.
    let (s, body) = write(&c, &d, "p", json!({"patch_rows": [{"id": 3, "text": null}]})).await;
    assert_eq!(s, 200, "{body}");
    let after = stored_vectors(&c, &d, "p", 8).await;
    assert_eq!(after[1], before[1], "an untouched text keeps its vector");
    assert!(cosine(&after[2], &before[5]) > 0.9999, "the patched text's vector is the new text's");
    let (s, body) = query(&c, &d, "p", json!({"filters": ["id", "Eq", 3], "include_attributes": true})).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["rows"][0].get("$embed_text").is_none(), "{body}");

    // A branch copies the vectors, embedding nothing.
    let (s, body) = write(&c, &d, "p-copy", json!({"copy_from_namespace": "p"})).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["performance"].get("embedding_ms").is_none(), "{body}");
    assert_eq!(stored_vectors(&c, &d, "p-copy", 8).await, after);
    d.stop();

    // Without the model: the stored vectors serve reads and raw-vector ANN; Embed and writes of
    // the embedded text are refused, naming the (missing) configuration.
    let d = Daemon::start(dir.path(), &[]);
    assert_eq!(stored_vectors(&c, &d, "p", 8).await, after);
    let (s, body) =
        query(&c, &d, "p", json!({"rank_by": ["$embed_text", "ANN", after[4].clone()], "top_k": 1})).await;
    assert_eq!((s, ids(&body)), (200, vec![4]), "{body}");
    let (s, body) = query(&c, &d, "p", json!({"rank_by": ["text", "ANN", ["Embed", "web server"]]})).await;
    assert_eq!(s, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--model"), "{body}");
    let (s, body) = write(&c, &d, "p", json!({"upsert_rows": [{"id": 9, "text": "hello"}]})).await;
    assert_eq!(s, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains(MODEL), "{body}");
    let (s, body) = write(&c, &d, "p", json!({"upsert_rows": [{"id": 9, "n": 1}]})).await;
    assert_eq!(s, 200, "a row without the embedded attribute needs no model: {body}");
}

#[tokio::test]
async fn bad_input_is_a_400_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--model", &model_flag()]);
    let c = client();
    // An unknown model names the configured ones; nothing is written.
    let (s, body) = write(
        &c,
        &d,
        "bad",
        json!({"upsert_rows": [{"id": 1, "text": "x"}], "schema": {"text": {"type": "string", "embed": "gpt-9"}}}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("gpt-9") && msg.contains(MODEL), "{msg}");
    let (s, _) = get(&c, &d.at("/v1/namespaces/bad/schema")).await;
    assert_eq!(s, 404, "nothing was written");
    // embed on a non-string attribute, a bad embed value, mismatched dims.
    for schema in [
        json!({"n": {"type": "int", "embed": MODEL}}),
        json!({"text": {"type": "string", "embed": 7}}),
        json!({"text": {"type": "string", "embed": {"model": MODEL, "dims": 512}}}),
    ] {
        let (s, body) =
            write(&c, &d, "bad", json!({"upsert_rows": [{"id": 1, "text": "x", "n": 1}], "schema": schema}))
                .await;
        assert_eq!(s, 400, "{schema}: {body}");
    }
    // A non-string value of an embedded attribute.
    let (s, body) = write(
        &c,
        &d,
        "bad",
        json!({"upsert_rows": [{"id": 1, "text": ["a", "b"]}], "schema": {"text": {"type": "string", "embed": MODEL}}}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = get(&c, &d.at("/v1/namespaces/bad/schema")).await;
    assert_eq!(s, 404, "nothing was written");

    // An empty text embeds; an over-long one is cut at the model's 256 tokens.
    let long = "lorem ipsum dolor sit amet ".repeat(400);
    let (s, body) = write(
        &c,
        &d,
        "ok",
        json!({"upsert_rows": [{"id": 1, "text": ""}], "schema": {"text": {"type": "string", "embed": MODEL}}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["performance"]["embedding_tokens"], json!(2), "[CLS] [SEP]: {body}");
    let (s, body) = write(&c, &d, "ok", json!({"upsert_rows": [{"id": 2, "text": long}]})).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["performance"]["embedding_tokens"], json!(256), "{body}");

    // Embed on an attribute nothing embeds; an unknown model in Embed; rerank without the
    // attribute returned, with an unknown model.
    let (s, body) = write(&c, &d, "ok", json!({"upsert_rows": [{"id": 3, "plain": "words"}]})).await;
    assert_eq!(s, 200, "{body}");
    for (q, needle) in [
        (json!({"rank_by": ["plain", "ANN", ["Embed", "x"]]}), "not embedded"),
        (json!({"rank_by": ["text", "ANN", ["Embed", "x", {"model": "nope"}]]}), "nope"),
        (json!({"rank_by": ["text", "ANN", ["Embed"]]}), "Embed"),
        (
            json!({"rank_by": ["id", "asc"], "rerank_by": {"attribute": "text", "model": MODEL, "query": "q"}}),
            "include_attributes",
        ),
        (
            json!({"rank_by": ["id", "asc"], "include_attributes": ["text"], "rerank_by": {"attribute": "text", "model": "nope", "query": "q"}}),
            "nope",
        ),
    ] {
        let (s, body) = query(&c, &d, "ok", q.clone()).await;
        assert_eq!(s, 400, "{q}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{q}: {body}");
    }
}

#[tokio::test]
async fn rerank_by_a_model_reorders_the_rows_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--model", &model_flag()]);
    let c = client();
    let docs = debian(60);
    write_debian(&c, &d, "r", &docs).await;
    let title = docs[7].0.split(". ").next().unwrap().to_lowercase();
    let base = json!({"rank_by": ["text", "BM25", title], "top_k": 10, "include_attributes": ["text"]});
    let (s, plain) = query(&c, &d, "r", base.clone()).await;
    assert_eq!(s, 200, "{plain}");
    let mut reranked = base.clone();
    reranked["rerank_by"] = json!({"attribute": "text", "model": MODEL, "query": title});
    let (s, body) = query(&c, &d, "r", reranked).await;
    assert_eq!(s, 200, "{body}");
    let (mut a, mut b) = (ids(&plain), ids(&body));
    assert_eq!(ids(&body)[0], 7, "the doc whose title is the query comes first: {body}");
    // The same rows, ordered by the bi-encoder's cosine, which `$dist` carries.
    let scores: Vec<f64> =
        body["rows"].as_array().unwrap().iter().map(|r| r["$dist"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert!(body["performance"]["rerank_tokens"].as_u64().unwrap() > 0, "{body}");

    // A multi-query reranks its subqueries' rows together, then pages them.
    let (s, body) = post(
        &c,
        &d.at("/v2/namespaces/r/query?stainless_overload=multiQuery"),
        &json!({
            "queries": [
                {"rank_by": ["text", "BM25", title], "top_k": 5, "include_attributes": ["text"]},
                {"rank_by": ["text", "ANN", ["Embed", title]], "top_k": 5, "include_attributes": ["text"]},
            ],
            "rerank_by": {"attribute": "text", "model": MODEL, "query": title},
            "limit": 3,
        }),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let rows = &body["results"][0]["rows"];
    assert_eq!(rows.as_array().unwrap().len(), 3, "{body}");
    assert_eq!(rows[0]["id"], json!(7), "{body}");
}

#[test]
fn a_missing_model_stops_the_daemon_and_config_check_reports_models() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let flag = format!("x={}", missing.display());
    let failed = Daemon::try_start(dir.path(), &["--model", &flag]).err().expect("the daemon must not start");
    assert!(failed.stderr.contains(&missing.display().to_string()), "{}", failed.stderr);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["config", "check", "--json", "--data-dir"])
        .arg(dir.path())
        .args(["--model", &model_flag()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["models"],
        json!([{"name": MODEL, "path": model_dir().display().to_string(), "kind": "embedding", "dims": 384, "max_tokens": 256}])
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["config", "check", "--data-dir"])
        .arg(dir.path())
        .args(["--model", &flag])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing.display().to_string()));
}

#[tokio::test]
async fn metrics_count_tokens_and_time_per_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--model", &model_flag()]);
    let c = client();
    write_debian(&c, &d, "m", &debian(5)).await;
    let text = c.get(d.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("model=\"minilm\"") && l.contains("op=\"embed\""))
            .unwrap_or_else(|| panic!("no {name} for minilm in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(line("tidepool_model_texts_total"), 5.0);
    assert!(line("tidepool_model_tokens_total") > 50.0);
    assert!(line("tidepool_model_seconds_total") > 0.0);
}

async fn sync_run(d: &Daemon) -> Json {
    let (s, body) = post(&client(), &d.at("/v1/sync/run"), &json!({})).await;
    assert_eq!(s, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_off_node_embeds_and_a_pull_replica_serves_the_vectors_without_the_model() {
    let bucket = s3::new_bucket().await;
    let uplink = Uplink::start(s3::endpoint());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flag = model_flag();
    let a = sync_node(a_dir.path(), &bucket, &uplink.url, "edge-a", "*=push", &["--model", &flag]);
    let c = client();
    uplink.cut();
    let docs = debian(20);
    write_debian(&c, &a, "kb", &docs).await;
    let title = docs[4].0.split(". ").next().unwrap();
    let (s, body) =
        query(&c, &a, "kb", json!({"rank_by": ["text", "ANN", ["Embed", title]], "top_k": 3})).await;
    assert_eq!(s, 200, "{body}");
    assert!(ids(&body).contains(&4), "{body}");
    let (s, body) = query(
        &c,
        &a,
        "kb",
        json!({"rank_by": ["text", "BM25", title.to_lowercase()], "top_k": 5, "include_attributes": ["text"],
               "rerank_by": {"attribute": "text", "model": MODEL, "query": title}}),
    )
    .await;
    assert_eq!((s, ids(&body)[0]), (200, 4), "{body}");
    assert_eq!(sync_run(&a).await["status"], "partial", "the uplink is cut");
    let on_a = stored_vectors(&c, &a, "kb", 20).await;

    uplink.restore();
    assert_eq!(sync_run(&a).await["status"], "OK");
    let b = sync_node(b_dir.path(), &bucket, s3::endpoint(), "edge-b", "*=pull", &[]);
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(stored_vectors(&c, &b, "kb", 20).await, on_a, "the replica serves the vectors it received");
    let (s, body) =
        query(&c, &b, "kb", json!({"rank_by": ["$embed_text", "ANN", on_a[7].clone()], "top_k": 1})).await;
    assert_eq!((s, ids(&body)), (200, vec![7]), "{body}");
    let (s, body) = query(&c, &b, "kb", json!({"rank_by": ["text", "ANN", ["Embed", title]]})).await;
    assert_eq!(s, 400, "no model on the replica: {body}");
}

#[tokio::test]
async fn sighup_adds_and_removes_models() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    let d = Daemon::start(&dir.path().join("data"), &["--config", config.to_str().unwrap()]);
    let c = client();
    let (s, body) = write(&c, &d, "h", json!({"upsert_rows": [{"id": 1, "plain": "x"}]})).await;
    assert_eq!(s, 200, "{body}");
    let embed_query =
        json!({"rank_by": ["id", "asc"], "compute_attributes": {"e": ["Embed", "hello", {"model": MODEL}]}});
    assert_eq!(query(&c, &d, "h", embed_query.clone()).await.0, 400, "no model yet");

    let hup = |d: &Daemon| {
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &d.pid().to_string()])
            .status()
            .unwrap()
            .success());
    };
    let settles = |want: u16| {
        let (c, d, q) = (&c, &d, embed_query.clone());
        async move {
            for _ in 0..100 {
                if query(c, d, "h", q.clone()).await.0 == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the reload did not give {want}: {}", d.stderr());
        }
    };
    let path = model_dir().display().to_string();
    std::fs::write(&config, format!("[[models]]\nname = \"{MODEL}\"\npath = \"{path}\"\n")).unwrap();
    hup(&d);
    settles(200).await;
    // A model that cannot load fails the reload whole: the model served stays.
    std::fs::write(&config, format!("[[models]]\nname = \"{MODEL}\"\npath = \"{path}-missing\"\n")).unwrap();
    hup(&d);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(query(&c, &d, "h", embed_query.clone()).await.0, 200);
    std::fs::write(&config, "").unwrap();
    hup(&d);
    settles(400).await;
}

#[tokio::test]
async fn a_cross_encoder_reranks_by_its_pair_scores() {
    // No pip package bundles a cross-encoder's weights: a tiny seeded one the test writes, served
    // beside MiniLM; its order must be the library's own pair scores (checked in
    // tests/models_inference.rs against a reference forward pass).
    let tiny = common::tiny_bert::TinyDir::cross_encoder("ce", &model_dir().join("tokenizer.json"));
    let reference = tiny.load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ce = format!("ce={}", tiny.path.display());
    let d = Daemon::start(dir.path(), &["--model", &model_flag(), "--model", &ce]);
    let c = client();
    let docs = debian(30);
    write_debian(&c, &d, "x", &docs).await;
    let q = "a program to read electronic mail";
    let body = json!({"rank_by": ["id", "asc"], "top_k": 30, "include_attributes": ["text"],
        "rerank_by": {"attribute": "text", "model": "ce", "query": q}});
    let (s, body) = query(&c, &d, "x", body).await;
    assert_eq!(s, 200, "{body}");
    let texts: Vec<&str> = docs.iter().map(|(t, _)| t.as_str()).collect();
    let scores = reference.score_pairs(q, &texts).unwrap().scores;
    let mut want: Vec<(f32, u64)> = scores.iter().enumerate().map(|(i, s)| (*s, i as u64)).collect();
    want.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(ids(&body), want.iter().map(|w| w.1).collect::<Vec<_>>(), "{body}");
    for (row, (score, _)) in body["rows"].as_array().unwrap().iter().zip(&want) {
        assert!((row["$dist"].as_f64().unwrap() as f32 - score).abs() < 1e-4, "{row}");
    }
    // A cross-encoder cannot embed.
    let (s, body) = write(
        &c,
        &d,
        "y",
        json!({"upsert_rows": [{"id": 1, "t": "x"}], "schema": {"t": {"type": "string", "embed": "ce"}}}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("cross-encoder"), "{body}");
}
