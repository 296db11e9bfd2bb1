//! Unit tests of the overlay text index: what it serves (statistics and postings) equals
//! indexing the live overlay afresh, after puts, deletes, option changes and refolds.

use super::*;
use crate::model::Value;
use crate::schema::AttrSchema;

pub(super) fn schema() -> Schema {
    let mut s = Schema::new();
    let mut a = AttrSchema::of(crate::schema::AttrType::Scalar(crate::schema::ScalarType::String));
    a.full_text_search = Some(FullTextSearch::default());
    s.insert("t".into(), a);
    s
}

pub(super) fn doc(id: u64, text: &str) -> Arc<Document> {
    let mut d = Document::new(DocId::U64(id));
    d.attrs.insert("t".into(), Value::Str(text.into()));
    Arc::new(d)
}

pub(super) type Overlay = imbl::OrdMap<DocId, Option<Arc<Document>>>;

pub(super) fn put(ix: &mut OverlayText, s: &Schema, o: &mut Overlay, d: Arc<Document>) {
    ix.replace(s, o, &d.id, Some(&d), None);
    o.insert(d.id.clone(), Some(d));
}

#[test]
fn statistics_follow_puts_supersedes_and_deletes_without_touching_shared_snapshots() {
    let s = schema();
    let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
    for i in 0..300 {
        put(&mut ix, &s, &mut o, doc(i, if i % 3 == 0 { "red fox" } else { "blue fox fox" }));
    }
    let before = ix.clone();
    let opts = FullTextSearch::default();
    let v = ix.attr("t", &opts).unwrap();
    assert_eq!((v.num_docs(), v.doc_freq("red"), v.doc_freq("fox"), v.total_tokens()), (300, 100, 300, 800));
    // 38 tails of 8 rows unmerged; merged four at a time, a few per size class.
    assert!(ix.0.attrs[0].parts.len() < 13, "chunks merge: {}", ix.0.attrs[0].parts.len());
    // Every red row rewritten blue, then half the rows deleted.
    for i in (0..300).step_by(3) {
        put(&mut ix, &s, &mut o, doc(i, "blue"));
    }
    for i in 0..150 {
        let id = DocId::U64(i);
        ix.replace(&s, &o, &id, None, None);
        o.remove(&id);
    }
    let v = ix.attr("t", &opts).unwrap();
    assert_eq!((v.num_docs(), v.doc_freq("red"), v.doc_freq("blue")), (150, 0, 150));
    let fox: Vec<u64> = v.postings("fox").iter().map(|p| p.seq).collect();
    assert_eq!(fox.len(), 100, "only rows 150.. not rewritten hold fox");
    assert!(fox.windows(2).all(|w| w[0] < w[1]), "postings in seq order");
    let old = before.attr("t", &opts).unwrap();
    assert_eq!((old.num_docs(), old.doc_freq("red"), old.postings("red").len()), (300, 100, 100));
}

#[test]
fn a_cursor_seeks_to_the_same_rows_the_postings_list() {
    let s = schema();
    let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
    for i in 0..1000 {
        put(&mut ix, &s, &mut o, doc(i % 700, if i % 5 < 2 { "red fox" } else { "fox" }));
    }
    let opts = FullTextSearch::default();
    let v = ix.attr("t", &opts).unwrap();
    let all: Vec<u64> = v.postings("red").iter().map(|p| p.seq).collect();
    assert!(
        all.len() > 200 && ix.0.attrs[0].parts.len() > 1,
        "{} rows, {} chunks",
        all.len(),
        ix.0.attrs[0].parts.len()
    );
    for step in [1u64, 3, 17, 250] {
        let mut c = v.cursor("red");
        let mut got = Vec::new();
        let mut target = 0;
        while let Some(p) = c.current() {
            got.push(p.seq);
            target = p.seq + step;
            c.seek(target);
        }
        let want: Vec<u64> = {
            let mut w = Vec::new();
            let mut t = 0;
            for s in &all {
                if *s >= t {
                    w.push(*s);
                    t = s + step;
                }
            }
            w
        };
        assert_eq!(got, want, "step {step}, last target {target}");
    }
    assert!(v.cursor("green").current().is_none());
}

