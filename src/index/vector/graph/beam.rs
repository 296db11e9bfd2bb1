//! The greedy beam search the graph's build and its searches share ([`beam`]), and the per-thread
//! state it reuses ([`BeamScratch`]: the visited set, heaps and lists).
//!
//! Invariant: what the beam prefetches (a queued row's links, a fresh row's code and norm), how
//! the visited set stores its marks (a byte a row, cleared every 255 searches), which scored
//! entries it queues (only those it can expand: [`keep_starts`]) and what an earlier search left
//! in the scratch only change the speed of a search, never its answer: the same rows and f32
//! bits as a search without them.

use super::super::Ranked;
use std::collections::BinaryHeap;

/// What [`beam`] asks its caller to start loading: the beam knows that it will read a row's code
/// or links a little before it does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Prefetch {
    /// Row `u` passed the visited filter: its code is estimated next.
    Code,
    /// Row `u` entered the candidate queue: its neighbour list is read if it is expanded.
    Links,
}

/// Beam search over an adjacency accessor from `entries` (the first is the graph's entry; the
/// rest, seeds spread over the rows, start the beam in regions the entry is far from); returns up
/// to `ef` (distance, row) ascending. `prefetch` only hints the memory system: the result does
/// not depend on it (a hop's first touch of a neighbour list was a cache miss, about a quarter
/// of the search's own time on 8-d rows: BENCHMARKS "stop 48").
pub(super) fn beam(
    entries: &[u32],
    ef: usize,
    state: (&mut BeamScratch, Option<u32>),
    mut dist: impl FnMut(u32) -> f32,
    mut neighbors: impl FnMut(u32, &mut Vec<u32>),
    prefetch: impl Fn(Prefetch, u32),
    accept: &dyn Fn(u32) -> bool,
) -> Vec<Ranked> {
    let (scratch, hidden) = state;
    let BeamScratch { visited, cand, res, nb, scored, accepted } = scratch.cleared();
    // A hidden row is never entered (calibration hides the stored row it queries with), unless
    // it is the graph's entry: a search must start somewhere.
    if let Some(h) = hidden.filter(|h| entries.first() != Some(h)) {
        visited.insert(h);
    }
    nb.extend(entries.iter().copied().filter(|&e| visited.insert(e)));
    nb.iter().for_each(|&e| prefetch(Prefetch::Code, e));
    scored.extend(nb.iter().map(|&e| Ranked(dist(e), e)));
    keep_starts(scored, ef, accept, accepted);
    for &r in scored.iter() {
        enqueue(r, ef, (cand, res), &prefetch, accept);
    }
    while let Some(std::cmp::Reverse(c)) = cand.pop() {
        if res.len() >= ef && res.peek().is_some_and(|w| c.0 > w.0) {
            break;
        }
        nb.clear();
        neighbors(c.1, nb);
        visited.keep_fresh(nb);
        nb.iter().for_each(|&u| prefetch(Prefetch::Code, u));
        for &u in nb.iter() {
            let d = dist(u);
            let worst = res.peek().map_or(f32::INFINITY, |w| w.0);
            if res.len() < ef || d < worst {
                enqueue(Ranked(d, u), ef, (cand, res), &prefetch, accept);
            }
        }
    }
    let mut v: Vec<Ranked> = res.drain().collect();
    v.sort_unstable();
    v
}

/// Queues scored row `r` for expansion (its links prefetched) and, when `accept`ed, keeps it
/// among the `ef` nearest results.
#[inline(always)]
fn enqueue(
    r: Ranked,
    ef: usize,
    (cand, res): (&mut BinaryHeap<std::cmp::Reverse<Ranked>>, &mut BinaryHeap<Ranked>),
    prefetch: &impl Fn(Prefetch, u32),
    accept: &dyn Fn(u32) -> bool,
) {
    prefetch(Prefetch::Links, r.1);
    cand.push(std::cmp::Reverse(r));
    if accept(r.1) {
        res.push(r);
        if res.len() > ef {
            res.pop();
        }
    }
}

