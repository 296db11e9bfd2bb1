//! The persisted encoding of a namespace schema (`storage-format.md` 4.2,
//! 4.5): the body of a schema object and what a version 3 manifest carries
//! inline as `schema`, plus the legacy reader of the turbopuffer-shaped
//! schemas that manifests of versions 1 and 2 and schema objects of version 1
//! hold.
//!
//! Current shape (encoding 1), written and read field by field here:
//!
//! ```text
//! {"encoding":1,"attributes":[{"name":N,"type":{"kind":K,"element":E[,"dim":D]}
//!   [,"filterable":bool][,"full_text_search":{...}][,"ann":true][,"extra":{...}]}, ...]}
//! ```
//!
//! (the bracketed members are omitted when unset: no explicit `filterable`,
//! not full-text, no ANN index, no other options).
//!
//! Encoding 2 is encoding 1 plus the full-text member `"index_prefixes":true`
//! (omitted when off); a schema is written as encoding 2 exactly when some
//! attribute has it on, so every other schema keeps its encoding-1 bytes, and a
//! build that predates the option refuses such a schema instead of dropping it.
//!
//! Invariants:
//! - Decoding applies structural bounds only ([`check_schema`]: vector
//!   dimensions in 1..=`u32::MAX`, finite BM25 parameters, `extra` values at
//!   most [`MAX_EXTRA_DEPTH`] deep; no duplicate attribute names), never the
//!   API's rules: an unknown tokenizer, a target recall or a `k1` the API
//!   would refuse today still decodes, so a stored schema stays readable
//!   whatever the API later accepts. Nothing here calls `crate::schema`'s
//!   parsers.
//! - The encoder writes attributes in name order, each member present exactly
//!   when it is set, so the encoding of a schema is canonical (the commit
//!   unit compares a schema object's length and crc32c with it, 4.5).
//! - Whatever [`check_schema`] accepts encodes to text that [`decode_schema`]
//!   reads back equal; whatever either decoder (current or legacy) returns
//!   passes [`check_schema`], so a schema read from storage can always be
//!   written again.
//! - `extra` holds the API's other attribute options verbatim (the vector
//!   `target_recall` among them), as JSON values.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use crate::schema::{AttrSchema, AttrType, FullTextSearch, ScalarType, Schema};

use super::manifest_envelope::{envelope, malformed, open_envelope};
use super::FormatError;

/// The `magic` of a schema object (`schemas/{gen:020}-{cid}.json`, 4.5).
pub const SCHEMA_MAGIC: &str = "tidepool.schema";
/// The schema object format version this build writes (and the highest it
/// reads): 2, the body in tidepool's encoding. Version 1 (the turbopuffer
/// shape) is still read.
pub const SCHEMA_FORMAT_VERSION: u64 = 2;
/// The version of the schema encoding itself (the `encoding` member) for a
/// schema without `index_prefixes`: such schemas keep their encoding-1 bytes.
pub const SCHEMA_ENCODING: u64 = 1;
/// The encoding of a schema with an attribute whose `full_text_search` has
/// `index_prefixes` on (encoding 1 plus that member): a build that predates it
/// refuses the schema instead of re-encoding it without the option.
pub const SCHEMA_ENCODING_PREFIXES: u64 = 2;
/// Deepest `extra` value accepted (a scalar is depth 0, `[1]` depth 1): keeps
/// every stored schema inside `serde_json`'s nesting limit wherever it is
/// embedded (a CURRENT hint around a manifest around the schema).
pub const MAX_EXTRA_DEPTH: usize = 64;

/// The encoding of a schema: what a version 3 manifest stores as `schema`,
/// the body of a schema object, and what the inline limit measures.
pub fn schema_json(schema: &Schema) -> String {
    // Plain structs of strings, numbers, booleans and JSON values: this
    // cannot fail (a non-finite float becomes `null`, refused by
    // `check_schema` before any writer publishes it).
    serde_json::to_string(&StoredSchema(schema)).unwrap_or_default()
}

