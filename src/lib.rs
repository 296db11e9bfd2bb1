//! tidepool: an edge search daemon. Namespaces of documents live on object
//! storage as immutable objects (WAL batches, segments, one manifest per
//! generation); the daemon serves them over the turbopuffer v2 HTTP API.
//!
//! Layering (dependencies point downward only; `ARCHITECTURE.md` has the map):
//! `cli` / `api` (HTTP) → `wire` (turbopuffer JSON ↔ typed requests and
//! results, the sync status documents) → `sync` (offline-first sync to a bucket) → `engine` (lifecycle, the commit unit, writes, loading,
//! compaction, branches) → `query` (evaluation over one state) → `state`
//! (a generation's segments and WAL overlay) → `index` / `format` / `filter`
//! / `cache` → `store` (object storage) / `meta` (redb) → `codec`, `model`,
//! `schema`, `ops`, `layout`, `clock`.
#![warn(missing_docs)]

pub mod api;
pub mod attr_map;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod datetime;
pub mod deadline;
pub mod engine;
pub mod fanout;
pub mod filter;
pub mod format;
pub mod heap;
pub mod index;
pub mod integrity;
pub mod layout;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod models;
pub mod ops;
pub mod query;
pub mod schema;
pub mod spill;
pub mod state;
pub mod store;
pub mod sync;
pub mod tls;
pub mod wire;
