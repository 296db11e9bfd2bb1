//! `compute_attributes` and the rank combinators over real loopback HTTP
//! against the `tidepool` binary.
//!
//! Invariants guarded: `VectorDist` (on `vector` or a named vector attribute)
//! is the `$dist` a `kNN` ranking by that attribute gives (and
//! the metric's formula), `null` for a row without a vector; a rank
//! expression's computed value is bit for bit the score ranking by it gives,
//! for compacted and unindexed rows alike; `Saturate`, `Decay`, `Dist`,
//! `Attribute` and filter terms score by the documented formulas; `Highlight`
//! fragments hold the query's terms (stemmed forms included) and their
//! offsets slice the text in each unit; bad expressions are 400s naming
//! `compute_attributes.<name>`.

use crate::common;

use common::{client, post, Daemon};
use serde_json::{json, Value as Json};

async fn write(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) {
    let (s, b) = post(c, &d.at(&format!("/v2/namespaces/{ns}")), &body).await;
    assert_eq!(s, 200, "{b}");
}

async fn compact(c: &reqwest::Client, d: &Daemon, ns: &str) {
    let (s, b) = post(c, &d.at(&format!("/v1/namespaces/{ns}/_admin/compact")), &json!({})).await;
    assert_eq!(s, 200, "{b}");
}

async fn query(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json) -> Json {
    let (s, b) = post(c, &d.at(&format!("/v2/namespaces/{ns}/query")), &body).await;
    assert_eq!(s, 200, "{body} -> {b}");
    b
}

async fn refused(c: &reqwest::Client, d: &Daemon, ns: &str, body: Json, needle: &str) {
    let (s, b) = post(c, &d.at(&format!("/v2/namespaces/{ns}/query")), &body).await;
    let msg = b["error"].as_str().unwrap_or_default();
    assert_eq!(s, 400, "{body} -> {b}");
    assert!(msg.contains(needle), "{body}: {msg:?} lacks {needle:?}");
}

