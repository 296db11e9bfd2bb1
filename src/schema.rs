//! Per-namespace attribute schema, in turbopuffer's shape.
//!
//! Invariants:
//! - An attribute's type never changes once set (explicitly or inferred from
//!   the first non-null value); later values must match it.
//! - `full_text_search` attributes are strings (or string arrays) and are not
//!   filterable unless the schema says `filterable: true` explicitly.
//! - The dense vector type is `[N]f32` (or `[N]f16`), N = the namespace's
//!   pinned dimension.
//! - Any other attribute may be a named vector (`[N]f32` / `[N]f16`, held as
//!   f32): its values are [`Value::Dense`] of exactly N elements. Its `ann`
//!   option is `true` or `{"distance_metric": ...}`; the object is kept in
//!   `extra` as sent (so the stored schema encoding is unchanged) and
//!   [`AttrSchema::ann_metric`] reads it. A metric, once set, never changes.
//! - A multi-vector attribute (`[][N]f32` / `[][N]f16`, late interaction) holds
//!   [`Value::Multi`] values of N-dimensional vectors. ANN on it needs
//!   `ann: {"late_interaction": true}` (a MUVERA index; plain `ann: true` is
//!   refused), and `late_interaction` is refused on every other type. An `ann`
//!   object merges member by member on a schema update.
//! - `embed` (a model name or `{model, attribute, dims}`) is valid on a `string`
//!   attribute only; it is kept in `extra` as sent (the stored schema encoding is
//!   unchanged) and read through [`AttrSchema::embed_spec`]. `embed: null` in an
//!   update removes it; a stored schema never holds a null `embed`. Whether the
//!   model exists is the engine's check (`engine/embed.rs`), not the schema's.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::model::{ModelError, Value};

/// Scalar element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// UTF-8 string.
    String,
    /// Signed 64-bit integer.
    Int,
    /// Unsigned 64-bit integer.
    Uint,
    /// 64-bit float.
    Float,
    /// UUID (as a string on the wire).
    Uuid,
    /// Date-time: ISO 8601 on the wire, stored as canonical UTC milliseconds
    /// (`crate::datetime`).
    Datetime,
    /// Boolean.
    Bool,
}

impl ScalarType {
    fn name(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Int => "int",
            ScalarType::Uint => "uint",
            ScalarType::Float => "float",
            ScalarType::Uuid => "uuid",
            ScalarType::Datetime => "datetime",
            ScalarType::Bool => "bool",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => ScalarType::String,
            "int" => ScalarType::Int,
            "uint" => ScalarType::Uint,
            "float" => ScalarType::Float,
            "uuid" => ScalarType::Uuid,
            "datetime" => ScalarType::Datetime,
            "bool" => ScalarType::Bool,
            _ => return None,
        })
    }

    fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (ScalarType::String, Value::Str(_)) => true,
            (ScalarType::Datetime, Value::Str(s)) => crate::datetime::canonical(s).is_some(),
            (ScalarType::Uuid, Value::Str(s)) => uuid::Uuid::parse_str(s).is_ok(),
            (ScalarType::Int, Value::Int(i)) => i64::try_from(*i).is_ok(),
            (ScalarType::Uint, Value::Int(i)) => u64::try_from(*i).is_ok(),
            (ScalarType::Float, Value::Float(_) | Value::Int(_)) | (ScalarType::Bool, Value::Bool(_)) => true,
            _ => false,
        }
    }
}

/// An attribute type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrType {
    /// A scalar.
    Scalar(ScalarType),
    /// An array of scalars (`[]string`, ...).
    Array(ScalarType),
    /// A dense vector `[N]f32` / `[N]f16`.
    Vector {
        /// Dimension.
        dim: usize,
        /// Stored as f16 on the wire type (we keep f32 in memory).
        f16: bool,
    },
    /// A multi-vector (late interaction) attribute `[][N]f32` / `[][N]f16`: each
    /// document holds an array of N-dimensional vectors (held as f32).
    MultiVector {
        /// Dimension of every vector.
        dim: usize,
        /// Declared as f16 (we keep f32).
        f16: bool,
    },
    /// A sparse vector `{}f16` / `{}f32`.
    Sparse {
        /// Declared as f16.
        f16: bool,
    },
}

