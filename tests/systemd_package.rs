//! The daemon as a systemd service and a Debian package: the unit passes
//! `systemd-analyze verify` and scores "OK" or better in `systemd-analyze
//! security`; the package built by `packaging/build-deb.sh` installs into a
//! clean root with `dpkg --root`, and the unit's `ExecStart` line, run there
//! with the environment systemd would give it, starts on no config, talks
//! `sd_notify` on a socket this test owns (READY=1, STATUS=, WATCHDOG=1,
//! RELOADING=1 on SIGHUP, STOPPING=1), serves, and keeps its data under the unit's StateDirectory.
//! The packaged config file documents every setting.
//!
//! Needs `systemd-analyze`, `dpkg`, `dpkg-deb` and `strip`: `scripts/test.sh`
//! installs them when missing.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_tidepool");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs the tools)"));
    out
}

/// The packaged unit with its ExecStart pointing at `bin` (verify checks that the binary exists).
fn unit_with_binary(dir: &Path, bin: &str) -> PathBuf {
    let unit = std::fs::read_to_string(Path::new(ROOT).join("packaging/tidepool.service")).unwrap();
    let path = dir.join("tidepool.service");
    std::fs::write(&path, unit.replace("/usr/bin/tidepool", bin)).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_its_hardening_scores_ok() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path(), BIN);
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("tidepool.service"), "verify: {stderr}");
    let out =
        run(Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&unit));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("Overall exposure level")).expect("exposure line");
    let score: f64 = line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(score <= 2.0, "exposure {score} (want OK or better): {line}");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for must in [
        "Type=notify",
        "ExecReload=",
        "WatchdogSec=",
        "StateDirectory=tidepool",
        "CacheDirectory=tidepool",
        "DynamicUser=yes",
    ] {
        assert!(unit_text.contains(must), "unit lacks {must}");
    }
}

#[test]
fn the_packaged_config_documents_every_setting_and_parses_uncommented() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("packaging/config.example.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(parsed.as_table().map(toml::map::Map::len), Some(0), "every setting is commented out");
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with('[')
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // FileConfig rejects unknown keys: every documented key is a real setting.
    let _: tidepool::config::FileConfig =
        toml::from_str(&uncommented).unwrap_or_else(|e| panic!("uncommented example: {e}\n{uncommented}"));
    let keys = toml::from_str::<toml::Value>(&uncommented).unwrap();
    let documented: Vec<&String> = keys.as_table().unwrap().keys().collect();
    // The Debug form of an empty FileConfig names every field it has.
    let fields = format!("{:?}", tidepool::config::FileConfig::default());
    for field in fields.split(&['{', ',', ' '][..]).filter_map(|t| t.strip_suffix(':')) {
        assert!(documented.iter().any(|k| k.as_str() == field), "{field} is not documented in the example");
    }
}

/// Build the package from the test binary, install it into an empty root.
fn install_package(root: &Path) {
    let out_dir = root.parent().unwrap().join("deb");
    let out = run(Command::new(Path::new(ROOT).join("packaging/build-deb.sh"))
        .args(["--fast", "--binary", BIN, "--out"])
        .arg(&out_dir));
    assert!(out.status.success(), "build-deb: {}", String::from_utf8_lossy(&out.stderr));
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    for d in ["var/lib/dpkg/updates", "var/lib/dpkg/info"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // The empty root has no libc6 package (the binary runs with the host's).
    let out = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args([
        "--force-script-chrootless",
        "--force-not-root",
        "--force-depends",
        "-i",
        &deb,
    ]));
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["-s", "tidepool"]));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Status: install ok installed"));
    let conffiles = std::fs::read_to_string(root.join("var/lib/dpkg/info/tidepool.conffiles")).unwrap();
    assert!(conffiles.contains("/etc/tidepool/config.toml"), "the config is a conffile");
}

/// The unit's `ExecStart=` words, the binary moved into `root`.
fn exec_start(root: &Path) -> Vec<String> {
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/tidepool.service")).unwrap();
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    line.split_whitespace()
        .map(|w| w.strip_prefix('/').map_or_else(|| w.to_owned(), |rel| root.join(rel).display().to_string()))
        .collect()
}

/// The notify messages received so far, waiting up to `wait` for one containing `want`.
fn await_notify(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str, wait: Duration) {
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.contains(want)) {
        assert!(t.elapsed() < wait, "no {want:?} within {wait:?}; got {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_installs_into_a_clean_root_and_its_service_runs_with_sd_notify() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    install_package(&root);
    assert!(root.join("usr/bin/tidepool").is_file() && root.join("etc/tidepool/config.toml").is_file());
    let size = std::fs::metadata(root.join("usr/bin/tidepool")).unwrap().len();
    let unstripped = std::fs::metadata(BIN).unwrap().len();
    assert!(size < unstripped, "the packaged binary is stripped ({size} vs {unstripped} bytes)");

    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (state, cache) = (root.join("var/lib/tidepool"), root.join("var/cache/tidepool"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    let argv = exec_start(&root);
    // What systemd sets for this unit (StateDirectory=, CacheDirectory=, ConfigurationDirectory=,
    // Type=notify, WatchdogSec=), with a free port instead of the default one.
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("STATE_DIRECTORY", &state)
        .env("CACHE_DIRECTORY", &cache)
        .env("CONFIGURATION_DIRECTORY", root.join("etc/tidepool"))
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .env("TIDEPOOL_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let url =
        stdout.lines().map_while(Result::ok).find_map(|l| l.strip_prefix("listening on ").map(str::to_owned));
    let url = url.expect("the service announces its address");

    let mut seen = Vec::new();
    await_notify(&sock, &mut seen, "READY=1", Duration::from_secs(10));
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=serving on"), "READY carries a status line: {ready}");
    let pings_before = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    await_notify(&sock, &mut seen, "WATCHDOG=1", Duration::from_secs(3));

    let c = tidepool::tls::client();
    let r = c
        .post(format!("{url}/v2/namespaces/pkg"))
        .json(&json!({"upsert_rows": [{"id": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the packaged service serves writes");
    let r = c.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(state.join("meta.redb").is_file(), "data under StateDirectory");
    let r = c.get(format!("{url}/health")).header("x-request-id", "probe-42").send().await.unwrap();
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("probe-42"));

    // Collect for a fixed time: pings arrive every 150 ms, faster than the socket's read timeout,
    // so "read until quiet" would never end.
    let until = Instant::now() + Duration::from_millis(700);
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let pings = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= pings_before + 2, "watchdog pings keep coming at half the period: {seen:?}");

    // `systemctl reload` (ExecReload= sends SIGHUP): RELOADING=1, then READY=1 with the outcome.
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    await_notify(&sock, &mut seen, "RELOADING=1", Duration::from_secs(10));
    await_notify(&sock, &mut seen, "configuration reloaded", Duration::from_secs(10));

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    await_notify(&sock, &mut seen, "STOPPING=1", Duration::from_secs(10));
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
}
