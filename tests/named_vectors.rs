//! Named vector attributes over real loopback HTTP against the `tidepool` binary: any
//! `[N]f32` / `[N]f16` attribute with `ann` takes JSON floats or base64 (rows and columns,
//! patches), is checked for its dimension on every write, comes back from
//! `include_attributes` as floats or base64, cannot be filtered, survives compaction,
//! restart, export and branch, and ranks `kNN`/`ANN` queries in its own metric, exactly,
//! over the WAL and segments alike.

use crate::common;

use base64::Engine as _;
use common::{client, get, post, Daemon};
use serde_json::{json, Value as Json};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ids(body: &Json) -> Vec<u64> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {body}"))
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

async fn write(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> (u16, Json) {
    post(c, &d.at(&format!("/v2/namespaces/{ns}")), &body).await
}

async fn query(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> (u16, Json) {
    post(c, &d.at(&format!("/v2/namespaces/{ns}/query")), &body).await
}

/// The schema of the two-attribute namespace: `a` ([2]f32, euclidean) and `b` ([3]f16,
/// default metric = the namespace's cosine).
fn two_attr_schema() -> Json {
    json!({
        "a": {"type": "[2]f32", "ann": {"distance_metric": "euclidean_squared"}},
        "b": {"type": "[3]f16", "ann": true},
    })
}

/// Row `i`: `a` = (i, 0), `b` pointing at angle i·9° in the xy plane (so cosine orders by i).
fn row(i: u64) -> Json {
    let t = (i as f32 * 9.0).to_radians();
    json!({"id": i, "a": [i as f32, 0.0], "b": [t.cos(), t.sin(), 0.0], "k": i % 2})
}

#[tokio::test]
async fn values_round_trip_as_floats_and_base64_and_dimensions_are_checked() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    // Base64 in rows (what the SDK sends with the schema in the same write), floats in columns.
    let (s, b) = write(
        &c,
        &d,
        "v",
        json!({
            "schema": two_attr_schema(),
            "upsert_rows": [{"id": 1, "a": b64(&[1.5, -2.0]), "b": [0.0, 1.0, 0.0]}],
            "upsert_columns": {"id": [2, 3], "a": [[3.0, 4.0], b64(&[5.0, 6.0])], "b": [null, [1.0, 0.0, 0.0]]},
        }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) =
        query(&c, &d, "v", json!({"rank_by": ["id", "asc"], "include_attributes": ["a", "b"]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"][0]["a"], json!([1.5, -2.0]));
    assert_eq!(b["rows"][1]["a"], json!([3.0, 4.0]));
    assert_eq!(b["rows"][2]["a"], json!([5.0, 6.0]));
    assert!(b["rows"][1].get("b").is_none(), "a null leaves the attribute out: {b}");
    let (_, b) = query(
        &c,
        &d,
        "v",
        json!({"rank_by": ["id", "asc"], "include_attributes": ["a"], "vector_encoding": "base64"}),
    )
    .await;
    assert_eq!(b["rows"][0]["a"], json!(b64(&[1.5, -2.0])), "{b}");

    // The schema says what was declared, with the metric each attribute ranks by.
    let (s, schema) = get(&c, &d.at("/v1/namespaces/v/schema")).await;
    assert_eq!(s, 200, "{schema}");
    assert_eq!(schema["a"]["type"], "[2]f32");
    assert_eq!(schema["a"]["ann"]["distance_metric"], "euclidean_squared", "{schema}");
    assert_eq!(schema["b"]["type"], "[3]f16");
    assert_eq!(schema["b"]["ann"]["distance_metric"], "cosine_distance", "{schema}");

    // Every write is checked against the dimension, naming the attribute.
    for bad in
        [json!([1.0]), json!([1.0, 2.0, 3.0]), json!(b64(&[1.0])), json!("not base64!"), json!(["x", 1])]
    {
        let (s, b) = write(&c, &d, "v", json!({"upsert_rows": [{"id": 9, "a": bad}]})).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(b["error"].as_str().unwrap().contains("\"a\""), "{b}");
    }
    let (s, b) = write(&c, &d, "v", json!({"patch_rows": [{"id": 1, "a": [1.0, 2.0, 3.0]}]})).await;
    assert_eq!(s, 400, "{b}");
    // Patches set them.
    let (s, b) = write(&c, &d, "v", json!({"patch_rows": [{"id": 1, "a": [7.0, 8.0]}]})).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = query(&c, &d, "v", json!({"filters": ["id", "Eq", 1], "include_attributes": ["a"]})).await;
    assert_eq!(b["rows"][0]["a"], json!([7.0, 8.0]), "{b}");
    // A metric cannot change once set.
    let (s, b) = write(
        &c,
        &d,
        "v",
        json!({"schema": {"a": {"type": "[2]f32", "ann": {"distance_metric": "cosine_distance"}}}}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) =
        write(&c, &d, "v", json!({"schema": {"c": {"type": "int", "ann": {"distance_metric": "x"}}}})).await;
    assert_eq!(s, 400, "{b}");
    d.stop();
}

#[tokio::test]
async fn they_cannot_be_filtered_and_ranking_needs_a_vector_attribute() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> = (0..5).map(row).collect();
    let (s, b) = write(&c, &d, "f", json!({"schema": two_attr_schema(), "upsert_rows": rows})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = query(&c, &d, "f", json!({"filters": ["a", "Eq", [1.0, 0.0]]})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("\"a\""), "{b}");
    let (s, b) = query(&c, &d, "f", json!({"rank_by": ["a", "asc"]})).await;
    assert_eq!(s, 400, "{b}");
    for (rank, why) in [
        (json!(["nope", "kNN", [1.0, 0.0]]), "unknown attribute"),
        (json!(["k", "ANN", [1.0, 0.0]]), "not a vector"),
        (json!(["a", "kNN", [1.0, 0.0, 0.0]]), "wrong dimension"),
    ] {
        let (s, b) = query(&c, &d, "f", json!({"rank_by": rank})).await;
        assert_eq!(s, 400, "{why}: {b}");
    }
    d.stop();
}

/// The nearest ids to `q` under `metric` among rows `0..n`, by brute force in the test.
fn expected(n: u64, attr: &str, q: &[f32], k: usize) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = (0..n)
        .map(|i| {
            let r = row(i);
            let v: Vec<f32> =
                r[attr].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            let d = if attr == "a" {
                v.iter().zip(q).map(|(x, y)| (x - y) * (x - y)).sum::<f32>()
            } else {
                let dot: f32 = v.iter().zip(q).map(|(x, y)| x * y).sum();
                let n = |u: &[f32]| u.iter().map(|x| x * x).sum::<f32>().sqrt();
                1.0 - dot / (n(&v) * n(q))
            };
            (d, i)
        })
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    all.into_iter().take(k).map(|(_, i)| i).collect()
}

#[tokio::test]
async fn two_attributes_rank_in_their_own_metric_over_wal_and_segments() {
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let rows: Vec<Json> = (0..30).map(row).collect();
    let (s, b) = write(&c, &d, "r", json!({"schema": two_attr_schema(), "upsert_rows": rows})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&c, &d.at("/v1/namespaces/r/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    // Ten more only in the WAL; row 3 replaced there (its `a` moved far away).
    let more: Vec<Json> = (30..40).map(row).collect();
    let (s, b) = write(&c, &d, "r", json!({"upsert_rows": more})).await;
    assert_eq!(s, 200, "{b}");
    let mut moved = row(3);
    moved["a"] = json!([1000.0, 0.0]);
    let (s, b) = write(&c, &d, "r", json!({"upsert_rows": [moved]})).await;
    assert_eq!(s, 200, "{b}");

    let qa = [12.2_f32, 0.5];
    for op in ["kNN", "ANN"] {
        let (s, b) = query(&c, &d, "r", json!({"rank_by": ["a", op, qa], "limit": 5})).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(ids(&b), expected(40, "a", &qa, 5), "{op} on a (euclidean): {b}");
        let d0 = b["rows"][0]["$dist"].as_f64().unwrap();
        assert!((d0 - (0.2f64.powi(2) + 0.25)).abs() < 1e-4, "squared euclidean distance: {b}");
    }
    // `b` ranks by cosine: a scaled query gives the same order; row 3 is still near angle 27°.
    let t = 27f32.to_radians();
    let qb = [5.0 * t.cos(), 5.0 * t.sin(), 0.0];
    let (s, b) = query(&c, &d, "r", json!({"rank_by": ["b", "kNN", qb], "limit": 3})).await;
    assert_eq!(s, 200, "{b}");
    let got = ids(&b);
    assert_eq!(got[0], 3, "{b}");
    let mut rest = got[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(rest, vec![2, 4], "the two rows 9° away: {b}");
    assert!(b["rows"][0]["$dist"].as_f64().unwrap().abs() < 1e-5, "{b}");
    // Filters apply; far-away row 3 is excluded from `a`'s top hits.
    let (s, b) = query(
        &c,
        &d,
        "r",
        json!({"rank_by": ["a", "kNN", [3.0, 0.0]], "filters": ["k", "Eq", 1], "limit": 3}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ids(&b), vec![1, 5, 7], "{b}");

    // A patch of a compacted row's named vector (read back from its segment row), then a second
    // compaction merging the segment with the tail: values and rankings carried.
    let (s, b) = write(&c, &d, "r", json!({"patch_rows": [{"id": 20, "b": [0.0, 0.0, 1.0]}]})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&c, &d.at("/v1/namespaces/r/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) =
        query(&c, &d, "r", json!({"filters": ["id", "Eq", 20], "include_attributes": ["a", "b", "k"]})).await;
    assert_eq!(b["rows"][0]["b"], json!([0.0, 0.0, 1.0]), "the patched value: {b}");
    assert_eq!(b["rows"][0]["a"], json!([20.0, 0.0]), "the value the patch left: {b}");
    let (s, b) = query(&c, &d, "r", json!({"rank_by": ["b", "kNN", [0.0, 0.0, 2.0]], "limit": 1})).await;
    assert_eq!((s, ids(&b)), (200, vec![20]), "{b}");
    let (s, b) = query(&c, &d, "r", json!({"rank_by": ["a", "ANN", qa], "limit": 5})).await;
    assert_eq!((s, ids(&b)), (200, expected(40, "a", &qa, 5)), "{b}");

    // Restart (WAL replayed, segments reopened): the same answers, values intact.
    d.stop();
    let d = Daemon::start(dir.path(), &[]);
    let (s, b) = query(&c, &d, "r", json!({"rank_by": ["a", "kNN", qa], "limit": 5})).await;
    assert_eq!((s, ids(&b)), (200, expected(40, "a", &qa, 5)), "{b}");
    let (_, b) =
        query(&c, &d, "r", json!({"filters": ["id", "Eq", 3], "include_attributes": ["a", "b"]})).await;
    assert_eq!(b["rows"][0]["a"], json!([1000.0, 0.0]), "{b}");

    // Branch and export carry them.
    let (s, b) = write(&c, &d, "r2", json!({"branch_from_namespace": "r"})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = query(&c, &d, "r2", json!({"rank_by": ["a", "kNN", qa], "limit": 5})).await;
    assert_eq!((s, ids(&b)), (200, expected(40, "a", &qa, 5)), "{b}");
    let resp = c.get(d.at("/v1/namespaces/r/export")).send().await.unwrap();
    let text = resp.text().await.unwrap();
    let first: Json = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["a"], json!([0.0, 0.0]), "{first}");
    assert_eq!(first["b"], json!([1.0, 0.0, 0.0]), "{first}");
    d.stop();
}

/// Deterministic pseudo-Gaussian vectors (sum of four uniforms, centred).
fn gaussian_rows(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| (0..dim).map(|_| (0..4).map(|_| next()).sum::<f32>() - 2.0).collect()).collect()
}

fn dist(metric: &str, a: &[f32], b: &[f32]) -> f32 {
    if metric == "euclidean_squared" {
        return a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |u: &[f32]| u.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

/// Recall@10 of `ANN` against brute force, per attribute, after compaction built each
/// attribute's own index section (kind 23): two attributes of different dimensions and metrics
/// in one namespace, each searched through its graph (no exhaustive rows) and each at or above
/// the default target of 0.95; `kNN` stays exact.
#[tokio::test]
async fn ann_over_each_attribute_index_reaches_the_default_recall() {
    const N: usize = 3000;
    let dir = tmp();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let attrs = [("e", 24usize, "euclidean_squared", 11u64), ("cos", 12, "cosine_distance", 12)];
    let data: Vec<Vec<Vec<f32>>> =
        attrs.iter().map(|(_, dim, _, seed)| gaussian_rows(N, *dim, *seed)).collect();
    let schema = json!({
        "e": {"type": "[24]f32", "ann": {"distance_metric": "euclidean_squared"}},
        "cos": {"type": "[12]f32", "ann": true},
    });
    for start in (0..N).step_by(500) {
        let rows: Vec<Json> = (start..start + 500)
            .map(|i| json!({"id": i, "e": b64(&data[0][i]), "cos": data[1][i], "g": i % 10}))
            .collect();
        let (s, b) = write(&c, &d, "rec", json!({"schema": schema, "upsert_rows": rows})).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = post(&c, &d.at("/v1/namespaces/rec/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");

    for (ai, (attr, dim, metric, _)) in attrs.iter().enumerate() {
        let queries = gaussian_rows(40, *dim, 99 + ai as u64);
        let mut found = 0usize;
        for q in &queries {
            let mut all: Vec<(f32, usize)> =
                data[ai].iter().enumerate().map(|(i, v)| (dist(metric, v, q), i)).collect();
            all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let truth: Vec<u64> = all[..10].iter().map(|(_, i)| *i as u64).collect();
            let (s, knn) = query(&c, &d, "rec", json!({"rank_by": [attr, "kNN", q], "limit": 10})).await;
            assert_eq!(s, 200, "{knn}");
            assert_eq!(ids(&knn), truth, "kNN on {attr} is exact");
            assert_eq!(knn["performance"]["exhaustive_search_count"], N, "{knn}");
            let (s, ann) = query(&c, &d, "rec", json!({"rank_by": [attr, "ANN", q], "limit": 10})).await;
            assert_eq!(s, 200, "{ann}");
            assert_eq!(
                ann["performance"]["exhaustive_search_count"], 0,
                "ANN on {attr} uses its index: {ann}"
            );
            found += ids(&ann).iter().filter(|i| truth.contains(i)).count();
        }
        let recall = found as f64 / (10 * queries.len()) as f64;
        eprintln!("{attr} ({metric}, {dim} dims): recall@10 {recall:.3}");
        assert!(recall >= 0.95, "{attr}: recall@10 {recall:.3} below 0.95");
    }
    // A filter passing half the rows still goes through the graph and returns only matches.
    let q = gaussian_rows(1, 24, 5).remove(0);
    let (s, b) =
        query(&c, &d, "rec", json!({"rank_by": ["e", "ANN", q], "filters": ["g", "Lt", 5], "limit": 10}))
            .await;
    assert_eq!(s, 200, "{b}");
    assert!(ids(&b).iter().all(|i| i % 10 < 5) && ids(&b).len() == 10, "{b}");
    d.stop();
}
