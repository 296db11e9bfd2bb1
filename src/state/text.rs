//! An inverted index over the overlay's full-text attributes, kept as rows
//! are put and removed, so a BM25 query over unindexed rows reads the
//! postings of its terms instead of tokenizing every overlay document.
//!
//! Invariants:
//! - For each full-text attribute of the schema it was last synced with, and
//!   for exactly that attribute's options ([`FullTextSearch`]), the index
//!   holds every live overlay document's tokens as a query analyzes them
//!   ([`crate::index::text::value_tokens`] under [`Analyzer::new`]): per term the (row, tf)
//!   postings, per row its fieldnorm id, token count and document. Its
//!   statistics — live overlay documents (with the attribute or not), their
//!   tokens, and the live documents holding each term — are what a scan of
//!   the live overlay documents counts. The first two are kept as rows come
//!   and go; a term's document frequency is not kept anywhere but summed
//!   from its chunks' postings when asked (live ones: a chunk's dead rows
//!   are skipped), so a put touches only the tail chunk — no index-wide map
//!   is copied on the first write after a snapshot.
//! - A reader gets an attribute only under the options the schema has now
//!   ([`NsState::overlay_text`](super::NsState::overlay_text)); options
//!   changed and not yet re-indexed are not served, and the caller scans.
//! - Rows are numbered by a sequence (`seq`) that grows with each put, shared
//!   by every attribute of one index; a chunk holds an increasing run of
//!   seqs and chunks are in seq order, so postings read chunk after chunk
//!   come out in seq order — one order across terms and attributes.
//! - Shared between snapshots, never mutated once shared: the index is one
//!   `Arc` copied on write, its chunks `Arc`s of their own. Only a small tail
//!   chunk (under [`TAIL_ROWS`] rows) is appended to (a shared one is copied
//!   first); a superseded row is marked dead in its chunk's bitset (copied on
//!   write) and dropped when its chunk is merged or rewritten.
//! - Memory follows the live overlay text: a full tail is merged with the
//!   chunks before it (`FANOUT` at a time, while the oldest is no larger than the rest: chunk
//!   sizes stay geometric, O(log n) chunks, each row copied O(log n) times),
//!   and a chunk that is more than half dead is rewritten without its dead
//!   rows. A write's apply may defer the merges to its commit, which runs them
//!   while it waits on storage (`state/text_settle.rs`): a state is published
//!   with them done, and one whose merges never ran serves the same rows.
//! - Only the tail chunk is open to pushes (a hash map of lists); a full
//!   tail is sealed — its terms laid out in order in a few flat vectors —
//!   and merges and rewrites read and write sealed chunks by merging sorted
//!   term runs, without hashing (`state/text_chunk.rs`).
//! - After a compaction the refolded state's index is this one cut at the
//!   round's first seq ([`OverlayText::carried`]): the rows written during
//!   the round keep their chunks and are not analysed again.
//! - A segment build takes the folded rows' postings from here
//!   ([`TextView::for_each_list`]) instead of analysing them again: the same tokens
//!   under the same options, so the same section bytes (`engine/indexing.rs`).
//! - A put may bring its tokens analysed before the commit
//!   (`state/text_prepared.rs`); they are used only when they are the analysis
//!   of that very value under the attribute's options, so the index is the
//!   one analysis at the put would build.
//! - A put whose prepared tokens came with a prebuilt chunk (a large write's
//!   rows with text, `state/text_prepared.rs`) is staged: its seq and document
//!   are kept beside the index, not in it, while the rows put are the chunk's
//!   rows in order; the last one turns the chunk into a part with those seqs and
//!   documents (after the open tail, sealed); the chunk is moved out of its
//!   request at the first row staged. Anything else first pushes the
//!   staged rows one by one (analysed again), and a write's apply ends by doing
//!   so ([`OverlayText::end_puts`]): no reader sees staged rows. Either way the
//!   lists, seqs and statistics are those of pushing every row.
//! - Vectors are never read: an overlay whose vectors are spilled
//!   (`crate::spill`) is indexed the same way.