impl AttrType {
    /// The turbopuffer type string.
    pub fn name(&self) -> String {
        match self {
            AttrType::Scalar(s) => s.name().to_owned(),
            AttrType::Array(s) => format!("[]{}", s.name()),
            AttrType::Vector { dim, f16 } => format!("[{dim}]{}", if *f16 { "f16" } else { "f32" }),
            AttrType::MultiVector { dim, f16 } => format!("[][{dim}]{}", if *f16 { "f16" } else { "f32" }),
            AttrType::Sparse { f16 } => format!("{{}}{}", if *f16 { "f16" } else { "f32" }),
        }
    }

    /// Parse a turbopuffer type string.
    pub fn parse(s: &str) -> Result<AttrType, ModelError> {
        let bad = || ModelError::InvalidSchema(format!("unknown attribute type {s:?}"));
        if let Some(rest) = s.strip_prefix("[][") {
            return match AttrType::parse(&format!("[{rest}"))? {
                AttrType::Vector { dim, f16 } => Ok(AttrType::MultiVector { dim, f16 }),
                _ => Err(bad()),
            };
        }
        if let Some(rest) = s.strip_prefix("[]") {
            return ScalarType::parse(rest).map(AttrType::Array).ok_or_else(bad);
        }
        if let Some(rest) = s.strip_prefix("{}") {
            return match rest {
                "f16" => Ok(AttrType::Sparse { f16: true }),
                "f32" => Ok(AttrType::Sparse { f16: false }),
                _ => Err(bad()),
            };
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (dim, elem) = rest.split_once(']').ok_or_else(bad)?;
            let dim: usize = dim.parse().map_err(|_| bad())?;
            if dim == 0 || dim > crate::model::MAX_VECTOR_DIM {
                return Err(ModelError::InvalidSchema(format!(
                    "vector dimension {dim} is out of range 1..={}",
                    crate::model::MAX_VECTOR_DIM
                )));
            }
            return match elem {
                "f16" => Ok(AttrType::Vector { dim, f16: true }),
                "f32" => Ok(AttrType::Vector { dim, f16: false }),
                _ => Err(bad()),
            };
        }
        ScalarType::parse(s).map(AttrType::Scalar).ok_or_else(bad)
    }

    /// Infer the type of a first value.
    pub fn infer(v: &Value) -> Option<AttrType> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => AttrType::Scalar(ScalarType::Bool),
            Value::Int(i) if *i < 0 || i64::try_from(*i).is_ok() => AttrType::Scalar(ScalarType::Int),
            Value::Int(_) => AttrType::Scalar(ScalarType::Uint),
            Value::Float(_) => AttrType::Scalar(ScalarType::Float),
            Value::Str(_) => AttrType::Scalar(ScalarType::String),
            Value::Array(items) => {
                let first = items.first().and_then(AttrType::infer)?;
                match first {
                    AttrType::Scalar(s) => {
                        // Mixed int/float arrays are floats.
                        let s = if s == ScalarType::Int && items.iter().any(|x| matches!(x, Value::Float(_)))
                        {
                            ScalarType::Float
                        } else {
                            s
                        };
                        AttrType::Array(s)
                    }
                    _ => return None,
                }
            }
            Value::Sparse(_) => AttrType::Sparse { f16: false },
            Value::Dense(v) => AttrType::Vector { dim: v.len(), f16: false },
            Value::Multi(vs) => AttrType::MultiVector { dim: vs.first().map_or(0, Vec::len), f16: false },
        })
    }

    /// Whether `v` is a valid value of this type.
    pub fn accepts(&self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) => true,
            (AttrType::Scalar(s), v) => s.accepts(v),
            (AttrType::Array(s), Value::Array(items)) => items.iter().all(|x| s.accepts(x)),
            (AttrType::Sparse { .. }, Value::Sparse(_)) => true,
            (AttrType::Vector { dim, .. }, Value::Dense(v)) => v.len() == *dim,
            (AttrType::MultiVector { dim, .. }, Value::Multi(vs)) => vs.iter().all(|v| v.len() == *dim),
            _ => false,
        }
    }
}

