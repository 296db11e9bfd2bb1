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
//!   moved into `format/` (the move keeps every byte).
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test format_compat_records -- --ignored write_v10_record_fixtures`

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
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

/// The sync record `sync_record.bin` holds.
fn fixture_sync_record() -> SyncRecord {
    SyncRecord {
        local_generation: 42,
        remote_generation: 17,
        wal_floor: 9,
        synced_at_ms: 1_795_000_000_123,
    }
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
    let meta = tidepool::meta::Meta::open(dir.path()).unwrap();
    let record = meta.idempotency(&p.to_string(), "fixture-key-1").unwrap().unwrap();
    write_missing(vec![
        ("idempotency.json", record),
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
