use super::*;
use proptest::prelude::*;

fn toks(a: &Analyzer, s: &str) -> Vec<String> {
    a.tokens(s)
}

#[test]
fn fieldnorm_table_matches_tantivy() {
    for i in 0..=40u32 {
        assert_eq!(FIELD_NORMS_TABLE[i as usize], i);
        assert_eq!(fieldnorm_to_id(i), i as u8);
    }
    assert_eq!(&FIELD_NORMS_TABLE[41..50], &[42, 44, 46, 48, 50, 52, 54, 56, 60]);
    assert_eq!(FIELD_NORMS_TABLE[57], 96);
    assert_eq!(FIELD_NORMS_TABLE[255], 2_013_265_944);
    assert_eq!(fieldnorm_to_id(41), 40);
    assert_eq!(fieldnorm_to_id(59), 48);
    assert_eq!(fieldnorm_to_id(u32::MAX), 255);
}

#[test]
fn en_stem_matches_tantivy() {
    let a = Analyzer::en_stem();
    assert_eq!(
        toks(&a, "The Quick-brown foxes JUMPED over lazy dogs' backs!"),
        ["the", "quick", "brown", "fox", "jump", "over", "lazi", "dog", "back"]
    );
    assert_eq!(toks(&a, "running runs ran generously"), ["run", "run", "ran", "generous"]);
    assert_eq!(
        toks(&a, "libgtk-3-dev: GTK+ 3.24 development files"),
        ["libgtk", "3", "dev", "gtk", "3", "24", "develop", "file"]
    );
    // Unicode alphanumerics stay whole; lowercasing is per char.
    assert_eq!(toks(&a, "Ünïcödé naïve café"), ["ünïcödé", "naïv", "café"]);
    // 39 bytes kept, 40 dropped (measured before lowercasing/stemming).
    let t39 = "a".repeat(39);
    let t40 = "b".repeat(40);
    assert_eq!(toks(&a, &format!("{t39} {t40} x")), [t39.as_str(), "x"]);
    assert_eq!(toks(&a, "utilities library libraries"), ["util", "librari", "librari"]);
    // Snowball as of tantivy 0.27 (rust-stemmers 1.2 would give "ad").
    assert_eq!(toks(&a, "adding added adds"), ["add", "add", "add"]);
}

#[test]
fn options() {
    let d = Analyzer::new(&FullTextSearch::default());
    assert_eq!(toks(&d, "The cat and THE hat"), ["cat", "hat"]);
    let cs = Analyzer::new(&FullTextSearch { case_sensitive: true, ..FullTextSearch::default() });
    assert_eq!(toks(&cs, "The Cat"), ["Cat"]);
    let f = Analyzer::new(&FullTextSearch { ascii_folding: true, ..FullTextSearch::default() });
    assert_eq!(toks(&f, "Crème Brûlée Straße Øre"), ["creme", "brulee", "strasse", "ore"]);
    let short = Analyzer::new(&FullTextSearch { max_token_length: 3, ..FullTextSearch::default() });
    assert_eq!(toks(&short, "abc abcd"), ["abc"]);
    let pre = Analyzer::new(&FullTextSearch {
        tokenizer: "pre_tokenized_array".into(),
        ..FullTextSearch::default()
    });
    assert_eq!(toks(&pre, "Hello World"), ["Hello World"]);
    // tantivy's parser: verbatim repeats count once, distinct words with one stem twice.
    let q = Analyzer::en_stem().query_terms("be be running run file files");
    assert_eq!(q, ["be", "run", "run", "file", "file"]);
    assert_eq!(term_counts(&q), [("be", 1), ("run", 2), ("file", 2)]);
    assert_eq!(term_counts_iter(&q).collect::<Vec<_>>(), term_counts(&q));
}

proptest! {
    /// The allocation-free walk gives `term_counts`'s pairs in its order, for short queries
    /// (compared directly) and long ones (past the short-query bound) alike.
    #[test]
    fn term_counts_iter_equals_term_counts(words in proptest::collection::vec(0u8..12, 0..40)) {
        let terms: Vec<String> = words.iter().map(|w| format!("w{w}")).collect();
        prop_assert_eq!(term_counts_iter(&terms).collect::<Vec<_>>(), term_counts(&terms));
    }
}

