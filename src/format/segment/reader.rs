//! Opening and verifying a segment file (header, section table, every section crc, zero
//! padding) and the zero-copy accessors over it. Invariant: after [`Segment::open`] no
//! accessor panics for a row `< len()`; accessors do not re-validate.
//!
//! [`Segment::open`] verifies every byte. [`Segment::open_lazy`] (how a segment is loaded to
//! serve) does the same for a segment without range checksums; one with them is opened lazily
//! (`lazy.rs`): the bulk sections' crcs are not checked at open, and each of their chunks is checked
//! on its first read — a row read through the guard, a section handed out by
//! [`Segment::section`] / [`Segment::sections`] / [`Segment::extension_sections`] whole, once,
//! before any caller parses it (a mismatch: rot in the caller's scope, and no bytes handed out).
//!
//! A row's attribute bytes are borrowed from the file (version 1, raw docs) or from a decoded
//! block (version 2, `docblocks.rs`), so row readers take them through
//! [`Segment::with_doc_bytes`] rather than as a slice of the file; a block is decoded once per
//! thread for the rows read in a row (its per-thread cache).

use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use super::*;

pub(super) enum Vectors {
    None,
    /// Borrowed in place: this byte range of the buffer, 4-byte aligned.
    Borrowed(Range<usize>),
    /// Copied at open (the buffer was misaligned or the host big-endian).
    Owned(Vec<f32>),
}

/// Where the rows' attributes are.
pub(super) enum Docs {
    /// Version 1 (kind 2): the offsets table and the maps, in place.
    Raw { offsets: Range<usize>, data: Range<usize> },
    /// Version 2 (kind 5): compressed blocks.
    Blocks(super::docblocks::DocBlocks),
}

pub(super) struct Inner {
    bytes: Bytes,
    /// Process-unique (the decoded-block cache's key).
    uid: u64,
    rows: usize,
    id_type: IdType,
    vector_dim: Option<u32>,
    dim: usize,
    sections: Vec<(SectionInfo, Range<usize>)>,
    /// u64 / UUID: the fixed-width ids; string: the offsets table.
    ids: Range<usize>,
    /// String ids: the id bytes (offsets are relative to its start).
    id_data: Range<usize>,
    docs: Docs,
    vectors: Vectors,
    absent: Option<Range<usize>>,
    /// Checks reads of the bytes the range checksums cover (None: a segment
    /// written without them is verified at open only). Installed after open's
    /// own checks, which read every byte anyway.
    guard: Option<crate::integrity::ChunkGuard>,
    /// Per section (as `sections`): its bytes are checked, so its accessors hand it out as is
    /// (false: opened lazily and not read yet, `lazy.rs`).
    settled: Box<[AtomicBool]>,
    /// Runs a whole-section check with the section's pages read ahead (None: checked as is).
    readahead: Option<SectionReadahead>,
}

/// Runs the check it is given (the `FnMut`) over a section's bytes (the slice) with those bytes
/// read ahead: a served segment's mapping is advised random, and checking a large section not in
/// the page cache through it read one synchronous 4 KiB fault at a time (`cache/mapping.rs`
/// implements it; the format does not know where its bytes live).
pub type SectionReadahead = fn(&[u8], &mut dyn FnMut());

/// Sections smaller than this are checked without [`SectionReadahead`] (a few faults cost less
/// than its two system calls).
const READAHEAD_FROM: usize = 256 << 10;

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

/// The docs of a segment of `version`: kind 2 in version 1, kind 5 in version 2, never both.
fn open_docs(
    buf: &[u8],
    version: u16,
    raw: Option<Range<usize>>,
    blocks: Option<Range<usize>>,
    rows: usize,
) -> Result<Docs, FormatError> {
    match (version, raw, blocks) {
        (SEGMENT_FORMAT_V1, Some(sec), None) => {
            let (offsets, data) = offsets_table("docs", buf, &sec, rows, len_u64(MIN_ATTRS_BYTES), u64::MAX)?;
            Ok(Docs::Raw { offsets, data })
        }
        (SEGMENT_FORMAT_VERSION, None, Some(sec)) => {
            Ok(Docs::Blocks(super::docblocks::DocBlocks::open(buf, &sec, rows)?))
        }
        (v, raw, blocks) => Err(malformed(format_args!(
            "a version {v} segment with{} raw docs and with{} doc blocks",
            if raw.is_some() { "" } else { "out" },
            if blocks.is_some() { "" } else { "out" }
        ))),
    }
}

