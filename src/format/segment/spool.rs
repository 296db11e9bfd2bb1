//! Where a segment builder keeps the bulky parts of a segment while rows are
//! pushed (the docs bytes, the vectors, the index sections): in memory, or in
//! an unlinked scratch file, so building a segment of a million rows holds
//! offsets and ids in memory and the rest on disk.
//!
//! Invariants:
//! - A file spool is anonymous (created unlinked in the scratch directory):
//!   a crash leaves nothing behind to reclaim.
//! - Only appends: bytes once written never change, so a read-only mapping
//!   of a prefix (the vectors, for the index builds) stays valid while later
//!   bytes are appended.
//! - The first I/O error is kept and every later append is skipped; it is
//!   returned by the next call that needs the bytes ([`Spool::part`],
//!   [`Spool::map_f32`]), so a failed spool is never read as if complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::assemble::Part;
use super::len_u64;

/// An append-only byte buffer, in memory or in a scratch file.
#[derive(Debug)]
pub(super) enum Spool {
    Memory(Vec<u8>),
    File { w: BufWriter<File>, len: u64, error: Option<std::io::Error> },
}

impl Spool {
    /// An unlinked file in `dir`.
    pub(super) fn file_in(dir: &Path) -> std::io::Result<Spool> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(Spool::File { w: BufWriter::with_capacity(1 << 20, file), len: 0, error: None })
    }

    pub(super) fn append(&mut self, b: &[u8]) {
        match self {
            Spool::Memory(v) => v.extend_from_slice(b),
            Spool::File { w, len, error } => {
                if error.is_none() {
                    match w.write_all(b) {
                        Ok(()) => *len += len_u64(b.len()),
                        Err(e) => *error = Some(e),
                    }
                }
            }
        }
    }

    /// `n` zero bytes.
    pub(super) fn append_zeros(&mut self, n: usize) {
        match self {
            Spool::Memory(v) => v.resize(v.len() + n, 0),
            Spool::File { .. } => {
                const ZEROS: [u8; 4096] = [0; 4096];
                let mut left = n;
                while left > 0 {
                    let k = left.min(ZEROS.len());
                    self.append(&ZEROS[..k]);
                    left -= k;
                }
            }
        }
    }

    pub(super) fn len(&self) -> u64 {
        match self {
            Spool::Memory(v) => len_u64(v.len()),
            Spool::File { len, .. } => *len,
        }
    }

    /// Flush, surfacing a kept error; [`Spool::part`] needs it first.
    pub(super) fn settle(&mut self) -> std::io::Result<()> {
        if let Spool::File { w, error, .. } = self {
            if let Some(e) = error.take() {
                // Keep failing: the spool is incomplete for good.
                *error = Some(std::io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
            w.flush()?;
        }
        Ok(())
    }

    /// Bytes `range` of a settled spool as a [`Part`] of a section.
    pub(super) fn part(&self, range: std::ops::Range<u64>) -> std::io::Result<Part<'_>> {
        match self {
            Spool::Memory(v) => {
                let (a, b) = (usize::try_from(range.start), usize::try_from(range.end));
                match (a, b) {
                    (Ok(a), Ok(b)) if a <= b && b <= v.len() => Ok(Part::Bytes(&v[a..b])),
                    _ => Err(std::io::Error::other("spool range out of bounds")),
                }
            }
            Spool::File { w, len, error } => {
                if error.is_some() || !w.buffer().is_empty() || range.start > range.end || range.end > *len {
                    return Err(std::io::Error::other("spool read before it was settled, or out of bounds"));
                }
                Ok(Part::File { file: w.get_ref(), offset: range.start, len: range.end - range.start })
            }
        }
    }

    /// The whole spool read as little-endian f32s: a read-only mapping of a
    /// file spool (no copy), a decoded copy of a memory one.
    pub(super) fn map_f32(&mut self) -> std::io::Result<F32Rows> {
        self.settle()?;
        match self {
            Spool::Memory(v) => Ok(F32Rows::Owned(decode_f32(v))),
            Spool::File { len: 0, .. } => Ok(F32Rows::Owned(Vec::new())),
            Spool::File { w, .. } => {
                // SAFETY: the file is unlinked and private to this spool, which
                // only appends after the mapped length: the mapped bytes never
                // change while the mapping lives.
                let map = unsafe { memmap2::Mmap::map(w.get_ref())? };
                Ok(match super::f32_slice(&map) {
                    Some(_) => F32Rows::Mapped(MappedF32 { map, file: w.get_ref().try_clone()? }),
                    None => F32Rows::Owned(decode_f32(&map)),
                })
            }
        }
    }
}