use std::fmt;
use std::sync::Arc;

use crate::index::text::{Analyzer, ValueTokens};
use crate::model::{DocId, Document};
use crate::schema::{FullTextSearch, Schema};

/// Rows the tail chunk takes before it is sealed (and merged). The first
/// write after a snapshot was shared copies the tail (a group commit's
/// requests share one copy): smaller tails make a one-row write cheaper
/// (~120 µs at 64 rows, ~245 µs at 512 for Debian-sized documents) but cost
/// bulk ingest more merge levels.
/// (The crate's own tests use 8, so that small overlays merge and rewrite chunks.)
const TAIL_ROWS: usize = if cfg!(test) { 8 } else { 512 };

/// Chunks merged at once (see [`merge_tail`]).
const FANOUT: usize = 4;

/// The overlay's inverted index (cheap to clone: one `Arc`).
#[derive(Clone, Default)]
pub struct OverlayText(Arc<Inner>);

#[derive(Clone, Default)]
struct Inner {
    /// The seq of every live overlay document (all of them, text or not),
    /// while any attribute is indexed. Ordered like the overlay, not hashed:
    /// ids written in ascending runs (the usual bulk load) then copy only
    /// the B-tree's right edge on a snapshot's first write, where a hash
    /// map's scattered keys copied nearly every node of it.
    seq_of: imbl::OrdMap<DocId, u64>,
    next_seq: u64,
    /// One per full-text attribute, in schema (name) order.
    attrs: Vec<AttrText>,
}

#[derive(Clone)]
struct AttrText {
    name: String,
    options: FullTextSearch,
    analyzer: Arc<Analyzer>,
    parts: Vec<Part>,
    total_tokens: u64,
    /// Rows put from a prebuilt chunk's first on, not yet in `parts`.
    staged: Option<Staged>,
    /// While a write's apply defers merges (`state/text_settle.rs`): the first seq it put.
    defer_from: Option<u64>,
}

/// A prebuilt chunk taken from its request, and the seqs and documents of its first rows as
/// they were put.
#[derive(Clone)]
struct Staged {
    /// Where it came from (the address of its request's slot: which chunk a place names).
    from: usize,
    chunk: Chunk,
    seqs: Vec<u64>,
    docs: Vec<Arc<Document>>,
}

/// One chunk and which of its rows are dead in this snapshot.
#[derive(Clone)]
struct Part {
    chunk: Arc<Chunk>,
    dead: Arc<Vec<u64>>,
    dead_rows: usize,
}

/// Seeded per process: terms come from clients.
type TermHasher = foldhash::fast::RandomState;

/// One live row's counts for a term (or a prefix).
#[derive(Clone, Copy)]
pub struct Posting<'a> {
    /// The row's place in the index's one order (ascending along a list).
    pub seq: u64,
    /// Occurrences of the term in the row's value.
    pub tf: u32,
    /// The value's fieldnorm id (`fieldnorm_to_id` of its token count).
    pub norm: u8,
    /// The overlay document.
    pub doc: &'a Arc<Document>,
}

/// One attribute of the index, as a query reads it.
#[derive(Clone, Copy)]
pub struct TextView<'a> {
    inner: &'a Inner,
    attr: &'a AttrText,
}

impl fmt::Debug for OverlayText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attrs: Vec<&str> = self.0.attrs.iter().map(|a| a.name.as_str()).collect();
        f.debug_struct("OverlayText").field("rows", &self.0.seq_of.len()).field("attrs", &attrs).finish()
    }
}

/// The full-text attributes of a schema, in name order.
pub fn full_text_attrs(schema: &Schema) -> impl Iterator<Item = (&String, &FullTextSearch)> {
    schema.iter().filter_map(|(name, s)| s.full_text_search.as_ref().map(|o| (name, o)))
}

