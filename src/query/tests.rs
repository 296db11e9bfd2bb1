//! Unit tests of query parsing and execution over small in-memory states.

use super::*;
use crate::engine::apply::apply_request;
use crate::engine::WriteRequest;
use crate::wire::query::{encode_vector, id_lower_bound, parse_request};
use serde_json::{json, Value as Json};

fn state(rows: Json) -> NsState {
    let mut s = NsState::default();
    let req = WriteRequest::from_json(&json!({ "upsert_rows": rows })).unwrap();
    apply_request(&mut s, &req.record, None).unwrap();
    s
}

fn run(s: &NsState, body: Json) -> Result<QueryResult, QueryError> {
    let r = parse_request(&body, false)?;
    execute(&r.queries[0], s)
}

/// The result as the wire renders it.
fn rendered(r: &QueryResult, key: &str) -> Option<Json> {
    r.to_json().get(key).cloned()
}

fn rows(r: &QueryResult) -> Vec<Json> {
    rendered(r, "rows").and_then(|v| v.as_array().cloned()).unwrap()
}

fn ids(r: &QueryResult) -> Vec<Json> {
    rows(r).iter().map(|row| row["id"].clone()).collect()
}

#[test]
fn orders_by_attribute_with_nulls_last_and_ties_by_id() {
    let s = state(json!([{"id": 1, "n": 2}, {"id": 2}, {"id": 3, "n": 1}, {"id": 4, "n": 2}, {"id": 5}]));
    let asc = run(&s, json!({"rank_by": ["n", "asc"]})).unwrap();
    assert_eq!(ids(&asc), vec![json!(3), json!(1), json!(4), json!(2), json!(5)]);
    let desc = run(&s, json!({"rank_by": ["n", "desc"], "top_k": 3})).unwrap();
    assert_eq!(ids(&desc), vec![json!(1), json!(4), json!(3)]);
    let paged = run(&s, json!({"rank_by": [["n", "asc"], ["id", "desc"]], "limit": 2, "offset": 1})).unwrap();
    assert_eq!(ids(&paged), vec![json!(4), json!(1)]);
}

#[test]
fn id_paging_and_projection() {
    let s = state(
        json!([{"id": 3, "vector": [1.0, 0.5], "a": "x"}, {"id": 1, "vector": [0.0, 1.0]}, {"id": 2, "vector": [2.0, 2.0]}]),
    );
    let r = run(&s, json!({"rank_by": ["id", "asc"], "limit": 2})).unwrap();
    assert_eq!(rows(&r)[0], json!({"id": 1}));
    let r = run(&s, json!({"rank_by": ["id", "desc"], "filters": ["id", "Gte", 2]})).unwrap();
    assert_eq!((ids(&r), r.scanned), (vec![json!(3), json!(2)], 2));
    let r =
        run(&s, json!({"rank_by": ["id", "desc"], "include_attributes": true, "vector_encoding": "base64"}))
            .unwrap();
    let first = &rows(&r)[0];
    assert_eq!(first["a"], json!("x"));
    assert_eq!(first["vector"], encode_vector(&[1.0, 0.5], VectorEncoding::Base64));
    let r = run(&s, json!({"rank_by": ["id", "asc"], "exclude_attributes": ["vector"]})).unwrap();
    assert_eq!(rows(&r)[2], json!({"id": 3, "a": "x"}));
    assert_eq!(
        id_lower_bound(&json!(["And", [["a", "Eq", 1], ["id", "Gt", 7]]])),
        Some((DocId::U64(7), false))
    );
}

#[test]
fn aggregations_and_groups() {
    let s = state(
        json!([{"id": 1, "c": "a", "p": 2.5}, {"id": 2, "c": "b", "p": 3}, {"id": 3, "c": "a", "p": 1.0}, {"id": 4}]),
    );
    let r =
        run(&s, json!({"aggregate_by": {"n": ["Count"], "s": ["Sum", "p"], "hc": ["Count", "c"]}})).unwrap();
    assert!(r.rows.is_none());
    assert_eq!(rendered(&r, "aggregations"), Some(json!({"n": 4, "s": 6.5, "hc": 3})));
    let r = run(&s, json!({"aggregate_by": {"n": ["Count"]}, "group_by": ["c"]})).unwrap();
    assert_eq!(
        rendered(&r, "aggregation_groups"),
        Some(json!([{"c": "a", "n": 2}, {"c": "b", "n": 1}, {"c": null, "n": 1}]))
    );
}