/// The most bytes [`Segment::open_settling`] reads before handing them over
/// (a multiple of every range-checksum chunk size).
pub const VERIFY_STRETCH: usize = 16 << 20;

/// crc32c of `body`, handing each [`VERIFY_STRETCH`] to `verified` once read.
pub fn crc32c_settling(body: &[u8], verified: &dyn Fn(&[u8])) -> u32 {
    body.chunks(VERIFY_STRETCH).fold(0, |crc, stretch| {
        let crc = crc32c::crc32c_append(crc, stretch);
        verified(stretch);
        crc
    })
}

impl Segment {
    /// Open and verify a segment: magic, version, header crc, the section
    /// table (bounds, alignment, zero padding, table crc), every section's
    /// crc32c, the core sections' shapes and offsets tables, and that ids
    /// strictly increase. Refuses anything else with a [`FormatError`].
    pub fn open(bytes: Bytes) -> Result<Segment, FormatError> {
        Segment::open_settling(bytes, &|_| {})
    }

    /// [`Segment::open`], handing each stretch of the file (at most
    /// [`VERIFY_STRETCH`] bytes, in file order) to `verified` as soon as its
    /// checksums are computed, so a caller reading a mapping can give those
    /// pages back before the next stretch is read: verifying a 2.5 GB segment
    /// otherwise has all of it resident at once (cache/mapping.rs). A stretch
    /// may be handed over before the whole file is known to be good.
    pub fn open_settling(bytes: Bytes, verified: &dyn Fn(&[u8])) -> Result<Segment, FormatError> {
        Segment::open_with(bytes, verified, false)
    }

    /// [`Segment::open_settling`] for a segment served from here on: one that carries range
    /// checksums (kind 22) is opened lazily (`lazy.rs`, storage-format.md 8.3.1 "Lazy open") —
    /// what open reads is checked now, every other chunk on its first read — and one without
    /// them is verified whole. `verified` gets the stretches open checked.
    pub fn open_lazy(bytes: Bytes, verified: &dyn Fn(&[u8])) -> Result<Segment, FormatError> {
        Segment::open_with(bytes, verified, true)
    }

