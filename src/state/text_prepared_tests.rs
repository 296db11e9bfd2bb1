//! Unit tests of prepared tokens: they are the analysis of the value they were made from,
//! anything else is analysed again, and an overlay index put with preparations (good,
//! stale or made under other options) is the index put without them.

use std::sync::Arc;

use super::super::OverlayText;
use super::*;
use crate::model::DocId;
use crate::schema::{AttrSchema, AttrType, ScalarType};

type Overlay = imbl::OrdMap<DocId, Option<Arc<Document>>>;

const WORDS: [&str; 8] = ["Red", "foxes", "running", "the", "lazy", "dog's", "jumped", "über"];

fn options(stemming: bool) -> FullTextSearch {
    FullTextSearch { stemming, remove_stopwords: stemming, ..FullTextSearch::default() }
}

/// Full-text `t` under `t_options` and `u` (stemmed), and a plain string `s`.
fn schema(t_options: FullTextSearch) -> Schema {
    let mut s = Schema::new();
    let string = || AttrSchema::of(AttrType::Scalar(ScalarType::String));
    let mut t = string();
    t.full_text_search = Some(t_options);
    let mut u = string();
    u.full_text_search = Some(options(true));
    s.insert("t".into(), t);
    s.insert("u".into(), u);
    s.insert("s".into(), string());
    s
}

/// Random documents: `t` a string, an array of strings, a stop word alone, or missing; `u` a
/// string or missing.
fn docs(seed: u64, n: u64) -> Vec<Document> {
    let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut next = move |n: u64| draw() % n;
    let text = |next: &mut dyn FnMut(u64) -> u64| {
        (0..1 + next(6)).map(|_| WORDS[next(8) as usize]).collect::<Vec<_>>().join(" ")
    };
    (0..n)
        .map(|i| {
            let mut d = Document::new(DocId::U64(next(n * 2)));
            match next(5) {
                0 => {}
                1 => {
                    let items = (0..next(3)).map(|_| Value::Str(text(&mut next))).collect();
                    d.attrs.insert("t".into(), Value::Array(items));
                }
                2 => {
                    d.attrs.insert("t".into(), Value::Str("the".into()));
                }
                _ => {
                    d.attrs.insert("t".into(), Value::Str(text(&mut next)));
                }
            }
            if next(3) > 0 {
                d.attrs.insert("u".into(), Value::Str(text(&mut next)));
            }
            d.attrs.insert("s".into(), Value::Str(format!("row {i}")));
            d
        })
        .collect()
}

fn analysed(options: &FullTextSearch, v: &Value) -> Vec<String> {
    let mut toks = ValueTokens::default();
    toks.analyze(&Analyzer::new(options), v);
    toks.iter().map(str::to_owned).collect()
}

#[test]
fn prepared_tokens_are_the_analysis_of_the_value_they_were_made_from() {
    for seed in 0..10 {
        let s = schema(options(false));
        let ds = docs(seed, 60);
        let p = PreparedText::analyze(&s, &ds);
        assert_eq!((p.rows(), p.attrs.len()), (60, 2), "the two full-text attributes, not `s`");
        for (i, d) in ds.iter().enumerate() {
            for (name, opts) in [("t", options(false)), ("u", options(true))] {
                let v = d.attrs.get(name);
                match p.row(i).tokens(name, &opts, v) {
                    Prepared::Tokens(toks) => {
                        let got: Vec<&str> = toks.iter().collect();
                        assert_eq!(got, analysed(&opts, v.unwrap()), "seed {seed} row {i} {name}");
                    }
                    Prepared::Empty => assert!(v.is_none(), "Empty only for a missing value"),
                    // A value without words (`the` is no stop word here, so an empty array).
                    Prepared::Unknown => assert!(analysed(&opts, v.unwrap()).is_empty()),
                }
            }
        }
    }
}

#[test]
fn a_changed_value_or_other_options_are_analysed_again() {
    let mut d = Document::new(DocId::U64(1));
    d.attrs.insert("t".into(), Value::Str("red foxes".into()));
    let p = PreparedText::analyze(&schema(options(false)), std::slice::from_ref(&d));
    let row = p.row(0);
    assert!(matches!(
        row.tokens("t", &options(false), Some(&Value::Str("red foxes".into()))),
        Prepared::Tokens(_)
    ));
    for (opts, v) in [
        (options(false), Some(Value::Str("red foxez".into()))),
        (options(false), Some(Value::Str("red foxes ".into()))),
        (options(false), Some(Value::Array(vec![Value::Str("red".into()), Value::Str("foxes".into())]))),
        (options(false), None),
        (options(true), Some(Value::Str("red foxes".into()))),
    ] {
        assert!(matches!(row.tokens("t", &opts, v.as_ref()), Prepared::Unknown), "{opts:?} {v:?}");
    }
    // `u` was not in the row: Empty while it still is not, analysed once it is.
    assert!(matches!(row.tokens("u", &options(true), None), Prepared::Empty));
    assert!(matches!(row.tokens("u", &options(true), Some(&Value::Str("x".into()))), Prepared::Unknown));
    assert!(matches!(row.tokens("s", &options(false), None), Prepared::Unknown), "never prepared");
}

