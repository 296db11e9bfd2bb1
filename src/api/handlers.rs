//! Route handlers: decode the request, call the engine, encode the
//! turbopuffer response (through `wire/`).
//!
//! Invariants:
//! - Every namespace path is built from the authenticated principal's
//!   org/project plus the URL's namespace name (validated by `NsPath::new`).
//! - A handler returns `Ok(json)` for 200 or an [`ApiError`]; it never
//!   panics on input (a panic is still caught one level up and becomes 500).
//! - A query and all subqueries of a multi-query read one snapshot.
//! - No JSON field name is read or written here: bodies are parsed and
//!   rendered by `wire/` (query parameters and headers are HTTP's, read here).
//! - How a read is done (warm, cold, time travel, last known) and where
//!   queries are evaluated is the engine's choice (`Engine::read`); a handler
//!   only says what the request allows.
//! - A route that writes rows is admitted against the node's memory budget
//!   before its body is read, and holds the admission until it is answered
//!   (`engine/budget.rs`: 429 with `retry-after` past the write threshold).

use std::sync::Arc;

use futures::StreamExt;
use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH};
use hyper::{Request, StatusCode};
use serde_json::Value as Json;

use super::body::{parse_json, read_body};
use super::ctx::Ctx;
use super::error::ApiError;
use super::router::{route, NoRoute, Route};
use super::stream::Reply;
use super::{maintenance, metrics, AppState};
use crate::engine::{Consistency, ReadOptions, WriteRequest};
use crate::wire::admin::{self, parse_label_changes, parse_metadata_update, parse_schema_update};
use crate::wire::namespace::schema_json;
use crate::wire::query::{parse_recall, parse_request, query_response, recall_json};

/// Namespaces whose metadata one `GET /v1/namespaces?include_metadata=true` reads at once.
const METADATA_CONCURRENCY: usize = 8;
/// Default page of `GET /v1/namespaces`.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Header carrying a write's idempotency key.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Route, authenticate and run one request.
pub async fn dispatch(
    state: Arc<AppState>,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Reply, ApiError> {
    let route = route(req.method(), req.uri().path()).map_err(|e| match e {
        NoRoute::NotFound => {
            ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
        }
        NoRoute::MethodNotAllowed(allowed) => {
            let allow: Vec<&str> = allowed.iter().map(hyper::Method::as_str).collect();
            ApiError {
                allow: Some(allow.join(", ")),
                ..ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("method {} not allowed here", req.method()),
                )
            }
        }
    })?;
    match route {
        Route::Health => return Ok(admin::health().into()),
        Route::Ready => return ready(&state).await.map(Reply::Json),
        _ => {}
    }
    if state.auth.is_open() {
        state.browser.check(req.headers(), &route)?;
    }
    if let Route::Console(file) = &route {
        return super::console::serve(state.console, file).map(Reply::Page);
    }
    if route == Route::WhoAmI && !state.auth.is_open() && !req.headers().contains_key(AUTHORIZATION) {
        // Not an error: a client (the console) asks whether it needs a key before it has one.
        return Ok(admin::anonymous_whoami().into());
    }
    let principal = state.auth.authenticate(req.headers(), route.is_write())?;
    let params = req
        .uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if route == Route::Metrics {
        return Ok(metrics::scrape(&state, &principal));
    }
    let ctx = Ctx { state, principal, params, started };
    match route {
        Route::Export(ns) => maintenance::export(&ctx, &ns).await,
        Route::Snapshot(ns) => maintenance::snapshot(&ctx, &ns).await,
        route => run(&ctx, route, req).await.map(Reply::Json),
    }
}

/// `GET /v1/whoami`: the key's org, project and rights, and what this node
/// offers (models, sync, console) — what a client such as the console needs
/// to show only the controls that can work.
fn whoami(ctx: &Ctx) -> Json {
    let models = ctx.state.engine.models().current();
    admin::whoami_json(&admin::WhoAmI {
        org: &ctx.principal.org,
        project: &ctx.principal.project,
        read_only: ctx.principal.read_only,
        open: ctx.state.auth.is_open(),
        models: models.iter().map(|m| m.as_ref()).collect(),
        sync: ctx.state.sync.is_some(),
        console: ctx.state.console,
    })
}

