//! Test harness: the real `tidepool` binary as a child process on a free
//! loopback port, with its own data dir, plus a small HTTP client.
//!
//! Invariant: every daemon started here is killed when its [`Daemon`] is
//! dropped, so a failing test never leaks a process holding a data-dir lock.

#![allow(dead_code)]

pub mod proxy;
pub mod s3;
pub mod tiny_bert;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// A running daemon.
pub struct Daemon {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

/// Why a daemon did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status, if it exited.
    pub status: Option<ExitStatus>,
    /// What it wrote on stderr.
    pub stderr: String,
}

fn command(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidepool"));
    cmd.arg("serve").arg("--data-dir").arg(data_dir);
    if !extra.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(extra);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDEPOOL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.env("TIDEPOOL_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

impl Daemon {
    /// Start a daemon or panic with its stderr.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Daemon {
        match Daemon::try_start(data_dir, extra) {
            Ok(d) => d,
            Err(f) => panic!("daemon failed to start ({:?}): {}", f.status, f.stderr),
        }
    }

    /// Start a daemon; wait for its `listening on` line or its exit.
    pub fn try_start(data_dir: &Path, extra: &[&str]) -> Result<Daemon, StartFailure> {
        Daemon::try_start_with_env(data_dir, extra, &[])
    }

    /// Like [`Daemon::try_start`], with extra environment variables.
    pub fn try_start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, StartFailure> {
        let mut child = command(data_dir, extra, env).spawn().expect("spawn tidepool");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => Ok(Daemon { child, url, data_dir: data_dir.to_path_buf(), stderr }),
            Err(_) => {
                let status = wait_timeout(&mut child, Duration::from_secs(5));
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                std::thread::sleep(Duration::from_millis(100));
                let stderr = stderr.lock().unwrap().clone();
                Err(StartFailure { status, stderr })
            }
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything logged on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Send SIGTERM.
    pub fn sigterm(&self) {
        let ok =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM failed");
    }

    /// Wait for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// SIGTERM and wait; panics unless it exits within 20 s.
    pub fn stop(mut self) -> ExitStatus {
        self.sigterm();
        self.wait(Duration::from_secs(20)).expect("daemon did not exit after SIGTERM")
    }

    /// `url` + path.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client with default settings (sends `Accept-Encoding: gzip`).
pub fn client() -> reqwest::Client {
    tidepool::tls::client_builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A response's status and JSON body.
pub async fn json_of(resp: reqwest::Response) -> (u16, Json) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body ({e}): {text}"));
    (status, body)
}

/// POST JSON and return status + body.
pub async fn post(c: &reqwest::Client, url: &str, body: &Json) -> (u16, Json) {
    json_of(c.post(url).json(body).send().await.unwrap()).await
}

/// GET and return status + body.
pub async fn get(c: &reqwest::Client, url: &str) -> (u16, Json) {
    json_of(c.get(url).send().await.unwrap()).await
}

/// A daemon syncing to `s3://{bucket}/sync` through `endpoint` with the `[sync]` namespace rules
/// `rules`, as node `id` (rounds only on demand; short timeouts so a cut uplink fails fast).
pub fn sync_node(dir: &Path, bucket: &str, endpoint: &str, id: &str, rules: &str, extra: &[&str]) -> Daemon {
    let remote = format!("s3://{bucket}/sync");
    let mut args = vec![
        "--sync-remote",
        &remote,
        "--sync-endpoint",
        endpoint,
        "--sync-allow-http",
        "--sync-access-key-id",
        "test",
        "--sync-secret-access-key",
        "test",
        "--sync-node-id",
        id,
        "--sync-namespaces",
        rules,
        "--sync-interval-secs",
        "3600",
        "--sync-connect-timeout-secs",
        "1",
        "--sync-request-timeout-secs",
        "2",
    ];
    args.extend_from_slice(extra);
    Daemon::start(dir, &args)
}

/// Every segment file under `dir` (by its magic; a cache's copies included).
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.starts_with(b"TIDE.SEG")) {
                out.push(p);
            }
        }
    }
    out
}

/// The file offset of the middle of the stored block holding `row` (doc blocks, kind 5: a
/// header of 8 bytes, 32-byte entries — offset u64, first_row u32, stored_len u32, ... — then
/// the stored blocks).
pub fn offset_in_block(seg: &[u8], row: u64) -> u64 {
    let (sec, _) = section(seg, 5);
    let u32_at = |at: usize| u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
    let blocks = u32_at(sec);
    let entry = |i: usize| sec + 8 + 32 * i;
    let block = (0..blocks).rev().find(|&i| u32_at(entry(i) + 8) as u64 <= row).expect("a block");
    let offset = u64::from_le_bytes(seg[entry(block)..entry(block) + 8].try_into().unwrap()) as usize;
    (sec + 8 + 32 * blocks + offset + u32_at(entry(block) + 12) / 2) as u64
}

/// `(offset, len)` of the first section of `kind` (the segment's section table, 8.3).
pub fn section(seg: &[u8], kind: u16) -> (usize, usize) {
    let le64 = |at: usize| u64::from_le_bytes(seg[at..at + 8].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(seg[28..32].try_into().unwrap()) as usize;
    let table = le64(32);
    (0..count)
        .map(|i| table + 24 * i)
        .find(|&e| u16::from_le_bytes(seg[e..e + 2].try_into().unwrap()) == kind)
        .map(|e| (le64(e + 8), le64(e + 16)))
        .unwrap_or_else(|| panic!("no section of kind {kind}"))
}

/// An engine over a local store in `dir` whose compactions run only when a test asks (no
/// automatic compaction): a test then decides how many segments a namespace holds.
pub async fn engine_compacting_by_hand(dir: &Path) -> Arc<tidepool::engine::Engine> {
    use tidepool::engine::{CompactionConfig, Engine, EngineConfig};
    let store = tidepool::store::Store::local(&dir.join("store")).unwrap();
    let mut cfg = EngineConfig::new(dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}
