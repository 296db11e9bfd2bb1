//! The rows of a compaction's output, streamed: the overlay's live documents
//! and the live, unshadowed rows of the segments being merged, in id order,
//! one at a time, built into spooled segments on a blocking thread.
//!
//! Invariants:
//! - Memory follows one row, not the output: segment rows are decoded as
//!   they are emitted (from the mapped segment), the overlay is read in
//!   place, and each output segment is built by a spooled
//!   [`SegmentBuilder`] and streamed into an unlinked scratch file. Spilled
//!   overlay vectors and merged segments' rows are read through their
//!   mappings, whose pages are given back every [`SPILL_RELEASE_BYTES`].
//! - The same rows as folding everything into one ordered map: an overlay
//!   entry (document or deletion) shadows the segment row with its id; live
//!   rows of different segments never share an id (compaction's invariant),
//!   so a k-way merge by id needs no tie rule.
//! - A row that cannot be decoded stops the build with [`MergeFailure::Damaged`]:
//!   dropping it would lose a document; so does a merged segment's text section
//!   that cannot be decoded while its rows' postings are carried over.
//! - Each segment row comes out with where it was read from ([`MergedRow::from`]), so
//!   the text indexes take its postings from its segment's section instead of
//!   analysing its text again (`engine/indexing.rs`, `TextFeed`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::indexing::IndexFeed;
use crate::format::segment::{BuildError, SegmentBuilder, SECTION_DOCS, SECTION_DOC_BLOCKS, SECTION_VECTORS};
use crate::model::{DocId, Document};
use crate::state::{NsState, SegmentReader};

/// A segment row that cannot be decoded: the segment's file and why.
pub(super) struct DamagedRow {
    pub(super) key: String,
    pub(super) error: String,
}

/// Why an output segment could not be built.
pub(super) enum MergeFailure {
    Damaged(DamagedRow),
    Build(BuildError),
}

impl From<BuildError> for MergeFailure {
    fn from(e: BuildError) -> Self {
        MergeFailure::Build(e)
    }
}

/// One output segment: its file (mapped from the scratch file) and rows.
pub(super) struct BuiltSegment {
    pub(super) bytes: Bytes,
    pub(super) rows: u64,
    /// Its text sections' analysis options, per attribute (the manifest's
    /// `SegmentRef::text_analysis`).
    pub(super) text_analysis: BTreeMap<String, String>,
}

/// What an output segment is built with.
pub(super) struct BuildPlan<'a> {
    pub(super) max_rows: usize,
    pub(super) cold: bool,
    pub(super) graph_code: crate::index::vector::graph::GraphCode,
    pub(super) scratch: &'a Path,
}

/// Build the output segments of a compaction of `state` that merges the
/// segments in `merge`: at most `plan.max_rows` rows each, in id order.
pub(super) fn build_segments(
    state: &NsState,
    merge: &BTreeSet<String>,
    plan: &BuildPlan<'_>,
) -> Result<Vec<BuiltSegment>, MergeFailure> {
    let id_type = state.id_type.unwrap_or(crate::model::IdType::U64);
    let merged = MergedRows::new(state, merge);
    let sources = merged.segs.clone();
    let read_sections = rows_sections(&sources);
    let mut rows = merged.peekable();
    let mut out = Vec::new();
    while rows.peek().is_some() {
        let mut b = SegmentBuilder::spooled(id_type, state.vector_dim, plan.scratch)
            .map_err(BuildError::from)?
            .with_range_checksums();
        let mut feed = IndexFeed::new(state, plan.cold, plan.graph_code).with_sources(&sources);
        let mut read_since_release = 0;
        while b.len() < plan.max_rows.max(1) {
            let Some(row) = rows.next() else { break };
            let MergedRow { doc, from } = row.map_err(MergeFailure::Damaged)?;
            b.push(&doc).map_err(BuildError::from)?;
            feed.add_from(&doc, from);
            read_since_release += doc.vector.as_ref().map_or(0, |v| v.len() * 4);
            if read_since_release >= SPILL_RELEASE_BYTES {
                release_read(state, &read_sections);
                read_since_release = 0;
            }
        }
        release_read(state, &read_sections);
        feed.carry_text().map_err(|(c, e)| MergeFailure::Damaged(damaged(sources[c], e)))?;
        feed.finish(&mut b)?;
        let n = b.len() as u64;
        let text_analysis = crate::index::text::analysis_keys(&state.schema);
        out.push(BuiltSegment { bytes: write_scratch(b, plan.scratch)?, rows: n, text_analysis });
    }
    Ok(out)
}

