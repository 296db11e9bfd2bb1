//! `graph_codes`: the setting picks the traversal codes a compaction's graph sections hold
//! (8-bit codes in a version 2 section by default, RaBitQ codes in version 3 when asked), and a
//! namespace built either way answers ANN queries (each row finds itself first).
//!
//! Invariants: the section version and code bits are read from the segment files themselves
//! (kind 20's header: version u32 at 8, code kind at 17, bits at 18), not from the daemon.

mod common;

use common::{client, post, section, segment_files, Daemon};
use serde_json::{json, Value as Json};

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
    let slow = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300)).build().unwrap();
    let (s, b) = post(&slow, &d.at("/v1/namespaces/g/_admin/compact"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    for i in (0..ROWS).step_by(97) {
        let q = json!({"rank_by": ["vector", "ANN", vector(i)], "top_k": 3});
        let (s, b) = post(&c, &d.at("/v2/namespaces/g/query"), &q).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["rows"][0]["id"], json!(i), "{b}");
    }
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
    assert!(graphs.iter().all(|g| g.0 == 3 && g.2 == 4), "{graphs:?}");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start(&data, &[]);
    let graphs = build(&d, &data).await;
    assert!(!graphs.is_empty());
    assert!(graphs.iter().all(|g| g.0 == 2), "by default 8-bit codes, version 2: {graphs:?}");
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
    let out = config_check("rabitq3");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rabitq3"), "{out:?}");
}