/// The [`Value::Dense`] a named vector attribute of dimension `dim` stores for `v`, as a
/// client sends it: an array of numbers, or a base64 string of little-endian f32 (what the
/// SDK sends for an attribute whose schema is in the same write). `Ok(None)` when `v` is
/// already dense or null (nothing to convert); an error names the attribute.
pub fn dense_from(attr: &str, dim: usize, v: &Value) -> Result<Option<Value>, ModelError> {
    let bad = |why: String| ModelError::InvalidValue(format!("attribute {attr:?} ([{dim}]f32): {why}"));
    let out: Vec<f32> = match v {
        Value::Null | Value::Dense(_) => return Ok(None),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for x in items {
                #[allow(clippy::cast_possible_truncation)]
                let f = match x {
                    Value::Float(f) => *f as f32,
                    #[allow(clippy::cast_precision_loss)]
                    Value::Int(i) => *i as f32,
                    other => return Err(bad(format!("elements must be numbers, got {}", other.kind()))),
                };
                out.push(f);
            }
            out
        }
        Value::Str(s) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| bad(format!("not an array of numbers nor valid base64: {e}")))?;
            if bytes.len() % 4 != 0 {
                return Err(bad("base64 length is not a multiple of 4 bytes (f32)".into()));
            }
            crate::codec::f32s_le(&bytes)
        }
        other => {
            return Err(bad(format!("expected an array of numbers or a base64 string, got {}", other.kind())))
        }
    };
    if out.len() != dim {
        return Err(bad(format!("the value has {} dimensions, the schema says {dim}", out.len())));
    }
    if out.iter().any(|x| !x.is_finite()) {
        return Err(bad("the value holds NaN or infinity (or a number beyond f32)".into()));
    }
    Ok(Some(Value::Dense(out.into())))
}

/// The tokenizer a new full-text attribute gets (turbopuffer's default). A
/// schema stores its tokenizer by name, so attributes created with an older
/// default keep analyzing their text the same way.
pub const DEFAULT_TOKENIZER: &str = "word_v4";

/// Tokenizer names: `word_v0`..`word_v3` split on every non-alphanumeric
/// character; `word_v4` splits at UAX #29 word boundaries (`can't`, `3.14`,
/// `snake_case` stay one word); `pre_tokenized_array` takes a string array's
/// elements as tokens.
pub const TOKENIZERS: &[&str] =
    &["word_v0", "word_v1", "word_v2", "word_v3", "word_v4", "pre_tokenized_array"];

/// Full-text search options of a string attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct FullTextSearch {
    /// Tokenizer name (`word_v0`..`word_v4`, `pre_tokenized_array`).
    pub tokenizer: String,
    /// Stemming language.
    pub language: String,
    /// Apply the language's stemmer.
    pub stemming: bool,
    /// Drop the language's stop words.
    pub remove_stopwords: bool,
    /// Match case-sensitively.
    pub case_sensitive: bool,
    /// Fold non-ASCII characters to ASCII.
    pub ascii_folding: bool,
    /// BM25 k1.
    pub k1: f64,
    /// BM25 b.
    pub b: f64,
    /// Tokens longer than this (bytes) are dropped.
    pub max_token_length: u32,
    /// Index term prefixes for search-as-you-type (`last_as_prefix` complete and fast);
    /// an index-only option: it never changes which tokens a value has.
    pub index_prefixes: bool,
}

impl Default for FullTextSearch {
    fn default() -> Self {
        FullTextSearch {
            tokenizer: DEFAULT_TOKENIZER.into(),
            language: "english".into(),
            stemming: false,
            remove_stopwords: true,
            case_sensitive: false,
            ascii_folding: false,
            k1: 1.2,
            b: 0.75,
            max_token_length: 39,
            index_prefixes: false,
        }
    }
}

