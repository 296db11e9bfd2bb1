//! A compaction that carries merged segments' text postings (`IndexFeed::carry_text`) writes
//! the segments, byte for byte, that analysing every row writes: two states get the same
//! random writes (upserts, deletes, patches of a full-text attribute and of another one,
//! rows without text) and the same compactions (random merges, outputs split by a small row
//! cap, so one segment feeds several outputs); one records its segments' analysis options
//! (`SegmentRef::text_analysis`, so merges carry) and folds its overlay with its inverted
//! index (so folded rows carry the overlay's postings), the other neither (so every row is
//! analysed). Every output must be equal. A change of one attribute's options midway must fall back to
//! analysis (equal again), and the test is shown to notice a carry under other options.
//!
//! Deterministic: seeded generators, every seed a separate case.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::engine::compact::shadowed_rows;
use crate::engine::merge::{build_segments, BuildPlan, BuiltSegment};
use crate::format::manifest::SegmentRef;
use crate::format::segment::{DeletionSet, Segment};
use crate::model::{AttrMap, DocId, Document, IdType, Value};
use crate::schema::{AttrSchema, AttrType, FullTextSearch, ScalarType, Schema};
use crate::state::{NsState, SegmentReader};

const IDS: u64 = 80;
const WORDS: &[&str] =
    &["the", "running", "runs", "Über", "café", "and", "searching", "searches", "index", "x", "of", "sha256"];

