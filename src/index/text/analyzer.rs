//! Analysis: the schema's `full_text_search` options turned into tokens (see the parent
//! module doc for the exact pipeline), and the Lucene/tantivy fieldnorm code. Invariant: the
//! same options give the same tokens as tantivy 0.27's analyzers.

use super::*;

// Fieldnorms (Lucene SmallFloat.intToByte4 / byte4ToInt, as tantivy's FIELD_NORMS_TABLE)

pub(super) const NUM_FREE_VALUES: u32 = 24;

pub(super) const fn int4_to_long(i: u32) -> u64 {
    let bits = (i & 7) as u64;
    let shift = (i >> 3) as i64 - 1;
    if shift == -1 {
        bits
    } else {
        (bits | 8) << shift
    }
}

pub(super) const fn build_norm_table() -> [u32; 256] {
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

// Analysis

/// Lucene's English stop words (tantivy's `StopWordFilter::new(Language::English)`).
pub(super) const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with",
];

/// The stop-word list code of a language (English handled separately).
pub(super) fn stop_code(name: &str) -> Option<&'static str> {
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
    /// `word_v4`: UAX #29 word boundaries instead of splitting on every
    /// non-alphanumeric character.
    uax29: bool,
    lowercase: bool,
    fold: bool,
    stop: Option<std::collections::HashSet<&'static str>>,
    stemmer: Option<frostem::Stemmer>,
    /// The stemmer's language: the key of its stems in [`STEMS`].
    stem_lang: Box<str>,
    max_len: usize,
}

/// Words stemmed before on this thread, per language (`stems.rs`): ingest analyses the
/// same few tens of thousands of words over and over (in the overlay index, then in every
/// segment build and merge), and a Snowball stem costs several times a lookup.
type StemCache = Vec<(Box<str>, StemTable)>;

thread_local! {
    static STEMS: std::cell::RefCell<StemCache> = const { std::cell::RefCell::new(Vec::new()) };
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("pre_tokenized", &self.pre_tokenized)
            .field("uax29", &self.uax29)
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
            uax29: opts.tokenizer == "word_v4",
            lowercase: !opts.case_sensitive,
            fold: opts.ascii_folding,
            stop,
            stemmer: if opts.stemming { frostem::Stemmer::try_from_name(&opts.language).ok() } else { None },
            stem_lang: opts.language.as_str().into(),
            max_len: opts.max_token_length as usize,
        }
    }

    /// tantivy's `en_stem`: no stop words, stemming on, lowercase, 39-byte cap
    /// (tantivy splits on non-alphanumeric characters: `word_v3`).
    pub fn en_stem() -> Analyzer {
        Analyzer::new(&FullTextSearch {
            tokenizer: "word_v3".into(),
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
        let mut stemmed = String::new();
        let words = if self.uax29 {
            Words::Uax29(unicode_segmentation::UnicodeSegmentation::unicode_words(text))
        } else {
            Words::Alnum(AlnumRuns { text, at: 0 })
        };
        let stems = self.stemmer.as_ref().map(|s| (s, self.stem_slot()));
        for raw in words {
            if raw.is_empty() || raw.len() > self.max_len {
                continue;
            }
            let mut tok: &str = raw;
            if self.lowercase && tok.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                buf.clear();
                if tok.is_ascii() {
                    buf.extend(tok.bytes().map(|b| char::from(b.to_ascii_lowercase())));
                } else {
                    for c in tok.chars() {
                        buf.extend(c.to_lowercase());
                    }
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
            match stems {
                Some((s, slot)) => {
                    stem_into(s, slot, tok, &mut stemmed);
                    f(raw, &stemmed)
                }
                None => f(raw, tok),
            }
        }
    }

    /// Where this analyzer's language keeps its stems in this thread's [`STEMS`] (stable for
    /// the thread's life: languages are only ever appended).
    fn stem_slot(&self) -> usize {
        STEMS.with_borrow_mut(|langs| match langs.iter().position(|(l, _)| *l == self.stem_lang) {
            Some(i) => i,
            None => {
                langs.push((self.stem_lang.clone(), StemTable::new()));
                langs.len() - 1
            }
        })
    }

    /// Like [`Self::for_each_token`], also passing the byte range of the raw
    /// word in `text` the token came from (highlighting marks that word).
    pub fn for_each_token_span(&self, text: &str, mut f: impl FnMut(std::ops::Range<usize>, &str)) {
        let base = text.as_ptr() as usize;
        self.for_each_token_raw(text, |raw, t| {
            // Both word splitters yield subslices of `text`.
            let start = (raw.as_ptr() as usize).wrapping_sub(base);
            if start.checked_add(raw.len()).is_some_and(|end| end <= text.len()) {
                f(start..start + raw.len(), t);
            }
        });
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
        // A set, not a scan of the earlier words: queries may have thousands.
        let mut raws: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut out: Vec<String> = Vec::new();
        self.for_each_token_raw(text, |raw, t| {
            if !raws.contains(raw) {
                raws.insert(raw.to_owned());
                out.push(t.to_owned());
            }
        });
        out
    }
}

/// The raw words of a text: split on non-alphanumeric characters
/// (`word_v0`..`word_v3`) or at UAX #29 word boundaries (`word_v4`).
enum Words<'a> {
    Alnum(AlnumRuns<'a>),
    Uax29(unicode_segmentation::UnicodeWords<'a>),
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        match self {
            Words::Alnum(s) => s.next(),
            Words::Uax29(w) => w.next(),
        }
    }
}

/// The stem of `word` into `out`, from this thread's cache (the language at `slot`, from
/// [`Analyzer::stem_slot`]) when it was stemmed before. Borrowed per word and copied out: the
/// caller's callback may analyse text itself.
fn stem_into(stemmer: &frostem::Stemmer, slot: usize, word: &str, out: &mut String) {
    out.clear();
    STEMS.with_borrow_mut(|langs| langs[slot].1.stem_into(stemmer, word, out));
}

/// The maximal runs of alphanumeric characters of `text` (`word_v0`..`word_v3`: what
/// `text.split(|c| !c.is_alphanumeric())` yields, without its empty pieces), ASCII bytes
/// classified without decoding.
struct AlnumRuns<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> AlnumRuns<'a> {
    /// Moves past the characters whose class is not `alnum`.
    fn skip(&mut self, alnum: bool) {
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.at) {
            let (is, len) = if b.is_ascii() {
                (b.is_ascii_alphanumeric(), 1)
            } else {
                // `at` is a char boundary: it only ever moves by whole characters.
                let c = self.text[self.at..].chars().next().unwrap_or_default();
                (c.is_alphanumeric(), c.len_utf8())
            };
            if is != alnum {
                return;
            }
            self.at += len;
        }
    }
}

