//! Engine errors: a kind that callers (and the HTTP edge) branch on, a message for people, and the cause.
//!
//! Invariants:
//! - The kind alone decides the HTTP status and whether a retry may help (`api/error.rs` maps kinds to
//!   statuses in one place); the message never does.
//! - Conversions from lower layers keep the lower error as `source()` and classify it by what it means:
//!   a store failure is `Unavailable` (retry may help), an object that a committed generation names but the
//!   store no longer has is `Corrupted` (data is missing: a retry cannot bring it back), a checksum or
//!   structure failure is `Corrupted`, and a format version this build cannot read is `Unsupported`.
//! - Disk full (ENOSPC/EDQUOT anywhere in the cause chain, from the object store or from `meta.redb`) is
//!   `StorageFull`, never plain `Unavailable`: it lasts until someone frees space, and says so.
//! - A lower error is wrapped only through [`EngineError::caused_by`] (or [`EngineError::io`] for local
//!   I/O), which keeps it as `source()` and looks for a full disk in its chain: no site formats a cause
//!   into text and drops it.
//! - Errors are `Clone` (the cause is shared), so one failure can answer every request of a group commit.
//! - An `Unavailable` error caused by an open store breaker (`store/breaker.rs`, anywhere in its chain)
//!   carries the breaker's retry hint ([`EngineError::retry_after_ms`]): the client is told when to retry.

use std::sync::Arc;

use crate::codec::FormatError;
use crate::meta::MetaError;
use crate::store::StoreError;

/// What went wrong, as a caller branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is invalid (400).
    InvalidInput,
    /// The namespace (or document, or generation) does not exist (404).
    NotFound,
    /// `if_version` (or another precondition) did not match: final, do not retry (412).
    PreconditionFailed,
    /// Lost commit races repeatedly; a retry may succeed (409).
    Conflict,
    /// The object store or local disk failed; a retry may succeed (503).
    Unavailable,
    /// Stored data failed validation or is missing (500, not retryable).
    Corrupted,
    /// The feature, or the stored format version, is not supported by this build (501).
    Unsupported,
    /// A bug or an unexpected state (500).
    Internal,
    /// Too much unindexed data; retry after [`EngineError::retry_after_ms`] (429).
    Backpressure,
    /// The disk (or quota) under the store or the local metadata is full; retry after
    /// [`EngineError::retry_after_ms`], once space is freed (507).
    StorageFull,
    /// The request's deadline passed before its work finished (a query past
    /// `query_timeout_ms`); a retry may succeed (408).
    Timeout,
    /// The namespace is read-only (`read_only` in its metadata): writes, schema changes and
    /// its deletion are refused until that is cleared (403, not retryable).
    ReadOnly,
}

/// How long a client is asked to wait after a disk-full error.
pub const STORAGE_FULL_RETRY_AFTER_MS: u64 = 30_000;

