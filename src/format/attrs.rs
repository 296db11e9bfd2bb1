//! The attribute/value codec shared by WAL documents and segment rows: an attributes map is a
//! u32 count, then (name, value) pairs in strictly increasing name order; a value is a tag byte
//! then its payload (arrays hold scalars only). See `storage-format.md`.
//!
//! Invariants: the encoding is canonical (one byte string per map); [`decode_attrs`] refuses
//! what [`encode_attrs`] refuses (over-long strings, nested arrays, unordered names) and never
//! allocates from an unchecked length.

use crate::model::{AttrMap, Value};

use super::{len_u64, FormatError, Reader, Writer};

/// Longest string (idempotency key, schema JSON, filter JSON, attribute
/// name or string value), in bytes.
pub const MAX_STRING_BYTES: usize = 16 << 20;

const VAL_NULL: u8 = 0;
const VAL_BOOL: u8 = 1;
const VAL_INT: u8 = 2;
const VAL_FLOAT: u8 = 3;
const VAL_STR: u8 = 4;
const VAL_ARRAY: u8 = 5;
const VAL_SPARSE: u8 = 6;

pub(super) const MIN_ATTR_BYTES: usize = 4 + 1; // empty name, null value
const MIN_SPARSE_ENTRY_BYTES: usize = 4 + 4;

/// Encode an *attributes* map (u32 count, then (name, value) pairs in name
/// order) as in a WAL document, refusing what [`decode_attrs`] would refuse
/// (over-long strings, nested arrays). Shared with the segment codec.
pub(crate) fn encode_attrs(w: &mut Writer, attrs: &AttrMap) -> Result<(), FormatError> {
    let mut e = Enc { w: std::mem::take(w), violation: None };
    e.attrs(attrs);
    *w = e.w;
    e.violation.map_or(Ok(()), Err)
}

/// Decode an *attributes* map written by [`encode_attrs`] (names strictly
/// increasing). Shared with the segment codec.
pub(crate) fn decode_attrs(r: &mut Reader<'_>) -> Result<AttrMap, FormatError> {
    read_attrs(r)
}

/// A writer that remembers the first limit violation (so `encode` stays
/// infallible and `try_encode` can refuse).
pub(super) struct Enc {
    pub(super) w: Writer,
    pub(super) violation: Option<FormatError>,
}

impl Enc {
    pub(super) fn violate(&mut self, e: FormatError) {
        if self.violation.is_none() {
            self.violation = Some(e);
        }
    }

    /// A u32 count; records a violation above `max` or `u32::MAX`.
    pub(super) fn count(&mut self, what: &'static str, n: usize, max: usize) -> u32 {
        let max = max.min(usize::try_from(u32::MAX).unwrap_or(usize::MAX));
        if n > max {
            self.violate(FormatError::TooLarge { what, len: len_u64(n), max: len_u64(max) });
        }
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub(super) fn str(&mut self, what: &'static str, s: &str) {
        let n = self.count(what, s.len(), MAX_STRING_BYTES);
        self.w.u32(n);
        self.w.bytes(s.as_bytes());
    }

    pub(super) fn value(&mut self, v: &Value, nested: bool) {
        match v {
            Value::Null => self.w.u8(VAL_NULL),
            Value::Bool(b) => {
                self.w.u8(VAL_BOOL);
                self.w.bool(*b);
            }
            Value::Int(i) => {
                self.w.u8(VAL_INT);
                self.w.i128(*i);
            }
            Value::Float(f) => {
                self.w.u8(VAL_FLOAT);
                self.w.f64(*f);
            }
            Value::Str(s) => {
                self.w.u8(VAL_STR);
                self.str("string value", s);
            }
            Value::Array(items) => {
                if nested {
                    self.violate(FormatError::Malformed("array values hold scalars only".into()));
                }
                self.w.u8(VAL_ARRAY);
                let n = self.count("array value", items.len(), usize::MAX);
                self.w.u32(n);
                for item in items {
                    self.value(item, true);
                }
            }
            Value::Sparse(pairs) => {
                if nested {
                    self.violate(FormatError::Malformed("array values hold scalars only".into()));
                }
                self.w.u8(VAL_SPARSE);
                let n = self.count("sparse vector", pairs.len(), usize::MAX);
                self.w.u32(n);
                for (k, w) in pairs {
                    self.str("sparse vector key", k);
                    self.w.f32(*w);
                }
            }
        }
    }

    pub(super) fn attrs(&mut self, attrs: &AttrMap) {
        let n = self.count("attributes", attrs.len(), usize::MAX);
        self.w.u32(n);
        for (name, v) in attrs {
            self.str("attribute name", name);
            self.value(v, false);
        }
    }
}

pub(super) fn read_value(r: &mut Reader<'_>, nested: bool) -> Result<Value, FormatError> {
    let tag = r.u8("value tag")?;
    if nested && matches!(tag, VAL_ARRAY | VAL_SPARSE) {
        return Err(FormatError::Malformed("array values hold scalars only (nesting found)".into()));
    }
    Ok(match tag {
        VAL_NULL => Value::Null,
        VAL_BOOL => Value::Bool(r.bool("bool value")?),
        VAL_INT => Value::Int(r.i128("int value")?),
        VAL_FLOAT => Value::Float(r.f64("float value")?),
        VAL_STR => Value::Str(r.str("string value", MAX_STRING_BYTES)?.to_owned()),
        VAL_ARRAY => {
            let n = r.count("array value", 1, usize::MAX)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_value(r, true)?);
            }
            Value::Array(items)
        }
        VAL_SPARSE => {
            let n = r.count("sparse vector", MIN_SPARSE_ENTRY_BYTES, usize::MAX)?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let k = r.str("sparse vector key", MAX_STRING_BYTES)?.to_owned();
                pairs.push((k, r.f32("sparse vector weight")?));
            }
            Value::Sparse(pairs)
        }
        t => return Err(FormatError::Malformed(format!("unknown value tag {t}"))),
    })
}

pub(super) fn read_attrs(r: &mut Reader<'_>) -> Result<AttrMap, FormatError> {
    let n = r.count("attributes", MIN_ATTR_BYTES, usize::MAX)?;
    let mut attrs = AttrMap::with_capacity(n);
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let name = r.str("attribute name", MAX_STRING_BYTES)?;
        if last.is_some_and(|l| l >= name) {
            return Err(FormatError::Malformed(format!(
                "attribute {name:?} is out of order or duplicated (names must strictly increase)"
            )));
        }
        last = Some(name);
        let v = read_value(r, false)?;
        attrs.insert(name.to_owned(), v);
    }
    Ok(attrs)
}
