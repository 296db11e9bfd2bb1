//! Sparse-vector (`SparseKNN`) postings of one attribute of one segment: for each
//! dimension key, the rows that carry it and their weights. Scoring is the dot
//! product of the query's weights with the row's weights (higher is better).
//!
//! Section format (segment section kind 18, one per sparse attribute), all
//! integers little-endian:
//! ```text
//! +0  magic "TPSPARSE" | +8 version u32 (=1) | +12 attr_len u32
//! +16 num_keys u32 | +20 rows u32 (rows covered) | +24 entries u32 | +28 reserved u32 (=0)
//! +32 attr name (attr_len bytes, UTF-8)
//!     key offsets ((num_keys + 1) × u32, into the key bytes; non-decreasing)
//!     list offsets ((num_keys + 1) × u32, into the entries; non-decreasing)
//!     key bytes (keys sorted bytewise, unique)
//!     entry rows (entries × u32, strictly increasing within a list)
//!     entry weights (entries × f32)
//!     crc32c u32 of every byte before it
//! ```
//!
//! Invariants:
//! - [`SparseIndex::open`] checks magic, version, crc, every length and that
//!   offsets are monotone and in bounds, so lookups never panic on bad bytes.
//! - A row's score is accumulated over the query's keys in the query's order
//!   (`Σ q_k · w_k`, f32, left to right), exactly as [`dot`] computes it for an
//!   unindexed document, so indexed and unindexed rows score identically.

use std::collections::BTreeMap;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPSPARSE";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;

use crate::index::error::IndexError;

fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(crate::index::error::IndexSection::Sparse, what)
}

/// Builds the section of `attr` from `(row, sparse vector)` pairs (rows increasing).
pub fn build<'d>(
    attr: &str,
    rows: usize,
    docs: impl IntoIterator<Item = (u32, &'d [(String, f32)])>,
) -> Vec<u8> {
    let mut lists: BTreeMap<&'d str, Vec<(u32, f32)>> = BTreeMap::new();
    for (row, v) in docs {
        for (k, w) in v {
            if w.is_finite() && *w != 0.0 {
                lists.entry(k.as_str()).or_default().push((row, *w));
            }
        }
    }
    let mut key_offs = vec![0u32];
    let mut list_offs = vec![0u32];
    let mut key_bytes = Vec::new();
    let mut e_rows = Vec::new();
    let mut e_w = Vec::new();
    for (k, mut l) in lists {
        l.sort_by_key(|e| e.0);
        l.dedup_by_key(|e| e.0);
        key_bytes.extend_from_slice(k.as_bytes());
        key_offs.push(key_bytes.len() as u32);
        for (r, w) in l {
            e_rows.push(r);
            e_w.push(w);
        }
        list_offs.push(e_rows.len() as u32);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(attr.len() as u32).to_le_bytes());
    out.extend_from_slice(&((key_offs.len() - 1) as u32).to_le_bytes());
    out.extend_from_slice(&(rows.min(u32::MAX as usize) as u32).to_le_bytes());
    out.extend_from_slice(&(e_rows.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(attr.as_bytes());
    key_offs.iter().for_each(|o| out.extend_from_slice(&o.to_le_bytes()));
    list_offs.iter().for_each(|o| out.extend_from_slice(&o.to_le_bytes()));
    out.extend_from_slice(&key_bytes);
    e_rows.iter().for_each(|r| out.extend_from_slice(&r.to_le_bytes()));
    e_w.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    crate::codec::u32_at(b, i * 4).unwrap_or(0)
}

/// A zero-copy view of a sparse section.
#[derive(Debug, Clone, Copy)]
pub struct SparseIndex<'a> {
    attr: &'a str,
    num_keys: usize,
    key_offs: &'a [u8],
    list_offs: &'a [u8],
    key_bytes: &'a [u8],
    rows: &'a [u8],
    weights: &'a [u8],
    /// Checks each slice read after open (`crate::integrity`; None: unchecked).
    guard: Option<crate::integrity::FileGuard<'a>>,
}

impl<'a> SparseIndex<'a> {
    /// Opens and verifies a section (checksum included).
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Self::parse(bytes, true)
    }

    /// Opens a section whose bytes were already verified (a segment checks
    /// every section's checksum once, at open): structure only, no second
    /// crc pass.
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Self::parse(bytes, false)
    }

    fn parse(bytes: &'a [u8], check_crc: bool) -> Result<Self, IndexError> {
        let c = corrupt;
        if bytes.len() < HEADER_LEN + 4 || bytes[..8] != MAGIC {
            return Err(c("bad magic"));
        }
        let body = bytes.len() - 4;
        if check_crc && crc32c::crc32c(&bytes[..body]) != u32_at(&bytes[body..], 0) {
            return Err(c("checksum mismatch"));
        }
        let h = |i: usize| u32_at(&bytes[8..HEADER_LEN], i) as usize;
        if h(0) != VERSION as usize {
            return Err(c("unsupported version"));
        }
        let (attr_len, num_keys, entries) = (h(1), h(2), h(4));
        let mut pos = HEADER_LEN;
        let mut take = |n: usize| -> Result<&'a [u8], IndexError> {
            let end = pos.checked_add(n).ok_or(c("length overflow"))?;
            let s = bytes[..body].get(pos..end).ok_or(c("region out of bounds"))?;
            pos = end;
            Ok(s)
        };
        let attr = std::str::from_utf8(take(attr_len)?).map_err(|_| c("attr not utf-8"))?;
        let key_offs = take((num_keys + 1) * 4)?;
        let list_offs = take((num_keys + 1) * 4)?;
        let key_len = u32_at(key_offs, num_keys) as usize;
        let key_bytes = take(key_len)?;
        let rows = take(entries.checked_mul(4).ok_or(c("length overflow"))?)?;
        let weights = take(entries * 4)?;
        if pos != body || u32_at(list_offs, num_keys) as usize != entries {
            return Err(c("length mismatch"));
        }
        for i in 0..num_keys {
            if u32_at(key_offs, i) > u32_at(key_offs, i + 1)
                || u32_at(list_offs, i) > u32_at(list_offs, i + 1)
            {
                return Err(c("offsets not monotone"));
            }
        }
        Ok(SparseIndex { attr, num_keys, key_offs, list_offs, key_bytes, rows, weights, guard: None })
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

    fn key(&self, i: usize) -> &'a [u8] {
        let offs = self.checked(self.key_offs.get(i * 4..i * 4 + 8).unwrap_or_default());
        let (a, b) = (u32_at(offs, 0) as usize, u32_at(offs, 1) as usize);
        self.checked(self.key_bytes.get(a..b).unwrap_or_default())
    }

    /// The `(row, weight)` postings of a key.
    pub fn postings(&self, key: &str) -> impl Iterator<Item = (u32, f32)> + 'a {
        let (mut lo, mut hi) = (0usize, self.num_keys);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key.as_bytes() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let range = if lo < self.num_keys && self.key(lo) == key.as_bytes() {
            let offs = self.checked(self.list_offs.get(lo * 4..lo * 4 + 8).unwrap_or_default());
            u32_at(offs, 0) as usize..u32_at(offs, 1) as usize
        } else {
            0..0
        };
        let rows = self.checked(self.rows.get(range.start * 4..range.end * 4).unwrap_or_default());
        let weights = self.checked(self.weights.get(range.start * 4..range.end * 4).unwrap_or_default());
        (0..range.len()).map(move |i| (u32_at(rows, i), f32::from_bits(u32_at(weights, i))))
    }

    /// Every row with a positive-or-nonzero dot product with `query`
    /// (`(key, weight)` pairs), with its score, unsorted; `filter` (row → keep).
    pub fn scores(&self, query: &[(String, f32)], filter: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let mut acc: BTreeMap<u32, f32> = BTreeMap::new();
        for (k, qw) in query {
            for (row, w) in self.postings(k) {
                if filter(row) {
                    *acc.entry(row).or_insert(0.0) += qw * w;
                }
            }
        }
        acc.into_iter().collect()
    }
}

