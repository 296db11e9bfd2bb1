//! One window of the pruned search ([`super::search_fields_above`]): block-max MaxScore over
//! `WINDOW` rows. Each list's bound on the window (the largest bound of its blocks meeting it)
//! splits the lists: the non-essential ones (lowest bounds, together at most the threshold θ)
//! cannot lift a row above θ alone, so only the essential ones produce candidates; a candidate
//! is first bounded by the non-essential lists' block bounds over its 128-row stretch, then
//! probes them, highest bound first, while it can still pass θ.
//!
//! Invariants:
//! - Every row that can score above θ (the pruning threshold, with its rounding slack) is a
//!   candidate and is scored exactly; any other row is dropped without being scored whole.
//! - A row's score is `combine` of its parts by unit, taken once all its parts are known, so it
//!   has the exhaustive evaluation's bits whatever order the pruning read them in.
//! - The window buffers ([`Scratch`]) and the candidate's parts are all zero between windows:
//!   every slot written is cleared when its row is visited.

use super::*;

/// The window's buffers, kept per thread between searches ([`Scratch::take`]): approximate
/// partial sums by row (pruning), the essential lists' exact parts by (row, essential list), and
/// a bitset of the rows they touched, so candidates are visited in row order.
/// Invariant: a kept buffer is all zero (a search that returns early, by an error, drops its own).
#[derive(Default)]
pub(super) struct Scratch {
    sums: Vec<f32>,
    contrib: Vec<f32>,
    touched: Vec<u64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Above this many floats a window's buffers are not kept for the next search (a query of
/// hundreds of lists).
const SCRATCH_MAX_FLOATS: usize = 1 << 20;

impl Scratch {
    /// Zeroed buffers for windows of `w` rows and up to `lists` essential lists. Kept per thread:
    /// a long query's buffer is `WINDOW × lists` floats (a megabyte at 60 lists), which
    /// allocating and zeroing per segment cost more than a rare-word search's whole work.
    pub(super) fn take(w: usize, lists: usize) -> Scratch {
        let mut s = SCRATCH.with(|c| std::mem::take(&mut *c.borrow_mut()));
        s.sums.resize(w, 0.0);
        s.contrib.resize(w * lists, 0.0);
        s.touched.resize(w / 64, 0);
        s
    }

    pub(super) fn give_back(self) {
        if self.contrib.len() <= SCRATCH_MAX_FLOATS {
            SCRATCH.with(|c| *c.borrow_mut() = self);
        }
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
    /// The essential lists that can add anything (positive bound), in `order`: list `e` of them
    /// keeps its parts at `contrib[off * ess.len() + e]`.
    ess: Vec<usize>,
    /// Their units (`TermCursor::ord`), alike.
    ess_units: Vec<usize>,
    /// Per stretch of [`STRETCH`] rows of the window: the non-essential lists' bounds there summed
    /// (each list's the largest of its blocks meeting the stretch), at most `prefix[ne]`.
    stretch: Vec<f32>,
    /// One list's bound per stretch, while `stretch` is summed.
    one: Vec<f32>,
    /// One candidate's parts by unit; zero between candidates.
    parts: Vec<f32>,
    /// The units of `parts` the candidate's probes wrote.
    probed: Vec<usize>,
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
            ess_units: Vec::with_capacity(lists),
            stretch: vec![0.0; STRETCHES],
            one: vec![0.0; STRETCHES],
            parts: vec![0.0; units],
            probed: Vec::with_capacity(lists),
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
        self.ess_units.clear();
        self.ess_units.extend(self.ess.iter().map(|&i| cursors[i].ord));
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
        let stride = self.ess.len();
        // In f64, so that "every other list" costs one subtraction, not a pass per list.
        let total64: f64 = self.bounds.iter().map(|&b| f64::from(b)).sum();
        let mut e = stride;
        for j in (self.ne..self.order.len()).rev() {
            let i = self.order[j];
            if self.bounds[i] <= 0.0 {
                continue;
            }
            e -= 1;
            let pass = Floors {
                all: (f64::from(theta) - (total64 - f64::from(self.bounds[i]))) as f32,
                new_rows: theta - self.prefix[j],
            };
            cursors[i].score_window(caches, buf, (self.start, self.end), pass, (stride, e))?;
        }
        Ok(())
    }

