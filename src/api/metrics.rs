//! `GET /metrics` and the API's recording hooks: the scrape handler, the
//! labels of an HTTP request, the kind of a query.
//!
//! Invariants:
//! - The scrape is authenticated like every non-public route (any valid
//!   key, read-only included; nothing when the daemon runs without keys).
//! - With keys configured, namespaces are named only inside the caller's own
//!   org/project; every other namespace counts in `_other` (tenant isolation:
//!   a key never learns another project's namespace names).
//! - Label values are static: the route *pattern* (never the raw path), a
//!   known method or `other`, a fixed set of query kinds.

use hyper::Method;
use tokio::io::AsyncWriteExt;

use super::auth::Principal;
use super::router::Route;
use super::stream::{Reply, StreamReply};
use super::AppState;
use crate::engine::EngineError;
use crate::metrics::{HttpLabels, CONTENT_TYPE};
use crate::query::{QueryRequest, Rank};

/// The `route` label of a request that matched no route (404/405).
pub const UNMATCHED: &str = "unmatched";

/// Encode every family for `principal` (see the module invariants).
pub fn scrape(state: &AppState, principal: &Principal) -> Reply {
    let visible = (!state.auth.is_open()).then(|| format!("{}/{}/", principal.org, principal.project));
    let engine = &state.engine;
    let text = engine.metrics().render(&engine.gauges(), visible.as_deref());
    Reply::Stream(StreamReply::spawn(CONTENT_TYPE, Vec::new(), move |mut w| async move {
        w.write_all(text.as_bytes()).await.map_err(|e| EngineError::io("metrics body", e))?;
        w.shutdown().await.map_err(|e| EngineError::io("metrics body", e))
    }))
}

/// The labels of one answered request.
pub fn http_labels(method: &Method, route: Option<&Route>, status: u16) -> HttpLabels {
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    HttpLabels { method, route: route.map_or(UNMATCHED, Route::pattern), status }
}

/// The `kind` of a query request: `multi` for several subqueries, else by
/// what ranks or selects the rows of the one query.
pub fn query_kind(req: &QueryRequest) -> &'static str {
    let [q] = req.queries.as_slice() else { return "multi" };
    match &q.rank {
        Some(
            Rank::Vector { exact: false, .. }
            | Rank::NamedVector { exact: false, .. }
            | Rank::MultiVector { exact: false, .. },
        ) => "ann",
        Some(
            Rank::Vector { exact: true, .. }
            | Rank::NamedVector { exact: true, .. }
            | Rank::MultiVector { exact: true, .. },
        ) => "knn",
        Some(Rank::Sparse { .. }) => "sparse",
        Some(Rank::Text(_)) => "bm25",
        None if q.order.is_none() && !q.aggregates.is_empty() => "aggregate",
        None if q.filters.is_some() => "filter",
        None => "scan",
    }
}
