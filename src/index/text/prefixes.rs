//! Term prefixes for search-as-you-type (`full_text_search.index_prefixes`, section
//! version 2).
//!
//! A prefix `P` is scored as one pseudo-term: its tf in a row is the number of the
//! row's tokens starting with `P` (bytewise), its document frequency the number of
//! rows holding at least one. [`TextIndex::prefix_postings`] gives that list for any
//! `P`, from one of two sources that always agree:
//! - the prefix dictionary, for `P` of 1..=`max_chars` chars: for every such prefix of
//!   some term, the union of its terms' postings, tf summed per row, precomputed at
//!   build (one lookup, however many terms share the prefix);
//! - otherwise (a longer `P`, or a version 1 section) the union of the term
//!   dictionary's contiguous range of terms starting with `P`, built at query time.
//!
//! Either way the list is complete: every row with a term starting with `P` is in it.
//!
//! # Region layout (version 2, after the term postings, before the crc32c)
//! ```text
//! +0 max_chars u32 (≥ 1) | +4 num_prefixes u32 | +8 prefix_bytes_len u64
//! +16 prefix_postings_len u64
//! +24 prefix offsets ((num_prefixes + 1) × u32), prefix infos (num_prefixes × 16),
//!     prefix bytes (sorted bytewise, unique), prefix postings (the term postings' format)
//! ```
//! Invariants: the builder writes every prefix of 1..=`max_chars` whole chars of every
//! term and nothing else; decoding is bounded like the term dictionary's (corrupt
//! bytes give [`IndexError`], never a panic).

use std::borrow::Cow;

use super::*;

/// Bytes of the region header.
const REGION_HEADER_LEN: usize = 24;

/// The first `n` chars of `term`, if it has at least `n`.
fn char_prefix(term: &str, n: usize) -> Option<&str> {
    match term.char_indices().nth(n) {
        Some((at, _)) => Some(&term[..at]),
        None => (term.chars().count() == n).then_some(term),
    }
}

/// The union of postings lists, tf summed per row, rows increasing.
pub(super) fn union_postings(lists: Vec<Vec<(u32, u32)>>) -> Vec<(u32, u32)> {
    if lists.len() == 1 {
        return lists.into_iter().next().unwrap_or_default();
    }
    let mut all: Vec<(u32, u32)> = lists.into_iter().flatten().collect();
    all.sort_unstable_by_key(|p| p.0);
    all.dedup_by(|a, b| {
        if a.0 == b.0 {
            b.1 = b.1.saturating_add(a.1);
            true
        } else {
            false
        }
    });
    all
}

/// Appends the prefix region for `terms` (sorted bytewise, unique) whose postings
/// are `lists` (parallel, rows increasing, tf ≥ 1).
pub(super) fn write_prefix_region(
    terms: &[&str],
    lists: &[&[(u32, u32)]],
    norms: &[u8],
    max_chars: u32,
    out: &mut Vec<u8>,
) {
    let bp = BitPacker4x::new();
    let mut entries: Vec<(&str, u32, Vec<u8>)> = Vec::new();
    for len in 1..=max_chars as usize {
        let mut i = 0;
        while i < terms.len() {
            let Some(p) = char_prefix(terms[i], len) else {
                i += 1;
                continue;
            };
            // Terms starting with `p` are contiguous in bytewise order.
            let mut j = i + 1;
            while j < terms.len() && terms[j].as_bytes().starts_with(p.as_bytes()) {
                j += 1;
            }
            let list = union_postings(lists[i..j].iter().map(|l| l.to_vec()).collect());
            let mut bytes = Vec::new();
            encode_postings(&bp, &list, norms, &mut bytes);
            entries.push((p, list.len() as u32, bytes));
            i = j;
        }
    }
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let key_bytes: usize = entries.iter().map(|e| e.0.len()).sum();
    let postings_len: usize = entries.iter().map(|e| e.2.len()).sum();
    out.extend_from_slice(&max_chars.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&(key_bytes as u64).to_le_bytes());
    out.extend_from_slice(&(postings_len as u64).to_le_bytes());
    let mut at = 0u32;
    out.extend_from_slice(&at.to_le_bytes());
    for (p, _, _) in &entries {
        at += p.len() as u32;
        out.extend_from_slice(&at.to_le_bytes());
    }
    let mut off = 0u64;
    for (_, df, bytes) in &entries {
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&df.to_le_bytes());
        off += bytes.len() as u64;
    }
    for (p, _, _) in &entries {
        out.extend_from_slice(p.as_bytes());
    }
    for (_, _, bytes) in &entries {
        out.extend_from_slice(bytes);
    }
}

