//! HTTP errors: the turbopuffer error shape `{"status":"error","error":msg}`
//! and the mapping from engine errors to statuses.
//!
//! Invariants: every error response is JSON; statuses the SDK would retry
//! pointlessly (4xx other than 408/409/429, and 501) carry
//! `x-should-retry: false`; 409 is only used for retryable conflicts and 412
//! for final precondition failures; 429 and 507 (disk full) carry
//! `retry-after-ms` and `retry-after` (seconds, rounded up), and so does a 503
//! whose cause is a store that stopped answering (its breaker is open).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Value as Json};

use crate::engine::{EngineError, ErrorKind};

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The message.
    pub message: String,
    /// For 429, 507 and a 503 of a silent store: how long the client should wait.
    pub retry_after_ms: Option<u64>,
    /// Whether the SDK should retry (sent as `x-should-retry`).
    pub retryable: bool,
    /// For 405: the `Allow` header.
    pub allow: Option<String>,
    /// What caused it (an engine error with its own chain, an I/O or JSON error), kept as
    /// `source()` for the log; never sent to the client beyond `message`.
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Two errors are equal when they answer the same (status, message, headers); the cause is for the
/// log only.
impl PartialEq for ApiError {
    fn eq(&self, other: &Self) -> bool {
        (self.status, &self.message, self.retry_after_ms, self.retryable, &self.allow)
            == (other.status, &other.message, other.retry_after_ms, other.retryable, &other.allow)
    }
}

impl Eq for ApiError {}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let retryable = matches!(status.as_u16(), 408 | 409 | 429 | 500 | 502 | 503 | 504);
        ApiError {
            status,
            message: message.into(),
            retry_after_ms: None,
            retryable,
            allow: None,
            source: None,
        }
    }
    /// The same error with its cause kept as `source()`.
    pub fn with_source(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// 501.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, message)
    }
    /// 429 with a retry hint (reserved for backpressure).
    pub fn too_many_requests(message: impl Into<String>, retry_after_ms: u64) -> Self {
        ApiError { retry_after_ms: Some(retry_after_ms), ..Self::new(StatusCode::TOO_MANY_REQUESTS, message) }
    }

    /// The JSON body.
    pub fn body(&self) -> Json {
        json!({"status": "error", "error": self.message})
    }
}

/// A query error answers as the engine error of the same kind (same status,
/// same message).
impl From<crate::query::QueryError> for ApiError {
    fn from(e: crate::query::QueryError) -> Self {
        ApiError::from(EngineError::from(e))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = status_of(e.kind());
        if e.kind() == ErrorKind::Backpressure {
            return ApiError::too_many_requests(e.message(), e.retry_after_ms()).with_source(e);
        }
        if e.kind() == ErrorKind::StorageFull {
            let retry_after_ms = Some(e.retry_after_ms().max(1000));
            return ApiError { retry_after_ms, retryable: true, ..ApiError::new(status, e.to_string()) }
                .with_source(e);
        }
        // A store that stopped answering says when to retry (its breaker's probe interval).
        let retry_after_ms = (e.kind() == ErrorKind::Unavailable && e.retry_after_ms() > 0)
            .then(|| e.retry_after_ms().max(1000));
        // Corrupted data stays corrupted: retrying cannot help.
        let retryable = e.kind() != ErrorKind::Corrupted && ApiError::new(status, "").retryable;
        ApiError { retryable, retry_after_ms, ..ApiError::new(status, e.to_string()) }.with_source(e)
    }
}

/// The one place an engine error kind becomes an HTTP status.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Backpressure => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::ReadOnly => StatusCode::FORBIDDEN,
        ErrorKind::Corrupted | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<crate::layout::NameError> for ApiError {
    fn from(e: crate::layout::NameError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_error_keeps_its_cause_chain_for_the_log() {
        use std::error::Error as _;
        let full = EngineError::io("scratch file", std::io::Error::from_raw_os_error(28));
        let a = ApiError::from(full);
        assert_eq!(a.status.as_u16(), 507);
        let engine = a.source().and_then(|s| s.downcast_ref::<EngineError>()).map(EngineError::kind);
        assert_eq!(engine, Some(ErrorKind::StorageFull));
        let io = a.source().and_then(|s| s.source()).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.and_then(std::io::Error::raw_os_error), Some(28));
        let json = serde_json::from_slice::<Json>(b"{")
            .map_err(|e| ApiError::bad_request("malformed").with_source(e));
        let bad = json.err().map(|e| e.source().is_some_and(|s| s.is::<serde_json::Error>()));
        assert_eq!(bad, Some(true), "a body's JSON error stays the cause");
        // Equality is what the client sees: the cause is not compared.
        assert_eq!(
            ApiError::bad_request("malformed"),
            ApiError::bad_request("malformed").with_source(std::fmt::Error)
        );
    }

    #[test]
    fn engine_errors_map_to_statuses() {
        let cases = [
            (EngineError::invalid_input("x"), 400, false),
            (EngineError::not_found("x"), 404, false),
            (EngineError::precondition_failed("x"), 412, false),
            (EngineError::conflict("x"), 409, true),
            (EngineError::unavailable("x"), 503, true),
            (EngineError::corrupted("x"), 500, false),
            (EngineError::internal("x"), 500, true),
            (EngineError::unsupported("x"), 501, false),
            (EngineError::storage_full("x"), 507, true),
            (EngineError::timeout("x"), 408, true),
        ];
        for (e, status, retry) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status);
            assert_eq!(a.retryable, retry, "{status}");
            assert_eq!(a.body()["status"], "error");
        }
        let full = ApiError::from(EngineError::storage_full("disk"));
        assert!(full.retry_after_ms.is_some_and(|ms| ms >= 1000), "507 asks for a wait");
        assert!(full.message.starts_with("storage full: disk"), "{}", full.message);
    }
}
