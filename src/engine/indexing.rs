//! Index sections built into a segment at compaction time: the dense-vector
//! ANN index (kind 16), one BM25 text index per `full_text_search` attribute
//! (kind 17), one sparse-vector postings section per sparse attribute
//! (kind 18) and one attribute index per filterable scalar attribute whose
//! values in the segment share one kind (kind 19).
//!
//! Invariants:
//! - Index sections are derived data: a segment without them is still
//!   complete, and readers fall back to exhaustive search (the query engine
//!   checks for each section and scores unindexed rows the same way).
//! - Segments with an ANN section whose rows all have a vector also get a
//!   cold-read IVF section (kind 21, the same lists with f32 vectors inline)
//!   for queries served by ranged reads from the object store.
//! - Segments with an ANN section also get a graph section (kind 20, same
//!   row order and minimum size); it serves unfiltered and wide-filter
//!   queries, the ANN (IVF) section narrow filters and cold reads. Both are
//!   calibrated at build (`index::vector::calibrate`): they store the recall
//!   they measured on the segment's own rows, and queries pick their effort
//!   (or exact search) from it.
//! - The ANN index covers every row of the segment in row order (rows without
//!   a vector hold zeros in the vectors section); the query engine excludes
//!   rows without a vector with a filter, so they are never returned.
//! - A text index adds every row of the segment (rows without the attribute
//!   as no tokens), so its `num_docs` is the segment's row count — the
//!   global BM25 `N` then counts every live document, indexed or not.
//! - Tokens of an attribute value come from [`crate::index::text::value_tokens`],
//!   here and at query time for unindexed rows alike.

use crate::format::segment::{
    SegmentBuilder, SECTION_ANN_INDEX, SECTION_ATTRIBUTE_INDEX, SECTION_COLD_IVF, SECTION_GRAPH_INDEX,
    SECTION_SPARSE_INDEX, SECTION_TEXT_INDEX,
};
use crate::index::text::{Analyzer, TextIndexBuilder};
use crate::model::{DistanceMetric, Document, Value};
use crate::schema::AttrType;
use crate::state::NsState;

/// Segments with fewer vector rows than this get no ANN section: an exact
/// scan of them is as fast as probing an index.
pub const ANN_MIN_ROWS: usize = 1024;
/// Segments with fewer rows than this get no attribute indexes.
pub const ATTR_MIN_ROWS: usize = 64;

/// Add the index sections for `docs` (the segment's rows, in row order).
pub(crate) fn add_index_sections(builder: &mut SegmentBuilder, docs: &[Document], state: &NsState) {
    if let Some(dim) = state.vector_dim.map(|d| d as usize).filter(|d| *d > 0) {
        let with_vec = docs.iter().filter(|d| d.vector.as_ref().is_some_and(|v| v.len() == dim)).count();
        if with_vec >= ANN_MIN_ROWS {
            let mut flat = vec![0f32; docs.len() * dim];
            for (row, d) in docs.iter().enumerate() {
                if let Some(v) = d.vector.as_ref().filter(|v| v.len() == dim) {
                    flat[row * dim..(row + 1) * dim].copy_from_slice(v);
                }
            }
            let metric = state.distance_metric.unwrap_or(DistanceMetric::CosineDistance);
            // One flat copy of the vectors, shared by the three builders; they parallelise
            // deterministically (same bytes for any thread count).
            let threads = crate::index::vector::graph::default_threads();
            let params = crate::index::vector::ann::AnnParams { threads, ..Default::default() };
            let ann = crate::index::vector::ann::build(&flat, dim, metric, &params);
            // The cold-read lists need every row to have a vector (no absent-row
            // bitmap is fetched on the cold path).
            let cold = (with_vec == docs.len())
                .then(|| crate::index::vector::ann::AnnIndex::open_trusted(&ann).ok())
                .flatten()
                .and_then(|ix| crate::index::vector::coldivf::build(&ix, &flat, dim));
            builder.add_section(SECTION_ANN_INDEX, ann);
            if let Some(cold) = cold {
                builder.add_section(SECTION_COLD_IVF, cold);
            }
            let gparams = crate::index::vector::graph::GraphParams { threads, ..Default::default() };
            builder.add_section(
                SECTION_GRAPH_INDEX,
                crate::index::vector::graph::build(&flat, dim, metric, &gparams),
            );
        }
    }
    for (name, schema) in &state.schema {
        if let Some(opts) = &schema.full_text_search {
            let analyzer = Analyzer::new(opts);
            let mut b = TextIndexBuilder::new(name, opts);
            for (row, d) in docs.iter().enumerate() {
                let toks = d
                    .attrs
                    .get(name)
                    .map(|v| crate::index::text::value_tokens(&analyzer, v))
                    .unwrap_or_default();
                b.add_tokens(row as u32, toks.iter().map(String::as_str));
            }
            builder.add_section(SECTION_TEXT_INDEX, b.finish());
        }
        if matches!(schema.ty, AttrType::Scalar(_)) && schema.is_filterable() && docs.len() >= ATTR_MIN_ROWS {
            let values =
                docs.iter().enumerate().filter_map(|(row, d)| d.attrs.get(name).map(|v| (row as u32, v)));
            if let Some(bytes) = crate::index::attr::build(name, docs.len(), values) {
                builder.add_section(SECTION_ATTRIBUTE_INDEX, bytes);
            }
        }
        if matches!(schema.ty, AttrType::Sparse { .. }) {
            let rows = docs.iter().enumerate().filter_map(|(row, d)| match d.attrs.get(name) {
                Some(Value::Sparse(v)) => Some((row as u32, v.as_slice())),
                _ => None,
            });
            builder.add_section(SECTION_SPARSE_INDEX, crate::index::sparse::build(name, docs.len(), rows));
        }
    }
}
