//! The overlay's inverted index answers BM25 exactly as the scan of the
//! overlay it replaced: for random writes (upserts, patches of the text
//! fields, deletes, full-text options changed and attributes made full-text
//! midway) and random BM25 expressions (sums, maxima, products, prefixes,
//! filters, a numeric rank term), the rows, their order, their scores (to the
//! bit) and the searched-row count equal those of the same state with its
//! index dropped (`NsState::without_text_index`, the old exhaustive path) —
//! also for an earlier snapshot read after later writes changed the index it
//! shares.

use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tidepool::engine::apply::apply_request;
use tidepool::engine::WriteRequest;
use tidepool::query::execute;
use tidepool::state::NsState;
use tidepool::wire::query::parse_request;

const WORDS: &[&str] = &[
    "run", "running", "runner", "runs", "dog", "dogs", "do", "the", "a", "cat", "catalog", "fox", "quick",
    "brown", "jumps", "über", "naïve", "x",
];

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        id: u64,
        t: Option<String>,
        b: Option<String>,
        n: i64,
    },
    PatchT {
        id: u64,
        t: Option<String>,
    },
    Delete {
        id: u64,
    },
    /// New full-text options for `t` (stemming, stop words, prefixes).
    Options {
        stemming: bool,
        stopwords: bool,
        prefixes: bool,
    },
    /// `b` becomes full-text.
    IndexB,
}

fn text(max_words: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(WORDS), 0..=max_words).prop_map(|w| w.join(" "))
}

fn op(ids: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ids, proptest::option::weighted(0.9, text(12)), proptest::option::of(text(4)), 0i64..10)
            .prop_map(|(id, t, b, n)| Op::Upsert { id, t, b, n }),
        3 => (0..ids, proptest::option::weighted(0.8, text(12))).prop_map(|(id, t)| Op::PatchT { id, t }),
        3 => (0..ids).prop_map(|id| Op::Delete { id }),
        1 => (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(stemming, stopwords, prefixes)| Op::Options { stemming, stopwords, prefixes }),
        1 => Just(Op::IndexB),
    ]
}

fn body(op: &Op) -> Json {
    match op {
        Op::Upsert { id, t, b, n } => {
            let mut row = json!({"id": id, "n": n});
            if let Some(t) = t {
                row["t"] = json!(t);
            }
            if let Some(b) = b {
                row["b"] = json!(b);
            }
            json!({"upsert_rows": [row]})
        }
        Op::PatchT { id, t } => json!({"patch_rows": [{"id": id, "t": t}]}),
        Op::Delete { id } => json!({"deletes": [id]}),
        Op::Options { stemming, stopwords, prefixes } => json!({"schema": {"t": {"type": "string",
            "full_text_search": {"stemming": stemming, "remove_stopwords": stopwords, "index_prefixes": prefixes}}}}),
        Op::IndexB => json!({"schema": {"b": {"type": "string", "full_text_search": true}}}),
    }
}

fn apply(s: &mut NsState, body: &Json) {
    let req = WriteRequest::from_json(body).unwrap();
    // A patch of a missing row or a failed condition is no error; anything else would be the test's.
    apply_request(s, &req.record, None).unwrap();
}

fn bm25(attr: &str, q: &str, prefix: bool) -> Json {
    if prefix {
        json!([attr, "BM25", q, {"last_as_prefix": true}])
    } else {
        json!([attr, "BM25", q])
    }
}

fn query() -> impl Strategy<Value = Json> {
    let rank = (0..7usize, text(4), text(3), any::<bool>()).prop_map(|(shape, q1, q2, prefix)| match shape {
        0 => bm25("t", &q1, prefix),
        1 => json!(["Sum", [bm25("t", &q1, prefix), bm25("b", &q2, false)]]),
        2 => json!(["Max", [bm25("t", &q1, false), bm25("t", &q2, prefix)]]),
        3 => json!(["Product", 2.5, bm25("t", &q1, prefix)]),
        4 => json!(["Sum", [bm25("t", &q1, false), ["Saturate", ["Attribute", "n"], {"midpoint": 3.0}]]]),
        5 => json!(["Sum", [bm25("t", &q1, false), ["Product", 0.5, bm25("t", &q2, false)]]]),
        _ => bm25("b", &q2, prefix),
    });
    (rank, 1usize..40, proptest::option::of(0i64..10)).prop_map(|(rank, top_k, min_n)| {
        let mut q = json!({"rank_by": rank, "top_k": top_k});
        if let Some(n) = min_n {
            q["filters"] = json!(["n", "Gte", n]);
        }
        q
    })
}

