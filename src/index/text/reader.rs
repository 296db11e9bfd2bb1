//! Reading a text index section: validated once at open (magic, version, crc32c, every
//! table bounds-checked), then postings decoded block by block on demand. The term
//! dictionary and the prefix dictionary (version 2) share one layout, [`Dict`].
//!
//! A dictionary lookup may start from a [`DictSample`] (every [`SAMPLE_EVERY`]-th key, copied to
//! the heap from checked bytes once per loaded segment, `state/segment.rs`): it then reads one run
//! of keys from the section instead of bisecting all of them. Every key, offset and info it reads
//! from the section is still checked (`crate::integrity`); the sample only picks which, and a
//! lookup finds the same index with it or without it.
//!
//! Beside the samples ([`TextSamples`], taken once per loaded segment from checked bytes):
//! - the term dictionary's offsets, infos and key bytes, copied whole to the heap
//!   ([`FileGuard::copy_checked`](crate::integrity::FileGuard::copy_checked): the copy itself
//!   is what matched the crcs) when they take at most [`HEAP_DICT_MAX`] bytes: a lookup then
//!   reads nothing of the section, only the postings it opens (each checked as before), and goes
//!   through a hash table of the copy's keys (4 bytes a slot, at most half full), so a term a
//!   segment lacks is found absent with a hash and about one comparison;
//! - the norm table (one length byte a row), copied whole to the heap the same way when it
//!   takes at most [`HEAP_NORMS_MAX`] bytes: a query reads its rows' length bytes from the copy
//!   and checks none (a rare word's rows each sat in another granule, a crc of 64 bytes per row
//!   scored); a larger table keeps crc32c in [`NORM_GRANULE_LOG2`] granules instead, so a row's
//!   length byte is checked over 64 bytes, not over its 1 KiB chunk (`search.rs`, `NormChecks`).
//!
//! A byte of the section that changes after a copy is never read by a query (the copy was
//! verified; `verify` and a compaction read the file and find the change); one that changes
//! before it fails the copy, and the query that took it.

use super::*;
use crate::integrity::range_within;
use std::ops::Range;

pub(super) fn rd_u32(b: &[u8], at: usize) -> Result<u32, IndexError> {
    crate::codec::u32_at(b, at).ok_or(corrupt("truncated"))
}

pub(super) fn rd_u64(b: &[u8], at: usize) -> Result<u64, IndexError> {
    crate::codec::u64_at(b, at).ok_or(corrupt("truncated"))
}

pub(super) fn to_usize(v: u64) -> Result<usize, IndexError> {
    usize::try_from(v).map_err(|_| corrupt("length overflow"))
}

/// A sorted dictionary of keys (terms, or term prefixes) with a postings list each:
/// offsets `(n + 1) × u32` into the key bytes, infos `n × 16`, key bytes, postings.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dict<'a> {
    offsets: &'a [u8],
    infos: &'a [u8],
    bytes: &'a [u8],
    postings: &'a [u8],
    pub(super) len: usize,
    /// Checks each slice read after open (`crate::integrity`; None: unchecked).
    pub(super) guard: Option<crate::integrity::FileGuard<'a>>,
    /// Every [`SAMPLE_EVERY`]-th key, when the caller keeps one for this dictionary.
    sample: Option<&'a DictSample>,
    /// The heap copy's hash table of keys ([`HeapDict::table`]): a key is found, or found
    /// absent, with a hash and about one comparison instead of a bisection.
    table: Option<&'a [u32]>,
}

/// Keys `0, SAMPLE_EVERY, 2·SAMPLE_EVERY, …` of a [`Dict`] sit in a [`DictSample`]: a lookup then
/// reads at most this many keys of the section (their offsets and bytes mostly in one 1 KiB
/// checked chunk each) instead of bisecting the whole dictionary (a chunk of offsets and one of key
/// bytes per probe, each checked against its crc32c once per query).
pub const SAMPLE_EVERY: usize = 32;

/// Largest term dictionary (offsets, infos and key bytes) kept whole on the heap: ≈ 1.5 MB for
/// a body field of a 150k-row segment; a larger one is looked up from its sample and the section.
pub const HEAP_DICT_MAX: usize = 16 << 20;

/// Largest norm table kept whole on the heap (one byte a row: a segment of up to 16M rows).
pub const HEAP_NORMS_MAX: usize = 16 << 20;

