//! Carrying rows from existing sections ([`TextIndexBuilder::carry_rows`]) writes the section
//! analysing the same rows' text writes, byte for byte: random corpora, rows dropped from the
//! sources, carried rows interleaved with analysed ones, several option sets.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const WORDS: &[&str] = &[
    "the",
    "running",
    "runs",
    "ran",
    "Über",
    "uber",
    "café",
    "and",
    "a",
    "searching",
    "searches",
    "index",
    "indexes",
    "x",
    "tokenisation",
    "SHA256",
    "sha",
    "shadow",
    "of",
    "is",
    "averyveryverylongtokenthatexceedsthelimitofthirtynine",
];

fn text(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..12);
    (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

fn option_sets() -> Vec<FullTextSearch> {
    vec![
        FullTextSearch::default(),
        FullTextSearch {
            tokenizer: "word_v3".into(),
            stemming: true,
            remove_stopwords: false,
            index_prefixes: true,
            ..FullTextSearch::default()
        },
        FullTextSearch {
            case_sensitive: true,
            ascii_folding: true,
            max_token_length: 5,
            ..Default::default()
        },
    ]
}

fn section_of(texts: &[String], opts: &FullTextSearch) -> Vec<u8> {
    build("body", texts.iter().enumerate().map(|(i, t)| (i as u32, t.as_str())), opts)
}

/// Where each output row comes from.
enum Origin {
    Analysed(String),
    Carried(usize, u32),
}

#[test]
fn carried_rows_write_the_section_analysing_them_writes() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        for opts in option_sets() {
            let sources: Vec<Vec<String>> =
                (0..3).map(|_| (0..rng.random_range(0..300)).map(|_| text(&mut rng)).collect()).collect();
            let bytes: Vec<Vec<u8>> = sources.iter().map(|s| section_of(s, &opts)).collect();
            let mut origins = Vec::new();
            let mut next = vec![0u32; sources.len()];
            loop {
                let open: Vec<usize> =
                    (0..sources.len()).filter(|&c| (next[c] as usize) < sources[c].len()).collect();
                if open.is_empty() {
                    break;
                }
                if rng.random_bool(0.2) {
                    origins.push(Origin::Analysed(text(&mut rng)));
                    continue;
                }
                let c = open[rng.random_range(0..open.len())];
                let row = next[c];
                next[c] += 1;
                // A deleted or superseded source row is not carried.
                if rng.random_bool(0.75) {
                    origins.push(Origin::Carried(c, row));
                }
            }
            let expected = build(
                "body",
                origins.iter().enumerate().map(|(i, o)| {
                    let t = match o {
                        Origin::Analysed(t) => t.as_str(),
                        Origin::Carried(c, r) => sources[*c][*r as usize].as_str(),
                    };
                    (i as u32, t)
                }),
                &opts,
            );
            let mut b = TextIndexBuilder::new("body", &opts);
            let mut carried: Vec<Vec<(u32, u32)>> = vec![Vec::new(); sources.len()];
            for (i, o) in origins.iter().enumerate() {
                match o {
                    Origin::Analysed(t) => b.add(i as u32, t),
                    Origin::Carried(c, r) => carried[*c].push((*r, i as u32)),
                }
            }
            for (c, rows) in carried.iter().enumerate() {
                b.carry_rows(&TextIndex::open(&bytes[c]).unwrap(), rows).unwrap();
            }
            assert!(b.finish() == expected, "seed {seed}, options {opts:?}");
        }
    }
}

#[test]
fn a_carried_row_past_the_source_is_refused() {
    let opts = FullTextSearch::default();
    let src = section_of(&["one two".into(), "three".into()], &opts);
    let mut b = TextIndexBuilder::new("body", &opts);
    assert!(b.carry_rows(&TextIndex::open(&src).unwrap(), &[(2, 0)]).is_err());
}

#[test]
fn the_analysis_key_names_the_options_that_change_tokens_only() {
    let base = FullTextSearch::default();
    let key = analysis_key(&base);
    let same = FullTextSearch { k1: 2.0, b: 0.1, index_prefixes: true, ..base.clone() };
    assert_eq!(analysis_key(&same), key);
    let others = [
        FullTextSearch { tokenizer: "word_v3".into(), ..base.clone() },
        FullTextSearch { language: "french".into(), ..base.clone() },
        FullTextSearch { stemming: true, ..base.clone() },
        FullTextSearch { remove_stopwords: false, ..base.clone() },
        FullTextSearch { case_sensitive: true, ..base.clone() },
        FullTextSearch { ascii_folding: true, ..base.clone() },
        FullTextSearch { max_token_length: 40, ..base.clone() },
    ];
    for o in others {
        assert_ne!(analysis_key(&o), key, "{o:?}");
    }
}

/// Invariant: rows carried by key ([`KeyedCarry`], the overlay's seqs) write the section analysing
/// them writes, whether the keys are dense (a table over their span) or sparse (a hash map),
/// with keys not carried skipped and a term's postings split over several lists.
#[test]
fn rows_carried_by_key_write_the_section_analysing_them_writes() {
    let opts = FullTextSearch::default();
    let analyzer = Analyzer::new(&opts);
    for (seed, stride) in [(1u64, 1u64), (2, 3), (3, 1_000_000_007)] {
        let mut rng = StdRng::seed_from_u64(seed);
        let texts: Vec<String> = (0..400).map(|_| text(&mut rng)).collect();
        let key = |i: usize| 5_000 + i as u64 * stride;
        // Every third source row is not carried; the others get output rows in order.
        let rows: Vec<(u64, u32)> = (0..texts.len()).filter(|i| i % 3 != 1).map(key).zip(0..).collect();
        let mut lists: BTreeMap<String, Vec<(u64, u32)>> = BTreeMap::new();
        for (i, t) in texts.iter().enumerate() {
            let mut tf: BTreeMap<String, u32> = BTreeMap::new();
            analyzer.for_each_token(t, |tok| *tf.entry(tok.to_owned()).or_default() += 1);
            for (term, n) in tf {
                lists.entry(term).or_default().push((key(i), n));
            }
        }
        let mut b = TextIndexBuilder::new("body", &opts);
        let mut carry = KeyedCarry::new(&mut b, &rows);
        for (term, list) in &lists {
            let (first, second) = list.split_at(list.len() / 2);
            carry.list(term, first);
            carry.list(term, second);
        }
        carry.finish();
        let carried: Vec<&str> = (0..texts.len()).filter(|i| i % 3 != 1).map(|i| texts[i].as_str()).collect();
        let expected = build("body", carried.iter().enumerate().map(|(o, t)| (o as u32, *t)), &opts);
        assert!(b.finish() == expected, "stride {stride}");
    }
}
