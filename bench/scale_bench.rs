//! Scale benchmark (issue 16 item 2): N × 384-d cosine vectors (default 1,000,000), real-embedding-like,
//! through the shipped daemon over HTTP, as a user would run it on a 2-core node.
//!
//! **Data.** Row `i` is `normalize(debian[i % 36000] + sigma * g(i))`: `debian` is
//! `../shared/data/debian/vectors.f32` (36,000 × 384 f32 LE, unit length, all-MiniLM-L6-v2), `g(i)` a
//! vector of 384 i.i.d. standard normals from SplitMix64 (state seeded from `--seed` and `i`, so any row
//! or chunk is regenerated alone) through Box–Muller, and `sigma = --noise / sqrt(384)`, so the noise
//! vector's norm is about `--noise` (default 0.6) times the base vector's (1). Why 0.6: at 1M rows each
//! Debian vector has ~28 noisy copies. Two copies of one base have cosine ≈ 1 / (1 + 0.6²) = 0.74 and a
//! copy is at cosine ≈ 0.86 from its base, which is about the cosine between a Debian vector and its
//! real nearest neighbour (the run reports that median as `data.debian_nn_cos_median`, ~0.8), so a
//! query's neighbourhood mixes copies of several documents instead of being 36k tight clusters of
//! near-duplicates (noise 0.1 would make the top 10 the copies of one document, trivial for any
//! index); much more noise (≥ 1) would drown the embedding structure in isotropic noise, which real
//! embeddings do not have. `data.*` in the output reports the sibling cosine and how many distinct
//! base documents the exact top 10 holds (`gt_distinct_bases_mean`). One small attribute per row:
//! `cat = i % 100`.
//!
//! **Phases** (the daemon, `tidepool serve` of `--binary`, runs alone as a child process on a fresh
//! data dir with default settings; its `/proc/<pid>/status` is sampled every 200 ms on a thread:
//! VmRSS, RssAnon, RssFile, VmHWM, peaks per phase):
//! 0. prepare (before the daemon starts, not measured): generate the rows batch by batch on 2
//!    threads, fold each batch into the exact top-10 of every query (brute-force cosine) and write
//!    the encoded request bodies to a spool file in the temp dir, so sending costs the client almost
//!    no CPU while the daemon is measured. The process never holds more than a few batches of rows.
//! 1. ingest: `--rows` rows in `--batch`-row requests (`upsert_columns`, vectors base64 f32 LE,
//!    `distance_metric: cosine_distance`) over `--conns` HTTP/1.1 keep-alive connections; a 429 is
//!    retried after 100 ms and counted. docs/s from the first send to the last acknowledgement.
//! 2. catch-up: poll `GET /v2/namespaces/{ns}/metadata` every 500 ms from the last acknowledged write
//!    until `index.status` is `up-to-date` (or `--catchup-timeout`); then the segments on disk
//!    (`*/segments/*/*.seg`, count and bytes).
//! 3. warm queries: `--queries` Debian dev query vectors (`queries/query_vectors.f32`),
//!    `rank_by: ["vector", "ANN", q], top_k: 10`, default settings; each once to warm, then measured
//!    sequentially on one connection: p50, p99, QPS, recall@10 against the exact top 10; steady
//!    RSS 2 s after.
//! 4. cold: SIGTERM, restart on the same data dir (the OS page cache stays warm: this is a process
//!    restart, not an empty disk cache), time to `/ready`, first-query latency (a new connection),
//!    p50/p99 of the next `--cold-queries`.
//! 5. by target (after every memory figure): the dev queries at `ann.target_recall` 0.9, 0.95 and
//!    0.98, with `explain_query`'s plan of the first (each segment's effort and calibrated recall):
//!    how the stored calibration tracks queries from outside the segments.
//!
//! Output: one JSON object on stdout with every figure, memory and sizes also as a ratio of the raw
//! vector bytes (`N * 384 * 4`), and the issue's targets with pass/fail (also printed on stderr).
//!
//! **Under a cap** (`--cgroup-mib M`, as root): the daemon runs in a memory cgroup of M MiB, the 8 GB
//! node of issue 36 in proportion (819 MiB for 1M rows); the output adds the cgroup's peak usage and
//! OOM kills, and `targets_issue36` checks that issue's figures (peak ≤ 0.5× raw, serving ≤ 0.25×,
//! up-to-date within 60 min × N / 10M, ingest ≥ 20k docs/s, recall ≥ 0.95, p50 ≤ 10 ms, p99 ≤ 50 ms,
//! data dir ≤ 1.5× raw).
//!
//! `bench/scale.sh [--rows N] [...]` builds the release daemon and this example and runs it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Parser;
use serde_json::{json, Value as Json};

const DIM: usize = 384;
const K: usize = 10;
const NS: &str = "scale";
const GIB: f64 = (1u64 << 30) as f64;