/// (rows, searched rows) or the error's text.
fn answer(s: &NsState, body: &Json) -> Result<(Vec<tidepool::query::Row>, u64), String> {
    let r = parse_request(body, false).map_err(|e| e.to_string())?;
    let out = execute(&r.queries[0], s).map_err(|e| e.to_string())?;
    Ok((out.rows.unwrap_or_default(), out.scanned))
}

fn assert_same(s: &NsState, queries: &[Json]) {
    let scan = s.clone().without_text_index();
    for q in queries {
        let (indexed, scanned) = (answer(s, q), answer(&scan, q));
        assert_eq!(indexed, scanned, "query {q}");
    }
}

fn schema() -> Json {
    json!({"schema": {"t": {"type": "string", "full_text_search": true}, "b": {"type": "string"},
        "n": {"type": "int"}}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn indexed_overlay_equals_the_scan(
        load in proptest::collection::vec(op(300), 0..300),
        ops in proptest::collection::vec(op(300), 0..120),
        queries in proptest::collection::vec(query(), 6),
    ) {
        let mut s = NsState::default();
        apply(&mut s, &schema());
        for o in &load {
            apply(&mut s, &body(o));
        }
        prop_assert!(s.overlay_text("t").is_some(), "the index serves t");
        assert_same(&s, &queries);
        let earlier = s.clone();
        for o in &ops {
            apply(&mut s, &body(o));
        }
        assert_same(&s, &queries);
        // Later writes changed the index the earlier snapshot shares, never its view.
        assert_same(&earlier, &queries);
    }
}

/// Rows written in one request each and many in one request index alike, a
/// deleted or rewritten row leaves no trace in the scores, and a change of
/// options is served (re-indexed) before any further put.
#[test]
fn batches_rewrites_and_option_changes_score_like_the_scan() {
    let mut s = NsState::default();
    apply(&mut s, &schema());
    // Past four 512-row tails, so chunks are sealed, merged and (half dead) rewritten.
    let rows: Vec<Json> =
        (0..3000).map(|i| json!({"id": i, "t": WORDS[i % WORDS.len()..].join(" "), "n": i % 10})).collect();
    apply(&mut s, &json!({"upsert_rows": rows[..2500]}));
    for r in &rows[2500..] {
        apply(&mut s, &json!({"upsert_rows": [r]}));
    }
    for i in (0..3000).step_by(3) {
        apply(&mut s, &json!({"patch_rows": [{"id": i, "t": "dog"}]}));
    }
    apply(&mut s, &json!({"deletes": (0..3000).step_by(7).collect::<Vec<_>>()}));
    apply(&mut s, &json!({"deletes": (0..1500).collect::<Vec<_>>()}));
    let queries = [
        json!({"rank_by": ["t", "BM25", "dog running fox"], "top_k": 50}),
        json!({"rank_by": ["t", "BM25", "the ca", {"last_as_prefix": true}], "top_k": 50}),
        json!({"rank_by": ["t", "BM25", "über x"], "top_k": 50, "filters": ["n", "Lt", 4]}),
    ];
    assert_same(&s, &queries);
    let top = answer(&s, &queries[0]).unwrap().0;
    assert_eq!(top.len(), 50);
    apply(&mut s, &body(&Op::Options { stemming: true, stopwords: false, prefixes: true }));
    assert!(s.overlay_text("t").is_some(), "re-indexed under the new options with no put");
    assert_same(&s, &queries);
    assert_ne!(answer(&s, &queries[0]).unwrap().0, top, "stemming changed the scores");
}
