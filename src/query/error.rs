//! [`QueryError`]: why a query could not be parsed or evaluated.
//!
//! Invariants: query code returns only this type (it never names the
//! engine's error); each kind maps to exactly one engine error kind, so HTTP
//! statuses and messages are those the engine kind had (`Display` prints the
//! same text).
//! - A decoder's failure keeps its error as `source()` ([`QueryError::corrupted`]): the text is
//!   never the only trace of the cause.

use std::sync::Arc;

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
    #[error("stored data is corrupted: {message}")]
    Corrupted {
        /// What was being read, and the decoder's words.
        message: String,
        /// The decoder's error.
        #[source]
        cause: Cause,
    },
    /// A bug or an unexpected state (500).
    #[error("internal error: {0}")]
    Internal(String),
}

pub(super) fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidInput(msg.into())
}

impl QueryError {
    /// Stored data failed to decode while reading `what`: the message is `what: cause`, the cause
    /// kept as `source()`.
    pub fn corrupted(
        what: impl std::fmt::Display,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        QueryError::Corrupted { message: format!("{what}: {cause}"), cause: Cause(Arc::new(cause)) }
    }
}

/// A lower layer's error, shared (query errors are `Clone`) and compared by its text (they are
/// `PartialEq` for tests).
#[derive(Debug, Clone)]
pub struct Cause(pub Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}
