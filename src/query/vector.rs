//! Dense-vector search (`ANN`/`kNN`): per segment the ANN or graph section
//! (or exact when absent or asked), filter-aware; the overlay exhaustively.
//!
//! Invariants: `kNN` is exact; `ANN` candidate lists are approximate by
//! contract, at the effort the section's build-time calibration measured for
//! the target recall (query, namespace, default 0.95), and exact where no
//! measured effort reaches it. Uncalibrated (older) sections use their
//! stored defaults.

use crate::index::vector::rows::RowSource;

use super::*;

/// Filters estimated to pass at least this fraction of a segment's rows use
/// the graph section (when present); narrower ones the IVF section.
pub(super) const GRAPH_MIN_SELECTIVITY: f64 = 0.5;

/// How one segment answers an `ANN` query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Plan {
    /// The graph section at this beam width.
    Graph { ef: u32 },
    /// The IVF section with this many probed lists and rerank depth.
    Ivf { nprobe: u32, rerank: u32 },
    /// Exact search; why.
    Exact(&'static str),
}

/// Why a calibrated segment is searched exactly.
pub(super) const NO_EFFORT: &str = "no calibrated effort reaches the target recall";

/// The recall@10 an `ANN` query targets: the query's `ann.target_recall`, else the namespace's
/// (`target_recall` on its vector attribute's schema), else the default (0.95).
pub(crate) fn target_recall(q: &Query, state: &NsState) -> f32 {
    q.ann_target
        .or_else(|| namespace_target(state))
        .unwrap_or(crate::index::vector::calibrate::DEFAULT_TARGET)
}

/// The namespace's `target_recall` setting, if any.
pub(crate) fn namespace_target(state: &NsState) -> Option<f32> {
    state
        .schema
        .values()
        .find_map(|s| match s.ty {
            crate::schema::AttrType::Vector { .. } => s.extra.get(crate::schema::TARGET_RECALL)?.as_f64(),
            _ => None,
        })
        .map(|t| t as f32)
}

/// Chooses the access path of one segment: the graph for unfiltered and wide-filter queries, the
/// IVF section for narrow filters (or when the graph cannot reach the target and IVF can), each
/// at the effort its calibration measured for `target`; exact search when neither reaches it,
/// when a section is missing or unreadable, or when `kNN` asks.
pub(super) fn plan(
    v: &SegView<'_>,
    exact: bool,
    target: f32,
    filter: Option<&dyn Fn(u32) -> bool>,
    filter_estimate: Option<u32>,
) -> (Plan, Option<crate::index::vector::graph::GraphIndex>, Option<crate::index::vector::ann::SharedAnnIndex>)
{
    if exact {
        return (Plan::Exact("kNN"), None, None);
    }
    let ix = match v.ls.ann_index() {
        None => return (Plan::Exact("no index section"), None, None),
        Some(Err(e)) => {
            tracing::warn!(segment = %v.ls.meta.id, error = %e, "unreadable ANN section; exact search");
            return (Plan::Exact("unreadable ANN section"), None, None);
        }
        Some(Ok(ix)) => ix,
    };
    let n = v.ls.seg.len();
    let wide = match filter {
        None => true,
        Some(f) => {
            let est = filter_estimate.map_or_else(|| ix.index().estimate_matches(f), |e| e as usize);
            est as f64 >= GRAPH_MIN_SELECTIVITY * n as f64
        }
    };
    let graph = match v.ls.graph_index().filter(|_| wide) {
        Some(Ok(g)) => Some(g),
        Some(Err(e)) => {
            tracing::warn!(segment = %v.ls.meta.id, error = %e, "unreadable graph section; IVF");
            None
        }
        None => None,
    };
    if let Some(ef) = graph.as_ref().and_then(|g| g.effort(target)) {
        return (Plan::Graph { ef }, graph, Some(ix));
    }
    match ix.index().effort(target) {
        Some((nprobe, rerank)) => (Plan::Ivf { nprobe, rerank }, graph, Some(ix)),
        None => (Plan::Exact(NO_EFFORT), graph, Some(ix)),
    }
}

