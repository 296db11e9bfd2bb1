//! One chunk of the overlay's inverted index (`state/text.rs`): rows with text in seq
//! order, and each term's `(row, tf)` postings by local row number.
//!
//! Invariants:
//! - A chunk is **open** (the tail being filled: a list per term, found by hash, its
//!   terms sorted on the first prefix query that reads it) or **sealed** (its terms in
//!   bytewise order in one buffer, their lists back to back in one vector). Rows are
//!   pushed only into an open chunk; sealing and merging produce sealed chunks, and a
//!   small sealed chunk at the end (a rewrite's) is opened again to take rows.
//! - Sealing and merging walk the terms in order (a merge of sorted runs, like a
//!   segment merge): no hashing, and a handful of allocations per chunk, where one list
//!   and one key per term were built (and later freed) before — at scale, chunk merges
//!   and dropping their term tables were most of the overlay index's write cost.
//! - A list's rows ascend. Its peak (largest tf, smallest fieldnorm id) covers the
//!   rows it was built from, dead ones included, until a merge rewrites it.
//! - `bytes` estimates the chunk's heap (documents are the overlay's, not counted).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::index::text::{fieldnorm_to_id, ValueTokens};
use crate::model::Document;

use super::{Part, TermHasher};

/// Heap bytes counted per term of an open chunk besides its text (key box, vector, map slot).
const OPEN_TERM_BYTES: usize = 64;

/// Heap bytes per term of a sealed chunk besides its text (end, start, peak).
const SEALED_TERM_BYTES: usize = 24;

/// Heap bytes per row of a chunk (seq, document pointer, norm, length).
const ROW_BYTES: usize = 21;

/// Rows with text, in seq order, and their postings by local row number.
#[derive(Clone, Default)]
pub(super) struct Chunk {
    pub(super) seqs: Vec<u64>,
    pub(super) docs: Vec<Arc<Document>>,
    pub(super) norms: Vec<u8>,
    /// Each row's token count (what a removal takes off `total_tokens`).
    pub(super) lens: Vec<u32>,
    terms: Terms,
    pub(super) bytes: usize,
}

#[derive(Clone)]
enum Terms {
    Open(Open),
    Sealed(Sealed),
}

impl Default for Terms {
    fn default() -> Self {
        Terms::Open(Open::default())
    }
}

/// The tail's terms: a list per term, found by hash.
#[derive(Clone, Default)]
struct Open {
    lists: HashMap<Arc<str>, TermList, TermHasher>,
    /// The keys of `lists` in order, once a prefix query (or a rewrite) asked.
    sorted: OnceLock<Vec<Arc<str>>>,
}

/// A term's (row, tf) postings in an open chunk, and their peak.
#[derive(Clone)]
struct TermList {
    rows: Vec<(u32, u32)>,
    max_tf: u32,
    min_norm: u8,
}

/// Terms in bytewise order: term `i` is `text[ends[i - 1]..ends[i]]` (from 0 for the first),
/// its rows `rows[starts[i]..starts[i + 1]]`, its peak `peaks[i]`.
#[derive(Clone)]
struct Sealed {
    text: String,
    ends: Vec<usize>,
    starts: Vec<usize>,
    peaks: Vec<(u32, u8)>,
    rows: Vec<(u32, u32)>,
}

/// One term's postings in a chunk and their peak: the largest tf and the smallest
/// fieldnorm id (dead rows included), what bounds the term's score.
#[derive(Clone, Copy)]
pub(super) struct ListRef<'a> {
    pub(super) rows: &'a [(u32, u32)],
    pub(super) max_tf: u32,
    pub(super) min_norm: u8,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk").field("rows", &self.rows()).field("bytes", &self.bytes).finish()
    }
}

impl Chunk {
    /// Whether rows may still be pushed (the tail).
    pub(super) fn is_open(&self) -> bool {
        matches!(self.terms, Terms::Open(_))
    }

    /// Appends a row with these tokens (not empty). Only into an open chunk.
    pub(super) fn push(&mut self, seq: u64, doc: &Arc<Document>, toks: &ValueTokens) {
        self.seqs.push(seq);
        self.docs.push(doc.clone());
        self.push_postings(toks);
    }

    /// Appends the next row's length and norm; returns its row number.
    fn push_length(&mut self, toks: &ValueTokens) -> u32 {
        let len = u32::try_from(toks.len()).unwrap_or(u32::MAX);
        let row = self.norms.len() as u32;
        self.norms.push(fieldnorm_to_id(len));
        self.lens.push(len);
        row
    }