impl FullTextSearch {
    fn from_json(v: &Json) -> Result<Option<FullTextSearch>, ModelError> {
        let mut fts = FullTextSearch::default();
        match v {
            Json::Bool(false) | Json::Null => Ok(None),
            Json::Bool(true) => Ok(Some(fts)),
            Json::Object(m) => {
                for (k, val) in m {
                    let bad = || ModelError::InvalidSchema(format!("bad full_text_search option {k:?}"));
                    match k.as_str() {
                        "tokenizer" => {
                            let name = val.as_str().filter(|t| TOKENIZERS.contains(t)).ok_or_else(|| {
                                ModelError::InvalidSchema(format!(
                                    "unknown tokenizer {val}; one of {}",
                                    TOKENIZERS.join(", ")
                                ))
                            })?;
                            fts.tokenizer = name.to_owned();
                        }
                        "language" => fts.language = val.as_str().ok_or_else(bad)?.to_owned(),
                        "stemming" => fts.stemming = val.as_bool().ok_or_else(bad)?,
                        "remove_stopwords" => fts.remove_stopwords = val.as_bool().ok_or_else(bad)?,
                        "case_sensitive" => fts.case_sensitive = val.as_bool().ok_or_else(bad)?,
                        "ascii_folding" => fts.ascii_folding = val.as_bool().ok_or_else(bad)?,
                        "index_prefixes" => fts.index_prefixes = val.as_bool().ok_or_else(bad)?,
                        "k1" => fts.k1 = val.as_f64().filter(|x| *x >= 0.0).ok_or_else(bad)?,
                        "b" => fts.b = val.as_f64().filter(|x| (0.0..=1.0).contains(x)).ok_or_else(bad)?,
                        "max_token_length" => {
                            fts.max_token_length = val
                                .as_u64()
                                .and_then(|x| u32::try_from(x).ok())
                                .filter(|x| *x > 0)
                                .ok_or_else(bad)?;
                        }
                        _ => return Err(bad()),
                    }
                }
                Ok(Some(fts))
            }
            _ => Err(ModelError::InvalidSchema("full_text_search must be a bool or an object".into())),
        }
    }

    fn to_json(&self) -> Json {
        let mut v = json!({
            "tokenizer": self.tokenizer, "language": self.language, "stemming": self.stemming,
            "remove_stopwords": self.remove_stopwords, "case_sensitive": self.case_sensitive,
            "ascii_folding": self.ascii_folding, "k1": self.k1, "b": self.b,
            "max_token_length": self.max_token_length,
        });
        // Shown only when on, so schemas without it render as they always did.
        if self.index_prefixes {
            v["index_prefixes"] = Json::Bool(true);
        }
        v
    }
}

/// Schema key of a vector attribute (tidepool extension): the namespace's target recall@10 for
/// `ANN` queries (0.5..=1; default 0.95), kept with the attribute's other options.
pub const TARGET_RECALL: &str = "target_recall";

/// Lowest target recall a namespace or a query may ask for.
pub const MIN_TARGET_RECALL: f64 = 0.5;

/// A target recall from a schema or a query body: a number in [`MIN_TARGET_RECALL`]..=1.
pub fn parse_target_recall(v: &Json, what: &str) -> Result<f32, String> {
    match v.as_f64() {
        Some(t) if (MIN_TARGET_RECALL..=1.0).contains(&t) => Ok(t as f32),
        _ => Err(format!("{what} must be a number from {MIN_TARGET_RECALL} to 1.0 (recall@10)")),
    }
}

/// The schema of one attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrSchema {
    /// The type.
    pub ty: AttrType,
    /// Explicit `filterable` setting (None = default for the type).
    pub filterable: Option<bool>,
    /// Full-text search options.
    pub full_text_search: Option<FullTextSearch>,
    /// Build an ANN index on this vector attribute.
    pub ann: bool,
    /// Other options we keep verbatim (glob, regex, fuzzy, sparse_knn, ...).
    pub extra: Map<String, Json>,
}

impl AttrSchema {
    /// A plain attribute of a type.
    pub fn of(ty: AttrType) -> Self {
        AttrSchema { ty, filterable: None, full_text_search: None, ann: false, extra: Map::new() }
    }

    /// Whether filters may reference this attribute.
    pub fn is_filterable(&self) -> bool {
        self.filterable.unwrap_or(self.full_text_search.is_none())
    }

