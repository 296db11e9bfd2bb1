//! Query evaluation over text indexes: BM25 top-k with block-max WAND-style pruning
//! across fields, an exhaustive variant, and direct scoring of given rows.

use super::*;

#[path = "maxscore.rs"]
mod maxscore;
use maxscore::{Scratch, Window};

/// One attribute's part of a (multi-field) BM25 query: the row score is the sum
/// over fields of `boost · Σ_terms bm25`.
#[derive(Clone, Copy)]
pub struct FieldQuery<'q, 'a> {
    /// The segment's index of this attribute.
    pub index: &'q TextIndex<'a>,
    /// Analyzed terms, repeats allowed (prefix expansions already resolved).
    pub terms: &'q [String],
    /// The distinct terms (in [`term_counts`] order) already looked up in `index`
    /// ([`TextIndex::lookup`]; None: absent): the search does not look them up again. Ignored
    /// unless it has one entry per distinct term.
    pub found: Option<&'q [Option<TermEntry>]>,
    /// A prefix scored as one pseudo-term after `terms` (`index_prefixes`; see
    /// `prefixes.rs`), weighted by `stats.prefix_doc_freq`.
    pub prefix: Option<&'q str>,
    /// Global statistics of this attribute.
    pub stats: &'q CorpusStats,
    /// BM25 parameters of this attribute.
    pub params: Bm25Params,
    /// Multiplier of this field's score (1.0 for a plain sum).
    pub boost: f32,
}

impl<'q, 'a> FieldQuery<'q, 'a> {
    /// A field searched for `terms` alone: nothing looked up beforehand, no prefix, boost 1.
    pub fn plain(
        index: &'q TextIndex<'a>,
        terms: &'q [String],
        stats: &'q CorpusStats,
        params: Bm25Params,
    ) -> Self {
        FieldQuery { index, terms, found: None, prefix: None, stats, params, boost: 1.0 }
    }
}

/// How a row's parts (one per scoring unit: each field's distinct terms, then its prefix, field
/// by field) make its score. Either way the score rises with every part and is at most their sum
/// (parts are never negative), so the pruning's bounds, sums of part bounds, hold for both.
#[derive(Clone, Copy)]
pub enum Combine<'c> {
    /// The parts added in order (a multi-field sum).
    Sum,
    /// A caller's function of the parts (indexed by unit): a `Max` of sums, say. It must not
    /// fall when a part rises, nor exceed the parts' sum.
    By(&'c dyn Fn(&[f32]) -> f32),
}

impl Combine<'_> {
    #[inline]
    fn score(&self, parts: &[f32]) -> f32 {
        match self {
            Combine::Sum => {
                let mut score = 0f32;
                for &x in parts {
                    score += x;
                }
                score
            }
            Combine::By(f) => f(parts),
        }
    }
}

/// Rows whose norms (one byte a row) are checked together when the section has no granule
/// crcs of its norm table: 1 KiB, the read-check chunk.
const NORM_WINDOW_SHIFT: u32 = 10;

/// The length bytes of one field's rows in one segment, as every cursor of that field reads
/// them in one query. Invariant: a row's byte is read only after its 1 KiB window of the norm
/// table (against the read chunks) or its granule (64 rows, against the section's granule crcs)
/// matched its crc in the current checking epoch (`crate::integrity::epoch`); each window and
/// granule is checked at most once per epoch, whichever cursor reads it first (outside every
/// scope, once per search, as a cursor did before these were shared); checks made by
/// [`NormChecks::new_unremembered`] remember nothing, so each read there is checked. A dense
/// list checks windows (one crc of 1 KiB costs less than the sixteen of its granules), every
/// window its decoded block's rows lie in at once, so that its rows read their bytes without a
/// test each; a sparse one granules (a crc of 64 bytes for its one row there), at each read.
pub(super) struct NormChecks<'a> {
    norms: &'a [u8],
    /// The segment's read guard (None: unchecked).
    guard: Option<crate::integrity::FileGuard<'a>>,
    fine: Option<&'a crate::integrity::FineCrcs>,
    /// log2 of the rows of a granule (a window's when there are no granule crcs).
    shift: u32,
    /// One bit per granule: checked in `epoch`.
    checked: Box<[std::cell::Cell<u64>]>,
    /// One bit per 1 KiB window: checked in `epoch` (then so is each of its granules).
    windows: Box<[std::cell::Cell<u64>]>,
    epoch: std::cell::Cell<Option<u64>>,
}

