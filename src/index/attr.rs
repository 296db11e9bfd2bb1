//! Attribute index of one filterable scalar attribute of one segment: a
//! sorted column of `(value key, row)` entries, so `Eq`/`In`/range filters
//! and `Glob` patterns with a literal prefix find their rows by binary search
//! instead of decoding every row.
//!
//! Keys are an order-preserving byte encoding of one value kind (all the
//! segment's values of the attribute have the same kind, else no section is
//! built): ints as big-endian i128 with the sign bit flipped, floats as the
//! usual total-order bit trick (with -0.0 folded into 0.0, since filters
//! treat them as equal), strings as their UTF-8 bytes, bools as one byte.
//! Bytewise key order then equals `Value::compare` within the kind.
//!
//! Section format (segment section kind 19, one per indexed attribute), all
//! integers little-endian:
//! ```text
//! +0  magic "TPATTRIX" | +8 version u32 (=1) | +12 attr_len u32
//! +16 kind u8 (1 int, 2 float, 3 string, 4 bool) | +17 reserved [u8; 3] (=0)
//! +20 entries u32 | +24 rows u32 (rows of the segment) | +28 reserved u32 (=0)
//! +32 attr name (attr_len bytes, UTF-8)
//!     key offsets ((entries + 1) × u32, into the key bytes; non-decreasing)
//!     entry rows (entries × u32)
//!     key bytes
//!     crc32c u32 of every byte before it
//! ```
//! Entries are sorted by (key bytes, row); rows without the attribute have no entry.
//!
//! Invariants:
//! - [`AttrIndex::open`] verifies magic, version, crc and every offset, so
//!   lookups never panic on bad bytes.
//! - A lookup returns exactly the rows whose value satisfies the condition
//!   for same-kind operands; callers use it only for same-kind operands and
//!   still evaluate the full filter on the returned rows.

use crate::model::Value;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPATTRIX";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;

use crate::index::error::IndexError;

fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(crate::index::error::IndexSection::Attribute, what)
}

/// The kind tag of a value, if it is indexable.
pub fn kind_of(v: &Value) -> Option<u8> {
    match v {
        Value::Int(_) => Some(1),
        Value::Float(_) => Some(2),
        Value::Str(_) => Some(3),
        Value::Bool(_) => Some(4),
        _ => None,
    }
}

/// The order-preserving key of an indexable value.
pub fn key_of(v: &Value) -> Option<Vec<u8>> {
    Some(match v {
        Value::Int(i) => most_significant_first((*i as u128) ^ (1u128 << 127), 16),
        Value::Float(f) => {
            let f = if *f == 0.0 { 0.0 } else { *f };
            let b = f.to_bits();
            let k = if b >> 63 == 1 { !b } else { b | (1u64 << 63) };
            most_significant_first(u128::from(k), 8)
        }
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Bool(b) => vec![u8::from(*b)],
        _ => return None,
    })
}

/// The low `n` bytes of `x`, most significant first: a sort key whose
/// bytewise order is numeric order (not a stored integer field, which are
/// all little-endian).
fn most_significant_first(x: u128, n: usize) -> Vec<u8> {
    (0..n).rev().map(|i| (x >> (8 * i)) as u8).collect()
}

/// Builds the section of `attr` from `(row, value)` pairs; None when the
/// values are not all of one indexable kind (or there are none).
pub fn build<'d>(
    attr: &str,
    rows: usize,
    values: impl IntoIterator<Item = (u32, &'d Value)>,
) -> Option<Vec<u8>> {
    let mut kind = None;
    let mut entries: Vec<(Vec<u8>, u32)> = Vec::new();
    for (row, v) in values {
        let k = kind_of(v)?;
        if *kind.get_or_insert(k) != k {
            return None;
        }
        entries.push((key_of(v)?, row));
    }
    let kind = kind?;
    entries.sort();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(attr.len() as u32).to_le_bytes());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&(rows.min(u32::MAX as usize) as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(attr.as_bytes());
    let mut off = 0u32;
    out.extend_from_slice(&off.to_le_bytes());
    for (k, _) in &entries {
        off = off.saturating_add(k.len() as u32);
        out.extend_from_slice(&off.to_le_bytes());
    }
    for (_, r) in &entries {
        out.extend_from_slice(&r.to_le_bytes());
    }
    for (k, _) in &entries {
        out.extend_from_slice(k);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    crate::codec::u32_at(b, i * 4).unwrap_or(0)
}

/// A zero-copy view of an attribute index section.
#[derive(Debug, Clone, Copy)]
pub struct AttrIndex<'a> {
    attr: &'a str,
    kind: u8,
    entries: usize,
    offs: &'a [u8],
    rows: &'a [u8],
    keys: &'a [u8],
    /// Checks each slice read after open against the segment's range checksums (a changed byte
    /// must fail the query, not drop a row from its result: `crate::integrity`).
    guard: Option<crate::integrity::FileGuard<'a>>,
}

