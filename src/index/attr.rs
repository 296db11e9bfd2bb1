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
//! Section format (segment section kind 19, one per indexed attribute,
//! `storage-format.md` 11.3), all integers little-endian. **Version 2** (what
//! [`build`] writes since issue 36 item 4): each distinct key once, the rows
//! bit-packed at the bit length of the segment's row count.
//! ```text
//! +0  magic "TPATTRIX" | +8 version u32 (=2) | +12 attr_len u32
//! +16 kind u8 (1 int, 2 float, 3 string, 4 bool) | +17 row_bits u8 | +18 reserved [u8; 2] (=0)
//! +20 entries u32 | +24 rows u32 (rows of the segment) | +28 keys u32 (distinct keys)
//! +32 attr name (attr_len bytes, UTF-8)
//!     key offsets ((keys + 1) × u32, into the key bytes; offs[0] = 0)
//!     key starts ((keys + 1) × u32: the first entry of each key; starts[keys] = entries)
//!     key bytes (the distinct keys, strictly increasing)
//!     entry rows (entries × row_bits bits, least significant bit first, then zero bytes
//!       up to ⌈entries × row_bits / 8⌉ + 8: a row is unpacked with one 8-byte load)
//!     crc32c u32 of every byte before it
//! ```
//! **Version 1** (written until then; read forever, [`build_v1`] keeps its encoder): the same
//! header with bytes 17..20 and 28..32 zero, then key offsets of every *entry* ((entries + 1)
//! × u32), entry rows (entries × u32), key bytes (each entry's key, repeated per entry).
//! Entries are sorted by (key bytes, row); rows without the attribute have no entry.
//!
//! Invariants:
//! - [`AttrIndex::open`] verifies magic, version, crc and every offset, so
//!   lookups never panic on bad bytes. For version 2 it also checks what the
//!   writer guarantees: reserved bytes zero, `row_bits` the bit length of
//!   `rows`, keys strictly increasing and of their kind's width (strings
//!   UTF-8, bools 0 or 1), key starts strictly increasing from 0 to `entries`,
//!   every row below `rows` and strictly increasing within its key, and the
//!   packed block's unused bits and slack zero (so the encoding is canonical).
//! - [`AttrIndex::reopen`] parses a section the segment reader checked before without reading
//!   every entry again (a query opens its filter's section per segment): lookups never panic
//!   on any bytes, and they read through the segment's range checksums.
//! - A lookup returns exactly the rows whose value satisfies the condition
//!   for same-kind operands, in (key, row) order; callers use it only for
//!   same-kind operands and still evaluate the full filter on the returned rows.
//! - Both versions answer every lookup alike (`attr_tests.rs`).

use crate::codec::u64_at;
use crate::model::Value;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPATTRIX";
/// The version [`build`] writes: distinct keys once, bit-packed rows.
pub const VERSION: u32 = 2;
/// One key and one u32 row per entry (written until version 2; still read).
pub const VERSION_V1: u32 = 1;
const HEADER_LEN: usize = 32;
/// Zero bytes after the packed rows: every row is unpacked with one unaligned 8-byte load.
const ROW_SLACK: usize = 8;

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

/// The key width of a kind (None: strings, any length); Err for an unknown kind.
fn key_width(kind: u8) -> Result<Option<usize>, IndexError> {
    match kind {
        1 => Ok(Some(16)),
        2 => Ok(Some(8)),
        3 => Ok(None),
        4 => Ok(Some(1)),
        _ => Err(corrupt("unknown value kind")),
    }
}

/// The low `n` bytes of `x`, most significant first: a sort key whose
/// bytewise order is numeric order (not a stored integer field, which are
/// all little-endian).
fn most_significant_first(x: u128, n: usize) -> Vec<u8> {
    (0..n).rev().map(|i| (x >> (8 * i)) as u8).collect()
}

/// Bits of one packed row (version 2) in a segment of `rows` rows: the bit length of `rows`,
/// at least 1 (as the graph's packed links, `storage-format.md` 11.5).
pub fn row_bits(rows: usize) -> u32 {
    (usize::BITS - rows.leading_zeros()).max(1)
}