/// A schema object (4.5) around a schema's encoding ([`schema_json`]).
pub fn encode_schema_object(schema_json: &str) -> Vec<u8> {
    envelope(SCHEMA_MAGIC, SCHEMA_FORMAT_VERSION, schema_json)
}

/// Decode a schema object's envelope and body (version 1: the turbopuffer
/// shape; version 2: this module's encoding). The caller has checked that it
/// is the object the manifest names.
pub fn decode_schema_object_body(bytes: &[u8]) -> Result<Schema, FormatError> {
    let (version, body) = open_envelope("schema object", bytes, SCHEMA_MAGIC, SCHEMA_FORMAT_VERSION)?;
    if version == 1 {
        decode_legacy_schema_text(body)
    } else {
        decode_schema(body)
    }
}

/// Serializes a schema in the current encoding (see the module doc).
pub struct StoredSchema<'a>(pub &'a Schema);

impl Serialize for StoredSchema<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let attributes: Vec<AttrOut<'_>> = self.0.iter().map(|(name, a)| AttrOut::new(name, a)).collect();
        SchemaOut { encoding: encoding_of(self.0), attributes }.serialize(s)
    }
}

/// The lowest encoding that holds every option of `schema`.
fn encoding_of(schema: &Schema) -> u64 {
    let prefixes = schema.values().any(|a| a.full_text_search.as_ref().is_some_and(|f| f.index_prefixes));
    if prefixes {
        SCHEMA_ENCODING_PREFIXES
    } else {
        SCHEMA_ENCODING
    }
}

#[derive(Serialize)]
struct SchemaOut<'a> {
    encoding: u64,
    attributes: Vec<AttrOut<'a>>,
}

#[derive(Serialize)]
struct AttrOut<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    ty: TypeOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    filterable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_text_search: Option<FtsOut<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    ann: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    extra: &'a Map<String, Json>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl<'a> AttrOut<'a> {
    fn new(name: &'a str, a: &'a AttrSchema) -> Self {
        // Destructured without `..`: a new option cannot be forgotten here.
        let AttrSchema { ty, filterable, full_text_search, ann, extra } = a;
        AttrOut {
            name,
            ty: TypeOut::of(*ty),
            filterable: *filterable,
            full_text_search: full_text_search.as_ref().map(FtsOut::of),
            ann: *ann,
            extra,
        }
    }
}

#[derive(Serialize)]
struct TypeOut {
    kind: &'static str,
    element: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dim: Option<u64>,
}

impl TypeOut {
    fn of(ty: AttrType) -> Self {
        let float = |f16: bool| if f16 { "f16" } else { "f32" };
        match ty {
            AttrType::Scalar(s) => TypeOut { kind: "scalar", element: scalar_name(s), dim: None },
            AttrType::Array(s) => TypeOut { kind: "array", element: scalar_name(s), dim: None },
            AttrType::Vector { dim, f16 } => {
                TypeOut { kind: "vector", element: float(f16), dim: Some(dim as u64) }
            }
            AttrType::MultiVector { dim, f16 } => {
                TypeOut { kind: "multivector", element: float(f16), dim: Some(dim as u64) }
            }
            AttrType::Sparse { f16 } => TypeOut { kind: "sparse", element: float(f16), dim: None },
        }
    }
}

#[derive(Serialize)]
struct FtsOut<'a> {
    tokenizer: &'a str,
    language: &'a str,
    stemming: bool,
    remove_stopwords: bool,
    case_sensitive: bool,
    ascii_folding: bool,
    k1: f64,
    b: f64,
    max_token_length: u32,
    #[serde(skip_serializing_if = "is_false")]
    index_prefixes: bool,
}

impl<'a> FtsOut<'a> {
    fn of(f: &'a FullTextSearch) -> Self {
        let FullTextSearch {
            tokenizer,
            language,
            stemming,
            remove_stopwords,
            case_sensitive,
            ascii_folding,
            k1,
            b,
            max_token_length,
            index_prefixes,
        } = f;
        FtsOut {
            tokenizer,
            language,
            stemming: *stemming,
            remove_stopwords: *remove_stopwords,
            case_sensitive: *case_sensitive,
            ascii_folding: *ascii_folding,
            k1: *k1,
            b: *b,
            max_token_length: *max_token_length,
            index_prefixes: *index_prefixes,
        }
    }
}

