//! HTTP errors: the turbopuffer error shape `{"status":"error","error":msg}`
//! and the mapping from engine errors to statuses.
//!
//! Invariants: every error response is JSON; statuses the SDK would retry
//! pointlessly (4xx other than 408/409/429, and 501) carry
//! `x-should-retry: false`; 409 is only used for retryable conflicts and 412
//! for final precondition failures; 429 carries `retry-after-ms`.

use hyper::StatusCode;
use serde_json::{json, Value as Json};

use crate::engine::EngineError;

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The message.
    pub message: String,
    /// For 429: how long the client should wait.
    pub retry_after_ms: Option<u64>,
    /// Whether the SDK should retry (sent as `x-should-retry`).
    pub retryable: bool,
    /// For 405: the `Allow` header.
    pub allow: Option<String>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let retryable = matches!(status.as_u16(), 408 | 409 | 429 | 500 | 502 | 503 | 504);
        ApiError { status, message: message.into(), retry_after_ms: None, retryable, allow: None }
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
        if let EngineError::Backpressure { message, retry_after_ms } = e {
            return ApiError::too_many_requests(message, retry_after_ms);
        }
        let status = match &e {
            EngineError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            EngineError::Corrupted(_) | EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            EngineError::Backpressure { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        let retryable = !matches!(e, EngineError::Corrupted(_));
        ApiError {
            retryable: retryable && ApiError::new(status, "").retryable,
            ..ApiError::new(status, e.to_string())
        }
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
    fn engine_errors_map_to_statuses() {
        let cases = [
            (EngineError::InvalidInput("x".into()), 400, false),
            (EngineError::NotFound("x".into()), 404, false),
            (EngineError::PreconditionFailed("x".into()), 412, false),
            (EngineError::Conflict("x".into()), 409, true),
            (EngineError::Unavailable("x".into()), 503, true),
            (EngineError::Corrupted("x".into()), 500, false),
            (EngineError::Internal("x".into()), 500, true),
            (EngineError::Unsupported("x".into()), 501, false),
        ];
        for (e, status, retry) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status);
            assert_eq!(a.retryable, retry, "{status}");
            assert_eq!(a.body()["status"], "error");
        }
    }
}
