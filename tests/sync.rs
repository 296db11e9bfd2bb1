//! Offline-first sync (issue 11) between real daemons and a real S3-compatible
//! server (moto), through a TCP forwarder the tests cut to play a lost uplink.
//!
//! Invariants guarded:
//! - A pushing node acknowledges writes and answers queries with its uplink
//!   cut, also after a restart while cut; once the uplink is back one round
//!   puts everything in the bucket, and a pulling node (and a `--store s3://`
//!   node on the same bucket) sees exactly the acknowledged documents.
//! - A namespace delete reaches the pulling nodes (its tombstone generation).
//! - A `pull` namespace is a read replica: local writes are 409 and change
//!   nothing.
//! - Two nodes writing one `both` namespace while apart: under `rebase` every
//!   acknowledged write of both nodes ends up on both nodes and in the
//!   bucket; under `branch` the bucket holds both versions (the loser's as
//!   `{ns}-conflict-{node}-{gen}`), and the conflict is reported.
//! - A `push` namespace has one writer across nodes: a second pushing node
//!   is refused by the lease (reported with the holder), keeps its writes
//!   locally, and the bucket holds only the holder's generations.
//! - The remote sweep deletes superseded manifests and unreachable objects
//!   past the grace period, never what a live manifest references: a fresh
//!   node pulls every acknowledged document after it, and pushes go on.
//! - An object larger than a part streams to and from the bucket in parts,
//!   and one whose bytes do not match its manifest is never published.
//! - kill -9 at random moments during pushes loses nothing acknowledged, and
//!   no local generation is published twice as different remote generations;
//!   kill -9 during pulls leaves a puller that converges to exactly the
//!   acknowledged documents.
//! - A local segment whose bytes changed after verification fails the query
//!   that meets it; the next round fetches it again from the remote (verified
//!   against the local manifest) and every document answers again.
//! - The status reports pending work as soon as it exists (writes after the
//!   uplink went silent, no round run) and a silent uplink as unreachable
//!   within the probe's bound.
//! - A bucket-primary node (`--store s3://`) with its bucket cut: default
//!   reads answer from the last known generation (also after a restart while
//!   cut), a read demanding `strong` and a write get 503 within the timeouts,
//!   a failed write keeps the loaded state, `/ready` is 503; with the bucket
//!   back everything works without a restart.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::proxy::Uplink;
use common::{client, get, post, s3, Daemon};
use serde_json::{json, Value as Json};

const NS: &str = "notes";

/// A daemon syncing to `s3://{bucket}/sync` through `endpoint` (rounds only on demand).
fn node(dir: &Path, bucket: &str, endpoint: &str, id: &str, rules: &str) -> Daemon {
    node_with(dir, bucket, endpoint, id, rules, &[])
}

fn node_with(dir: &Path, bucket: &str, endpoint: &str, id: &str, rules: &str, extra: &[&str]) -> Daemon {
    common::sync_node(dir, bucket, endpoint, id, rules, extra)
}

async fn upsert(d: &Daemon, ns: &str, ids: std::ops::Range<u64>) -> u16 {
    let rows: Vec<Json> =
        ids.map(|i| json!({"id": i, "vector": [i as f32, 1.0], "tag": format!("t{i}")})).collect();
    let body = json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"});
    post(&client(), &d.at(&format!("/v2/namespaces/{ns}")), &body).await.0
}