/// Every term's live postings (seq and tf, in seq order, whichever chunks hold them) of both
/// attributes, each term's document frequency, and the statistics.
fn contents(ix: &OverlayText, s: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for (name, a) in s.iter().filter(|(_, a)| a.full_text_search.is_some()) {
        let v = ix.attr(name, a.full_text_search.as_ref().unwrap()).unwrap();
        out.push(format!("{name}: {} docs, {} tokens", v.num_docs(), v.total_tokens()));
        let mut lists: std::collections::BTreeMap<String, Vec<(u64, u32)>> = Default::default();
        v.for_each_list(|t, rows| lists.entry(t.to_owned()).or_default().extend_from_slice(rows));
        for (t, mut rows) in lists {
            rows.sort_unstable();
            let seqs: Vec<u64> = v.postings(&t).iter().map(|p| p.seq).collect();
            assert_eq!(seqs, rows.iter().map(|r| r.0).collect::<Vec<_>>(), "{t}: postings in seq order");
            out.push(format!("{t} df {} {rows:?}", v.doc_freq(&t)));
        }
    }
    out
}

#[test]
fn an_index_put_with_preparations_is_the_index_put_without() {
    for seed in 0..12 {
        let s = schema(options(seed % 2 == 0));
        let ds = docs(seed, 150);
        // Prepared under this schema, under the other options for `t`, and stale: the same
        // preparation with every fifth row's `t` rewritten afterwards.
        let good = PreparedText::analyze(&s, &ds);
        let other = PreparedText::analyze(&schema(options(seed % 2 == 1)), &ds);
        let mut changed = ds.clone();
        for d in changed.iter_mut().step_by(5) {
            d.attrs.insert("t".into(), Value::Str(format!("{} jumped", seed)));
        }
        let index = |ds: &[Document], p: Option<&PreparedText>| {
            let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
            for (i, d) in ds.iter().enumerate() {
                let d = Arc::new(d.clone());
                ix.replace(&s, &o, &d.id, Some(&d), p.map(|p| p.row(i)));
                o.insert(d.id.clone(), Some(d));
            }
            ix.end_puts();
            contents(&ix, &s)
        };
        let plain = index(&ds, None);
        assert_eq!(index(&ds, Some(&good)), plain, "seed {seed}: prepared");
        assert_eq!(index(&ds, Some(&other)), plain, "seed {seed}: other options");
        assert_eq!(index(&changed, Some(&good)), index(&changed, None), "seed {seed}: stale rows");
    }
}

/// Rows with distinct ids in one request: each attribute's rows are staged as they come and
/// its prebuilt chunk is taken whole at its last row, with the lists, seqs and statistics of
/// pushing each row; a row put twice, rows put out of the request's order, and a second apply
/// of the same preparation (its chunk already taken) push the rows one by one instead, with
/// the same contents.
#[test]
fn a_prebuilt_chunk_is_the_rows_pushed_one_by_one() {
    for seed in 0..6 {
        let s = schema(options(seed % 2 == 0));
        let mut ds = docs(seed, 300);
        for (i, d) in ds.iter_mut().enumerate() {
            d.id = DocId::U64(1_000 + i as u64);
        }
        let before = docs(seed + 100, 40);
        let prepared = || PreparedText::analyze(&s, &ds);
        assert!(
            prepared().attrs.iter().all(|a| a.prebuilt.is_some()),
            "seed {seed}: over PREBUILT_MIN_ROWS rows"
        );
        // `before` put without preparation, then `order` of the request's rows.
        let put = |order: &[usize], p: Option<&PreparedText>| {
            let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
            let rows = before.iter().map(|d| (None, d)).chain(order.iter().map(|&i| (Some(i), &ds[i])));
            for (i, d) in rows {
                let d = Arc::new(d.clone());
                ix.replace(&s, &o, &d.id, Some(&d), p.zip(i).map(|(p, i)| p.row(i)));
                o.insert(d.id.clone(), Some(d));
            }
            ix
        };
        let ended = |mut ix: OverlayText| {
            ix.end_puts();
            contents(&ix, &s)
        };
        let in_order: Vec<usize> = (0..ds.len()).collect();
        let half = put(&in_order[..150], Some(&prepared()));
        assert!(
            half.0.attrs.iter().all(|a| a.staged.as_ref().is_some_and(|st| !st.seqs.is_empty())),
            "seed {seed}"
        );
        let plain = ended(put(&in_order, None));
        let p = prepared();
        let whole = put(&in_order, Some(&p));
        assert!(whole.0.attrs.iter().all(|a| a.staged.is_none()), "seed {seed}: taken at its last row");
        assert!(
            p.attrs.iter().all(|a| a.prebuilt.as_ref().unwrap().0.take().is_none()),
            "seed {seed}: moved"
        );
        assert_eq!(ended(whole), plain, "seed {seed}: whole");
        assert_eq!(ended(put(&in_order, Some(&p))), plain, "seed {seed}: applied again, the chunk taken");
        let mut twice = in_order.clone();
        twice.insert(150, 20);
        let mut swapped = in_order.clone();
        swapped.swap(100, 101);
        for order in [twice, swapped] {
            assert_eq!(ended(put(&order, Some(&prepared()))), ended(put(&order, None)), "seed {seed}");
        }
    }
}
