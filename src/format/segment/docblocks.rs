//! The compressed document store: the docs of a segment of version 2 (core kind 5,
//! `doc_blocks`, `storage-format.md` 8.5.1). Rows are grouped, in row order, into blocks of
//! about [`DOC_BLOCK_TARGET`] bytes of encoded attribute maps; each block is compressed
//! (LZ4) or, when that does not shrink it, stored as is. A table of fixed-width entries finds a
//! row's block by binary search on its first row; the block itself starts with the offsets of
//! its rows, so a row is found without decoding its neighbours.
//!
//! ```text
//! section: block_count u32 | reserved u32 (0) | block_count × entry (32 B) | stored blocks
//! entry:   offset u64 | first_row u32 | stored_len u32 | raw_len u32 | raw_crc32c u32 |
//!          codec u8 (0 stored, 1 lz4) | reserved 7 B (0)
//! block (raw_len bytes once decompressed):
//!          (n + 1) × u32 row offsets (relative to the maps) | n attribute maps
//! ```
//!
//! Invariants:
//! - Open ([`DocBlocks::open`]) checks the whole table in O(blocks) without allocating: blocks
//!   are contiguous and fill the data area, first rows start at 0 and strictly increase below
//!   `rows`, every length is consistent with its codec and bounded (an LZ4 block expands at most
//!   255-fold, so `raw_len ≤ 256 × stored_len`: nothing is allocated from an unchecked length).
//! - A block is used only once decoded whole and checked ([`Block::decode`]): it decompresses to
//!   exactly `raw_len` bytes, their crc32c is `raw_crc32c`, and its offsets table is well formed.
//!   Anything else is a [`FormatError`] for the rows of that block, never a panic or a wrong row.
//! - Decoded blocks are kept per thread (a hit checks the block's stored bytes against the
//!   range checksums again, as a read of raw docs would, so rot after open is caught alike —
//!   once per integrity epoch, `crate::integrity::epoch`, as the guard itself does), the last [`CACHE_BLOCKS`] of them keyed by the
//!   segment's process-unique id (never an address, which a later segment may reuse) and the
//!   block's first row: a scan that reads rows in order decompresses each block once, and a
//!   thread holds at most `CACHE_BLOCKS × CACHE_MAX_BLOCK` bytes of them.
//! - The writer ([`BlockWriter`]) holds one block: rows go to the caller's spool block by block,
//!   so memory follows one block and the table (32 bytes a block), not the docs.
//! - The encoding is deterministic (same rows, same bytes: the compressor's version is pinned);
//!   a reader accepts any LZ4 stream that decodes to the stated bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

use super::spool::Spool;
use super::*;

/// Raw bytes of attribute maps after which the writer closes a block. Measured on the Debian
/// corpus (BENCHMARKS.md, "Compressed document store"): 16 KiB keeps one row's read at one small
/// decompression while LZ4 already finds most of the redundancy between neighbouring rows.
pub const DOC_BLOCK_TARGET: usize = 16 << 10;
/// Codec byte: the block is stored uncompressed (compression did not shrink it).
pub const CODEC_STORED: u8 = 0;
/// Codec byte: the block is an LZ4 block (`lz4_flex::block`, no size prefix).
pub const CODEC_LZ4: u8 = 1;
/// Size of the section's fixed header (block count, reserved).
pub const DOC_BLOCKS_HEADER_LEN: usize = 8;
/// Size of one block table entry.
pub const DOC_BLOCK_ENTRY_LEN: usize = 32;
/// Decoded blocks a thread keeps.
pub const CACHE_BLOCKS: usize = 4;
/// Decoded blocks larger than this (a single huge row) are not kept.
pub const CACHE_MAX_BLOCK: usize = 1 << 20;
/// LZ4 expands a block at most 255-fold; a larger `raw_len` is refused at open.
const LZ4_MAX_EXPANSION: u64 = 256;
const WHAT_BLOCKS: &str = "doc blocks";

fn bad(why: impl fmt::Display) -> FormatError {
    FormatError::Malformed(format!("{WHAT_BLOCKS}: {why}"))
}

/// One block table entry, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) offset: u64,
    pub(super) first_row: u32,
    pub(super) stored_len: u32,
    pub(super) raw_len: u32,
    pub(super) raw_crc: u32,
    pub(super) codec: u8,
}

