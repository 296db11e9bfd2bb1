//! One tenant's costly queries delay only that tenant, over real HTTP
//! (issue 37, item 4):
//! - pattern matching is linear in the text: five queries of project A with
//!   `Glob`/`IGlob` patterns of `*` and 1,000 characters or a costly `Regex`
//!   over two 4 MiB values all answer 200 within 25 s, waiting for each other
//!   included, under the 30 s deadline (the backtracking glob matcher needed
//!   billions of steps per value and answered 408 at the deadline);
//! - the query pool shares its slots among projects: while A's queries keep
//!   the small-namespace lane busy (2 query slots), a tiny query of project
//!   B on its own namespace answers within 1 s (A's queries held both slots
//!   before: B waited for one of them to end, 30 s at the deadline with the
//!   old matcher, seconds with the new one).

mod common;

use std::time::{Duration, Instant};

use common::{client, json_of, Daemon};
use serde_json::{json, Value as Json};

/// Each of project A's two documents holds a string of this many bytes.
const VALUE_BYTES: usize = 4 << 20;

fn keys_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("tidepool.toml");
    let keys = "[[api_keys]]\nkey = \"key-a\"\norg = \"acme\"\nproject = \"alpha\"\n\n\
                [[api_keys]]\nkey = \"key-b\"\norg = \"acme\"\nproject = \"beta\"\n";
    std::fs::write(&path, keys).unwrap();
    path
}

async fn post_as(c: &reqwest::Client, key: &str, url: &str, body: &Json) -> (u16, Json) {
    json_of(c.post(url).bearer_auth(key).json(body).send().await.unwrap()).await
}

/// A query of `key`'s project on `ns`: its status, body and duration.
async fn timed_query(c: reqwest::Client, key: &str, url: String, filter: Json) -> (u16, Json, Duration) {
    let started = Instant::now();
    let body =
        json!({"rank_by": ["id", "asc"], "top_k": 10, "filters": filter, "include_attributes": ["id"]});
    let (s, b) = post_as(&c, key, &url, &body).await;
    (s, b, started.elapsed())
}

/// `ab` repeated (the last pair `ac` on the second document, so the
/// patterns below match it): every other position starts a near-match of
/// the heavy patterns, the backtracking matcher's worst case.
fn heavy_value(doc: u64) -> String {
    let mut s = "ab".repeat(VALUE_BYTES / 2);
    if doc == 2 {
        s.replace_range(VALUE_BYTES - 1.., "c");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pattern_heavy_project_delays_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keys_config(dir.path());
    let d = Daemon::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap(), "--query-threads", "2", "--query-timeout-ms", "30000"],
    );
    let c = tidepool::tls::client_builder().timeout(Duration::from_secs(60)).build().unwrap();
    let rows: Vec<Json> = (1..=2).map(|i| json!({"id": i, "s": heavy_value(i)})).collect();
    let (s, b) = post_as(&c, "key-a", &d.at("/v2/namespaces/heavy"), &json!({"upsert_rows": rows})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post_as(
        &client(),
        "key-b",
        &d.at("/v2/namespaces/tiny"),
        &json!({"upsert_rows": [{"id": 1, "s": "x"}]}),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // `*` and 1,000 characters: the pattern, anchored at the end;
    // with a star at the end too, so the piece is searched for through both
    // values (a second or more each in a debug build: A's queue stays busy);
    // and a regex of the same piece.
    let piece = format!("{}ac", "ab".repeat(499));
    let scan = |p: &str| json!(["s", "IGlob", format!("*{p}*")]);
    let heavy = [
        json!(["s", "Glob", format!("*{piece}")]),
        json!(["s", "Regex", "(?:ab){499}ac"]),
        scan(&piece.to_uppercase()),
        scan(&piece.replace('b', "?")),
        scan(&piece.replace('a', "[a]")),
    ];
    let url = d.at("/v2/namespaces/heavy/query");
    let a: Vec<_> =
        heavy.iter().map(|f| tokio::spawn(timed_query(c.clone(), "key-a", url.clone(), f.clone()))).collect();
    // Let A's queries take their slots (and the quick ones end) before B asks.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (s, b, b_took) =
        timed_query(client(), "key-b", d.at("/v2/namespaces/tiny/query"), json!(["s", "Eq", "x"])).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"].as_array().map(Vec::len), Some(1), "{b}");
    assert!(b_took < Duration::from_secs(1), "project B's tiny query waited {b_took:?} behind project A");

    for (f, q) in heavy.iter().zip(a) {
        let (s, b, took) = q.await.unwrap();
        assert_eq!(s, 200, "{f}: {b}");
        let ids: Vec<&Json> = b["rows"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, [&json!(2)], "{f}");
        assert!(took < Duration::from_secs(25), "{f} took {took:?}, waiting included");
        eprintln!("project A's {}: {took:?}", f[1]);
    }
    eprintln!("project B's query: {b_took:?}");
}
