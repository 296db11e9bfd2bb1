//! A write request's full-text tokens, analysed before the request reaches
//! its namespace's commit queue.
//!
//! The commit of a namespace's group is serial (`engine/write.rs`): while one
//! group applies, no other write of that namespace can. Analysis (splitting,
//! lowercasing, stemming) was most of what applying an upsert to the
//! overlay's inverted index cost; done here, in the request's own task, it
//! runs beside the commit of the group before and on the other core.
//!
//! Invariants:
//! - A prepared row's tokens for an attribute are exactly what
//!   [`ValueTokens::analyze`] gives for the value under [`Analyzer::new`] of
//!   the options recorded with them: the same function on the same input.
//! - They are used only when the row being put carries a value with the same
//!   fingerprint (length and a fixed-seed hash of its strings) under the same
//!   options as the attribute being indexed; anything else (the schema
//!   changed in between, a value that is not the analysed one, a row count
//!   that does not match the request) is analysed again at the put, so a stale
//!   preparation costs time, never a wrong posting.
//! - A request with at least [`PREBUILT_MIN_ROWS`] rows with tokens for an
//!   attribute also brings them as one sealed chunk of the overlay index
//!   (`state/text_chunk.rs`), built here, off the serial commit: its rows are the
//!   rows with tokens in request order, their seqs and documents given at the
//!   commit. The index takes the chunk only when the rows put are exactly those
//!   rows, in that order, each with its prepared tokens (`state/text.rs`,
//!   staging); anything else indexes them one by one, as without it. The chunk
//!   is moved out at the first row staged, not copied: a later apply of the same
//!   request (a commit that lost a race) finds none and pushes its rows.
//! - Nothing here is persisted or shared between requests.

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use crate::index::text::{analysed_strings, Analyzer, ValueTokens};
use crate::model::{Document, Value};
use crate::schema::{FullTextSearch, Schema};

use super::chunk::Chunk;

/// Fewest rows with tokens for which a request's chunk is built before the commit (fewer
/// are pushed at the commit: a chunk of a handful of rows is not worth a part of its own).
const PREBUILT_MIN_ROWS: usize = 64;

/// Per upsert row, per full-text attribute: its tokens.
#[derive(Debug, Default)]
pub struct PreparedText {
    attrs: Vec<PreparedAttr>,
    rows: usize,
}

#[derive(Debug)]
struct PreparedAttr {
    name: String,
    options: FullTextSearch,
    /// One per upsert row: None when the row has no tokens here (no value, or no words).
    rows: Vec<Option<(Fingerprint, ValueTokens)>>,
    /// The rows with tokens as one prebuilt chunk, and each row's place in it (`u32::MAX`:
    /// none); None under [`PREBUILT_MIN_ROWS`] rows.
    prebuilt: Option<(PrebuiltChunk, Vec<u32>)>,
}

/// A request's prebuilt chunk, until the first apply that stages it takes it.
#[derive(Debug)]
pub(super) struct PrebuiltChunk {
    chunk: Mutex<Option<Chunk>>,
}

