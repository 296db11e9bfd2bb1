//! The segment writer: documents pushed in strictly increasing id order plus opaque
//! extension sections, laid out canonically (see the parent module doc) so equal content
//! gives equal bytes.
//!
//! Invariants:
//! - A builder made with [`SegmentBuilder::spooled`] keeps only ids, offsets and the
//!   vector-absent bitmap in memory; docs bytes, vectors and added sections go to
//!   unlinked scratch files, and [`SegmentBuilder::finish_into`] streams the file out.
//!   Both kinds of builder give the same bytes for the same pushes.
//! - Docs are written as compressed blocks (segment version 2, `docblocks.rs`): each block goes
//!   to the docs spool as it fills, so memory follows one block and the block table, not the
//!   docs. [`SegmentBuilder::with_raw_docs`] writes version 1's raw maps instead (offsets kept in
//!   memory, 8 bytes a row), for compat fixtures and before/after measurements only.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

use super::assemble::{assemble_into, BuildError, Part, SectionParts};
use super::docblocks::BlockWriter;
use super::spool::{F32Rows, Spool};
use super::*;

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
    /// Raw docs (version 1) only: offsets into `docs` (starts with 0).
    doc_offsets: Vec<u64>,
    /// Compressed docs (version 2): the open block and the block table; None for raw docs.
    blocks: Option<BlockWriter>,
    docs: Spool,
    vectors: Spool,
    absent: Vec<u64>,
    any_absent: bool,
    /// Added sections: kind and range in `extra_bytes`.
    extra: Vec<(u16, Range<u64>)>,
    extra_bytes: Spool,
    range_checksums: bool,
    /// One row's encoded attributes, reused row after row (a fresh buffer grew by
    /// reallocation for every row of a build).
    attr_scratch: Writer,
}

impl SegmentBuilder {
    /// An empty builder for ids of `id_type` and, if `vector_dim` is set,
    /// dense vectors of that dimension (1..=`MAX_VECTOR_DIM`).
    pub fn new(id_type: IdType, vector_dim: Option<u32>) -> Self {
        Self::with_spools(
            id_type,
            vector_dim,
            [Spool::Memory(Vec::new()), Spool::Memory(Vec::new()), Spool::Memory(Vec::new())],
        )
    }

    /// Like [`SegmentBuilder::new`], with the docs bytes, vectors and added
    /// sections kept in unlinked files in `dir` instead of memory.
    pub fn spooled(id_type: IdType, vector_dim: Option<u32>, dir: &Path) -> std::io::Result<Self> {
        Ok(Self::with_spools(
            id_type,
            vector_dim,
            [Spool::file_in(dir)?, Spool::file_in(dir)?, Spool::file_in(dir)?],
        ))
    }

    fn with_spools(id_type: IdType, vector_dim: Option<u32>, spools: [Spool; 3]) -> Self {
        let [docs, vectors, extra_bytes] = spools;
        SegmentBuilder {
            id_type,
            vector_dim,
            rows: 0,
            last_id: None,
            ids: Vec::new(),
            id_offsets: if id_type == IdType::String { vec![0] } else { Vec::new() },
            doc_offsets: vec![0],
            blocks: Some(BlockWriter::default()),
            docs,
            vectors,
            absent: Vec::new(),
            any_absent: false,
            extra: Vec::new(),
            extra_bytes,
            range_checksums: false,
            attr_scratch: Writer::new(),
        }
    }

    /// Also write a range-checksum section (kind 22) after the other sections,
    /// so readers can verify ranged reads of the file.
    pub fn with_range_checksums(mut self) -> Self {
        self.range_checksums = true;
        self
    }

