//! Where an index's exact rerank reads full-precision rows: [`RowSource`].
//!
//! A search ranks by codes and rereads only its best candidates at full precision. The vectors
//! of a large segment stay on disk (the page cache), not in the process: reading them through
//! the mapping would map far more than the rows read (see `cache/mapping.rs`), so the segment
//! reader hands the index a source that copies each row with a positioned read instead.
//!
//! Invariant: `row(r)` is exactly row `r` of `all()`, the row-major `rows × dim` slice
//! (the same bytes, however they are read).

/// Full-precision rows of one segment, read one at a time by an exact rerank.
pub trait RowSource: Sync {
    /// Row `r`'s vector (`dim` floats); `buf` holds it when it has to be copied.
    fn row<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32];

    /// Every row, row-major, for the exact scans that read them all.
    fn all(&self) -> &[f32];
}

/// The rows of an in-memory (or mapped) row-major slice.
#[derive(Clone, Copy, Debug)]
pub struct SliceRows<'a> {
    /// `rows × dim` floats, row-major.
    pub vectors: &'a [f32],
    /// Floats per row.
    pub dim: usize,
}

impl RowSource for SliceRows<'_> {
    fn row<'a>(&'a self, r: usize, _buf: &'a mut Vec<f32>) -> &'a [f32] {
        self.vectors.get(r * self.dim..(r + 1) * self.dim).unwrap_or(&[])
    }

    fn all(&self) -> &[f32] {
        self.vectors
    }
}