impl OverlayText {
    /// `attr` as indexed under `options`, or None when it is not (then the
    /// caller scans the overlay).
    pub fn attr(&self, attr: &str, options: &FullTextSearch) -> Option<TextView<'_>> {
        let a = self.0.attrs.iter().find(|a| a.name == attr && a.options == *options)?;
        debug_assert!(a.staged.is_none(), "a write's puts were not ended (end_puts)");
        Some(TextView { inner: &self.0, attr: a })
    }

    /// Estimated heap bytes of the index (documents are the overlay's, not counted).
    pub fn heap_bytes(&self) -> u64 {
        let rows = self.0.seq_of.len() * 64;
        let attrs: usize = self.0.attrs.iter().map(AttrText::heap_bytes).sum();
        (rows + attrs) as u64
    }

    /// Whether the indexed attributes and their options are the schema's.
    fn in_sync(&self, schema: &Schema) -> bool {
        let mut wanted = full_text_attrs(schema);
        let mut have = self.0.attrs.iter();
        loop {
            match (wanted.next(), have.next()) {
                (None, None) => return true,
                (Some((n, o)), Some(a)) if *n == a.name && *o == a.options => {}
                _ => return false,
            }
        }
    }

    /// Re-indexes what the schema changed: attributes that became full-text
    /// or whose options changed are built from the overlay's live documents;
    /// unchanged ones are kept as they are.
    pub fn sync(&mut self, schema: &Schema, overlay: &imbl::OrdMap<DocId, Option<Arc<Document>>>) {
        if self.in_sync(schema) {
            return;
        }
        let inner = Arc::make_mut(&mut self.0);
        if full_text_attrs(schema).next().is_none() {
            *inner = Inner::default();
            return;
        }
        if inner.attrs.is_empty() {
            inner.seq_of = imbl::OrdMap::new();
            for (id, _) in overlay.iter().filter(|(_, d)| d.is_some()) {
                inner.seq_of.insert(id.clone(), inner.next_seq);
                inner.next_seq += 1;
            }
        }
        let mut rows: Vec<(u64, &Arc<Document>)> =
            overlay.iter().filter_map(|(id, d)| Some((*inner.seq_of.get(id)?, d.as_ref()?))).collect();
        rows.sort_unstable_by_key(|(seq, _)| *seq);
        let mut old = std::mem::take(&mut inner.attrs);
        inner.attrs = full_text_attrs(schema)
            .map(|(name, opts)| match old.iter().position(|a| a.name == *name && a.options == *opts) {
                Some(i) => old.swap_remove(i),
                None => AttrText::build(name, opts, &rows),
            })
            .collect();
    }

    /// The overlay entry of `id` changes from `old` to `new` (None: no live
    /// document). Call before the overlay changes, with the overlay as it is.
    pub fn replace(
        &mut self,
        schema: &Schema,
        overlay: &imbl::OrdMap<DocId, Option<Arc<Document>>>,
        id: &DocId,
        new: Option<&Arc<Document>>,
        prepared: Option<PreparedRow<'_>>,
    ) {
        self.sync(schema, overlay);
        if self.0.attrs.is_empty() {
            return;
        }
        let inner = Arc::make_mut(&mut self.0);
        let old = overlay.get(id).and_then(Option::as_ref);
        if let (Some(_), Some(seq)) = (old, inner.seq_of.remove(id)) {
            for a in &mut inner.attrs {
                a.remove(seq);
            }
        }
        if let Some(new) = new {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.seq_of.insert(id.clone(), seq);
            for a in &mut inner.attrs {
                a.add(seq, new, prepared);
            }
        }
    }
}

impl OverlayText {
    /// Indexes the rows staged for a prebuilt chunk that did not get all of its rows: the
    /// end of a write's puts, before anything reads the index.
    pub fn end_puts(&mut self) {
        if self.0.attrs.iter().any(|a| a.staged.is_some()) {
            Arc::make_mut(&mut self.0).attrs.iter_mut().for_each(AttrText::push_staged);
        }
    }

