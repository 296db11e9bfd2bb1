//! Multi-vector (late interaction) attributes (`[][N]f32` / `[][N]f16`): `kNN`/`ANN` with a
//! list of query vectors, ranked by the late-interaction distance `Σ_q min_d dist(q, d)`
//! (`index/multi`), smallest first; per segment through [`plan_multi`]: `ANN` reads the
//! segment's MUVERA section (kind 30) for [`candidate_depth`] candidates by encoding inner
//! product and reranks them exactly; `kNN` and segments without a section are exact; the
//! overlay is always exact.
//!
//! Invariants:
//! - The attribute must be a multi-vector attribute of the namespace's schema and every
//!   query vector of its dimension (1..=`MAX_MULTI_VECTORS` of them), else the query is
//!   invalid (400), never an empty answer.
//! - `ANN` needs the attribute's `ann: {"late_interaction": true}` (turbopuffer's rule);
//!   `kNN` is exact on any multi-vector attribute.
//! - The metric is the attribute's `ann.distance_metric`, else the namespace's, else cosine
//!   distance. Rows without the attribute are never returned.

use crate::format::segment::SECTION_MUVERA_INDEX;
use crate::index::multi::candidate_depth;
use crate::index::multi::maxsim::{multi_distance, Scratch};
use crate::index::multi::section::MuveraIndex;
use crate::index::vector::distance::Metric;

use super::*;

/// A multi-vector attribute as a query ranks by it.
pub(crate) struct MultiAttr<'a> {
    /// The attribute name.
    pub(crate) attr: &'a str,
    /// The metric.
    pub(crate) metric: Metric,
}

/// The multi-vector attribute `attr` of `state`'s schema checked against `queries`, or why
/// a ranking by it is invalid.
pub(crate) fn multi_attr<'a>(
    state: &NsState,
    attr: &'a str,
    exact: bool,
    queries: &[Vec<f32>],
) -> Result<MultiAttr<'a>, QueryError> {
    let s = state.schema.get(attr).ok_or_else(|| {
        invalid(format!(
            "rank_by: attribute {attr:?} is not in the schema; declare it as \"[][N]f32\" with \
             \"ann\": {{\"late_interaction\": true}}"
        ))
    })?;
    let AttrType::MultiVector { dim, .. } = s.ty else {
        return Err(invalid(format!(
            "rank_by: attribute {attr:?} has type {}; a list of query vectors needs a vector array \
             attribute ([][N]f32)",
            s.ty.name()
        )));
    };
    if !exact && !s.late_interaction() {
        return Err(invalid(format!(
            "rank_by: ANN on {attr:?} needs \"ann\": {{\"late_interaction\": true}} in its schema \
             (use kNN for an exact search)"
        )));
    }
    if let Some(q) = queries.iter().find(|q| q.len() != dim) {
        return Err(invalid(format!(
            "rank_by: a query vector has {} dimensions, attribute {attr:?} has {dim}",
            q.len()
        )));
    }
    let metric = s.vector_metric(state.distance_metric);
    Ok(MultiAttr { attr, metric })
}

/// The vector array `attr` of segment row `row` (None: the row has none, or cannot be read).
pub fn multi_vectors_of_row(ls: &SegmentReader, row: usize, attr: &str) -> Option<Vec<Vec<f32>>> {
    ls.seg.multi_attr(row, attr).ok().flatten()
}

/// The vector array `attr` of an overlay (or any decoded) document.
pub fn multi_vectors_of_doc<'d>(doc: &'d Document, attr: &str) -> Option<&'d [Vec<f32>]> {
    match doc.attrs.get(attr) {
        Some(Value::Multi(v)) => Some(v),
        _ => None,
    }
}

