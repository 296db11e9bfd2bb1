//! The state of a namespace at one generation: immutable segments plus an
//! overlay of the WAL rows written since the last compaction.
//!
//! Invariants:
//! - Live rows (rows not in their segment's deletion set) of different
//!   segments have distinct ids; compaction keeps it so by retiring shadowed
//!   rows through deletion sets.
//! - An id present in the overlay shadows any segment row: `Some(doc)` is the
//!   current document, `None` a delete.
//! - Iteration yields live documents in strictly increasing id order (a
//!   k-way merge of the segments and the overlay).
//! - A state is never mutated once shared: writers work on a clone (the
//!   overlay is an `imbl` map, the segment list an `Arc`, so clones are cheap).
//! - After a compaction the next state is refolded from the states around it
//!   ([`NsState::refold`], `refold.rs`), sharing their documents.
//! - With a [`VectorSpill`], every document put into the overlay keeps its
//!   vector in the spill's files (`crate::spill`), not on the heap.
//! - The live segment rows the overlay shadows are kept per segment as the
//!   overlay gains ids ([`NsState::shadowed_rows`]), so a query does not look
//!   every overlay id up in every segment.
//! - Every change of the overlay goes through [`OverlayText::replace`] first,
//!   so the overlay's inverted index (`text.rs`) holds exactly its live
//!   documents; the index is shared between snapshots like the overlay.

use std::ops::Bound;
use std::sync::Arc;

use crate::model::{DistanceMetric, DocId, Document, IdType, Value};
use crate::ops::RowCounts;
use crate::schema::Schema;
use crate::spill::VectorSpill;

mod refold;
pub mod segment;
pub mod text;

pub use self::segment::SegmentReader;
pub use self::text::{OverlayText, PreparedRow, PreparedText, TextView};

/// The state of a namespace at one generation.
#[derive(Clone, Debug, Default)]
pub struct NsState {
    segments: Arc<Vec<SegmentReader>>,
    overlay: imbl::OrdMap<DocId, Option<Arc<Document>>>,
    len: u64,
    /// The schema (explicit and inferred).
    pub schema: Schema,
    /// Id kind, once known.
    pub id_type: Option<IdType>,
    /// Distance metric, once set.
    pub distance_metric: Option<DistanceMetric>,
    /// Vector dimension, once known.
    pub vector_dim: Option<u32>,
    /// Sum of live documents' logical sizes.
    pub logical_bytes: u64,
    /// Idempotency keys seen in the WAL → the counts they produced.
    pub idempotency: imbl::HashMap<String, RowCounts>,
    /// Where documents put into the overlay keep their vectors (None: on
    /// the heap).
    spill: Option<Arc<VectorSpill>>,
    /// The overlay's full-text attributes, inverted (kept with `overlay`).
    text: OverlayText,
    /// Per segment, its live rows whose id the overlay holds.
    shadow: Vec<imbl::HashSet<usize>>,
}

impl NsState {
    /// A state over compacted segments (the overlay starts empty).
    pub fn with_segments(segments: Vec<SegmentReader>) -> NsState {
        let len = segments.iter().map(|s| s.live_rows() as u64).sum();
        let shadow = vec![imbl::HashSet::new(); segments.len()];
        NsState { segments: Arc::new(segments), len, shadow, ..NsState::default() }
    }

    /// This state (and every state derived from it) with overlay vectors
    /// kept in `spill`.
    pub fn with_spill(mut self, spill: Option<Arc<VectorSpill>>) -> NsState {
        self.spill = spill;
        self
    }

    /// Where overlay vectors are kept, if not on the heap.
    pub fn spill(&self) -> Option<&Arc<VectorSpill>> {
        self.spill.as_ref()
    }

