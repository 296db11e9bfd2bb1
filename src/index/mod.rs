//! Per-segment search indexes: pure functions over byte slices (no I/O), so they run directly
//! on mmap'd segment sections. `distance` holds the SIMD kernels, `ann` the dense-vector index,
//! `text` the BM25 full-text index.

pub mod ann;
pub mod attr;
pub mod coldivf;
pub mod distance;
pub mod graph;
pub mod sparse;
pub mod text;
