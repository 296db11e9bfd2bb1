//! A real S3-compatible server for the bucket tests: `TIDEPOOL_TEST_S3_ENDPOINT`
//! (e.g. `http://127.0.0.1:5055`), or else moto started by
//! `scripts/s3-server.sh start` once per test binary and stopped when it exits.
//! If neither works every test that asks for it fails: none is skipped.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tidepool::store::{S3Options, Store};

/// Environment variable naming an S3-compatible endpoint to use instead of moto.
pub const ENDPOINT_VAR: &str = "TIDEPOOL_TEST_S3_ENDPOINT";

/// The S3 endpoint: from the environment, or a moto server started once for
/// this test binary (it stops itself when this process exits).
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();
    match ENDPOINT.get_or_init(find_or_start_server) {
        Ok(url) => url,
        Err(msg) => panic!("{msg}"),
    }
}

fn find_or_start_server() -> Result<String, String> {
    if let Ok(url) = std::env::var(ENDPOINT_VAR) {
        let url = url.trim().trim_end_matches('/');
        if !url.is_empty() {
            return Ok(url.to_owned());
        }
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-server.sh");
    let pid = std::process::id();
    let portfile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("s3-server-{pid}")).join("endpoint");
    let hint = format!(
        "{ENDPOINT_VAR} is not set, so this test starts moto with `{} start`; that failed. \
         Fix the error below (the script needs python3 with venv/pip and PyPI on first use), \
         or set {ENDPOINT_VAR}=http://HOST:PORT to an S3-compatible server.",
        script.display()
    );
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&portfile)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{hint}\ncannot run bash: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{hint}\nexit status {}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let url = std::fs::read_to_string(&portfile)
        .map_err(|e| format!("{hint}\nthe script succeeded but {} is unreadable: {e}", portfile.display()))?;
    Ok(url.trim().to_owned())
}

/// A new, empty bucket (moto accepts an unsigned `PUT /bucket`; object_store
/// cannot create buckets).
pub async fn new_bucket() -> String {
    let endpoint = endpoint();
    let name = format!("tidepool-test-{}", uuid::Uuid::new_v4().simple());
    let resp = tidepool::tls::client()
        .put(format!("{endpoint}/{name}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name} at {endpoint}: {e}"));
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "create bucket {name} at {endpoint}: HTTP {status}: {body}");
    name
}

pub fn s3_options() -> S3Options {
    S3Options {
        endpoint: Some(endpoint().to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
        ..S3Options::default()
    }
}

/// A `Store` on `url` (`s3://bucket/prefix`), exactly as the daemon opens one.
pub fn s3_store(url: &str) -> Store {
    let unused_default_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    Store::from_url(Some(url), unused_default_dir, &s3_options())
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}
