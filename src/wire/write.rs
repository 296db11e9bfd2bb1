//! The turbopuffer v2 write body (`POST /v2/namespaces/{ns}`) → a typed
//! [`WriteRequest`], and a [`WriteResponse`] → the response body.
//!
//! Invariants: parsing is pure and total — any input yields a request or an
//! [`EngineError::invalid_input`] naming the offending key; vectors arrive as
//! JSON floats or base64 of little-endian f32 and must be finite; a request
//! names at most [`MAX_WRITE_ROWS`] rows directly.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use crate::engine::request::{ForkFrom, ForkKind, WriteRequest, MAX_IDEMPOTENCY_KEY_BYTES, MAX_WRITE_ROWS};
use crate::engine::{EngineError, WriteResponse};
use crate::filter::Filter;

use crate::model::{
    DistanceMetric, DocId, Document, Value, ID_ATTR, MAX_ATTRIBUTE_NAME_BYTES, MAX_VECTOR_DIM, VECTOR_ATTR,
};

use crate::ops::{NamespaceSettings, Patch, PatchByFilter};

impl ForkFrom {
    /// Parse `"src"` or `{"source_namespace": "src", "generation"?: N}`.
    pub fn parse(key: &str, v: &Json, kind: ForkKind) -> Result<ForkFrom, EngineError> {
        let (source, generation) = match v {
            Json::String(s) => (s.clone(), None),
            Json::Object(o) => {
                let mut source = None;
                let mut generation = None;
                for (k, val) in o {
                    match k.as_str() {
                        "source_namespace" => {
                            source = Some(
                                val.as_str()
                                    .ok_or_else(|| {
                                        invalid(format!("{key}.source_namespace must be a string"))
                                    })?
                                    .to_owned(),
                            )
                        }
                        "generation" | "version" => {
                            generation = match val {
                                Json::Null => None,
                                _ => Some(val.as_u64().ok_or_else(|| {
                                    invalid(format!("{key}.{k} must be a positive integer"))
                                })?),
                            }
                        }
                        // Accepted for turbopuffer compatibility; one node holds one
                        // org/project scope, so they cannot point anywhere else.
                        "source_api_key" | "source_region" => {}
                        other => return Err(invalid(format!("unknown {key} parameter {other:?}"))),
                    }
                }
                (source.ok_or_else(|| invalid(format!("{key} needs \"source_namespace\"")))?, generation)
            }
            _ => {
                return Err(invalid(format!(
                    "{key} must be a namespace name or {{\"source_namespace\": ..., \"generation\": N}}"
                )))
            }
        };
        if source.is_empty() {
            return Err(invalid(format!("{key}: the source namespace name is empty")));
        }
        if generation == Some(0) {
            return Err(invalid(format!("{key}: generation 0 does not exist (generations start at 1)")));
        }
        Ok(ForkFrom { source, generation, kind })
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::invalid_input(msg.into())
}

impl WriteRequest {
    /// Parse a write body.
    pub fn from_json(body: &Json) -> Result<WriteRequest, EngineError> {
        let obj = body.as_object().ok_or_else(|| invalid("write body must be a JSON object"))?;
        let mut req = WriteRequest::default();
        for (key, v) in obj {
            req.apply_key(key, v, obj)?;
        }
        if let Some(f) = &req.fork {
            let no_settings = req.record.settings == NamespaceSettings::default();
            if !req.record.ops.is_empty() || !no_settings || req.if_version.is_some() {
                return Err(invalid(format!(
                    "{} cannot be combined with write operations, settings or if_version; \
                     send the operations in a second request",
                    if f.kind == ForkKind::Branch { "branch_from_namespace" } else { "copy_from_namespace" }
                )));
            }
        }
        if req.record.ops.direct_rows() > MAX_WRITE_ROWS {
            return Err(invalid(format!(
                "a write may name at most {MAX_WRITE_ROWS} rows (upserts + patches + deletes); this one names {}",
                req.record.ops.direct_rows()
            )));
        }
        Ok(req)
    }