/// A row's length byte is checked over a granule of `2^NORM_GRANULE_LOG2` rows of the norm
/// table (crcs on the heap: 4 bytes per 64 rows).
pub const NORM_GRANULE_LOG2: u32 = 6;

/// A term dictionary's offsets, infos and key bytes, copied to the heap from checked bytes.
#[derive(Debug)]
struct HeapDict {
    offsets: Vec<u8>,
    infos: Vec<u8>,
    bytes: Vec<u8>,
    /// Open addressing over the keys: slot `key_hash(key) & (len - 1)` onwards holds `index + 1`
    /// of each key, 0 ends a probe; at most half full. Empty when the keys are not strictly
    /// increasing (a damaged dictionary is only bisected, as before).
    table: Vec<u32>,
}

/// FNV-1a over 8-byte words (keys are short): the [`HeapDict::table`] slot hash.
fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ key.len() as u64;
    let mut words = key.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 32)
}

/// The slot table of a dictionary's keys (see [`HeapDict::table`]); empty when a key is out of
/// bounds, not above the one before it, or the keys are too many for u32 slots.
fn key_table(offsets: &[u8], bytes: &[u8], len: usize) -> Vec<u32> {
    let Some(size) = len.checked_mul(2).map(|n| n.max(2).next_power_of_two()) else { return Vec::new() };
    if u32::try_from(len).is_err() {
        return Vec::new();
    }
    let mut table = vec![0u32; size];
    let mut prev: Option<&[u8]> = None;
    for i in 0..len {
        let Some(key) = heap_key(offsets, bytes, i) else { return Vec::new() };
        if prev.is_some_and(|p| p >= key) {
            return Vec::new();
        }
        prev = Some(key);
        let mut slot = key_hash(key) as usize & (size - 1);
        while table[slot] != 0 {
            slot = (slot + 1) & (size - 1);
        }
        table[slot] = i as u32 + 1;
    }
    table
}

/// Key `i` of a dictionary's offsets and key bytes (None: out of bounds).
fn heap_key<'b>(offsets: &[u8], bytes: &'b [u8], i: usize) -> Option<&'b [u8]> {
    let offs = offsets.get(i * 4..i * 4 + 8)?;
    let (a, b) = (rd_u32(offs, 0).ok()? as usize, rd_u32(offs, 4).ok()? as usize);
    bytes.get(a..b)
}

impl HeapDict {
    /// `d`'s tables, when they fit [`HEAP_DICT_MAX`] and each copy matched its crcs.
    fn of(d: &Dict<'_>) -> Option<HeapDict> {
        if d.offsets.len() + d.infos.len() + d.bytes.len() > HEAP_DICT_MAX {
            return None;
        }
        let copy = |sub: &[u8]| match &d.guard {
            Some(g) => g.copy_checked(sub),
            None => Some(sub.to_vec()),
        };
        let (offsets, infos, bytes) = (copy(d.offsets)?, copy(d.infos)?, copy(d.bytes)?);
        let table = key_table(&offsets, &bytes, d.len);
        Some(HeapDict { offsets, infos, bytes, table })
    }

    /// Whether these are the tables of `d` (same lengths): another dictionary's are ignored.
    fn fits(&self, d: &Dict<'_>) -> bool {
        self.offsets.len() == d.offsets.len()
            && self.infos.len() == d.infos.len()
            && self.bytes.len() == d.bytes.len()
    }

    fn heap_bytes(&self) -> usize {
        self.offsets.capacity() + self.infos.capacity() + self.bytes.capacity() + self.table.capacity() * 4
    }
}

/// Every [`SAMPLE_EVERY`]-th key of one dictionary, on the heap (concatenated; `ends[j]` is the
/// end of sampled key `j`). Built from checked bytes ([`TextIndex::samples`]); heap bytes do not
/// change after they were checked, so a lookup trusts them for the segment's life.
#[derive(Debug, Default)]
pub struct DictSample {
    keys: Vec<u8>,
    ends: Vec<u32>,
    /// Keys of the dictionary it was taken from (a sample serves only a dictionary of as many).
    of_len: usize,
}