/// Bytes of the packed rows block of `entries` entries at `bits` bits, slack included.
fn packed_len(entries: usize, bits: u32) -> Option<usize> {
    entries.checked_mul(bits as usize)?.div_ceil(8).checked_add(ROW_SLACK)
}

/// The value at bits `[bit, bit + bits)` of `packed` (0 past its end).
#[inline]
fn unpack(packed: &[u8], bit: usize, bits: u32) -> u32 {
    let word = u64_at(packed, bit / 8).unwrap_or(0);
    ((word >> (bit % 8)) & ((1u64 << bits) - 1)) as u32
}

/// `(order-preserving key, row)` entries of a section, sorted by key then row.
type Entries = Vec<(Vec<u8>, u32)>;

/// The sorted, deduplicated `(key, row)` entries of `values` and their kind; None when the
/// values are not all of one indexable kind, there are none, or a row is not below `rows`.
fn sorted_entries<'d>(
    rows: usize,
    values: impl IntoIterator<Item = (u32, &'d Value)>,
) -> Option<(u8, Entries)> {
    let mut kind = None;
    let mut entries: Entries = Vec::new();
    for (row, v) in values {
        let k = kind_of(v)?;
        if *kind.get_or_insert(k) != k || row as usize >= rows {
            return None;
        }
        entries.push((key_of(v)?, row));
    }
    entries.sort();
    entries.dedup();
    Some((kind?, entries))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The 32 header bytes and the attribute name.
fn put_header(out: &mut Vec<u8>, version: u32, attr: &str, kind: u8, row_bits: u8, counts: [usize; 3]) {
    let [entries, rows, keys] = counts;
    out.extend_from_slice(&MAGIC);
    put_u32(out, version);
    put_u32(out, attr.len() as u32);
    out.extend_from_slice(&[kind, row_bits, 0, 0]);
    put_u32(out, entries as u32);
    put_u32(out, rows as u32);
    put_u32(out, keys as u32);
    out.extend_from_slice(attr.as_bytes());
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Builds the section (version 2) of `attr` from `(row, value)` pairs of a segment of `rows`
/// rows; None when the values are not all of one indexable kind (or there are none).
pub fn build<'d>(
    attr: &str,
    rows: usize,
    values: impl IntoIterator<Item = (u32, &'d Value)>,
) -> Option<Vec<u8>> {
    let rows = rows.min(u32::MAX as usize);
    let (kind, entries) = sorted_entries(rows, values)?;
    let bits = row_bits(rows);
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut starts: Vec<u32> = Vec::new();
    for (i, (k, _)) in entries.iter().enumerate() {
        if keys.last() != Some(&k.as_slice()) {
            keys.push(k);
            starts.push(i as u32);
        }
    }
    starts.push(entries.len() as u32);
    let mut out = Vec::new();
    put_header(&mut out, VERSION, attr, kind, bits as u8, [entries.len(), rows, keys.len()]);
    put_key_offsets(&mut out, keys.iter().copied());
    starts.iter().for_each(|s| put_u32(&mut out, *s));
    keys.iter().for_each(|k| out.extend_from_slice(k));
    let at = out.len();
    out.resize(at.checked_add(packed_len(entries.len(), bits)?)?, 0);
    pack_rows(&mut out[at..], entries.iter().map(|(_, r)| *r), bits);
    Some(seal(out))
}

/// Writes the u32 offsets of `keys` laid end to end: 0, then each key's end.
fn put_key_offsets<'k>(out: &mut Vec<u8>, keys: impl Iterator<Item = &'k [u8]>) {
    let mut off = 0u32;
    put_u32(out, off);
    for k in keys {
        off = off.saturating_add(k.len() as u32);
        put_u32(out, off);
    }
}

/// Writes `rows` at `bits` bits each into the zeroed `out` (with [`ROW_SLACK`] bytes after the
/// last: each row is one 8-byte read-modify-write).
fn pack_rows(out: &mut [u8], rows: impl Iterator<Item = u32>, bits: u32) {
    for (i, r) in rows.enumerate() {
        let bit = i * bits as usize;
        let at = bit / 8;
        let word = u64_at(out, at).unwrap_or(0) | u64::from(r) << (bit % 8);
        out[at..at + 8].copy_from_slice(&word.to_le_bytes());
    }
}

/// Builds the section as version 1 (one key and one u32 row per entry), byte for byte what
/// builds wrote before version 2: kept for the compatibility tests and before/after
/// measurements, never used by compaction.
pub fn build_v1<'d>(
    attr: &str,
    rows: usize,
    values: impl IntoIterator<Item = (u32, &'d Value)>,
) -> Option<Vec<u8>> {
    let rows = rows.min(u32::MAX as usize);
    let (kind, entries) = sorted_entries(rows, values)?;
    let mut out = Vec::new();
    put_header(&mut out, VERSION_V1, attr, kind, 0, [entries.len(), rows, 0]);
    put_key_offsets(&mut out, entries.iter().map(|(k, _)| k.as_slice()));
    entries.iter().for_each(|(_, r)| put_u32(&mut out, *r));
    entries.iter().for_each(|(k, _)| out.extend_from_slice(k));
    Some(seal(out))
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    crate::codec::u32_at(b, i * 4).unwrap_or(0)
}

/// Where the entries' rows are.
#[derive(Debug, Clone, Copy)]
enum Rows<'a> {
    /// Version 1: one u32 an entry.
    Wide(&'a [u8]),
    /// Version 2: this many bits an entry, then [`ROW_SLACK`] zero bytes.
    Packed(&'a [u8], u32),
}

/// A zero-copy view of an attribute index section (either version).
#[derive(Debug, Clone, Copy)]
pub struct AttrIndex<'a> {
    attr: &'a str,
    version: u32,
    kind: u8,
    /// Keys searched by [`Self::partition`]: the distinct keys (version 1: one per entry).
    keys: usize,
    entries: usize,
    offs: &'a [u8],
    /// Version 2: the first entry of each key; None for version 1 (entry i has key i).
    starts: Option<&'a [u8]>,
    key_bytes: &'a [u8],
    rows: Rows<'a>,
    /// Checks each slice read after open against the segment's range checksums (a changed byte
    /// must fail the query, not drop a row from its result: `crate::integrity`).
    guard: Option<crate::integrity::FileGuard<'a>>,
}

/// The header fields both versions share.
struct Head<'a> {
    attr_len: usize,
    kind: u8,
    entries: usize,
    rows: usize,
    /// Version 2: row_bits, the reserved bytes 18..20 and the key count.
    row_bits: u8,
    reserved: [u8; 2],
    keys: usize,
    body: &'a [u8],
}

