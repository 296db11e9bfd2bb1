//! Unit tests of one overlay index chunk (`text_chunk.rs`): a sealed chunk serves what the
//! open one did, and a merge of chunks with dead rows serves exactly what pushing the live
//! rows afresh does — every term's rows, tfs and peak, terms in order.

use super::super::Part;
use super::*;
use crate::index::text::{Analyzer, ValueTokens};
use crate::model::{DocId, Value};
use crate::schema::FullTextSearch;

const WORDS: [&str; 12] =
    ["red", "fox", "foxes", "blue", "dog", "runs", "run", "lazy", "rust", "road", "re", "a"];

/// A chunk with `rows` random rows (seqs from `first`), pushed one by one.
fn random_chunk(next: &mut impl FnMut(u64) -> u64, first: u64, rows: usize) -> Chunk {
    let analyzer = Analyzer::new(&FullTextSearch::default());
    let mut chunk = Chunk::default();
    let mut toks = ValueTokens::default();
    for i in 0..rows as u64 {
        let n = 1 + next(9);
        let text: Vec<&str> = (0..n).map(|_| WORDS[next(WORDS.len() as u64) as usize]).collect();
        toks.analyze(&analyzer, &Value::Str(text.join(" ")));
        let doc = Arc::new(Document::new(DocId::U64(first + i)));
        chunk.push(first + i, &doc, &toks);
    }
    chunk
}

/// Every term's (seq, tf) rows and peak, in term order, as read through `list` and `terms_from`.
type Served = Vec<(String, Vec<(u64, u32)>, (u32, u8))>;

fn served(chunk: &Chunk) -> Served {
    let mut terms = Vec::new();
    chunk.terms_from("", |t| {
        terms.push(t.to_owned());
        true
    });
    let mut listed = Vec::new();
    chunk.for_each_list(|t, _| listed.push(t.to_owned()));
    listed.sort();
    assert_eq!(listed, terms, "for_each_list and terms_from cover the same terms");
    assert!(terms.windows(2).all(|w| w[0] < w[1]), "terms in order");
    terms
        .into_iter()
        .map(|t| {
            let l = chunk.list(&t).expect("a listed term is found");
            let rows = l.rows.iter().map(|&(r, tf)| (chunk.seqs[r as usize], tf)).collect();
            (t, rows, (l.max_tf, l.min_norm))
        })
        .collect()
}

/// A term's (seq, tf) rows and its peak.
type RowsAndPeak = (Vec<(u64, u32)>, (u32, u8));

/// What pushing the given (seq, doc) rows of `chunks` afresh, without the dead ones, serves.
fn live_rows_afresh(parts: &[Part]) -> Served {
    let mut out: std::collections::BTreeMap<String, RowsAndPeak> = Default::default();
    for p in parts {
        for (row, &seq) in p.chunk.seqs.iter().enumerate().filter(|(r, _)| !p.is_dead(*r as u32)) {
            let norm = p.chunk.norms[row];
            p.chunk.for_each_list(|t, rows| {
                if let Some(&(_, tf)) = rows.iter().find(|(r, _)| *r as usize == row) {
                    let e = out.entry(t.to_owned()).or_insert((Vec::new(), (0, u8::MAX)));
                    e.0.push((seq, tf));
                    e.1 = (e.1 .0.max(tf), e.1 .1.min(norm));
                }
            });
        }
    }
    out.into_iter().map(|(t, (rows, peak))| (t, rows, peak)).collect()
}

