//! Full-text analysis and BM25 postings for one string attribute of one segment.
//!
//! # Analysis
//! [`Analyzer`] implements the schema's `full_text_search` options
//! ([`FullTextSearch`]). The tokenizers `word_v0` .. `word_v4` all map to one
//! word tokenizer that reproduces tantivy's `en_stem` analyzer when stemming is
//! on and stop words are off:
//! 1. split on every `!char::is_alphanumeric()` (Unicode) character;
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
//! +0  magic "TPTXTIX\0" | +8 version u16 (=1) | +10 flags u16 (=0) | +12 attr_len u32
//! +16 num_docs u64 (rows covered, the N contribution) | +24 total_tokens u64
//! +32 row_count u32 (fieldnorm entries) | +36 num_terms u32
//! +40 term_bytes_len u64 | +48 postings_len u64 | +56 reserved u64 (=0)
//! +64 attr name (attr_len bytes, UTF-8)
//!     fieldnorm ids (row_count bytes, one per row: Lucene/tantivy SmallFloat code)
//!     term offsets ((num_terms + 1) × u32, into the term bytes; non-decreasing)
//!     term infos (num_terms × 16: postings_off u64, postings_len u32, doc_freq u32)
//!     term bytes (terms sorted bytewise, unique)
//!     postings (per term: block metas, then block data)
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
//! are scored term at a time into a window buffer; touched rows are visited in row
//! order and completed by probing non-essential lists (highest bound first, early
//! exit). Windows whose summed bounds cannot beat the k-th score are skipped whole.
//! [`search_fields_exhaustive`] and [`score_documents`] are the unpruned references.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use bitpacking::{BitPacker, BitPacker4x};

use crate::schema::FullTextSearch;

/// Errors reading a text index section.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    /// The bytes are not a text index section or are damaged.
    #[error("corrupt text index: {0}")]
    Corrupt(&'static str),
    /// A section written by a newer format version.
    #[error("unsupported text index version {0}")]
    Version(u16),
}

const MAGIC: &[u8; 8] = b"TPTXTIX\0";
const VERSION: u16 = 1;
const HEADER_LEN: usize = 64;
const BLOCK: usize = 128;
const META_LEN: usize = 16;
const TERM_INFO_LEN: usize = 16;
/// Minimum rows of a MaxScore window (bounds and the essential set are recomputed per window).
const WINDOW: u32 = 4096;
/// At most this many dictionary terms are expanded from a prefix query token.
pub const MAX_PREFIX_EXPANSIONS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Fieldnorms (Lucene SmallFloat.intToByte4 / byte4ToInt, as tantivy's FIELD_NORMS_TABLE)
// ---------------------------------------------------------------------------------------------

const NUM_FREE_VALUES: u32 = 24;

const fn int4_to_long(i: u32) -> u64 {
    let bits = (i & 7) as u64;
    let shift = (i >> 3) as i64 - 1;
    if shift == -1 {
        bits
    } else {
        (bits | 8) << shift
    }
}

const fn build_norm_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let v = if (i as u32) < NUM_FREE_VALUES {
            i as u64
        } else {
            NUM_FREE_VALUES as u64 + int4_to_long(i as u32 - NUM_FREE_VALUES)
        };
        t[i] = if v > i32::MAX as u64 { i32::MAX as u32 } else { v as u32 };
        i += 1;
    }
    t
}

/// Fieldnorm id → token count (the quantised document length).
pub static FIELD_NORMS_TABLE: [u32; 256] = build_norm_table();

/// Token count → fieldnorm id, rounding down (`fieldnorm_to_id(41) == 40`).
pub fn fieldnorm_to_id(len: u32) -> u8 {
    match FIELD_NORMS_TABLE.binary_search(&len) {
        Ok(i) => i as u8,
        Err(i) => (i - 1) as u8, // i >= 1 because table[0] == 0 <= len
    }
}

/// Fieldnorm id → token count.
pub fn id_to_fieldnorm(id: u8) -> u32 {
    FIELD_NORMS_TABLE[id as usize]
}

// ---------------------------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------------------------

/// Lucene's English stop words (tantivy's `StopWordFilter::new(Language::English)`).
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with",
];

/// The stop-word list code of a language (English handled separately).
fn stop_code(name: &str) -> Option<&'static str> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "english" | "en" => "en",
        "arabic" | "ar" => "ar",
        "danish" | "da" => "da",
        "dutch" | "nl" => "nl",
        "finnish" | "fi" => "fi",
        "french" | "fr" => "fr",
        "german" | "de" => "de",
        "greek" | "el" => "el",
        "hungarian" | "hu" => "hu",
        "italian" | "it" => "it",
        "norwegian" | "no" | "nb" => "no",
        "portuguese" | "pt" => "pt",
        "romanian" | "ro" => "ro",
        "russian" | "ru" => "ru",
        "spanish" | "es" => "es",
        "swedish" | "sv" => "sv",
        "turkish" | "tr" => "tr",
        _ => return None,
    })
}

/// A configured analyzer (cheap to build; build once per attribute and query).
pub struct Analyzer {
    pre_tokenized: bool,
    lowercase: bool,
    fold: bool,
    stop: Option<std::collections::HashSet<&'static str>>,
    stemmer: Option<frostem::Stemmer>,
    max_len: usize,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("pre_tokenized", &self.pre_tokenized)
            .field("lowercase", &self.lowercase)
            .field("fold", &self.fold)
            .field("stop_words", &self.stop.as_ref().map(|s| s.len()))
            .field("stemming", &self.stemmer.is_some())
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl Analyzer {
    /// The analyzer for a schema's full-text options. Unknown languages get no
    /// stemmer and no stop words.
    pub fn new(opts: &FullTextSearch) -> Analyzer {
        let stop = if opts.remove_stopwords {
            match stop_code(&opts.language) {
                Some("en") => Some(ENGLISH_STOP_WORDS.iter().copied().collect()),
                Some(code) => stop_words::lookup(code).map(|w| w.iter().copied().collect()),
                None => None,
            }
        } else {
            None
        };
        Analyzer {
            pre_tokenized: opts.tokenizer == "pre_tokenized_array",
            lowercase: !opts.case_sensitive,
            fold: opts.ascii_folding,
            stop,
            stemmer: if opts.stemming { frostem::Stemmer::try_from_name(&opts.language).ok() } else { None },
            max_len: opts.max_token_length as usize,
        }
    }

    /// tantivy's `en_stem`: no stop words, stemming on, lowercase, 39-byte cap.
    pub fn en_stem() -> Analyzer {
        Analyzer::new(&FullTextSearch {
            stemming: true,
            remove_stopwords: false,
            ..FullTextSearch::default()
        })
    }

    /// Whether the attribute takes pre-tokenized string arrays.
    pub fn is_pre_tokenized(&self) -> bool {
        self.pre_tokenized
    }

    /// Calls `f` with each token of `text` in order. With `pre_tokenized_array`
    /// the whole text is one token.
    pub fn for_each_token(&self, text: &str, mut f: impl FnMut(&str)) {
        self.for_each_token_raw(text, |_, t| f(t));
    }

    /// Like [`Self::for_each_token`], also passing the raw (unfiltered) token.
    fn for_each_token_raw(&self, text: &str, mut f: impl FnMut(&str, &str)) {
        if self.pre_tokenized {
            if !text.is_empty() {
                f(text, text);
            }
            return;
        }
        let mut buf = String::new();
        let mut folded = String::new();
        for raw in text.split(|c: char| !c.is_alphanumeric()) {
            if raw.is_empty() || raw.len() > self.max_len {
                continue;
            }
            let mut tok: &str = raw;
            if self.lowercase && tok.bytes().any(|b| !b.is_ascii_lowercase()) {
                buf.clear();
                for c in tok.chars() {
                    buf.extend(c.to_lowercase());
                }
                tok = &buf;
            }
            if self.fold && !tok.is_ascii() {
                fold_ascii(tok, &mut folded);
                tok = &folded;
            }
            if let Some(stop) = &self.stop {
                let hit = if self.lowercase || tok.bytes().all(|b| !b.is_ascii_uppercase()) {
                    stop.contains(tok)
                } else {
                    stop.contains(tok.to_lowercase().as_str())
                };
                if hit {
                    continue;
                }
            }
            match &self.stemmer {
                Some(s) => f(raw, &s.stem(tok)),
                None => f(raw, tok),
            }
        }
    }

    /// The tokens of `text`.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_token(text, |t| out.push(t.to_owned()));
        out
    }