fn rows(b: &Json) -> &Vec<Json> {
    b["rows"].as_array().unwrap_or_else(|| panic!("no rows in {b}"))
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

fn euclidean_squared(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn vector_of(i: u64) -> Vec<f64> {
    vec![(i as f64 * 0.37).sin(), (i as f64 * 0.11).cos(), 0.5 + i as f64 / 40.0]
}

/// Row `i`'s vector of `dim` values (`dim` = 3 is [`vector_of`]); 37 runs every SIMD kernel's
/// blocks and tail, where a fused scan and a single distance could round apart.
fn vector_n(i: u64, dim: usize) -> Vec<f64> {
    if dim == 3 {
        return vector_of(i);
    }
    (0..dim).map(|j| ((i as f64 + 1.0) * (j as f64 + 0.5) * 0.37).sin()).collect()
}

#[tokio::test]
async fn vector_dist_is_the_knn_distance_under_the_namespace_metric() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let spaces = [("cos", "cosine_distance", 3), ("l2", "euclidean_squared", 3)];
    let wide = [("cos37", "cosine_distance", 37), ("l237", "euclidean_squared", 37)];
    for (ns, metric, dim) in spaces.into_iter().chain(wide) {
        let docs: Vec<Json> = (0..30u64).map(|i| json!({"id": i, "vector": vector_n(i, dim)})).collect();
        write(&c, &d, ns, json!({"upsert_rows": docs[..20], "distance_metric": metric})).await;
        compact(&c, &d, ns).await;
        write(&c, &d, ns, json!({"upsert_rows": docs[20..]})).await; // unindexed rows too
        let (q, other) = if dim == 3 {
            (vec![0.3, -0.2, 0.9], vec![1.0, 0.5, -0.25])
        } else {
            (vector_n(100, dim), vector_n(101, dim))
        };
        let b = query(
            &c,
            &d,
            ns,
            json!({"rank_by": ["vector", "kNN", q], "top_k": 30, "include_attributes": ["vector"],
                   "compute_attributes": {"same": ["vector", "VectorDist", q], "other": ["vector", "VectorDist", other]}}),
        )
        .await;
        assert_eq!(rows(&b).len(), 30);
        for r in rows(&b) {
            assert_eq!(r["same"], r["$dist"], "VectorDist to the kNN vector is its $dist: {r}");
            let v: Vec<f64> = r["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let want =
                if metric == "cosine_distance" { cosine(&v, &other) } else { euclidean_squared(&v, &other) };
            let got = r["other"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-5, "{metric}: {got} vs {want}");
        }
        // Ordered by id instead (documents read by the scan, not the ranking), the same values.
        let by_id = query(
            &c,
            &d,
            ns,
            json!({"rank_by": ["id", "asc"], "top_k": 30, "compute_attributes": {"same": ["vector", "VectorDist", q]}}),
        )
        .await;
        for r in rows(&by_id) {
            let ranked = rows(&b).iter().find(|x| x["id"] == r["id"]).unwrap();
            assert_eq!(r["same"], ranked["same"], "{r}");
            assert!(r.get("vector").is_none(), "the projection still applies: {r}");
        }
        // The computed value is placed after the stored attributes, before $dist.
        let keys: Vec<&String> = rows(&b)[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "vector", "same", "other", "$dist"]);
        refused(
            &c,
            &d,
            ns,
            json!({"rank_by": ["id", "asc"], "compute_attributes": {"d": ["vector", "VectorDist", [1.0, 2.0]]}}),
            "compute_attributes.d: VectorDist: the vector has 2 dimensions",
        )
        .await;
        refused(
            &c,
            &d,
            ns,
            json!({"rank_by": ["id", "asc"], "compute_attributes": {"d": ["title", "VectorDist", q]}}),
            "compute_attributes.d: \"title\" is not a vector attribute",
        )
        .await;
    }
    // A namespace without vectors: every row's VectorDist is null.
    write(&c, &d, "plain", json!({"upsert_rows": [{"id": 1, "n": 2}]})).await;
    let b =
        query(&c, &d, "plain", json!({"compute_attributes": {"d": ["vector", "VectorDist", [1.0, 0.0]]}}))
            .await;
    assert_eq!(rows(&b)[0], json!({"id": 1, "d": null}));
    // Vectors arrive later: the row written before them still has none.
    write(
        &c,
        &d,
        "plain",
        json!({"upsert_rows": [{"id": 2, "vector": [3.0, 4.0]}], "distance_metric": "euclidean_squared"}),
    )
    .await;
    let b =
        query(&c, &d, "plain", json!({"compute_attributes": {"d": ["vector", "VectorDist", [0.0, 0.0]]}}))
            .await;
    assert_eq!(rows(&b)[0], json!({"id": 1, "d": null}));
    assert_eq!(rows(&b)[1], json!({"id": 2, "d": 25.0}));
    assert_eq!(d.stop().code(), Some(0));
}

const TEXTS: [&str; 6] = [
    "The quick brown fox jumps over the lazy dog.",
    "Foxes jumped over fences. Dogs watched the foxes.",
    "A lazy afternoon; nobody jumped at all.",
    "Fox news: the fox is jumping again and again.",
    "Nothing to see here.",
    "Jumping foxes, jumping dogs, jumping everyone.",
];

async fn text_namespace(c: &reqwest::Client, d: &Daemon, ns: &str) {
    let schema = json!({"text": {"type": "string", "full_text_search": {"stemming": true}}, "cat": {"type": "string"}});
    let docs: Vec<Json> = TEXTS
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "text": t, "cat": if i % 2 == 0 { "a" } else { "b" }, "clicks": i * 4}))
        .collect();
    write(c, d, ns, json!({"upsert_rows": docs[..4], "schema": schema})).await;
    compact(c, d, ns).await;
    write(c, d, ns, json!({"upsert_rows": docs[4..]})).await;
}