    fn apply_key(&mut self, key: &str, v: &Json, _all: &Map<String, Json>) -> Result<(), EngineError> {
        let ops = &mut self.record.ops;
        match key {
            "upsert_rows" => ops
                .upserts
                .extend(parse_rows(v, key)?.into_iter().map(row_to_document).collect::<Result<Vec<_>, _>>()?),
            "upsert_columns" => {
                ops.upserts.extend(parse_columns(v, key)?.into_iter().map(row_to_document).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?)
            }
            "patch_rows" => ops
                .patches
                .extend(parse_rows(v, key)?.into_iter().map(row_to_patch).collect::<Result<Vec<_>, _>>()?),
            "patch_columns" => ops
                .patches
                .extend(parse_columns(v, key)?.into_iter().map(row_to_patch).collect::<Result<Vec<_>, _>>()?),
            "deletes" => {
                let ids = v.as_array().ok_or_else(|| invalid("deletes must be an array of ids"))?;
                for id in ids {
                    ops.deletes.push(DocId::from_json(id).map_err(|e| invalid(format!("deletes: {e}")))?);
                }
            }
            "upsert_condition" => ops.upsert_condition = parse_filter(v, key)?,
            "patch_condition" => ops.patch_condition = parse_filter(v, key)?,
            "delete_condition" => ops.delete_condition = parse_filter(v, key)?,
            "delete_by_filter" => ops.delete_by_filter = parse_filter(v, key)?,
            "patch_by_filter" => {
                if v.is_null() {
                    return Ok(());
                }
                let o = v
                    .as_object()
                    .ok_or_else(|| invalid("patch_by_filter must be {\"filters\": ..., \"patch\": {...}}"))?;
                let filter = Filter::parse(o.get("filters").unwrap_or(&Json::Null))
                    .map_err(|e| invalid(format!("patch_by_filter.filters: {e}")))?;
                let patch = o
                    .get("patch")
                    .and_then(Json::as_object)
                    .ok_or_else(|| invalid("patch_by_filter.patch must be an object"))?;
                let mut attrs = BTreeMap::new();
                for (k, val) in patch {
                    check_attr_name(k, true)?;
                    attrs.insert(
                        k.clone(),
                        Value::from_json(val)
                            .map_err(|e| invalid(format!("patch_by_filter.patch.{k}: {e}")))?,
                    );
                }
                ops.patch_by_filter = Some(PatchByFilter { filter, attrs });
            }
            "distance_metric" => {
                let s = v.as_str().ok_or_else(|| invalid("distance_metric must be a string"))?;
                self.record.settings.distance_metric =
                    Some(DistanceMetric::parse(s).map_err(|e| invalid(e.to_string()))?);
            }
            "schema" => {
                crate::schema::parse_schema(v).map_err(|e| invalid(e.to_string()))?;
                self.record.settings.schema_json = Some(v.to_string());
            }
            "create_namespace" => {
                self.create_namespace =
                    Some(v.as_bool().ok_or_else(|| invalid("create_namespace must be a bool"))?)
            }
            "return_affected_ids" => {
                self.return_affected_ids =
                    v.as_bool().ok_or_else(|| invalid("return_affected_ids must be a bool"))?
            }
            "disable_backpressure" => {
                self.disable_backpressure =
                    v.as_bool().ok_or_else(|| invalid("disable_backpressure must be a bool"))?
            }
            "delete_by_filter_allow_partial" | "patch_by_filter_allow_partial" => {
                v.as_bool().ok_or_else(|| invalid(format!("{key} must be a bool")))?;
            }
            "if_version" => {
                self.if_version =
                    Some(v.as_u64().ok_or_else(|| invalid("if_version must be a non-negative integer"))?)
            }
            "idempotency_key" => self.set_idempotency_key(
                v.as_str().ok_or_else(|| invalid("idempotency_key must be a string"))?,
            )?,
            "encryption" => match v.get("mode").and_then(Json::as_str) {
                Some("default") | None if v.is_object() || v.is_null() => {}
                _ => {
                    return Err(EngineError::unsupported(
                        "customer-managed encryption is not supported by tidepool",
                    ))
                }
            },
            "sharding" => {
                if v.get("num_shards").and_then(Json::as_u64).is_some_and(|n| n > 1) {
                    return Err(EngineError::unsupported(
                        "sharding is not supported by tidepool (one node serves a namespace)",
                    ));
                }
            }
            "branch_from_namespace" | "copy_from_namespace" => {
                if v.is_null() {
                    return Ok(());
                }
                if self.fork.is_some() {
                    return Err(invalid("branch_from_namespace and copy_from_namespace are exclusive"));
                }
                let kind =
                    if key == "branch_from_namespace" { ForkKind::Branch } else { ForkKind::ShallowCopy };
                self.fork = Some(ForkFrom::parse(key, v, kind)?);
            }
            other => return Err(invalid(format!("unknown write parameter {other:?}"))),
        }
        Ok(())
    }