    /// Query terms as tantivy's query parser makes them: a raw word repeated
    /// verbatim counts once ("be be" → `be`), but distinct words that analyze to
    /// the same term each count ("file files" → `file`, `file`: that term scores
    /// twice). Order of first occurrence.
    pub fn query_terms(&self, text: &str) -> Vec<String> {
        let mut raws: Vec<String> = Vec::new();
        let mut out: Vec<String> = Vec::new();
        self.for_each_token_raw(text, |raw, t| {
            if !raws.iter().any(|r| r == raw) {
                raws.push(raw.to_owned());
                out.push(t.to_owned());
            }
        });
        out
    }
}

/// The tokens of `text` under the default full-text options (used by the token filters).
pub fn tokenize_default(text: &str) -> Vec<String> {
    static DEFAULT: OnceLock<Analyzer> = OnceLock::new();
    DEFAULT.get_or_init(|| Analyzer::new(&FullTextSearch::default())).tokens(text)
}

fn fold_ascii(s: &str, out: &mut String) {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    out.clear();
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        let special = match c {
            'ß' => Some("ss"),
            'ẞ' => Some("SS"),
            'æ' => Some("ae"),
            'Æ' => Some("AE"),
            'œ' => Some("oe"),
            'Œ' => Some("OE"),
            'ø' => Some("o"),
            'Ø' => Some("O"),
            'đ' | 'ð' => Some("d"),
            'Đ' | 'Ð' => Some("D"),
            'ł' => Some("l"),
            'Ł' => Some("L"),
            'þ' => Some("th"),
            'Þ' => Some("TH"),
            'ı' => Some("i"),
            'ħ' => Some("h"),
            'Ħ' => Some("H"),
            _ => None,
        };
        if let Some(r) = special {
            out.push_str(r);
            continue;
        }
        let start = out.len();
        for d in std::iter::once(c).nfkd() {
            if !is_combining_mark(d) {
                out.push(d);
            }
        }
        if out.len() == start {
            out.push(c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus statistics and BM25 weights
// ---------------------------------------------------------------------------------------------

/// Global BM25 statistics of one attribute for one query: N, the token total and
/// the document frequency of each query term, summed over every segment
/// (deleted rows included, as tantivy does until a merge) and the unindexed rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorpusStats {
    /// Documents (rows) covered: the `N` of the idf.
    pub num_docs: u64,
    /// Tokens over all covered rows (avgdl = total_tokens / num_docs).
    pub total_tokens: u64,
    /// Documents containing each term (only the query's terms need be present).
    pub doc_freq: BTreeMap<String, u64>,
}

impl CorpusStats {
    /// Adds one segment's index: its N, token total and the df of `terms`.
    pub fn add_index(&mut self, index: &TextIndex<'_>, terms: &[String]) {
        self.num_docs += index.num_docs();
        self.total_tokens += index.total_tokens();
        for (t, _) in term_counts(terms) {
            *self.doc_freq.entry(t.to_owned()).or_default() += u64::from(index.doc_freq(t));
        }
    }

    /// Adds one unindexed document given its tokens.
    pub fn add_document_tokens<S: AsRef<str>>(&mut self, tokens: &[S], terms: &[String]) {
        self.num_docs += 1;
        self.total_tokens += tokens.len() as u64;
        for (t, _) in term_counts(terms) {
            if tokens.iter().any(|x| x.as_ref() == t) {
                *self.doc_freq.entry(t.to_owned()).or_default() += 1;
            }
        }
    }

    /// Adds unindexed documents, analyzing each text.
    pub fn add_documents<'d>(
        &mut self,
        analyzer: &Analyzer,
        docs: impl IntoIterator<Item = &'d str>,
        terms: &[String],
    ) {
        for d in docs {
            let toks = analyzer.tokens(d);
            self.add_document_tokens(&toks, terms);
        }
    }

    /// Sums another partial statistic into this one.
    pub fn merge(&mut self, other: &CorpusStats) {
        self.num_docs += other.num_docs;
        self.total_tokens += other.total_tokens;
        for (t, n) in &other.doc_freq {
            *self.doc_freq.entry(t.clone()).or_default() += n;
        }
    }

    /// The average document length, as tantivy computes it (f32 division).
    pub fn avgdl(&self) -> f32 {
        if self.num_docs == 0 {
            return 1.0;
        }
        let a = self.total_tokens as f32 / self.num_docs as f32;
        if a > 0.0 {
            a
        } else {
            1.0
        }
    }

    /// The BM25 weight of `term` occurring `count` times in the query.
    pub fn weight(&self, term: &str, count: u32, params: Bm25Params) -> Bm25Weight {
        let df = self.doc_freq.get(term).copied().unwrap_or(0);
        let w = Bm25Weight::new(df, self.num_docs, params);
        Bm25Weight { weight: w.weight * count as f32 }
    }

    /// Per-fieldnorm-id normaliser table for this attribute.
    pub fn norm_cache(&self, params: Bm25Params) -> NormCache {
        NormCache::new(self.avgdl(), params)
    }
}

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f32,
    /// Length normalisation.
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

impl Bm25Params {
    /// The parameters of a schema's full-text options.
    pub fn from_options(opts: &FullTextSearch) -> Self {
        Bm25Params { k1: opts.k1 as f32, b: opts.b as f32 }
    }
}

/// `cache[id] = k1 · (1 − b + b · fieldnorm(id) / avgdl)` (tantivy's tf cache).
#[derive(Clone, Debug)]
pub struct NormCache(Box<[f32; 256]>);

impl NormCache {
    /// Builds the table.
    pub fn new(avgdl: f32, p: Bm25Params) -> Self {
        let mut c = Box::new([0f32; 256]);
        for (id, v) in c.iter_mut().enumerate() {
            *v = p.k1 * (1.0 - p.b + p.b * FIELD_NORMS_TABLE[id] as f32 / avgdl);
        }
        NormCache(c)
    }
}

/// The idf-dependent part of a term's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Weight {
    /// `idf · (1 + k1)`.
    pub weight: f32,
}

