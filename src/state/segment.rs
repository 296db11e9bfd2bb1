//! [`SegmentReader`]: one loaded segment as every generation that holds it
//! sees it — the segment file, its deletion set, its manifest entry, a table
//! of its index sections, and the heavy sections opened on first use.
//!
//! Invariants:
//! - A reader is created once per loaded segment (at load); clones (a new
//!   generation keeping the segment, or a new deletion set) share the table
//!   and the opened sections, which depend only on the segment's bytes.
//! - The segment was verified at open (`Segment::open_lazy`): whole, or, with range checksums,
//!   lazily — a section's bytes are then checked whole by `Segment::section` before they are
//!   handed out. So sections are opened "trusted" (no second crc pass) and each at most once:
//!   the result, success or error, is kept in a `OnceLock` for the reader's life — except the
//!   table of per-attribute sections when one of them failed that first check (the evaluation
//!   fails; the next one locates them again).
//! - Per-attribute sections (text, attribute, sparse; named vector indexes,
//!   all opened together on the first lookup) are found through a
//!   table keyed by attribute name, built once on first lookup: a query opens
//!   only the section it uses, never every section of the kind. An attribute
//!   index is checked whole when the table is built (`AttrIndex::open_trusted`)
//!   and reopened per lookup without reading every entry again (`AttrIndex::reopen`).
//! - [`SegmentReader::vector_rows`] reads the same rows as the vector section:
//!   through the mapping for a small section, by positioned reads of the
//!   segment file for one of at least `cache::READABLE_MIN_BYTES` (a rerank
//!   through the mapping would map most of the section back: see
//!   `cache/mapping.rs`).
//! - A text section's dictionary samples (`index::text::TextSamples`) are taken at its first
//!   open whose reads all passed their checks, and kept with the table: heap copies of checked
//!   bytes, which later lookups start from (each byte a lookup reads from the section is still
//!   checked, `crate::integrity`), and the header's numbers and table ranges, which later opens
//!   take instead of reading the header again.
//! - [`SegmentReader::opened_bytes`] is the heap the opened sections derived
//!   (the section bytes themselves belong to the segment's buffer), plus the
//!   checksums reads are checked with (`crate::integrity`), so the memory tier
//!   can budget them.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::cache::{FileRange, READABLE_MIN_BYTES};
use crate::codec::FormatError;
use crate::format::manifest::SegmentRef;
use crate::format::segment::{
    DeletionSet, Segment, SECTION_ANN_INDEX, SECTION_ATTRIBUTE_INDEX, SECTION_GRAPH_INDEX,
    SECTION_NAMED_VECTOR_INDEX, SECTION_SPARSE_INDEX, SECTION_TEXT_INDEX,
};
use crate::index::attr::AttrIndex;
use crate::index::sparse::SparseIndex;
use crate::index::text::{TextIndex, TextSamples};
use crate::index::vector::ann::SharedAnnIndex;
use crate::index::vector::graph::GraphIndex;
use crate::index::vector::named::NamedIndex;
use crate::index::vector::rows::{RowSource, SliceRows};
use crate::index::IndexError;
use crate::model::{DocId, Document};

/// A segment as this generation sees it: its rows minus its deletion set,
/// plus its index sections, opened once.
#[derive(Clone)]
pub struct SegmentReader {
    /// The segment file.
    pub seg: Segment,
    /// Rows retired after the segment was written.
    pub deleted: Arc<DeletionSet>,
    /// Its manifest entry.
    pub meta: SegmentRef,
    /// The segment's whole buffer (a shared handle, taken once at open).
    file: Bytes,
    /// Shared by clones: depends only on `seg`'s bytes.
    sections: Arc<OpenedSections>,
}

