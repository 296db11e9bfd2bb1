//! The document model: ids, attribute values, documents, the per-namespace
//! configuration (id type, distance metric, vector dimension) and schema.
//!
//! Invariants:
//! - A [`DocId`] is a u64, a UUID or a non-empty string of at most
//!   [`MAX_STRING_ID_BYTES`] bytes; one namespace never mixes id kinds
//!   (checked by the engine against [`NamespaceConfig::id_type`]).
//! - Ids order as u64 < UUID < string across kinds (only relevant for
//!   sorting a mixed list, which a namespace never holds) and naturally within
//!   a kind; "ties by id" in ordering uses this order.
//! - An attribute [`Value`] is never a JSON object, except a sparse vector
//!   ([`Value::Sparse`]), whose keys are sorted and unique and whose weights
//!   are finite.
//! - Dense vectors hold finite f32 only (NaN/Inf are rejected at the edge).
//! - A [`Value::Dense`] is the value of a named vector attribute (an `[N]f32`
//!   or `[N]f16` attribute other than `vector`); it never comes from
//!   [`Value::from_json`] (a JSON array is an array): the engine makes it from
//!   an array of numbers or a base64 string once the schema says the attribute
//!   is a vector (`schema::dense_from`). It holds a [`Vector`], so an overlay
//!   row's named vectors spill like its `vector` (`NsState::put`).
//! - A [`Value::Multi`] is the value of a multi-vector (late interaction)
//!   attribute (`[][N]f32` / `[][N]f16`): 1..=[`MAX_MULTI_VECTORS`] vectors of
//!   one dimension in 1..=[`MAX_VECTOR_DIM`], finite f32. It comes from
//!   [`Value::from_json`] for a JSON array of arrays of numbers (nested arrays
//!   were refused before, so the reading is unambiguous); the engine checks the
//!   dimension against the schema (`engine/multi.rs`).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::spill::Vector;

/// A document's attributes by name (sorted, exactly sized: see `attr_map`).
pub type AttrMap = crate::attr_map::AttrMap<Value>;

/// Longest string id accepted, in UTF-8 bytes (turbopuffer's limit).
pub const MAX_STRING_ID_BYTES: usize = 64;
/// Longest attribute name, in bytes.
pub const MAX_ATTRIBUTE_NAME_BYTES: usize = 128;
/// Most attribute names one namespace's schema holds (turbopuffer's limit;
/// `id` and `vector` not counted).
pub const MAX_ATTRIBUTES_PER_NAMESPACE: usize = 256;
/// Largest attribute value (a string, or an array's elements together), in
/// bytes (turbopuffer's limit: 8 MiB).
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 8 << 20;
/// Largest document (`Document::logical_bytes`), in bytes (turbopuffer's
/// limit: 64 MiB).
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;
/// Largest dense-vector dimension accepted.
pub const MAX_VECTOR_DIM: usize = 10_752;
/// Most vectors one document holds in a multi-vector attribute (`[][N]f32`): a
/// ColBERT-style passage of up to 1,024 token embeddings. tidepool's own bound
/// (turbopuffer documents none); it caps the work of one document's MaxSim.
pub const MAX_MULTI_VECTORS: usize = 1024;
/// The reserved attribute that carries the dense vector.
pub const VECTOR_ATTR: &str = "vector";
/// The reserved attribute that carries the id.
pub const ID_ATTR: &str = "id";

/// A document id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DocId {
    /// An unsigned 64-bit integer id.
    U64(u64),
    /// A UUID id.
    Uuid(uuid::Uuid),
    /// A string id (1..=64 bytes).
    Str(String),
}

/// The kind of ids a namespace holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdType {
    /// u64 ids.
    U64,
    /// UUID ids.
    Uuid,
    /// String ids.
    String,
}

impl IdType {
    /// The schema type name turbopuffer uses for this id kind.
    pub fn schema_name(self) -> &'static str {
        match self {
            IdType::U64 => "uint",
            IdType::Uuid => "uuid",
            IdType::String => "string",
        }
    }
}

impl DocId {
    /// The kind of this id.
    pub fn id_type(&self) -> IdType {
        match self {
            DocId::U64(_) => IdType::U64,
            DocId::Uuid(_) => IdType::Uuid,
            DocId::Str(_) => IdType::String,
        }
    }

