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

/// An engine keeping generations for an hour, within `ratio` times the
/// newest generation's bytes, collecting every `gc_interval_ms` (0: never).
async fn open_budgeted(dir: &std::path::Path, ratio: f64, gc_interval_ms: u64) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), Store::local(&dir.join("store")).unwrap());
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    cfg.retention_ms = 3_600_000;
    cfg.retention_max_ratio = Some(ratio);
    cfg.retention_floor_bytes = 0;
    cfg.gc_interval_ms = gc_interval_ms;
    Engine::open(cfg).await.unwrap()
}

/// Rows whose text makes the WAL weigh about as much as the segment.
async fn write_rows(e: &Engine, ids: std::ops::Range<u64>) {
    let rows: Vec<_> =
        ids.map(|i| json!({"id": i, "text": format!("{i} {}", "word ".repeat(200))})).collect();
    e.write(&ns(), WriteRequest::from_json(&json!({"upsert_rows": rows})).unwrap()).await.unwrap();
}

/// 200 rows in four requests: four WAL batches, four generations.
async fn write_four_batches(e: &Engine) {
    for k in 0..4 {
        write_rows(e, k * 50..k * 50 + 50).await;
    }
}

fn gc_within_the_hour() -> RepairOptions {
    // The daemon's periodic pass: an hour's retention, an hour's grace.
    RepairOptions { sweep: true, grace_ms: 3_600_000, manifest_retention_ms: Some(3_600_000) }
}

#[tokio::test]
async fn the_byte_budget_collects_generations_whose_objects_the_newest_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_budgeted(dir.path(), 0.25, 0).await;
    write_four_batches(&e).await;
    let before = e.existing(&ns(), true).await.unwrap().generation();
    // Without a compaction every superseded generation references only
    // objects the newest references too: they cost nothing and stay.
    let r = e.repair("o", "p", gc_within_the_hour()).await.unwrap();
    assert_eq!(r.manifests_collected, 0, "{r:?}");
    assert!(e.snapshot_at(&ns(), Some(1), true).await.is_ok());

    assert!(e.compact(&ns(), true).await.unwrap().performed);
    assert_eq!(wal_objects(&e).await, 4, "the retention deferred the deletes");
    let r = e.repair("o", "p", gc_within_the_hour()).await.unwrap();
    assert_eq!(r.manifests_collected, before, "{r:?}");
    assert_eq!(wal_objects(&e).await, 0, "folded WAL over the budget is swept, young as it is: {r:?}");
    let err = e.snapshot_at(&ns(), Some(before), true).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 200);
    drop(e);
    let e = open_budgeted(dir.path(), 0.25, 0).await;
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 200, "the newest generation survived");
}

#[tokio::test]
async fn a_budget_the_superseded_bytes_fit_keeps_every_generation() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_budgeted(dir.path(), 10.0, 0).await;
    write_four_batches(&e).await;
    assert!(e.compact(&ns(), true).await.unwrap().performed);
    let r = e.repair("o", "p", gc_within_the_hour()).await.unwrap();
    assert_eq!(r.manifests_collected, 0, "{r:?}");
    assert_eq!(wal_objects(&e).await, 4);
    assert_eq!(
        e.snapshot_at(&ns(), Some(2), true).await.unwrap().state.len(),
        100,
        "time travel still works"
    );
}

/// Per superseded generation `g` (1..newest), the bytes of the objects that
/// generations `g..newest-1` reference and the newest does not: what the
/// byte budget weighs (an oracle written apart from the engine's).
async fn held_from(e: &Engine, newest: u64) -> (Vec<u64>, u64) {
    let refs = |g| async move { e.manifest_at(&ns(), Some(g)).await.unwrap().object_refs() };
    let top = refs(newest).await;
    let current: std::collections::HashSet<String> = top.iter().map(|r| r.key.clone()).collect();
    let (mut seen, mut held, mut out) = (std::collections::HashSet::new(), 0, vec![0; newest as usize]);
    for g in (1..newest).rev() {
        for r in refs(g).await {
            if !current.contains(&r.key) && seen.insert(r.key) {
                held += r.bytes;
            }
        }
        out[g as usize] = held;
    }
    (out, top.iter().map(|r| r.bytes).sum())
}

#[tokio::test]
async fn the_budget_collects_the_oldest_generations_first() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_budgeted(dir.path(), 100.0, 0).await;
    // Each overwrite of every row, once compacted, leaves the previous
    // segment or WAL to the older generations alone.
    for _ in 0..3 {
        write_rows(&e, 0..200).await;
        assert!(e.compact(&ns(), true).await.unwrap().performed);
    }
    let newest = e.existing(&ns(), true).await.unwrap().generation();
    assert_eq!(newest, 6);
    let (held, newest_bytes) = held_from(&e, newest).await;
    // The newest `cut` whose suffix weighs more than the one after it: a
    // budget between the two must collect generations 1..=cut and no more.
    let cut = (1..newest - 1).rev().find(|&g| held[g as usize] > held[g as usize + 1]).expect("a step");
    let budget = (held[cut as usize] + held[cut as usize + 1]) / 2;
    drop(e);
    let e = open_budgeted(dir.path(), budget as f64 / newest_bytes as f64, 0).await;
    let r = e.repair("o", "p", gc_within_the_hour()).await.unwrap();
    assert_eq!(r.manifests_collected, cut, "held {held:?}, budget {budget}: {r:?}");
    // What stays is the newest generations, contiguous, readable.
    let gone = e.snapshot_at(&ns(), Some(cut), true).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone:?}");
    assert_eq!(e.snapshot_at(&ns(), Some(cut + 1), true).await.unwrap().state.len(), 200);
    // A second pass finds the retained ones within the budget.
    assert_eq!(e.repair("o", "p", gc_within_the_hour()).await.unwrap().manifests_collected, 0);
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 200);
}

#[tokio::test]
async fn a_compaction_over_the_budget_runs_the_collector_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_budgeted(dir.path(), 0.25, 3_600_000).await;
    write_four_batches(&e).await;
    assert!(e.compact(&ns(), true).await.unwrap().performed);
    for _ in 0..400 {
        if wal_objects(&e).await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(wal_objects(&e).await, 0, "the folded WAL was collected long before the hourly pass");
    assert_eq!(e.existing(&ns(), true).await.unwrap().state.len(), 200);
}

#[tokio::test]
async fn a_namespace_under_the_floor_keeps_its_whole_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        EngineConfig::new(dir.path().to_path_buf(), Store::local(&dir.path().join("store")).unwrap());
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    cfg.retention_ms = 3_600_000;
    cfg.retention_max_ratio = Some(0.0); // the floor alone decides
    let e = Engine::open(cfg).await.unwrap();
    write_four_batches(&e).await;
    assert!(e.compact(&ns(), true).await.unwrap().performed);
    let r = e.repair("o", "p", gc_within_the_hour()).await.unwrap();
    assert_eq!(r.manifests_collected, 0, "a few hundred KiB are under the 64 MiB floor: {r:?}");
    assert_eq!(e.snapshot_at(&ns(), Some(2), true).await.unwrap().state.len(), 100);
}