    /// Parse one schema entry: a type string or an object.
    pub fn from_json(name: &str, v: &Json) -> Result<AttrSchema, ModelError> {
        match v {
            Json::String(t) => Ok(AttrSchema::of(AttrType::parse(t)?)),
            Json::Object(m) => {
                let ty = match m.get("type") {
                    Some(Json::String(t)) => AttrType::parse(t)?,
                    Some(_) => {
                        return Err(ModelError::InvalidSchema(format!("{name}: type must be a string")))
                    }
                    None if m.contains_key("full_text_search") => AttrType::Scalar(ScalarType::String),
                    None => return Err(ModelError::InvalidSchema(format!("{name}: missing type"))),
                };
                let mut s = AttrSchema::of(ty);
                for (k, val) in m {
                    match k.as_str() {
                        "type" => {}
                        "filterable" => {
                            s.filterable = Some(val.as_bool().ok_or_else(|| {
                                ModelError::InvalidSchema(format!("{name}: filterable must be a bool"))
                            })?);
                        }
                        "full_text_search" => s.full_text_search = FullTextSearch::from_json(val)?,
                        "ann" => {
                            s.ann = !matches!(val, Json::Bool(false) | Json::Null);
                            if val.is_object() {
                                check_ann_config(name, &s.ty, val)?;
                                // Kept as sent: `to_json` renders it back, `ann_metric` reads it.
                                s.extra.insert(k.clone(), val.clone());
                            }
                        }
                        EMBED => {
                            check_embed(name, &s.ty, val)?;
                            s.extra.insert(k.clone(), val.clone());
                        }
                        TARGET_RECALL => {
                            if !matches!(s.ty, AttrType::Vector { .. }) {
                                return Err(ModelError::InvalidSchema(format!(
                                    "{name}: {TARGET_RECALL} applies to a vector attribute"
                                )));
                            }
                            parse_target_recall(val, &format!("{name}.{TARGET_RECALL}"))
                                .map_err(ModelError::InvalidSchema)?;
                            s.extra.insert(k.clone(), val.clone());
                        }
                        _ => {
                            s.extra.insert(k.clone(), val.clone());
                        }
                    }
                }
                check_late_interaction(name, &s)?;
                if s.full_text_search.is_some()
                    && !matches!(
                        s.ty,
                        AttrType::Scalar(ScalarType::String) | AttrType::Array(ScalarType::String)
                    )
                {
                    return Err(ModelError::InvalidSchema(format!(
                        "{name}: full_text_search needs a string or []string attribute"
                    )));
                }
                Ok(s)
            }
            _ => Err(ModelError::InvalidSchema(format!(
                "{name}: schema entry must be a type string or an object"
            ))),
        }
    }

    /// The turbopuffer JSON form.
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("type".into(), Json::String(self.ty.name()));
        if !matches!(self.ty, AttrType::Vector { .. } | AttrType::MultiVector { .. }) {
            m.insert("filterable".into(), Json::Bool(self.is_filterable()));
        }
        if let Some(fts) = &self.full_text_search {
            m.insert("full_text_search".into(), fts.to_json());
        }
        if self.ann || matches!(self.ty, AttrType::Vector { .. }) {
            m.insert("ann".into(), Json::Bool(true));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Json::Object(m)
    }

    /// The distance metric of a vector attribute's `ann: {"distance_metric": ...}`, if given.
    pub fn ann_metric(&self) -> Option<crate::model::DistanceMetric> {
        let m = self.extra.get("ann")?.get("distance_metric")?.as_str()?;
        crate::model::DistanceMetric::parse(m).ok()
    }

    /// The metric a named or multi-vector attribute is indexed and ranked in: its own
    /// (`ann.distance_metric`, pinned at creation), else the namespace's, else cosine distance.
    pub fn vector_metric(
        &self,
        namespace: Option<crate::model::DistanceMetric>,
    ) -> crate::model::DistanceMetric {
        self.ann_metric().or(namespace).unwrap_or(crate::model::DistanceMetric::CosineDistance)
    }

    /// Whether a multi-vector attribute has `ann: {"late_interaction": true}` (a MUVERA index).
    pub fn late_interaction(&self) -> bool {
        self.ann
            && self.extra.get("ann").and_then(|a| a.get(LATE_INTERACTION)).and_then(Json::as_bool)
                == Some(true)
    }

