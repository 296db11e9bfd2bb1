//! Multi-vector (late interaction) attributes over real loopback HTTP against the `tidepool`
//! binary: a `[][N]f32` / `[][N]f16` attribute takes a JSON array of float arrays per
//! document (rows and columns), is checked for its dimension and vector count on every write,
//! comes back from `include_attributes` as float arrays, cannot be filtered, and ranks
//! `kNN` exactly by `$dist = Σ_q min_d dist(q, d)` (cosine: |Q| − MaxSim; euclidean_squared:
//! the sum of per-query nearest distances), equal to a brute force computed here, over the
//! WAL and segments, before and after a restart. `ANN` needs `ann: {"late_interaction": true}`.

use crate::common;

use common::{client, get, post, Daemon};
use serde_json::{json, Value as Json};

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

fn schema(metric: &str) -> Json {
    json!({"tok": {"type": "[][3]f32", "ann": {"late_interaction": true, "distance_metric": metric}}})
}

/// A deterministic pseudo-random stream in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vectors(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| (0..3).map(|_| self.next()).collect()).collect()
    }
}

fn dist(metric: &str, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    if metric == "euclidean_squared" {
        return a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum();
    }
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

/// Brute-force late-interaction distance: Σ_q min_d dist(q, d).
fn maxsim_dist(metric: &str, q: &[Vec<f32>], d: &[Vec<f32>]) -> f64 {
    q.iter().map(|q| d.iter().map(|d| dist(metric, q, d)).fold(f64::INFINITY, f64::min)).sum()
}

fn expected(metric: &str, docs: &[(u64, Vec<Vec<f32>>)], q: &[Vec<f32>], k: usize) -> Vec<(u64, f64)> {
    let mut all: Vec<(u64, f64)> = docs.iter().map(|(i, d)| (*i, maxsim_dist(metric, q, d))).collect();
    all.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
    all.truncate(k);
    all
}

fn assert_ranked(body: &Json, want: &[(u64, f64)], what: &str) {
    assert_eq!(ids(body), want.iter().map(|w| w.0).collect::<Vec<_>>(), "{what}: {body}");
    for (row, (_, d)) in body["rows"].as_array().unwrap().iter().zip(want) {
        let got = row["$dist"].as_f64().unwrap();
        assert!((got - d).abs() < 1e-4 * (1.0 + d.abs()), "{what}: $dist {got} vs {d}");
    }
}

#[tokio::test]
async fn values_round_trip_and_bad_values_and_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let (s, b) = write(
        &c,
        &d,
        "v",
        json!({
            "schema": schema("cosine_distance"),
            "upsert_rows": [{"id": 1, "tok": [[1.0, 0.0, 0.5], [0.0, 2.0, 0.0]]}],
            "upsert_columns": {"id": [2, 3], "tok": [[[0.0, 0.0, 1.0]], null]},
        }),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = query(&c, &d, "v", json!({"rank_by": ["id", "asc"], "include_attributes": ["tok"]})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"][0]["tok"], json!([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0]]));
    assert_eq!(b["rows"][1]["tok"], json!([[0.0, 0.0, 1.0]]));
    assert!(b["rows"][2].get("tok").is_none(), "{b}");
    let (_, b) = query(
        &c,
        &d,
        "v",
        json!({"rank_by": ["id", "asc"], "include_attributes": true, "vector_encoding": "base64"}),
    )
    .await;
    assert_eq!(b["rows"][1]["tok"], json!([[0.0, 0.0, 1.0]]), "always floats: {b}");
    let (_, b) = get(&c, &d.at("/v1/namespaces/v/schema")).await;
    assert_eq!(b["tok"]["type"], "[][3]f32", "{b}");
    assert_eq!(b["tok"]["ann"]["late_interaction"], true, "{b}");

    for (row, why) in [
        (json!({"id": 9, "tok": [[1.0, 2.0]]}), "vector 0 has 2 dimensions"),
        (json!({"id": 9, "tok": [[1.0, 2.0, 3.0], [1.0, 2.0]]}), "mixes dimensions"),
        (json!({"id": 9, "tok": []}), "holds no vectors"),
        (json!({"id": 9, "tok": [1.0, 2.0, 3.0]}), "tok"),
        (json!({"id": 9, "tok": [[1.0, "x", 3.0]]}), "non-number"),
        (json!({"id": 9, "tok": vec![[1.0, 0.0, 0.0]; 1025]}), "limit is 1024"),
    ] {
        let (s, b) = write(&c, &d, "v", json!({"upsert_rows": [row]})).await;
        assert_eq!(s, 400, "{why}: {b}");
        let msg = b["error"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(why), "{why}: {msg}");
        assert!(msg.contains("tok"), "the message names the attribute: {msg}");
    }
    for (sch, why) in [
        (json!({"t": {"type": "[3]f32", "ann": {"late_interaction": true}}}), "late_interaction applies"),
        (json!({"t": {"type": "string", "ann": {"late_interaction": true}}}), "t.ann"),
        (json!({"t": {"type": "[][3]f32", "ann": true}}), "needs {\"late_interaction\": true}"),
        (json!({"t": {"type": "[][3]f32", "ann": {"late_interaction": "yes"}}}), "must be a bool"),
        (json!({"t": {"type": "[][0]f32"}}), "out of range"),
    ] {
        let (s, b) = write(&c, &d, "w", json!({"schema": sch, "upsert_rows": [{"id": 1}]})).await;
        assert_eq!(s, 400, "{why}: {b}");
        assert!(b["error"].as_str().unwrap_or_default().contains(why), "{why}: {b}");
    }
    // f16 is accepted (held as f32); a kNN-only attribute needs no ann.
    let (s, b) = write(
        &c,
        &d,
        "h",
        json!({"schema": {"t": "[][2]f16"}, "upsert_rows": [{"id": 1, "t": [[0.5, 0.25]]}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = query(&c, &d, "h", json!({"rank_by": ["t", "kNN", [[1.0, 0.0]]]})).await;
    assert_eq!((s, ids(&b)), (200, vec![1]), "{b}");
    let (s, b) = query(&c, &d, "h", json!({"rank_by": ["t", "ANN", [[1.0, 0.0]]]})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("late_interaction"), "{b}");
    // Not filterable; query vectors of the wrong dimension; a list on `vector`.
    for (body, why) in [
        (json!({"filters": ["tok", "Eq", 1]}), "cannot be filtered"),
        (json!({"rank_by": ["tok", "kNN", [[1.0, 0.0]]]}), "dimensions"),
        (json!({"rank_by": ["tok", "kNN", [[1.0, 0.0, 0.0], [1.0]]]}), "query vector 1"),
        (json!({"rank_by": ["vector", "kNN", [[1.0, 0.0, 0.0]]]}), "one query vector"),
        (json!({"rank_by": ["nope", "kNN", [[1.0, 0.0, 0.0]]]}), "not in the schema"),
    ] {
        let (s, b) = query(&c, &d, "v", body).await;
        assert_eq!(s, 400, "{why}: {b}");
        assert!(b["error"].as_str().unwrap_or_default().contains(why), "{why}: {b}");
    }
    d.stop();
}

#[tokio::test]
async fn knn_equals_brute_force_maxsim_over_wal_and_segments_in_both_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let mut rng = Lcg(7);
    let mut kept = Vec::new();
    for metric in ["cosine_distance", "euclidean_squared"] {
        let ns = format!("k-{metric}");
        let mut docs: Vec<(u64, Vec<Vec<f32>>)> =
            (0..60).map(|i| (i, rng.vectors(1 + (i as usize % 5)))).collect();
        let rows: Vec<Json> = docs.iter().map(|(i, v)| json!({"id": i, "tok": v})).collect();
        let (s, b) = write(&c, &d, &ns, json!({"schema": schema(metric), "upsert_rows": rows[..40]})).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = post(&c, &d.at(&format!("/v1/namespaces/{ns}/_admin/compact")), &json!({})).await;
        assert_eq!(s, 200, "{b}");
        // The rest only in the WAL; doc 5 replaced there.
        docs[5].1 = rng.vectors(2);
        let mut more = rows[40..].to_vec();
        more.push(json!({"id": 5, "tok": docs[5].1}));
        let (s, b) = write(&c, &d, &ns, json!({"upsert_rows": more})).await;
        assert_eq!(s, 200, "{b}");
        for _ in 0..4 {
            let q = rng.vectors(3);
            let want = expected(metric, &docs, &q, 10);
            for op in ["kNN", "ANN"] {
                let (s, b) = query(&c, &d, &ns, json!({"rank_by": ["tok", op, q], "limit": 10})).await;
                assert_eq!(s, 200, "{b}");
                assert_ranked(&b, &want, &format!("{metric} {op}"));
            }
        }
        kept = docs;
    }
    // Restart: the WAL replays and segments reopen to the same answers.
    d.stop();
    let d = Daemon::start(dir.path(), &[]);
    let q = vec![vec![0.3, -0.2, 0.9], vec![1.0, 0.0, 0.0]];
    let (s, b) =
        query(&c, &d, "k-euclidean_squared", json!({"rank_by": ["tok", "kNN", q], "limit": 10})).await;
    assert_eq!(s, 200, "{b}");
    assert_ranked(&b, &expected("euclidean_squared", &kept, &q, 10), "after restart");
    d.stop();
}

/// `n` documents of 4..=12 vectors near 2 of 24 cluster centres (dim 16), and queries of
/// 4 vectors near 2 centres.
fn clustered(rng: &mut Lcg, n: usize) -> Vec<(u64, Vec<Vec<f32>>)> {
    let centres: Vec<Vec<f32>> = (0..24).map(|_| (0..16).map(|_| rng.next()).collect()).collect();
    let pick = |rng: &mut Lcg| (((rng.next() + 1.0) * 12.0) as usize).min(23);
    let set = |rng: &mut Lcg, m: usize| {
        let t = [pick(rng), pick(rng)];
        (0..m)
            .map(|i| centres[t[i % 2]].iter().map(|c| c + 0.35 * rng.next()).collect())
            .collect::<Vec<Vec<f32>>>()
    };
    (0..n as u64).map(|i| (i, set(rng, 4 + (i as usize % 9)))).collect()
}

#[tokio::test]
async fn ann_reads_the_muvera_section_built_at_compaction_and_reaches_recall_095() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let mut rng = Lcg(3);
    // Documents and queries from the same clusters: the last 20 sets are the queries.
    let all = clustered(&mut rng, 620);
    let (docs, queries) = all.split_at(600);
    let s16 = json!({"tok": {"type": "[][16]f32", "ann": {"late_interaction": true}}});
    for (i, chunk) in docs.chunks(200).enumerate() {
        let rows: Vec<Json> = chunk.iter().map(|(i, v)| json!({"id": i, "tok": v})).collect();
        let body =
            if i == 0 { json!({"schema": s16, "upsert_rows": rows}) } else { json!({"upsert_rows": rows}) };
        let (s, b) = write(&c, &d, "ann", body).await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = post(&c, &d.at("/v1/namespaces/ann/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let q0 = &queries[0].1;
    let (s, b) = post(
        &c,
        &d.at("/v2/namespaces/ann/explain_query"),
        &json!({"rank_by": ["tok", "ANN", q0], "limit": 10}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["plan_text"].as_str().unwrap().contains("MUVERA section"), "{b}");
    let (_, b) = post(
        &c,
        &d.at("/v2/namespaces/ann/explain_query"),
        &json!({"rank_by": ["tok", "kNN", q0], "limit": 10}),
    )
    .await;
    assert!(b["plan_text"].as_str().unwrap().contains("exact search"), "{b}");

    let mut hits = 0;
    for (_, q) in queries {
        let want: Vec<u64> = expected("cosine_distance", docs, q, 10).iter().map(|w| w.0).collect();
        let (s, b) = query(&c, &d, "ann", json!({"rank_by": ["tok", "ANN", q], "limit": 10})).await;
        assert_eq!(s, 200, "{b}");
        hits += ids(&b).iter().filter(|i| want.contains(i)).count();
        // Every returned distance is the exact one (reranked), so the order is the exact order.
        let exact = |id: u64| maxsim_dist("cosine_distance", q, &docs[id as usize].1);
        for r in b["rows"].as_array().unwrap() {
            let got = r["$dist"].as_f64().unwrap();
            assert!((got - exact(r["id"].as_u64().unwrap())).abs() < 1e-4, "{r}");
        }
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    eprintln!("MUVERA recall@10 over HTTP: {recall:.3}");
    assert!(recall >= 0.95, "recall@10 {recall}");
    d.stop();
}

/// A page ranked by another attribute (here BM25 and `vector`) returns a compacted row's
/// vector arrays when `include_attributes` asks for them, as an id-ordered page does.
#[tokio::test]
async fn a_ranked_page_returns_vector_arrays_of_compacted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let mut rng = Lcg(11);
    let mut sch = schema("cosine_distance");
    sch["text"] = json!({"type": "string", "full_text_search": true});
    let docs: Vec<(u64, Vec<Vec<f32>>)> = (0..8).map(|i| (i, rng.vectors(2))).collect();
    let rows: Vec<Json> = docs
        .iter()
        .map(|(i, v)| json!({"id": i, "tok": v, "vector": [1.0, *i as f32], "text": format!("doc word{i}")}))
        .collect();
    let (s, b) = write(&c, &d, "proj", json!({"schema": sch, "upsert_rows": rows})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&c, &d.at("/v1/namespaces/proj/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    for rank_by in [json!(["text", "BM25", "doc"]), json!(["vector", "ANN", [1.0, 3.0]])] {
        let body = json!({"rank_by": rank_by, "limit": 8, "include_attributes": ["tok"]});
        let (s, b) = query(&c, &d, "proj", body.clone()).await;
        assert_eq!(s, 200, "{b}");
        let rows = b["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 8, "{b}");
        for r in rows {
            let id = r["id"].as_u64().unwrap();
            let got: Vec<Vec<f32>> =
                serde_json::from_value(r["tok"].clone()).unwrap_or_else(|_| panic!("{body}: {r}"));
            assert_eq!(got, docs[id as usize].1, "{body}: row {id}");
        }
    }
    d.stop();
}
