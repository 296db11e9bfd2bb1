//! Refolding equals replaying: random write sequences (upserts, patches,
//! deletes, conditional writes, delete_by_filter, patch_by_filter, schema
//! and metric changes, datetimes, idempotency keys) are split into a prefix P that a
//! compaction folds into real segments (built by the compaction's own merge,
//! shadowed rows retired by its deletion sets) and a suffix S written during
//! the round. The state `NsState::refold` derives must hold exactly the
//! documents, count, idempotency keys and settings that replaying S on top of
//! the new segments gives, share the newest state's documents instead of
//! copying them, and carry over to the next round (several rounds per case,
//! each building on the last refold, so S deletes segment rows too).
//!
//! Deterministic: seeded generators, every seed is a separate case, and a
//! failure names its seed and round.

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

use crate::engine::apply::{apply_request, replay_request, DatetimeRule};
use crate::engine::WriteRequest;
use crate::model::Document;
use crate::ops::RequestRecord;
use crate::state::{NsState, SegmentReader};

const IDS: u64 = 24;

fn random_body(rng: &mut StdRng) -> Json {
    let id = |rng: &mut StdRng| rng.random_range(0..IDS);
    let row = |rng: &mut StdRng| {
        let mut r = json!({"id": id(rng), "vector": [rng.random_range(0..4) as f32, 0.5], "a": rng.random_range(0..8)});
        if rng.random_bool(0.5) {
            r["b"] = json!(["x", "y", "z"][rng.random_range(0..3)]);
        }
        if rng.random_bool(0.2) {
            // Canonical once `t` is declared a datetime (before any row sets it).
            r["t"] = json!(["2015-01-20T12:34:56-04:00", "2015-01-20T16:00:00Z"][rng.random_range(0..2)]);
        }
        r
    };
    match rng.random_range(0..10) {
        0..=2 => json!({"upsert_rows": (0..rng.random_range(1..5)).map(|_| row(rng)).collect::<Vec<_>>()}),
        3 => json!({
            "upsert_rows": (0..rng.random_range(1..4)).map(|_| row(rng)).collect::<Vec<_>>(),
            "upsert_condition": ["a", "Lt", rng.random_range(0..8)],
        }),
        4 => {
            let a = if rng.random_bool(0.3) { Json::Null } else { json!(rng.random_range(0..8)) };
            json!({"patch_rows": [{"id": id(rng), "a": a}, {"id": id(rng), "b": "p"}]})
        }
        5 => json!({"deletes": (0..rng.random_range(1..4)).map(|_| id(rng)).collect::<Vec<_>>()}),
        6 => json!({"deletes": [id(rng), id(rng)], "delete_condition": ["b", "Eq", "x"]}),
        7 => json!({"delete_by_filter": ["a", "Gte", rng.random_range(4..9)]}),
        8 => {
            json!({"patch_by_filter": {"filters": ["a", "Eq", rng.random_range(0..8)], "patch": {"b": "q"}}})
        }
        _ => match rng.random_range(0..4) {
            0 => json!({"schema": {format!("s{}", rng.random_range(0..3)): "string"}}),
            3 => {
                json!({"schema": {"t": "datetime"}, "delete_by_filter": ["t", "Gt", "2015-01-20T16:10:00+00:00"]})
            }
            1 => json!({"distance_metric": "cosine_distance", "upsert_rows": [row(rng)]}),
            _ => json!({"schema": {"b": {"type": "string", "full_text_search": true}}}),
        },
    }
}

/// Apply random requests to `live` as the write path does (a failed one is
/// not written; a known idempotency key is answered, not written again) and
/// return the WAL records.
fn write_some(rng: &mut StdRng, live: &mut NsState, n: usize) -> Vec<RequestRecord> {
    let mut wal = Vec::new();
    for _ in 0..n {
        let mut record = WriteRequest::from_json(&random_body(rng)).expect("valid request").record;
        if rng.random_bool(0.3) {
            let key = format!("k{}", rng.random_range(0..40));
            if live.idempotency.contains_key(&key) {
                continue;
            }
            record.idempotency_key = Some(key);
        }
        if let Ok(counts) = apply_request(live, &record, None) {
            record.counts = counts;
            wal.push(record);
        }
    }
    wal
}

