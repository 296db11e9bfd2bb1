//! Full-text analysis and BM25 postings for one string attribute of one segment.
//!
//! # Analysis
//! [`Analyzer`] implements the schema's `full_text_search` options
//! ([`FullTextSearch`]). The tokenizers `word_v0` .. `word_v3` map to one word
//! tokenizer that reproduces tantivy's `en_stem` analyzer when stemming is on
//! and stop words are off; `word_v4` (the default for new attributes) differs
//! only in step 1:
//! 1. split on every `!char::is_alphanumeric()` (Unicode) character
//!    (`word_v0`..`word_v3`), or take the UAX #29 words (`word_v4`:
//!    `unicode-segmentation`'s `unicode_words`, so `can't`, `3.14` and
//!    `snake_case` are one word each);
//! 2. drop tokens longer than `max_token_length` UTF-8 bytes (default 39, i.e.
//!    tantivy's `RemoveLongFilter(40)`), measured before any other filter;
//! 3. lowercase char by char (`char::to_lowercase`, no final-sigma rule, exactly
//!    as tantivy's `LowerCaser`) unless `case_sensitive`;
//! 4. ASCII folding when `ascii_folding` (NFKD, combining marks dropped, plus a
//!    small table for letters without a decomposition such as `ß`, `ø`, `æ`);
//! 5. stop-word removal when `remove_stopwords` (English: the Lucene/tantivy list
//!    of 33 words; other languages: the Snowball/NLTK list), compared in lower case;
//! 6. Snowball stemming when `stemming`: `frostem`, pinned to the exact release that
//!    tantivy 0.27.0 links (`rust-stemmers` 1.2 is an older Snowball: it stems
//!    "adding" to "ad" where tantivy 0.27 gives "add").
//!
//! `pre_tokenized_array` takes the attribute value (a string array) as tokens,
//! verbatim. Dropped tokens count neither in a row's length nor in the totals.
//!
//! # Section format (segment section kind 17, one per full-text attribute)
//! All integers little-endian; the section is self-describing and checksummed:
//! ```text
//! +0  magic "TPTXTIX\0" | +8 version u16 (1, or 2 with prefixes) | +10 flags u16 (v1: 0;
//!     v2: 1 = prefix region present) | +12 attr_len u32
//! +16 num_docs u64 (rows covered, the N contribution) | +24 total_tokens u64
//! +32 row_count u32 (fieldnorm entries) | +36 num_terms u32
//! +40 term_bytes_len u64 | +48 postings_len u64 | +56 reserved u64 (=0)
//! +64 attr name (attr_len bytes, UTF-8)
//!     fieldnorm ids (row_count bytes, one per row: Lucene/tantivy SmallFloat code)
//!     term offsets ((num_terms + 1) × u32, into the term bytes; non-decreasing)
//!     term infos (num_terms × 16: postings_off u64, postings_len u32, doc_freq u32)
//!     term bytes (terms sorted bytewise, unique)
//!     postings (per term: block metas, then block data)
//!     version 2 only: the prefix region (`prefixes.rs`: every prefix of 1..=4 chars
//!     of every term, with the union of its terms' postings)
//!     crc32c u32 of every byte before it
//! ```
//! A term's postings: `ceil(doc_freq / 128)` block metas of 16 bytes
//! (`last_row u32, data_off u32, max_tf u32, doc_bits u8, tf_bits u8,
//! min_fieldnorm_id u8, len u8`), then block data. A full block (128 rows) is
//! two `BitPacker4x` blocks: row deltas from the previous block's last row
//! (`compress_sorted`, initial 0 for the first block) and `tf - 1`. The last,
//! partial block is LEB128 varints: row deltas then `tf - 1`.
//! `(max_tf, min_fieldnorm_id)` of a block is a BM25 upper bound under *any*
//! global statistics (score rises with tf and falls with length), so block-max
//! pruning stays exact when N, avgdl or df change.
//!
//! # Query evaluation
//! [`search_fields`] scores a multi-field OR query (the per-field BM25 sums added up)
//! with block-max MaxScore over 4,096-row windows: per window, each list's bound is
//! the max of its block bounds meeting the window; the lowest-bound lists whose
//! bounds sum to at most the current k-th score are non-essential; essential lists
//! are scored term at a time into a window buffer, passing undecoded each block whose
//! bound plus every other list's window bound cannot beat the k-th score; touched rows
//! are visited in row order and completed by probing non-essential lists (highest bound
//! first, early exit). Windows whose summed bounds cannot beat the k-th score are skipped
//! whole. A candidate probing a non-essential list stops before decoding its block when
//! that block's bound cannot lift it above the k-th score. Lists of a few blocks in all are
//! scored whole instead (same rows and bits). [`search_fields_with`] combines a row's parts
//! another way ([`Combine`]: a `Max` of sums), pruned alike, since any such score is at most
//! the parts' sum. [`search_fields_above`] starts from a floor (the k-th score other segments
//! already gave the caller): rows below it are pruned as if the top k were full there, while
//! every row scoring at least the floor comes out as without it. A caller that looked the terms
//! up already (for the statistics) passes the entries ([`FieldQuery::found`], [`TermEntry`]).
//! [`search_fields_exhaustive`] and [`score_documents`] are the unpruned references.
//!
//! A dictionary lookup starts from the section's [`TextSamples`] when the caller keeps them
//! (every 32nd key on the heap, `reader.rs`): it reads one run of keys, a chunk or two of
//! checked bytes, instead of a chunk per bisection step. The samples also keep the header's
//! numbers and table ranges, so a section opened again ([`TextIndex::reopen`]) reads no header.
//!
//! # Building without analysis
//! A compaction carries rows into a new section from the postings of a merged segment's
//! section ([`TextIndexBuilder::carry_rows`]) or of the overlay's inverted index
//! ([`KeyedCarry`]) instead of analysing their text again, when those were built under the
//! same analysis options ([`analysis_key`], recorded per segment in the manifest). The
//! section it writes is byte for byte the one analysing the rows writes (`carry.rs`).
//!
//! # Invariants
//! * Rows are segment-local positions, strictly increasing inside a posting list.
//! * Decoding is bounded: every offset and width is checked; corrupt bytes give
//!   [`IndexError`], never a panic.
//! * Scores are tantivy's BM25, in f32, computed in the same order of operations
//!   (`idf = ln(1 + (N − n + 0.5)/(n + 0.5))`, weight `idf · (1 + k1)`,
//!   `tf / (tf + k1 · (1 − b + b · dl/avgdl))` with `dl` the quantised fieldnorm).
//!   N, avgdl and df are *global* ([`CorpusStats`], summed by the caller over every
//!   segment and the unindexed WAL rows), so a row scores the same wherever it lives.
//! * A multi-term score is the sum over distinct terms (a term repeated n times in
//!   the query has n× its weight, as tantivy's parser gives), added in query-term order
//!   (field by field), by the pruned and the exhaustive scorer alike, so both give
//!   bit-identical scores. Ties rank by ascending row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use bitpacking::{BitPacker, BitPacker4x};