impl DictSample {
    /// The sample of `d`, reading every sampled key through `d`'s guard; None when a read key
    /// failed its check or is out of bounds (nothing is kept then: the next query tries again).
    fn of(d: &Dict<'_>) -> Option<DictSample> {
        let mut s = DictSample { of_len: d.len, ..DictSample::default() };
        for i in (0..d.len).step_by(SAMPLE_EVERY) {
            let offs = d.offsets.get(i * 4..i * 4 + 8)?;
            let (a, b) = (rd_u32(offs, 0).ok()? as usize, rd_u32(offs, 4).ok()? as usize);
            let key = d.bytes.get(a..b)?;
            if !crate::integrity::check_slice(d.guard.as_ref(), offs)
                || !crate::integrity::check_slice(d.guard.as_ref(), key)
            {
                return None;
            }
            s.keys.extend_from_slice(key);
            s.ends.push(u32::try_from(s.keys.len()).ok()?);
        }
        Some(s)
    }

    fn key(&self, j: usize) -> &[u8] {
        let start = if j == 0 { 0 } else { self.ends[j - 1] as usize };
        &self.keys[start..self.ends[j] as usize]
    }

    /// The index range `[lo, hi]` of a dictionary of `len` keys that holds the first key `>= key`
    /// (`hi` when every key of `[lo, hi)` is smaller).
    fn run_of(&self, key: &[u8], len: usize) -> (usize, usize) {
        let after = self.ends.len();
        // Sampled keys at or below `key`: sample j is key j·SAMPLE_EVERY, and keys are sorted.
        let (mut lo, mut hi) = (0usize, after);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        match lo {
            0 => (0, 0),
            j => ((j - 1) * SAMPLE_EVERY, (j * SAMPLE_EVERY).min(len)),
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() + self.ends.capacity() * 4
    }
}

/// The samples of one text index section's dictionaries ([`TextIndex::samples`]), and where its
/// tables lie: a later open ([`TextIndex::reopen`]) reads nothing of the section's header.
#[derive(Debug)]
pub struct TextSamples {
    terms: DictSample,
    prefixes: Option<DictSample>,
    layout: TextLayout,
    /// The term dictionary whole (None: larger than [`HEAP_DICT_MAX`], or taken unguarded
    /// where a copy failed its check — then nothing is kept at all).
    heap_terms: Option<HeapDict>,
    /// The norm table whole (None: larger than [`HEAP_NORMS_MAX`], or opened unguarded).
    heap_norms: Option<Box<[u8]>>,
    /// The norm table's granule crcs (None: held whole, or opened unguarded).
    norm_crcs: Option<crate::integrity::FineCrcs>,
}

impl TextSamples {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.terms.heap_bytes()
            + self.prefixes.as_ref().map_or(0, DictSample::heap_bytes)
            + self.layout.attr.capacity()
            + self.heap_terms.as_ref().map_or(0, HeapDict::heap_bytes)
            + self.heap_norms.as_ref().map_or(0, |n| n.len())
            + self.norm_crcs.as_ref().map_or(0, crate::integrity::FineCrcs::heap_bytes)
    }

    /// Whether the term dictionary is kept whole on the heap.
    pub fn holds_terms(&self) -> bool {
        self.heap_terms.is_some()
    }
}

/// A section's header numbers and the byte ranges (in the section) of its tables, as
/// [`TextIndex::open_trusted`] found them from checked bytes: heap, trusted like the samples.
#[derive(Clone, Debug)]
struct TextLayout {
    attr: String,
    num_docs: u64,
    total_tokens: u64,
    norms: Range<usize>,
    terms: DictLayout,
    prefixes: Option<(u32, DictLayout)>,
}

/// A [`Dict`]'s tables as byte ranges of its section.
#[derive(Clone, Debug)]
struct DictLayout {
    offsets: Range<usize>,
    infos: Range<usize>,
    bytes: Range<usize>,
    postings: Range<usize>,
    len: usize,
}

impl DictLayout {
    fn of(section: &[u8], d: &Dict<'_>) -> Option<DictLayout> {
        Some(DictLayout {
            offsets: range_within(section, d.offsets)?,
            infos: range_within(section, d.infos)?,
            bytes: range_within(section, d.bytes)?,
            postings: range_within(section, d.postings)?,
            len: d.len,
        })
    }

