//! Query errors as engine errors: each [`QueryError`] kind becomes the
//! engine kind of the same name and message, so callers that speak
//! [`EngineError`] (cold queries, the HTTP layer) see what they saw before
//! query had its own error type.

use super::EngineError;
use crate::query::QueryError;

impl From<QueryError> for EngineError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidInput(m) => EngineError::invalid_input(m),
            QueryError::Unsupported(m) => EngineError::unsupported(m),
            QueryError::Corrupted { message, cause } => EngineError::corrupted(message).with_source(cause),
            QueryError::Internal(m) => EngineError::internal(m),
        }
    }
}