#[test]
fn for_each_unique_puts_a_document_in_one_group_per_distinct_element() {
    let s = state(json!([
        {"id": 1, "c": "a", "tags": ["x", "y", "x"], "p": 1},
        {"id": 2, "c": "a", "tags": ["y"], "p": 2},
        {"id": 3, "c": "b", "tags": [], "p": 4},
        {"id": 4, "c": "b", "p": 8},
        {"id": 5, "c": "b", "tags": ["z"], "p": 16}
    ]));
    let by_tag = json!({"aggregate_by": {"n": ["Count"], "s": ["Sum", "p"]},
        "group_by": [{"t": ["ForEachUnique", "tags"]}]});
    let r = run(&s, by_tag).unwrap();
    // Doc 1 counts once under x (its duplicate x is one element) and once
    // under y; an empty array and a missing attribute are the null group.
    assert_eq!(
        rendered(&r, "aggregation_groups"),
        Some(json!([
            {"t": "x", "n": 1, "s": 1}, {"t": "y", "n": 2, "s": 3},
            {"t": "z", "n": 1, "s": 16}, {"t": null, "n": 2, "s": 12}
        ]))
    );
    let with_plain = json!({"aggregate_by": {"n": ["Count"]},
        "group_by": ["c", {"t": ["ForEachUnique", "tags"]}], "filters": ["id", "Lte", 2]});
    let r = run(&s, with_plain).unwrap();
    assert_eq!(
        rendered(&r, "aggregation_groups"),
        Some(json!([{"c": "a", "t": "x", "n": 1}, {"c": "a", "t": "y", "n": 2}]))
    );
    // A scalar attribute is its own one element.
    let r = run(&s, json!({"aggregate_by": {"n": ["Count"]}, "group_by": [{"k": ["ForEachUnique", "c"]}]}))
        .unwrap();
    assert_eq!(rendered(&r, "aggregation_groups"), Some(json!([{"k": "a", "n": 2}, {"k": "b", "n": 3}])));
    for bad in [
        json!([{"t": ["ForEach", "tags"]}]),
        json!([{"t": ["ForEachUnique"]}]),
        json!([{"t": ["ForEachUnique", "tags"], "u": ["ForEachUnique", "c"]}]),
        json!(["c", {"c": ["ForEachUnique", "tags"]}]),
        json!([3]),
    ] {
        let e = run(&s, json!({"aggregate_by": {"n": ["Count"]}, "group_by": bad})).unwrap_err();
        assert!(matches!(e, QueryError::InvalidInput(ref m) if m.contains("group_by")), "{bad}: {e:?}");
    }
}

#[test]
fn for_each_unique_bounds_the_groups_one_document_yields() {
    let tags: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    let s = state(json!([{"id": 1, "a": tags, "b": tags}]));
    let q = json!({"aggregate_by": {"n": ["Count"]},
        "group_by": [{"x": ["ForEachUnique", "a"]}, {"y": ["ForEachUnique", "b"]}]});
    let e = run(&s, q).unwrap_err();
    assert!(matches!(e, QueryError::InvalidInput(ref m) if m.contains("4096")), "{e:?}");
    let one =
        json!({"aggregate_by": {"n": ["Count"]}, "group_by": [{"x": ["ForEachUnique", "a"]}], "limit": 1000});
    assert_eq!(
        rendered(&run(&s, one).unwrap(), "aggregation_groups").unwrap().as_array().unwrap().len(),
        100
    );
}

#[test]
fn bad_and_unsupported_queries() {
    let s = state(json!([{"id": 1, "vector": [1.0, 2.0]}]));
    for body in [
        json!({"filters": ["id", "Eq", 1], "offset": 3}),
        json!({"limit": {"total": 2, "per": {"attributes": ["a"], "limit": 1}}}),
        json!({"rank_by": ["a", "sideways"]}),
        json!({"rank_by": ["id", "asc"], "top_k": 0}),
        json!({"rank_by": ["id", "asc"], "top_k": 10_001}),
        json!({"filters": ["id", "Eq", 1], "offset": 3, "aggregate_by": {"n": ["Count"]}}),
        json!({"rank_by": ["id", "asc"], "bogus": 1}),
        json!({"rank_by": ["vector", "asc"]}),
        json!({"rank_by": ["id", "asc"], "consistency": {"level": "sometimes"}}),
        json!({"rank_by": ["id", "asc"], "include_attributes": ["a"], "exclude_attributes": ["b"]}),
    ] {
        assert!(matches!(run(&s, body.clone()), Err(QueryError::InvalidInput(_))), "{body}");
    }
    for body in [
        json!({"rank_by": ["text", "BM25", "q"]}),
        json!({"rank_by": ["Sum", [["a", "BM25", "x"]]]}),
        json!({"rank_by": ["vector", "ANN", [1.0, 2.0, 3.0]]}),
        // Saturate needs its midpoint.
        json!({"rank_by": ["Saturate", ["a", "BM25", "x"], {}]}),
        json!({"rank_by": ["vector", "ANN", [[1.0, 2.0]]]}),
        json!({"rank_by": ["other", "ANN", [[1.0, 2.0]]]}),
        // Any attribute may rank by ANN/kNN when its schema makes it a vector; this one is not.
        json!({"rank_by": ["other", "ANN", [1.0, 2.0]]}),
    ] {
        assert!(matches!(run(&s, body.clone()), Err(QueryError::InvalidInput(_))), "{body}");
    }
    let r = run(&s, json!({"rank_by": ["vector", "ANN", [1.0, 2.0]]})).unwrap();
    assert_eq!(rows(&r), vec![json!({"id": 1, "$dist": 0.0})]);
    let multi = parse_request(
        &json!({"queries": [{"rank_by": ["id", "asc"]}, {"aggregate_by": {"n": ["Count"]}}]}),
        true,
    )
    .unwrap();
    assert!(multi.multi && multi.strong && multi.queries.len() == 2);
    assert!(parse_request(&json!({"queries": []}), true).is_err());
    assert!(
        !parse_request(&json!({"rank_by": ["id", "asc"], "consistency": {"level": "eventual"}}), false)
            .unwrap()
            .strong
    );
}

