//! tidepool's own binary encoding of a schema update (a [`Schema`]: attribute
//! name → [`AttrSchema`]) in WAL records; see `storage-format.md` 3.2.2.
//!
//! ```text
//! schema      := u32 n, n × (str name, attr_schema)       names strictly increasing
//! attr_schema := type, u8 filterable (0 unset, 1 false, 2 true),
//!                u8 fts_tag (0 absent, 1 fts, 2 fts + u8 fts_flags), u8 ann (0/1), extra
//! type        := 0x01 scalar u8 scalar | 0x02 array u8 scalar
//!              | 0x03 vector u32 dim (≥ 1), u8 f16 (0/1) | 0x04 sparse u8 f16 (0/1)
//!              | 0x05 multivector u32 dim (≥ 1), u8 f16 (0/1)   ([][N]f32, late interaction)
//! scalar      := 1 string, 2 int, 3 uint, 4 float, 5 uuid, 6 datetime, 7 bool
//! fts         := str tokenizer, str language, u8 stemming, u8 remove_stopwords,
//!                u8 case_sensitive, u8 ascii_folding, f64 k1, f64 b, u32 max_token_length
//! fts_flags   := bit 0 index_prefixes; tag 2 only when some bit is set, no other bit
//! extra       := object (a JSON object, members in their stored order)
//! json        := 0 null | 1 false | 2 true | 3 u64 (a non-negative integer)
//!              | 4 i64 (a negative integer) | 5 f64 (finite) | 6 str
//!              | 7 array u32 n, n × json | 8 object u32 n, n × (str key, json)
//! ```
//!
//! Invariants:
//! - Self-contained: type and option tags are this file's own numbering, not
//!   turbopuffer's type strings, and nothing here parses API JSON. Every
//!   full-text option is stored resolved, so a later change of a default
//!   (tokenizer, BM25 parameters) never changes what a stored update meant.
//! - The decoder applies only structural bounds (lengths and counts bounded by
//!   the bytes present, JSON nesting at most [`MAX_JSON_NESTING`] as a stack
//!   guard, no duplicate names or keys); it checks no API rule (tokenizer
//!   names, BM25 ranges, vector dimension caps).
//! - The encoding is canonical: `encode(decode(b)) == b` for every accepted `b`;
//!   decoding never panics and never allocates from an unchecked length.

use serde_json::{Map, Number, Value as Json};

use crate::schema::{AttrSchema, AttrType, FullTextSearch, ScalarType, Schema};

use super::attrs::{Enc, MAX_STRING_BYTES};
use super::{FormatError, Reader, Writer};

/// Deepest JSON nesting in `extra` the codec writes and reads (the value
/// itself is level 1); serde_json's own parser stops at 128, so every option
/// a client could send fits.
pub const MAX_JSON_NESTING: usize = 128;

/// Largest encoded schema update embedded in a WAL record: the WAL body's
/// own cap.
pub const MAX_SCHEMA_BLOB_BYTES: usize = 1 << 30;

const TYPE_SCALAR: u8 = 1;
const TYPE_ARRAY: u8 = 2;
const TYPE_VECTOR: u8 = 3;
const TYPE_SPARSE: u8 = 4;
const TYPE_MULTIVECTOR: u8 = 5;

const FTS_ABSENT: u8 = 0;
const FTS_PRESENT: u8 = 1;
/// Full-text options followed by a flags byte (options added after tag 1 was
/// frozen); written only when a flag is set, so older updates keep their bytes.
const FTS_WITH_FLAGS: u8 = 2;
const FTS_FLAG_INDEX_PREFIXES: u8 = 1;

const FILTERABLE_UNSET: u8 = 0;
const FILTERABLE_FALSE: u8 = 1;
const FILTERABLE_TRUE: u8 = 2;

const JSON_NULL: u8 = 0;
const JSON_FALSE: u8 = 1;
const JSON_TRUE: u8 = 2;
const JSON_UINT: u8 = 3;
const JSON_NEG_INT: u8 = 4;
const JSON_FLOAT: u8 = 5;
const JSON_STRING: u8 = 6;
const JSON_ARRAY: u8 = 7;
const JSON_OBJECT: u8 = 8;

