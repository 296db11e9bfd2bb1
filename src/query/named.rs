//! Named vector attributes (any `[N]f32`/`[N]f16` attribute but `vector`): `ANN`/`kNN` over
//! one attribute, in that attribute's metric, per segment through [`plan_named`] (the hook
//! an attribute's own index sections plug into), the overlay exhaustively; and the one way
//! to read a row's named vector ([`named_vector_of_row`], [`named_vector_of_doc`]).
//!
//! Invariants:
//! - The attribute must be a vector attribute of the namespace's schema and the query
//!   vector of its dimension, else the query is invalid (400), never an empty answer.
//! - The metric is the attribute's (`ann.distance_metric`, pinned when the attribute was
//!   created), else the namespace's, else cosine distance; `kNN` is exact; `ANN` uses a
//!   segment's index section of the attribute (kind 23, its graph at the calibrated effort for
//!   the target recall) for unfiltered and wide-filter queries, exact search otherwise.
//! - Rows without the attribute are never returned.
//! - Overlay rows' named vectors live in the engine's `VectorSpill` like `vector`'s
//!   (`NsState::put`), so a scan of a large backlog gives their pages back when done.

use crate::index::vector::distance::{distance, Metric};
use crate::index::vector::named::NamedIndex;

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
    let metric = s.vector_metric(state.distance_metric);
    Ok(NamedAttr { attr, dim, metric })
}

/// The named vector `attr` of segment row `row` (None: the row has none, or cannot be read).
pub fn named_vector_of_row(ls: &SegmentReader, row: usize, attr: &str) -> Option<Vec<f32>> {
    ls.named_vector(row, attr)
}

/// The named vector `attr` of an overlay (or any decoded) document.
pub fn named_vector_of_doc<'d>(doc: &'d Document, attr: &str) -> Option<&'d [f32]> {
    match doc.attrs.get(attr) {
        Some(Value::Dense(v)) => Some(v),
        _ => None,
    }
}

/// How one segment answers a ranking by a named vector attribute: its graph at the effort the
/// section's calibration measured for `target` (unfiltered and wide-filter queries), else exact
/// (`kNN`, no or an unreadable section, a narrow filter, no effort reaching the target).
pub(super) fn plan_named<'v>(
    v: &'v SegView<'_>,
    a: &NamedAttr<'_>,
    exact: bool,
    target: f32,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> (Plan, Option<&'v NamedIndex>) {
    let ix = match v.ls.named_vector_index(a.attr) {
        None => return (Plan::Exact(if exact { "kNN" } else { "no index section" }), None),
        Some(Err(e)) => {
            tracing::warn!(segment = %v.ls.meta.id, attr = a.attr, error = %e, "unreadable named vector section; exact search");
            return (Plan::Exact("unreadable index section"), None);
        }
        Some(Ok(ix)) if ix.dim() != a.dim || ix.metric() != a.metric => {
            return (Plan::Exact("index section of another dimension or metric"), None)
        }
        Some(Ok(ix)) => ix,
    };
    if exact {
        return (Plan::Exact("kNN"), Some(ix));
    }
    if let Some(f) = filter {
        if !wide(v, ix.rows(), f) {
            return (Plan::Exact("narrow filter"), Some(ix));
        }
    }
    match ix.graph().effort(target) {
        Some(ef) => (Plan::Graph { ef }, Some(ix)),
        None => (Plan::Exact(NO_EFFORT), Some(ix)),
    }
}

/// Whether a filter passes at least [`GRAPH_MIN_SELECTIVITY`] of the segment's rows: counted
/// from the attribute indexes' candidates when they narrowed it, else estimated on at most 256
/// evenly spaced rows.
fn wide(v: &SegView<'_>, rows: usize, f: &dyn Fn(u32) -> bool) -> bool {
    if rows == 0 {
        return false;
    }
    let (passed, seen) = match &v.cand {
        Some(c) => (c.iter().filter(|b| **b).count(), rows),
        None => {
            let step = rows.div_ceil(256).max(1);
            let probes: Vec<usize> = (0..rows).step_by(step).collect();
            (probes.iter().filter(|r| u32::try_from(**r).is_ok_and(f)).count(), probes.len())
        }
    };
    passed as f64 >= GRAPH_MIN_SELECTIVITY * seen as f64
}