/// A list holding more than one row in this many of its section checks the norms of its rows
/// by 1 KiB windows; a sparser one by granules.
const DENSE_NORMS: usize = 256;

/// Whether a list of `rows` rows in a section of `section_rows` checks its norms by windows.
fn dense_list(rows: usize, section_rows: usize) -> bool {
    rows.saturating_mul(DENSE_NORMS) > section_rows
}

impl<'a> NormChecks<'a> {
    fn new(index: &TextIndex<'a>) -> Self {
        let shift = index.norm_crcs.map_or(NORM_WINDOW_SHIFT, |f| f.granule_log2());
        let guard = Self::guard_of(index);
        let words = |shift: u32| if guard.is_some() { (index.norms.len() >> shift) / 64 + 1 } else { 0 };
        let bits = |n: usize| (0..n).map(|_| std::cell::Cell::new(0)).collect();
        NormChecks {
            norms: index.norms,
            guard,
            fine: index.norm_crcs,
            shift,
            checked: bits(words(shift)),
            windows: bits(words(NORM_WINDOW_SHIFT)),
            epoch: std::cell::Cell::new(crate::integrity::epoch()),
        }
    }

    /// Checks that remember nothing: every read checks its window or granule (no table to
    /// allocate, for a search that reads a few rows once each).
    fn new_unremembered(index: &TextIndex<'a>) -> Self {
        let shift = index.norm_crcs.map_or(NORM_WINDOW_SHIFT, |f| f.granule_log2());
        NormChecks {
            norms: index.norms,
            guard: Self::guard_of(index),
            fine: index.norm_crcs,
            shift,
            checked: Box::new([]),
            windows: Box::new([]),
            epoch: std::cell::Cell::new(None),
        }
    }

