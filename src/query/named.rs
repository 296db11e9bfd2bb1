//! Named vector attributes (any `[N]f32`/`[N]f16` attribute but `vector`): `ANN`/`kNN` over
//! one attribute, in that attribute's metric, per segment through [`plan_named`] (the hook
//! an attribute's own index sections plug into), the overlay exhaustively; and the one way
//! to read a row's named vector ([`named_vector_of_row`], [`named_vector_of_doc`]).
//!
//! Invariants:
//! - The attribute must be a vector attribute of the namespace's schema and the query
//!   vector of its dimension, else the query is invalid (400), never an empty answer.
//! - The metric is the attribute's (`ann.distance_metric`, pinned when the attribute was
//!   created), else the namespace's, else cosine distance; `kNN` is exact, and so is `ANN`
//!   until a segment carries an index section for the attribute (exact is a correct ANN).
//! - Rows without the attribute are never returned.

use crate::index::vector::distance::{distance, Metric};

use super::*;

/// A named vector attribute as a query ranks by it.
pub(crate) struct NamedAttr<'a> {
    /// The attribute name.
    pub(crate) attr: &'a str,
    /// Its dimension.
    pub(crate) dim: usize,
    /// Its metric.
    pub(crate) metric: Metric,
}

/// The named vector attribute `attr` of `state`'s schema, or why a ranking by it is invalid.
pub(crate) fn named_attr<'a>(state: &NsState, attr: &'a str) -> Result<NamedAttr<'a>, QueryError> {
    let s = state.schema.get(attr).ok_or_else(|| {
        invalid(format!(
            "rank_by: attribute {attr:?} is not in the schema; declare it as \"[N]f32\" with \"ann\""
        ))
    })?;
    let AttrType::Vector { dim, .. } = s.ty else {
        return Err(invalid(format!(
            "rank_by: attribute {attr:?} has type {}; ANN and kNN need a vector attribute ([N]f32 or [N]f16)",
            s.ty.name()
        )));
    };
    let metric = s.ann_metric().or(state.distance_metric).unwrap_or(Metric::CosineDistance);
    Ok(NamedAttr { attr, dim, metric })
}

/// The named vector `attr` of segment row `row` (None: the row has none, or cannot be read).
pub fn named_vector_of_row(ls: &SegmentReader, row: usize, attr: &str) -> Option<Vec<f32>> {
    ls.seg.dense_attr(row, attr).ok().flatten()
}

/// The named vector `attr` of an overlay (or any decoded) document.
pub fn named_vector_of_doc<'d>(doc: &'d Document, attr: &str) -> Option<&'d [f32]> {
    match doc.attrs.get(attr) {
        Some(Value::Dense(v)) => Some(v),
        _ => None,
    }
}

/// How one segment answers a ranking by a named vector attribute. Step 3's index sections
/// plug in here; today every segment is searched exactly.
pub(super) fn plan_named(_v: &SegView<'_>, _attr: &NamedAttr<'_>, exact: bool) -> Plan {
    if exact {
        Plan::Exact("kNN")
    } else {
        Plan::Exact("no index section")
    }
}

/// The best `k` hits of each segment and every matching overlay document, by `attr`'s
/// distance to `query`; and the rows searched exhaustively.
pub(super) fn named_vector_hits(
    q: &Query,
    attr: &str,
    exact: bool,
    query: &[f32],
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    let a = named_attr(state, attr)?;
    if query.len() != a.dim {
        return Err(invalid(format!(
            "query vector has {} dimensions, attribute {attr:?} has {}",
            query.len(),
            a.dim
        )));
    }
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    for (si, v) in views.iter().enumerate() {
        let mut found = match plan_named(v, &a, exact) {
            // An index section of the attribute answers `Graph`/`Ivf` plans once it exists.
            Plan::Exact(_) | Plan::Graph { .. } | Plan::Ivf { .. } => exact_segment(q, &a, query, si, v),
        };
        exhaustive += found.1;
        let found = &mut found.0;
        keep_best(found, k);
        hits.append(found);
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        let Some(vec) = named_vector_of_doc(doc, attr) else { continue };
        if matches(q, doc) {
            hits.push(Hit {
                id: id.clone(),
                score: distance(a.metric, query, vec),
                src: Src::Over(doc.clone()),
            });
        }
    }
    Ok((hits, exhaustive))
}

/// Every live, matching row of segment `si` holding `a`, by distance; and the rows examined.
fn exact_segment(q: &Query, a: &NamedAttr<'_>, query: &[f32], si: usize, v: &SegView<'_>) -> (Vec<Hit>, u64) {
    let mut found = Vec::new();
    let mut examined = 0u64;
    for row in 0..v.ls.seg.len() {
        if !v.passes(row, q) {
            continue;
        }
        examined += 1;
        let Some(vec) = named_vector_of_row(v.ls, row, a.attr) else { continue };
        let (Some(id), Ok(r)) = (v.ls.seg.try_id(row), u32::try_from(row)) else { continue };
        found.push(Hit { id, score: distance(a.metric, query, &vec), src: Src::Seg(si, r) });
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