impl Entry {
    /// Parses the entry at the start of `b` (32 bytes; callers pass a checked slice).
    pub(super) fn parse(b: &[u8]) -> Entry {
        Entry {
            offset: le_u64(b, 0),
            first_row: le_u32(b, 8),
            stored_len: le_u32(b, 12),
            raw_len: le_u32(b, 16),
            raw_crc: le_u32(b, 20),
            codec: b.get(24).copied().unwrap_or(u8::MAX),
        }
    }

    fn encode(&self, w: &mut Writer) {
        w.u64(self.offset);
        w.u32(self.first_row);
        w.u32(self.stored_len);
        w.u32(self.raw_len);
        w.u32(self.raw_crc);
        w.u8(self.codec);
        w.bytes(&[0; 7]);
    }

    /// The stored bytes' range within the data area.
    pub(super) fn stored(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.stored_len)
    }
}

/// Where a verified `doc_blocks` section's parts are in the file (absolute ranges).
#[derive(Debug, Clone)]
pub(super) struct DocBlocks {
    pub(super) table: Range<usize>,
    pub(super) data: Range<usize>,
    pub(super) count: usize,
}

impl DocBlocks {
    /// Checks the section `sec` of `buf` for a segment of `rows` rows (module invariants).
    pub(super) fn open(buf: &[u8], sec: &Range<usize>, rows: usize) -> Result<DocBlocks, FormatError> {
        let body = buf.get(sec.clone()).unwrap_or_default();
        let count = check_table(body, rows, body.len())?;
        let table = sec.start + DOC_BLOCKS_HEADER_LEN
            ..sec.start + DOC_BLOCKS_HEADER_LEN + count * DOC_BLOCK_ENTRY_LEN;
        Ok(DocBlocks { data: table.end..sec.end, table, count })
    }

    /// The byte range of entry `i` in the file.
    pub(super) fn entry_range(&self, i: usize) -> Range<usize> {
        let at = self.table.start + i * DOC_BLOCK_ENTRY_LEN;
        at..at + DOC_BLOCK_ENTRY_LEN
    }

    /// Entry `i` (< count), read from `buf`.
    pub(super) fn entry(&self, buf: &[u8], i: usize) -> Entry {
        Entry::parse(buf.get(self.entry_range(i)).unwrap_or_default())
    }

    /// The first row after block `i`.
    pub(super) fn end_row(&self, buf: &[u8], i: usize, rows: usize) -> usize {
        if i + 1 < self.count {
            self.entry(buf, i + 1).first_row as usize
        } else {
            rows
        }
    }

    /// The absolute file range of block `e`'s stored bytes.
    pub(super) fn stored_range(&self, e: &Entry) -> Range<usize> {
        let r = e.stored();
        let at = |o: u64| self.data.start.saturating_add(usize::try_from(o).unwrap_or(usize::MAX));
        at(r.start)..at(r.end)
    }
}

/// The length of a doc-blocks section's head (header and table) of `count` blocks.
fn head_len(count: usize) -> Option<usize> {
    count.checked_mul(DOC_BLOCK_ENTRY_LEN)?.checked_add(DOC_BLOCKS_HEADER_LEN)
}

/// Checks the head at the start of `sec` (at least the header and table) of a section of
/// `section_len` bytes, for `rows` rows; returns the block count (module invariants).
fn check_table(sec: &[u8], rows: usize, section_len: usize) -> Result<usize, FormatError> {
    if sec.len() < DOC_BLOCKS_HEADER_LEN {
        return Err(FormatError::Truncated {
            what: WHAT_BLOCKS,
            needed: len_u64(DOC_BLOCKS_HEADER_LEN),
            available: len_u64(sec.len()),
        });
    }
    let (count, reserved) = (le_u32(sec, 0) as usize, le_u32(sec, 4));
    if reserved != 0 {
        return Err(bad("reserved header bytes are not zero"));
    }
    let head = head_len(count).filter(|h| *h <= sec.len() && *h <= section_len);
    let head = head.ok_or_else(|| bad(format_args!("{count} blocks do not fit the section")))?;
    if (count == 0) != (rows == 0) || count > rows {
        return Err(bad(format_args!("{count} blocks for {rows} rows")));
    }
    let at = |i: usize| DOC_BLOCKS_HEADER_LEN + i * DOC_BLOCK_ENTRY_LEN;
    let entry = |i: usize| Entry::parse(sec.get(at(i)..).unwrap_or_default());
    let mut end = 0u64;
    for i in 0..count {
        let e = entry(i);
        let next_row = if i + 1 < count { entry(i + 1).first_row as usize } else { rows };
        let reserved = sec.get(at(i) + 25..at(i) + DOC_BLOCK_ENTRY_LEN).unwrap_or_default();
        check_entry(i, &e, end, next_row, reserved)?;
        end = e.stored().end;
    }
    let data_len = len_u64(section_len - head);
    if end != data_len {
        return Err(bad(format_args!("blocks end at {end}, the data is {data_len} bytes")));
    }
    Ok(count)
}

