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
/// object is).
pub fn verify_response(r: &VerifyReport) -> Json {
    let damaged: Vec<Json> = r.damaged.iter().map(damaged_json).collect();
    json!({
        "namespaces": r.namespaces,
        "objects_checked": r.objects_checked,
        "bytes_checked": r.bytes_checked,
        "rows_checked": r.rows_checked,
        "damaged": damaged,
        "status": if r.damaged.is_empty() { "OK" } else { "DAMAGED" },
    })
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

/// `POST /v1/sync/run`: the caller's sync status (`GET /v1/sync/status`'s
/// body) plus `status`: `partial` when one of its namespaces' last round
/// failed, else `OK`.
pub fn sync_run_response(mut status: Json) -> Json {
    let failed =
        status["namespaces"].as_array().is_some_and(|a| a.iter().any(|n| !n["last_error"].is_null()));
    status["status"] = json!(if failed { "partial" } else { "OK" });
    status
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

/// `PATCH /v1/namespaces/{ns}/metadata`'s body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// `pinning`: pin (true) or unpin (false); None: unchanged.
    pub pin: Option<bool>,
    /// `labels`: set or (None) remove each; None: unchanged.
    pub labels: Option<LabelChanges>,
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
                Json::Bool(false) | Json::Null => {}
                Json::Bool(true) => {
                    return Err(EngineError::unsupported("read_only namespaces are not implemented yet"))
                }
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