    /// A sealed chunk of rows with these tokens (each not empty), without their seqs and
    /// documents: built before a write's commit (`state/text_prepared.rs`), given them by
    /// [`Chunk::with_rows`] at the commit.
    ///
    /// Built as one flat list of (term, row, tf) postings and laid out sealed by a counting
    /// sort on the terms' order: no list per term grown and freed, no key copied (the map
    /// borrows the tokens), where pushing row by row grew a list per term and the seal copied
    /// every list again (together 10 % of a 1M ingest's samples, stop 67's profile).
    pub(super) fn prebuilt<'t>(rows: impl Iterator<Item = &'t ValueTokens>) -> Chunk {
        let mut chunk = Chunk::default();
        let mut flat = FlatPostings::default();
        for toks in rows {
            flat.push_row(chunk.push_length(toks), toks);
        }
        chunk.terms = Terms::Sealed(flat.seal(&chunk.norms));
        chunk.bytes = chunk.estimated_bytes();
        chunk
    }

    /// Rows of the chunk.
    pub(super) fn rows(&self) -> usize {
        self.norms.len()
    }

    /// This prebuilt chunk with its rows' seqs (ascending) and documents, one per row.
    pub(super) fn with_rows(self, seqs: Vec<u64>, docs: Vec<Arc<Document>>) -> Chunk {
        debug_assert!(seqs.len() == self.rows() && docs.len() == self.rows() && self.seqs.is_empty());
        let mut chunk = Chunk { seqs, docs, ..self };
        chunk.bytes = chunk.estimated_bytes();
        chunk
    }

    /// The next row's length, norm and postings (its seq and document are the caller's).
    fn push_postings(&mut self, toks: &ValueTokens) {
        let row = self.push_length(toks);
        let norm = self.norms[row as usize];
        let Terms::Open(open) = &mut self.terms else {
            unreachable!("rows are pushed into the open tail only")
        };
        open.sorted.take();
        self.bytes += ROW_BYTES;
        // Counted in place (a repeated token finds its list's last posting is this row):
        // no per-row sort of the tokens.
        for t in toks.iter() {
            let list = match open.lists.get_mut(t) {
                Some(list) => list,
                None => {
                    self.bytes += OPEN_TERM_BYTES + t.len();
                    let fresh = TermList { rows: Vec::new(), max_tf: 0, min_norm: u8::MAX };
                    open.lists.entry(t.into()).or_insert(fresh)
                }
            };
            let tf = match list.rows.last_mut() {
                Some((r, tf)) if *r == row => {
                    *tf += 1;
                    *tf
                }
                _ => {
                    self.bytes += 8;
                    list.rows.push((row, 1));
                    list.min_norm = list.min_norm.min(norm);
                    1
                }
            };
            list.max_tf = list.max_tf.max(tf);
        }
    }

    /// Lays an open chunk's terms out sealed (rows, dead ones and peaks unchanged).
    pub(super) fn seal(&mut self) {
        let Terms::Open(open) = &self.terms else { return };
        let mut out =
            Sealed::with_capacity(open.lists.len(), open.lists.values().map(|l| l.rows.len()).sum());
        for t in open.sorted_keys() {
            let list = &open.lists[t];
            out.push_term(t, &list.rows, (list.max_tf, list.min_norm));
        }
        self.terms = Terms::Sealed(out);
        self.bytes = self.estimated_bytes();
    }

    /// Makes a sealed chunk open again (a small one at the end, left by a rewrite, takes
    /// rows as the tail did before it: chunks stay few under rewrites of a hot set).
    pub(super) fn unseal(&mut self) {
        let Terms::Sealed(s) = &self.terms else { return };
        let mut lists: HashMap<Arc<str>, TermList, TermHasher> = HashMap::default();
        lists.reserve(s.ends.len());
        for i in 0..s.ends.len() {
            let l = s.list(i);
            lists.insert(
                s.term(i).into(),
                TermList { rows: l.rows.to_vec(), max_tf: l.max_tf, min_norm: l.min_norm },
            );
        }
        self.terms = Terms::Open(Open { lists, sorted: OnceLock::new() });
        self.bytes = self.estimated_bytes();
    }

    /// `term`'s postings here (None: no row holds it).
    pub(super) fn list(&self, term: &str) -> Option<ListRef<'_>> {
        match &self.terms {
            Terms::Open(o) => {
                o.lists.get(term).map(|l| ListRef { rows: &l.rows, max_tf: l.max_tf, min_norm: l.min_norm })
            }
            Terms::Sealed(s) => s.find(term).map(|i| s.list(i)),
        }
    }

    /// Every term's postings, in no particular order.
    pub(super) fn for_each_list<'a>(&'a self, mut f: impl FnMut(&'a str, &'a [(u32, u32)])) {
        match &self.terms {
            Terms::Open(o) => o.lists.iter().for_each(|(t, l)| f(t, &l.rows)),
            Terms::Sealed(s) => (0..s.ends.len()).for_each(|i| f(s.term(i), s.list(i).rows)),
        }
    }

    /// The terms from the first one ≥ `from` on, in order, while `f` returns true.
    pub(super) fn terms_from<'a>(&'a self, from: &str, mut f: impl FnMut(&'a str) -> bool) {
        match &self.terms {
            Terms::Open(o) => {
                let keys = o.sorted_keys();
                let first = keys.partition_point(|t| **t < *from);
                let _ = keys[first..].iter().all(|t| f(t));
            }
            Terms::Sealed(s) => {
                let first = s.lower_bound(from);
                let _ = (first..s.ends.len()).all(|i| f(s.term(i)));
            }
        }
    }

    /// The live rows of `parts` (consecutive, in seq order) as one sealed chunk.
    pub(super) fn merged(parts: &[Part]) -> Chunk {
        let mut out = Chunk::default();
        let mut renumbers = Vec::with_capacity(parts.len());
        for p in parts {
            let mut renumber = vec![u32::MAX; p.chunk.seqs.len()];
            for (row, slot) in renumber.iter_mut().enumerate().filter(|(r, _)| !p.is_dead(*r as u32)) {
                *slot = out.seqs.len() as u32;
                out.seqs.push(p.chunk.seqs[row]);
                out.docs.push(p.chunk.docs[row].clone());
                out.norms.push(p.chunk.norms[row]);
                out.lens.push(p.chunk.lens[row]);
            }
            renumbers.push(renumber);
        }
        let runs: Vec<Run<'_>> = parts.iter().map(|p| Run::of(&p.chunk)).collect();
        let postings: usize = runs.iter().map(Run::postings).sum();
        let terms = runs.iter().map(Run::len).max().unwrap_or(0);
        let mut sealed = Sealed::with_capacity(terms, postings);
        merge_runs(&runs, &renumbers, &out.norms, &mut sealed);
        out.terms = Terms::Sealed(sealed);
        out.bytes = out.estimated_bytes();
        out
    }

    fn estimated_bytes(&self) -> usize {
        let rows = self.seqs.len() * ROW_BYTES;
        rows + match &self.terms {
            Terms::Open(o) => {
                o.lists.iter().map(|(t, l)| OPEN_TERM_BYTES + t.len() + 8 * l.rows.len()).sum::<usize>()
            }
            Terms::Sealed(s) => s.text.len() + SEALED_TERM_BYTES * s.ends.len() + 8 * s.rows.len(),
        }
    }
}