#[tokio::test]
async fn rank_expressions_as_values_are_the_ranking_scores() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    text_namespace(&c, &d, "t").await;
    let exprs = [
        json!(["text", "BM25", "fox jumping"]),
        json!(["Sum", [["Product", 2.0, ["text", "BM25", "fox"]], ["text", "BM25", "dog"]]]),
        json!(["Max", [["text", "BM25", "lazy"], ["text", "BM25", "fences"]]]),
        json!(["Sum", [["text", "BM25", "fox"], ["Saturate", ["Attribute", "clicks"], {"midpoint": 8}]]]),
    ];
    for e in exprs {
        let b = query(&c, &d, "t", json!({"rank_by": e, "top_k": 10, "compute_attributes": {"s": e}})).await;
        assert!(!rows(&b).is_empty(), "{e}");
        for r in rows(&b) {
            assert_eq!(r["s"], r["$dist"], "{e}: {r}");
        }
        // Ordered by id instead, the computed score is the same per row.
        let ranked: Vec<(Json, Json)> =
            rows(&b).iter().map(|r| (r["id"].clone(), r["$dist"].clone())).collect();
        let by_id =
            query(&c, &d, "t", json!({"rank_by": ["id", "asc"], "compute_attributes": {"s": e}})).await;
        for (id, dist) in ranked {
            let row = rows(&by_id).iter().find(|r| r["id"] == id).unwrap();
            assert_eq!(row["s"], dist, "{e} on {id}");
        }
        // A row no clause matches scores 0 as a value.
        let none = rows(&by_id).iter().find(|r| r["id"] == 4).unwrap();
        assert!(none["s"].as_f64().unwrap() < 1.0, "{none}");
    }
    assert_eq!(d.stop().code(), Some(0));
}

fn close(a: &Json, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() <= 1e-6 * b.abs().max(1.0))
}

/// A combinator's expected score from the row's `clicks`.
type Formula = fn(f64) -> f64;

#[tokio::test]
async fn combinators_score_by_their_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    text_namespace(&c, &d, "t").await;
    let clicks = |r: &Json| r["id"].as_f64().unwrap() * 4.0;
    let cases: [(Json, Formula); 4] = [
        (json!(["Saturate", ["Attribute", "clicks"], {"midpoint": 10, "exponent": 2}]), |x| {
            x * x / (x * x + 100.0)
        }),
        (json!(["Decay", ["Attribute", "clicks"], {"midpoint": 10, "exponent": 2}]), |x| {
            100.0 / (x * x + 100.0)
        }),
        (json!(["Decay", ["Dist", ["Attribute", "clicks"], 12], {"midpoint": 4}]), |x| {
            4.0 / ((x - 12.0).abs() + 4.0)
        }),
        (json!(["Attribute", "clicks"]), |x| x),
    ];
    for (e, f) in cases {
        let b = query(&c, &d, "t", json!({"rank_by": e, "top_k": 10})).await;
        assert_eq!(rows(&b).len(), 6, "no BM25 clause: every row ranks ({e})");
        let mut last = f64::INFINITY;
        for r in rows(&b) {
            assert!(close(&r["$dist"], f(clicks(r))), "{e}: {r} vs {}", f(clicks(r)));
            let s = r["$dist"].as_f64().unwrap();
            assert!(s <= last, "descending: {e}");
            last = s;
        }
    }
    // A filter as a rank term adds its weight to the rows it matches; rows
    // without a BM25 match do not rank.
    let bm25 = json!(["text", "BM25", "fox"]);
    let plain =
        query(&c, &d, "t", json!({"rank_by": bm25, "top_k": 10, "include_attributes": ["cat"]})).await;
    let boosted = json!(["Sum", [bm25, ["Product", 2.5, ["cat", "Eq", "b"]]]]);
    let b = query(&c, &d, "t", json!({"rank_by": boosted, "top_k": 10})).await;
    assert_eq!(rows(&b).len(), rows(&plain).len());
    for r in rows(&plain) {
        let boost = if r["cat"] == "b" { 2.5 } else { 0.0 };
        let got = rows(&b).iter().find(|x| x["id"] == r["id"]).unwrap();
        assert!(close(&got["$dist"], r["$dist"].as_f64().unwrap() + boost), "{r} vs {got}");
    }
    for (bad, needle) in [
        (json!(["Saturate", ["Attribute", "clicks"], {}]), "Saturate needs a midpoint"),
        (
            json!(["Decay", ["Attribute", "clicks"], {"midpoint": -1}]),
            "Decay.midpoint must be a positive number",
        ),
        (json!(["Dist", ["Attribute", "clicks"], "x"]), "Dist's value must be a number"),
        (json!(["Attribute", "text"]), "\"text\" is not a numeric attribute"),
        (json!(["Sum", [["cat", "Bogus", 1]]]), "unknown rank expression"),
    ] {
        refused(&c, &d, "t", json!({"rank_by": bad}), needle).await;
    }
    assert_eq!(d.stop().code(), Some(0));
}

