//! The attribute/value codec shared by WAL documents and segment rows: an attributes map is a
//! u32 count, then (name, value) pairs in strictly increasing name order; a value is a tag byte
//! then its payload (arrays hold scalars only). See `storage-format.md`.
//!
//! A dense vector (tag 7, a named vector attribute's value) is a u32 dimension (1..=
//! `MAX_VECTOR_DIM`) then that many little-endian f32, all finite: storage-format 3.1.
//!
//! A multi-vector value (tag 8, a `[][N]f32` attribute's vectors) is in `attrs_multi.rs`:
//! storage-format 3.2.
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
const VAL_DENSE: u8 = 7;
use super::attrs_multi::{multi_bytes, read_multi, write_multi, VAL_MULTI};

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
            Value::Dense(v) => {
                if nested {
                    self.violate(FormatError::Malformed("array values hold scalars only".into()));
                }
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                    self.violate(FormatError::Malformed("a dense vector holds 1 or more finite f32".into()));
                }
                self.w.u8(VAL_DENSE);
                let n = self.count("dense vector", v.len(), crate::model::MAX_VECTOR_DIM);
                self.w.u32(n);
                for x in v.iter() {
                    self.w.f32(*x);
                }
            }
            Value::Multi(vs) => {
                if let Some(e) = write_multi(&mut self.w, vs, nested) {
                    self.violate(e);
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
    if nested && matches!(tag, VAL_ARRAY | VAL_SPARSE | VAL_DENSE | VAL_MULTI) {
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
        VAL_DENSE => Value::Dense(crate::codec::f32s_le(dense_bytes(r)?).into()),
        VAL_MULTI => read_multi(r)?,
        t => return Err(FormatError::Malformed(format!("unknown value tag {t}"))),
    })
}

/// The payload of a dense vector (after its tag): checked dimension and finite elements.
fn dense_bytes<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], FormatError> {
    let n = r.count("dense vector", 4, crate::model::MAX_VECTOR_DIM)?;
    if n == 0 {
        return Err(FormatError::Malformed("a dense vector has at least one dimension".into()));
    }
    let b = r.bytes("dense vector", n * 4)?;
    if b.chunks_exact(4).any(|c| !f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()) {
        return Err(FormatError::Malformed("a dense vector holds finite f32 only".into()));
    }
    Ok(b)
}

/// Decode an attributes map leaving out dense vectors and vector arrays: what filters, ordering
/// and scoring read, so a row's named vectors cost them nothing. A dense value is skipped by its
/// length alone (its elements are not read: the bytes were checksummed, and [`decode_attrs`] is
/// the decoder that refuses a non-finite one), so this accepts every map `decode_attrs` accepts,
/// and more; a vector array is checked as it is skipped.
pub(crate) fn decode_attrs_without_dense(r: &mut Reader<'_>) -> Result<AttrMap, FormatError> {
    walk_attrs(r, &mut |name, r| {
        match r.peek_u8() {
            Some(VAL_DENSE) => {
                r.u8("value tag")?;
                let n = r.count("dense vector", 4, crate::model::MAX_VECTOR_DIM)?;
                r.bytes("dense vector", n * 4)?;
                return Ok(None);
            }
            Some(VAL_MULTI) => {
                r.u8("value tag")?;
                multi_bytes(r)?;
                return Ok(None);
            }
            _ => {}
        }
        Ok(Some((name.to_owned(), read_value(r, false)?)))
    })
    .map(|v| v.into_iter().collect())
}

/// The dense vector `attr` of an attributes map, if it holds one. The other values are
/// skipped by their lengths (nothing allocated for them); that one is decoded and checked.
pub(crate) fn find_dense(r: &mut Reader<'_>, attr: &str) -> Result<Option<Vec<f32>>, FormatError> {
    let mut found = None;
    walk_attrs(r, &mut |name, r| {
        if name != attr {
            skip_value(r, false)?;
        } else if let Value::Dense(d) = read_value(r, false)? {
            found = Some(d.to_vec());
        }
        Ok(None)
    })?;
    Ok(found)
}

