//! Index sections built into a segment at compaction time: the dense-vector
//! ANN index (kind 16), one BM25 text index per `full_text_search` attribute
//! (kind 17), one sparse-vector postings section per sparse attribute
//! (kind 18), one attribute index per filterable scalar attribute whose
//! values in the segment share one kind (kind 19) and one named vector index
//! (kind 23: the vectors and a calibrated graph) per named vector attribute
//! that at least [`ANN_MIN_ROWS`] rows of the segment hold (with, where cold
//! sections are built and every row holds it, its cold IVF lists, kind 24),
//! and one MUVERA section per `late_interaction` multi-vector attribute (kind 30,
//! `indexing_multi.rs`).
//!
//! Invariants:
//! - Index sections are derived data: a segment without them is still
//!   complete, and readers fall back to exhaustive search (the query engine
//!   checks for each section and scores unindexed rows the same way).
//! - Segments with an ANN section whose rows all have a vector also get a
//!   cold-read IVF section (kind 21, the same lists with f32 vectors inline)
//!   for queries served by ranged reads from the object store — when the
//!   engine builds cold sections at all ([`ColdIndex`]): a second copy of
//!   every vector is worth its bytes only where a bucket is read cold.
//! - Sections are fed row by row while the rows are pushed ([`IndexFeed`]),
//!   so no builder needs the segment's documents at once: the vector indexes
//!   read the builder's vectors (mapped from its spool, the mapping's pages
//!   given back as the builds go), the text, attribute
//!   and sparse indexes what was fed. Each section is handed to the builder
//!   (spooled) as soon as it is built.
//! - Segments with an ANN section also get a graph section (kind 20, same
//!   row order and minimum size); it serves unfiltered and wide-filter
//!   queries, the ANN (IVF) section narrow filters and cold reads. Both are
//!   calibrated at build (`index::vector::calibrate`): they store the recall
//!   they measured on the segment's own rows, and queries pick their effort
//!   (or exact search) from it. The IVF section (version 3) holds lists only
//!   and scores candidates with the graph's codes (one set of per-row codes
//!   per segment, issue 36 item 4), so the graph is built first.
//! - The ANN index covers every row of the segment in row order (rows without
//!   a vector hold zeros in the vectors section); the query engine excludes
//!   rows without a vector with a filter, so they are never returned.
//! - A text index adds every row of the segment (rows without the attribute
//!   as no tokens), so its `num_docs` is the segment's row count — the
//!   global BM25 `N` then counts every live document, indexed or not.
//! - A named vector index is built from vectors collected in row order while the
//!   rows are fed (rows × dim f32 on the heap for the build, unlike `vector`'s
//!   spool), in the attribute's pinned metric.
//! - Tokens of an attribute value come from [`crate::index::text::value_tokens`],
//!   here and at query time for unindexed rows alike.
//! - A row of a merged segment ([`IndexFeed::add_from`]) is not analysed again when
//!   that segment's text section of the attribute was built under the analysis
//!   options the schema gives it now (the manifest's `SegmentRef::text_analysis`)
//!   and covers every row of the segment: its postings and length are carried from
//!   that section ([`IndexFeed::carry_text`], `index::text::carry`), which builds the
//!   same section bytes as analysing it. Otherwise (options changed, a segment
//!   written before the record existed, no section) its text is analysed.
//!   Likewise an overlay row's postings and length come from the overlay's
//!   inverted index (`state/text.rs`) when it serves the attribute under the
//!   schema's options (it then holds every live overlay row's tokens).

use crate::format::segment::{
    BuildError, F32Rows, SegmentBuilder, SECTION_ANN_INDEX, SECTION_ATTRIBUTE_INDEX, SECTION_COLD_IVF,
    SECTION_GRAPH_INDEX, SECTION_NAMED_COLD_IVF, SECTION_NAMED_VECTOR_INDEX, SECTION_SPARSE_INDEX,
    SECTION_TEXT_INDEX,
};
use crate::index::text::{analysis_key, Analyzer, KeyedCarry, TextIndexBuilder, ValueTokens};
use crate::index::vector::rows::RowSource;
use crate::model::{DistanceMetric, Document, Value};
use crate::schema::AttrType;
use crate::state::{NsState, SegmentReader};

