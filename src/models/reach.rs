//! The prefix of a text that holds every token truncation keeps, found without tokenizing: a
//! client may send megabytes of text for a model that reads 256 word-pieces, and tokenizing all of
//! it would cost seconds of the query pool for tokens that are thrown away.
//!
//! Invariants (for BERT's normaliser and pre-tokeniser, the only ones it is applied to):
//! - Every run of ASCII letters and digits ended by ASCII whitespace or ASCII punctuation is at
//!   least one word, hence at least one word-piece: the normaliser never removes an ASCII letter or
//!   digit nor joins two runs across ASCII whitespace or punctuation, and every ASCII punctuation
//!   character is a word of its own. Anything else (non-ASCII text, control characters) is counted
//!   as nothing, so the count never exceeds the true number of word-pieces.
//! - The cut is made at an ASCII delimiter once `max_tokens` such words lie before it, so the
//!   prefix alone already gives more word-pieces than truncation keeps, and the words it keeps are
//!   whole: tokenizing and truncating the prefix gives exactly the tokens of the whole text.

/// The shortest prefix of `text` (ending at an ASCII delimiter) that provably holds at least
/// `max_tokens` word-pieces; the whole text when no such prefix exists.
pub(crate) fn reach(text: &str, max_tokens: usize) -> &str {
    let mut words = 0usize;
    let mut in_word = false;
    for (i, b) in text.bytes().enumerate() {
        let punct = b.is_ascii_punctuation();
        if b.is_ascii_whitespace() || punct {
            words += usize::from(in_word);
            in_word = false;
            if words >= max_tokens {
                // `i` holds an ASCII byte, so it is a character boundary.
                return &text[..i];
            }
            words += usize::from(punct);
        } else if b.is_ascii_alphanumeric() {
            in_word = true;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::reach;

    #[test]
    fn cuts_only_past_enough_certain_words() {
        assert_eq!(reach("a b c d", 2), "a b");
        assert_eq!(reach("a,b c", 2), "a,b", "a punctuation mark is a word of its own");
        assert_eq!(reach("a b", 5), "a b", "too short: whole");
        // Non-ASCII letters and control characters count as nothing; a non-ASCII space does not
        // end a word, so two runs joined by one are counted once.
        assert_eq!(reach("élan vital x", 2), "élan vital");
        assert_eq!(reach("ab\u{0}cd ef gh", 2), "ab\u{0}cd ef");
        assert_eq!(reach("a\u{3000}b c d", 2), "a\u{3000}b c");
        assert_eq!(reach("日本語 日本語 日本語", 1), "日本語 日本語 日本語", "no ASCII word: whole");
        assert_eq!(reach("", 3), "");
    }
}
