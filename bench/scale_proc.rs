//! The scale benchmark's view of the daemon process: the memory cgroup it runs in, spawning and
//! stopping it, and its memory and CPU read from `/proc` (a sampler thread keeps per-phase peaks).
//! Nothing here talks to the daemon's API beyond `/ready`.

use super::*;

// ---------------------------------------------------------------- cgroup

/// A memory cgroup the daemon runs in (`--cgroup-mib`), removed on drop.
pub(super) struct Cgroup {
    pub(super) dir: PathBuf,
    pub(super) v2: bool,
}

impl Cgroup {
    pub(super) fn create(mib: u64) -> Cgroup {
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
    pub(super) fn wrap(&self, binary: &Path) -> Command {
        let mut cmd = Command::new("sh");
        let procs = self.dir.join("cgroup.procs");
        cmd.arg("-c").arg(format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display())).arg(binary);
        cmd
    }

    pub(super) fn read(&self, file: &str, key: Option<&str>) -> u64 {
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        match key {
            None => text.trim().parse().unwrap_or(0),
            Some(k) => text.lines().find_map(|l| l.strip_prefix(k)?.trim().parse().ok()).unwrap_or(0),
        }
    }

    /// Peak usage (page cache included) and OOM kills since creation.
    pub(super) fn report(&self) -> Json {
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

// ---------------------------------------------------------------- the daemon

pub(super) struct Daemon {
    pub(super) child: Child,
    pub(super) url: String,
}

impl Daemon {
    /// Spawns `serve` on a free loopback port and waits for /ready; returns it and the seconds
    /// from spawn to ready.
    pub(super) fn start(
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
        let c = tidepool::tls::client();
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

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (a kill after 300 s).
    pub(super) fn stop(mut self) -> f64 {
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
pub(super) struct Mem {
    pub(super) vm_rss: u64,
    pub(super) rss_anon: u64,
    pub(super) rss_file: u64,
    pub(super) vm_hwm: u64,
}

pub(super) fn read_mem(pid: u32) -> Option<Mem> {
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
pub(super) fn resident_files(pid: u32, top: usize) -> Json {
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
pub(super) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(14) + ticks(15)) / 100.0
}

#[derive(Default)]
pub(super) struct SamplerState {
    pub(super) pid: u32,
    pub(super) peak: Mem,
    pub(super) last: Mem,
    pub(super) samples: u64,
}

/// Samples the daemon's memory every 200 ms; peaks are per phase ([`Sampler::phase_peak`]).
pub(super) struct Sampler {
    pub(super) state: Arc<Mutex<SamplerState>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub(super) fn new(pid: u32) -> Sampler {
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
    pub(super) fn phase_peak(&self) -> (Mem, u64) {
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

    pub(super) fn set_pid(&self, pid: u32) {
        let mut g = self.state.lock().unwrap();
        *g = SamplerState { pid, ..Default::default() };
    }

    pub(super) fn current(&self) -> Mem {
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

pub(super) fn mem_json(m: Mem, raw: f64, samples: Option<u64>) -> Json {
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

pub(super) fn ratio(x: f64, raw: f64) -> f64 {
    (x / raw * 1000.0).round() / 1000.0
}
