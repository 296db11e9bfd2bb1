//! Dense vectors of unindexed rows kept in unlinked files instead of the
//! heap.
//!
//! Until a compaction folds them into a segment, written rows live in the
//! namespace's overlay; a million 384-d rows are 1.5 GB of vectors, and on
//! the heap they are memory no one else can have until the round ends. A
//! [`VectorSpill`] appends each overlay row's vector to an unlinked chunk
//! file in the scratch dir (`pwrite`: the bytes go to the page cache, which
//! the kernel writes back and may drop once clean), and the row keeps a
//! [`Vector`] that reads them through a read-only mapping of that chunk.
//! Reading maps the pages into the process; [`VectorSpill::release_resident`]
//! gives them back (a sequential reader such as a compaction calls it as it
//! goes), and the kernel may reclaim them under pressure, which heap memory
//! never is.
//!
//! Invariants:
//! - A spilled vector's bytes are written (the `pwrite` returned) before the
//!   `Vector` reading them exists, and no byte of a chunk is written twice
//!   once a `Vector` refers to it: ranges are reserved under a lock, each
//!   handed out once.
//! - A chunk file is unlinked when made and private to this process (nothing
//!   else writes or truncates it); its file and mapping live as long as the
//!   last `Vector` in it (and the spill, while it is the chunk appended to),
//!   so its disk space goes with its last row.
//! - Spilling never fails a write: where a chunk cannot be made or written
//!   (disk full, the scratch dir gone, a big-endian host), the vector stays
//!   on the heap, with the same floats.
//! - A `Vector` reads the same floats wherever it lives (`Deref<[f32]>`),
//!   compares by value, and clones in O(1) once spilled.

use std::fmt;
use std::fs::File;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Bytes of one chunk file (and its mapping).
const CHUNK_BYTES: usize = 64 << 20;

/// A dense vector: on the heap, or spilled into a chunk file.
#[derive(Clone)]
pub struct Vector(Repr);

#[derive(Clone)]
enum Repr {
    Owned(Vec<f32>),
    Spilled { chunk: Arc<Chunk>, at: u32, len: u32 },
}

/// One unlinked chunk file and its read-only mapping.
struct Chunk {
    file: File,
    map: memmap2::Mmap,
}

impl Vector {
    /// Whether the floats live in a chunk file.
    pub fn is_spilled(&self) -> bool {
        matches!(self.0, Repr::Spilled { .. })
    }

    /// The floats, owned (a copy when spilled).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Spilled { .. } => self.to_vec(),
        }
    }
}

impl From<Vec<f32>> for Vector {
    fn from(v: Vec<f32>) -> Self {
        Vector(Repr::Owned(v))
    }
}

impl FromIterator<f32> for Vector {
    fn from_iter<I: IntoIterator<Item = f32>>(iter: I) -> Self {
        Vector(Repr::Owned(iter.into_iter().collect()))
    }
}

impl Deref for Vector {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Spilled { chunk, at, len } => {
                let bytes = &chunk.map[*at as usize..*at as usize + *len as usize * 4];
                // SAFETY: the mapping is page-aligned and `at` a multiple of 4,
                // so the pointer is aligned for f32; the range lies inside the
                // mapping (checked by the slice above), every bit pattern is an
                // f32, and the bytes were written before this Vector existed and
                // are never written again (module invariants), so the slice is
                // immutable for its whole lifetime.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), *len as usize) }
            }
        }
    }
}