/// Our names of the scalar element types (the same words turbopuffer uses
/// today, but ours: an API rename does not change them).
fn scalar_name(s: ScalarType) -> &'static str {
    match s {
        ScalarType::String => "string",
        ScalarType::Int => "int",
        ScalarType::Uint => "uint",
        ScalarType::Float => "float",
        ScalarType::Uuid => "uuid",
        ScalarType::Datetime => "datetime",
        ScalarType::Bool => "bool",
    }
}

fn scalar_of(name: &str) -> Option<ScalarType> {
    Some(match name {
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

fn f16_of(element: &str) -> Option<bool> {
    match element {
        "f16" => Some(true),
        "f32" => Some(false),
        _ => None,
    }
}

fn bad(why: impl std::fmt::Display) -> FormatError {
    malformed("schema", why)
}

// ---- reading the current encoding ----------------------------------------------------------

#[derive(Deserialize)]
struct SchemaIn<'a> {
    encoding: Option<u64>,
    #[serde(borrow)]
    attributes: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AttrIn {
    name: String,
    #[serde(rename = "type")]
    ty: TypeIn,
    #[serde(default)]
    filterable: Option<bool>,
    #[serde(default)]
    full_text_search: Option<FtsIn>,
    #[serde(default)]
    ann: bool,
    #[serde(default)]
    extra: Map<String, Json>,
}

#[derive(Deserialize)]
struct TypeIn {
    kind: String,
    element: String,
    dim: Option<u64>,
}

#[derive(Deserialize)]
struct FtsIn {
    tokenizer: String,
    language: String,
    stemming: bool,
    remove_stopwords: bool,
    case_sensitive: bool,
    ascii_folding: bool,
    k1: f64,
    b: f64,
    max_token_length: u32,
    #[serde(default)]
    index_prefixes: bool,
}

/// Decode a schema in the current encoding (a version 3 manifest's
/// `schema`, a version 2 schema object's body): the `encoding` first, then
/// the attributes field by field, then [`check_schema`].
pub fn decode_schema(text: &str) -> Result<Schema, FormatError> {
    let head: SchemaIn<'_> = serde_json::from_str(text).map_err(bad)?;
    match head.encoding {
        None => return Err(bad("missing encoding")),
        Some(SCHEMA_ENCODING | SCHEMA_ENCODING_PREFIXES) => {}
        Some(v) => {
            return Err(FormatError::UnsupportedVersion {
                what: "schema encoding",
                version: v,
                supported: SCHEMA_ENCODING_PREFIXES,
            })
        }
    }
    let raw = head.attributes.ok_or_else(|| bad("missing attributes"))?;
    let attrs: Vec<AttrIn> = serde_json::from_str(raw.get()).map_err(bad)?;
    let mut out = Schema::new();
    for a in attrs {
        let (name, attr) = a.into_attr()?;
        if out.contains_key(&name) {
            return Err(bad(format!("attribute {name:?} appears twice")));
        }
        out.insert(name, attr);
    }
    check_schema(&out)?;
    Ok(out)
}

impl AttrIn {
    fn into_attr(self) -> Result<(String, AttrSchema), FormatError> {
        let AttrIn { name, ty, filterable, full_text_search, ann, extra } = self;
        let ty = ty.into_type().map_err(|e| bad(format!("attribute {name:?}: {e}")))?;
        let full_text_search = full_text_search.map(FtsIn::into_fts);
        Ok((name, AttrSchema { ty, filterable, full_text_search, ann, extra }))
    }
}

impl TypeIn {
    fn into_type(self) -> Result<AttrType, String> {
        let unknown = || format!("unknown type {:?} of {:?}", self.kind, self.element);
        let ty = match (self.kind.as_str(), self.dim) {
            ("scalar", None) => scalar_of(&self.element).map(AttrType::Scalar),
            ("array", None) => scalar_of(&self.element).map(AttrType::Array),
            ("sparse", None) => f16_of(&self.element).map(|f16| AttrType::Sparse { f16 }),
            ("vector", Some(dim)) => {
                let dim = usize::try_from(dim).map_err(|_| format!("vector dimension {dim}"))?;
                f16_of(&self.element).map(|f16| AttrType::Vector { dim, f16 })
            }
            ("multivector", Some(dim)) => {
                let dim = usize::try_from(dim).map_err(|_| format!("vector dimension {dim}"))?;
                f16_of(&self.element).map(|f16| AttrType::MultiVector { dim, f16 })
            }
            _ => None,
        };
        ty.ok_or_else(unknown)
    }
}

impl FtsIn {
    fn into_fts(self) -> FullTextSearch {
        let FtsIn {
            tokenizer,
            language,
            stemming,
            remove_stopwords,
            case_sensitive,
            ascii_folding,
            k1,
            b,
            max_token_length,
            index_prefixes,
        } = self;
        FullTextSearch {
            tokenizer,
            language,
            stemming,
            remove_stopwords,
            case_sensitive,
            ascii_folding,
            k1,
            b,
            max_token_length,
            index_prefixes,
        }
    }
}

// ---- structural bounds -----------------------------------------------------------------------

/// The structural bounds every stored schema meets (checked by both decoders
/// and before every encode, so a writer never publishes a schema a reader
/// refuses): vector dimensions in 1..=`u32::MAX`, finite `k1` and `b`, and
/// `extra` values at most [`MAX_EXTRA_DEPTH`] deep. No API rule.
pub fn check_schema(schema: &Schema) -> Result<(), FormatError> {
    for (name, a) in schema {
        let why = |e: String| Err(bad(format!("attribute {name:?}: {e}")));
        if let AttrType::Vector { dim, .. } | AttrType::MultiVector { dim, .. } = a.ty {
            if dim == 0 || u32::try_from(dim).is_err() {
                return why(format!("vector dimension {dim} is outside 1..={}", u32::MAX));
            }
        }
        if let Some(f) = &a.full_text_search {
            if !f.k1.is_finite() || !f.b.is_finite() {
                return why(format!("full_text_search k1 {} / b {} are not finite", f.k1, f.b));
            }
        }
        if let Some((k, _)) = a.extra.iter().find(|(_, v)| depth(v) > MAX_EXTRA_DEPTH) {
            return why(format!("option {k:?} nests deeper than {MAX_EXTRA_DEPTH}"));
        }
    }
    Ok(())
}

/// Nesting depth of a JSON value (a scalar is 0). Values come from
/// `serde_json`, whose parser bounds nesting, so the recursion is bounded.
fn depth(v: &Json) -> usize {
    match v {
        Json::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Json::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

// ---- reading the legacy (turbopuffer-shaped) schemas ------------------------------------------

/// Decode a legacy schema from its JSON text (a version 1 schema object's body).
pub fn decode_legacy_schema_text(text: &str) -> Result<Schema, FormatError> {
    let v: Json = serde_json::from_str(text).map_err(bad)?;
    decode_legacy_schema(&v)
}

/// Decode a schema in the turbopuffer shape that manifests of versions 1
/// and 2 and schema objects of version 1 hold (what `schema_to_json` wrote:
/// attribute → `{"type": ..., "filterable": ..., "full_text_search": {...},
/// "ann": ..., other options}`), walking it structurally: every value the old
/// encoder wrote is accepted, and no API rule is applied (an unknown
/// tokenizer, an out-of-range option still decode).
pub fn decode_legacy_schema(v: &Json) -> Result<Schema, FormatError> {
    let entries = v.as_object().ok_or_else(|| bad("a legacy schema must be an object"))?;
    let mut out = Schema::new();
    for (name, entry) in entries {
        let attr = legacy_attr(entry).map_err(|e| bad(format!("attribute {name:?}: {e}")))?;
        out.insert(name.clone(), attr);
    }
    check_schema(&out)?;
    Ok(out)
}

fn legacy_attr(entry: &Json) -> Result<AttrSchema, String> {
    let m = match entry {
        Json::String(t) => return Ok(AttrSchema::of(legacy_type(t)?)),
        Json::Object(m) => m,
        _ => return Err("an entry must be a type string or an object".into()),
    };
    let ty = match m.get("type") {
        Some(Json::String(t)) => legacy_type(t)?,
        Some(_) => return Err("type must be a string".into()),
        // The old parser's rule: a full-text attribute without a type is a string.
        None if m.contains_key("full_text_search") => AttrType::Scalar(ScalarType::String),
        None => return Err("missing type".into()),
    };
    let mut a = AttrSchema::of(ty);
    for (k, val) in m {
        match k.as_str() {
            "type" => {}
            "filterable" => a.filterable = Some(val.as_bool().ok_or("filterable must be a bool")?),
            "full_text_search" => a.full_text_search = legacy_fts(val)?,
            "ann" => a.ann = !matches!(val, Json::Bool(false) | Json::Null),
            _ => {
                a.extra.insert(k.clone(), val.clone());
            }
        }
    }
    Ok(a)
}

/// A turbopuffer type string, read structurally (no dimension limit but the
/// structural one of [`check_schema`]).
fn legacy_type(s: &str) -> Result<AttrType, String> {
    let unknown = || format!("unknown type {s:?}");
    let ty = if let Some(rest) = s.strip_prefix("[]") {
        scalar_of(rest).map(AttrType::Array)
    } else if let Some(rest) = s.strip_prefix("{}") {
        f16_of(rest).map(|f16| AttrType::Sparse { f16 })
    } else if let Some(rest) = s.strip_prefix('[') {
        let (dim, element) = rest.split_once(']').ok_or_else(unknown)?;
        let dim: usize = dim.parse().map_err(|_| unknown())?;
        f16_of(element).map(|f16| AttrType::Vector { dim, f16 })
    } else {
        scalar_of(s).map(AttrType::Scalar)
    };
    ty.ok_or_else(unknown)
}

/// The options a legacy `full_text_search` object leaves out take these
/// values: the API's defaults when the legacy formats were frozen, spelled
/// out here so that a later change of the API's defaults does not change
/// what a stored schema means.
pub fn legacy_fts_defaults() -> FullTextSearch {
    FullTextSearch {
        tokenizer: "word_v4".into(),
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

/// `full_text_search` as the old encoder wrote it (`true`, `false`/null, or
/// an object of options over the defaults), any option value of the right
/// JSON kind accepted.
fn legacy_fts(v: &Json) -> Result<Option<FullTextSearch>, String> {
    let m = match v {
        Json::Bool(false) | Json::Null => return Ok(None),
        Json::Bool(true) => return Ok(Some(legacy_fts_defaults())),
        Json::Object(m) => m,
        _ => return Err("full_text_search must be a bool or an object".into()),
    };
    let mut f = legacy_fts_defaults();
    for (k, val) in m {
        let wrong = || format!("full_text_search option {k:?} has the wrong kind of value");
        match k.as_str() {
            "tokenizer" => val.as_str().ok_or_else(wrong)?.clone_into(&mut f.tokenizer),
            "language" => val.as_str().ok_or_else(wrong)?.clone_into(&mut f.language),
            "stemming" => f.stemming = val.as_bool().ok_or_else(wrong)?,
            "remove_stopwords" => f.remove_stopwords = val.as_bool().ok_or_else(wrong)?,
            "case_sensitive" => f.case_sensitive = val.as_bool().ok_or_else(wrong)?,
            "ascii_folding" => f.ascii_folding = val.as_bool().ok_or_else(wrong)?,
            "k1" => f.k1 = val.as_f64().ok_or_else(wrong)?,
            "b" => f.b = val.as_f64().ok_or_else(wrong)?,
            "max_token_length" => {
                f.max_token_length = val.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(wrong)?;
            }
            _ => return Err(format!("unknown full_text_search option {k:?}")),
        }
    }
    Ok(Some(f))
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