impl<'a> AttrIndex<'a> {
    /// Opens and verifies a section.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        if bytes.len() < HEADER_LEN + 4 {
            return Err(corrupt("too short"));
        }
        let body = bytes.len() - 4;
        if crc32c::crc32c(&bytes[..body]) != u32_at(&bytes[body..], 0) {
            return Err(corrupt("checksum mismatch"));
        }
        Self::open_trusted(bytes)
    }

    /// Opens a section whose crc the caller verified (the segment reader
    /// checks every section's crc32c); the structure is still checked.
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        let c = corrupt;
        if bytes.len() < HEADER_LEN + 4 || bytes[..8] != MAGIC {
            return Err(c("bad magic"));
        }
        let body = bytes.len() - 4;
        let h = |i: usize| u32_at(&bytes[8..HEADER_LEN], i) as usize;
        if h(0) != VERSION as usize {
            return Err(c("unsupported version"));
        }
        let (attr_len, kind, entries) = (h(1), bytes[16], h(3));
        let mut pos = HEADER_LEN;
        let mut take = |n: usize| -> Result<&'a [u8], IndexError> {
            let end = pos.checked_add(n).ok_or(c("length overflow"))?;
            let s = bytes[..body].get(pos..end).ok_or(c("region out of bounds"))?;
            pos = end;
            Ok(s)
        };
        let attr = std::str::from_utf8(take(attr_len)?).map_err(|_| c("attr not utf-8"))?;
        let n4 = entries.checked_mul(4).ok_or(c("length overflow"))?;
        let offs = take(n4 + 4)?;
        let rows = take(n4)?;
        let keys = take(u32_at(offs, entries) as usize)?;
        if pos != body {
            return Err(c("length mismatch"));
        }
        if (0..entries).any(|i| u32_at(offs, i) > u32_at(offs, i + 1)) {
            return Err(c("offsets not monotone"));
        }
        Ok(AttrIndex { attr, kind, entries, offs, rows, keys, guard: None })
    }

    /// Check every slice read from now on with `guard` (the segment's; None: unchecked).
    pub fn guarded(mut self, guard: Option<crate::integrity::FileGuard<'a>>) -> Self {
        self.guard = guard;
        self
    }

    /// `sub`, checked first (a mismatch fails the evaluation's scope: a changed byte never drops a
    /// row from an answer).
    fn checked<T>(&self, sub: &'a [T]) -> &'a [T] {
        crate::integrity::checked(self.guard.as_ref(), sub)
    }

    /// The attribute this section covers.
    pub fn attr(&self) -> &'a str {
        self.attr
    }

    /// The kind of every indexed value ([`kind_of`]).
    pub fn kind(&self) -> u8 {
        self.kind
    }

    fn key(&self, i: usize) -> &'a [u8] {
        let offs = self.checked(self.offs.get(i * 4..i * 4 + 8).unwrap_or_default());
        let (a, b) = (u32_at(offs, 0) as usize, u32_at(offs, 1) as usize);
        self.checked(self.keys.get(a..b).unwrap_or_default())
    }

    /// The rows of entries `a..b`.
    fn rows_of(&self, a: usize, b: usize) -> Vec<u32> {
        let rows = self.checked(self.rows.get(a * 4..b.max(a) * 4).unwrap_or_default());
        (0..rows.len() / 4).map(|i| u32_at(rows, i)).collect()
    }

    /// First entry whose key is not `before` the probe.
    fn partition(&self, before: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(self.key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Rows whose key lies in the range (`None` = unbounded; bools say inclusive).
    pub fn range(&self, lower: Option<(&[u8], bool)>, upper: Option<(&[u8], bool)>) -> Vec<u32> {
        let a = match lower {
            None => 0,
            Some((k, true)) => self.partition(|x| x < k),
            Some((k, false)) => self.partition(|x| x <= k),
        };
        let b = match upper {
            None => self.entries,
            Some((k, true)) => self.partition(|x| x <= k),
            Some((k, false)) => self.partition(|x| x < k),
        };
        self.rows_of(a, b)
    }

    /// Rows whose (string) key starts with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> Vec<u32> {
        let a = self.partition(|x| x < prefix);
        let b = self.partition(|x| x < prefix || x.starts_with(prefix));
        self.rows_of(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_match_value_order() {
        let vals: Vec<Value> = [5i128, -3, 0, 5, 1 << 70, -(1 << 70)].into_iter().map(Value::Int).collect();
        let bytes = build("n", 6, vals.iter().enumerate().map(|(i, v)| (i as u32, v))).unwrap();
        let ix = AttrIndex::open(&bytes).unwrap();
        let k = |i: i128| key_of(&Value::Int(i)).unwrap();
        let mut eq = ix.range(Some((&k(5), true)), Some((&k(5), true)));
        eq.sort();
        assert_eq!(eq, vec![0, 3]);
        let mut lt = ix.range(None, Some((&k(0), false)));
        lt.sort();
        assert_eq!(lt, vec![1, 5]);
        let floats: Vec<Value> = [-1.5, -0.0, 0.0, 2.0].into_iter().map(Value::Float).collect();
        let fb = build("f", 4, floats.iter().enumerate().map(|(i, v)| (i as u32, v))).unwrap();
        let fx = AttrIndex::open(&fb).unwrap();
        let z = key_of(&Value::Float(0.0)).unwrap();
        assert_eq!(fx.range(Some((&z, true)), Some((&z, true))).len(), 2);
        assert_eq!(fx.range(None, Some((&z, false))), vec![0]);
        let strs: Vec<Value> =
            ["apple", "apricot", "banana", "ap"].into_iter().map(|s| Value::Str(s.into())).collect();
        let sb = build("s", 4, strs.iter().enumerate().map(|(i, v)| (i as u32, v))).unwrap();
        let sx = AttrIndex::open(&sb).unwrap();
        assert_eq!(sx.prefix(b"ap"), vec![3, 0, 1]);
        assert!(build("m", 2, [(0u32, &Value::Int(1)), (1, &Value::Float(1.0))]).is_none());
        let mut bad = sb.clone();
        bad[35] ^= 1;
        assert!(AttrIndex::open(&bad).is_err());
    }
}
