//! `verify` and admin jobs over real HTTP (an in-process daemon on loopback,
//! a local-directory store), and the admin CLI binary against it.
//!
//! Invariants checked:
//! - Verify reads every object of the project and reports nothing on a sound
//!   store; after one flipped byte in a segment file it names that object and
//!   every namespace referencing it (a branch shares it), queries of those
//!   namespaces answer a clear error rather than rows, and compaction refuses.
//! - `?background=true` answers a job id at once; polling it gives progress,
//!   then the same result as the synchronous call; another project's key
//!   cannot see the job.
//! - `tidepool admin verify` runs the job to its end and fails when damage
//!   is found.
//! - A namespace's compaction runs as a job too (`tidepool ns compact` polls
//!   it: a large round outlasts any one request's timeout).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tidepool::api::auth::Auth;
use tidepool::config::ApiKeyConfig;
use tidepool::engine::{Engine, EngineConfig};
use tidepool::store::Store;

const KEY: &str = "key-a";
const OTHER_KEY: &str = "key-b";

struct Node {
    base: String,
    client: reqwest::Client,
}

impl Node {
    /// A daemon on `dir` (store in `dir/objects`), with two tenants.
    async fn start(dir: &Path) -> Node {
        let store = Store::local(&dir.join("objects")).unwrap();
        let engine: Arc<Engine> = Engine::open(EngineConfig::new(dir.to_path_buf(), store)).await.unwrap();
        let key = |key: &str, project: &str| ApiKeyConfig {
            key: key.into(),
            org: "acme".into(),
            project: project.into(),
            read_only: false,
        };
        let state = Arc::new(tidepool::api::AppState::new(
            engine,
            Auth::new(vec![key(KEY, "search"), key(OTHER_KEY, "other")]),
            tidepool::api::Limits {
                max_body_bytes: 1 << 20,
                body_stall_timeout: Duration::from_secs(5),
                body_timeout: Duration::from_secs(60),
                upload_timeout: Duration::from_secs(60),
                max_restore_bytes: 1 << 30,
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let opts = tidepool::api::server::ServerOptions {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(1),
            max_connections: 1024,
        };
        tokio::spawn(tidepool::api::server::serve(listener, state, opts, std::future::pending()));
        Node { base, client: tidepool::tls::client() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Option<Json>) -> (u16, Json) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Json::Null))
    }

    async fn post(&self, path: &str, body: Json) -> (u16, Json) {
        self.call(reqwest::Method::POST, path, KEY, Some(body)).await
    }

    /// Start `path` as a job and poll it to its end; the final job document.
    async fn job(&self, path: &str) -> Json {
        let (s, started) = self.post(&format!("{path}?background=true"), json!({})).await;
        assert_eq!(s, 200, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        let (s, other) =
            self.call(reqwest::Method::GET, &format!("/v1/_admin/jobs/{id}"), OTHER_KEY, None).await;
        assert_eq!(s, 404, "another project cannot see the job: {other}");
        for _ in 0..200 {
            let (s, j) = self.call(reqwest::Method::GET, &format!("/v1/_admin/jobs/{id}"), KEY, None).await;
            assert_eq!(s, 200, "{j}");
            if j["state"] != "running" {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish");
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains("/segments/") && p.extension().is_some_and(|x| x == "seg")
            {
                out.push(p);
            }
        }
    }
    out
}

/// Flip one byte in the middle of `file`, writing a new file over it (a new
/// inode: a running node's mapping keeps the old bytes, as after a restart
/// would not).
fn flip_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn cli(base: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["--url", base, "--api-key", KEY, "--json"])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_damaged_segment_and_every_namespace_that_references_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    let rows: Vec<Json> = (0..200).map(|i| json!({"id": i, "title": format!("doc {i}"), "n": i})).collect();
    assert_eq!(node.post("/v2/namespaces/a", json!({"upsert_rows": rows})).await.0, 200);
    assert_eq!(node.post("/v1/namespaces/a/_admin/compact", json!({})).await.0, 200);
    assert_eq!(node.post("/v2/namespaces/b", json!({"branch_from_namespace": "a"})).await.0, 200);
    assert_eq!(node.post("/v2/namespaces/c", json!({"upsert_rows": [{"id": 1}]})).await.0, 200);

    let (s, sound) = node.post("/v1/_admin/verify", json!({})).await;
    assert_eq!(s, 200, "{sound}");
    assert_eq!((sound["status"].as_str(), sound["namespaces"].as_u64()), (Some("OK"), Some(3)), "{sound}");
    assert_eq!(sound["rows_checked"], 200, "the shared segment is decoded once: {sound}");
    assert!(sound["damaged"].as_array().unwrap().is_empty());
    let job = node.job("/v1/_admin/verify").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["result"]["objects_checked"], sound["objects_checked"], "the job gives the same result");
    assert_eq!(job["progress"]["done"], job["progress"]["total"], "{job}");
    let out = cli(&node.base, &["verify"]);
    assert!(out.status.success(), "verify on a sound store: {}", String::from_utf8_lossy(&out.stderr));

    let segs = segment_files(&dir.path().join("objects"));
    assert_eq!(segs.len(), 1, "one compacted segment, shared by the branch: {segs:?}");
    flip_byte(&segs[0]);
    // A fresh node (as after a restart) loads from the damaged bytes.
    let node = Node::start_again(dir.path()).await;
    let (s, q) = node.post("/v2/namespaces/b/query", json!({"rank_by": ["id", "asc"], "top_k": 5})).await;
    assert!(
        (500..600).contains(&s) && q["error"].as_str().is_some_and(|m| m.contains("checksum")),
        "{s} {q}"
    );
    let (s, q) = node.post("/v2/namespaces/c/query", json!({"rank_by": ["id", "asc"]})).await;
    assert_eq!(s, 200, "an unaffected namespace still answers: {q}");
    let (s, c) = node.post("/v1/namespaces/a/_admin/compact", json!({})).await;
    assert!((500..600).contains(&s), "compaction refuses: {s} {c}");

    let job = node.job("/v1/_admin/verify").await;
    let report = &job["result"];
    assert_eq!(report["status"], "DAMAGED", "{job}");
    let damaged = report["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{report}");
    let seg_key = segs[0].strip_prefix(dir.path().join("objects")).unwrap().to_string_lossy().into_owned();
    assert_eq!(damaged[0]["key"], seg_key.as_str());
    assert_eq!(damaged[0]["namespaces"], json!(["a", "b"]));
    let out = cli(&node.base, &["verify"]);
    assert!(!out.status.success(), "the CLI fails on damage");
    let printed: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["damaged"][0]["key"], seg_key.as_str());
}