    fn open_with(bytes: Bytes, verified: &dyn Fn(&[u8]), lazy: bool) -> Result<Segment, FormatError> {
        let buf: &[u8] = &bytes;
        let mut r = Reader::new(buf);
        let magic: [u8; 8] = r.array("segment magic")?;
        if magic != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = r.u16("segment version")?;
        if !(SEGMENT_FORMAT_V1..=SEGMENT_FORMAT_VERSION).contains(&version) {
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

        let lazy = lazy && super::lazy::has_range_checksums(table);
        // Section entries: in file order, each at the first 64-byte boundary
        // after the previous one, zero padding in between.
        let mut t = Reader::new(table);
        let mut sections = Vec::with_capacity(section_count);
        let mut prev_end = SEGMENT_HEADER_LEN;
        let mut core: [Option<Range<usize>>; 6] = Default::default();
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
            if !(lazy && super::lazy::deferred(kind)) {
                let actual = crc32c_settling(body, verified);
                if crc != actual {
                    return Err(FormatError::ChecksumMismatch {
                        what: "segment section",
                        expected: crc,
                        actual,
                    });
                }
            }
            match kind {
                SECTION_IDS | SECTION_DOCS | SECTION_VECTORS | SECTION_VECTOR_ABSENT | SECTION_DOC_BLOCKS => {
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
        let (range_sums, settled) = match lazy {
            true => super::lazy::settle_eager(buf, &sections, lazy_range_guard(buf, &sections)?, verified)?,
            false => {
                (check_range_checksums(buf, &sections, verified)?, super::lazy::all_settled(sections.len()))
            }
        };
        let [_, ids_sec, docs_sec, vec_sec, absent_sec, blocks_sec] = core;
        let ids_sec = ids_sec.ok_or_else(|| malformed("no ids section"))?;

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
        let docs = open_docs(buf, version, docs_sec, blocks_sec, rows)?;

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
                    Vectors::Owned(crate::codec::f32s_le(raw))
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
                settled,
                readahead: None,
                bytes: bytes.clone(),
                uid: super::docblocks::next_segment_uid(),
                rows,
                id_type,
                vector_dim,
                dim: dim_usize,
                sections,
                ids,
                id_data,
                docs,
                vectors,
                absent,
                guard: None,
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
        let mut seg = seg;
        if let Some(inner) = Arc::get_mut(&mut seg.inner) {
            inner.guard = range_sums;
        }
        Ok(seg)
    }

    /// Name the segment's object (its store key) in rot reports (`crate::integrity`).
    pub fn with_object(mut self, key: &str) -> Segment {
        if let Some(g) = Arc::get_mut(&mut self.inner).and_then(|i| i.guard.as_mut()) {
            g.set_object(key);
        }
        self
    }

    /// The segment with `readahead` running its first whole-section checks (see
    /// [`SectionReadahead`]); set before the segment is shared.
    pub fn with_section_readahead(mut self, readahead: SectionReadahead) -> Segment {
        if let Some(i) = Arc::get_mut(&mut self.inner) {
            i.readahead = Some(readahead);
        }
        self
    }

    /// Heap bytes of the checksums reads are checked with (`READ_CHECK_LOG2`).
    pub fn guard_heap_bytes(&self) -> usize {
        self.inner.guard.as_ref().map_or(0, crate::integrity::ChunkGuard::heap_bytes)
    }

    /// Whether reads are checked after open (the segment carries range checksums).
    pub fn is_guarded(&self) -> bool {
        self.inner.guard.is_some()
    }

    /// Check `range` of the file before it is read (see `crate::integrity`): false when it
    /// changed since it was verified.
    fn guard(&self, range: Range<usize>) -> bool {
        self.inner.guard.as_ref().is_none_or(|g| g.check(self.buf(), range))
    }

    /// The guard itself, for an index that outlives a borrow of the segment (None: unchecked).
    pub fn chunk_guard(&self) -> Option<&crate::integrity::ChunkGuard> {
        self.inner.guard.as_ref()
    }

    /// The guard index readers check their slices with (None: reads are not checked after open).
    pub fn file_guard(&self) -> Option<crate::integrity::FileGuard<'_>> {
        Some(crate::integrity::FileGuard::new(self.buf(), self.inner.guard.as_ref()?))
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
        let at = self.inner.ids.start + row * 8;
        self.guard(at..at + 8);
        le_u64(self.buf(), at)
    }

    fn uuid_id(&self, row: usize) -> &[u8] {
        let at = self.inner.ids.start + row * UUID_LEN;
        self.guard(at..at + UUID_LEN);
        self.buf().get(at..at + UUID_LEN).unwrap_or_default()
    }

    fn str_id(&self, row: usize) -> &[u8] {
        let base = self.inner.id_data.start;
        let t = self.inner.ids.start + row * 8;
        self.guard(t..t + 16);
        let (a, b) = (le_u64(self.buf(), t), le_u64(self.buf(), t + 8));
        let a = base.saturating_add(usize::try_from(a).unwrap_or(usize::MAX));
        let b = base.saturating_add(usize::try_from(b).unwrap_or(usize::MAX));
        self.guard(a..b);
        self.buf().get(a..b).unwrap_or_default()
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
        // An id past either end skips the search: a bulk load's ascending ids lie past every
        // older segment, and each step of a search checks a chunk of the id column.
        let last = self.inner.rows.checked_sub(1)?;
        if self.cmp_row(last, id) == Ordering::Less || self.cmp_row(0, id) == Ordering::Greater {
            return None;
        }
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
            Some(a) => {
                let at = a.start + row / 64 * 8;
                self.guard(at..at + 8);
                le_u64(self.buf(), at) & (1u64 << (row % 64)) == 0
            }
        }
    }

    /// Whether every row has a vector ([`Segment::has_vector`] for all rows;
    /// false for a segment without vectors).
    pub fn every_row_has_vector(&self) -> bool {
        // An absent bitmap is only written (and only opens) with a bit set.
        self.inner.vector_dim.is_some() && self.inner.absent.is_none()
    }

    /// The vector of `row`, if it has one.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        if !self.has_vector(row) {
            return None;
        }
        let d = self.inner.dim;
        if let Vectors::Borrowed(r) = &self.inner.vectors {
            let at = r.start + row * d * 4;
            self.guard(at..at + d * 4);
        }
        self.vectors()?.get(row * d..row * d + d)
    }

    /// The attributes of `row` (only that row is decoded).
    pub fn attrs(&self, row: usize) -> Result<AttrMap, FormatError> {
        self.with_doc_bytes(row, super::decode_row_attributes)
    }

    /// The attributes of `row` without its named vectors (filters, ordering and scoring never
    /// read them, so they are skipped, not copied).
    pub fn attrs_without_dense(&self, row: usize) -> Result<AttrMap, FormatError> {
        self.with_doc_bytes(row, |b| {
            let mut r = Reader::new(b);
            let attrs = crate::format::attrs::decode_attrs_without_dense(&mut r)?;
            r.finish("segment doc")?;
            Ok(attrs)
        })
    }

    /// The named vector `attr` of `row`, if the row holds one.
    pub fn dense_attr(&self, row: usize, attr: &str) -> Result<Option<Vec<f32>>, FormatError> {
        self.with_doc_bytes(row, |b| {
            let mut r = Reader::new(b);
            let v = crate::format::attrs::find_dense(&mut r, attr)?;
            r.finish("segment doc")?;
            Ok(v)
        })
    }

    /// The vector array (multi-vector attribute) `attr` of `row`, if the row holds one.
    pub fn multi_attr(&self, row: usize, attr: &str) -> Result<Option<Vec<Vec<f32>>>, FormatError> {
        self.with_doc_bytes(row, |b| {
            let mut r = Reader::new(b);
            let v = crate::format::attrs::find_multi(&mut r, attr)?;
            r.finish("segment doc")?;
            Ok(v)
        })
    }

    /// `f` over the encoded attributes of `row`: borrowed from the file (raw docs) or from its
    /// decoded block (doc blocks; a block stays decoded for this thread's next rows).
    pub fn with_doc_bytes<R>(
        &self,
        row: usize,
        f: impl FnOnce(&[u8]) -> Result<R, FormatError>,
    ) -> Result<R, FormatError> {
        if row >= self.inner.rows {
            return Err(malformed(format_args!("row {row} out of range (len {})", self.inner.rows)));
        }
        match &self.inner.docs {
            Docs::Raw { offsets, data } => f(self.raw_doc_bytes(row, offsets, data)?),
            Docs::Blocks(blocks) => {
                let block = self.block_of(blocks, row)?;
                f(block.row(row).ok_or_else(|| malformed(format_args!("row {row} is not in its block")))?)
            }
        }
    }

    fn changed(row: usize) -> FormatError {
        FormatError::Malformed(format!("row {row}: its bytes changed since the segment was verified"))
    }

    /// The encoded attributes of `row` in raw docs.
    fn raw_doc_bytes(
        &self,
        row: usize,
        offsets: &Range<usize>,
        data: &Range<usize>,
    ) -> Result<&[u8], FormatError> {
        let t = offsets.start + row * 8;
        if !self.guard(t..t + 16) {
            return Err(Self::changed(row));
        }
        let (a, b) = (le_u64(self.buf(), t), le_u64(self.buf(), t + 8));
        let (a, b) = (to_usize("doc offset", a)?, to_usize("doc offset", b)?);
        let range = data.start.saturating_add(a)..data.start.saturating_add(b);
        if !self.guard(range.clone()) {
            return Err(Self::changed(row));
        }
        self.buf().get(range).ok_or_else(|| malformed(format_args!("row {row}: doc offsets out of bounds")))
    }

    /// The decoded block holding `row`: this thread's cached one, or read (guarded), decoded and
    /// checked.
    fn block_of(
        &self,
        blocks: &super::docblocks::DocBlocks,
        row: usize,
    ) -> Result<Arc<super::docblocks::Block>, FormatError> {
        if let Some((b, fresh)) = super::docblocks::cached(self.inner.uid, row) {
            // Decoded from bytes that matched; checked again once per integrity epoch so that
            // rot since is met as with raw docs, without a check of the whole block per row.
            if fresh {
                return Ok(b);
            }
            if !self.guard(b.stored()) {
                return Err(Self::changed(row));
            }
            super::docblocks::checked(self.inner.uid, row);
            return Ok(b);
        }
        // The last block whose first row is at most `row` (block 0 starts at row 0). The probes
        // only navigate: the two entries that bound the row are checked below, so a changed
        // probe can only end at a block that does not hold the row, an error, never a wrong row.
        let (mut lo, mut hi) = (0usize, blocks.count);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if blocks.entry(self.buf(), mid).first_row as usize <= row {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let next = (lo + 1 < blocks.count).then(|| blocks.entry_range(lo + 1));
        if !self.guard(blocks.entry_range(lo)) || next.is_some_and(|r| !self.guard(r)) {
            return Err(Self::changed(row));
        }
        let e = blocks.entry(self.buf(), lo);
        let end_row = blocks.end_row(self.buf(), lo, self.inner.rows);
        if !(e.first_row as usize..end_row).contains(&row) {
            return Err(Self::changed(row));
        }
        let stored_range = blocks.stored_range(&e);
        if !self.guard(stored_range.clone()) {
            return Err(Self::changed(row));
        }
        let bytes = self.buf().get(stored_range.clone()).unwrap_or_default();
        let block = super::docblocks::Block::decode(&e, bytes, end_row)?.stored_at(stored_range);
        let block = Arc::new(block);
        super::docblocks::remember(self.inner.uid, &block);
        Ok(block)
    }

    /// The document of `row`: id, vector and attributes (only that row is
    /// decoded).
    pub fn doc(&self, row: usize) -> Result<Document, FormatError> {
        let mut d = self.doc_without_vector(row, true)?;
        d.vector = self.vector(row).map(|v| v.to_vec().into());
        Ok(d)
    }

    /// Row `row` without its vector, and without its attributes unless
    /// `attributes` (a query returning ids touches only the ids section).
    pub fn doc_without_vector(&self, row: usize, attributes: bool) -> Result<Document, FormatError> {
        let attrs = if attributes { self.attrs(row)? } else { AttrMap::new() };
        let id = self.try_id(row).ok_or_else(|| malformed(format_args!("row {row} out of range")))?;
        Ok(Document { id, vector: None, attrs })
    }

    /// The bytes of the first section of `kind`, if any. Checked whole first when the segment
    /// was opened lazily and the section not read yet (a mismatch is rot, recorded as a guarded
    /// read records it, and the section is not handed out: None).
    pub fn section(&self, kind: u16) -> Option<&[u8]> {
        let i = self.inner.sections.iter().position(|(s, _)| s.kind == kind)?;
        self.settled_section(i)
    }

    /// The bytes of every section of `kind`, in file order (checked as [`Segment::section`]
    /// checks; one that fails its check is left out).
    pub fn sections(&self, kind: u16) -> Vec<&[u8]> {
        self.indexes_of(kind).filter_map(|i| self.settled_section(i)).collect()
    }

    /// [`Segment::sections`], or None when one of them failed its check (a caller that keeps what
    /// it derives must not keep a view without that section).
    pub fn checked_sections(&self, kind: u16) -> Option<Vec<&[u8]>> {
        self.indexes_of(kind).map(|i| self.settled_section(i)).collect()
    }

    fn indexes_of(&self, kind: u16) -> impl Iterator<Item = usize> + '_ {
        self.inner.sections.iter().enumerate().filter(move |(_, (s, _))| s.kind == kind).map(|(i, _)| i)
    }

    /// Every extension section (kind >= [`FIRST_EXTENSION_KIND`]) as
    /// (kind, bytes), in file order (checked as [`Segment::section`] checks).
    pub fn extension_sections(&self) -> Vec<(u16, &[u8])> {
        (0..self.inner.sections.len())
            .filter_map(|i| {
                let kind = self.inner.sections.get(i)?.0.kind;
                (kind >= FIRST_EXTENSION_KIND).then(|| self.settled_section(i).map(|b| (kind, b)))?
            })
            .collect()
    }

    /// Section `i`'s bytes once they are checked (see [`Segment::section`]).
    fn settled_section(&self, i: usize) -> Option<&[u8]> {
        let (_, range) = self.inner.sections.get(i)?;
        let bytes = self.buf().get(range.clone())?;
        let flag = self.inner.settled.get(i)?;
        if flag.load(AtomicOrdering::Acquire) {
            return Some(bytes);
        }
        if !self.settle_section_bytes(bytes) {
            return None;
        }
        flag.store(true, AtomicOrdering::Release);
        Some(bytes)
    }

    /// Check a section's `bytes` against its chunks' crcs (read ahead when large, see
    /// [`SectionReadahead`]); false on a mismatch (recorded by the guard).
    fn settle_section_bytes(&self, bytes: &[u8]) -> bool {
        let Some(guard) = self.file_guard() else { return true };
        let mut ok = false;
        match self.inner.readahead.filter(|_| bytes.len() >= READAHEAD_FROM) {
            Some(readahead) => readahead(bytes, &mut || ok = guard.settle_slice(bytes)),
            None => ok = guard.settle_slice(bytes),
        }
        ok
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