    /// The overlay's index of full-text attribute `attr` under the options
    /// the schema gives it now; None when it has none (the overlay is then
    /// scanned).
    pub fn overlay_text(&self, attr: &str) -> Option<TextView<'_>> {
        let options = self.schema.get(attr)?.full_text_search.as_ref()?;
        self.text.attr(attr, options)
    }

    /// Brings the overlay's text index up to the schema (attributes made
    /// full-text or given other options are indexed again; puts and removes
    /// do it themselves, a request that changed only the schema calls this),
    /// and ends a write's puts ([`OverlayText::end_puts`]): every write's apply
    /// ends with this call.
    pub fn sync_text_index(&mut self) {
        self.text.end_puts();
        self.text.sync(&self.schema, &self.overlay);
    }

    /// Defers the overlay text index's chunk merges until [`Self::take_text_merges`]
    /// (`state/text_settle.rs`): a write's apply, whose commit merges while it waits on storage.
    pub fn defer_text_merges(&mut self) {
        self.text.defer_merges();
    }

    /// Ends a deferral of merges, returning the merges it left.
    pub fn take_text_merges(&mut self) -> Option<text::Merges> {
        self.text.take_merges()
    }

    /// Installs merges run from [`Self::take_text_merges`] (where the parts are unchanged).
    pub fn install_text_merges(&mut self, merged: text::Merged) {
        self.text.install(merged);
    }

    /// This state without its overlay text index: BM25 then scans the
    /// overlay, as it did before the index existed (the reference the index
    /// is compared with in tests and benchmarks).
    pub fn without_text_index(mut self) -> NsState {
        self.text = OverlayText::default();
        self
    }

    /// The live rows of segment `i` (in [`Self::segments`] order) whose id
    /// the overlay holds: rows the overlay's entries shadow.
    pub fn shadowed_rows(&self, i: usize) -> imbl::HashSet<usize> {
        self.shadow.get(i).cloned().unwrap_or_default()
    }

    /// Records the segment rows `id` shadows once the overlay gains an entry
    /// for it (call before inserting the entry).
    fn shadow_segment_rows(&mut self, id: &DocId) {
        if self.overlay.contains_key(id) {
            return;
        }
        for (s, rows) in self.segments.iter().zip(self.shadow.iter_mut()) {
            if let Some(row) = s.find_live(id) {
                rows.insert(row);
            }
        }
    }

    /// The segments.
    pub fn segments(&self) -> &[SegmentReader] {
        &self.segments
    }

    /// The WAL overlay (`None` = deleted since the last compaction).
    pub fn overlay(&self) -> &imbl::OrdMap<DocId, Option<Arc<Document>>> {
        &self.overlay
    }

    /// Live documents.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are no live documents.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a live document has this id (no decoding).
    pub fn contains(&self, id: &DocId) -> bool {
        match self.overlay.get(id) {
            Some(entry) => entry.is_some(),
            None => self.segments.iter().any(|s| s.find_live(id).is_some()),
        }
    }

    /// The live document with this id.
    pub fn get(&self, id: &DocId) -> Option<Arc<Document>> {
        if let Some(entry) = self.overlay.get(id) {
            return entry.clone();
        }
        self.segments.iter().find_map(|s| s.find_live(id).and_then(|r| decode(s, r)))
    }

    /// Insert or replace a document.
    pub fn put(&mut self, doc: Document) {
        self.put_prepared(doc, None);
    }

    /// [`Self::put`] with the document's full-text tokens possibly analysed
    /// already (`state/text_prepared.rs`: used only when they are this document's).
    pub fn put_prepared(&mut self, mut doc: Document, prepared: Option<PreparedRow<'_>>) {
        if let Some(spill) = &self.spill {
            doc.vector = doc.vector.take().map(|v| spill.spill(v));
            // Named vectors spill like `vector`: the unindexed backlog is not heap.
            for (_, v) in doc.attrs.iter_mut() {
                if let Value::Dense(d) = v {
                    *d = spill.spill_named(std::mem::replace(d, Vec::new().into()));
                }
            }
        }
        match self.get(&doc.id) {
            Some(old) => self.logical_bytes = self.logical_bytes.saturating_sub(old.logical_bytes()),
            None => self.len += 1,
        }
        self.logical_bytes += doc.logical_bytes();
        let doc = Arc::new(doc);
        self.text.replace(&self.schema, &self.overlay, &doc.id, Some(&doc), prepared);
        self.shadow_segment_rows(&doc.id);
        self.overlay.insert(doc.id.clone(), Some(doc));
    }

    /// Delete a document; false if it did not exist.
    pub fn remove(&mut self, id: &DocId) -> bool {
        let Some(old) = self.get(id) else { return false };
        self.logical_bytes = self.logical_bytes.saturating_sub(old.logical_bytes());
        self.len -= 1;
        self.text.replace(&self.schema, &self.overlay, id, None, None);
        if self.segments.iter().any(|s| s.find_live(id).is_some()) {
            self.shadow_segment_rows(id);
            self.overlay.insert(id.clone(), None);
        } else {
            self.overlay.remove(id);
        }
        true
    }

    /// Live documents with id ≥ / > the bound, in id order.
    pub fn iter_from(&self, lower: Bound<&DocId>) -> impl Iterator<Item = Arc<Document>> + '_ {
        MergeIter::new(self, lower)
    }

    /// Estimated heap bytes held by this state (segments are mapped, not
    /// counted byte for byte; the heap their opened index sections derived
    /// is): what the memory tier budgets.
    pub fn memory_weight(&self) -> u64 {
        let overlay: u64 =
            self.overlay.values().map(|d| d.as_ref().map_or(64, |d| 128 + d.logical_bytes())).sum();
        let opened: u64 = self.segments.iter().map(SegmentReader::opened_bytes).sum();
        overlay + self.text.heap_bytes() + 4096 * self.segments.len() as u64 + opened
    }

    /// Every live document, in id order.
    pub fn iter(&self) -> impl Iterator<Item = Arc<Document>> + '_ {
        self.iter_from(Bound::Unbounded)
    }
}

