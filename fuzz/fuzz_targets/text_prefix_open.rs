//! Fuzz target: the full-text section's prefix dictionary (kind 17, version 2,
//! `index::text` `prefixes.rs`). Opening arbitrary bytes never panics, and a section
//! that opens answers prefix queries without panicking from every source: the prefix
//! dictionary (1..=max chars), the term-range union (longer prefixes) and the pruned
//! search with a prefix pseudo-term (pruned and exhaustive). Nothing is asserted about
//! the results of damaged sections (their block bounds may lie), only that nothing panics.
//!
//! Input: the first byte selects the mode. Even: the rest is a whole section (crc
//! checked). Odd: the rest is a section body, sealed with its correct crc32c so the
//! fuzzer reaches the structural checks. The section's own terms, cut to 1..=6 chars,
//! are the prefixes asked.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::index::text::{
    search_fields, search_fields_exhaustive, Bm25Params, CorpusStats, FieldQuery, TextIndex,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let mut bytes = body.to_vec();
    if mode % 2 == 1 {
        bytes.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    }
    let Ok(idx) = TextIndex::open(&bytes) else { return };
    let mut prefixes: Vec<String> = Vec::new();
    for t in idx.terms_with_prefix("", 8) {
        for n in 1..=6 {
            prefixes.push(t.chars().take(n).collect());
        }
    }
    prefixes.push("zz".into());
    let terms: Vec<String> = idx.terms_with_prefix("", 2);
    for p in &prefixes {
        let _ = idx.prefix_rows(p);
        let _ = idx.prefix_doc_freq(p);
        let mut stats = CorpusStats::default();
        stats.add_index(&idx, &terms);
        stats.add_index_prefix(&idx, p);
        let params = Bm25Params { k1: 1.2, b: 0.75 };
        let fq =
            [FieldQuery { index: &idx, terms: &terms, found: None, prefix: Some(p), stats: &stats, params, boost: 1.0 }];
        let _ = search_fields(&fq, 5, None);
        let _ = search_fields(&fq, 2, Some(&|r| r % 2 == 0));
        let _ = search_fields_exhaustive(&fq, 5, None);
    }
});