/// Index sections of one segment file, located and opened lazily, once.
#[derive(Default)]
struct OpenedSections {
    ann: OnceLock<Option<Result<SharedAnnIndex, IndexError>>>,
    graph: OnceLock<Option<Result<GraphIndex, IndexError>>>,
    by_attr: OnceLock<AttrSections>,
    /// Named vector index sections (kind 23) by attribute, all opened on the first lookup (a
    /// namespace holds few named vector attributes).
    named: OnceLock<HashMap<Box<str>, Result<NamedIndex, IndexError>>>,
    /// The vector section's file range, when reranks read it (see the module docs).
    vector_file: OnceLock<Option<FileRange>>,
}

/// Byte ranges (in the segment file) of the per-attribute sections, by
/// attribute name; the first section of a kind wins, as a linear search did.
#[derive(Default)]
struct AttrSections {
    text: HashMap<Box<str>, TextSection>,
    attr: HashMap<Box<str>, Range<usize>>,
    sparse: HashMap<Box<str>, Range<usize>>,
}

/// A text index section: its byte range, and its dictionaries' samples (taken at its first open
/// whose reads all passed their checks; heap, trusted for the reader's life: see
/// `index/text/reader.rs`).
struct TextSection {
    range: Range<usize>,
    samples: OnceLock<TextSamples>,
}

/// The parts of a row [`SegmentReader::doc_with`] decodes besides its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocParts {
    /// The row's vector.
    pub vector: bool,
    /// The row's attributes.
    pub attributes: bool,
    /// With `attributes`: its named vector values too (skipped, not copied, when false).
    pub named_vectors: bool,
}

/// A segment's vectors as its reranks read them: [`SegmentReader::vector_rows`].
#[derive(Clone, Copy)]
pub struct SegmentRows<'a> {
    slice: SliceRows<'a>,
    file: Option<&'a FileRange>,
    /// Checks every row handed out against the segment's range checksums (`crate::integrity`).
    guard: Option<crate::integrity::FileGuard<'a>>,
}

impl SegmentRows<'_> {
    /// Whether rows are read from the file (not through the mapping).
    pub fn reads_file(&self) -> bool {
        self.file.is_some()
    }
}

impl RowSource for SegmentRows<'_> {
    fn row<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        // Only the address of the mapped row is taken (`SliceRows::row` does not copy).
        let mapped = self.slice.vectors.get(r * self.slice.dim..(r + 1) * self.slice.dim).unwrap_or(&[]);
        let Some(file) = self.file else {
            crate::integrity::check_slice(self.guard.as_ref(), mapped);
            return mapped;
        };
        // Checked as it is read: the chunks around the row by positioned reads too, so checking
        // maps nothing (a mismatch fails the evaluation's scope).
        if let Some(g) = &self.guard {
            g.check_slice_read(mapped, &|at, out| file.read_file_at(at, out).is_ok());
        }
        let dim = self.slice.dim;
        match crate::format::segment::read_f32s(buf, dim, |b| file.read(r * dim * 4, b)) {
            Ok(()) => buf,
            Err(e) => {
                // The same immutable bytes are mapped: read them there.
                tracing::debug!(error = %e, "positioned read of a vector row failed; reading the mapping");
                self.slice.row(r, buf)
            }
        }
    }

    /// Asks the kernel for the rows (each row's bytes, or what checking it reads around it)
    /// unless the first is already in the page cache (`mincore`). A segment whose rows are in
    /// memory then pays one probe a rerank; one on disk has its rerank's reads in flight
    /// together (BENCHMARKS "Rerank reads asked for together (stop 58)").
    fn will_read(&self, rows: &[u32]) {
        let Some(file) = self.file else { return };
        let dim = self.slice.dim;
        let span = |r: u32| {
            let r = r as usize;
            let mapped = self.slice.vectors.get(r * dim..(r + 1) * dim)?;
            let at = file.file_offset() + r * dim * 4;
            Some(self.guard.as_ref().and_then(|g| g.checked_span(mapped)).unwrap_or(at..at + dim * 4))
        };
        let Some(probe) = rows.first().and_then(|&r| span(r)) else { return };
        if file.cached_file_at(probe.start, probe.len()) {
            return;
        }
        for s in rows.iter().filter_map(|&r| span(r)) {
            file.will_need_file_at(s.start, s.len());
        }
    }

    fn all(&self) -> &[f32] {
        crate::integrity::check_slice(self.guard.as_ref(), self.slice.vectors);
        self.slice.vectors
    }

    fn floats(&self) -> usize {
        self.slice.vectors.len()
    }
}