fn check_entry(i: usize, e: &Entry, at: u64, next_row: usize, reserved: &[u8]) -> Result<(), FormatError> {
    let first = e.first_row as usize;
    if (i == 0 && first != 0) || first >= next_row {
        return Err(bad(format_args!("block {i}: rows {first}..{next_row} are empty or out of order")));
    }
    if e.offset != at {
        return Err(bad(format_args!("block {i} starts at {}, not at {at}", e.offset)));
    }
    let n = len_u64(next_row - first);
    let (stored, raw) = (u64::from(e.stored_len), u64::from(e.raw_len));
    // Each row's offset (4 B) and at least an empty map (4 B), plus the closing offset.
    let shape_ok = raw >= 8 * n + 4
        && match e.codec {
            CODEC_STORED => stored == raw,
            CODEC_LZ4 => stored < raw && raw <= stored.saturating_mul(LZ4_MAX_EXPANSION),
            _ => false,
        };
    if !shape_ok || reserved.len() != 7 || reserved.iter().any(|&b| b != 0) {
        return Err(bad(format_args!(
            "block {i}: codec {} with {stored} stored and {raw} raw bytes for {n} rows",
            e.codec
        )));
    }
    Ok(())
}

/// A doc-blocks table read on its own, by range (the cold path, storage-format 11.4): finds a
/// row's block, and decodes the row from the block's stored bytes read separately.
#[derive(Debug, Clone)]
pub struct DocBlockTable {
    entries: Vec<Entry>,
    rows: usize,
    head: u64,
}

impl DocBlockTable {
    /// The head length (header and table) of a section whose first 8 bytes are `header`:
    /// what a ranged reader fetches first.
    pub fn head_len(header: &[u8]) -> Option<u64> {
        head_len(le_u32(header, 0) as usize).map(len_u64)
    }

    /// Parses and checks `head` (exactly the section's head) of a section of `section_len`
    /// bytes for a segment of `rows` rows, with the checks of a segment's open.
    pub fn parse(head: &[u8], rows: usize, section_len: u64) -> Result<DocBlockTable, FormatError> {
        let section_len = to_usize("doc blocks section", section_len)?;
        let count = check_table(head, rows, section_len)?;
        if head_len(count) != Some(head.len()) {
            return Err(bad(format_args!("a head of {} bytes for {count} blocks", head.len())));
        }
        let entries = (0..count)
            .map(|i| Entry::parse(&head[DOC_BLOCKS_HEADER_LEN + i * DOC_BLOCK_ENTRY_LEN..]))
            .collect();
        Ok(DocBlockTable { entries, rows, head: len_u64(head.len()) })
    }

    /// The block holding `row` and its stored bytes' range, relative to the section's start.
    pub fn locate(&self, row: usize) -> Option<(usize, Range<u64>)> {
        if row >= self.rows {
            return None;
        }
        let i = self.entries.partition_point(|e| e.first_row as usize <= row).checked_sub(1)?;
        let r = self.entries.get(i)?.stored();
        Some((i, self.head + r.start..self.head + r.end))
    }

    /// The attributes of `row`, decoded from block `block`'s stored bytes (as
    /// [`DocBlockTable::locate`] named them), the block checked whole first.
    pub fn row_attributes(&self, block: usize, stored: &[u8], row: usize) -> Result<AttrMap, FormatError> {
        let e = self.entries.get(block).ok_or_else(|| bad(format_args!("no block {block}")))?;
        let end = self.entries.get(block + 1).map_or(self.rows, |n| n.first_row as usize);
        let b = Block::decode(e, stored, end)?;
        let bytes = b.row(row).ok_or_else(|| bad(format_args!("row {row} is not in block {block}")))?;
        super::decode_row_attributes(bytes)
    }
}

