//! Search-as-you-type over real loopback HTTP: `full_text_search.index_prefixes`
//! with `["attr", "BM25", q, {"last_as_prefix": true}]`.
//!
//! Invariants guarded:
//! - With `index_prefixes` every row holding a term that starts with the last
//!   token matches, however many distinct terms share it (here 100 > the 64
//!   expansions of the old path), from the WAL, from compacted segments (the
//!   prefix dictionary) and from a mix of both.
//! - Results and scores are the same before and after compaction (indexed and
//!   unindexed rows score alike).
//! - Without it the old behaviour stands: the prefix expands into at most 64
//!   dictionary terms, so rows beyond them are missed.
//! - Turning the option on for an existing attribute takes effect at once: the
//!   segments written before answer from their term dictionary, completely.
//! - The schema shows the option; a bad value is a 400 naming the key.

use crate::common;

use common::{client, get, post, Daemon};
use serde_json::{json, Value as Json};

const SHARED: usize = 100;

fn rows(body: &Json) -> Vec<Json> {
    body["rows"].as_array().unwrap_or_else(|| panic!("no rows in {body}")).clone()
}

fn ids(body: &Json) -> Vec<u64> {
    let mut v: Vec<u64> = rows(body).iter().map(|r| r["id"].as_u64().unwrap()).collect();
    v.sort_unstable();
    v
}

/// `SHARED` rows whose titles hold distinct terms `sha000x`.. plus 20 that do not.
fn docs() -> Vec<Json> {
    let mut v: Vec<Json> =
        (0..SHARED).map(|i| json!({"id": i, "title": format!("wire sha{i:03}x")})).collect();
    v.extend((0..20).map(|i| json!({"id": 1000 + i, "title": format!("wire other{i}")})));
    v
}

fn fts(index_prefixes: bool) -> Json {
    json!({"title": {"type": "string", "full_text_search": {"index_prefixes": index_prefixes}}})
}

async fn query(c: &reqwest::Client, d: &Daemon, ns: &str, text: &str) -> Json {
    let body = json!({"rank_by": ["title", "BM25", text, {"last_as_prefix": true}], "top_k": 500});
    let (s, b) = post(c, &d.at(&format!("/v2/namespaces/{ns}/query")), &body).await;
    assert_eq!(s, 200, "{b}");
    b
}

async fn compact(c: &reqwest::Client, d: &Daemon, ns: &str) {
    let (s, b) = post(c, &d.at(&format!("/v1/namespaces/{ns}/_admin/compact")), &json!({})).await;
    assert_eq!((s, b["performed"].as_bool()), (200, Some(true)), "{b}");
}

fn start(dir: &std::path::Path) -> Daemon {
    Daemon::start(dir, &["--compaction-wal-objects", "1000", "--compaction-idle-ms", "0"])
}

#[tokio::test]
async fn index_prefixes_finds_every_row_sharing_a_prefix_before_and_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let c = client();
    for (ns, on) in [("pfx", true), ("old", false)] {
        let (s, b) = post(
            &c,
            &d.at(&format!("/v2/namespaces/{ns}")),
            &json!({"upsert_rows": docs(), "schema": fts(on)}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    let every: Vec<u64> = (0..SHARED as u64).collect();
    let before = query(&c, &d, "pfx", "sha").await;
    assert_eq!(ids(&before), every, "every row with a sha* term, from the WAL");
    // Old behaviour: the prefix expands into the first 64 dictionary terms only.
    let old = query(&c, &d, "old", "sha").await;
    assert_eq!(ids(&old), (0..64).collect::<Vec<u64>>(), "without index_prefixes: 64 expansions");
    // A term plus a prefix: every row matches "wire", the sha* rows rank first.
    let mixed_before = query(&c, &d, "pfx", "wire sha").await;
    let top: Vec<u64> = rows(&mixed_before)[..SHARED].iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert!(top.iter().all(|id| *id < SHARED as u64), "{mixed_before}");
    assert_eq!(rows(&mixed_before).len(), SHARED + 20);

    compact(&c, &d, "pfx").await;
    compact(&c, &d, "old").await;
    let after = query(&c, &d, "pfx", "sha").await;
    assert_eq!(rows(&after), rows(&before), "same rows and scores from the prefix dictionary");
    assert_eq!(rows(&query(&c, &d, "pfx", "wire sha").await), rows(&mixed_before));
    assert_eq!(ids(&query(&c, &d, "old", "sha").await), ids(&old), "old path unchanged by compaction");
    // Prefixes longer than the dictionary's (4 chars) come from the term range.
    assert_eq!(ids(&query(&c, &d, "pfx", "sha05").await), (50..60).collect::<Vec<u64>>());
    assert_eq!(ids(&query(&c, &d, "pfx", "sha0").await), (0..SHARED as u64).collect::<Vec<u64>>());

    // Rows in the WAL over a compacted segment: both found, scored on one scale.
    let more: Vec<Json> = (0..5).map(|i| json!({"id": 500 + i, "title": format!("sha9{i}")})).collect();
    post(&c, &d.at("/v2/namespaces/pfx"), &json!({"upsert_rows": more})).await;
    let mixed = query(&c, &d, "pfx", "sha").await;
    assert_eq!(ids(&mixed).len(), SHARED + 5);
    compact(&c, &d, "pfx").await;
    assert_eq!(rows(&query(&c, &d, "pfx", "sha").await), rows(&mixed), "WAL and segment rows score alike");
    assert_eq!(d.stop().code(), Some(0));
}

#[tokio::test]
async fn turning_index_prefixes_on_takes_effect_on_existing_segments() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let c = client();
    post(&c, &d.at("/v2/namespaces/late"), &json!({"upsert_rows": docs(), "schema": fts(false)})).await;
    compact(&c, &d, "late").await;
    assert_eq!(ids(&query(&c, &d, "late", "sha").await).len(), 64);
    let (s, b) = post(&c, &d.at("/v1/namespaces/late/schema"), &fts(true)).await;
    assert_eq!(s, 200, "{b}");
    let (_, schema) = get(&c, &d.at("/v1/namespaces/late/schema")).await;
    assert_eq!(schema["title"]["full_text_search"]["index_prefixes"], true, "{schema}");
    post(&c, &d.at("/v2/namespaces/late"), &json!({"upsert_rows": [{"id": 9999, "title": "zzz"}]})).await;
    let from_terms = query(&c, &d, "late", "sha").await;
    assert_eq!(ids(&from_terms).len(), SHARED, "the old segment answers from its term range");
    // Another compaction (its new segment carries a prefix dictionary): same answer.
    compact(&c, &d, "late").await;
    assert_eq!(rows(&query(&c, &d, "late", "sha").await), rows(&from_terms));
    // Turning it off again restores the expansion path.
    post(&c, &d.at("/v1/namespaces/late/schema"), &fts(false)).await;
    assert_eq!(ids(&query(&c, &d, "late", "sha").await).len(), 64);

    let bad = json!({"upsert_rows": [{"id": 1, "t": "x"}],
        "schema": {"t": {"type": "string", "full_text_search": {"index_prefixes": "yes"}}}});
    let (s, b) = post(&c, &d.at("/v2/namespaces/bad"), &bad).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap_or_default().contains("index_prefixes"), "{b}");
    assert_eq!(d.stop().code(), Some(0));
}