impl<'a> Iterator for AlnumRuns<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.skip(false);
        let start = self.at;
        self.skip(true);
        (self.at > start).then(|| &self.text[start..self.at])
    }
}

/// The tokens of `text` under the default full-text options (used by the token filters).
pub fn tokenize_default(text: &str) -> Vec<String> {
    static DEFAULT: OnceLock<Analyzer> = OnceLock::new();
    DEFAULT.get_or_init(|| Analyzer::new(&FullTextSearch::default())).tokens(text)
}

pub(super) fn fold_ascii(s: &str, out: &mut String) {
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

/// The analyzed tokens of an attribute value: a string is analyzed, a string
/// array element by element (with `pre_tokenized_array`, each element is one
/// token); other values have none. Shared by index building and queries.
pub fn value_tokens(analyzer: &Analyzer, v: &crate::model::Value) -> Vec<String> {
    let mut toks = ValueTokens::default();
    toks.analyze(analyzer, v);
    toks.iter().map(str::to_owned).collect()
}

/// A value's analyzed tokens ([`value_tokens`]) in one buffer: two
/// allocations per value, reused across values, instead of one per token
/// (ingest analyses every row several times; the per-token strings were a
/// good part of its allocator time).
#[derive(Default, Debug)]
pub struct ValueTokens {
    text: String,
    /// Each token's end in `text` (u32: a write's tokens are held until it is answered,
    /// `state/text_prepared.rs`, and a value is far under 4 GiB).
    ends: Vec<u32>,
}

impl ValueTokens {
    /// Replaces the tokens with those of `v`.
    pub fn analyze(&mut self, analyzer: &Analyzer, v: &crate::model::Value) {
        self.text.clear();
        self.ends.clear();
        // Room for the usual case up front: tokens take about the value's length, and about
        // one in six of its bytes starts one (growing both by reallocation was a good part of
        // the analysis's allocator time at ingest).
        let len: usize = analysed_strings(v).map(str::len).sum();
        self.text.reserve(len);
        self.ends.reserve(len / 6 + 1);
        let (text, ends) = (&mut self.text, &mut self.ends);
        for s in analysed_strings(v) {
            analyzer.for_each_token(s, |t| {
                // A value's tokens past 4 GiB are not kept (request bodies are capped far below).
                if let Ok(end) = u32::try_from(text.len() + t.len()) {
                    text.push_str(t);
                    ends.push(end);
                }
            });
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The tokens, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.text[a as usize..b as usize])
    }
}

/// The strings analysis reads from `v`, in order: a string, or an array's strings (other values
/// and other items have no tokens).
pub fn analysed_strings(v: &crate::model::Value) -> impl Iterator<Item = &str> {
    use crate::model::Value;
    let items: &[Value] = match v {
        Value::Array(items) => items,
        _ => std::slice::from_ref(v),
    };
    items.iter().filter_map(|x| match x {
        Value::Str(s) => Some(s.as_str()),
        _ => None,
    })
}

/// [`value_tokens`] as it was, one string per token: the oracle of [`ValueTokens`].
#[cfg(test)]
pub(super) fn value_tokens_by_token(analyzer: &Analyzer, v: &crate::model::Value) -> Vec<String> {
    match v {
        crate::model::Value::Str(s) => analyzer.tokens(s),
        crate::model::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if let crate::model::Value::Str(s) = item {
                    analyzer.for_each_token(s, |t| out.push(t.to_owned()));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}
