//! Rot after verification (issue 37 item 3): a byte of a segment that changes on
//! disk after the segment was verified and its pages given back is never served.
//! Real daemons over loopback; the byte is flipped with a positioned write into
//! the very file the daemon has mapped.
//!
//! Invariants guarded:
//! - Local store: once a row's bytes changed (in doc blocks: the stored block holding it), a filter query, a full scan and an
//!   export that read the row fail with a clear 5xx (JSON message naming the
//!   change) instead of answering without the row; `verify` names the object;
//!   another namespace keeps answering, and the node needs no restart.
//! - The same holds for bytes an index reads: an attribute index entry (a filter
//!   that would miss the row), a BM25 postings list (a text query that would
//!   miss it), a row's length byte in the text index (a BM25 score off by its
//!   changed norm) and a vector (an exact search with a wrong distance) fail the
//!   query that reads them.
//! - A text section's term dictionary and norm table (the rows' length bytes), which a segment's
//!   first text query copies to the heap: a byte of them changed before that copy fails the query
//!   (the copy is checked), one changed after it is never read by a query (the copy answers as
//!   verified) and `verify` names the file.
//! - Lazy open (storage-format 8.3.1): a vector byte changed while the daemon was down (so the
//!   segment is loaded after the change, and its vectors are not read at load) lets the daemon load
//!   the segment; a query that reads another chunk answers, one that reads the changed chunk fails
//!   with a clear 5xx (never an answer), and does again after the engine dropped and reloaded the
//!   segment, while the others keep answering; `verify` (which reads every byte) names the file.
//! - Bucket store: the same change in the disk cache's copy fails the one query
//!   that met it; the copy is dropped, the object downloaded and verified again
//!   from the bucket, and the next query answers every row; `verify` reports the
//!   object under `refetched`.

use crate::common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{client, get, offset_in_block, post, s3, section, segment_files, Daemon};
use serde_json::{json, Value as Json};

const ROWS: u64 = 300;
const VICTIM: u64 = 123;

fn rows() -> Vec<Json> {
    (0..ROWS)
        .map(|i| json!({"id": i, "tag": "keep", "body": format!("row-{i:04}-payload"), "vector": [i as f32, 1.0]}))
        .collect()
}

/// The file offset of `needle` inside the encoded attributes of `row` (the docs
/// section, kind 2: an offsets table of rows + 1 u64, then the rows' bytes).
fn offset_in_row(seg: &[u8], row: u64, needle: &[u8]) -> u64 {
    let le64 = |at: usize| u64::from_le_bytes(seg[at..at + 8].try_into().unwrap());
    let rows = le64(16);
    let count = u32::from_le_bytes(seg[28..32].try_into().unwrap()) as usize;
    let table = le64(32) as usize;
    let docs = (0..count)
        .map(|i| table + 24 * i)
        .find(|&e| u16::from_le_bytes(seg[e..e + 2].try_into().unwrap()) == 2)
        .map(|e| le64(e + 8) as usize)
        .expect("a docs section");
    let data = docs + 8 * (rows as usize + 1);
    let (a, b) = (le64(docs + 8 * row as usize) as usize, le64(docs + 8 * (row as usize + 1)) as usize);
    let bytes = &seg[data + a..data + b];
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("needle in the row");
    (data + a + at) as u64
}

/// Change `row`'s bytes in place: in raw docs (segment version 1) its "keep" to "kefp" (still
/// valid UTF-8: a wrong value, not a broken one); in doc blocks (version 2) a byte in the middle
/// of the stored block holding it (8.5.1).
fn rot_row(path: &Path, row: u64) {
    let seg = std::fs::read(path).unwrap();
    let (at, byte) = if u16::from_le_bytes([seg[8], seg[9]]) == 1 {
        (offset_in_row(&seg, row, b"keep") + 2, b'f')
    } else {
        let at = offset_in_block(&seg, row);
        (at, seg[at as usize] ^ 0x20)
    };
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[byte], at).unwrap();
    f.sync_all().unwrap();
}

