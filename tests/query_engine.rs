//! The query engine through the engine API: ranking (exact and ANN vector
//! search, BM25, sparse), filters, ordering, aggregations, fusion and
//! diversity, on segments (after compaction) and on unindexed WAL rows.
//!
//! Invariants guarded: a query's answer does not depend on where rows live
//! (segment or WAL, indexed or not); exact search equals a brute-force
//! reference; ANN recall stays above a floor, also under selective filters;
//! BM25 scores equal hand-computed values.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, NsState, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::query::{execute_request, recall};
use tidepool::store::Store;
use tidepool::wire::query::{parse_recall, parse_request, recall_json};

fn ns() -> NsPath {
    NsPath::new("o", "p", "q").unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    e: Arc<Engine>,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.unwrap();
    Env { _dir: dir, e }
}

impl Env {
    async fn write(&self, body: Json) {
        self.e.write(&ns(), WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }
    async fn compact(&self) {
        assert!(self.e.compact(&ns(), true).await.unwrap().performed);
    }
    async fn state(&self) -> Arc<NsState> {
        self.e.existing(&ns(), true).await.unwrap().state
    }
    async fn query(&self, body: Json) -> Json {
        let st = self.state().await;
        let multi = body.get("queries").is_some();
        let req = parse_request(&body, multi).unwrap_or_else(|e| panic!("{body}: {e}"));
        let mut res = execute_request(&req, &st).unwrap_or_else(|e| panic!("{body}: {e}"));
        if multi {
            Json::Array(res.iter().map(|r| r.to_json()).collect())
        } else {
            res.remove(0).to_json()
        }
    }
    async fn rows(&self, body: Json) -> Vec<Json> {
        self.query(body).await["rows"].as_array().cloned().unwrap_or_default()
    }
    async fn ids(&self, body: Json) -> Vec<u64> {
        self.rows(body).await.iter().map(|r| r["id"].as_u64().unwrap()).collect()
    }
}

/// A predicate over (id, cat) of the model.
type Keep = Box<dyn Fn(u64, u64) -> bool>;

fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(1e-12..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Clustered vectors (so ANN has structure to find).
fn blobs(seed: u64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centers: Vec<Vec<f32>> = (0..32).map(|_| (0..dim).map(|_| gauss(&mut rng)).collect()).collect();
    (0..n).map(|i| centers[i % centers.len()].iter().map(|c| c + 0.35 * gauss(&mut rng)).collect()).collect()
}

fn dist(metric: &str, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        "euclidean_squared" => a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum(),
        _ => {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

/// Brute-force top k (id, distance) over a model of the namespace.
fn brute(
    metric: &str,
    docs: &BTreeMap<u64, (Vec<f32>, u64)>,
    q: &[f32],
    k: usize,
    keep: impl Fn(u64, u64) -> bool,
) -> Vec<(u64, f64)> {
    let mut all: Vec<(u64, f64)> = docs
        .iter()
        .filter(|(id, (_, c))| keep(**id, *c))
        .map(|(id, (v, _))| (*id, dist(metric, v, q)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

async fn load(env: &Env, metric: &str, vecs: &[Vec<f32>], ids: std::ops::Range<usize>) {
    let rows: Vec<Json> = ids.map(|i| json!({"id": i, "vector": vecs[i], "cat": i % 100})).collect();
    for chunk in rows.chunks(1000) {
        env.write(json!({"upsert_rows": chunk, "distance_metric": metric})).await;
    }
}

#[tokio::test]
async fn exact_search_matches_brute_force_for_both_metrics() {
    for metric in ["cosine_distance", "euclidean_squared"] {
        let env = env().await;
        let vecs = blobs(7, 400, 12);
        let mut model: BTreeMap<u64, (Vec<f32>, u64)> = BTreeMap::new();
        load(&env, metric, &vecs, 0..300).await;
        env.compact().await;
        load(&env, metric, &vecs, 300..400).await; // unindexed WAL rows
        for (i, v) in vecs.iter().enumerate() {
            model.insert(i as u64, (v.clone(), (i % 100) as u64));
        }
        // Overwrite some segment rows from the WAL and delete others.
        let mut rng = StdRng::seed_from_u64(3);
        for id in [5u64, 17, 250] {
            let v: Vec<f32> = (0..12).map(|_| gauss(&mut rng)).collect();
            env.write(json!({"upsert_rows": [{"id": id, "vector": v, "cat": 1}]})).await;
            model.insert(id, (v, 1));
        }
        env.write(json!({"deletes": [8, 9, 320]})).await;
        for id in [8, 9, 320] {
            model.remove(&id);
        }
        for qi in 0..6 {
            let q: Vec<f32> = (0..12).map(|_| gauss(&mut rng)).collect();
            for (filter, keep) in [
                (Json::Null, Box::new(|_: u64, _: u64| true) as Keep),
                (json!(["cat", "Lt", 30]), Box::new(|_: u64, c: u64| c < 30)),
            ] {
                let rows =
                    env.rows(json!({"rank_by": ["vector", "kNN", q], "top_k": 15, "filters": filter})).await;
                let want = brute(metric, &model, &q, 15, keep);
                let got: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
                assert_eq!(got, want.iter().map(|w| w.0).collect::<Vec<_>>(), "{metric} query {qi}");
                for (r, w) in rows.iter().zip(&want) {
                    let d = r["$dist"].as_f64().unwrap();
                    assert!((d - w.1).abs() < 1e-4, "{metric}: {d} vs {}", w.1);
                }
            }
        }
        // After folding everything into segments the answer is the same.
        let q: Vec<f32> = vecs[42].clone();
        let before = env.rows(json!({"rank_by": ["vector", "kNN", q], "top_k": 10})).await;
        env.compact().await;
        let after = env.rows(json!({"rank_by": ["vector", "kNN", q], "top_k": 10})).await;
        let ids = |r: &[Json]| r.iter().map(|x| x["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&before), ids(&after));
    }
}

#[tokio::test]
async fn ann_recall_and_filtered_recall_stay_above_the_floor() {
    let env = env().await;
    let n = 4000;
    let vecs = blobs(11, n + 50, 16);
    load(&env, "cosine_distance", &vecs, 0..n).await;
    env.compact().await;
    load(&env, "cosine_distance", &vecs, n..n + 50).await;
    let st = env.state().await;
    assert!(
        st.segments().iter().any(|s| s.seg.section(tidepool::format::segment::SECTION_ANN_INDEX).is_some()),
        "the compacted segment carries an ANN section"
    );
    // Its IVF holds lists only (version 3) and scores candidates with the graph's codes: the
    // ~40% filter below is answered through it.
    let ivf = st.segments().iter().find_map(|s| s.ann_index()).unwrap().unwrap();
    assert!(ivf.wants_graph() && ivf.has_graph(), "the IVF scores with the segment graph's codes");
    let model: BTreeMap<u64, (Vec<f32>, u64)> =
        (0..n + 50).map(|i| (i as u64, (vecs[i].clone(), (i % 100) as u64))).collect();
    let mut rng = StdRng::seed_from_u64(99);
    let mut cases: Vec<(Json, Keep)> = vec![
        (Json::Null, Box::new(|_, _| true)),
        // ~1% selectivity: exact over the matching rows.
        (json!(["cat", "Eq", 37]), Box::new(|_, c| c == 37)),
        // ~40%: filter-aware cluster probing.
        (json!(["cat", "Lt", 40]), Box::new(|_, c| c < 40)),
    ];
    for (filter, keep) in cases.drain(..) {
        let mut total = 0.0;
        let queries = 30;
        for _ in 0..queries {
            let base = &vecs[rng.random_range(0..n)];
            let q: Vec<f32> = base.iter().map(|x| x + 0.2 * gauss(&mut rng)).collect();
            let got = env.ids(json!({"rank_by": ["vector", "ANN", q], "top_k": 10, "filters": filter})).await;
            let want = brute("cosine_distance", &model, &q, 10, &keep);
            let hits = got.iter().filter(|id| want.iter().any(|w| w.0 == **id)).count();
            total += hits as f64 / want.len() as f64;
        }
        let r = total / queries as f64;
        assert!(r >= 0.9, "recall@10 {r} with filter {filter}");
    }
    // The recall endpoint's computation agrees.
    let run_recall = |body: serde_json::Value, state: &tidepool::engine::NsState| {
        recall_json(&recall(&parse_recall(&body).unwrap(), state).unwrap())
    };
    let out = run_recall(json!({"num": 20, "top_k": 10}), &*env.state().await);
    assert!(out["avg_recall"].as_f64().unwrap() >= 0.9, "{out}");
    assert_eq!(out["avg_exhaustive_count"], json!(10.0));
    let out = run_recall(json!({"num": 2, "top_k": 5, "include_ground_truth": true}), &*env.state().await);
    assert_eq!(out["ground_truth"].as_array().unwrap().len(), 2);
}

fn bm25(tf: f64, dl: f64, avgdl: f64, n: f64, df: f64) -> f64 {
    let (k1, b) = (1.2, 0.75);
    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
    idf * (1.0 + k1) * tf / (tf + k1 * (1.0 - b + b * dl / avgdl))
}

#[tokio::test]
async fn bm25_scores_equal_hand_computed_values_before_and_after_compaction() {
    let env = env().await;
    let schema = json!({"text": {"type": "string", "full_text_search": {"stemming": false, "remove_stopwords": false}}});
    let docs = [
        (1, "the quick brown fox"),
        (2, "the lazy dog and the fox fox"),
        (3, "a quick dog"),
        (4, "nothing relevant here at all"),
    ];
    env.write(json!({"upsert_rows": docs[..2].iter().map(|(i, t)| json!({"id": i, "text": t})).collect::<Vec<_>>(), "schema": schema})).await;
    env.write(json!({"upsert_rows": docs[2..].iter().map(|(i, t)| json!({"id": i, "text": t})).collect::<Vec<_>>()})).await;
    // N = 4, avgdl = (4 + 7 + 3 + 5) / 4; "fox" in 2 docs, "quick" in 2.
    let avgdl = 19.0 / 4.0;
    let expect = [
        (2u64, bm25(2.0, 7.0, avgdl, 4.0, 2.0)),
        (1, bm25(1.0, 4.0, avgdl, 4.0, 2.0) + bm25(1.0, 4.0, avgdl, 4.0, 2.0)),
        (3, bm25(1.0, 3.0, avgdl, 4.0, 2.0)),
    ];
    let body = json!({"rank_by": ["text", "BM25", "quick fox"], "top_k": 10});
    let wal = env.rows(body.clone()).await;
    let mut got: Vec<(u64, f64)> =
        wal.iter().map(|r| (r["id"].as_u64().unwrap(), r["$dist"].as_f64().unwrap())).collect();
    got.sort_by_key(|g| g.0);
    let mut want = expect.to_vec();
    want.sort_by_key(|w| w.0);
    assert_eq!(got.len(), 3, "{wal:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-5, "id {}: {} vs {}", g.0, g.1, w.1);
    }
    // Mixed: half in a segment, half in the WAL; then all in segments. Bit-identical.
    env.compact().await;
    let seg = env.rows(body.clone()).await;
    assert_eq!(seg, wal, "indexed and unindexed rows score identically");
    env.write(json!({"upsert_rows": [{"id": 5, "text": "fox"}]})).await;
    let mixed = env.rows(body.clone()).await;
    env.compact().await;
    assert_eq!(env.rows(body.clone()).await, mixed);
    // Combinators and prefix.
    let sum = env
        .rows(json!({"rank_by": ["Sum", [["text", "BM25", "quick"], ["text", "BM25", "fox"]]], "top_k": 10}))
        .await;
    assert_eq!(sum, mixed, "Sum of one-term clauses equals the two-term query");
    let max = env
        .ids(json!({"rank_by": ["Max", [["text", "BM25", "quick"], ["text", "BM25", "fox"]]], "top_k": 10}))
        .await;
    assert_eq!(max.len(), 4);
    let prod = env.rows(json!({"rank_by": ["Product", 2.0, ["text", "BM25", "dog"]], "top_k": 10})).await;
    let plain = env.rows(json!({"rank_by": ["text", "BM25", "dog"], "top_k": 10})).await;
    for (p, q) in prod.iter().zip(&plain) {
        assert!((p["$dist"].as_f64().unwrap() - 2.0 * q["$dist"].as_f64().unwrap()).abs() < 1e-5);
    }
    let pre =
        env.ids(json!({"rank_by": ["text", "BM25", "qui", {"last_as_prefix": true}], "top_k": 10})).await;
    assert_eq!(pre, vec![3, 1]);
    // Ties order by id: identical documents.
    env.write(json!({"upsert_rows": [{"id": 20, "text": "zebra"}, {"id": 10, "text": "zebra"}]})).await;
    assert_eq!(env.ids(json!({"rank_by": ["text", "BM25", "zebra"], "top_k": 10})).await, vec![10, 20]);
}

/// BM25's collection statistics on an indexed segment with dead rows — deleted ones and ones
/// the overlay shadows (overwritten) — equal those of a namespace that holds only the final
/// documents, compacted: the dead rows are taken back out (exactly, scores bit-identical).
#[tokio::test]
async fn bm25_statistics_take_deleted_and_overwritten_rows_back_out() {
    let schema = json!({"text": {"type": "string", "full_text_search": true}});
    let words = ["fox", "dog", "quick", "lazy", "brown", "cat", "the", "jumps"];
    let text = |i: u64, salt: u64| {
        (0..(3 + (i * 7 + salt) % 9))
            .map(|k| words[((i * 13 + k * 5 + salt) % 8) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (dirty, clean) = (env().await, env().await);
    let all: Vec<Json> = (0..200u64).map(|i| json!({"id": i, "text": text(i, 0)})).collect();
    dirty.write(json!({"upsert_rows": all, "schema": schema})).await;
    dirty.compact().await;
    let deleted: Vec<u64> = (0..200).filter(|i| i % 7 == 3).collect();
    dirty.write(json!({"deletes": deleted})).await;
    let rewritten: Vec<Json> = (0..200u64)
        .filter(|i| i % 11 == 5 && i % 7 != 3)
        .map(|i| json!({"id": i, "text": text(i, 1)}))
        .collect();
    dirty.write(json!({"upsert_rows": rewritten})).await;
    let fin: Vec<Json> = (0..200u64)
        .filter(|i| i % 7 != 3)
        .map(|i| json!({"id": i, "text": text(i, u64::from(i % 11 == 5))}))
        .collect();
    clean.write(json!({"upsert_rows": fin, "schema": schema})).await;
    clean.compact().await;
    for q in ["fox", "quick dog", "cat jumps the", "lazy brown fox"] {
        let body = json!({"rank_by": ["text", "BM25", q], "top_k": 300});
        let (d, c) = (dirty.rows(body.clone()).await, clean.rows(body).await);
        assert!(!d.is_empty(), "{q}");
        assert_eq!(d, c, "query {q:?}: the dead rows are out of the statistics");
    }
}

#[tokio::test]
async fn every_filter_operator_agrees_on_segments_and_wal_rows() {
    let env = env().await;
    let rows: Vec<Json> = (1..=100u64)
        .map(|i| {
            let mut r = json!({
                "id": i, "vector": [i as f32, 1.0], "n": i % 7, "f": (i as f64) / 4.0,
                "name": format!("item-{:02}", i), "tags": [format!("t{}", i % 3), format!("u{}", i % 5)],
                "flag": i % 2 == 0, "body": format!("word{} shared text {}", i % 4, if i % 6 == 0 { "rare" } else { "" }),
            });
            if i % 9 == 0 {
                r.as_object_mut().unwrap().remove("n");
            }
            r
        })
        .collect();
    env.write(json!({"upsert_rows": rows, "schema": {"body": {"type": "string", "full_text_search": true, "filterable": true}}})).await;
    let filters = vec![
        json!(["n", "Eq", 3]),
        json!(["n", "NotEq", 3]),
        json!(["n", "Eq", null]),
        json!(["n", "In", [1, 2]]),
        json!(["n", "NotIn", [1, 2]]),
        json!(["f", "Lt", 3.5]),
        json!(["f", "Lte", 3.5]),
        json!(["f", "Gt", 7]),
        json!(["f", "Gte", 7]),
        json!(["tags", "AnyLt", "t1"]),
        json!(["tags", "AnyLte", "t1"]),
        json!(["tags", "AnyGt", "u3"]),
        json!(["tags", "AnyGte", "u3"]),
        json!(["tags", "Contains", "t2"]),
        json!(["tags", "NotContains", "t2"]),
        json!(["tags", "ContainsAny", ["t0", "u4"]]),
        json!(["tags", "NotContainsAny", ["t0", "u4"]]),
        json!(["name", "Glob", "item-1*"]),
        json!(["name", "NotGlob", "item-1*"]),
        json!(["name", "IGlob", "ITEM-2*"]),
        json!(["name", "NotIGlob", "ITEM-2*"]),
        json!(["name", "Regex", "item-[0-9]5"]),
        json!(["name", "Fuzzy", "item-1", {"max_edit_distance": 1}]),
        json!(["body", "ContainsAllTokens", "word1 shared"]),
        json!(["body", "ContainsAnyToken", "rare word2"]),
        json!(["body", "ContainsTokenSequence", "shared text rare"]),
        json!(["flag", "Eq", true]),
        json!(["id", "Gte", 30]),
        json!(["And", [["n", "Gt", 2], ["flag", "Eq", false]]]),
        json!(["Or", [["n", "Eq", 0], ["name", "Glob", "*9"]]]),
        json!(["Not", ["n", "Lt", 4]]),
    ];
    let run = |f: Json| {
        let env = &env;
        async move {
            let by_id = env.ids(json!({"rank_by": ["id", "asc"], "top_k": 100, "filters": f})).await;
            let knn =
                env.ids(json!({"rank_by": ["vector", "kNN", [3.0, 1.0]], "top_k": 100, "filters": f})).await;
            let bm = env
                .rows(json!({"rank_by": ["body", "BM25", "shared rare"], "top_k": 100, "filters": f}))
                .await;
            let agg =
                env.query(json!({"aggregate_by": {"c": ["Count"], "s": ["Sum", "n"]}, "filters": f})).await;
            (by_id, knn, bm, agg["aggregations"].clone())
        }
    };
    let mut wal = Vec::new();
    for f in &filters {
        wal.push(run(f.clone()).await);
    }
    assert!(wal.iter().any(|w| !w.0.is_empty() && w.0.len() < 100));
    env.compact().await;
    // The segment carries attribute indexes, and the planner uses them.
    let st = env.state().await;
    let seg = &st.segments()[0].seg;
    assert!(seg.sections(tidepool::format::segment::SECTION_ATTRIBUTE_INDEX).len() >= 3);
    let req =
        parse_request(&json!({"rank_by": ["vector", "ANN", [1.0, 1.0]], "filters": ["n", "Eq", 3]}), false)
            .unwrap();
    let plan = tidepool::query::explain(&req.queries[0], &st).unwrap();
    assert!(plan.contains("attribute index narrows the filter to"), "{plan}");
    let req =
        parse_request(&json!({"rank_by": ["id", "asc"], "filters": ["name", "Glob", "item-1*"]}), false)
            .unwrap();
    let plan = tidepool::query::explain(&req.queries[0], &st).unwrap();
    assert!(plan.contains("attribute indexes narrow the filter to 1"), "{plan}");
    for (f, w) in filters.iter().zip(&wal) {
        assert_eq!(&run(f.clone()).await, w, "filter {f}");
    }
    // Half the rows rewritten from the WAL, with the same values.
    let redo: Vec<Json> =
        (1..=100u64).step_by(2).filter(|i| i % 9 != 0).map(|i| json!({"id": i, "n": i % 7})).collect();
    env.write(json!({"patch_rows": redo})).await;
    for (f, w) in filters.iter().zip(&wal) {
        assert_eq!(&run(f.clone()).await, w, "filter {f} with patched WAL rows");
    }
}

#[tokio::test]
async fn aggregations_ordering_sparse_fusion_and_diversity() {
    let env = env().await;
    let rows: Vec<Json> = (1..=30u64)
        .map(|i| {
            json!({"id": i, "vector": [1.0, (i % 5) as f32], "cat": format!("c{}", i % 3), "price": i,
                   "sp": {"a": (i % 4) as f32, "b": 1.0}, "title": if i % 10 == 0 { "red apple" } else { "green pear" }})
        })
        .collect();
    env.write(
        json!({"upsert_rows": rows[..20], "schema": {"title": {"type": "string", "full_text_search": true}}}),
    )
    .await;
    env.compact().await;
    env.write(json!({"upsert_rows": rows[20..]})).await;
    // Aggregations over segments and WAL rows.
    let agg = env
        .query(json!({"aggregate_by": {"n": ["Count"], "s": ["Sum", "price"]}, "group_by": ["cat"]}))
        .await;
    assert_eq!(
        agg["aggregation_groups"],
        json!([{"cat": "c0", "n": 10, "s": 165}, {"cat": "c1", "n": 10, "s": 145}, {"cat": "c2", "n": 10, "s": 155}])
    );
    // Ties in vector distance order by id.
    let tie = env.ids(json!({"rank_by": ["vector", "kNN", [1.0, 2.0]], "top_k": 6})).await;
    assert_eq!(tie, vec![2, 7, 12, 17, 22, 27]);
    let page = env.ids(json!({"rank_by": ["vector", "kNN", [1.0, 2.0]], "top_k": 3, "offset": 2})).await;
    assert_eq!(page, vec![12, 17, 22]);
    // limit.per: at most one row per cat.
    let per = env
        .rows(json!({"rank_by": ["price", "desc"], "limit": {"total": 5, "per": {"attributes": ["cat"], "limit": 1}}, "include_attributes": ["cat"]}))
        .await;
    assert_eq!(per.iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![30, 29, 28]);
    let per = env
        .ids(json!({"rank_by": ["vector", "ANN", [1.0, 2.0]], "limit": {"total": 4, "per": {"attributes": ["cat"], "limit": 1}}}))
        .await;
    assert_eq!(per, vec![2, 7, 12]);
    // Sparse: dot product, best first, identical before and after compaction.
    let body = json!({"rank_by": ["sp", "SparseKNN", {"a": 2.0, "b": 0.5}], "top_k": 5});
    let before = env.rows(body.clone()).await;
    assert_eq!(before[0]["$dist"], json!(6.5));
    assert_eq!(before.iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 7, 11, 15, 19]);
    env.compact().await;
    assert_eq!(env.rows(body).await, before);
    // RRF fusion of a vector and a text query.
    let fused = env
        .query(json!({"queries": [
            {"rank_by": ["vector", "kNN", [1.0, 0.0]], "top_k": 3},
            {"rank_by": ["title", "BM25", "apple"], "top_k": 3}
        ], "rerank_by": ["RRF", {"rank_constant": 60, "weights": [1.0, 2.0]}], "limit": 4}))
        .await;
    let rows = fused[0]["rows"].as_array().unwrap();
    // Vector ranks 5,10,15; text ranks 10,20,30 (weight 2). id 10: 1/62 + 2/61.
    let ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![10, 20, 30, 5]);
    let d = rows[0]["$dist"].as_f64().unwrap();
    assert!((d - (1.0 / 62.0 + 2.0 / 61.0)).abs() < 1e-12);
    // explain names the plan.
    let st = env.state().await;
    let req = parse_request(
        &json!({"rank_by": ["vector", "ANN", [1.0, 0.0]], "filters": ["cat", "Eq", "c1"]}),
        false,
    )
    .unwrap();
    let plan = tidepool::query::explain(&req.queries[0], &st).unwrap();
    assert!(plan.contains("segment") && plan.contains("exact search"), "{plan}");
}

/// End-to-end figures on the Debian corpus through the engine and the query
/// evaluator (compacted namespace, in-process, one thread). Ignored by
/// default; run with
/// `cargo test --release --test suite query_engine::debian -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: needs /work/shared/data/debian and a release build"]
async fn debian_corpus_end_to_end_figures() {
    let dir = std::env::var("TIDEPOOL_DATA").unwrap_or_else(|_| "/work/shared/data/debian".into());
    let Ok(docs_text) = std::fs::read_to_string(format!("{dir}/docs.jsonl")) else { return };
    let f32s = |p: String| -> Vec<f32> {
        let b = std::fs::read(p).unwrap();
        b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let vectors = f32s(format!("{dir}/vectors.f32"));
    let qvecs = f32s(format!("{dir}/queries/query_vectors.f32"));
    let lines = |p: String| -> Vec<Json> {
        std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let queries = lines(format!("{dir}/queries/queries.jsonl"));
    let gt = lines(format!("{dir}/queries/gt_ids.jsonl"));
    let tantivy = lines(format!("{dir}/queries/tantivy_top10.jsonl"));
    let env = env().await;
    let fts = json!({"type": "string", "full_text_search": {"stemming": true, "remove_stopwords": false}});
    let schema = json!({"title": fts, "body": fts, "section": {"type": "string", "filterable": true}});
    let docs: Vec<Json> = docs_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let t0 = std::time::Instant::now();
    for (ci, chunk) in docs.chunks(2000).enumerate() {
        let rows: Vec<Json> = chunk
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let r = ci * 2000 + i;
                let mut d = d.clone();
                d["name"] = d["id"].clone(); // package names exceed the 64-byte id limit
                d["id"] = json!(r);
                d["vector"] = json!(vectors[r * 384..(r + 1) * 384]);
                d
            })
            .collect();
        env.write(json!({"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema})).await;
    }
    let load_s = t0.elapsed().as_secs_f64();
    let t0 = std::time::Instant::now();
    env.compact().await;
    let compact_s = t0.elapsed().as_secs_f64();
    let st = env.state().await;
    let run = |body: &Json| {
        let req = parse_request(body, false).unwrap();
        let t = std::time::Instant::now();
        let r = execute_request(&req, &st).unwrap();
        (t.elapsed().as_secs_f64() * 1e3, r[0].to_json()["rows"].as_array().cloned().unwrap_or_default())
    };
    let pct = |mut v: Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p) as usize]
    };
    // ANN recall@10 with the tie rule, latency.
    let (mut lat, mut rec) = (Vec::new(), 0.0);
    for (qi, g) in gt.iter().enumerate() {
        let q = &qvecs[qi * 384..(qi + 1) * 384];
        let (ms, rows) = run(&json!({"rank_by": ["vector", "ANN", q], "top_k": 10}));
        lat.push(ms);
        let kth = g["distances"][9].as_f64().unwrap() + 1e-5;
        rec += rows.iter().filter(|r| r["$dist"].as_f64().unwrap() <= kth).count() as f64 / 10.0;
    }
    let n = gt.len() as f64;
    let ann = json!({"recall_at_10": rec / n, "p50_ms": pct(lat.clone(), 0.5), "p99_ms": pct(lat, 0.99)});
    // Filtered ANN (~1%: one section value) against filtered exact.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for d in &docs {
        *counts.entry(d["section"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let (sec, cnt) = counts.iter().min_by_key(|(_, c)| (**c as i64 - 360).abs()).unwrap();
    let (mut flat, mut frec) = (Vec::new(), 0.0);
    for qi in 0..100 {
        let q = &qvecs[qi * 384..(qi + 1) * 384];
        let f = json!(["section", "Eq", sec]);
        let (ms, rows) = run(&json!({"rank_by": ["vector", "ANN", q], "top_k": 10, "filters": f}));
        flat.push(ms);
        let (_, exact) = run(&json!({"rank_by": ["vector", "kNN", q], "top_k": 10, "filters": f}));
        let kth = exact.last().map_or(f64::INFINITY, |r| r["$dist"].as_f64().unwrap() + 1e-5);
        let hits = rows.iter().filter(|r| r["$dist"].as_f64().unwrap() <= kth).count() as f64;
        frec += hits / exact.len().max(1) as f64;
    }
    let filtered =
        json!({"section": sec, "rows": cnt, "recall_at_10": frec / 100.0, "p50_ms": pct(flat, 0.5)});
    // BM25 over title + body: overlap with tantivy, known-item MRR, latency.
    let (mut blat, mut overlap, mut mrr) = (Vec::new(), 0.0, 0.0);
    for (q, t) in queries.iter().zip(&tantivy) {
        let text = q["text"].as_str().unwrap();
        let body = json!({"rank_by": ["Sum", [["title", "BM25", text], ["body", "BM25", text]]], "top_k": 10, "include_attributes": ["name"]});
        let (ms, rows) = run(&body);
        blat.push(ms);
        let ids: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
        let want: Vec<&str> = t["ids"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        overlap += ids.iter().filter(|i| want.contains(i)).count() as f64 / want.len().max(1) as f64;
        if let Some(p) = ids.iter().position(|i| *i == q["target_id"].as_str().unwrap()) {
            mrr += 1.0 / (p + 1) as f64;
        }
    }
    let nq = queries.len() as f64;
    let bm25 = json!({"top10_overlap_tantivy": overlap / nq, "mrr_at_10": mrr / nq, "p50_ms": pct(blat.clone(), 0.5), "p99_ms": pct(blat, 0.99)});
    println!(
        "{}",
        json!({"docs": docs.len(), "load_s": load_s, "compact_s": compact_s, "ann": ann, "filtered_ann": filtered, "bm25": bm25})
    );
}
