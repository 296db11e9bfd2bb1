//! Pattern matching for `Regex`, `Glob`/`IGlob` and `Fuzzy` conditions. Invariants:
//! - patterns are compiled once, when the leaf is built (`Condition::new`), and compare
//!   equal by their source text, so the canonical JSON round-trip holds;
//! - matching is linear in the text for a given pattern, never pattern × text: a glob is
//!   scanned once by Shift-And (O(text × ⌈piece/64⌉)), a regex by the `regex` crate's
//!   automata, `Fuzzy` in a band of O(text × distance); a compiled glob holds at most 128
//!   ASCII masks of a bit per token, so its memory is linear in the pattern too.

use std::collections::HashMap;
use std::ops::Range;

use super::*;

// Regex

/// A compiled regex; equality, `Debug` and the JSON form use the pattern text.
#[derive(Clone)]
pub(super) struct RegexPattern {
    pub(super) regex: regex::Regex,
}

impl RegexPattern {
    pub(super) fn new(pattern: &str) -> Result<RegexPattern, FilterError> {
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| FilterError(format!("bad Regex pattern {pattern:?}: {e}")))?;
        Ok(RegexPattern { regex })
    }
}

impl PartialEq for RegexPattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
    }
}

impl fmt::Debug for RegexPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.regex.as_str())
    }
}

// Glob
//
// Our own matcher rather than `globset`: globset has path semantics (`**`,
// `{a,b}` alternation) that Unix glob over plain strings does not, and a
// token list keeps memory linear in the pattern. (A translation to the
// `regex` crate was tried: exact, but a pathological pattern thrashes its
// lazy DFA and the PikeVM fallback is pattern × text as well, and slower.)
// The first matcher backtracked to the last `*`: exact, but `*` and 1,000
// tokens over a 4 MiB value took 10–18 s (release build); the Shift-And scan
// below takes ~35 ms, and its property test keeps the old one as the oracle.

#[derive(Clone, Debug, PartialEq)]
pub(super) enum GlobToken {
    Char(char),
    AnyChar,
    Star,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// A Unix glob over a whole string: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`
/// (or `[^a]`), and `\` to escape the next character.
#[derive(Clone, Debug)]
pub(super) struct GlobPattern {
    pub(super) source: String,
    pub(super) case_insensitive: bool,
    pub(super) tokens: Vec<GlobToken>,
    /// Derived from the tokens: how [`GlobPattern::is_match`] scans.
    pieces: Box<Pieces>,
}

impl PartialEq for GlobPattern {
    fn eq(&self, other: &Self) -> bool {
        // Tokens are a function of the source and the flag.
        self.source == other.source && self.case_insensitive == other.case_insensitive
    }
}

/// Simple case folding: a character whose lowercase is one character folds
/// to it; others stay as they are.
pub(super) fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

pub(super) fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

impl GlobPattern {
    pub(super) fn new(source: &str, case_insensitive: bool) -> Result<GlobPattern, FilterError> {
        let bad = |why: &str| FilterError(format!("bad glob pattern {source:?}: {why}"));
        let mut tokens = Vec::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&GlobToken::Star) {
                        continue;
                    }
                    GlobToken::Star
                }
                '?' => GlobToken::AnyChar,
                '\\' => GlobToken::Char(chars.next().ok_or_else(|| bad("it ends with a lone '\\'"))?),
                '[' => {
                    let negated = chars.next_if(|c| *c == '!' || *c == '^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let c = chars.next().ok_or_else(|| bad("unclosed character class '['"))?;
                        // A ']' right after '[' or '[!' is a member, not the end.
                        if c == ']' && !ranges.is_empty() {
                            break;
                        }
                        let lo =
                            if c == '\\' { chars.next().ok_or_else(|| bad("unclosed '['"))? } else { c };
                        let mut ahead = chars.clone();
                        let is_range = ahead.next() == Some('-') && ahead.next().is_some_and(|n| n != ']');
                        let hi = if is_range {
                            chars.next();
                            let h = chars.next().ok_or_else(|| bad("unclosed '['"))?;
                            let h =
                                if h == '\\' { chars.next().ok_or_else(|| bad("unclosed '['"))? } else { h };
                            if h < lo {
                                return Err(bad(&format!("reversed range {lo}-{h}")));
                            }
                            h
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    GlobToken::Class { negated, ranges }
                }
                c => GlobToken::Char(c),
            };
            tokens.push(token);
        }
        let pieces = Box::new(Pieces::new(&tokens, case_insensitive));
        Ok(GlobPattern { source: source.to_owned(), case_insensitive, tokens, pieces })
    }

