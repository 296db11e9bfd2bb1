//! `graph_codes`: the setting picks the traversal codes a compaction's graph sections hold
//! (graph section version 5, code kind 1, RaBitQ records at their tight length, when asked
//! since issue 36 item 4; version 4, code kind 0, 8-bit codes, when asked; by
//! default ("auto") 8-bit codes unless the namespace would take more than a quarter of the
//! memory budget with them, then 4-bit ones), and a namespace built either way answers ANN
//! queries (each row finds itself first).
//!
//! Invariants: the section version and code bits are read from the segment files themselves
//! (kind 20's header: version u32 at 8, code kind at 17, bits at 18), not from the daemon.

use crate::common;

use common::{client, post, section, segment_files, Daemon};
use serde_json::{json, Value as Json};
use tidepool::engine::compact::CompactionConfig;
use tidepool::engine::{Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::store::Store;

const DIM: usize = 24;
const ROWS: u64 = 2_500;

fn vector(i: u64) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Writes and compacts `ROWS` rows; the (version, code kind, bits) of every graph section.
async fn build(d: &Daemon, data: &std::path::Path) -> Vec<(u32, u8, u8)> {
    let c = client();
    for start in (0..ROWS).step_by(500) {
        let rows: Vec<Json> = (start..start + 500).map(|i| json!({"id": i, "vector": vector(i)})).collect();
        let body = json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"});
        let (s, b) = post(&c, &d.at("/v2/namespaces/g"), &body).await;
        assert_eq!(s, 200, "{b}");
    }
    // The compaction answers when its indexes are built: in a debug daemon on a loaded 2-core
    // machine the RaBitQ graph and the IVF calibrated over its estimates (storage-format 11.1)
    // take longer than the default client's 30 s.
    let slow = tidepool::tls::client_builder().timeout(std::time::Duration::from_secs(300)).build().unwrap();
    let (s, b) = post(&slow, &d.at("/v1/namespaces/g/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    for i in (0..ROWS).step_by(97) {
        let q = json!({"rank_by": ["vector", "ANN", vector(i)], "top_k": 3});
        let (s, b) = post(&c, &d.at("/v2/namespaces/g/query"), &q).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["rows"][0]["id"], json!(i), "{b}");
    }
    graph_sections(data)
}

/// The (version, code kind, bits) of every graph section of the segments under `data`.
fn graph_sections(data: &std::path::Path) -> Vec<(u32, u8, u8)> {
    let mut graphs: Vec<(u32, u8, u8)> = segment_files(data)
        .iter()
        .map(|p| {
            let seg = std::fs::read(p).unwrap();
            let (at, _) = section(&seg, 20);
            let version = u32::from_le_bytes(seg[at + 8..at + 12].try_into().unwrap());
            (version, seg[at + 17], seg[at + 18])
        })
        .collect();
    graphs.dedup();
    graphs
}

#[tokio::test]
async fn compaction_writes_the_graph_codes_the_setting_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start(&data, &["--graph-codes", "rabitq4"]);
    let graphs = build(&d, &data).await;
    assert!(!graphs.is_empty());
    assert!(graphs.iter().all(|g| *g == (5, 1, 4)), "{graphs:?}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start(&data, &[]);
    let graphs = build(&d, &data).await;
    assert!(!graphs.is_empty());
    assert!(
        graphs.iter().all(|g| *g == (4, 0, 8)),
        "by default 8-bit codes while they fit the budget: {graphs:?}"
    );
}

/// An engine with the default `graph_codes` ("auto") writes `ROWS` rows, then runs under a
/// memory budget of `budget` bytes while it compacts: the graph sections it builds.
async fn built_under(budget: u64) -> Vec<(u32, u8, u8)> {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        EngineConfig::new(dir.path().to_path_buf(), Store::local(&dir.path().join("store")).unwrap());
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    let e = Engine::open(cfg).await.unwrap();
    let ns = NsPath::new("o", "p", "g").unwrap();
    for start in (0..ROWS).step_by(500) {
        let rows: Vec<Json> = (start..start + 500).map(|i| json!({"id": i, "vector": vector(i)})).collect();
        let body = json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"});
        e.write(&ns, WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }
    // Set after the writes: a budget this small would refuse them (the test process's own
    // memory is far above it); a compaction is never refused for memory.
    e.memory_budget().set(budget);
    assert!(e.compact(&ns, true).await.unwrap().performed);
    graph_sections(dir.path())
}

#[tokio::test]
async fn by_default_the_codes_follow_the_memory_budget() {
    // 2,500 rows × (24 + 132) bytes with 8-bit codes = 390 KB.
    let graphs = built_under(1 << 20).await;
    assert!(!graphs.is_empty());
    assert!(graphs.iter().all(|g| *g == (5, 1, 4)), "over a quarter of 1 MiB: 4-bit codes: {graphs:?}");
    let graphs = built_under(2 << 20).await;
    assert!(!graphs.is_empty());
    assert!(graphs.iter().all(|g| *g == (4, 0, 8)), "within a quarter of 2 MiB: 8-bit codes: {graphs:?}");
}

fn config_check(value: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["config", "check", "--data-dir"])
        .arg(dir.path())
        .args(["--graph-codes", value])
        .env_remove("TIDEPOOL_GRAPH_CODES")
        .output()
        .unwrap()
}

#[test]
fn config_check_shows_the_setting_and_refuses_a_bad_value() {
    let out = config_check("rabitq1");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("graph_codes = \"rabitq1\""), "{out:?}");
    let out = config_check("auto");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("graph_codes = \"auto\""), "{out:?}");
    let out = config_check("rabitq3");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rabitq3"), "{out:?}");
}
