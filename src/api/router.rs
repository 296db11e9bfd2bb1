//! Routing: (method, path) → [`Route`].
//!
//! Invariants: a path that matches no route is 404; a path that matches a
//! route under another method is 405 (with `Allow`); the namespace segment
//! is passed through verbatim and validated later by `NsPath::new` (400), so
//! nothing here can produce a storage path. Query strings are not routed on.
//! [`Route::pattern`] names a route by its path pattern (for metrics labels:
//! bounded cardinality, no namespace names).

use hyper::Method;

/// A matched route. `String` fields are the namespace name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
    /// `GET /metrics` (Prometheus scrape; authenticated like a read).
    Metrics,
    /// `GET /console` and `GET /console/{file}` (the browser console's files; no key needed).
    Console(String),
    /// `GET /v1/whoami` (who the key acts as and what this node offers).
    WhoAmI,
    /// `GET /v1/namespaces`.
    ListNamespaces,
    /// `POST /v2/namespaces/{ns}`.
    Write(String),
    /// `DELETE /v2/namespaces/{ns}`.
    DeleteNamespace(String),
    /// `POST /v2/namespaces/{ns}/query`.
    Query(String),
    /// `POST /v2/namespaces/{ns}/explain_query`.
    ExplainQuery(String),
    /// `GET /v1|v2/namespaces/{ns}/metadata`.
    GetMetadata(String),
    /// `PATCH /v1|v2/namespaces/{ns}/metadata`.
    PatchMetadata(String),
    /// `GET /v1/namespaces/{ns}/schema`.
    GetSchema(String),
    /// `POST /v1/namespaces/{ns}/schema`.
    UpdateSchema(String),
    /// `GET /v1/namespaces/{ns}/hint_cache_warm`.
    HintCacheWarm(String),
    /// `POST /v1/namespaces/{ns}/_debug/recall`.
    Recall(String),
    /// `POST /v2/namespaces/{ns}/async` (start an asynchronous copy).
    StartAsync(String),
    /// `GET /v1/namespaces/{ns}/operations/{token}` (poll an operation).
    PollOperation(String),
    /// `GET /v1/namespaces/{ns}/export` (NDJSON of every live document; `?generation=`).
    Export(String),
    /// `POST /v1/namespaces/{ns}/_admin/copy` (branch, shallow or deep copy into `{ns}`).
    AdminCopy(String),
    /// `GET /v1/namespaces/{ns}/_admin/snapshot` (a snapshot file; `?generation=`).
    Snapshot(String),
    /// `POST /v1/namespaces/{ns}/_admin/restore` (restore a snapshot file into `{ns}`).
    Restore(String),
    /// `POST /v1/_admin/repair` (rebuild refcounts, sweep, manifest GC).
    Repair,
    /// `POST /v1/_admin/verify` (read and decode every object; report damage).
    Verify,
    /// `GET /v1/_admin/jobs/{id}` (progress and result of a background admin job).
    Job(String),
    /// `POST /v1/namespaces/{ns}/_admin/compact` (compact now).
    Compact(String),
    /// `GET /v1/sync/status`.
    SyncStatus,
    /// `POST /v1/sync/run` (one sync round now).
    SyncRun,
    /// `POST /v1/vectors/{ns}` (legacy v1 upsert, `wire/v1.rs`).
    V1Upsert(String),
    /// `POST /v1/vectors/{ns}/query` (legacy v1 query).
    V1Query(String),
    /// `DELETE /v1/vectors/{ns}` (legacy v1 namespace delete).
    V1Delete(String),
}