    fn token_matches(&self, token: &GlobToken, c: char) -> bool {
        token_matches(token, c, self.case_insensitive)
    }

    /// Whether `text` matches the whole pattern, in one left-to-right pass
    /// over the text: the fixed-length head is checked at the start, the
    /// tail at the end, and each piece between two stars at its leftmost
    /// occurrence after the previous one (exact: a star matches any run, so
    /// the leftmost end leaves the most room to what follows). Each piece is
    /// found by a Shift-And scan (see [`Pieces`]), so the cost is
    /// O(text × ⌈piece/64⌉), never pattern × text; a scan of a long value
    /// still asks the query deadline every [`DEADLINE_EVERY`] characters
    /// (past it the result is discarded anyway).
    pub(super) fn is_match(&self, text: &str) -> bool {
        let p = &self.pieces;
        let Some(stars) = p.stars.as_ref() else {
            return self.fixed_prefix(0..self.tokens.len(), text) == Some(text.len());
        };
        let Some(head_end) = self.fixed_prefix(0..stars.first, text) else { return false };
        let Some(tail_start) = self.fixed_suffix(stars.last + 1..self.tokens.len(), text) else {
            return false;
        };
        let Some(mut rest) = text.get(head_end..tail_start) else { return false };
        for piece in &p.middles {
            match self.find(piece.clone(), rest) {
                Some(end) => rest = rest.get(end..).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }

    /// The byte length of the start of `text` that tokens `range` (no star)
    /// match, one character each.
    fn fixed_prefix(&self, range: Range<usize>, text: &str) -> Option<usize> {
        let tokens = self.tokens.get(range)?;
        let mut chars = text.char_indices();
        for token in tokens {
            let (_, c) = chars.next()?;
            if !self.token_matches(token, c) {
                return None;
            }
        }
        Some(chars.next().map_or(text.len(), |(at, _)| at))
    }

    /// The byte offset where the end of `text` that tokens `range` (no star)
    /// match begins, one character each.
    fn fixed_suffix(&self, range: Range<usize>, text: &str) -> Option<usize> {
        let tokens = self.tokens.get(range)?;
        let mut chars = text.char_indices().rev();
        let mut start = text.len();
        for token in tokens.iter().rev() {
            let (at, c) = chars.next()?;
            if !self.token_matches(token, c) {
                return None;
            }
            start = at;
        }
        Some(start)
    }

    /// The byte end of the leftmost occurrence in `hay` of tokens `piece`
    /// (no star, not empty), by Shift-And: bit `i` of the state says the
    /// piece's first tokens up to `i` match the text ending here. Bits are
    /// the tokens' indices in the whole pattern, so one mask per character
    /// serves every piece; only the piece's words are touched.
    fn find(&self, piece: Range<usize>, hay: &str) -> Option<usize> {
        let (first, last) = (piece.start / 64, piece.end.checked_sub(1)? / 64);
        let start_bit = 1u64 << (piece.start % 64);
        let accept_bit = 1u64 << ((piece.end - 1) % 64);
        let mut state = vec![0u64; last - first + 1];
        let mut other = OtherMasks::default();
        for (n, (at, c)) in hay.char_indices().enumerate() {
            if n % DEADLINE_EVERY == DEADLINE_EVERY - 1 && crate::deadline::expired() {
                return None;
            }
            let mask = match self.pieces.ascii_mask(c) {
                Some(m) => m.get(first..=last)?,
                None => other.get(self, c, first..last + 1)?,
            };
            let mut carry = start_bit;
            for (s, m) in state.iter_mut().zip(mask) {
                let next = *s >> 63;
                *s = ((*s << 1) | carry) & m;
                carry = next;
            }
            if state.last().is_some_and(|s| s & accept_bit != 0) {
                return Some(at + c.len_utf8());
            }
        }
        None
    }
}

/// How often (in characters) a Shift-And scan asks the query deadline.
const DEADLINE_EVERY: usize = 4096;

/// Whether one token matches one character: case-insensitively, a literal
/// matches when both fold to the same character, a class when the
/// character, its folding or its upper case is within it.
pub(super) fn token_matches(token: &GlobToken, c: char, case_insensitive: bool) -> bool {
    match token {
        GlobToken::Char(p) => *p == c || (case_insensitive && fold(*p) == fold(c)),
        GlobToken::AnyChar => true,
        GlobToken::Star => false,
        GlobToken::Class { negated, ranges } => {
            let within = |x: char| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&x));
            let hit = within(c) || (case_insensitive && (within(fold(c)) || within(upper(c))));
            hit != *negated
        }
    }
}