    /// Merge an update into this attribute: the type may not change, nor an ANN metric.
    pub fn merge(&mut self, name: &str, update: AttrSchema) -> Result<(), ModelError> {
        if update.ty != self.ty {
            return Err(ModelError::InvalidSchema(format!(
                "attribute {name:?} has type {}; it cannot change to {}",
                self.ty.name(),
                update.ty.name()
            )));
        }
        if let (Some(cur), Some(new)) = (self.ann_metric(), update.ann_metric()) {
            if cur != new {
                return Err(ModelError::InvalidSchema(format!(
                    "attribute {name:?} has ann.distance_metric {}; it cannot change to {}",
                    cur.as_str(),
                    new.as_str()
                )));
            }
        }
        if update.filterable.is_some() {
            self.filterable = update.filterable;
        }
        if update.full_text_search.is_some() {
            self.full_text_search = update.full_text_search;
        }
        self.ann |= update.ann;
        let mut extra = update.extra;
        // An `ann` object merges member by member, so an update never drops the pinned metric.
        if let (Some(Json::Object(cur)), Some(Json::Object(new))) =
            (self.extra.get_mut("ann"), extra.get_mut("ann"))
        {
            cur.extend(std::mem::take(new));
            extra.remove("ann");
        }
        if extra.get(EMBED).is_some_and(Json::is_null) {
            extra.remove(EMBED);
            self.extra.remove(EMBED);
        }
        self.extra.extend(extra);
        Ok(())
    }

    /// This attribute as a new schema entry: an `embed: null` (a removal) names nothing to remove.
    pub fn settled(mut self) -> AttrSchema {
        if self.extra.get(EMBED).is_some_and(Json::is_null) {
            self.extra.remove(EMBED);
        }
        self
    }

    /// The `embed` option of string attribute `name`, if set (None for `embed: null`).
    pub fn embed_spec(&self, name: &str) -> Option<EmbedSpec> {
        EmbedSpec::from_json(name, self.extra.get(EMBED)?)
    }
}

/// Schema key of a string attribute embedded by a local model at write time.
pub const EMBED: &str = "embed";

/// Prefix of the computed vector attribute an embedded attribute fills when its `embed`
/// names no `attribute`: `text` → `$embed_text`.
pub const EMBED_PREFIX: &str = "$embed_";

/// How a string attribute is embedded: by which model, into which vector attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmbedSpec {
    /// The configured model's name.
    pub model: String,
    /// The vector attribute that holds the embedding (`$embed_<attr>` unless named).
    pub target: String,
    /// The dimension the schema asked for, if it did (must be the model's).
    pub dims: Option<usize>,
}

impl EmbedSpec {
    /// The spec a (checked) `embed` value gives for attribute `name`.
    fn from_json(name: &str, v: &Json) -> Option<EmbedSpec> {
        let default_target = || format!("{EMBED_PREFIX}{name}");
        match v {
            Json::String(model) => {
                Some(EmbedSpec { model: model.clone(), target: default_target(), dims: None })
            }
            Json::Object(o) => Some(EmbedSpec {
                model: o.get("model")?.as_str()?.to_owned(),
                target: o.get("attribute").and_then(Json::as_str).map_or_else(default_target, str::to_owned),
                dims: o.get("dims").and_then(Json::as_u64).and_then(|d| usize::try_from(d).ok()),
            }),
            _ => None,
        }
    }
}

/// `embed` given: null, a model name, or `{model, attribute?, dims?}`, on a `string` attribute.
fn check_embed(name: &str, ty: &AttrType, v: &Json) -> Result<(), ModelError> {
    let bad = |why: String| ModelError::InvalidSchema(format!("{name}.embed: {why}"));
    if v.is_null() {
        return Ok(());
    }
    if *ty != AttrType::Scalar(ScalarType::String) {
        return Err(bad(format!("a model embeds a string attribute, not {}", ty.name())));
    }
    let model = match v {
        Json::String(m) => m.as_str(),
        Json::Object(o) => {
            for (k, val) in o {
                match k.as_str() {
                    "model" => {}
                    "attribute" => {
                        let a = val.as_str().ok_or_else(|| bad("attribute must be a string".into()))?;
                        let ok = !a.is_empty()
                            && a.len() <= crate::model::MAX_ATTRIBUTE_NAME_BYTES
                            && !a.starts_with('$')
                            && a != name
                            && a != crate::model::ID_ATTR
                            && a != crate::model::VECTOR_ATTR;
                        if !ok {
                            return Err(bad(format!(
                                "attribute {a:?} cannot hold the embedding (a new vector attribute's name: \
                                 not empty, not id, vector, the attribute itself or a name starting with '$')"
                            )));
                        }
                    }
                    "dims" => {
                        val.as_u64()
                            .filter(|d| (1..=crate::model::MAX_VECTOR_DIM as u64).contains(d))
                            .ok_or_else(|| bad("dims must be a positive integer".into()))?;
                    }
                    other => {
                        return Err(bad(format!("unsupported option {other:?} (model, attribute, dims)")))
                    }
                }
            }
            o.get("model").and_then(Json::as_str).ok_or_else(|| bad("model (a string) is required".into()))?
        }
        _ => return Err(bad("a model name, {\"model\": ...} or null".into())),
    };
    if model.is_empty() {
        return Err(bad("the model name is empty".into()));
    }
    Ok(())
}

