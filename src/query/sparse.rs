//! Sparse dot-product search (`SparseKNN`): per segment the sparse section
//! when present, else exhaustive; the overlay exhaustively.
//!
//! Invariant: indexed and unindexed rows score with the same formula.

use super::*;

/// Sparse dot-product search: per segment the sparse section of `attr` (or a
/// scan of decoded rows), the overlay exhaustively.
pub(super) fn sparse_hits(
    q: &Query,
    attr: &str,
    query: &[(String, f32)],
    state: &NsState,
    views: &[SegView<'_>],
) -> (Vec<Hit>, u64) {
    use crate::index::sparse::dot;
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    for (si, v) in views.iter().enumerate() {
        let seg = &v.ls.seg;
        let index = v.ls.sparse_index(attr);
        let found: Vec<(u32, f32)> = match index {
            Some(ix) => ix.scores(query, &|row| v.passes(row as usize, q)),
            None => (0..seg.len())
                .filter(|r| v.live(*r))
                .filter_map(|r| {
                    exhaustive += 1;
                    let d = v.attrs_doc(r)?;
                    if !matches(q, &d) {
                        return None;
                    }
                    match d.attrs.get(attr) {
                        Some(Value::Sparse(sv)) => dot(query, sv).map(|s| (r as u32, s)),
                        _ => None,
                    }
                })
                .collect(),
        };
        hits.extend(found.into_iter().filter_map(|(row, s)| {
            Some(Hit { id: seg.try_id(row as usize)?, score: s, src: Src::Seg(si, row) })
        }));
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        if let Some(Value::Sparse(sv)) = doc.attrs.get(attr) {
            if let Some(s) = dot(query, sv).filter(|_| matches(q, doc)) {
                hits.push(Hit { id: id.clone(), score: s, src: Src::Over(doc.clone()) });
            }
        }
    }
    (hits, exhaustive)
}
