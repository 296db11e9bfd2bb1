//! Multi-query fusion: reciprocal rank fusion (RRF) of subquery results.
//!
//! Invariant: fused order is deterministic (score descending, then id).

use super::*;

/// Fuse subquery results by reciprocal rank: `Σ w_i / (k + rank_i)` (ranks
/// from 1), best first, ties by id; `$dist` is the fused score.
pub fn fuse(r: &Rerank, results: &[QueryResult]) -> QueryResult {
    let mut scores: HashMap<String, (f64, Json, Json)> = HashMap::new();
    for (i, res) in results.iter().enumerate() {
        let w = r.weights.get(i).copied().unwrap_or(1.0);
        for (rank, row) in res.rows.iter().flatten().enumerate() {
            let id = row.get(ID_ATTR).cloned().unwrap_or(Json::Null);
            let e = scores.entry(id.to_string()).or_insert_with(|| (0.0, id, row.clone()));
            e.0 += w / (r.rank_constant + (rank + 1) as f64);
        }
    }
    let mut fused: Vec<(f64, Json, Json)> = scores.into_values().collect();
    fused.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then_with(|| match (DocId::from_json(&a.1), DocId::from_json(&b.1)) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.1.to_string().cmp(&b.1.to_string()),
        })
    });
    let rows = fused
        .into_iter()
        .skip(r.offset)
        .take(r.limit)
        .map(|(score, _, mut row)| {
            if let Json::Object(m) = &mut row {
                m.insert(DIST_ATTR.into(), json!(score));
            }
            row
        })
        .collect();
    QueryResult {
        rows: Some(rows),
        aggregations: None,
        aggregation_groups: None,
        scanned: results.iter().map(|x| x.scanned).sum(),
    }
}
