//! Where an index's exact rerank reads full-precision rows: [`RowSource`].
//!
//! A search ranks by codes and rereads only its best candidates at full precision. The vectors
//! of a large segment stay on disk (the page cache), not in the process: reading them through
//! the mapping would map far more than the rows read (see `cache/mapping.rs`), so the segment
//! reader hands the index a source that copies each row with a positioned read instead.
//!
//! Invariant: `row(r)` is exactly row `r` of `all()`, the row-major `rows × dim` slice
//! (the same bytes, however they are read); `floats()` is `all().len()`. Searches ask `floats()`
//! and read rows through `row`; only an exact scan asks `all()`. `will_read` (a rerank naming
//! its rows before it reads them) is a hint: no answer depends on it.

/// Full-precision rows of one segment, read one at a time by an exact rerank.
pub trait RowSource: Sync {
    /// Row `r`'s vector (`dim` floats); `buf` holds it when it has to be copied.
    fn row<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32];

    /// Rows `rows` are read next by [`RowSource::row`]: a source that reads rows from a file
    /// asks for them all at once. A hint: what `row` returns does not depend on it.
    fn will_read(&self, _rows: &[u32]) {}

    /// Every row, row-major, for the exact scans that read them all.
    fn all(&self) -> &[f32];

    /// How many floats [`RowSource::all`] holds, without handing them out (a source that checks
    /// what it hands out, `state::SegmentRows`, checks nothing for this).
    fn floats(&self) -> usize {
        self.all().len()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::distance::Metric;
    use crate::index::vector::{ann, coldivf, graph};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Rows copied out on every `row` call (as a positioned read does), counted.
    struct Copying<'a> {
        slice: SliceRows<'a>,
        reads: AtomicUsize,
    }

    impl RowSource for Copying<'_> {
        fn row<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
            self.reads.fetch_add(1, Ordering::Relaxed);
            buf.clear();
            buf.extend_from_slice(self.slice.row(r, &mut Vec::new()));
            buf
        }
        fn all(&self) -> &[f32] {
            self.slice.vectors
        }
    }

    /// Invariant: the index builds read their scattered rows (calibration reranks and checks,
    /// cold lists: each row twice, see `coldivf::write_over`) through `row`, and a source that copies rows builds the same bytes as the
    /// slice itself.
    #[test]
    fn the_builds_read_scattered_rows_through_the_source() {
        let (n, dim) = (3000usize, 16usize);
        let mut s = 7u64;
        let vectors: Vec<f32> = (0..n * dim)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        for metric in [Metric::CosineDistance, Metric::EuclideanSquared] {
            let src = Copying { slice: SliceRows { vectors: &vectors, dim }, reads: AtomicUsize::new(0) };
            let params = ann::AnnParams::default();
            let ivf = ann::build_over(&src, dim, metric, &params);
            assert_eq!(ivf, ann::build(&vectors, dim, metric, &params), "{metric:?}");
            let after_ivf = src.reads.load(Ordering::Relaxed);
            assert!(after_ivf > 0, "the IVF calibration read rows through the source");
            let ix = ann::AnnIndex::open(&ivf).unwrap();
            let cold = coldivf::build_over(&ix, &src, dim).unwrap();
            assert_eq!(cold, coldivf::build(&ix, &vectors, dim).unwrap());
            let after_cold = src.reads.load(Ordering::Relaxed);
            // Twice: once for the lists' checksums (the head goes first), once to write them.
            assert_eq!(after_cold - after_ivf, 2 * n, "every row of the cold lists twice");
            let gparams = graph::GraphParams::default();
            let g = graph::build_over(&src, dim, metric, &gparams);
            assert_eq!(g, graph::build(&vectors, dim, metric, &gparams), "{metric:?}");
            assert!(
                src.reads.load(Ordering::Relaxed) > after_cold,
                "the graph calibration read rows through the source"
            );
        }
    }
}