use crate::schema::FullTextSearch;

mod analyzer;
pub use analyzer::*;
mod stems;
use stems::StemTable;
mod bm25;
pub use bm25::*;
mod builder;
pub use builder::*;
mod carry;
pub use carry::*;
mod reader;
pub use reader::*;
mod search;
pub use search::*;
mod prefixes;
use prefixes::*;

use crate::index::error::IndexError;
use crate::index::error::{IndexErrorKind, IndexSection};

fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(IndexSection::Text, what)
}

const MAGIC: &[u8; 8] = b"TPTXTIX\0";
const VERSION: u16 = 1;
/// Version 2: version 1 plus a prefix dictionary after the postings (flags bit 0).
const VERSION_PREFIXES: u16 = 2;
/// Header flag of version 2: the prefix region is present.
const FLAG_PREFIXES: u16 = 1;
/// Prefixes of 1..=this many chars of every term are indexed under `index_prefixes`;
/// a longer query prefix is answered from the term dictionary's range (few terms share it).
pub const INDEXED_PREFIX_CHARS: u32 = 4;
const HEADER_LEN: usize = 64;
const BLOCK: usize = 128;
const META_LEN: usize = 16;
const TERM_INFO_LEN: usize = 16;
/// Minimum rows of a MaxScore window (bounds and the essential set are recomputed per window).
const WINDOW: u32 = 4096;
/// At most this many dictionary terms are expanded from a prefix query token.
pub const MAX_PREFIX_EXPANSIONS: usize = 64;

#[cfg(test)]
mod carry_tests;
#[cfg(test)]
mod guarded_tests;
#[cfg(test)]
mod lookup_tests;
#[cfg(test)]
mod prefixes_tests;
#[cfg(test)]
pub(crate) mod tests;