    /// The segment's guard when the norm table is the segment's bytes (None: unchecked, or a heap
    /// copy of checked bytes, which needs no check).
    fn guard_of(index: &TextIndex<'a>) -> Option<crate::integrity::FileGuard<'a>> {
        index.guard.filter(|g| g.holds(index.norms))
    }

    /// Whether a list of `rows` rows reads its norms by windows (see [`DENSE_NORMS`]).
    fn dense(&self, rows: usize) -> bool {
        dense_list(rows, self.norms.len())
    }

    /// Forget every granule checked when the checking epoch has changed (called per decoded
    /// block, the step before any row of it is scored: not per row).
    fn refresh(&self) {
        let now = crate::integrity::epoch();
        if now != self.epoch.get() {
            self.checked.iter().chain(self.windows.iter()).for_each(|w| w.set(0));
            self.epoch.set(now);
        }
    }

    /// Checks every 1 KiB window that rows `first..=last` lie in, unless checked in this epoch:
    /// a dense list's decoded block, whose rows then read their bytes with [`Self::checked`]
    /// instead of a test per row.
    fn check_rows(&self, first: u32, last: u32) {
        if self.guard.is_none() {
            return;
        }
        // A dense read of a window's first row checks that window ([`Self::of`]).
        for window in (first >> NORM_WINDOW_SHIFT)..=(last >> NORM_WINDOW_SHIFT) {
            self.of(window << NORM_WINDOW_SHIFT, true);
        }
    }

    /// `row`'s length byte, read without a check: [`Self::check_rows`] checked its window in
    /// this epoch.
    #[inline]
    fn checked(&self, row: u32) -> u8 {
        self.norms.get(row as usize).copied().unwrap_or(0)
    }

    /// `row`'s length byte, its window (`dense`) or granule checked first unless it or its
    /// window was in this epoch.
    #[inline]
    fn of(&self, row: u32, dense: bool) -> u8 {
        let r = row as usize;
        if let Some(g) = &self.guard {
            let window = r >> NORM_WINDOW_SHIFT;
            let (wword, wbit) = (self.windows.get(window / 64), 1u64 << (window % 64));
            if wword.is_none_or(|w| w.get() & wbit == 0) {
                if dense || self.fine.is_none() {
                    self.check(g, window, NORM_WINDOW_SHIFT, None, wword, wbit);
                } else {
                    let granule = r >> self.shift;
                    let (word, bit) = (self.checked.get(granule / 64), 1u64 << (granule % 64));
                    if word.is_none_or(|w| w.get() & bit == 0) {
                        self.check(g, granule, self.shift, self.fine, word, bit);
                    }
                }
            }
        }
        self.norms.get(r).copied().unwrap_or(0)
    }

    /// Check part `i` of `2^shift` rows (against `fine` when given, else the read chunks) and
    /// mark it in `word`.
    fn check(
        &self,
        g: &crate::integrity::FileGuard<'a>,
        i: usize,
        shift: u32,
        fine: Option<&crate::integrity::FineCrcs>,
        word: Option<&std::cell::Cell<u64>>,
        bit: u64,
    ) {
        let start = i << shift;
        let end = (start + (1 << shift)).min(self.norms.len());
        if let Some(w) = self.norms.get(start..end) {
            match fine {
                Some(f) => g.check_fine(f, w),
                None => g.check_slice(w),
            };
        }
        if let Some(w) = word {
            w.set(w.get() | bit);
        }
    }
}

pub(super) struct TermCursor<'a> {
    p: Postings<'a>,
    /// The field's length bytes, checked once per granule per query across its cursors.
    norms: std::rc::Rc<NormChecks<'a>>,
    /// Whether this list checks norms by windows ([`NormChecks::dense`]).
    dense: bool,
    cache: usize,
    weight: Bm25Weight,
    boost: f32,
    ord: usize,
    max_score: f32,
    /// Block whose rows are in `blk` (usize::MAX: none decoded).
    blk_idx: usize,
    blk: DecodedBlock,
    pos: usize,
    /// Current row, u32::MAX when exhausted (rows never reach u32::MAX in a block? see `cur`).
    exhausted: bool,
    /// Block the shallow pointer is on (first block whose last row >= the window start).
    shallow: usize,
    /// The block [`block_of`](Self::block_of) found last (0 before any).
    probed: usize,
    /// Last row of each block (decoded once per query from the block metas).
    last_rows: Vec<u32>,
    /// Upper bound of each block's score: `(max tf, min fieldnorm)` under the global weight.
    block_scores: Vec<f32>,
}

