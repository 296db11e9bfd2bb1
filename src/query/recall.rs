//! `_debug/recall`: ANN against exact search on sampled vectors.
//!
//! Invariant: reads one state; measures, never changes it.

use super::*;

/// A `_debug/recall` request (parsed from JSON by `wire::query`).
#[derive(Debug, Clone)]
pub struct RecallRequest {
    /// Stored vectors sampled as queries (1..=1000).
    pub num: usize,
    /// Neighbours compared per query.
    pub top_k: usize,
    /// Filter applied to both searches.
    pub filters: Option<Filter>,
    /// A given query vector instead of sampled ones.
    pub query_vector: Option<Vec<f32>>,
    /// Whether to report the exact neighbours.
    pub include_ground_truth: bool,
}

impl Default for RecallRequest {
    fn default() -> Self {
        RecallRequest { num: 25, top_k: 10, filters: None, query_vector: None, include_ground_truth: false }
    }
}

/// The exact neighbours of one query (with `include_ground_truth`).
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// The query vector.
    pub query_vector: Vec<f32>,
    /// Exact neighbours, nearest first: id, distance, stored vector.
    pub nearest: Vec<(DocId, f32, Option<Vec<f32>>)>,
}

/// What `_debug/recall` measured.
#[derive(Debug, Clone, Default)]
pub struct RecallReport {
    /// Average recall of ANN against exact search.
    pub avg_recall: f64,
    /// Average rows ANN returned.
    pub avg_ann_count: f64,
    /// Average rows exact search returned.
    pub avg_exhaustive_count: f64,
    /// The exact neighbours, when asked for.
    pub ground_truth: Option<Vec<GroundTruth>>,
    /// Per segment: the ANN path and effort chosen and the recall its build measured.
    pub segments: Vec<super::vector::SegmentCalibration>,
}

/// `POST /v1/namespaces/{ns}/_debug/recall`: samples `num` stored vectors
/// (deterministic seed), runs ANN and exact search for each, and reports the
/// average recall (a returned row is a hit when its exact distance is within
/// the exact k-th distance, so ties count).
pub fn recall(req: &RecallRequest, state: &NsState) -> Result<RecallReport, QueryError> {
    let (num, top_k, ground_truth) = (req.num, req.top_k, req.include_ground_truth);
    let filters = req.filters.clone();
    let given = req.query_vector.clone();
    let queries: Vec<Vec<f32>> = match given {
        Some(qv) => vec![qv],
        None => {
            let n = state.len() as usize;
            if n == 0 || state.vector_dim.is_none() {
                return Ok(RecallReport { avg_recall: 1.0, ..RecallReport::default() });
            }
            // Deterministic sample: evenly spaced positions with a fixed offset.
            let step = (n / num.min(n)).max(1);
            let picks: HashSet<usize> = (0..num.min(n)).map(|i| (i * step + step / 2) % n).collect();
            state
                .iter()
                .enumerate()
                .filter(|(i, _)| picks.contains(i))
                .filter_map(|(_, d)| d.vector.as_deref().map(<[f32]>::to_vec))
                .collect()
        }
    };
    let base = Query {
        filters,
        id_lower: None,
        order: None,
        rank: None,
        per: None,
        limit: top_k,
        offset: 0,
        projection: Projection::IdOnly,
        vector_encoding: VectorEncoding::Float,
        aggregates: Vec::new(),
        group_by: Vec::new(),
        ann_target: None,
        embed: None,
        compute: Vec::new(),
    };
    validate(&base, state)?;
    let views = seg_views(state, base.filters.as_ref());
    let (mut sum_recall, mut sum_ann, mut sum_exact) = (0f64, 0usize, 0usize);
    let mut truth = Vec::new();
    for qv in &queries {
        let ann =
            rank_hits(&base, &Rank::Vector { exact: false, query: qv.clone() }, state, &views, top_k)?.0;
        let exact =
            rank_hits(&base, &Rank::Vector { exact: true, query: qv.clone() }, state, &views, top_k)?.0;
        sum_ann += ann.len();
        sum_exact += exact.len();
        let r = match exact.last() {
            None => 1.0,
            Some(kth) => {
                let bound = kth.score + kth.score.abs() * 1e-5 + 1e-6;
                let hit = ann.iter().filter(|h| h.score <= bound).count();
                hit as f64 / exact.len() as f64
            }
        };
        sum_recall += r;
        if ground_truth {
            let nearest = exact
                .iter()
                .map(|h| {
                    let v = match &h.src {
                        Src::Over(d) => d.vector.as_deref().map(<[f32]>::to_vec),
                        Src::Seg(si, row) => views[*si].ls.seg.vector(*row as usize).map(<[f32]>::to_vec),
                    };
                    (h.id.clone(), h.score, v)
                })
                .collect();
            truth.push(GroundTruth { query_vector: qv.clone(), nearest });
        }
    }
    let n = queries.len().max(1) as f64;
    Ok(RecallReport {
        avg_recall: if queries.is_empty() { 1.0 } else { sum_recall / n },
        avg_ann_count: sum_ann as f64 / n,
        avg_exhaustive_count: sum_exact as f64 / n,
        ground_truth: ground_truth.then_some(truth),
        segments: super::vector::calibrations(&base, state, &views),
    })
}