/// The recall@10 an `ANN` ranking by `attr` targets: the query's, the attribute's own
/// `target_recall`, the namespace's, else the default.
fn named_target(q: &Query, state: &NsState, attr: &str) -> f32 {
    let own = state.schema.get(attr).and_then(|s| s.extra.get(crate::schema::TARGET_RECALL)?.as_f64());
    q.ann_target.or(own.map(|t| t as f32)).unwrap_or_else(|| target_recall(q, state))
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
    let target = named_target(q, state, attr);
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    for (si, v) in views.iter().enumerate() {
        let (mut found, examined) = segment_hits(q, &a, exact, target, query, v, k);
        exhaustive += examined;
        keep_best(&mut found, k);
        hits.extend(found.into_iter().filter_map(|(row, d)| {
            Some(Hit { id: v.ls.seg.try_id(row as usize)?, score: d, src: Src::Seg(si, row) })
        }));
    }
    let mut scanned = 0u64;
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        let Some(vec) = named_vector_of_doc(doc, attr) else { continue };
        scanned += 1;
        if matches(q, doc) {
            hits.push(Hit {
                id: id.clone(),
                score: distance(a.metric, query, vec),
                src: Src::Over(doc.clone()),
            });
        }
    }
    // Spilled like `vector`'s: a large backlog's pages are given back after the scan.
    if scanned.saturating_mul(a.dim as u64 * 4) >= OVERLAY_SCAN_RELEASE_BYTES {
        if let Some(spill) = state.spill() {
            spill.release_resident();
        }
    }
    Ok((hits, exhaustive))
}

/// One segment's (row, distance) candidates by its plan; and the rows searched exhaustively.
fn segment_hits(
    q: &Query,
    a: &NamedAttr<'_>,
    exact: bool,
    target: f32,
    query: &[f32],
    v: &SegView<'_>,
    k: usize,
) -> (Vec<(u32, f32)>, u64) {
    let passes = |row: u32| v.passes(row as usize, q);
    let need_filter = q.filters.is_some() || !v.ls.deleted.is_empty() || !v.shadowed.is_empty();
    let user_filter: Option<&dyn Fn(u32) -> bool> =
        q.filters.as_ref().map(|_| &passes as &dyn Fn(u32) -> bool);
    match plan_named(v, a, exact, target, user_filter) {
        (Plan::Graph { ef }, Some(ix)) => {
            let f = |row: u32| ix.present(row as usize) && (!need_filter || passes(row));
            let p = crate::index::vector::graph::GraphSearchParams { ef, rerank: 0 };
            (ix.graph().search_rows(&ix.row_source(), query, k, Some(&f), &p), 0)
        }
        (_, Some(ix)) => {
            use crate::index::vector::rows::RowSource;
            let f = |row: u32| ix.present(row as usize) && passes(row);
            let found =
                crate::index::vector::ann::exact(ix.row_source().all(), a.dim, a.metric, query, k, Some(&f));
            (found, v.ls.live_rows() as u64)
        }
        (_, None) => {
            let mut examined = 0u64;
            let mut found = Vec::new();
            for row in 0..v.ls.seg.len() {
                if !v.passes(row, q) {
                    continue;
                }
                examined += 1;
                let (Some(vec), Ok(r)) = (named_vector_of_row(v.ls, row, a.attr), u32::try_from(row)) else {
                    continue;
                };
                found.push((r, distance(a.metric, query, &vec)));
            }
            (found, examined)
        }
    }
}

/// Keeps the `k` smallest distances (ties by row) of one segment's candidates.
fn keep_best(found: &mut Vec<(u32, f32)>, k: usize) {
    if found.len() > k {
        found.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
        found.truncate(k);
    }
}