/// What a query reads of attribute `t`: statistics, and per term its
/// live (id, tf, norm) postings (seqs differ between two indexes).
pub(super) fn served(ix: &OverlayText, words: &[&str]) -> Vec<String> {
    let v = ix.attr("t", &FullTextSearch::default()).unwrap();
    let mut out = vec![format!("{} {}", v.num_docs(), v.total_tokens())];
    for w in words {
        let mut rows: Vec<String> =
            v.postings(w).iter().map(|p| format!("{:?}:{}:{}", p.doc.id, p.tf, p.norm)).collect();
        rows.sort();
        out.push(format!("{w} df {} {rows:?}", v.doc_freq(w)));
        out.push(format!("{:?}", v.terms_with_prefix(&w[..1], 100)));
    }
    out
}

#[test]
fn a_carried_index_serves_what_indexing_the_kept_rows_afresh_does() {
    const WORDS: [&str; 6] = ["red", "fox", "blue", "dog", "runs", "lazy"];
    let s = schema();
    for seed in 0..20u64 {
        let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut next = |n: u64| draw() % n;
        let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
        let text = |next: &mut dyn FnMut(u64) -> u64| {
            let n = 1 + next(5);
            (0..n).map(|_| WORDS[next(6) as usize]).collect::<Vec<_>>().join(" ")
        };
        for _ in 0..next(120) {
            let id = next(90);
            put(&mut ix, &s, &mut o, doc(id, &text(&mut next)));
        }
        let folded = ix.clone();
        // Writes during the round: puts (some of them rewriting a row as it was), deletes.
        let mut touched = std::collections::BTreeSet::new();
        let mut same_as_before = std::collections::BTreeSet::new();
        for _ in 0..next(80) {
            let id = next(90);
            match next(5) {
                0 => {
                    ix.replace(&s, &o, &DocId::U64(id), None, None);
                    o.remove(&DocId::U64(id));
                }
                1 => {
                    if let Some(Some(d)) = o.get(&DocId::U64(id)).cloned() {
                        put(&mut ix, &s, &mut o, Arc::new((*d).clone()));
                        same_as_before.insert(id);
                    }
                    continue;
                }
                _ => put(&mut ix, &s, &mut o, doc(id, &text(&mut next))),
            }
            touched.insert(id);
            same_as_before.remove(&id);
        }
        // The refolded overlay: what the round changed, not the rows it rewrote as they were.
        let mut refolded = Overlay::new();
        for id in &touched {
            if let Some(Some(d)) = o.get(&DocId::U64(*id)) {
                refolded.insert(DocId::U64(*id), Some(Arc::clone(d)));
            }
        }
        let carried = ix.carried(&folded, &s, &refolded).expect("rows line up");
        let mut fresh = OverlayText::default();
        fresh.sync(&s, &refolded);
        assert_eq!(served(&carried, &WORDS), served(&fresh, &WORDS), "seed {seed}");
        // The carried index goes on taking writes like any other.
        let (mut c, mut f) = (carried, fresh);
        for i in 0..30 {
            let d = doc(i % 7 + 200, &text(&mut next));
            c.replace(&s, &refolded, &d.id, Some(&d), None);
            f.replace(&s, &refolded, &d.id, Some(&d), None);
            refolded.insert(d.id.clone(), Some(d));
        }
        assert_eq!(served(&c, &WORDS), served(&f, &WORDS), "seed {seed}, after more writes");
    }
}

#[test]
fn changed_options_are_not_served_until_synced() {
    let mut s = schema();
    let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
    put(&mut ix, &s, &mut o, doc(1, "Running dogs"));
    let stemmed = FullTextSearch { stemming: true, ..FullTextSearch::default() };
    s.get_mut("t").unwrap().full_text_search = Some(stemmed.clone());
    assert!(ix.attr("t", &stemmed).is_none());
    ix.sync(&s, &o);
    let v = ix.attr("t", &stemmed).unwrap();
    assert_eq!((v.doc_freq("run"), v.doc_freq("running")), (1, 0));
    assert_eq!(v.terms_with_prefix("d", 10), vec!["dog"]);
}

