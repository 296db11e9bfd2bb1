//! Retention of superseded generations: with a retention configured, the
//! objects a compaction drops stay on storage while a retained generation
//! names them, so time travel reaches back across compactions; the garbage
//! collector later collects the old manifests and then sweeps the objects,
//! never touching what the newest generation references.

use std::sync::Arc;

use serde_json::json;
use tidepool::engine::repair::RepairOptions;
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::Store;

fn ns() -> NsPath {
    NsPath::new("o", "p", "tt").unwrap()
}

async fn open(dir: &std::path::Path, retention_ms: u64) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), Store::local(&dir.join("store")).unwrap());
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    cfg.retention_ms = retention_ms;
    Engine::open(cfg).await.unwrap()
}

async fn wal_objects(e: &Engine) -> usize {
    e.store().list(&ns().prefix()).await.unwrap().iter().filter(|o| o.key.contains("/wal/")).count()
}

#[tokio::test]
async fn retained_generations_stay_readable_across_compaction_until_collected() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), 3_600_000).await;
    for i in 0..3u64 {
        e.write(&ns(), WriteRequest::from_json(&json!({"upsert_rows": [{"id": i}]})).unwrap()).await.unwrap();
    }
    e.write(&ns(), WriteRequest::from_json(&json!({"deletes": [0]})).unwrap()).await.unwrap();
    let before = e.existing(&ns(), true).await.unwrap().generation();
    assert!(e.compact(&ns(), true).await.unwrap().performed);
    assert_eq!(wal_objects(&e).await, 4, "folded WAL objects are kept for the retained generations");

    let old = e.snapshot_at(&ns(), Some(before - 1), true).await.unwrap();
    assert!(old.state.contains(&DocId::U64(0)), "generation {} (before the delete) is readable", before - 1);
    assert_eq!(e.snapshot_at(&ns(), Some(before), true).await.unwrap().state.len(), 2);

    // GC with no retention left: old manifests collected, their objects swept.
    let opts = RepairOptions { sweep: true, grace_ms: 0, manifest_retention_ms: Some(0) };
    e.repair("o", "p", opts).await.unwrap();
    assert_eq!(wal_objects(&e).await, 0, "nothing references the folded WAL objects any more");
    let err = e.snapshot_at(&ns(), Some(before - 1), true).await.unwrap_err();
    assert!((err).kind() == ErrorKind::NotFound, "{err:?}");
    let newest = e.existing(&ns(), true).await.unwrap();
    assert_eq!(
        newest.state.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![DocId::U64(1), DocId::U64(2)]
    );
    drop(e);
    let e = open(dir.path(), 3_600_000).await;
    assert_eq!(
        e.existing(&ns(), true).await.unwrap().state.len(),
        2,
        "the newest generation survived the sweep"
    );
}

#[tokio::test]
async fn the_periodic_collector_runs_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        EngineConfig::new(dir.path().to_path_buf(), Store::local(&dir.path().join("store")).unwrap());
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    cfg.retention_ms = 1;
    cfg.gc_interval_ms = 50;
    let e = Engine::open(cfg).await.unwrap();
    for i in 0..3u64 {
        e.write(&ns(), WriteRequest::from_json(&json!({"upsert_rows": [{"id": i}]})).unwrap()).await.unwrap();
    }
    e.compact(&ns(), true).await.unwrap();
    let manifests = || async {
        e.store()
            .list(&ns().manifests_prefix())
            .await
            .unwrap()
            .iter()
            .filter(|o| o.key.ends_with(".json"))
            .count()
    };
    // Four generations were committed (the collector may already have run:
    // with a 50 ms period a loaded machine lets it in before the listing).
    let newest = e.latest_manifest(&ns()).await.unwrap().unwrap().generation;
    assert!(newest >= 4, "{newest}");
    for _ in 0..200 {
        if manifests().await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(manifests().await, 1, "old manifests were collected without a repair call");
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 3);
}