#[derive(Parser, Debug, Clone)]
#[command(about = "1M-vector scale benchmark of the tidepool daemon (issue 16 item 2)")]
struct Args {
    /// Rows to ingest.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per write request.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Concurrent HTTP/1.1 keep-alive connections during ingest.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Warm queries (Debian dev queries, at most 500).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Queries timed after the first one on the restarted daemon.
    #[arg(long, default_value_t = 50)]
    cold_queries: usize,
    /// Seconds to wait for `up-to-date` after the last write.
    #[arg(long, default_value_t = 3600)]
    catchup_timeout: u64,
    /// Noise norm relative to the base vector's norm (sigma = noise / sqrt(384)).
    #[arg(long, default_value_t = 0.6)]
    noise: f64,
    /// Generator seed.
    #[arg(long, default_value_t = 16)]
    seed: u64,
    /// The daemon binary (bench/scale.sh passes $CARGO_TARGET_DIR/release/tidepool).
    #[arg(long, default_value = "target/release/tidepool")]
    binary: PathBuf,
    /// The Debian corpus directory (default: `../shared/data/debian`, or `../../shared/data/debian`
    /// from a worktree under `wt/`).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Parent of the temporary directory (data dir, spool file, daemon log).
    #[arg(long)]
    tmp_parent: Option<PathBuf>,
    /// Keep the temporary directory (its path is in the output).
    #[arg(long)]
    keep: bool,
    /// Run the daemon inside a memory cgroup capped at this many MiB (issue 36: 8 GiB for 10M rows,
    /// 819 MiB for 1M). Needs root; creates and removes `tidepool-scale` under the memory controller
    /// (v2 `memory.max`, v1 `memory.limit_in_bytes`). The daemon derives its budget from the cap.
    #[arg(long)]
    cgroup_mib: Option<u64>,
    /// An extra argument for `tidepool serve` (repeat for more), e.g. `--serve-arg=--graph-codes=rabitq4`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// After the cold phase: the warm queries again, alternating daemons with the per-segment
    /// search of before stop 46 (`TIDEPOOL_ANN_PER_SEGMENT=1`) and the default (`scale_ab.rs`).
    #[arg(long)]
    ab_per_segment: bool,
}

#[path = "scale_ab.rs"]
mod scale_ab;

// ---------------------------------------------------------------- cgroup