async fn run(ctx: &Ctx, route: Route, req: Request<Incoming>) -> Result<Json, ApiError> {
    if let (Some(sync), Some(ns)) = (&ctx.state.sync, route.changed_namespace()) {
        sync.check_writable(&ctx.ns(ns)?)?;
    }
    match route {
        Route::ListNamespaces => list_namespaces(ctx).await,
        Route::WhoAmI => Ok(whoami(ctx)),
        Route::Write(ns) => write(ctx, &ns, req).await,
        Route::DeleteNamespace(ns) => {
            ctx.state.engine.delete_namespace(&ctx.ns(&ns)?).await?;
            Ok(admin::ok())
        }
        Route::Query(ns) => query(ctx, &ns, req).await,
        Route::ExplainQuery(ns) => explain_query(ctx, &ns, req).await,
        Route::GetMetadata(ns) => maintenance::metadata(ctx, &ns).await,
        Route::PatchMetadata(ns) => patch_metadata(ctx, &ns, req).await,
        Route::GetSchema(ns) => {
            let snap = ctx.state.engine.existing(&ctx.ns(&ns)?, true).await?;
            Ok(schema_json(&snap.state))
        }
        Route::UpdateSchema(ns) => update_schema(ctx, &ns, req).await,
        Route::HintCacheWarm(ns) => hint_cache_warm(ctx, &ns),
        Route::Compact(ns) => maintenance::compact(ctx, &ns).await,
        Route::Recall(ns) => recall(ctx, &ns, req).await,
        Route::StartAsync(ns) => {
            ctx.ns(&ns)?;
            Err(ApiError::not_implemented(
                "asynchronous copies are not implemented; send copy_from_namespace in a regular write \
                 (POST /v2/namespaces/NS): a copy-on-write copy completes at once",
            ))
        }
        Route::PollOperation(ns) => {
            ctx.ns(&ns)?;
            Err(ApiError::not_found("no such operation (asynchronous operations are not implemented yet)"))
        }
        Route::AdminCopy(ns) => maintenance::admin_copy(ctx, &ns, req).await,
        Route::Restore(ns) => maintenance::restore(ctx, &ns, req).await,
        Route::Repair => maintenance::repair(ctx, req).await,
        Route::Verify => maintenance::verify(ctx, req).await,
        Route::Job(id) => ctx.state.jobs.status(&id, &ctx.principal),
        Route::SyncStatus => super::sync::status(ctx).await,
        Route::SyncRun => super::sync::run(ctx).await,
        Route::Export(_) | Route::Snapshot(_) => {
            Err(ApiError::internal("streaming routes are dispatched before the JSON handlers"))
        }
        Route::Health | Route::Ready | Route::Metrics | Route::Console(_) => Ok(admin::health()),
        Route::V1Upsert(ns) => v1_upsert(ctx, &ns, req).await,
        Route::V1Query(ns) => v1_query(ctx, &ns, req).await,
        Route::V1Delete(ns) => {
            ctx.state.engine.delete_namespace(&ctx.ns(&ns)?).await?;
            Ok(admin::ok())
        }
    }
}

/// `POST /v1/vectors/{ns}` (legacy): the v1 upsert as a v2 write.
async fn v1_upsert(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_admitted, req) = admit(ctx, &path, req).await?;
    let (_, body) = body_json(ctx, req).await?;
    let w = crate::wire::v1::parse_upsert(&body)?;
    let resp = ctx.state.engine.write(&path, w).await?;
    Ok(resp.to_response(ctx.elapsed_ms()))
}

/// `POST /v1/vectors/{ns}/query` (legacy): the v1 query as a v2 query, its
/// rows in the old shape.
async fn v1_query(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_, body) = body_json(ctx, req).await?;
    let (parsed, render) = crate::wire::v1::parse_query(&body)?;
    let answer = ctx.state.engine.read(&path, query_options(ctx, &parsed)?).await?.query(&parsed).await?;
    ctx.state.engine.metrics().observe_query(metrics::query_kind(&parsed), answer.execution);
    Ok(crate::wire::v1::query_response(&answer, render))
}

/// Ready = not draining and able to take writes (the local metadata is open).
async fn ready(state: &AppState) -> Result<Json, ApiError> {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }
    // Not ready is 503 whatever the cause (a full disk included): probes key on it.
    let not_ready = |e| ApiError { status: StatusCode::SERVICE_UNAVAILABLE, ..ApiError::from(e) };
    state.engine.ready().await.map_err(not_ready)?;
    Ok(admin::ready())
}