/// A decoded, checked block: rows `first_row..first_row + rows`.
#[derive(Debug)]
pub struct Block {
    raw: Vec<u8>,
    first_row: usize,
    rows: usize,
    /// Where its stored bytes are in the segment file (what a cache hit checks again).
    stored: Range<usize>,
}

impl Block {
    /// Decodes block `e` from its stored bytes, holding rows `first_row..end_row`, and checks it
    /// (module invariants). The readers of a segment and of ranged reads share it.
    pub(super) fn decode(e: &Entry, stored: &[u8], end_row: usize) -> Result<Block, FormatError> {
        let (first_row, raw_len) = (e.first_row as usize, e.raw_len as usize);
        if stored.len() != e.stored_len as usize || end_row <= first_row {
            return Err(bad(format_args!("block at row {first_row}: {} stored bytes", stored.len())));
        }
        let raw = match e.codec {
            CODEC_STORED => stored.to_vec(),
            CODEC_LZ4 => {
                let mut raw = vec![0u8; raw_len];
                let n = lz4_flex::block::decompress_into(stored, &mut raw).map_err(|err| {
                    bad(format_args!("block at row {first_row} does not decompress: {err}"))
                })?;
                if n != raw_len {
                    return Err(bad(format_args!(
                        "block at row {first_row} decompresses to {n} bytes, not {raw_len}"
                    )));
                }
                raw
            }
            c => return Err(bad(format_args!("block at row {first_row}: unknown codec {c}"))),
        };
        let actual = crc32c::crc32c(&raw);
        if actual != e.raw_crc {
            return Err(FormatError::ChecksumMismatch { what: "doc block", expected: e.raw_crc, actual });
        }
        let block = Block { raw, first_row, rows: end_row - first_row, stored: 0..0 };
        block.check_offsets()?;
        Ok(block)
    }

    /// The row offsets start at 0, step by at least an empty map and end at the end.
    fn check_offsets(&self) -> Result<(), FormatError> {
        let table = 4 * (self.rows + 1);
        let data_len =
            self.raw.len().checked_sub(table).ok_or_else(|| bad("block shorter than its offsets"))?;
        let mut prev = 0u32;
        for i in 0..=self.rows {
            let o = le_u32(&self.raw, 4 * i);
            let ok = if i == 0 { o == 0 } else { o >= prev && o - prev >= MIN_ATTRS_BYTES as u32 };
            if !ok {
                return Err(bad(format_args!(
                    "block at row {}: row offset {o} after {prev}",
                    self.first_row
                )));
            }
            prev = o;
        }
        if prev as usize != data_len {
            return Err(bad(format_args!(
                "block at row {}: rows end at {prev}, not {data_len}",
                self.first_row
            )));
        }
        Ok(())
    }

    /// The block, noting that its stored bytes are `range` of the segment file.
    pub(super) fn stored_at(mut self, range: Range<usize>) -> Block {
        self.stored = range;
        self
    }

    /// Where its stored bytes are in the segment file.
    pub(super) fn stored(&self) -> Range<usize> {
        self.stored.clone()
    }

    /// Whether the block holds `row`.
    fn holds(&self, row: usize) -> bool {
        (self.first_row..self.first_row + self.rows).contains(&row)
    }

    /// The encoded attributes of `row` (checked offsets: within the block for a held row).
    pub fn row(&self, row: usize) -> Option<&[u8]> {
        let i = row.checked_sub(self.first_row).filter(|i| *i < self.rows)?;
        let base = 4 * (self.rows + 1);
        let (a, b) = (le_u32(&self.raw, 4 * i) as usize, le_u32(&self.raw, 4 * i + 4) as usize);
        self.raw.get(base + a..base + b)
    }

    /// Decoded bytes held (for the cache bound).
    fn size(&self) -> usize {
        self.raw.len()
    }
}

/// A process-unique id for a segment opened now (the cache's key; never reused).
pub(super) fn next_segment_uid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, AtomicOrdering::Relaxed)
}

/// A decoded block kept for segment `uid`, and the integrity epoch its stored bytes were last
/// checked in (`crate::integrity::epoch`).
struct Cached {
    uid: u64,
    block: Arc<Block>,
    checked: Option<u64>,
}

thread_local! {
    static CACHE: RefCell<VecDeque<Cached>> = const { RefCell::new(VecDeque::new()) };
}

