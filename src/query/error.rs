//! [`QueryError`]: why a query could not be parsed or evaluated.
//!
//! Invariants: query code returns only this type (it never names the
//! engine's error); each kind maps to exactly one engine error kind, so HTTP
//! statuses and messages are those the engine kind had (`Display` prints the
//! same text).

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A malformed or invalid query (400).
    #[error("{0}")]
    InvalidInput(String),
    /// A valid request this server does not support (501).
    #[error("{0}")]
    Unsupported(String),
    /// Stored data (a segment row, an index section) failed to decode (500).
    #[error("stored data is corrupted: {0}")]
    Corrupted(String),
    /// A bug or an unexpected state (500).
    #[error("internal error: {0}")]
    Internal(String),
}

pub(super) fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidInput(msg.into())
}
