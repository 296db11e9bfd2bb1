//! The text side of `Highlight`: where a value's words match query terms,
//! how the value is cut into fragments, and offsets in the client's unit.
//!
//! Invariants: every range is a byte range of the value on `char`
//! boundaries; a word matches when the attribute's own analyzer turns it into
//! one of the terms (so a stemmed or case-folded form matches); fragments are
//! trimmed of surrounding whitespace and never empty.

use std::ops::Range;

use unicode_segmentation::UnicodeSegmentation;

use super::*;

/// The byte ranges of the words of `text` whose analyzed token is a term.
pub(super) fn term_spans(analyzer: &Analyzer, text: &str, terms: &HashSet<&str>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    analyzer.for_each_token_span(text, |span, token| {
        if terms.contains(token) {
            out.push(span);
        }
    });
    out
}

/// The fragments of `text` (byte ranges, in text order). With
/// [`FragmentBy::Word`] each matching word (`spans`) is its own fragment.
pub(super) fn fragment_ranges(text: &str, by: FragmentBy, spans: &[Range<usize>]) -> Vec<Range<usize>> {
    let raw: Vec<Range<usize>> = match by {
        FragmentBy::None => std::iter::once(0..text.len()).collect(),
        FragmentBy::Word => return spans.to_vec(),
        FragmentBy::Sentence => text.split_sentence_bound_indices().map(|(at, s)| at..at + s.len()).collect(),
        FragmentBy::Paragraph => paragraphs(text),
    };
    raw.into_iter().filter_map(|r| trimmed(text, r)).collect()
}

/// Runs of non-blank lines: a line holding only whitespace separates
/// paragraphs.
fn paragraphs(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        match (blank, start) {
            (true, Some(s)) => {
                out.push(s..at);
                start = None;
            }
            (false, None) => start = Some(at),
            _ => {}
        }
        at += line.len();
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// `r` without leading and trailing whitespace; None when nothing is left.
fn trimmed(text: &str, r: Range<usize>) -> Option<Range<usize>> {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let body = s.trim();
    (!body.is_empty()).then(|| r.start + lead..r.start + lead + body.len())
}

/// Byte offset `b` of `text` counted in `unit`.
pub(super) fn to_unit(text: &str, b: usize, unit: OffsetUnit) -> usize {
    let head = &text[..b];
    match unit {
        OffsetUnit::Utf8 => b,
        OffsetUnit::Utf16 => head.encode_utf16().count(),
        OffsetUnit::Codepoints => head.chars().count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::FullTextSearch;

    fn english() -> Analyzer {
        Analyzer::new(&FullTextSearch { stemming: true, ..FullTextSearch::default() })
    }

    #[test]
    fn stemmed_and_cased_forms_match() {
        let text = "The Foxes jumped; a fox jumps.";
        let terms: HashSet<&str> = ["fox", "jump"].into_iter().collect();
        let spans = term_spans(&english(), text, &terms);
        let words: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(words, ["Foxes", "jumped", "fox", "jumps"]);
    }

    #[test]
    fn sentences_and_paragraphs_are_trimmed() {
        let text = "One fox.  Two foxes!\n\n  Third line\nstill third.\n";
        let s: Vec<&str> =
            fragment_ranges(text, FragmentBy::Sentence, &[]).iter().map(|r| &text[r.clone()]).collect();
        // UAX #29 ends a sentence at a line break too.
        assert_eq!(s, ["One fox.", "Two foxes!", "Third line", "still third."]);
        let p: Vec<&str> =
            fragment_ranges(text, FragmentBy::Paragraph, &[]).iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(p, ["One fox.  Two foxes!", "Third line\nstill third."]);
        assert_eq!(fragment_ranges(" \n ", FragmentBy::None, &[]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn offsets_count_in_each_unit() {
        let text = "né 😀 fox";
        let b = text.find("fox").unwrap();
        assert_eq!(to_unit(text, b, OffsetUnit::Utf8), 9);
        assert_eq!(to_unit(text, b, OffsetUnit::Codepoints), 5);
        assert_eq!(to_unit(text, b, OffsetUnit::Utf16), 6);
    }
}