    /// Visits the rows the essential lists touched, in row order (ties rank by row, so the order
    /// matters for `> θ`), clearing their slots; a row whose essential parts and the
    /// non-essential bounds can pass θ probes the non-essential lists and, if it still can, is
    /// scored and offered to `top`.
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
        let Scratch { sums, contrib, touched } = buf;
        let stride = self.ess.len();
        let mut theta_now = theta;
        for (wi, slot) in touched.iter_mut().enumerate() {
            let mut word = std::mem::take(slot);
            while word != 0 {
                let off = wi * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                let row = self.start + off as u32;
                let partial = std::mem::take(&mut sums[off]);
                let slots = &mut contrib[off * stride..(off + 1) * stride];
                let rest = self.stretch[off >> STRETCH_LOG2];
                if partial + rest <= theta_now || filter.is_some_and(|f| !f(row)) {
                    slots.fill(0.0);
                    continue;
                }
                // Most candidates stop at a probe: the essential parts are gathered only for a
                // row that passes them all (a gather per candidate cost more than the probes).
                if self.probe(cursors, caches, row, partial, theta_now)? {
                    for (&u, x) in self.ess_units.iter().zip(slots.iter_mut()) {
                        self.parts[u] = std::mem::take(x);
                    }
                    top.push(row, combine.score(&self.parts));
                    theta_now = prune_threshold(top.threshold()).max(seed);
                    self.parts.fill(0.0);
                } else {
                    slots.fill(0.0);
                    self.probed.drain(..).for_each(|u| self.parts[u] = 0.0);
                }
                self.probed.clear();
            }
        }
        Ok(())
    }

    /// Adds the non-essential lists' parts of `row` to `parts`, highest bound first, while the
    /// row can still pass `theta`; whether its parts then pass it.
    fn probe(
        &mut self,
        cursors: &mut [TermCursor<'_>],
        caches: &[NormCache],
        row: u32,
        mut partial: f32,
        theta: f32,
    ) -> Result<bool, IndexError> {
        for j in (0..self.ne).rev() {
            if partial + self.prefix[j + 1] <= theta {
                return Ok(false);
            }
            let i = self.order[j];
            if self.bounds[i] <= 0.0 {
                continue;
            }
            let c = &mut cursors[i];
            // The block that may hold the row bounds this list's part more tightly than its
            // window bound: decoded only when that bound can still lift the row above theta.
            match c.block_of(row) {
                None => continue,
                Some(b) if partial + self.prefix[j] + c.block_scores[b] <= theta => return Ok(false),
                Some(_) => {}
            }
            if c.advance(row)? == Some(row) {
                let s = c.score_here(caches);
                self.parts[c.ord] = s;
                self.probed.push(c.ord);
                partial += s;
            }
        }
        // Only a row whose parts pass θ can enter; one that lacks a part never does (see
        // `score_essential`).
        Ok(partial > theta)
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
    /// Scores this essential list's rows in the window `start..=end` into `buf` (slot `e` of
    /// `stride` per row), passing blocks under `floors` ([`Window::score_essential`]). Starts
    /// from the shallow pointer ([`Window::plan`] moved it to `start`); leaves the cursor on the
    /// last block it decoded, before its first row past the window, as `advance` expects.
    fn score_window(
        &mut self,
        caches: &[NormCache],
        buf: &mut Scratch,
        (start, end): (u32, u32),
        floors: Floors,
        (stride, e): (usize, usize),
    ) -> Result<(), IndexError> {
        let Scratch { sums, contrib, touched } = buf;
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
                        contrib[off * stride + e] = s;
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

    /// Block `b` decoded into `blk` (kept when it already is; the cursor never goes back).
    fn load(&mut self, b: usize) -> Result<(), IndexError> {
        if self.blk_idx != b {
            self.p.decode(b, &mut self.blk)?;
            self.norms.refresh();
            self.blk_idx = b;
            self.pos = 0;
        }
        Ok(())
    }
}
