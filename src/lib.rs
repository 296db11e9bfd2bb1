//! tidepool: an edge search daemon. Namespaces of documents live on object
//! storage as immutable objects (WAL batches, segments, one manifest per
//! generation); the daemon serves them over the turbopuffer v2 HTTP API.
//!
//! Layering (dependencies point downward only):
//! `api` (HTTP) → `engine` (namespaces, write path, commit protocol) →
//! `format` (WAL, manifest codecs) / `filter` / `meta` (redb) / `store`
//! (object storage) → `model`, `schema`, `layout`, `clock`.
#![warn(missing_docs)]

pub mod api;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod engine;
pub mod filter;
pub mod format;
pub mod index;
pub mod layout;
pub mod meta;
pub mod model;
pub mod ops;
pub mod query;
pub mod schema;
pub mod state;
pub mod store;
pub mod wire;