/// The segments a compaction of `c` leaves (the merge and deletion sets of
/// engine/compact.rs): surviving segments with shadowed rows retired, then
/// the new ones.
fn compact(rng: &mut StdRng, c: &NsState, next_id: &mut usize) -> Vec<SegmentReader> {
    let merge: BTreeSet<String> = if c.segments().len() >= 2 && rng.random_bool(0.5) {
        c.segments().iter().map(|s| s.meta.id.clone()).collect()
    } else {
        BTreeSet::new()
    };
    let max_rows = rng.random_range(3..20);
    crate::engine::merge::textmerge_tests::compact(c, &merge, max_rows, true, next_id).0
}

/// The state a load of the committed manifest starts from: its segments and
/// the settings the manifest carries (written from the newest state; the
/// typed schema as the manifest stores it, `format::schema`).
fn base_of(segs: Vec<SegmentReader>, newest: &NsState) -> NsState {
    let mut base = NsState::with_segments(segs);
    let stored = crate::format::schema::schema_json(&newest.schema);
    base.schema = crate::format::schema::decode_schema(&stored).unwrap();
    base.id_type = newest.id_type;
    base.distance_metric = newest.distance_metric;
    base.vector_dim = newest.vector_dim;
    base
}

fn docs(s: &NsState) -> Vec<Document> {
    s.iter().map(|d| (*d).clone()).collect()
}

fn check_same(refolded: &NsState, replayed: &NsState, newest: &NsState, case: &str) {
    assert_eq!(docs(refolded), docs(replayed), "{case}: documents");
    assert_eq!(docs(refolded), docs(newest), "{case}: documents of the newest state");
    assert_eq!(refolded.len(), replayed.len(), "{case}: len");
    assert_eq!(refolded.len(), refolded.iter().count() as u64, "{case}: len counts the live documents");
    assert_eq!(refolded.idempotency, replayed.idempotency, "{case}: idempotency keys");
    assert_eq!(refolded.schema, replayed.schema, "{case}: schema");
    assert_eq!(
        (refolded.id_type, refolded.distance_metric, refolded.vector_dim),
        (replayed.id_type, replayed.distance_metric, replayed.vector_dim),
        "{case}: settings"
    );
    // The replay's overlay, but for rewrites that left a document as it was
    // (served from the new segment, which holds the same document) ...
    for (id, entry) in replayed.overlay().iter() {
        match refolded.overlay().get(id) {
            Some(mine) => assert_eq!(mine, entry, "{case}: overlay entry {id}"),
            None => {
                let from_segment = refolded.get(id).expect("a rewritten document is live");
                assert_eq!(entry.as_deref(), Some(&*from_segment), "{case}: {id} rewritten as it was");
            }
        }
    }
    assert!(
        refolded.overlay().keys().all(|id| replayed.overlay().contains_key(id)),
        "{case}: no extra entries"
    );
    // Both keep the segment rows their overlay shadows as a lookup of every overlay id finds them.
    for s in [&refolded, &replayed] {
        for (i, seg) in s.segments().iter().enumerate() {
            let rows: imbl::HashSet<usize> = s.overlay().keys().filter_map(|id| seg.find_live(id)).collect();
            assert_eq!(s.shadowed_rows(i), rows, "{case}: rows the overlay shadows in segment {i}");
        }
    }
    // ... and shared with the newest state rather than copied.
    for (id, entry) in refolded.overlay().iter() {
        if let Some(doc) = entry {
            let theirs = newest.overlay().get(id).cloned().flatten().expect("the newest state holds it");
            assert!(Arc::ptr_eq(doc, &theirs), "{case}: document {id} is the newest state's, not a copy");
        }
    }
}

#[test]
fn refolding_a_compaction_equals_replaying_the_wal_it_kept() {
    let mut refolds_with_writes = 0;
    for seed in 0..48u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut live = NsState::default();
        let mut next_id = 0;
        for round in 0..4 {
            let case = format!("seed {seed} round {round}");
            let n = rng.random_range(0..14);
            let p = write_some(&mut rng, &mut live, n);
            let compacted = Arc::new(live.clone());
            let n = rng.random_range(0..10);
            let s = write_some(&mut rng, &mut live, n);
            let newest = live.clone();
            if p.is_empty() && compacted.overlay().is_empty() {
                continue; // nothing to compact
            }
            let segs = compact(&mut rng, &compacted, &mut next_id);
            let base = base_of(segs, &newest);
            let mut replayed = base.clone();
            for r in &s {
                replay_request(&mut replayed, r, DatetimeRule::Instants)
                    .unwrap_or_else(|e| panic!("{case}: replaying S failed: {e}"));
            }
            let refolded = NsState::refold(base, &compacted, &newest)
                .unwrap_or_else(|| panic!("{case}: a compaction's states refold"));
            check_same(&refolded, &replayed, &newest, &case);
            refolds_with_writes += usize::from(!s.is_empty());
            // The next round writes on top of the refolded state, as the
            // engine does once it is cached.
            live = refolded;
            live.logical_bytes = newest.logical_bytes;
        }
    }
    assert!(refolds_with_writes > 60, "too few rounds with writes during them: {refolds_with_writes}");
}