    /// Set the idempotency key (from the body or an `Idempotency-Key` header).
    pub fn set_idempotency_key(&mut self, key: &str) -> Result<(), EngineError> {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || key.contains('\u{0}') {
            return Err(invalid(format!(
                "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes without NUL"
            )));
        }
        self.record.idempotency_key = Some(key.to_owned());
        Ok(())
    }
}

fn parse_filter(v: &Json, key: &str) -> Result<Option<Filter>, EngineError> {
    if v.is_null() {
        return Ok(None);
    }
    Filter::parse(v).map(Some).map_err(|e| invalid(format!("{key}: {e}")))
}

/// One row: id plus raw attribute values (vector kept raw).
struct RawRow {
    id: DocId,
    vector: Option<Json>,
    attrs: Vec<(String, Json)>,
}

fn check_attr_name(name: &str, allow_vector: bool) -> Result<(), EngineError> {
    if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
        return Err(invalid(format!(
            "attribute name {name:?} must be 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes"
        )));
    }
    if name.starts_with('$') {
        return Err(invalid(format!("attribute name {name:?} must not start with '$'")));
    }
    if name == ID_ATTR || (!allow_vector && name == VECTOR_ATTR) {
        return Err(invalid(format!("attribute name {name:?} is reserved here")));
    }
    Ok(())
}

fn parse_row(o: &Map<String, Json>, key: &str) -> Result<RawRow, EngineError> {
    let id = o.get(ID_ATTR).ok_or_else(|| invalid(format!("{key}: every row needs an \"id\"")))?;
    let id = DocId::from_json(id).map_err(|e| invalid(format!("{key}: {e}")))?;
    let mut row = RawRow { id, vector: None, attrs: Vec::with_capacity(o.len()) };
    for (k, v) in o {
        if k == ID_ATTR {
            continue;
        }
        if k == VECTOR_ATTR {
            row.vector = Some(v.clone());
            continue;
        }
        check_attr_name(k, false)?;
        row.attrs.push((k.clone(), v.clone()));
    }
    Ok(row)
}

fn parse_rows(v: &Json, key: &str) -> Result<Vec<RawRow>, EngineError> {
    let rows = v.as_array().ok_or_else(|| invalid(format!("{key} must be an array of objects")))?;
    if rows.len() > MAX_WRITE_ROWS {
        return Err(invalid(format!("{key}: at most {MAX_WRITE_ROWS} rows per write")));
    }
    rows.iter()
        .map(|r| {
            r.as_object()
                .ok_or_else(|| invalid(format!("{key}: every row must be an object")))
                .and_then(|o| parse_row(o, key))
        })
        .collect()
}

