//! turbopuffer's original (legacy) v1 vectors API, which
//! `@langchain/community`'s TurbopufferVectorStore still speaks, translated
//! onto the v2 request types so it runs on the same engine paths:
//! - `POST /v1/vectors/{ns}` (an upsert: columns `ids`, `vectors`,
//!   `attributes: {name: [values]}`, `distance_metric`; or rows
//!   `upserts: [{id, vector, attributes}]`; a `null` vector deletes the id)
//!   → [`parse_upsert`] → a [`WriteRequest`];
//! - `POST /v1/vectors/{ns}/query` (`vector`, `top_k`, `distance_metric`,
//!   `filters`, `include_attributes`, `include_vectors`) → [`parse_query`]
//!   → a [`QueryRequest`]; the answer renders as the old top-level array
//!   `[{id, dist, attributes, vector?}]` ([`query_response`]);
//! - `DELETE /v1/vectors/{ns}` deletes the namespace (no body).
//!
//! Invariants: translation builds the v2 JSON body and hands it to the v2
//! parsers, so every limit and check of the v2 API applies unchanged;
//! parsing is pure and total (any JSON yields a request or an invalid-input
//! error naming the key); a key this API never had is refused, not ignored.

use serde_json::{json, Map, Value as Json};

use crate::engine::{EngineError, QueryAnswer, WriteRequest};
use crate::model::{ID_ATTR, VECTOR_ATTR};
use crate::query::{QueryError, QueryRequest, DIST_ATTR};

use super::query::{parse_request, row_json};

fn invalid_write(msg: impl Into<String>) -> EngineError {
    EngineError::invalid_input(msg.into())
}

fn invalid_query(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidInput(msg.into())
}

/// A v1 upsert body → the v2 write request it means.
pub fn parse_upsert(body: &Json) -> Result<WriteRequest, EngineError> {
    let obj = body.as_object().ok_or_else(|| invalid_write("body must be a JSON object"))?;
    let mut columns = Columns::default();
    let mut v2 = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "ids" => columns.ids = Some(array(v, "ids")?),
            "vectors" => columns.vectors = Some(array(v, "vectors")?),
            "attributes" if v.is_null() => {}
            "attributes" => columns.attributes = Some(attribute_columns(v)?),
            "upserts" => columns.rows = Some(array(v, "upserts")?),
            "distance_metric" if v.is_null() => {}
            "distance_metric" => {
                v2.insert("distance_metric".into(), v.clone());
            }
            other => return Err(invalid_write(format!("unknown v1 upsert parameter {other:?}"))),
        }
    }
    let (upserts, deletes) = columns.into_rows()?;
    if !upserts.is_empty() {
        v2.insert("upsert_rows".into(), Json::Array(upserts));
    }
    if !deletes.is_empty() {
        v2.insert("deletes".into(), Json::Array(deletes));
    }
    WriteRequest::from_json(&Json::Object(v2))
}

fn array<'a>(v: &'a Json, key: &str) -> Result<&'a Vec<Json>, EngineError> {
    v.as_array().ok_or_else(|| invalid_write(format!("{key} must be an array")))
}

fn attribute_columns(v: &Json) -> Result<Vec<(&String, &Vec<Json>)>, EngineError> {
    let o = v.as_object().ok_or_else(|| invalid_write("attributes must be an object {name: [values]}"))?;
    o.iter()
        .map(|(name, col)| {
            reserved(name)?;
            Ok((name, array(col, &format!("attributes.{name}"))?))
        })
        .collect()
}

fn reserved(name: &str) -> Result<(), EngineError> {
    if name == ID_ATTR || name == VECTOR_ATTR {
        return Err(invalid_write(format!("attribute name {name:?} is reserved")));
    }
    Ok(())
}

/// The parts of a v1 upsert, columns or rows.
#[derive(Default)]
struct Columns<'a> {
    ids: Option<&'a Vec<Json>>,
    vectors: Option<&'a Vec<Json>>,
    attributes: Option<Vec<(&'a String, &'a Vec<Json>)>>,
    rows: Option<&'a Vec<Json>>,
}

