//! One window of the pruned search ([`super::search_fields_above`]): block-max MaxScore over
//! `WINDOW` rows. Each list's bound on the window (the largest bound of its blocks meeting it)
//! splits the lists: the non-essential ones (lowest bounds, together at most the threshold θ)
//! cannot lift a row above θ alone, so only the essential ones produce candidates; a candidate
//! is first bounded by the non-essential lists' block bounds over its 128-row stretch, then the
//! non-essential lists add their parts list at a time, highest bound first, to the candidates
//! that can still pass θ (a list is probed at each candidate's row, or walked over its own rows
//! in the window when it is expected to hold fewer of them than there are candidates).
//!
//! Invariants:
//! - Every row that can score above θ (the pruning threshold, with its rounding slack) is a
//!   candidate and is scored exactly; any other row is dropped without being scored whole.
//! - A row's score is `combine` of its parts by unit, taken once all its parts are known (the
//!   essential lists' read again at the row: [`TermCursor::part_of`]), so it has the exhaustive
//!   evaluation's bits whatever order the pruning read them in.
//! - The window buffers ([`Scratch`]), the candidate's parts and the candidate bitset are all
//!   zero between windows: a touched row's sum and bit are taken when the candidates are
//!   gathered, a candidate's bit cleared when it is dropped or the window is done.

use super::*;

/// The window's buffers, kept per thread between searches ([`Scratch::take`]): the essential
/// lists' parts summed by row (pruning), and a bitset of the rows they touched, so candidates are
/// visited in row order. The parts themselves are not kept: the few rows that pass θ read them
/// again ([`TermCursor::part_of`]), which costs less than storing every part of every touched row
/// and clearing the slots of the many that are dropped.
/// Invariant: a kept buffer is all zero (a search that returns early, by an error, drops its own).
#[derive(Default)]
pub(super) struct Scratch {
    sums: Vec<f32>,
    touched: Vec<u64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl Scratch {
    /// Zeroed buffers for windows of `w` rows, kept per thread (allocating and zeroing them per
    /// segment would cost more than a rare-word search's whole work).
    pub(super) fn take(w: usize) -> Scratch {
        let mut s = SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
        s.sums.resize(w, 0.0);
        s.touched.resize(w / 64, 0);
        s
    }

    pub(super) fn give_back(self) {
        SCRATCH.with(|c| *c.borrow_mut() = self);
    }
}

/// What the search knows of the current window: the lists' bounds, their order and split.
pub(super) struct Window {
    /// Rows `start..=end`.
    start: u32,
    end: u32,
    /// Per cursor: the largest bound of its blocks meeting the window.
    bounds: Vec<f32>,
    /// Cursor indices by ascending bound.
    order: Vec<usize>,
    /// `prefix[j]`: the bounds of `order[..j]` summed (in f32, ascending).
    prefix: Vec<f32>,
    /// `order[..ne]` are the non-essential lists.
    ne: usize,
    /// The essential lists that can add anything (positive bound), in `order`.
    ess: Vec<usize>,
    /// Per cursor: the block [`TermCursor::part_of`] decoded last for it (`usize::MAX`: none),
    /// sized on the search's first scored row (a search that scores none allocates none).
    reread: Vec<(usize, DecodedBlock)>,
    /// Per stretch of [`STRETCH`] rows of the window: the non-essential lists' bounds there summed
    /// (each list's the largest of its blocks meeting the stretch), at most `prefix[ne]`.
    stretch: Vec<f32>,
    /// One list's bound per stretch, while `stretch` is summed.
    one: Vec<f32>,
    /// One candidate's parts by unit; zero between candidates.
    parts: Vec<f32>,
    /// The window's candidates while the non-essential lists are probed list by list
    /// ([`Window::visit_candidates`]).
    cands: Vec<Cand>,
    /// The parts those probes found: (previous part of the same candidate or `NO_PART`, unit,
    /// part), chained from [`Cand::last`].
    found: Vec<(u32, u32, f32)>,
    /// Per row of the window: whether it is a candidate, from the first list walked
    /// ([`Window::accumulate_list`]) until the candidates are scored; zero otherwise.
    live: Vec<u64>,
    /// Per row of the window: its index in `cands` while `live` says it is one.
    cand_of: Vec<u32>,
}

/// A row of the window that can still pass θ while the non-essential lists are probed in bulk.
#[derive(Clone, Copy)]
struct Cand {
    off: u32,
    /// Its parts found so far, summed.
    partial: f32,
    /// Its last part in `Window::found` (`NO_PART`: none yet).
    last: u32,
}

const NO_PART: u32 = u32::MAX;

impl Cand {
    /// Chains a list's part `s` (of unit `ord`) onto this candidate's parts in `found`.
    fn add_part(&mut self, found: &mut Vec<(u32, u32, f32)>, ord: u32, s: f32) {
        found.push((self.last, ord, s));
        self.last = (found.len() - 1) as u32;
        self.partial += s;
    }
}

impl Window {
    pub(super) fn new(lists: usize, units: usize) -> Self {
        Window {
            start: 0,
            end: 0,
            bounds: vec![0.0; lists],
            order: (0..lists).collect(),
            prefix: vec![0.0; lists + 1],
            ne: 0,
            ess: Vec::with_capacity(lists),
            reread: Vec::new(),
            stretch: vec![0.0; STRETCHES],
            one: vec![0.0; STRETCHES],
            parts: vec![0.0; units],
            cands: Vec::new(),
            found: Vec::new(),
            live: vec![0; WINDOW as usize / 64],
            cand_of: vec![0; WINDOW as usize],
        }
    }

