//! Multi-query fusion: reciprocal rank fusion (RRF) of subquery results.
//!
//! Invariant: fused order is deterministic (score descending, then id); a
//! document's row is the one of the first subquery that returned it.

use super::*;

/// Fuse subquery results by reciprocal rank: `Σ w_i / (k + rank_i)` (ranks
/// from 1), best first, ties by id; `$dist` is the fused score.
pub fn fuse(r: &Rerank, results: &[QueryResult]) -> QueryResult {
    let mut scores: HashMap<&DocId, (f64, &Row)> = HashMap::new();
    for (i, res) in results.iter().enumerate() {
        let w = r.weights.get(i).copied().unwrap_or(1.0);
        for (rank, row) in res.rows.iter().flatten().enumerate() {
            let e = scores.entry(&row.doc.id).or_insert((0.0, row));
            e.0 += w / (r.rank_constant + (rank + 1) as f64);
        }
    }
    let mut fused: Vec<(f64, &Row)> = scores.into_values().collect();
    fused.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.doc.id.cmp(&b.1.doc.id)));
    let rows = fused
        .into_iter()
        .skip(r.offset)
        .take(r.limit)
        .map(|(score, row)| Row {
            doc: Arc::clone(&row.doc),
            dist: Some(score),
            computed: row.computed.clone(),
        })
        .collect();
    QueryResult {
        rows: Some(rows),
        vector_encoding: results.first().map(|x| x.vector_encoding).unwrap_or_default(),
        aggregations: None,
        aggregation_groups: None,
        scanned: results.iter().map(|x| x.scanned).sum(),
    }
}