impl PrebuiltChunk {
    /// The chunk, the first time it is asked for (None after).
    pub(super) fn take(&self) -> Option<Chunk> {
        self.chunk.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// Identifies an analysed value: its strings' total length and their hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64, u64);

impl PreparedText {
    /// Analyses `docs` (a request's upserts, in order) for every full-text
    /// attribute of `schema`, the schema the request is expected to apply under.
    pub fn analyze(schema: &Schema, docs: &[Document]) -> PreparedText {
        let attrs = super::full_text_attrs(schema)
            .map(|(name, options)| PreparedAttr::analyze(name, options, docs))
            .collect();
        PreparedText { attrs, rows: docs.len() }
    }

    /// Upsert rows analysed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row `i`'s tokens (`i < rows()`).
    pub fn row(&self, i: usize) -> PreparedRow<'_> {
        debug_assert!(i < self.rows);
        PreparedRow { text: self, i }
    }
}

impl PreparedAttr {
    fn analyze(name: &str, options: &FullTextSearch, docs: &[Document]) -> PreparedAttr {
        let analyzer = Analyzer::new(options);
        let rows: Vec<_> = docs
            .iter()
            .map(|d| {
                let v = d.attrs.get(name)?;
                let mut toks = ValueTokens::default();
                toks.analyze(&analyzer, v);
                (!toks.is_empty()).then(|| (fingerprint(v), toks))
            })
            .collect();
        let prebuilt = prebuilt(&rows);
        PreparedAttr { name: name.to_owned(), options: options.clone(), rows, prebuilt }
    }
}

/// The chunk of `rows`' tokens and each row's place in it, from [`PREBUILT_MIN_ROWS`] rows.
fn prebuilt(rows: &[Option<(Fingerprint, ValueTokens)>]) -> Option<(PrebuiltChunk, Vec<u32>)> {
    if rows.iter().flatten().count() < PREBUILT_MIN_ROWS {
        return None;
    }
    let chunk = Chunk::prebuilt(rows.iter().flatten().map(|(_, toks)| toks));
    let mut next = 0u32;
    let places = rows
        .iter()
        .map(|r| match r {
            Some(_) => {
                next += 1;
                next - 1
            }
            None => u32::MAX,
        })
        .collect();
    Some((PrebuiltChunk { chunk: Mutex::new(Some(chunk)) }, places))
}

/// One upsert row's prepared tokens.
#[derive(Clone, Copy)]
pub struct PreparedRow<'a> {
    text: &'a PreparedText,
    i: usize,
}

/// What a prepared row says of one attribute's value.
pub enum Prepared<'a> {
    /// These are its tokens (not empty).
    Tokens(&'a ValueTokens),
    /// It has no tokens.
    Empty,
    /// Not prepared for it: analyse it.
    Unknown,
}

impl<'a> PreparedRow<'a> {
    /// The tokens of `value` (the row's value of `name`, None when it has
    /// none) under `options`, when they were prepared for that very value.
    pub fn tokens(&self, name: &str, options: &FullTextSearch, value: Option<&Value>) -> Prepared<'a> {
        self.tokens_placed(name, options, value).0
    }

    /// [`Self::tokens`], and when they are `Tokens` and the request's rows were prebuilt
    /// into a chunk, that chunk and the row's place in it.
    pub(super) fn tokens_placed(
        &self,
        name: &str,
        options: &FullTextSearch,
        value: Option<&Value>,
    ) -> (Prepared<'a>, Option<(&'a PrebuiltChunk, u32)>) {
        let Some(a) = self.text.attrs.iter().find(|a| a.name == name && a.options == *options) else {
            return (Prepared::Unknown, None);
        };
        match (&a.rows[self.i], value) {
            (Some((f, toks)), Some(v)) if *f == fingerprint(v) => {
                let place = a.prebuilt.as_ref().map(|(chunk, places)| (chunk, places[self.i]));
                (Prepared::Tokens(toks), place)
            }
            // No value then and now: nothing to index, as analysis would find.
            (None, None) => (Prepared::Empty, None),
            _ => (Prepared::Unknown, None),
        }
    }
}

/// The fingerprint of the strings analysis reads from `v` (a string, or an
/// array's strings; other values have no tokens and fingerprint as empty).
fn fingerprint(v: &Value) -> Fingerprint {
    let mut h = foldhash::quality::FixedState::with_seed(0x7469_6465_706f_6f6c).build_hasher();
    let mut len = 0u64;
    let mut add = |s: &str| {
        h.write_usize(s.len());
        h.write(s.as_bytes());
        len += s.len() as u64;
    };
    analysed_strings(v).for_each(&mut add);
    Fingerprint(len, h.finish())
}

#[cfg(test)]
#[path = "text_prepared_tests.rs"]
mod tests;
