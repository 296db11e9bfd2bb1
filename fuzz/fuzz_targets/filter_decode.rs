//! Fuzz the binary filter codec (filters and conditions in WAL records with
//! `WAL_FLAG_OWN_ENCODINGS`, storage-format 3.2.1).
//!
//! Invariants checked:
//! - `decode_filter` never panics, never overflows the stack and never
//!   allocates from an unchecked length, on any input.
//! - The encoding is canonical: for every accepted `b`,
//!   `encode_filter(decode_filter(b)) == b`, and that filter decodes back to
//!   itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool::format::filter::{decode_filter, encode_filter};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = decode_filter(data) {
        let bytes = encode_filter(&f).expect("a decoded filter encodes");
        assert_eq!(bytes, data, "the encoding is not canonical");
        assert_eq!(decode_filter(&bytes), Ok(f), "a re-encoded filter decodes differently");
    }
});
