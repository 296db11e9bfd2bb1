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
//! Core section kinds (< 16): 1 ids, 2 docs (per-row attributes, segment
//! version 1), 3 vectors (f32, rows × dim), 4 vector-absent bitmap, 5 doc blocks
//! (the compressed document store that replaces kind 2 in version 2,
//! `docblocks.rs`). Extension kinds (>= 16: ANN,
//! text, sparse and attribute indexes) are checksummed like every section but
//! otherwise opaque here; readers skip kinds they do not know.
//!
//! Invariants:
//! - Every byte of a segment is covered: the header by `header_crc`, each
//!   section by its table entry's crc32c, the table by `table_crc`, and the
//!   padding between them must be zero. So any truncation or single-bit flip
//!   is refused by [`Segment::open`] with a [`FormatError`], never misread;
//!   [`Segment::open_lazy`] refuses it at open or, in a bulk section of a
//!   segment with range checksums, at the first read of its chunk (`lazy.rs`).
//! - `magic` and `version` sit at fixed offsets forever and are checked
//!   before anything else (unknown version → `UnsupportedVersion`). The
//!   version names the docs layout: version 1 holds kind 2 (raw maps), version 2
//!   kind 5 (compressed blocks), never the other; both are read forever.
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
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::model::{AttrMap, DocId, Document, IdType, MAX_STRING_ID_BYTES, MAX_VECTOR_DIM};

use super::attrs::{decode_attrs, encode_attrs};
use super::{len_u64, FormatError, Reader, Writer, FORMAT_VERSION_V1};

mod ranges;
pub use ranges::*;
mod ids;
pub use ids::*;
mod assemble;
pub use assemble::BuildError;
mod builder;
pub use builder::*;
mod spool;
pub use spool::F32Rows;
mod reader;
pub use reader::*;
mod table;
pub use table::*;
mod deletes;
mod lazy;
pub use deletes::*;
mod docblocks;
pub use docblocks::{
    Block, DocBlockTable, CACHE_BLOCKS, CACHE_MAX_BLOCK, CODEC_LZ4, CODEC_STORED, DOC_BLOCKS_HEADER_LEN,
    DOC_BLOCK_ENTRY_LEN, DOC_BLOCK_TARGET,
};

/// The file name of a segment's data file (`NsPath::segment_key(id, SEGMENT_FILE)`).
pub const SEGMENT_FILE: &str = "data.seg";
/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TIDE.SEG";
/// The segment format version this build writes (and the highest it reads): 2, the
/// compressed document store (kind 5 instead of kind 2).
pub const SEGMENT_FORMAT_VERSION: u16 = 2;
/// The first segment version (docs as raw maps, kind 2); still read, and written only on
/// request ([`SegmentBuilder::with_raw_docs`]: compat fixtures, before/after benchmarks).
pub const SEGMENT_FORMAT_V1: u16 = FORMAT_VERSION_V1;
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
/// Section kind: per-row attributes in compressed blocks (segment version 2, in place of
/// [`SECTION_DOCS`]; storage-format 8.5.1).
pub const SECTION_DOC_BLOCKS: u16 = 5;
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
/// Extension section kind: the index of one named vector attribute (`index::vector::named`:
/// its rows' vectors and a calibrated graph; carries the attribute name inside).
pub const SECTION_NAMED_VECTOR_INDEX: u16 = 23;
/// Extension section kind: the cold-read IVF lists of one named vector attribute
/// (`index::vector::coldnamed`: the attribute name, then a kind-21 layout), for segments where
/// every row holds it and cold sections are built.
pub const SECTION_NAMED_COLD_IVF: u16 = 24;
/// Extension section kind: the MUVERA encodings of one multi-vector
/// (`late_interaction`) attribute (`index::multi::section`), one per attribute.
pub const SECTION_MUVERA_INDEX: u16 = 30;

/// Magic of the range-checksum section.
pub const RANGE_CHECKSUMS_MAGIC: [u8; 8] = *b"TPRANGES";
/// Chunk size of the range checksums this build writes: 2^14 = 16 KiB.
pub const RANGE_CHUNK_LOG2: u32 = 14;
const RANGE_HEADER_LEN: usize = 32;
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
    crate::codec::u64_at(b, at).unwrap_or(0)
}

/// `n` little-endian f32s into `buf`, their bytes filled by `read` (a
/// positioned read): how a row is copied out of a file instead of read
/// through its mapping.
pub fn read_f32s(
    buf: &mut Vec<f32>,
    n: usize,
    read: impl FnOnce(&mut [u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    buf.clear();
    buf.resize(n, 0.0);
    // SAFETY: u8 has alignment 1 and the `n` initialized f32s of `buf` are
    // 4·n bytes; every bit pattern is a valid f32, so any bytes read into
    // them leave valid floats.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), n * 4) };
    read(bytes)?;
    if cfg!(target_endian = "big") {
        buf.iter_mut().for_each(|v| *v = f32::from_bits(u32::from_le(v.to_bits())));
    }
    Ok(())
}

pub(crate) use crate::codec::f32_slice;

fn le_u16(b: &[u8], at: usize) -> u16 {
    crate::codec::u16_at(b, at).unwrap_or(0)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    crate::codec::u32_at(b, at).unwrap_or(0)
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

/// A copy of the valid segment `bytes` whose row `row` passes every checksum
/// but does not decode (its attribute count claims 2^32 - 1 entries): what
/// only a faulty writer produces. For tests of the paths that must refuse
/// such a row rather than drop it.
#[cfg(test)]
pub(crate) fn with_undecodable_row(bytes: &[u8], row: usize) -> Vec<u8> {
    let seg = Segment::open(bytes::Bytes::copy_from_slice(bytes)).expect("a valid segment");
    // Raw docs (version 1) are patched in place; a version 2 segment is rewritten as one first.
    let raw = seg.section(SECTION_DOCS).is_none().then(|| {
        let mut b = SegmentBuilder::new(seg.id_type(), seg.vector_dim()).with_raw_docs();
        (0..seg.len()).for_each(|r| b.push(&seg.doc(r).expect("a valid row")).expect("push"));
        b.finish().expect("a raw rebuild")
    });
    let seg = match raw {
        Some(raw) => Segment::open(bytes::Bytes::from(raw)).expect("a valid rebuilt segment"),
        None => seg,
    };
    let mut docs = seg.section(SECTION_DOCS).expect("docs").to_vec();
    let at = 8 * (seg.len() + 1) + usize::try_from(le_u64(&docs, 8 * row)).expect("offset");
    docs[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut owned: Vec<(u16, Vec<u8>)> = Vec::new();
    for kind in [SECTION_IDS, SECTION_DOCS, SECTION_VECTORS, SECTION_VECTOR_ABSENT] {
        if let Some(b) = seg.section(kind) {
            owned.push((kind, if kind == SECTION_DOCS { docs.clone() } else { b.to_vec() }));
        }
    }
    let sections: Vec<(u16, &[u8])> = owned.iter().map(|(k, b)| (*k, b.as_slice())).collect();
    let id_kind = id_kind_of(seg.id_type());
    assemble::assemble(id_kind, seg.len(), seg.vector_dim().unwrap_or(0), &sections, false).expect("assemble")
}

#[cfg(test)]
mod docblocks_tests;
#[cfg(test)]
mod lazy_tests;
#[cfg(test)]
mod tests;