impl Columns<'_> {
    /// v2 upsert rows, and the ids whose vector is `null` (deletes).
    fn into_rows(self) -> Result<(Vec<Json>, Vec<Json>), EngineError> {
        let mut out = Vec::new();
        if let Some(ids) = self.ids {
            let n = ids.len();
            let same = |len: usize| len == n;
            if !self.vectors.is_none_or(|v| same(v.len()))
                || !self.attributes.iter().flatten().all(|(_, c)| same(c.len()))
            {
                return Err(invalid_write("ids, vectors and every attribute column must have equal lengths"));
            }
            for (i, id) in ids.iter().enumerate() {
                // Lengths were checked above; a missing cell would read as null.
                let cell = |col: &Vec<Json>| col.get(i).cloned().unwrap_or(Json::Null);
                let vector = self.vectors.map(cell);
                let attrs = self.attributes.iter().flatten().map(|(name, c)| ((*name).clone(), cell(c)));
                out.push((id.clone(), vector, attrs.collect::<Map<_, _>>()));
            }
        } else if self.vectors.is_some() || self.attributes.is_some() {
            return Err(invalid_write("vectors and attributes need ids"));
        }
        for row in self.rows.into_iter().flatten() {
            out.push(upsert_row(row)?);
        }
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (id, vector, attrs) in out {
            match vector {
                Some(Json::Null) => deletes.push(id),
                vector => {
                    let mut row = attrs;
                    row.insert(ID_ATTR.into(), id);
                    if let Some(v) = vector {
                        row.insert(VECTOR_ATTR.into(), v);
                    }
                    upserts.push(Json::Object(row));
                }
            }
        }
        Ok((upserts, deletes))
    }
}

type V1Row = (Json, Option<Json>, Map<String, Json>);

fn upsert_row(row: &Json) -> Result<V1Row, EngineError> {
    let o = row.as_object().ok_or_else(|| invalid_write("every upserts entry must be an object"))?;
    let mut id = None;
    let mut vector = None;
    let mut attrs = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "id" => id = Some(v.clone()),
            "vector" => vector = Some(v.clone()),
            "attributes" if v.is_null() => {}
            "attributes" => {
                let a =
                    v.as_object().ok_or_else(|| invalid_write("upserts[].attributes must be an object"))?;
                for (name, val) in a {
                    reserved(name)?;
                    attrs.insert(name.clone(), val.clone());
                }
            }
            other => return Err(invalid_write(format!("unknown upserts[] key {other:?}"))),
        }
    }
    Ok((id.ok_or_else(|| invalid_write("every upserts entry needs an \"id\""))?, vector, attrs))
}

/// What a v1 query body asks of the rows besides the v2 query itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Render {
    /// `include_vectors`: rows carry their vector.
    pub vectors: bool,
}

/// A v1 query body → the v2 query it means and how to render its rows.
pub fn parse_query(body: &Json) -> Result<(QueryRequest, V1Render), QueryError> {
    let obj = body.as_object().ok_or_else(|| invalid_query("query body must be a JSON object"))?;
    let mut v2 = Map::new();
    let mut vectors = false;
    let mut include = None;
    for (k, v) in obj {
        match k.as_str() {
            "vector" if v.is_null() => {}
            "vector" => {
                v2.insert("rank_by".into(), json!([VECTOR_ATTR, "ANN", v]));
            }
            "top_k" | "distance_metric" | "consistency" => {
                v2.insert(k.clone(), v.clone());
            }
            "filters" if v.is_null() => {}
            "filters" => {
                v2.insert("filters".into(), v1_filters(v)?);
            }
            "include_attributes" => include = Some(v),
            "include_vectors" => {
                vectors = v.is_null()
                    || v.as_bool().ok_or_else(|| invalid_query("include_vectors must be a bool"))?
            }
            other => return Err(invalid_query(format!("unknown v1 query parameter {other:?}"))),
        }
    }
    // The vector rides in the projection only when asked for.
    let projection = match (include.filter(|v| !v.is_null()), vectors) {
        (None | Some(Json::Bool(false)), false) => None,
        (None | Some(Json::Bool(false)), true) => Some(json!([VECTOR_ATTR])),
        (Some(Json::Bool(true)), _) => Some(json!(true)),
        (Some(Json::Array(names)), _) => {
            let mut names = names.clone();
            if vectors {
                names.push(json!(VECTOR_ATTR));
            }
            Some(Json::Array(names))
        }
        (Some(_), _) => {
            return Err(invalid_query("include_attributes must be true, false or a list of names"))
        }
    };
    if let Some(p) = projection {
        v2.insert("include_attributes".into(), p);
    }
    let req = parse_request(&Json::Object(v2), false)?;
    Ok((req, V1Render { vectors }))
}

