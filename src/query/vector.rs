//! Dense-vector search (`ANN`/`kNN`): per segment the ANN or graph section
//! (or exact when absent or asked), filter-aware; the overlay exhaustively.
//!
//! Invariants: `kNN` is exact; `ANN` candidate lists are approximate by
//! contract, at the effort the section's build-time calibration measured for
//! the target recall (query, namespace, default 0.95), and exact where no
//! measured effort reaches it. Uncalibrated (older) sections use their
//! stored defaults. A segment's search whose 10th row lies beyond its
//! calibration's reach (`Calibration::beyond_reach`: a query farther from the
//! rows than any the build measured) escalates: the graph to a wider beam
//! (`GraphIndex::search_escalating`: 4× its ef, at most 256), the IVF to an exact scan ([`ivf_checked`]).
//! Queries with a filter are not checked: their 10th row is farther out than the unfiltered
//! neighbourhoods the reach describes, so nearly every narrow filter would escalate.
//! Segments are searched independently of each other: on lent helper threads too
//! (`crate::fanout`) when the namespace has rows enough to pay for one, their hits then taken
//! in segment order, so the answer does not depend on which thread searched what.

use crate::index::vector::rows::RowSource;

use super::segment_depth;

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
/// exhaustively. With several segments, graph searches go first to their share of the top `k`
/// and again at full depth where that share filled it (`query/segment_depth.rs`).
pub(super) fn vector_hits(
    q: &Query,
    exact: bool,
    query: &[f32],
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    let Some(dim) = state.vector_dim.map(|d| d as usize) else { return Ok((Vec::new(), 0)) };
    if query.len() != dim {
        return Err(invalid(format!("query vector has {} dimensions, the namespace has {dim}", query.len())));
    }
    let search = SegSearch {
        q,
        exact,
        query,
        metric: state.distance_metric.unwrap_or(crate::model::DistanceMetric::CosineDistance),
        target: target_recall(q, state),
    };
    let total: usize = views.iter().map(|v| v.ls.seg.len()).sum();
    // Segments are searched independently: on idle cores too when there are rows enough to pay
    // for a helper thread (`crate::fanout`), the largest first.
    let helpers = if crate::fanout::worth(total as u64, FANOUT_MIN_ROWS) { views.len() } else { 0 };
    let mut hits = Vec::new();
    let mut depth = vec![None; views.len()];
    let mut wide = vec![false; views.len()];
    let mut firsts = crate::fanout::map(largest_first(views, 0..views.len()), helpers, |si| {
        let v = &views[si];
        let first = if per_segment_only() { k } else { segment_depth::share(k, v.ls.seg.len(), total) };
        (si, first, search.segment(si, v, first, k, false))
    });
    // Hits in segment order, whichever thread found them.
    firsts.sort_by_key(|f| f.0);
    for (si, first, (found, shallow, escalated)) in firsts {
        if shallow {
            depth[si] = Some(first);
        }
        wide[si] = escalated;
        hits.extend(found);
    }
    let exhaustive = overlay_hits(q, query, state, search.metric, &mut hits);
    let scored: Vec<(f32, Option<usize>)> =
        hits.iter().map(|h| (h.score, if let Src::Seg(s, _) = h.src { Some(s) } else { None })).collect();
    let deepen = largest_first(views, segment_depth::to_deepen(&scored, &depth, k));
    hits.retain(|h| !matches!(h.src, Src::Seg(s, _) if deepen.contains(&s)));
    // A segment whose first pass escalated goes straight to the wide beam.
    let mut deeper =
        crate::fanout::map(deepen, helpers, |si| (si, search.segment(si, &views[si], k, k, wide[si]).0));
    deeper.sort_by_key(|d| d.0);
    hits.extend(deeper.into_iter().flat_map(|d| d.1));
    Ok((hits, exhaustive))
}

/// Below this many segment rows in all, a query's segments are searched on its own thread (a
/// helper thread costs about what a graph search of a few thousand rows does).
const FANOUT_MIN_ROWS: u64 = 200_000;

/// `segments` (indexes into `views`), the one with the most rows first.
fn largest_first(views: &[SegView<'_>], segments: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut order: Vec<usize> = segments.into_iter().collect();
    order.sort_by_key(|&si| (std::cmp::Reverse(views[si].ls.seg.len()), si));
    order
}

/// Bench-only (`TIDEPOOL_ANN_PER_SEGMENT=1`, read once): every segment searched for the whole
/// top `k` at its calibrated depth, as before stop 46 — for A/B measurements in one build.
fn per_segment_only() -> bool {
    static ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONLY.get_or_init(|| std::env::var("TIDEPOOL_ANN_PER_SEGMENT").is_ok_and(|v| v == "1"))
}

/// One query's vector search, segment by segment.
struct SegSearch<'a> {
    q: &'a Query,
    exact: bool,
    query: &'a [f32],
    metric: crate::model::DistanceMetric,
    target: f32,
}

