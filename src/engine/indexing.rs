//! Index sections built into a segment at compaction time (ANN, BM25).
//!
//! Invariant: index sections are derived data — a segment without them is
//! still complete, and readers fall back to exhaustive search.

use crate::engine::state::NsState;
use crate::format::segment::SegmentBuilder;
use crate::model::Document;

/// Add the index sections for `docs` (the segment's rows, in row order).
pub(crate) fn add_index_sections(_builder: &mut SegmentBuilder, _docs: &[Document], _state: &NsState) {}
