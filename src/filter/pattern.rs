//! Pattern matching for `Regex`, `Glob`/`IGlob` and `Fuzzy` conditions. Invariant:
//! patterns are compiled once, when the leaf is built (`Condition::new`), and compare
//! equal by their source text, so the canonical JSON round-trip holds.

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
    tokens: Vec<GlobToken>,
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
        Ok(GlobPattern { source: source.to_owned(), case_insensitive, tokens })
    }

    fn token_matches(&self, token: &GlobToken, c: char) -> bool {
        match token {
            GlobToken::Char(p) => *p == c || (self.case_insensitive && fold(*p) == fold(c)),
            GlobToken::AnyChar => true,
            GlobToken::Star => false,
            GlobToken::Class { negated, ranges } => {
                let within = |x: char| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&x));
                let hit = within(c) || (self.case_insensitive && (within(fold(c)) || within(upper(c))));
                hit != *negated
            }
        }
    }

    /// Greedy matching that backtracks only to the last `*`: every other
    /// token consumes exactly one character, so this is exact, allocation
    /// free and O(pattern × text) in the worst case — never exponential;
    /// the pattern is at most `MAX_PATTERN_BYTES`, and a match running past
    /// the query deadline stops (`crate::deadline`).
    pub(super) fn is_match(&self, text: &str) -> bool {
        let next_char = |t: usize| text.get(t..).and_then(|s| s.chars().next());
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = next_char(t) {
            match self.tokens.get(p) {
                Some(GlobToken::Star) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(token) if self.token_matches(token, c) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last star swallow one more character. Each
            // retry costs up to the pattern's length, so the query deadline is
            // asked here too (past it the result is discarded anyway).
            let Some((sp, st)) = star else { return false };
            if crate::deadline::expired() {
                return false;
            }
            let Some(sc) = next_char(st) else { return false };
            star = Some((sp, st + sc.len_utf8()));
            p = sp + 1;
            t = st + sc.len_utf8();
        }
        self.tokens.get(p..).is_some_and(|rest| rest.iter().all(|tok| *tok == GlobToken::Star))
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