/// Takes consecutive regions of a section's body, with checked arithmetic.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        let end = self.pos.checked_add(n).ok_or(corrupt("length overflow"))?;
        let s = self.bytes.get(self.pos..end).ok_or(corrupt("region out of bounds"))?;
        self.pos = end;
        Ok(s)
    }

    fn take_u32s(&mut self, n: usize) -> Result<&'a [u8], IndexError> {
        self.take(n.checked_mul(4).ok_or(corrupt("length overflow"))?)
    }

    fn attr(&mut self, len: usize) -> Result<&'a str, IndexError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| corrupt("attr not utf-8"))
    }

    fn finish(&self) -> Result<(), IndexError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(corrupt("length mismatch"))
        }
    }
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
        Self::parse(bytes, true)
    }

    /// Opens a section that [`Self::open_trusted`] accepted before (the same mapped bytes: the
    /// segment reader checks each section once, when it first locates it, and a query opens it
    /// again per filter): the header and the regions are parsed again, the checks that read
    /// every entry are not repeated. Lookups never panic on any bytes, and a byte changed since
    /// is caught by the guard's range checksums when a lookup reads it ([`Self::guarded`]).
    pub fn reopen(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Self::parse(bytes, false)
    }

    /// `full`: also the checks that read every key, start and row.
    fn parse(bytes: &'a [u8], full: bool) -> Result<Self, IndexError> {
        if bytes.len() < HEADER_LEN + 4 || bytes[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let body = &bytes[..bytes.len() - 4];
        let h = |i: usize| u32_at(&body[8..HEADER_LEN], i) as usize;
        let head = Head {
            attr_len: h(1),
            kind: body[16],
            entries: h(3),
            rows: h(4),
            row_bits: body[17],
            reserved: [body[18], body[19]],
            keys: h(5),
            body,
        };
        match h(0) as u32 {
            VERSION_V1 => Self::open_v1(head, full),
            VERSION => Self::open_v2(head, full),
            _ => Err(corrupt("unsupported version")),
        }
    }

    /// Version 1: what builds before version 2 wrote, checked as they checked it.
    fn open_v1(head: Head<'a>, full: bool) -> Result<Self, IndexError> {
        let mut c = Cursor { bytes: head.body, pos: HEADER_LEN };
        let attr = c.attr(head.attr_len)?;
        let n = head.entries;
        let offs = c.take_u32s(n.checked_add(1).ok_or(corrupt("length overflow"))?)?;
        let rows = c.take_u32s(n)?;
        let key_bytes = c.take(u32_at(offs, n) as usize)?;
        c.finish()?;
        if full && (0..n).any(|i| u32_at(offs, i) > u32_at(offs, i + 1)) {
            return Err(corrupt("offsets not monotone"));
        }
        Ok(AttrIndex {
            attr,
            version: VERSION_V1,
            kind: head.kind,
            keys: n,
            entries: n,
            offs,
            starts: None,
            key_bytes,
            rows: Rows::Wide(rows),
            guard: None,
        })
    }

    /// Version 2: every rule of the module's invariants.
    fn open_v2(head: Head<'a>, full: bool) -> Result<Self, IndexError> {
        let (n, d) = (head.entries, head.keys);
        if head.reserved != [0, 0] {
            return Err(corrupt("reserved header bytes"));
        }
        let bits = row_bits(head.rows);
        if u32::from(head.row_bits) != bits {
            return Err(corrupt("row bits"));
        }
        if d == 0 || d > n {
            return Err(corrupt("key count"));
        }
        let mut c = Cursor { bytes: head.body, pos: HEADER_LEN };
        let attr = c.attr(head.attr_len)?;
        let offs = c.take_u32s(d + 1)?;
        let starts = c.take_u32s(d + 1)?;
        let key_bytes = c.take(u32_at(offs, d) as usize)?;
        let packed = c.take(packed_len(n, bits).ok_or(corrupt("length overflow"))?)?;
        c.finish()?;
        if full {
            check_keys(head.kind, offs, key_bytes, d)?;
            check_starts(starts, d, n)?;
            check_rows(packed, starts, d, (n, bits), head.rows)?;
        }
        Ok(AttrIndex {
            attr,
            version: VERSION,
            kind: head.kind,
            keys: d,
            entries: n,
            offs,
            starts: Some(starts),
            key_bytes,
            rows: Rows::Packed(packed, bits),
            guard: None,
        })
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

    /// The section's version (1 or 2).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Entries (rows holding the attribute).
    pub fn entries(&self) -> usize {
        self.entries
    }

    fn key(&self, i: usize) -> &'a [u8] {
        let offs = self.checked(self.offs.get(i * 4..i * 4 + 8).unwrap_or_default());
        let (a, b) = (u32_at(offs, 0) as usize, u32_at(offs, 1) as usize);
        self.checked(self.key_bytes.get(a..b).unwrap_or_default())
    }

    /// The first entry of key `i` (`i` = the key count: the entry count).
    fn start(&self, i: usize) -> usize {
        match self.starts {
            None => i,
            Some(s) => u32_at(self.checked(s.get(i * 4..i * 4 + 4).unwrap_or_default()), 0) as usize,
        }
    }

    /// The rows of entries `a..b` (clamped to the entries: bounds read after open come from
    /// bytes that may have changed since, which the guard reports; no lookup reads past them).
    fn rows_of(&self, a: usize, b: usize) -> Vec<u32> {
        let b = b.min(self.entries);
        let a = a.min(b);
        match self.rows {
            Rows::Wide(rows) => {
                let rows = self.checked(rows.get(a * 4..b * 4).unwrap_or_default());
                (0..rows.len() / 4).map(|i| u32_at(rows, i)).collect()
            }
            Rows::Packed(packed, bits) => {
                let (first, w) = (a * bits as usize, bits as usize);
                let end = ((b * w).div_ceil(8) + ROW_SLACK).min(packed.len());
                let sub = self.checked(packed.get(first / 8..end).unwrap_or_default());
                (0..b - a).map(|i| unpack(sub, first % 8 + i * w, bits)).collect()
            }
        }
    }

    /// First key that is not `before` the probe.
    fn partition(&self, before: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0usize, self.keys);
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
            None => self.keys,
            Some((k, true)) => self.partition(|x| x <= k),
            Some((k, false)) => self.partition(|x| x < k),
        };
        self.rows_of(self.start(a), self.start(b.max(a)))
    }

    /// Rows whose (string) key starts with `prefix`.
    pub fn prefix(&self, prefix: &[u8]) -> Vec<u32> {
        let a = self.partition(|x| x < prefix);
        let b = self.partition(|x| x < prefix || x.starts_with(prefix));
        self.rows_of(self.start(a), self.start(b.max(a)))
    }
}