/// The file offset of the first byte of the packed rows in the attribute index section (kind 19,
/// version 2, storage-format 11.3: header 32 B, the name, (D + 1) u32 key offsets, (D + 1) u32 key
/// starts, the key bytes, then the rows at w bits each): it holds the first entry's row.
fn attr_index_rows(seg: &[u8], name: &str) -> u64 {
    let (at, _) = section(seg, 19);
    let s = &seg[at..];
    let u32_at = |i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap()) as usize;
    assert_eq!(u32_at(8), 2, "attribute index version 2");
    let keys = u32_at(28);
    let offsets = 32 + name.len();
    let key_bytes = u32_at(offsets + 4 * keys);
    (at + offsets + 8 * (keys + 1) + key_bytes) as u64
}

/// The file offset of the middle of `term`'s postings in the text index (`index/text/reader.rs`:
/// header 64 B, the name, norms, (terms + 1) u32 offsets, 16-byte infos, term bytes, postings).
fn postings_of(seg: &[u8], term: &str) -> u64 {
    let (at, infos, postings) = dict_entry(seg, term);
    let s = &seg[at..];
    let u32_at = |i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap()) as usize;
    let u64_at = |i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap()) as usize;
    let (off, len) = (u64_at(infos), u32_at(infos + 8));
    (at + postings + off + len / 2) as u64
}

/// The file offset of `term`'s 16-byte info (postings offset, length, doc freq) in the text index.
fn info_of(seg: &[u8], term: &str) -> u64 {
    let (at, infos, _) = dict_entry(seg, term);
    (at + infos) as u64
}

/// `(section offset, term's info offset in the section, postings table offset in the section)`.
fn dict_entry(seg: &[u8], term: &str) -> (usize, usize, usize) {
    let (at, _) = section(seg, 17);
    let s = &seg[at..];
    let u32_at = |i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap()) as usize;
    let u64_at = |i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap()) as usize;
    let (name_len, rows, terms, term_bytes) = (u32_at(12), u32_at(32), u32_at(36), u64_at(40));
    let offsets = 64 + name_len + rows;
    let infos = offsets + 4 * (terms + 1);
    let bytes = infos + 16 * terms;
    let postings = bytes + term_bytes;
    let i = (0..terms)
        .find(|&i| {
            &s[bytes + u32_at(offsets + 4 * i)..bytes + u32_at(offsets + 4 * i + 4)] == term.as_bytes()
        })
        .unwrap_or_else(|| panic!("no term {term:?}"));
    (at, infos + 16 * i, postings)
}

/// The file offset of `row`'s length byte (its field norm) in the text index: after the 64-byte
/// header and the attribute's name, one byte a row.
fn norm_of(seg: &[u8], row: u64) -> u64 {
    let (at, _) = section(seg, 17);
    let name_len = u32::from_le_bytes(seg[at + 12..at + 16].try_into().unwrap()) as usize;
    (at + 64 + name_len) as u64 + row
}

fn flip_at(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 1], at).unwrap();
    f.sync_all().unwrap();
}

fn segment_of(dir: &Path, ns: &str) -> PathBuf {
    let all = segment_files(dir);
    let mut mine = all.iter().filter(|p| p.to_string_lossy().contains(&format!("/namespaces/{ns}/")));
    mine.next().unwrap_or_else(|| panic!("no segment of {ns} in {all:?}")).clone()
}

async fn filter_query(d: &Daemon, ns: &str) -> (u16, Json) {
    let q = json!({"rank_by": ["id", "asc"], "top_k": 1000, "filters": ["tag", "Eq", "keep"]});
    post(&client(), &d.at(&format!("/v2/namespaces/{ns}/query")), &q).await
}

async fn scan(d: &Daemon, ns: &str) -> (u16, Json) {
    let q = json!({"rank_by": ["id", "asc"], "top_k": 1000, "include_attributes": true});
    post(&client(), &d.at(&format!("/v2/namespaces/{ns}/query")), &q).await
}

fn row_count(body: &Json) -> usize {
    body["rows"].as_array().map_or(0, Vec::len)
}

