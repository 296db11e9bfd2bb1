//! The segment codec: one immutable file per segment
//! (`segments/{segment_id}/data.seg`, [`SEGMENT_FILE`]) holding a set of rows
//! sorted by id, and the deletion-set codec (`deletes-{token}.del`) that
//! retires rows of a segment without rewriting it (see `storage-format.md`,
//! "Segments").
//!
//! ```text
//! 0      header (64 B): magic "TIDE.SEG", version, flags, id kind, rows,
//!        vector_dim, section_count, table_offset, header_crc
//! 64     section 0   (each section starts at the first multiple of 64
//! ...    section n-1  after the previous one; the gaps are zero bytes)
//! T      section table: section_count × 24 B (kind, flags, crc32c, offset, len)
//! T+24n  table_crc (u32) — end of file
//! ```
//!
//! Core section kinds (< 16): 1 ids, 2 docs (per-row attributes), 3 vectors
//! (f32, rows × dim), 4 vector-absent bitmap. Extension kinds (>= 16: ANN,
//! text, sparse and attribute indexes) are checksummed like every section but
//! otherwise opaque here; readers skip kinds they do not know.
//!
//! Invariants:
//! - Every byte of a segment is covered: the header by `header_crc`, each
//!   section by its table entry's crc32c, the table by `table_crc`, and the
//!   padding between them must be zero. So any truncation or single-bit flip
//!   is refused by [`Segment::open`] with a [`FormatError`], never misread.
//! - `magic` and `version` sit at fixed offsets forever and are checked
//!   before anything else (unknown version → `UnsupportedVersion`).
//! - Rows are addressed by their segment-local position `0..rows`; ids are
//!   strictly increasing (checked at open), so [`Segment::find`] and
//!   [`Segment::lower_bound`] are binary searches.
//! - [`Segment::open`] validates every offsets table (ids, docs) and every
//!   section length, so no accessor panics for a row `< len()` afterwards;
//!   accessors do not re-validate. A row's attributes are decoded only when
//!   asked for ([`Segment::doc`], [`Segment::attrs`]).
//! - Zero-copy: a [`Segment`] holds the caller's [`bytes::Bytes`] (possibly an
//!   mmap, `Bytes::from_owner`); the vectors are borrowed in place when the
//!   section is 4-byte aligned in memory on a little-endian host, otherwise
//!   copied once at open into an owned `Vec<f32>`.
//! - The encoding is canonical: one layout per content (minimal zero
//!   padding, core sections first in kind order, then extension sections in
//!   insertion order, zeros for rows without a vector, canonical attribute
//!   encoding), so a segment whose rows all decode is rebuilt byte for byte
//!   by pushing its documents and extension sections into a new builder.
//! - A [`DeletionSet`] is a bitset over the row positions of one segment,
//!   with its own magic/version/crc32c; bits at or above `rows` are zero.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::model::{DocId, Document, IdType, Value, MAX_STRING_ID_BYTES, MAX_VECTOR_DIM};

use super::wal::{decode_attrs, encode_attrs};
use super::{len_u64, FormatError, Reader, Writer, FORMAT_VERSION_V1};

/// The file name of a segment's data file (`NsPath::segment_key(id, SEGMENT_FILE)`).
pub const SEGMENT_FILE: &str = "data.seg";
/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TIDE.SEG";
/// The segment format version this build writes (and the highest it reads).
pub const SEGMENT_FORMAT_VERSION: u16 = FORMAT_VERSION_V1;
/// Size of the fixed segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Alignment of every section (and of the section table) within the file.
pub const SECTION_ALIGN: usize = 64;
/// Size of one section table entry.
pub const SECTION_ENTRY_LEN: usize = 24;
/// Most rows one segment may hold (rows are addressed as u32 by indexes).
pub const MAX_SEGMENT_ROWS: usize = u32::MAX as usize;
/// Most sections one segment may hold.
pub const MAX_SECTIONS: usize = 4096;

/// Section kind: the ids, sorted (u64: 8 B each; UUID: 16 B each; string:
/// offsets table + bytes).
pub const SECTION_IDS: u16 = 1;
/// Section kind: per-row attributes (offsets table + encoded attribute maps).
pub const SECTION_DOCS: u16 = 2;
/// Section kind: dense vectors, f32 little-endian, rows × dim, row-major.
pub const SECTION_VECTORS: u16 = 3;
/// Section kind: bitmap of rows that have no vector (present only if some do).
pub const SECTION_VECTOR_ABSENT: u16 = 4;
/// First extension kind; kinds at or above it are skipped by readers that do
/// not know them, kinds below it that a reader does not know are refused.
pub const FIRST_EXTENSION_KIND: u16 = 16;
/// Extension section kind: ANN index over the vectors (`index::ann`).
pub const SECTION_ANN_INDEX: u16 = 16;
/// Extension section kind: full-text index of one attribute (`index::text`;
/// carries the attribute name inside; one section per attribute).
pub const SECTION_TEXT_INDEX: u16 = 17;
/// Extension section kind: sparse-vector index.
pub const SECTION_SPARSE_INDEX: u16 = 18;
/// Extension section kind: attribute (filter) index.
pub const SECTION_ATTRIBUTE_INDEX: u16 = 19;
/// Extension section kind: proximity-graph index over the vectors for the
/// warm path (`index::graph`); built next to the ANN index.
pub const SECTION_GRAPH_INDEX: u16 = 20;
/// Extension section kind: the IVF lists laid out for ranged cold reads
/// (`index::coldivf`); built next to the ANN index, from it.
pub const SECTION_COLD_IVF: u16 = 21;
/// Extension section kind: crc32c of every fixed-size chunk of the file
/// before it ([`RangeChecksums`]), so any byte range can be read and verified
/// on its own. When present it is the last section.
pub const SECTION_RANGE_CHECKSUMS: u16 = 22;

/// Magic of the range-checksum section.
pub const RANGE_CHECKSUMS_MAGIC: [u8; 8] = *b"TPRANGES";
/// Chunk size of the range checksums this build writes: 2^14 = 16 KiB.
pub const RANGE_CHUNK_LOG2: u32 = 14;
const RANGE_HEADER_LEN: usize = 32;

/// The range-checksum section (kind 22, `storage-format.md` 8.3.1): crc32c
/// of each `2^chunk_log2`-byte chunk of the file's bytes `[0, covered)` (the
/// last chunk may be shorter). A reader that fetched a byte range widens it to
/// chunk boundaries ([`RangeChecksums::widen`]) and checks every chunk
/// ([`RangeChecksums::verify`]) before using any byte of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeChecksums {
    chunk_log2: u32,
    covered: u64,
    crcs: Vec<u32>,
}

impl RangeChecksums {
    /// Checksums of `bytes` (the file so far) in chunks of `2^chunk_log2`.
    pub fn compute(bytes: &[u8], chunk_log2: u32) -> RangeChecksums {
        let chunk = 1usize << chunk_log2;
        RangeChecksums {
            chunk_log2,
            covered: len_u64(bytes.len()),
            crcs: bytes.chunks(chunk).map(crc32c::crc32c).collect(),
        }
    }

    /// The section bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(RANGE_HEADER_LEN + 4 * self.crcs.len());
        w.bytes(&RANGE_CHECKSUMS_MAGIC);
        w.u32(1);
        w.u32(self.chunk_log2);
        w.u64(self.covered);
        w.u32(u32::try_from(self.crcs.len()).unwrap_or(u32::MAX));
        w.u32(0);
        for c in &self.crcs {
            w.u32(*c);
        }
        w.into_inner()
    }

    /// Parse section bytes (checked against the section crc by the caller).
    pub fn decode(b: &[u8]) -> Result<RangeChecksums, FormatError> {
        let mut r = Reader::new(b);
        let magic: [u8; 8] = r.array("range checksums magic")?;
        if magic != RANGE_CHECKSUMS_MAGIC {
            return Err(FormatError::BadMagic { what: "range checksums" });
        }
        let version = r.u32("range checksums version")?;
        if version != 1 {
            return Err(FormatError::UnsupportedVersion {
                what: "range checksums",
                version: u64::from(version),
                supported: 1,
            });
        }
        let chunk_log2 = r.u32("range checksums chunk size")?;
        let covered = r.u64("range checksums covered length")?;
        let count = r.u32("range checksums count")?;
        let reserved = r.u32("range checksums reserved")?;
        if !(12..=24).contains(&chunk_log2) || reserved != 0 {
            return Err(malformed(format_args!(
                "range checksums: chunk size 2^{chunk_log2} or reserved bits"
            )));
        }
        if covered.div_ceil(1 << chunk_log2) != u64::from(count) {
            return Err(malformed(format_args!(
                "range checksums: {count} chunks do not cover {covered} bytes"
            )));
        }
        let body = b.get(RANGE_HEADER_LEN..).unwrap_or_default();
        if body.len() != 4 * count as usize {
            return Err(malformed(format_args!("range checksums: {} bytes for {count} chunks", body.len())));
        }
        Ok(RangeChecksums { chunk_log2, covered, crcs: body.chunks_exact(4).map(|c| le_u32(c, 0)).collect() })
    }

    /// Bytes covered (`[0, covered)` of the file).
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// `range` widened to chunk boundaries (None if it leaves the covered bytes).
    pub fn widen(&self, range: Range<u64>) -> Option<Range<u64>> {
        if range.start > range.end || range.end > self.covered {
            return None;
        }
        let chunk = 1u64 << self.chunk_log2;
        let start = range.start / chunk * chunk;
        let end = range.end.div_ceil(chunk).saturating_mul(chunk).min(self.covered);
        Some(start..end)
    }

    /// Check `bytes`, read at file offset `at` (a chunk boundary; they end at
    /// a chunk boundary or at `covered`), chunk by chunk.
    pub fn verify(&self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        let chunk = 1usize << self.chunk_log2;
        let aligned = at.is_multiple_of(1 << self.chunk_log2);
        let end = at.checked_add(len_u64(bytes.len()));
        let fits = end.is_some_and(|e| {
            e == self.covered || (e < self.covered && e.is_multiple_of(1 << self.chunk_log2))
        });
        if !aligned || !fits {
            return Err(malformed(format_args!("range {at}+{} is not on chunk boundaries", bytes.len())));
        }
        let first = usize::try_from(at >> self.chunk_log2).unwrap_or(usize::MAX);
        for (i, c) in bytes.chunks(chunk).enumerate() {
            let expected = self.crcs.get(first + i).copied().unwrap_or(0);
            let actual = crc32c::crc32c(c);
            if expected != actual {
                return Err(FormatError::ChecksumMismatch { what: "segment chunk", expected, actual });
            }
        }
        Ok(())
    }
}

/// The byte ranges of a segment's sections, read from its section table
/// (file offsets; see 8.3). Only checks that the table is where the header
/// says and that its crc matches: meant for a segment this process just built
/// (compaction records the ranges in the manifest) — readers use
/// [`Segment::open`].
pub fn section_table(bytes: &[u8]) -> Result<Vec<SectionInfo>, FormatError> {
    let truncated =
        || FormatError::Truncated { what: "segment", needed: 64, available: len_u64(bytes.len()) };
    let header = bytes.get(..SEGMENT_HEADER_LEN).ok_or_else(truncated)?;
    let count = le_u32(header, 28) as usize;
    let table_at = usize::try_from(le_u64(header, 32)).map_err(|_| truncated())?;
    let table_len = count.checked_mul(SECTION_ENTRY_LEN).ok_or_else(truncated)?;
    let table = bytes.get(table_at..table_at.saturating_add(table_len)).ok_or_else(truncated)?;
    let stored = bytes.get(table_at + table_len..).filter(|b| b.len() == 4).ok_or_else(truncated)?;
    let actual = crc32c::crc32c(table);
    let expected = le_u32(stored, 0);
    if expected != actual {
        return Err(FormatError::ChecksumMismatch { what: "segment section table", expected, actual });
    }
    Ok(table
        .chunks_exact(SECTION_ENTRY_LEN)
        .map(|e| SectionInfo {
            kind: le_u16(e, 0),
            crc32c: le_u32(e, 4),
            offset: le_u64(e, 8),
            len: le_u64(e, 16),
        })
        .collect())
}

