//! An inverted index over the overlay's full-text attributes, kept as rows
//! are put and removed, so a BM25 query over unindexed rows reads the
//! postings of its terms instead of tokenizing every overlay document.
//!
//! Invariants:
//! - For each full-text attribute of the schema it was last synced with, and
//!   for exactly that attribute's options ([`FullTextSearch`]), the index
//!   holds every live overlay document's tokens as a query analyzes them
//!   ([`crate::index::text::value_tokens`] under [`Analyzer::new`]): per term the (row, tf)
//!   postings, per row its fieldnorm id and document. Its statistics —
//!   live overlay documents (with the attribute or not), their tokens, and
//!   the live documents holding each term — are what a scan of the live
//!   overlay documents counts, kept as rows come and go, never recounted.
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
//!   rows.
//! - After a compaction the refolded state's index is this one cut at the
//!   round's first seq ([`OverlayText::carried`]): the rows written during
//!   the round keep their chunks and are not analysed again.
//! - Vectors are never read: an overlay whose vectors are spilled
//!   (`crate::spill`) is indexed the same way.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::index::text::{fieldnorm_to_id, Analyzer, ValueTokens};
use crate::model::{DocId, Document};
use crate::schema::{FullTextSearch, Schema};

/// Rows the tail chunk takes before it is sealed (and merged). The first
/// write after a snapshot was shared copies the tail (a group commit's
/// requests share one copy): smaller tails make a one-row write cheaper
/// (~120 µs at 64 rows, ~245 µs at 512 for Debian-sized documents) but cost
/// bulk ingest more merge levels.
/// (The crate's own tests use 8, so that small overlays merge and rewrite chunks.)
const TAIL_ROWS: usize = if cfg!(test) { 8 } else { 512 };

/// Chunks merged at once (see [`AttrText::merge_tail`]).
const FANOUT: usize = 4;

/// Heap bytes counted per term entry besides its text (key box, vector, map slot).
const TERM_OVERHEAD: usize = 64;

/// The overlay's inverted index (cheap to clone: one `Arc`).
#[derive(Clone, Default)]
pub struct OverlayText(Arc<Inner>);

#[derive(Clone, Default)]
struct Inner {
    /// The seq of every live overlay document (all of them, text or not),
    /// while any attribute is indexed.
    seq_of: imbl::HashMap<DocId, u64>,
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
    /// Live documents holding each term (no entry: none). Keys are shared
    /// with the chunks' (`Arc`): a snapshot's first write copies map nodes,
    /// not term text. Hashed: every put looks up each of its terms here,
    /// and a B-tree's string compares were a fifth of a full-text ingest.
    df: DfMap,
    /// The keys of `df`, in order (for prefix expansion): touched only when a
    /// term appears or disappears, not for every row holding it.
    terms: imbl::OrdSet<Arc<str>>,
    df_bytes: usize,
    total_tokens: u64,
}

/// One chunk and which of its rows are dead in this snapshot.
#[derive(Clone)]
struct Part {
    chunk: Arc<Chunk>,
    dead: Arc<Vec<u64>>,
    dead_rows: usize,
}

/// Rows with text, in seq order, and their postings by local row number.
#[derive(Clone, Default)]
struct Chunk {
    seqs: Vec<u64>,
    docs: Vec<Arc<Document>>,
    norms: Vec<u8>,
    postings: HashMap<Arc<str>, TermList, TermHasher>,
    bytes: usize,
}

/// A term's (row, tf) postings in one chunk, and the largest tf and smallest
/// fieldnorm id among them (dead rows included): what bounds its score.
#[derive(Clone)]
struct TermList {
    rows: Vec<(u32, u32)>,
    max_tf: u32,
    min_norm: u8,
}

impl Default for TermList {
    fn default() -> Self {
        TermList { rows: Vec::new(), max_tf: 0, min_norm: u8::MAX }
    }
}

impl TermList {
    fn push(&mut self, row: u32, tf: u32, norm: u8) {
        self.rows.push((row, tf));
        self.max_tf = self.max_tf.max(tf);
        self.min_norm = self.min_norm.min(norm);
    }
}

/// Seeded per process: terms come from clients.
type TermHasher = foldhash::fast::RandomState;