/// Version 2 keys: offsets from 0, each key of its kind's width (strings UTF-8, bools 0 or 1),
/// strictly increasing.
fn check_keys(kind: u8, offs: &[u8], key_bytes: &[u8], keys: usize) -> Result<(), IndexError> {
    let width = key_width(kind)?;
    if u32_at(offs, 0) != 0 {
        return Err(corrupt("key offsets start"));
    }
    let mut prev: Option<&[u8]> = None;
    for i in 0..keys {
        let (a, b) = (u32_at(offs, i) as usize, u32_at(offs, i + 1) as usize);
        let key = key_bytes.get(a..b).ok_or(corrupt("offsets not monotone"))?;
        let fits = match kind {
            3 => std::str::from_utf8(key).is_ok(),
            4 => key.len() == 1 && key[0] <= 1,
            _ => Some(key.len()) == width,
        };
        if !fits {
            return Err(corrupt("key not of its kind"));
        }
        if prev.is_some_and(|p| p >= key) {
            return Err(corrupt("keys not strictly increasing"));
        }
        prev = Some(key);
    }
    Ok(())
}

/// Version 2 key starts: 0, strictly increasing, the entry count last.
fn check_starts(starts: &[u8], keys: usize, entries: usize) -> Result<(), IndexError> {
    let ok = u32_at(starts, 0) == 0
        && u32_at(starts, keys) as usize == entries
        && (0..keys).all(|i| u32_at(starts, i) < u32_at(starts, i + 1));
    if ok {
        Ok(())
    } else {
        Err(corrupt("key starts"))
    }
}

/// Version 2 rows: below `rows`, strictly increasing within each key; the bits after the last
/// entry and the slack zero.
fn check_rows(
    packed: &[u8],
    starts: &[u8],
    keys: usize,
    (entries, bits): (usize, u32),
    rows: usize,
) -> Result<(), IndexError> {
    let w = bits as usize;
    for k in 0..keys {
        let (a, b) = (u32_at(starts, k) as usize, u32_at(starts, k + 1) as usize);
        let mut prev: Option<u32> = None;
        for i in a..b {
            let r = unpack(packed, i * w, bits);
            if r as usize >= rows || prev.is_some_and(|p| p >= r) {
                return Err(corrupt("rows out of range or order"));
            }
            prev = Some(r);
        }
    }
    let used = entries * w;
    let tail_bits = packed.get(used / 8).map_or(0, |b| b >> (used % 8));
    if tail_bits != 0 || packed.get(used.div_ceil(8)..).is_none_or(|t| t.iter().any(|b| *b != 0)) {
        return Err(corrupt("packed rows padding"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "attr_tests.rs"]
mod tests;