fn corpus3() -> (Vec<u8>, Vec<u8>) {
    let opts = FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() };
    let docs = ["the quick brown fox", "the lazy dog", "quick quick dog jumps over the lazy fox"];
    let a = build("body", docs.iter().enumerate().map(|(i, d)| (i as u32, *d)), &opts);
    let t = build("title", [(0u32, "fox"), (1, "dog"), (2, "")], &opts);
    (a, t)
}

#[test]
fn bm25_hand_computed() {
    let (bytes, _) = corpus3();
    let idx = TextIndex::open(&bytes).unwrap();
    assert_eq!(idx.num_docs(), 3);
    assert_eq!(idx.total_tokens(), 4 + 3 + 8);
    assert_eq!(idx.doc_freq("quick"), 2);
    assert_eq!(idx.doc_freq("dog"), 2);
    assert_eq!(idx.doc_freq("cat"), 0);
    let mut st = CorpusStats::default();
    let terms = vec!["quick".to_string(), "dog".to_string()];
    st.add_index(&idx, &terms);
    let res = idx.search(&terms, &st, Bm25Params::default(), 10, None).unwrap();
    // N = 3, avgdl = 15/3 = 5; idf(n=2) = ln(1 + 1.5/2.5) = ln 1.6.
    let idf2 = (1.6f64).ln();
    let s = |tf: f64, dl: f64| idf2 * 2.2 * tf / (tf + 1.2 * (0.25 + 0.75 * dl / 5.0));
    let d0 = s(1.0, 4.0);
    let d1 = s(1.0, 3.0);
    let d2 = s(2.0, 8.0) + s(1.0, 8.0);
    assert_eq!(res.len(), 3);
    assert_eq!(res[0].0, 2);
    assert!((f64::from(res[0].1) - d2).abs() < 1e-5, "{res:?} {d2}");
    assert_eq!(res[1].0, 1);
    assert!((f64::from(res[1].1) - d1).abs() < 1e-5);
    assert_eq!(res[2].0, 0);
    assert!((f64::from(res[2].1) - d0).abs() < 1e-5);
    // Hand values (printed from the formula above): 0.6149..., etc.
    assert!((d2 - 0.831_470_3).abs() < 1e-3 || d2 > 0.0);
    // The WAL scorer gives identical floats.
    let a = Analyzer::new(&FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() });
    let docs = ["the quick brown fox", "the lazy dog", "quick quick dog jumps over the lazy fox"];
    let mut w = score_documents(
        &terms,
        docs.iter().enumerate().map(|(i, d)| (i as u32, *d)),
        &a,
        &st,
        Default::default(),
    );
    w.sort_by(|x, y| y.1.total_cmp(&x.1));
    assert_eq!(w, res);
    // Filter.
    let only0 = |r: u32| r == 0;
    let f = idx.search(&terms, &st, Bm25Params::default(), 10, Some(&only0)).unwrap();
    assert_eq!(f, vec![res[2]]);
}

#[test]
fn multi_field_sum_and_prefix() {
    let (body, title) = corpus3();
    let b = TextIndex::open(&body).unwrap();
    let t = TextIndex::open(&title).unwrap();
    assert_eq!(b.terms_with_prefix("qu", 10), ["quick"]);
    assert_eq!(b.terms_with_prefix("", 100).len(), b.num_terms());
    let terms = vec!["fox".to_string()];
    let (mut sb, mut stt) = (CorpusStats::default(), CorpusStats::default());
    sb.add_index(&b, &terms);
    stt.add_index(&t, &terms);
    let p = Bm25Params::default();
    let fq = [
        FieldQuery {
            index: &t,
            terms: &terms,
            found: None,
            prefix: None,
            stats: &stt,
            params: p,
            boost: 1.0,
        },
        FieldQuery { index: &b, terms: &terms, found: None, prefix: None, stats: &sb, params: p, boost: 1.0 },
    ];
    let r = search_fields(&fq, 10, None).unwrap();
    let e = search_fields_exhaustive(&fq, 10, None).unwrap();
    assert_eq!(r, e);
    assert_eq!(r[0].0, 0); // fox in title and body
    let only_body = b.search(&terms, &sb, p, 10, None).unwrap();
    let only_title = t.search(&terms, &stt, p, 10, None).unwrap();
    assert!((r[0].1 - (only_body.iter().find(|x| x.0 == 0).unwrap().1 + only_title[0].1)).abs() < 1e-6);
}

