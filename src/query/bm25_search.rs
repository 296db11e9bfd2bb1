//! The search of a compiled BM25 expression (`bm25.rs`) over a namespace's segments and its
//! overlay: the segments as pieces (whole segments, or row ranges of the large ones), on the
//! query's thread and on helpers lent to it (`crate::fanout`); the overlay through its index
//! (`bm25_overlay.rs`) or a scan.
//!
//! Invariants:
//! - A query is cut into pieces only when its postings pay for a helper thread
//!   ([`FANOUT_MIN_POSTINGS`]), and only a pruned search (a sum, or a monotone `Max`/`Product`
//!   shape) of an indexed segment is cut into row ranges; every row of every segment lies in
//!   exactly one piece.
//! - Every piece prunes below one shared floor that only rises, and only to a score that `k`
//!   rows some piece returns reach (its own best `k` as it goes, the best `k` of the pieces
//!   finished): a pruned row is outscored by `k` rows the caller merges, so the best `k` are
//!   those of the one-thread search whatever the order the pieces ran in.

use super::bm25::*;
use super::bm25_overlay::{overlay_hits, overlay_index, pruned_hits};
use super::*;
use crate::index::text::{search_fields_in, SharedFloor};

/// Postings (or, unindexed, rows) a query would read in one segment at most: what decides
/// whether its segments are worth helper threads.
fn piece_postings(v: &SegView<'_>, segl: Option<&[SegLeaf<'_>]>) -> u64 {
    match segl {
        Some(segl) => segl.iter().flat_map(|s| s.found.iter().flatten()).map(|t| u64::from(t.doc_freq)).sum(),
        None => v.ls.seg.len() as u64,
    }
}

/// Below this many postings over all segments, a query's segments are searched on its own
/// thread (the pruned search reads far fewer; a helper costs about what 10,000 postings do).
const FANOUT_MIN_POSTINGS: u64 = 100_000;

/// A query spread over helpers is cut into about this many pieces (segments, or row ranges of
/// the large ones), so that the threads finish together however unequal the segments are.
const PIECES: usize = 8;

/// Row ranges of fewer rows than this are not worth a piece of their own (each opens its
/// term lists again).
const MIN_PIECE_ROWS: usize = 65_536;

/// A segment row that may rank, as (score, view, row): given its id once the best k are known.
type Scored = (f32, usize, u32);

/// A segment to search, with its leaves' lookups, and the rows of it this piece searches.
type Piece<'a> = (usize, Option<Vec<SegLeaf<'a>>>, std::ops::Range<u32>);