/// Advances past one value, checking its structure (tags, nesting, lengths) but not its
/// contents (UTF-8, finiteness): what [`find_dense`] does with the values it does not return.
fn skip_value(r: &mut Reader<'_>, nested: bool) -> Result<(), FormatError> {
    let tag = r.u8("value tag")?;
    if nested && matches!(tag, VAL_ARRAY | VAL_SPARSE | VAL_DENSE | VAL_MULTI) {
        return Err(FormatError::Malformed("array values hold scalars only (nesting found)".into()));
    }
    match tag {
        VAL_NULL => {}
        VAL_BOOL => {
            r.bool("bool value")?;
        }
        VAL_INT => {
            r.bytes("int value", 16)?;
        }
        VAL_FLOAT => {
            r.bytes("float value", 8)?;
        }
        VAL_STR => {
            let n = r.count("string value", 1, MAX_STRING_BYTES)?;
            r.bytes("string value", n)?;
        }
        VAL_ARRAY => {
            for _ in 0..r.count("array value", 1, usize::MAX)? {
                skip_value(r, true)?;
            }
        }
        VAL_SPARSE => {
            for _ in 0..r.count("sparse vector", MIN_SPARSE_ENTRY_BYTES, usize::MAX)? {
                let n = r.count("sparse vector key", 1, MAX_STRING_BYTES)?;
                r.bytes("sparse vector key", n)?;
                r.bytes("sparse vector weight", 4)?;
            }
        }
        VAL_DENSE => {
            let n = r.count("dense vector", 4, crate::model::MAX_VECTOR_DIM)?;
            r.bytes("dense vector", n * 4)?;
        }
        VAL_MULTI => {
            multi_bytes(r)?;
        }
        t => return Err(FormatError::Malformed(format!("unknown value tag {t}"))),
    }
    Ok(())
}

/// What [`walk_attrs`] hands each (name, reader at its value) to: consumes the value, returns
/// the entry to keep, if any.
type AttrVisitor<'v, 'a> =
    dyn FnMut(&str, &mut Reader<'a>) -> Result<Option<(String, Value)>, FormatError> + 'v;

/// The vector array `attr` of an attributes map, if it holds one (other values are
/// skipped by decoding them, then dropped).
pub(crate) fn find_multi(r: &mut Reader<'_>, attr: &str) -> Result<Option<Vec<Vec<f32>>>, FormatError> {
    let mut found = None;
    walk_attrs(r, &mut |name, r| {
        let v = read_value(r, false)?;
        if name == attr {
            if let Value::Multi(vs) = v {
                found = Some(vs);
            }
        }
        Ok(None)
    })?;
    Ok(found)
}

/// Walks an attributes map (names checked to strictly increase), handing each name and the
/// reader positioned at its value to `f`, which must consume the value.
#[allow(clippy::type_complexity)] // one visitor signature, used here only
fn walk_attrs<'a>(
    r: &mut Reader<'a>,
    f: &mut AttrVisitor<'_, 'a>,
) -> Result<Vec<(String, Value)>, FormatError> {
    let n = r.count("attributes", MIN_ATTR_BYTES, usize::MAX)?;
    let mut out = Vec::with_capacity(n);
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let name = next_name(r, &mut last)?;
        out.extend(f(name, r)?);
    }
    Ok(out)
}

/// The next attribute name of a map, checked to come after `last` (names strictly increase).
fn next_name<'a>(r: &mut Reader<'a>, last: &mut Option<&'a str>) -> Result<&'a str, FormatError> {
    let name = r.str("attribute name", MAX_STRING_BYTES)?;
    if last.is_some_and(|l| l >= name) {
        return Err(FormatError::Malformed(format!(
            "attribute {name:?} is out of order or duplicated (names must strictly increase)"
        )));
    }
    *last = Some(name);
    Ok(name)
}