    /// The index a compaction's refold keeps: this (the newest state's) index
    /// without the rows put before `folded`'s last seq (those are in the new
    /// segments now), over exactly the live documents of `overlay` (the
    /// refolded overlay: documents this index holds at a seq put after
    /// `folded`, as the same `Arc`s). Nothing is tokenized: chunks after the
    /// boundary are shared, the one straddling it is rewritten, and the
    /// statistics are summed from the kept postings. None when the rows do
    /// not line up so (the caller indexes the overlay afresh).
    pub fn carried(
        &self,
        folded: &OverlayText,
        schema: &Schema,
        overlay: &imbl::OrdMap<DocId, Option<Arc<Document>>>,
    ) -> Option<OverlayText> {
        if self.0.attrs.is_empty() || !self.in_sync(schema) {
            return None;
        }
        let from = folded.0.next_seq;
        let mut seq_of = imbl::OrdMap::new();
        for (id, doc) in overlay.iter() {
            if doc.is_some() {
                let seq = *self.0.seq_of.get(id)?;
                if seq < from {
                    return None;
                }
                seq_of.insert(id.clone(), seq);
            }
        }
        let attrs = self.0.attrs.iter().map(|a| a.carried(from, overlay)).collect();
        Some(OverlayText(Arc::new(Inner { seq_of, next_seq: self.0.next_seq, attrs })))
    }
}

/// The document's tokens on attribute `name`.
fn doc_tokens(analyzer: &Analyzer, doc: &Document, name: &str) -> ValueTokens {
    let mut toks = ValueTokens::default();
    if let Some(v) = doc.attrs.get(name) {
        toks.analyze(analyzer, v);
    }
    toks
}

impl AttrText {
    fn empty(name: &str, options: &FullTextSearch) -> AttrText {
        AttrText {
            name: name.to_owned(),
            options: options.clone(),
            analyzer: Arc::new(Analyzer::new(options)),
            parts: Vec::new(),
            total_tokens: 0,
            staged: None,
            defer_from: None,
        }
    }

    /// The attribute indexed over `rows` (live documents in seq order), as one chunk.
    fn build(name: &str, options: &FullTextSearch, rows: &[(u64, &Arc<Document>)]) -> AttrText {
        let mut a = AttrText::empty(name, options);
        let mut chunk = Chunk::default();
        for (seq, doc) in rows {
            let toks = doc_tokens(&a.analyzer, doc, &a.name);
            if !toks.is_empty() {
                a.total_tokens += toks.len() as u64;
                chunk.push(*seq, doc, &toks);
            }
        }
        if !chunk.seqs.is_empty() {
            chunk.seal();
            a.parts.push(Part::new(chunk));
        }
        a
    }