/// Dense-vector search: per segment the planned path ([`plan`]), filter-aware; the overlay
/// exhaustively.
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
    let target = target_recall(q, state);
    let mut hits = Vec::new();
    for (si, v) in views.iter().enumerate() {
        let seg = &v.ls.seg;
        let Some(rows) = v.ls.vector_rows() else { continue };
        let need_filter = q.filters.is_some()
            || !v.ls.deleted.is_empty()
            || !v.shadowed.is_empty()
            || !seg.every_row_has_vector();
        let f = |row: u32| seg.has_vector(row as usize) && v.passes(row as usize, q);
        let filter: Option<&dyn Fn(u32) -> bool> = if need_filter { Some(&f) } else { None };
        let filter_estimate =
            v.cand.as_ref().map(|c| u32::try_from(c.iter().filter(|b| **b).count()).unwrap_or(u32::MAX));
        let found = match plan(v, exact, target, filter, filter_estimate) {
            (Plan::Graph { ef }, Some(g), _) => {
                let p = crate::index::vector::graph::GraphSearchParams { ef, rerank: 0 };
                g.search_rows(&rows, query, k, filter, &p)
            }
            (Plan::Ivf { nprobe, rerank }, _, Some(ix)) => {
                let params =
                    ann::SearchParams { nprobe, rerank, filter_estimate, ..ann::SearchParams::default() };
                ix.index().search_rows(&rows, query, k, filter, &params)
            }
            _ => ann::exact(rows.all(), dim, metric, query, k, filter),
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
    // A large unindexed backlog keeps its vectors in the spill's mappings:
    // this scan mapped all of them, and the next one would again; give them
    // back rather than keep the backlog resident between queries.
    if exhaustive.saturating_mul(dim as u64 * 4) >= OVERLAY_SCAN_RELEASE_BYTES {
        if let Some(spill) = state.spill() {
            spill.release_resident();
        }
    }
    Ok((hits, exhaustive))
}

/// An exhaustive scan of at least this many overlay vector bytes gives the
/// spilled vectors' pages back when done.
pub(super) const OVERLAY_SCAN_RELEASE_BYTES: u64 = 64 << 20;

/// What one segment's `ANN` plan is and what its calibration measured (`_debug/recall`,
/// `explain`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentCalibration {
    /// Segment id.
    pub segment: String,
    /// Rows in the segment.
    pub rows: usize,
    /// "graph", "ivf" or "exact".
    pub path: &'static str,
    /// Graph ef or IVF nprobe (None: exact).
    pub effort: Option<u32>,
    /// Rerank depth (IVF; the graph reranks its beam).
    pub rerank: Option<u32>,
    /// The target recall@10 the plan was chosen for.
    pub target: f32,
    /// Recall@10 measured at build for the chosen effort (None: not calibrated, or exact).
    pub measured_recall: Option<f64>,
    /// Sampled rows the build measured on (0: not calibrated).
    pub sampled: u16,
    /// Whether the section's calibration sent this query to exact search.
    pub exact_fallback: bool,
    /// Why exact, when it is.
    pub reason: Option<&'static str>,
}

/// The plan and calibrated figures of every segment for an `ANN` query `q` (filters included).
pub(super) fn calibrations(q: &Query, state: &NsState, views: &[SegView<'_>]) -> Vec<SegmentCalibration> {
    let target = target_recall(q, state);
    views
        .iter()
        .map(|v| {
            let f = |row: u32| v.passes(row as usize, q);
            let filter: Option<&dyn Fn(u32) -> bool> = q.filters.as_ref().map(|_| &f as &dyn Fn(u32) -> bool);
            let est =
                v.cand.as_ref().map(|c| u32::try_from(c.iter().filter(|b| **b).count()).unwrap_or(u32::MAX));
            let (plan, graph, ivf) = plan(v, false, target, filter, est);
            let (graph_cal, ivf_cal) = (
                graph.as_ref().map(|g| g.calibration().clone()),
                ivf.as_ref().map(|i| i.index().calibration().clone()),
            );
            let measured = |cal: Option<&crate::index::vector::calibrate::Calibration>, effort: u32| {
                cal.and_then(|c| c.rungs.iter().find(|r| r.effort == effort).map(|r| (r.recall(), c.queries)))
            };
            let mut out = SegmentCalibration {
                segment: v.ls.meta.id.to_string(),
                rows: v.ls.seg.len(),
                path: "exact",
                effort: None,
                rerank: None,
                target,
                measured_recall: None,
                sampled: 0,
                exact_fallback: false,
                reason: None,
            };
            match plan {
                Plan::Graph { ef } => {
                    out.path = "graph";
                    out.effort = Some(ef);
                    let m = measured(graph_cal.as_ref(), ef);
                    (out.measured_recall, out.sampled) = (m.map(|m| m.0), m.map_or(0, |m| m.1));
                }
                Plan::Ivf { nprobe, rerank } => {
                    out.path = "ivf";
                    (out.effort, out.rerank) = (Some(nprobe), Some(rerank));
                    let m = measured(ivf_cal.as_ref(), nprobe);
                    (out.measured_recall, out.sampled) = (m.map(|m| m.0), m.map_or(0, |m| m.1));
                }
                Plan::Exact(why) => {
                    out.reason = Some(why);
                    out.exact_fallback = why == NO_EFFORT;
                    out.sampled = graph_cal.or(ivf_cal).map_or(0, |c| c.queries);
                }
            }
            out
        })
        .collect()
}
