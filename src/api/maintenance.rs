//! Handlers for namespace branching and copies, time travel, the NDJSON
//! export, snapshot download and restore, and repair.
//!
//! Routes (all scoped to the authenticated principal's org/project):
//! - `POST /v2/namespaces/{dst}` with `branch_from_namespace` / `copy_from_namespace`
//!   (handled by the engine's write path);
//! - `POST /v1/namespaces/{dst}/_admin/copy` `{"source_namespace", "deep"?, "branch"?, "generation"?}`;
//! - `GET /v1/namespaces/{ns}/export[?generation=N]`: NDJSON, one document per line;
//! - `GET /v1/namespaces/{ns}/_admin/snapshot[?generation=N]`: a snapshot file;
//! - `POST /v1/namespaces/{dst}/_admin/restore`: body = a snapshot file;
//! - `POST /v1/_admin/repair` `{"sweep"?, "grace_secs"?, "manifest_retention_secs"?}`;
//! - `POST /v1/_admin/verify` `{}`: every object of the project read, checked and decoded;
//! - `POST /v1/namespaces/{ns}/_admin/compact`: one compaction round now, run as a task
//!   of its own (a client that goes away mid-round does not cancel it);
//! - compact, repair and verify take `?background=true`: they then run as a job (`jobs`)
//!   and answer its id at once; `GET /v1/_admin/jobs/{id}` polls it;
//! - `?generation=N` on query and explain_query reads that retained generation.
//!
//! Invariants: request bodies are parsed and responses rendered by
//! `wire/admin.rs` and `wire/namespace.rs` (no JSON field name lives here);
//! errors that can be known before streaming starts (missing namespace or
//! generation) are answered with their status; a failure after the 200
//! aborts the body (see `stream`). A restore upload is spooled whole
//! to the engine's scratch dir (within the upload deadline) and handed to the
//! engine as a file, which verifies it before taking any lock.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Request;
use serde_json::Value as Json;

use super::body::{parse_json, read_body};
use super::ctx::Ctx;
use super::error::ApiError;
use super::jobs::Progress;
use super::stream::{spool_body, Reply, StreamReply};
use crate::engine::{Consistency, ReadOptions};
use crate::wire::admin::{self, parse_copy, parse_repair, parse_verify};
use crate::wire::namespace::MetadataExtras;

const GENERATION_HEADER: HeaderName = HeaderName::from_static("x-tidepool-generation");
const METRIC_HEADER: HeaderName = HeaderName::from_static("x-tidepool-distance-metric");

/// `?generation=N` (also `?version=N`), if given.
pub(super) fn generation_param(ctx: &Ctx) -> Result<Option<u64>, ApiError> {
    let raw = ctx.params.get("generation").or_else(|| ctx.params.get("version")).filter(|s| !s.is_empty());
    match raw {
        None => Ok(None),
        Some(s) => match s.parse::<u64>() {
            Ok(g) if g > 0 => Ok(Some(g)),
            _ => Err(ApiError::bad_request("generation must be a positive integer")),
        },
    }
}

/// The options of a read that reads the newest generation (strong or
/// eventual) or `?generation=N`, never cold nor stale.
pub(super) fn read_options(ctx: &Ctx, strong: bool) -> Result<ReadOptions, ApiError> {
    Ok(ReadOptions {
        consistency: Consistency::strong_if(strong),
        generation: generation_param(ctx)?,
        ..ReadOptions::default()
    })
}

/// Namespace metadata plus its lineage when it is a branch.
pub(super) async fn metadata(ctx: &Ctx, ns: &str) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let engine = &ctx.state.engine;
    let metadata = engine.read_metadata(&path).await?;
    let store_error = engine.store_unreachable();
    let lineage = match engine.lineage(&path).await {
        Err(e) if e.kind() == crate::engine::ErrorKind::Unavailable => None,
        other => other?,
    };
    let sync = ctx
        .state
        .sync
        .as_ref()
        .and_then(|s| s.namespace_status(&path))
        .map(|v| crate::wire::sync::namespace(&v));
    Ok(metadata.to_json_with(MetadataExtras { store_error, lineage, sync }))
}

fn header_value(v: impl ToString) -> Option<HeaderValue> {
    HeaderValue::from_str(&v.to_string()).ok()
}

/// `GET /v1/namespaces/{ns}/export`.
pub(super) async fn export(ctx: &Ctx, ns: &str) -> Result<Reply, ApiError> {
    let path = ctx.ns(ns)?;
    let snap = ctx.state.engine.read(&path, read_options(ctx, true)?).await?.snapshot().await?.clone();
    let mut headers = Vec::new();
    if let Some(v) = header_value(snap.generation()) {
        headers.push((GENERATION_HEADER, v));
    }
    if let Some(v) = snap.state.distance_metric.and_then(|d| header_value(d.as_str())) {
        headers.push((METRIC_HEADER, v));
    }
    Ok(Reply::Stream(StreamReply::spawn("application/x-ndjson", headers, move |mut w| async move {
        crate::engine::export::export_ndjson(&snap, &mut w).await.map(|_| ())
    })))
}