/// Segments with fewer vector rows than this get no ANN section: an exact
/// scan of them is as fast as probing an index.
pub const ANN_MIN_ROWS: usize = 1024;
/// While the vector indexes are built, the spooled vectors' pages are given
/// back this often (`F32Rows::settled_while`): the builds read them in
/// sequential passes, so a pass keeps only what it read in the last
/// interval resident. A pass that only sums (row norms) faults a 400 MB
/// spool in under 100 ms (measured: 300k rows, the whole spool resident
/// between two releases 100 ms apart); releasing an unpopulated range costs
/// microseconds.
const SPOOL_RELEASE_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Segments with fewer rows than this get no attribute indexes.
pub const ATTR_MIN_ROWS: usize = 64;

/// Whether compaction writes the cold-read IVF section (kind 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColdIndex {
    /// When the store is a bucket (the only store read cold).
    #[default]
    Auto,
    /// Always (a node that pushes its segments to a bucket others read cold).
    Always,
    /// Never.
    Never,
}

impl ColdIndex {
    /// Whether to build it, on a store that is (`true`) or is not a bucket.
    pub fn wanted(self, bucket_store: bool) -> bool {
        match self {
            ColdIndex::Auto => bucket_store,
            ColdIndex::Always => true,
            ColdIndex::Never => false,
        }
    }
}

/// One attribute's index input, in schema order.
enum AttrFeed {
    Text(Box<TextFeed>),
    Values(String, Vec<(u32, Value)>),
    Sparse(String, Vec<(u32, Vec<(String, f32)>)>),
    Dense(Box<DenseFeed>),
    Multi(Box<super::indexing_multi::MultiFeed>),
}

/// A named vector attribute's rows, collected for its index section.
struct DenseFeed {
    name: String,
    dim: usize,
    metric: DistanceMetric,
    /// Rows × dim, zeros for rows without the attribute.
    vectors: Vec<f32>,
    present: Vec<bool>,
    held: usize,
    /// Build its cold IVF lists too (kind 24) when every row holds it.
    cold: bool,
    /// The graph's traversal codes.
    graph_code: crate::index::vector::graph::GraphCode,
}

impl DenseFeed {
    fn add(&mut self, d: &Document) {
        match d.attrs.get(self.name.as_str()) {
            Some(Value::Dense(v)) if v.len() == self.dim => {
                self.vectors.extend_from_slice(v);
                self.present.push(true);
                self.held += 1;
            }
            _ => {
                self.vectors.resize(self.vectors.len() + self.dim, 0.0);
                self.present.push(false);
            }
        }
    }

    fn finish(self, builder: &mut SegmentBuilder) {
        if self.held < ANN_MIN_ROWS {
            return;
        }
        let threads = crate::index::vector::graph::default_threads();
        let params =
            crate::index::vector::graph::GraphParams { threads, code: self.graph_code, ..Default::default() };
        let bytes = crate::index::vector::named::build(
            &self.name,
            self.dim,
            self.metric,
            &self.vectors,
            &self.present,
            &params,
        );
        builder.add_section(SECTION_NAMED_VECTOR_INDEX, bytes);
        if self.cold && self.held == self.present.len() {
            let params = crate::index::vector::ann::AnnParams { threads, ..Default::default() };
            let cold = crate::index::vector::coldnamed::build(
                &self.name,
                self.dim,
                self.metric,
                &self.vectors,
                &params,
            );
            if let Some(bytes) = cold {
                builder.add_section(SECTION_NAMED_COLD_IVF, bytes);
            }
        }
    }
}