    /// Parse an id from its JSON form: a non-negative integer, or a string
    /// kept byte for byte (a string is a uuid only in a namespace whose ids
    /// are uuids: [`DocId::resolve`]).
    pub fn from_json(v: &serde_json::Value) -> Result<DocId, ModelError> {
        match v {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(DocId::U64)
                .ok_or_else(|| ModelError::InvalidId(format!("id {n} is not a u64"))),
            serde_json::Value::String(s) => DocId::from_str_id(s),
            other => Err(ModelError::InvalidId(format!(
                "id must be an unsigned integer, a UUID or a string, got {}",
                json_kind(other)
            ))),
        }
    }

    /// Parse a string id, byte for byte: a uuid-shaped string stays a
    /// string until [`DocId::resolve`] meets a uuid namespace.
    pub fn from_str_id(s: &str) -> Result<DocId, ModelError> {
        if s.is_empty() {
            return Err(ModelError::InvalidId("id must not be empty".into()));
        }
        if s.len() > MAX_STRING_ID_BYTES {
            return Err(ModelError::InvalidId(format!(
                "string id is {} bytes; the limit is {MAX_STRING_ID_BYTES}",
                s.len()
            )));
        }
        Ok(DocId::Str(s.to_owned()))
    }

    /// This id as a namespace whose ids are `ty` holds it: a string in a
    /// uuid namespace is parsed as a uuid (any spelling names the same id),
    /// a uuid in a string namespace is its text. `None` when the id cannot
    /// be of that type (the caller reports the mismatch).
    pub fn resolve(self, ty: IdType) -> Option<DocId> {
        match (self, ty) {
            (DocId::Str(s), IdType::Uuid) => uuid::Uuid::parse_str(&s).ok().map(DocId::Uuid),
            (DocId::Uuid(u), IdType::String) => Some(DocId::Str(u.to_string())),
            (id, ty) if id.id_type() == ty => Some(id),
            _ => None,
        }
    }

    /// The type a namespace's first id gives it when nothing declared one:
    /// integers are `uint`, strings `string` (a uuid only when declared).
    pub fn inferred_type(&self) -> IdType {
        match self {
            DocId::U64(_) => IdType::U64,
            DocId::Uuid(_) | DocId::Str(_) => IdType::String,
        }
    }

    /// The JSON form of this id.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            DocId::U64(n) => serde_json::Value::from(*n),
            DocId::Uuid(u) => serde_json::Value::String(u.to_string()),
            DocId::Str(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// This id as an attribute value (for filters on `id`).
    pub fn to_value(&self) -> Value {
        match self {
            DocId::U64(n) => Value::Int(i128::from(*n)),
            DocId::Uuid(u) => Value::Str(u.to_string()),
            DocId::Str(s) => Value::Str(s.clone()),
        }
    }

    fn kind_rank(&self) -> u8 {
        match self {
            DocId::U64(_) => 0,
            DocId::Uuid(_) => 1,
            DocId::Str(_) => 2,
        }
    }
}

impl Ord for DocId {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (DocId::U64(a), DocId::U64(b)) => a.cmp(b),
            (DocId::Uuid(a), DocId::Uuid(b)) => a.cmp(b),
            (DocId::Str(a), DocId::Str(b)) => a.cmp(b),
            _ => self.kind_rank().cmp(&other.kind_rank()),
        }
    }
}

impl PartialOrd for DocId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocId::U64(n) => write!(f, "{n}"),
            DocId::Uuid(u) => write!(f, "{u}"),
            DocId::Str(s) => write!(f, "{s}"),
        }
    }
}

/// An attribute value.
///
/// Integers are held as `i128` so that the whole u64 and i64 ranges fit in one
/// variant and compare exactly; the schema decides whether a value is `int`
/// (i64 range) or `uint` (u64 range).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON null (only meaningful in patches, where it removes an attribute).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer in the i64 ∪ u64 range.
    Int(i128),
    /// A finite float.
    Float(f64),
    /// A string.
    Str(String),
    /// An array of scalar values.
    Array(Vec<Value>),
    /// A sparse vector: (dimension key, weight) pairs, keys sorted and unique.
    Sparse(Vec<(String, f32)>),
    /// A dense vector of a named vector attribute: finite f32, its length the
    /// attribute's dimension (`f16` attributes are held as f32 too); on the
    /// heap or spilled.
    Dense(Vector),
    /// The vectors of a multi-vector attribute: 1..=[`MAX_MULTI_VECTORS`] of one
    /// dimension, finite f32.
    Multi(Vec<Vec<f32>>),
}