/// The ids section (kind 1, 8.4) of a segment read on its own — a cold
/// reader fetches just this range (its bytes checked against the section crc
/// recorded in the manifest before they get here). Parsing checks the length
/// for fixed-width ids and the offsets table for string ids.
#[derive(Clone, Debug)]
pub struct IdsSection {
    bytes: Bytes,
    id_type: IdType,
    rows: usize,
    /// String ids: where the id bytes start.
    data_at: usize,
}

impl IdsSection {
    /// Parse the section of a segment of `rows` rows whose ids are `id_type`.
    pub fn parse(bytes: Bytes, id_type: IdType, rows: usize) -> Result<IdsSection, FormatError> {
        let fixed = |w: usize| {
            let want = rows.checked_mul(w).ok_or(FormatError::TooLarge {
                what: "ids section",
                len: len_u64(rows),
                max: len_u64(MAX_SEGMENT_ROWS),
            })?;
            if bytes.len() != want {
                return Err(malformed(format_args!("ids section is {} bytes, expected {want}", bytes.len())));
            }
            Ok(0)
        };
        let data_at = match id_type {
            IdType::U64 => fixed(8)?,
            IdType::Uuid => fixed(UUID_LEN)?,
            IdType::String => {
                let max = len_u64(MAX_STRING_ID_BYTES);
                let (_, data) = offsets_table("string ids", &bytes, &(0..bytes.len()), rows, 1, max)?;
                std::str::from_utf8(&bytes[data.clone()])
                    .map_err(|_| malformed(format_args!("string ids are not UTF-8")))?;
                data.start
            }
        };
        Ok(IdsSection { bytes, id_type, rows, data_at })
    }

    /// The id of `row` (None past the end, or for a string id that does not
    /// start on a character boundary).
    pub fn id(&self, row: usize) -> Option<DocId> {
        if row >= self.rows {
            return None;
        }
        let b = &self.bytes;
        Some(match self.id_type {
            IdType::U64 => DocId::U64(le_u64(b, row * 8)),
            IdType::Uuid => {
                DocId::Uuid(uuid::Uuid::from_slice(b.get(row * UUID_LEN..(row + 1) * UUID_LEN)?).ok()?)
            }
            IdType::String => {
                let at = |i: usize| {
                    usize::try_from(le_u64(b, i * 8)).ok().and_then(|o| o.checked_add(self.data_at))
                };
                let s = b.get(at(row)?..at(row + 1)?)?;
                DocId::Str(std::str::from_utf8(s).ok()?.to_owned())
            }
        })
    }
}

/// Decode one row's attributes as stored in the docs section (kind 2, 8.5):
/// exactly one attributes map. For readers that fetched the row's bytes by range.
pub fn decode_row_attributes(bytes: &[u8]) -> Result<BTreeMap<String, Value>, FormatError> {
    let mut r = Reader::new(bytes);
    let attrs = decode_attrs(&mut r)?;
    r.finish("segment doc")?;
    Ok(attrs)
}

/// The first 8 bytes of every deletion-set file.
pub const DELETES_MAGIC: [u8; 8] = *b"TIDE.DEL";
/// The deletion-set format version this build writes (and the highest it reads).
pub const DELETES_FORMAT_VERSION: u16 = FORMAT_VERSION_V1;
/// Size of the fixed deletion-set header.
pub const DELETES_HEADER_LEN: usize = 32;

/// The file name of a deletion set: `deletes-{token}.del`.
pub fn deletes_file_name(token: &str) -> String {
    format!("deletes-{token}.del")
}

const WHAT: &str = "segment";
const DEL_WHAT: &str = "deletion set";

// Header offsets.
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 10;
const OFF_ID_KIND: usize = 12;
const OFF_ROWS: usize = 16;
const OFF_VECTOR_DIM: usize = 24;
const OFF_SECTION_COUNT: usize = 28;
const OFF_TABLE_OFFSET: usize = 32;
const OFF_HEADER_CRC: usize = 60;
const _: () = assert!(OFF_VERSION == SEGMENT_MAGIC.len());
const _: () = assert!(OFF_FLAGS == OFF_VERSION + 2);
const _: () = assert!(OFF_ID_KIND == OFF_FLAGS + 2);
const _: () = assert!(OFF_ROWS == OFF_ID_KIND + 4);
const _: () = assert!(OFF_VECTOR_DIM == OFF_ROWS + 8);
const _: () = assert!(OFF_SECTION_COUNT == OFF_VECTOR_DIM + 4);
const _: () = assert!(OFF_TABLE_OFFSET == OFF_SECTION_COUNT + 4);
const _: () = assert!(SEGMENT_HEADER_LEN == OFF_HEADER_CRC + 4);
const _: () = assert!(SEGMENT_HEADER_LEN.is_multiple_of(SECTION_ALIGN));

// Id kinds (the WAL's id tags).
const ID_KIND_U64: u8 = 0;
const ID_KIND_UUID: u8 = 1;
const ID_KIND_STR: u8 = 2;
const UUID_LEN: usize = 16;

/// Smallest encoded attribute map (a zero count).
const MIN_ATTRS_BYTES: usize = 4;

fn malformed(why: impl fmt::Display) -> FormatError {
    FormatError::Malformed(format!("{WHAT}: {why}"))
}

fn id_kind_of(t: IdType) -> u8 {
    match t {
        IdType::U64 => ID_KIND_U64,
        IdType::Uuid => ID_KIND_UUID,
        IdType::String => ID_KIND_STR,
    }
}

fn id_rank(t: IdType) -> u8 {
    // The cross-kind order of `DocId`: u64 < UUID < string.
    id_kind_of(t)
}

fn align_up(n: usize) -> Option<usize> {
    n.checked_add(SECTION_ALIGN - 1).map(|n| n / SECTION_ALIGN * SECTION_ALIGN)
}

fn to_usize(what: &'static str, n: u64) -> Result<usize, FormatError> {
    usize::try_from(n).map_err(|_| FormatError::TooLarge { what, len: n, max: len_u64(usize::MAX) })
}

/// The little-endian u64 at byte `at` of `b`; 0 if out of range (callers
/// only read offsets validated at open).
fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8)).and_then(|s| <[u8; 8]>::try_from(s).ok()).map_or(0, u64::from_le_bytes)
}

/// Reinterpret little-endian f32 bytes in place, if `b` is 4-byte aligned
/// in memory, a whole number of f32s long, and the host is little-endian.
fn f32_slice(b: &[u8]) -> Option<&[f32]> {
    if !cfg!(target_endian = "little") || b.as_ptr().align_offset(std::mem::align_of::<f32>()) != 0 {
        return None;
    }
    if !b.len().is_multiple_of(std::mem::size_of::<f32>()) {
        return None;
    }
    // SAFETY: the pointer is non-null and aligned for f32 (checked above);
    // `b.len() / 4` f32s cover exactly the `b.len()` bytes of `b`, which are
    // initialized and live (and immutable) for the lifetime of the returned
    // slice, which borrows `b`; every bit pattern is a valid f32; and on a
    // little-endian host the stored little-endian bytes are the native
    // representation.
    Some(unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) })
}

// ====================================================================== builder

/// Builds one segment file from documents pushed in strictly increasing id
/// order, plus opaque extension sections (indexes) built by callers.
#[derive(Debug)]
pub struct SegmentBuilder {
    id_type: IdType,
    vector_dim: Option<u32>,
    rows: usize,
    last_id: Option<DocId>,
    /// u64 / UUID ids: fixed-width; string ids: the concatenated bytes.
    ids: Vec<u8>,
    /// String ids only: offsets into `ids` (starts with 0).
    id_offsets: Vec<u64>,
    /// Offsets into `docs` (starts with 0).
    doc_offsets: Vec<u64>,
    docs: Writer,
    vectors: Vec<u8>,
    absent: Vec<u64>,
    any_absent: bool,
    extra: Vec<(u16, Vec<u8>)>,
    range_checksums: bool,
}

impl SegmentBuilder {
    /// An empty builder for ids of `id_type` and, if `vector_dim` is set,
    /// dense vectors of that dimension (1..=`MAX_VECTOR_DIM`).
    pub fn new(id_type: IdType, vector_dim: Option<u32>) -> Self {
        SegmentBuilder {
            id_type,
            vector_dim,
            rows: 0,
            last_id: None,
            ids: Vec::new(),
            id_offsets: if id_type == IdType::String { vec![0] } else { Vec::new() },
            doc_offsets: vec![0],
            docs: Writer::new(),
            vectors: Vec::new(),
            absent: Vec::new(),
            any_absent: false,
            extra: Vec::new(),
            range_checksums: false,
        }
    }

    /// Also write a range-checksum section (kind 22) after the other sections,
    /// so readers can verify ranged reads of the file.
    pub fn with_range_checksums(mut self) -> Self {
        self.range_checksums = true;
        self
    }

    fn checked_dim(&self) -> Result<Option<usize>, FormatError> {
        match self.vector_dim {
            None => Ok(None),
            Some(d) => match usize::try_from(d) {
                Ok(d) if (1..=MAX_VECTOR_DIM).contains(&d) => Ok(Some(d)),
                _ => Err(malformed(format_args!("vector dimension {d} is outside 1..={MAX_VECTOR_DIM}"))),
            },
        }
    }

    /// Append one document. Its id must be of the builder's kind and greater
    /// than every id pushed before; its vector, if any, must have the
    /// builder's dimension (a document without a vector is allowed and
    /// recorded in the vector-absent bitmap). On error nothing is appended.
    pub fn push(&mut self, doc: &Document) -> Result<(), FormatError> {
        if doc.id.id_type() != self.id_type {
            return Err(malformed(format_args!(
                "id {} is a {:?} id; this segment holds {:?} ids",
                doc.id,
                doc.id.id_type(),
                self.id_type
            )));
        }
        if let Some(last) = &self.last_id {
            if *last >= doc.id {
                return Err(malformed(format_args!("ids must strictly increase: {} after {last}", doc.id)));
            }
        }
        if self.rows >= MAX_SEGMENT_ROWS {
            return Err(FormatError::TooLarge {
                what: "segment rows",
                len: len_u64(self.rows).saturating_add(1),
                max: len_u64(MAX_SEGMENT_ROWS),
            });
        }
        let dim = self.checked_dim()?;
        match (&doc.vector, dim) {
            (Some(_), None) => {
                return Err(malformed(format_args!(
                    "document {} has a vector but the segment has none",
                    doc.id
                )))
            }
            (Some(v), Some(d)) if v.len() != d => {
                return Err(malformed(format_args!(
                    "document {} has a {}-dimensional vector; the segment's are {d}-dimensional",
                    doc.id,
                    v.len()
                )))
            }
            _ => {}
        }
        if let DocId::Str(s) = &doc.id {
            if s.is_empty() || s.len() > MAX_STRING_ID_BYTES {
                return Err(malformed(format_args!(
                    "string id of {} bytes is outside 1..={MAX_STRING_ID_BYTES}",
                    s.len()
                )));
            }
        }
        let mut attrs = Writer::new();
        encode_attrs(&mut attrs, &doc.attrs)?;

        // Validated: append everything.
        match &doc.id {
            DocId::U64(n) => self.ids.extend_from_slice(&n.to_le_bytes()),
            DocId::Uuid(u) => self.ids.extend_from_slice(u.as_bytes()),
            DocId::Str(s) => {
                self.ids.extend_from_slice(s.as_bytes());
                self.id_offsets.push(len_u64(self.ids.len()));
            }
        }
        self.docs.bytes(attrs.as_slice());
        self.doc_offsets.push(len_u64(self.docs.len()));
        if let Some(d) = dim {
            let row = self.rows;
            if row.is_multiple_of(64) {
                self.absent.push(0);
            }
            match &doc.vector {
                Some(v) => v.iter().for_each(|x| self.vectors.extend_from_slice(&x.to_le_bytes())),
                None => {
                    self.vectors.resize(self.vectors.len() + d * 4, 0);
                    if let Some(w) = self.absent.last_mut() {
                        *w |= 1u64 << (row % 64);
                    }
                    self.any_absent = true;
                }
            }
        }
        self.rows += 1;
        self.last_id = Some(doc.id.clone());
        Ok(())
    }