/// A full-text attribute's index input: rows analysed as they are fed, or carried from
/// their merged segment's section at the end.
struct TextFeed {
    name: String,
    analyzer: Analyzer,
    builder: TextIndexBuilder,
    /// Per merged segment ([`IndexFeed::sources`] order): whether its rows are carried.
    carriable: Vec<bool>,
    /// Per merged segment: the `(segment row, output row)` pairs to carry.
    carried: Vec<Vec<(u32, u32)>>,
    /// Whether the overlay's index serves this attribute under the schema's options.
    overlay: bool,
    /// The `(overlay seq, output row)` pairs to carry from the overlay's index.
    from_overlay: Vec<(u64, u32)>,
}

impl TextFeed {
    fn add(
        &mut self,
        state: &NsState,
        toks: &mut ValueTokens,
        row: u32,
        d: &Document,
        from: Option<(usize, u32)>,
    ) {
        if let Some((c, src)) = from.filter(|(c, _)| self.carriable.get(*c) == Some(&true)) {
            self.carried[c].push((src, row));
            return;
        }
        if from.is_none() && self.overlay {
            if let Some(seq) = state.overlay_text(&self.name).and_then(|v| v.seq_of(&d.id)) {
                self.from_overlay.push((seq, row));
                return;
            }
        }
        toks.analyze(&self.analyzer, d.attrs.get(self.name.as_str()).unwrap_or(&Value::Null));
        self.builder.add_tokens(row, toks.iter());
    }

    /// Whether segment `s`'s section of this attribute can be carried: built under `key`'s
    /// options and covering every row of the segment.
    fn carries_from(&self, s: &SegmentReader, key: &str) -> bool {
        s.meta.text_analysis.get(&self.name).is_some_and(|k| k == key)
            && s.text_index(&self.name).is_some_and(|ix| ix.num_docs() == s.seg.len() as u64)
    }
}

/// The index sections of one segment, fed each row as it is pushed.
pub(crate) struct IndexFeed<'s> {
    state: &'s NsState,
    /// The segments being merged, which [`Self::add_from`] names rows of.
    sources: Vec<&'s SegmentReader>,
    dim: Option<usize>,
    rows: usize,
    with_vector: usize,
    attrs: Vec<AttrFeed>,
    cold: bool,
    graph_code: crate::index::vector::graph::GraphCode,
    /// The row's tokens on one attribute (a buffer reused from row to row).
    toks: ValueTokens,
}

impl<'s> IndexFeed<'s> {
    /// A feed for a segment of `state`'s namespace; `cold`: build the cold IVF; graphs traverse
    /// `graph_code`s.
    pub(crate) fn new(
        state: &'s NsState,
        cold: bool,
        graph_code: crate::index::vector::graph::GraphCode,
    ) -> Self {
        let mut attrs = Vec::new();
        for (name, schema) in &state.schema {
            if let Some(opts) = &schema.full_text_search {
                attrs.push(AttrFeed::Text(Box::new(TextFeed {
                    name: name.clone(),
                    analyzer: Analyzer::new(opts),
                    builder: TextIndexBuilder::new(name, opts),
                    carriable: Vec::new(),
                    carried: Vec::new(),
                    overlay: state.overlay_text(name).is_some(),
                    from_overlay: Vec::new(),
                })));
            }
            if matches!(schema.ty, AttrType::Scalar(_)) && schema.is_filterable() {
                attrs.push(AttrFeed::Values(name.clone(), Vec::new()));
            }
            if matches!(schema.ty, AttrType::Sparse { .. }) {
                attrs.push(AttrFeed::Sparse(name.clone(), Vec::new()));
            }
            if let (AttrType::Vector { dim, .. }, false) = (schema.ty, name == crate::model::VECTOR_ATTR) {
                let metric = schema.vector_metric(state.distance_metric);
                attrs.push(AttrFeed::Dense(Box::new(DenseFeed {
                    name: name.clone(),
                    dim,
                    metric,
                    vectors: Vec::new(),
                    present: Vec::new(),
                    held: 0,
                    cold,
                    graph_code,
                })));
            }
            if let Some(feed) = super::indexing_multi::MultiFeed::for_attr(state, name, schema) {
                attrs.push(AttrFeed::Multi(Box::new(feed)));
            }
        }
        let dim = state.vector_dim.map(|d| d as usize).filter(|d| *d > 0);
        IndexFeed {
            state,
            sources: Vec::new(),
            dim,
            rows: 0,
            with_vector: 0,
            attrs,
            cold,
            graph_code,
            toks: ValueTokens::default(),
        }
    }

