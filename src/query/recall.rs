//! `_debug/recall`: ANN against exact search on sampled vectors.
//!
//! Invariant: reads one state; measures, never changes it.

use super::*;

/// `POST /v1/namespaces/{ns}/_debug/recall`: samples `num` stored vectors
/// (deterministic seed), runs ANN and exact search for each, and reports the
/// average recall (a returned row is a hit when its exact distance is within
/// the exact k-th distance, so ties count).
pub fn recall(body: &Json, state: &NsState) -> Result<Json, QueryError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let mut num = 25usize;
    let mut top_k = 10usize;
    let mut filters = None;
    let mut given: Option<Vec<f32>> = None;
    let mut ground_truth = false;
    for (k, v) in &obj {
        match k.as_str() {
            "num" if v.is_null() => {}
            "num" => {
                num = v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| invalid("num must be between 1 and 1000"))?
            }
            "top_k" => top_k = parse_limit(v, "top_k")?.0,
            "filters" if v.is_null() => {}
            "filters" => filters = Some(Filter::parse(v).map_err(|e| invalid(format!("filters: {e}")))?),
            "rank_by" if v.is_null() => {}
            "rank_by" => match parse_rank_by(v)? {
                RankBy::Scored(Rank::Vector { query, .. }) => given = Some(query),
                _ => return Err(invalid("recall's rank_by must be [\"vector\", \"ANN\", [..]]")),
            },
            "include_ground_truth" => ground_truth = v.as_bool().unwrap_or(false),
            other => return Err(invalid(format!("unknown recall parameter {other:?}"))),
        }
    }
    let queries: Vec<Vec<f32>> = match given {
        Some(qv) => vec![qv],
        None => {
            let n = state.len() as usize;
            if n == 0 || state.vector_dim.is_none() {
                return Ok(json!({"avg_recall": 1.0, "avg_ann_count": 0.0, "avg_exhaustive_count": 0.0}));
            }
            // Deterministic sample: evenly spaced positions with a fixed offset.
            let step = (n / num.min(n)).max(1);
            let picks: HashSet<usize> = (0..num.min(n)).map(|i| (i * step + step / 2) % n).collect();
            state
                .iter()
                .enumerate()
                .filter(|(i, _)| picks.contains(i))
                .filter_map(|(_, d)| d.vector.clone())
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
            let nn: Vec<Json> = exact
                .iter()
                .map(|h| {
                    let v = match &h.src {
                        Src::Over(d) => d.vector.clone(),
                        Src::Seg(si, row) => views[*si].ls.seg.vector(*row as usize).map(<[f32]>::to_vec),
                    };
                    let mut m = Map::new();
                    m.insert(ID_ATTR.into(), h.id.to_json());
                    m.insert(DIST_ATTR.into(), json!(f64::from(h.score)));
                    if let Some(v) = v {
                        m.insert(VECTOR_ATTR.into(), encode_vector(&v, VectorEncoding::Float));
                    }
                    Json::Object(m)
                })
                .collect();
            truth.push(
                json!({"query_vector": encode_vector(qv, VectorEncoding::Float), "nearest_neighbors": nn}),
            );
        }
    }
    let n = queries.len().max(1) as f64;
    let mut out = json!({
        "avg_recall": if queries.is_empty() { 1.0 } else { sum_recall / n },
        "avg_ann_count": sum_ann as f64 / n,
        "avg_exhaustive_count": sum_exact as f64 / n,
    });
    if ground_truth {
        out["ground_truth"] = Json::Array(truth);
    }
    Ok(out)
}