impl Route {
    /// Whether the route mutates (read-only keys get 403).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Route::Write(_)
                | Route::DeleteNamespace(_)
                | Route::PatchMetadata(_)
                | Route::UpdateSchema(_)
                | Route::StartAsync(_)
                | Route::AdminCopy(_)
                | Route::Restore(_)
                | Route::Repair
                | Route::Compact(_)
                | Route::SyncRun
                | Route::V1Upsert(_)
                | Route::V1Delete(_)
        )
    }

    /// The namespace whose documents or settings the route changes (a `pull`
    /// namespace refuses these: it is a read replica).
    pub fn changed_namespace(&self) -> Option<&str> {
        match self {
            Route::Write(ns)
            | Route::DeleteNamespace(ns)
            | Route::PatchMetadata(ns)
            | Route::UpdateSchema(ns)
            | Route::AdminCopy(ns)
            | Route::Restore(ns)
            | Route::V1Upsert(ns)
            | Route::V1Delete(ns) => Some(ns),
            _ => None,
        }
    }

    /// Whether the route needs no authentication.
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Health | Route::Ready | Route::Console(_))
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Ready => "ready",
            Route::Metrics => "metrics",
            Route::Console(_) => "console",
            Route::WhoAmI => "whoami",
            Route::ListNamespaces => "list_namespaces",
            Route::Write(_) => "write",
            Route::DeleteNamespace(_) => "delete_namespace",
            Route::Query(_) => "query",
            Route::ExplainQuery(_) => "explain_query",
            Route::GetMetadata(_) => "metadata",
            Route::PatchMetadata(_) => "update_metadata",
            Route::GetSchema(_) => "schema",
            Route::UpdateSchema(_) => "update_schema",
            Route::HintCacheWarm(_) => "hint_cache_warm",
            Route::Recall(_) => "recall",
            Route::StartAsync(_) => "start_async",
            Route::PollOperation(_) => "poll_operation",
            Route::Export(_) => "export",
            Route::AdminCopy(_) => "admin_copy",
            Route::Snapshot(_) => "snapshot",
            Route::Restore(_) => "restore",
            Route::Repair => "repair",
            Route::Verify => "verify",
            Route::Job(_) => "job",
            Route::Compact(_) => "compact",
            Route::SyncStatus => "sync_status",
            Route::SyncRun => "sync_run",
            Route::V1Upsert(_) => "v1_upsert",
            Route::V1Query(_) => "v1_query",
            Route::V1Delete(_) => "v1_delete",
        }
    }
}

impl Route {
    /// The path pattern that matched (the metrics' `route` label: bounded,
    /// never the raw path). Parameters are written `:name` (no braces or
    /// commas, which naive text-format parsers split label values on).
    pub fn pattern(&self) -> &'static str {
        match self {
            Route::Health => "/health",
            Route::Ready => "/ready",
            Route::Metrics => "/metrics",
            Route::Console(_) => "/console",
            Route::WhoAmI => "/v1/whoami",
            Route::ListNamespaces => "/v1/namespaces",
            Route::Write(_) | Route::DeleteNamespace(_) => "/v2/namespaces/:ns",
            Route::Query(_) => "/v2/namespaces/:ns/query",
            Route::ExplainQuery(_) => "/v2/namespaces/:ns/explain_query",
            Route::GetMetadata(_) | Route::PatchMetadata(_) => "/v1|v2/namespaces/:ns/metadata",
            Route::GetSchema(_) | Route::UpdateSchema(_) => "/v1/namespaces/:ns/schema",
            Route::HintCacheWarm(_) => "/v1/namespaces/:ns/hint_cache_warm",
            Route::Recall(_) => "/v1/namespaces/:ns/_debug/recall",
            Route::StartAsync(_) => "/v2/namespaces/:ns/async",
            Route::PollOperation(_) => "/v1/namespaces/:ns/operations/:token",
            Route::Export(_) => "/v1/namespaces/:ns/export",
            Route::AdminCopy(_) => "/v1/namespaces/:ns/_admin/copy",
            Route::Snapshot(_) => "/v1/namespaces/:ns/_admin/snapshot",
            Route::Restore(_) => "/v1/namespaces/:ns/_admin/restore",
            Route::Repair => "/v1/_admin/repair",
            Route::Verify => "/v1/_admin/verify",
            Route::Job(_) => "/v1/_admin/jobs/:id",
            Route::Compact(_) => "/v1/namespaces/:ns/_admin/compact",
            Route::SyncStatus => "/v1/sync/status",
            Route::SyncRun => "/v1/sync/run",
            Route::V1Upsert(_) | Route::V1Delete(_) => "/v1/vectors/:ns",
            Route::V1Query(_) => "/v1/vectors/:ns/query",
        }
    }
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No such path.
    NotFound,
    /// The path exists under these methods.
    MethodNotAllowed(&'static [Method]),
}