/// How one segment answers a ranking by a multi-vector attribute.
pub(super) enum MultiPlan<'s> {
    /// Exact late-interaction distance of every live matching row; why.
    Exact(&'static str),
    /// The segment's MUVERA section gives candidates, reranked exactly.
    Muvera(MuveraIndex<'s>),
}

/// `ANN` uses the segment's MUVERA section of the attribute when it has one built in the
/// attribute's metric; `kNN`, and `ANN` without a section, search the segment exactly.
pub(super) fn plan_multi<'s>(v: &SegView<'s>, a: &MultiAttr<'_>, exact: bool) -> MultiPlan<'s> {
    if exact {
        return MultiPlan::Exact("kNN");
    }
    let found = v.ls.seg.sections(SECTION_MUVERA_INDEX).into_iter().find_map(|b| {
        MuveraIndex::open_trusted(b)
            .ok()
            .filter(|ix| ix.attr == a.attr && ix.metric == a.metric && ix.rows == v.ls.seg.len())
    });
    found.map_or(MultiPlan::Exact("no MUVERA section"), MultiPlan::Muvera)
}

/// The best `k` hits of each segment and every matching overlay document, by the
/// late-interaction distance to `queries`; and the rows searched exhaustively.
pub(super) fn multi_vector_hits(
    q: &Query,
    attr: &str,
    exact: bool,
    queries: &[Vec<f32>],
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    let a = multi_attr(state, attr, exact, queries)?;
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    let mut scratch = Scratch::default();
    for (si, v) in views.iter().enumerate() {
        let (mut found, n) = match plan_multi(v, &a, exact) {
            MultiPlan::Exact(_) => exact_segment(q, &a, queries, si, v, &mut scratch),
            MultiPlan::Muvera(ix) => (muvera_segment(q, &a, queries, si, v, &ix, k, &mut scratch), 0),
        };
        exhaustive += n;
        keep_best(&mut found, k);
        hits.append(&mut found);
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        let Some(vs) = multi_vectors_of_doc(doc, attr) else { continue };
        if matches(q, doc) {
            let score = multi_distance(a.metric, queries, vs, &mut scratch);
            hits.push(Hit { id: id.clone(), score, src: Src::Over(doc.clone()) });
        }
    }
    Ok((hits, exhaustive))
}

/// Every live, matching row of segment `si` holding `a`, by distance; and the rows examined.
fn exact_segment(
    q: &Query,
    a: &MultiAttr<'_>,
    queries: &[Vec<f32>],
    si: usize,
    v: &SegView<'_>,
    scratch: &mut Scratch,
) -> (Vec<Hit>, u64) {
    let mut found = Vec::new();
    let mut examined = 0u64;
    for row in 0..v.ls.seg.len() {
        if !v.passes(row, q) {
            continue;
        }
        examined += 1;
        let Some(vs) = multi_vectors_of_row(v.ls, row, a.attr) else { continue };
        let (Some(id), Ok(r)) = (v.ls.seg.try_id(row), u32::try_from(row)) else { continue };
        found.push(Hit { id, score: multi_distance(a.metric, queries, &vs, scratch), src: Src::Seg(si, r) });
    }
    (found, examined)
}

/// The MUVERA candidates of segment `si` (live, matching rows only), reranked by exact
/// late-interaction distance.
#[allow(clippy::too_many_arguments)]
fn muvera_segment(
    q: &Query,
    a: &MultiAttr<'_>,
    queries: &[Vec<f32>],
    si: usize,
    v: &SegView<'_>,
    ix: &MuveraIndex<'_>,
    k: usize,
    scratch: &mut Scratch,
) -> Vec<Hit> {
    let rows = ix.candidates(queries, candidate_depth(k), |row| v.passes(row, q));
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(vs) = multi_vectors_of_row(v.ls, row, a.attr) else { continue };
        let (Some(id), Ok(r)) = (v.ls.seg.try_id(row), u32::try_from(row)) else { continue };
        found.push(Hit { id, score: multi_distance(a.metric, queries, &vs, scratch), src: Src::Seg(si, r) });
    }
    found
}

/// Keeps the `k` smallest distances (ties by id) of one segment's hits.
fn keep_best(hits: &mut Vec<Hit>, k: usize) {
    if hits.len() > k {
        sort_hits(hits, true);
        hits.truncate(k);
    }
}
