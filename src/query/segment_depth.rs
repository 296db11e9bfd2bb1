//! How deep each segment's graph search goes when several segments answer one `ANN` query
//! (issue 36 item 3).
//!
//! The global top `k` takes about `k · rows_i / rows` of its rows from segment `i`, so a segment
//! searched for its own top `k` and reranked `ef` deep pays for rows the merge throws away. A
//! segment is asked first for its *share*: twice the expected count plus [`SHARE_SLACK`], with
//! an exact rerank of twice that many of its beam (the beam itself stays at the calibrated
//! width). Invariant: a segment that placed every row of its share in the merged top `k` may
//! hold more of it, and is searched again at full depth ([`to_deepen`]), so a top `k` drawn
//! from one segment is found as it was before — the shares only save the reranks of segments
//! whose share was not exhausted.
//!
//! Escalation (a segment's query beyond its calibration's reach, `query/vector.rs`) is decided per
//! segment from its own search, whatever its depth: a first pass reranks at least 10 of its beam,
//! so the 10th row's exact distance the reach bounds is known even for a share of 3; a segment
//! that escalated answers its share from the wider beam, and is deepened at that beam too.

/// Rows added to a segment's expected share of the top `k` (fewer second searches).
pub(super) const SHARE_SLACK: usize = 2;

/// The first-pass depth of a segment of `rows` rows among `total` rows for a top `k`: `k` when
/// the segment holds everything, else twice its expected share plus [`SHARE_SLACK`], at most `k`.
pub(super) fn share(k: usize, rows: usize, total: usize) -> usize {
    if total == 0 || rows >= total {
        return k;
    }
    let twice_expected = (2 * k).saturating_mul(rows).div_ceil(total);
    twice_expected.saturating_add(SHARE_SLACK).min(k)
}

/// The segments to search again at full depth: those whose every first-pass row (`depth[s]`,
/// None for a segment searched at full depth) is in the merged top `k`. `hits` are (distance,
/// segment or None for the overlay); ties keep the lower index, as the rank's sort by id would
/// keep one of them.
pub(super) fn to_deepen(hits: &[(f32, Option<usize>)], depth: &[Option<usize>], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..hits.len()).collect();
    order.sort_by(|a, b| hits[*a].0.total_cmp(&hits[*b].0).then(a.cmp(b)));
    let mut taken = vec![0usize; depth.len()];
    for i in order.into_iter().take(k) {
        if let Some(s) = hits[i].1.filter(|s| *s < taken.len()) {
            taken[s] += 1;
        }
    }
    depth.iter().enumerate().filter_map(|(s, d)| d.filter(|d| taken[s] >= *d).map(|_| s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_rows_and_never_exceed_k() {
        assert_eq!(share(10, 1000, 1000), 10, "one segment: full depth");
        assert_eq!(share(10, 100, 1100), 2 + SHARE_SLACK, "an eleventh: twice 0.9 rounded up, plus slack");
        assert_eq!(share(10, 500, 1000), 10, "a half: twice 5 is all of k");
        assert_eq!(share(100, 1, 1_000_000), 1 + SHARE_SLACK);
        assert_eq!(share(0, 5, 10), 0);
    }

    #[test]
    fn a_segment_whose_share_fills_the_top_k_is_deepened() {
        // Segment 0 gave 3 rows (its share), all among the best 5; segment 1 gave 3, one in them.
        let hits = [
            (0.1, Some(0)),
            (0.2, Some(0)),
            (0.3, Some(0)),
            (0.4, Some(1)),
            (0.5, None),
            (0.6, Some(1)),
            (0.7, Some(1)),
        ];
        assert_eq!(to_deepen(&hits, &[Some(3), Some(3)], 5), vec![0]);
        // At full depth already: nothing to deepen.
        assert_eq!(to_deepen(&hits, &[None, Some(3)], 5), Vec::<usize>::new());
        // A larger k takes all of segment 1 too.
        assert_eq!(to_deepen(&hits, &[Some(3), Some(3)], 7), vec![0, 1]);
        // A segment that returned fewer rows than its share (a narrow filter) but all in the top
        // k is not deepened: it has no more rows to give.
        assert_eq!(to_deepen(&hits, &[Some(3), Some(4)], 7), vec![0]);
    }
}
