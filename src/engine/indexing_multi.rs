//! The MUVERA section (kind 30, `index/multi/section.rs`) of each `late_interaction`
//! multi-vector attribute, built into a segment at compaction beside the other index
//! sections (`indexing.rs` feeds it row by row).
//!
//! Invariants:
//! - Derived data: a segment without the section is complete, and the query layer then
//!   searches it exactly; so segments with fewer than [`MUVERA_MIN_ROWS`] rows holding the
//!   attribute get none (an exact scan of them is as fast).
//! - The section covers every row of the segment in row order and is built in the
//!   attribute's metric (its `ann.distance_metric`, pinned at creation, else the namespace's,
//!   else cosine distance) with [`FdeParams::defaults`]; the parameters and seed are stored
//!   in it, so later default changes never reinterpret an existing section.

use crate::format::segment::{SegmentBuilder, SECTION_MUVERA_INDEX};
use crate::index::multi::fde::FdeParams;
use crate::index::vector::distance::Metric;
use crate::model::{Document, Value};
use crate::schema::{AttrSchema, AttrType};
use crate::state::NsState;

/// Segments with fewer rows holding the attribute get no MUVERA section.
pub const MUVERA_MIN_ROWS: usize = 128;

/// What one attribute's section is built from.
pub(crate) struct MultiFeed {
    attr: String,
    metric: Metric,
    dim: usize,
    docs: Vec<(u32, Vec<Vec<f32>>)>,
}

impl MultiFeed {
    /// A feed for attribute `name` when it is a multi-vector attribute with `late_interaction`.
    pub(crate) fn for_attr(state: &NsState, name: &str, schema: &AttrSchema) -> Option<Self> {
        let AttrType::MultiVector { dim, .. } = schema.ty else { return None };
        if !schema.late_interaction() {
            return None;
        }
        let metric = schema.vector_metric(state.distance_metric);
        Some(MultiFeed { attr: name.to_owned(), metric, dim, docs: Vec::new() })
    }

    /// Feeds row `row` (rows in order, each once).
    pub(crate) fn add(&mut self, row: u32, d: &Document) {
        if let Some(Value::Multi(vs)) = d.attrs.get(self.attr.as_str()) {
            if vs.iter().all(|v| v.len() == self.dim) {
                self.docs.push((row, vs.clone()));
            }
        }
    }

    /// Adds the section over `rows` rows to `builder`, when enough rows hold the attribute.
    pub(crate) fn finish(self, rows: usize, builder: &mut SegmentBuilder) {
        if self.docs.len() < MUVERA_MIN_ROWS {
            return;
        }
        let bytes = crate::index::multi::section::build(
            &self.attr,
            rows,
            self.metric,
            FdeParams::defaults(self.dim),
            self.docs.iter().map(|(r, vs)| (*r, vs.as_slice())),
        );
        builder.add_section(SECTION_MUVERA_INDEX, bytes);
    }
}