/// The reference semantics, written independently: filter by a lower id
/// bound, sort by (missing last, value in direction, id asc), then page.
fn naive(
    docs: &[(u64, Option<i64>)],
    lower: Option<u64>,
    desc: bool,
    offset: usize,
    limit: usize,
) -> Vec<u64> {
    let mut v: Vec<_> = docs.iter().filter(|(id, _)| lower.is_none_or(|l| *id > l)).copied().collect();
    v.sort_by(|a, b| {
        let by_value = match (a.1, b.1) {
            (Some(x), Some(y)) if desc => y.cmp(&x),
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_value.then(a.0.cmp(&b.0))
    });
    v.into_iter().skip(offset).take(limit).map(|(id, _)| id).collect()
}

proptest::proptest! {
    #[test]
    fn ordering_and_paging_match_the_reference(
        docs in proptest::collection::btree_map(0u64..200, proptest::option::of(-5i64..5), 0..60),
        lower in proptest::option::of(0u64..200),
        desc: bool,
        by_id: bool,
        offset in 0usize..20,
        limit in 1usize..30,
    ) {
        let docs: Vec<(u64, Option<i64>)> = docs.into_iter().collect();
        let rows: Vec<Json> = docs.iter().map(|(id, n)| match n {
            Some(n) => json!({"id": id, "n": n}),
            None => json!({"id": id}),
        }).collect();
        let s = if rows.is_empty() { NsState::default() } else { state(Json::Array(rows)) };
        let dir = if desc { "desc" } else { "asc" };
        let mut body = json!({"rank_by": [if by_id { "id" } else { "n" }, dir], "top_k": limit, "offset": offset});
        if let Some(l) = lower {
            body["filters"] = json!(["And", [["id", "Gt", l]]]);
        }
        let got: Vec<u64> = ids(&run(&s, body).unwrap()).iter().map(|v| v.as_u64().unwrap()).collect();
        let reference: Vec<(u64, Option<i64>)> = if by_id {
            docs.iter().map(|(id, _)| (*id, Some(i64::try_from(*id).unwrap()))).collect()
        } else {
            docs.clone()
        };
        proptest::prop_assert_eq!(got, naive(&reference, lower, desc, offset, limit));
    }
}

#[test]
fn lookups_by_pinned_ids_equal_the_scan() {
    let rows: Vec<_> = (0..30u64).map(|i| json!({"id": i, "k": i % 4})).collect();
    let s = state(json!(rows));
    let ids = |body: serde_json::Value| -> Vec<serde_json::Value> {
        let r = run(&s, body).unwrap();
        r.rows.unwrap().iter().map(|r| r.doc.id.to_json()).collect()
    };
    // Pinned (point reads) and the same filter through Or (a scan) agree, floats and misses included.
    let pinned = json!({"filters": ["And", [["id", "In", [7, 3.0, 99, "x", 2.5]], ["k", "Eq", 3]]]});
    let scanned =
        json!({"filters": ["And", [["Or", [["id", "In", [7, 3.0, 99, "x", 2.5]]]], ["k", "Eq", 3]]]});
    assert_eq!(ids(pinned), vec![json!(3), json!(7)]);
    assert_eq!(ids(scanned), vec![json!(3), json!(7)]);
    assert_eq!(ids(json!({"filters": ["id", "Eq", 12], "include_attributes": true})), vec![json!(12)]);
    assert_eq!(ids(json!({"filters": ["id", "NotIn", [0, 1]], "limit": 2})), vec![json!(2), json!(3)]);
}