impl Value {
    /// Convert a JSON value into an attribute value.
    ///
    /// JSON objects become sparse vectors when every member is a finite
    /// number; any other object is rejected.
    pub fn from_json(v: &serde_json::Value) -> Result<Value, ModelError> {
        Ok(match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => number_value(n)?,
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(items) if items.first().is_some_and(serde_json::Value::is_array) => {
                multi_from_json(items)?
            }
            serde_json::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                            return Err(ModelError::InvalidValue(
                                "array attributes hold scalars only (no nested arrays or objects)".into(),
                            ))
                        }
                        serde_json::Value::Null => {
                            return Err(ModelError::InvalidValue(
                                "array attributes must not contain null".into(),
                            ))
                        }
                        other => out.push(Value::from_json(other)?),
                    }
                }
                Value::Array(out)
            }
            serde_json::Value::Object(map) => {
                let mut pairs = Vec::with_capacity(map.len());
                for (k, w) in map {
                    let w = w.as_f64().ok_or_else(|| {
                        ModelError::InvalidValue(
                            "object attributes are only accepted as sparse vectors {\"key\": weight}".into(),
                        )
                    })?;
                    // Weights are stored as f32 (sparse vectors are `{}f16`/`{}f32`).
                    #[allow(clippy::cast_possible_truncation)]
                    let w32 = w as f32;
                    if !w32.is_finite() {
                        return Err(ModelError::InvalidValue(format!(
                            "sparse vector weight for {k:?} is not a finite f32"
                        )));
                    }
                    pairs.push((k.clone(), w32));
                }
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Sparse(pairs)
            }
        })
    }

    /// The JSON form of this value.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => int_to_json(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Sparse(pairs) => serde_json::Value::Object(
                pairs.iter().map(|(k, w)| (k.clone(), serde_json::Value::from(f64::from(*w)))).collect(),
            ),
            Value::Dense(v) => v.iter().map(|x| serde_json::Value::from(f64::from(*x))).collect(),
            Value::Multi(vs) => vs
                .iter()
                .map(|v| {
                    v.iter().map(|x| serde_json::Value::from(f64::from(*x))).collect::<serde_json::Value>()
                })
                .collect(),
        }
    }

    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Sparse(_) => "sparse vector",
            Value::Dense(_) => "dense vector",
            Value::Multi(_) => "vector array",
        }
    }

    /// Total order used for attribute ordering and range filters between two
    /// values of the same kind; numbers compare across int/float. Returns
    /// `None` for values of incomparable kinds.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            #[allow(clippy::cast_precision_loss)]
            (Value::Int(a), Value::Float(b)) => (*a as f64).partial_cmp(b),
            #[allow(clippy::cast_precision_loss)]
            (Value::Float(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter().zip(b) {
                    match x.compare(y)? {
                        Ordering::Equal => {}
                        o => return Some(o),
                    }
                }
                Some(a.len().cmp(&b.len()))
            }
            _ => None,
        }
    }

    /// Equality as filters see it: numbers compare across int/float.
    pub fn loosely_equals(&self, other: &Value) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }

    /// The canonical (lower-case, hyphenated) spelling of a uuid string, if
    /// this is one spelled otherwise: letter case is not part of a uuid.
    pub fn canonical_uuid(&self) -> Option<Value> {
        let Value::Str(s) = self else { return None };
        let canonical = uuid::Uuid::parse_str(s).ok()?.to_string();
        (canonical != *s).then_some(Value::Str(canonical))
    }
}

fn int_to_json(i: i128) -> serde_json::Value {
    if let Ok(v) = i64::try_from(i) {
        serde_json::Value::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        serde_json::Value::from(v)
    } else {
        serde_json::Value::Null
    }
}