/// The substring of `text` between offsets counted in `unit`.
fn slice(text: &str, unit: &str, s: usize, e: usize) -> String {
    match unit {
        "utf-8" => text[s..e].to_owned(),
        "codepoints" => text.chars().skip(s).take(e - s).collect(),
        _ => String::from_utf16(&text.encode_utf16().collect::<Vec<_>>()[s..e]).unwrap(),
    }
}

#[tokio::test]
async fn highlight_fragments_hold_the_terms_and_offsets_in_each_unit() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    text_namespace(&c, &d, "t").await;
    let long = "Ünïcödé 😀 prelude without matches. The naïve Foxes were JUMPING — 🦊 fox!\n\n\
                Second paragraph: nothing here.\nStill the second; a fox jumps here.";
    write(&c, &d, "t", json!({"upsert_rows": [{"id": 10, "text": long}]})).await;
    let hl = |cfg: Json| {
        json!({"rank_by": ["text", "BM25", "jumping fox"], "top_k": 10,
                               "compute_attributes": {"h": ["Highlight", "text", cfg]}})
    };
    for unit in ["utf-8", "utf-16", "codepoints"] {
        let b = query(&c, &d, "t", hl(json!({"include_offsets": unit, "fragment_limit": 5}))).await;
        let row = rows(&b).iter().find(|r| r["id"] == 10).unwrap();
        let frags = row["h"].as_array().unwrap();
        let texts: Vec<&str> = frags.iter().map(|f| f["text"].as_str().unwrap()).collect();
        // Sentences with a match only; the prelude has none.
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts.contains(&"The naïve Foxes were JUMPING — 🦊 fox!"), "{texts:?}");
        assert!(texts.contains(&"Still the second; a fox jumps here."), "{texts:?}");
        for f in frags {
            let words: Vec<&str> =
                f["highlights"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
            assert!(!words.is_empty());
            for w in &words {
                assert!(["Foxes", "JUMPING", "fox", "jumps"].contains(w), "stemmed/cased matches only: {w}");
            }
            let (s, e) = (f["start"].as_u64().unwrap() as usize, f["end"].as_u64().unwrap() as usize);
            assert_eq!(slice(long, unit, s, e), f["text"].as_str().unwrap(), "{unit}");
            for (w, span) in words.iter().zip(f["highlight_offsets"].as_array().unwrap()) {
                let (s, e) = (span[0].as_u64().unwrap() as usize, span[1].as_u64().unwrap() as usize);
                assert_eq!(slice(long, unit, s, e), *w, "{unit}");
            }
        }
    }
    // Defaults: sentences, at most 3, no offsets; rows come back as ranked.
    let b = query(&c, &d, "t", hl(Json::Null)).await;
    for r in rows(&b) {
        let frags = r["h"].as_array().unwrap();
        assert!((1..=3).contains(&frags.len()), "{r}");
        assert!(frags.iter().all(|f| f.get("start").is_none()));
    }
    let b = query(&c, &d, "t", hl(json!({"fragment_by": "word", "fragment_limit": 10}))).await;
    let row = rows(&b).iter().find(|r| r["id"] == 10).unwrap();
    let words: Vec<&str> = row["h"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
    let mut sorted = words.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["Foxes", "JUMPING", "fox", "fox", "jumps"]);
    let b = query(&c, &d, "t", hl(json!({"fragment_by": "paragraph", "fragment_limit": 10}))).await;
    let row = rows(&b).iter().find(|r| r["id"] == 10).unwrap();
    assert_eq!(row["h"].as_array().unwrap().len(), 2, "{row}");
    let b = query(&c, &d, "t", hl(json!({"fragment_by": "none"}))).await;
    let row = rows(&b).iter().find(|r| r["id"] == 10).unwrap();
    assert_eq!(row["h"][0]["text"], long.trim());
    // rank_fragments_by supplies the terms when rank_by is not a text ranking.
    let b = query(
        &c,
        &d,
        "t",
        json!({"rank_by": ["id", "asc"], "filters": ["id", "Eq", 2],
               "compute_attributes": {"h": ["Highlight", "text", {"rank_fragments_by": ["text", "BM25", "laziness"]}]}}),
    )
    .await;
    assert_eq!(
        rows(&b)[0]["h"],
        json!([{"text": "A lazy afternoon; nobody jumped at all.", "highlights": ["lazy"]}])
    );
    // A []string attribute: each element is a text; fragments name their element.
    let schema = json!({"paras": {"type": "[]string", "full_text_search": true}});
    let doc = json!({"id": 1, "paras": ["no match", "a fox here"]});
    write(&c, &d, "arr", json!({"upsert_rows": [doc], "schema": schema})).await;
    let b = query(
        &c,
        &d,
        "arr",
        json!({"rank_by": ["paras", "BM25", "fox"],
               "compute_attributes": {"h": ["Highlight", "paras", {"include_offsets": "codepoints"}]}}),
    )
    .await;
    let want = json!([{"text": "a fox here", "highlights": ["fox"], "element": 1, "start": 0, "end": 10,
                       "highlight_offsets": [[2, 5]]}]);
    assert_eq!(rows(&b)[0]["h"], want);
    assert_eq!(d.stop().code(), Some(0));
}