/// Each segment one piece, all its rows.
fn whole(segments: Vec<(usize, Option<Vec<SegLeaf<'_>>>)>) -> Vec<Piece<'_>> {
    segments.into_iter().map(|(si, segl)| (si, segl, 0..u32::MAX)).collect()
}

/// Each indexed segment cut into row ranges of about the same number of rows (about
/// [`PIECES`] over the namespace, at least [`MIN_PIECE_ROWS`] each), in segment order.
fn split<'a>(segments: Vec<(usize, Option<Vec<SegLeaf<'a>>>)>, views: &[SegView<'_>]) -> Vec<Piece<'a>> {
    let total: usize = views.iter().map(|v| v.ls.seg.len()).sum();
    let least = if crate::fanout::always_on() { 1 } else { MIN_PIECE_ROWS };
    let piece_rows = (total / PIECES).max(least);
    let mut out = Vec::new();
    for (si, segl) in segments {
        let n = views[si].ls.seg.len();
        let parts = n.div_ceil(piece_rows);
        if segl.is_none() || parts < 2 {
            out.push((si, segl, 0..u32::MAX));
            continue;
        }
        for p in 0..parts {
            let at = |i: usize| u32::try_from(i * n / parts).unwrap_or(u32::MAX);
            out.push((si, segl.clone(), at(p)..at(p + 1)));
        }
    }
    out
}

/// What a query's pieces share: the best `k` scores of the pieces finished, and the floor every
/// piece prunes below (raised by those and by each piece's own best `k` as it goes).
struct Shared {
    best: std::sync::Mutex<BestScores>,
    floor: SharedFloor,
}

/// One BM25 query's search of one segment at a time (see [`text_hits`]).
struct SegSearch<'e> {
    q: &'e Query,
    root: &'e Node,
    leaves: &'e [Leaf],
    /// Whether the expression is a plain sum of its (leaf, boost) pairs, `flat`.
    linear: bool,
    flat: &'e [(usize, f32)],
    /// The pairs of a monotone expression and how they combine (`shape`), when not a sum.
    shaped: &'e [(usize, f32)],
    shape: Option<&'e Shape>,
    k: usize,
}

impl SegSearch<'_> {
    /// The rows `rows` of segment `si` that may rank among the best `k`, as (score, `si`, row),
    /// and the rows it scanned unindexed (a segment cut into ranges is indexed and pruned);
    /// pruned below `shared`'s floor, which other pieces raise as they go, and this one's best
    /// scores added to `shared` once done.
    fn segment(
        &self,
        v: &SegView<'_>,
        si: usize,
        segl: Option<Vec<SegLeaf<'_>>>,
        rows: std::ops::Range<u32>,
        shared: &Shared,
    ) -> Result<(Vec<Scored>, u64), QueryError> {
        let (q, leaves, k) = (self.q, self.leaves, self.k);
        let seg = &v.ls.seg;
        let mut exhaustive = 0u64;
        // Indexed, and none of the query's terms is in its dictionaries: every path below scores
        // only rows of the terms' postings, so it has nothing to search.
        if segl.as_ref().is_some_and(|s| holds_none(s, leaves)) {
            return Ok((Vec::new(), 0));
        }
        let corrupt = |e: crate::index::IndexError| QueryError::corrupted("text index", e);
        let f = |row: u32| v.passes(row as usize, q);
        // Every row passes when nothing is deleted, shadowed or filtered: the pruned search
        // then skips a per-candidate call that hashes the row into the shadowed set.
        let f_opt: Option<&dyn Fn(u32) -> bool> = if v.passes_all(q) { None } else { Some(&f) };
        let found: Vec<(u32, f32)> = match (segl, self.shape) {
            (Some(segl), _) if self.linear => {
                let fields = field_queries(self.flat, leaves, &segl);
                search_fields_in(&fields, k, f_opt, Combine::Sum, rows, &shared.floor).map_err(corrupt)?
            }
            (Some(segl), Some(shape)) => {
                let fields = field_queries(self.shaped, leaves, &segl);
                let by = |parts: &[f32]| shape.score(parts);
                search_fields_in(&fields, k, f_opt, Combine::By(&by), rows, &shared.floor).map_err(corrupt)?
            }
            (Some(segl), None) => self.unpruned(v, segl, &f)?,
            (None, _) => (0..seg.len())
                .filter(|r| v.live(*r))
                .filter_map(|r| {
                    exhaustive += 1;
                    let d = v.attrs_doc(r).filter(|d| matches(q, d))?;
                    let rt = RowTf::of_doc(leaves, &d);
                    rt.any_hit().then(|| (r as u32, eval(self.root, 1.0, leaves, &rt, Some(&d))))
                })
                .collect(),
        };
        // A row past the segment's rows has no id: never a hit (as `try_id` refuses it).
        let found: Vec<(f32, usize, u32)> = found
            .into_iter()
            .filter(|(row, _)| (*row as usize) < seg.len())
            .map(|(row, s)| (s, si, row))
            .collect();
        let mut best = shared.best.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        best.add(found.iter().map(|h| h.0));
        shared.floor.raise(best.floor());
        Ok((found, exhaustive))
    }

    /// Every row of the query's postings in an indexed segment, scored by the whole expression
    /// (one that neither sums nor combines its clauses monotonically cannot prune).
    fn unpruned(
        &self,
        v: &SegView<'_>,
        segl: Vec<SegLeaf<'_>>,
        f: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<(u32, f32)>, QueryError> {
        let leaves = self.leaves;
        let corrupt = |e: crate::index::IndexError| QueryError::corrupted("text index", e);
        let reads_doc = self.root.reads_doc();
        let ixs: Vec<TextIndex<'_>> = segl.into_iter().map(|s| s.ix).collect();
        let mut rows: std::collections::BTreeMap<u32, RowTf> = std::collections::BTreeMap::new();
        for (li, (l, ix)) in leaves.iter().zip(&ixs).enumerate() {
            for (j, t) in l.distinct.iter().enumerate() {
                for (row, tf) in ix.postings(t).map_err(corrupt)? {
                    rows.entry(row).or_insert_with(|| RowTf::new(leaves)).tfs[li][j] = tf;
                }
            }
            if let Some(p) = &l.prefix {
                for (row, tf) in ix.prefix_rows(p).map_err(corrupt)? {
                    rows.entry(row).or_insert_with(|| RowTf::new(leaves)).tfs[li][l.distinct.len()] = tf;
                }
            }
        }
        Ok(rows
            .into_iter()
            .filter(|(row, _)| f(*row))
            .map(|(row, mut rt)| {
                for (li, ix) in ixs.iter().enumerate() {
                    rt.norms[li] = ix.fieldnorm_id(row);
                }
                let doc = if reads_doc { v.attrs_doc(row as usize) } else { None };
                (row, eval(self.root, 1.0, leaves, &rt, doc.as_ref()))
            })
            .collect())
    }
}

/// BM25 search: pruned per segment for sums of clauses, exact candidate
/// scoring otherwise; unindexed rows scored with the same formula.
pub(super) fn text_hits(
    q: &Query,
    expr: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    let mut leaves = Vec::new();
    let (root, mut lookups) = compile_looked_up(expr, state, views, &mut leaves)?;
    if leaves.is_empty() {
        // No BM25 clause: every row that passes the filters ranks.
        return Ok(every_row_hits(q, &root, state, views));
    }
    let mut flat = Vec::new();
    let is_linear = linear(&root, 1.0, &mut flat);
    // Not a plain sum: a `Max` (of sums) of positive clauses still prunes, its parts combined by
    // its shape.
    let mut shaped = Vec::new();
    let shape = if is_linear { None } else { monotone(&root, 1.0, &leaves, &mut shaped, &mut 0) };
    let mut hits = Vec::new();
    // The best k scores found so far: a segment searched later prunes below the k-th of them
    // (`search_fields_in`), so the largest segments go first.
    let shared = Shared {
        best: std::sync::Mutex::new(BestScores::new(k)),
        floor: SharedFloor::new(f32::NEG_INFINITY),
    };
    let mut by_size: Vec<usize> = (0..views.len()).collect();
    by_size.sort_by_key(|&si| std::cmp::Reverse(views[si].ls.seg.len()));
    let segments: Vec<(usize, Option<Vec<SegLeaf<'_>>>)> =
        by_size.into_iter().map(|si| (si, std::mem::take(&mut lookups[si]).into_iter().collect())).collect();
    // A helper thread costs tens of microseconds to start: only a query with many postings to
    // read spreads its segments (and row ranges of the large ones) over idle cores.
    let postings: u64 = segments.iter().map(|(si, segl)| piece_postings(&views[*si], segl.as_deref())).sum();
    let fan_out = crate::fanout::worth(postings, FANOUT_MIN_POSTINGS);
    let pieces =
        if fan_out && (is_linear || shape.is_some()) { split(segments, views) } else { whole(segments) };
    let search = SegSearch {
        q,
        root: &root,
        leaves: &leaves,
        linear: is_linear,
        flat: &flat,
        shaped: &shaped,
        shape: shape.as_ref(),
        k,
    };
    let helpers = if fan_out { pieces.len() } else { 0 };
    let searched = crate::fanout::map(pieces, helpers, |(si, segl, rows)| {
        search.segment(&views[si], si, segl, rows, &shared)
    });
    // (score, view, row) of every segment's rows, given ids once the best k are known.
    let mut scored: Vec<Scored> = Vec::new();
    let mut exhaustive = 0u64;
    for found in searched {
        let (found, rows_scanned) = found?;
        scored.extend(found);
        exhaustive += rows_scanned;
    }
    // Only rows that can still rank among the best k need their ids (ties rank by id): rows
    // strictly below the k-th score gathered here are below k hits whatever else is added.
    keep_contenders(&mut scored, k);
    hits.extend(scored.into_iter().filter_map(|(s, si, row)| {
        Some(Hit { id: views[si].ls.seg.try_id(row as usize)?, score: s, src: Src::Seg(si, row) })
    }));
    if let Some(ix) = overlay_index(&leaves, state) {
        // Overlay rows are still unindexed rows (WAL): counted as searched
        // exhaustively, as the scan counted them.
        exhaustive += ix[0].num_docs();
        let monotone = |p: Bm25Params| p.k1 >= 0.0 && (0.0..=1.0).contains(&p.b);
        if is_linear && leaves.iter().all(|l| l.prefix.is_none() && monotone(l.params)) {
            hits.extend(pruned_hits(q, &root, &leaves, &ix, &flat, k));
        } else {
            hits.extend(overlay_hits(q, &root, &leaves, &ix, k));
        }
        return Ok((hits, exhaustive));
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        if !matches(q, doc) {
            continue;
        }
        let rt = RowTf::of_doc(&leaves, doc);
        if rt.any_hit() {
            hits.push(Hit {
                id: id.clone(),
                score: eval(&root, 1.0, &leaves, &rt, Some(doc)),
                src: Src::Over(doc.clone()),
            });
        }
    }
    Ok((hits, exhaustive))
}

/// Whether no leaf has a term (or a prefix, looked up later) in this segment's dictionaries.
fn holds_none(segl: &[SegLeaf<'_>], leaves: &[Leaf]) -> bool {
    segl.iter().zip(leaves).all(|(s, l)| l.prefix.is_none() && s.found.iter().all(Option::is_none))
}

/// Drops the rows scoring strictly below the `k`-th best score of `scored` (none when it holds at
/// most `k`): with ties ranked by id, such a row is outranked by `k` others whatever ids they have,
/// so only the rest need an id read from their segment.
fn keep_contenders(scored: &mut Vec<(f32, usize, u32)>, k: usize) {
    if k == 0 || scored.len() <= k {
        return;
    }
    let mut scores: Vec<f32> = scored.iter().map(|h| h.0).collect();
    let (_, kth, _) = scores.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    scored.retain(|h| h.0.total_cmp(&kth).is_ge());
}

/// The best `k` scores of the hits gathered so far, for [`search_fields_above`]'s floor: once `k`
/// hits score at least `x`, a row scoring below `x` cannot be among the best `k` (hits rank by
/// score, ties by id), and a row scoring `x` is still searched for.
struct BestScores {
    k: usize,
    scores: Vec<f32>,
}

impl BestScores {
    fn new(k: usize) -> Self {
        BestScores { k, scores: Vec::new() }
    }

    fn add(&mut self, scores: impl Iterator<Item = f32>) {
        self.scores.extend(scores);
        if self.k > 0 && self.scores.len() > self.k {
            self.scores.select_nth_unstable_by(self.k - 1, |a, b| b.total_cmp(a));
            self.scores.truncate(self.k);
        }
    }

    /// The k-th best score, or -inf while fewer than `k` hits are held.
    fn floor(&self) -> f32 {
        if self.k == 0 || self.scores.len() < self.k {
            return f32::NEG_INFINITY;
        }
        self.scores.iter().copied().min_by(f32::total_cmp).unwrap_or(f32::NEG_INFINITY)
    }
}

/// The per-segment queries of flattened (leaf, boost) pairs over the segment's indexes and the
/// terms the statistics pass found there.
fn field_queries<'q, 'a>(
    pairs: &[(usize, f32)],
    leaves: &'q [Leaf],
    segl: &'q [SegLeaf<'a>],
) -> Vec<FieldQuery<'q, 'a>> {
    pairs
        .iter()
        .map(|(li, boost)| FieldQuery {
            index: &segl[*li].ix,
            terms: &leaves[*li].terms,
            found: Some(&segl[*li].found),
            prefix: leaves[*li].prefix.as_deref(),
            stats: &leaves[*li].stats,
            params: leaves[*li].params,
            boost: *boost,
        })
        .collect()
}

/// Hits of an expression without BM25 clauses (attributes, filters and
/// their curves): every live row passing the query's filter, scored from its
/// attributes; all of them are read (counted as exhaustive).
fn every_row_hits(q: &Query, root: &Node, state: &NsState, views: &[SegView<'_>]) -> (Vec<Hit>, u64) {
    let rt = RowTf::new(&[]);
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    for (si, v) in views.iter().enumerate() {
        for r in 0..v.ls.seg.len() {
            if !v.passes(r, q) {
                continue;
            }
            exhaustive += 1;
            let Some(d) = v.attrs_doc(r) else { continue };
            let score = eval(root, 1.0, &[], &rt, Some(&d));
            hits.push(Hit { id: d.id, score, src: Src::Seg(si, r as u32) });
        }
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        if matches(q, doc) {
            let score = eval(root, 1.0, &[], &rt, Some(doc));
            hits.push(Hit { id: id.clone(), score, src: Src::Over(doc.clone()) });
        }
    }
    (hits, exhaustive)
}