impl TermCursor<'_> {
    fn block_score(&self, caches: &[NormCache], m_tf: u32, m_norm: u8) -> f32 {
        self.boost * self.weight.score(&caches[self.cache], m_norm, m_tf)
    }

    /// Moves to the first row >= target; returns it.
    fn advance(&mut self, target: u32) -> Result<Option<u32>, IndexError> {
        if self.exhausted {
            return Ok(None);
        }
        if self.blk_idx != usize::MAX && self.blk.rows[self.blk.len - 1] >= target {
            while self.blk.rows[self.pos] < target {
                self.pos += 1;
            }
            return Ok(Some(self.blk.rows[self.pos]));
        }
        let mut b = if self.blk_idx == usize::MAX { 0 } else { self.blk_idx + 1 };
        while b < self.last_rows.len() && self.last_rows[b] < target {
            b += 1;
        }
        if b >= self.last_rows.len() {
            self.exhausted = true;
            return Ok(None);
        }
        self.p.decode(b, &mut self.blk)?;
        self.decoded(b);
        while self.blk.rows[self.pos] < target {
            self.pos += 1;
        }
        Ok(Some(self.blk.rows[self.pos]))
    }

    fn score_here(&self, caches: &[NormCache]) -> f32 {
        self.score_at(caches, self.pos)
    }

    /// The score of the decoded block's `p`-th posting (a dense list's block had its norm
    /// windows checked when decoded: [`Self::decoded`]).
    #[inline]
    fn score_at(&self, caches: &[NormCache], p: usize) -> f32 {
        let row = self.blk.rows[p];
        let norm = if self.dense { self.norms.checked(row) } else { self.norms.of(row, false) };
        self.boost * self.weight.score(&caches[self.cache], norm, self.blk.tfs[p])
    }

    /// After block `b` was decoded into `blk`: the norm checks see the current epoch, and a
    /// dense list's rows have their windows checked at once (sparse ones check per row).
    fn decoded(&mut self, b: usize) {
        self.norms.refresh();
        if self.dense && self.blk.len > 0 {
            self.norms.check_rows(self.blk.rows[0], self.blk.rows[self.blk.len - 1]);
        }
        self.blk_idx = b;
        self.pos = 0;
    }

    /// The block that holds `row` if the list does (the first whose last row is >= `row`;
    /// None past the list's end), found without decoding. `row` is at or after the current
    /// row, as in [`advance`](Self::advance).
    fn block_of(&mut self, row: u32) -> Option<usize> {
        // From the block found last (rows asked only rise), not the last decoded one: a probe
        // that stops at the bound decodes nothing, and rescanning from there would cost a pass
        // over the list per candidate.
        let mut b = self.probed.max(if self.blk_idx == usize::MAX { 0 } else { self.blk_idx });
        while b < self.last_rows.len() && self.last_rows[b] < row {
            b += 1;
        }
        self.probed = b;
        (b < self.last_rows.len()).then_some(b)
    }

    /// Moves the shallow pointer to the first block that may hold rows >= `start`;
    /// returns that block's last row (None when the list ends before `start`).
    fn shallow_advance(&mut self, start: u32) -> Option<u32> {
        while self.shallow < self.last_rows.len() && self.last_rows[self.shallow] < start {
            self.shallow += 1;
        }
        self.last_rows.get(self.shallow).copied()
    }

    /// Upper bound of this term's score on rows [start, end], after
    /// `shallow_advance(start)`: the max block bound over the blocks meeting the window.
    fn window_bound(&self, end: u32) -> f32 {
        let mut b = self.shallow;
        let mut mx = 0f32;
        while b < self.last_rows.len() {
            let first_possible = if b == 0 { 0 } else { self.last_rows[b - 1].saturating_add(1) };
            if first_possible > end {
                break;
            }
            mx = mx.max(self.block_scores[b]);
            if self.last_rows[b] >= end {
                break;
            }
            b += 1;
        }
        mx
    }
}

/// A bounded min-heap of the best `k` (score desc, row asc).
pub(super) struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Entry>,
}

#[derive(PartialEq)]
pub(super) struct Entry(f32, u32);
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // "Greater" = worse, so the max-heap's top is the worst kept entry.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

impl TopK {
    fn new(k: usize) -> Self {
        // Grows with what is pushed: `k` comes from a request.
        TopK { k, heap: std::collections::BinaryHeap::with_capacity(k.min(4096) + 1) }
    }
    /// Scores at or below this cannot enter (rows arrive in increasing order).
    fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.0)
        }
    }
    fn push(&mut self, row: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let e = Entry(score, row);
        if self.heap.len() < self.k {
            self.heap.push(e);
        } else if self.heap.peek().is_some_and(|w| e < *w) {
            self.heap.pop();
            self.heap.push(e);
        }
    }
    fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut v: Vec<Entry> = self.heap.into_vec();
        v.sort();
        v.into_iter().map(|e| (e.1, e.0)).collect()
    }
}

/// Slack on the pruning threshold so that f32 rounding in partial sums never
/// prunes a row whose in-order sum would beat the threshold.
pub(super) fn prune_threshold(t: f32) -> f32 {
    if t.is_finite() {
        t - t.abs() * 1e-5 - 1e-30
    } else {
        t
    }
}