/// Smallest encoded entry: a 1-byte name, a scalar type, filterable, fts
/// tag, ann, and an empty extra object.
const MIN_ENTRY_BYTES: usize = 4 + 1 + 2 + 1 + 1 + 1 + 4;
/// Smallest encoded JSON value (null).
const MIN_JSON_BYTES: usize = 1;
/// Smallest object member: an empty key and a null.
const MIN_MEMBER_BYTES: usize = 4 + 1;

const SCALAR_TAGS: [(ScalarType, u8); 7] = [
    (ScalarType::String, 1),
    (ScalarType::Int, 2),
    (ScalarType::Uint, 3),
    (ScalarType::Float, 4),
    (ScalarType::Uuid, 5),
    (ScalarType::Datetime, 6),
    (ScalarType::Bool, 7),
];

/// Encode a schema update on its own.
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, FormatError> {
    let mut e = Enc { w: Writer::new(), violation: None };
    e.schema(schema);
    e.violation.map_or(Ok(e.w.into_inner()), Err)
}

/// Decode a whole buffer holding exactly one encoded schema update.
pub fn decode_schema(bytes: &[u8]) -> Result<Schema, FormatError> {
    let mut r = Reader::new(bytes);
    let s = read_schema(&mut r)?;
    r.finish("schema update")?;
    Ok(s)
}

/// Read a schema update embedded by [`Enc::schema_blob`].
pub(super) fn read_schema_blob(r: &mut Reader<'_>, what: &'static str) -> Result<Schema, FormatError> {
    let n = r.count(what, 1, MAX_SCHEMA_BLOB_BYTES)?;
    decode_schema(r.bytes(what, n)?)
}

impl Enc {
    /// A schema update as a u32 byte length and its encoding.
    pub(super) fn schema_blob(&mut self, what: &'static str, schema: &Schema) {
        let mut inner = Enc { w: Writer::new(), violation: None };
        inner.schema(schema);
        if let Some(v) = inner.violation {
            self.violate(v);
        }
        let bytes = inner.w.into_inner();
        let n = self.count(what, bytes.len(), MAX_SCHEMA_BLOB_BYTES);
        self.w.u32(n);
        self.w.bytes(&bytes);
    }

    fn schema(&mut self, schema: &Schema) {
        let n = self.count("schema attributes", schema.len(), usize::MAX);
        self.w.u32(n);
        for (name, attr) in schema {
            if name.is_empty() {
                self.violate(FormatError::Malformed("schema attribute name is empty".into()));
            }
            self.str("schema attribute name", name);
            self.attr_schema(attr);
        }
    }

    fn attr_schema(&mut self, a: &AttrSchema) {
        self.attr_type(a.ty);
        self.w.u8(match a.filterable {
            None => FILTERABLE_UNSET,
            Some(false) => FILTERABLE_FALSE,
            Some(true) => FILTERABLE_TRUE,
        });
        match &a.full_text_search {
            None => self.w.u8(FTS_ABSENT),
            Some(fts) => {
                let flags = if fts.index_prefixes { FTS_FLAG_INDEX_PREFIXES } else { 0 };
                self.w.u8(if flags == 0 { FTS_PRESENT } else { FTS_WITH_FLAGS });
                self.fts(fts);
                if flags != 0 {
                    self.w.u8(flags);
                }
            }
        }
        self.w.bool(a.ann);
        self.json_object(&a.extra, 1);
    }

    fn attr_type(&mut self, ty: AttrType) {
        match ty {
            AttrType::Scalar(s) => {
                self.w.u8(TYPE_SCALAR);
                self.w.u8(scalar_tag(s));
            }
            AttrType::Array(s) => {
                self.w.u8(TYPE_ARRAY);
                self.w.u8(scalar_tag(s));
            }
            AttrType::Vector { dim, f16 } | AttrType::MultiVector { dim, f16 } => {
                if dim == 0 {
                    self.violate(FormatError::Malformed("vector dimension 0".into()));
                }
                let multi = matches!(ty, AttrType::MultiVector { .. });
                self.w.u8(if multi { TYPE_MULTIVECTOR } else { TYPE_VECTOR });
                let dim = self.count("vector dimension", dim, usize::MAX);
                self.w.u32(dim);
                self.w.bool(f16);
            }
            AttrType::Sparse { f16 } => {
                self.w.u8(TYPE_SPARSE);
                self.w.bool(f16);
            }
        }
    }

