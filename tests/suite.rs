//! The integration tests that can share one process, as modules of one test binary.
//!
//! Each module is one of the files beside this one; they share the helpers declared here once
//! (`common`, `fixtures`, `compat_inputs`: `use crate::common;` in a file). One binary links the
//! crate and its dependencies once instead of once per file, which was most of the test build
//! (BENCHMARKS.md, "The test suite's time").
//! Run one file's tests with `cargo test --test suite <file>::`.
//!
//! Invariants:
//! - A file here reads or changes nothing process-wide that another file's tests could see
//!   (its own temporary directories and daemons only; `/proc/self/maps` only for its own files).
//! - The files that measure the process itself or time the daemon under load run as their own
//!   binaries (`[[test]]` entries in Cargo.toml): `heap_trim`, `cpu_bounds`, `slow_clients`, `tenant_fairness`, `memory_bounds`, `memory_budget`.

mod common;
#[path = "common/compat_inputs.rs"]
mod compat_inputs;
#[path = "common/fixtures.rs"]
mod fixtures;

#[path = "ann_escalation.rs"]
mod ann_escalation;
#[path = "ann_recall.rs"]
mod ann_recall;
#[path = "ann_segments.rs"]
mod ann_segments;
#[path = "branching.rs"]
mod branching;
#[path = "cache_tiers.rs"]
mod cache_tiers;
#[path = "clients.rs"]
mod clients;
#[path = "cold_query.rs"]
mod cold_query;
#[path = "cold_query_edges.rs"]
mod cold_query_edges;
#[path = "cold_query_named.rs"]
mod cold_query_named;
#[path = "compaction.rs"]
mod compaction;
#[path = "compute_attributes.rs"]
mod compute_attributes;
#[path = "config_reload.rs"]
mod config_reload;
#[path = "console.rs"]
mod console;
#[path = "datadir_compat.rs"]
mod datadir_compat;
#[path = "disk_full.rs"]
mod disk_full;
#[path = "engine_commit.rs"]
mod engine_commit;
#[path = "engine_model.rs"]
mod engine_model;
#[path = "engine_writes.rs"]
mod engine_writes;
#[path = "export_snapshot.rs"]
mod export_snapshot;
#[path = "format_compat.rs"]
mod format_compat;
#[path = "format_compat_attr.rs"]
mod format_compat_attr;
#[path = "format_compat_dense.rs"]
mod format_compat_dense;
#[path = "format_compat_docblocks.rs"]
mod format_compat_docblocks;
#[path = "format_compat_multi.rs"]
mod format_compat_multi;
#[path = "format_compat_objects.rs"]
mod format_compat_objects;
#[path = "format_compat_prefixes.rs"]
mod format_compat_prefixes;
#[path = "format_compat_records.rs"]
mod format_compat_records;
#[path = "format_compat_schema.rs"]
mod format_compat_schema;
#[path = "format_compat_text_analysis.rs"]
mod format_compat_text_analysis;
#[path = "format_compat_v13.rs"]
mod format_compat_v13;
#[path = "format_compat_vectors.rs"]
mod format_compat_vectors;
#[path = "fsync_eio.rs"]
mod fsync_eio;
#[path = "gc_repair.rs"]
mod gc_repair;
#[path = "graph_codes.rs"]
mod graph_codes;
#[path = "hostile_requests.rs"]
mod hostile_requests;
#[path = "http_api.rs"]
mod http_api;
#[path = "labels.rs"]
mod labels;
#[path = "local_models.rs"]
mod local_models;
#[path = "memory_tier.rs"]
mod memory_tier;
#[path = "meta_faults.rs"]
mod meta_faults;
#[path = "metrics.rs"]
mod metrics;
#[path = "models_inference.rs"]
mod models_inference;
#[path = "multi_vector.rs"]
mod multi_vector;
#[path = "named_vectors.rs"]
mod named_vectors;
#[path = "overlay_spill.rs"]
mod overlay_spill;
#[path = "overlay_text.rs"]
mod overlay_text;
#[path = "prefix_search.rs"]
mod prefix_search;
#[path = "query_engine.rs"]
mod query_engine;
#[path = "query_fanout.rs"]
mod query_fanout;
#[path = "read_only.rs"]
mod read_only;
#[path = "retention.rs"]
mod retention;
#[path = "rot_after_verify.rs"]
mod rot_after_verify;
#[path = "s3_store.rs"]
mod s3_store;
#[path = "schema_objects.rs"]
mod schema_objects;
#[path = "semantics.rs"]
mod semantics;
#[path = "silent_bucket.rs"]
mod silent_bucket;
#[path = "storage_faults.rs"]
mod storage_faults;
#[path = "store_conformance.rs"]
mod store_conformance;
#[path = "sync.rs"]
mod sync;
#[path = "systemd_package.rs"]
mod systemd_package;
#[path = "text_segment_skips.rs"]
mod text_segment_skips;
#[path = "verify_jobs.rs"]
mod verify_jobs;