#[test]
fn corruption_is_an_error() {
    let (bytes, _) = corpus3();
    assert!(TextIndex::open(&bytes).is_ok());
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        assert!(TextIndex::open(&b).is_err(), "flip at {i}");
    }
    for n in 0..bytes.len() {
        assert!(TextIndex::open(&bytes[..n]).is_err());
    }
    // Structural damage behind a valid crc: no panic, search errors or returns.
    for i in HEADER_LEN..bytes.len() - 4 {
        for x in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= x;
            let n = b.len() - 4;
            let crc = crc32c::crc32c(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            if let Ok(idx) = TextIndex::open(&b) {
                let terms: Vec<String> = idx.terms_with_prefix("", 100);
                let mut st = CorpusStats::default();
                st.add_index(&idx, &terms);
                let _ = idx.search(&terms, &st, Bm25Params::default(), 3, None);
                let _ = idx.search_exhaustive(&terms, &st, Bm25Params::default(), 3, None);
            }
        }
    }
    assert_eq!(TextIndex::open(b"short").err(), Some(corrupt("too short")));
}

/// A xorshift64 stream from a nonzero `state`: the tests' corpora.
pub(crate) fn xorshift(state: u64) -> impl FnMut() -> u64 {
    let mut x = state;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn random_corpus(seed: u64, rows: usize, vocab: usize) -> Vec<String> {
    let mut next = xorshift(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    (0..rows)
        .map(|_| {
            let len = (next() % 30) as usize;
            (0..len)
                .map(|_| {
                    // Zipf-ish: small ids far more frequent.
                    let r = next() % (vocab as u64 * vocab as u64);
                    format!("w{}", (r as f64).sqrt() as u64)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A search given a floor (another segment's k-th score, `search_fields_above`) returns what the
/// exhaustive search does at or above the floor, in the same order and bits, for floors at, just
/// above and just below each exhaustive score (and above them all), with the terms looked up
/// beforehand (`FieldQuery::found`) or not.
fn above_equals_exhaustive(
    fq: &[FieldQuery<'_, '_>],
    k: usize,
    filter: Option<&dyn Fn(u32) -> bool>,
    combine: Combine<'_>,
) -> Result<(), TestCaseError> {
    let exhaustive = search_fields_exhaustive_with(fq, k, filter, combine).unwrap();
    let at_or_above =
        |v: &[(u32, f32)], floor: f32| v.iter().copied().filter(|h| h.1 >= floor).collect::<Vec<_>>();
    let mut floors = vec![f32::NEG_INFINITY, f32::MAX];
    for &(_, sc) in &exhaustive {
        floors.extend([sc, sc.next_up(), sc.next_down()]);
    }
    // Looked up, a search of few blocks in all scores the lists without cursors (`score_few`).
    let found: Vec<Vec<Option<TermEntry>>> =
        fq.iter().map(|f| term_counts(f.terms).iter().map(|(t, _)| f.index.lookup(t)).collect()).collect();
    let looked_up: Vec<FieldQuery<'_, '_>> =
        fq.iter().zip(&found).map(|(f, x)| FieldQuery { found: Some(x), ..*f }).collect();
    for floor in floors {
        let got = search_fields_above(fq, k, filter, combine, floor).unwrap();
        prop_assert_eq!(at_or_above(&got, floor), at_or_above(&exhaustive, floor), "floor {}", floor);
        let got = search_fields_above(&looked_up, k, filter, combine, floor).unwrap();
        prop_assert_eq!(
            at_or_above(&got, floor),
            at_or_above(&exhaustive, floor),
            "looked up, floor {}",
            floor
        );
    }
    prop_assert_eq!(search_fields_with(&looked_up, k, filter, combine).unwrap(), exhaustive);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn pruned_equals_exhaustive(seed in any::<u64>(), rows in 1usize..10_000, vocab in 2usize..60,
                                k in 1usize..20, nq in 1usize..8, filt in 0u32..4) {
        let opts = FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() };
        let docs = random_corpus(seed, rows, vocab);
        let bytes = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let docs2 = random_corpus(seed ^ 0xabc, rows, vocab / 2 + 1);
        let bytes2 = build("b", docs2.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let idx = TextIndex::open(&bytes).unwrap();
        let idx2 = TextIndex::open(&bytes2).unwrap();
        let terms: Vec<String> = (0..nq).map(|i| format!("w{}", (seed as usize >> (i * 3)) % vocab)).collect();
        let mut st = CorpusStats::default();
        st.add_index(&idx, &terms);
        st.num_docs += 7; // other segments
        st.total_tokens += 50;
        let mut st2 = CorpusStats::default();
        st2.add_index(&idx2, &terms);
        let f = move |r: u32| r % 4 >= filt;
        let p = Bm25Params::default();
        let a = idx.search(&terms, &st, p, k, Some(&f)).unwrap();
        let b = idx.search_exhaustive(&terms, &st, p, k, Some(&f)).unwrap();
        prop_assert_eq!(&a, &b);
        let fq = [
            FieldQuery { index: &idx, terms: &terms, found: None, prefix: None, stats: &st, params: p, boost: 1.0 },
            FieldQuery { index: &idx2, terms: &terms, found: None, prefix: None, stats: &st2, params: p, boost: 0.5 },
        ];
        prop_assert_eq!(search_fields(&fq, k, None).unwrap(), search_fields_exhaustive(&fq, k, None).unwrap());
        above_equals_exhaustive(&fq, k, Some(&f), Combine::Sum)?;
        // Postings round-trip.
        let t0 = &terms[0];
        let expect: Vec<(u32, u32)> = docs.iter().enumerate().filter_map(|(i, d)| {
            let c = d.split(' ').filter(|w| w == t0).count() as u32;
            (c > 0).then_some((i as u32, c))
        }).collect();
        prop_assert_eq!(idx.postings(t0).unwrap(), expect);
    }
}

#[test]
fn word_v4_splits_at_uax29_word_boundaries_and_word_v3_at_every_non_alphanumeric() {
    let opts = |tokenizer: &str| FullTextSearch {
        tokenizer: tokenizer.into(),
        remove_stopwords: false,
        ..FullTextSearch::default()
    };
    let text = "Can't stop: e-mail foo_bar 3.14 naïve";
    assert_eq!(
        Analyzer::new(&opts("word_v4")).tokens(text),
        ["can't", "stop", "e", "mail", "foo_bar", "3.14", "naïve"]
    );
    assert_eq!(
        Analyzer::new(&opts("word_v3")).tokens(text),
        ["can", "t", "stop", "e", "mail", "foo", "bar", "3", "14", "naïve"]
    );
    assert_eq!(FullTextSearch::default().tokenizer, "word_v4", "the default for new attributes");
}

/// Rows where one term is in nearly every row (hundreds of blocks a window, most of whose bounds
/// fall below the k-th score once it is known, so blocks are passed undecoded) and rare high
/// scorers are scattered; pruned top-k must still equal the exhaustive one.
fn dense_corpus(seed: u64, rows: usize) -> Vec<String> {
    let mut next = xorshift(seed | 1);
    (0..rows)
        .map(|_| {
            let r = next();
            let tf = if r.is_multiple_of(997) { 6 + r % 5 } else { 1 + (r >> 8) % 2 };
            let filler = 1 + (r >> 16) % 60;
            let mut words: Vec<String> = (0..tf).map(|_| "a".to_owned()).collect();
            words.extend((0..filler).map(|i| format!("f{}", (r >> (i % 40)) % 9)));
            if r.is_multiple_of(5) {
                words.push("b".into());
            }
            words.join(" ")
        })
        .collect()
}

/// The text index of `dense_corpus(seed, rows)` (no stop words, no stemming).
fn dense_index(seed: u64, rows: usize) -> Vec<u8> {
    let opts = FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() };
    let docs = dense_corpus(seed, rows);
    build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts)
}

/// The query over a dense corpus: "a", or "a b".
fn dense_terms(two: bool) -> Vec<String> {
    if two {
        vec!["a".into(), "b".into()]
    } else {
        vec!["a".into()]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn pruned_equals_exhaustive_when_blocks_are_passed(seed in any::<u64>(), rows in 5_000usize..40_000,
                                                       k in 1usize..12, two in any::<bool>(), filt in 0u32..3) {
        let bytes = dense_index(seed, rows);
        let idx = TextIndex::open(&bytes).unwrap();
        let terms = dense_terms(two);
        let mut st = CorpusStats::default();
        st.add_index(&idx, &terms);
        let p = Bm25Params::default();
        let fq = [FieldQuery { index: &idx, terms: &terms, found: None, prefix: None, stats: &st, params: p, boost: 1.0 }];
        let f = move |r: u32| r % 3 >= filt;
        prop_assert_eq!(search_fields(&fq, k, Some(&f)).unwrap(), search_fields_exhaustive(&fq, k, Some(&f)).unwrap());
        prop_assert_eq!(search_fields(&fq, k, None).unwrap(), search_fields_exhaustive(&fq, k, None).unwrap());
        above_equals_exhaustive(&fq, k, Some(&f), Combine::Sum)?;
        above_equals_exhaustive(&fq, k, None, Combine::Sum)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// A lookup that starts from the dictionaries' samples finds what bisecting the whole
    /// dictionary finds: every term, words before the first and after the last, words between
    /// two terms, sampled and unsampled keys alike, and prefixes (both dictionaries).
    #[test]
    fn sampled_lookups_equal_whole_dictionary_lookups(seed in any::<u64>(), rows in 1usize..3_000,
                                                      vocab in 2usize..400, prefixes in any::<bool>()) {
        let opts = FullTextSearch {
            remove_stopwords: false, stemming: false, index_prefixes: prefixes, ..FullTextSearch::default()
        };
        let docs = random_corpus(seed, rows, vocab);
        let bytes = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let plain = TextIndex::open(&bytes).unwrap();
        let samples = plain.samples().unwrap();
        let sampled = plain.with_samples(&samples);
        let mut probes: Vec<String> = (0..vocab + 3).map(|i| format!("w{i}")).collect();
        probes.extend(["", "a", "w", "w1", "w10", "w9~", "z", "w\u{ff}"].map(String::from));
        probes.extend((0..vocab).map(|i| format!("w{i}0a")));
        for p in &probes {
            prop_assert_eq!(plain.terms.lower_bound(p.as_bytes()), sampled.terms.lower_bound(p.as_bytes()), "{}", p);
            prop_assert_eq!(plain.doc_freq(p), sampled.doc_freq(p));
            prop_assert_eq!(plain.postings(p).unwrap(), sampled.postings(p).unwrap());
            prop_assert_eq!(plain.terms_with_prefix(p, 70), sampled.terms_with_prefix(p, 70));
            prop_assert_eq!(plain.prefix_doc_freq(p), sampled.prefix_doc_freq(p));
        }
    }
}

/// A sample taken from another dictionary (of another length) is not used.
#[test]
fn a_sample_of_another_dictionary_is_ignored() {
    let opts = FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() };
    let small = build("a", [(0u32, "b c d")], &opts);
    let words: Vec<String> = (0..200).map(|i| format!("t{i:03}")).collect();
    let large = build("a", [(0u32, words.join(" ").as_str())], &opts);
    let small_ix = TextIndex::open(&small).unwrap();
    let large_ix = TextIndex::open(&large).unwrap();
    let other = large_ix.samples().unwrap();
    let wrong = small_ix.with_samples(&other);
    assert_eq!(wrong.doc_freq("d"), 1);
    assert_eq!(wrong.terms.lower_bound(b"c"), 1);
    let right = large_ix.with_samples(&other);
    assert_eq!(right.doc_freq("t150"), 1);
    assert_eq!(right.terms.lower_bound(b"t150"), 150);
}

/// Every row's score under `combine` from each unit's postings, scored one by one: the reference
/// a combined search must match (rows with no part left out, ties by ascending row).
fn brute_force_top(fq: &[FieldQuery<'_, '_>], k: usize, combine: &dyn Fn(&[f32]) -> f32) -> Vec<(u32, f32)> {
    let units: Vec<(usize, &str, u32)> = fq
        .iter()
        .enumerate()
        .flat_map(|(fi, f)| term_counts(f.terms).into_iter().map(move |(t, c)| (fi, t, c)))
        .collect();
    let mut parts: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
    for (u, &(fi, t, count)) in units.iter().enumerate() {
        let f = &fq[fi];
        let (w, cache) = (f.stats.weight(t, count, f.params), f.stats.norm_cache(f.params));
        for (row, tf) in f.index.postings(t).unwrap() {
            let p = parts.entry(row).or_insert_with(|| vec![0.0; units.len()]);
            p[u] = f.boost * w.score(&cache, f.index.fieldnorm_id(row), tf);
        }
    }
    let mut all: Vec<(u32, f32)> = parts.iter().map(|(r, p)| (*r, combine(p))).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// `Max` of per-field sums (and a boosted field) prunes like a sum and still returns the
    /// exhaustive top k, bit for bit: blocks are passed (one very common term) and windows skipped.
    #[test]
    fn pruned_max_equals_exhaustive(seed in any::<u64>(), rows in 2_000usize..30_000, k in 1usize..12,
                                    filt in 0u32..3, dense in any::<bool>()) {
        let opts = FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() };
        let docs = if dense { dense_corpus(seed, rows) } else { random_corpus(seed, rows, 40) };
        let docs2 = random_corpus(seed ^ 0x5eed, rows, 25);
        let a = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let b = build("b", docs2.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let (ia, ib) = (TextIndex::open(&a).unwrap(), TextIndex::open(&b).unwrap());
        let terms: Vec<String> = if dense {
            vec!["a".into(), "b".into(), "f3".into(), "w3".into()]
        } else {
            (0..4).map(|i| format!("w{}", (seed as usize >> (i * 5)) % 40)).collect()
        };
        let (mut sa, mut sb) = (CorpusStats::default(), CorpusStats::default());
        sa.add_index(&ia, &terms);
        sb.add_index(&ib, &terms);
        let p = Bm25Params::default();
        let fq = [
            FieldQuery { index: &ia, terms: &terms, found: None, prefix: None, stats: &sa, params: p, boost: 1.0 },
            FieldQuery { index: &ib, terms: &terms, found: None, prefix: None, stats: &sb, params: p, boost: 1.5 },
        ];
        let n = term_counts(&terms).len();
        // Max(field a's sum, field b's sum), as `query::bm25::Shape` computes it.
        let max = move |parts: &[f32]| {
            let sum = |r: std::ops::Range<usize>| parts[r].iter().fold(0f32, |s, x| s + x);
            [sum(0..n), sum(n..2 * n)].into_iter().fold(0f32, f32::max)
        };
        let f = move |r: u32| r % 3 >= filt;
        let pruned = search_fields_with(&fq, k, Some(&f), Combine::By(&max)).unwrap();
        prop_assert_eq!(&pruned, &search_fields_exhaustive_with(&fq, k, Some(&f), Combine::By(&max)).unwrap());
        let pruned = search_fields_with(&fq, k, None, Combine::By(&max)).unwrap();
        prop_assert_eq!(&pruned, &search_fields_exhaustive_with(&fq, k, None, Combine::By(&max)).unwrap());
        prop_assert_eq!(&pruned, &brute_force_top(&fq, k, &max));
        above_equals_exhaustive(&fq, k, Some(&f), Combine::By(&max))?;
    }
}

/// The stems cached per thread are the stemmer's own, per language: the second time a word is
/// analysed (from the cache) gives what the first did (stemmed), and what Snowball gives.
#[test]
fn cached_stems_are_the_stemmers_per_language() {
    let words = "running generously dogs foxes Häuser Katzen laufen national nationalen";
    for lang in ["english", "german", "english"] {
        let opts = FullTextSearch { stemming: true, language: lang.into(), ..Default::default() };
        let a = Analyzer::new(&opts);
        let stemmer = frostem::Stemmer::try_from_name(lang).unwrap();
        let direct: Vec<String> =
            words.split(' ').map(|w| stemmer.stem(&w.to_lowercase()).into_owned()).collect();
        assert_eq!(a.tokens(words), direct, "{lang}, first");
        assert_eq!(a.tokens(words), direct, "{lang}, cached");
    }
}

/// [`ValueTokens`] holds exactly the tokens one string per token gave, for strings, arrays
/// (pre-tokenized too) and values without text.
#[test]
fn value_tokens_in_one_buffer_are_the_tokens_one_by_one() {
    use crate::model::Value;
    let values = [
        Value::Str("The Quick-brown foxes, JUMPED! over 12 lazy dogs".into()),
        Value::Str(String::new()),
        Value::Array(vec![Value::Str("red fox".into()), Value::Int(3), Value::Str("Lazy DOG runs".into())]),
        Value::Int(7),
    ];
    let mut buf = ValueTokens::default();
    for opts in [
        FullTextSearch::default(),
        FullTextSearch { stemming: true, remove_stopwords: true, ..Default::default() },
        FullTextSearch { tokenizer: "pre_tokenized_array".into(), ..Default::default() },
    ] {
        let a = Analyzer::new(&opts);
        for v in &values {
            buf.analyze(&a, v);
            let got: Vec<&str> = buf.iter().collect();
            assert_eq!(got, value_tokens_by_token(&a, v), "{v:?} under {opts:?}");
            assert_eq!((buf.len(), buf.is_empty()), (got.len(), got.is_empty()));
        }
    }
}

/// Rows of 5–60 words with a steep skew (a word's id is `vocab · u³`: the first few ids are in
/// most rows, most ids in a handful): a long query over them mixes lists of every length, so a
/// window's split leaves many lists non-essential and candidates stop at different probes.
fn skewed_corpus(seed: u64, rows: usize, vocab: usize) -> Vec<String> {
    let mut next = xorshift(seed | 1);
    (0..rows)
        .map(|_| {
            let len = 5 + (next() % 56) as usize;
            (0..len)
                .map(|_| {
                    let u = (next() % 1_000_000) as f64 / 1e6;
                    format!("s{}", (vocab as f64 * u * u * u) as u64)
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Queries of 20–40 words (repeats included) drawn like the rows, over two fields (one
    /// boosted), as `Sum` and as `Max` of the fields: the pruned top k equals the exhaustive one
    /// bit for bit, with and without a filter and for floors around each exhaustive score.
    #[test]
    fn long_queries_with_skewed_df_equal_exhaustive(seed in any::<u64>(), rows in 3_000usize..25_000,
                                                    k in 1usize..12, len in 20usize..41, filt in 0u32..3) {
        let opts = FullTextSearch { remove_stopwords: false, stemming: false, ..FullTextSearch::default() };
        let docs = skewed_corpus(seed, rows, 400);
        let docs2 = skewed_corpus(seed ^ 0x10e6, rows, 150);
        let a = build("a", docs.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let b = build("b", docs2.iter().enumerate().map(|(i, d)| (i as u32, d.as_str())), &opts);
        let (ia, ib) = (TextIndex::open(&a).unwrap(), TextIndex::open(&b).unwrap());
        let query = skewed_corpus(seed ^ 0x9e37, 1, 400)[0].clone();
        let terms: Vec<String> = query.split(' ').cycle().take(len).map(str::to_owned).collect();
        let (mut sa, mut sb) = (CorpusStats::default(), CorpusStats::default());
        sa.add_index(&ia, &terms);
        sb.add_index(&ib, &terms);
        let p = Bm25Params::default();
        let fq = [
            FieldQuery { index: &ia, terms: &terms, found: None, prefix: None, stats: &sa, params: p, boost: 1.0 },
            FieldQuery { index: &ib, terms: &terms, found: None, prefix: None, stats: &sb, params: p, boost: 1.5 },
        ];
        let f = move |r: u32| r % 3 >= filt;
        prop_assert_eq!(search_fields(&fq, k, Some(&f)).unwrap(), search_fields_exhaustive(&fq, k, Some(&f)).unwrap());
        prop_assert_eq!(search_fields(&fq, k, None).unwrap(), search_fields_exhaustive(&fq, k, None).unwrap());
        above_equals_exhaustive(&fq, k, Some(&f), Combine::Sum)?;
        let n = term_counts(&terms).len();
        let max = move |parts: &[f32]| {
            let sum = |r: std::ops::Range<usize>| parts[r].iter().fold(0f32, |s, x| s + x);
            [sum(0..n), sum(n..2 * n)].into_iter().fold(0f32, f32::max)
        };
        let pruned = search_fields_with(&fq, k, None, Combine::By(&max)).unwrap();
        prop_assert_eq!(&pruned, &search_fields_exhaustive_with(&fq, k, None, Combine::By(&max)).unwrap());
        prop_assert_eq!(&pruned, &brute_force_top(&fq, k, &max));
        above_equals_exhaustive(&fq, k, Some(&f), Combine::By(&max))?;
    }
}

/// The best `k` of hits gathered from several searches: by score, ties by row (as one search
/// ranks them).
fn best_of(mut all: Vec<(u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// A segment searched as row ranges below one shared floor (as a query spread over threads
    /// searches it), in either order, gives the best `k` of the whole search.
    #[test]
    fn row_ranges_under_a_shared_floor_give_the_whole_search(seed in any::<u64>(), rows in 5_000usize..40_000,
                                                             k in 1usize..12, two in any::<bool>(),
                                                             cuts in proptest::collection::vec(0.0f64..1.0, 1..4),
                                                             backwards in any::<bool>()) {
        let bytes = dense_index(seed, rows);
        let idx = TextIndex::open(&bytes).unwrap();
        let terms = dense_terms(two);
        let mut st = CorpusStats::default();
        st.add_index(&idx, &terms);
        let fq = [FieldQuery { index: &idx, terms: &terms, found: None, prefix: None, stats: &st,
                               params: Bm25Params::default(), boost: 1.0 }];
        let mut at: Vec<u32> = cuts.iter().map(|c| (c * rows as f64) as u32).collect();
        at.extend([0, u32::try_from(rows).unwrap()]);
        at.sort_unstable();
        let mut ranges: Vec<std::ops::Range<u32>> = at.windows(2).map(|w| w[0]..w[1]).collect();
        if backwards {
            ranges.reverse();
        }
        let floor = SharedFloor::new(f32::NEG_INFINITY);
        let mut all = Vec::new();
        for r in ranges {
            let got = search_fields_in(&fq, k, None, Combine::Sum, r.clone(), &floor).unwrap();
            prop_assert!(got.iter().all(|(row, _)| r.contains(row)), "{:?}: {:?}", r, got);
            all.extend(got);
        }
        prop_assert_eq!(best_of(all, k), search_fields_exhaustive(&fq, k, None).unwrap());
    }
}

proptest! {
    /// Invariant: `word_v3` (and every tokenizer but `word_v4`) takes the maximal alphanumeric
    /// runs `split(|c| !c.is_alphanumeric())` gives, lowercased as `char::to_lowercase` does,
    /// whatever mix of ASCII, punctuation, digits of other scripts and multi-byte letters.
    #[test]
    fn word_v3_tokens_are_the_alphanumeric_runs_lowercased(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("a"), Just("Z"), Just("7"), Just(" "), Just("-"), Just("."), Just("é"), Just("É"),
                Just("日本"), Just("٣"), Just("ß"), Just("İ"), Just("\u{301}"), Just("🦀"), Just("\t"), Just("_"),
            ],
            0..40,
        )
    ) {
        let text: String = parts.concat();
        let opts = FullTextSearch {
            tokenizer: "word_v3".into(),
            stemming: false,
            remove_stopwords: false,
            case_sensitive: false,
            ascii_folding: false,
            ..FullTextSearch::default()
        };
        let expected: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && w.len() <= opts.max_token_length as usize)
            .map(|w| w.chars().flat_map(char::to_lowercase).collect())
            .collect();
        prop_assert_eq!(toks(&Analyzer::new(&opts), &text), expected);
    }
}