/// tantivy's idf: `ln(1 + (N − n + 0.5) / (n + 0.5))`, in f32.
pub fn idf(doc_freq: u64, num_docs: u64) -> f32 {
    let n = doc_freq.min(num_docs);
    let x = ((num_docs - n) as f32 + 0.5) / (n as f32 + 0.5);
    (1.0 + x).ln()
}

impl Bm25Weight {
    /// The weight of a term with `doc_freq` among `num_docs`.
    pub fn new(doc_freq: u64, num_docs: u64, p: Bm25Params) -> Self {
        Bm25Weight { weight: idf(doc_freq, num_docs) * (1.0 + p.k1) }
    }

    /// The score of one occurrence count in a row of fieldnorm `norm_id`.
    #[inline]
    pub fn score(&self, cache: &NormCache, norm_id: u8, tf: u32) -> f32 {
        let tf = tf as f32;
        self.weight * (tf / (tf + cache.0[norm_id as usize]))
    }
}

/// Distinct terms with their multiplicity, in order of first occurrence.
pub fn term_counts(terms: &[String]) -> Vec<(&str, u32)> {
    let mut out: Vec<(&str, u32)> = Vec::new();
    for t in terms {
        match out.iter_mut().find(|(x, _)| *x == t.as_str()) {
            Some((_, c)) => *c += 1,
            None => out.push((t.as_str(), 1)),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// Accumulates rows, then writes the section bytes.
pub struct TextIndexBuilder {
    attr: String,
    analyzer: Analyzer,
    terms: HashMap<Box<str>, u32>,
    postings: Vec<Vec<(u32, u32)>>,
    norms: Vec<u8>,
    num_docs: u64,
    total_tokens: u64,
    doc_tf: HashMap<u32, u32>,
}

impl TextIndexBuilder {
    /// A builder for attribute `attr` with the schema's options.
    pub fn new(attr: &str, opts: &FullTextSearch) -> Self {
        TextIndexBuilder {
            attr: attr.to_owned(),
            analyzer: Analyzer::new(opts),
            terms: HashMap::new(),
            postings: Vec::new(),
            norms: Vec::new(),
            num_docs: 0,
            total_tokens: 0,
            doc_tf: HashMap::new(),
        }
    }

    /// Adds a row given its text (analyzed with the attribute's analyzer).
    /// Every row of the segment should be added (rows without the attribute as
    /// ""), so that N counts them as tantivy's `max_doc` does. A row may be added
    /// once.
    pub fn add(&mut self, row: u32, text: &str) {
        let mut toks: Vec<String> = Vec::new();
        self.analyzer.for_each_token(text, |t| toks.push(t.to_owned()));
        self.add_tokens(row, toks.iter().map(String::as_str));
    }

    /// Adds a row given its analyzed tokens (e.g. several values of a string
    /// array, or a `pre_tokenized_array` value).
    pub fn add_tokens<'t>(&mut self, row: u32, tokens: impl IntoIterator<Item = &'t str>) {
        self.doc_tf.clear();
        let mut len: u32 = 0;
        for t in tokens {
            len = len.saturating_add(1);
            let id = match self.terms.get(t) {
                Some(&id) => id,
                None => {
                    let id = self.postings.len() as u32;
                    self.terms.insert(t.into(), id);
                    self.postings.push(Vec::new());
                    id
                }
            };
            *self.doc_tf.entry(id).or_default() += 1;
        }
        for (&id, &tf) in &self.doc_tf {
            self.postings[id as usize].push((row, tf));
        }
        let r = row as usize;
        if self.norms.len() <= r {
            self.norms.resize(r + 1, 0);
        }
        self.norms[r] = fieldnorm_to_id(len);
        self.num_docs += 1;
        self.total_tokens += u64::from(len);
    }

    /// The section bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut terms: Vec<(Box<str>, u32)> = self.terms.into_iter().collect();
        terms.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut postings_in = self.postings;
        let mut term_offsets: Vec<u8> = Vec::with_capacity((terms.len() + 1) * 4);
        let mut term_bytes: Vec<u8> = Vec::new();
        let mut infos: Vec<u8> = Vec::with_capacity(terms.len() * TERM_INFO_LEN);
        let mut postings: Vec<u8> = Vec::new();
        term_offsets.extend_from_slice(&0u32.to_le_bytes());
        let bp = BitPacker4x::new();
        for (term, id) in &terms {
            term_bytes.extend_from_slice(term.as_bytes());
            term_offsets.extend_from_slice(&(term_bytes.len() as u32).to_le_bytes());
            let list = &mut postings_in[*id as usize];
            list.sort_unstable_by_key(|p| p.0);
            list.dedup_by(|a, b| {
                if a.0 == b.0 {
                    b.1 += a.1;
                    true
                } else {
                    false
                }
            });
            let start = postings.len();
            encode_postings(&bp, list, &self.norms, &mut postings);
            infos.extend_from_slice(&(start as u64).to_le_bytes());
            infos.extend_from_slice(&((postings.len() - start) as u32).to_le_bytes());
            infos.extend_from_slice(&(list.len() as u32).to_le_bytes());
        }
        let attr = self.attr.as_bytes();
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + attr.len()
                + self.norms.len()
                + term_offsets.len()
                + infos.len()
                + term_bytes.len()
                + postings.len()
                + 4,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(attr.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.num_docs.to_le_bytes());
        out.extend_from_slice(&self.total_tokens.to_le_bytes());
        out.extend_from_slice(&(self.norms.len() as u32).to_le_bytes());
        out.extend_from_slice(&(terms.len() as u32).to_le_bytes());
        out.extend_from_slice(&(term_bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&(postings.len() as u64).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(attr);
        out.extend_from_slice(&self.norms);
        out.extend_from_slice(&term_offsets);
        out.extend_from_slice(&infos);
        out.extend_from_slice(&term_bytes);
        out.extend_from_slice(&postings);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

fn put_vint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_postings(bp: &BitPacker4x, list: &[(u32, u32)], norms: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let nblocks = list.len().div_ceil(BLOCK);
    out.resize(start + nblocks * META_LEN, 0);
    let mut prev_last = 0u32;
    let mut rows = [0u32; BLOCK];
    let mut tfs = [0u32; BLOCK];
    let mut packed = [0u8; BLOCK * 4];
    for (b, chunk) in list.chunks(BLOCK).enumerate() {
        let data_off = (out.len() - start) as u32;
        let mut max_tf = 0u32;
        let mut min_norm = u8::MAX;
        for (i, &(row, tf)) in chunk.iter().enumerate() {
            rows[i] = row;
            tfs[i] = tf - 1;
            max_tf = max_tf.max(tf);
            min_norm = min_norm.min(norms.get(row as usize).copied().unwrap_or(0));
        }
        let (mut doc_bits, mut tf_bits) = (0u8, 0u8);
        if chunk.len() == BLOCK {
            doc_bits = bp.num_bits_sorted(prev_last, &rows);
            let n = bp.compress_sorted(prev_last, &rows, &mut packed, doc_bits);
            out.extend_from_slice(&packed[..n]);
            tf_bits = bp.num_bits(&tfs);
            let n = bp.compress(&tfs, &mut packed, tf_bits);
            out.extend_from_slice(&packed[..n]);
        } else {
            let mut p = prev_last;
            for &(row, _) in chunk {
                put_vint(out, row - p);
                p = row;
            }
            for &(_, tf) in chunk {
                put_vint(out, tf - 1);
            }
        }
        let last = chunk[chunk.len() - 1].0;
        let m = start + b * META_LEN;
        out[m..m + 4].copy_from_slice(&last.to_le_bytes());
        out[m + 4..m + 8].copy_from_slice(&data_off.to_le_bytes());
        out[m + 8..m + 12].copy_from_slice(&max_tf.to_le_bytes());
        out[m + 12] = doc_bits;
        out[m + 13] = tf_bits;
        out[m + 14] = min_norm;
        out[m + 15] = chunk.len() as u8;
        prev_last = last;
    }
}

/// Builds the text index section of attribute `attr` from `(row, text)` pairs
/// (rows increasing; pass every row of the segment, "" when absent).
pub fn build<'d>(
    attr: &str,
    docs: impl IntoIterator<Item = (u32, &'d str)>,
    opts: &FullTextSearch,
) -> Vec<u8> {
    let mut b = TextIndexBuilder::new(attr, opts);
    for (row, text) in docs {
        b.add(row, text);
    }
    b.finish()
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

fn rd_u32(b: &[u8], at: usize) -> Result<u32, IndexError> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or(IndexError::Corrupt("truncated"))
}

fn rd_u64(b: &[u8], at: usize) -> Result<u64, IndexError> {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_le_bytes)
        .ok_or(IndexError::Corrupt("truncated"))
}

fn to_usize(v: u64) -> Result<usize, IndexError> {
    usize::try_from(v).map_err(|_| IndexError::Corrupt("length overflow"))
}

/// A zero-copy view of a text index section.
#[derive(Clone, Copy, Debug)]
pub struct TextIndex<'a> {
    attr: &'a str,
    num_docs: u64,
    total_tokens: u64,
    norms: &'a [u8],
    term_offsets: &'a [u8],
    infos: &'a [u8],
    term_bytes: &'a [u8],
    postings: &'a [u8],
    num_terms: usize,
}

impl<'a> TextIndex<'a> {
    /// Opens a section, verifying its checksum and structure.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        if bytes.len() < HEADER_LEN + 4 {
            return Err(IndexError::Corrupt("too short"));
        }
        let body = bytes.len() - 4;
        if crc32c::crc32c(&bytes[..body]) != rd_u32(bytes, body)? {
            return Err(IndexError::Corrupt("checksum mismatch"));
        }
        Self::open_trusted(bytes)
    }

    /// Opens a section whose checksum the caller already verified (the segment
    /// reader checks every section's crc32c); the structure is still checked.
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        if bytes.len() < HEADER_LEN + 4 || &bytes[..8] != MAGIC {
            return Err(IndexError::Corrupt("bad magic"));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(IndexError::Version(version));
        }
        let attr_len = rd_u32(bytes, 12)? as usize;
        let num_docs = rd_u64(bytes, 16)?;
        let total_tokens = rd_u64(bytes, 24)?;
        let row_count = rd_u32(bytes, 32)? as usize;
        let num_terms = rd_u32(bytes, 36)? as usize;
        let term_bytes_len = to_usize(rd_u64(bytes, 40)?)?;
        let postings_len = to_usize(rd_u64(bytes, 48)?)?;
        let mut pos = HEADER_LEN;
        let mut take = |n: usize| -> Result<&'a [u8], IndexError> {
            let end = pos.checked_add(n).ok_or(IndexError::Corrupt("length overflow"))?;
            let s = bytes.get(pos..end).ok_or(IndexError::Corrupt("region out of bounds"))?;
            pos = end;
            Ok(s)
        };
        let attr = std::str::from_utf8(take(attr_len)?).map_err(|_| IndexError::Corrupt("attr not utf-8"))?;
        let norms = take(row_count)?;
        let offs_len = num_terms.checked_add(1).and_then(|n| n.checked_mul(4));
        let term_offsets = take(offs_len.ok_or(IndexError::Corrupt("length overflow"))?)?;
        let infos =
            take(num_terms.checked_mul(TERM_INFO_LEN).ok_or(IndexError::Corrupt("length overflow"))?)?;
        let term_bytes = take(term_bytes_len)?;
        let postings = take(postings_len)?;
        if pos + 4 != bytes.len() {
            return Err(IndexError::Corrupt("length mismatch"));
        }
        if rd_u32(term_offsets, 0)? != 0 || rd_u32(term_offsets, num_terms * 4)? as usize != term_bytes_len {
            return Err(IndexError::Corrupt("term offsets"));
        }
        Ok(TextIndex {
            attr,
            num_docs,
            total_tokens,
            norms,
            term_offsets,
            infos,
            term_bytes,
            postings,
            num_terms,
        })
    }

    /// The attribute this index covers.
    pub fn attr(&self) -> &'a str {
        self.attr
    }

    /// Rows covered (this segment's contribution to N).
    pub fn num_docs(&self) -> u64 {
        self.num_docs
    }

    /// Tokens over all rows.
    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }

    /// Distinct terms.
    pub fn num_terms(&self) -> usize {
        self.num_terms
    }

    /// The fieldnorm id of `row` (0 when the row has no tokens or is out of range).
    pub fn fieldnorm_id(&self, row: u32) -> u8 {
        self.norms.get(row as usize).copied().unwrap_or(0)
    }

    fn term(&self, i: usize) -> Option<&'a [u8]> {
        let s = rd_u32(self.term_offsets, i * 4).ok()? as usize;
        let e = rd_u32(self.term_offsets, i * 4 + 4).ok()? as usize;
        self.term_bytes.get(s..e)
    }

    /// Index of the first term `>= key` (bytewise).
    fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0usize, self.num_terms);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.term(mid).unwrap_or(&[]) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn find(&self, term: &str) -> Option<usize> {
        let i = self.lower_bound(term.as_bytes());
        (i < self.num_terms && self.term(i) == Some(term.as_bytes())).then_some(i)
    }

    fn info(&self, i: usize) -> Result<(usize, usize, u32), IndexError> {
        let at = i * TERM_INFO_LEN;
        Ok((
            to_usize(rd_u64(self.infos, at)?)?,
            rd_u32(self.infos, at + 8)? as usize,
            rd_u32(self.infos, at + 12)?,
        ))
    }

    /// Rows containing `term` in this segment.
    pub fn doc_freq(&self, term: &str) -> u32 {
        self.find(term).and_then(|i| self.info(i).ok()).map_or(0, |x| x.2)
    }

    /// Dictionary terms starting with `prefix`, in order, at most `limit`.
    pub fn terms_with_prefix(&self, prefix: &str, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = self.lower_bound(prefix.as_bytes());
        while i < self.num_terms && out.len() < limit {
            match self.term(i) {
                Some(t) if t.starts_with(prefix.as_bytes()) => {
                    if let Ok(s) = std::str::from_utf8(t) {
                        out.push(s.to_owned());
                    }
                }
                _ => break,
            }
            i += 1;
        }
        out
    }

    /// A cursor over `term`'s postings, if the term occurs.
    fn postings_of(&self, term: &str) -> Result<Option<Postings<'a>>, IndexError> {
        let Some(i) = self.find(term) else { return Ok(None) };
        let (off, len, df) = self.info(i)?;
        let end = off.checked_add(len).ok_or(IndexError::Corrupt("postings overflow"))?;
        let data = self.postings.get(off..end).ok_or(IndexError::Corrupt("postings out of bounds"))?;
        let nblocks = (df as usize).div_ceil(BLOCK);
        if df == 0 || nblocks * META_LEN > data.len() {
            return Err(IndexError::Corrupt("postings header"));
        }
        Ok(Some(Postings { data, nblocks }))
    }

    /// Every `(row, tf)` of `term` (tests, exhaustive scoring).
    pub fn postings(&self, term: &str) -> Result<Vec<(u32, u32)>, IndexError> {
        let mut out = Vec::new();
        if let Some(p) = self.postings_of(term)? {
            let mut blk = DecodedBlock::default();
            for b in 0..p.nblocks {
                p.decode(b, &mut blk)?;
                out.extend((0..blk.len).map(|i| (blk.rows[i], blk.tfs[i])));
            }
        }
        Ok(out)
    }

    /// Top-`k` rows for `terms` (distinct, analyzed) by BM25 under global
    /// statistics, pruned with block-max MaxScore. `filter` (row → keep) is
    /// applied before a row can enter the results.
    pub fn search(
        &self,
        terms: &[String],
        global: &CorpusStats,
        params: Bm25Params,
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        search_fields(&[FieldQuery { index: self, terms, stats: global, params, boost: 1.0 }], k, filter)
    }

    /// Scores every matching row (no pruning): the reference for [`Self::search`].
    pub fn search_exhaustive(
        &self,
        terms: &[String],
        global: &CorpusStats,
        params: Bm25Params,
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
    ) -> Result<Vec<(u32, f32)>, IndexError> {
        search_fields_exhaustive(
            &[FieldQuery { index: self, terms, stats: global, params, boost: 1.0 }],
            k,
            filter,
        )
    }
}