/// A memory cgroup the daemon runs in (`--cgroup-mib`), removed on drop.
struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    fn create(mib: u64) -> Cgroup {
        let limit = (mib << 20).to_string();
        let unified = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        let v2 = unified.split_whitespace().any(|c| c == "memory");
        let dir = PathBuf::from(if v2 {
            "/sys/fs/cgroup/tidepool-scale"
        } else {
            "/sys/fs/cgroup/memory/tidepool-scale"
        });
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create {} (run as root): {e}", dir.display()));
        let (limit_file, swap_file) = if v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        std::fs::write(dir.join(limit_file), &limit).unwrap();
        // No swap: the cap is the memory an 8 GB node has (v1 memsw exists only with swap accounting).
        let _ = std::fs::write(dir.join(swap_file), if v2 { "0" } else { limit.as_str() });
        Cgroup { dir, v2 }
    }

    /// `sh` puts itself in the cgroup, then becomes the daemon (same pid).
    fn wrap(&self, binary: &Path) -> Command {
        let mut cmd = Command::new("sh");
        let procs = self.dir.join("cgroup.procs");
        cmd.arg("-c").arg(format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display())).arg(binary);
        cmd
    }

    fn read(&self, file: &str, key: Option<&str>) -> u64 {
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        match key {
            None => text.trim().parse().unwrap_or(0),
            Some(k) => text.lines().find_map(|l| l.strip_prefix(k)?.trim().parse().ok()).unwrap_or(0),
        }
    }

    /// Peak usage (page cache included) and OOM kills since creation.
    fn report(&self) -> Json {
        let (peak, kills) = if self.v2 {
            (self.read("memory.peak", None), self.read("memory.events", Some("oom_kill ")))
        } else {
            (self.read("memory.max_usage_in_bytes", None), self.read("memory.oom_control", Some("oom_kill ")))
        };
        json!({"dir": self.dir, "v2": self.v2, "peak_usage_bytes": peak, "oom_kills": kills})
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

// ---------------------------------------------------------------- generator

/// SplitMix64: a tiny, well-mixed PRNG; one stream per row.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The deterministic row generator (see the module header).
struct Generator {
    base: Vec<f32>,
    base_rows: usize,
    sigma: f64,
    seed: u64,
}

impl Generator {
    fn new(corpus: &Path, noise: f64, seed: u64) -> Generator {
        let base = read_f32(&corpus.join("vectors.f32"));
        assert!(base.len().is_multiple_of(DIM) && !base.is_empty(), "vectors.f32 is not N x {DIM}");
        Generator { base_rows: base.len() / DIM, base, sigma: noise / (DIM as f64).sqrt(), seed }
    }

    fn base_of(&self, i: u64) -> usize {
        (i % self.base_rows as u64) as usize
    }

    fn base_row(&self, b: usize) -> &[f32] {
        &self.base[b * DIM..(b + 1) * DIM]
    }

    /// Row `i` into `out` (length DIM), unit length.
    fn row(&self, i: u64, out: &mut [f32]) {
        let mut rng = SplitMix(self.seed ^ (i.wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let base = self.base_row(self.base_of(i));
        for (pair, b) in out.chunks_exact_mut(2).zip(base.chunks_exact(2)) {
            // Box–Muller: two independent standard normals per two uniforms.
            let r = (-2.0 * rng.unit().ln()).sqrt();
            let theta = std::f64::consts::TAU * rng.unit();
            pair[0] = (b[0] as f64 + self.sigma * r * theta.cos()) as f32;
            pair[1] = (b[1] as f64 + self.sigma * r * theta.sin()) as f32;
        }
        normalize(out);
    }
}

fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// f32 dot product with 8 independent accumulators (vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 =
        a.chunks_exact(8).remainder().iter().zip(b.chunks_exact(8).remainder()).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

fn read_f32(path: &Path) -> Vec<f32> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

// ---------------------------------------------------------------- exact ground truth

/// The best K (cosine, id) of one query, best first.
#[derive(Clone)]
struct TopK(Vec<(f32, u64)>);

impl TopK {
    fn new() -> TopK {
        TopK(Vec::with_capacity(K + 1))
    }

    fn offer(&mut self, score: f32, id: u64) {
        if self.0.len() == K && score <= self.0[K - 1].0 {
            return;
        }
        let at = self.0.partition_point(|&(s, _)| s >= score);
        self.0.insert(at, (score, id));
        self.0.truncate(K);
    }

    fn merge(&mut self, other: &TopK) {
        for &(s, id) in &other.0 {
            self.offer(s, id);
        }
    }
}

// ---------------------------------------------------------------- prepare: rows → GT + spool

/// One encoded write request in the spool file.
struct Spooled {
    offset: u64,
    len: usize,
    rows: usize,
}

/// Rows `[start, start + n)`: their exact-top-K contribution and the request body.
fn prepare_batch(g: &Generator, queries: &[f32], start: u64, n: usize, top: &mut [TopK]) -> Vec<u8> {
    let mut rows = vec![0f32; n * DIM];
    for (r, out) in rows.chunks_exact_mut(DIM).enumerate() {
        g.row(start + r as u64, out);
    }
    for (r, row) in rows.chunks_exact(DIM).enumerate() {
        for (q, t) in queries.chunks_exact(DIM).zip(top.iter_mut()) {
            t.offer(dot(row, q), start + r as u64);
        }
    }
    encode_body(start, &rows)
}

/// `{"upsert_columns": {"id": [...], "vector": ["<base64 f32 LE>", ...], "cat": [...]}, ...}`.
fn encode_body(start: u64, rows: &[f32]) -> Vec<u8> {
    let n = rows.len() / DIM;
    let ids: Vec<u64> = (start..start + n as u64).collect();
    let mut out = Vec::with_capacity(n * (DIM * 4 * 4 / 3 + 40) + 256);
    out.extend_from_slice(b"{\"upsert_columns\":{\"id\":");
    serde_json::to_writer(&mut out, &ids).unwrap();
    out.extend_from_slice(b",\"vector\":[");
    let mut bytes = Vec::with_capacity(DIM * 4);
    for (r, row) in rows.chunks_exact(DIM).enumerate() {
        bytes.clear();
        row.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        if r > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(&bytes).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"cat\":");
    serde_json::to_writer(&mut out, &ids.iter().map(|i| i % 100).collect::<Vec<_>>()).unwrap();
    out.extend_from_slice(b"},\"distance_metric\":\"cosine_distance\"}");
    out
}

/// Generates every batch on 2 threads (two batches per round, written in order), returns the
/// spool index and each query's exact top K.
fn prepare(args: &Args, g: &Generator, queries: &[f32], spool: &mut File) -> (Vec<Spooled>, Vec<TopK>) {
    let nq = queries.len() / DIM;
    let batches: Vec<(u64, usize)> =
        (0..args.rows).step_by(args.batch).map(|s| (s as u64, args.batch.min(args.rows - s))).collect();
    let mut tops = [vec![TopK::new(); nq], vec![TopK::new(); nq]];
    let mut index = Vec::with_capacity(batches.len());
    let mut offset = 0u64;
    let started = Instant::now();
    for (round, pair) in batches.chunks(2).enumerate() {
        let bodies: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = pair
                .iter()
                .zip(tops.iter_mut())
                .map(|(&(start, n), top)| s.spawn(move || prepare_batch(g, queries, start, n, top)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (body, &(_, n)) in bodies.iter().zip(pair) {
            spool.write_all(body).unwrap();
            index.push(Spooled { offset, len: body.len(), rows: n });
            offset += body.len() as u64;
        }
        if round % 20 == 19 {
            eprintln!(
                "prepare: {} / {} rows ({:.0} s)",
                index.iter().map(|s| s.rows).sum::<usize>(),
                args.rows,
                started.elapsed().as_secs_f64()
            );
        }
    }
    spool.flush().unwrap();
    let [mut a, b] = tops;
    a.iter_mut().zip(&b).for_each(|(x, y)| x.merge(y));
    (index, a)
}

/// Figures about the generated data (why the noise level is what it is).
fn data_stats(g: &Generator, gt: &[TopK]) -> Json {
    // Real nearest-neighbour cosine among the Debian vectors, on a sample of 500.
    let sample: Vec<usize> = (0..500).map(|k| k * g.base_rows / 500).collect();
    let mut nn: Vec<f32> = std::thread::scope(|s| {
        let halves: Vec<_> = sample
            .chunks(sample.len().div_ceil(2))
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&a| {
                            (0..g.base_rows)
                                .filter(|&b| b != a)
                                .map(|b| dot(g.base_row(a), g.base_row(b)))
                                .fold(f32::MIN, f32::max)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    nn.sort_by(f32::total_cmp);
    // Two noisy copies of one base, and a copy against its base.
    let (mut sib, mut to_base) = (0f64, 0f64);
    let (mut a, mut b) = (vec![0f32; DIM], vec![0f32; DIM]);
    let pairs = 1000u64;
    for k in 0..pairs {
        g.row(k, &mut a);
        g.row(k + g.base_rows as u64, &mut b);
        sib += dot(&a, &b) as f64;
        to_base += dot(&a, g.base_row(g.base_of(k))) as f64;
    }
    let distinct: f64 = gt
        .iter()
        .map(|t| t.0.iter().map(|&(_, id)| g.base_of(id)).collect::<HashSet<_>>().len() as f64)
        .sum::<f64>()
        / gt.len() as f64;
    json!({
        "generator": "row i = normalize(debian[i % 36000] + sigma * N(0, I)), SplitMix64 + Box-Muller seeded by (seed, i)",
        "noise_norm_ratio": g.sigma * (DIM as f64).sqrt(),
        "sigma": g.sigma,
        "debian_nn_cos_median": nn[nn.len() / 2],
        "debian_nn_cos_p10": nn[nn.len() / 10],
        "sibling_cos_mean": sib / pairs as f64,
        "copy_to_base_cos_mean": to_base / pairs as f64,
        "gt_distinct_bases_mean": distinct,
    })
}

// ---------------------------------------------------------------- the daemon

struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    /// Spawns `serve` on a free loopback port and waits for /ready; returns it and the seconds
    /// from spawn to ready.
    fn start(
        rt: &tokio::runtime::Runtime,
        binary: &Path,
        (cgroup, extra, env): (Option<&Cgroup>, &[String], &[(&str, &str)]),
        data_dir: &Path,
        log: &Path,
    ) -> (Daemon, f64) {
        let t0 = Instant::now();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut cmd = cgroup.map_or_else(|| Command::new(binary), |c| c.wrap(binary));
        cmd.arg("serve").arg("--data-dir").arg(data_dir).args(["--listen", "127.0.0.1:0"]).args(extra);
        for (k, _) in std::env::vars() {
            if k.starts_with("TIDEPOOL_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.env("TIDEPOOL_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout for the daemon's life.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the daemon did not announce its address (see its log)")
        });
        let d = Daemon { child, url };
        let c = reqwest::Client::new();
        rt.block_on(async {
            loop {
                if let Ok(r) = c.get(format!("{}/ready", d.url)).send().await {
                    if r.status() == 200 {
                        break;
                    }
                }
                assert!(t0.elapsed() < Duration::from_secs(600), "not ready after 600 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        (d, t0.elapsed().as_secs_f64())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (a kill after 300 s).
    fn stop(mut self) -> f64 {
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        while t0.elapsed() < Duration::from_secs(300) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return t0.elapsed().as_secs_f64();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        f64::NAN
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

// ---------------------------------------------------------------- memory sampler

/// One `/proc/<pid>/status` reading, bytes.
#[derive(Clone, Copy, Default, Debug)]
struct Mem {
    vm_rss: u64,
    rss_anon: u64,
    rss_file: u64,
    vm_hwm: u64,
}

fn read_mem(pid: u32) -> Option<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut m = Mem::default();
    for line in text.lines() {
        let field = |name: &str| {
            line.strip_prefix(name)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|kib| kib * 1024)
        };
        if let Some(v) = field("VmRSS:") {
            m.vm_rss = v;
        } else if let Some(v) = field("RssAnon:") {
            m.rss_anon = v;
        } else if let Some(v) = field("RssFile:") {
            m.rss_file = v;
        } else if let Some(v) = field("VmHWM:") {
            m.vm_hwm = v;
        }
    }
    Some(m)
}

/// Where the file-backed resident memory is: the mapped files with the most
/// resident bytes (`/proc/<pid>/smaps`, summed per path), largest first.
fn resident_files(pid: u32, top: usize) -> Json {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return json!(null) };
    let mut by_path: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut path: Option<String> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping header: address perms offset dev inode [path].
            path = f.nth(4).filter(|p| p.starts_with('/')).map(str::to_owned);
        } else if let (Some(p), "Rss:") = (&path, first) {
            let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by_path.entry(p.clone()).or_default() += kib * 1024;
        }
    }
    let mut v: Vec<(String, u64)> = by_path.into_iter().filter(|(_, b)| *b > 0).collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    let total: u64 = v.iter().map(|(_, b)| b).sum();
    let files: Vec<Json> = v.iter().take(top).map(|(p, b)| json!({"path": p, "resident_bytes": b})).collect();
    json!({"total_bytes": total, "mapped_files": v.len(), "largest": files})
}

/// The process's user + system CPU seconds (`/proc/<pid>/stat`, USER_HZ = 100).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(14) + ticks(15)) / 100.0
}

#[derive(Default)]
struct SamplerState {
    pid: u32,
    peak: Mem,
    last: Mem,
    samples: u64,
}

/// Samples the daemon's memory every 200 ms; peaks are per phase ([`Sampler::phase_peak`]).
struct Sampler {
    state: Arc<Mutex<SamplerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn new(pid: u32) -> Sampler {
        let state = Arc::new(Mutex::new(SamplerState { pid, ..Default::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let pid = s.lock().unwrap().pid;
                if let Some(m) = read_mem(pid) {
                    let mut g = s.lock().unwrap();
                    if g.pid == pid {
                        g.peak.vm_rss = g.peak.vm_rss.max(m.vm_rss);
                        g.peak.rss_anon = g.peak.rss_anon.max(m.rss_anon);
                        g.peak.rss_file = g.peak.rss_file.max(m.rss_file);
                        g.peak.vm_hwm = g.peak.vm_hwm.max(m.vm_hwm);
                        g.last = m;
                        g.samples += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Sampler { state, stop, thread: Some(thread) }
    }

    /// The peaks since the previous call (one last reading included), then a new phase.
    fn phase_peak(&self) -> (Mem, u64) {
        let pid = self.state.lock().unwrap().pid;
        let now = read_mem(pid);
        let mut g = self.state.lock().unwrap();
        let mut p = g.peak;
        if let Some(m) = now {
            p.vm_rss = p.vm_rss.max(m.vm_rss);
            p.rss_anon = p.rss_anon.max(m.rss_anon);
            p.rss_file = p.rss_file.max(m.rss_file);
            p.vm_hwm = p.vm_hwm.max(m.vm_hwm);
        }
        let n = g.samples;
        g.peak = Mem::default();
        g.samples = 0;
        (p, n)
    }

    fn set_pid(&self, pid: u32) {
        let mut g = self.state.lock().unwrap();
        *g = SamplerState { pid, ..Default::default() };
    }

    fn current(&self) -> Mem {
        read_mem(self.state.lock().unwrap().pid).unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mem_json(m: Mem, raw: f64, samples: Option<u64>) -> Json {
    let mut j = json!({
        "vm_rss_bytes": m.vm_rss,
        "rss_anon_bytes": m.rss_anon,
        "rss_file_bytes": m.rss_file,
        "vm_hwm_bytes": m.vm_hwm,
        "vm_rss_over_raw": ratio(m.vm_rss as f64, raw),
        "rss_anon_over_raw": ratio(m.rss_anon as f64, raw),
    });
    if let Some(n) = samples {
        j["samples"] = json!(n);
    }
    j
}

fn ratio(x: f64, raw: f64) -> f64 {
    (x / raw * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------- phases

fn ingest(rt: &tokio::runtime::Runtime, args: &Args, url: &str, spool: &Path, index: &[Spooled]) -> Json {
    let next = Arc::new(AtomicUsize::new(0));
    let retries_429 = Arc::new(AtomicU64::new(0));
    let spool = Arc::new(File::open(spool).unwrap());
    let index: Arc<Vec<(u64, usize)>> = Arc::new(index.iter().map(|s| (s.offset, s.len)).collect());
    let t0 = Instant::now();
    let latencies: Vec<f64> = rt.block_on(async {
        let tasks: Vec<_> = (0..args.conns)
            .map(|_| {
                let (next, retries, spool, index) =
                    (next.clone(), retries_429.clone(), spool.clone(), index.clone());
                let endpoint = format!("{url}/v2/namespaces/{NS}");
                tokio::spawn(async move {
                    // One client per task: its own keep-alive connection.
                    let c = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .timeout(Duration::from_secs(600))
                        .build()
                        .unwrap();
                    let mut lat = Vec::new();
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(offset, len)) = index.get(b) else { break };
                        let mut body = vec![0u8; len];
                        spool.read_exact_at(&mut body, offset).unwrap();
                        let body = bytes::Bytes::from(body);
                        loop {
                            let t = Instant::now();
                            let r = c
                                .post(&endpoint)
                                .header("content-type", "application/json")
                                .body(body.clone())
                                .send()
                                .await
                                .unwrap_or_else(|e| panic!("write batch {b}: {e:?}"));
                            let status = r.status().as_u16();
                            let text = r.text().await.unwrap_or_default();
                            match status {
                                200 => {
                                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                                    break;
                                }
                                429 => {
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                                _ => panic!("write batch {b}: HTTP {status}: {text}"),
                            }
                        }
                        if b % 20 == 19 {
                            eprintln!("ingest: {} batches acknowledged or in flight", b + 1);
                        }
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let secs = t0.elapsed().as_secs_f64();
    json!({
        "seconds": secs,
        "docs_per_s": args.rows as f64 / secs,
        "requests": latencies.len(),
        "retries_429": retries_429.load(Ordering::Relaxed),
        "request_ms_p50": percentile(&latencies, 50.0),
        "request_ms_p99": percentile(&latencies, 99.0),
        "request_ms_max": percentile(&latencies, 100.0),
        "spool_bytes": index.iter().map(|&(_, l)| l as u64).sum::<u64>(),
    })
}

/// Seconds of daemon CPU below which a minute of `updating` counts as a stall.
const STALL_CPU_S: f64 = 0.5;
const STALL_WINDOW_S: f64 = 60.0;

/// How the index caught up.
struct CatchUp {
    /// Seconds from the last acknowledged write to `up-to-date` on its own (None: it did not).
    seconds: Option<f64>,
    /// Gave up after `--catchup-timeout`.
    timed_out: bool,
    /// Seconds after which the daemon sat idle (no CPU) with rows still unindexed.
    stalled_at: Option<f64>,
    /// After a stall: the forced `_admin/compact` response and its seconds.
    forced: Option<(Json, f64)>,
    metadata: Json,
    /// `[seconds, unindexed_rows]`, every ~10 s.
    timeline: Vec<Json>,
}

/// Polls the metadata every 500 ms until `up-to-date`. When the daemon spends a minute with rows
/// unindexed and (almost) no CPU, background indexing has stopped: that is reported as a stall and
/// `_admin/compact` is called, so the query phases still measure an indexed namespace.
fn catch_up(rt: &tokio::runtime::Runtime, url: &str, pid: u32, timeout: u64) -> CatchUp {
    let t0 = Instant::now();
    let c = reqwest::Client::builder().timeout(Duration::from_secs(timeout.max(600))).build().unwrap();
    let endpoint = format!("{url}/v2/namespaces/{NS}/metadata");
    let mut out = CatchUp {
        seconds: None,
        timed_out: false,
        stalled_at: None,
        forced: None,
        metadata: Json::Null,
        timeline: Vec::new(),
    };
    let mut last_mark = -1i64;
    let mut window = (0.0, cpu_seconds(pid), u64::MAX);
    rt.block_on(async {
        loop {
            let md: Json = c.get(&endpoint).send().await.unwrap().json().await.unwrap();
            let t = t0.elapsed().as_secs_f64();
            let status = md["index"]["status"].as_str().unwrap_or("?").to_owned();
            let unindexed = md["index"]["unindexed_rows"].as_u64().unwrap_or(0);
            out.metadata = md;
            if (t / 10.0) as i64 > last_mark || status == "up-to-date" {
                last_mark = (t / 10.0) as i64;
                out.timeline.push(json!([(t * 10.0).round() / 10.0, unindexed]));
                eprintln!("catch-up: {t:.0} s: {status}, {unindexed} unindexed rows");
            }
            if status == "up-to-date" {
                if out.stalled_at.is_none() {
                    out.seconds = Some(t);
                }
                return;
            }
            if t > timeout as f64 {
                out.timed_out = true;
                return;
            }
            let cpu = cpu_seconds(pid);
            if unindexed != window.2 {
                window = (t, cpu, unindexed);
            } else if t - window.0 >= STALL_WINDOW_S {
                if cpu - window.1 < STALL_CPU_S && out.stalled_at.is_none() {
                    out.stalled_at = Some(window.0);
                    eprintln!("catch-up: STALL: {unindexed} rows unindexed, daemon idle since {:.0} s; forcing _admin/compact", window.0);
                    let f = Instant::now();
                    let r = c.post(format!("{url}/v1/namespaces/{NS}/_admin/compact")).json(&json!({})).send().await;
                    let body = match r {
                        Ok(r) => r.json::<Json>().await.unwrap_or(Json::Null),
                        Err(e) => json!(format!("{e:?}")),
                    };
                    out.forced = Some((body, f.elapsed().as_secs_f64()));
                }
                window = (t, cpu, unindexed);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    out
}

/// Segment files (`.../segments/<id>/*.seg`) and everything under the data dir, bytes.
fn disk_usage(data_dir: &Path) -> (usize, u64, u64) {
    let (mut segs, mut seg_bytes, mut total) = (0usize, 0u64, 0u64);
    let mut stack = vec![data_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
                continue;
            }
            total += meta.len();
            let p = e.path();
            let in_segments = p.parent().and_then(|d| d.parent()).is_some_and(|d| d.ends_with("segments"));
            if in_segments && p.extension().is_some_and(|x| x == "seg") {
                segs += 1;
                seg_bytes += meta.len();
            }
        }
    }
    (segs, seg_bytes, total)
}

/// The daemon's cache-tier and WAL-backlog gauges from `/metrics` (where memory goes).
fn memory_gauges(rt: &tokio::runtime::Runtime, url: &str) -> Json {
    let text = rt.block_on(async {
        let r = reqwest::Client::new().get(format!("{url}/metrics")).send().await.ok()?;
        r.text().await.ok()
    });
    let lines: Vec<&str> = text
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.starts_with('#') && (l.contains("cache_bytes") || l.contains("wal_backlog_bytes")))
        .collect();
    json!(lines)
}

/// What the daemon's log says: its compactions (`HH:MM:SS rows=… segments=… merged=…`, first 100) and
/// how many WARN / ERROR lines it wrote.
fn log_summary(log: &Path) -> Json {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut compactions = Vec::new();
    let (mut compacted, mut warn, mut error) = (0usize, 0usize, 0usize);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (time, level) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match level {
            "WARN" => warn += 1,
            "ERROR" => error += 1,
            _ => {}
        }
        if line.contains("engine::compact: compacted ") {
            compacted += 1;
            if compactions.len() < 100 {
                let fields: Vec<&str> = line
                    .split_whitespace()
                    .filter(|w| ["rows=", "segments=", "merged="].iter().any(|p| w.starts_with(p)))
                    .collect();
                compactions.push(format!("{} {}", time.get(11..19).unwrap_or(time), fields.join(" ")));
            }
        }
    }
    json!({"compactions": compacted, "compaction_lines": compactions, "warn_lines": warn, "error_lines": error})
}

/// One ANN query: latency (ms) and the returned ids.
async fn query(c: &reqwest::Client, url: &str, q: &[f32]) -> (f64, Vec<u64>) {
    query_at(c, url, q, None).await
}

/// One ANN query at a target recall (`None`: the namespace's default).
async fn query_at(c: &reqwest::Client, url: &str, q: &[f32], target: Option<f64>) -> (f64, Vec<u64>) {
    let mut body = json!({"rank_by": ["vector", "ANN", q], "top_k": K});
    if let Some(t) = target {
        body["ann"] = json!({"target_recall": t});
    }
    let t = Instant::now();
    let r = c.post(format!("{url}/v2/namespaces/{NS}/query")).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "query: {text}");
    let v: Json = serde_json::from_str(&text).unwrap();
    let ids = v["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    (ms, ids)
}

fn recall(gt: &TopK, got: &[u64]) -> f64 {
    let want: HashSet<u64> = gt.0.iter().map(|&(_, id)| id).collect();
    got.iter().take(K).filter(|id| want.contains(id)).count() as f64 / K as f64
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let at = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    (v[at.min(v.len() - 1)] * 1000.0).round() / 1000.0
}

fn warm_queries(rt: &tokio::runtime::Runtime, url: &str, queries: &[f32], gt: &[TopK]) -> Json {
    let c = reqwest::Client::new();
    rt.block_on(async {
        for q in queries.chunks_exact(DIM) {
            query(&c, url, q).await;
        }
        let t0 = Instant::now();
        let mut lat = Vec::new();
        let mut rec = 0.0;
        for (q, g) in queries.chunks_exact(DIM).zip(gt) {
            let (ms, ids) = query(&c, url, q).await;
            lat.push(ms);
            rec += recall(g, &ids);
        }
        let secs = t0.elapsed().as_secs_f64();
        json!({
            "queries": lat.len(),
            "p50_ms": percentile(&lat, 50.0),
            "p99_ms": percentile(&lat, 99.0),
            "qps": lat.len() as f64 / secs,
            "recall_at_10": rec / lat.len() as f64,
        })
    })
}

fn cold_queries(rt: &tokio::runtime::Runtime, url: &str, queries: &[f32], gt: &[TopK], n: usize) -> Json {
    let c = reqwest::Client::new();
    rt.block_on(async {
        let (first_ms, first_ids) = query(&c, url, &queries[..DIM]).await;
        let mut lat = Vec::new();
        let mut rec = recall(&gt[0], &first_ids);
        let nq = queries.len() / DIM;
        for k in 1..=n {
            let q = k % nq;
            let (ms, ids) = query(&c, url, &queries[q * DIM..(q + 1) * DIM]).await;
            lat.push(ms);
            rec += recall(&gt[q], &ids);
        }
        json!({
            "first_query_ms": first_ms,
            "next_queries": lat.len(),
            "next_p50_ms": percentile(&lat, 50.0),
            "next_p99_ms": percentile(&lat, 99.0),
            "recall_at_10": rec / (lat.len() + 1) as f64,
        })
    })
}

/// Per target recall: what each segment's calibration chose (`explain_query` of the first
/// query) and the recall@10 the dev queries got — how the stored calibration tracks queries
/// from outside the segments.
fn by_target(rt: &tokio::runtime::Runtime, url: &str, queries: &[f32], gt: &[TopK]) -> Json {
    let c = reqwest::Client::new();
    rt.block_on(async {
        let mut out = Vec::new();
        for t in [0.9, 0.95, 0.98] {
            let body = json!({"rank_by": ["vector", "ANN", &queries[..DIM]], "top_k": K, "ann": {"target_recall": t}});
            let r = c.post(format!("{url}/v2/namespaces/{NS}/explain_query")).json(&body).send().await.unwrap();
            let plan: Json = r.json().await.unwrap();
            let mut rec = 0.0;
            for (q, g) in queries.chunks_exact(DIM).zip(gt) {
                rec += recall(g, &query_at(&c, url, q, Some(t)).await.1);
            }
            let recall_at_10 = rec / gt.len() as f64;
            eprintln!("target {t}: recall@10 {recall_at_10:.3}");
            out.push(json!({"target_recall": t, "recall_at_10": recall_at_10, "plan": plan["plan_text"]}));
        }
        Json::Array(out)
    })
}

fn target(name: &str, value: f64, limit: f64, at_most: bool) -> Json {
    let pass = value.is_finite() && if at_most { value <= limit } else { value >= limit };
    eprintln!(
        "target {name}: {value:.3} ({} {limit}) {}",
        if at_most { "<=" } else { ">=" },
        if pass { "PASS" } else { "FAIL" }
    );
    json!({"value": value, "limit": limit, "at_most": at_most, "pass": pass})
}

fn main() {
    let args = Args::parse();
    assert!(args.rows > 0 && args.batch > 0 && args.conns > 0 && args.queries > 0);
    let raw = (args.rows * DIM * 4) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tmp = match &args.tmp_parent {
        Some(p) => tempfile::Builder::new().prefix("tidepool-scale-").tempdir_in(p),
        None => tempfile::Builder::new().prefix("tidepool-scale-").tempdir(),
    }
    .unwrap();
    // With --keep the directory outlives a panic too (for the daemon's log).
    let (tmp_path, _guard) =
        if args.keep { (tmp.keep(), None) } else { (tmp.path().to_path_buf(), Some(tmp)) };
    let (data_dir, spool_path, log) =
        (tmp_path.join("data"), tmp_path.join("bodies.spool"), tmp_path.join("daemon.log"));
    eprintln!("scale: {} rows, temp dir {}", args.rows, tmp_path.display());

    // 0. prepare (no daemon running).
    let corpus = args.corpus.clone().unwrap_or_else(|| {
        let near = PathBuf::from("../shared/data/debian");
        if near.exists() {
            near
        } else {
            PathBuf::from("../../shared/data/debian")
        }
    });
    let g = Generator::new(&corpus, args.noise, args.seed);
    let all_queries = read_f32(&corpus.join("queries/query_vectors.f32"));
    let nq = args.queries.min(all_queries.len() / DIM);
    let queries = &all_queries[..nq * DIM];
    let t = Instant::now();
    let mut spool = File::create(&spool_path).unwrap();
    let (index, gt) = prepare(&args, &g, queries, &mut spool);
    drop(spool);
    let prepare_s = t.elapsed().as_secs_f64();
    let data = data_stats(&g, &gt);
    eprintln!("prepare: {prepare_s:.1} s; data {data}");

    // 1. ingest.
    let cgroup = args.cgroup_mib.map(Cgroup::create);
    let (d, ready_s) =
        Daemon::start(&rt, &args.binary, (cgroup.as_ref(), &args.serve_args, &[]), &data_dir, &log);
    let sampler = Sampler::new(d.pid());
    std::thread::sleep(Duration::from_millis(500));
    let idle = sampler.current();
    sampler.phase_peak();
    let cpu0 = cpu_seconds(d.pid());
    let mut ingest_j = ingest(&rt, &args, &d.url, &spool_path, &index);
    let (ingest_peak, n) = sampler.phase_peak();
    let cpu1 = cpu_seconds(d.pid());
    ingest_j["daemon_cpu_s"] = json!(cpu1 - cpu0);
    ingest_j["peak"] = mem_json(ingest_peak, raw, Some(n));
    eprintln!("ingest: {ingest_j}");
    let _ = std::fs::remove_file(&spool_path);

    // 2. catch-up.
    let cu = catch_up(&rt, &d.url, d.pid(), args.catchup_timeout);
    let secs = cu.seconds;
    let (catch_peak, n) = sampler.phase_peak();
    let cpu2 = cpu_seconds(d.pid());
    let (segs, seg_bytes, dir_bytes) = disk_usage(&data_dir);
    let catchup_j = json!({
        "daemon_cpu_s": cpu2 - cpu1,
        "seconds_to_up_to_date": secs,
        "timed_out": cu.timed_out,
        "stalled_at_s": cu.stalled_at,
        "forced_compaction": cu.forced.as_ref().map(|(b, s)| json!({"response": b, "seconds": s})),
        "timeline_s_unindexed": cu.timeline,
        "metadata": cu.metadata,
        "memory_gauges": memory_gauges(&rt, &d.url),
        "peak": mem_json(catch_peak, raw, Some(n)),
        "segments": segs,
        "segment_bytes": seg_bytes,
        "segment_bytes_over_raw": ratio(seg_bytes as f64, raw),
        "data_dir_bytes": dir_bytes,
        "data_dir_bytes_over_raw": ratio(dir_bytes as f64, raw),
    });
    eprintln!("catch-up: {catchup_j}");

    // 3. warm queries.
    let mut warm_j = warm_queries(&rt, &d.url, queries, &gt);
    warm_j["daemon_cpu_s"] = json!(cpu_seconds(d.pid()) - cpu2);
    let (warm_peak, warm_samples) = sampler.phase_peak();
    std::thread::sleep(Duration::from_secs(2));
    let steady = sampler.current();
    warm_j["memory_gauges"] = memory_gauges(&rt, &d.url);
    warm_j["resident_files"] = resident_files(d.pid(), 6);
    eprintln!("warm: {warm_j}");

    // 4. cold: restart on the same data dir.
    let stop_s = d.stop();
    let (d, cold_ready_s) =
        Daemon::start(&rt, &args.binary, (cgroup.as_ref(), &args.serve_args, &[]), &data_dir, &log);
    sampler.set_pid(d.pid());
    let cold_idle = sampler.current();
    let mut cold_j = cold_queries(&rt, &d.url, queries, &gt, args.cold_queries);
    let (cold_peak, n) = sampler.phase_peak();
    cold_j["ready_s"] = json!(cold_ready_s);
    cold_j["previous_daemon_stop_s"] = json!(stop_s);
    cold_j["rss_at_ready"] = mem_json(cold_idle, raw, None);
    cold_j["peak"] = mem_json(cold_peak, raw, Some(n));
    cold_j["after"] = mem_json(sampler.current(), raw, None);
    cold_j["memory_gauges"] = memory_gauges(&rt, &d.url);
    // After every memory figure: the sweep's queries are not part of them.
    let targets_j = by_target(&rt, &d.url, queries, &gt);
    drop(sampler);
    d.stop();
    let ab_j = args.ab_per_segment.then(|| {
        let start = |env: &[(&str, &str)]| {
            Daemon::start(&rt, &args.binary, (cgroup.as_ref(), &args.serve_args, env), &data_dir, &log).0
        };
        scale_ab::per_segment_ab(&rt, &start, queries, &gt)
    });

    let build_peak = Mem {
        vm_rss: ingest_peak.vm_rss.max(catch_peak.vm_rss),
        rss_anon: ingest_peak.rss_anon.max(catch_peak.rss_anon),
        rss_file: ingest_peak.rss_file.max(catch_peak.rss_file),
        vm_hwm: ingest_peak.vm_hwm.max(catch_peak.vm_hwm),
    };
    eprintln!("--- targets (issue 16 item 2; memory on VmRSS, RssAnon alongside in the JSON)");
    let targets = json!({
        "peak_rss_ingest_and_compaction_over_raw": target("peak VmRSS ingest+catch-up / raw", ratio(build_peak.vm_rss as f64, raw), 1.5, true),
        "steady_rss_over_raw": target("steady VmRSS / raw", ratio(steady.vm_rss as f64, raw), 0.5, true),
        "warm_p50_ms": target("warm p50 ms", warm_j["p50_ms"].as_f64().unwrap_or(f64::NAN), 5.0, true),
        "recall_at_10": target("recall@10", warm_j["recall_at_10"].as_f64().unwrap_or(f64::NAN), 0.95, false),
        "up_to_date_s": target("s to up-to-date", secs.unwrap_or(f64::INFINITY), 600.0, true),
        "ingest_docs_per_s": target("ingest docs/s", ingest_j["docs_per_s"].as_f64().unwrap_or(0.0), 30_000.0, false),
    });
    let cgroup_j = cgroup.as_ref().map(Cgroup::report);
    eprintln!("--- targets (issue 36: 10M on an 8 GB node, here at {} rows; cgroup {cgroup_j:?})", args.rows);
    let issue36 = json!({
        "oom_kills": cgroup_j.as_ref().map(|c| target("OOM kills", c["oom_kills"].as_f64().unwrap_or(0.0), 0.0, true)),
        "peak_rss_over_raw": target("peak VmRSS / raw", ratio(build_peak.vm_rss as f64, raw), 0.5, true),
        "serving_rss_over_raw": target("serving VmRSS / raw", ratio(steady.vm_rss as f64, raw), 0.25, true),
        "ingest_docs_per_s": target("ingest docs/s", ingest_j["docs_per_s"].as_f64().unwrap_or(0.0), 20_000.0, false),
        // 60 min at 10M rows, in proportion below.
        "up_to_date_s": target("s to up-to-date", secs.unwrap_or(f64::INFINITY), 3600.0 * args.rows as f64 / 1e7, true),
        "recall_at_10": target("recall@10", warm_j["recall_at_10"].as_f64().unwrap_or(f64::NAN), 0.95, false),
        "warm_p50_ms": target("warm p50 ms", warm_j["p50_ms"].as_f64().unwrap_or(f64::NAN), 10.0, true),
        "warm_p99_ms": target("warm p99 ms", warm_j["p99_ms"].as_f64().unwrap_or(f64::NAN), 50.0, true),
        "data_dir_over_raw": target("data dir / raw", catchup_j["data_dir_bytes_over_raw"].as_f64().unwrap_or(f64::NAN), 1.5, true),
    });
    let out = json!({
        "rows": args.rows,
        "dim": DIM,
        "batch": args.batch,
        "conns": args.conns,
        "raw_vector_bytes": raw as u64,
        "raw_vector_gib": raw / GIB,
        "binary": args.binary,
        "serve_args": args.serve_args,
        "data": data,
        "prepare_s": prepare_s,
        "ready_s": ready_s,
        "idle": mem_json(idle, raw, None),
        "ingest": ingest_j,
        "catchup": catchup_j,
        "peak_ingest_and_catchup": mem_json(build_peak, raw, None),
        "warm": warm_j,
        "warm_peak": mem_json(warm_peak, raw, Some(warm_samples)),
        "steady_after_queries": mem_json(steady, raw, None),
        "cold": cold_j,
        "by_target": targets_j,
        "per_segment_ab": ab_j,
        "targets": targets,
        "targets_issue36": issue36,
        "cgroup": cgroup_j,
        "daemon_log": log_summary(&log),
        "temp_dir": if args.keep { json!(tmp_path) } else { Json::Null },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_keeps_the_best_in_order() {
        let mut t = TopK::new();
        for i in 0..100u64 {
            t.offer(((i * 37) % 100) as f32, i);
        }
        let scores: Vec<f32> = t.0.iter().map(|x| x.0).collect();
        assert_eq!(scores, (90..100).rev().map(|x| x as f32).collect::<Vec<_>>());
    }
}
