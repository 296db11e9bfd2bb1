//! `tidepool sync status` and `tidepool sync run`: the daemon's sync state
//! (`GET /v1/sync/status`) and one round now (`POST /v1/sync/run`).
//!
//! Invariant: the exit status is non-zero when the daemon answers an error
//! (sync not configured included) or, for `run`, when a namespace's round
//! failed, so scripts can wait on `tidepool sync run`.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn sync_status(client: &Client, out: &Output) -> Result<(), String> {
    let resp = client.send(reqwest::Method::GET, "/v1/sync/status", &[], None).await?;
    render(out, &resp)
}

pub(super) async fn sync_run(client: &Client, out: &Output, sweep: bool) -> Result<(), String> {
    let query = [("sweep", sweep.to_string())];
    let resp = client.send(reqwest::Method::POST, "/v1/sync/run", &query, Some(&json!({}))).await?;
    render(out, &resp)?;
    match resp.get("status").and_then(Value::as_str) {
        Some("OK") => Ok(()),
        _ => Err("some namespaces did not sync this round (see last_error)".into()),
    }
}

fn render(out: &Output, resp: &Value) -> Result<(), String> {
    if out.json {
        return out.json(resp);
    }
    let remote = &resp["remote"];
    let reachable = match remote["reachable"].as_bool() {
        Some(true) => "reachable",
        Some(false) => "UNREACHABLE",
        None => "not contacted yet",
    };
    let mut text = format!(
        "node {} → {} ({reachable})\n",
        resp["node_id"].as_str().unwrap_or("?"),
        remote["url"].as_str().unwrap_or("?")
    );
    let cell = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = resp["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let conflicts = n["conflicts"].as_array().map_or(0, Vec::len).to_string();
                    [
                        "namespace",
                        "mode",
                        "local_generation",
                        "remote_generation",
                        "pending_objects",
                        "lag_secs",
                    ]
                    .iter()
                    .map(|k| cell(&n[*k]))
                    .chain([conflicts, cell(&n["last_error"])])
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let headers = ["NAMESPACE", "MODE", "LOCAL", "REMOTE", "PENDING", "LAG_S", "CONFLICTS", "LAST_ERROR"];
    text.push_str(&format_table(&headers, &rows));
    if let Some(sweep) = resp["last_sweep"].as_object() {
        let r = &sweep["report"];
        text.push_str(&match sweep.get("error") {
            Some(e) => format!("last sweep failed: {}\n", cell(e)),
            None => format!(
                "last sweep: {} manifest(s) collected, {} object(s) deleted ({} bytes)\n",
                cell(&r["manifests_collected"]),
                cell(&r["objects_deleted"]),
                cell(&r["bytes_deleted"])
            ),
        });
    }
    emit(&text)
}
