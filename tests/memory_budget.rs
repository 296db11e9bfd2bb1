//! The node's memory budget (`engine/budget.rs`): derived from a cgroup v2 or
//! v1 limit or `MemAvailable` (read under a root the tests point at fake
//! `/sys` and `/proc` trees), overridden by `memory_budget_bytes`; printed by
//! `config check` and exported on `/metrics`. A daemon past the budget's write
//! threshold answers writes 429 with `retry-after` and keeps answering
//! queries, having first dropped every loaded state but the one in use; a
//! body whose declared length does not fit the headroom is refused before it
//! is read, and one whose full-text values do not fit once parsed is refused
//! before it is applied; writes resume once the budget allows (here raised by a
//! `SIGHUP` reload), and nothing acknowledged is lost.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{json, Value as Json};
use tidepool::engine::budget::{derive, parse_limit, resolve, LimitSource};

const GIB: u64 = 1 << 30;

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A fake `/proc` with 16 GiB of memory, 4 GiB available and a process of
/// 1,000 resident pages.
fn fake_proc(root: &Path, cgroup: &str) {
    put(root, "proc/self/cgroup", cgroup);
    put(root, "proc/meminfo", "MemTotal:       16777216 kB\nMemFree: 1 kB\nMemAvailable:    4194304 kB\n");
    put(root, "proc/self/statm", "5000 1000 200 10 0 900 0\n");
}

fn page() -> u64 {
    rustix::param::page_size() as u64
}

#[test]
fn cgroup_v2_budget_is_four_fifths_of_the_lowest_memory_max_on_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_proc(root, "0::/system.slice/tidepool.service\n");
    put(root, "sys/fs/cgroup/system.slice/tidepool.service/memory.max", "max\n");
    put(root, "sys/fs/cgroup/system.slice/memory.max", "8589934592\n");
    put(root, "sys/fs/cgroup/memory.max", "12884901888\n");
    let d = derive(root);
    assert_eq!(d.limit, 8 * GIB);
    assert_eq!(d.bytes, 8 * GIB * 4 / 5);
    assert_eq!(d.source, LimitSource::CgroupV2(root.join("sys/fs/cgroup/system.slice/memory.max")));
    assert!(d.describe().contains("cgroup v2"), "{}", d.describe());

    // A limit above the machine's memory is capped by MemTotal.
    put(root, "sys/fs/cgroup/system.slice/memory.max", "68719476736\n");
    put(root, "sys/fs/cgroup/memory.max", "max\n");
    assert_eq!(derive(root).limit, 16 * GIB);
}

#[test]
fn cgroup_v1_budget_reads_memory_limit_in_bytes_and_unlimited_falls_back_to_meminfo() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_proc(root, "5:cpu,cpuacct:/\n4:memory:/tidepool\n0::/\n");
    put(root, "sys/fs/cgroup/memory/tidepool/memory.limit_in_bytes", "2147483648\n");
    let d = derive(root);
    assert_eq!((d.limit, d.bytes), (2 * GIB, 2 * GIB * 4 / 5));
    assert_eq!(
        d.source,
        LimitSource::CgroupV1(root.join("sys/fs/cgroup/memory/tidepool/memory.limit_in_bytes"))
    );

    // The kernel's "no limit" (PAGE_COUNTER_MAX) is no limit.
    put(root, "sys/fs/cgroup/memory/tidepool/memory.limit_in_bytes", "9223372036854771712\n");
    let d = derive(root);
    assert_eq!(d.source, LimitSource::MemAvailable);
    assert_eq!(d.limit, 4 * GIB + 1000 * page());
}

#[test]
fn without_a_cgroup_limit_the_budget_is_four_fifths_of_mem_available_plus_own_rss() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_proc(root, "0::/\n");
    let d = derive(root);
    assert_eq!(d.source, LimitSource::MemAvailable);
    assert_eq!(d.limit, 4 * GIB + 1000 * page());
    assert_eq!(d.bytes, (4 * GIB + 1000 * page()) * 4 / 5);
}

#[test]
fn a_garbled_limit_file_is_ignored_and_the_next_source_used() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_proc(root, "0::/tp\n");
    put(root, "sys/fs/cgroup/tp/memory.max", "lots\n");
    assert_eq!(derive(root).source, LimitSource::MemAvailable);
    assert_eq!(parse_limit("max\n"), Ok(None));
    assert_eq!(parse_limit(" 1048576\n"), Ok(Some(1 << 20)));
    let err = parse_limit("-1").unwrap_err();
    assert!(err.contains("\"-1\"") && err.contains("max"), "{err}");
}