/// The `ann` option that asks for a MUVERA index on a multi-vector attribute.
pub const LATE_INTERACTION: &str = "late_interaction";

/// `ann` given as an object: only on a vector or multi-vector attribute, with a known
/// `distance_metric`; `late_interaction` (a bool) only on a multi-vector one.
fn check_ann_config(name: &str, ty: &AttrType, v: &Json) -> Result<(), ModelError> {
    let bad = |why: String| ModelError::InvalidSchema(format!("{name}.ann: {why}"));
    let multi = matches!(ty, AttrType::MultiVector { .. });
    if !matches!(ty, AttrType::Vector { .. }) && !multi {
        return Err(bad(format!(
            "an ANN configuration needs a vector type ([N]f32, [N]f16 or [][N]f32), not {}",
            ty.name()
        )));
    }
    for (k, val) in v.as_object().into_iter().flatten() {
        match k.as_str() {
            "distance_metric" => {
                let m = val.as_str().ok_or_else(|| bad("distance_metric must be a string".into()))?;
                crate::model::DistanceMetric::parse(m).map_err(|e| bad(e.to_string()))?;
            }
            LATE_INTERACTION if !multi => {
                return Err(bad(format!(
                    "late_interaction applies to a vector array attribute ([][N]f32), not {}",
                    ty.name()
                )))
            }
            LATE_INTERACTION if !val.is_boolean() => {
                return Err(bad("late_interaction must be a bool".into()))
            }
            LATE_INTERACTION => {}
            other => {
                return Err(bad(format!("unsupported option {other:?} (distance_metric, late_interaction)")))
            }
        }
    }
    Ok(())
}

/// An ANN index on a multi-vector attribute is a MUVERA index, asked for by
/// `ann: {"late_interaction": true}`; plain `ann: true` on one is refused.
fn check_late_interaction(name: &str, s: &AttrSchema) -> Result<(), ModelError> {
    if matches!(s.ty, AttrType::MultiVector { .. }) && s.ann && !s.late_interaction() {
        return Err(ModelError::InvalidSchema(format!(
            "{name}.ann: an ANN index on a vector array attribute ({}) needs {{\"late_interaction\": true}}",
            s.ty.name()
        )));
    }
    Ok(())
}

/// A namespace schema: attribute name → schema.
pub type Schema = BTreeMap<String, AttrSchema>;

/// The element type of `attr` when its values have one canonical spelling
/// that differs from how a client may send them: `uuid` (lower case) and
/// `datetime` (UTC milliseconds), scalar or array. Stored values and the
/// literals compared with them are both canonical.
pub fn canonical_kind(schema: &Schema, attr: &str) -> Option<ScalarType> {
    match schema.get(attr)?.ty {
        AttrType::Scalar(t @ (ScalarType::Uuid | ScalarType::Datetime))
        | AttrType::Array(t @ (ScalarType::Uuid | ScalarType::Datetime)) => Some(t),
        _ => None,
    }
}

/// Parse a whole schema map (`{"attr": "type" | {...}}`).
pub fn parse_schema(v: &Json) -> Result<Schema, ModelError> {
    let m = v.as_object().ok_or_else(|| ModelError::InvalidSchema("schema must be an object".into()))?;
    let mut out = Schema::new();
    for (name, entry) in m {
        if name.is_empty() || name.len() > crate::model::MAX_ATTRIBUTE_NAME_BYTES {
            return Err(ModelError::InvalidSchema(format!("bad attribute name {name:?}")));
        }
        out.insert(name.clone(), AttrSchema::from_json(name, entry)?);
    }
    Ok(out)
}

