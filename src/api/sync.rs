//! `GET /v1/sync/status` and `POST /v1/sync/run` (`sync::Syncer`).
//!
//! Invariants: a caller sees only its own project's namespaces (the status is
//! filtered by the principal's org/project); without `[sync]` both routes
//! are 404 with a message naming the missing setting; a run answers when
//! the round is done, or at once with `?wait=false`.

use std::sync::Arc;

use serde_json::Value as Json;

use super::ctx::Ctx;
use super::error::ApiError;
use crate::sync::Syncer;
use crate::wire::admin::sync_started;

fn syncer(ctx: &Ctx) -> Result<Arc<Syncer>, ApiError> {
    ctx.state.sync.clone().ok_or_else(|| {
        ApiError::not_found("sync is not configured on this node (set [sync] remote, or --sync-remote)")
    })
}

fn project(ctx: &Ctx) -> String {
    format!("{}/{}", ctx.principal.org, ctx.principal.project)
}

/// `GET /v1/sync/status`: pending work as of now, reachability re-checked when stale (`sync/live.rs`).
pub(super) async fn status(ctx: &Ctx) -> Result<Json, ApiError> {
    Ok(crate::wire::sync::status(&syncer(ctx)?.status_now(Some(&project(ctx))).await))
}

/// `POST /v1/sync/run` (`?wait=false`: start it and return; `?sweep=true`:
/// then sweep the caller's project in the remote).
pub(super) async fn run(ctx: &Ctx) -> Result<Json, ApiError> {
    let s = syncer(ctx)?;
    let sweep = match ctx.params.get("sweep").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("sweep must be true or false, got {other:?}")))
        }
    };
    let wait = match ctx.params.get("wait").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!("wait must be true or false, got {other:?}")))
        }
    };
    let scope = Some((ctx.principal.org.clone(), ctx.principal.project.clone()));
    if !wait {
        tokio::spawn(async move {
            s.run_round().await;
            if sweep {
                let _ = s.run_sweep(scope).await;
            }
        });
        return Ok(sync_started());
    }
    s.run_round().await;
    if sweep {
        s.run_sweep(scope).await.map_err(|e| ApiError::new(hyper::StatusCode::SERVICE_UNAVAILABLE, e))?;
    }
    // Only this project's namespaces decide (another tenant's failure is not ours to see).
    Ok(crate::wire::sync::run_response(&s.status(Some(&project(ctx)))))
}
