//! Format compatibility of the small records tidepool keeps beside its objects:
//! idempotency records and sync records (`meta.redb`, `storage-format.md` 6.1)
//! and snapshot files (9.6).
//!
//! Invariants guarded here:
//! - The files under `tests/fixtures/v10/` were written once by
//!   `write_v10_record_fixtures` and are never regenerated; each must keep
//!   decoding to the content it was written from.
//! - `idempotency.json` is a record exactly as builds before the idempotency
//!   codec stored it (the write response as JSON, taken from a real
//!   `meta.redb`); `sync_record.bin` and `snapshot.snp` are the bytes of the
//!   sync record codec and of a snapshot file as they were before those codecs
//!   moved into `format/` (the move keeps every byte); `idempotency.bin` is
//!   version 1 of the idempotency codec (`format/idempotency.rs`).
//! - A retry whose stored idempotency record cannot be decoded is answered
//!   with an error naming the key (`Corrupted`), never with zero counts and
//!   never by applying the write again; a record in the JSON shape earlier
//!   builds stored still answers a retry with its counts.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_records::write_v10_record_fixtures`

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, ErrorKind, WriteRequest};
use tidepool::format::idempotency::IdempotencyRecord;
use tidepool::format::FormatError;
use tidepool::layout::NsPath;
use tidepool::meta::Meta;
use tidepool::model::DocId;
use tidepool::ops::RowCounts;
use tidepool::store::Store;
use tidepool::sync::state::SyncRecord;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v10").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

fn ns(name: &str) -> NsPath {
    NsPath::new("fx", "records", name).unwrap()
}