#[tokio::test]
async fn bad_compute_attributes_are_400s_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    text_namespace(&c, &d, "t").await;
    let with = |compute: Json| json!({"rank_by": ["text", "BM25", "fox"], "compute_attributes": compute});
    let many: serde_json::Map<String, Json> =
        (0..9).map(|i| (format!("a{i}"), json!(["Attribute", "clicks"]))).collect();
    for (compute, needle) in [
        (
            json!({"h": ["Highlight", "cat"]}),
            "compute_attributes.h: Highlight: attribute \"cat\" has no full_text_search",
        ),
        (
            json!({"h": ["Highlight", "text", {"fragment_by": "page"}]}),
            "compute_attributes.h: fragment_by must be",
        ),
        (json!({"h": ["Highlight", "text", {"fragment_limit": 0}]}), "compute_attributes.h: fragment_limit"),
        (
            json!({"h": ["Highlight", "text", {"include_offsets": "bytes"}]}),
            "compute_attributes.h: include_offsets",
        ),
        (
            json!({"h": ["Highlight", "text", {"colour": 1}]}),
            "compute_attributes.h: Highlight has an unknown key",
        ),
        (json!({"x": ["Nope", 1]}), "compute_attributes.x:"),
        (json!({"x": 3}), "compute_attributes.x: an expression must be an array"),
        (json!({"id": ["Attribute", "clicks"]}), "compute_attributes.id: \"id\" is reserved"),
        (json!({"$dist": ["Attribute", "clicks"]}), "compute_attributes.$dist"),
        (
            json!({"cat": ["Attribute", "clicks"]}),
            "compute_attributes.cat: the name \"cat\" is a stored attribute",
        ),
        // An attribute the schema only inferred from the rows collides too.
        (
            json!({"clicks": ["Attribute", "clicks"]}),
            "compute_attributes.clicks: the name \"clicks\" is a stored",
        ),
        (json!({"x": {"$ref_new": "clicks"}}), "compute_attributes.x: $ref_new"),
        (Json::Object(many), "MAX_COMPUTED_ATTRIBUTES"),
        (json!([1]), "compute_attributes must be an object"),
    ] {
        refused(&c, &d, "t", with(compute), needle).await;
    }
    refused(
        &c,
        &d,
        "t",
        json!({"rank_by": ["id", "asc"], "compute_attributes": {"h": ["Highlight", "text"]}}),
        "compute_attributes.h: Highlight on \"text\" needs query terms",
    )
    .await;
    assert_eq!(d.stop().code(), Some(0));
}