async fn body_json(ctx: &Ctx, req: Request<Incoming>) -> Result<(hyper::HeaderMap, Json), ApiError> {
    let (parts, body) = req.into_parts();
    let limits = &ctx.state.limits();
    let bytes: Bytes = read_body(body, &parts.headers, limits.max_body_bytes, limits.body_timing()).await?;
    Ok((parts.headers, off_workers(bytes, parse_json).await?))
}

/// Bodies larger than this are parsed on a blocking thread.
const INLINE_PARSE_BYTES: usize = 256 * 1024;

/// `parse(bytes)`, on a blocking thread when the body is large, so a big
/// JSON body never stalls the async workers (and `/health` with them).
pub(super) async fn off_workers<T: Send + 'static>(
    bytes: Bytes,
    parse: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if bytes.len() <= INLINE_PARSE_BYTES {
        return parse(&bytes);
    }
    tokio::task::spawn_blocking(move || parse(&bytes))
        .await
        .map_err(|e| ApiError::internal(format!("body parsing task failed: {e}")).with_source(e))?
}

/// Bodies up to this long are read and dropped when a write is refused for
/// memory (a client still sending would otherwise see a reset connection,
/// not the 429); longer ones are answered at once and the connection closed.
const DISCARD_REFUSED_BYTES: u64 = 16 << 20;

/// A write's admission against the node's memory budget, asked before its
/// body is read: a declared length (before gzip) is checked against the
/// headroom, so a body that cannot fit is refused rather than buffered
/// (what it decompresses to is charged once read: `Engine::charge_body`).
async fn admit(
    ctx: &Ctx,
    path: &crate::layout::NsPath,
    req: Request<Incoming>,
) -> Result<(Option<crate::engine::budget::Admission>, Request<Incoming>), ApiError> {
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    match ctx.state.engine.admit_write(path, declared.unwrap_or(0)).await {
        Ok(admission) => Ok((admission, req)),
        Err(e) => {
            if declared.unwrap_or(0) <= DISCARD_REFUSED_BYTES {
                let timing = ctx.state.limits().body_timing();
                super::body::discard(req.into_body(), DISCARD_REFUSED_BYTES, timing).await;
            }
            Err(e.into())
        }
    }
}

async fn write(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (mut admitted, req) = admit(ctx, &path, req).await?;
    let (parts, body) = req.into_parts();
    let limits = &ctx.state.limits();
    let bytes = read_body(body, &parts.headers, limits.max_body_bytes, limits.body_timing()).await?;
    ctx.state.engine.charge_body(&path, &mut admitted, bytes.len() as u64).await?;
    let headers = parts.headers;
    // Parsing a large body is CPU work: off the async workers.
    let (mut w, labels) = off_workers(bytes, |b| WriteRequest::from_slice(b).map_err(ApiError::from)).await?;
    // `labels` (our extension) rides along a write, typically the first one;
    // validated before anything is written, committed in the write's generation.
    if let Some(v) = labels {
        w.labels = parse_label_changes(&v)?;
    }
    if let Some(k) = headers.get(IDEMPOTENCY_KEY) {
        let k = k.to_str().map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
        w.set_idempotency_key(k)?;
    }
    // Full-text values cost more in flight than their bytes of body (their tokens, the overlay's postings).
    ctx.state.engine.charge_text(&path, &mut admitted, &w).await?;
    let resp = ctx.state.engine.write(&path, w).await?;
    Ok(resp.to_response(ctx.elapsed_ms()))
}

async fn query(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_, body) = body_json(ctx, req).await?;
    let multi = ctx.params.get("stainless_overload").is_some_and(|v| v == "multiQuery");
    let parsed = parse_request(&body, multi)?;
    let answer = ctx.state.engine.read(&path, query_options(ctx, &parsed)?).await?.query(&parsed).await?;
    ctx.state.engine.metrics().observe_query(metrics::query_kind(&parsed), answer.execution);
    Ok(query_response(parsed.multi, &answer, ctx.elapsed_ms()))
}