    /// The dictionary over `section` (bounds-checked; nothing read).
    fn dict<'a>(&self, section: &'a [u8]) -> Option<Dict<'a>> {
        let part = |r: &Range<usize>| section.get(r.clone());
        Some(Dict {
            offsets: part(&self.offsets)?,
            infos: part(&self.infos)?,
            bytes: part(&self.bytes)?,
            postings: part(&self.postings)?,
            len: self.len,
            guard: None,
            sample: None,
            table: None,
        })
    }
}

/// Cuts the four tables of a [`Dict`] of `n` keys from `take`, checking the offsets' ends.
pub(super) fn take_dict<'a>(
    take: &mut dyn FnMut(usize) -> Result<&'a [u8], IndexError>,
    n: usize,
    bytes_len: usize,
    postings_len: usize,
) -> Result<Dict<'a>, IndexError> {
    let offs_len = n.checked_add(1).and_then(|n| n.checked_mul(4));
    let offsets = take(offs_len.ok_or(corrupt("length overflow"))?)?;
    let infos = take(n.checked_mul(TERM_INFO_LEN).ok_or(corrupt("length overflow"))?)?;
    let bytes = take(bytes_len)?;
    let postings = take(postings_len)?;
    if rd_u32(offsets, 0)? != 0 || rd_u32(offsets, n * 4)? as usize != bytes_len {
        return Err(corrupt("term offsets"));
    }
    Ok(Dict { offsets, infos, bytes, postings, len: n, guard: None, sample: None, table: None })
}

impl<'a> Dict<'a> {
    /// `sub`, checked first (a mismatch fails the evaluation's scope: a changed byte never drops a
    /// row from an answer).
    fn checked<T>(&self, sub: &'a [T]) -> &'a [T] {
        crate::integrity::checked(self.guard.as_ref(), sub)
    }

    pub(super) fn key(&self, i: usize) -> Option<&'a [u8]> {
        let offs = self.checked(self.offsets.get(i * 4..i * 4 + 8)?);
        let s = rd_u32(offs, 0).ok()? as usize;
        let e = rd_u32(offs, 4).ok()? as usize;
        self.bytes.get(s..e).map(|k| self.checked(k))
    }

    /// Index of the first key `>= key` (bytewise).
    pub(super) fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = match self.sample.filter(|s| s.of_len == self.len) {
            Some(s) => s.run_of(key, self.len),
            None => (0, self.len),
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid).unwrap_or(&[]) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub(super) fn find(&self, key: &str) -> Option<usize> {
        if let Some(t) = self.table.filter(|t| !t.is_empty()) {
            return self.find_hashed(t, key.as_bytes());
        }
        let i = self.lower_bound(key.as_bytes());
        (i < self.len && self.key(i) == Some(key.as_bytes())).then_some(i)
    }

