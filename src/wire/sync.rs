//! The sync documents of the turbopuffer-style API's tidepool extension: `GET /v1/sync/status`, the
//! body of `POST /v1/sync/run`, and a namespace's `sync` in its metadata. `sync/` keeps typed status
//! (`sync::StatusView`, `sync::NamespaceView`); the field names live here.
//!
//! Invariant: fields are written in the order the documents always had (a namespace's status:
//! name, mode, conflict rule, generations, pending work, lag, last success and error, conflicts,
//! transfer counters, lease holder); a node's status: node id, remote, interval, last sweep,
//! namespaces.

use serde_json::{json, Value as Json};

use crate::sync::state::{ConflictReport, NamespaceStatus, RemoteStatus};
use crate::sync::sweep::SweepReport;
use crate::sync::{NamespaceView, StatusView};

/// `GET /v1/sync/status`.
pub fn status(v: &StatusView) -> Json {
    let last_sweep = v.last_sweep.as_ref().map(|(at, r)| match r {
        Ok(report) => json!({"at": at, "report": sweep_report(report)}),
        Err(e) => json!({"at": at, "error": e}),
    });
    json!({
        "node_id": v.node_id,
        "remote": remote(&v.remote),
        "interval_secs": v.interval_secs,
        "last_sweep": last_sweep,
        "namespaces": v.namespaces.iter().map(namespace_status).collect::<Vec<_>>(),
    })
}

/// `POST /v1/sync/run`: the caller's status plus `status`: `partial` when one of its namespaces'
/// last round failed, else `OK`.
pub fn run_response(v: &StatusView) -> Json {
    let failed = v.namespaces.iter().any(|n| n.last_error.is_some());
    let mut body = status(v);
    body["status"] = json!(if failed { "partial" } else { "OK" });
    body
}

/// A namespace's `sync` in its metadata.
pub fn namespace(v: &NamespaceView) -> Json {
    match v {
        NamespaceView::Seen(s) => namespace_status(s),
        NamespaceView::Unseen { namespace, mode, on_conflict } => {
            json!({"namespace": namespace, "mode": mode, "on_conflict": on_conflict})
        }
    }
}

fn namespace_status(s: &NamespaceStatus) -> Json {
    json!({
        "namespace": s.namespace,
        "mode": s.mode,
        "on_conflict": s.on_conflict,
        "local_generation": s.local_generation,
        "remote_generation": s.remote_generation,
        "pending_objects": s.pending_objects,
        "pending_bytes": s.pending_bytes,
        "lag_secs": s.lag_secs,
        "last_success": s.last_success,
        "last_error": s.last_error,
        "conflicts": s.conflicts.iter().map(conflict).collect::<Vec<_>>(),
        "uploaded_objects": s.uploaded_objects,
        "uploaded_bytes": s.uploaded_bytes,
        "downloaded_objects": s.downloaded_objects,
        "downloaded_bytes": s.downloaded_bytes,
        "lease_holder": s.lease_holder,
    })
}

fn conflict(c: &ConflictReport) -> Json {
    json!({
        "at_ms": c.at_ms,
        "resolution": c.resolution,
        "remote_generation": c.remote_generation,
        "local_generation": c.local_generation,
        "detail": c.detail,
    })
}

fn remote(r: &RemoteStatus) -> Json {
    json!({"url": r.url, "reachable": r.reachable, "last_contact": r.last_contact})
}

/// What one sweep of the remote did.
pub fn sweep_report(r: &SweepReport) -> Json {
    json!({
        "manifests_collected": r.manifests_collected,
        "objects_deleted": r.objects_deleted,
        "bytes_deleted": r.bytes_deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_status_keeps_its_field_order_and_a_failed_round_makes_the_run_partial() {
        let s = NamespaceStatus {
            namespace: "n".into(),
            mode: "push",
            on_conflict: "rebase",
            last_error: Some("down".into()),
            conflicts: vec![ConflictReport {
                at_ms: 5,
                resolution: "rebase".into(),
                remote_generation: 3,
                local_generation: 4,
                detail: "2 requests".into(),
            }],
            ..NamespaceStatus::default()
        };
        let text = namespace_status(&s).to_string();
        assert!(
            text.starts_with(r#"{"namespace":"n","mode":"push","on_conflict":"rebase","local_generation":0"#),
            "{text}"
        );
        assert!(text.ends_with(r#""downloaded_bytes":0,"lease_holder":null}"#), "{text}");
        assert!(text.contains(r#""conflicts":[{"at_ms":5,"resolution":"rebase","remote_generation":3,"local_generation":4,"detail":"2 requests"}]"#), "{text}");
        let v = StatusView {
            node_id: "node-a".into(),
            remote: RemoteStatus { url: "s3://b/p".into(), reachable: Some(true), last_contact: Some(9) },
            interval_secs: 30,
            last_sweep: Some((
                7,
                Ok(SweepReport { manifests_collected: 1, objects_deleted: 2, bytes_deleted: 3 }),
            )),
            namespaces: vec![s],
        };
        let body = run_response(&v);
        assert_eq!(body["status"], "partial");
        let ok = StatusView { namespaces: vec![NamespaceStatus::default()], ..v.clone() };
        assert_eq!(run_response(&ok)["status"], "OK");
        assert_eq!(
            body["last_sweep"],
            json!({"at": 7, "report": {"manifests_collected": 1, "objects_deleted": 2, "bytes_deleted": 3}})
        );
        let keys: Vec<&str> =
            body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(keys, ["node_id", "remote", "interval_secs", "last_sweep", "namespaces", "status"]);
    }
}