impl fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentReader")
            .field("segment", &self.meta.id)
            .field("rows", &self.seg.len())
            .field("deleted", &self.deleted.len())
            .finish_non_exhaustive()
    }
}

impl SegmentReader {
    /// The reader of a verified segment with its deletion set and manifest entry.
    pub fn new(seg: Segment, deleted: Arc<DeletionSet>, meta: SegmentRef) -> SegmentReader {
        SegmentReader { file: seg.bytes(), seg, deleted, meta, sections: Arc::default() }
    }

    /// The same segment with another deletion set (opened sections shared).
    pub fn with_deleted(&self, deleted: Arc<DeletionSet>) -> SegmentReader {
        SegmentReader { deleted, ..self.clone() }
    }

    /// The live row holding `id`, if any.
    pub fn find_live(&self, id: &DocId) -> Option<usize> {
        self.seg.find(id).filter(|r| !self.deleted.contains(*r))
    }

    /// Number of live rows.
    pub fn live_rows(&self) -> usize {
        self.seg.len().saturating_sub(self.deleted.len())
    }

    /// The row's id and attributes (no vector), for filters and scoring.
    pub fn attrs_doc(&self, row: usize) -> Option<Document> {
        let id = self.seg.try_id(row)?;
        let attrs = self.seg.attrs_without_dense(row).ok()?;
        Some(Document { id, vector: None, attrs })
    }

    /// The segment's ANN (IVF) section, opened on first use.
    pub fn ann_index(&self) -> Option<Result<SharedAnnIndex, IndexError>> {
        self.sections
            .ann
            .get_or_init(|| match self.open_owned(SECTION_ANN_INDEX, SharedAnnIndex::open_trusted) {
                // A version-3 IVF scores its candidates with the graph's codes (exactly when the
                // graph is missing, unreadable or not the one it was built with).
                Some(Ok(ix)) if ix.wants_graph() => match self.graph_index() {
                    Some(Ok(g)) => Some(Ok(ix.with_graph(g))),
                    _ => Some(Ok(ix)),
                },
                other => other,
            })
            .clone()
    }

    /// The segment's graph section, opened on first use.
    pub fn graph_index(&self) -> Option<Result<GraphIndex, IndexError>> {
        self.sections
            .graph
            .get_or_init(|| self.open_owned(SECTION_GRAPH_INDEX, GraphIndex::open_trusted))
            .clone()
    }