    /// Add an extension section (an index built by the caller). `kind` must
    /// be at least [`FIRST_EXTENSION_KIND`]; [`SegmentBuilder::finish`]
    /// refuses core kinds. Sections are written in the order added; several
    /// sections of one kind are allowed (e.g. one text index per attribute).
    pub fn add_section(&mut self, kind: u16, bytes: Vec<u8>) {
        self.extra.push((kind, bytes));
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The id kind of this segment.
    pub fn id_type(&self) -> IdType {
        self.id_type
    }

    /// Assemble the segment file.
    pub fn finish(self) -> Result<Vec<u8>, FormatError> {
        let dim = self.checked_dim()?;
        if let Some((kind, _)) = self.extra.iter().find(|(k, _)| *k < FIRST_EXTENSION_KIND) {
            return Err(malformed(format_args!(
                "section kind {kind} is a core kind; extension sections use kinds >= {FIRST_EXTENSION_KIND}"
            )));
        }
        let mut ids = Writer::with_capacity(self.ids.len() + self.id_offsets.len() * 8);
        for o in &self.id_offsets {
            ids.u64(*o);
        }
        ids.bytes(&self.ids);
        let mut docs = Writer::with_capacity(self.docs.len() + self.doc_offsets.len() * 8);
        for o in &self.doc_offsets {
            docs.u64(*o);
        }
        docs.bytes(self.docs.as_slice());
        let ids = ids.into_inner();
        let docs = docs.into_inner();
        let mut sections: Vec<(u16, &[u8])> = vec![(SECTION_IDS, &ids), (SECTION_DOCS, &docs)];
        let mut absent = Writer::new();
        if dim.is_some() {
            sections.push((SECTION_VECTORS, &self.vectors));
            if self.any_absent {
                for w in &self.absent {
                    absent.u64(*w);
                }
                sections.push((SECTION_VECTOR_ABSENT, absent.as_slice()));
            }
        }
        sections.extend(self.extra.iter().map(|(k, b)| (*k, b.as_slice())));
        let dim = self.vector_dim.unwrap_or(0);
        assemble(id_kind_of(self.id_type), self.rows, dim, &sections, self.range_checksums)
    }
}

/// Lay out header, sections, table and table crc (see the module doc).
fn assemble(
    id_kind: u8,
    rows: usize,
    dim: u32,
    sections: &[(u16, &[u8])],
    range_checksums: bool,
) -> Result<Vec<u8>, FormatError> {
    if range_checksums {
        return assemble_with_range_checksums(id_kind, rows, dim, sections);
    }
    if sections.len() > MAX_SECTIONS {
        return Err(FormatError::TooLarge {
            what: "segment sections",
            len: len_u64(sections.len()),
            max: len_u64(MAX_SECTIONS),
        });
    }
    let too_large = || FormatError::TooLarge { what: "segment", len: u64::MAX, max: len_u64(usize::MAX) };
    let mut total = SEGMENT_HEADER_LEN;
    for (_, b) in sections {
        total = align_up(total).and_then(|t| t.checked_add(b.len())).ok_or_else(too_large)?;
    }
    let table_offset = align_up(total).ok_or_else(too_large)?;
    let total = sections
        .len()
        .checked_mul(SECTION_ENTRY_LEN)
        .and_then(|t| t.checked_add(table_offset))
        .and_then(|t| t.checked_add(4))
        .ok_or_else(too_large)?;

    let mut w = Writer::with_capacity(total);
    w.bytes(&SEGMENT_MAGIC);
    w.u16(SEGMENT_FORMAT_VERSION);
    w.u16(0); // flags
    w.u8(id_kind);
    w.bytes(&[0; 3]);
    w.u64(len_u64(rows));
    w.u32(dim);
    w.u32(u32::try_from(sections.len()).unwrap_or(u32::MAX));
    w.u64(len_u64(table_offset));
    w.bytes(&[0; OFF_HEADER_CRC - 40]);
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);

    let mut table = Writer::with_capacity(sections.len() * SECTION_ENTRY_LEN);
    for (kind, b) in sections {
        let at = align_up(w.len()).ok_or_else(too_large)?;
        w.bytes(&vec![0; at - w.len()]);
        table.u16(*kind);
        table.u16(0); // flags
        table.u32(crc32c::crc32c(b));
        table.u64(len_u64(at));
        table.u64(len_u64(b.len()));
        w.bytes(b);
    }
    w.bytes(&vec![0; table_offset - w.len()]);
    w.bytes(table.as_slice());
    w.u32(crc32c::crc32c(table.as_slice()));
    Ok(w.into_inner())
}

/// A range-checksum section (kind 22) must be the last section, cover exactly
/// the bytes before it, and match them, so a ranged reader and a whole-file
/// reader can never disagree about a segment.
fn check_range_checksums(buf: &[u8], sections: &[(SectionInfo, Range<usize>)]) -> Result<(), FormatError> {
    let Some(i) = sections.iter().position(|(s, _)| s.kind == SECTION_RANGE_CHECKSUMS) else { return Ok(()) };
    let (info, range) = &sections[i];
    if i + 1 != sections.len() {
        return Err(malformed("the range-checksum section must be the last section"));
    }
    let sums = RangeChecksums::decode(buf.get(range.clone()).unwrap_or_default())?;
    if sums.covered() != info.offset {
        return Err(malformed(format_args!(
            "range checksums cover {} bytes, their section starts at {}",
            sums.covered(),
            info.offset
        )));
    }
    sums.verify(0, buf.get(..range.start).unwrap_or_default())
}

/// Lay the file out with a zeroed range-checksum section of the right length
/// (so the header and table already count it), then checksum every byte
/// before that section and patch in the section, its table crc and the table
/// crc. The result is what a two-pass layout would give, in one pass.
fn assemble_with_range_checksums(
    id_kind: u8,
    rows: usize,
    dim: u32,
    sections: &[(u16, &[u8])],
) -> Result<Vec<u8>, FormatError> {
    let too_large = || FormatError::TooLarge { what: "segment", len: u64::MAX, max: len_u64(usize::MAX) };
    let mut end = SEGMENT_HEADER_LEN;
    for (_, b) in sections {
        end = align_up(end).and_then(|t| t.checked_add(b.len())).ok_or_else(too_large)?;
    }
    let covered = align_up(end).ok_or_else(too_large)?;
    let placeholder = vec![0u8; RANGE_HEADER_LEN + 4 * covered.div_ceil(1 << RANGE_CHUNK_LOG2)];
    let mut all = sections.to_vec();
    all.push((SECTION_RANGE_CHECKSUMS, &placeholder));
    let mut file = assemble(id_kind, rows, dim, &all, false)?;
    let sums = RangeChecksums::compute(&file[..covered], RANGE_CHUNK_LOG2).encode();
    file[covered..covered + sums.len()].copy_from_slice(&sums);
    let table_at = file.len() - 4 - SECTION_ENTRY_LEN * all.len();
    let entry = table_at + SECTION_ENTRY_LEN * (all.len() - 1);
    file[entry + 4..entry + 8].copy_from_slice(&crc32c::crc32c(&sums).to_le_bytes());
    let table_crc = crc32c::crc32c(&file[table_at..file.len() - 4]);
    let n = file.len();
    file[n - 4..].copy_from_slice(&table_crc.to_le_bytes());
    Ok(file)
}

// ====================================================================== reader

/// One section table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// The section kind.
    pub kind: u16,
    /// Byte offset within the file (a multiple of 64).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// crc32c of the section bytes.
    pub crc32c: u32,
}

enum Vectors {
    None,
    /// Borrowed in place: this byte range of the buffer, 4-byte aligned.
    Borrowed(Range<usize>),
    /// Copied at open (the buffer was misaligned or the host big-endian).
    Owned(Vec<f32>),
}

struct Inner {
    bytes: Bytes,
    rows: usize,
    id_type: IdType,
    vector_dim: Option<u32>,
    dim: usize,
    sections: Vec<(SectionInfo, Range<usize>)>,
    /// u64 / UUID: the fixed-width ids; string: the offsets table.
    ids: Range<usize>,
    /// String ids: the id bytes (offsets are relative to its start).
    id_data: Range<usize>,
    doc_offsets: Range<usize>,
    doc_data: Range<usize>,
    vectors: Vectors,
    absent: Option<Range<usize>>,
}

/// An open, verified, immutable segment. Cheap to clone (an `Arc` inside);
/// `Send + Sync`.
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("rows", &self.inner.rows)
            .field("id_type", &self.inner.id_type)
            .field("vector_dim", &self.inner.vector_dim)
            .field("sections", &self.inner.sections.len())
            .field("byte_len", &self.inner.bytes.len())
            .finish()
    }
}

fn check_zero(what: &'static str, b: &[u8]) -> Result<(), FormatError> {
    if b.iter().any(|&x| x != 0) {
        return Err(FormatError::Malformed(format!("{what}: reserved or padding bytes are not zero")));
    }
    Ok(())
}

/// Validate an offsets table of `rows + 1` u64s at the start of `sec`:
/// starts at 0, each step within `min_step..=max_step`, ends at the length
/// of the data that follows. Returns (table range, data range), absolute.
fn offsets_table(
    what: &'static str,
    buf: &[u8],
    sec: &Range<usize>,
    rows: usize,
    min_step: u64,
    max_step: u64,
) -> Result<(Range<usize>, Range<usize>), FormatError> {
    let table_len = rows.checked_add(1).and_then(|n| n.checked_mul(8)).ok_or(FormatError::TooLarge {
        what,
        len: len_u64(rows),
        max: len_u64(MAX_SEGMENT_ROWS),
    })?;
    let sec_len = sec.end - sec.start;
    if table_len > sec_len {
        return Err(FormatError::Truncated { what, needed: len_u64(table_len), available: len_u64(sec_len) });
    }
    let table = sec.start..sec.start + table_len;
    let data = table.end..sec.end;
    let data_len = len_u64(data.end - data.start);
    let mut prev = le_u64(buf, table.start);
    if prev != 0 {
        return Err(malformed(format_args!("{what}: the offsets table does not start at 0")));
    }
    for i in 1..=rows {
        let o = le_u64(buf, table.start + i * 8);
        let step = o.checked_sub(prev);
        if !step.is_some_and(|s| (min_step..=max_step).contains(&s)) {
            return Err(malformed(format_args!(
                "{what}: offset {o} of row {} after {prev} is out of order or out of bounds",
                i - 1
            )));
        }
        prev = o;
    }
    if prev != data_len {
        return Err(malformed(format_args!(
            "{what}: the offsets table ends at {prev}, the data is {data_len} bytes"
        )));
    }
    Ok((table, data))
}