async fn engine(data_dir: &std::path::Path) -> Arc<Engine> {
    let store = Store::local(&data_dir.join("store")).unwrap();
    let mut cfg = EngineConfig::new(data_dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

async fn write(e: &Engine, p: &NsPath, body: Json) -> tidepool::engine::WriteResponse {
    e.write(p, WriteRequest::from_json(&body).unwrap()).await.unwrap()
}

async fn docs(e: &Engine, p: &NsPath) -> BTreeMap<DocId, Json> {
    let s = e.existing(p, true).await.unwrap();
    s.state.iter_from(Bound::Unbounded).map(|d| (d.id.clone(), d.to_json())).collect()
}

/// The write whose idempotency record `idempotency.json` holds: 3 upserts.
fn keyed_write() -> Json {
    json!({
        "idempotency_key": "fixture-key-1",
        "distance_metric": "euclidean_squared",
        "upsert_rows": [
            {"id": 1, "vector": [1.0, 0.0], "name": "one"},
            {"id": 2, "vector": [0.0, 1.0], "name": "two"},
            {"id": 3, "vector": [0.5, 0.5], "n": 3},
        ],
    })
}

/// The write on top of the compacted segment: 1 patch, 1 delete.
fn tail_write() -> Json {
    json!({"patch_rows": [{"id": 1, "name": "uno"}], "deletes": [2]})
}

/// What the snapshot fixture's namespace holds.
fn snapshot_docs() -> BTreeMap<DocId, Json> {
    [
        (DocId::U64(1), json!({"id": 1, "vector": [1.0, 0.0], "name": "uno"})),
        (DocId::U64(3), json!({"id": 3, "vector": [0.5, 0.5], "n": 3})),
    ]
    .into_iter()
    .collect()
}

/// The record `idempotency.bin` holds.
fn fixture_idempotency_record() -> IdempotencyRecord {
    IdempotencyRecord { counts: RowCounts { upserted: 3, patched: 1, deleted: 2 }, generation: 12 }
}

/// The sync record `sync_record.bin` holds.
fn fixture_sync_record() -> SyncRecord {
    SyncRecord { local_generation: 42, remote_generation: 17, wal_floor: 9, synced_at_ms: 1_795_000_000_123 }
}

fn write_missing(files: Vec<(&str, Vec<u8>)>) {
    for (name, bytes) in files {
        let path = fixture_path(name);
        if path.exists() {
            eprintln!("keeping existing {}", path.display());
            continue;
        }
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

/// Writes the v10 record fixtures that do not exist yet. Run manually (see
/// the module docs); never part of a normal run.
#[tokio::test]
#[ignore = "writes fixture files; run manually"]
async fn write_v10_record_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    std::fs::create_dir_all(fixture_path("")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = ns("snap");
    let e = engine(dir.path()).await;
    write(&e, &p, keyed_write()).await;
    e.compact(&p, true).await.unwrap();
    write(&e, &p, tail_write()).await;
    assert_eq!(docs(&e, &p).await, snapshot_docs());
    let mut snapshot = Vec::new();
    e.write_snapshot(&p, None, &mut snapshot).await.unwrap();
    drop(e);
    let meta = Meta::open(dir.path()).unwrap();
    let record = meta.idempotency(&p.to_string(), "fixture-key-1").unwrap().unwrap();
    write_missing(vec![
        ("idempotency.json", record),
        ("idempotency.bin", fixture_idempotency_record().encode()),
        ("sync_record.bin", fixture_sync_record().encode()),
        ("snapshot.snp", snapshot),
    ]);
}

#[test]
fn sync_record_fixture_decodes_and_reencodes_byte_for_byte() {
    let bytes = read_fixture("sync_record.bin");
    let rec = SyncRecord::decode(&bytes).unwrap();
    assert_eq!(rec, fixture_sync_record());
    assert_eq!(rec.encode(), bytes, "the sync record encoding changed");
}

#[tokio::test]
async fn snapshot_fixture_verifies_and_restores_every_document() {
    let bytes = read_fixture("snapshot.snp");
    let info = tidepool::engine::snapshot::verify_snapshot(&mut bytes.as_slice()).await.unwrap();
    assert_eq!(info.namespace, "fx/records/snap");
    assert_eq!(info.bytes, bytes.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path()).await;
    let (m, restored) = e.restore_snapshot(&ns("restored"), &mut bytes.as_slice()).await.unwrap();
    assert_eq!(restored, info);
    assert_eq!(m.segments.len(), 1, "the fixture holds a compacted segment");
    assert_eq!(m.wal.len(), 1, "and one WAL batch on top of it");
    assert_eq!(docs(&e, &ns("restored")).await, snapshot_docs());
}

#[test]
fn idempotency_record_fixtures_decode() {
    let legacy = IdempotencyRecord::decode(&read_fixture("idempotency.json")).unwrap();
    let upserted_three = RowCounts { upserted: 3, patched: 0, deleted: 0 };
    assert_eq!(legacy, IdempotencyRecord { counts: upserted_three, generation: 1 });
    let bytes = read_fixture("idempotency.bin");
    assert_eq!(IdempotencyRecord::decode(&bytes).unwrap(), fixture_idempotency_record());
    assert_eq!(fixture_idempotency_record().encode(), bytes, "the idempotency record encoding changed");
}

const KEY: &str = "fixture-key-1";

/// A data dir whose namespace acknowledged [`keyed_write`] and then compacted
/// it: the WAL batch that carried the key is folded, so only the record in
/// `meta.redb` remembers the key. Returns the generation after compaction.
async fn compacted_keyed_write(dir: &std::path::Path, p: &NsPath) -> u64 {
    let e = engine(dir).await;
    let first = write(&e, p, keyed_write()).await;
    assert!(!first.deduplicated);
    e.compact(p, true).await.unwrap();
    let s = e.snapshot(p, true).await.unwrap();
    assert!(s.manifest.as_ref().unwrap().wal.is_empty(), "compaction folded the keyed batch");
    s.generation()
}

/// Replace the stored record of [`KEY`] (the daemon is stopped: the test owns `meta.redb`).
fn replace_record(dir: &std::path::Path, p: &NsPath, record: &[u8]) {
    let meta = Meta::open(dir).unwrap();
    let ns = p.to_string();
    assert!(meta.idempotency(&ns, KEY).unwrap().is_some());
    let manifest = meta.cached_manifest(&ns).unwrap().unwrap();
    meta.record_commit(&ns, &manifest, &[(KEY.to_owned(), record.to_vec())]).unwrap();
}

#[tokio::test]
async fn a_retry_with_a_damaged_record_is_an_error_not_zero_rows_nor_a_second_write() {
    let legacy = read_fixture("idempotency.json");
    let missing_count = String::from_utf8(legacy.clone()).unwrap().replace(r#""rows_upserted":3,"#, "");
    let mut flipped = fixture_idempotency_record().encode();
    flipped[20] ^= 0x04;
    let damaged: [(&str, Vec<u8>); 4] = [
        ("flipped byte", flipped),
        ("truncated", fixture_idempotency_record().encode()[..30].to_vec()),
        ("legacy JSON missing a count", missing_count.into_bytes()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damaged {
        let dir = tempfile::tempdir().unwrap();
        let p = ns("idem");
        let generation = compacted_keyed_write(dir.path(), &p).await;
        replace_record(dir.path(), &p, &bytes);
        let e = engine(dir.path()).await;
        let err = e.write(&p, WriteRequest::from_json(&keyed_write()).unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{what}: {err}");
        assert!(err.to_string().contains(KEY), "{what}: the error names the key: {err}");
        let cause = std::error::Error::source(&err).and_then(|c| c.downcast_ref::<FormatError>());
        assert!(cause.is_some(), "{what}: the decoding error is kept as the cause: {err:?}");
        assert_eq!(e.snapshot(&p, true).await.unwrap().generation(), generation, "{what}: nothing committed");
    }
}

#[tokio::test]
async fn a_retry_answers_from_a_record_in_the_json_shape_of_earlier_builds() {
    let dir = tempfile::tempdir().unwrap();
    let p = ns("idem-legacy");
    let generation = compacted_keyed_write(dir.path(), &p).await;
    let legacy = String::from_utf8(read_fixture("idempotency.json")).unwrap();
    let distinct =
        legacy.replace(r#""rows_affected":3,"rows_upserted":3"#, r#""rows_affected":2,"rows_upserted":2"#);
    assert_ne!(distinct, legacy);
    replace_record(dir.path(), &p, distinct.as_bytes());
    let e = engine(dir.path()).await;
    let again = write(&e, &p, keyed_write()).await;
    assert!(again.deduplicated);
    assert_eq!(again.counts, RowCounts { upserted: 2, patched: 0, deleted: 0 }, "the stored counts answer");
    assert_eq!(e.snapshot(&p, true).await.unwrap().generation(), generation, "the retry committed nothing");
}

#[tokio::test]
async fn a_retry_answers_from_a_record_this_build_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let p = ns("idem-new");
    let generation = compacted_keyed_write(dir.path(), &p).await;
    let stored = Meta::open(dir.path()).unwrap().idempotency(&p.to_string(), KEY).unwrap().unwrap();
    assert_eq!(&stored[..8], b"TIDE.IDM", "new records use the binary codec");
    let e = engine(dir.path()).await;
    let again = write(&e, &p, keyed_write()).await;
    assert!(again.deduplicated);
    assert_eq!(again.counts, RowCounts { upserted: 3, patched: 0, deleted: 0 });
    assert_eq!(e.snapshot(&p, true).await.unwrap().generation(), generation);
}