/// The overlay's spilled vectors and the merged segments' rows are read
/// through mappings: their pages are given back every this many bytes read,
/// so a round over a million rows does not map them all at once.
const SPILL_RELEASE_BYTES: usize = 16 << 20;

/// The sections of the merged segments that the round reads rows from
/// (`Segment::doc` reads a row's vector and document through the segment's
/// mapping): their vectors and documents, not the graph pages that queries of
/// a merged segment use until the round commits. Their ranges were checked
/// against the file at open.
fn rows_sections(sources: &[&SegmentReader]) -> Vec<Bytes> {
    let rows_kind = |k: u16| matches!(k, SECTION_VECTORS | SECTION_DOCS | SECTION_DOC_BLOCKS);
    let mut out = Vec::new();
    for s in sources {
        let bytes = s.seg.bytes();
        for section in s.seg.section_infos().into_iter().filter(|i| rows_kind(i.kind)) {
            let (at, len) = (section.offset as usize, section.len as usize);
            if at.checked_add(len).is_some_and(|end| end <= bytes.len()) {
                out.push(bytes.slice(at..at + len));
            }
        }
    }
    out
}

/// Give back the pages the round has read: the spill's and those of
/// `read_sections` ([`rows_sections`]). Without this, a merge kept its
/// sources' whole vectors sections resident until the sources were dropped:
/// 0.19 GB of a 3M namespace's RSS (BENCHMARKS.md, "Serving RSS: what is
/// resident, and merges").
fn release_read(state: &NsState, read_sections: &[Bytes]) {
    if let Some(spill) = state.spill() {
        spill.release_resident();
    }
    for section in read_sections {
        crate::cache::release_resident(section);
    }
}

/// Stream the segment into an unlinked scratch file and map it.
fn write_scratch(b: SegmentBuilder, scratch: &Path) -> Result<Bytes, BuildError> {
    let file = tempfile::tempfile_in(scratch)?;
    let w = b.finish_into(std::io::BufWriter::with_capacity(1 << 20, file))?;
    let file = w.into_inner().map_err(std::io::IntoInnerError::into_error)?;
    // Mapped by the cache's mapper: the file is unlinked and never written
    // again (its contract), and the compaction can then give the pages it
    // checksums and copies back as it goes (`cache::release_resident`).
    Ok(crate::cache::map_file(&file, file.metadata()?.len())?)
}

/// A merged segment's file and what is wrong in it.
fn damaged(s: &SegmentReader, error: String) -> DamagedRow {
    DamagedRow { key: s.meta.files.first().map_or_else(|| s.meta.id.clone(), |f| f.key.clone()), error }
}

/// One row of the merge: the document, and for a segment row, the merged segment it
/// comes from (its index among [`MergedRows::segs`]) and its row there.
pub(super) struct MergedRow {
    pub(super) doc: Document,
    pub(super) from: Option<(usize, u32)>,
}

/// The overlay's documents (not its deletions), in id order.
type LiveOverlay<'s> = Box<dyn Iterator<Item = (&'s DocId, &'s Arc<Document>)> + 's>;

/// The merged rows in id order.
struct MergedRows<'s> {
    state: &'s NsState,
    segs: Vec<&'s SegmentReader>,
    /// Per merged segment, the next row to look at.
    next_row: Vec<usize>,
    /// The head of each segment cursor that has one: (id, row, cursor).
    heads: BinaryHeap<Reverse<(DocId, usize, usize)>>,
    overlay: std::iter::Peekable<LiveOverlay<'s>>,
}

impl<'s> MergedRows<'s> {
    fn new(state: &'s NsState, merge: &BTreeSet<String>) -> Self {
        let segs: Vec<&SegmentReader> =
            state.segments().iter().filter(|s| merge.contains(&s.meta.id)).collect();
        let live: LiveOverlay<'s> =
            Box::new(state.overlay().iter().filter_map(|(id, d)| d.as_ref().map(|d| (id, d))));
        let mut me = MergedRows {
            state,
            next_row: vec![0; segs.len()],
            segs,
            heads: BinaryHeap::new(),
            overlay: live.peekable(),
        };
        for c in 0..me.segs.len() {
            me.advance(c);
        }
        me
    }

