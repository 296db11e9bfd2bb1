//! Tests of the prefix dictionary (`prefixes.rs`): prefix postings are complete and equal
//! a brute-force count whichever source answers (prefix dictionary, term range of a
//! version 2 section, term range of a version 1 section); sections without
//! `index_prefixes` keep the version 1 bytes; damaged regions are errors, not panics;
//! pruned search with a prefix equals exhaustive search.
use super::*;
use proptest::prelude::*;

fn opts(index_prefixes: bool) -> FullTextSearch {
    FullTextSearch { remove_stopwords: false, index_prefixes, ..FullTextSearch::default() }
}

/// `rows` documents over words made of a 3-letter alphabet (so prefixes share many terms),
/// plus a multi-byte word now and then.
fn corpus(seed: u64, rows: usize) -> Vec<String> {
    let mut next = super::tests::xorshift(seed | 1);
    (0..rows)
        .map(|_| {
            let words = 1 + next() % 6;
            (0..words)
                .map(|_| {
                    let len = 1 + next() % 7;
                    let mut w: String = (0..len).map(|_| ['a', 'b', 'c'][(next() % 3) as usize]).collect();
                    if next().is_multiple_of(11) {
                        w.push_str("éß");
                    }
                    w
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn brute(docs: &[String], prefix: &str) -> Vec<(u32, u32)> {
    let a = Analyzer::new(&opts(false));
    docs.iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let c = a.tokens(d).iter().filter(|t| t.starts_with(prefix)).count() as u32;
            (c > 0).then_some((i as u32, c))
        })
        .collect()
}

fn build_docs(docs: &[String], prefixes: bool) -> Vec<u8> {
    build("t", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts(prefixes))
}

#[test]
fn without_index_prefixes_the_section_stays_version_one() {
    let docs = corpus(7, 50);
    let v1 = build_docs(&docs, false);
    assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1);
    assert_eq!(u16::from_le_bytes([v1[10], v1[11]]), 0);
    assert_eq!(TextIndex::open(&v1).unwrap().indexed_prefix_chars(), 0);
    let v2 = build_docs(&docs, true);
    assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), 2);
    assert_eq!(u16::from_le_bytes([v2[10], v2[11]]), 1);
    let ix = TextIndex::open(&v2).unwrap();
    assert_eq!(ix.indexed_prefix_chars(), INDEXED_PREFIX_CHARS);
    // The term part is the same: the prefix region is appended after the term postings.
    assert_eq!(&v2[12..v1.len() - 4], &v1[12..v1.len() - 4]);
}

#[test]
fn every_prefix_of_up_to_four_chars_is_in_the_dictionary() {
    let docs = vec!["abcde".to_owned(), "ab xyz".to_owned(), "éßx".to_owned()];
    let v2 = build_docs(&docs, true);
    let ix = TextIndex::open(&v2).unwrap();
    let (_, dict) = ix.prefixes.unwrap();
    let keys: Vec<&str> = (0..dict.len).map(|i| std::str::from_utf8(dict.key(i).unwrap()).unwrap()).collect();
    assert_eq!(keys, ["a", "ab", "abc", "abcd", "x", "xy", "xyz", "é", "éß", "éßx"]);
    assert_eq!(ix.prefix_rows("ab").unwrap(), [(0, 1), (1, 1)]);
    assert_eq!(ix.prefix_doc_freq("ab"), 2);
    // Longer than the dictionary's prefixes: answered from the term range.
    assert_eq!(ix.prefix_rows("abcde").unwrap(), [(0, 1)]);
    assert_eq!(ix.prefix_rows("abcdef").unwrap(), []);
    assert_eq!(ix.prefix_rows("q").unwrap(), []);
}