async fn ids(d: &Daemon, ns: &str) -> Vec<u64> {
    let q = json!({"rank_by": ["id", "asc"], "top_k": 10_000});
    let (status, body) = post(&client(), &d.at(&format!("/v2/namespaces/{ns}/query")), &q).await;
    assert_eq!(status, 200, "{body}");
    body["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

async fn sync_run(d: &Daemon) -> Json {
    let (status, body) = post(&client(), &d.at("/v1/sync/run"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn ns_status<'a>(status: &'a Json, ns: &str) -> &'a Json {
    status["namespaces"].as_array().unwrap().iter().find(|n| n["namespace"] == ns).unwrap_or(&Json::Null)
}

/// Every segment file under `dir` whose path names namespace `ns`.
fn segment_files_of(dir: &Path, ns: &str) -> Vec<std::path::PathBuf> {
    let part = format!("/namespaces/{ns}/");
    common::segment_files(dir).into_iter().filter(|p| p.to_string_lossy().contains(&part)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_local_segment_is_fetched_again_from_the_remote() {
    use std::os::unix::fs::FileExt;
    let bucket = s3::new_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &bucket, s3::endpoint(), "edge-h", "*=push");
    assert_eq!(upsert(&a, NS, 0..300).await, 200);
    let (status, _) =
        post(&client(), &a.at(&format!("/v1/namespaces/{NS}/_admin/compact")), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    let all = json!({"rank_by": ["id", "asc"], "top_k": 10_000, "include_attributes": true});
    let url = a.at(&format!("/v2/namespaces/{NS}/query"));
    let (status, body) = post(&client(), &url, &all).await;
    assert_eq!((status, body["rows"].as_array().map(Vec::len)), (200, Some(300)), "{body}");

    // A byte of the stored block holding row 123 changes in the file the node has mapped (a
    // failing disk).
    let segs = segment_files_of(dir.path(), NS);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let bytes = std::fs::read(&segs[0]).unwrap();
    let at = common::offset_in_block(&bytes, 123);
    let flipped = [bytes[at as usize] ^ 0x20];
    std::fs::OpenOptions::new().write(true).open(&segs[0]).unwrap().write_all_at(&flipped, at).unwrap();
    let (status, body) = post(&client(), &url, &all).await;
    assert!((500..600).contains(&status), "the changed row is not served: {status} {body}");

    let healed = sync_run(&a).await;
    assert_eq!(healed["status"], "OK", "{healed}");
    let (status, body) = post(&client(), &url, &all).await;
    assert_eq!((status, body["rows"].as_array().map(Vec::len)), (200, Some(300)), "{body}");
    assert_eq!(body["rows"][123]["tag"], "t123", "the remote's bytes: {}", body["rows"][123]);
    let (status, report) = post(&client(), &a.at("/v1/_admin/verify"), &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "OK", "{report}");
    assert!(
        report["refetched"][0]["error"].as_str().is_some_and(|e| e.contains("fetched again from")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_reports_pending_work_and_a_silent_uplink_at_once() {
    let bucket = s3::new_bucket().await;
    let uplink = Uplink::start(s3::endpoint());
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &bucket, &uplink.url, "edge-s", "*=push");
    assert_eq!(upsert(&a, NS, 0..10).await, 200);
    let synced = sync_run(&a).await;
    assert_eq!(synced["status"], "OK", "{synced}");
    let synced_gen = ns_status(&synced, NS)["local_generation"].as_u64().unwrap();

    uplink.blackhole();
    for i in 0..4 {
        assert_eq!(upsert(&a, NS, 10 + i..11 + i).await, 200, "acknowledged with the uplink silent");
    }
    // Past the freshness of the round's contact, so the status asks the remote again.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let t = std::time::Instant::now();
    let (code, st) = get(&client(), &a.at("/v1/sync/status")).await;
    assert_eq!(code, 200, "{st}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the status waits at most the probe's bound: {:?}",
        t.elapsed()
    );
    let ns = ns_status(&st, NS);
    assert_eq!(ns["local_generation"].as_u64().unwrap(), synced_gen + 4, "no round ran: {st}");
    assert_eq!(ns["remote_generation"], ns_status(&synced, NS)["remote_generation"], "{st}");
    assert!(ns["pending_objects"].as_u64().unwrap() >= 4, "four WAL batches await the push: {st}");
    assert!(ns["pending_bytes"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["remote"]["reachable"], false, "a silent uplink is reported at once: {st}");

    uplink.restore();
    let (_, back) = get(&client(), &a.at("/v1/sync/status")).await;
    assert_eq!(back["remote"]["reachable"], true, "{back}");
    // (A background compaction may have folded the four batches into one segment meanwhile.)
    assert!(ns_status(&back, NS)["pending_objects"].as_u64().unwrap() > 0, "still unpushed: {back}");
    let pushed = sync_run(&a).await;
    assert_eq!(pushed["status"], "OK", "{pushed}");
    assert_eq!(ns_status(&pushed, NS)["pending_objects"], 0, "{pushed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_uplink_costs_nothing_and_everything_arrives_after() {
    let bucket = s3::new_bucket().await;
    let uplink = Uplink::start(s3::endpoint());
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = node(a_dir.path(), &bucket, &uplink.url, "edge-a", "*=push");
    assert_eq!(upsert(&a, NS, 0..10).await, 200);
    let first = sync_run(&a).await;
    assert_eq!(first["status"], "OK", "{first}");
    assert_eq!(ns_status(&first, NS)["pending_objects"], 0);

    uplink.cut();
    assert_eq!(upsert(&a, NS, 10..20).await, 200, "writes are acknowledged with the uplink cut");
    let t = std::time::Instant::now();
    let offline = sync_run(&a).await;
    assert!(t.elapsed() < Duration::from_secs(20), "a dead uplink fails fast: {:?}", t.elapsed());
    assert_eq!(offline["status"], "partial", "{offline}");
    assert_eq!(offline["remote"]["reachable"], false, "{offline}");
    assert!(ns_status(&offline, NS)["last_error"].is_string(), "{offline}");
    a.sigterm();
    a.wait(Duration::from_secs(20)).unwrap();
    let a = node(a_dir.path(), &bucket, &uplink.url, "edge-a", "*=push");
    assert_eq!(ids(&a, NS).await, (0..20).collect::<Vec<_>>(), "served after a restart while cut");
    assert_eq!(upsert(&a, NS, 20..30).await, 200);
    let (status, _) =
        post(&client(), &a.at(&format!("/v1/namespaces/{NS}/_admin/compact")), &json!({})).await;
    assert_eq!(status, 200, "compaction while cut");
    let st = sync_run(&a).await;
    assert_eq!(st["status"], "partial", "{st}");
    assert!(ns_status(&st, NS)["pending_objects"].as_u64().unwrap() > 0, "{st}");
    assert!(ns_status(&st, NS)["pending_bytes"].as_u64().unwrap() > 0, "{st}");
    let (_, same) = get(&client(), &a.at("/v1/sync/status")).await;
    assert_eq!(ns_status(&same, NS)["local_generation"], ns_status(&st, NS)["local_generation"]);

    // A dead uplink (connections accepted, never answered) is bounded by the timeouts.
    uplink.blackhole();
    let t = std::time::Instant::now();
    assert_eq!(sync_run(&a).await["status"], "partial");
    assert!(
        t.elapsed() < Duration::from_secs(25),
        "a blackholed uplink fails within the timeouts: {:?}",
        t.elapsed()
    );
    assert_eq!(ids(&a, NS).await.len(), 30, "queries never wait on the remote");

    uplink.restore();
    // The admin CLI runs the round (and exits 0 only when every namespace synced).
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tidepool"))
            .args(["--url", &a.url, "--json"])
            .args(args)
            .output()
            .unwrap()
    };
    let run = cli(&["sync", "run"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let status: Json = serde_json::from_slice(&cli(&["sync", "status"]).stdout).unwrap();
    assert_eq!(ns_status(&status, NS)["pending_objects"], 0, "{status}");
    let back = sync_run(&a).await;
    assert_eq!(back["status"], "OK", "{back}");
    assert_eq!(back["remote"]["reachable"], true);
    let want: Vec<u64> = (0..30).collect();

    let b = node(b_dir.path(), &bucket, s3::endpoint(), "edge-b", "*=pull");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(ids(&b, NS).await, want, "the pulling node sees exactly the acknowledged state");
    let (_, meta) = get(&client(), &b.at(&format!("/v1/namespaces/{NS}/metadata"))).await;
    assert_eq!(meta["sync"]["mode"], "pull", "{meta}");
    assert_eq!(upsert(&b, NS, 100..101).await, 409, "a pull namespace is a read replica");
    assert_eq!(ids(&b, NS).await, want);

    // The bucket is laid out like a --store s3:// bucket.
    let c_dir = tempfile::tempdir().unwrap();
    let store = format!("s3://{bucket}/sync");
    let c = Daemon::start(
        c_dir.path(),
        &[
            "--store",
            &store,
            "--s3-endpoint",
            s3::endpoint(),
            "--s3-allow-http",
            "--s3-access-key-id",
            "t",
            "--s3-secret-access-key",
            "t",
        ],
    );
    assert_eq!(ids(&c, NS).await, want);

    // Later writes and a delete travel too; a restarted puller serves offline.
    let (status, _) =
        post(&client(), &a.at(&format!("/v2/namespaces/{NS}")), &json!({"deletes": [0, 1]})).await;
    assert_eq!(status, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(ids(&b, NS).await, (2..30).collect::<Vec<_>>());
    // A namespace delete travels as its tombstone generation.
    assert_eq!(upsert(&a, "gone", 0..3).await, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(ids(&b, "gone").await, vec![0, 1, 2]);
    assert_eq!(client().delete(a.at("/v2/namespaces/gone")).send().await.unwrap().status(), 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    assert_eq!(sync_run(&b).await["status"], "OK");
    let q = json!({"rank_by": ["id", "asc"]});
    assert_eq!(
        post(&client(), &b.at("/v2/namespaces/gone/query"), &q).await.0,
        404,
        "deleted on the puller too"
    );
    let b = {
        b.stop();
        node(b_dir.path(), &bucket, "http://127.0.0.1:9", "edge-b", "*=pull")
    };
    assert_eq!(
        ids(&b, NS).await,
        (2..30).collect::<Vec<_>>(),
        "a pulled namespace is served offline after a restart"
    );
}

async fn two_writers(on_conflict: &str) -> (Daemon, Daemon, String, Vec<tempfile::TempDir>) {
    let bucket = s3::new_bucket().await;
    let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let rule = format!("*=both:{on_conflict}");
    // No manifest retention: a commit deletes what it dropped at once.
    let now = ["--retention-secs", "0"];
    let a = node_with(dirs[0].path(), &bucket, s3::endpoint(), "edge-a", &rule, &now);
    let b = node_with(dirs[1].path(), &bucket, s3::endpoint(), "edge-b", &rule, &now);
    assert_eq!(upsert(&a, NS, 0..5).await, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(ids(&b, NS).await, (0..5).collect::<Vec<_>>());
    // Apart: each writes (rounds only on demand, so neither sees the other).
    assert_eq!(upsert(&a, NS, 100..103).await, 200);
    assert_eq!(upsert(&b, NS, 200..203).await, 200);
    assert_eq!(upsert(&b, NS, 203..205).await, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    (a, b, bucket, dirs)
}

#[tokio::test(flavor = "multi_thread")]
async fn rebase_keeps_every_write_of_both_nodes() {
    let (a, b, _bucket, _dirs) = two_writers("rebase").await;
    let st = sync_run(&b).await;
    assert_eq!(st["status"], "OK", "{st}");
    let conflicts = ns_status(&st, NS)["conflicts"].as_array().unwrap().clone();
    assert_eq!(conflicts.len(), 1, "{st}");
    assert_eq!(conflicts[0]["resolution"], "rebase", "{st}");
    assert_eq!(sync_run(&a).await["status"], "OK");
    let want: Vec<u64> = (0..5).chain(100..103).chain(200..205).collect();
    assert_eq!(ids(&b, NS).await, want);
    assert_eq!(ids(&a, NS).await, want, "the rebased writes reached the other node");
}

#[tokio::test(flavor = "multi_thread")]
async fn branch_keeps_both_versions_in_the_bucket() {
    let (a, b, _bucket, _dirs) = two_writers("branch").await;
    let st = sync_run(&b).await;
    let conflicts = ns_status(&st, NS)["conflicts"].as_array().unwrap().clone();
    assert_eq!(conflicts.len(), 1, "{st}");
    assert_eq!(conflicts[0]["resolution"], "branch", "{st}");
    let theirs: Vec<u64> = (0..5).chain(100..103).collect();
    assert_eq!(ids(&b, NS).await, theirs, "the bucket's version is adopted");
    // The branch is a namespace of the bucket: a node pulling everything gets it.
    let dir = tempfile::tempdir().unwrap();
    let puller = node(dir.path(), &_bucket, s3::endpoint(), "edge-c", "*=pull");
    assert_eq!(sync_run(&puller).await["status"], "OK");
    let detail = conflicts[0]["detail"].as_str().unwrap();
    let branch = detail.rsplit(' ').next().unwrap();
    assert!(branch.starts_with("notes-conflict-edge-b-"), "{detail}");
    assert_eq!(ids(&puller, branch).await, (0..5).chain(200..205).collect::<Vec<_>>());
    assert_eq!(ids(&puller, NS).await, theirs);
    drop(a);
}

/// WAL batch files of `NS` in a node's local store.
fn wal_files(dir: &Path) -> Vec<String> {
    let wal = dir.join("store/default/default/namespaces").join(NS).join("wal");
    let mut names: Vec<String> = std::fs::read_dir(wal)
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".wal"));
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_unsynced_batches_so_a_rebase_still_applies_them() {
    let (a, b, _bucket, dirs) = two_writers("rebase").await;
    // b holds the pulled batch (synced) and its own two (not yet in the bucket),
    // unless its idle indexing compacted already (then only the two are left).
    let before = wal_files(dirs[1].path());
    let (status, _) =
        post(&client(), &b.at(&format!("/v1/namespaces/{NS}/_admin/compact")), &json!({})).await;
    assert_eq!(status, 200);
    let after = wal_files(dirs[1].path());
    assert_eq!(after.len(), 2, "compaction deleted the synced batch only: {before:?} → {after:?}");
    assert!(before.ends_with(&after), "{before:?} → {after:?}");
    let (status, rep) =
        post(&client(), &b.at("/v1/_admin/repair"), &json!({"sweep": true, "grace_secs": 0})).await;
    assert_eq!(status, 200, "{rep}");
    assert_eq!(wal_files(dirs[1].path()), after, "a repair sweep keeps held batches: {rep}");
    // Offline for many compactions: each folds more unsynced writes (and the
    // segments before it); every batch stays until the remote has it.
    for k in 0..3u64 {
        assert_eq!(upsert(&b, NS, 300 + 10 * k..305 + 10 * k).await, 200);
        let (status, _) =
            post(&client(), &b.at(&format!("/v1/namespaces/{NS}/_admin/compact")), &json!({})).await;
        assert_eq!(status, 200);
    }
    let held = wal_files(dirs[1].path());
    assert_eq!(held.len(), 5, "{held:?}");
    let st = sync_run(&b).await;
    let conflicts = ns_status(&st, NS)["conflicts"].as_array().unwrap().clone();
    assert_eq!(conflicts.len(), 1, "{st}");
    assert_eq!(conflicts[0]["resolution"], "rebase", "{st}");
    assert_eq!(sync_run(&a).await["status"], "OK");
    let ours = (300..305).chain(310..315).chain(320..325);
    let mut want: Vec<u64> = (0..5).chain(100..103).chain(200..205).chain(ours).collect();
    want.sort_unstable();
    assert_eq!(ids(&b, NS).await, want);
    assert_eq!(ids(&a, NS).await, want, "the compacted writes were rebased and reached the other node");
    let left = wal_files(dirs[1].path());
    assert!(held.iter().all(|w| !left.contains(w)), "holds given back once pushed: {left:?}");
    let (status, rep) =
        post(&client(), &b.at("/v1/_admin/repair"), &json!({"sweep": true, "grace_secs": 0})).await;
    assert_eq!(status, 200, "{rep}");
    assert_eq!(ids(&b, NS).await, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_namespace_has_one_writer_the_lease_holder() {
    let bucket = s3::new_bucket().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = node(dirs[0].path(), &bucket, s3::endpoint(), "edge-a", "*=push");
    let b = node(dirs[1].path(), &bucket, s3::endpoint(), "edge-b", "*=push");
    assert_eq!(upsert(&a, NS, 0..5).await, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    assert_eq!(upsert(&b, NS, 100..103).await, 200);
    let st = sync_run(&b).await;
    assert_eq!(st["status"], "partial", "{st}");
    assert_eq!(ns_status(&st, NS)["lease_holder"], "edge-a", "{st}");
    assert!(ns_status(&st, NS)["last_error"].as_str().unwrap().contains("lease"), "{st}");
    assert_eq!(ids(&b, NS).await, (100..103).collect::<Vec<_>>(), "the refused node keeps its writes");
    let c = node(dirs[2].path(), &bucket, s3::endpoint(), "edge-c", "*=pull");
    assert_eq!(sync_run(&c).await["status"], "OK");
    assert_eq!(
        ids(&c, NS).await,
        (0..5).collect::<Vec<_>>(),
        "the bucket holds only the lease holder's pushes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_pushes_and_pulls_loses_nothing_and_publishes_each_generation_once() {
    let bucket = s3::new_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for cycle in 0..20u64 {
        let a = node(dir.path(), &bucket, s3::endpoint(), "edge-k", "*=push");
        let base = cycle * 10;
        if upsert(&a, NS, base..base + 10).await == 200 {
            acked.extend(base..base + 10);
        }
        let url = a.at("/v1/sync/run");
        let round = tokio::spawn(async move { client().post(url).json(&json!({})).send().await });
        tokio::time::sleep(Duration::from_millis(cycle * 37 % 400)).await;
        drop(a); // kill -9 (Drop kills the child)
        let _ = round.await;
    }
    let a = node(dir.path(), &bucket, s3::endpoint(), "edge-k", "*=push");
    assert_eq!(sync_run(&a).await["status"], "OK");
    // And a pulling node killed in the middle of its pulls while the pusher goes on.
    let pdir = tempfile::tempdir().unwrap();
    for cycle in 0..10u64 {
        let base = 1000 + cycle * 10;
        assert_eq!(upsert(&a, NS, base..base + 10).await, 200);
        acked.extend(base..base + 10);
        assert_eq!(sync_run(&a).await["status"], "OK");
        let b = node(pdir.path(), &bucket, s3::endpoint(), "edge-p", "*=pull");
        tokio::time::sleep(Duration::from_millis(cycle * 53 % 300)).await;
        drop(b); // kill -9 (its start-up round may be anywhere)
    }
    let b = node(pdir.path(), &bucket, s3::endpoint(), "edge-p", "*=pull");
    assert_eq!(sync_run(&b).await["status"], "OK");
    acked.sort_unstable();
    assert_eq!(ids(&b, NS).await, acked);
    // Each remote generation carries a distinct, increasing local generation.
    let store = s3::s3_store(&format!("s3://{bucket}/sync"));
    let listed = store.list("default/default/namespaces/notes/manifests/").await.unwrap();
    let mut seen = Vec::new();
    for o in listed.iter().filter(|o| o.key.ends_with(".json")) {
        let m = tidepool::format::manifest::Manifest::decode(&store.get(&o.key).await.unwrap()).unwrap();
        let origin = m.origin.expect("pushed generations carry their origin");
        assert!(origin.epoch > 0, "a push-mode generation names its lease epoch");
        seen.push(origin.local_generation);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_primary_node_degrades_instead_of_failing() {
    let bucket = s3::new_bucket().await;
    let uplink = Uplink::start(s3::endpoint());
    let dir = tempfile::tempdir().unwrap();
    let store = format!("s3://{bucket}/edge");
    let args = [
        "--store",
        &store,
        "--s3-endpoint",
        &uplink.url,
        "--s3-allow-http",
        "--s3-access-key-id",
        "t",
        "--s3-secret-access-key",
        "t",
        "--s3-connect-timeout-secs",
        "1",
        "--s3-request-timeout-secs",
        "2",
    ];
    let d = Daemon::start(dir.path(), &args);
    assert_eq!(upsert(&d, NS, 0..20).await, 200);
    let want: Vec<u64> = (0..20).collect();
    assert_eq!(ids(&d, NS).await, want);

    uplink.cut();
    assert_eq!(ids(&d, NS).await, want, "default reads answer from the last known generation");
    let (status, body) = get(&client(), &d.at("/ready")).await;
    assert_eq!(status, 503, "/ready reports an unreachable bucket before any write: {body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("unreachable"), "{body}");
    let meta_path = format!("/v1/namespaces/{NS}/metadata");
    let (status, meta) = get(&client(), &d.at(&meta_path)).await;
    assert_eq!(status, 200, "metadata answers from what the node knew: {meta}");
    assert_eq!(meta["store"]["reachable"], false, "{meta}");
    let strong = json!({"rank_by": ["id", "asc"], "top_k": 100, "consistency": {"level": "strong"}});
    let t = std::time::Instant::now();
    let (status, body) = post(&client(), &d.at(&format!("/v2/namespaces/{NS}/query")), &strong).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "strong read fails within the timeouts: {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    assert_eq!(upsert(&d, NS, 20..25).await, 503, "a write fails with 503");
    assert!(t.elapsed() < Duration::from_secs(20), "the write fails within the timeouts: {:?}", t.elapsed());
    assert_eq!(ids(&d, NS).await, want, "a failed write keeps the loaded state");
    assert_eq!(get(&client(), &d.at("/ready")).await.0, 503, "/ready reports the store");

    d.stop();
    let d = Daemon::start(dir.path(), &args);
    assert_eq!(ids(&d, NS).await, want, "restarted while cut: served from the manifest and disk caches");
    assert_eq!(get(&client(), &d.at("/ready")).await.0, 503);
    let (status, meta) = get(&client(), &d.at(&meta_path)).await;
    assert_eq!((status, &meta["store"]["reachable"]), (200, &json!(false)), "{meta}");

    uplink.restore();
    assert_eq!(upsert(&d, NS, 20..25).await, 200, "writes resume without a restart");
    let (status, body) = post(&client(), &d.at(&format!("/v2/namespaces/{NS}/query")), &strong).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 25);
    assert_eq!(get(&client(), &d.at("/ready")).await.0, 200);
    let (status, meta) = get(&client(), &d.at(&meta_path)).await;
    assert_eq!(status, 200);
    assert!(meta.get("store").is_none(), "reachable again: {meta}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remote_sweep_removes_only_what_no_live_manifest_references() {
    let bucket = s3::new_bucket().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let grace = ["--sync-sweep-grace-secs", "1"];
    let a = node_with(dirs[0].path(), &bucket, s3::endpoint(), "edge-a", "*=push", &grace);
    for batch in 0..3u64 {
        assert_eq!(upsert(&a, NS, batch * 10..batch * 10 + 10).await, 200);
        assert_eq!(sync_run(&a).await["status"], "OK");
    }
    let (status, _) =
        post(&client(), &a.at(&format!("/v1/namespaces/{NS}/_admin/compact")), &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(sync_run(&a).await["status"], "OK");
    let store = s3::s3_store(&format!("s3://{bucket}/sync"));
    let prefix = "default/default/namespaces/notes/";
    let orphan = format!("{prefix}wal/00000000000000999999-orphan.wal");
    store.put(&orphan, bytes::Bytes::from_static(b"left by a crashed push")).await.unwrap();
    let wal_before = store.list(&format!("{prefix}wal/")).await.unwrap().len();
    assert!(wal_before >= 4, "three pushed batches and the orphan: {wal_before}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = post(&client(), &a.at("/v1/sync/run?sweep=true"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let report = &body["last_sweep"]["report"];
    assert!(report["manifests_collected"].as_u64().unwrap() >= 3, "{body}");
    assert!(report["objects_deleted"].as_u64().unwrap() >= 4, "{body}");
    assert!(
        store.list(&format!("{prefix}wal/")).await.unwrap().is_empty(),
        "folded batches and the orphan are gone"
    );
    let manifests = store.list(&format!("{prefix}manifests/")).await.unwrap();
    assert_eq!(
        manifests.iter().filter(|o| o.key.ends_with(".json")).count(),
        1,
        "only the newest generation is live"
    );

    let b = node(dirs[1].path(), &bucket, s3::endpoint(), "edge-b", "*=pull");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(
        ids(&b, NS).await,
        (0..30).collect::<Vec<_>>(),
        "nothing a live manifest references was swept"
    );
    assert_eq!(upsert(&a, NS, 30..35).await, 200);
    assert_eq!(sync_run(&a).await["status"], "OK", "pushes go on after a sweep");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(ids(&b, NS).await, (0..35).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn large_objects_stream_to_and_from_the_bucket_verified() {
    use tidepool::store::copy::{CopyError, PART_BYTES};
    let bucket = s3::new_bucket().await;
    let remote = s3::s3_store(&format!("s3://{bucket}/big"));
    let dir = tempfile::tempdir().unwrap();
    let local = tidepool::store::Store::local(dir.path()).unwrap();
    let data: Vec<u8> = (0..PART_BYTES * 2 + 777).map(|i| (i * 7 % 253) as u8).collect();
    let crc = crc32c::crc32c(&data);
    local.put("o/p/namespaces/n/segments/s/data.seg", bytes::Bytes::from(data.clone())).await.unwrap();
    let key = "o/p/namespaces/n/segments/s/data.seg";
    local.copy_verified(key, &remote, data.len() as u64, crc).await.unwrap();
    assert_eq!(remote.get(key).await.unwrap().len(), data.len(), "uploaded in parts");
    let back = tempfile::tempdir().unwrap();
    let fresh = tidepool::store::Store::local(back.path()).unwrap();
    remote.copy_verified(key, &fresh, data.len() as u64, crc).await.unwrap();
    assert_eq!(fresh.get(key).await.unwrap(), bytes::Bytes::from(data.clone()), "downloaded in parts");
    let other = "o/p/namespaces/n/segments/t/data.seg";
    local.put(other, bytes::Bytes::from(data.clone())).await.unwrap();
    let bad = local.copy_verified(other, &remote, data.len() as u64, crc ^ 0xff).await;
    assert!(matches!(bad, Err(CopyError::Mismatch { .. })));
    assert!(!remote.exists(other).await.unwrap(), "a mismatching upload is aborted, never published");
}

/// A schema too large to stay inline travels as one schema object (4.5): the
/// bucket holds one per schema change, whatever the number of pushes, and a
/// pulling node resolves it (its queries filter on the stored attributes).
#[tokio::test(flavor = "multi_thread")]
async fn a_large_schema_is_pushed_and_pulled_as_one_schema_object() {
    let bucket = s3::new_bucket().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = node(dirs[0].path(), &bucket, s3::endpoint(), "edge-a", "*=push");
    let attr = |i: usize| format!("a_long_attribute_name_that_makes_the_schema_large_{i:03}");
    let mut row = serde_json::Map::new();
    row.insert("id".into(), json!(0));
    for i in 0..150 {
        row.insert(attr(i), json!(format!("v{i}")));
    }
    let url = a.at(&format!("/v2/namespaces/{NS}"));
    let (status, body) = post(&client(), &url, &json!({"upsert_rows": [Json::Object(row)]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sync_run(&a).await["status"], "OK");
    for id in 1..=5u64 {
        let (status, body) =
            post(&client(), &url, &json!({"upsert_rows": [{"id": id, (attr(0)): "w"}]})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(sync_run(&a).await["status"], "OK");
    }
    let store = s3::s3_store(&format!("s3://{bucket}/sync"));
    let schemas = store.list("default/default/namespaces/notes/schemas/").await.unwrap();
    assert_eq!(schemas.len(), 1, "one schema object for one schema change: {schemas:?}");
    for m in store.list("default/default/namespaces/notes/manifests/").await.unwrap() {
        assert!(m.size < 4096, "{} is {} bytes", m.key, m.size);
    }

    let b = node(dirs[1].path(), &bucket, s3::endpoint(), "edge-b", "*=pull");
    assert_eq!(sync_run(&b).await["status"], "OK");
    assert_eq!(ids(&b, NS).await, (0..=5).collect::<Vec<_>>());
    let q = json!({"filters": [(attr(149)), "Eq", "v149"], "rank_by": ["id", "asc"], "top_k": 10});
    let (status, body) = post(&client(), &b.at(&format!("/v2/namespaces/{NS}/query")), &q).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1), "{body}");
}