pub(super) fn read_attrs(r: &mut Reader<'_>) -> Result<AttrMap, FormatError> {
    let n = r.count("attributes", MIN_ATTR_BYTES, usize::MAX)?;
    let mut attrs = AttrMap::with_capacity(n);
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let name = next_name(r, &mut last)?;
        let v = read_value(r, false)?;
        attrs.insert(name.to_owned(), v);
    }
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_payload(n: u32, xs: &[f32]) -> Vec<u8> {
        let mut p = vec![VAL_DENSE];
        p.extend_from_slice(&n.to_le_bytes());
        for x in xs {
            p.extend_from_slice(&x.to_le_bytes());
        }
        p
    }

    /// One attributes map `{"x": <payload>}`, encoded by hand.
    fn map_of(payload: &[u8]) -> Vec<u8> {
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(b'x');
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn dense_values_round_trip_and_malformed_ones_are_refused() {
        let ok = map_of(&dense_payload(2, &[1.0, -0.5]));
        let m = read_attrs(&mut Reader::new(&ok)).unwrap();
        assert_eq!(m.get("x"), Some(&Value::Dense(vec![1.0, -0.5].into())));
        let mut w = Writer::new();
        encode_attrs(&mut w, &m).unwrap();
        assert_eq!(w.into_inner(), ok, "canonical");
        assert_eq!(find_dense(&mut Reader::new(&ok), "x").unwrap(), Some(vec![1.0, -0.5]));
        assert_eq!(find_dense(&mut Reader::new(&ok), "y").unwrap(), None);
        // Skipped values of every kind keep the reader in step.
        let mut m = AttrMap::new();
        m.insert("a".into(), Value::Array(vec![Value::Str("é".into()), Value::Int(-3), Value::Null]));
        m.insert("b".into(), Value::Bool(true));
        m.insert("c".into(), Value::Sparse(vec![("k".into(), 0.5)]));
        m.insert("d".into(), Value::Float(1.5));
        m.insert("e".into(), Value::Dense(vec![2.0, 3.0].into()));
        m.insert("f".into(), Value::Dense(vec![4.0].into()));
        let mut w = Writer::new();
        encode_attrs(&mut w, &m).unwrap();
        let bytes = w.into_inner();
        assert_eq!(find_dense(&mut Reader::new(&bytes), "f").unwrap(), Some(vec![4.0]));
        assert_eq!(find_dense(&mut Reader::new(&bytes), "e").unwrap(), Some(vec![2.0, 3.0]));
        assert_eq!(find_dense(&mut Reader::new(&bytes), "a").unwrap(), None);
        for cut in 0..bytes.len() {
            assert!(find_dense(&mut Reader::new(&bytes[..cut]), "f").is_err(), "cut at {cut}");
        }
        assert!(decode_attrs_without_dense(&mut Reader::new(&ok)).unwrap().is_empty());
        let nested = {
            let mut p = vec![VAL_ARRAY];
            p.extend_from_slice(&1u32.to_le_bytes());
            p.extend(dense_payload(1, &[1.0]));
            p
        };
        for (why, payload) in [
            ("empty", dense_payload(0, &[])),
            ("NaN", dense_payload(2, &[1.0, f32::NAN])),
            ("infinite", dense_payload(1, &[f32::INFINITY])),
            ("longer than its bytes", dense_payload(1000, &[1.0])),
            ("over the dimension cap", dense_payload(u32::MAX, &[1.0])),
            ("nested in an array", nested),
        ] {
            let bytes = map_of(&payload);
            assert!(read_attrs(&mut Reader::new(&bytes)).is_err(), "{why}");
            let skips_elements = matches!(why, "empty" | "NaN" | "infinite");
            assert_eq!(
                decode_attrs_without_dense(&mut Reader::new(&bytes)).is_err(),
                !skips_elements,
                "{why} (skipping reads the length only)"
            );
            assert!(find_dense(&mut Reader::new(&bytes), "x").is_err(), "{why} (lookup)");
        }
    }
}