fn decode(s: &SegmentReader, row: usize) -> Option<Arc<Document>> {
    match s.seg.doc(row) {
        Ok(d) => Some(Arc::new(d)),
        Err(e) => {
            // Checksums were verified at open, so this is a bug or bad memory.
            tracing::error!(segment = %s.meta.id, row, error = %e, "cannot decode a verified segment row");
            None
        }
    }
}

/// One segment's cursor over live rows.
struct SegCursor<'a> {
    seg: &'a SegmentReader,
    row: usize,
}

impl SegCursor<'_> {
    fn skip_deleted(&mut self) {
        while self.row < self.seg.seg.len() && self.seg.deleted.contains(self.row) {
            self.row += 1;
        }
    }
    fn head(&self) -> Option<DocId> {
        (self.row < self.seg.seg.len()).then(|| self.seg.seg.id(self.row))
    }
}

type OverlayIter<'a> =
    std::iter::Peekable<Box<dyn Iterator<Item = (&'a DocId, &'a Option<Arc<Document>>)> + 'a>>;

/// K-way merge of segment cursors and the overlay; the overlay wins ties.
struct MergeIter<'a> {
    segs: Vec<SegCursor<'a>>,
    overlay: OverlayIter<'a>,
}

impl<'a> MergeIter<'a> {
    fn new(state: &'a NsState, lower: Bound<&DocId>) -> Self {
        let segs = state
            .segments
            .iter()
            .map(|s| {
                let row = match lower {
                    Bound::Unbounded => 0,
                    Bound::Included(id) => s.seg.lower_bound(id),
                    Bound::Excluded(id) => {
                        let r = s.seg.lower_bound(id);
                        if s.seg.find(id).is_some() {
                            r + 1
                        } else {
                            r
                        }
                    }
                };
                let mut c = SegCursor { seg: s, row };
                c.skip_deleted();
                c
            })
            .collect();
        let lower = lower.cloned();
        let range: Box<dyn Iterator<Item = (&'a DocId, &'a Option<Arc<Document>>)> + 'a> =
            Box::new(state.overlay.range((lower, Bound::Unbounded)));
        let overlay = range.peekable();
        MergeIter { segs, overlay }
    }
}

impl Iterator for MergeIter<'_> {
    type Item = Arc<Document>;

    fn next(&mut self) -> Option<Arc<Document>> {
        loop {
            let seg_min = self
                .segs
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.head().map(|id| (id, i)))
                .min_by(|a, b| a.0.cmp(&b.0));
            let over_head = self.overlay.peek().map(|(id, _)| (*id).clone());
            match (seg_min, over_head) {
                (None, None) => return None,
                (Some((sid, _)), Some(oid)) if oid <= sid => {
                    if oid == sid {
                        self.advance_segments_at(&sid);
                    }
                    if let Some((_, Some(doc))) = self.overlay.next() {
                        return Some(doc.clone());
                    }
                }
                (None, Some(_)) => {
                    if let Some((_, Some(doc))) = self.overlay.next() {
                        return Some(doc.clone());
                    }
                }
                (Some((_, i)), _) => {
                    let c = &mut self.segs[i];
                    let row = c.row;
                    c.row += 1;
                    c.skip_deleted();
                    if let Some(d) = decode(c.seg, row) {
                        return Some(d);
                    }
                }
            }
        }
    }
}

impl MergeIter<'_> {
    fn advance_segments_at(&mut self, id: &DocId) {
        for c in &mut self.segs {
            if c.head().as_ref() == Some(id) {
                c.row += 1;
                c.skip_deleted();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: u64, v: &[f32]) -> Document {
        Document { vector: Some(v.to_vec().into()), ..Document::new(DocId::U64(id)) }
    }

    #[test]
    fn a_put_keeps_its_vector_spilled_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let spilling = NsState::default().with_spill(Some(Arc::new(VectorSpill::new(dir.path()))));
        for (mut s, spilled) in [(NsState::default(), false), (spilling, true)] {
            s.put(doc(1, &[1.0, 2.0]));
            s.put(doc(2, &[3.0, 4.0]));
            let got = s.get(&DocId::U64(2)).unwrap();
            let v = got.vector.as_ref().expect("the vector is kept");
            assert_eq!((&v[..], v.is_spilled()), (&[3.0f32, 4.0][..], spilled));
            assert_eq!(s.iter().count(), 2);
        }
    }
}