/// Writes the union of `runs`' terms in order into `out`, each term's rows renumbered
/// (`u32::MAX`: dead, dropped) run after run — runs are in seq order, so rows ascend —
/// and its peak taken over the rows kept. A term left without rows is not written.
fn merge_runs(runs: &[Run<'_>], renumbers: &[Vec<u32>], norms: &[u8], out: &mut Sealed) {
    let mut heads = vec![0usize; runs.len()];
    loop {
        let mut min: Option<&str> = None;
        for (run, &h) in runs.iter().zip(&heads) {
            if let Some(t) = run.term(h) {
                min = Some(min.map_or(t, |m| m.min(t)));
            }
        }
        let Some(term) = min else { return };
        let start = out.rows.len();
        let (mut max_tf, mut min_norm) = (0, u8::MAX);
        for ((run, h), renumber) in runs.iter().zip(heads.iter_mut()).zip(renumbers) {
            if run.term(*h) != Some(term) {
                continue;
            }
            for &(row, tf) in run.rows(*h) {
                let to = renumber[row as usize];
                if to != u32::MAX {
                    out.rows.push((to, tf));
                    max_tf = max_tf.max(tf);
                    min_norm = min_norm.min(norms[to as usize]);
                }
            }
            *h += 1;
        }
        if out.rows.len() > start {
            out.close_term(term, start, (max_tf, min_norm));
        }
    }
}

/// A chunk's terms in order, with their lists, as a merge reads them.
enum Run<'a> {
    Open(&'a [Arc<str>], &'a HashMap<Arc<str>, TermList, TermHasher>),
    Sealed(&'a Sealed),
}

impl<'a> Run<'a> {
    fn of(chunk: &'a Chunk) -> Run<'a> {
        match &chunk.terms {
            Terms::Open(o) => Run::Open(o.sorted_keys(), &o.lists),
            Terms::Sealed(s) => Run::Sealed(s),
        }
    }

    fn len(&self) -> usize {
        match self {
            Run::Open(keys, _) => keys.len(),
            Run::Sealed(s) => s.ends.len(),
        }
    }

    fn postings(&self) -> usize {
        match self {
            Run::Open(_, lists) => lists.values().map(|l| l.rows.len()).sum(),
            Run::Sealed(s) => s.rows.len(),
        }
    }

    /// The `i`th term (None past the last).
    fn term(&self, i: usize) -> Option<&'a str> {
        match self {
            Run::Open(keys, _) => keys.get(i).map(|t| &**t),
            Run::Sealed(s) => (i < s.ends.len()).then(|| s.term(i)),
        }
    }

    fn rows(&self, i: usize) -> &'a [(u32, u32)] {
        match self {
            Run::Open(keys, lists) => &lists[&keys[i]].rows,
            Run::Sealed(s) => s.list(i).rows,
        }
    }
}