/// Render a schema as turbopuffer JSON.
pub fn schema_to_json(s: &Schema) -> Json {
    Json::Object(s.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in [
            "string", "int", "uint", "float", "uuid", "datetime", "bool", "[]string", "[]int", "[384]f32",
            "[8]f16", "{}f16",
        ] {
            assert_eq!(AttrType::parse(t).unwrap().name(), t);
        }
        assert!(AttrType::parse("[0]f32").is_err());
        assert!(AttrType::parse("text").is_err());
    }

    #[test]
    fn fts_attributes_are_not_filterable_by_default() {
        let s = AttrSchema::from_json("body", &json!({"type": "string", "full_text_search": true})).unwrap();
        assert!(!s.is_filterable());
        let s = AttrSchema::from_json(
            "body",
            &json!({"type": "string", "full_text_search": true, "filterable": true}),
        )
        .unwrap();
        assert!(s.is_filterable());
        assert!(AttrSchema::from_json("n", &json!({"type": "int", "full_text_search": true})).is_err());
    }

    #[test]
    fn named_vector_schemas_and_values() {
        use crate::model::DistanceMetric;
        let s = AttrSchema::from_json(
            "t",
            &json!({"type": "[2]f32", "ann": {"distance_metric": "euclidean_squared"}}),
        )
        .unwrap();
        assert_eq!(s.ann_metric(), Some(DistanceMetric::EuclideanSquared));
        assert_eq!(s.to_json()["ann"], json!({"distance_metric": "euclidean_squared"}), "rendered as sent");
        assert_eq!(
            AttrSchema::from_json("t", &json!({"type": "[2]f16", "ann": true})).unwrap().ann_metric(),
            None
        );
        for bad in [
            json!({"type": "[2]f32", "ann": {"distance_metric": "dot"}}),
            json!({"type": "[2]f32", "ann": {"late_interaction": true}}),
            json!({"type": "int", "ann": {"distance_metric": "cosine_distance"}}),
        ] {
            assert!(AttrSchema::from_json("t", &bad).is_err(), "{bad}");
        }
        let mut cur = s.clone();
        let other = AttrSchema::from_json(
            "t",
            &json!({"type": "[2]f32", "ann": {"distance_metric": "cosine_distance"}}),
        )
        .unwrap();
        assert!(cur.merge("t", other).is_err(), "a metric never changes");
        assert!(cur
            .merge("t", AttrSchema::from_json("t", &json!({"type": "[2]f32", "ann": true})).unwrap())
            .is_ok());
        assert_eq!(cur.ann_metric(), Some(DistanceMetric::EuclideanSquared));

        let ty = AttrType::Vector { dim: 2, f16: false };
        let floats = Value::Array(vec![Value::Float(0.5), Value::Int(-2)]);
        assert_eq!(dense_from("t", 2, &floats).unwrap(), Some(Value::Dense(vec![0.5, -2.0].into())));
        let b64 = {
            use base64::Engine as _;
            let bytes: Vec<u8> = [1.5f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::Str(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        assert_eq!(dense_from("t", 2, &b64).unwrap(), Some(Value::Dense(vec![1.5, 2.0].into())));
        assert_eq!(dense_from("t", 2, &Value::Null).unwrap(), None);
        for bad in [
            Value::Array(vec![Value::Float(1.0)]),
            Value::Array(vec![Value::Str("x".into()), Value::Int(1)]),
            Value::Array(vec![Value::Float(1e300), Value::Int(1)]),
            Value::Str("not base64!".into()),
            Value::Bool(true),
        ] {
            let e = dense_from("title_vec", 2, &bad).unwrap_err().to_string();
            assert!(e.contains("\"title_vec\""), "{e}");
        }
        assert!(ty.accepts(&Value::Dense(vec![1.0, 2.0].into())));
        assert!(!ty.accepts(&Value::Dense(vec![1.0].into())));
        assert!(!ty.accepts(&floats), "only converted values are stored");
    }

    #[test]
    fn inference_and_acceptance() {
        assert_eq!(AttrType::infer(&Value::Int(3)), Some(AttrType::Scalar(ScalarType::Int)));
        assert_eq!(
            AttrType::infer(&Value::Int(i128::from(u64::MAX))),
            Some(AttrType::Scalar(ScalarType::Uint))
        );
        let float = AttrType::Scalar(ScalarType::Float);
        assert!(float.accepts(&Value::Int(3)));
        assert!(!AttrType::Scalar(ScalarType::Int).accepts(&Value::Float(3.5)));
        assert!(!AttrType::Scalar(ScalarType::Uint).accepts(&Value::Int(-1)));
    }
}