impl PartialEq for Vector {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

/// Where overlay vectors are spilled: chunk files in one directory.
pub struct VectorSpill {
    dir: PathBuf,
    tail: Mutex<Tail>,
    /// Named vector attributes' floats go to chunks of their own ([`VectorSpill::spill_named`]),
    /// so the `vector` rows an overlay scan reads stay contiguous.
    named_tail: Mutex<Tail>,
    /// Every chunk made, while some vector still lives in it.
    live: Mutex<Vec<Weak<Chunk>>>,
    warned: AtomicBool,
}

/// The chunk being appended to and how much of it is handed out.
#[derive(Default)]
struct Tail {
    chunk: Option<Arc<Chunk>>,
    used: usize,
}

impl fmt::Debug for VectorSpill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorSpill").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl VectorSpill {
    /// A spill making its chunk files in `dir` (which must exist and be
    /// private to this process, e.g. the engine's scratch dir).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        VectorSpill {
            dir: dir.into(),
            tail: Mutex::new(Tail::default()),
            named_tail: Mutex::new(Tail::default()),
            live: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        }
    }

    /// `v` with its floats in a chunk file, or `v` itself where that cannot
    /// be (already spilled, empty, too long for a chunk, or the file could
    /// not be made or written).
    pub fn spill(&self, v: Vector) -> Vector {
        self.spill_into(&self.tail, v)
    }

    /// [`VectorSpill::spill`] for a named vector attribute's value, into chunks that hold only
    /// those (a scan of the overlay's `vector`s then reads contiguous chunks, not ones
    /// interleaved with other attributes' floats).
    pub fn spill_named(&self, v: Vector) -> Vector {
        self.spill_into(&self.named_tail, v)
    }

    fn spill_into(&self, tail: &Mutex<Tail>, v: Vector) -> Vector {
        let bytes = v.len() * 4;
        if v.is_spilled() || bytes == 0 || bytes > CHUNK_BYTES || cfg!(target_endian = "big") {
            return v;
        }
        let (chunk, at) = match self.reserve(tail, bytes) {
            Ok(r) => r,
            Err(e) => return self.kept_on_heap(v, &e),
        };
        // SAFETY: f32 has no padding and any alignment of u8 is fine; the
        // view covers exactly the vector's bytes (little-endian host).
        let raw = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), bytes) };
        if let Err(e) = chunk.file.write_all_at(raw, at as u64) {
            return self.kept_on_heap(v, &e);
        }
        let (at, len) = (u32::try_from(at).unwrap_or(u32::MAX), u32::try_from(v.len()).unwrap_or(u32::MAX));
        Vector(Repr::Spilled { chunk, at, len })
    }

    /// A fresh range of `bytes` in the tail chunk (a new chunk when full).
    fn reserve(&self, tail: &Mutex<Tail>, bytes: usize) -> std::io::Result<(Arc<Chunk>, usize)> {
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        let room = tail.chunk.is_some() && tail.used + bytes <= CHUNK_BYTES;
        if !room {
            let chunk = self.new_chunk()?;
            *tail = Tail { chunk: Some(chunk), used: 0 };
        }
        let at = tail.used;
        tail.used += bytes.next_multiple_of(4);
        let chunk = tail.chunk.clone().expect("a tail chunk was just ensured");
        Ok((chunk, at))
    }

    fn new_chunk(&self) -> std::io::Result<Arc<Chunk>> {
        let file = tempfile::tempfile_in(&self.dir)?;
        // Sparse: blocks are allocated as vectors are written.
        file.set_len(CHUNK_BYTES as u64)?;
        // SAFETY: the file is unlinked and private to this spill, which only
        // appends to ranges no Vector refers to yet (module invariants).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let chunk = Arc::new(Chunk { file, map });
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&chunk));
        Ok(chunk)
    }

    fn kept_on_heap(&self, v: Vector, e: &std::io::Error) -> Vector {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "unindexed vectors stay on the heap: the spill file could not be made or written");
        }
        v
    }

    /// Drop the pages of every chunk from this process (the page cache keeps
    /// them: the next read is a minor fault or a read of the file).
    pub fn release_resident(&self) {
        let chunks: Vec<Arc<Chunk>> = {
            let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            live.iter().filter_map(Weak::upgrade).collect()
        };
        for c in chunks {
            // SAFETY: a chunk's referenced bytes never change (module invariants).
            unsafe { give_back_pages(&c.map) };
        }
    }

    /// Chunk files alive (tests and metrics).
    pub fn live_chunks(&self) -> usize {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.iter().filter(|w| w.strong_count() > 0).count()
    }
}

/// Drop a read-only shared file mapping's resident pages from this process:
/// the next access faults the same bytes back in from the page cache, also
/// while other threads read them.
///
/// # Safety
/// The mapped bytes must never change while the mapping lives (an
/// append-only or immutable private file), so every live reference into it
/// keeps reading what it read.
pub(crate) unsafe fn give_back_pages(map: &memmap2::Mmap) {
    // SAFETY: the caller's contract above.
    let r = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    if let Err(e) = r {
        tracing::debug!(error = %e, "madvise(DONTNEED) on a read-only mapping failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| seed + i as f32 * 0.25).collect()
    }

    #[test]
    fn a_spilled_vector_reads_the_floats_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let spill = VectorSpill::new(dir.path());
        let vs: Vec<Vector> = (0..100).map(|i| spill.spill(floats(384, i as f32).into())).collect();
        for (i, v) in vs.iter().enumerate() {
            assert!(v.is_spilled());
            assert_eq!(**v, floats(384, i as f32)[..]);
        }
        assert_eq!(vs[3].clone(), Vector::from(floats(384, 3.0)));
        // Nothing is left in the directory: chunk files are unlinked.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn chunks_fill_then_roll_over_and_go_with_their_last_vector() {
        let dir = tempfile::tempdir().unwrap();
        let spill = VectorSpill::new(dir.path());
        let per_chunk = CHUNK_BYTES / (4096 * 4);
        let vs: Vec<Vector> =
            (0..per_chunk + 1).map(|i| spill.spill(floats(4096, i as f32).into())).collect();
        assert_eq!(spill.live_chunks(), 2);
        assert_eq!(*vs[per_chunk], floats(4096, per_chunk as f32)[..]);
        spill.release_resident();
        assert_eq!(*vs[0], floats(4096, 0.0)[..], "a released page reads back the same floats");
        drop(vs);
        assert_eq!(spill.live_chunks(), 1, "only the chunk still appended to is left");
    }

    #[test]
    fn a_spill_that_cannot_make_its_file_keeps_the_vector_on_the_heap() {
        let spill = VectorSpill::new("/nonexistent/tidepool-spill");
        let v = spill.spill(floats(8, 1.0).into());
        assert!(!v.is_spilled());
        assert_eq!(*v, floats(8, 1.0)[..]);
        let empty = spill.spill(Vec::new().into());
        assert!(!empty.is_spilled() && empty.is_empty());
    }
}