type DfMap = imbl::GenericHashMap<Arc<str>, u64, TermHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// A value's distinct terms (shared with the df map) and their counts.
type TermCounts = Vec<(Arc<str>, u32)>;

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
fn full_text_attrs(schema: &Schema) -> impl Iterator<Item = (&String, &FullTextSearch)> {
    schema.iter().filter_map(|(name, s)| s.full_text_search.as_ref().map(|o| (name, o)))
}

impl OverlayText {
    /// `attr` as indexed under `options`, or None when it is not (then the
    /// caller scans the overlay).
    pub fn attr(&self, attr: &str, options: &FullTextSearch) -> Option<TextView<'_>> {
        let a = self.0.attrs.iter().find(|a| a.name == attr && a.options == *options)?;
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
            inner.seq_of = imbl::HashMap::new();
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
    ) {
        self.sync(schema, overlay);
        if self.0.attrs.is_empty() {
            return;
        }
        let inner = Arc::make_mut(&mut self.0);
        let old = overlay.get(id).and_then(Option::as_ref);
        if let (Some(old), Some(seq)) = (old, inner.seq_of.remove(id)) {
            for a in &mut inner.attrs {
                a.remove(seq, old);
            }
        }
        if let Some(new) = new {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.seq_of.insert(id.clone(), seq);
            for a in &mut inner.attrs {
                a.add(seq, new);
            }
        }
    }
}

impl OverlayText {
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
        let mut seq_of = imbl::HashMap::new();
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

/// A value's tokens as (term, count) in term order, and the token count.
fn term_counts(toks: &ValueTokens) -> (Vec<(&str, u32)>, usize) {
    let mut sorted: Vec<&str> = toks.iter().collect();
    sorted.sort_unstable();
    let mut out: Vec<(&str, u32)> = Vec::new();
    for t in sorted {
        match out.last_mut() {
            Some((last, c)) if *last == t => *c += 1,
            _ => out.push((t, 1)),
        }
    }
    (out, toks.len())
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
            df: DfMap::default(),
            terms: imbl::OrdSet::new(),
            df_bytes: 0,
            total_tokens: 0,
        }
    }

    /// The attribute indexed over `rows` (live documents in seq order), as one chunk.
    fn build(name: &str, options: &FullTextSearch, rows: &[(u64, &Arc<Document>)]) -> AttrText {
        let mut a = AttrText::empty(name, options);
        let mut chunk = Chunk::default();
        for (seq, doc) in rows {
            if let Some((counts, len)) = a.count(doc) {
                chunk.push(*seq, doc, len, counts);
            }
        }
        if !chunk.seqs.is_empty() {
            a.parts.push(Part::new(chunk));
        }
        a
    }

    fn heap_bytes(&self) -> usize {
        let parts: usize = self.parts.iter().map(|p| p.chunk.bytes + p.dead.len() * 8).sum();
        parts + self.df_bytes + self.df.len() * (TERM_OVERHEAD + 16)
    }

    /// The document's terms and token count on this attribute (None without
    /// tokens), counted into the statistics.
    fn count(&mut self, doc: &Document) -> Option<(TermCounts, usize)> {
        let toks = doc_tokens(&self.analyzer, doc, &self.name);
        if toks.is_empty() {
            return None;
        }
        let (counts, len) = term_counts(&toks);
        self.total_tokens += len as u64;
        let shared = counts
            .into_iter()
            .map(|(t, c)| match self.df.get_key_value_mut(t) {
                Some((key, n)) => {
                    *n += 1;
                    (Arc::clone(key), c)
                }
                None => {
                    self.df_bytes += t.len();
                    let key: Arc<str> = t.into();
                    self.df.insert(Arc::clone(&key), 1);
                    self.terms.insert(Arc::clone(&key));
                    (key, c)
                }
            })
            .collect();
        Some((shared, len))
    }

    /// Takes the document's terms and tokens back out of the statistics.
    fn uncount(&mut self, doc: &Document) -> bool {
        let toks = doc_tokens(&self.analyzer, doc, &self.name);
        if toks.is_empty() {
            return false;
        }
        let (counts, len) = term_counts(&toks);
        self.total_tokens -= len as u64;
        for &(t, _) in &counts {
            let Some(n) = self.df.get_mut(t) else { continue };
            *n -= 1;
            if *n == 0 {
                self.df.remove(t);
                self.terms.remove(t);
                self.df_bytes -= t.len();
            }
        }
        true
    }

    fn add(&mut self, seq: u64, doc: &Arc<Document>) {
        let Some((counts, len)) = self.count(doc) else { return };
        if self.parts.last().is_none_or(|p| p.chunk.seqs.len() >= TAIL_ROWS) {
            self.parts.push(Part::new(Chunk::default()));
        }
        let tail = self.parts.last_mut().expect("a tail was just ensured");
        Arc::make_mut(&mut tail.chunk).push(seq, doc, len, counts);
        if tail.chunk.seqs.len() >= TAIL_ROWS {
            self.merge_tail();
        }
    }

    /// Merges the last [`FANOUT`] chunks into one while the oldest of them
    /// is no larger than the others together: chunk sizes stay geometric
    /// (ratio `FANOUT`), so a row is copied about `log_FANOUT(rows)` times
    /// and at most `FANOUT - 1` chunks share a size class.
    fn merge_tail(&mut self) {
        while self.parts.len() >= FANOUT {
            let tail = &self.parts[self.parts.len() - FANOUT..];
            let younger: usize = tail[1..].iter().map(Part::live_rows).sum();
            if tail[0].live_rows() > younger {
                break;
            }
            let merged = Part::new(Chunk::merged(tail));
            self.parts.truncate(self.parts.len() - FANOUT);
            self.parts.push(merged);
        }
    }

    fn remove(&mut self, seq: u64, doc: &Document) {
        if !self.uncount(doc) {
            return;
        }
        let pi = self.parts.partition_point(|p| p.chunk.seqs.last().is_some_and(|s| *s < seq));
        let Some(part) = self.parts.get_mut(pi) else { return };
        let Ok(row) = part.chunk.seqs.binary_search(&seq) else { return };
        part.kill(row);
        if part.live_rows() == 0 {
            self.parts.remove(pi);
        } else if part.dead_rows * 2 > part.chunk.seqs.len() {
            *part = Part::new(Chunk::merged(std::slice::from_ref(part)));
        }
    }
}