/// v1 filters: the v2 array form as it is, or the original object form
/// `{attr: [op, value]}` / `{attr: [[op, value], ...]}` (all of them must hold).
fn v1_filters(v: &Json) -> Result<Json, QueryError> {
    let Some(o) = v.as_object() else { return Ok(v.clone()) };
    let mut conds = Vec::new();
    for (attr, spec) in o {
        let items =
            spec.as_array().ok_or_else(|| invalid_query(format!("filters.{attr} must be [op, value]")))?;
        let pairs: Vec<&Json> =
            if items.first().is_some_and(Json::is_array) { items.iter().collect() } else { vec![spec] };
        for pair in pairs {
            match pair.as_array().map(Vec::as_slice) {
                Some([op, value]) => conds.push(json!([attr, op, value])),
                _ => return Err(invalid_query(format!("filters.{attr} must be [op, value] pairs"))),
            }
        }
    }
    Ok(match conds.len() {
        1 => conds.remove(0),
        _ => json!(["And", conds]),
    })
}

/// The v1 query response: a top-level array of `{id, dist?, attributes,
/// vector?}`.
pub fn query_response(answer: &QueryAnswer, render: V1Render) -> Json {
    let rows = answer.results.first().and_then(|r| r.rows.as_ref().map(|rows| (r.vector_encoding, rows)));
    let Some((enc, rows)) = rows else { return Json::Array(Vec::new()) };
    let out = rows
        .iter()
        .map(|r| {
            let Json::Object(mut m) = row_json(r, enc) else { return Json::Null };
            let id = m.remove(ID_ATTR).unwrap_or(Json::Null);
            let vector = m.remove(VECTOR_ATTR);
            let dist = m.remove(DIST_ATTR);
            let mut row = Map::new();
            row.insert("id".into(), id);
            if let Some(d) = dist {
                row.insert("dist".into(), d);
            }
            row.insert("attributes".into(), Json::Object(m));
            if let (true, Some(v)) = (render.vectors, vector) {
                row.insert("vector".into(), v);
            }
            Json::Object(row)
        })
        .collect();
    Json::Array(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn column_upserts_become_rows_and_null_vectors_deletes() {
        let body = json!({
            "ids": ["a", "b", 7], "vectors": [[1.0, 2.0], null, [3.0, 4.0]],
            "attributes": {"__lc_page_content": ["x", "y", null]}, "distance_metric": "cosine_distance",
        });
        let r = parse_upsert(&body).unwrap();
        assert_eq!(r.record.ops.upserts.len(), 2);
        assert_eq!(r.record.ops.deletes.len(), 1);
        assert!(r.record.settings.distance_metric.is_some());
        assert!(parse_upsert(&json!({"ids": [1], "vectors": []})).is_err(), "lengths");
        assert!(parse_upsert(&json!({"ids": [1], "attributes": {"id": [2]}})).is_err(), "reserved");
        assert!(parse_upsert(&json!({"ids": [1], "bogus": 1})).is_err());
        let rows = json!({"upserts": [{"id": 1, "vector": [1.0], "attributes": {"k": "v"}}]});
        assert_eq!(parse_upsert(&rows).unwrap().record.ops.upserts.len(), 1);
    }

    #[test]
    fn queries_translate_and_object_filters_are_conjunctions() {
        let (q, render) = parse_query(&json!({
            "vector": [1.0, 2.0], "top_k": 3, "distance_metric": "cosine_distance",
            "filters": {"source": ["Eq", "a"], "n": [["Gt", 1], ["Lt", 5]]},
            "include_attributes": true, "include_vectors": false,
        }))
        .unwrap();
        assert_eq!((q.queries[0].limit, render.vectors), (3, false));
        assert!(q.queries[0].rank.is_some() && q.queries[0].filters.is_some());
        let (lookup, _) = parse_query(&json!({"filters": ["id", "Eq", 1]})).unwrap();
        assert!(lookup.queries[0].order.is_some(), "no vector: a lookup by id");
        assert!(parse_query(&json!({"vector": [1.0], "rank_by": ["id", "asc"]})).is_err());
        assert!(parse_query(&json!({"filters": {"a": "Eq"}})).is_err());
    }
}