    /// Write the docs as segment version 1 does (kind 2: an offsets table and raw maps) instead
    /// of compressed blocks. Compaction never does: this keeps the version 1 encoder for its
    /// frozen fixtures' compat tests and for benchmarks that compare the two layouts. Call it
    /// before the first push.
    pub fn with_raw_docs(mut self) -> Self {
        debug_assert!(self.rows == 0, "the docs layout is chosen before any row");
        self.blocks = None;
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
        let mut attrs = std::mem::take(&mut self.attr_scratch);
        attrs.clear();
        encode_attrs(&mut attrs, &doc.attrs)?;
        if let Some(b) = &self.blocks {
            b.fits(attrs.len())?;
        }

        // Validated: append everything.
        match &doc.id {
            DocId::U64(n) => self.ids.extend_from_slice(&n.to_le_bytes()),
            DocId::Uuid(u) => self.ids.extend_from_slice(u.as_bytes()),
            DocId::Str(s) => {
                self.ids.extend_from_slice(s.as_bytes());
                self.id_offsets.push(len_u64(self.ids.len()));
            }
        }
        match &mut self.blocks {
            Some(b) => b.push(attrs.as_slice(), &mut self.docs),
            None => {
                self.docs.append(attrs.as_slice());
                self.doc_offsets.push(self.docs.len());
            }
        }
        self.attr_scratch = attrs;
        if let Some(d) = dim {
            let row = self.rows;
            if row.is_multiple_of(64) {
                self.absent.push(0);
            }
            match &doc.vector {
                Some(v) => {
                    let mut le = [0u8; 4 * 64];
                    for chunk in v.chunks(64) {
                        for (i, x) in chunk.iter().enumerate() {
                            le[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
                        }
                        self.vectors.append(&le[..4 * chunk.len()]);
                    }
                }
                None => {
                    self.vectors.append_zeros(d * 4);
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
    pub fn add_section(&mut self, kind: u16, bytes: impl AsRef<[u8]>) {
        self.add_section_from(kind, |out| {
            out(bytes.as_ref());
            true
        });
    }

    /// Adds a section that `write` hands over piece by piece, appended to the section spool as it
    /// comes (a section too large to hold whole: the cold IVF lists). `write` returns false,
    /// having handed over nothing, when it has no section to add.
    pub fn add_section_from(&mut self, kind: u16, write: impl FnOnce(&mut dyn FnMut(&[u8])) -> bool) {
        let start = self.extra_bytes.len();
        let spool = &mut self.extra_bytes;
        if write(&mut |piece| spool.append(piece)) {
            self.extra.push((kind, start..self.extra_bytes.len()));
        }
        debug_assert!(self.extra.last().is_some_and(|(k, _)| *k == kind) || self.extra_bytes.len() == start);
    }

    /// The vectors pushed so far, rows × dim (zeros for rows without one), for
    /// the index builds: mapped in place from a spooled builder.
    pub fn vectors_f32(&mut self) -> Result<F32Rows, BuildError> {
        Ok(self.vectors.map_f32()?)
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

    /// Assemble the segment file in memory.
    pub fn finish(self) -> Result<Vec<u8>, FormatError> {
        match self.finish_into(Vec::new()) {
            Ok(v) => Ok(v),
            Err(BuildError::Format(e)) => Err(e),
            Err(BuildError::Io(e)) => Err(malformed(format_args!("reading a spool back: {e}"))),
        }
    }

    /// Write the segment file into `out`, streaming the spooled parts.
    pub fn finish_into<W: Write>(mut self, out: W) -> Result<W, BuildError> {
        let dim = self.checked_dim()?;
        if let Some((kind, _)) = self.extra.iter().find(|(k, _)| *k < FIRST_EXTENSION_KIND) {
            return Err(malformed(format_args!(
                "section kind {kind} is a core kind; extension sections use kinds >= {FIRST_EXTENSION_KIND}"
            ))
            .into());
        }
        let docs_head = self.blocks.as_mut().map(|b| b.finish(&mut self.docs));
        for s in [&mut self.docs, &mut self.vectors, &mut self.extra_bytes] {
            s.settle()?;
        }
        let mut id_offsets = Writer::with_capacity(self.id_offsets.len() * 8);
        self.id_offsets.iter().for_each(|o| id_offsets.u64(*o));
        let mut doc_offsets =
            Writer::with_capacity(if docs_head.is_some() { 0 } else { self.doc_offsets.len() * 8 });
        self.doc_offsets.iter().for_each(|o| doc_offsets.u64(*o));
        let mut absent = Writer::new();
        self.absent.iter().for_each(|w| absent.u64(*w));
        let docs = self.docs.part(0..self.docs.len())?;
        let mut sections: Vec<SectionParts<'_>> =
            vec![(SECTION_IDS, vec![Part::Bytes(id_offsets.as_slice()), Part::Bytes(&self.ids)])];
        if docs_head.is_none() {
            sections.push((SECTION_DOCS, vec![Part::Bytes(doc_offsets.as_slice()), docs]));
        }
        if dim.is_some() {
            sections.push((SECTION_VECTORS, vec![self.vectors.part(0..self.vectors.len())?]));
            if self.any_absent {
                sections.push((SECTION_VECTOR_ABSENT, vec![Part::Bytes(absent.as_slice())]));
            }
        }
        // Core sections go in kind order (8.3): the doc blocks (kind 5) after the vectors.
        if let Some(head) = &docs_head {
            sections.push((SECTION_DOC_BLOCKS, vec![Part::Bytes(head), docs]));
        }
        for (kind, range) in &self.extra {
            sections.push((*kind, vec![self.extra_bytes.part(range.clone())?]));
        }
        let dim = self.vector_dim.unwrap_or(0);
        assemble_into(out, id_kind_of(self.id_type), self.rows, dim, &sections, self.range_checksums)
    }
}