    /// [`Self::find`] through the heap copy's table: keys are distinct (checked when it was
    /// built), so the one slot holding `key` is the index the bisection finds.
    fn find_hashed(&self, table: &[u32], key: &[u8]) -> Option<usize> {
        let mask = table.len() - 1;
        let mut slot = key_hash(key) as usize & mask;
        loop {
            let i = table[slot].checked_sub(1)? as usize;
            if i < self.len && heap_key(self.offsets, self.bytes, i) == Some(key) {
                return Some(i);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// `(postings offset, postings length, doc freq)` of key `i`.
    pub(super) fn info(&self, i: usize) -> Result<(usize, usize, u32), IndexError> {
        let at = i * TERM_INFO_LEN;
        let info = self.checked(self.infos.get(at..at + TERM_INFO_LEN).unwrap_or_default());
        Ok((to_usize(rd_u64(info, 0)?)?, rd_u32(info, 8)? as usize, rd_u32(info, 12)?))
    }

    /// A cursor over key `i`'s postings: its block metas checked now, each block's data when it
    /// is decoded (a search that passes a block reads none of it).
    pub(super) fn postings_at(&self, i: usize) -> Result<Postings<'a>, IndexError> {
        let (off, len, df) = self.info(i)?;
        let end = off.checked_add(len).ok_or(corrupt("postings overflow"))?;
        let data = self.postings.get(off..end).ok_or(corrupt("postings out of bounds"))?;
        let mut p = Postings::new(std::borrow::Cow::Borrowed(data), df)?;
        self.checked(data.get(..p.nblocks * META_LEN).unwrap_or(data));
        p.guard = self.guard;
        Ok(p)
    }
}

/// A term found in one text index's dictionary ([`TextIndex::lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermEntry {
    /// Its index in the dictionary.
    idx: u32,
    /// Rows holding the term in this index.
    pub doc_freq: u32,
}

/// A zero-copy view of a text index section.
#[derive(Clone, Copy, Debug)]
pub struct TextIndex<'a> {
    /// The whole section.
    section: &'a [u8],
    attr: &'a str,
    num_docs: u64,
    total_tokens: u64,
    pub(super) norms: &'a [u8],
    pub(super) terms: Dict<'a>,
    /// Version 2: the longest indexed prefix (chars) and the prefix dictionary.
    pub(super) prefixes: Option<(u32, Dict<'a>)>,
    pub(super) guard: Option<crate::integrity::FileGuard<'a>>,
    /// Granule crcs of `norms` (from the samples), checked instead of its 1 KiB chunks.
    pub(super) norm_crcs: Option<&'a crate::integrity::FineCrcs>,
}

impl<'a> TextIndex<'a> {
    /// Opens a section, verifying its checksum and structure.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        if bytes.len() < HEADER_LEN + 4 {
            return Err(corrupt("too short"));
        }
        let body = bytes.len() - 4;
        if crc32c::crc32c(&bytes[..body]) != rd_u32(bytes, body)? {
            return Err(corrupt("checksum mismatch"));
        }
        Self::open_trusted(bytes)
    }

    /// Opens a section whose checksum the caller already verified (the segment
    /// reader checks every section's crc32c); the structure is still checked.
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        if bytes.len() < HEADER_LEN + 4 || &bytes[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        let flags = u16::from_le_bytes([bytes[10], bytes[11]]);
        if !(VERSION..=VERSION_PREFIXES).contains(&version) {
            return Err(IndexError::new(
                IndexSection::Text,
                IndexErrorKind::Unsupported { version: u32::from(version), kind: 0 },
            ));
        }
        let attr_len = rd_u32(bytes, 12)? as usize;
        let num_docs = rd_u64(bytes, 16)?;
        let total_tokens = rd_u64(bytes, 24)?;
        let row_count = rd_u32(bytes, 32)? as usize;
        let num_terms = rd_u32(bytes, 36)? as usize;
        let term_bytes_len = to_usize(rd_u64(bytes, 40)?)?;
        let postings_len = to_usize(rd_u64(bytes, 48)?)?;
        let mut pos = HEADER_LEN;
        let mut take = |n: usize| -> Result<&'a [u8], IndexError> {
            let end = pos.checked_add(n).ok_or(corrupt("length overflow"))?;
            let s = bytes.get(pos..end).ok_or(corrupt("region out of bounds"))?;
            pos = end;
            Ok(s)
        };
        let attr = std::str::from_utf8(take(attr_len)?).map_err(|_| corrupt("attr not utf-8"))?;
        let norms = take(row_count)?;
        let terms = take_dict(&mut take, num_terms, term_bytes_len, postings_len)?;
        let prefixes = match (version, flags) {
            (VERSION, 0) => None,
            (VERSION_PREFIXES, FLAG_PREFIXES) => Some(open_prefix_region(&mut take)?),
            _ => return Err(corrupt("flags")),
        };
        if pos + 4 != bytes.len() {
            return Err(corrupt("length mismatch"));
        }
        Ok(TextIndex {
            section: bytes,
            attr,
            num_docs,
            total_tokens,
            norms,
            terms,
            prefixes,
            guard: None,
            norm_crcs: None,
        })
    }

    /// Samples of this section's dictionaries, to keep beside it for its life and pass to
    /// [`Self::with_samples`] at each open. Read through the guard (call after
    /// [`Self::guarded`]): None when a read failed its check (keep nothing then).
    pub fn samples(&self) -> Option<TextSamples> {
        self.samples_holding(HEAP_NORMS_MAX)
    }

    /// [`Self::samples`], copying the norm table when it takes at most `norms_max` bytes.
    pub(super) fn samples_holding(&self, norms_max: usize) -> Option<TextSamples> {
        let prefixes = match &self.prefixes {
            Some((_, d)) => Some(DictSample::of(d)?),
            None => None,
        };
        let sec = self.section;
        let layout = TextLayout {
            attr: self.attr.to_owned(),
            num_docs: self.num_docs,
            total_tokens: self.total_tokens,
            norms: range_within(sec, self.norms)?,
            terms: DictLayout::of(sec, &self.terms)?,
            prefixes: match &self.prefixes {
                Some((max, d)) => Some((*max, DictLayout::of(sec, d)?)),
                None => None,
            },
        };
        let (heap_norms, norm_crcs) = match &self.guard {
            Some(g) if !self.norms.is_empty() && self.norms.len() <= norms_max => {
                (Some(g.copy_checked(self.norms)?.into_boxed_slice()), None)
            }
            Some(g) if !self.norms.is_empty() => (None, Some(g.fine_crcs(self.norms, NORM_GRANULE_LOG2)?)),
            _ => (None, None),
        };
        let heap_terms = match HeapDict::of(&self.terms) {
            None if self.terms.offsets.len() + self.terms.infos.len() + self.terms.bytes.len()
                <= HEAP_DICT_MAX =>
            {
                return None
            }
            h => h,
        };
        Some(TextSamples {
            terms: DictSample::of(&self.terms)?,
            prefixes,
            layout,
            heap_terms,
            heap_norms,
            norm_crcs,
        })
    }

    /// The section `bytes` opened again from the samples an earlier open of it took
    /// ([`Self::samples`]): its header is not read again (its numbers and table ranges are the
    /// samples'), and lookups start from the samples. None when the ranges do not fit `bytes`
    /// (samples of another section). Unguarded until [`Self::guarded`].
    pub fn reopen(bytes: &'a [u8], samples: &'a TextSamples) -> Option<Self> {
        let l = &samples.layout;
        let prefixes = match &l.prefixes {
            Some((max, d)) => Some((*max, d.dict(bytes)?)),
            None => None,
        };
        let ix = TextIndex {
            section: bytes,
            attr: &l.attr,
            num_docs: l.num_docs,
            total_tokens: l.total_tokens,
            norms: bytes.get(l.norms.clone())?,
            terms: l.terms.dict(bytes)?,
            prefixes,
            guard: None,
            norm_crcs: None,
        };
        Some(ix.with_samples(samples))
    }

    /// Looks keys up from `samples` (this section's, from [`Self::samples`]; a sample of a
    /// dictionary of another length is ignored): from the heap copy of the term dictionary
    /// when it holds one, and checks rows' length bytes by the norm table's granule crcs.
    pub fn with_samples(mut self, samples: &'a TextSamples) -> Self {
        self.terms.sample = Some(&samples.terms);
        if let Some(h) = samples.heap_terms.as_ref().filter(|h| h.fits(&self.terms)) {
            // Heap bytes lie outside the guarded object: reading them checks nothing.
            self.terms.offsets = &h.offsets;
            self.terms.infos = &h.infos;
            self.terms.bytes = &h.bytes;
            self.terms.table = Some(&h.table);
        }
        if let Some(h) = samples.heap_norms.as_deref().filter(|h| h.len() == self.norms.len()) {
            // Heap bytes too: no query checks them (`NormChecks` takes no guard for them).
            self.norms = h;
        }
        self.norm_crcs = samples.norm_crcs.as_ref().filter(|c| c.len() == self.norms.len());
        if let (Some((_, d)), Some(s)) = (self.prefixes.as_mut(), samples.prefixes.as_ref()) {
            d.sample = Some(s);
        }
        self
    }

    /// Check every slice read from now on with `guard` (the segment's; None: unchecked).
    pub fn guarded(mut self, guard: Option<crate::integrity::FileGuard<'a>>) -> Self {
        self.terms.guard = guard;
        if let Some((_, d)) = self.prefixes.as_mut() {
            d.guard = guard;
        }
        self.guard = guard;
        self
    }

    /// The attribute this index covers.
    pub fn attr(&self) -> &'a str {
        self.attr
    }

    /// Rows covered (this segment's contribution to N).
    pub fn num_docs(&self) -> u64 {
        self.num_docs
    }

    /// Tokens over all rows.
    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }

    /// Distinct terms.
    pub fn num_terms(&self) -> usize {
        self.terms.len
    }

    /// The fieldnorm id of `row` (0 when the row has no tokens or is out of range).
    pub fn fieldnorm_id(&self, row: u32) -> u8 {
        let r = row as usize;
        let Some(norm) = self.norms.get(r..r + 1) else { return 0 };
        match (&self.guard, self.norm_crcs) {
            (Some(g), Some(fine)) => g.check_fine(fine, norm),
            _ => crate::integrity::check_slice(self.guard.as_ref(), norm),
        };
        norm.first().copied().unwrap_or(0)
    }

    /// Rows containing `term` in this segment.
    pub fn doc_freq(&self, term: &str) -> u32 {
        self.lookup(term).map_or(0, |e| e.doc_freq)
    }

    /// `term`'s entry in this index's dictionary, if it occurs: its document frequency, and where
    /// its postings are for a search given it ([`FieldQuery::found`]) instead of the term.
    pub fn lookup(&self, term: &str) -> Option<TermEntry> {
        let i = self.terms.find(term)?;
        let doc_freq = self.terms.info(i).ok()?.2;
        Some(TermEntry { idx: u32::try_from(i).ok()?, doc_freq })
    }

    /// The postings of an entry [`Self::lookup`] returned (None: the entry is past this
    /// dictionary, so not from it).
    pub(super) fn postings_of_entry(&self, e: TermEntry) -> Result<Option<Postings<'a>>, IndexError> {
        let i = e.idx as usize;
        (i < self.terms.len).then(|| self.terms.postings_at(i)).transpose()
    }

    /// Dictionary terms starting with `prefix`, in order, at most `limit`.
    pub fn terms_with_prefix(&self, prefix: &str, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = self.terms.lower_bound(prefix.as_bytes());
        while i < self.terms.len && out.len() < limit {
            match self.terms.key(i) {
                Some(t) if t.starts_with(prefix.as_bytes()) => {
                    if let Ok(s) = std::str::from_utf8(t) {
                        out.push(s.to_owned());
                    }
                }
                _ => break,
            }
            i += 1;
        }
        out
    }

    /// A cursor over `term`'s postings, if the term occurs.
    pub(super) fn postings_of(&self, term: &str) -> Result<Option<Postings<'a>>, IndexError> {
        self.terms.find(term).map(|i| self.terms.postings_at(i)).transpose()
    }

    /// Every `(row, tf)` of `term` (tests, exhaustive scoring).
    pub fn postings(&self, term: &str) -> Result<Vec<(u32, u32)>, IndexError> {
        match self.postings_of(term)? {
            Some(p) => p.decode_all(),
            None => Ok(Vec::new()),
        }
    }

    /// Top-`k` rows for `terms` (distinct, analyzed) by BM25 under global
    /// statistics, pruned with block-max MaxScore. `filter` (row → keep) is
    /// applied before a row can enter the results.
    pub fn search(
        &self,
        terms: &[String],
        global: &CorpusStats,
        params: Bm25Params,
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        search_fields(&[FieldQuery::plain(self, terms, global, params)], k, filter)
    }

    /// Scores every matching row (no pruning): the reference for [`Self::search`].
    pub fn search_exhaustive(
        &self,
        terms: &[String],
        global: &CorpusStats,
        params: Bm25Params,
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        search_fields_exhaustive(&[FieldQuery::plain(self, terms, global, params)], k, filter)
    }
}