    fn fts(&mut self, f: &FullTextSearch) {
        self.str("tokenizer", &f.tokenizer);
        self.str("language", &f.language);
        for b in [f.stemming, f.remove_stopwords, f.case_sensitive, f.ascii_folding] {
            self.w.bool(b);
        }
        self.w.f64(f.k1);
        self.w.f64(f.b);
        self.w.u32(f.max_token_length);
    }

    fn json_object(&mut self, m: &Map<String, Json>, depth: usize) {
        let n = self.count("json object", m.len(), usize::MAX);
        self.w.u32(n);
        for (k, v) in m {
            self.str("json key", k);
            self.json(v, depth + 1);
        }
    }

    fn json(&mut self, v: &Json, depth: usize) {
        if depth > MAX_JSON_NESTING {
            self.violate(FormatError::Malformed(format!(
                "schema option nests deeper than {MAX_JSON_NESTING}"
            )));
            self.w.u8(JSON_NULL);
            return;
        }
        match v {
            Json::Null => self.w.u8(JSON_NULL),
            Json::Bool(b) => self.w.u8(if *b { JSON_TRUE } else { JSON_FALSE }),
            Json::Number(n) => self.json_number(n),
            Json::String(s) => {
                self.w.u8(JSON_STRING);
                self.str("json string", s);
            }
            Json::Array(items) => {
                self.w.u8(JSON_ARRAY);
                let n = self.count("json array", items.len(), usize::MAX);
                self.w.u32(n);
                for item in items {
                    self.json(item, depth + 1);
                }
            }
            Json::Object(m) => {
                self.w.u8(JSON_OBJECT);
                self.json_object(m, depth);
            }
        }
    }

    fn json_number(&mut self, n: &Number) {
        if let Some(u) = n.as_u64() {
            self.w.u8(JSON_UINT);
            self.w.u64(u);
        } else if let Some(i) = n.as_i64() {
            self.w.u8(JSON_NEG_INT);
            self.w.u64(u64::from_le_bytes(i.to_le_bytes()));
        } else {
            // serde_json numbers are u64, i64 or finite f64.
            self.w.u8(JSON_FLOAT);
            self.w.f64(n.as_f64().unwrap_or(0.0));
        }
    }
}

fn scalar_tag(s: ScalarType) -> u8 {
    SCALAR_TAGS.iter().find(|(t, _)| *t == s).map_or(0, |(_, tag)| *tag)
}

fn read_scalar(r: &mut Reader<'_>) -> Result<ScalarType, FormatError> {
    let tag = r.u8("scalar type")?;
    SCALAR_TAGS
        .iter()
        .find(|(_, t)| *t == tag)
        .map(|(s, _)| *s)
        .ok_or_else(|| FormatError::Malformed(format!("unknown scalar type tag {tag}")))
}

fn read_schema(r: &mut Reader<'_>) -> Result<Schema, FormatError> {
    let n = r.count("schema attributes", MIN_ENTRY_BYTES, usize::MAX)?;
    let mut out = Schema::new();
    let mut last: Option<String> = None;
    for _ in 0..n {
        let name = r.str("schema attribute name", MAX_STRING_BYTES)?;
        if name.is_empty() {
            return Err(FormatError::Malformed("schema attribute name is empty".into()));
        }
        if last.as_deref().is_some_and(|l| l >= name) {
            return Err(FormatError::Malformed(format!(
                "schema attribute {name:?} is out of order or duplicated (names must strictly increase)"
            )));
        }
        let attr = read_attr_schema(r)?;
        out.insert(name.to_owned(), attr);
        last = Some(name.to_owned());
    }
    Ok(out)
}

fn read_attr_schema(r: &mut Reader<'_>) -> Result<AttrSchema, FormatError> {
    let ty = read_type(r)?;
    let filterable = match r.u8("filterable")? {
        FILTERABLE_UNSET => None,
        FILTERABLE_FALSE => Some(false),
        FILTERABLE_TRUE => Some(true),
        t => return Err(FormatError::Malformed(format!("filterable tag {t} is not 0, 1 or 2"))),
    };
    let full_text_search = match r.u8("full_text_search tag")? {
        FTS_ABSENT => None,
        FTS_PRESENT => Some(read_fts(r)?),
        FTS_WITH_FLAGS => {
            let mut fts = read_fts(r)?;
            match r.u8("full_text_search flags")? {
                FTS_FLAG_INDEX_PREFIXES => fts.index_prefixes = true,
                f => return Err(FormatError::Malformed(format!("full_text_search flags {f:#x}"))),
            }
            Some(fts)
        }
        t => return Err(FormatError::Malformed(format!("full_text_search tag {t} is not 0, 1 or 2"))),
    };
    let ann = r.bool("ann")?;
    let extra = read_json_object(r, 1)?;
    Ok(AttrSchema { ty, filterable, full_text_search, ann, extra })
}

