//! Unit tests of deferred overlay merges: a write applied with merges deferred, then merged
//! and installed (or never merged), serves what the same writes applied with merges inline
//! serve, and its chunk list stays as short.

use super::super::tests::{doc, put, served, Overlay};
use super::super::FANOUT;
use super::*;
use crate::model::DocId;
use crate::schema::FullTextSearch;

const WORDS: [&str; 8] = ["red", "fox", "blue", "dog", "runs", "lazy", "rust", "road"];

fn parts(ix: &OverlayText) -> usize {
    ix.0.attrs[0].parts.len()
}

/// Writes `n` random rows (puts, rewrites, deletes) to both indexes.
fn write(
    (inline, deferred): (&mut OverlayText, &mut OverlayText),
    o: &mut Overlay,
    next: &mut impl FnMut(u64) -> u64,
    n: u64,
) {
    let s = super::super::tests::schema();
    for _ in 0..n {
        let id = DocId::U64(next(400));
        if next(8) == 0 {
            inline.replace(&s, o, &id, None, None);
            deferred.replace(&s, o, &id, None, None);
            o.remove(&id);
            continue;
        }
        let text: Vec<&str> = (0..1 + next(5)).map(|_| WORDS[next(8) as usize]).collect();
        let DocId::U64(i) = id else { unreachable!() };
        let d = doc(i, &text.join(" "));
        inline.replace(&s, o, &d.id, Some(&d), None);
        put(deferred, &s, o, d);
    }
}

#[test]
fn deferred_merges_installed_serve_what_inline_merges_do() {
    for seed in 0..10u64 {
        let mut draw = crate::index::text::tests::xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut next = |n: u64| draw() % n;
        let (mut deferred, mut o) = (OverlayText::default(), Overlay::new());
        put(&mut deferred, &super::super::tests::schema(), &mut o, doc(1000, "seed row"));
        let mut inline = deferred.clone();
        let (mut most_parts, mut merged_groups) = (0, 0);
        for group in 0..40 {
            deferred.defer_merges();
            let rows = 1 + next(60);
            write((&mut inline, &mut deferred), &mut o, &mut next, rows);
            let unmerged = parts(&deferred);
            if let Some(m) = deferred.take_merges() {
                deferred.install(m.run());
            }
            assert!(parts(&deferred) <= unmerged, "seed {seed}, group {group}");
            merged_groups += usize::from(parts(&deferred) < unmerged);
            assert_eq!(served(&deferred, &WORDS), served(&inline, &WORDS), "seed {seed}, group {group}");
            most_parts = most_parts.max(parts(&deferred));
        }
        assert!(merged_groups > 5, "seed {seed}: merges were deferred and run ({merged_groups} groups)");
        // Geometric sizes as inline: inline merging keeps a few chunks per size class.
        assert!(
            most_parts <= parts(&inline) + 2 * FANOUT,
            "seed {seed}: {most_parts} against {}",
            parts(&inline)
        );
        assert!(most_parts < 20, "seed {seed}: {most_parts} chunks");
        // Merges inline again once taken.
        assert!(deferred.0.attrs.iter().all(|a| a.defer_from.is_none()));
    }
}

#[test]
fn deferred_merges_never_run_serve_the_same_rows() {
    let s = super::super::tests::schema();
    let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
    put(&mut ix, &s, &mut o, doc(0, "first"));
    let mut reference = ix.clone();
    ix.defer_merges();
    for i in 1..200 {
        let d = doc(i, if i % 2 == 0 { "red fox" } else { "blue dog runs" });
        reference.replace(&s, &o, &d.id, Some(&d), None);
        put(&mut ix, &s, &mut o, d);
    }
    let unmerged = parts(&ix);
    assert!(unmerged > parts(&reference), "nothing merged while deferred: {unmerged}");
    drop(ix.take_merges().expect("sealed tails to merge"));
    assert_eq!(served(&ix, &WORDS), served(&reference, &WORDS));
    // The next full tail merges inline again.
    for i in 200..240 {
        put(&mut ix, &s, &mut o, doc(i, "lazy road"));
    }
    assert!(parts(&ix) < unmerged, "merged inline after the deferral: {} against {unmerged}", parts(&ix));
}

#[test]
fn merges_are_not_installed_over_parts_changed_since() {
    let s = super::super::tests::schema();
    let (mut ix, mut o) = (OverlayText::default(), Overlay::new());
    ix.sync(&s, &o);
    ix.defer_merges();
    for i in 0..100 {
        put(&mut ix, &s, &mut o, doc(i, "red fox"));
    }
    let merges = ix.take_merges().expect("sealed tails to merge");
    // A delete after the take rewrites the dead bits of the part holding row 3.
    let id = DocId::U64(3);
    ix.replace(&s, &o, &id, None, None);
    o.remove(&id);
    let before = parts(&ix);
    ix.install(merges.run());
    assert_eq!(parts(&ix), before, "parts changed since the take are left as they are");
    let v = ix.attr("t", &FullTextSearch::default()).unwrap();
    assert_eq!((v.num_docs(), v.doc_freq("red")), (99, 99));
}