/// One postings list: borrowed from the section, or built for a query (the union
/// of a prefix's terms, [`TextIndex::prefix_postings`]).
#[derive(Clone)]
pub(super) struct Postings<'a> {
    data: std::borrow::Cow<'a, [u8]>,
    pub(super) nblocks: usize,
    /// Rows in the list.
    pub(super) df: u32,
    /// Checks the bytes of each block decoded (its metas were checked at open); None: a list
    /// built for the query, or an unguarded section.
    guard: Option<crate::integrity::FileGuard<'a>>,
}

pub(super) struct BlockMeta {
    pub(super) last_row: u32,
    data_off: usize,
    pub(super) max_tf: u32,
    doc_bits: u8,
    tf_bits: u8,
    pub(super) min_norm: u8,
    len: usize,
}

pub(super) struct DecodedBlock {
    pub(super) rows: [u32; BLOCK],
    pub(super) tfs: [u32; BLOCK],
    pub(super) len: usize,
}

impl Default for DecodedBlock {
    fn default() -> Self {
        DecodedBlock { rows: [0; BLOCK], tfs: [0; BLOCK], len: 0 }
    }
}

pub(super) fn get_vint(b: &[u8], pos: &mut usize) -> Result<u32, IndexError> {
    let mut v: u32 = 0;
    for shift in [0u32, 7, 14, 21, 28] {
        let byte = *b.get(*pos).ok_or(corrupt("truncated varint"))?;
        *pos += 1;
        if shift == 28 && byte > 0x0f {
            return Err(corrupt("varint overflow"));
        }
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("varint too long"))
}

