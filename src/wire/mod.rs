//! The turbopuffer v2 wire format and tidepool's own JSON, and only here:
//! JSON request bodies become typed requests (`WriteRequest`, `QueryRequest`,
//! `RecallRequest`; `admin`: copies, repair, verify, metadata updates), and
//! typed results become JSON bodies (`query`, `write`, `namespace`; `admin`:
//! health, the namespace listing, compaction, restore, repair and verify
//! reports, jobs; `sync`: the sync status, a sync run, a namespace's sync
//! state; `v1`: the legacy v1 vectors API, translated onto the v2 request
//! types). The engine, the syncer and the query evaluator below speak
//! typed Rust; `api` above moves bytes and statuses: it reads query
//! parameters and headers (HTTP's), never a JSON body field, and renders no
//! body but its own error body (`api/error.rs`).
//!
//! Invariants:
//! - Parsing is pure and total: any JSON yields a typed request or an
//!   invalid-input error naming the offending key; nothing here reads state.
//! - Rendering never fails and is the only place response field names live
//!   (the syncer hands its status over typed: `sync::StatusView`).
//! - Persisted formats are not wire formats: nothing here is ever written to
//!   storage (the idempotency record of `storage-format.md` 6.1 is encoded by
//!   the engine).

pub mod admin;
pub mod bounded;
mod compute;
pub mod namespace;
pub mod query;
mod rank;
pub mod sync;
pub mod v1;
pub mod write;