/// The decoded block of segment `uid` holding `row`, if this thread has it, and whether its
/// stored bytes were checked in the current integrity epoch.
pub(super) fn cached(uid: u64, row: usize) -> Option<(Arc<Block>, bool)> {
    let now = crate::integrity::epoch();
    CACHE.with(|c| {
        let c = c.borrow();
        let hit = c.iter().find(|e| e.uid == uid && e.block.holds(row))?;
        Some((Arc::clone(&hit.block), now.is_some() && hit.checked == now))
    })
}

/// Notes that the cached block of `uid` holding `row` had its stored bytes checked now.
pub(super) fn checked(uid: u64, row: usize) {
    let now = crate::integrity::epoch();
    CACHE.with(|c| {
        if let Some(e) = c.borrow_mut().iter_mut().find(|e| e.uid == uid && e.block.holds(row)) {
            e.checked = now;
        }
    });
}

/// Keeps `block` of segment `uid`, its stored bytes checked now, for this thread's next reads
/// (small blocks only).
pub(super) fn remember(uid: u64, block: &Arc<Block>) {
    if block.size() > CACHE_MAX_BLOCK {
        return;
    }
    let checked = crate::integrity::epoch();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_BLOCKS {
            c.pop_back();
        }
        c.push_front(Cached { uid, block: Arc::clone(block), checked });
    });
}

/// Groups pushed rows into blocks and writes each, compressed, to a spool as it fills.
#[derive(Debug, Default)]
pub(super) struct BlockWriter {
    /// Row offsets of the open block (starts with 0 once a row is in).
    offsets: Vec<u32>,
    data: Vec<u8>,
    first_row: u32,
    table: Writer,
    count: u32,
    stored: u64,
}

impl BlockWriter {
    /// Whether a row of `len` encoded bytes fits the open block's u32 lengths.
    pub(super) fn fits(&self, len: usize) -> Result<(), FormatError> {
        let raw = 4 * (self.offsets.len() + 2) + self.data.len();
        match raw.checked_add(len) {
            Some(n) if n <= u32::MAX as usize => Ok(()),
            _ => Err(FormatError::TooLarge {
                what: "segment doc row",
                len: len_u64(len),
                max: u64::from(u32::MAX).saturating_sub(len_u64(raw)),
            }),
        }
    }

    /// Appends one row's encoded attributes (checked by [`BlockWriter::fits`]).
    pub(super) fn push(&mut self, attrs: &[u8], out: &mut Spool) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.data.extend_from_slice(attrs);
        self.offsets.push(u32::try_from(self.data.len()).unwrap_or(u32::MAX));
        if self.data.len() >= DOC_BLOCK_TARGET {
            self.flush(out);
        }
    }

    fn flush(&mut self, out: &mut Spool) {
        let n = self.offsets.len().saturating_sub(1);
        if n == 0 {
            return;
        }
        let mut raw = Vec::with_capacity(4 * self.offsets.len() + self.data.len());
        self.offsets.iter().for_each(|o| raw.extend_from_slice(&o.to_le_bytes()));
        raw.extend_from_slice(&self.data);
        let packed = lz4_flex::block::compress(&raw);
        let (codec, stored) =
            if packed.len() < raw.len() { (CODEC_LZ4, &packed) } else { (CODEC_STORED, &raw) };
        let entry = Entry {
            offset: self.stored,
            first_row: self.first_row,
            stored_len: u32::try_from(stored.len()).unwrap_or(u32::MAX),
            raw_len: u32::try_from(raw.len()).unwrap_or(u32::MAX),
            raw_crc: crc32c::crc32c(&raw),
            codec,
        };
        entry.encode(&mut self.table);
        out.append(stored);
        self.stored += len_u64(stored.len());
        self.count += 1;
        self.first_row += u32::try_from(n).unwrap_or(u32::MAX);
        self.offsets.clear();
        self.data.clear();
    }

    /// Closes the last block; returns the section's head (header and table), which goes before
    /// the stored blocks the spool received.
    pub(super) fn finish(&mut self, out: &mut Spool) -> Vec<u8> {
        self.flush(out);
        let mut head = Writer::with_capacity(DOC_BLOCKS_HEADER_LEN + self.table.as_slice().len());
        head.u32(self.count);
        head.u32(0);
        head.bytes(self.table.as_slice());
        head.into_inner()
    }
}