fn parse_columns(v: &Json, key: &str) -> Result<Vec<RawRow>, EngineError> {
    let cols =
        v.as_object().ok_or_else(|| invalid(format!("{key} must be an object of equal-length arrays")))?;
    let ids = cols
        .get(ID_ATTR)
        .and_then(Json::as_array)
        .ok_or_else(|| invalid(format!("{key} needs an \"id\" array")))?;
    if ids.len() > MAX_WRITE_ROWS {
        return Err(invalid(format!("{key}: at most {MAX_WRITE_ROWS} rows per write")));
    }
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let id = DocId::from_json(id).map_err(|e| invalid(format!("{key}: {e}")))?;
        rows.push(RawRow { id, vector: None, attrs: Vec::new() });
    }
    for (name, col) in cols {
        if name == ID_ATTR {
            continue;
        }
        let values = col.as_array().ok_or_else(|| invalid(format!("{key}.{name} must be an array")))?;
        if values.len() != rows.len() {
            return Err(invalid(format!(
                "{key}.{name} has {} values but there are {} ids (columns must have equal length)",
                values.len(),
                rows.len()
            )));
        }
        if name != VECTOR_ATTR {
            check_attr_name(name, false)?;
        }
        for (row, val) in rows.iter_mut().zip(values) {
            if name == VECTOR_ATTR {
                row.vector = Some(val.clone());
            } else {
                row.attrs.push((name.clone(), val.clone()));
            }
        }
    }
    Ok(rows)
}

/// Decode a vector from JSON floats or base64 little-endian f32.
pub fn parse_vector(v: &Json) -> Result<Vec<f32>, EngineError> {
    let out: Vec<f32> = match v {
        Json::Array(items) => items
            .iter()
            .map(|x| {
                #[allow(clippy::cast_possible_truncation)]
                x.as_f64().map(|f| f as f32).ok_or_else(|| invalid("vector elements must be numbers"))
            })
            .collect::<Result<_, _>>()?,
        Json::String(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| invalid(format!("vector is not valid base64: {e}")))?;
            if bytes.len() % 4 != 0 {
                return Err(invalid("base64 vector length is not a multiple of 4 bytes (f32)"));
            }
            bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        _ => return Err(invalid("vector must be an array of numbers or a base64 string")),
    };
    if out.is_empty() || out.len() > MAX_VECTOR_DIM {
        return Err(invalid(format!("vector dimension {} is out of range 1..={MAX_VECTOR_DIM}", out.len())));
    }
    if out.iter().any(|x| !x.is_finite()) {
        return Err(invalid("vector contains NaN or infinity"));
    }
    Ok(out)
}

fn row_to_document(row: RawRow) -> Result<Document, EngineError> {
    let mut doc = Document::new(row.id);
    if let Some(v) = row.vector.filter(|v| !v.is_null()) {
        doc.vector = Some(parse_vector(&v)?);
    }
    for (k, v) in row.attrs {
        let val = Value::from_json(&v).map_err(|e| invalid(format!("attribute {k:?}: {e}")))?;
        if val != Value::Null {
            doc.attrs.insert(k, val);
        }
    }
    Ok(doc)
}

fn row_to_patch(row: RawRow) -> Result<Patch, EngineError> {
    if row.vector.is_some() {
        return Err(invalid("vectors cannot be patched; upsert the document instead"));
    }
    let mut attrs = BTreeMap::new();
    for (k, v) in row.attrs {
        attrs.insert(k.clone(), Value::from_json(&v).map_err(|e| invalid(format!("attribute {k:?}: {e}")))?);
    }
    Ok(Patch { id: row.id, attrs })
}