fn number_value(n: &serde_json::Number) -> Result<Value, ModelError> {
    if let Some(i) = n.as_i64() {
        return Ok(Value::Int(i128::from(i)));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Value::Int(i128::from(u)));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(Value::Float(f)),
        _ => Err(ModelError::InvalidValue(format!("number {n} is not finite"))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// A stored document.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The id.
    pub id: DocId,
    /// The dense vector, if any (on the heap, or spilled to a file: see `spill`).
    pub vector: Option<Vector>,
    /// Attributes (never `Null`: a null removes the attribute).
    pub attrs: AttrMap,
}

impl Document {
    /// A document with only an id.
    pub fn new(id: DocId) -> Self {
        Document { id, vector: None, attrs: AttrMap::new() }
    }

    /// The value of an attribute for filters: `id` is the id itself.
    pub fn attr(&self, name: &str) -> Option<std::borrow::Cow<'_, Value>> {
        if name == ID_ATTR {
            return Some(std::borrow::Cow::Owned(self.id.to_value()));
        }
        self.attrs.get(name).map(std::borrow::Cow::Borrowed)
    }

    /// The document as turbopuffer writes it: `id`, `vector` (floats, when
    /// present), then every attribute. `upsert_rows` accepts it back, export
    /// lines are it, and query rows start from it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::with_capacity(self.attrs.len() + 2);
        o.insert(ID_ATTR.to_owned(), self.id.to_json());
        if let Some(v) = &self.vector {
            o.insert(
                VECTOR_ATTR.to_owned(),
                v.iter().map(|x| serde_json::Value::from(f64::from(*x))).collect(),
            );
        }
        for (k, v) in &self.attrs {
            o.insert(k.clone(), v.to_json());
        }
        serde_json::Value::Object(o)
    }

    /// Approximate logical size in bytes (for metadata and billing fields).
    pub fn logical_bytes(&self) -> u64 {
        let vec = self.vector.as_ref().map_or(0, |v| v.len() * 4);
        let attrs: usize = self.attrs.iter().map(|(k, v)| k.len() + value_bytes(v)).sum();
        (8 + vec + attrs) as u64
    }
}

/// Approximate size of one attribute value in bytes (strings by length,
/// numbers 8, arrays their elements together).
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 8,
        Value::Str(s) => s.len(),
        Value::Array(items) => items.iter().map(value_bytes).sum(),
        Value::Sparse(p) => p.iter().map(|(k, _)| k.len() + 4).sum(),
        Value::Dense(v) => v.len() * 4,
        Value::Multi(vs) => vs.iter().map(|v| v.len() * 4).sum(),
    }
}

/// A JSON array of arrays of numbers as a [`Value::Multi`]: every inner array
/// non-empty, of one length, at most [`MAX_VECTOR_DIM`]; at most
/// [`MAX_MULTI_VECTORS`] of them; every number a finite f32.
fn multi_from_json(items: &[serde_json::Value]) -> Result<Value, ModelError> {
    let bad = |why: String| ModelError::InvalidValue(format!("a vector array ([][N]f32) {why}"));
    if items.len() > MAX_MULTI_VECTORS {
        return Err(bad(format!("holds {} vectors; the limit is {MAX_MULTI_VECTORS}", items.len())));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let xs = item.as_array().ok_or_else(|| bad(format!("holds a non-array at index {i}")))?;
        if xs.is_empty() || xs.len() > MAX_VECTOR_DIM {
            return Err(bad(format!("vector {i} has {} dimensions (1..={MAX_VECTOR_DIM})", xs.len())));
        }
        if out.first().is_some_and(|f: &Vec<f32>| f.len() != xs.len()) {
            return Err(bad(format!("mixes dimensions ({} and {} at vector {i})", out[0].len(), xs.len())));
        }
        #[allow(clippy::cast_possible_truncation)]
        let v: Option<Vec<f32>> =
            xs.iter().map(|x| x.as_f64().map(|f| f as f32).filter(|f| f.is_finite())).collect();
        out.push(v.ok_or_else(|| bad(format!("vector {i} holds a non-number, NaN or a number beyond f32")))?);
    }
    Ok(Value::Multi(out))
}

/// Vector distance metric of a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DistanceMetric {
    /// 1 - cosine similarity.
    #[serde(rename = "cosine_distance")]
    CosineDistance,
    /// Squared Euclidean distance.
    #[serde(rename = "euclidean_squared")]
    EuclideanSquared,
}

