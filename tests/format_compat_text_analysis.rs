//! Format compatibility of `SegmentRef.text_analysis` (`storage-format.md` 1.5, 4.2): the
//! analysis options each full-text section of a segment was built under, which a merge
//! compares with the schema's before it carries that section's postings.
//!
//! Invariants guarded here:
//! - The frozen fixture `tests/fixtures/v21_text_analysis/manifest.json`, written once by
//!   `write_v21_fixtures` and never regenerated, decodes to the manifest built below forever,
//!   and today's encoder still writes it byte for byte.
//! - A manifest without the field (every earlier one) decodes with none, and encodes without it.
//! - The keys' meaning is frozen: the options a key names never change (a changed key would
//!   only make merges analyse again, but a key reused for other options would carry wrong
//!   postings).
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_text_analysis::write_v21_fixtures`

use crate::compat_inputs;
use crate::fixtures;

use compat_inputs::v1_manifest;
use tidepool::format::manifest::Manifest;
use tidepool::index::text::{analysis_key, analysis_keys};
use tidepool::schema::FullTextSearch;

/// The v1 manifest, re-encoded today, with its segment's title section's options recorded.
fn manifest() -> Manifest {
    let mut m = v1_manifest();
    m.segments[0].text_analysis = analysis_keys(&m.schema);
    m
}

#[test]
fn v21_manifest_with_text_analysis_reads_back() {
    let bytes = fixtures::read_fixture("v21_text_analysis", "manifest.json");
    let m = Manifest::decode(&bytes).unwrap();
    assert_eq!(m, manifest());
    assert_eq!(
        m.segments[0].text_analysis.get("title").map(String::as_str),
        Some("t=word_v3;l=english;s=0;sw=1;cs=0;af=0;m=39")
    );
    assert_eq!(manifest().try_encode().unwrap(), bytes, "today's encoder writes the frozen bytes");
}

#[test]
fn manifests_without_text_analysis_read_and_encode_without_it() {
    let m = v1_manifest();
    assert!(m.segments.iter().all(|s| s.text_analysis.is_empty()));
    let bytes = m.try_encode().unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("text_analysis"));
    assert_eq!(Manifest::decode(&bytes).unwrap(), m);
}

#[test]
fn analysis_keys_are_frozen() {
    let en_stem = FullTextSearch {
        tokenizer: "word_v3".into(),
        stemming: true,
        remove_stopwords: false,
        ..FullTextSearch::default()
    };
    assert_eq!(analysis_key(&FullTextSearch::default()), "t=word_v4;l=english;s=0;sw=1;cs=0;af=0;m=39");
    assert_eq!(analysis_key(&en_stem), "t=word_v3;l=english;s=1;sw=0;cs=0;af=0;m=39");
}

#[test]
#[ignore]
fn write_v21_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixtures::fixture_dir("v21_text_analysis");
    std::fs::create_dir_all(&dir).unwrap();
    fixtures::write_missing(&dir, vec![("manifest.json", manifest().try_encode().unwrap())]);
}
