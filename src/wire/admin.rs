//! tidepool's administrative JSON: health and readiness, the namespace
//! listing, deletes, cache hints, explain plans, compaction, copies and
//! restores, repair and verify reports, background jobs, sync runs, and the
//! metadata update (`PATCH .../metadata`) and admin request bodies.
//!
//! Invariants:
//! - Renderers take typed values (engine reports, numbers, strings) and
//!   return a body; they never fail and read no state. Field order is the
//!   order written here (serde_json keeps insertion order), and it is the
//!   order earlier builds answered with.
//! - Parsers are pure and total: any JSON yields the typed request or an
//!   invalid-input error naming the offending key, with the messages earlier
//!   builds answered with.

use serde_json::{json, Value as Json};

use crate::engine::labels::{validate_changes, LabelChanges};
use crate::engine::repair::{RepairOptions, RepairReport, DEFAULT_GRACE_MS};
use crate::engine::snapshot::SnapshotInfo;
use crate::engine::verify::{DamagedObject, VerifyReport};
use crate::engine::{CompactionReport, EngineError, NamespacePage};

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::invalid_input(msg)
}

/// What `GET /v1/whoami` reports.
#[derive(Debug)]
pub struct WhoAmI<'a> {
    /// The key's org.
    pub org: &'a str,
    /// The key's project.
    pub project: &'a str,
    /// Whether the key may only read.
    pub read_only: bool,
    /// No API keys are configured (loopback only).
    pub open: bool,
    /// The local models loaded.
    pub models: Vec<&'a crate::models::Model>,
    /// Whether `[sync]` is configured.
    pub sync: bool,
    /// Whether the console is served.
    pub console: bool,
}

