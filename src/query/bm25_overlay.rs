//! BM25 over the overlay through its inverted index (`state::text`): the
//! statistics and the scored rows a scan of the overlay would produce, read
//! from the postings of the query's terms instead of tokenizing every
//! overlay document per query.
//!
//! Invariants:
//! - Used only when every clause's attribute is indexed under the options
//!   the schema gives it now ([`NsState::overlay_text`]); otherwise
//!   `bm25.rs` scans the overlay as before.
//! - The numbers are the scan's: N (live overlay documents), total tokens,
//!   the df of each distinct term and of the prefix pseudo-term come from
//!   the index, which counts the same live documents with the same analyzer;
//!   they are integers summed into the same [`CorpusStats`], so the weights
//!   are the same to the bit.
//! - The rows scored are the scan's: live, holding at least one scoring unit
//!   of some clause (the scan's `any_hit`), passing the query's filter. Each
//!   gets the [`RowTf`] the scan builds (per unit tf, fieldnorm id of each
//!   clause it hits) and the same [`eval`], so scores are bit for bit alike;
//!   only the best `k` under `sort_hits`'s order (score descending, then id
//!   ascending) are returned, as a segment's pruned search returns its best
//!   `k`: the final top `k` lies within them.
//! - Work follows the postings of the query's terms (a k-way merge of them
//!   by row sequence), not the overlay. A sum of plain clauses (no prefix)
//!   is pruned (MaxScore, [`pruned_hits`]): a term's contribution is at most
//!   its score at the largest tf and smallest fieldnorm its postings hold
//!   (BM25 rises with tf and falls with length when `k1 ≥ 0` and
//!   `0 ≤ b ≤ 1`, which the schema ensures; other parameters are not
//!   pruned), so once `k` rows are held,
//!   rows holding only terms whose bounds sum below the `k`-th score
//!   (with a margin for f32 rounding) cannot enter and are never visited;
//!   every row that is visited is scored exactly as above, with all its terms.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::*;
use crate::deadline;
use crate::state::text::{Posting, TermCursor, TextView};

/// The overlay's index of every clause's attribute, parallel to `leaves`;
/// None when one of them is not indexed (the caller scans).
pub(super) fn overlay_index<'s>(leaves: &[Leaf], state: &'s NsState) -> Option<Vec<TextView<'s>>> {
    leaves.iter().map(|l| state.overlay_text(&l.attr)).collect()
}

/// Adds the overlay's statistics to each clause's (what `add_row` over
/// every live overlay document adds).
pub(super) fn add_overlay_stats(stats: &mut [CorpusStats], leaves: &[Leaf], views: &[TextView<'_>]) {
    for ((st, l), v) in stats.iter_mut().zip(leaves).zip(views) {
        st.num_docs += v.num_docs();
        st.total_tokens += v.total_tokens();
        for t in &l.distinct {
            let df = v.doc_freq(t);
            if df > 0 {
                *st.doc_freq.entry(t.clone()).or_default() += df;
            }
        }
        if let Some(p) = &l.prefix {
            let df = v.prefix_postings(p).len() as u64;
            if df > 0 {
                *st.prefix_doc_freq.entry(p.clone()).or_default() += df;
            }
        }
    }
}

/// One scoring unit's live postings: (leaf, unit, rows in seq order).
struct UnitList<'s> {
    leaf: usize,
    unit: usize,
    rows: Vec<Posting<'s>>,
}

/// Every scoring unit's postings over the overlay.
fn unit_lists<'s>(leaves: &[Leaf], views: &[TextView<'s>]) -> Vec<UnitList<'s>> {
    let mut lists = Vec::new();
    for (li, (l, v)) in leaves.iter().zip(views).enumerate() {
        for (j, t) in l.distinct.iter().enumerate() {
            lists.push(UnitList { leaf: li, unit: j, rows: v.postings(t) });
        }
        if let Some(p) = &l.prefix {
            lists.push(UnitList { leaf: li, unit: l.distinct.len(), rows: v.prefix_postings(p) });
        }
    }
    lists.retain(|l| !l.rows.is_empty());
    lists
}

/// A scored overlay row; the greatest is the worst (lowest score, then
/// highest id), so a max-heap of them keeps the best `k`.
struct Ranked<'s> {
    score: f32,
    doc: &'s Arc<Document>,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.score.total_cmp(&self.score).then_with(|| self.doc.id.cmp(&other.doc.id))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Ranked<'_> {}

/// The best `k` rows seen so far (a max-heap whose top is the worst kept).
struct Best<'s> {
    k: usize,
    heap: BinaryHeap<Ranked<'s>>,
}

impl<'s> Best<'s> {
    fn new(k: usize) -> Self {
        // Grows with what is kept: `k` comes from a request.
        Best { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1) }
    }

    /// Keeps `row` if it is among the best `k` so far; whether it was kept.
    fn offer(&mut self, row: Ranked<'s>) -> bool {
        if self.heap.len() < self.k {
            self.heap.push(row);
        } else if self.heap.peek().is_some_and(|worst| row < *worst) {
            *self.heap.peek_mut().expect("a full heap of k > 0 rows") = row;
        } else {
            return false;
        }
        true
    }

    /// The `k`-th best score once `k` rows are kept.
    fn kth_score(&self) -> Option<f32> {
        (self.heap.len() == self.k).then(|| self.heap.peek().map(|w| w.score)).flatten()
    }

    fn into_hits(self) -> Vec<Hit> {
        self.heap
            .into_iter()
            .map(|r| Hit { id: r.doc.id.clone(), score: r.score, src: Src::Over(r.doc.clone()) })
            .collect()
    }
}