/// Statistics counted by scanning the overlay's live documents: (N, tokens,
/// per word its df, per first letter the terms starting with it).
fn recounted(o: &Overlay, words: &[&str]) -> Vec<String> {
    let analyzer = Analyzer::new(&FullTextSearch::default());
    let (mut tokens, mut df) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    let live: Vec<&Arc<Document>> = o.values().flatten().collect();
    for d in &live {
        let toks = doc_tokens(&analyzer, d, "t");
        tokens += toks.len() as u64;
        let distinct: std::collections::BTreeSet<&str> = toks.iter().collect();
        for t in distinct {
            *df.entry(t.to_owned()).or_default() += 1;
        }
    }
    let mut out = vec![format!("{} {tokens}", live.len())];
    for w in words {
        out.push(format!("{w} df {}", df.get(*w).copied().unwrap_or(0)));
        let with: Vec<&String> = df.keys().filter(|t| t.starts_with(&w[..1])).take(3).collect();
        out.push(format!("{with:?}"));
    }
    out
}

/// The same statistics as the index serves them.
fn counted(ix: &OverlayText, words: &[&str]) -> Vec<String> {
    let v = ix.attr("t", &FullTextSearch::default()).unwrap();
    let mut out = vec![format!("{} {}", v.num_docs(), v.total_tokens())];
    for w in words {
        out.push(format!("{w} df {}", v.doc_freq(w)));
        out.push(format!("{:?}", v.terms_with_prefix(&w[..1], 3)));
    }
    out
}

#[test]
fn document_frequencies_summed_over_chunks_equal_a_recount_after_random_writes() {
    const WORDS: [&str; 9] = ["red", "fox", "blue", "dog", "runs", "lazy", "rust", "road", "debt"];
    let s = schema();
    for seed in 0..12u64 {
        let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let mut next = |n: u64| draw() % n;
        let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
        ix.sync(&s, &o);
        let mut snapshots = Vec::new();
        for step in 0..600 {
            let id = DocId::U64(next(150));
            match next(6) {
                // Deletes, and rows without the attribute's text (no row in any chunk).
                0 => {
                    ix.replace(&s, &o, &id, None, None);
                    o.remove(&id);
                }
                1 => put(&mut ix, &s, &mut o, Arc::new(Document::new(id))),
                // Patches: the row as it is with one more word.
                2 => {
                    if let Some(Some(d)) = o.get(&id).cloned() {
                        let mut d = (*d).clone();
                        let before = match d.attrs.get("t") {
                            Some(Value::Str(t)) => t.clone(),
                            _ => String::new(),
                        };
                        d.attrs
                            .insert("t".into(), Value::Str(format!("{before} {}", WORDS[next(9) as usize])));
                        put(&mut ix, &s, &mut o, Arc::new(d));
                    }
                }
                _ => {
                    let n = 1 + next(6);
                    let text: Vec<&str> = (0..n).map(|_| WORDS[next(9) as usize]).collect();
                    let DocId::U64(i) = id else { unreachable!() };
                    put(&mut ix, &s, &mut o, doc(i, &text.join(" ")));
                }
            }
            if step % 97 == 0 {
                snapshots.push((ix.clone(), o.clone()));
            }
            if step % 37 == 0 {
                assert_eq!(counted(&ix, &WORDS), recounted(&o, &WORDS), "seed {seed}, step {step}");
            }
        }
        assert!(ix.0.attrs[0].parts.len() > 1, "several chunks");
        assert_eq!(counted(&ix, &WORDS), recounted(&o, &WORDS), "seed {seed}, at the end");
        // Snapshots taken along the way still serve what they held.
        for (i, (old, old_o)) in snapshots.iter().enumerate() {
            assert_eq!(counted(old, &WORDS), recounted(old_o, &WORDS), "seed {seed}, snapshot {i}");
        }
    }
}