/// [`token_matches`] for a class, given the character and (when
/// case-insensitive) its folding and upper case, computed once.
fn class_matches(token: &GlobToken, variants: &[char]) -> bool {
    let GlobToken::Class { negated, ranges } = token else { return false };
    let hit = variants.iter().any(|x| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(x)));
    hit != *negated
}

/// A glob's tokens cut at its stars, with the Shift-And masks of ASCII
/// characters. Memory: 128 indices plus one mask (a bit per token) per
/// distinct ASCII behaviour, at most 128 — bounded by the pattern's length.
#[derive(Clone, Debug, Default)]
struct Pieces {
    /// `None` when the pattern has no star (it then matches a fixed length).
    stars: Option<Stars>,
    /// The token ranges between two consecutive stars (never empty, as
    /// consecutive stars are one).
    middles: Vec<Range<usize>>,
    /// Words per mask: one bit per token.
    words: usize,
    /// Index of each ASCII character's mask in `masks`.
    ascii: Vec<u16>,
    /// The distinct masks, `words` each.
    masks: Vec<u64>,
    /// What other characters' masks are made of.
    other: OtherIndex,
}

/// The parts of a non-ASCII character's mask, so that computing one costs
/// the piece's words, the character's occurrences as a literal and the
/// piece's classes — not a check of every token.
#[derive(Clone, Debug, Default)]
struct OtherIndex {
    /// The `?` tokens (they match every character).
    any: Vec<u64>,
    /// Literal tokens by character (case-insensitively, by its folding: a
    /// literal then matches exactly the characters of the same folding),
    /// their indices ascending.
    literals: HashMap<char, Vec<usize>>,
    /// The classes' token indices, ascending.
    classes: Vec<usize>,
}

/// The first and last star's token index.
#[derive(Clone, Debug)]
struct Stars {
    first: usize,
    last: usize,
}

impl Pieces {
    fn new(tokens: &[GlobToken], case_insensitive: bool) -> Pieces {
        let star_at: Vec<usize> =
            tokens.iter().enumerate().filter(|(_, t)| **t == GlobToken::Star).map(|(i, _)| i).collect();
        let stars = star_at.first().zip(star_at.last()).map(|(f, l)| Stars { first: *f, last: *l });
        let middles = star_at.windows(2).map(|w| w[0] + 1..w[1]).filter(|r| !r.is_empty()).collect();
        let words = tokens.len().div_ceil(64).max(1);
        let (mut ascii, mut masks) = (Vec::with_capacity(128), Vec::new());
        let mut seen: HashMap<Vec<u64>, u16> = HashMap::new();
        for b in 0u8..128 {
            let mask = mask_of(tokens, char::from(b), case_insensitive, 0..words);
            let next = u16::try_from(seen.len()).unwrap_or(u16::MAX);
            let index = *seen.entry(mask.clone()).or_insert_with(|| {
                masks.extend_from_slice(&mask);
                next
            });
            ascii.push(index);
        }
        let other = OtherIndex::new(tokens, case_insensitive, words);
        Pieces { stars, middles, words, ascii, masks, other }
    }