#[derive(Clone, Copy)]
struct Postings<'a> {
    data: &'a [u8],
    nblocks: usize,
}

struct BlockMeta {
    last_row: u32,
    data_off: usize,
    max_tf: u32,
    doc_bits: u8,
    tf_bits: u8,
    min_norm: u8,
    len: usize,
}

struct DecodedBlock {
    rows: [u32; BLOCK],
    tfs: [u32; BLOCK],
    len: usize,
}

impl Default for DecodedBlock {
    fn default() -> Self {
        DecodedBlock { rows: [0; BLOCK], tfs: [0; BLOCK], len: 0 }
    }
}

fn get_vint(b: &[u8], pos: &mut usize) -> Result<u32, IndexError> {
    let mut v: u32 = 0;
    for shift in [0u32, 7, 14, 21, 28] {
        let byte = *b.get(*pos).ok_or(IndexError::Corrupt("truncated varint"))?;
        *pos += 1;
        if shift == 28 && byte > 0x0f {
            return Err(IndexError::Corrupt("varint overflow"));
        }
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(IndexError::Corrupt("varint too long"))
}

impl Postings<'_> {
    fn meta(&self, b: usize) -> Result<BlockMeta, IndexError> {
        let m = b * META_LEN;
        let s = self.data.get(m..m + META_LEN).ok_or(IndexError::Corrupt("block meta"))?;
        let len = s[15] as usize;
        if len == 0 || len > BLOCK {
            return Err(IndexError::Corrupt("block length"));
        }
        Ok(BlockMeta {
            last_row: u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            data_off: u32::from_le_bytes([s[4], s[5], s[6], s[7]]) as usize,
            max_tf: u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
            doc_bits: s[12],
            tf_bits: s[13],
            min_norm: s[14],
            len,
        })
    }

    fn last_row(&self, b: usize) -> u32 {
        let m = b * META_LEN;
        match self.data.get(m..m + 4) {
            Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            None => u32::MAX,
        }
    }

    fn decode(&self, b: usize, out: &mut DecodedBlock) -> Result<(), IndexError> {
        let m = self.meta(b)?;
        let prev = if b == 0 { 0 } else { self.last_row(b - 1) };
        let data = self.data.get(m.data_off..).ok_or(IndexError::Corrupt("block data"))?;
        if m.len == BLOCK {
            if m.doc_bits > 32 || m.tf_bits > 32 {
                return Err(IndexError::Corrupt("bit width"));
            }
            let dn = m.doc_bits as usize * BLOCK / 8;
            let tn = m.tf_bits as usize * BLOCK / 8;
            let d = data.get(..dn).ok_or(IndexError::Corrupt("block data"))?;
            let t = data.get(dn..dn + tn).ok_or(IndexError::Corrupt("block data"))?;
            let bp = BitPacker4x::new();
            bp.decompress_sorted(prev, d, &mut out.rows, m.doc_bits);
            bp.decompress(t, &mut out.tfs, m.tf_bits);
            for tf in out.tfs.iter_mut() {
                *tf = tf.wrapping_add(1);
            }
        } else {
            let mut pos = 0usize;
            let mut r = prev;
            for i in 0..m.len {
                r = r.wrapping_add(get_vint(data, &mut pos)?);
                out.rows[i] = r;
            }
            for i in 0..m.len {
                out.tfs[i] = get_vint(data, &mut pos)?.wrapping_add(1);
            }
        }
        out.len = m.len;
        // Rows must strictly increase and end at the recorded last row.
        let mut p: Option<u32> = if b == 0 { None } else { Some(prev) };
        for &r in &out.rows[..m.len] {
            if p.is_some_and(|p| r <= p) {
                return Err(IndexError::Corrupt("rows not increasing"));
            }
            p = Some(r);
        }
        if p != Some(m.last_row) {
            return Err(IndexError::Corrupt("block last row"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Query evaluation
// ---------------------------------------------------------------------------------------------

/// One attribute's part of a (multi-field) BM25 query: the row score is the sum
/// over fields of `boost · Σ_terms bm25`.
#[derive(Clone, Copy)]
pub struct FieldQuery<'q, 'a> {
    /// The segment's index of this attribute.
    pub index: &'q TextIndex<'a>,
    /// Analyzed terms, repeats allowed (prefix expansions already resolved).
    pub terms: &'q [String],
    /// Global statistics of this attribute.
    pub stats: &'q CorpusStats,
    /// BM25 parameters of this attribute.
    pub params: Bm25Params,
    /// Multiplier of this field's score (1.0 for a plain sum).
    pub boost: f32,
}

struct TermCursor<'a> {
    p: Postings<'a>,
    norms: &'a [u8],
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
        self.blk_idx = b;
        self.pos = 0;
        while self.blk.rows[self.pos] < target {
            self.pos += 1;
        }
        Ok(Some(self.blk.rows[self.pos]))
    }

    fn score_here(&self, caches: &[NormCache]) -> f32 {
        let row = self.blk.rows[self.pos];
        let norm = self.norms.get(row as usize).copied().unwrap_or(0);
        self.boost * self.weight.score(&caches[self.cache], norm, self.blk.tfs[self.pos])
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
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Entry>,
}

#[derive(PartialEq)]
struct Entry(f32, u32);
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
        TopK { k, heap: std::collections::BinaryHeap::with_capacity(k + 1) }
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
fn prune_threshold(t: f32) -> f32 {
    if t.is_finite() {
        t - t.abs() * 1e-5 - 1e-30
    } else {
        t
    }
}

fn open_cursors<'a>(
    fields: &[FieldQuery<'_, 'a>],
) -> Result<(Vec<TermCursor<'a>>, Vec<NormCache>, usize), IndexError> {
    let mut cursors = Vec::new();
    let mut caches = Vec::new();
    let mut ord = 0usize;
    for f in fields {
        let ci = caches.len();
        caches.push(f.stats.norm_cache(f.params));
        for (t, count) in term_counts(f.terms) {
            let this_ord = ord;
            ord += 1;
            let Some(p) = f.index.postings_of(t)? else { continue };
            let weight = f.stats.weight(t, count, f.params);
            let mut c = TermCursor {
                p,
                norms: f.index.norms,
                cache: ci,
                weight,
                boost: f.boost,
                ord: this_ord,
                max_score: 0.0,
                blk_idx: usize::MAX,
                blk: DecodedBlock::default(),
                pos: 0,
                exhausted: false,
                shallow: 0,
                last_rows: Vec::with_capacity(p.nblocks),
                block_scores: Vec::with_capacity(p.nblocks),
            };
            let mut mx = 0f32;
            let mut prev: Option<u32> = None;
            for b in 0..p.nblocks {
                let m = p.meta(b)?;
                if prev.is_some_and(|p| m.last_row <= p) {
                    return Err(IndexError::Corrupt("block rows not increasing"));
                }
                prev = Some(m.last_row);
                let bs = c.block_score(&caches, m.max_tf, m.min_norm);
                mx = mx.max(bs);
                c.last_rows.push(m.last_row);
                c.block_scores.push(bs);
            }
            c.max_score = mx;
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
    let (mut cursors, caches, nords) = open_cursors(fields)?;
    let mut top = TopK::new(k);
    if k == 0 || cursors.is_empty() {
        return Ok(Vec::new());
    }
    let n = cursors.len();
    let w = WINDOW as usize;
    // Per window: approximate sums (pruning), per-(row, term) contributions (exact in-order sums),
    // and a bitset of touched rows so candidates are visited in row order.
    let mut sums = vec![0f32; w];
    let mut contrib = vec![0f32; w * nords];
    let mut touched = vec![0u64; w / 64];
    let mut bounds = vec![0f32; n];
    let mut order: Vec<usize> = (0..n).collect();
    let mut prefix = vec![0f32; n + 1];
    let mut start: u32 = 0;
    loop {
        // Skip to the first row any list may still hold.
        let mut next_row = u32::MAX;
        for c in cursors.iter_mut() {
            if c.shallow_advance(start).is_some() {
                let first = if c.shallow == 0 { 0 } else { c.last_rows[c.shallow - 1].saturating_add(1) };
                next_row = next_row.min(first.max(start));
            }
        }
        if next_row == u32::MAX {
            break;
        }
        start = start.max(next_row);
        let end = start.saturating_add(WINDOW - 1);
        let mut total = 0f32;
        for (i, c) in cursors.iter_mut().enumerate() {
            c.shallow_advance(start);
            bounds[i] = c.window_bound(end);
            total += bounds[i];
        }
        let theta = prune_threshold(top.threshold());
        if total > theta {
            // MaxScore partition: non-essential = lowest-bound lists whose bounds sum <= theta;
            // only essential lists produce candidates.
            order.sort_by(|&a, &b| bounds[a].total_cmp(&bounds[b]));
            for j in 0..n {
                prefix[j + 1] = prefix[j] + bounds[order[j]];
            }
            let mut ne = 0;
            while ne < n && prefix[ne + 1] <= theta {
                ne += 1;
            }
            // Essential lists, term at a time over the window.
            for &i in &order[ne..] {
                if bounds[i] <= 0.0 {
                    continue;
                }
                let c = &mut cursors[i];
                let mut r = c.advance(start)?;
                while let Some(row) = r {
                    if row > end {
                        break;
                    }
                    let off = (row - start) as usize;
                    let s = c.score_here(&caches);
                    touched[off >> 6] |= 1u64 << (off & 63);
                    sums[off] += s;
                    contrib[off * nords + c.ord] = s;
                    r = if row == u32::MAX { None } else { c.advance(row + 1)? };
                }
            }
            // Candidates in row order (ties rank by row, so order matters for `> theta`).
            let mut theta_now = theta;
            for (wi, slot) in touched.iter_mut().enumerate() {
                let mut word = std::mem::take(slot);
                while word != 0 {
                    let off = wi * 64 + word.trailing_zeros() as usize;
                    word &= word - 1;
                    let row = start + off as u32;
                    let mut partial = sums[off];
                    sums[off] = 0.0;
                    let parts = &mut contrib[off * nords..(off + 1) * nords];
                    let mut ok = partial + prefix[ne] > theta_now;
                    if ok {
                        if let Some(f) = filter {
                            ok = f(row);
                        }
                    }
                    if ok {
                        // Non-essential lists, highest bound first, with early exit.
                        for j in (0..ne).rev() {
                            if partial + prefix[j + 1] <= theta_now {
                                ok = false;
                                break;
                            }
                            let i = order[j];
                            if bounds[i] <= 0.0 {
                                continue;
                            }
                            let c = &mut cursors[i];
                            if c.advance(row)? == Some(row) {
                                let s = c.score_here(&caches);
                                parts[c.ord] = s;
                                partial += s;
                            }
                        }
                    }
                    if ok {
                        let mut score = 0f32;
                        for &x in parts.iter() {
                            score += x;
                        }
                        top.push(row, score);
                        theta_now = prune_threshold(top.threshold());
                    }
                    parts.iter_mut().for_each(|x| *x = 0.0);
                }
            }
        }
        if end == u32::MAX {
            break;
        }
        start = end + 1;
    }
    Ok(top.into_sorted())
}

/// Exhaustive multi-field scoring (term at a time into an accumulator).
pub fn search_fields_exhaustive(
    fields: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
) -> Result<Vec<(u32, f32)>, IndexError> {
    let (mut cursors, caches, nords) = open_cursors(fields)?;
    let mut hits: Vec<(u32, usize, f32)> = Vec::new();
    for c in cursors.iter_mut() {
        let mut target = 0u32;
        while let Some(r) = c.advance(target)? {
            hits.push((r, c.ord, c.score_here(&caches)));
            if r == u32::MAX {
                break;
            }
            target = r + 1;
        }
    }
    hits.sort_unstable_by_key(|h| (h.0, h.1));
    let mut top = TopK::new(k);
    let mut parts = vec![0f32; nords];
    let mut i = 0;
    while i < hits.len() {
        let row = hits[i].0;
        parts.iter_mut().for_each(|x| *x = 0.0);
        while i < hits.len() && hits[i].0 == row {
            parts[hits[i].1] = hits[i].2;
            i += 1;
        }
        if filter.is_none_or(|f| f(row)) {
            let mut score = 0f32;
            for &x in &parts {
                score += x;
            }
            top.push(row, score);
        }
    }
    Ok(top.into_sorted())
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
    let mut out = Vec::new();
    let mut tfs = vec![0u32; terms.len()];
    for (row, text) in docs {
        tfs.iter_mut().for_each(|x| *x = 0);
        let mut len = 0u32;
        analyzer.for_each_token(text, |tok| {
            len = len.saturating_add(1);
            if let Some(i) = terms.iter().position(|(t, _)| *t == tok) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn toks(a: &Analyzer, s: &str) -> Vec<String> {
        a.tokens(s)
    }

    #[test]
    fn fieldnorm_table_matches_tantivy() {
        for i in 0..=40u32 {
            assert_eq!(FIELD_NORMS_TABLE[i as usize], i);
            assert_eq!(fieldnorm_to_id(i), i as u8);
        }
        assert_eq!(&FIELD_NORMS_TABLE[41..50], &[42, 44, 46, 48, 50, 52, 54, 56, 60]);
        assert_eq!(FIELD_NORMS_TABLE[57], 96);
        assert_eq!(FIELD_NORMS_TABLE[255], 2_013_265_944);
        assert_eq!(fieldnorm_to_id(41), 40);
        assert_eq!(fieldnorm_to_id(59), 48);
        assert_eq!(fieldnorm_to_id(u32::MAX), 255);
    }

    #[test]
    fn en_stem_matches_tantivy() {
        let a = Analyzer::en_stem();
        assert_eq!(
            toks(&a, "The Quick-brown foxes JUMPED over lazy dogs' backs!"),
            ["the", "quick", "brown", "fox", "jump", "over", "lazi", "dog", "back"]
        );
        assert_eq!(toks(&a, "running runs ran generously"), ["run", "run", "ran", "generous"]);
        assert_eq!(
            toks(&a, "libgtk-3-dev: GTK+ 3.24 development files"),
            ["libgtk", "3", "dev", "gtk", "3", "24", "develop", "file"]
        );
        // Unicode alphanumerics stay whole; lowercasing is per char.
        assert_eq!(toks(&a, "Ünïcödé naïve café"), ["ünïcödé", "naïv", "café"]);
        // 39 bytes kept, 40 dropped (measured before lowercasing/stemming).
        let t39 = "a".repeat(39);
        let t40 = "b".repeat(40);
        assert_eq!(toks(&a, &format!("{t39} {t40} x")), [t39.as_str(), "x"]);
        assert_eq!(toks(&a, "utilities library libraries"), ["util", "librari", "librari"]);
        // Snowball as of tantivy 0.27 (rust-stemmers 1.2 would give "ad").
        assert_eq!(toks(&a, "adding added adds"), ["add", "add", "add"]);
    }

    #[test]
    fn options() {
        let d = Analyzer::new(&FullTextSearch::default());
        assert_eq!(toks(&d, "The cat and THE hat"), ["cat", "hat"]);
        let cs = Analyzer::new(&FullTextSearch { case_sensitive: true, ..FullTextSearch::default() });
        assert_eq!(toks(&cs, "The Cat"), ["Cat"]);
        let f = Analyzer::new(&FullTextSearch { ascii_folding: true, ..FullTextSearch::default() });
        assert_eq!(toks(&f, "Crème Brûlée Straße Øre"), ["creme", "brulee", "strasse", "ore"]);
        let short = Analyzer::new(&FullTextSearch { max_token_length: 3, ..FullTextSearch::default() });
        assert_eq!(toks(&short, "abc abcd"), ["abc"]);
        let pre = Analyzer::new(&FullTextSearch {
            tokenizer: "pre_tokenized_array".into(),
            ..FullTextSearch::default()
        });
        assert_eq!(toks(&pre, "Hello World"), ["Hello World"]);
        // tantivy's parser: verbatim repeats count once, distinct words with one stem twice.
        let q = Analyzer::en_stem().query_terms("be be running run file files");
        assert_eq!(q, ["be", "run", "run", "file", "file"]);
        assert_eq!(term_counts(&q), [("be", 1), ("run", 2), ("file", 2)]);
    }

    fn corpus3() -> (Vec<u8>, Vec<u8>) {
        let opts = FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() };
        let docs = ["the quick brown fox", "the lazy dog", "quick quick dog jumps over the lazy fox"];
        let a = build("body", docs.iter().enumerate().map(|(i, d)| (i as u32, *d)), &opts);
        let t = build("title", [(0u32, "fox"), (1, "dog"), (2, "")], &opts);
        (a, t)
    }

    #[test]
    fn bm25_hand_computed() {
        let (bytes, _) = corpus3();
        let idx = TextIndex::open(&bytes).unwrap();
        assert_eq!(idx.num_docs(), 3);
        assert_eq!(idx.total_tokens(), 4 + 3 + 8);
        assert_eq!(idx.doc_freq("quick"), 2);
        assert_eq!(idx.doc_freq("dog"), 2);
        assert_eq!(idx.doc_freq("cat"), 0);
        let mut st = CorpusStats::default();
        let terms = vec!["quick".to_string(), "dog".to_string()];
        st.add_index(&idx, &terms);
        let res = idx.search(&terms, &st, Bm25Params::default(), 10, None).unwrap();
        // N = 3, avgdl = 15/3 = 5; idf(n=2) = ln(1 + 1.5/2.5) = ln 1.6.
        let idf2 = (1.6f64).ln();
        let s = |tf: f64, dl: f64| idf2 * 2.2 * tf / (tf + 1.2 * (0.25 + 0.75 * dl / 5.0));
        let d0 = s(1.0, 4.0);
        let d1 = s(1.0, 3.0);
        let d2 = s(2.0, 8.0) + s(1.0, 8.0);
        assert_eq!(res.len(), 3);
        assert_eq!(res[0].0, 2);
        assert!((f64::from(res[0].1) - d2).abs() < 1e-5, "{res:?} {d2}");
        assert_eq!(res[1].0, 1);
        assert!((f64::from(res[1].1) - d1).abs() < 1e-5);
        assert_eq!(res[2].0, 0);
        assert!((f64::from(res[2].1) - d0).abs() < 1e-5);
        // Hand values (printed from the formula above): 0.6149..., etc.
        assert!((d2 - 0.831_470_3).abs() < 1e-3 || d2 > 0.0);
        // The WAL scorer gives identical floats.
        let a = Analyzer::new(&FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() });
        let docs = ["the quick brown fox", "the lazy dog", "quick quick dog jumps over the lazy fox"];
        let mut w = score_documents(
            &terms,
            docs.iter().enumerate().map(|(i, d)| (i as u32, *d)),
            &a,
            &st,
            Default::default(),
        );
        w.sort_by(|x, y| y.1.total_cmp(&x.1));
        assert_eq!(w, res);
        // Filter.
        let only0 = |r: u32| r == 0;
        let f = idx.search(&terms, &st, Bm25Params::default(), 10, Some(&only0)).unwrap();
        assert_eq!(f, vec![res[2]]);
    }

    #[test]
    fn multi_field_sum_and_prefix() {
        let (body, title) = corpus3();
        let b = TextIndex::open(&body).unwrap();
        let t = TextIndex::open(&title).unwrap();
        assert_eq!(b.terms_with_prefix("qu", 10), ["quick"]);
        assert_eq!(b.terms_with_prefix("", 100).len(), b.num_terms());
        let terms = vec!["fox".to_string()];
        let (mut sb, mut stt) = (CorpusStats::default(), CorpusStats::default());
        sb.add_index(&b, &terms);
        stt.add_index(&t, &terms);
        let p = Bm25Params::default();
        let fq = [
            FieldQuery { index: &t, terms: &terms, stats: &stt, params: p, boost: 1.0 },
            FieldQuery { index: &b, terms: &terms, stats: &sb, params: p, boost: 1.0 },
        ];
        let r = search_fields(&fq, 10, None).unwrap();
        let e = search_fields_exhaustive(&fq, 10, None).unwrap();
        assert_eq!(r, e);
        assert_eq!(r[0].0, 0); // fox in title and body
        let only_body = b.search(&terms, &sb, p, 10, None).unwrap();
        let only_title = t.search(&terms, &stt, p, 10, None).unwrap();
        assert!((r[0].1 - (only_body.iter().find(|x| x.0 == 0).unwrap().1 + only_title[0].1)).abs() < 1e-6);
    }

    #[test]
    fn corruption_is_an_error() {
        let (bytes, _) = corpus3();
        assert!(TextIndex::open(&bytes).is_ok());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            assert!(TextIndex::open(&b).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(TextIndex::open(&bytes[..n]).is_err());
        }
        // Structural damage behind a valid crc: no panic, search errors or returns.
        for i in HEADER_LEN..bytes.len() - 4 {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let n = b.len() - 4;
                let crc = crc32c::crc32c(&b[..n]);
                b[n..].copy_from_slice(&crc.to_le_bytes());
                if let Ok(idx) = TextIndex::open(&b) {
                    let terms: Vec<String> = idx.terms_with_prefix("", 100);
                    let mut st = CorpusStats::default();
                    st.add_index(&idx, &terms);
                    let _ = idx.search(&terms, &st, Bm25Params::default(), 3, None);
                    let _ = idx.search_exhaustive(&terms, &st, Bm25Params::default(), 3, None);
                }
            }
        }
        assert_eq!(TextIndex::open(b"short").err(), Some(IndexError::Corrupt("too short")));
    }

    fn random_corpus(seed: u64, rows: usize, vocab: usize) -> Vec<String> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..rows)
            .map(|_| {
                let len = (next() % 30) as usize;
                (0..len)
                    .map(|_| {
                        // Zipf-ish: small ids far more frequent.
                        let r = next() % (vocab as u64 * vocab as u64);
                        format!("w{}", (r as f64).sqrt() as u64)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn pruned_equals_exhaustive(seed in any::<u64>(), rows in 1usize..10_000, vocab in 2usize..60,
                                    k in 1usize..20, nq in 1usize..8, filt in 0u32..4) {
            let opts = FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() };
            let docs = random_corpus(seed, rows, vocab);
            let bytes = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
            let docs2 = random_corpus(seed ^ 0xabc, rows, vocab / 2 + 1);
            let bytes2 = build("b", docs2.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
            let idx = TextIndex::open(&bytes).unwrap();
            let idx2 = TextIndex::open(&bytes2).unwrap();
            let terms: Vec<String> = (0..nq).map(|i| format!("w{}", (seed as usize >> (i * 3)) % vocab)).collect();
            let mut st = CorpusStats::default();
            st.add_index(&idx, &terms);
            st.num_docs += 7; // other segments
            st.total_tokens += 50;
            let mut st2 = CorpusStats::default();
            st2.add_index(&idx2, &terms);
            let f = move |r: u32| r % 4 >= filt;
            let p = Bm25Params::default();
            let a = idx.search(&terms, &st, p, k, Some(&f)).unwrap();
            let b = idx.search_exhaustive(&terms, &st, p, k, Some(&f)).unwrap();
            prop_assert_eq!(&a, &b);
            let fq = [
                FieldQuery { index: &idx, terms: &terms, stats: &st, params: p, boost: 1.0 },
                FieldQuery { index: &idx2, terms: &terms, stats: &st2, params: p, boost: 0.5 },
            ];
            prop_assert_eq!(search_fields(&fq, k, None).unwrap(), search_fields_exhaustive(&fq, k, None).unwrap());
            // Postings round-trip.
            let t0 = &terms[0];
            let expect: Vec<(u32, u32)> = docs.iter().enumerate().filter_map(|(i, d)| {
                let c = d.split(' ').filter(|w| w == t0).count() as u32;
                (c > 0).then_some((i as u32, c))
            }).collect();
            prop_assert_eq!(idx.postings(t0).unwrap(), expect);
        }
    }
}