impl AttrText {
    /// This attribute's rows from seq `from` on that `overlay` holds (the
    /// same document), with the statistics summed from their postings.
    fn carried(&self, from: u64, overlay: &imbl::OrdMap<DocId, Option<Arc<Document>>>) -> AttrText {
        let mut a = AttrText::empty(&self.name, &self.options);
        a.analyzer = Arc::clone(&self.analyzer);
        let first = self.parts.partition_point(|p| p.chunk.seqs.last().is_some_and(|s| *s < from));
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

    /// Adds a kept part's live postings to the statistics (df, terms, tokens).
    fn count_part(&mut self, part: &Part) {
        for (t, list) in &part.chunk.postings {
            let (mut docs, mut tokens) = (0u64, 0u64);
            for &(row, tf) in &list.rows {
                if !part.is_dead(row) {
                    docs += 1;
                    tokens += u64::from(tf);
                }
            }
            if docs == 0 {
                continue;
            }
            self.total_tokens += tokens;
            match self.df.get_mut(&**t) {
                Some(n) => *n += docs,
                None => {
                    self.df_bytes += t.len();
                    self.df.insert(Arc::clone(t), docs);
                    self.terms.insert(Arc::clone(t));
                }
            }
        }
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

    /// The live postings of one term, in seq order.
    fn postings<'a>(&'a self, term: &str, out: &mut Vec<Posting<'a>>) {
        let Some(list) = self.chunk.postings.get(term) else { return };
        out.extend(
            list.rows.iter().filter(|(row, _)| !self.is_dead(*row)).map(|&(row, tf)| self.posting(row, tf)),
        );
    }

    fn posting(&self, row: u32, tf: u32) -> Posting<'_> {
        let r = row as usize;
        Posting { seq: self.chunk.seqs[r], tf, norm: self.chunk.norms[r], doc: &self.chunk.docs[r] }
    }
}