impl Node {
    /// A fresh daemon on the same objects, as after a restart (the first
    /// node still holds its data-dir lock, so this one gets a copy).
    async fn start_again(dir: &Path) -> Node {
        let copy = dir.join("restart");
        copy_tree(&dir.join("objects"), &copy.join("objects"));
        Node::start(&copy).await
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_and_compaction_run_as_jobs_and_bad_job_requests_are_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    assert_eq!(node.post("/v2/namespaces/a", json!({"upsert_rows": [{"id": 1}]})).await.0, 200);
    let job = node.job("/v1/_admin/repair").await;
    assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("repair"), Some("done")), "{job}");
    assert_eq!(job["result"]["namespaces"], 1, "{job}");
    let (s, e) = node.call(reqwest::Method::GET, "/v1/_admin/jobs/999", KEY, None).await;
    assert_eq!(s, 404, "{e}");
    let (s, e) = node.post("/v1/_admin/verify?background=maybe", json!({})).await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = node.post("/v1/_admin/verify", json!({"deep": true})).await;
    assert_eq!(s, 400, "{e}");
    let job = node.job("/v1/namespaces/a/_admin/compact").await;
    assert_eq!((job["kind"].as_str(), job["state"].as_str()), (Some("compact"), Some("done")), "{job}");
    assert_eq!(
        (&job["result"]["performed"], &job["result"]["rows_written"]),
        (&json!(true), &json!(1)),
        "{job}"
    );
    let out = cli(&node.base, &["repair"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["namespaces"], 1, "the CLI prints the job's result: {printed}");
}