impl<'a> Postings<'a> {
    /// A list of `df` rows over `data` (block metas, then block data).
    pub(super) fn new(data: std::borrow::Cow<'a, [u8]>, df: u32) -> Result<Self, IndexError> {
        let nblocks = (df as usize).div_ceil(BLOCK);
        if df == 0 || nblocks * META_LEN > data.len() {
            return Err(corrupt("postings header"));
        }
        Ok(Postings { data, nblocks, df, guard: None })
    }

    /// Every `(row, tf)`, in row order.
    pub(super) fn decode_all(&self) -> Result<Vec<(u32, u32)>, IndexError> {
        let mut out = Vec::new();
        let mut blk = DecodedBlock::default();
        for b in 0..self.nblocks {
            self.decode(b, &mut blk)?;
            out.extend((0..blk.len).map(|i| (blk.rows[i], blk.tfs[i])));
        }
        Ok(out)
    }

    pub(super) fn meta(&self, b: usize) -> Result<BlockMeta, IndexError> {
        let m = b * META_LEN;
        let s = self.data.get(m..m + META_LEN).ok_or(corrupt("block meta"))?;
        let len = s[15] as usize;
        if len == 0 || len > BLOCK {
            return Err(corrupt("block length"));
        }
        Ok(BlockMeta {
            last_row: u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            data_off: u32::from_le_bytes([s[4], s[5], s[6], s[7]]) as usize,
            max_tf: u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
            doc_bits: s[12],
            tf_bits: s[13],
            min_norm: s[14],
            len,
        })
    }