/// The dot product of a query with one document's sparse vector, summed in
/// query order (the same order [`SparseIndex::scores`] uses). None when no key
/// is shared.
pub fn dot(query: &[(String, f32)], doc: &[(String, f32)]) -> Option<f32> {
    let mut s = 0f32;
    let mut hit = false;
    for (k, qw) in query {
        if let Ok(i) = doc.binary_search_by(|(dk, _)| dk.as_str().cmp(k)) {
            let w = doc[i].1;
            if w.is_finite() && w != 0.0 {
                s += qw * w;
                hit = true;
            }
        }
    }
    hit.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_scores_match_dot() {
        let d0 = vec![("a".to_owned(), 1.0f32), ("b".to_owned(), 2.0)];
        let d1 = vec![("b".to_owned(), 0.5f32)];
        let d2: Vec<(String, f32)> = vec![];
        let bytes = build("s", 3, [(0u32, d0.as_slice()), (1, d1.as_slice()), (2, d2.as_slice())]);
        let ix = SparseIndex::open(&bytes).unwrap();
        assert_eq!(ix.attr(), "s");
        let q = vec![("b".to_owned(), 3.0f32), ("a".to_owned(), 1.0)];
        let mut got = ix.scores(&q, &|_| true);
        got.sort_by_key(|x| x.0);
        assert_eq!(got, vec![(0, dot(&q, &d0).unwrap()), (1, dot(&q, &d1).unwrap())]);
        assert_eq!(dot(&q, &d2), None);
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        assert!(SparseIndex::open(&bad).is_err());
        assert!(SparseIndex::open(&bytes[..20]).is_err());
    }
}