/// A prebuilt chunk's postings as its rows are read: terms numbered as first seen.
#[derive(Default)]
struct FlatPostings<'t> {
    ids: HashMap<&'t str, u32, TermHasher>,
    terms: Vec<&'t str>,
    /// Per term, the index in `postings` of its latest posting (a repeated token adds to it).
    latest: Vec<usize>,
    /// (term, row, tf), rows ascending.
    postings: Vec<(u32, u32, u32)>,
}

impl<'t> FlatPostings<'t> {
    fn push_row(&mut self, row: u32, toks: &'t ValueTokens) {
        for t in toks.iter() {
            let next = self.terms.len() as u32;
            let id = *self.ids.entry(t).or_insert(next) as usize;
            if id == self.terms.len() {
                self.terms.push(t);
                self.latest.push(usize::MAX);
            }
            match self.postings.get_mut(self.latest[id]) {
                Some(p) if p.1 == row => p.2 += 1,
                _ => {
                    self.latest[id] = self.postings.len();
                    self.postings.push((id as u32, row, 1));
                }
            }
        }
    }

    /// The terms in bytewise order, each with its rows (ascending: a stable counting sort of
    /// postings pushed in row order) and its peak over them.
    fn seal(self, norms: &[u8]) -> Sealed {
        let mut order: Vec<u32> = (0..self.terms.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.terms[i as usize]);
        let mut rank = vec![0u32; order.len()];
        let (mut text, mut ends) = (String::new(), Vec::with_capacity(order.len()));
        for (r, &i) in order.iter().enumerate() {
            rank[i as usize] = r as u32;
            text.push_str(self.terms[i as usize]);
            ends.push(text.len());
        }
        let mut starts = vec![0usize; order.len() + 1];
        for p in &self.postings {
            starts[rank[p.0 as usize] as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut peaks = vec![(0, u8::MAX); order.len()];
        let mut rows = vec![(0, 0); self.postings.len()];
        for &(term, row, tf) in &self.postings {
            let r = rank[term as usize] as usize;
            rows[next[r]] = (row, tf);
            next[r] += 1;
            peaks[r] = (peaks[r].0.max(tf), peaks[r].1.min(norms[row as usize]));
        }
        Sealed { text, ends, starts, peaks, rows }
    }
}

impl Open {
    fn sorted_keys(&self) -> &[Arc<str>] {
        self.sorted.get_or_init(|| {
            let mut terms: Vec<Arc<str>> = self.lists.keys().cloned().collect();
            terms.sort_unstable();
            terms
        })
    }
}

impl Sealed {
    fn with_capacity(terms: usize, postings: usize) -> Sealed {
        let mut starts = Vec::with_capacity(terms + 1);
        starts.push(0);
        Sealed {
            text: String::with_capacity(terms * 8),
            ends: Vec::with_capacity(terms),
            starts,
            peaks: Vec::with_capacity(terms),
            rows: Vec::with_capacity(postings),
        }
    }

    /// Appends a term (greater than the last) with its rows.
    fn push_term(&mut self, term: &str, rows: &[(u32, u32)], peak: (u32, u8)) {
        let start = self.rows.len();
        self.rows.extend_from_slice(rows);
        self.close_term(term, start, peak);
    }

    /// Appends a term whose rows are `rows[start..]`.
    fn close_term(&mut self, term: &str, start: usize, peak: (u32, u8)) {
        debug_assert_eq!(self.starts.last(), Some(&start));
        self.text.push_str(term);
        self.ends.push(self.text.len());
        self.starts.push(self.rows.len());
        self.peaks.push(peak);
    }

    fn term(&self, i: usize) -> &str {
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[from..self.ends[i]]
    }

    fn list(&self, i: usize) -> ListRef<'_> {
        let (max_tf, min_norm) = self.peaks[i];
        ListRef { rows: &self.rows[self.starts[i]..self.starts[i + 1]], max_tf, min_norm }
    }

    /// The index of the first term ≥ `term`.
    fn lower_bound(&self, term: &str) -> usize {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.term(mid) < term {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn find(&self, term: &str) -> Option<usize> {
        let i = self.lower_bound(term);
        (i < self.ends.len() && self.term(i) == term).then_some(i)
    }
}

#[cfg(test)]
#[path = "text_chunk_tests.rs"]
mod tests;