    fn heap_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.chunk.bytes + p.dead.len() * 8).sum()
    }

    /// Indexes row `seq`; `prepared` may hold its tokens, analysed before the commit, and
    /// their place in a prebuilt chunk.
    fn add(&mut self, seq: u64, doc: &Arc<Document>, prepared: Option<PreparedRow<'_>>) {
        let analysed;
        let value = doc.attrs.get(&self.name);
        let (prepared, place) =
            prepared.map_or((Prepared::Unknown, None), |p| p.tokens_placed(&self.name, &self.options, value));
        let toks = match prepared {
            Prepared::Tokens(toks) => toks,
            Prepared::Empty => return,
            Prepared::Unknown => {
                analysed = doc_tokens(&self.analyzer, doc, &self.name);
                &analysed
            }
        };
        if toks.is_empty() {
            return;
        }
        self.total_tokens += toks.len() as u64;
        if let Some((chunk, row)) = place {
            if self.stage(chunk, row, seq, doc) {
                return;
            }
        }
        self.push_staged();
        self.push(seq, doc, toks);
    }

    /// Stages row `row` of the prebuilt chunk in `slot` when it is the row that chunk needs
    /// next (its first takes the chunk and starts staging); false when it is not, or the
    /// chunk was taken already (the caller pushes it).
    fn stage(&mut self, slot: &PrebuiltChunk, row: u32, seq: u64, doc: &Arc<Document>) -> bool {
        let from = std::ptr::from_ref(slot) as usize;
        let next = self.staged.as_ref().is_some_and(|s| s.from == from && s.seqs.len() == row as usize);
        if !next {
            self.push_staged();
            // Taken by an earlier apply of this request (a commit that lost a race): pushed.
            let Some(chunk) = (row == 0).then(|| slot.take()).flatten() else { return false };
            let rows = chunk.rows();
            self.staged =
                Some(Staged { from, chunk, seqs: Vec::with_capacity(rows), docs: Vec::with_capacity(rows) });
        }
        let s = self.staged.as_mut().expect("staging was just ensured");
        s.seqs.push(seq);
        s.docs.push(Arc::clone(doc));
        if s.seqs.len() == s.chunk.rows() {
            let s = self.staged.take().expect("staged");
            self.attach(s);
        }
        true
    }

    /// A prebuilt chunk with all its rows becomes the last part, after the tail (sealed: only
    /// the last part is open).
    fn attach(&mut self, s: Staged) {
        if let Some(tail) = self.parts.last_mut().filter(|p| p.chunk.is_open()) {
            Arc::make_mut(&mut tail.chunk).seal();
        }
        self.parts.push(Part::new(s.chunk.with_rows(s.seqs, s.docs)));
        self.merge_tail();
    }

    /// Pushes the rows staged so far one by one, analysed again (a prebuilt chunk's postings
    /// are not split by row); their tokens were counted when they were staged.
    fn push_staged(&mut self) {
        let Some(s) = self.staged.take() else { return };
        for (seq, doc) in s.seqs.into_iter().zip(&s.docs) {
            let toks = doc_tokens(&self.analyzer, doc, &self.name);
            self.push(seq, doc, &toks);
        }
    }

    /// Appends row `seq` to the open tail (a new one when the last is full), sealing and
    /// merging a tail it fills.
    fn push(&mut self, seq: u64, doc: &Arc<Document>, toks: &ValueTokens) {
        if self.parts.last().is_none_or(|p| p.chunk.seqs.len() >= TAIL_ROWS) {
            self.parts.push(Part::new(Chunk::default()));
        }
        let tail = self.parts.last_mut().expect("a tail was just ensured");
        let chunk = Arc::make_mut(&mut tail.chunk);
        chunk.unseal();
        chunk.push(seq, doc, toks);
        if chunk.seqs.len() >= TAIL_ROWS {
            chunk.seal();
            self.merge_tail();
        }
    }

    /// Merges the tail's chunks ([`merge_tail`]), unless a write's apply defers merges.
    fn merge_tail(&mut self) {
        if self.defer_from.is_none() {
            merge_tail(&mut self.parts);
        }
    }

    /// Marks row `seq` dead (nothing to do when its document had no tokens
    /// here: it has no row). Nothing is analysed: the row's token count is kept.
    fn remove(&mut self, seq: u64) {
        // A staged row is in no part yet (an older row is: staging goes on).
        if self.staged.as_ref().is_some_and(|s| s.seqs.first().is_some_and(|first| seq >= *first)) {
            self.push_staged();
        }
        let pi = first_part_from(&self.parts, seq);
        let Some(part) = self.parts.get_mut(pi) else { return };
        let Ok(row) = part.chunk.seqs.binary_search(&seq) else { return };
        self.total_tokens -= u64::from(part.chunk.lens[row]);
        part.kill(row);
        if part.live_rows() == 0 {
            self.parts.remove(pi);
        } else if part.dead_rows * 2 > part.chunk.seqs.len() {
            *part = Part::new(Chunk::merged(std::slice::from_ref(part)));
        }
    }
}

/// The first of `parts` (in seq order) holding a row at seq `seq` or later.
fn first_part_from(parts: &[Part], seq: u64) -> usize {
    parts.partition_point(|p| p.chunk.seqs.last().is_some_and(|s| *s < seq))
}