    /// An ASCII character's mask over every token.
    fn ascii_mask(&self, c: char) -> Option<&[u64]> {
        let index = usize::from(*self.ascii.get(usize::try_from(u32::from(c)).ok()?)?);
        self.masks.get(index * self.words..(index + 1) * self.words)
    }
}

/// The mask of `c` over the tokens of mask words `words`: bit `i` set when
/// token `i` matches `c`.
fn mask_of(tokens: &[GlobToken], c: char, case_insensitive: bool, words: Range<usize>) -> Vec<u64> {
    let mut mask = vec![0u64; words.len()];
    let first_token = words.start * 64;
    let span = tokens.get(first_token..).unwrap_or_default().iter().take(words.len() * 64);
    for (i, token) in span.enumerate() {
        if token_matches(token, c, case_insensitive) {
            if let Some(w) = mask.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }
    mask
}

/// The masks of non-ASCII characters one scan met, computed on first sight
/// ([`OtherIndex::mask`]) and kept, up to [`OTHER_MASKS_BYTES`] of them
/// (then forgotten and recomputed): enough for every character of a
/// CJK text against a long piece, and bounded on any text.
#[derive(Default)]
struct OtherMasks {
    masks: HashMap<char, Vec<u64>>,
    bytes: usize,
}

const OTHER_MASKS_BYTES: usize = 4 << 20;

impl OtherMasks {
    fn get(&mut self, glob: &GlobPattern, c: char, words: Range<usize>) -> Option<&[u64]> {
        // A kept mask's bytes, with the map's own share (key, vector, slack).
        let cost = words.len() * 8 + 48;
        if !self.masks.contains_key(&c) {
            if self.bytes + cost > OTHER_MASKS_BYTES {
                self.masks.clear();
                self.bytes = 0;
            }
            self.bytes += cost;
        }
        let mask = self.masks.entry(c).or_insert_with(|| glob.pieces.other.mask(glob, c, words));
        Some(mask)
    }
}

impl OtherIndex {
    fn new(tokens: &[GlobToken], case_insensitive: bool, words: usize) -> OtherIndex {
        let mut other = OtherIndex { any: vec![0; words], ..OtherIndex::default() };
        for (i, token) in tokens.iter().enumerate() {
            match token {
                GlobToken::AnyChar => set_bit(&mut other.any, i),
                GlobToken::Char(p) => {
                    let key = if case_insensitive { fold(*p) } else { *p };
                    other.literals.entry(key).or_default().push(i);
                }
                GlobToken::Class { .. } => other.classes.push(i),
                GlobToken::Star => {}
            }
        }
        other
    }

    /// The mask of `c` over the tokens of mask words `words` (the same as
    /// checking each token with [`token_matches`]).
    fn mask(&self, glob: &GlobPattern, c: char, words: Range<usize>) -> Vec<u64> {
        let mut mask = self.any.get(words.clone()).map_or_else(|| vec![0; words.len()], <[u64]>::to_vec);
        let tokens = words.start * 64..words.end * 64;
        let key = if glob.case_insensitive { fold(c) } else { c };
        for i in self.literals.get(&key).map_or(&[][..], |at| in_range(at, &tokens)) {
            set_bit(&mut mask, i - tokens.start);
        }
        let variants = if glob.case_insensitive { vec![c, fold(c), upper(c)] } else { vec![c] };
        for &i in in_range(&self.classes, &tokens) {
            if glob.tokens.get(i).is_some_and(|t| class_matches(t, &variants)) {
                set_bit(&mut mask, i - tokens.start);
            }
        }
        mask
    }
}

/// The indices of ascending `at` within `range`.
fn in_range<'a>(at: &'a [usize], range: &Range<usize>) -> &'a [usize] {
    let (lo, hi) = (at.partition_point(|i| *i < range.start), at.partition_point(|i| *i < range.end));
    at.get(lo..hi).unwrap_or_default()
}