#[test]
fn states_over_other_segments_do_not_refold() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut live = NsState::default();
    let _ = write_some(&mut rng, &mut live, 20);
    let mut next_id = 0;
    let segs = compact(&mut rng, &live, &mut next_id);
    let other = base_of(segs.clone(), &live);
    // `compacted` over no segments, `newest` over the new ones: unrelated.
    assert!(NsState::refold(base_of(segs, &live), &live, &other).is_none());
}

#[test]
fn a_round_without_writes_refolds_to_the_new_segments_alone() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut live = NsState::default();
    let _ = write_some(&mut rng, &mut live, 30);
    let mut next_id = 0;
    let segs = compact(&mut rng, &live, &mut next_id);
    let refolded = NsState::refold(base_of(segs, &live), &live, &live).expect("refolds");
    assert!(refolded.overlay().is_empty());
    assert!(refolded.idempotency.is_empty(), "the folded WAL's keys go with it");
    assert_eq!(docs(&refolded), docs(&live));
}

/// BM25 over segments (with their text sections) and an overlay that
/// shadows, deletes and patches their rows, through a refold and writes
/// after it: the overlay's index gives the scan's rows, order and scores.
#[test]
fn bm25_over_segments_and_an_indexed_overlay_equals_the_scan() {
    const WORDS: [&str; 8] = ["red", "fox", "jumps", "lazy", "dog", "runs", "the", "quick"];
    let text = |rng: &mut StdRng| -> String {
        (0..rng.random_range(0..8))
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let write = |rng: &mut StdRng, s: &mut NsState, n: usize| {
        for _ in 0..n {
            let id = rng.random_range(0..80u64);
            let body = match rng.random_range(0..6) {
                0..=2 => json!({"upsert_rows": [{"id": id, "t": text(rng), "a": rng.random_range(0..4)}]}),
                3 => json!({"patch_rows": [{"id": id, "t": text(rng)}]}),
                4 => json!({"patch_rows": [{"id": id, "t": null}]}),
                _ => json!({"deletes": [id]}),
            };
            apply_request(s, &WriteRequest::from_json(&body).unwrap().record, None).unwrap();
        }
    };
    let same = |s: &NsState, case: &str| {
        let scan = s.clone().without_text_index();
        assert!(s.overlay().is_empty() || s.overlay_text("t").is_some(), "{case}: the index serves t");
        for q in ["fox", "the quick dog", "lazy lazy runs", "red jumps the"] {
            for top_k in [1, 5, 100] {
                let body = json!({"rank_by": ["Sum", [["t", "BM25", q], ["Product", 0.5, ["t", "BM25", "dog"]]]],
                    "top_k": top_k, "filters": ["a", "Lt", 3]});
                let r = crate::wire::query::parse_request(&body, false).unwrap();
                let answer = |st: &NsState| {
                    let out = crate::query::execute(&r.queries[0], st).unwrap();
                    (out.rows.unwrap_or_default(), out.scanned)
                };
                assert_eq!(answer(s), answer(&scan), "{case}: {body}");
            }
        }
    };
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut live = NsState::default();
        let schema =
            json!({"schema": {"t": {"type": "string", "full_text_search": true}, "a": {"type": "int"}}});
        apply_request(&mut live, &WriteRequest::from_json(&schema).unwrap().record, None).unwrap();
        let mut next_id = 0;
        for round in 0..3 {
            let case = format!("seed {seed} round {round}");
            write(&mut rng, &mut live, 60);
            let compacted = live.clone();
            let segs = compact(&mut rng, &compacted, &mut next_id);
            write(&mut rng, &mut live, 30);
            let refolded = NsState::refold(base_of(segs, &live), &compacted, &live)
                .unwrap_or_else(|| panic!("{case}: refolds"));
            same(&refolded, &case);
            live = refolded;
            write(&mut rng, &mut live, 40);
            same(&live, &case);
        }
    }
}