#[test]
fn damaged_prefix_regions_are_errors_not_panics() {
    let v2 = build_docs(&corpus(3, 40), true);
    for cut in [v2.len() - 5, v2.len() - 30, v2.len() / 2] {
        let mut b = v2[..cut].to_vec();
        b.extend_from_slice(&crc32c::crc32c(&b).to_le_bytes());
        assert!(TextIndex::open(&b).is_err());
    }
    let mut flagless = v2.clone();
    flagless[10] = 0;
    assert!(TextIndex::open_trusted(&flagless).is_err(), "version 2 without its flag");
    let mut v1_flag = build_docs(&corpus(3, 40), false);
    v1_flag[10] = 1;
    assert!(TextIndex::open_trusted(&v1_flag).is_err(), "version 1 with a flag");
    // Every single-byte change of the region opens or fails, and lookups never panic.
    let region_at = v2.len() - 4 - 200.min(v2.len() / 4);
    for at in region_at..v2.len() - 4 {
        let mut b = v2.clone();
        b[at] ^= 0x5a;
        if let Ok(ix) = TextIndex::open_trusted(&b) {
            for p in ["a", "ab", "abc", "abcd", "abcab"] {
                let _ = ix.prefix_rows(p);
                let _ = ix.prefix_doc_freq(p);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn prefix_postings_are_complete_from_every_source(seed in any::<u64>(), rows in 1usize..600) {
        let docs = corpus(seed, rows);
        let v1 = build_docs(&docs, false);
        let v2 = build_docs(&docs, true);
        let (i1, i2) = (TextIndex::open(&v1).unwrap(), TextIndex::open(&v2).unwrap());
        for p in ["a", "b", "ab", "abc", "cab", "abca", "bbbb", "abcab", "aaaaa", "cé", "acéß", "z"] {
            let want = brute(&docs, p);
            prop_assert_eq!(&i2.prefix_rows(p).unwrap(), &want, "v2 {}", p);
            prop_assert_eq!(&i1.prefix_rows(p).unwrap(), &want, "v1 {}", p);
            prop_assert_eq!(i2.prefix_doc_freq(p) as usize, want.len());
            prop_assert_eq!(i1.prefix_doc_freq(p) as usize, want.len());
        }
    }

    #[test]
    fn pruned_prefix_search_equals_exhaustive(seed in any::<u64>(), rows in 1usize..3000, k in 1usize..30) {
        let docs = corpus(seed, rows);
        let v1 = build_docs(&docs, false);
        let v2 = build_docs(&docs, true);
        let terms = vec!["abc".to_owned()];
        for p in ["a", "ca", "bcab"] {
            let mut results = Vec::new();
            for bytes in [&v1, &v2] {
                let ix = TextIndex::open(bytes).unwrap();
                let mut st = CorpusStats::default();
                st.add_index(&ix, &terms);
                st.add_index_prefix(&ix, p);
                let fq = [FieldQuery {
                    index: &ix, terms: &terms, found: None, prefix: Some(p), stats: &st, params: Bm25Params::default(), boost: 1.0,
                }];
                let pruned = search_fields(&fq, k, None).unwrap();
                prop_assert_eq!(&pruned, &search_fields_exhaustive(&fq, k, None).unwrap());
                results.push(pruned);
            }
            prop_assert_eq!(&results[0], &results[1], "v1 and v2 sections agree on {}", p);
        }
    }
}

/// Invariant: a section whose postings claim rows past the section's rows (a fuzz find, kept in
/// `tests/fixtures/fuzz/text_search_far_rows.bin`: its crc sealed, a block ending at row
/// ~1.5e9 of 6) is refused by the pruned search instead of walking empty windows up to it
/// (minutes in a debug build). Input as the `text_prefix_open` target takes it.
#[test]
fn a_list_claiming_rows_past_the_section_is_refused_quickly() {
    let data = include_bytes!("../../../tests/fixtures/fuzz/text_search_far_rows.bin");
    let (mode, body) = data.split_first().unwrap();
    let mut bytes = body.to_vec();
    if mode % 2 == 1 {
        bytes.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    }
    let idx = TextIndex::open(&bytes).unwrap();
    let terms: Vec<String> = idx.terms_with_prefix("", 2);
    let started = std::time::Instant::now();
    for t in idx.terms_with_prefix("", 8) {
        for n in 1..=6 {
            let p: String = t.chars().take(n).collect();
            let mut stats = CorpusStats::default();
            stats.add_index(&idx, &terms);
            stats.add_index_prefix(&idx, &p);
            let params = Bm25Params { k1: 1.2, b: 0.75 };
            let fq = [FieldQuery {
                index: &idx,
                terms: &terms,
                found: None,
                prefix: Some(&p),
                stats: &stats,
                params,
                boost: 1.0,
            }];
            let _ = search_fields(&fq, 2, Some(&|r| r % 2 == 0));
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
}