fn read_type(r: &mut Reader<'_>) -> Result<AttrType, FormatError> {
    Ok(match r.u8("attribute type")? {
        TYPE_SCALAR => AttrType::Scalar(read_scalar(r)?),
        TYPE_ARRAY => AttrType::Array(read_scalar(r)?),
        tag @ (TYPE_VECTOR | TYPE_MULTIVECTOR) => {
            let dim = r.u32("vector dimension")?;
            if dim == 0 {
                return Err(FormatError::Malformed("vector dimension 0".into()));
            }
            let dim = usize::try_from(dim)
                .map_err(|_| FormatError::Malformed(format!("vector dimension {dim} does not fit")))?;
            let f16 = r.bool("vector f16")?;
            if tag == TYPE_MULTIVECTOR {
                AttrType::MultiVector { dim, f16 }
            } else {
                AttrType::Vector { dim, f16 }
            }
        }
        TYPE_SPARSE => AttrType::Sparse { f16: r.bool("sparse f16")? },
        t => return Err(FormatError::Malformed(format!("unknown attribute type tag {t}"))),
    })
}

fn read_fts(r: &mut Reader<'_>) -> Result<FullTextSearch, FormatError> {
    Ok(FullTextSearch {
        tokenizer: r.str("tokenizer", MAX_STRING_BYTES)?.to_owned(),
        language: r.str("language", MAX_STRING_BYTES)?.to_owned(),
        stemming: r.bool("stemming")?,
        remove_stopwords: r.bool("remove_stopwords")?,
        case_sensitive: r.bool("case_sensitive")?,
        ascii_folding: r.bool("ascii_folding")?,
        k1: r.f64("k1")?,
        b: r.f64("b")?,
        max_token_length: r.u32("max_token_length")?,
        index_prefixes: false,
    })
}

fn read_json_object(r: &mut Reader<'_>, depth: usize) -> Result<Map<String, Json>, FormatError> {
    let n = r.count("json object", MIN_MEMBER_BYTES, usize::MAX)?;
    let mut m = Map::with_capacity(n);
    for _ in 0..n {
        let key = r.str("json key", MAX_STRING_BYTES)?.to_owned();
        let v = read_json(r, depth + 1)?;
        if m.insert(key, v).is_some() {
            return Err(FormatError::Malformed("json object has a duplicated key".into()));
        }
    }
    Ok(m)
}

fn read_json(r: &mut Reader<'_>, depth: usize) -> Result<Json, FormatError> {
    if depth > MAX_JSON_NESTING {
        return Err(FormatError::Malformed(format!("schema option nests deeper than {MAX_JSON_NESTING}")));
    }
    Ok(match r.u8("json tag")? {
        JSON_NULL => Json::Null,
        JSON_FALSE => Json::Bool(false),
        JSON_TRUE => Json::Bool(true),
        JSON_UINT => Json::Number(Number::from(r.u64("json integer")?)),
        JSON_NEG_INT => {
            let i = i64::from_le_bytes(r.u64("json integer")?.to_le_bytes());
            if i >= 0 {
                return Err(FormatError::Malformed(format!("json negative-integer tag holds {i}")));
            }
            Json::Number(Number::from(i))
        }
        JSON_FLOAT => {
            let x = r.f64("json float")?;
            Json::Number(
                Number::from_f64(x)
                    .ok_or_else(|| FormatError::Malformed("json float is not finite".into()))?,
            )
        }
        JSON_STRING => Json::String(r.str("json string", MAX_STRING_BYTES)?.to_owned()),
        JSON_ARRAY => {
            let n = r.count("json array", MIN_JSON_BYTES, usize::MAX)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_json(r, depth + 1)?);
            }
            Json::Array(items)
        }
        JSON_OBJECT => Json::Object(read_json_object(r, depth)?),
        t => return Err(FormatError::Malformed(format!("unknown json tag {t}"))),
    })
}

#[cfg(test)]
#[path = "schema_codec_tests.rs"]
pub(crate) mod tests;
