//! Fuzz the filter parser (filters are stored in WAL batches as their
//! canonical JSON, so parse/to_json must round-trip exactly).
//!
//! Invariants checked:
//! - `Filter::parse` never panics (nor overflows the stack) on any JSON.
//! - For every accepted filter `f`: `Filter::parse(&f.to_json()) == Ok(f)`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool::filter::Filter;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(f) = Filter::parse(&v) {
        let json = f.to_json();
        assert_eq!(Filter::parse(&json), Ok(f), "canonical JSON {json} does not parse back");
    }
});
