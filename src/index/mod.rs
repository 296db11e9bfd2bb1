//! Per-segment search indexes: pure functions over byte slices (no I/O), so they run directly
//! on mmap'd segment sections. `vector` holds the dense-vector indexes (SIMD
//! `distance` kernels, `ann`, `graph`, `coldivf`), `text` the BM25 full-text index, `attr` and
//! `sparse` the attribute and sparse-vector indexes, `multi` late-interaction (multi-vector)
//! search.

pub mod attr;
pub mod error;
pub mod multi;
pub mod sparse;
pub mod text;
pub mod vector;

pub use error::{IndexError, IndexErrorKind, IndexSection};