/// Keeps the scored entries a beam can expand: all of them, unless at least `ef` are accepted;
/// then those no farther than the `ef`-th nearest accepted one (ties kept). The beam stops at
/// the first candidate farther than its `ef`-th result, which is never farther than that
/// entry, so the others were scored, marked visited and never expanded: leaving them out of
/// the heaps (and their neighbour lists unloaded) gives the same search. On 8-d rows a
/// narrow beam is about as long as the seeds' list, whose heap pushes and link prefetches
/// were a large share of it. `accepted` is scratch.
fn keep_starts(scored: &mut Vec<Ranked>, ef: usize, accept: &dyn Fn(u32) -> bool, accepted: &mut Vec<f32>) {
    if scored.len() <= ef {
        return;
    }
    accepted.extend(scored.iter().filter(|r| accept(r.1)).map(|r| r.0));
    let nth = ef.max(1);
    if accepted.len() < nth {
        return;
    }
    let limit = *accepted.select_nth_unstable_by(nth - 1, f32::total_cmp).1;
    scored.retain(|r| r.0.total_cmp(&limit).is_le());
}

/// A thread's reusable state for [`beam`]: its visited set, and the heaps and lists a search
/// fills, cleared (not freed) by the next search. Allocating them per search was 3–5 % of an
/// 8-d search at ef 10 (BENCHMARKS "stop 72").
pub(super) struct BeamScratch {
    visited: Visited,
    cand: BinaryHeap<std::cmp::Reverse<Ranked>>,
    res: BinaryHeap<Ranked>,
    nb: Vec<u32>,
    scored: Vec<Ranked>,
    accepted: Vec<f32>,
}

impl BeamScratch {
    /// State for searches over `n` rows.
    pub(super) fn new(n: usize) -> Self {
        BeamScratch {
            visited: Visited::new(n),
            cand: BinaryHeap::new(),
            res: BinaryHeap::new(),
            nb: Vec::with_capacity(64),
            scored: Vec::new(),
            accepted: Vec::new(),
        }
    }

    /// Rows the visited set covers.
    pub(super) fn rows(&self) -> usize {
        self.visited.stamp.len()
    }

    /// Every list empty and a fresh visited epoch: what a new search starts from.
    fn cleared(&mut self) -> &mut Self {
        self.visited.next();
        self.cand.clear();
        self.res.clear();
        self.nb.clear();
        self.scored.clear();
        self.accepted.clear();
        self
    }
}

/// Epoch-stamped visited set: a byte a row (a 30k-row segment's stamps fit in L1; 4-byte stamps
/// sat in L2 and the filter was a fifth of the search's own time), cleared every 255 searches.
pub(super) struct Visited {
    stamp: Vec<u8>,
    epoch: u8,
}

impl Visited {
    pub(super) fn new(n: usize) -> Self {
        Visited { stamp: vec![0; n], epoch: 0 }
    }
    pub(super) fn next(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.epoch = 1;
        }
    }
    /// Keeps the rows of `ids` not visited yet, in order, and marks them (as [`Visited::insert`]
    /// on each in turn). Without a branch on the stamp: whether a neighbour was seen is a coin
    /// flip the predictor misses, and `retain` spent a quarter of the search's own time there.
    pub(super) fn keep_fresh(&mut self, ids: &mut Vec<u32>) {
        let mut kept = 0;
        for i in 0..ids.len() {
            let u = ids[i];
            let fresh = match self.stamp.get_mut(u as usize) {
                Some(s) => std::mem::replace(s, self.epoch) != self.epoch,
                None => false,
            };
            ids[kept] = u;
            kept += usize::from(fresh);
        }
        ids.truncate(kept);
    }

    /// True when `u` was not visited yet (and marks it); out-of-range ids count as visited.
    #[inline]
    pub(super) fn insert(&mut self, u: u32) -> bool {
        match self.stamp.get_mut(u as usize) {
            Some(s) if *s != self.epoch => {
                *s = self.epoch;
                true
            }
            _ => false,
        }
    }
}