impl WriteResponse {
    /// The turbopuffer response body.
    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "status": "OK",
            "message": if self.deduplicated { "deduplicated: this idempotency key was already applied" } else { "success" },
            "rows_affected": self.counts.affected(),
            "rows_upserted": self.counts.upserted,
            "rows_patched": self.counts.patched,
            "rows_deleted": self.counts.deleted,
            // Filter-based operations never stop part-way (they fail above their cap).
            "rows_remaining": false,
            "version": self.generation,
            "deduplicated": self.deduplicated,
            "billing": {"billable_logical_bytes_written": self.bytes_written},
        });
        if let Some(a) = &self.affected {
            let ids = |v: &Vec<DocId>| Json::Array(v.iter().map(DocId::to_json).collect());
            v["upserted_ids"] = ids(&a.upserted);
            v["patched_ids"] = ids(&a.patched);
            v["deleted_ids"] = ids(&a.deleted);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ErrorKind;
    use serde_json::json;

    #[test]
    fn rows_and_columns_parse_to_the_same_documents() {
        let a = WriteRequest::from_json(&json!({"upsert_rows": [{"id": 1, "vector": [1.0, 2.0], "a": "x"}, {"id": 2, "vector": [3.0, 4.0], "a": null}]})).unwrap();
        let b = WriteRequest::from_json(
            &json!({"upsert_columns": {"id": [1, 2], "vector": [[1.0, 2.0], [3.0, 4.0]], "a": ["x", null]}}),
        )
        .unwrap();
        assert_eq!(a.record.ops.upserts, b.record.ops.upserts);
        assert!(!a.record.ops.upserts[1].attrs.contains_key("a"));
    }

    #[test]
    fn base64_vectors_decode_little_endian() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(parse_vector(&json!(b64)).unwrap(), vec![1.5, -2.0]);
        assert!(parse_vector(&json!("AAA=")).is_err());
        let nan: Vec<u8> = f32::NAN.to_le_bytes().to_vec();
        assert!(parse_vector(&json!(base64::engine::general_purpose::STANDARD.encode(nan))).is_err());
    }

    #[test]
    fn branch_and_copy_parameters_parse_as_a_string_or_an_object() {
        let r = WriteRequest::from_json(&json!({"branch_from_namespace": "src"})).unwrap();
        assert_eq!(r.fork, Some(ForkFrom { source: "src".into(), generation: None, kind: ForkKind::Branch }));
        let r = WriteRequest::from_json(
            &json!({"branch_from_namespace": {"source_namespace": "src", "generation": 4}}),
        )
        .unwrap();
        assert_eq!(r.fork.unwrap().generation, Some(4));
        let r = WriteRequest::from_json(&json!({"copy_from_namespace": {"source_namespace": "s"}})).unwrap();
        assert_eq!(r.fork.unwrap().kind, ForkKind::ShallowCopy);
        for bad in [
            json!({"branch_from_namespace": 3}),
            json!({"branch_from_namespace": {"generation": 1}}),
            json!({"branch_from_namespace": {"source_namespace": "s", "generation": 0}}),
            json!({"branch_from_namespace": {"source_namespace": "s", "x": 1}}),
            json!({"branch_from_namespace": "a", "copy_from_namespace": "b"}),
            json!({"copy_from_namespace": "a", "deletes": [1]}),
            json!({"branch_from_namespace": ""}),
        ] {
            assert!(
                matches!(WriteRequest::from_json(&bad), Err(ref e) if e.kind() == ErrorKind::InvalidInput),
                "{bad}"
            );
        }
    }

    #[test]
    fn invalid_inputs_are_rejected_with_the_key_named() {
        for (body, needle) in [
            (json!({"upsert_rows": [{"vector": [1.0]}]}), "id"),
            (json!({"upsert_rows": [{"id": ""}]}), "empty"),
            (json!({"upsert_columns": {"id": [1, 2], "a": [1]}}), "equal length"),
            (json!({"patch_rows": [{"id": 1, "vector": [1.0]}]}), "patched"),
            (json!({"distance_metric": "manhattan"}), "distance_metric"),
            (json!({"bogus": 1}), "unknown write parameter"),
            (json!({"upsert_rows": [{"id": 1, "$x": 1}]}), "'$'"),
            (json!({"upsert_rows": [{"id": 1, "vector": [1.0, "a"]}]}), "numbers"),
        ] {
            let e = WriteRequest::from_json(&body).unwrap_err().to_string();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }
}