/// Merges the last [`FANOUT`] chunks of `parts` into one while the oldest of them
/// is no larger than the others together: chunk sizes stay geometric
/// (ratio `FANOUT`), so a row is copied about `log_FANOUT(rows)` times
/// and at most `FANOUT - 1` chunks share a size class.
fn merge_tail(parts: &mut Vec<Part>) {
    while parts.len() >= FANOUT {
        let tail = &parts[parts.len() - FANOUT..];
        let younger: usize = tail[1..].iter().map(Part::live_rows).sum();
        if tail[0].live_rows() > younger {
            break;
        }
        let merged = Part::new(Chunk::merged(tail));
        parts.truncate(parts.len() - FANOUT);
        parts.push(merged);
    }
}

impl AttrText {
    /// This attribute's rows from seq `from` on that `overlay` holds (the
    /// same document), with the statistics summed from their postings.
    fn carried(&self, from: u64, overlay: &imbl::OrdMap<DocId, Option<Arc<Document>>>) -> AttrText {
        debug_assert!(self.staged.is_none(), "a write's puts were not ended (end_puts)");
        let mut a = AttrText::empty(&self.name, &self.options);
        a.analyzer = Arc::clone(&self.analyzer);
        let first = first_part_from(&self.parts, from);
        for part in &self.parts[first..] {
            let mut part = part.clone();
            for row in 0..part.chunk.seqs.len() {
                if part.is_dead(row as u32) {
                    continue;
                }
                let doc = &part.chunk.docs[row];
                let held = || matches!(overlay.get(&doc.id), Some(Some(d)) if Arc::ptr_eq(d, doc));
                if part.chunk.seqs[row] < from || !held() {
                    part.kill(row);
                }
            }
            if part.live_rows() == 0 {
                continue;
            }
            if part.dead_rows * 2 > part.chunk.seqs.len() {
                part = Part::new(Chunk::merged(std::slice::from_ref(&part)));
            }
            a.count_part(&part);
            a.parts.push(part);
        }
        a
    }

    /// Adds a kept part's live rows' tokens to the statistics.
    fn count_part(&mut self, part: &Part) {
        let live = (0..part.chunk.seqs.len()).filter(|r| !part.is_dead(*r as u32));
        self.total_tokens += live.map(|r| u64::from(part.chunk.lens[r])).sum::<u64>();
    }
}

impl Part {
    fn new(chunk: Chunk) -> Part {
        Part { chunk: Arc::new(chunk), dead: Arc::new(Vec::new()), dead_rows: 0 }
    }

    fn live_rows(&self) -> usize {
        self.chunk.seqs.len() - self.dead_rows
    }

    fn is_dead(&self, row: u32) -> bool {
        self.dead.get(row as usize / 64).is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    fn kill(&mut self, row: usize) {
        let dead = Arc::make_mut(&mut self.dead);
        if dead.len() <= row / 64 {
            dead.resize(row / 64 + 1, 0);
        }
        dead[row / 64] |= 1 << (row % 64);
        self.dead_rows += 1;
    }

    /// The live rows of this chunk holding `term`.
    fn live_df(&self, term: &str) -> u64 {
        let Some(list) = self.chunk.list(term) else { return 0 };
        if self.dead_rows == 0 {
            return list.rows.len() as u64;
        }
        list.rows.iter().filter(|(row, _)| !self.is_dead(*row)).count() as u64
    }

    /// Whether a live row of this chunk holds `term`.
    fn holds(&self, term: &str) -> bool {
        let Some(list) = self.chunk.list(term) else { return false };
        self.dead_rows == 0 || list.rows.iter().any(|(row, _)| !self.is_dead(*row))
    }

    /// The live postings of one term, in seq order.
    fn postings<'a>(&'a self, term: &str, out: &mut Vec<Posting<'a>>) {
        let Some(list) = self.chunk.list(term) else { return };
        out.extend(
            list.rows.iter().filter(|(row, _)| !self.is_dead(*row)).map(|&(row, tf)| self.posting(row, tf)),
        );
    }