/// An engine error: kind, message and (where there is one) the lower-level cause.
#[derive(Debug, Clone)]
pub struct EngineError {
    kind: ErrorKind,
    message: String,
    retry_after_ms: u64,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    /// An error of `kind` with a message and no cause.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        EngineError { kind, message: message.into(), retry_after_ms: 0, source: None }
    }
    /// Attach the lower-level cause (kept as `source()`). An `Unavailable`
    /// error caused by an open store breaker takes its retry hint.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        if self.kind == ErrorKind::Unavailable {
            if let Some(wait) = crate::store::breaker::retry_after(&source) {
                self.retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            }
        }
        self.source = Some(Arc::new(source));
        self
    }
    /// 500 `Corrupted`: bytes of a mapped object changed since they were verified (the rot is
    /// kept as the source, [`EngineError::rot_of`]).
    pub fn rot(rot: crate::integrity::Rot) -> Self {
        Self::new(ErrorKind::Corrupted, format!("{rot}; nothing was answered from it")).with_source(rot)
    }
    /// The rot behind a [`EngineError::rot`] error.
    pub fn rot_of(&self) -> Option<&crate::integrity::Rot> {
        self.source.as_deref().and_then(|s| (s as &(dyn std::error::Error + 'static)).downcast_ref())
    }
    /// 400: the request is invalid.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// 404: the namespace (or document, or generation) does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// 412: a precondition did not hold (final).
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PreconditionFailed, message)
    }
    /// 409: lost commit races repeatedly (retryable).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// 503: storage failed (retryable).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// 500: stored data failed validation or is missing.
    pub fn corrupted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupted, message)
    }
    /// 501: not supported by this build.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// 403: the namespace is read-only.
    pub fn read_only(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ReadOnly, message)
    }
    /// 500: a bug or an unexpected state.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// 429: too much unindexed data; retry after `retry_after_ms`.
    pub fn backpressure(message: impl Into<String>, retry_after_ms: u64) -> Self {
        EngineError { retry_after_ms, ..Self::new(ErrorKind::Backpressure, message) }
    }

    /// 507: the disk is full; nothing was acknowledged; retry once space is freed.
    pub fn storage_full(message: impl Into<String>) -> Self {
        EngineError {
            retry_after_ms: STORAGE_FULL_RETRY_AFTER_MS,
            ..Self::new(ErrorKind::StorageFull, message)
        }
    }

    /// An error of `kind` whose message is `context: cause` and whose `source()` is the cause; the
    /// one way a lower error is wrapped, so no site keeps the text and drops the cause. A cause that
    /// is (or wraps) "no space left" makes it [`ErrorKind::StorageFull`] whatever `kind` says: a full
    /// disk is answered 507 wherever it happens.
    pub fn caused_by(
        kind: ErrorKind,
        context: impl std::fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::classified(kind, format!("{context}: {cause}"), cause)
    }

    /// An error of `kind` whose message is the cause's own text and whose `source()` is the cause
    /// (a full disk in its chain makes it [`ErrorKind::StorageFull`], as in [`EngineError::caused_by`]).
    pub fn wrap(kind: ErrorKind, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::classified(kind, cause.to_string(), cause)
    }

    /// `kind` with `message`, or `StorageFull` when the cause's chain holds "no space left"; the
    /// cause kept as `source()`.
    fn classified(
        kind: ErrorKind,
        message: String,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let err = if crate::store::space::is_no_space(&cause) {
            Self::storage_full(message)
        } else {
            Self::new(kind, message)
        };
        err.with_source(cause)
    }

    /// A local I/O failure (scratch files, the disk cache, snapshot spools, streams): disk full is
    /// [`ErrorKind::StorageFull`], anything else [`ErrorKind::Unavailable`] (a retry may help).
    pub fn io(context: impl std::fmt::Display, cause: std::io::Error) -> Self {
        Self::caused_by(ErrorKind::Unavailable, context, cause)
    }

    /// 408: the request's deadline passed (retryable).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without the kind's prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// For [`ErrorKind::Backpressure`] and [`ErrorKind::StorageFull`], and an
    /// [`ErrorKind::Unavailable`] store whose breaker is open: how long to wait
    /// before retrying (0: no hint).
    pub fn retry_after_ms(&self) -> u64 {
        self.retry_after_ms
    }
    /// The same error with `prefix: ` before its message (context added on the way up).
    pub fn context(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::Unavailable => write!(f, "storage unavailable: {}", self.message),
            ErrorKind::Corrupted => write!(f, "stored data is corrupted: {}", self.message),
            ErrorKind::Internal => write!(f, "internal error: {}", self.message),
            ErrorKind::StorageFull => write!(
                f,
                "storage full: {} (free space on the data dir's disk; writes resume without a restart)",
                self.message
            ),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        if e.is_no_space() {
            return EngineError::storage_full(e.to_string()).with_source(e);
        }
        let kind = match &e {
            // Callers that expect an absence (probes, optional objects) check
            // for it before converting; one that reaches here was named by a
            // committed generation and is gone.
            StoreError::NotFound(_) => ErrorKind::Corrupted,
            StoreError::Config(_) => ErrorKind::Internal,
            StoreError::Backend { .. } => ErrorKind::Unavailable,
            // A write that failed earlier: the outcome stays unknown (a 5xx,
            // never an acknowledgement), and a new write re-establishes it.
            StoreError::DurabilityUnknown { .. } => ErrorKind::Unavailable,
        };
        EngineError::new(kind, e.to_string()).with_source(e)
    }
}

impl From<MetaError> for EngineError {
    fn from(e: MetaError) -> Self {
        if let MetaError::Storage(io) | MetaError::Io(io) = &e {
            if crate::store::space::io_is_no_space(io) {
                return EngineError::storage_full(e.to_string()).with_source(e);
            }
        }
        let kind = match &e {
            MetaError::UnsupportedVersion { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Unavailable,
        };
        EngineError::new(kind, e.to_string()).with_source(e)
    }
}

impl From<FormatError> for EngineError {
    fn from(e: FormatError) -> Self {
        let kind = if e.is_corruption() { ErrorKind::Corrupted } else { ErrorKind::Unsupported };
        EngineError::new(kind, e.to_string()).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_cause_is_kept_and_a_full_disk_is_storage_full_wherever_it_is() {
        use std::error::Error as _;
        let enospc = std::io::Error::from_raw_os_error(28);
        let e = EngineError::io("scratch file", enospc);
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert!(e.source().is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()));
        let e = EngineError::io("scratch file", std::io::Error::from_raw_os_error(5));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.message().starts_with("scratch file: "), "{}", e.message());
        // A full disk under another layer's error (a store error) is found through the chain.
        let store = StoreError::io("k", std::io::Error::from_raw_os_error(28));
        assert_eq!(
            EngineError::caused_by(ErrorKind::Internal, "building", store).kind(),
            ErrorKind::StorageFull
        );
        let fmt = FormatError::Malformed("x".into());
        let e = EngineError::caused_by(ErrorKind::Corrupted, "segment s", fmt);
        assert_eq!((e.kind(), e.message()), (ErrorKind::Corrupted, "segment s: malformed: x"));
    }

    #[test]
    fn disk_full_from_either_layer_is_storage_full() {
        let enospc = || std::io::Error::from_raw_os_error(28);
        let store = EngineError::from(StoreError::io("o/p/namespaces/n/wal/1.wal", enospc()));
        assert_eq!(store.kind(), ErrorKind::StorageFull);
        assert!(store.retry_after_ms() > 0);
        assert!(store.to_string().starts_with("storage full: "), "{store}");
        assert_eq!(EngineError::from(MetaError::Storage(enospc())).kind(), ErrorKind::StorageFull);
        let eio = EngineError::from(MetaError::Storage(std::io::Error::from_raw_os_error(5)));
        assert_eq!(eio.kind(), ErrorKind::Unavailable);
        let eio = EngineError::from(StoreError::io("k", std::io::Error::from_raw_os_error(5)));
        assert_eq!(eio.kind(), ErrorKind::Unavailable);
    }
}
