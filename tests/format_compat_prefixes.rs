//! Format compatibility of `full_text_search.index_prefixes` (`storage-format.md` 1.5, 3.2.2,
//! 4.2.1, 11.2): the full-text section version 2 (the prefix dictionary), schema encoding 2
//! and the schema-update full-text tag 2.
//!
//! Invariants guarded here:
//! - The frozen fixtures under `tests/fixtures/v11/` (`text_prefixes.bin`,
//!   `schema_prefixes.json`, `schema_update_prefixes.bin`), written once by
//!   `write_v11_fixtures` and never regenerated, decode to the content built below forever,
//!   and today's encoders still write them byte for byte.
//! - The prefix dictionary read from the fixture answers every prefix as a brute-force count
//!   over the documents does; damaged copies are refused rather than misread.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_prefixes::write_v11_fixtures`

use crate::fixtures;
use std::path::PathBuf;

use tidepool::format::schema::{decode_schema_object_body, encode_schema_object, schema_json};
use tidepool::format::schema_codec;
use tidepool::index::text::{build, Analyzer, TextIndex};
use tidepool::schema::{AttrSchema, AttrType, FullTextSearch, ScalarType, Schema};

fn fixture_dir() -> PathBuf {
    fixtures::fixture_dir("v11")
}

fn read_fixture(name: &str) -> Vec<u8> {
    fixtures::read_fixture("v11", name)
}

fn fts() -> FullTextSearch {
    FullTextSearch { remove_stopwords: false, index_prefixes: true, ..FullTextSearch::default() }
}

/// Terms sharing prefixes of every indexed length, a longer shared prefix, repeats within
/// a row (tf > 1), multi-byte chars and an empty row.
fn docs() -> Vec<&'static str> {
    vec!["wire sha256 shadow", "sha1 sha1 shallow", "", "shadowing shade über", "übung überall wire", "shaft"]
}

fn section() -> Vec<u8> {
    build("title", docs().into_iter().enumerate().map(|(i, d)| (i as u32, d)), &fts())
}

fn schema() -> Schema {
    let mut title = AttrSchema::of(AttrType::Scalar(ScalarType::String));
    title.full_text_search = Some(fts());
    let mut plain = AttrSchema::of(AttrType::Array(ScalarType::String));
    plain.full_text_search = Some(FullTextSearch::default());
    Schema::from([
        ("title".to_owned(), title),
        ("tags".to_owned(), plain),
        ("n".to_owned(), AttrSchema::of(AttrType::Scalar(ScalarType::Int))),
    ])
}

fn brute(prefix: &str) -> Vec<(u32, u32)> {
    let a = Analyzer::new(&fts());
    docs()
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let n = a.tokens(d).iter().filter(|t| t.starts_with(prefix)).count() as u32;
            (n > 0).then_some((i as u32, n))
        })
        .collect()
}

#[test]
fn v11_text_section_with_prefixes_reads_back() {
    let bytes = read_fixture("text_prefixes.bin");
    assert_eq!(bytes, section(), "today's builder writes the frozen bytes");
    let ix = TextIndex::open(&bytes).unwrap();
    assert_eq!((ix.attr(), ix.num_docs(), ix.indexed_prefix_chars()), ("title", 6, 4));
    for p in ["s", "sh", "sha", "shad", "shado", "shadowing", "ü", "übe", "w", "x", "sha1"] {
        assert_eq!(ix.prefix_rows(p).unwrap(), brute(p), "prefix {p:?}");
        assert_eq!(ix.prefix_doc_freq(p) as usize, brute(p).len());
    }
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(TextIndex::open(&b).is_err(), "flip of bit {i} went unnoticed");
    }
}

#[test]
fn v11_schema_object_and_update_read_back() {
    let object = read_fixture("schema_prefixes.json");
    assert_eq!(decode_schema_object_body(&object).unwrap(), schema());
    assert_eq!(object, encode_schema_object(&schema_json(&schema())), "canonical");
    assert!(schema_json(&schema()).starts_with(r#"{"encoding":2,"#), "index_prefixes needs encoding 2");
    let update = read_fixture("schema_update_prefixes.bin");
    assert_eq!(schema_codec::decode_schema(&update).unwrap(), schema());
    assert_eq!(schema_codec::encode_schema(&schema()).unwrap(), update, "canonical");
    for n in 0..update.len() {
        assert!(schema_codec::decode_schema(&update[..n]).is_err(), "truncated to {n} bytes");
    }
}

/// Writes the v11 fixtures that do not exist yet. Run manually (see the module doc); never
/// overwrites a file, since released fixtures are frozen.
#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v11_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let files = vec![
        ("text_prefixes.bin", section()),
        ("schema_prefixes.json", encode_schema_object(&schema_json(&schema()))),
        ("schema_update_prefixes.bin", schema_codec::encode_schema(&schema()).unwrap()),
    ];
    fixtures::write_missing(&dir, files);
}