impl Segment {
    /// Open and verify a segment: magic, version, header crc, the section
    /// table (bounds, alignment, zero padding, table crc), every section's
    /// crc32c, the core sections' shapes and offsets tables, and that ids
    /// strictly increase. Refuses anything else with a [`FormatError`].
    pub fn open(bytes: Bytes) -> Result<Segment, FormatError> {
        let buf: &[u8] = &bytes;
        let mut r = Reader::new(buf);
        let magic: [u8; 8] = r.array("segment magic")?;
        if magic != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = r.u16("segment version")?;
        if version != SEGMENT_FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version: u64::from(version),
                supported: u64::from(SEGMENT_FORMAT_VERSION),
            });
        }
        let header = buf.get(..SEGMENT_HEADER_LEN).ok_or(FormatError::Truncated {
            what: "segment header",
            needed: len_u64(SEGMENT_HEADER_LEN),
            available: len_u64(buf.len()),
        })?;
        let flags = r.u16("segment flags")?;
        let id_kind = r.u8("segment id kind")?;
        let reserved_a = r.bytes("segment reserved", 3)?;
        let rows = r.u64("segment rows")?;
        let dim = r.u32("segment vector_dim")?;
        let section_count = r.u32("segment section count")?;
        let table_offset = r.u64("segment table offset")?;
        let reserved_b = r.bytes("segment reserved", OFF_HEADER_CRC - 40)?;
        let stored = r.u32("segment header crc32c")?;
        let actual = crc32c::crc32c(header.get(..OFF_HEADER_CRC).unwrap_or_default());
        if stored != actual {
            return Err(FormatError::ChecksumMismatch { what: "segment header", expected: stored, actual });
        }
        if flags != 0 {
            return Err(malformed(format_args!("unknown flags {flags:#06x}")));
        }
        check_zero("segment header", reserved_a)?;
        check_zero("segment header", reserved_b)?;
        let id_type = match id_kind {
            ID_KIND_U64 => IdType::U64,
            ID_KIND_UUID => IdType::Uuid,
            ID_KIND_STR => IdType::String,
            k => return Err(malformed(format_args!("unknown id kind {k}"))),
        };
        if rows > len_u64(MAX_SEGMENT_ROWS) {
            return Err(FormatError::TooLarge {
                what: "segment rows",
                len: rows,
                max: len_u64(MAX_SEGMENT_ROWS),
            });
        }
        let rows = to_usize("segment rows", rows)?;
        let dim_usize = to_usize("vector dimension", u64::from(dim))?;
        if dim_usize > MAX_VECTOR_DIM {
            return Err(FormatError::TooLarge {
                what: "vector dimension",
                len: u64::from(dim),
                max: len_u64(MAX_VECTOR_DIM),
            });
        }
        let section_count = to_usize("segment sections", u64::from(section_count))?;
        if section_count > MAX_SECTIONS {
            return Err(FormatError::TooLarge {
                what: "segment sections",
                len: len_u64(section_count),
                max: len_u64(MAX_SECTIONS),
            });
        }
        let table_offset = to_usize("segment table offset", table_offset)?;
        let expected_len = section_count
            .checked_mul(SECTION_ENTRY_LEN)
            .and_then(|n| n.checked_add(table_offset))
            .and_then(|n| n.checked_add(4))
            .ok_or(FormatError::TooLarge {
                what: "segment table offset",
                len: len_u64(table_offset),
                max: len_u64(buf.len()),
            })?;
        match expected_len.cmp(&buf.len()) {
            Ordering::Greater => {
                return Err(FormatError::Truncated {
                    what: WHAT,
                    needed: len_u64(expected_len),
                    available: len_u64(buf.len()),
                })
            }
            Ordering::Less => {
                return Err(FormatError::TrailingBytes {
                    what: WHAT,
                    extra: len_u64(buf.len() - expected_len),
                })
            }
            Ordering::Equal => {}
        }
        let table_end = expected_len - 4;
        let table =
            buf.get(table_offset..table_end).ok_or_else(|| malformed("section table out of bounds"))?;
        let stored = le_u32(buf, table_end);
        let actual = crc32c::crc32c(table);
        if stored != actual {
            return Err(FormatError::ChecksumMismatch {
                what: "segment section table",
                expected: stored,
                actual,
            });
        }

        // Section entries: in file order, each at the first 64-byte boundary
        // after the previous one, zero padding in between.
        let mut t = Reader::new(table);
        let mut sections = Vec::with_capacity(section_count);
        let mut prev_end = SEGMENT_HEADER_LEN;
        let mut core: [Option<Range<usize>>; 5] = Default::default();
        let (mut last_core, mut seen_extension) = (0u16, false);
        for i in 0..section_count {
            let kind = t.u16("section kind")?;
            let sflags = t.u16("section flags")?;
            let crc = t.u32("section crc32c")?;
            let offset = t.u64("section offset")?;
            let len = t.u64("section length")?;
            if sflags != 0 {
                return Err(malformed(format_args!("section {i}: unknown flags {sflags:#06x}")));
            }
            let start = to_usize("section offset", offset)?;
            let slen = to_usize("section length", len)?;
            if Some(start) != align_up(prev_end) {
                return Err(malformed(format_args!(
                    "section {i} starts at {start}, not at the first 64-byte boundary after {prev_end}"
                )));
            }
            let end = start
                .checked_add(slen)
                .filter(|&e| e <= table_offset)
                .ok_or_else(|| malformed(format_args!("section {i} runs past the section table")))?;
            check_zero("segment padding", buf.get(prev_end..start).unwrap_or_default())?;
            let body = buf.get(start..end).unwrap_or_default();
            let actual = crc32c::crc32c(body);
            if crc != actual {
                return Err(FormatError::ChecksumMismatch { what: "segment section", expected: crc, actual });
            }
            match kind {
                SECTION_IDS | SECTION_DOCS | SECTION_VECTORS | SECTION_VECTOR_ABSENT => {
                    // Core sections come first, in increasing kind order, once each.
                    if seen_extension || kind <= last_core {
                        return Err(malformed(format_args!(
                            "section {i} (kind {kind}): core sections must come first, once each, in kind order"
                        )));
                    }
                    last_core = kind;
                    let slot = core.get_mut(usize::from(kind)).ok_or_else(|| malformed("core kind"))?;
                    *slot = Some(start..end);
                }
                k if k < FIRST_EXTENSION_KIND => {
                    return Err(malformed(format_args!(
                    "unknown core section kind {k} (kinds below {FIRST_EXTENSION_KIND} must be understood)"
                )))
                }
                _ => seen_extension = true, // extension: opaque, skipped if unknown
            }
            sections.push((SectionInfo { kind, offset, len, crc32c: crc }, start..end));
            prev_end = end;
        }
        if Some(table_offset) != align_up(prev_end) {
            return Err(malformed(format_args!(
                "the section table starts at {table_offset}, not at the first 64-byte boundary after {prev_end}"
            )));
        }
        check_zero("segment padding", buf.get(prev_end..table_offset).unwrap_or_default())?;
        check_range_checksums(buf, &sections)?;
        let [_, ids_sec, docs_sec, vec_sec, absent_sec] = core;
        let ids_sec = ids_sec.ok_or_else(|| malformed("no ids section"))?;
        let docs_sec = docs_sec.ok_or_else(|| malformed("no docs section"))?;

        // Ids: shape, then strictly increasing.
        let (ids, id_data) = match id_type {
            IdType::U64 | IdType::Uuid => {
                let width = if id_type == IdType::U64 { 8 } else { UUID_LEN };
                if Some(ids_sec.end - ids_sec.start) != rows.checked_mul(width) {
                    return Err(malformed(format_args!(
                        "the ids section is {} bytes, expected {rows} × {width}",
                        ids_sec.end - ids_sec.start
                    )));
                }
                (ids_sec.clone(), ids_sec.end..ids_sec.end)
            }
            IdType::String => {
                offsets_table("string ids", buf, &ids_sec, rows, 1, len_u64(MAX_STRING_ID_BYTES))?
            }
        };
        let (doc_offsets, doc_data) =
            offsets_table("docs", buf, &docs_sec, rows, len_u64(MIN_ATTRS_BYTES), u64::MAX)?;

        // Vectors.
        let vector_dim = (dim != 0).then_some(dim);
        let (vectors, absent) = match (vector_dim, vec_sec) {
            (None, None) => {
                if absent_sec.is_some() {
                    return Err(malformed("a vector-absent section without vectors"));
                }
                (Vectors::None, None)
            }
            (None, Some(_)) => return Err(malformed("a vectors section but vector_dim is 0")),
            (Some(_), None) => return Err(malformed("vector_dim is set but there is no vectors section")),
            (Some(_), Some(sec)) => {
                let want = rows.checked_mul(dim_usize).and_then(|n| n.checked_mul(4));
                if Some(sec.end - sec.start) != want {
                    return Err(malformed(format_args!(
                        "the vectors section is {} bytes, expected {rows} × {dim} × 4",
                        sec.end - sec.start
                    )));
                }
                let raw = buf.get(sec.clone()).unwrap_or_default();
                let vectors = if f32_slice(raw).is_some() {
                    Vectors::Borrowed(sec)
                } else {
                    Vectors::Owned(
                        raw.chunks_exact(4)
                            .map(|c| <[u8; 4]>::try_from(c).map_or(0.0, f32::from_le_bytes))
                            .collect(),
                    )
                };
                let absent = match absent_sec {
                    None => None,
                    Some(a) => {
                        let words = rows.div_ceil(64);
                        if a.end - a.start != words * 8 {
                            return Err(malformed(format_args!(
                                "the vector-absent bitmap is {} bytes, expected {}",
                                a.end - a.start,
                                words * 8
                            )));
                        }
                        let bits = buf.get(a.clone()).unwrap_or_default();
                        check_bitmap("vector-absent bitmap", bits, rows)?;
                        if bits.iter().all(|&b| b == 0) {
                            return Err(malformed(
                                "an empty vector-absent bitmap (it is written only if needed)",
                            ));
                        }
                        // Rows without a vector hold zeros (canonical encoding).
                        let row_bytes = dim_usize * 4;
                        for row in (0..rows).filter(|&r| le_u64(bits, r / 64 * 8) & (1u64 << (r % 64)) != 0) {
                            let at = row * row_bytes;
                            check_zero(
                                "vector of a row without a vector",
                                raw.get(at..at + row_bytes).unwrap_or_default(),
                            )?;
                        }
                        Some(a)
                    }
                };
                (vectors, absent)
            }
        };

        let seg = Segment {
            inner: Arc::new(Inner {
                bytes: bytes.clone(),
                rows,
                id_type,
                vector_dim,
                dim: dim_usize,
                sections,
                ids,
                id_data,
                doc_offsets,
                doc_data,
                vectors,
                absent,
            }),
        };
        for row in 1..rows {
            if seg.cmp_rows(row - 1, row) != Ordering::Less {
                return Err(malformed(format_args!("ids are not strictly increasing at row {row}")));
            }
        }
        if id_type == IdType::String {
            for row in 0..rows {
                std::str::from_utf8(seg.str_id(row))
                    .map_err(|e| malformed(format_args!("string id of row {row} is not UTF-8: {e}")))?;
            }
        }
        Ok(seg)
    }

    fn buf(&self) -> &[u8] {
        &self.inner.bytes
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.inner.rows
    }

    /// Whether the segment holds no rows.
    pub fn is_empty(&self) -> bool {
        self.inner.rows == 0
    }

    /// The id kind of the segment's rows.
    pub fn id_type(&self) -> IdType {
        self.inner.id_type
    }

    fn u64_id(&self, row: usize) -> u64 {
        le_u64(self.buf(), self.inner.ids.start + row * 8)
    }

    fn uuid_id(&self, row: usize) -> &[u8] {
        let at = self.inner.ids.start + row * UUID_LEN;
        self.buf().get(at..at + UUID_LEN).unwrap_or_default()
    }

    fn str_id(&self, row: usize) -> &[u8] {
        let base = self.inner.id_data.start;
        let t = self.inner.ids.start + row * 8;
        let (a, b) = (le_u64(self.buf(), t), le_u64(self.buf(), t + 8));
        let a = usize::try_from(a).unwrap_or(usize::MAX);
        let b = usize::try_from(b).unwrap_or(usize::MAX);
        self.buf().get(base.saturating_add(a)..base.saturating_add(b)).unwrap_or_default()
    }

    fn cmp_rows(&self, a: usize, b: usize) -> Ordering {
        match self.inner.id_type {
            IdType::U64 => self.u64_id(a).cmp(&self.u64_id(b)),
            IdType::Uuid => self.uuid_id(a).cmp(self.uuid_id(b)),
            IdType::String => self.str_id(a).cmp(self.str_id(b)),
        }
    }

    /// How the id of `row` compares with `id`.
    fn cmp_row(&self, row: usize, id: &DocId) -> Ordering {
        match (self.inner.id_type, id) {
            (IdType::U64, DocId::U64(n)) => self.u64_id(row).cmp(n),
            (IdType::Uuid, DocId::Uuid(u)) => self.uuid_id(row).cmp(u.as_bytes().as_slice()),
            (IdType::String, DocId::Str(s)) => self.str_id(row).cmp(s.as_bytes()),
            (t, id) => id_rank(t).cmp(&id_rank(id.id_type())),
        }
    }

    /// The id of `row`, or `None` if `row >= len()`.
    pub fn try_id(&self, row: usize) -> Option<DocId> {
        if row >= self.inner.rows {
            return None;
        }
        Some(match self.inner.id_type {
            IdType::U64 => DocId::U64(self.u64_id(row)),
            IdType::Uuid => {
                DocId::Uuid(uuid::Uuid::from_slice(self.uuid_id(row)).unwrap_or_else(|_| uuid::Uuid::nil()))
            }
            // Validated as UTF-8 at open, so the conversion is exact.
            IdType::String => DocId::Str(String::from_utf8_lossy(self.str_id(row)).into_owned()),
        })
    }

    /// The id of `row`.
    ///
    /// # Panics
    /// If `row >= len()`, like slice indexing. Rows that come from stored
    /// bytes (index sections) should go through [`Segment::try_id`].
    pub fn id(&self, row: usize) -> DocId {
        match self.try_id(row) {
            Some(id) => id,
            None => panic!("segment row {row} out of range (len {})", self.inner.rows),
        }
    }

    /// The first row whose id is `>= id` (`len()` if none), by binary
    /// search. Ids of another kind compare by the cross-kind order of
    /// [`DocId`] (u64 < UUID < string).
    pub fn lower_bound(&self, id: &DocId) -> usize {
        let (mut lo, mut hi) = (0, self.inner.rows);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.cmp_row(mid, id) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The row holding `id`, by binary search.
    pub fn find(&self, id: &DocId) -> Option<usize> {
        let row = self.lower_bound(id);
        (row < self.inner.rows && self.cmp_row(row, id) == Ordering::Equal).then_some(row)
    }

    /// The dense vector dimension, if the segment has vectors.
    pub fn vector_dim(&self) -> Option<u32> {
        self.inner.vector_dim
    }

    /// All vectors, rows × dim, row-major (`None` if the segment has no
    /// vectors). Rows without a vector ([`Segment::has_vector`]) hold zeros
    /// here and must be skipped by callers (e.g. by an ANN filter).
    /// Zero-copy when the section is 4-byte aligned in memory
    /// ([`Segment::vectors_zero_copy`]).
    pub fn vectors(&self) -> Option<&[f32]> {
        match &self.inner.vectors {
            Vectors::None => None,
            Vectors::Borrowed(r) => {
                Some(f32_slice(self.buf().get(r.clone()).unwrap_or_default()).unwrap_or(&[]))
            }
            Vectors::Owned(v) => Some(v),
        }
    }

    /// Whether [`Segment::vectors`] borrows the buffer in place (as opposed
    /// to a copy made at open because the buffer was misaligned).
    pub fn vectors_zero_copy(&self) -> bool {
        matches!(self.inner.vectors, Vectors::Borrowed(_))
    }

    /// Whether `row` has a vector (false for rows out of range and for
    /// segments without vectors).
    pub fn has_vector(&self, row: usize) -> bool {
        if row >= self.inner.rows || self.inner.vector_dim.is_none() {
            return false;
        }
        match &self.inner.absent {
            None => true,
            Some(a) => le_u64(self.buf(), a.start + row / 64 * 8) & (1u64 << (row % 64)) == 0,
        }
    }

    /// The vector of `row`, if it has one.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        if !self.has_vector(row) {
            return None;
        }
        let d = self.inner.dim;
        self.vectors()?.get(row * d..row * d + d)
    }

    /// The attributes of `row` (only that row is decoded).
    pub fn attrs(&self, row: usize) -> Result<BTreeMap<String, Value>, FormatError> {
        if row >= self.inner.rows {
            return Err(malformed(format_args!("row {row} out of range (len {})", self.inner.rows)));
        }
        let t = self.inner.doc_offsets.start + row * 8;
        let (a, b) = (le_u64(self.buf(), t), le_u64(self.buf(), t + 8));
        let base = self.inner.doc_data.start;
        let (a, b) = (to_usize("doc offset", a)?, to_usize("doc offset", b)?);
        let bytes = self
            .buf()
            .get(base.saturating_add(a)..base.saturating_add(b))
            .ok_or_else(|| malformed(format_args!("row {row}: doc offsets out of bounds")))?;
        let mut r = Reader::new(bytes);
        let attrs = decode_attrs(&mut r)?;
        r.finish("segment doc")?;
        Ok(attrs)
    }

    /// The document of `row`: id, vector and attributes (only that row is
    /// decoded).
    pub fn doc(&self, row: usize) -> Result<Document, FormatError> {
        let attrs = self.attrs(row)?;
        let id = self.try_id(row).ok_or_else(|| malformed(format_args!("row {row} out of range")))?;
        Ok(Document { id, vector: self.vector(row).map(<[f32]>::to_vec), attrs })
    }

    /// The bytes of the first section of `kind`, if any.
    pub fn section(&self, kind: u16) -> Option<&[u8]> {
        self.inner.sections.iter().find(|(s, _)| s.kind == kind).and_then(|(_, r)| self.buf().get(r.clone()))
    }

    /// The bytes of every section of `kind`, in file order.
    pub fn sections(&self, kind: u16) -> Vec<&[u8]> {
        self.inner
            .sections
            .iter()
            .filter(|(s, _)| s.kind == kind)
            .filter_map(|(_, r)| self.buf().get(r.clone()))
            .collect()
    }

    /// Every extension section (kind >= [`FIRST_EXTENSION_KIND`]) as
    /// (kind, bytes), in file order.
    pub fn extension_sections(&self) -> Vec<(u16, &[u8])> {
        self.inner
            .sections
            .iter()
            .filter(|(s, _)| s.kind >= FIRST_EXTENSION_KIND)
            .filter_map(|(s, r)| self.buf().get(r.clone()).map(|b| (s.kind, b)))
            .collect()
    }

    /// The section table, in file order.
    pub fn section_infos(&self) -> Vec<SectionInfo> {
        self.inner.sections.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Size of the segment file in bytes.
    pub fn byte_len(&self) -> usize {
        self.inner.bytes.len()
    }

    /// The underlying buffer (shares it; no copy).
    pub fn bytes(&self) -> Bytes {
        self.inner.bytes.clone()
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at.saturating_add(2)).and_then(|s| <[u8; 2]>::try_from(s).ok()).map_or(0, u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4)).and_then(|s| <[u8; 4]>::try_from(s).ok()).map_or(0, u32::from_le_bytes)
}