/// `GET /v1/namespaces/{ns}/_admin/snapshot`.
pub(super) async fn snapshot(ctx: &Ctx, ns: &str) -> Result<Reply, ApiError> {
    let path = ctx.ns(ns)?;
    let generation = generation_param(ctx)?;
    // Resolve the generation first so a missing one is a 404, not a broken body.
    let m = ctx.state.engine.manifest_at(&path, generation).await?;
    let g = m.generation;
    let engine = ctx.state.engine.clone();
    let headers = header_value(g).map(|v| vec![(GENERATION_HEADER, v)]).unwrap_or_default();
    Ok(Reply::Stream(StreamReply::spawn("application/octet-stream", headers, move |mut w| async move {
        engine.write_snapshot(&path, Some(g), &mut w).await.map(|_| ())
    })))
}

async fn optional_json(ctx: &Ctx, req: Request<Incoming>) -> Result<Json, ApiError> {
    let (parts, body) = req.into_parts();
    let limits = &ctx.state.limits();
    let bytes = read_body(body, &parts.headers, limits.max_body_bytes, limits.body_timing()).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Json::Object(serde_json::Map::new()));
    }
    parse_json(&bytes)
}

/// `POST /v1/namespaces/{dst}/_admin/copy`.
pub(super) async fn admin_copy(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let dst = ctx.ns(ns)?;
    let copy = parse_copy(&optional_json(ctx, req).await?)?;
    let src = ctx.ns(&copy.source)?;
    let engine = &ctx.state.engine;
    let out = if copy.branch {
        engine.branch_namespace(&src, &dst, copy.generation).await?
    } else {
        engine.copy_namespace(&src, &dst, copy.deep, copy.generation).await?
    };
    Ok(out.to_json())
}

/// `POST /v1/namespaces/{dst}/_admin/restore` (body: a snapshot file).
pub(super) async fn restore(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let dst = ctx.ns(ns)?;
    // Spooled and verified before the engine takes any lock: a slow upload
    // must not hold up the project's other writers.
    let engine = &ctx.state.engine;
    let limits = ctx.state.limits();
    let spool =
        spool_body(req.into_body(), limits.upload_timing(), limits.max_restore_bytes, engine.scratch_dir())
            .await?;
    let (m, info) = engine.restore_snapshot_file(&dst, spool.path()).await?;
    Ok(admin::restore_response(dst.ns(), m.generation, &info))
}

/// `POST /v1/namespaces/{ns}/_admin/compact`. The round is spawned, not run in
/// the request's future: a 10M-row round takes most of an hour, and whether an
/// abandoned request's future is still polled is the server's choice (an
/// HTTP/2 client that gives up resets its stream); dropped halfway, a round's
/// outputs would leak and its work be lost.
pub(super) async fn compact(ctx: &Ctx, ns: &str) -> Result<Json, ApiError> {
    let (engine, path) = (ctx.state.engine.clone(), ctx.ns(ns)?);
    let work = async move {
        let round = tokio::spawn(async move { engine.compact(&path, true).await });
        let report = round.await.map_err(|e| ApiError::internal(format!("compaction task: {e}")))??;
        Ok(admin::compaction_response(&report))
    };
    if background(ctx)? {
        return Ok(ctx.state.jobs.start("compact", &ctx.principal, |_| work));
    }
    work.await
}

/// `POST /v1/_admin/repair`.
pub(super) async fn repair(ctx: &Ctx, req: Request<Incoming>) -> Result<Json, ApiError> {
    let opts = parse_repair(&optional_json(ctx, req).await?)?;
    let (engine, p) = (ctx.state.engine.clone(), ctx.principal.clone());
    let work = async move {
        let report = engine.repair(&p.org, &p.project, opts).await?;
        Ok(admin::repair_response(&report))
    };
    if background(ctx)? {
        return Ok(ctx.state.jobs.start("repair", &ctx.principal, |_| work));
    }
    work.await
}

/// `POST /v1/_admin/verify`: read and decode every object of the caller's
/// project; report damaged objects with the namespaces referencing them.
pub(super) async fn verify(ctx: &Ctx, req: Request<Incoming>) -> Result<Json, ApiError> {
    parse_verify(&optional_json(ctx, req).await?)?;
    let (engine, p) = (ctx.state.engine.clone(), ctx.principal.clone());
    let work = |progress: Arc<Progress>| async move {
        let report = engine.verify(&p.org, &p.project, &|done, total| progress.set(done, total)).await?;
        Ok(admin::verify_response(&report))
    };
    if background(ctx)? {
        return Ok(ctx.state.jobs.start("verify", &ctx.principal, work));
    }
    work(Arc::default()).await
}

/// `?background=true`: run as a job and answer with its id at once.
fn background(ctx: &Ctx) -> Result<bool, ApiError> {
    match ctx.params.get("background").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("background must be true or false, not {other:?}"))),
    }
}