    fn posting(&self, row: u32, tf: u32) -> Posting<'_> {
        let r = row as usize;
        Posting { seq: self.chunk.seqs[r], tf, norm: self.chunk.norms[r], doc: &self.chunk.docs[r] }
    }
}

impl<'a> TextView<'a> {
    /// How many chunks this attribute's rows are in (what a query's postings walk visits;
    /// kept to a few per size class by merges).
    pub fn chunks(&self) -> usize {
        self.attr.parts.len()
    }

    /// Live overlay documents (with the attribute or not): the N they add.
    pub fn num_docs(&self) -> u64 {
        self.inner.seq_of.len() as u64
    }

    /// Tokens of the attribute over the live overlay documents.
    pub fn total_tokens(&self) -> u64 {
        self.attr.total_tokens
    }

    /// Live overlay documents holding `term` (summed over the chunks).
    pub fn doc_freq(&self, term: &str) -> u64 {
        self.attr.parts.iter().map(|p| p.live_df(term)).sum()
    }

    /// The terms of live documents starting with `prefix` (bytewise), in
    /// order, at most `limit` of them: each chunk's first `limit` live ones,
    /// merged.
    pub fn terms_with_prefix(&self, prefix: &str, limit: usize) -> Vec<&'a str> {
        let mut out: Vec<&'a str> = Vec::new();
        for p in &self.attr.parts {
            let mut taken = 0;
            p.chunk.terms_from(prefix, |t| {
                if !t.starts_with(prefix) || taken == limit {
                    return false;
                }
                if p.holds(t) {
                    out.push(t);
                    taken += 1;
                }
                true
            });
        }
        out.sort_unstable();
        out.dedup();
        out.truncate(limit);
        out
    }

    /// The largest tf and the smallest fieldnorm id of `term`'s postings (dead
    /// ones included; None without postings): with BM25's tf part rising in
    /// tf and falling in the fieldnorm, they bound what the term can score.
    pub fn peak(&self, term: &str) -> Option<(u32, u8)> {
        let lists = self.attr.parts.iter().filter_map(|p| p.chunk.list(term));
        lists.map(|l| (l.max_tf, l.min_norm)).reduce(|(t, n), (t2, n2)| (t.max(t2), n.min(n2)))
    }

    /// The seq of live overlay document `id` (None: not in the overlay).
    pub fn seq_of(&self, id: &DocId) -> Option<u64> {
        self.inner.seq_of.get(id).copied()
    }

    /// Every term's live `(seq, tf)` postings, one chunk's list at a time (a term may come
    /// once per chunk holding it; lists in no particular order): what a segment build takes
    /// instead of analysing the rows again (`index::text::KeyedCarry`).
    pub fn for_each_list(&self, mut f: impl FnMut(&'a str, &[(u64, u32)])) {
        let mut buf: Vec<(u64, u32)> = Vec::new();
        for p in &self.attr.parts {
            p.chunk.for_each_list(|term, rows| {
                buf.clear();
                let live = rows.iter().filter(|(row, _)| !p.is_dead(*row));
                buf.extend(live.map(|&(row, tf)| (p.chunk.seqs[row as usize], tf)));
                if !buf.is_empty() {
                    f(term, &buf);
                }
            });
        }
    }

    /// A cursor over the live rows holding `term`, in seq order.
    pub fn cursor(&self, term: &str) -> TermCursor<'a> {
        TermCursor::new(&self.attr.parts, term)
    }

    /// The live rows holding `term`, in seq order.
    pub fn postings(&self, term: &str) -> Vec<Posting<'a>> {
        let lists = self.attr.parts.iter().filter_map(|p| p.chunk.list(term));
        let mut out = Vec::with_capacity(lists.map(|l| l.rows.len()).sum());
        for p in &self.attr.parts {
            p.postings(term, &mut out);
        }
        out
    }

    /// The live rows holding a term that starts with `prefix`, in seq order,
    /// each once with tf = its tokens starting with `prefix`.
    pub fn prefix_postings(&self, prefix: &str) -> Vec<Posting<'a>> {
        let terms = self.terms_with_prefix(prefix, usize::MAX);
        let mut out: Vec<Posting<'a>> = Vec::new();
        for p in &self.attr.parts {
            let mut rows: Vec<Posting<'a>> = Vec::new();
            for t in &terms {
                p.postings(t, &mut rows);
            }
            rows.sort_by_key(|r| r.seq);
            for r in rows {
                match out.last_mut() {
                    Some(last) if last.seq == r.seq => last.tf += r.tf,
                    _ => out.push(r),
                }
            }
        }
        out
    }
}