fn set_bit(mask: &mut [u64], i: usize) {
    if let Some(w) = mask.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

// Fuzzy

/// `Fuzzy`'s operand and options from JSON, with the API's limits (pattern
/// length, [`MAX_FUZZY_DISTANCE`]); defaults: distance 1, case-sensitive.
pub(super) fn fuzzy_operand(
    attr: &str,
    operand: &Json,
    options: Option<&Json>,
) -> Result<LeafOperand, FilterError> {
    let text = pattern(attr, Op::Fuzzy, operand)?.to_owned();
    let (mut max_edit_distance, mut case_sensitive) = (1, true);
    if let Some(options) = options {
        let Json::Object(m) = options else {
            return err(format!("Fuzzy options on {attr:?} must be an object, got {}", json_kind(options)));
        };
        for (k, v) in m {
            match k.as_str() {
                "max_edit_distance" => {
                    max_edit_distance = v
                        .as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .filter(|n| *n <= MAX_FUZZY_DISTANCE)
                        .ok_or_else(|| {
                            FilterError(format!(
                                "Fuzzy max_edit_distance on {attr:?} must be an integer 0..={MAX_FUZZY_DISTANCE}, \
                                 got {v}"
                            ))
                        })?;
                }
                "case_sensitive" => {
                    case_sensitive = v.as_bool().ok_or_else(|| {
                        FilterError(format!("Fuzzy case_sensitive on {attr:?} must be a bool, got {v}"))
                    })?;
                }
                other => {
                    return err(format!(
                    "unknown Fuzzy option {other:?} (expected \"max_edit_distance\" or \"case_sensitive\")"
                ))
                }
            }
        }
    }
    Ok(LeafOperand::Fuzzy { text, max_edit_distance, case_sensitive })
}

impl Fuzzy {
    pub(super) fn is_match(&self, s: &str) -> bool {
        let k = usize::from(self.max_edit_distance);
        if self.case_sensitive {
            within_edit_distance(&self.text.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>(), k)
        } else {
            let a: Vec<char> = self.text.chars().map(fold).collect();
            let b: Vec<char> = s.chars().map(fold).collect();
            within_edit_distance(&a, &b, k)
        }
    }
}

/// Whether the Levenshtein distance between `a` and `b` is at most `k`.
/// Only the diagonal band of width 2k+1 can hold values ≤ k, so this costs
/// O(len × k) instead of O(len²) (attribute strings may be long).
pub(super) fn within_edit_distance(a: &[char], b: &[char], k: usize) -> bool {
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > k {
        return false;
    }
    let cap = k + 1; // "more than k": saturate so band edges stay cheap
    let mut prev: Vec<usize> = (0..=m).map(|j| j.min(cap)).collect();
    let mut cur = vec![cap; m + 1];
    for (i, ca) in a.iter().enumerate().map(|(i, c)| (i + 1, c)) {
        let lo = i.saturating_sub(k).max(1);
        let hi = (i + k).min(m);
        if let Some(first) = cur.first_mut() {
            *first = i.min(cap);
        }
        if lo > 1 {
            if let Some(x) = cur.get_mut(lo - 1) {
                *x = cap;
            }
        }
        let mut row_min = i.min(cap);
        for j in lo..=hi {
            let (Some(&diag), Some(&up), Some(&left), Some(cb)) =
                (prev.get(j - 1), prev.get(j), cur.get(j - 1), b.get(j - 1))
            else {
                return false;
            };
            let v = (diag + usize::from(ca != cb)).min(up + 1).min(left + 1).min(cap);
            if let Some(x) = cur.get_mut(j) {
                *x = v;
            }
            row_min = row_min.min(v);
        }
        if let Some(x) = cur.get_mut(hi + 1) {
            *x = cap;
        }
        if row_min > k {
            return false;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(m).is_some_and(|d| *d <= k)
}