/// What a query request allows its read.
fn query_options(ctx: &Ctx, parsed: &crate::query::QueryRequest) -> Result<ReadOptions, ApiError> {
    Ok(ReadOptions {
        consistency: Consistency::strong_if(parsed.strong),
        generation: maintenance::generation_param(ctx)?,
        // Only a caller that names `strong` gets a 503 while the store is unreachable.
        allow_stale: !parsed.strong_demanded,
        allow_cold: true,
        measure_temperature: true,
        disable_cache: parsed.disable_cache,
    })
}

/// `POST /v1/namespaces/{ns}/_debug/recall`: ANN against exact search on
/// sampled vectors of one strong snapshot.
async fn recall(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_, body) = body_json(ctx, req).await?;
    let mut view = ctx.state.engine.read(&path, maintenance::read_options(ctx, true)?).await?;
    let params = parse_recall(&body)?;
    Ok(recall_json(&view.recall(params).await?))
}

async fn explain_query(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_, body) = body_json(ctx, req).await?;
    let parsed = parse_request(&body, false)?;
    let mut view = ctx.state.engine.read(&path, maintenance::read_options(ctx, parsed.strong)?).await?;
    let mut text = format!(
        "namespace {} at version {} ({} read)",
        path.ns(),
        view.snapshot().await?.generation(),
        if parsed.strong { "strong" } else { "eventual" }
    );
    for (i, q) in parsed.queries.iter().enumerate() {
        if parsed.multi {
            text.push_str(&format!("\nquery {i}:"));
        }
        text.push('\n');
        text.push_str(&view.explain(q).await?);
    }
    Ok(admin::explain_response(&text))
}

async fn patch_metadata(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_, body) = body_json(ctx, req).await?;
    let update = parse_metadata_update(&body)?;
    if let Some(changes) = update.labels.filter(|c| !c.is_empty()) {
        ctx.state.engine.set_labels(&path, &changes).await?;
    }
    if let Some(p) = update.pin {
        ctx.state.engine.set_pinned(&path, p).await?;
    }
    if let Some(r) = update.read_only {
        ctx.state.engine.set_read_only(&path, r).await?;
    }
    Ok(ctx.state.engine.metadata(&path).await?.to_json())
}

/// `?label=k:v[,k2:v2]`: every pair must match.
fn parse_label_filter(v: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .map(|pair| {
            pair.split_once(':')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::bad_request(format!("label filter {pair:?} must be key:value")))
        })
        .collect()
}

async fn update_schema(ctx: &Ctx, ns: &str, req: Request<Incoming>) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let (_, body) = body_json(ctx, req).await?;
    let schema = parse_schema_update(&body)?;
    let snap = ctx.state.engine.update_schema(&path, schema).await?;
    Ok(schema_json(&snap.state))
}

fn hint_cache_warm(ctx: &Ctx, ns: &str) -> Result<Json, ApiError> {
    let path = ctx.ns(ns)?;
    let engine = ctx.state.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.snapshot(&path, false).await {
            tracing::debug!(namespace = %path, error = %e, "cache warm-up failed");
        }
    });
    Ok(admin::cache_warm_accepted())
}

async fn list_namespaces(ctx: &Ctx) -> Result<Json, ApiError> {
    let page_size = match ctx.params.get("page_size").filter(|s| !s.is_empty()) {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(ApiError::bad_request("page_size must be an integer from 1 to 1000")),
        },
    };
    let get = |k: &str| ctx.params.get(k).map(String::as_str).filter(|s| !s.is_empty());
    let p = &ctx.principal;
    let labels = parse_label_filter(get("label"))?;
    let page = ctx
        .state
        .engine
        .list_labelled_namespaces(&p.org, &p.project, get("prefix"), get("cursor"), page_size, &labels)
        .await?;
    match get("include_metadata") {
        None | Some("false") => Ok(admin::namespace_page(&page)),
        Some("true") => {
            // A few at a time: each may load a namespace's state or read the store.
            let names: Vec<String> = page.namespaces.clone();
            let metadata: Vec<Result<Json, String>> = futures::stream::iter(names)
                .map(|ns| async move { maintenance::metadata(ctx, &ns).await.map_err(|e| e.message) })
                .buffered(METADATA_CONCURRENCY)
                .collect()
                .await;
            Ok(admin::namespace_page_with_metadata(&page, metadata))
        }
        Some(other) => {
            Err(ApiError::bad_request(format!("include_metadata must be true or false, got {other:?}")))
        }
    }
}