#[tokio::test]
async fn subqueries_compute_their_own_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    text_namespace(&c, &d, "t").await;
    let body = json!({"queries": [
        {"rank_by": ["text", "BM25", "fox"], "compute_attributes": {"s": ["text", "BM25", "fox"]}},
        {"rank_by": ["clicks", "desc"], "top_k": 2, "compute_attributes": {"c": ["Attribute", "clicks"]}},
    ]});
    let (s, b) = post(&c, &d.at("/v2/namespaces/t/query?stainless_overload=multiQuery"), &body).await;
    assert_eq!(s, 200, "{b}");
    for r in rows(&b["results"][0]) {
        assert_eq!(r["s"], r["$dist"]);
        assert!(r.get("c").is_none());
    }
    assert_eq!(
        rows(&b["results"][1]).iter().map(|r| r["c"].clone()).collect::<Vec<_>>(),
        [json!(20.0), json!(16.0)]
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// `VectorDist` on a named vector attribute is the `$dist` a `kNN` ranking by
/// that attribute gives (its own metric, not the namespace's), on compacted
/// and unindexed rows, also when the page is ordered by id and the attribute
/// is not returned.
#[tokio::test]
async fn vector_dist_on_a_named_vector_attribute_is_its_knn_distance() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let c = client();
    let schema = json!({"title_vec": {"type": "[3]f32", "ann": {"distance_metric": "euclidean_squared"}}});
    let docs: Vec<Json> =
        (0..30u64).map(|i| json!({"id": i, "vector": [1.0, i as f64], "title_vec": vector_of(i)})).collect();
    let first = json!({"upsert_rows": docs[..20], "distance_metric": "cosine_distance", "schema": schema});
    write(&c, &d, "nv", first).await;
    compact(&c, &d, "nv").await;
    write(&c, &d, "nv", json!({"upsert_rows": docs[20..]})).await;
    let q = [0.3, -0.2, 0.9];
    let compute = json!({"d": ["title_vec", "VectorDist", q]});
    let ranked = query(
        &c,
        &d,
        "nv",
        json!({"rank_by": ["title_vec", "kNN", q], "top_k": 30, "compute_attributes": compute}),
    )
    .await;
    assert_eq!(rows(&ranked).len(), 30);
    for r in rows(&ranked) {
        assert_eq!(r["d"], r["$dist"], "{r}");
        let want = euclidean_squared(&vector_of(r["id"].as_u64().unwrap()), &[0.3, -0.2, 0.9]);
        assert!((r["d"].as_f64().unwrap() - want).abs() < 1e-5, "{r} vs {want}");
        assert!(r.get("title_vec").is_none(), "the projection still applies: {r}");
    }
    let by_id =
        query(&c, &d, "nv", json!({"rank_by": ["id", "asc"], "top_k": 30, "compute_attributes": compute}))
            .await;
    for r in rows(&by_id) {
        let same = rows(&ranked).iter().find(|x| x["id"] == r["id"]).unwrap();
        assert_eq!(r["d"], same["d"], "{r}");
    }
    refused(
        &c,
        &d,
        "nv",
        json!({"rank_by": ["id", "asc"], "compute_attributes": {"d": ["title_vec", "VectorDist", [1.0]]}}),
        "compute_attributes.d",
    )
    .await;
}
