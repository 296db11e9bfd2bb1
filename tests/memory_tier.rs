//! The memory tier: loaded namespace states stay within the configured
//! count, least recently used first, and pinned namespaces are never
//! dropped; pins persist and are re-warmed at start-up.

use std::sync::Arc;

use serde_json::json;
use tidepool::engine::{Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::store::Store;

fn ns(n: &str) -> NsPath {
    NsPath::new("o", "p", n).unwrap()
}

async fn open(dir: &std::path::Path, max_loaded: usize) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(dir.to_path_buf(), Store::local(&dir.join("store")).unwrap());
    cfg.max_loaded_namespaces = max_loaded;
    Engine::open(cfg).await.unwrap()
}

#[tokio::test]
async fn loaded_states_stay_within_the_budget_and_pins_stay_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path(), 2).await;
    for n in ["a", "b", "c", "d"] {
        e.write(&ns(n), WriteRequest::from_json(&json!({"upsert_rows": [{"id": 1}]})).unwrap())
            .await
            .unwrap();
    }
    e.set_pinned(&ns("a"), true).await.unwrap();
    // Pinning warms in the background; wait for the state instead of racing that task.
    e.snapshot(&ns("a"), false).await.unwrap();
    for n in ["b", "c", "d", "b", "c"] {
        e.snapshot(&ns(n), false).await.unwrap();
    }
    let loaded = e.loaded_namespaces();
    assert!(loaded.len() <= 3, "{loaded:?}");
    assert!(loaded.contains(&ns("a")), "the pinned namespace stays loaded: {loaded:?}");
    assert!(
        !loaded.contains(&ns("d")) || !loaded.contains(&ns("b")),
        "least recently used dropped: {loaded:?}"
    );
    // A dropped state is rebuilt on access.
    assert_eq!(e.existing(&ns("d"), true).await.unwrap().state.len(), 1);
    let md = e.metadata(&ns("a")).await.unwrap().to_json();
    assert_eq!(md["cache"]["pinned"], true);
}

#[tokio::test]
async fn pins_survive_a_restart_and_are_rewarmed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = open(dir.path(), 16).await;
        e.write(&ns("hot"), WriteRequest::from_json(&json!({"upsert_rows": [{"id": 1}]})).unwrap())
            .await
            .unwrap();
        e.write(&ns("cold"), WriteRequest::from_json(&json!({"upsert_rows": [{"id": 1}]})).unwrap())
            .await
            .unwrap();
        e.set_pinned(&ns("hot"), true).await.unwrap();
    }
    let e = open(dir.path(), 16).await;
    for _ in 0..200 {
        if e.loaded_namespaces().contains(&ns("hot")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(e.loaded_namespaces(), vec![ns("hot")], "only the pinned namespace is warmed at start-up");
    assert!(e.cache().pinned_prefixes().contains(&ns("hot").prefix()));
}

/// A namespace larger than the whole byte budget stays loaded while it is the one in use (dropping
/// it would only rebuild it on its next request); the others are dropped.
#[tokio::test]
async fn the_namespace_in_use_stays_loaded_even_over_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        EngineConfig::new(dir.path().to_path_buf(), Store::local(&dir.path().join("store")).unwrap());
    cfg.memory_budget_bytes = 1;
    let e = Engine::open(cfg).await.unwrap();
    for n in ["old", "big"] {
        let rows: Vec<_> = (0..50).map(|i| json!({"id": i, "text": "x".repeat(100)})).collect();
        e.write(&ns(n), WriteRequest::from_json(&json!({"upsert_rows": rows})).unwrap()).await.unwrap();
    }
    e.snapshot(&ns("big"), false).await.unwrap();
    assert_eq!(e.loaded_namespaces(), vec![ns("big")], "only the namespace in use stays");
    e.snapshot(&ns("old"), false).await.unwrap();
    assert_eq!(e.loaded_namespaces(), vec![ns("old")]);
}
