//! Long admin operations (repair, verify) as daemon jobs: start with
//! `?background=true`, then poll `GET /v1/_admin/jobs/{id}` until it ends,
//! drawing a progress line on stderr when it is a terminal. No single HTTP
//! request lasts as long as the operation, so no client timeout can cut it.
//!
//! Invariant: the command's outcome is the job's: its result on `done`, its
//! status and message on `failed`.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Time between two polls of a running job.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// Run the admin job `path` with `body` to its end; its result.
pub(super) async fn run_job(client: &Client, path: &str, body: &Value) -> Result<Value, String> {
    let started =
        client.send(reqwest::Method::POST, path, &[("background", "true".to_owned())], Some(body)).await?;
    let id =
        started["id"].as_str().ok_or_else(|| format!("{path}: the daemon did not start a job: {started}"))?;
    let kind = started["kind"].as_str().unwrap_or("job").to_owned();
    let show = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let s = client.send(reqwest::Method::GET, &format!("/v1/_admin/jobs/{id}"), &[], None).await?;
        if show {
            eprint!("\r{}\x1b[K", job_line(&kind, &s["progress"], t0.elapsed()));
            let _ = std::io::stderr().flush();
        }
        let outcome = match s["state"].as_str() {
            Some("done") => Ok(s["result"].clone()),
            Some("failed") => Err(format!(
                "{kind} failed ({}): {}",
                s["error"]["status"],
                s["error"]["message"].as_str().unwrap_or("no message")
            )),
            _ => continue,
        };
        if show {
            eprint!("\r\x1b[K");
        }
        return outcome;
    }
}

/// `verify 12/40 objects  3s` (or `repair running  3s` without a known total).
pub(super) fn job_line(kind: &str, progress: &Value, elapsed: Duration) -> String {
    let (done, total) = (progress["done"].as_u64().unwrap_or(0), progress["total"].as_u64().unwrap_or(0));
    let secs = elapsed.as_secs();
    if total == 0 {
        format!("{kind} running  {secs}s")
    } else {
        format!("{kind} {done}/{total} objects  {secs}s")
    }
}