    fn last_row(&self, b: usize) -> u32 {
        let m = b * META_LEN;
        match self.data.get(m..m + 4) {
            Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            None => u32::MAX,
        }
    }

    pub(super) fn decode(&self, b: usize, out: &mut DecodedBlock) -> Result<(), IndexError> {
        let m = self.meta(b)?;
        let prev = if b == 0 { 0 } else { self.last_row(b - 1) };
        // Blocks are written in order: this one's bytes end where the next one's start.
        let end = if b + 1 < self.nblocks { self.meta(b + 1)?.data_off } else { self.data.len() };
        let data = self.data.get(m.data_off..end).ok_or(corrupt("block data"))?;
        crate::integrity::check_slice(self.guard.as_ref(), data);
        if m.len == BLOCK {
            if m.doc_bits > 32 || m.tf_bits > 32 {
                return Err(corrupt("bit width"));
            }
            let dn = m.doc_bits as usize * BLOCK / 8;
            let tn = m.tf_bits as usize * BLOCK / 8;
            let d = data.get(..dn).ok_or(corrupt("block data"))?;
            let t = data.get(dn..dn + tn).ok_or(corrupt("block data"))?;
            let bp = BitPacker4x::new();
            bp.decompress_sorted(prev, d, &mut out.rows, m.doc_bits);
            bp.decompress(t, &mut out.tfs, m.tf_bits);
            for tf in out.tfs.iter_mut() {
                *tf = tf.wrapping_add(1);
            }
        } else {
            let mut pos = 0usize;
            let mut r = prev;
            for i in 0..m.len {
                r = r.wrapping_add(get_vint(data, &mut pos)?);
                out.rows[i] = r;
            }
            for i in 0..m.len {
                out.tfs[i] = get_vint(data, &mut pos)?.wrapping_add(1);
            }
        }
        out.len = m.len;
        // Rows must strictly increase and end at the recorded last row.
        let mut p: Option<u32> = if b == 0 { None } else { Some(prev) };
        for &r in &out.rows[..m.len] {
            if p.is_some_and(|p| r <= p) {
                return Err(corrupt("rows not increasing"));
            }
            p = Some(r);
        }
        if p != Some(m.last_row) {
            return Err(corrupt("block last row"));
        }
        Ok(())
    }
}