    /// Bounds the lists over rows `start..=end` and splits them under `theta`; false when their
    /// bounds together cannot pass `theta` (the window holds no row that can enter).
    pub(super) fn plan(&mut self, cursors: &mut [TermCursor<'_>], start: u32, end: u32, theta: f32) -> bool {
        (self.start, self.end) = (start, end);
        let mut total = 0f32;
        for (i, c) in cursors.iter_mut().enumerate() {
            c.shallow_advance(start);
            self.bounds[i] = c.window_bound(end);
            total += self.bounds[i];
        }
        if total <= theta {
            return false;
        }
        let bounds = &self.bounds;
        self.order.sort_by(|&a, &b| bounds[a].total_cmp(&bounds[b]));
        for j in 0..self.order.len() {
            self.prefix[j + 1] = self.prefix[j] + bounds[self.order[j]];
        }
        self.ne = self.prefix[1..].iter().take_while(|&&p| p <= theta).count();
        self.ess.clear();
        self.ess.extend(self.order[self.ne..].iter().copied().filter(|&i| bounds[i] > 0.0));
        self.bound_stretches(cursors);
        true
    }

    /// Fills `stretch`: per [`STRETCH`] rows, the sum over the non-essential lists of their
    /// largest block bound there (a row's part in a list is at most its block's bound, and its
    /// block meets the row's stretch). Lists are added in `order`, as `prefix` adds them.
    fn bound_stretches(&mut self, cursors: &[TermCursor<'_>]) {
        self.stretch.fill(0.0);
        for &i in &self.order[..self.ne] {
            if self.bounds[i] <= 0.0 {
                continue;
            }
            self.one.fill(0.0);
            let c = &cursors[i];
            let mut b = c.shallow;
            while b < c.last_rows.len() {
                let first = if b == 0 { 0 } else { c.last_rows[b - 1].saturating_add(1) };
                if first > self.end {
                    break;
                }
                let lo = ((first.max(self.start) - self.start) >> STRETCH_LOG2) as usize;
                let hi = ((c.last_rows[b].min(self.end) - self.start) >> STRETCH_LOG2) as usize;
                for x in &mut self.one[lo..=hi] {
                    *x = x.max(c.block_scores[b]);
                }
                if c.last_rows[b] >= self.end {
                    break;
                }
                b += 1;
            }
            for (s, x) in self.stretch.iter_mut().zip(&self.one) {
                *s += *x;
            }
        }
    }

    /// Scores the essential lists term at a time over the window into `buf`, highest bound
    /// first. Two bounds let a list pass blocks (θ only rises, so what cannot pass it now never
    /// will):
    /// - a block whose bound plus every other list's window bound stays at or below θ holds no
    ///   row that can enter: it is not decoded;
    /// - a block whose bound plus the bounds of the lists after this one (lower bounds: the
    ///   essential lists still to come and the non-essential ones) stays at or below θ cannot
    ///   lift a row no list before it touched: only its rows already touched are scored, and
    ///   the block is not decoded when none is.
    ///
    /// A row left without a part either way scores at most θ whatever it holds (the highest
    /// list that passed it bounds it with every list below), so it is never kept: its partial
    /// score stays at or below θ and `visit_candidates` requires more.
    pub(super) fn score_essential(
        &self,
        cursors: &mut [TermCursor<'_>],
        caches: &[NormCache],
        buf: &mut Scratch,
        theta: f32,
    ) -> Result<(), IndexError> {
        // In f64, so that "every other list" costs one subtraction, not a pass per list.
        let total64: f64 = self.bounds.iter().map(|&b| f64::from(b)).sum();
        for j in (self.ne..self.order.len()).rev() {
            let i = self.order[j];
            if self.bounds[i] <= 0.0 {
                continue;
            }
            let pass = Floors {
                all: (f64::from(theta) - (total64 - f64::from(self.bounds[i]))) as f32,
                new_rows: theta - self.prefix[j],
            };
            cursors[i].score_window(caches, buf, (self.start, self.end), pass)?;
        }
        Ok(())
    }

    /// Visits the rows the essential lists touched, list at a time (Lucene's MaxScore bulk
    /// scorer), clearing their sums: the rows whose essential parts and stretch bound can pass θ
    /// are gathered in row order; then each non-essential list, highest bound first, adds its
    /// part to the rows still able to pass θ with it and the lists below it (probed row by row,
    /// or, for a list expected to hold fewer of the window's rows than there are candidates,
    /// walked over its rows); a row whose parts then pass the k-th score is scored — its
    /// essential parts read again — and offered to `top`. One list's blocks are walked once per
    /// window, not once per candidate.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn visit_candidates(
        &mut self,
        cursors: &mut [TermCursor<'_>],
        caches: &[NormCache],
        buf: &mut Scratch,
        theta: f32,
        seed: f32,
        filter: Option<&dyn Fn(u32) -> bool>,
        combine: Combine<'_>,
        top: &mut TopK,
    ) -> Result<(), IndexError> {
        self.gather(buf, theta, filter);
        let mut live = false;
        for j in (0..self.ne).rev() {
            if self.cands.is_empty() {
                break;
            }
            let c = &cursors[self.order[j]];
            let rows = c.norms.norms.len().max(1) as u64;
            let in_window = u64::from(c.p.df) * u64::from(self.end - self.start + 1) / rows;
            if in_window < self.cands.len() as u64 {
                if !live {
                    self.mark_live();
                    live = true;
                }
                self.accumulate_list(cursors, caches, j)?;
            } else {
                self.probe_list(cursors, caches, j, theta)?;
            }
        }
        if live {
            for cand in &self.cands {
                self.live[(cand.off >> 6) as usize] = 0;
            }
        }
        self.score_candidates(cursors, caches, theta, seed, combine, top)
    }

    /// Takes the rows the essential lists touched out of `buf` (leaving it zero) and keeps as
    /// candidates, in row order, those whose parts so far and stretch bound can pass `theta` and
    /// that pass `filter`.
    fn gather(&mut self, buf: &mut Scratch, theta: f32, filter: Option<&dyn Fn(u32) -> bool>) {
        let Scratch { sums, touched } = buf;
        self.cands.clear();
        self.found.clear();
        for (wi, slot) in touched.iter_mut().enumerate() {
            let mut word = std::mem::take(slot);
            while word != 0 {
                let off = wi * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let partial = std::mem::take(&mut sums[off]);
                let row = self.start + off as u32;
                if partial + self.stretch[off >> STRETCH_LOG2] <= theta || filter.is_some_and(|f| !f(row)) {
                    continue;
                }
                self.cands.push(Cand { off: off as u32, partial, last: NO_PART });
            }
        }
    }

    /// Marks every candidate in `live`, with its index in `cand_of` ([`Self::probe_list`] keeps
    /// both as it drops candidates).
    fn mark_live(&mut self) {
        for (x, cand) in self.cands.iter().enumerate() {
            let off = cand.off as usize;
            self.live[off >> 6] |= 1u64 << (off & 63);
            self.cand_of[off] = x as u32;
        }
    }

    /// Scores the candidates whose parts pass the k-th score (below `theta` and `seed` nothing
    /// enters) and offers them to `top`: a row's parts are its essential lists' read again at
    /// the row and the non-essential parts found for it.
    fn score_candidates(
        &mut self,
        cursors: &[TermCursor<'_>],
        caches: &[NormCache],
        theta: f32,
        seed: f32,
        combine: Combine<'_>,
        top: &mut TopK,
    ) -> Result<(), IndexError> {
        let mut theta_now = theta;
        for ci in 0..self.cands.len() {
            let Cand { off, partial, mut last } = self.cands[ci];
            // Only a row whose parts pass θ can enter; one that lacks a part never does.
            if partial <= theta_now {
                continue;
            }
            let row = self.start + off;
            if self.reread.len() < cursors.len() {
                self.reread.resize_with(cursors.len(), || (usize::MAX, DecodedBlock::default()));
            }
            for &i in &self.ess {
                let c = &cursors[i];
                if let Some(s) = c.part_of(caches, row, &mut self.reread[i])? {
                    self.parts[c.ord] = s;
                }
            }
            while last != NO_PART {
                let (prev, unit, s) = self.found[last as usize];
                self.parts[unit as usize] = s;
                last = prev;
            }
            top.push(row, combine.score(&self.parts));
            theta_now = prune_threshold(top.threshold()).max(seed);
            self.parts.fill(0.0);
        }
        Ok(())
    }

    /// Probes the non-essential list at position `j` of the bound order for every candidate that
    /// can still pass `theta` with it and the lists below it, dropping the others (their `live`
    /// bits cleared, the kept ones' `cand_of` updated): the block that may hold the row bounds
    /// the list's part more tightly than its window bound, and is decoded only when that bound
    /// can still lift the row above `theta`.
    fn probe_list(
        &mut self,
        cursors: &mut [TermCursor<'_>],
        caches: &[NormCache],
        j: usize,
        theta: f32,
    ) -> Result<(), IndexError> {
        let (with, without) = (self.prefix[j + 1], self.prefix[j]);
        let i = self.order[j];
        let probes = self.bounds[i] > 0.0;
        let c = &mut cursors[i];
        let mut kept = 0;
        for x in 0..self.cands.len() {
            let mut cand = self.cands[x];
            let row = self.start + cand.off;
            let alive = if cand.partial + with <= theta {
                false
            } else if !probes {
                true
            } else {
                match c.block_of(row) {
                    None => true,
                    Some(b) if cand.partial + without + c.block_scores[b] <= theta => false,
                    Some(b) => {
                        if c.advance_in(b, row)? {
                            cand.add_part(&mut self.found, c.ord as u32, c.score_here(caches));
                        }
                        true
                    }
                }
            };
            let off = cand.off as usize;
            if alive {
                self.cands[kept] = cand;
                self.cand_of[off] = kept as u32;
                kept += 1;
            } else {
                self.live[off >> 6] &= !(1u64 << (off & 63));
            }
        }
        self.cands.truncate(kept);
        Ok(())
    }

    /// [`Self::probe_list`] for a list expected to hold fewer rows of the window than there are
    /// candidates: the list's rows in the window are walked and each candidate among them (its
    /// `live` bit set) gets its part; a block holding no candidate is not decoded. No candidate
    /// is dropped here (the next probe or the scoring tests them).
    fn accumulate_list(
        &mut self,
        cursors: &mut [TermCursor<'_>],
        caches: &[NormCache],
        j: usize,
    ) -> Result<(), IndexError> {
        let i = self.order[j];
        let c = &mut cursors[i];
        let mut b = c.shallow;
        while self.bounds[i] > 0.0 && b < c.last_rows.len() {
            let first = if b == 0 { 0 } else { c.last_rows[b - 1].saturating_add(1) };
            if first > self.end {
                break;
            }
            let (lo, hi) = (
                (first.max(self.start) - self.start) as usize,
                (c.last_rows[b].min(self.end) - self.start) as usize,
            );
            if any_set(&self.live, lo, hi) {
                c.load(b)?;
                let mut p = c.pos;
                while p < c.blk.len && c.blk.rows[p] < self.start {
                    p += 1;
                }
                while p < c.blk.len && c.blk.rows[p] <= self.end {
                    let off = (c.blk.rows[p] - self.start) as usize;
                    if self.live[off >> 6] & (1u64 << (off & 63)) != 0 {
                        let s = c.score_at(caches, p);
                        self.cands[self.cand_of[off] as usize].add_part(&mut self.found, c.ord as u32, s);
                    }
                    p += 1;
                }
                c.pos = p.min(c.blk.len - 1);
            }
            if c.last_rows[b] >= self.end {
                break;
            }
            b += 1;
        }
        Ok(())
    }
}

/// A window's rows are bounded by the non-essential lists in stretches of `2^STRETCH_LOG2` rows
/// ([`Window::bound_stretches`]): a candidate is first tested against its stretch's bound, which
/// is tighter than the window's, before any probe.
const STRETCH_LOG2: u32 = 7;
const STRETCHES: usize = (WINDOW as usize) >> STRETCH_LOG2;

/// Block bounds at or below which an essential list passes a block ([`Window::score_essential`]).
#[derive(Clone, Copy)]
struct Floors {
    /// Nothing in the block can enter.
    all: f32,
    /// Only rows already touched can.
    new_rows: f32,
}

/// Whether any bit `lo..=hi` of `bits` is set.
fn any_set(bits: &[u64], lo: usize, hi: usize) -> bool {
    let (lw, hw) = (lo >> 6, hi >> 6);
    let low_mask = !0u64 << (lo & 63);
    let high_mask = !0u64 >> (63 - (hi & 63));
    if lw == hw {
        return bits[lw] & low_mask & high_mask != 0;
    }
    bits[lw] & low_mask != 0 || bits[lw + 1..hw].iter().any(|&w| w != 0) || bits[hw] & high_mask != 0
}

impl TermCursor<'_> {
    /// Adds this essential list's parts of its rows in the window `start..=end` to `buf`, passing
    /// blocks under `floors` ([`Window::score_essential`]). Starts
    /// from the shallow pointer ([`Window::plan`] moved it to `start`); leaves the cursor on the
    /// last block it decoded, before its first row past the window, as `advance` expects.
    fn score_window(
        &mut self,
        caches: &[NormCache],
        buf: &mut Scratch,
        (start, end): (u32, u32),
        floors: Floors,
    ) -> Result<(), IndexError> {
        let Scratch { sums, touched } = buf;
        let mut b = self.shallow;
        while b < self.last_rows.len() {
            let first = if b == 0 { 0 } else { self.last_rows[b - 1].saturating_add(1) };
            if first > end {
                break;
            }
            let bound = self.block_scores[b];
            let (lo, hi) =
                ((first.max(start) - start) as usize, (self.last_rows[b].min(end) - start) as usize);
            let touched_only = bound <= floors.new_rows;
            if bound > floors.all && (!touched_only || any_set(touched, lo, hi)) {
                self.load(b)?;
                let mut p = self.pos;
                while p < self.blk.len && self.blk.rows[p] < start {
                    p += 1;
                }
                while p < self.blk.len && self.blk.rows[p] <= end {
                    let off = (self.blk.rows[p] - start) as usize;
                    let (word, bit) = (off >> 6, 1u64 << (off & 63));
                    if !touched_only || touched[word] & bit != 0 {
                        let s = self.score_at(caches, p);
                        touched[word] |= bit;
                        sums[off] += s;
                    }
                    p += 1;
                }
                self.pos = p.min(self.blk.len - 1);
            }
            if self.last_rows[b] >= end {
                break;
            }
            b += 1;
        }
        Ok(())
    }

    /// Moves to `row` in block `b` ([`Self::block_of`] found it: the first block whose last row
    /// is at or after `row`); whether the list holds `row`.
    fn advance_in(&mut self, b: usize, row: u32) -> Result<bool, IndexError> {
        self.load(b)?;
        while self.blk.rows[self.pos] < row {
            self.pos += 1;
        }
        Ok(self.blk.rows[self.pos] == row)
    }

    /// This list's part of `row` (None when it does not hold it), read from the block the cursor
    /// holds or from `cache`, the block decoded for it last (decoded there when it is another):
    /// the same bits [`Self::score_at`] gives. Leaves the cursor where it is.
    fn part_of(
        &self,
        caches: &[NormCache],
        row: u32,
        cache: &mut (usize, DecodedBlock),
    ) -> Result<Option<f32>, IndexError> {
        let b = self.last_rows.partition_point(|&last| last < row);
        if b == self.last_rows.len() {
            return Ok(None);
        }
        let blk = if b == self.blk_idx {
            &self.blk
        } else {
            if cache.0 != b {
                self.p.decode(b, &mut cache.1)?;
                self.norms.refresh();
                cache.0 = b;
            }
            &cache.1
        };
        let Ok(p) = blk.rows[..blk.len].binary_search(&row) else { return Ok(None) };
        let norm = self.norms.of(row, self.dense);
        Ok(Some(self.boost * self.weight.score(&caches[self.cache], norm, blk.tfs[p])))
    }

    /// Block `b` decoded into `blk` (kept when it already is; the cursor never goes back).
    fn load(&mut self, b: usize) -> Result<(), IndexError> {
        if self.blk_idx != b {
            self.p.decode(b, &mut self.blk)?;
            self.decoded(b);
        }
        Ok(())
    }
}