    /// This feed with the segments being merged: rows [`Self::add_from`] names by
    /// `(index in sources, row)`.
    pub(crate) fn with_sources(mut self, sources: &[&'s SegmentReader]) -> Self {
        self.sources = sources.to_vec();
        for feed in &mut self.attrs {
            let AttrFeed::Text(t) = feed else { continue };
            let Some(opts) = self.state.schema.get(&t.name).and_then(|s| s.full_text_search.as_ref()) else {
                continue;
            };
            let key = analysis_key(opts);
            t.carriable = sources.iter().map(|s| t.carries_from(s, &key)).collect();
            t.carried = vec![Vec::new(); sources.len()];
        }
        self
    }

    /// Feed the next row, read from row `from.1` of source segment `from.0` when `from` is
    /// given (rows come in row order, each once).
    pub(crate) fn add_from(&mut self, d: &Document, from: Option<(usize, u32)>) {
        let row = u32::try_from(self.rows).unwrap_or(u32::MAX);
        self.rows += 1;
        if d.vector.as_ref().is_some_and(|v| Some(v.len()) == self.dim) {
            self.with_vector += 1;
        }
        for feed in &mut self.attrs {
            match feed {
                AttrFeed::Text(t) => t.add(self.state, &mut self.toks, row, d, from),
                AttrFeed::Values(name, values) => {
                    if let Some(v) = d.attrs.get(name.as_str()) {
                        values.push((row, v.clone()));
                    }
                }
                AttrFeed::Sparse(name, rows) => {
                    if let Some(Value::Sparse(v)) = d.attrs.get(name.as_str()) {
                        rows.push((row, v.clone()));
                    }
                }
                AttrFeed::Dense(feed) => feed.add(d),
                AttrFeed::Multi(feed) => feed.add(row, d),
            }
        }
    }

    /// Take the carried rows' postings from their segments' text sections and the overlay's
    /// index (call once, after the last row). Err: the merged segment (index in sources) whose section did not decode.
    pub(crate) fn carry_text(&mut self) -> Result<(), (usize, String)> {
        for feed in &mut self.attrs {
            let AttrFeed::Text(t) = feed else { continue };
            for (c, rows) in t.carried.iter_mut().enumerate().filter(|(_, r)| !r.is_empty()) {
                let gone = || (c, format!("text section of {:?}: not found", t.name));
                let ix = self.sources.get(c).and_then(|s| s.text_index(&t.name)).ok_or_else(gone)?;
                let broken = |e| (c, format!("text section of {:?}: {e}", t.name));
                t.builder.carry_rows(&ix, rows).map_err(broken)?;
                *rows = Vec::new();
            }
            if let Some(view) = self.state.overlay_text(&t.name).filter(|_| !t.from_overlay.is_empty()) {
                let mut carry = KeyedCarry::new(&mut t.builder, &t.from_overlay);
                view.for_each_list(|term, list| carry.list(term, list));
                carry.finish();
                t.from_overlay = Vec::new();
            }
        }
        Ok(())
    }

    /// Build every section from what was fed and the builder's vectors, and
    /// add them to `builder` (which holds the same rows).
    pub(crate) fn finish(self, builder: &mut SegmentBuilder) -> Result<(), BuildError> {
        if let Some(dim) = self.dim.filter(|_| self.with_vector >= ANN_MIN_ROWS) {
            let rows = builder.vectors_f32()?;
            let cold = self.cold && self.with_vector == self.rows;
            rows.settled_while(SPOOL_RELEASE_EVERY, |flat| {
                let rows = SpooledRows { rows: &rows, flat, dim };
                add_vector_sections(builder, &rows, dim, self.state, (cold, self.graph_code));
            });
        }
        for feed in self.attrs {
            match feed {
                AttrFeed::Text(t) => builder.add_section(SECTION_TEXT_INDEX, t.builder.finish()),
                AttrFeed::Values(name, values) if self.rows >= ATTR_MIN_ROWS => {
                    if let Some(bytes) =
                        crate::index::attr::build(&name, self.rows, values.iter().map(|(r, v)| (*r, v)))
                    {
                        builder.add_section(SECTION_ATTRIBUTE_INDEX, bytes);
                    }
                }
                AttrFeed::Values(..) => {}
                AttrFeed::Dense(feed) => feed.finish(builder),
                AttrFeed::Sparse(name, rows) => builder.add_section(
                    SECTION_SPARSE_INDEX,
                    crate::index::sparse::build(
                        &name,
                        self.rows,
                        rows.iter().map(|(r, v)| (*r, v.as_slice())),
                    ),
                ),
                AttrFeed::Multi(feed) => feed.finish(self.rows, builder),
            }
        }
        Ok(())
    }
}

/// The graph (traversing `graph_code`s), ANN (IVF lists scored with the
/// graph's codes) and cold IVF (when `cold`; needs every row to have a vector:
/// no absent-row bitmap is fetched on the cold path) sections over
/// `rows` (rows × dim, zeros for rows without a vector). Each goes to the
/// builder as soon as nothing else needs it; the builders parallelise
/// deterministically (same bytes for any thread count).
fn add_vector_sections(
    builder: &mut SegmentBuilder,
    rows: &SpooledRows<'_>,
    dim: usize,
    state: &NsState,
    (cold, graph_code): (bool, crate::index::vector::graph::GraphCode),
) {
    use crate::index::vector::{ann, coldivf, graph};
    let metric = state.distance_metric.unwrap_or(DistanceMetric::CosineDistance);
    let threads = graph::default_threads();
    // The graph first: the IVF section holds no codes of its own and is calibrated with the
    // graph's (issue 36 item 4), so it needs the opened graph.
    let gparams = graph::GraphParams { threads, code: graph_code, ..Default::default() };
    let gbytes = bytes::Bytes::from(graph::build_over(rows, dim, metric, &gparams));
    builder.add_section(SECTION_GRAPH_INDEX, &gbytes);
    let params = ann::AnnParams { threads, ..Default::default() };
    let ann = match graph::GraphIndex::open_trusted(gbytes.clone()) {
        Ok(g) => ann::build_lists_over(rows, dim, metric, &params, &g),
        // Not expected (the bytes were just built): the IVF keeps codes of its own.
        Err(_) => ann::build_over(rows, dim, metric, &params),
    };
    drop(gbytes);
    // Added by reference: the opened index below reads it for the cold lists.
    builder.add_section(SECTION_ANN_INDEX, &ann);
    // The cold lists are another copy of every vector: written into the section spool list by
    // list, never held whole.
    if let Some(ix) = cold.then(|| ann::AnnIndex::open_trusted(&ann).ok()).flatten() {
        builder.add_section_from(SECTION_COLD_IVF, |out| coldivf::write_over(&ix, rows, dim, out).is_some());
    }
}

/// The builder's vectors as the index builds read them: passes over `flat`
/// in row order (through the mapping, released behind them), scattered rows
/// by positioned reads ([`F32Rows::row`]).
struct SpooledRows<'a> {
    rows: &'a F32Rows,
    flat: &'a [f32],
    dim: usize,
}

impl RowSource for SpooledRows<'_> {
    fn row<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        self.rows.row(r, self.dim, buf)
    }

    fn all(&self) -> &[f32] {
        self.flat
    }
}
