//! Early collector passes against compactions in flight (stop 48: a bulk
//! ingest's folded WAL stayed until the next pass).
//!
//! - A pass requested while a compaction runs weighs the generation that
//!   compaction commits: it collects generations under the compaction lock.
//! - A pass requested while another runs is served afterwards, never dropped.
//!
//! Deterministic: the test itself holds the compaction lock to keep a pass
//! waiting, and compacts under it with [`Engine::compact_locked`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::engine::compact::CompactionConfig;
use crate::engine::{Engine, EngineConfig, WriteRequest};
use crate::layout::NsPath;
use crate::store::Store;

fn ns(project: &str) -> NsPath {
    NsPath::new("o", project, "n").unwrap()
}

/// Generations kept for an hour within a quarter of the newest one's bytes,
/// the periodic collector on (an hourly interval: only early passes run here).
async fn open_budgeted(dir: &std::path::Path) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), Store::local(&dir.join("store")).unwrap());
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    cfg.retention_ms = 3_600_000;
    cfg.retention_max_ratio = Some(0.25);
    cfg.retention_floor_bytes = 0;
    cfg.gc_interval_ms = 3_600_000;
    Engine::open(cfg).await.unwrap()
}

/// Four requests of rows whose text makes the WAL weigh about as much as
/// the segment: four WAL batches, four generations.
async fn write_four_batches(e: &Engine, path: &NsPath) {
    for k in 0..4u64 {
        let rows: Vec<_> = (k * 50..k * 50 + 50)
            .map(|i| json!({"id": i, "text": format!("{i} {}", "word ".repeat(200))}))
            .collect();
        e.write(path, WriteRequest::from_json(&json!({"upsert_rows": rows})).unwrap()).await.unwrap();
    }
}

async fn wal_objects(e: &Engine, path: &NsPath) -> usize {
    e.store().list(&path.prefix()).await.unwrap().iter().filter(|o| o.key.contains("/wal/")).count()
}

/// Wait (at most 10 s) until `path`'s WAL directory is empty; its count then.
async fn wal_left_after_waiting(e: &Engine, path: &NsPath) -> usize {
    for _ in 0..400 {
        if wal_objects(e, path).await == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wal_objects(e, path).await
}

#[tokio::test]
async fn a_pass_that_waited_for_a_compaction_collects_what_the_compaction_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_budgeted(dir.path()).await;
    let path = ns("p");
    write_four_batches(&e, &path).await;
    let h = e.handle(&path);
    let in_flight = h.compact_lock.lock().await;
    // A pass requested now (as an earlier round's commit would) must wait.
    e.after_compaction(&path, u64::MAX / 4, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(wal_objects(&e, &path).await, 4, "the pass waits for the compaction in flight");
    let r = e.compact_locked(&h, &path, true).await.unwrap();
    assert!(r.performed && r.wal_objects_folded == 4, "{r:?}");
    drop(in_flight);
    assert_eq!(
        wal_left_after_waiting(&e, &path).await,
        0,
        "the folded WAL was collected by the early passes"
    );
    assert_eq!(e.existing(&path, true).await.unwrap().state.len(), 200);
}

#[tokio::test]
async fn a_pass_requested_while_another_runs_is_served_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_budgeted(dir.path()).await;
    let (first, second) = (ns("a"), ns("b"));
    write_four_batches(&e, &first).await;
    write_four_batches(&e, &second).await;
    let h = e.handle(&first);
    let in_flight = h.compact_lock.lock().await;
    e.after_compaction(&first, u64::MAX / 4, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Project b's compaction commits while project a's pass waits: its
    // request finds a pass in flight.
    assert!(e.compact(&second, true).await.unwrap().performed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(wal_objects(&e, &second).await, 4, "one pass at a time: b's waits for a's");
    drop(in_flight);
    assert_eq!(wal_left_after_waiting(&e, &second).await, 0, "b's request was served after a's pass");
    assert_eq!(e.existing(&second, true).await.unwrap().state.len(), 200);
}
