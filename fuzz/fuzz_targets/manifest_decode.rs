//! Fuzz the manifest and CURRENT decoders.
//!
//! Invariants checked:
//! - `Manifest::decode` and `decode_current_full` never panic, on any input.
//! - A CURRENT that decodes with an embedded manifest re-encodes to a hint
//!   that decodes to the same generation and manifest.
//! - An accepted manifest passes `try_encode` (the writer accepts exactly what
//!   the reader accepts) and round-trips to an equal manifest.
//!
//! Input: the first byte selects the mode. Even: the rest is decoded as a
//! whole file. Odd: the rest is a body, wrapped in an envelope with the
//! correct crc32c so that the fuzzer reaches the body parser, the schema
//! decoders and the sanity checks; the envelope's version is
//! `1 + (mode >> 1) % 3`: 1 and 2 reach the legacy (turbopuffer-shaped)
//! schema reader, 3 the current schema encoding (`format::schema`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool::format::manifest::{
    decode_current_full, encode_current, encode_current_with_manifest, Manifest,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wrapped;
    let input: &[u8] = if mode % 2 == 0 {
        rest
    } else {
        let crc = crc32c::crc32c(rest);
        let version = 1 + (mode >> 1) % 3;
        let mut w = format!(
            "{{\"magic\":\"tidepool.manifest\",\"format_version\":{version},\"crc32c\":{crc},\"body\":"
        )
        .into_bytes();
        w.extend_from_slice(rest);
        w.extend_from_slice(b"}\n");
        wrapped = w;
        &wrapped
    };
    match decode_current_full(input) {
        Ok((g, None)) => assert_eq!(decode_current_full(&encode_current(g)), Ok((g, None))),
        Ok((g, Some(m))) => {
            let again = decode_current_full(&encode_current_with_manifest(&m)).expect("re-encoded CURRENT");
            assert_eq!(again.0, g);
            assert!(again.1.is_none_or(|a| a == m));
        }
        Err(_) => {}
    }
    if let Ok(m) = Manifest::decode(input) {
        let bytes = m.try_encode().expect("a decoded manifest re-encodes");
        let again = Manifest::decode(&bytes).expect("a re-encoded manifest decodes");
        assert_eq!(again, m);
    }
});