/// One term's live postings over the chunks, read in seq order, with skips
/// ([`TermCursor::seek`]) for evaluations that prune.
pub struct TermCursor<'a> {
    parts: &'a [Part],
    /// (part, its list for the term), in part order.
    lists: Vec<(usize, &'a [(u32, u32)])>,
    at: usize,
    i: usize,
    /// The current posting's seq (`u64::MAX` past the last).
    seq: u64,
}

impl<'a> TermCursor<'a> {
    fn new(parts: &'a [Part], term: &str) -> Self {
        let lists =
            parts.iter().enumerate().filter_map(|(pi, p)| Some((pi, p.chunk.list(term)?.rows))).collect();
        let mut c = TermCursor { parts, lists, at: 0, i: 0, seq: u64::MAX };
        c.settle();
        c
    }

    /// The current posting's seq (`u64::MAX` once past the last).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The current posting (None once past the last).
    pub fn current(&self) -> Option<Posting<'a>> {
        let (pi, list) = self.lists.get(self.at)?;
        let (row, tf) = list[self.i];
        Some(self.parts[*pi].posting(row, tf))
    }

    /// Moves to the next live posting.
    pub fn advance(&mut self) {
        self.i += 1;
        self.settle();
    }

    /// Moves to the first live posting with a seq ≥ `seq` (never back).
    pub fn seek(&mut self, seq: u64) {
        if self.seq >= seq {
            return;
        }
        while let Some((pi, list)) = self.lists.get(self.at) {
            let seqs = &self.parts[*pi].chunk.seqs;
            if seqs.last().is_some_and(|last| *last >= seq) {
                let rest = &list[self.i..];
                self.i += gallop(rest, |&(row, _)| seqs[row as usize] < seq);
                break;
            }
            (self.at, self.i) = (self.at + 1, 0);
        }
        self.settle();
    }

    /// Skips dead rows and exhausted lists.
    fn settle(&mut self) {
        while let Some((pi, list)) = self.lists.get(self.at) {
            match list.get(self.i) {
                Some((row, _)) if self.parts[*pi].is_dead(*row) => self.i += 1,
                Some((row, _)) => {
                    self.seq = self.parts[*pi].chunk.seqs[*row as usize];
                    return;
                }
                None => (self.at, self.i) = (self.at + 1, 0),
            }
        }
        self.seq = u64::MAX;
    }
}

/// The number of leading items for which `before` holds (it holds on a
/// prefix): exponential then binary search, so a short skip costs little.
fn gallop<T>(items: &[T], before: impl Fn(&T) -> bool) -> usize {
    let mut hi = 1;
    while hi < items.len() && before(&items[hi - 1]) {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(items.len());
    lo + items[lo..hi].partition_point(&before)
}

#[path = "text_chunk.rs"]
mod chunk;
#[path = "text_prepared.rs"]
pub mod prepared;
#[path = "text_settle.rs"]
mod settle;
use chunk::Chunk;
use prepared::PrebuiltChunk;
pub use prepared::{Prepared, PreparedRow, PreparedText};
pub use settle::{Merged, Merges};

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
