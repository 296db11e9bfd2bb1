//! Dense-vector search (`ANN`/`kNN`): per segment the ANN or graph section
//! (or exact when absent or asked), filter-aware; the overlay exhaustively.
//!
//! Invariant: `kNN` is exact; `ANN` candidate lists are approximate by contract.

use super::*;

/// Filters estimated to pass at least this fraction of a segment's rows use
/// the graph section (when present); narrower ones the IVF section.
pub(super) const GRAPH_MIN_SELECTIVITY: f64 = 0.5;

/// Dense-vector search: per segment the ANN section (or exact when absent or
/// `exact`), filter-aware; the overlay exhaustively.
pub(super) fn vector_hits(
    q: &Query,
    exact: bool,
    query: &[f32],
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    use crate::index::vector::ann;
    let Some(dim) = state.vector_dim.map(|d| d as usize) else { return Ok((Vec::new(), 0)) };
    if query.len() != dim {
        return Err(invalid(format!("query vector has {} dimensions, the namespace has {dim}", query.len())));
    }
    let metric = state.distance_metric.unwrap_or(crate::model::DistanceMetric::CosineDistance);
    let mut hits = Vec::new();
    for (si, v) in views.iter().enumerate() {
        let seg = &v.ls.seg;
        let Some(vectors) = seg.vectors() else { continue };
        let n = seg.len();
        let need_filter = q.filters.is_some()
            || !v.ls.deleted.is_empty()
            || !v.shadowed.is_empty()
            || (0..n).any(|r| !seg.has_vector(r));
        let f = |row: u32| seg.has_vector(row as usize) && v.passes(row as usize, q);
        let filter: Option<&dyn Fn(u32) -> bool> = if need_filter { Some(&f) } else { None };
        let index = if exact { None } else { v.ls.ann_index() };
        let filter_estimate =
            v.cand.as_ref().map(|c| u32::try_from(c.iter().filter(|b| **b).count()).unwrap_or(u32::MAX));
        // Warm path: the graph section for unfiltered and wide-filter queries.
        let graph = match (&index, exact) {
            (Some(Ok(ix)), false) => {
                let wide = match filter {
                    None => true,
                    Some(f) => {
                        let est =
                            filter_estimate.map_or_else(|| ix.index().estimate_matches(f), |e| e as usize);
                        est as f64 >= GRAPH_MIN_SELECTIVITY * n as f64
                    }
                };
                if wide {
                    match v.ls.graph_index() {
                        Some(Ok(g)) => Some(g),
                        Some(Err(e)) => {
                            tracing::warn!(segment = %v.ls.meta.id, error = %e, "unreadable graph section; IVF");
                            None
                        }
                        None => None,
                    }
                } else {
                    None
                }
            }
            _ => None,
        };
        let found = match (index, graph) {
            (_, Some(g)) => g.search(
                vectors,
                query,
                k,
                filter,
                &crate::index::vector::graph::GraphSearchParams::default(),
            ),
            (Some(Ok(ix)), None) => {
                let params = ann::SearchParams { filter_estimate, ..ann::SearchParams::default() };
                ix.index().search(vectors, query, k, filter, &params)
            }
            (Some(Err(e)), None) => {
                tracing::warn!(segment = %v.ls.meta.id, error = %e, "unreadable ANN section; exact search");
                ann::exact(vectors, dim, metric, query, k, filter)
            }
            (None, None) => ann::exact(vectors, dim, metric, query, k, filter),
        };
        hits.extend(found.into_iter().filter_map(|(row, d)| {
            Some(Hit { id: seg.try_id(row as usize)?, score: d, src: Src::Seg(si, row) })
        }));
    }
    let mut exhaustive = 0u64;
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        let Some(vec) = doc.vector.as_ref().filter(|v| v.len() == dim) else { continue };
        if matches(q, doc) {
            let d = crate::index::vector::distance::distance(metric, query, vec);
            hits.push(Hit { id: id.clone(), score: d, src: Src::Over(doc.clone()) });
        }
    }
    Ok((hits, exhaustive))
}