async fn load(d: &Daemon, ns: &str) {
    let (s, b) =
        post(&client(), &d.at(&format!("/v2/namespaces/{ns}")), &json!({"upsert_rows": rows()})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&client(), &d.at(&format!("/v1/namespaces/{ns}/_admin/compact")), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = filter_query(d, ns).await;
    assert_eq!((s, row_count(&b)), (200, ROWS as usize), "sound before the change: {b}");
}

fn assert_rot_error(s: u16, body: &Json, what: &str) {
    assert!((500..600).contains(&s), "{what}: a changed row fails the request, got {s} {body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("changed on disk") || msg.contains("checksum"), "{what}: {msg}");
}

async fn export_lines(d: &Daemon, ns: &str) -> Result<usize, String> {
    let resp =
        client().get(d.at(&format!("/v1/namespaces/{ns}/export"))).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = resp.text().await.map_err(|e| e.to_string())?;
    Ok(body.lines().filter(|l| serde_json::from_str::<Json>(l).is_ok()).count())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_changed_on_disk_fails_queries_and_export_and_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    load(&d, "rotten").await;
    let (s, b) =
        post(&client(), &d.at("/v2/namespaces/sound"), &json!({"upsert_rows": [{"id": 1, "tag": "keep"}]}))
            .await;
    assert_eq!(s, 200, "{b}");

    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 1, "one compacted segment: {segs:?}");
    rot_row(&segs[0], VICTIM);

    let (s, b) = filter_query(&d, "rotten").await;
    assert_rot_error(s, &b, "filter query");
    let (s, b) = scan(&d, "rotten").await;
    assert_rot_error(s, &b, "full scan");
    let (s, b) = filter_query(&d, "rotten").await;
    assert_rot_error(s, &b, "the filter query again (the segment reloaded from the changed file)");
    match export_lines(&d, "rotten").await {
        Ok(n) => assert!(n < ROWS as usize, "an export never completes over a changed row: {n} lines"),
        Err(e) => assert!(!e.is_empty()),
    }

    let (s, b) = filter_query(&d, "sound").await;
    assert_eq!((s, row_count(&b)), (200, 1), "another namespace still answers: {b}");
    let (s, report) = post(&client(), &d.at("/v1/_admin/verify"), &json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["status"], "DAMAGED", "{report}");
    let key = report["damaged"][0]["key"].as_str().unwrap_or_default();
    assert!(key.ends_with("data.seg") && key.contains("/rotten/"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_copy_changed_on_disk_is_fetched_again_from_the_bucket() {
    let url = format!("s3://{}/rot", s3::new_bucket().await);
    let flags = [
        "--store",
        &url,
        "--s3-endpoint",
        s3::endpoint(),
        "--s3-allow-http",
        "--s3-access-key-id",
        "test",
        "--s3-secret-access-key",
        "test",
    ];
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &flags);
    load(&d, "cached").await;
    let segs = segment_files(dir.path());
    assert_eq!(segs.len(), 1, "the disk cache holds the segment: {segs:?}");
    rot_row(&segs[0], VICTIM);

    let (s, b) = filter_query(&d, "cached").await;
    assert_rot_error(s, &b, "the query that met the changed copy");
    let (s, b) = filter_query(&d, "cached").await;
    assert_eq!((s, row_count(&b)), (200, ROWS as usize), "downloaded again from the bucket: {b}");
    let (s, b) = scan(&d, "cached").await;
    assert_eq!((s, row_count(&b)), (200, ROWS as usize), "{b}");
    let victim = &b["rows"][VICTIM as usize];
    assert_eq!(victim["tag"], "keep", "the bucket's bytes, not the changed copy's: {victim}");

    let (s, report) = post(&client(), &d.at("/v1/_admin/verify"), &json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["status"], "OK", "the bucket's copy is sound: {report}");
    let refetched = report["refetched"][0]["key"].as_str().unwrap_or_default();
    assert!(refetched.ends_with("data.seg"), "{report}");
    let (s, _) = get(&client(), &d.at("/ready")).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn index_bytes_changed_on_disk_fail_the_queries_that_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let schema = json!({"body": {"type": "string", "full_text_search": true}, "tag": {"type": "string", "filterable": true}});
    for ns in ["attrs", "text", "norms", "vectors"] {
        let body = json!({"upsert_rows": rows(), "schema": schema, "distance_metric": "euclidean_squared"});
        let (s, b) = post(&client(), &d.at(&format!("/v2/namespaces/{ns}")), &body).await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = post(&client(), &d.at(&format!("/v1/namespaces/{ns}/_admin/compact")), &json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    let text = json!({"rank_by": ["body", "BM25", "0123"], "top_k": 10});
    let ann = json!({"rank_by": ["vector", "ANN", [VICTIM as f32, 1.0]], "top_k": 3});
    let query = |ns: &'static str, q: Json| {
        let d = &d;
        async move { post(&client(), &d.at(&format!("/v2/namespaces/{ns}/query")), &q).await }
    };
    // Sound first (and loaded, so the changes below come after verification).
    let (s, b) = filter_query(&d, "attrs").await;
    assert_eq!((s, row_count(&b)), (200, ROWS as usize), "{b}");
    let (s, b) = query("text", text.clone()).await;
    assert_eq!((s, b["rows"][0]["id"].as_u64()), (200, Some(VICTIM)), "{b}");
    // Loaded by a query that reads no text index: the norm table is copied by the text query below.
    let (s, b) = filter_query(&d, "norms").await;
    assert_eq!((s, row_count(&b)), (200, ROWS as usize), "{b}");
    let (s, b) = query("vectors", ann.clone()).await;
    assert_eq!((s, b["rows"][0]["$dist"].as_f64()), (200, Some(0.0)), "{b}");

    // Each case is judged on its own (all three are reported when more than one fails).
    let mut failures = Vec::new();
    let mut judge = |s: u16, b: &Json, what: &str| {
        if let Err(e) = std::panic::catch_unwind(|| assert_rot_error(s, b, what)) {
            failures.push(e.downcast_ref::<String>().cloned().unwrap_or_else(|| what.to_owned()));
        }
    };
    let seg = segment_of(dir.path(), "attrs");
    flip_at(&seg, attr_index_rows(&std::fs::read(&seg).unwrap(), "tag"));
    let (s, b) = filter_query(&d, "attrs").await;
    judge(s, &b, "a filter through a changed attribute index entry");

    let seg = segment_of(dir.path(), "text");
    flip_at(&seg, postings_of(&std::fs::read(&seg).unwrap(), "0123"));
    let (s, b) = query("text", text.clone()).await;
    judge(s, &b, "BM25 over a changed postings list");

    let seg = segment_of(dir.path(), "norms");
    flip_at(&seg, norm_of(&std::fs::read(&seg).unwrap(), VICTIM));
    let (s, b) = query("norms", text).await;
    judge(s, &b, "BM25 copying a norm table whose length byte changed");

    let seg = segment_of(dir.path(), "vectors");
    let bytes = std::fs::read(&seg).unwrap();
    let (vectors, _) = section(&bytes, 3);
    flip_at(&seg, (vectors + 8 * VICTIM as usize + 2) as u64);
    let (s, b) = query("vectors", ann).await;
    judge(s, &b, "a vector search over a changed vector");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_over_a_changed_row_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    load(&d, "patched").await;
    let before = std::fs::read_dir(dir.path().join("store/default/default/namespaces/patched/manifests"))
        .map(|r| r.count())
        .unwrap_or(0);
    rot_row(&segment_of(dir.path(), "patched"), VICTIM);
    // The loaded state still holds the segment: the patch reads the row to merge into it.
    let patch = json!({"patch_rows": [{"id": VICTIM, "extra": 1}]});
    let (s, b) = post(&client(), &d.at("/v2/namespaces/patched"), &patch).await;
    assert!((500..600).contains(&s), "{s} {b}");
    assert!(b["error"].as_str().is_some_and(|m| m.contains("changed on disk")), "{b}");
    let after = std::fs::read_dir(dir.path().join("store/default/default/namespaces/patched/manifests"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(before, after, "no generation was committed from the changed row");
    assert!(before > 0, "the manifests directory was found");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_term_dictionary_changed_on_disk_fails_its_copy_or_is_found_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let schema = json!({"body": {"type": "string", "full_text_search": true}, "tag": {"type": "string", "filterable": true}});
    for ns in ["early", "late", "norms"] {
        let (s, b) = post(
            &client(),
            &d.at(&format!("/v2/namespaces/{ns}")),
            &json!({"upsert_rows": rows(), "schema": schema}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (s, b) = post(&client(), &d.at(&format!("/v1/namespaces/{ns}/_admin/compact")), &json!({})).await;
        assert_eq!(s, 200, "{b}");
    }
    let text = json!({"rank_by": ["body", "BM25", "0123"], "top_k": 10});
    let query = |ns: &'static str| {
        let (d, q) = (&d, text.clone());
        async move { post(&client(), &d.at(&format!("/v2/namespaces/{ns}/query")), &q).await }
    };
    // "early" is loaded (verified) by a query that reads no text index; the others answer a text
    // query first, which copies the dictionary and the norm table.
    let (s, b) = filter_query(&d, "early").await;
    assert_eq!((s, row_count(&b)), (200, ROWS as usize), "{b}");
    for ns in ["late", "norms"] {
        let (s, b) = query(ns).await;
        assert_eq!((s, b["rows"][0]["id"].as_u64()), (200, Some(VICTIM)), "{b}");
    }
    for ns in ["early", "late"] {
        let seg = segment_of(dir.path(), ns);
        flip_at(&seg, info_of(&std::fs::read(&seg).unwrap(), "0123"));
    }
    let seg = segment_of(dir.path(), "norms");
    flip_at(&seg, norm_of(&std::fs::read(&seg).unwrap(), VICTIM));

    let (s, b) = query("early").await;
    assert_rot_error(s, &b, "the first text query, whose copy of the dictionary met the change");
    for ns in ["late", "norms"] {
        let (s, b) = query(ns).await;
        assert_eq!((s, b["rows"][0]["id"].as_u64()), (200, Some(VICTIM)), "the checked copy answers: {b}");
    }
    let (s, report) = post(&client(), &d.at("/v1/_admin/verify"), &json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["status"], "DAMAGED", "{report}");
    let damaged: Vec<&str> =
        report["damaged"].as_array().unwrap().iter().filter_map(|x| x["key"].as_str()).collect();
    for ns in ["/late/", "/norms/"] {
        assert!(
            damaged.iter().any(|k| k.contains(ns) && k.ends_with("data.seg")),
            "verify reads {ns}: {report}"
        );
    }
}

/// Rows of `WIDE_DIM`-d vectors: the vectors section spans several 16 KiB chunks.
const WIDE_DIM: usize = 64;

fn wide_vector(i: u64) -> Vec<f32> {
    (0..WIDE_DIM).map(|d| ((i as usize * 7 + d * 3) % 97) as f32 + 1.0).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vector_changed_while_down_fails_only_the_queries_that_read_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let rows: Vec<Json> =
        (0..ROWS).map(|i| json!({"id": i, "tag": "keep", "vector": wide_vector(i)})).collect();
    let body = json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"});
    let (s, b) = post(&client(), &d.at("/v2/namespaces/lazy"), &body).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(&client(), &d.at("/v1/namespaces/lazy/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    d.stop();

    let seg = segment_of(dir.path(), "lazy");
    let bytes = std::fs::read(&seg).unwrap();
    let (vectors, len) = section(&bytes, 3);
    assert!(len >= 4 << 14, "the vectors span several chunks: {len}");
    let victim_at = vectors + VICTIM as usize * WIDE_DIM * 4 + 9;
    assert!(victim_at >> 14 != (vectors + 3 * WIDE_DIM * 4) >> 14, "rows 0..3 lie in another chunk");
    flip_at(&seg, victim_at as u64);

    let d = Daemon::start(dir.path(), &[]);
    let first = json!({"rank_by": ["id", "asc"], "top_k": 3, "include_attributes": ["vector"]});
    let touching = json!({"rank_by": ["vector", "ANN", wide_vector(VICTIM)], "top_k": 3, "include_attributes": ["vector"]});
    let query = |q: &Json| {
        let (d, q) = (&d, q.clone());
        async move { post(&client(), &d.at("/v2/namespaces/lazy/query"), &q).await }
    };
    let (s, b) = query(&first).await;
    assert_eq!((s, row_count(&b)), (200, 3), "loaded without reading the changed chunk: {b}");
    assert_eq!(b["rows"][1]["vector"], json!(wide_vector(1)), "{b}");
    let (s, b) = query(&touching).await;
    assert_rot_error(s, &b, "a search that reads the changed vector");
    let (s, b) = query(&first).await;
    assert_eq!((s, row_count(&b)), (200, 3), "reloaded, the rest still answers: {b}");
    let (s, b) = query(&touching).await;
    assert_rot_error(s, &b, "the same search after the reload");

    let (s, report) = post(&client(), &d.at("/v1/_admin/verify"), &json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["status"], "DAMAGED", "{report}");
    let key = report["damaged"][0]["key"].as_str().unwrap_or_default();
    assert!(key.ends_with("data.seg") && key.contains("/lazy/"), "{report}");
}