/// `{"org", "project", "read_only", "auth", "models": [{name, kind, dims, max_tokens}], "sync", "console", "version"}`.
pub fn whoami_json(w: &WhoAmI<'_>) -> Json {
    let models: Vec<Json> = w
        .models
        .iter()
        .map(|m| json!({"name": m.name(), "kind": m.kind().name(), "dims": m.dims(), "max_tokens": m.max_tokens()}))
        .collect();
    json!({
        "authenticated": true,
        "org": w.org,
        "project": w.project,
        "read_only": w.read_only,
        "auth": if w.open { "open" } else { "api_key" },
        "models": models,
        "sync": w.sync,
        "console": w.console,
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /v1/whoami` without a key on a node that has keys: only that a key is needed.
pub fn anonymous_whoami() -> Json {
    json!({"authenticated": false, "auth": "api_key", "version": env!("CARGO_PKG_VERSION")})
}

/// `GET /health` (and the body of routes that only say they are alive).
pub fn health() -> Json {
    json!({"status": "ok"})
}

/// `GET /ready` when ready.
pub fn ready() -> Json {
    json!({"status": "ready"})
}

/// A plain success (a namespace delete).
pub fn ok() -> Json {
    json!({"status": "OK"})
}

/// `POST .../hint_cache_warm`: the warm-up runs in the background.
pub fn cache_warm_accepted() -> Json {
    json!({"status": "ACCEPTED", "message": "cache warm-up started in the background"})
}

/// `POST .../explain_query`: the plan as text.
pub fn explain_response(plan_text: &str) -> Json {
    json!({"plan_text": plan_text})
}

/// `GET /v1/namespaces`: one page of names.
pub fn namespace_page(page: &NamespacePage) -> Json {
    let namespaces: Vec<Json> = page.namespaces.iter().map(|n| json!({"id": n})).collect();
    json!({"namespaces": namespaces, "next_cursor": page.next_cursor})
}

/// `GET /v1/namespaces?include_metadata=true` (tidepool extension): each entry
/// also carries its metadata document, or the error that reading it gave (a
/// namespace deleted meanwhile, an unreachable store) — one namespace never
/// fails the page.
pub fn namespace_page_with_metadata(page: &NamespacePage, metadata: Vec<Result<Json, String>>) -> Json {
    let namespaces: Vec<Json> = page
        .namespaces
        .iter()
        .zip(metadata)
        .map(|(n, m)| match m {
            Ok(m) => json!({"id": n, "metadata": m}),
            Err(e) => json!({"id": n, "metadata_error": e}),
        })
        .collect();
    json!({"namespaces": namespaces, "next_cursor": page.next_cursor})
}

/// `POST .../_admin/compact`.
pub fn compaction_response(r: &CompactionReport) -> Json {
    json!({
        "status": "OK", "performed": r.performed, "version": r.generation,
        "wal_objects_folded": r.wal_objects_folded, "segments_written": r.segments_written,
        "segments_merged": r.segments_merged, "rows_written": r.rows_written, "bytes_written": r.bytes_written,
    })
}

/// `POST .../_admin/restore`: `namespace` restored at `generation` from the
/// snapshot described by `info`.
pub fn restore_response(namespace: &str, generation: u64, info: &SnapshotInfo) -> Json {
    json!({
        "status": "OK",
        "namespace": namespace,
        "version": generation,
        "source_namespace": info.namespace,
        "source_version": info.generation,
        "objects": info.objects,
        "bytes": info.bytes,
    })
}

/// `POST /v1/_admin/repair`: the report, then `status` and `swept_count`.
pub fn repair_response(r: &RepairReport) -> Json {
    json!({
        "namespaces": r.namespaces,
        "manifests_read": r.manifests_read,
        "manifests_collected": r.manifests_collected,
        "refcounts_changed": r.refcounts_changed,
        "refcounts_lowered": r.refcounts_lowered,
        "refcounts_raised": r.refcounts_raised,
        "missing_objects": r.missing_objects,
        "swept": r.swept,
        "kept_young": r.kept_young,
        "staging_removed": r.staging_removed,
        "status": "OK",
        "swept_count": r.swept.len(),
    })
}

/// `POST /v1/_admin/verify`: the report, then `status` (`DAMAGED` when any
/// object is), then `refetched` when a local copy rotted and was fetched again.
pub fn verify_response(r: &VerifyReport) -> Json {
    let damaged: Vec<Json> = r.damaged.iter().map(damaged_json).collect();
    let mut body = json!({
        "namespaces": r.namespaces,
        "objects_checked": r.objects_checked,
        "bytes_checked": r.bytes_checked,
        "rows_checked": r.rows_checked,
        "damaged": damaged,
        "status": if r.damaged.is_empty() { "OK" } else { "DAMAGED" },
    });
    // Only when there is something to say: the body stays the earlier one otherwise.
    if !r.refetched.is_empty() {
        let refetched: Vec<Json> =
            r.refetched.iter().map(|o| json!({"key": o.key, "error": o.error})).collect();
        body["refetched"] = Json::Array(refetched);
    }
    body
}

fn damaged_json(d: &DamagedObject) -> Json {
    json!({"key": d.key, "error": d.error, "namespaces": d.namespaces})
}

/// Where a background job is.
#[derive(Debug, Clone, Copy)]
pub enum JobOutcome<'a> {
    /// Still running.
    Running,
    /// Finished: the body the operation answered.
    Done(&'a Json),
    /// Failed with this HTTP status and message.
    Failed {
        /// The status the operation would have answered.
        status: u16,
        /// Its message.
        message: &'a str,
    },
}

/// One background job as `GET /v1/_admin/jobs/{id}` reports it.
#[derive(Debug, Clone, Copy)]
pub struct JobStatus<'a> {
    /// The job id.
    pub id: u64,
    /// `repair`, `verify`, ...
    pub kind: &'a str,
    /// Steps done of `total` (0 when unknown).
    pub done: u64,
    /// Steps in all.
    pub total: u64,
    /// Since the job started.
    pub elapsed_ms: u64,
    /// Running, done or failed.
    pub outcome: JobOutcome<'a>,
}

/// The `202` body of a job just started.
pub fn job_started(id: u64, kind: &str) -> Json {
    json!({"id": id.to_string(), "kind": kind, "state": "running", "status_url": format!("/v1/_admin/jobs/{id}")})
}

/// `GET /v1/_admin/jobs/{id}`.
pub fn job_status(j: &JobStatus<'_>) -> Json {
    let state = match j.outcome {
        JobOutcome::Running => "running",
        JobOutcome::Done(_) => "done",
        JobOutcome::Failed { .. } => "failed",
    };
    let mut v = json!({
        "id": j.id.to_string(),
        "kind": j.kind,
        "state": state,
        "progress": {"done": j.done, "total": j.total},
        "elapsed_ms": j.elapsed_ms,
    });
    match j.outcome {
        JobOutcome::Done(result) => v["result"] = result.clone(),
        JobOutcome::Failed { status, message } => v["error"] = json!({"status": status, "message": message}),
        JobOutcome::Running => {}
    }
    v
}

/// `POST /v1/sync/run?wait=false`: the round runs in the background.
pub fn sync_started() -> Json {
    json!({"status": "started"})
}

/// `POST /v1/namespaces/{dst}/_admin/copy`'s body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRequest {
    /// The namespace copied (`source_namespace`).
    pub source: String,
    /// Copy every object rather than share them.
    pub deep: bool,
    /// Make a branch (shares its parent's objects, records its lineage).
    pub branch: bool,
    /// The source generation (None: the newest).
    pub generation: Option<u64>,
}

/// Parse `{"source_namespace", "deep"?, "branch"?, "generation"?}`.
pub fn parse_copy(body: &Json) -> Result<CopyRequest, EngineError> {
    let obj = body.as_object().ok_or_else(|| invalid("copy body must be a JSON object"))?;
    let mut source = None;
    let (mut deep, mut branch, mut generation) = (false, false, None);
    for (k, v) in obj {
        let flag = || v.as_bool().ok_or_else(|| invalid(format!("{k} must be a bool")));
        match k.as_str() {
            "source_namespace" => {
                source = Some(v.as_str().ok_or_else(|| invalid("source_namespace must be a string"))?)
            }
            "deep" => deep = flag()?,
            "branch" => branch = flag()?,
            "generation" => generation = parse_generation(v)?,
            other => return Err(invalid(format!("unknown copy parameter {other:?}"))),
        }
    }
    let source = source.ok_or_else(|| invalid("copy needs \"source_namespace\""))?;
    if deep && branch {
        return Err(invalid("a branch shares its parent's objects; it cannot be deep"));
    }
    Ok(CopyRequest { source: source.to_owned(), deep, branch, generation })
}

/// `null` (the newest) or a positive generation.
fn parse_generation(v: &Json) -> Result<Option<u64>, EngineError> {
    match v {
        Json::Null => Ok(None),
        _ => v
            .as_u64()
            .filter(|g| *g > 0)
            .map(Some)
            .ok_or_else(|| invalid("generation must be a positive integer")),
    }
}

/// Parse `POST /v1/_admin/repair`'s `{"sweep"?, "grace_secs"?, "manifest_retention_secs"?}`.
pub fn parse_repair(body: &Json) -> Result<RepairOptions, EngineError> {
    let obj = body.as_object().ok_or_else(|| invalid("repair body must be a JSON object"))?;
    let mut opts = RepairOptions { sweep: false, grace_ms: DEFAULT_GRACE_MS, manifest_retention_ms: None };
    for (k, v) in obj {
        let secs = || {
            v.as_u64()
                .map(|s| s.saturating_mul(1000))
                .ok_or_else(|| invalid(format!("{k} must be a non-negative integer")))
        };
        match k.as_str() {
            "sweep" => opts.sweep = v.as_bool().ok_or_else(|| invalid("sweep must be a bool"))?,
            "grace_secs" => opts.grace_ms = secs()?,
            "manifest_retention_secs" => {
                opts.manifest_retention_ms = if v.is_null() { None } else { Some(secs()?) }
            }
            other => return Err(invalid(format!("unknown repair parameter {other:?}"))),
        }
    }
    Ok(opts)
}

/// `POST /v1/_admin/verify` takes no parameters: `{}` (or no body).
pub fn parse_verify(body: &Json) -> Result<(), EngineError> {
    if body.as_object().is_none_or(|o| !o.is_empty()) {
        return Err(invalid("verify takes no parameters (send {} or no body)"));
    }
    Ok(())
}

/// `POST .../schema`'s body: the schema object `{attr: type | {...}}`, parsed with the API's rules
/// (the engine takes it typed).
pub fn parse_schema_update(body: &Json) -> Result<crate::schema::Schema, EngineError> {
    if !body.is_object() {
        return Err(invalid("the schema update body must be the schema object {attr: type | {...}}"));
    }
    crate::schema::parse_schema(body).map_err(|e| invalid(e.to_string()))
}

/// `PATCH /v1/namespaces/{ns}/metadata`'s body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// `pinning`: pin (true) or unpin (false); None: unchanged.
    pub pin: Option<bool>,
    /// `labels`: set or (None) remove each; None: unchanged.
    pub labels: Option<LabelChanges>,
    /// `read_only`: refuse (true) or allow (false) changes; None (absent or null): unchanged.
    pub read_only: Option<bool>,
}

/// Parse `{"pinning"?, "labels"?, "read_only"?}`.
pub fn parse_metadata_update(body: &Json) -> Result<MetadataUpdate, EngineError> {
    let obj = body.as_object().ok_or_else(|| invalid("metadata update must be a JSON object"))?;
    let mut out = MetadataUpdate::default();
    for (k, v) in obj {
        match k.as_str() {
            "pinning" => out.pin = Some(parse_pinning(v)?),
            "labels" => out.labels = Some(parse_label_changes(v)?),
            "read_only" => match v {
                Json::Bool(b) => out.read_only = Some(*b),
                Json::Null => {}
                _ => return Err(invalid("read_only must be a bool")),
            },
            other => return Err(invalid(format!("unknown metadata parameter {other:?}"))),
        }
    }
    Ok(out)
}

/// `{"key": "value" | null, ...}`: set or (null) remove each label; checked
/// against the label rules (`engine::labels::validate_changes`).
pub fn parse_label_changes(v: &Json) -> Result<LabelChanges, EngineError> {
    let obj = v.as_object().ok_or_else(|| invalid("labels must be an object of strings"))?;
    let mut out = LabelChanges::new();
    for (k, v) in obj {
        let value = match v {
            Json::String(s) => Some(s.clone()),
            Json::Null => None,
            _ => return Err(invalid(format!("label {k:?} must be a string (or null to remove it)"))),
        };
        out.insert(k.clone(), value);
    }
    validate_changes(&out)?;
    Ok(out)
}

/// `true`, `false`, `null` (false) or `{"replicas": N}` (N > 0) / `{}` (true).
fn parse_pinning(v: &Json) -> Result<bool, EngineError> {
    let bad = || invalid("pinning must be true, false, null or {\"replicas\": N}");
    match v {
        Json::Bool(b) => Ok(*b),
        Json::Null => Ok(false),
        Json::Object(o) => match o.get("replicas").map(Json::as_u64) {
            Some(Some(n)) if o.len() == 1 => Ok(n > 0),
            None if o.is_empty() => Ok(true),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_body_is_the_earlier_one_byte_for_byte() {
        let r = RepairReport {
            namespaces: 2,
            manifests_read: 3,
            manifests_collected: 4,
            refcounts_changed: 5,
            refcounts_lowered: 6,
            refcounts_raised: 7,
            missing_objects: vec!["m".into()],
            swept: vec!["a".into(), "b".into()],
            kept_young: 8,
            staging_removed: 9,
        };
        // Earlier builds: the report's serde form, then status and swept_count.
        let expected = r#"{"namespaces":2,"manifests_read":3,"manifests_collected":4,"refcounts_changed":5,"#
            .to_owned()
            + r#""refcounts_lowered":6,"refcounts_raised":7,"missing_objects":["m"],"swept":["a","b"],"#
            + r#""kept_young":8,"staging_removed":9,"status":"OK","swept_count":2}"#;
        assert_eq!(repair_response(&r).to_string(), expected);
    }

    #[test]
    fn verify_body_is_the_earlier_one_and_says_damaged() {
        let mut r = VerifyReport {
            namespaces: 1,
            objects_checked: 2,
            bytes_checked: 3,
            rows_checked: 4,
            damaged: vec![],
            refetched: vec![],
        };
        let counts = r#"{"namespaces":1,"objects_checked":2,"bytes_checked":3,"rows_checked":4,"#;
        assert_eq!(verify_response(&r).to_string(), format!(r#"{counts}"damaged":[],"status":"OK"}}"#));
        r.damaged.push(DamagedObject {
            key: "k".into(),
            error: "bad crc".into(),
            namespaces: vec!["ns".into()],
        });
        let v = verify_response(&r);
        let damaged = r#""damaged":[{"key":"k","error":"bad crc","namespaces":["ns"]}],"status":"DAMAGED"}"#;
        assert_eq!(v.to_string(), format!("{counts}{damaged}"));
        assert_eq!(v["damaged"][0]["error"], "bad crc");
    }

    #[test]
    fn compaction_and_restore_bodies_keep_their_field_order() {
        let r = CompactionReport { performed: true, generation: 7, rows_written: 10, ..Default::default() };
        let keys: Vec<String> = compaction_response(&r).as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "status",
                "performed",
                "version",
                "wal_objects_folded",
                "segments_written",
                "segments_merged",
                "rows_written",
                "bytes_written"
            ]
        );
        let info = SnapshotInfo { namespace: "o/p/src".into(), generation: 3, objects: 4, bytes: 5 };
        assert_eq!(
            restore_response("dst", 9, &info).to_string(),
            r#"{"status":"OK","namespace":"dst","version":9,"source_namespace":"o/p/src","source_version":3,"objects":4,"bytes":5}"#
        );
    }

    #[test]
    fn listing_and_small_bodies() {
        let page = NamespacePage { namespaces: vec!["a".into(), "b".into()], next_cursor: None };
        assert_eq!(
            namespace_page(&page).to_string(),
            r#"{"namespaces":[{"id":"a"},{"id":"b"}],"next_cursor":null}"#
        );
        let page = NamespacePage { namespaces: vec![], next_cursor: Some("b".into()) };
        assert_eq!(namespace_page(&page)["next_cursor"], "b");
        assert_eq!(health().to_string(), r#"{"status":"ok"}"#);
        assert_eq!(ready().to_string(), r#"{"status":"ready"}"#);
        assert_eq!(ok().to_string(), r#"{"status":"OK"}"#);
        assert_eq!(explain_response("plan")["plan_text"], "plan");
        assert_eq!(cache_warm_accepted()["status"], "ACCEPTED");
    }

    #[test]
    fn job_bodies_by_outcome() {
        assert_eq!(
            job_started(3, "repair").to_string(),
            r#"{"id":"3","kind":"repair","state":"running","status_url":"/v1/_admin/jobs/3"}"#
        );
        let result = json!({"status": "OK"});
        let mut j = JobStatus {
            id: 3,
            kind: "verify",
            done: 1,
            total: 2,
            elapsed_ms: 5,
            outcome: JobOutcome::Running,
        };
        assert_eq!(
            job_status(&j).to_string(),
            r#"{"id":"3","kind":"verify","state":"running","progress":{"done":1,"total":2},"elapsed_ms":5}"#
        );
        j.outcome = JobOutcome::Done(&result);
        let v = job_status(&j);
        assert_eq!((v["state"].as_str(), &v["result"]), (Some("done"), &result));
        j.outcome = JobOutcome::Failed { status: 503, message: "gone" };
        let v = job_status(&j);
        assert_eq!(v["state"], "failed");
        assert_eq!(v["error"], json!({"status": 503, "message": "gone"}));
        assert!(v.get("result").is_none());
    }

    #[test]
    fn a_sync_run_started_in_the_background_says_so() {
        assert_eq!(sync_started().to_string(), r#"{"status":"started"}"#);
    }

    fn message(e: EngineError) -> String {
        assert_eq!(e.kind(), crate::engine::ErrorKind::InvalidInput);
        e.to_string()
    }

    #[test]
    fn copy_body_parses_and_names_what_is_wrong() {
        let c = parse_copy(&json!({"source_namespace": "a", "branch": true, "generation": 4})).unwrap();
        assert_eq!(c, CopyRequest { source: "a".into(), deep: false, branch: true, generation: Some(4) });
        assert_eq!(
            parse_copy(&json!({"source_namespace": "a", "generation": null})).unwrap().generation,
            None
        );
        let err = |v: Json| message(parse_copy(&v).unwrap_err());
        assert_eq!(err(json!([])), "copy body must be a JSON object");
        assert_eq!(err(json!({})), "copy needs \"source_namespace\"");
        assert_eq!(err(json!({"source_namespace": 1})), "source_namespace must be a string");
        assert_eq!(err(json!({"source_namespace": "a", "deep": "y"})), "deep must be a bool");
        assert_eq!(
            err(json!({"source_namespace": "a", "generation": 0})),
            "generation must be a positive integer"
        );
        assert_eq!(err(json!({"source_namespace": "a", "x": 1})), "unknown copy parameter \"x\"");
        assert_eq!(
            err(json!({"source_namespace": "a", "deep": true, "branch": true})),
            "a branch shares its parent's objects; it cannot be deep"
        );
    }

    #[test]
    fn repair_and_verify_bodies() {
        let o = parse_repair(&json!({})).unwrap();
        assert_eq!((o.sweep, o.grace_ms, o.manifest_retention_ms), (false, DEFAULT_GRACE_MS, None));
        let o = parse_repair(&json!({"sweep": true, "grace_secs": 2, "manifest_retention_secs": 3})).unwrap();
        assert_eq!((o.sweep, o.grace_ms, o.manifest_retention_ms), (true, 2000, Some(3000)));
        let err = |v: Json| message(parse_repair(&v).unwrap_err());
        assert_eq!(err(json!({"grace_secs": -1})), "grace_secs must be a non-negative integer");
        assert_eq!(err(json!({"sweep": 1})), "sweep must be a bool");
        assert_eq!(err(json!({"nope": 1})), "unknown repair parameter \"nope\"");
        assert!(parse_verify(&json!({})).is_ok());
        assert!(parse_verify(&json!({"deep": true})).is_err());
        assert!(parse_verify(&json!(null)).is_err());
        assert!(parse_schema_update(&json!({"a": "string"})).is_ok());
        assert!(parse_schema_update(&json!(["a"])).is_err());
    }

    #[test]
    fn metadata_update_parses_pinning_labels_and_read_only() {
        let u = parse_metadata_update(&json!({"pinning": {"replicas": 2}, "labels": {"a": "b", "c": null}}))
            .unwrap();
        assert_eq!(u.pin, Some(true));
        let labels = u.labels.unwrap();
        assert_eq!((labels["a"].as_deref(), labels["c"].as_deref()), (Some("b"), None));
        assert_eq!(parse_metadata_update(&json!({"pinning": {"replicas": 0}})).unwrap().pin, Some(false));
        assert_eq!(parse_metadata_update(&json!({"pinning": {}})).unwrap().pin, Some(true));
        assert_eq!(
            parse_metadata_update(&json!({"pinning": null, "read_only": false})).unwrap().pin,
            Some(false)
        );
        assert_eq!(parse_metadata_update(&json!({})).unwrap(), MetadataUpdate::default());
        assert_eq!(parse_metadata_update(&json!({"read_only": true})).unwrap().read_only, Some(true));
        assert_eq!(parse_metadata_update(&json!({"read_only": false})).unwrap().read_only, Some(false));
        assert_eq!(parse_metadata_update(&json!({"read_only": null})).unwrap().read_only, None);
        assert!(parse_metadata_update(&json!({"read_only": "yes"})).is_err());
        let err = |v: Json| message(parse_metadata_update(&v).unwrap_err());
        assert_eq!(
            err(json!({"pinning": {"replicas": 1, "x": 1}})),
            "pinning must be true, false, null or {\"replicas\": N}"
        );
        assert_eq!(err(json!({"labels": {"a": 1}})), "label \"a\" must be a string (or null to remove it)");
        assert_eq!(err(json!({"labels": []})), "labels must be an object of strings");
        assert_eq!(err(json!({"read_only": 1})), "read_only must be a bool");
        assert_eq!(err(json!({"other": 1})), "unknown metadata parameter \"other\"");
    }
}
