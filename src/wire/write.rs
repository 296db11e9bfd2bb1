//! The turbopuffer v2 write body (`POST /v2/namespaces/{ns}`) → a typed
//! [`WriteRequest`], and a [`WriteResponse`] → the response body.
//!
//! Invariants: parsing is pure and total — any input yields a request or an
//! [`EngineError::invalid_input`] naming the offending key; vectors arrive as
//! JSON floats or base64 of little-endian f32 and must be finite; a request
//! names at most [`MAX_WRITE_ROWS`] rows directly and carries at most
//! [`MAX_WRITE_ATTR_VALUES`] attribute values.
//! - [`WriteRequest::from_slice`] (the HTTP path) keeps memory proportional to
//!   the typed request: rows and column cells are parsed and typed one at a
//!   time from borrowed raw JSON (`super::bounded`), every other key is
//!   parsed only once its value count is bounded.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};

use super::bounded::{self, MAX_JSON_VALUES, MAX_ROW_JSON_VALUES};

use crate::engine::request::{ForkFrom, ForkKind, WriteRequest, MAX_IDEMPOTENCY_KEY_BYTES, MAX_WRITE_ROWS};
use crate::engine::{EngineError, WriteResponse};
use crate::filter::Filter;

use crate::model::{
    AttrMap, DistanceMetric, DocId, Document, Value, ID_ATTR, MAX_ATTRIBUTE_NAME_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES, MAX_DOCUMENT_BYTES, MAX_VECTOR_DIM, VECTOR_ATTR,
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

/// Most attribute values one write carries (an array counts its elements):
/// 4,194,304, about 80 per row of a full 50,000-row batch. Typed values cost
/// ~40 bytes each, so this bounds a write's attributes near 170 MB whatever
/// the body's shape.
pub const MAX_WRITE_ATTR_VALUES: usize = 1 << 22;

/// One top-level value of a write body: a parsed tree (`from_json`) or the
/// borrowed raw text (`from_slice`), parsed only as far as needed.
#[derive(Clone, Copy)]
enum Field<'a> {
    Tree(&'a Json),
    Raw(&'a RawValue),
}

impl<'a> Field<'a> {
    /// The value as a tree, refusing a raw value of more than `cap` values.
    fn tree(self, cap: usize, what: &str) -> Result<std::borrow::Cow<'a, Json>, EngineError> {
        match self {
            Field::Tree(v) => Ok(std::borrow::Cow::Borrowed(v)),
            Field::Raw(r) => bounded::tree(r.get(), cap, what).map(std::borrow::Cow::Owned).map_err(invalid),
        }
    }

    /// The elements of an array, at most `cap` of them.
    fn elements(self, cap: usize, what: &str) -> Result<Vec<Field<'a>>, EngineError> {
        match self {
            Field::Tree(v) => {
                let items = v.as_array().ok_or_else(|| invalid(format!("{what} must be an array")))?;
                if items.len() > cap {
                    return Err(invalid(format!("{what}: more than {cap} elements")));
                }
                Ok(items.iter().map(Field::Tree).collect())
            }
            Field::Raw(r) => {
                Ok(bounded::elements(r, cap, what).map_err(invalid)?.into_iter().map(Field::Raw).collect())
            }
        }
    }

    /// The members of an object (column maps).
    fn members(self, what: &str) -> Result<Vec<(String, Field<'a>)>, EngineError> {
        let not_object = || invalid(format!("{what} must be an object of equal-length arrays"));
        match self {
            Field::Tree(v) => Ok(v
                .as_object()
                .ok_or_else(not_object)?
                .iter()
                .map(|(k, v)| (k.clone(), Field::Tree(v)))
                .collect()),
            Field::Raw(r) => {
                if !r.get().trim_start().starts_with('{') {
                    return Err(not_object());
                }
                let m: BTreeMap<String, &'a RawValue> =
                    serde_json::from_str(r.get()).map_err(|e| invalid(format!("{what}: {e}")))?;
                Ok(m.into_iter().map(|(k, v)| (k, Field::Raw(v))).collect())
            }
        }
    }
}

impl WriteRequest {
    /// Parse a write body given as a tree.
    pub fn from_json(body: &Json) -> Result<WriteRequest, EngineError> {
        let obj = body.as_object().ok_or_else(|| invalid("write body must be a JSON object"))?;
        let mut req = WriteRequest::default();
        let mut budget = MAX_WRITE_ATTR_VALUES;
        for (key, v) in obj {
            req.apply_field(key, Field::Tree(v), &mut budget)?;
        }
        req.finish()
    }

