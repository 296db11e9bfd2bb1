//! Query errors as engine errors: each [`QueryError`] kind becomes the
//! engine kind of the same name and message, so callers that speak
//! [`EngineError`] (cold queries, the HTTP layer) see what they saw before
//! query had its own error type.

use super::EngineError;
use crate::query::QueryError;

impl From<QueryError> for EngineError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidInput(m) => EngineError::InvalidInput(m),
            QueryError::Unsupported(m) => EngineError::Unsupported(m),
            QueryError::Corrupted(m) => EngineError::Corrupted(m),
            QueryError::Internal(m) => EngineError::Internal(m),
        }
    }
}