    /// Push cursor `c`'s next live row that the overlay does not shadow.
    fn advance(&mut self, c: usize) {
        let s = self.segs[c];
        while self.next_row[c] < s.seg.len() {
            let row = self.next_row[c];
            self.next_row[c] += 1;
            if s.deleted.contains(row) {
                continue;
            }
            let Some(id) = s.seg.try_id(row) else { continue };
            if self.state.overlay().contains_key(&id) {
                continue;
            }
            self.heads.push(Reverse((id, row, c)));
            return;
        }
    }

    fn segment_row(&mut self) -> Option<Result<MergedRow, DamagedRow>> {
        let Reverse((_, row, c)) = self.heads.pop()?;
        let s = self.segs[c];
        let doc = s.seg.doc(row).map_err(|e| damaged(s, format!("row {row}: {e}")));
        self.advance(c);
        // Segment rows are u32 positions (the row count of a segment is a u32).
        Some(doc.map(|doc| MergedRow { doc, from: u32::try_from(row).ok().map(|r| (c, r)) }))
    }
}

impl Iterator for MergedRows<'_> {
    type Item = Result<MergedRow, DamagedRow>;

    fn next(&mut self) -> Option<Self::Item> {
        let overlay_first = match (self.overlay.peek(), self.heads.peek()) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((oid, _)), Some(Reverse((sid, _, _)))) => *oid < sid,
        };
        if overlay_first {
            self.overlay.next().map(|(_, d)| Ok(MergedRow { doc: (**d).clone(), from: None }))
        } else {
            self.segment_row()
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::format::manifest::{ObjectRef, SegmentRef};
    use crate::format::segment::{with_undecodable_row, DeletionSet, Segment};
    use crate::model::{AttrMap, IdType};

    /// A segment `key` holding ids `ids` (increasing), `damaged_row` undecodable, `deleted` rows deleted.
    fn segment(key: &str, ids: &[u64], damaged_row: Option<usize>, deleted: &[usize]) -> SegmentReader {
        let mut b = SegmentBuilder::new(IdType::U64, None);
        for i in ids {
            b.push(&Document { id: DocId::U64(*i), vector: None, attrs: AttrMap::new() }).unwrap();
        }
        let mut bytes = b.finish().unwrap();
        if let Some(row) = damaged_row {
            bytes = with_undecodable_row(&bytes, row);
        }
        let seg = Segment::open(Bytes::from(bytes)).unwrap();
        let meta = SegmentRef {
            id: key.into(),
            files: vec![ObjectRef { key: format!("{key}/data.seg"), bytes: 0, crc32c: 0 }],
            rows: ids.len() as u64,
            ..SegmentRef::default()
        };
        let mut set = DeletionSet::new(ids.len());
        deleted.iter().for_each(|r| {
            set.insert(*r);
        });
        SegmentReader::new(seg, Arc::new(set), meta)
    }

    fn ids(state: &NsState, merge: &BTreeSet<String>) -> Result<Vec<u64>, String> {
        MergedRows::new(state, merge)
            .map(|d| match d.map(|r| r.doc) {
                Ok(Document { id: DocId::U64(n), .. }) => Ok(n),
                Ok(other) => Err(format!("unexpected id {}", other.id)),
                Err(e) => Err(format!("{}: {}", e.key, e.error)),
            })
            .collect()
    }

    #[test]
    fn live_rows_of_merged_segments_come_out_in_id_order() {
        let state = NsState::with_segments(vec![
            segment("a", &[1, 4, 7, 10], None, &[1]),
            segment("b", &[2, 3, 9], None, &[]),
            segment("c", &[5, 6], None, &[]),
        ]);
        let ab: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
        assert_eq!(ids(&state, &ab).unwrap(), vec![1, 2, 3, 7, 9, 10]);
    }

    #[test]
    fn a_merge_refuses_a_row_it_cannot_decode_instead_of_dropping_it() {
        let state = NsState::with_segments(vec![
            segment("good", &[0, 1, 2], None, &[]),
            segment("bad", &[3, 4, 5], Some(2), &[]),
        ]);
        let both: BTreeSet<String> = ["good".to_owned(), "bad".to_owned()].into();
        let err = ids(&state, &both).expect_err("the merge fails");
        assert!(err.starts_with("bad/data.seg: row 2:"), "{err}");
        // A merge that does not read the damaged segment is unaffected.
        let good: BTreeSet<String> = ["good".to_owned()].into();
        assert_eq!(ids(&state, &good).unwrap(), vec![0, 1, 2]);
    }
}

#[cfg(test)]
#[path = "textmerge_tests.rs"]
pub(in crate::engine) mod textmerge_tests;