/// Reads the prefix region through `take` (the section's bounded cutter).
pub(super) fn open_prefix_region<'a>(
    take: &mut dyn FnMut(usize) -> Result<&'a [u8], IndexError>,
) -> Result<(u32, Dict<'a>), IndexError> {
    let head = take(REGION_HEADER_LEN)?;
    let max_chars = rd_u32(head, 0)?;
    if max_chars == 0 {
        return Err(corrupt("prefix length 0"));
    }
    let n = rd_u32(head, 4)? as usize;
    let key_bytes = to_usize(rd_u64(head, 8)?)?;
    let postings_len = to_usize(rd_u64(head, 16)?)?;
    Ok((max_chars, take_dict(take, n, key_bytes, postings_len)?))
}

impl<'a> TextIndex<'a> {
    /// The longest prefix (chars) this section indexes; 0 without a prefix dictionary.
    pub fn indexed_prefix_chars(&self) -> u32 {
        self.prefixes.map_or(0, |p| p.0)
    }

    /// The prefix dictionary entry answering `prefix`, when it is in indexed range.
    fn indexed_prefix(&self, prefix: &str) -> Option<(Dict<'a>, Option<usize>)> {
        let (max, dict) = self.prefixes?;
        let n = prefix.chars().count();
        (1..=max as usize).contains(&n).then(|| (dict, dict.find(prefix)))
    }

    /// The union of the postings of every term starting with `prefix` (the term
    /// dictionary's range), tf summed per row. Stops early once the query's deadline
    /// expired (the caller then discards the result).
    fn range_union(&self, prefix: &str) -> Result<Vec<(u32, u32)>, IndexError> {
        let mut lists = Vec::new();
        let mut i = self.terms.lower_bound(prefix.as_bytes());
        while i < self.terms.len && !crate::deadline::expired() {
            match self.terms.key(i) {
                Some(t) if t.starts_with(prefix.as_bytes()) => {
                    lists.push(self.terms.postings_at(i)?.decode_all()?)
                }
                _ => break,
            }
            i += 1;
        }
        Ok(union_postings(lists))
    }

    /// The postings of the prefix pseudo-term `prefix` (see the module doc): complete,
    /// `None` when no term starts with it.
    pub(super) fn prefix_postings(&self, prefix: &str) -> Result<Option<Postings<'a>>, IndexError> {
        if let Some((dict, found)) = self.indexed_prefix(prefix) {
            return found.map(|i| dict.postings_at(i)).transpose();
        }
        let list = self.range_union(prefix)?;
        if list.is_empty() {
            return Ok(None);
        }
        let mut data = Vec::new();
        encode_postings(&BitPacker4x::new(), &list, self.norms, &mut data);
        Postings::new(Cow::Owned(data), list.len() as u32).map(Some)
    }

    /// Every `(row, tf)` of the prefix pseudo-term `prefix`, rows increasing.
    pub fn prefix_rows(&self, prefix: &str) -> Result<Vec<(u32, u32)>, IndexError> {
        match self.indexed_prefix(prefix) {
            Some((dict, Some(i))) => dict.postings_at(i)?.decode_all(),
            Some((_, None)) => Ok(Vec::new()),
            None => self.range_union(prefix),
        }
    }

    /// Rows of this segment holding a term that starts with `prefix` (0 when the
    /// section is corrupt: the search then reports it).
    pub fn prefix_doc_freq(&self, prefix: &str) -> u32 {
        match self.indexed_prefix(prefix) {
            Some((dict, found)) => found.and_then(|i| dict.info(i).ok()).map_or(0, |x| x.2),
            None => self.range_union(prefix).map_or(0, |l| l.len() as u32),
        }
    }
}