    /// The text index section of `attr`, its lookups starting from its dictionaries' samples
    /// (taken at the first open).
    pub fn text_index(&self, attr: &str) -> Option<TextIndex<'_>> {
        let sec = self.by_attr().text.get(attr)?;
        let bytes = self.section_bytes(&sec.range)?;
        let guard = self.seg.file_guard();
        if let Some(ix) = sec.samples.get().and_then(|s| TextIndex::reopen(bytes, s)) {
            // The header's numbers and ranges were taken, checked, at the first open.
            return Some(ix.guarded(guard));
        }
        // The header (counts, lengths) is read at this open: checked like the rest.
        let header_ok = crate::integrity::check_slice(guard.as_ref(), bytes.get(..64).unwrap_or(bytes));
        let ix = TextIndex::open_trusted(bytes).ok()?.guarded(guard);
        let samples = match sec.samples.get() {
            Some(s) => Some(s),
            None if header_ok => ix.samples().map(|s| sec.samples.get_or_init(|| s)),
            None => None,
        };
        Some(match samples {
            Some(s) => ix.with_samples(s),
            None => ix,
        })
    }

    /// The attribute index section of `attr` (checked whole when its section was first located,
    /// `locate_attr_sections`; reopened per filter without reading every entry again).
    pub fn attr_index(&self, attr: &str) -> Option<AttrIndex<'_>> {
        let range = self.by_attr().attr.get(attr)?;
        Some(AttrIndex::reopen(self.section_bytes(range)?).ok()?.guarded(self.seg.file_guard()))
    }

    /// The sparse index section of `attr` (its checksum was verified when the
    /// section table was built).
    pub fn sparse_index(&self, attr: &str) -> Option<SparseIndex<'_>> {
        let range = self.by_attr().sparse.get(attr)?;
        Some(SparseIndex::open_trusted(self.section_bytes(range)?).ok()?.guarded(self.seg.file_guard()))
    }

    /// The index section of named vector attribute `attr`, opened on first use (None: the
    /// segment has none; an error: it is unreadable, and searches go exact).
    pub fn named_vector_index(&self, attr: &str) -> Option<Result<&NamedIndex, IndexError>> {
        let all = match self.sections.named.get() {
            Some(all) => all,
            // None when a section failed its first check: the evaluation fails, nothing is kept.
            None => {
                let secs = self.seg.checked_sections(SECTION_NAMED_VECTOR_INDEX)?;
                self.sections.named.get_or_init(|| self.open_named(secs))
            }
        };
        all.get(attr).map(|r| r.as_ref().map_err(|e| *e))
    }

    fn open_named(&self, secs: Vec<&[u8]>) -> HashMap<Box<str>, Result<NamedIndex, IndexError>> {
        let mut t = HashMap::new();
        for sec in secs {
            let Some(name) = crate::index::vector::named::attr_of(sec) else { continue };
            if t.contains_key(name) {
                continue;
            }
            let (base, at) = (self.file.as_ptr() as usize, sec.as_ptr() as usize);
            let inside = at >= base && at + sec.len() <= base + self.file.len();
            let bytes = if inside { self.file.slice_ref(sec) } else { Bytes::copy_from_slice(sec) };
            let guard = self.seg.chunk_guard().cloned();
            t.insert(name.into(), NamedIndex::open(bytes).map(|ix| ix.guarded(guard, self.file.clone())));
        }
        t
    }

    /// The named vector `attr` of `row` (its index section's copy when there is one, else
    /// decoded from the row's attributes); None when the row holds none or cannot be read.
    pub fn named_vector(&self, row: usize, attr: &str) -> Option<Vec<f32>> {
        if let Some(Ok(ix)) = self.named_vector_index(attr) {
            return ix.vector(row).map(<[f32]>::to_vec);
        }
        self.seg.dense_attr(row, attr).ok().flatten()
    }

    /// Row `row` with only the parts a query returns; the vector is read as
    /// a rerank reads it ([`SegmentReader::vector_rows`]), so returning ten
    /// rows does not map their neighbourhood of a large vector section.
    pub fn doc_with(&self, row: usize, parts: DocParts) -> Result<Document, FormatError> {
        let mut d = if parts.attributes && !parts.named_vectors {
            let id = self
                .seg
                .try_id(row)
                .ok_or_else(|| FormatError::Malformed(format!("row {row} out of range")))?;
            Document { id, vector: None, attrs: self.seg.attrs_without_dense(row)? }
        } else {
            self.seg.doc_without_vector(row, parts.attributes)?
        };
        if parts.vector && self.seg.has_vector(row) {
            let mut buf = Vec::new();
            d.vector = self.vector_rows().map(|rows| rows.row(row, &mut buf).to_vec().into());
        }
        Ok(d)
    }

    /// The rows an exact rerank reads (see the module docs); `None` without vectors.
    pub fn vector_rows(&self) -> Option<SegmentRows<'_>> {
        let vectors = self.seg.vectors()?;
        let slice = SliceRows { vectors, dim: self.seg.vector_dim()? as usize };
        let file = self.sections.vector_file.get_or_init(|| {
            (std::mem::size_of_val(vectors) as u64 >= READABLE_MIN_BYTES)
                .then(|| FileRange::of(vectors))
                .flatten()
        });
        Some(SegmentRows { slice, file: file.as_ref(), guard: self.seg.file_guard() })
    }

    /// Heap bytes the opened sections hold besides the segment's buffer.
    pub fn opened_bytes(&self) -> u64 {
        let ann =
            self.sections.ann.get().and_then(|o| o.as_ref()?.as_ref().ok()).map_or(0, |ix| ix.heap_bytes());
        let graph =
            self.sections.graph.get().and_then(|o| o.as_ref()?.as_ref().ok()).map_or(0, |ix| ix.heap_bytes());
        let named: usize = self
            .sections
            .named
            .get()
            .map_or(0, |t| t.values().filter_map(|r| r.as_ref().ok()).map(NamedIndex::heap_bytes).sum());
        let text: usize = self.sections.by_attr.get().map_or(0, |t| {
            t.text.values().filter_map(|s| s.samples.get()).map(TextSamples::heap_bytes).sum()
        });
        (ann + graph + named + text + self.seg.guard_heap_bytes()) as u64
    }

    /// Opens the first section of `kind` over a shared slice of the segment's
    /// buffer (a copy only if the section is not inside it).
    fn open_owned<T>(
        &self,
        kind: u16,
        open: impl FnOnce(Bytes) -> Result<T, IndexError>,
    ) -> Option<Result<T, IndexError>> {
        let sec = self.seg.section(kind)?;
        let all = &self.file;
        let (base, at) = (all.as_ptr() as usize, sec.as_ptr() as usize);
        let inside = at >= base && at + sec.len() <= base + all.len();
        let bytes = if inside { all.slice_ref(sec) } else { Bytes::copy_from_slice(sec) };
        Some(open(bytes))
    }

    fn section_bytes(&self, range: &Range<usize>) -> Option<&[u8]> {
        self.file.get(range.clone())
    }

    fn by_attr(&self) -> &AttrSections {
        static NONE: OnceLock<AttrSections> = OnceLock::new();
        if let Some(t) = self.sections.by_attr.get() {
            return t;
        }
        // A section that failed its first check (a segment opened lazily, `Segment::section`)
        // fails this evaluation; a table without it is not kept, so no later one answers as if
        // the attribute had no index here.
        match self.locate_attr_sections() {
            Some(t) => self.sections.by_attr.get_or_init(|| t),
            None => NONE.get_or_init(AttrSections::default),
        }
    }

    fn locate_attr_sections(&self) -> Option<AttrSections> {
        let mut t = AttrSections::default();
        let whole = &self.file[..];
        let base = whole.as_ptr() as usize;
        let range_of = |b: &[u8]| {
            let start = (b.as_ptr() as usize).checked_sub(base)?;
            (start + b.len() <= whole.len()).then_some(start..start + b.len())
        };
        for b in self.seg.checked_sections(SECTION_TEXT_INDEX)? {
            if let (Ok(ix), Some(r)) = (TextIndex::open_trusted(b), range_of(b)) {
                t.text.entry(ix.attr().into()).or_insert(TextSection { range: r, samples: OnceLock::new() });
            }
        }
        for b in self.seg.checked_sections(SECTION_ATTRIBUTE_INDEX)? {
            if let (Ok(ix), Some(r)) = (AttrIndex::open_trusted(b), range_of(b)) {
                t.attr.entry(ix.attr().into()).or_insert(r);
            }
        }
        for b in self.seg.checked_sections(SECTION_SPARSE_INDEX)? {
            if let (Ok(ix), Some(r)) = (SparseIndex::open(b), range_of(b)) {
                t.sparse.entry(ix.attr().into()).or_insert(r);
            }
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::segment::SegmentBuilder;
    use crate::index::vector::distance::Metric;
    use crate::model::IdType;

    const DIM: usize = 4;
    const ROWS: usize = 1100;

    /// A segment of `ROWS` vectors with an ANN section and text sections on
    /// `a` and `b`.
    fn reader() -> SegmentReader {
        let mut b = SegmentBuilder::new(IdType::U64, Some(DIM as u32));
        let mut flat = Vec::with_capacity(ROWS * DIM);
        for i in 0..ROWS {
            let v: Vec<f32> = (0..DIM).map(|d| ((i * 7 + d * 13) % 31) as f32 + 1.0).collect();
            flat.extend_from_slice(&v);
            let attrs = [("n".to_string(), crate::model::Value::Int(i as i128))].into_iter().collect();
            let doc = Document { id: DocId::U64(i as u64), vector: Some(v.into()), attrs };
            b.push(&doc).unwrap();
        }
        let params = crate::index::vector::ann::AnnParams::default();
        b.add_section(
            SECTION_ANN_INDEX,
            crate::index::vector::ann::build(&flat, DIM, Metric::EuclideanSquared, &params),
        );
        for attr in ["a", "b"] {
            let mut text = crate::index::text::TextIndexBuilder::new(attr, &Default::default());
            text.add(0, "hello world");
            b.add_section(SECTION_TEXT_INDEX, text.finish());
        }
        let seg = Segment::open(Bytes::from(b.finish().unwrap())).unwrap();
        let deleted = Arc::new(DeletionSet::new(seg.len()));
        SegmentReader::new(seg, deleted, SegmentRef { id: "s1".into(), ..SegmentRef::default() })
    }

    /// Named vectors: read from the attribute's index section when there is one, from the row
    /// otherwise; left out of a row decoded without them; the section opened once, accounted.
    #[test]
    fn named_vectors_read_from_their_section_or_the_row() {
        use crate::model::Value;
        let (rows, dim) = (70usize, 3usize);
        let v = |i: usize| vec![i as f32, 1.0, -(i as f32)];
        let mut b = SegmentBuilder::new(IdType::U64, None);
        let (mut flat, mut present) = (Vec::new(), Vec::new());
        for i in 0..rows {
            let mut attrs: crate::model::AttrMap =
                [("n".to_string(), Value::Int(i as i128))].into_iter().collect();
            if i % 2 == 0 {
                attrs.insert("t".into(), Value::Dense(v(i).into()));
                attrs.insert("u".into(), Value::Dense(v(i + 1).into()));
            }
            flat.extend(if i % 2 == 0 { v(i) } else { vec![0.0; dim] });
            present.push(i % 2 == 0);
            b.push(&Document { id: DocId::U64(i as u64), vector: None, attrs }).unwrap();
        }
        let params = crate::index::vector::graph::GraphParams { threads: 1, ..Default::default() };
        let sec =
            crate::index::vector::named::build("t", dim, Metric::CosineDistance, &flat, &present, &params);
        b.add_section(SECTION_NAMED_VECTOR_INDEX, sec);
        let seg = Segment::open(Bytes::from(b.finish().unwrap())).unwrap();
        let r = SegmentReader::new(seg, Arc::new(DeletionSet::new(rows)), SegmentRef::default());
        assert!(
            r.named_vector_index("t").is_some_and(|ix| ix.is_ok()) && r.named_vector_index("u").is_none()
        );
        assert!(r.opened_bytes() > 0, "the opened section is accounted");
        for i in 0..rows {
            let want = |x: Vec<f32>| (i % 2 == 0).then_some(x);
            assert_eq!(r.named_vector(i, "t"), want(v(i)), "row {i} from the section");
            assert_eq!(r.named_vector(i, "u"), want(v(i + 1)), "row {i} from the row");
            let light =
                r.doc_with(i, DocParts { vector: false, attributes: true, named_vectors: false }).unwrap();
            assert_eq!(light.attrs.keys().collect::<Vec<_>>(), vec!["n"], "row {i}");
            let full =
                r.doc_with(i, DocParts { vector: false, attributes: true, named_vectors: true }).unwrap();
            assert_eq!(full.attrs.len(), if i % 2 == 0 { 3 } else { 1 }, "row {i}");
        }
    }

    #[test]
    fn sections_open_once_and_are_shared_by_clones() {
        let r = reader();
        assert_eq!(r.opened_bytes(), 0, "nothing opened before first use");
        let clone = r.with_deleted(Arc::new(DeletionSet::new(r.seg.len())));
        assert!(r.ann_index().is_some_and(|ix| ix.is_ok()));
        assert!(r.opened_bytes() > 0, "the opened ANN section is accounted");
        assert_eq!(clone.opened_bytes(), r.opened_bytes(), "clones share opened sections");
        assert!(r.graph_index().is_none());
        assert_eq!(r.text_index("b").map(|ix| ix.attr()), Some("b"));
        assert_eq!(r.text_index("a").map(|ix| ix.attr()), Some("a"));
        assert!(r.text_index("t").is_none() && r.attr_index("t").is_none() && r.sparse_index("t").is_none());
        assert_eq!(r.live_rows(), ROWS);
    }

    /// A small segment's rows are read through its buffer; a mapped segment
    /// whose vector section is large reads them from the file, the same floats.
    #[test]
    fn large_mapped_vector_sections_are_read_from_the_file_as_the_same_rows() {
        assert!(reader().vector_rows().is_some_and(|r| !r.reads_file()), "small: through the buffer");
        const WIDE: usize = 1024;
        let rows = (READABLE_MIN_BYTES as usize).div_ceil(WIDE * 4) + 1;
        let mut b = SegmentBuilder::new(IdType::U64, Some(WIDE as u32));
        for i in 0..rows {
            let v: Vec<f32> = (0..WIDE).map(|d| (i * 31 + d) as f32 * 0.25 - 7.0).collect();
            b.push(&Document { id: DocId::U64(i as u64), vector: Some(v.into()), attrs: Default::default() })
                .unwrap();
        }
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &b.finish().unwrap()).unwrap();
        let len = f.metadata().unwrap().len();
        let seg = Segment::open(crate::cache::map_file(&f, len).unwrap()).unwrap();
        let r = SegmentReader::new(seg, Arc::new(DeletionSet::new(rows)), SegmentRef::default());
        let source = r.vector_rows().unwrap();
        assert!(source.reads_file(), "a {rows}-row section of {WIDE}-d vectors is read from the file");
        let mut buf = Vec::new();
        for row in [0, 1, rows / 2, rows - 1] {
            assert_eq!(source.row(row, &mut buf), r.seg.vector(row).unwrap(), "row {row}");
            let whole = DocParts { vector: true, attributes: true, named_vectors: true };
            assert_eq!(r.doc_with(row, whole).unwrap(), r.seg.doc(row).unwrap(), "row {row} read whole");
        }
    }

    /// Whether each of `pages` (page indexes of `bytes`, a file mapping) is in the page cache
    /// (`mincore`, which reports a file mapping's page-cache pages whether or not this process
    /// maps them).
    fn cached_pages(bytes: &[u8], pages: &[usize]) -> Vec<bool> {
        let page = rustix::param::page_size();
        pages
            .iter()
            .map(|&p| {
                let mut v = 0u8;
                // SAFETY: the address is a page of a live mapping (`bytes`); one byte of output.
                let rc =
                    unsafe { libc::mincore(bytes.as_ptr().add(p * page) as *mut libc::c_void, page, &mut v) };
                assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
                v & 1 == 1
            })
            .collect()
    }

    /// A rerank's rows, read from the file, are asked of the kernel before they are read: after
    /// `will_read` their pages (and the checksum chunks around them) come into the page cache
    /// while a row far from them stays out — the reads a disk then serves together.
    #[test]
    fn rows_to_be_read_are_asked_of_the_kernel_ahead() {
        const WIDE: usize = 1024;
        let rows = 2048; // 8 MiB of vectors: rows 16 KiB apart and more are in other chunks
        let mut b = SegmentBuilder::new(IdType::U64, Some(WIDE as u32));
        for i in 0..rows {
            let v: Vec<f32> = (0..WIDE).map(|d| (i * 17 + d) as f32 * 0.5).collect();
            b.push(&Document { id: DocId::U64(i as u64), vector: Some(v.into()), attrs: Default::default() })
                .unwrap();
        }
        // On the checkout's disk, not /tmp: a tmpfs cannot drop a page from its cache.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, b.finish().unwrap()).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        f.sync_all().unwrap();
        let len = f.metadata().unwrap().len();
        let seg = Segment::open(crate::cache::map_file(&f, len).unwrap()).unwrap();
        let r = SegmentReader::new(seg, Arc::new(DeletionSet::new(rows)), SegmentRef::default());
        let source = r.vector_rows().unwrap();
        assert!(source.reads_file());
        // Out of this process (the open verified every page) and out of the page cache.
        let whole = &r.file[..];
        assert!(crate::cache::release_resident(whole));
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let page = rustix::param::page_size();
        let (base, vectors) = (whole.as_ptr() as usize, source.slice.vectors.as_ptr() as usize);
        // Addresses only: touching the mapping would read the pages back.
        let page_of = |row: usize| (vectors + row * WIDE * 4 - base) / page;
        let (asked, far) = ([100usize, 1000, 1900], 1500usize);
        let pages: Vec<usize> = asked.iter().map(|&row| page_of(row)).chain([page_of(far)]).collect();
        assert_eq!(cached_pages(whole, &pages), vec![false; 4], "dropped from the page cache");
        source.will_read(&asked.map(|row| row as u32));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cached_pages(whole, &pages)[..3] != [true; 3] && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(cached_pages(whole, &pages), vec![true, true, true, false], "asked rows, not the far one");
        let mut buf = Vec::new();
        for row in asked.into_iter().chain([far]) {
            assert_eq!(source.row(row, &mut buf), r.seg.vector(row).unwrap(), "row {row}");
        }
        // A rerank whose first row is in the page cache (the segment's rows are served from
        // memory) asks for nothing: the far row stays out (the comparisons above mapped it).
        assert!(crate::cache::release_resident(whole));
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        assert_eq!(cached_pages(whole, &[page_of(asked[0]), page_of(far)]), vec![false, false]);
        source.row(asked[0], &mut buf);
        source.will_read(&[asked[0] as u32, far as u32]);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(cached_pages(whole, &[page_of(asked[0]), page_of(far)]), vec![true, false]);
    }

    /// A query returning ids decodes neither attributes nor vectors; each part
    /// asked for is the stored one.
    #[test]
    fn a_row_decodes_only_the_parts_asked_for() {
        let r = reader();
        for row in 0..ROWS {
            let whole = r.seg.doc(row).unwrap();
            let id_only =
                r.doc_with(row, DocParts { vector: false, attributes: false, named_vectors: false }).unwrap();
            assert_eq!((&id_only.id, &id_only.vector, id_only.attrs.is_empty()), (&whole.id, &None, true));
            let vector =
                r.doc_with(row, DocParts { vector: true, attributes: false, named_vectors: false }).unwrap();
            assert_eq!((&vector.vector, vector.attrs.is_empty()), (&whole.vector, true));
            let attrs =
                r.doc_with(row, DocParts { vector: false, attributes: true, named_vectors: true }).unwrap();
            assert_eq!((&attrs.attrs, &attrs.vector), (&whole.attrs, &None));
            assert_eq!(whole.attrs.len(), 1, "the fixture has an attribute to leave out");
        }
        assert!(
            r.doc_with(ROWS, DocParts { vector: true, attributes: false, named_vectors: false }).is_err(),
            "out of range"
        );
    }
}