/// Match a request.
pub fn route(method: &Method, path: &str) -> Result<Route, NoRoute> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let ns = |i: usize| segs.get(i).map(|s| (*s).to_owned()).unwrap_or_default();
    let m = method.clone();
    let (allowed, r): (&'static [Method], Option<Route>) = match segs.as_slice() {
        ["health"] => (&[Method::GET], (m == Method::GET).then_some(Route::Health)),
        ["ready"] => (&[Method::GET], (m == Method::GET).then_some(Route::Ready)),
        ["metrics"] => (&[Method::GET], (m == Method::GET).then_some(Route::Metrics)),
        ["console"] => (&[Method::GET], (m == Method::GET).then(|| Route::Console(String::new()))),
        ["console", file] => (&[Method::GET], (m == Method::GET).then(|| Route::Console((*file).to_owned()))),
        ["v1", "whoami"] => (&[Method::GET], (m == Method::GET).then_some(Route::WhoAmI)),
        ["v1", "namespaces"] => (&[Method::GET], (m == Method::GET).then_some(Route::ListNamespaces)),
        ["v2", "namespaces", _] => (
            &[Method::POST, Method::DELETE],
            match m {
                Method::POST => Some(Route::Write(ns(2))),
                Method::DELETE => Some(Route::DeleteNamespace(ns(2))),
                _ => None,
            },
        ),
        ["v2", "namespaces", _, "query"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::Query(ns(2))))
        }
        ["v2", "namespaces", _, "explain_query"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::ExplainQuery(ns(2))))
        }
        ["v1" | "v2", "namespaces", _, "metadata"] => (
            &[Method::GET, Method::PATCH],
            match m {
                Method::GET => Some(Route::GetMetadata(ns(2))),
                Method::PATCH => Some(Route::PatchMetadata(ns(2))),
                _ => None,
            },
        ),
        ["v1", "namespaces", _, "schema"] => (
            &[Method::GET, Method::POST],
            match m {
                Method::GET => Some(Route::GetSchema(ns(2))),
                Method::POST => Some(Route::UpdateSchema(ns(2))),
                _ => None,
            },
        ),
        ["v1", "namespaces", _, "hint_cache_warm"] => {
            (&[Method::GET], (m == Method::GET).then(|| Route::HintCacheWarm(ns(2))))
        }
        ["v1", "namespaces", _, "_debug", "recall"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::Recall(ns(2))))
        }
        ["v2", "namespaces", _, "async"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::StartAsync(ns(2))))
        }
        ["v1", "namespaces", _, "_admin", "compact"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::Compact(ns(2))))
        }
        ["v1", "namespaces", _, "operations", _] => {
            (&[Method::GET], (m == Method::GET).then(|| Route::PollOperation(ns(2))))
        }
        ["v1", "namespaces", _, "export"] => {
            (&[Method::GET], (m == Method::GET).then(|| Route::Export(ns(2))))
        }
        ["v1", "namespaces", _, "_admin", "copy"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::AdminCopy(ns(2))))
        }
        ["v1", "namespaces", _, "_admin", "snapshot"] => {
            (&[Method::GET], (m == Method::GET).then(|| Route::Snapshot(ns(2))))
        }
        ["v1", "namespaces", _, "_admin", "restore"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::Restore(ns(2))))
        }
        ["v1", "_admin", "repair"] => (&[Method::POST], (m == Method::POST).then_some(Route::Repair)),
        ["v1", "_admin", "verify"] => (&[Method::POST], (m == Method::POST).then_some(Route::Verify)),
        ["v1", "sync", "status"] => (&[Method::GET], (m == Method::GET).then_some(Route::SyncStatus)),
        ["v1", "sync", "run"] => (&[Method::POST], (m == Method::POST).then_some(Route::SyncRun)),
        ["v1", "vectors", _] => (
            &[Method::POST, Method::DELETE],
            match m {
                Method::POST => Some(Route::V1Upsert(ns(2))),
                Method::DELETE => Some(Route::V1Delete(ns(2))),
                _ => None,
            },
        ),
        ["v1", "vectors", _, "query"] => {
            (&[Method::POST], (m == Method::POST).then(|| Route::V1Query(ns(2))))
        }
        ["v1", "_admin", "jobs", id] => {
            (&[Method::GET], (m == Method::GET).then(|| Route::Job((*id).to_owned())))
        }
        _ => return Err(NoRoute::NotFound),
    };
    r.ok_or(NoRoute::MethodNotAllowed(allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_routes_match_and_are_classified() {
        assert_eq!(route(&Method::GET, "/v1/namespaces/d/export"), Ok(Route::Export("d".into())));
        assert_eq!(route(&Method::POST, "/v1/namespaces/d/_admin/copy"), Ok(Route::AdminCopy("d".into())));
        assert_eq!(route(&Method::GET, "/v1/namespaces/d/_admin/snapshot"), Ok(Route::Snapshot("d".into())));
        assert_eq!(route(&Method::POST, "/v1/namespaces/d/_admin/restore"), Ok(Route::Restore("d".into())));
        assert_eq!(route(&Method::POST, "/v1/_admin/repair"), Ok(Route::Repair));
        assert_eq!(route(&Method::GET, "/v1/sync/status"), Ok(Route::SyncStatus));
        assert_eq!(route(&Method::POST, "/v1/sync/run"), Ok(Route::SyncRun));
        assert!(matches!(route(&Method::GET, "/v1/sync/run"), Err(NoRoute::MethodNotAllowed(_))));
        assert!(matches!(route(&Method::GET, "/v1/_admin/repair"), Err(NoRoute::MethodNotAllowed(_))));
        assert!(Route::Repair.is_write() && Route::Restore(String::new()).is_write());
        assert!(!Route::Export(String::new()).is_write() && !Route::Snapshot(String::new()).is_write());
    }

    #[test]
    fn routes_match_and_methods_are_checked() {
        assert_eq!(route(&Method::POST, "/v2/namespaces/docs"), Ok(Route::Write("docs".into())));
        assert_eq!(route(&Method::DELETE, "/v2/namespaces/docs/"), Ok(Route::DeleteNamespace("docs".into())));
        assert_eq!(route(&Method::GET, "/v1/namespaces/d/metadata"), Ok(Route::GetMetadata("d".into())));
        assert_eq!(route(&Method::GET, "/v2/namespaces/d/metadata"), Ok(Route::GetMetadata("d".into())));
        assert_eq!(route(&Method::POST, "/v1/namespaces/d/_debug/recall"), Ok(Route::Recall("d".into())));
        assert_eq!(route(&Method::GET, "/v1/namespaces"), Ok(Route::ListNamespaces));
        assert!(matches!(route(&Method::GET, "/v2/namespaces/d/query"), Err(NoRoute::MethodNotAllowed(_))));
        assert_eq!(route(&Method::GET, "/v3/nope"), Err(NoRoute::NotFound));
        assert_eq!(route(&Method::GET, "/"), Err(NoRoute::NotFound));
        assert_eq!(route(&Method::POST, "/v2/namespaces//query"), Ok(Route::Query(String::new())));
        assert!(Route::Write(String::new()).is_write() && !Route::Query(String::new()).is_write());
        assert_eq!(route(&Method::POST, "/v1/vectors/d"), Ok(Route::V1Upsert("d".into())));
        assert_eq!(route(&Method::DELETE, "/v1/vectors/d"), Ok(Route::V1Delete("d".into())));
        assert_eq!(route(&Method::POST, "/v1/vectors/d/query"), Ok(Route::V1Query("d".into())));
        assert!(Route::V1Upsert(String::new()).is_write() && !Route::V1Query(String::new()).is_write());
        assert_eq!(Route::V1Delete("d".into()).changed_namespace(), Some("d"));
    }

    /// Invariant: the metrics label is the pattern, never the raw path, and
    /// `/metrics` is an authenticated read.
    #[test]
    fn patterns_hide_namespace_names() {
        let q = route(&Method::POST, "/v2/namespaces/secret-name/query").unwrap();
        assert_eq!(q.pattern(), "/v2/namespaces/:ns/query");
        let job = route(&Method::GET, "/v1/_admin/jobs/j-123").unwrap();
        assert_eq!(job.pattern(), "/v1/_admin/jobs/:id");
        let m = route(&Method::GET, "/metrics").unwrap();
        assert_eq!((m.pattern(), m.is_public(), m.is_write()), ("/metrics", false, false));
        assert!(matches!(route(&Method::POST, "/metrics"), Err(NoRoute::MethodNotAllowed(_))));
        let page = route(&Method::GET, "/console/").unwrap();
        assert_eq!(
            (page.clone(), page.is_public(), page.is_write()),
            (Route::Console(String::new()), true, false)
        );
        assert_eq!(route(&Method::GET, "/console/console.js"), Ok(Route::Console("console.js".into())));
        assert_eq!(route(&Method::GET, "/console/a/b"), Err(NoRoute::NotFound));
        let who = route(&Method::GET, "/v1/whoami").unwrap();
        assert_eq!((who.is_public(), who.is_write()), (false, false));
    }
}