impl DistanceMetric {
    /// Parse the wire name.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s {
            "cosine_distance" => Ok(DistanceMetric::CosineDistance),
            "euclidean_squared" => Ok(DistanceMetric::EuclideanSquared),
            other => Err(ModelError::InvalidMetric(other.to_owned())),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DistanceMetric::CosineDistance => "cosine_distance",
            DistanceMetric::EuclideanSquared => "euclidean_squared",
        }
    }
}

/// Errors of the document model (all are invalid input).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A bad id.
    #[error("invalid id: {0}")]
    InvalidId(String),
    /// A bad attribute value.
    #[error("invalid attribute value: {0}")]
    InvalidValue(String),
    /// A bad distance metric name.
    #[error("invalid distance_metric {0:?}: expected \"cosine_distance\" or \"euclidean_squared\"")]
    InvalidMetric(String),
    /// A bad vector.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// A bad schema.
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// A value does not match the attribute's schema type.
    #[error("schema type mismatch for attribute {attr:?}: expected {expected}, got {got}")]
    TypeMismatch {
        /// Attribute name.
        attr: String,
        /// The schema type.
        expected: String,
        /// What arrived.
        got: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_parse_and_order() {
        assert_eq!(DocId::from_json(&json!(5)).unwrap(), DocId::U64(5));
        let u = "0b4a2f8e-6c3d-4c53-9c49-4f0b6a3e2a11";
        assert_eq!(DocId::from_json(&json!(u)).unwrap(), DocId::Str(u.to_owned()), "kept byte for byte");
        let upper = u.to_uppercase();
        let resolved = DocId::from_json(&json!(upper)).unwrap().resolve(IdType::Uuid).unwrap();
        assert_eq!(resolved.to_json(), json!(u.to_lowercase()), "a uuid namespace compares any spelling");
        assert_eq!(DocId::Str(upper.clone()).resolve(IdType::String), Some(DocId::Str(upper)));
        assert_eq!(DocId::Str("x".into()).resolve(IdType::Uuid), None);
        assert_eq!(DocId::U64(1).resolve(IdType::String), None);
        assert!(DocId::from_json(&json!("")).is_err());
        assert!(DocId::from_json(&json!("x".repeat(65))).is_err());
        assert!(DocId::from_json(&json!(-1)).is_err());
        assert!(DocId::from_json(&json!(1.5)).is_err());
        assert!(DocId::U64(2) < DocId::U64(10));
        assert!(DocId::Str("a".into()) < DocId::Str("b".into()));
    }

    #[test]
    fn values_round_trip_through_json() {
        for v in [json!(1), json!(-3), json!(u64::MAX), json!(1.5), json!("s"), json!([1, 2]), json!(true)] {
            assert_eq!(Value::from_json(&v).unwrap().to_json(), v);
        }
        assert!(Value::from_json(&json!({"a": "x"})).is_err());
        assert_eq!(Value::from_json(&json!([[1], [2.5]])).unwrap(), Value::Multi(vec![vec![1.0], vec![2.5]]));
        assert_eq!(Value::from_json(&json!([[1, 2]])).unwrap().to_json(), json!([[1.0, 2.0]]));
        for bad in [json!([[1], 2]), json!([[1], [1, 2]]), json!([[]]), json!([[1e300]]), json!([["a"]])] {
            assert!(Value::from_json(&bad).is_err(), "{bad}");
        }
        let too_many: Vec<_> = (0..=MAX_MULTI_VECTORS).map(|_| json!([1.0])).collect();
        assert!(Value::from_json(&json!(too_many)).is_err());
        assert!(Value::from_json(&json!([1, [2]])).is_err());
        let sparse = Value::from_json(&json!({"b": 1.0, "a": 0.5})).unwrap();
        assert_eq!(sparse, Value::Sparse(vec![("a".into(), 0.5), ("b".into(), 1.0)]));
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert!(Value::Int(2).loosely_equals(&Value::Float(2.0)));
        assert_eq!(Value::Int(2).compare(&Value::Float(2.5)), Some(Ordering::Less));
        assert_eq!(Value::Int(2).compare(&Value::Str("2".into())), None);
    }
}