    /// Parse a write body from its bytes with memory bounded by the typed
    /// request (module doc). Returns the request and the `labels` member (our
    /// extension, applied by the caller), if any.
    pub fn from_slice(body: &[u8]) -> Result<(WriteRequest, Option<Json>), EngineError> {
        if !body.trim_ascii_start().starts_with(b"{") {
            return Err(invalid("write body must be a JSON object"));
        }
        let top: BTreeMap<String, &RawValue> =
            serde_json::from_slice(body).map_err(|e| invalid(format!("malformed JSON body: {e}")))?;
        let mut req = WriteRequest::default();
        let mut labels = None;
        let mut budget = MAX_WRITE_ATTR_VALUES;
        for (key, raw) in top {
            if key == "labels" {
                labels = Some(Field::Raw(raw).tree(MAX_JSON_VALUES, "labels")?.into_owned());
                continue;
            }
            req.apply_field(&key, Field::Raw(raw), &mut budget)?;
        }
        Ok((req.finish()?, labels))
    }

    fn finish(self) -> Result<WriteRequest, EngineError> {
        let req = self;
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

    fn apply_field(&mut self, key: &str, f: Field<'_>, budget: &mut usize) -> Result<(), EngineError> {
        match key {
            "upsert_rows" | "patch_rows" => {
                for row in f.elements(MAX_WRITE_ROWS, key)? {
                    let row = row.tree(MAX_ROW_JSON_VALUES, &format!("a row of {key}"))?;
                    let o = row
                        .as_object()
                        .ok_or_else(|| invalid(format!("{key}: every row must be an object")))?;
                    let typed = typed_row(parse_row(o, key)?, budget)?;
                    self.push_row(key, typed)?;
                }
                Ok(())
            }
            "upsert_columns" | "patch_columns" => {
                for typed in parse_columns(f, key, budget)? {
                    self.push_row(key, typed)?;
                }
                Ok(())
            }
            _ => {
                let v = f.tree(MAX_JSON_VALUES, key)?;
                self.apply_key(key, &v)
            }
        }
    }

    fn push_row(&mut self, key: &str, row: TypedRow) -> Result<(), EngineError> {
        let ops = &mut self.record.ops;
        if key.starts_with("upsert") {
            let doc = row_to_document(row);
            if doc.logical_bytes() > MAX_DOCUMENT_BYTES {
                return Err(invalid(format!(
                    "{key}: document {} is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
                    doc.id,
                    doc.logical_bytes()
                )));
            }
            ops.upserts.push(doc);
        } else {
            ops.patches.push(row_to_patch(row)?);
        }
        Ok(())
    }

    fn apply_key(&mut self, key: &str, v: &Json) -> Result<(), EngineError> {
        let ops = &mut self.record.ops;
        match key {
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
                let mut attrs = AttrMap::new();
                for (k, val) in patch {
                    check_attr_name(k, true)?;
                    let val = Value::from_json(val)
                        .map_err(|e| invalid(format!("patch_by_filter.patch.{k}: {e}")))?;
                    check_value_size(k, &val)?;
                    attrs.insert(k.clone(), val);
                }
                ops.patch_by_filter = Some(PatchByFilter { filter, attrs });
            }
            "distance_metric" => {
                let s = v.as_str().ok_or_else(|| invalid("distance_metric must be a string"))?;
                self.record.settings.distance_metric =
                    Some(DistanceMetric::parse(s).map_err(|e| invalid(e.to_string()))?);
            }
            "schema" => {
                let schema = crate::schema::parse_schema(v).map_err(|e| invalid(e.to_string()))?;
                self.record.settings.schema = Some(schema);
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

/// One row, typed: `vector` is `Some(None)` for an explicit `null`.
struct TypedRow {
    id: DocId,
    vector: Option<Option<Vec<f32>>>,
    attrs: Vec<(String, Value)>,
}

/// Type one row's values, charging its attribute values to `budget`.
fn typed_row(row: RawRow, budget: &mut usize) -> Result<TypedRow, EngineError> {
    let vector = row.vector.as_ref().map(parse_optional_vector).transpose()?;
    let mut attrs = Vec::with_capacity(row.attrs.len());
    for (k, v) in row.attrs {
        attrs.push(typed_attr(k, &v, budget)?);
    }
    Ok(TypedRow { id: row.id, vector, attrs })
}

fn parse_optional_vector(v: &Json) -> Result<Option<Vec<f32>>, EngineError> {
    if v.is_null() {
        return Ok(None);
    }
    parse_vector(v).map(Some)
}

fn check_value_size(name: &str, val: &Value) -> Result<(), EngineError> {
    let bytes = crate::model::value_bytes(val);
    if bytes > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(invalid(format!(
            "attribute {name:?}: a value of {bytes} bytes exceeds the {MAX_ATTRIBUTE_VALUE_BYTES}-byte limit"
        )));
    }
    Ok(())
}

fn typed_attr(name: String, v: &Json, budget: &mut usize) -> Result<(String, Value), EngineError> {
    let val = Value::from_json(v).map_err(|e| invalid(format!("attribute {name:?}: {e}")))?;
    check_value_size(&name, &val)?;
    let n = match &val {
        Value::Array(items) => 1 + items.len(),
        Value::Sparse(items) => 1 + items.len(),
        _ => 1,
    };
    *budget = budget.checked_sub(n).ok_or_else(|| {
        invalid(format!(
            "a write may carry at most {MAX_WRITE_ATTR_VALUES} attribute values (array elements count)"
        ))
    })?;
    Ok((name, val))
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

/// Rows from `{"id": [...], "attr": [...], ...}`: ids first, then one
/// column at a time, each cell typed as it is read.
fn parse_columns(f: Field<'_>, key: &str, budget: &mut usize) -> Result<Vec<TypedRow>, EngineError> {
    let cols = f.members(key)?;
    let ids = cols
        .iter()
        .find(|(name, _)| name == ID_ATTR)
        .ok_or_else(|| invalid(format!("{key} needs an \"id\" array")))?
        .1
        .elements(MAX_WRITE_ROWS, &format!("{key}.id"))?;
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.tree(MAX_ROW_JSON_VALUES, key)?;
        let id = DocId::from_json(&id).map_err(|e| invalid(format!("{key}: {e}")))?;
        rows.push(TypedRow { id, vector: None, attrs: Vec::new() });
    }
    for (name, col) in cols {
        if name == ID_ATTR {
            continue;
        }
        if name != VECTOR_ATTR {
            check_attr_name(&name, false)?;
        }
        let what = format!("{key}.{name}");
        let unequal = |n: usize| {
            invalid(format!(
                "{what} has {n} values but there are {} ids (columns must have equal length)",
                rows.len()
            ))
        };
        let values = col.elements(rows.len(), &what).map_err(|_| unequal(rows.len() + 1))?;
        if values.len() != rows.len() {
            return Err(unequal(values.len()));
        }
        for (row, cell) in rows.iter_mut().zip(values) {
            let cell = cell.tree(MAX_ROW_JSON_VALUES, &what)?;
            if name == VECTOR_ATTR {
                row.vector = Some(parse_optional_vector(&cell)?);
            } else {
                row.attrs.push(typed_attr(name.clone(), &cell, budget)?);
            }
        }
    }
    Ok(rows)
}

/// Decode a vector from JSON floats or base64 little-endian f32.
pub fn parse_vector(v: &Json) -> Result<Vec<f32>, EngineError> {
    let out: Vec<f32> = match v {
        Json::Array(items) => {
            // Exactly sized: a collect through `Result` cannot see the length
            // and doubles its way to 512 floats for a 384-d vector, a third
            // more than the vector for every row the overlay holds.
            let mut out = Vec::with_capacity(items.len());
            for x in items {
                #[allow(clippy::cast_possible_truncation)]
                out.push(x.as_f64().ok_or_else(|| invalid("vector elements must be numbers"))? as f32);
            }
            out
        }
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

fn row_to_document(row: TypedRow) -> Document {
    let mut doc = Document::new(row.id);
    doc.vector = row.vector.flatten().map(Into::into);
    doc.attrs.extend(row.attrs.into_iter().filter(|(_, v)| *v != Value::Null));
    doc
}

fn row_to_patch(row: TypedRow) -> Result<Patch, EngineError> {
    if row.vector.is_some() {
        return Err(invalid("vectors cannot be patched; upsert the document instead"));
    }
    Ok(Patch { id: row.id, attrs: row.attrs.into_iter().collect() })
}

impl WriteResponse {
    /// The HTTP response body: [`WriteResponse::to_json`] plus the request's
    /// `performance`.
    pub fn to_response(&self, server_total_ms: u64) -> Json {
        let mut v = self.to_json();
        v["performance"] = json!({"server_total_ms": server_total_ms});
        if let Some(e) = &self.embedding {
            v["performance"]["embedding_ms"] = json!(e.ms_ceil());
            v["performance"]["embedding_tokens"] = json!(e.tokens);
        }
        v
    }

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
    fn json_vectors_hold_exactly_their_dimension() {
        let floats: Vec<f64> = (0..384).map(f64::from).collect();
        let v = parse_vector(&json!(floats)).unwrap();
        assert_eq!((v.len(), v.capacity()), (384, 384), "no doubling slack kept per row");
        assert!(parse_vector(&json!([1.0, "x"])).is_err());
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