pub(super) fn open_cursors<'a>(
    fields: &[FieldQuery<'_, 'a>],
) -> Result<(Vec<TermCursor<'a>>, Vec<NormCache>, usize), IndexError> {
    let mut cursors = Vec::new();
    let mut caches = Vec::new();
    let mut ord = 0usize;
    for f in fields {
        // The field's norm table, built once one of its lists occurs in the segment (a rare or
        // absent word meets none in most segments: 256 divisions saved per field there).
        let mut ci = None;
        let mut checks = None;
        let counts = term_counts(f.terms);
        let found = f.found.filter(|x| x.len() == counts.len());
        // A unit's weight is computed only where its list occurs (a hash lookup and a log).
        let terms = counts.into_iter().enumerate().map(|(j, (t, count))| {
            let p = match found {
                Some(x) => x[j].map(|e| f.index.postings_of_entry(e)).transpose()?.flatten(),
                None => f.index.postings_of(t)?,
            };
            Ok(p.map(|p| (p, f.stats.weight(t, count, f.params))))
        });
        let prefix = f
            .prefix
            .map(|p| Ok(f.index.prefix_postings(p)?.map(|list| (list, f.stats.prefix_weight(p, f.params)))));
        for unit in terms.chain(prefix) {
            let unit: Option<(Postings<'a>, Bm25Weight)> = unit?;
            let this_ord = ord;
            ord += 1;
            let Some((p, weight)) = unit else { continue };
            let nblocks = p.nblocks;
            let cache = *ci.get_or_insert_with(|| {
                caches.push(f.stats.norm_cache(f.params));
                caches.len() - 1
            });
            let norms = checks.get_or_insert_with(|| std::rc::Rc::new(NormChecks::new(f.index))).clone();
            let dense = norms.dense(p.df as usize);
            let mut c = TermCursor {
                p,
                norms,
                dense,
                cache,
                weight,
                boost: f.boost,
                ord: this_ord,
                max_score: 0.0,
                blk_idx: usize::MAX,
                blk: DecodedBlock::default(),
                pos: 0,
                exhausted: false,
                shallow: 0,
                probed: 0,
                last_rows: Vec::new(),
                block_scores: Vec::new(),
            };
            let mut mx = 0f32;
            let (mut last_rows, mut block_scores) =
                (Vec::with_capacity(nblocks), Vec::with_capacity(nblocks));
            for_each_meta(&c.p, f.index.norms.len(), |m| {
                let bs = c.block_score(&caches, m.max_tf, m.min_norm);
                mx = mx.max(bs);
                last_rows.push(m.last_row);
                block_scores.push(bs);
            })?;
            (c.last_rows, c.block_scores, c.max_score) = (last_rows, block_scores, mx);
            cursors.push(c);
        }
    }
    Ok((cursors, caches, ord))
}

/// Top-`k` rows of a multi-field BM25 query over one segment, pruned with
/// block-max MaxScore. Scores equal [`search_fields_exhaustive`] bit for bit.
pub fn search_fields(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> Result<Vec<(u32, f32)>, IndexError> {
    search_fields_with(fields, k, filter, Combine::Sum)
}

/// [`search_fields`] with the parts of a row combined by `combine` (pruned alike: see
/// [`Combine`]). Scores equal [`search_fields_exhaustive_with`] bit for bit.
pub fn search_fields_with(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
) -> Result<Vec<(u32, f32)>, IndexError> {
    search_fields_above(fields, k, filter, combine, f32::NEG_INFINITY)
}

/// [`search_fields_with`] for a caller that already holds `k` hits scoring at least `floor`
/// (other segments'): rows scoring below `floor` are pruned as if the top `k` were full at
/// `floor` (they may still appear, since the local top `k` fills as before). Every row scoring
/// `>= floor` that [`search_fields_with`] returns is returned alike (same score bits, same
/// rank among them): merged with the caller's hits, the best `k` do not change.
pub fn search_fields_above(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
    floor: f32,
) -> Result<Vec<(u32, f32)>, IndexError> {
    search_fields_in(fields, k, filter, combine, 0..u32::MAX, &SharedFloor::new(floor))
}

/// The score below which a query's pieces (segments, row ranges of one) searched on several
/// threads prune: it only rises, to the `k`-th best score some piece holds (and returns) `k`
/// rows at or above.
#[derive(Debug)]
pub struct SharedFloor(std::sync::atomic::AtomicU32);

impl SharedFloor {
    /// A floor at `floor` (`f32::NEG_INFINITY`: nothing pruned yet).
    pub fn new(floor: f32) -> Self {
        SharedFloor(std::sync::atomic::AtomicU32::new(floor.to_bits()))
    }

    /// The floor now.
    pub fn get(&self) -> f32 {
        f32::from_bits(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Raises the floor to `to` (a NaN or a lower value leaves it).
    pub fn raise(&self, to: f32) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut cur = self.0.load(Relaxed);
        while to > f32::from_bits(cur) {
            match self.0.compare_exchange_weak(cur, to.to_bits(), Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }
}

/// [`search_fields_above`] over the rows `rows` of the segment only, below a floor other
/// threads may raise meanwhile (read at every window) and that this search raises to its own
/// `k`-th best score once it holds `k` rows: the rows it returns are those of
/// [`search_fields_above`] on those rows that score at least the floor it ended with.
pub fn search_fields_in(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
    rows: std::ops::Range<u32>,
    floor: &SharedFloor,
) -> Result<Vec<(u32, f32)>, IndexError> {
    let whole = rows == (0..u32::MAX);
    if whole {
        if let Some(out) = score_few(fields, k, filter, combine, floor.get())? {
            return Ok(out);
        }
    }
    let (mut cursors, caches, nords) = open_cursors(fields)?;
    let mut top = TopK::new(k);
    if k == 0 || cursors.is_empty() || rows.is_empty() {
        return Ok(Vec::new());
    }
    // Below `seed` nothing can enter the caller's top k (the slack keeps rows scoring `floor`).
    let mut seed = prune_threshold(floor.get());
    if cursors.iter().map(|c| c.max_score).sum::<f32>() <= seed {
        return Ok(Vec::new());
    }
    // Rare terms: scoring every posting costs less than the window buffers (tens of KiB
    // zeroed per segment) and gives the same rows and score bits.
    if whole && cursors.iter().map(|c| c.last_rows.len()).sum::<usize>() <= FEW_BLOCKS {
        return score_all(cursors, &caches, nords, k, filter, combine, floor.get());
    }
    let mut scratch = Scratch::take(WINDOW as usize);
    let mut window = Window::new(cursors.len(), nords);
    let mut start: u32 = rows.start;
    let last = rows.end - 1;
    loop {
        // Skip to the first row any list may still hold.
        let mut next_row = u32::MAX;
        for c in cursors.iter_mut() {
            if c.shallow_advance(start).is_some() {
                let first = if c.shallow == 0 { 0 } else { c.last_rows[c.shallow - 1].saturating_add(1) };
                next_row = next_row.min(first.max(start));
            }
        }
        // A window is the unit of work the evaluation's deadline interrupts (the caller
        // discards a result computed past it).
        if next_row > last || crate::deadline::expired() {
            break;
        }
        start = start.max(next_row);
        let end = start.saturating_add(WINDOW - 1).min(last);
        seed = seed.max(prune_threshold(floor.get()));
        let theta = prune_threshold(top.threshold()).max(seed);
        if window.plan(&mut cursors, start, end, theta) {
            window.score_essential(&mut cursors, &caches, &mut scratch, theta)?;
            window.visit_candidates(
                &mut cursors,
                &caches,
                &mut scratch,
                theta,
                seed,
                filter,
                combine,
                &mut top,
            )?;
        }
        floor.raise(top.threshold());
        if end == last {
            break;
        }
        start = end + 1;
    }
    // Every touched row's sum and bit were taken as it was visited: the buffers are zero again.
    scratch.give_back();
    Ok(top.into_sorted())
}

/// Exhaustive multi-field scoring (term at a time into an accumulator).
pub fn search_fields_exhaustive(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> Result<Vec<(u32, f32)>, IndexError> {
    search_fields_exhaustive_with(fields, k, filter, Combine::Sum)
}

/// [`search_fields_exhaustive`] with the parts of a row combined by `combine`.
pub fn search_fields_exhaustive_with(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
) -> Result<Vec<(u32, f32)>, IndexError> {
    let (cursors, caches, nords) = open_cursors(fields)?;
    score_all(cursors, &caches, nords, k, filter, combine, f32::NEG_INFINITY)
}

/// Below this many blocks over all of a query's lists, [`search_fields`] scores every posting.
const FEW_BLOCKS: usize = 8;

/// Every posting of every list scored, term at a time, then summed per row in list order. Rows
/// scoring below `floor` are left out (the caller holds `k` hits at or above it: see
/// [`search_fields_above`]); the rest rank as without it.
fn score_all(
    mut cursors: Vec<TermCursor<'_>>,
    caches: &[NormCache],
    nords: usize,
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
    floor: f32,
) -> Result<Vec<(u32, f32)>, IndexError> {
    let mut hits: Vec<(u32, usize, f32)> = Vec::new();
    for c in cursors.iter_mut() {
        let mut target = 0u32;
        while let Some(r) = c.advance(target)? {
            hits.push((r, c.ord, c.score_here(caches)));
            if r == u32::MAX {
                break;
            }
            target = r + 1;
        }
    }
    Ok(rank_parts(&mut hits, nords, k, filter, combine, floor))
}

/// The best `k` rows of `(row, unit, part)` hits (any order): each row's parts combined by unit,
/// rows below `floor` or failing `filter` left out.
fn rank_parts(
    hits: &mut [(u32, usize, f32)],
    nords: usize,
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
    floor: f32,
) -> Vec<(u32, f32)> {
    hits.sort_unstable_by_key(|h| (h.0, h.1));
    let mut top = TopK::new(k);
    // A query's units fit on the stack but for a long one (this runs once per segment).
    let (mut few, mut many) = ([0f32; 64], Vec::new());
    let parts: &mut [f32] = match few.get_mut(..nords) {
        Some(p) => p,
        None => {
            many.resize(nords, 0f32);
            &mut many
        }
    };
    let mut i = 0;
    while i < hits.len() {
        let row = hits[i].0;
        parts.iter_mut().for_each(|x| *x = 0.0);
        while i < hits.len() && hits[i].0 == row {
            parts[hits[i].1] = hits[i].2;
            i += 1;
        }
        let score = combine.score(parts);
        if score >= floor && filter.is_none_or(|f| f(row)) {
            top.push(row, score);
        }
    }
    top.into_sorted()
}

/// One list of [`score_few`]: its postings, weight and boost, its field and that field's norm
/// table, its unit.
struct FewList<'a> {
    p: Postings<'a>,
    weight: Bm25Weight,
    boost: f32,
    field: usize,
    cache: NormCache,
    ord: usize,
}

thread_local! {
    /// [`score_few`]'s hits, kept per thread between searches (a rare word's search in each
    /// segment would allocate and grow it again).
    static FEW_HITS: std::cell::RefCell<Vec<(u32, usize, f32)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`score_all`] for lists that the statistics pass found ([`FieldQuery::found`]) and that hold at
/// most [`FEW_BLOCKS`] blocks in all (judged from their document frequencies, before any list is
/// read), scored without cursors: a rare word's search in one segment, where the cursors' block
/// tables, decode buffers and shared norm checks cost more than its few postings. None when the
/// lists may hold more, a term was not looked up or a prefix is searched (the caller then opens
/// cursors). Same rows, scores and order as [`score_all`] under [`search_fields_above`]'s tests.
/// Allocates only its list of lists and the answer (it runs once per segment of a query).
fn score_few<'a>(
    fields: &[FieldQuery<'_, 'a>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
    floor: f32,
) -> Result<Option<Vec<(u32, f32)>>, IndexError> {
    let mut blocks = 0usize;
    for f in fields {
        let Some(found) = f.found.filter(|_| f.prefix.is_none()) else { return Ok(None) };
        if found.len() != term_counts_iter(f.terms).count() {
            return Ok(None);
        }
        blocks += found.iter().flatten().map(|e| (e.doc_freq as usize).div_ceil(BLOCK)).sum::<usize>();
        if blocks > FEW_BLOCKS {
            return Ok(None);
        }
    }
    let mut lists = Vec::new();
    let (mut ord, mut bound) = (0usize, 0f32);
    for (fi, f) in fields.iter().enumerate() {
        let mut cache = None;
        let found = f.found.unwrap_or_default();
        for ((t, count), e) in term_counts_iter(f.terms).zip(found) {
            let this = ord;
            ord += 1;
            let Some(p) = (*e).map(|e| f.index.postings_of_entry(e)).transpose()?.flatten() else { continue };
            let weight = f.stats.weight(t, count, f.params);
            let cache: &NormCache = cache.get_or_insert_with(|| f.stats.norm_cache(f.params));
            let mut mx = 0f32;
            for_each_meta(&p, f.index.norms.len(), |m| {
                mx = mx.max(f.boost * weight.score(cache, m.min_norm, m.max_tf));
            })?;
            bound += mx;
            lists.push(FewList { p, weight, boost: f.boost, field: fi, cache: cache.clone(), ord: this });
        }
    }
    if k == 0 || lists.is_empty() || bound <= prune_threshold(floor) {
        return Ok(Some(Vec::new()));
    }
    let mut hits = FEW_HITS.with(|h| std::mem::take(&mut *h.borrow_mut()));
    hits.clear();
    let mut blk = DecodedBlock::default();
    for (fi, f) in fields.iter().enumerate() {
        let mut of_field = lists.iter().filter(|l| l.field == fi).peekable();
        if of_field.peek().is_none() {
            continue;
        }
        // Sparse lists read each row's length byte about once: checked at each read, with no
        // table of what was checked. A dense one shares the table, as its cursor would.
        let rows = f.index.norms.len();
        let norms = match lists.iter().any(|l| l.field == fi && dense_list(l.p.df as usize, rows)) {
            true => NormChecks::new(f.index),
            false => NormChecks::new_unremembered(f.index),
        };
        for l in of_field {
            let dense = norms.dense(l.p.df as usize);
            for b in 0..l.p.nblocks {
                l.p.decode(b, &mut blk)?;
                norms.refresh();
                for i in 0..blk.len {
                    let row = blk.rows[i];
                    hits.push((
                        row,
                        l.ord,
                        l.boost * l.weight.score(&l.cache, norms.of(row, dense), blk.tfs[i]),
                    ));
                }
            }
        }
    }
    let out = rank_parts(&mut hits, ord, k, filter, combine, floor);
    if hits.capacity() <= 1 << 16 {
        FEW_HITS.with(|h| *h.borrow_mut() = hits);
    }
    Ok(Some(out))
}

/// Calls `each` with every block meta of `p`, checking that the blocks' last rows increase and
/// stay within the section's `rows` (a list claiming rows past them is damaged, and would make
/// the windowed search walk empty windows up to it).
fn for_each_meta(p: &Postings<'_>, rows: usize, mut each: impl FnMut(&BlockMeta)) -> Result<(), IndexError> {
    let mut prev: Option<u32> = None;
    for b in 0..p.nblocks {
        let m = p.meta(b)?;
        if prev.is_some_and(|p| m.last_row <= p) {
            return Err(corrupt("block rows not increasing"));
        }
        if m.last_row as usize >= rows {
            return Err(corrupt("block row outside the section's rows"));
        }
        prev = Some(m.last_row);
        each(&m);
    }
    Ok(())
}

/// Scores unindexed rows exhaustively with the same formula, quantisation and
/// summation order as the index: `(row, text)` pairs in, every row with a
/// positive score out (unsorted). `terms` are analyzed query terms (repeats weigh more).
pub fn score_documents<'d>(
    terms: &[String],
    docs: impl IntoIterator<Item = (u32, &'d str)>,
    analyzer: &Analyzer,
    global: &CorpusStats,
    params: Bm25Params,
) -> Vec<(u32, f32)> {
    let cache = global.norm_cache(params);
    let terms = term_counts(terms);
    let weights: Vec<Bm25Weight> = terms.iter().map(|(t, c)| global.weight(t, *c, params)).collect();
    let slot: HashMap<&str, usize> = terms.iter().enumerate().map(|(i, (t, _))| (*t, i)).collect();
    let mut out = Vec::new();
    let mut tfs = vec![0u32; terms.len()];
    for (row, text) in docs {
        tfs.iter_mut().for_each(|x| *x = 0);
        let mut len = 0u32;
        analyzer.for_each_token(text, |tok| {
            len = len.saturating_add(1);
            if let Some(&i) = slot.get(tok) {
                tfs[i] += 1;
            }
        });
        if let Some(s) = score_tfs(&tfs, len, &weights, &cache) {
            out.push((row, s));
        }
    }
    out
}

/// The score of a row from its per-term counts and token count (None when no term occurs).
pub fn score_tfs(tfs: &[u32], len: u32, weights: &[Bm25Weight], cache: &NormCache) -> Option<f32> {
    let norm = fieldnorm_to_id(len);
    let mut score = 0f32;
    let mut hit = false;
    for (w, &tf) in weights.iter().zip(tfs) {
        if tf > 0 {
            hit = true;
            score += w.score(cache, norm, tf);
        }
    }
    hit.then_some(score)
}