#[test]
fn a_sealed_chunk_serves_what_the_open_one_did() {
    for seed in 0..8u64 {
        let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut next = |n: u64| draw() % n;
        let rows = 1 + next(40) as usize;
        let open = random_chunk(&mut next, 10, rows);
        let mut sealed = open.clone();
        sealed.seal();
        assert!(open.is_open() && !sealed.is_open());
        assert_eq!(served(&sealed), served(&open), "seed {seed}");
        // The peaks counted as rows were pushed are the rows' own (largest tf, smallest norm).
        assert_eq!(served(&open), live_rows_afresh(&[Part::new(open.clone())]), "seed {seed}");
        assert!(sealed.list("absent").is_none() && sealed.list("").is_none());
        // Opened again, it takes rows as the open one does.
        let (mut reopened, mut grown) = (sealed.clone(), open.clone());
        reopened.unseal();
        assert!(reopened.is_open());
        let more = random_chunk(&mut next, 100, 12);
        let analyzer = Analyzer::new(&FullTextSearch::default());
        let mut toks = ValueTokens::default();
        for (seq, doc) in more.seqs.iter().zip(&more.docs) {
            toks.analyze(&analyzer, &Value::Str(format!("fox {seq} red")));
            reopened.push(*seq, doc, &toks);
            grown.push(*seq, doc, &toks);
        }
        assert_eq!(served(&reopened), served(&grown), "seed {seed}");
        assert_eq!(served(&grown), live_rows_afresh(&[Part::new(grown.clone())]), "seed {seed}");
        for prefix in ["r", "fo", "z", "re"] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            open.terms_from(prefix, |t| {
                t.starts_with(prefix) && {
                    a.push(t.to_owned());
                    true
                }
            });
            sealed.terms_from(prefix, |t| {
                t.starts_with(prefix) && {
                    b.push(t.to_owned());
                    true
                }
            });
            assert_eq!(a, b, "seed {seed}, prefix {prefix}");
        }
    }
}

#[test]
fn merged_chunks_serve_their_live_rows_as_pushed_afresh() {
    for seed in 0..24u64 {
        let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let mut next = |n: u64| draw() % n;
        let mut parts = Vec::new();
        let mut first = 0;
        for k in 0..1 + next(4) {
            let rows = 1 + next(30) as usize;
            let mut chunk = random_chunk(&mut next, first, rows);
            first += rows as u64 + next(3);
            // Open and sealed inputs both, as a rewrite of the tail and a merge of sealed ones.
            if k % 2 == 0 || next(2) == 0 {
                chunk.seal();
            }
            let mut part = Part::new(chunk);
            for row in 0..rows {
                if next(3) == 0 {
                    part.kill(row);
                }
            }
            parts.push(part);
        }
        let merged = Chunk::merged(&parts);
        assert!(!merged.is_open());
        let live: usize = parts.iter().map(Part::live_rows).sum();
        assert_eq!(merged.seqs.len(), live, "seed {seed}: only live rows are kept");
        assert_eq!(served(&merged), live_rows_afresh(&parts), "seed {seed}");
        // A merge that kills a term's every row leaves no list for it.
        assert!(served(&merged).iter().all(|(_, rows, _)| !rows.is_empty()), "seed {seed}");
    }
}

#[test]
fn a_prebuilt_chunk_serves_what_pushing_its_rows_did() {
    let analyzer = Analyzer::new(&FullTextSearch::default());
    for seed in 0..8u64 {
        let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut next = |n: u64| draw() % n;
        let rows = 1 + next(60) as usize;
        let toks: Vec<ValueTokens> = (0..rows)
            .map(|_| {
                let n = 1 + next(12);
                let text: Vec<&str> = (0..n).map(|_| WORDS[next(WORDS.len() as u64) as usize]).collect();
                let mut t = ValueTokens::default();
                t.analyze(&analyzer, &Value::Str(text.join(" ")));
                t
            })
            .collect();
        let seqs: Vec<u64> = (0..rows as u64).map(|i| 7 + 3 * i).collect();
        let docs: Vec<Arc<Document>> = seqs.iter().map(|&s| Arc::new(Document::new(DocId::U64(s)))).collect();
        let mut pushed = Chunk::default();
        for ((seq, doc), t) in seqs.iter().zip(&docs).zip(&toks) {
            pushed.push(*seq, doc, t);
        }
        let prebuilt = Chunk::prebuilt(toks.iter()).with_rows(seqs, docs);
        assert!(!prebuilt.is_open());
        assert_eq!(served(&prebuilt), served(&pushed), "seed {seed}");
        assert_eq!(prebuilt.lens, pushed.lens, "seed {seed}");
        assert_eq!(prebuilt.norms, pushed.norms, "seed {seed}");
    }
}
