//! The turbopuffer v2 wire format, and only here: JSON request bodies become
//! typed requests (`WriteRequest`, `QueryRequest`, `RecallRequest`), and typed
//! results become JSON bodies. The engine and the query evaluator below speak
//! typed Rust; `api` above moves bytes and statuses.
//!
//! Invariants:
//! - Parsing is pure and total: any JSON yields a typed request or an
//!   invalid-input error naming the offending key; nothing here reads state.
//! - Rendering never fails and is the only place response field names live.
//! - Persisted formats are not wire formats: nothing here is ever written to
//!   storage (the idempotency record of `storage-format.md` 6.1 is encoded by
//!   the engine).

pub mod admin;
pub mod bounded;
pub mod namespace;
pub mod query;
pub mod write;