fn words(rng: &mut StdRng, max: usize) -> String {
    let n = rng.random_range(0..max);
    (0..n).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

fn schema(body: FullTextSearch) -> Schema {
    let text = |fts: FullTextSearch| {
        let mut a = AttrSchema::of(AttrType::Scalar(ScalarType::String));
        a.full_text_search = Some(fts);
        a
    };
    let mut tags = AttrSchema::of(AttrType::Array(ScalarType::String));
    tags.full_text_search = Some(FullTextSearch { remove_stopwords: false, ..FullTextSearch::default() });
    Schema::from([
        ("title".to_owned(), text(FullTextSearch::default())),
        ("body".to_owned(), text(body)),
        ("tags".to_owned(), tags),
        ("n".to_owned(), AttrSchema::of(AttrType::Scalar(ScalarType::Int))),
    ])
}

fn stemmed() -> FullTextSearch {
    FullTextSearch {
        stemming: true,
        remove_stopwords: false,
        index_prefixes: true,
        ..FullTextSearch::default()
    }
}

fn doc(rng: &mut StdRng, id: u64) -> Document {
    let mut attrs = AttrMap::new();
    if rng.random_bool(0.8) {
        attrs.insert("title".into(), Value::Str(words(rng, 5)));
    }
    if rng.random_bool(0.9) {
        attrs.insert("body".into(), Value::Str(words(rng, 30)));
    }
    if rng.random_bool(0.4) {
        let tags = (0..rng.random_range(0..3)).map(|_| Value::Str(words(rng, 3))).collect();
        attrs.insert("tags".into(), Value::Array(tags));
    }
    attrs.insert("n".into(), Value::Int(rng.random_range(0..9)));
    Document { id: DocId::U64(id), vector: None, attrs }
}

/// One random write, applied to both states alike.
fn write_one(rng: &mut StdRng, states: &mut [&mut NsState]) {
    let id = rng.random_range(0..IDS);
    match rng.random_range(0..10) {
        0..=5 => {
            let d = doc(rng, id);
            states.iter_mut().for_each(|s| s.put(d.clone()));
        }
        6 | 7 => {
            states.iter_mut().for_each(|s| {
                s.remove(&DocId::U64(id));
            });
        }
        k => {
            // A patch: of the text (k = 8) or of another attribute only (k = 9).
            let Some(old) = states[0].get(&DocId::U64(id)) else { return };
            let mut d = (*old).clone();
            match k {
                8 => d.attrs.insert("body".into(), Value::Str(words(rng, 30))),
                _ => d.attrs.insert("n".into(), Value::Int(rng.random_range(0..9))),
            };
            states.iter_mut().for_each(|s| s.put(d.clone()));
        }
    }
}

/// A compaction of `state` merging `merge`: the segments it leaves (surviving ones with
/// shadowed rows retired, then the outputs, recording their analysis options when
/// `record`), and the outputs' bytes. Also the refold tests' compaction (`load.rs`).
pub(in crate::engine) fn compact(
    state: &NsState,
    merge: &BTreeSet<String>,
    max_rows: usize,
    record: bool,
    next_id: &mut usize,
) -> (Vec<SegmentReader>, Vec<Bytes>) {
    let scratch = tempfile::tempdir().unwrap();
    let plan = BuildPlan {
        max_rows,
        cold: false,
        graph_code: crate::index::vector::graph::DEFAULT_CODE,
        scratch: scratch.path(),
    };
    let Ok(built) = build_segments(state, merge, &plan) else { panic!("building segments failed") };
    let shadowed = shadowed_rows(state, merge);
    let mut segs: Vec<SegmentReader> = state
        .segments()
        .iter()
        .filter(|s| !merge.contains(&s.meta.id))
        .map(|s| match shadowed.get(&s.meta.id) {
            Some(set) => s.with_deleted(Arc::new(set.clone())),
            None => s.clone(),
        })
        .collect();
    let mut bytes = Vec::new();
    for BuiltSegment { bytes: b, rows, text_analysis } in built {
        *next_id += 1;
        let b = Bytes::copy_from_slice(&b);
        let text_analysis = if record { text_analysis } else { Default::default() };
        let meta = SegmentRef { id: format!("seg{next_id}"), rows, text_analysis, ..SegmentRef::default() };
        segs.push(SegmentReader::new(
            Segment::open(b.clone()).unwrap(),
            Arc::new(DeletionSet::new(rows as usize)),
            meta,
        ));
        bytes.push(b);
    }
    (segs, bytes)
}

/// The state after a compaction: its segments, `old`'s settings, an empty overlay.
fn after(segs: Vec<SegmentReader>, old: &NsState) -> NsState {
    let mut s = NsState::with_segments(segs);
    s.schema = old.schema.clone();
    s.id_type = old.id_type;
    s
}

fn random_merge(rng: &mut StdRng, state: &NsState) -> BTreeSet<String> {
    let ids = state.segments().iter().map(|s| s.meta.id.clone());
    match rng.random_range(0..3) {
        0 => BTreeSet::new(),
        1 => ids.collect(),
        _ => ids.filter(|_| rng.random_bool(0.6)).collect(),
    }
}

fn fresh() -> NsState {
    let mut s = NsState::default();
    s.schema = schema(stemmed());
    s.id_type = Some(IdType::U64);
    s.sync_text_index();
    s
}

/// Rows of merged segments whose text a carrying merge of `state` takes from postings.
fn carried_rows(state: &NsState, merge: &BTreeSet<String>) -> usize {
    let keys = crate::index::text::analysis_keys(&state.schema);
    state
        .segments()
        .iter()
        .filter(|s| merge.contains(&s.meta.id) && s.meta.text_analysis == keys)
        .map(|s| s.live_rows())
        .sum()
}

#[test]
fn merges_carrying_text_postings_write_the_segments_analysis_writes() {
    let (mut carried, mut folded) = (0, 0);
    for seed in 0..24u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut carry, mut analyse) = (fresh(), fresh());
        let (mut ids_c, mut ids_a) = (0, 0);
        for round in 0..8 {
            if round == 5 {
                // The body's analysis changes: segments built before must be analysed again.
                for s in [&mut carry, &mut analyse] {
                    s.schema = schema(FullTextSearch { stemming: false, ..stemmed() });
                    s.sync_text_index();
                }
            }
            for _ in 0..rng.random_range(0..60) {
                write_one(&mut rng, &mut [&mut carry, &mut analyse]);
            }
            let merge = random_merge(&mut rng, &carry);
            let max_rows = rng.random_range(5..60);
            carried += carried_rows(&carry, &merge);
            folded += carry.overlay().values().flatten().count();
            let (segs_c, out_c) = compact(&carry, &merge, max_rows, true, &mut ids_c);
            let unindexed = analyse.clone().without_text_index();
            let (segs_a, out_a) = compact(&unindexed, &merge, max_rows, false, &mut ids_a);
            assert!(out_c == out_a, "seed {seed} round {round}: carried and analysed outputs differ");
            carry = after(segs_c, &carry);
            analyse = after(segs_a, &analyse);
        }
    }
    assert!(carried > 1_000 && folded > 1_000, "too few rows carried: {carried}, folded: {folded}");
}

#[test]
fn a_carry_under_other_options_would_be_noticed() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut s = fresh();
    let mut next_id = 0;
    for _ in 0..60 {
        write_one(&mut rng, &mut [&mut s]);
    }
    let (segs, _) = compact(&s, &BTreeSet::new(), 1000, true, &mut next_id);
    let mut s = after(segs, &s);
    s.schema = schema(FullTextSearch { stemming: false, ..stemmed() });
    let all: BTreeSet<String> = s.segments().iter().map(|g| g.meta.id.clone()).collect();
    let (_, honest) = compact(&s, &all, 1000, true, &mut next_id);
    // The segment claims the new options (forged): its stemmed postings are carried as they are.
    let forged: Vec<SegmentReader> = s
        .segments()
        .iter()
        .map(|g| {
            let meta =
                SegmentRef { text_analysis: crate::index::text::analysis_keys(&s.schema), ..g.meta.clone() };
            SegmentReader::new(g.seg.clone(), Arc::clone(&g.deleted), meta)
        })
        .collect();
    let lying = after(forged, &s);
    assert_eq!(carried_rows(&lying, &all), lying.segments()[0].live_rows());
    let (_, carried) = compact(&lying, &all, 1000, true, &mut next_id);
    assert!(honest != carried, "carrying stemmed postings under unstemmed options changes the section");
}
