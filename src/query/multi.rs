//! Multi-vector (late interaction) attributes (`[][N]f32` / `[][N]f16`): `kNN`/`ANN` with a
//! list of query vectors, ranked by the late-interaction distance `Σ_q min_d dist(q, d)`
//! (`index/multi`), smallest first; per segment through [`plan_multi`] (where the MUVERA
//! section plugs in), the overlay exhaustively.
//!
//! Invariants:
//! - The attribute must be a multi-vector attribute of the namespace's schema and every
//!   query vector of its dimension (1..=`MAX_MULTI_VECTORS` of them), else the query is
//!   invalid (400), never an empty answer.
//! - `ANN` needs the attribute's `ann: {"late_interaction": true}` (turbopuffer's rule);
//!   `kNN` is exact on any multi-vector attribute.
//! - The metric is the attribute's `ann.distance_metric`, else the namespace's, else cosine
//!   distance. Rows without the attribute are never returned.

use crate::index::multi::maxsim::{multi_distance, Scratch};
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
    let metric = s.ann_metric().or(state.distance_metric).unwrap_or(Metric::CosineDistance);
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

/// How one segment answers a ranking by a multi-vector attribute. The MUVERA section
/// answers `ANN` once a segment carries one; otherwise the segment is searched exactly.
pub(super) fn plan_multi(_v: &SegView<'_>, _a: &MultiAttr<'_>, exact: bool) -> Plan {
    if exact {
        Plan::Exact("kNN")
    } else {
        Plan::Exact("no MUVERA section")
    }
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
            Plan::Exact(_) | Plan::Graph { .. } | Plan::Ivf { .. } => {
                exact_segment(q, &a, queries, si, v, &mut scratch)
            }
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

/// Keeps the `k` smallest distances (ties by id) of one segment's hits.
fn keep_best(hits: &mut Vec<Hit>, k: usize) {
    if hits.len() > k {
        sort_hits(hits, true);
        hits.truncate(k);
    }
}