#[test]
fn the_setting_overrides_any_derivation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_proc(root, "0::/\n");
    put(root, "sys/fs/cgroup/memory.max", "8589934592\n");
    let d = resolve(Some(3 * GIB), root);
    assert_eq!((d.bytes, d.source), (3 * GIB, LimitSource::Configured));
    assert_eq!(resolve(None, root).bytes, 8 * GIB * 4 / 5);
}

fn config_check(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidepool"))
        .args(["config", "check", "--data-dir", "/tmp/tidepool-budget-check"])
        .args(args)
        .env_remove("TIDEPOOL_MEMORY_BUDGET_BYTES")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn config_check_prints_the_budget_and_where_it_came_from() {
    let (code, out, err) = config_check(&[], &[]);
    assert_eq!(code, 0, "{err}");
    let line =
        out.lines().find(|l| l.starts_with("memory_budget_bytes = ")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("# default, reloadable; 4/5 of "), "{line}");

    let (code, out, _) = config_check(&["--memory-budget-bytes", "3221225472"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("memory_budget_bytes = 3221225472  # flag, reloadable; set by memory_budget_bytes"),
        "{out}"
    );
    let (_, out, _) = config_check(&[], &[("TIDEPOOL_MEMORY_BUDGET_BYTES", "2147483648")]);
    assert!(out.contains("memory_budget_bytes = 2147483648  # env TIDEPOOL_MEMORY_BUDGET_BYTES"), "{out}");
    let (code, _, err) = config_check(&["--memory-budget-bytes", "4096"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("memory_budget_bytes must be at least 1 MiB"), "{err}");
}

fn write_config(path: &Path, budget: u64) {
    std::fs::write(path, format!("memory_budget_bytes = {budget}\n")).unwrap();
}

/// A daemon under a 4 GiB budget read from `dir`'s config.toml (that file, to
/// reload another budget into it).
fn budgeted(dir: &Path) -> (std::path::PathBuf, Daemon) {
    let file = dir.join("config.toml");
    write_config(&file, 4 * GIB);
    let d = Daemon::start(&dir.join("data"), &["--config", file.to_str().unwrap()]);
    (file, d)
}

fn hangup(d: &Daemon) {
    assert!(Command::new("kill").args(["-HUP", &d.pid().to_string()]).status().unwrap().success());
}

fn rows(from: u64, n: u64) -> Json {
    let rows: Vec<Json> = (from..from + n)
        .map(|i| json!({"id": i, "vector": [i as f32, 1.0, 0.5], "title": format!("doc {i}")}))
        .collect();
    json!({"upsert_rows": rows, "distance_metric": "euclidean_squared"})
}

async fn write(c: &reqwest::Client, d: &Daemon, body: &Json) -> reqwest::Response {
    c.post(d.at("/v2/namespaces/mem")).json(body).send().await.unwrap()
}

async fn count(c: &reqwest::Client, d: &Daemon) -> u64 {
    let q = json!({"aggregate_by": {"n": ["Count"]}});
    let (status, body) = common::post(c, &d.at("/v2/namespaces/mem/query"), &q).await;
    assert_eq!(status, 200, "{body}");
    body["aggregations"]["n"].as_u64().unwrap_or_else(|| panic!("{body}"))
}

/// Wait (a reload is asynchronous to the signal) until a write gets `want`;
/// also the rows acknowledged on the way.
async fn await_write_status(
    c: &reqwest::Client,
    d: &Daemon,
    from: u64,
    want: u16,
) -> (reqwest::Response, u64) {
    let (t, mut acked) = (Instant::now(), 0);
    loop {
        let resp = write(c, d, &rows(from + acked, 10)).await;
        if resp.status().as_u16() == want {
            return (resp, acked);
        }
        if resp.status() == 200 {
            acked += 10;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "never {want}: {} {}", resp.status(), d.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, name: &str) -> u64 {
    let line =
        text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
}

async fn metrics(c: &reqwest::Client, d: &Daemon) -> String {
    c.get(d.at("/metrics")).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn past_the_budget_writes_get_429_queries_go_on_and_a_raised_budget_takes_writes_again() {
    let dir = tempfile::tempdir().unwrap();
    let (file, d) = budgeted(dir.path());
    let c = common::client();
    for other in ["a0", "a1"] {
        let (status, body) = common::post(&c, &d.at(&format!("/v2/namespaces/{other}")), &rows(0, 10)).await;
        assert_eq!(status, 200, "{body}");
    }
    for batch in 0..5 {
        let resp = write(&c, &d, &rows(batch * 100, 100)).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    assert_eq!(metric(&metrics(&c, &d).await, "tidepool_memory_budget_bytes"), 4 * GIB);

    // Any daemon's anonymous memory is past 9/10 of 1 MiB.
    write_config(&file, 1 << 20);
    hangup(&d);
    let (refused, early) = await_write_status(&c, &d, 10_000, 429).await;
    let retry_after = refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(refused.headers().get("retry-after-ms").unwrap(), "1000");
    let body: Json = refused.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert!(body["error"].as_str().unwrap().contains("memory budget reached"), "{body}");
    // A 4 MB body refused before it is read is still drained: a client that
    // sends it whole, then reads, gets the 429, not a reset connection.
    let answer = sent_write(&d, &vec![b' '; 4 << 20]);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    // Queries are served as before.
    assert_eq!(count(&c, &d).await, 500 + early);
    let m = metrics(&c, &d).await;
    assert_eq!(metric(&m, "tidepool_memory_budget_bytes"), 1 << 20);
    assert!(metric(&m, "tidepool_memory_used_bytes") > 1 << 20, "{m}");
    assert!(metric(&m, "tidepool_memory_write_refusals_total") >= 1, "{m}");
    // Before refusing, the memory tier was shed down to the namespace in use.
    assert_eq!(metric(&m, "tidepool_namespaces_loaded"), 1, "{m}");

    write_config(&file, 4 * GIB);
    hangup(&d);
    await_write_status(&c, &d, 20_000, 200).await;
    let acked = 500 + early + 10;
    assert_eq!(count(&c, &d).await, acked, "every acknowledged row is there, the refused ones are not");
    drop(d);
    // After a restart too.
    let d = Daemon::start(&dir.path().join("data"), &["--config", file.to_str().unwrap()]);
    assert_eq!(count(&c, &d).await, acked);
}

/// A raw write to namespace `mem` whose head (with `length`, a `Content-Length` or
/// `Transfer-Encoding` line, and `extra` header lines) is sent; the body is the caller's.
fn raw_write(d: &Daemon, length: &str, extra: &str) -> TcpStream {
    let addr = d.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /v2/namespaces/mem HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         {extra}{length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// The first bytes of the answer (its status line and headers).
fn answer(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => format!("no answer: {e}"),
    }
}

/// The status line of a raw request: headers only, the body never sent.
fn declared_write(d: &Daemon, declared: u64) -> String {
    answer(&mut raw_write(d, &format!("Content-Length: {declared}"), ""))
}

/// The response to a write whose whole `body` is sent before anything is read.
fn sent_write(d: &Daemon, body: &[u8]) -> String {
    let mut s = raw_write(d, &format!("Content-Length: {}", body.len()), "");
    if let Err(e) = s.write_all(body) {
        return format!("the body could not be sent: {e}");
    }
    answer(&mut s)
}

/// Reload a budget (from 4 GiB) whose write threshold leaves about
/// `headroom` bytes above what is in use now, and wait until it applies.
async fn leave_headroom(c: &reqwest::Client, d: &Daemon, file: &Path, headroom: u64) {
    let used = metric(&metrics(c, d).await, "tidepool_memory_used_bytes");
    write_config(file, (used + headroom) / 9 * 10);
    hangup(d);
    let t = Instant::now();
    while metric(&metrics(c, d).await, "tidepool_memory_budget_bytes") == 4 * GIB {
        assert!(t.elapsed() < Duration::from_secs(10), "no reload: {}", d.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A daemon that took `first` and then had its budget reloaded to leave about
/// `headroom` bytes above its use (its data dir, the daemon, a client).
async fn with_headroom(first: &Json, headroom: u64) -> (tempfile::TempDir, Daemon, reqwest::Client) {
    let dir = tempfile::tempdir().unwrap();
    let (file, d) = budgeted(dir.path());
    let c = common::client();
    assert_eq!(write(&c, &d, first).await.status(), 200);
    leave_headroom(&c, &d, &file, headroom).await;
    (dir, d, c)
}

#[tokio::test]
async fn a_body_declared_larger_than_the_headroom_is_refused_before_it_is_read() {
    let (_dir, d, c) = with_headroom(&rows(0, 10), 200 << 20).await;
    // 150 MiB costs four times that in flight: past the headroom, refused unread.
    let answer = declared_write(&d, 150 << 20);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1\r\n"), "{answer}");
    // A small write fits the same headroom.
    assert_eq!(write(&c, &d, &rows(100, 10)).await.status(), 200);
    assert_eq!(count(&c, &d).await, 20);
}

/// `n` rows of about 500 bytes of full-text searched `body` each, from id `from`.
fn text_rows(from: u64, n: u64) -> Json {
    let o = json!({"tokenizer": "word_v3", "stemming": true, "remove_stopwords": false});
    let body = |i: u64| {
        format!("package {i} provides ") + &"tools for network monitoring and compression ".repeat(11)
    };
    let rows: Vec<Json> = (from..from + n).map(|i| json!({"id": i, "body": body(i)})).collect();
    json!({"upsert_rows": rows, "schema": {"body": {"type": "string", "full_text_search": o}}})
}

#[tokio::test]
async fn a_full_text_body_is_charged_for_its_analysis() {
    let (_dir, d, c) = with_headroom(&text_rows(0, 10), 200 << 20).await;
    // 50,000 rows, a 25 MB body: four times its bytes (100 MB) fits the headroom, nine
    // more times its 24 MB of full text does not.
    let big = text_rows(100, 50_000);
    let resp = write(&c, &d, &big).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let error = resp.text().await.unwrap();
    assert!(error.contains("memory budget reached") && error.contains("bytes of full text"), "{error}");
    // A small full-text write fits the same headroom.
    assert_eq!(write(&c, &d, &text_rows(200_000, 10)).await.status(), 200);
    assert_eq!(count(&c, &d).await, 20);
}

/// The response to a gzip write whose `json` body is sent compressed, with
/// its compressed length declared (`chunked`: no length, chunked encoding).
fn gzip_write(d: &Daemon, json: &[u8], chunked: bool) -> String {
    use flate2::{write::GzEncoder, Compression};
    let mut z = GzEncoder::new(Vec::new(), Compression::fast());
    z.write_all(json).unwrap();
    let body = z.finish().unwrap();
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let mut s = raw_write(d, &length, "Content-Encoding: gzip\r\n");
    if chunked {
        s.write_all(format!("{:x}\r\n", body.len()).as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        s.write_all(b"\r\n0\r\n\r\n").unwrap();
    } else {
        s.write_all(&body).unwrap();
    }
    answer(&mut s)
}

#[tokio::test]
async fn a_gzip_or_chunked_body_is_charged_for_what_it_decodes_to() {
    let dir = tempfile::tempdir().unwrap();
    let (file, d) = budgeted(dir.path());
    let c = common::client();
    assert_eq!(write(&c, &d, &rows(0, 10)).await.status(), 200);
    // A valid write padded with 120 MiB of spaces: it compresses to a few
    // hundred KiB, and costs four times 120 MiB once decoded.
    let mut padded = serde_json::to_vec(&rows(100, 10)).unwrap();
    padded.splice(1..1, std::iter::repeat_n(b' ', 120 << 20));
    // Under a generous budget both forms are taken.
    assert!(gzip_write(&d, &padded, false).starts_with("HTTP/1.1 200"));
    assert_eq!(count(&c, &d).await, 20);
    leave_headroom(&c, &d, &file, 100 << 20).await;
    let mut other = serde_json::to_vec(&rows(200, 10)).unwrap();
    other.splice(1..1, std::iter::repeat_n(b' ', 120 << 20));
    for chunked in [false, true] {
        let answer = gzip_write(&d, &other, chunked);
        assert!(answer.starts_with("HTTP/1.1 429"), "chunked {chunked}: {answer}");
        assert!(answer.contains("memory budget reached"), "{answer}");
    }
    // Nothing of the refused writes was stored; a small write still fits.
    assert_eq!(count(&c, &d).await, 20);
    assert_eq!(write(&c, &d, &rows(300, 10)).await.status(), 200);
    assert_eq!(count(&c, &d).await, 30);
}