fn decode_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Rows of f32s for the index builds: mapped from a spool, or owned.
#[derive(Debug)]
pub enum F32Rows {
    /// A page-aligned mapping whose bytes are native f32s.
    Mapped(MappedF32),
    /// A decoded copy.
    Owned(Vec<f32>),
}

/// A spool's read-only mapping and its file, for positioned reads.
#[derive(Debug)]
pub struct MappedF32 {
    map: memmap2::Mmap,
    file: File,
}

impl F32Rows {
    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        match self {
            F32Rows::Mapped(m) => super::f32_slice(&m.map).unwrap_or_default(),
            F32Rows::Owned(v) => v,
        }
    }

    /// Row `r` of `dim` values. A mapped spool's row is copied into `buf` by a
    /// positioned read, mapping nothing: scattered rows read through the
    /// mapping would each map the whole (large) page-cache folio around them,
    /// and a few thousand such reads between two releases make the spool
    /// resident. A row past the end is empty.
    pub fn row<'a>(&'a self, r: usize, dim: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let in_memory = self.as_slice().get(r * dim..(r + 1) * dim).unwrap_or(&[]);
        let F32Rows::Mapped(m) = self else { return in_memory };
        if in_memory.is_empty() {
            return in_memory;
        }
        use std::os::unix::fs::FileExt;
        match super::read_f32s(buf, dim, |b| m.file.read_exact_at(b, (r * dim * 4) as u64)) {
            Ok(()) => buf,
            Err(e) => {
                tracing::debug!(error = %e, "positioned read of a spooled row failed; reading the mapping");
                in_memory
            }
        }
    }

    /// `f` over the values; a mapping's pages are given back to the kernel
    /// every `every` while `f` runs. The index builds read the rows in
    /// passes (codes, k-means assignment, calibration scans): each pass
    /// would otherwise leave the whole spool resident in this process, a
    /// second copy of the vectors in RSS next to the codes being built.
    /// Released pages stay in the page cache, so a page read again is a
    /// minor fault.
    pub fn settled_while<R>(&self, every: std::time::Duration, f: impl FnOnce(&[f32]) -> R) -> R {
        let F32Rows::Mapped(MappedF32 { map, .. }) = self else { return f(self.as_slice()) };
        let stop = Stop::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.wait(every) {
                    release(map);
                }
                release(map);
            });
            // Stops the releaser however `f` ends (a panic included: the
            // scope joins the thread before unwinding on).
            let _stop = StopOnDrop(&stop);
            f(self.as_slice())
        })
    }
}

/// A flag the releasing thread waits on.
#[derive(Default)]
struct Stop {
    done: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Stop {
    /// Wait up to `t`; true once stopped.
    fn wait(&self, t: std::time::Duration) -> bool {
        let g = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *g {
            return true;
        }
        let (g, _) = self.cv.wait_timeout(g, t).unwrap_or_else(std::sync::PoisonError::into_inner);
        *g
    }
}

struct StopOnDrop<'a>(&'a Stop);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        *self.0.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.0.cv.notify_all();
    }
}

fn release(map: &memmap2::Mmap) {
    // SAFETY: a spool's mapped prefix never changes (module invariants).
    unsafe { crate::spill::give_back_pages(map) };
}