/// The best `k` overlay hits: of the live overlay rows holding a unit of the
/// query and passing its filter, scored as the scan scores them.
pub(super) fn overlay_hits(
    q: &Query,
    root: &Node,
    leaves: &[Leaf],
    views: &[TextView<'_>],
    k: usize,
) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    let lists = unit_lists(leaves, views);
    let mut next = vec![0usize; lists.len()];
    let mut heads: BinaryHeap<Reverse<(u64, usize)>> =
        lists.iter().enumerate().map(|(i, l)| Reverse((l.rows[0].seq, i))).collect();
    let mut rt = RowTf::new(leaves);
    let mut best = Best::new(k);
    while let Some(&Reverse((seq, _))) = heads.peek() {
        if deadline::expired() {
            break;
        }
        rt.tfs.iter_mut().for_each(|t| t.fill(0));
        let mut doc = None;
        while let Some(&Reverse((at, i))) = heads.peek() {
            if at != seq {
                break;
            }
            let list = &lists[i];
            let p = list.rows[next[i]];
            rt.tfs[list.leaf][list.unit] = p.tf;
            rt.norms[list.leaf] = p.norm;
            doc = Some(p.doc);
            next[i] += 1;
            match list.rows.get(next[i]) {
                Some(r) => *heads.peek_mut().expect("the head just read") = Reverse((r.seq, i)),
                None => {
                    heads.pop();
                }
            }
        }
        let Some(doc) = doc.filter(|d| matches(q, d)) else { continue };
        best.offer(Ranked { score: eval(root, 1.0, leaves, &rt, Some(doc)), doc });
    }
    best.into_hits()
}

/// One term of a pruned sum: where its contribution goes and its bound.
struct PrunedUnit<'s> {
    leaf: usize,
    unit: usize,
    boost: f32,
    bound: f32,
    cursor: TermCursor<'s>,
}

/// [`overlay_hits`] for a sum of clauses without prefixes (`flat`: each
/// leaf with its boost, from [`linear`]), pruned by MaxScore: the terms
/// sorted by bound, those whose bounds together stay below the `k`-th best
/// score are only probed for rows the others bring, never iterated.
pub(super) fn pruned_hits(
    q: &Query,
    root: &Node,
    leaves: &[Leaf],
    views: &[TextView<'_>],
    flat: &[(usize, f32)],
    k: usize,
) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    let mut units: Vec<PrunedUnit<'_>> = Vec::new();
    for &(li, boost) in flat {
        let l = &leaves[li];
        for (j, t) in l.distinct.iter().enumerate() {
            let cursor = views[li].cursor(t);
            let Some((max_tf, min_norm)) = views[li].peak(t).filter(|_| cursor.current().is_some()) else {
                continue;
            };
            let bound = boost * l.weights[j].score(&l.cache, min_norm, max_tf);
            units.push(PrunedUnit { leaf: li, unit: j, boost, bound, cursor });
        }
    }
    units.sort_by(|a, b| a.bound.total_cmp(&b.bound));
    // Bounds summed from the smallest; the slack covers f32 rounding in
    // either sum (each of at most a few thousand non-negative terms).
    let slack = 1.0 + 1e-4 + 1e-6 * units.len() as f32;
    let below: Vec<f32> = units
        .iter()
        .scan(0f32, |acc, u| {
            *acc += u.bound;
            Some(*acc * slack)
        })
        .collect();
    // Units before `first` are non-essential: they only complete a row's score.
    let mut first = 0;
    let mut threshold = f32::NEG_INFINITY;
    let mut rt = RowTf::new(leaves);
    let mut best = Best::new(k);
    // Records a row's posting of `u` and returns what it adds to the score.
    let take = |u: &PrunedUnit<'_>, p: Posting<'_>, rt: &mut RowTf| {
        rt.tfs[u.leaf][u.unit] = p.tf;
        rt.norms[u.leaf] = p.norm;
        let l = &leaves[u.leaf];
        u.boost * l.weights[u.unit].score(&l.cache, p.norm, p.tf)
    };
    while !deadline::expired() {
        let seq = units[first..].iter().map(|u| u.cursor.seq()).min().unwrap_or(u64::MAX);
        if seq == u64::MAX {
            break;
        }
        rt.tfs.iter_mut().for_each(|t| t.fill(0));
        let mut doc = None;
        // What the row's terms add so far: the row is dropped as soon as
        // that plus the bounds of the terms not yet looked up cannot reach
        // the threshold.
        let mut partial = 0f32;
        for u in &mut units[first..] {
            if u.cursor.seq() == seq {
                let p = u.cursor.current().expect("a posting at its seq");
                partial += take(u, p, &mut rt);
                doc = Some(p.doc);
                u.cursor.advance();
            }
        }
        let mut out_of_reach = false;
        for i in (0..first).rev() {
            if partial * slack + below[i] < threshold {
                out_of_reach = true;
                break;
            }
            let u = &mut units[i];
            u.cursor.seek(seq);
            if u.cursor.seq() == seq {
                let p = u.cursor.current().expect("a posting at its seq");
                partial += take(u, p, &mut rt);
            }
        }
        if out_of_reach {
            continue;
        }
        let Some(doc) = doc.filter(|d| matches(q, d)) else { continue };
        if !best.offer(Ranked { score: eval(root, 1.0, leaves, &rt, Some(doc)), doc }) {
            continue;
        }
        if let Some(kth) = best.kth_score() {
            threshold = kth;
            while first < units.len() && below[first] < threshold {
                first += 1;
            }
        }
    }
    best.into_hits()
}