impl SegSearch<'_> {
    /// The best rows of segment `si` by its plan: `first` of them from a graph search (which then
    /// reranks `2·first` of its beam, at the calibrated width), `k` from IVF and exact plans
    /// (their rerank depth is what their calibration measured). Whether the graph answered with
    /// fewer than `k` (the caller may deepen it), and whether the search escalated (a query
    /// beyond the calibration's reach; `wide` starts a graph search at the escalated beam).
    fn segment(
        &self,
        si: usize,
        v: &SegView<'_>,
        first: usize,
        k: usize,
        wide: bool,
    ) -> (Vec<Hit>, bool, bool) {
        use crate::index::vector::ann;
        let (q, seg) = (self.q, &v.ls.seg);
        let Some(rows) = v.ls.vector_rows() else { return (Vec::new(), false, false) };
        let dim = self.query.len();
        let need_filter = q.filters.is_some()
            || !v.ls.deleted.is_empty()
            || !v.shadowed.is_empty()
            || !seg.every_row_has_vector();
        let f = |row: u32| seg.has_vector(row as usize) && v.passes(row as usize, q);
        let filter: Option<&dyn Fn(u32) -> bool> = if need_filter { Some(&f) } else { None };
        let filter_estimate =
            v.cand.as_ref().map(|c| u32::try_from(c.iter().filter(|b| **b).count()).unwrap_or(u32::MAX));
        let (mut shallow, mut escalated) = (false, false);
        let found = match plan(v, self.exact, self.target, filter, filter_estimate) {
            (Plan::Graph { ef }, Some(g), _) => {
                shallow = first < k;
                let ef = if wide { crate::index::vector::graph::escalated_ef(ef) } else { ef };
                // At full depth the whole beam, as calibrated (0 = the beam width).
                let rerank = if shallow { u32::try_from(2 * first).unwrap_or(u32::MAX).min(ef) } else { 0 };
                let p = crate::index::vector::graph::GraphSearchParams { ef, rerank };
                let depth = if shallow { first } else { k };
                if wide || q.filters.is_some() {
                    // Deepening a segment that escalated: at the escalated beam, not checked again.
                    // A filtered query's 10th row is farther out than the unfiltered neighbourhoods
                    // the reach describes: it is not checked against it.
                    escalated = wide;
                    g.search_rows(&rows, self.query, depth, filter, &p)
                } else {
                    let found;
                    (found, escalated) = g.search_escalating(&rows, self.query, depth, filter, &p);
                    found
                }
            }
            (Plan::Ivf { nprobe, rerank }, _, Some(ix)) => {
                let params =
                    ann::SearchParams { nprobe, rerank, filter_estimate, ..ann::SearchParams::default() };
                if q.filters.is_some() {
                    // As for the graph: the reach describes unfiltered neighbourhoods.
                    ix.index().search_rows(&rows, self.query, k, filter, &params)
                } else {
                    let found;
                    (found, escalated) = ivf_checked(&ix.index(), &rows, self.query, k, filter, &params);
                    found
                }
            }
            _ => ann::exact(rows.all(), dim, self.metric, self.query, k, filter),
        };
        let hits = found
            .into_iter()
            .filter_map(|(row, d)| {
                Some(Hit { id: seg.try_id(row as usize)?, score: d, src: Src::Seg(si, row) })
            })
            .collect();
        (hits, shallow, escalated)
    }
}

/// An IVF search at its calibrated effort, checked against the calibration's reach: when the
/// [`calibrate::K`]-th row it found lies beyond it, the segment is searched exactly instead (the
/// IVF serves narrow filters and structureless data, where its calibrated effort already probes
/// most lists: an exact scan of the matching rows costs about as much, and no wider effort was
/// measured for such a query). Returns the rows and whether it went exact.
///
/// [`calibrate::K`]: crate::index::vector::calibrate::K
fn ivf_checked(
    ix: &crate::index::vector::ann::AnnIndex<'_>,
    rows: &dyn RowSource,
    query: &[f32],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    params: &crate::index::vector::ann::SearchParams,
) -> (Vec<(u32, f32)>, bool) {
    use crate::index::vector::{ann, calibrate::K};
    let mut found = ix.search_rows(rows, query, k.max(K), filter, params);
    if found.get(K - 1).is_some_and(|r| ix.calibration().beyond_reach(r.1)) {
        return (ann::exact(rows.all(), query.len(), ix.metric(), query, k, filter), true);
    }
    found.truncate(k);
    (found, false)
}

/// The overlay's matching vectors, exhaustively, into `hits`; how many documents it scanned.
fn overlay_hits(
    q: &Query,
    query: &[f32],
    state: &NsState,
    metric: crate::model::DistanceMetric,
    hits: &mut Vec<Hit>,
) -> u64 {
    let dim = query.len();
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
    exhaustive
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