impl Chunk {
    fn push(&mut self, seq: u64, doc: &Arc<Document>, len: usize, counts: TermCounts) {
        let row = self.seqs.len() as u32;
        let norm = fieldnorm_to_id(u32::try_from(len).unwrap_or(u32::MAX));
        self.seqs.push(seq);
        self.docs.push(doc.clone());
        self.norms.push(norm);
        self.bytes += 17;
        for (t, c) in counts {
            self.bytes += 8;
            let list = match self.postings.get_mut(&*t) {
                Some(list) => list,
                None => {
                    self.bytes += TERM_OVERHEAD;
                    self.postings.entry(t).or_default()
                }
            };
            list.push(row, c, norm);
        }
    }

    /// The live rows of `parts` (consecutive, in seq order) as one chunk.
    fn merged(parts: &[Part]) -> Chunk {
        let mut out = Chunk::default();
        for p in parts {
            let mut renumber = vec![u32::MAX; p.chunk.seqs.len()];
            for (row, slot) in renumber.iter_mut().enumerate().filter(|(r, _)| !p.is_dead(*r as u32)) {
                *slot = out.seqs.len() as u32;
                out.seqs.push(p.chunk.seqs[row]);
                out.docs.push(p.chunk.docs[row].clone());
                out.norms.push(p.chunk.norms[row]);
            }
            for (t, list) in &p.chunk.postings {
                let live = list.rows.iter().filter(|(row, _)| renumber[*row as usize] != u32::MAX);
                let mut moved = live.map(|&(row, tf)| (renumber[row as usize], tf)).peekable();
                if moved.peek().is_some() {
                    let into = out.postings.entry(Arc::clone(t)).or_default();
                    into.rows.reserve(list.rows.len());
                    for (row, tf) in moved {
                        into.push(row, tf, out.norms[row as usize]);
                    }
                }
            }
        }
        let postings: usize = out.postings.values().map(|l| l.rows.len()).sum();
        let terms = out.postings.len() * TERM_OVERHEAD;
        out.bytes = out.seqs.len() * 17 + postings * 8 + terms;
        out
    }
}

impl<'a> TextView<'a> {
    /// Live overlay documents (with the attribute or not): the N they add.
    pub fn num_docs(&self) -> u64 {
        self.inner.seq_of.len() as u64
    }

    /// Tokens of the attribute over the live overlay documents.
    pub fn total_tokens(&self) -> u64 {
        self.attr.total_tokens
    }

    /// Live overlay documents holding `term`.
    pub fn doc_freq(&self, term: &str) -> u64 {
        self.attr.df.get(term).copied().unwrap_or(0)
    }

    /// The terms of live documents starting with `prefix` (bytewise), in
    /// order, at most `limit` of them.
    pub fn terms_with_prefix(&self, prefix: &str, limit: usize) -> Vec<&'a str> {
        let from = (Bound::Included(prefix), Bound::Unbounded);
        let terms = self.attr.terms.range::<_, str>(from).map(|t| &**t);
        terms.take_while(|t| t.starts_with(prefix)).take(limit).collect()
    }

    /// The largest tf and the smallest fieldnorm id of `term`'s postings (dead
    /// ones included; None without postings): with BM25's tf part rising in
    /// tf and falling in the fieldnorm, they bound what the term can score.
    pub fn peak(&self, term: &str) -> Option<(u32, u8)> {
        let lists = self.attr.parts.iter().filter_map(|p| p.chunk.postings.get(term));
        lists.map(|l| (l.max_tf, l.min_norm)).reduce(|(t, n), (t2, n2)| (t.max(t2), n.min(n2)))
    }

    /// A cursor over the live rows holding `term`, in seq order.
    pub fn cursor(&self, term: &str) -> TermCursor<'a> {
        TermCursor::new(&self.attr.parts, term)
    }

    /// The live rows holding `term`, in seq order.
    pub fn postings(&self, term: &str) -> Vec<Posting<'a>> {
        let mut out = Vec::with_capacity(self.doc_freq(term) as usize);
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
        let lists = parts
            .iter()
            .enumerate()
            .filter_map(|(pi, p)| Some((pi, p.chunk.postings.get(term)?.rows.as_slice())))
            .collect();
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

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