/// Bits at or above `rows` in a bitmap of `ceil(rows / 64)` LE u64 words must
/// be zero.
fn check_bitmap(what: &'static str, words: &[u8], rows: usize) -> Result<(), FormatError> {
    if !rows.is_multiple_of(64) {
        let last = le_u64(words, (rows / 64) * 8);
        if last >> (rows % 64) != 0 {
            return Err(FormatError::Malformed(format!("{what}: bits set beyond the last row")));
        }
    }
    Ok(())
}

// ====================================================================== deletion set

/// The set of retired rows of one segment: a bitset over its row positions
/// `0..rows`. Stored as its own object (`deletes-{token}.del`).
///
/// ```text
/// 0       8        10      12         16       24          32
/// +-------+--------+-------+----------+--------+-----------+-------------------+-------+
/// | magic |version | flags | reserved | rows   | deleted   | ceil(rows/64) u64 | crc32c|
/// | 8 B   | u16    | u16   | u32 (0)  | u64    | u64       | bitmap words      | u32   |
/// +-------+--------+-------+----------+--------+-----------+-------------------+-------+
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionSet {
    rows: usize,
    words: Vec<u64>,
    count: usize,
}

impl DeletionSet {
    /// An empty set over a segment of `rows` rows (at most [`MAX_SEGMENT_ROWS`]
    /// to be encodable).
    pub fn new(rows: usize) -> Self {
        DeletionSet { rows, words: vec![0; rows.div_ceil(64)], count: 0 }
    }

    /// Mark `row` deleted. Returns whether it was newly inserted; a row out of
    /// range (`>= rows()`) is not inserted and returns false.
    pub fn insert(&mut self, row: usize) -> bool {
        if row >= self.rows {
            return false;
        }
        let Some(w) = self.words.get_mut(row / 64) else { return false };
        let bit = 1u64 << (row % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.count += 1;
        true
    }

    /// Whether `row` is deleted (false out of range).
    pub fn contains(&self, row: usize) -> bool {
        row < self.rows && self.words.get(row / 64).is_some_and(|w| w & (1u64 << (row % 64)) != 0)
    }

    /// Number of deleted rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no row is deleted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Rows of the segment this set is over.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows not deleted.
    pub fn live_rows(&self) -> usize {
        self.rows - self.count
    }

    /// The deleted rows, increasing.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + b)
            })
        })
    }

    /// The union of two sets over the same segment (if their row counts
    /// differ, the result covers the larger one).
    pub fn union(&self, other: &DeletionSet) -> DeletionSet {
        let rows = self.rows.max(other.rows);
        let mut words = vec![0u64; rows.div_ceil(64)];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.words.get(i).copied().unwrap_or(0) | other.words.get(i).copied().unwrap_or(0);
        }
        let count = words.iter().map(|w| w.count_ones() as usize).sum();
        DeletionSet { rows, words, count }
    }

    /// Encode (see the type doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(DELETES_HEADER_LEN + self.words.len() * 8 + 4);
        w.bytes(&DELETES_MAGIC);
        w.u16(DELETES_FORMAT_VERSION);
        w.u16(0); // flags
        w.u32(0); // reserved
        w.u64(len_u64(self.rows));
        w.u64(len_u64(self.count));
        for word in &self.words {
            w.u64(*word);
        }
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode and verify a deletion set: magic, version, length, crc32c,
    /// flags, bits beyond `rows` zero, and `deleted` equal to the bits set.
    pub fn decode(bytes: &[u8]) -> Result<DeletionSet, FormatError> {
        let mut r = Reader::new(bytes);
        let magic: [u8; 8] = r.array("deletion set magic")?;
        if magic != DELETES_MAGIC {
            return Err(FormatError::BadMagic { what: DEL_WHAT });
        }
        let version = r.u16("deletion set version")?;
        if version != DELETES_FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: DEL_WHAT,
                version: u64::from(version),
                supported: u64::from(DELETES_FORMAT_VERSION),
            });
        }
        let flags = r.u16("deletion set flags")?;
        let reserved = r.u32("deletion set reserved")?;
        let rows = r.u64("deletion set rows")?;
        let deleted = r.u64("deletion set count")?;
        if rows > len_u64(MAX_SEGMENT_ROWS) {
            return Err(FormatError::TooLarge {
                what: "deletion set rows",
                len: rows,
                max: len_u64(MAX_SEGMENT_ROWS),
            });
        }
        let rows = to_usize("deletion set rows", rows)?;
        let words = rows.div_ceil(64);
        let expected = DELETES_HEADER_LEN + words * 8 + 4;
        match expected.cmp(&bytes.len()) {
            Ordering::Greater => {
                return Err(FormatError::Truncated {
                    what: DEL_WHAT,
                    needed: len_u64(expected),
                    available: len_u64(bytes.len()),
                })
            }
            Ordering::Less => {
                return Err(FormatError::TrailingBytes {
                    what: DEL_WHAT,
                    extra: len_u64(bytes.len() - expected),
                })
            }
            Ordering::Equal => {}
        }
        let stored = le_u32(bytes, expected - 4);
        let actual = crc32c::crc32c(bytes.get(..expected - 4).unwrap_or_default());
        if stored != actual {
            return Err(FormatError::ChecksumMismatch { what: DEL_WHAT, expected: stored, actual });
        }
        if flags != 0 || reserved != 0 {
            return Err(FormatError::Malformed(format!(
                "{DEL_WHAT}: unknown flags {flags:#06x} or non-zero reserved field"
            )));
        }
        let bitmap = bytes.get(DELETES_HEADER_LEN..expected - 4).unwrap_or_default();
        check_bitmap(DEL_WHAT, bitmap, rows)?;
        let words: Vec<u64> = (0..words).map(|i| le_u64(bitmap, i * 8)).collect();
        let count: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        if len_u64(count) != deleted {
            return Err(FormatError::Malformed(format!(
                "{DEL_WHAT}: header says {deleted} deleted rows, the bitmap has {count}"
            )));
        }
        Ok(DeletionSet { rows, words, count })
    }
}

// ====================================================================== tests

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Invariant: with range checksums any byte range, widened to chunks, verifies on its own;
    /// a flipped bit in it does not; a segment whose checksums disagree with its bytes does not
    /// open; rebuilding from the extension sections reproduces the file.
    #[test]
    fn range_checksums_verify_ranged_reads() {
        let docs: Vec<Document> = (0..3000u64)
            .map(|i| Document {
                id: DocId::U64(i),
                vector: Some(vec![i as f32, 1.0]),
                attrs: attrs(&[("t", Value::Str("x".repeat((i % 50) as usize)))]),
            })
            .collect();
        let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_range_checksums();
        for d in &docs {
            b.push(d).unwrap();
        }
        b.add_section(SECTION_TEXT_INDEX, vec![3; 1000]);
        let bytes = b.finish().unwrap();
        let seg = Segment::open(Bytes::from(bytes.clone())).unwrap();
        let table = section_table(&bytes).unwrap();
        let last = table.last().unwrap();
        assert_eq!(last.kind, SECTION_RANGE_CHECKSUMS);
        let sums = RangeChecksums::decode(seg.section(SECTION_RANGE_CHECKSUMS).unwrap()).unwrap();
        assert_eq!(sums.covered(), last.offset);
        assert!(sums.covered() > 3 << RANGE_CHUNK_LOG2, "the test spans several chunks");
        for (a, z) in [(0u64, 1u64), (100, 40_000), (16_383, 16_385), (sums.covered() - 5, sums.covered())] {
            let w = sums.widen(a..z).unwrap();
            assert!(w.start <= a && z <= w.end);
            let got = &bytes[w.start as usize..w.end as usize];
            sums.verify(w.start, got).unwrap();
            let mut bad = got.to_vec();
            bad[(a - w.start) as usize] ^= 0x04;
            assert!(sums.verify(w.start, &bad).is_err());
            assert!(sums.verify(w.start + 1, &got[1..]).is_err(), "unaligned start refused");
        }
        assert!(sums.widen(0..sums.covered() + 1).is_none());
        assert_eq!(rebuild(&seg), bytes, "canonical with the checksum section");
        // A builder that lies: the checksums no longer match the bytes.
        let mut forged = bytes.clone();
        let at = last.offset as usize + RANGE_HEADER_LEN;
        forged[at] ^= 1;
        let crc = crc32c::crc32c(&forged[last.offset as usize..(last.offset + last.len) as usize]);
        let table_at = forged.len() - 4 - SECTION_ENTRY_LEN * table.len();
        let entry = table_at + SECTION_ENTRY_LEN * (table.len() - 1);
        forged[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
        let tcrc = crc32c::crc32c(&forged[table_at..forged.len() - 4]);
        let n = forged.len();
        forged[n - 4..].copy_from_slice(&tcrc.to_le_bytes());
        assert!(matches!(Segment::open(Bytes::from(forged)), Err(FormatError::ChecksumMismatch { .. })));
    }

    /// Invariant: a cold reader that fetches only the section table's ranges sees the ids the
    /// segment holds, for every id kind (`section_table`, `IdsSection`).
    #[test]
    fn ids_section_read_alone_matches_the_segment() {
        let kinds: [(IdType, Vec<DocId>); 3] = [
            (IdType::U64, vec![DocId::U64(1), DocId::U64(7), DocId::U64(u64::MAX)]),
            (IdType::Uuid, (1u128..4).map(|u| DocId::Uuid(uuid::Uuid::from_u128(u << 64))).collect()),
            (IdType::String, ["a", "bé", "zzzz"].iter().map(|s| DocId::Str((*s).to_owned())).collect()),
        ];
        for (ty, ids) in kinds {
            let mut b = SegmentBuilder::new(ty, None);
            for id in &ids {
                b.push(&Document { id: id.clone(), vector: None, attrs: BTreeMap::new() }).unwrap();
            }
            let bytes = b.finish().unwrap();
            let table = section_table(&bytes).unwrap();
            let seg = Segment::open(Bytes::from(bytes.clone())).unwrap();
            assert_eq!(table, seg.section_infos());
            let e = table.iter().find(|s| s.kind == SECTION_IDS).unwrap();
            let sec = Bytes::copy_from_slice(&bytes[e.offset as usize..(e.offset + e.len) as usize]);
            assert_eq!(crc32c::crc32c(&sec), e.crc32c);
            let view = IdsSection::parse(sec.clone(), ty, ids.len()).unwrap();
            for (row, id) in ids.iter().enumerate() {
                assert_eq!(view.id(row).as_ref(), Some(id));
            }
            assert_eq!(view.id(ids.len()), None);
            assert!(IdsSection::parse(sec.slice(..sec.len() - 1), ty, ids.len()).is_err());
            assert!(IdsSection::parse(sec, ty, ids.len() + 1).is_err());
            let mut bad = bytes.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(section_table(&bad).is_err(), "the table crc is checked");
        }
    }

    fn attrs(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    fn every_value() -> BTreeMap<String, Value> {
        attrs(&[
            ("arr", Value::Array(vec![Value::Int(1), Value::Str("x".into()), Value::Bool(false)])),
            ("b", Value::Bool(true)),
            ("f", Value::Float(-2.5e-300)),
            ("i", Value::Int(i128::from(i64::MIN))),
            ("n", Value::Null),
            ("s", Value::Str("héllo".into())),
            ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), -1.0)])),
            ("u", Value::Int(i128::from(u64::MAX))),
        ])
    }

    fn build(id_type: IdType, dim: Option<u32>, docs: &[Document]) -> Vec<u8> {
        let mut b = SegmentBuilder::new(id_type, dim);
        for d in docs {
            b.push(d).unwrap();
        }
        assert_eq!(b.len(), docs.len());
        b.finish().unwrap()
    }

    fn open(bytes: &[u8]) -> Result<Segment, FormatError> {
        Segment::open(Bytes::copy_from_slice(bytes))
    }

    fn check_all(seg: &Segment, docs: &[Document]) {
        assert_eq!(seg.len(), docs.len());
        for (row, d) in docs.iter().enumerate() {
            assert_eq!(seg.id(row), d.id);
            assert_eq!(seg.find(&d.id), Some(row));
            assert_eq!(seg.lower_bound(&d.id), row);
            assert_eq!(&seg.doc(row).unwrap(), d);
            assert_eq!(seg.vector(row), d.vector.as_deref());
        }
        assert_eq!(seg.try_id(docs.len()), None);
        assert!(seg.doc(docs.len()).is_err());
    }

    fn small_docs() -> Vec<Document> {
        vec![
            Document { id: DocId::U64(3), vector: Some(vec![1.0, 2.0]), attrs: every_value() },
            Document { id: DocId::U64(10), vector: Some(vec![-0.5, 0.0]), attrs: BTreeMap::new() },
            Document {
                id: DocId::U64(u64::MAX),
                vector: Some(vec![f32::MIN_POSITIVE, 7.0]),
                attrs: attrs(&[("a", Value::Int(1))]),
            },
        ]
    }

    fn small_segment() -> Vec<u8> {
        build(IdType::U64, Some(2), &small_docs())
    }

    #[test]
    fn every_value_kind_round_trips_with_u64_ids_and_vectors() {
        let docs = small_docs();
        let seg = open(&small_segment()).unwrap();
        check_all(&seg, &docs);
        assert_eq!(seg.vector_dim(), Some(2));
        assert_eq!(seg.id_type(), IdType::U64);
        assert_eq!(seg.vectors().unwrap(), &[1.0, 2.0, -0.5, 0.0, f32::MIN_POSITIVE, 7.0]);
        assert_eq!(seg.find(&DocId::U64(4)), None);
        assert_eq!(seg.lower_bound(&DocId::U64(4)), 1);
        assert_eq!(seg.lower_bound(&DocId::U64(0)), 0);
        assert_eq!(seg.find(&DocId::Str("3".into())), None);
        // Cross-kind order: u64 < UUID < string.
        assert_eq!(seg.lower_bound(&DocId::Str("a".into())), 3);
        assert_eq!(seg.lower_bound(&DocId::Uuid(uuid::Uuid::nil())), 3);
    }

    #[test]
    fn uuid_ids_round_trip() {
        let docs: Vec<Document> = [1u128, 0xff, u128::MAX]
            .iter()
            .map(|&u| Document {
                id: DocId::Uuid(uuid::Uuid::from_u128(u)),
                vector: None,
                attrs: attrs(&[("x", Value::Str(format!("{u}")))]),
            })
            .collect();
        let seg = open(&build(IdType::Uuid, None, &docs)).unwrap();
        check_all(&seg, &docs);
        assert_eq!(seg.vectors(), None);
        assert_eq!(seg.vector_dim(), None);
        assert_eq!(seg.find(&DocId::Uuid(uuid::Uuid::from_u128(2))), None);
        assert_eq!(seg.lower_bound(&DocId::Uuid(uuid::Uuid::from_u128(2))), 1);
        assert_eq!(seg.lower_bound(&DocId::U64(u64::MAX)), 0);
        assert_eq!(seg.lower_bound(&DocId::Str("a".into())), 3);
    }

    #[test]
    fn string_ids_round_trip() {
        let ids = ["a", "ab", "b", "héllo", &"z".repeat(MAX_STRING_ID_BYTES)];
        let docs: Vec<Document> = ids
            .iter()
            .map(|s| Document { id: DocId::Str((*s).into()), vector: None, attrs: every_value() })
            .collect();
        let seg = open(&build(IdType::String, None, &docs)).unwrap();
        check_all(&seg, &docs);
        assert_eq!(seg.find(&DocId::Str("aa".into())), None);
        assert_eq!(seg.lower_bound(&DocId::Str("aa".into())), 1);
        assert_eq!(seg.lower_bound(&DocId::Str("zzz".into())), 4);
        assert_eq!(seg.lower_bound(&DocId::U64(1)), 0);
    }

    #[test]
    fn rows_without_vectors_are_recorded() {
        let docs = vec![
            Document { id: DocId::U64(1), vector: None, attrs: BTreeMap::new() },
            Document { id: DocId::U64(2), vector: Some(vec![1.0, 2.0, 3.0]), attrs: BTreeMap::new() },
            Document { id: DocId::U64(3), vector: None, attrs: BTreeMap::new() },
        ];
        let bytes = build(IdType::U64, Some(3), &docs);
        let seg = open(&bytes).unwrap();
        check_all(&seg, &docs);
        assert!(!seg.has_vector(0) && seg.has_vector(1) && !seg.has_vector(2) && !seg.has_vector(3));
        assert_eq!(seg.vectors().unwrap().len(), 9);
        assert!(seg.section(SECTION_VECTOR_ABSENT).is_some());
        // All rows with vectors: no absent bitmap.
        assert!(open(&small_segment()).unwrap().section(SECTION_VECTOR_ABSENT).is_none());
    }

    #[test]
    fn empty_segments_round_trip() {
        for (t, dim) in [(IdType::U64, None), (IdType::Uuid, Some(4)), (IdType::String, None)] {
            let seg = open(&build(t, dim, &[])).unwrap();
            assert_eq!(seg.len(), 0);
            assert!(seg.is_empty());
            assert_eq!(seg.id_type(), t);
            assert_eq!(seg.vector_dim(), dim);
            assert_eq!(seg.find(&DocId::U64(1)), None);
            assert_eq!(seg.lower_bound(&DocId::Str("x".into())), 0);
            assert_eq!(seg.vectors().map(<[f32]>::len), dim.map(|_| 0));
        }
    }

    #[test]
    fn builder_refuses_bad_pushes_without_appending() {
        let mut b = SegmentBuilder::new(IdType::U64, Some(2));
        b.push(&Document { id: DocId::U64(5), vector: Some(vec![0.0, 1.0]), attrs: BTreeMap::new() })
            .unwrap();
        let bad = [
            Document { id: DocId::U64(5), vector: Some(vec![0.0, 1.0]), attrs: BTreeMap::new() },
            Document { id: DocId::U64(4), vector: Some(vec![0.0, 1.0]), attrs: BTreeMap::new() },
            Document { id: DocId::Str("x".into()), vector: None, attrs: BTreeMap::new() },
            Document { id: DocId::U64(6), vector: Some(vec![0.0]), attrs: BTreeMap::new() },
            Document {
                id: DocId::U64(7),
                vector: None,
                attrs: attrs(&[("a", Value::Array(vec![Value::Array(vec![])]))]),
            },
        ];
        for d in &bad {
            assert!(b.push(d).is_err(), "{d:?}");
        }
        assert_eq!(b.len(), 1);
        let seg = open(&b.finish().unwrap()).unwrap();
        assert_eq!(seg.len(), 1);
        assert!(!seg.is_empty());

        let mut b = SegmentBuilder::new(IdType::U64, None);
        assert!(b
            .push(&Document { id: DocId::U64(1), vector: Some(vec![1.0]), attrs: BTreeMap::new() })
            .is_err());
        let mut b = SegmentBuilder::new(IdType::String, None);
        assert!(b.push(&Document::new(DocId::Str(String::new()))).is_err());
        assert!(b.push(&Document::new(DocId::Str("x".repeat(65)))).is_err());
        assert!(b.is_empty());
        assert!(SegmentBuilder::new(IdType::U64, Some(0)).finish().is_err());
        let mut b = SegmentBuilder::new(IdType::U64, None);
        b.add_section(SECTION_DOCS, vec![1]);
        assert!(b.finish().is_err());
    }

    #[test]
    fn extension_sections_are_kept_and_unknown_ones_skipped() {
        let mut b = SegmentBuilder::new(IdType::U64, Some(2));
        for d in small_docs() {
            b.push(&d).unwrap();
        }
        b.add_section(SECTION_TEXT_INDEX, b"title...".to_vec());
        b.add_section(SECTION_ANN_INDEX, vec![9; 100]);
        b.add_section(SECTION_TEXT_INDEX, b"body...".to_vec());
        b.add_section(999, vec![]);
        b.add_section(u16::MAX, vec![7; 3]);
        let bytes = b.finish().unwrap();
        let seg = open(&bytes).unwrap();
        check_all(&seg, &small_docs());
        assert_eq!(rebuild(&seg), bytes);
        assert_eq!(seg.section(SECTION_ANN_INDEX), Some(&[9u8; 100][..]));
        assert_eq!(seg.sections(SECTION_TEXT_INDEX), vec![&b"title..."[..], &b"body..."[..]]);
        assert_eq!(seg.section(SECTION_TEXT_INDEX), Some(&b"title..."[..]));
        assert_eq!(seg.section(999), Some(&[][..]));
        assert_eq!(seg.section(u16::MAX), Some(&[7u8; 3][..]));
        assert_eq!(seg.section(SECTION_SPARSE_INDEX), None);
        assert!(seg.sections(SECTION_ATTRIBUTE_INDEX).is_empty());
        let infos = seg.section_infos();
        assert_eq!(infos.len(), 8);
        assert!(infos.iter().all(|s| s.offset % 64 == 0));
        assert_eq!(infos.iter().map(|s| s.kind).collect::<Vec<_>>(), vec![1, 2, 3, 17, 16, 17, 999, 65535]);
    }

    #[test]
    fn unknown_core_kinds_are_refused() {
        let seg = open(&small_segment()).unwrap();
        let ids = seg.section(SECTION_IDS).unwrap().to_vec();
        let docs = seg.section(SECTION_DOCS).unwrap().to_vec();
        let vecs = seg.section(SECTION_VECTORS).unwrap().to_vec();
        let good = assemble(
            ID_KIND_U64,
            3,
            2,
            &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (SECTION_VECTORS, &vecs), (16, b"x")],
            false,
        )
        .unwrap();
        assert_eq!(good.len(), small_segment().len() + SECTION_ALIGN + SECTION_ENTRY_LEN);
        check_all(&open(&good).unwrap(), &small_docs());
        for bad_kind in [0u16, 5, 15] {
            let bytes = assemble(
                ID_KIND_U64,
                3,
                2,
                &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (SECTION_VECTORS, &vecs), (bad_kind, b"x")],
                false,
            )
            .unwrap();
            assert!(matches!(open(&bytes), Err(FormatError::Malformed(_))), "kind {bad_kind}");
        }
        // Duplicated and missing core sections.
        let dup = assemble(
            ID_KIND_U64,
            3,
            2,
            &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (SECTION_VECTORS, &vecs), (SECTION_IDS, &ids)],
            false,
        )
        .unwrap();
        assert!(matches!(open(&dup), Err(FormatError::Malformed(_))));
        let missing =
            assemble(ID_KIND_U64, 3, 2, &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs)], false).unwrap();
        assert!(matches!(open(&missing), Err(FormatError::Malformed(_))));
        let no_dim =
            assemble(ID_KIND_U64, 3, 0, &[(SECTION_IDS, &ids), (SECTION_DOCS, &docs), (3, &vecs)], false);
        assert!(matches!(open(&no_dim.unwrap()), Err(FormatError::Malformed(_))));
    }

    /// Rebuild a segment from its documents and extension sections.
    fn rebuild(seg: &Segment) -> Vec<u8> {
        let mut b = SegmentBuilder::new(seg.id_type(), seg.vector_dim());
        for row in 0..seg.len() {
            b.push(&seg.doc(row).unwrap()).unwrap();
        }
        for (kind, bytes) in seg.extension_sections() {
            b.add_section(kind, bytes.to_vec());
        }
        b.finish().unwrap()
    }

    #[test]
    fn core_sections_come_first_in_kind_order_and_absent_vectors_are_zero() {
        let docs = vec![
            Document { id: DocId::U64(1), vector: None, attrs: BTreeMap::new() },
            Document { id: DocId::U64(2), vector: Some(vec![1.0, 2.0]), attrs: BTreeMap::new() },
        ];
        let seg = open(&build(IdType::U64, Some(2), &docs)).unwrap();
        let ids = seg.section(SECTION_IDS).unwrap().to_vec();
        let d = seg.section(SECTION_DOCS).unwrap().to_vec();
        let v = seg.section(SECTION_VECTORS).unwrap().to_vec();
        let a = seg.section(SECTION_VECTOR_ABSENT).unwrap().to_vec();
        let mk = |secs: &[(u16, &[u8])]| open(&assemble(ID_KIND_U64, 2, 2, secs, false).unwrap());
        assert!(mk(&[(1, &ids), (2, &d), (3, &v), (4, &a), (16, b"x")]).is_ok());
        for bad in [
            vec![(2, &d[..]), (1, &ids[..]), (3, &v[..]), (4, &a[..])],
            vec![(1, &ids[..]), (2, &d[..]), (4, &a[..]), (3, &v[..])],
            vec![(1, &ids[..]), (2, &d[..]), (16, b"x"), (3, &v[..]), (4, &a[..])],
        ] {
            assert!(
                matches!(mk(&bad), Err(FormatError::Malformed(_))),
                "{:?}",
                bad.iter().map(|s| s.0).collect::<Vec<_>>()
            );
        }
        let mut nonzero = v.clone();
        nonzero[0] = 1;
        assert!(matches!(mk(&[(1, &ids), (2, &d), (3, &nonzero), (4, &a)]), Err(FormatError::Malformed(_))));
        assert!(matches!(mk(&[(1, &ids), (2, &d), (3, &v), (4, &[0; 8])]), Err(FormatError::Malformed(_))));
    }

    #[test]
    fn structurally_bad_sections_behind_good_checksums_are_refused() {
        let seg = open(&small_segment()).unwrap();
        let ids = seg.section(SECTION_IDS).unwrap().to_vec();
        let docs = seg.section(SECTION_DOCS).unwrap().to_vec();
        let vecs = seg.section(SECTION_VECTORS).unwrap().to_vec();
        let mk = |ids: &[u8], docs: &[u8], vecs: &[u8], rows: usize| {
            open(&assemble(ID_KIND_U64, rows, 2, &[(1, ids), (2, docs), (3, vecs)], false).unwrap())
        };
        assert!(mk(&ids, &docs, &vecs, 3).is_ok());
        // Ids not increasing.
        let mut swapped = ids.clone();
        swapped[..8].copy_from_slice(&ids[8..16]);
        swapped[8..16].copy_from_slice(&ids[..8]);
        assert!(matches!(mk(&swapped, &docs, &vecs, 3), Err(FormatError::Malformed(_))));
        let mut dup = ids.clone();
        dup[8..16].copy_from_slice(&ids[..8]);
        assert!(matches!(mk(&dup, &docs, &vecs, 3), Err(FormatError::Malformed(_))));
        // Wrong lengths for the row count.
        assert!(mk(&ids[..16], &docs, &vecs, 3).is_err());
        assert!(mk(&ids, &docs, &vecs[..20], 3).is_err());
        assert!(mk(&ids, &docs, &vecs, 2).is_err());
        // Docs offsets: not starting at 0, decreasing, past the end.
        for (at, v) in [(0usize, 1u64), (8, 1_000_000), (16, 0), (24, 1 << 40)] {
            let mut d = docs.clone();
            d[at..at + 8].copy_from_slice(&v.to_le_bytes());
            assert!(matches!(mk(&ids, &d, &vecs, 3), Err(FormatError::Malformed(_))), "offset at {at}");
        }
        assert!(mk(&ids, &docs[..20], &vecs, 3).is_err());
        // String ids: empty, too long, bad UTF-8.
        let str_ids = |parts: &[&[u8]]| {
            let mut w = Writer::new();
            let mut o = 0u64;
            w.u64(0);
            for p in parts {
                o += len_u64(p.len());
                w.u64(o);
            }
            for p in parts {
                w.bytes(p);
            }
            w.into_inner()
        };
        let mk_str = |ids: Vec<u8>| {
            open(&assemble(ID_KIND_STR, 3, 2, &[(1, &ids), (2, &docs), (3, &vecs)], false).unwrap())
        };
        assert!(mk_str(str_ids(&[b"a", b"b", b"c"])).is_ok());
        assert!(mk_str(str_ids(&[b"a", b"", b"c"])).is_err());
        assert!(mk_str(str_ids(&[b"a", &[b'b'; 65], b"c"])).is_err());
        assert!(mk_str(str_ids(&[b"a", &[0xc3, 0x28], b"c"])).is_err());
        assert!(mk_str(str_ids(&[b"a", b"c", b"b"])).is_err());
        // Bad attribute bytes behind a good checksum: open succeeds (rows are
        // decoded lazily), `doc` of that row fails cleanly.
        let mut d = docs.clone();
        let row2 = 32 + usize::try_from(le_u64(&docs, 16)).unwrap();
        d[row2..row2 + 4].copy_from_slice(&9u32.to_le_bytes());
        let seg = mk(&ids, &d, &vecs, 3).unwrap();
        assert!(seg.doc(0).is_ok());
        assert!(seg.doc(2).is_err());
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        let bytes = small_segment();
        for n in 0..bytes.len() {
            assert!(open(&bytes[..n]).is_err(), "prefix of {n} bytes opened");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(open(&long), Err(FormatError::TrailingBytes { extra: 1, .. })));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let mut b = SegmentBuilder::new(IdType::String, Some(1));
        b.push(&Document { id: DocId::Str("a".into()), vector: Some(vec![1.0]), attrs: every_value() })
            .unwrap();
        b.push(&Document { id: DocId::Str("b".into()), vector: None, attrs: BTreeMap::new() }).unwrap();
        b.add_section(SECTION_ANN_INDEX, vec![1, 2, 3]);
        for bytes in [small_segment(), b.finish().unwrap()] {
            for i in 0..bytes.len() * 8 {
                let mut b = bytes.clone();
                b[i / 8] ^= 1 << (i % 8);
                assert!(open(&b).is_err(), "flip of bit {i} went unnoticed");
            }
        }
    }

    #[test]
    fn version_and_magic_are_checked_first() {
        let mut bytes = small_segment();
        bytes[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            open(&bytes).unwrap_err(),
            FormatError::UnsupportedVersion { what: "segment", version: 2, supported: 1 }
        );
        // Even if the rest is a different (future) layout.
        assert!(matches!(open(&bytes[..10]), Err(FormatError::UnsupportedVersion { .. })));
        let mut bytes = small_segment();
        bytes[0] = b'X';
        assert_eq!(open(&bytes).unwrap_err(), FormatError::BadMagic { what: "segment" });
        assert!(matches!(open(b"TIDE"), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn huge_declared_sizes_fail_fast() {
        let reseal = |mut b: Vec<u8>| {
            let crc = crc32c::crc32c(&b[..OFF_HEADER_CRC]);
            b[OFF_HEADER_CRC..SEGMENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
            b
        };
        for (at, v) in [(OFF_ROWS, u64::MAX), (OFF_TABLE_OFFSET, u64::MAX), (OFF_TABLE_OFFSET, 1 << 40)] {
            let mut b = small_segment();
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            assert!(open(&reseal(b)).is_err());
        }
        let mut b = small_segment();
        b[OFF_SECTION_COUNT..OFF_SECTION_COUNT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(open(&reseal(b)), Err(FormatError::TooLarge { .. })));
        let mut b = small_segment();
        b[OFF_VECTOR_DIM..OFF_VECTOR_DIM + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(open(&reseal(b)), Err(FormatError::TooLarge { .. })));
    }

    /// A copy of `bytes` whose first byte sits at `misalign` bytes past a
    /// 64-byte boundary in memory.
    fn placed(bytes: &[u8], misalign: usize) -> Bytes {
        let mut v = vec![0u8; bytes.len() + 128];
        let off = v.as_ptr().align_offset(64) + misalign;
        v[off..off + bytes.len()].copy_from_slice(bytes);
        let b = Bytes::from(v);
        let b = b.slice(off..off + bytes.len());
        assert_eq!(b.as_ptr().align_offset(64), if misalign == 0 { 0 } else { 64 - misalign });
        b
    }

    #[test]
    fn aligned_buffers_are_read_in_place_and_misaligned_ones_copied() {
        let bytes = small_segment();
        let seg = Segment::open(placed(&bytes, 0)).unwrap();
        assert!(seg.vectors_zero_copy());
        let v = seg.vectors().unwrap();
        let sec = seg.section(SECTION_VECTORS).unwrap();
        assert_eq!(v.as_ptr().cast::<u8>(), sec.as_ptr());
        assert_eq!(sec.as_ptr().align_offset(64), 0);
        check_all(&seg, &small_docs());
        for misalign in [1, 2, 3] {
            let seg = Segment::open(placed(&bytes, misalign)).unwrap();
            assert!(!seg.vectors_zero_copy());
            check_all(&seg, &small_docs());
            assert_eq!(seg.vectors().unwrap(), v);
        }
    }

    #[test]
    fn mmap_backed_segments_are_zero_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEGMENT_FILE);
        std::fs::write(&path, small_segment()).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY (test): the file is private to this test and not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let seg = Segment::open(Bytes::from_owner(map)).unwrap();
        assert!(seg.vectors_zero_copy());
        check_all(&seg, &small_docs());
        let clone = seg.clone();
        drop(seg);
        assert_eq!(clone.byte_len(), small_segment().len());
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        assert_send_sync(&clone);
    }

    #[test]
    fn builder_output_is_canonical() {
        assert_eq!(small_segment(), small_segment());
        assert_eq!(rebuild(&open(&small_segment()).unwrap()), small_segment());
    }

    // ------------------------------------------------------------ deletion sets

    #[test]
    fn deletion_set_operations() {
        let mut d = DeletionSet::new(130);
        assert!(d.is_empty());
        assert!(d.insert(0));
        assert!(d.insert(64));
        assert!(d.insert(129));
        assert!(!d.insert(129));
        assert!(!d.insert(130));
        assert!(!d.insert(usize::MAX));
        assert_eq!(d.len(), 3);
        assert_eq!(d.rows(), 130);
        assert_eq!(d.live_rows(), 127);
        assert!(d.contains(64) && !d.contains(63) && !d.contains(130) && !d.contains(usize::MAX));
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        let mut e = DeletionSet::new(130);
        e.insert(1);
        e.insert(64);
        let u = d.union(&e);
        assert_eq!(u.iter().collect::<Vec<_>>(), vec![0, 1, 64, 129]);
        assert_eq!(u.len(), 4);
        assert_eq!(u, e.union(&d));
        let empty = DeletionSet::new(0);
        assert!(!empty.contains(0));
        assert_eq!(DeletionSet::decode(&empty.encode()).unwrap(), empty);
        let wider = DeletionSet::new(200).union(&d);
        assert_eq!((wider.rows(), wider.len()), (200, 3));
    }

    #[test]
    fn deletion_set_codec_round_trips_and_refuses_corruption() {
        let mut d = DeletionSet::new(70);
        for r in [0, 5, 63, 69] {
            d.insert(r);
        }
        let bytes = d.encode();
        assert_eq!(bytes.len(), DELETES_HEADER_LEN + 16 + 4);
        assert_eq!(DeletionSet::decode(&bytes).unwrap(), d);
        for n in 0..bytes.len() {
            assert!(DeletionSet::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(DeletionSet::decode(&b).is_err(), "flip of bit {i} went unnoticed");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(DeletionSet::decode(&long), Err(FormatError::TrailingBytes { .. })));
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(matches!(DeletionSet::decode(&v2), Err(FormatError::UnsupportedVersion { version: 2, .. })));
        // Behind a good crc: a bit beyond `rows`, a wrong count, huge rows.
        let reseal = |mut b: Vec<u8>| {
            let n = b.len() - 4;
            let crc = crc32c::crc32c(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut beyond = bytes.clone();
        beyond[DELETES_HEADER_LEN + 8] |= 0x80;
        beyond[24] = 5;
        assert!(matches!(DeletionSet::decode(&reseal(beyond)), Err(FormatError::Malformed(_))));
        let mut count = bytes.clone();
        count[24] = 3;
        assert!(matches!(DeletionSet::decode(&reseal(count)), Err(FormatError::Malformed(_))));
        let mut huge = bytes;
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(DeletionSet::decode(&reseal(huge)), Err(FormatError::TooLarge { .. })));
    }

    // ------------------------------------------------------------ proptest

    fn arb_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
            any::<u64>().prop_map(|i| Value::Int(i128::from(i))),
            (proptest::num::f64::NORMAL | proptest::num::f64::ZERO).prop_map(Value::Float),
            ".{0,12}".prop_map(Value::Str),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => arb_scalar(),
            1 => proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array),
            1 => proptest::collection::vec((".{0,6}", -1e30f32..1e30f32), 0..4).prop_map(Value::Sparse),
        ]
    }

    fn arb_ids() -> impl Strategy<Value = Vec<DocId>> {
        prop_oneof![
            proptest::collection::btree_set(any::<u64>(), 0..40)
                .prop_map(|s| s.into_iter().map(DocId::U64).collect()),
            proptest::collection::btree_set(any::<u128>(), 0..40)
                .prop_map(|s| s.into_iter().map(|u| DocId::Uuid(uuid::Uuid::from_u128(u))).collect()),
            proptest::collection::btree_set("[a-zé0-9_-]{1,20}", 0..40)
                .prop_map(|s| s.into_iter().map(DocId::Str).collect()),
        ]
    }

    fn arb_docs() -> impl Strategy<Value = (Option<u32>, Vec<Document>)> {
        (arb_ids(), proptest::option::of(1u32..6)).prop_flat_map(|(ids, dim)| {
            let n = ids.len();
            let d = dim.map_or(0, |d| d as usize);
            let has_dim = dim.is_some();
            let vec = proptest::option::weighted(0.9, proptest::collection::vec(-1e6f32..1e6f32, d..=d))
                .prop_map(move |v| v.filter(|_| has_dim));
            let attrs = proptest::collection::btree_map(".{0,8}", arb_value(), 0..4);
            proptest::collection::vec((vec, attrs), n..=n).prop_map(move |rows| {
                let docs = ids
                    .iter()
                    .zip(rows)
                    .map(|(id, (vector, attrs))| Document { id: id.clone(), vector, attrs })
                    .collect();
                (dim, docs)
            })
        })
    }

    proptest! {
        #[test]
        fn any_segment_round_trips((dim, docs) in arb_docs(), probes in proptest::collection::vec(any::<u64>(), 0..8)) {
            let id_type = docs.first().map_or(IdType::U64, |d| d.id.id_type());
            let bytes = build(id_type, dim, &docs);
            let seg = open(&bytes).unwrap();
            check_all(&seg, &docs);
            prop_assert_eq!(rebuild(&seg), bytes);
            prop_assert_eq!(seg.vector_dim(), dim);
            let ids: Vec<DocId> = docs.iter().map(|d| d.id.clone()).collect();
            for p in probes {
                let probe = match id_type {
                    IdType::U64 => DocId::U64(p),
                    IdType::Uuid => DocId::Uuid(uuid::Uuid::from_u128(u128::from(p) << 64)),
                    IdType::String => DocId::Str(format!("{p}")),
                };
                prop_assert_eq!(seg.lower_bound(&probe), ids.partition_point(|i| *i < probe));
                prop_assert_eq!(seg.find(&probe), ids.binary_search(&probe).ok());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(seg) = open(&bytes) {
                for row in 0..seg.len() {
                    let _ = seg.doc(row);
                }
            }
            let _ = DeletionSet::decode(&bytes);
        }

        #[test]
        fn any_deletion_set_round_trips(rows in 0usize..300, picks in proptest::collection::vec(any::<usize>(), 0..50)) {
            let mut d = DeletionSet::new(rows);
            let mut model = std::collections::BTreeSet::new();
            for p in picks {
                if rows > 0 {
                    let r = p % rows;
                    prop_assert_eq!(d.insert(r), model.insert(r));
                }
            }
            prop_assert_eq!(d.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(DeletionSet::decode(&d.encode()).unwrap(), d);
        }
    }
}
