//! Rot after verification: bytes of a mapped object that change on disk after
//! the object was verified are caught when they are read, not served.
//!
//! A segment is verified when it is opened, then its pages are given
//! back to the kernel (`cache/mapping.rs`); a later read faults them in again
//! from the file, which may have changed since (a failing disk, a stray
//! writer). So every read of a guarded byte range first checks the range's
//! chunks against the crc32c the object carries for each chunk (a segment's
//! kind-22 range checksums, `storage-format.md` 8.3.1) — [`ChunkGuard`].
//!
//! The chunks are 1 KiB (`format::segment::READ_CHECK_LOG2`): their crc32c
//! are computed from the bytes that matched the object's stored checksums (a
//! segment's 16 KiB kind-22 chunks) and kept in memory (0.4 % of the object),
//! so checking one row's read costs about that row's bytes. A segment verified
//! whole at open computes them all in that pass ([`ChunkGuard::new`]); a segment
//! opened lazily (`format/segment/lazy.rs`) settles each stored chunk on its
//! first read ([`ChunkGuard::lazy`], `settle.rs`): the 16 KiB are checked
//! against their stored crc, then their 1 KiB crcs kept — so every byte used is
//! checked before its first use either way. An evaluation (a query on the query
//! pool, a compaction's merge, an export) runs inside [`within`], which remembers
//! the chunks it checked last (a scan reads many rows of one chunk) and records
//! a mismatch. The thread-local scope is the same device as
//! the query deadline (`deadline.rs`): the long loops read rows one at a time
//! on one thread.
//!
//! Invariants:
//! - Inside [`within`], a guarded range is used only after each of its chunks
//!   matched its crc in this scope (recently, and within the last [`RECHECK_AFTER`]); a
//!   mismatch is remembered, and [`within`] then returns [`Rot`] instead of the
//!   evaluation's result — whatever the evaluation computed from the changed
//!   bytes is discarded, so no wrong answer leaves (the query fails; the
//!   engine marks the object and reloads it, `engine/read.rs`).
//! - Outside every scope, each guarded read checks its chunks every time (no
//!   caching), and a mismatch is kept in a process-wide list that
//!   [`take_unscoped`] drains (the engine reports it through verify).
//! - Nested scopes share the outermost one: a rot met inside fails the whole
//!   evaluation.
//! - A stored chunk that does not match its crc at its first read is rot like any
//!   other mismatch (recorded as above), never settled: each later read of it fails
//!   too. Settling needs no lock (`settle.rs`): threads that meet the same chunk
//!   first check it each and store the same crcs.
//! - A guard only reads the bytes it checks; the check and the later read are
//!   not atomic (the bytes may change in between), so what is bounded is the
//!   window: at most [`RECHECK_AFTER`] of an evaluation, then chunks are
//!   checked again.
//! - A heap copy of guarded bytes ([`FileGuard::copy_checked`]) is checked in
//!   the copy itself (the whole chunks copied, then their crcs compared), so it
//!   holds exactly bytes that matched; it is trusted while it is kept, as every
//!   heap structure derived from checked bytes is. [`FineCrcs`] (granule crcs of
//!   a region, computed from such a copy) check a read over its granules instead
//!   of its chunks, every call: the caller remembers what it checked per epoch.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod settle;

/// How long a chunk checked in a scope is trusted before it is checked again
/// (a compaction's merge runs for minutes; a query for milliseconds).
pub const RECHECK_AFTER: Duration = Duration::from_millis(250);

/// Unscoped rot reports kept for [`take_unscoped`] (the oldest are dropped).
const MAX_UNSCOPED: usize = 64;

/// Bytes of an object that no longer match the checksum they were verified
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rot {
    /// The object (its store key, when the guard was given one).
    pub object: String,
    /// The file offset of the chunk that changed.
    pub offset: u64,
    /// The crc32c the object carries for the chunk.
    pub expected: u32,
    /// The crc32c of the bytes read now.
    pub actual: u32,
}

impl fmt::Display for Rot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "object {} changed on disk after it was verified: the chunk at byte {} has crc32c {:#010x}, \
             expected {:#010x}",
            self.object, self.offset, self.actual, self.expected
        )
    }
}

impl std::error::Error for Rot {}

/// Where a guard gets the bytes it checks.
#[derive(Clone, Copy)]
enum Bytes<'a> {
    /// The object's bytes, mapped.
    Mapped(&'a [u8]),
    /// A positioned read at a file offset; the mapping is where a chunk not yet settled is read
    /// from when the positioned read fails (a settled chunk that cannot be read is not checked).
    Read(&'a dyn Fn(usize, &mut [u8]) -> bool, &'a [u8]),
}

/// The chunks checked by one evaluation: a small direct-mapped table of
/// `(guard id, chunk)` pairs (a scan rereads a chunk for each row in it; random
/// reads seldom do, and a 1 KiB chunk is cheap to check again).
struct Scope {
    recent: Box<[(u64, usize); RECENT_SLOTS]>,
    epoch_start: Instant,
    lookups: u32,
    rot: Option<Rot>,
}

/// Slots of [`Scope::recent`] (a power of two).
const RECENT_SLOTS: usize = 256;

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    /// The last few (guard id, chunk) pairs found checked: the fast path of a
    /// scan that reads many rows of one chunk. Cleared with the scope and each epoch.
    static LAST: Cell<[(u64, usize); LAST_SLOTS]> = const { Cell::new([(0, 0); LAST_SLOTS]) };
    static LAST_NEXT: Cell<usize> = const { Cell::new(0) };
    /// Names the thread's current checking epoch ([`epoch`]): bumped by every new scope and
    /// every [`RECHECK_AFTER`] restart within one.
    static EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// The thread's current checking epoch: bytes a guard passed under one epoch need not be checked
/// again while the epoch lasts (that scope, within [`RECHECK_AFTER`]). `None` outside every
/// scope, where each read checks. For callers that keep something decoded from checked bytes (a
/// segment's decoded doc blocks) and would otherwise check its bytes again on every use.
pub fn epoch() -> Option<u64> {
    SCOPE.with(|s| s.borrow().is_some()).then(|| EPOCH.get())
}

fn next_epoch() {
    EPOCH.set(EPOCH.get().wrapping_add(1));
}

/// Entries of the fast path: a scan row touches a few regions at once (its id, its offsets,
/// its bytes), each staying in one chunk for several rows.
const LAST_SLOTS: usize = 4;

fn forget_last() {
    LAST.set([(0, 0); LAST_SLOTS]);
}

fn remember_last(id: u64, chunk: usize) {
    let i = LAST_NEXT.get();
    let mut last = LAST.get();
    if let Some(slot) = last.get_mut(i % LAST_SLOTS) {
        *slot = (id, chunk);
    }
    LAST.set(last);
    LAST_NEXT.set(i.wrapping_add(1));
}

static UNSCOPED: Mutex<Vec<Rot>> = Mutex::new(Vec::new());
static CHECKING: AtomicBool = AtomicBool::new(true);

/// Turn every guard's checks on or off, process-wide. Only the cost benchmark
/// (`bench/integrity_cost.rs`) turns them off, to measure the floor in the same run; the
/// daemon never does.
#[doc(hidden)]
pub fn set_checking(on: bool) {
    CHECKING.store(on, Ordering::Relaxed);
}
static NEXT_GUARD_ID: AtomicU64 = AtomicU64::new(1);

/// Clears the thread's scope when the evaluation ends, even by a panic
/// (blocking-pool threads are reused).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        SCOPE.with(|s| *s.borrow_mut() = None);
        forget_last();
        next_epoch();
    }
}

/// Runs `f` in a checking scope; `Err(Rot)` when a guarded read inside met
/// changed bytes (the result of `f` is then discarded). Inside another scope,
/// runs `f` in that one (the outer scope reports).
pub fn within<T>(f: impl FnOnce() -> T) -> Result<T, Rot> {
    if SCOPE.with(|s| s.borrow().is_some()) {
        return Ok(f());
    }
    SCOPE.with(|s| {
        *s.borrow_mut() = Some(Scope {
            recent: Box::new([(0, 0); RECENT_SLOTS]),
            epoch_start: Instant::now(),
            lookups: 0,
            rot: None,
        })
    });
    let _clear = Installed;
    forget_last();
    next_epoch();
    let out = f();
    let rot = SCOPE.with(|s| s.borrow_mut().as_mut().and_then(|sc| sc.rot.take()));
    match rot {
        Some(rot) => Err(rot),
        None => Ok(out),
    }
}

/// Rot met outside every scope since the last call (oldest first).
pub fn take_unscoped() -> Vec<Rot> {
    std::mem::take(&mut *UNSCOPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// The per-chunk checksums of one mapped object and the checks of its reads.
#[derive(Clone)]
pub struct ChunkGuard {
    id: u64,
    object: String,
    chunk_log2: u32,
    /// Bytes `[0, covered)` of the object are guarded.
    covered: usize,
    /// The fine crcs; under a lazy guard, those of a stored chunk are valid once it settled.
    crcs: Arc<[AtomicU32]>,
    /// A lazy guard's stored chunks (None: every fine crc was computed at open).
    lazy: Option<Arc<settle::Settle>>,
}

impl fmt::Debug for ChunkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkGuard")
            .field("object", &self.object)
            .field("chunks", &self.crcs.len())
            .field("chunk_log2", &self.chunk_log2)
            .finish()
    }
}

impl ChunkGuard {
    /// A guard over bytes `[0, covered)` in chunks of `2^chunk_log2` whose
    /// crc32c are `crcs` (the last chunk may be shorter).
    pub fn new(chunk_log2: u32, covered: usize, crcs: Vec<u32>) -> ChunkGuard {
        ChunkGuard {
            id: NEXT_GUARD_ID.fetch_add(1, Ordering::Relaxed),
            object: String::new(),
            chunk_log2,
            covered,
            crcs: crcs.into_iter().map(AtomicU32::new).collect(),
            lazy: None,
        }
    }

    /// A lazy guard over bytes `[0, covered)` in fine chunks of `2^chunk_log2`, whose bytes are
    /// verified on first read ([`settle`](self::settle)) against `stored_crcs`, the object's own
    /// crc32c of each `2^stored_log2`-byte chunk (a whole number of fine chunks; the last may be
    /// shorter). None when the shapes do not fit.
    pub fn lazy(
        chunk_log2: u32,
        covered: usize,
        stored_log2: u32,
        stored_crcs: Vec<u32>,
    ) -> Option<ChunkGuard> {
        let fits = stored_log2 >= chunk_log2
            && stored_log2 < usize::BITS
            && covered.div_ceil(1 << stored_log2) == stored_crcs.len();
        if !fits {
            return None;
        }
        let fine = covered.div_ceil(1 << chunk_log2);
        Some(ChunkGuard {
            id: NEXT_GUARD_ID.fetch_add(1, Ordering::Relaxed),
            object: String::new(),
            chunk_log2,
            covered,
            crcs: (0..fine).map(|_| AtomicU32::new(0)).collect(),
            lazy: Some(Arc::new(settle::Settle::new(stored_log2, stored_crcs))),
        })
    }

    /// Heap bytes held (the checksums, and a lazy guard's stored ones and settled bits).
    pub fn heap_bytes(&self) -> usize {
        self.crcs.len() * 4 + self.lazy.as_ref().map_or(0, |l| l.heap_bytes())
    }

    /// Settle the stored chunks of `range` of `buf` (the guarded object's bytes) not settled yet:
    /// each is checked against its stored crc and its fine crcs kept (see [`settle`](self::settle)).
    /// `verified` gets each stretch of newly settled bytes. A mismatch is returned, not recorded
    /// (open refuses the object; a reader records it with [`FileGuard::settle_slice`]).
    pub fn settle(&self, buf: &[u8], range: Range<usize>, verified: &dyn Fn(&[u8])) -> Result<(), Rot> {
        let Some(lazy) = &self.lazy else { return Ok(()) };
        let end = range.end.min(self.covered);
        if range.start >= end {
            return Ok(());
        }
        let (first, last) = (range.start >> lazy.log2(), (end - 1) >> lazy.log2());
        for c in (first..=last).filter(|&c| !lazy.is_settled(c)) {
            let at = c << lazy.log2();
            let bytes = buf.get(at..(at + (1 << lazy.log2())).min(self.covered)).unwrap_or_default();
            self.settle_from(lazy, c, bytes)?;
            verified(bytes);
        }
        Ok(())
    }

    /// Bytes of the object settled so far (all of them for a guard that is not lazy).
    pub fn settled_bytes(&self) -> usize {
        self.lazy.as_ref().map_or(self.covered, |l| l.settled_bytes(self.covered))
    }

    /// Check stored chunk `c` (`bytes`) and keep its fine crcs; `Err(Rot)` (logged) on a mismatch.
    fn settle_from(&self, lazy: &settle::Settle, c: usize, bytes: &[u8]) -> Result<(), Rot> {
        lazy.settle(c, bytes, &self.crcs, self.chunk_log2)
            .map_err(|(expected, actual)| self.rot_at(c << lazy.log2(), expected, actual))
    }

    /// Settle the stored chunk holding fine chunk `chunk` if it is not yet: `Ok(false)` when it
    /// could not be read (not checked).
    fn settle_chunk(&self, src: Bytes<'_>, chunk: usize) -> Result<bool, Rot> {
        let Some(lazy) = &self.lazy else { return Ok(true) };
        let c = chunk >> (lazy.log2() - self.chunk_log2);
        if lazy.is_settled(c) {
            return Ok(true);
        }
        let at = c << lazy.log2();
        let end = (at + (1 << lazy.log2())).min(self.covered);
        let mut out;
        let bytes = match src {
            Bytes::Mapped(buf) => buf.get(at..end),
            Bytes::Read(read, mapped) => {
                out = vec![0u8; end - at];
                if read(at, &mut out) {
                    Some(&out[..])
                } else {
                    mapped.get(at..end)
                }
            }
        };
        let Some(bytes) = bytes else { return Ok(false) };
        self.settle_from(lazy, c, bytes).map(|()| true)
    }

    /// The fine crc of `chunk` (0 past the end).
    fn fine(&self, chunk: usize) -> u32 {
        self.crcs.get(chunk).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The rot of the bytes at `offset` (logged).
    fn rot_at(&self, offset: usize, expected: u32, actual: u32) -> Rot {
        let offset = u64::try_from(offset).unwrap_or(u64::MAX);
        let rot = Rot { object: self.object.clone(), offset, expected, actual };
        tracing::error!(object = %rot.object, offset, "{rot}");
        rot
    }

    /// Name the object in rot reports (its store key).
    pub fn set_object(&mut self, object: &str) {
        object.clone_into(&mut self.object);
    }

    /// The object named in rot reports.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Check the chunks of `range` of `buf` (the guarded object's bytes):
    /// `false` when one changed (recorded as the module doc says). Bytes past
    /// the guarded prefix are not checked.
    pub fn check(&self, buf: &[u8], range: Range<usize>) -> bool {
        self.check_from(Bytes::Mapped(buf), range)
    }

    /// [`ChunkGuard::check`] for bytes read by `read(file offset, out)` rather than through a
    /// mapping (positioned reads of a large vector section). A chunk that cannot be read is not
    /// checked (the read of the row itself fails or falls back).
    /// `mapped` is the object's bytes, which a chunk not yet settled is read from when `read`
    /// fails.
    pub fn check_read(
        &self,
        range: Range<usize>,
        read: &dyn Fn(usize, &mut [u8]) -> bool,
        mapped: &[u8],
    ) -> bool {
        self.check_from(Bytes::Read(read, mapped), range)
    }

    /// The whole chunks covering `r` (the guarded part; bytes past it as they are).
    fn whole_chunks(&self, r: &Range<usize>) -> Range<usize> {
        let start = (r.start >> self.chunk_log2) << self.chunk_log2;
        let end = r.end.max((r.end.div_ceil(1 << self.chunk_log2) << self.chunk_log2).min(self.covered));
        start..end
    }

    /// What checking `r` reads: its whole chunks, widened to the stored chunks around them while
    /// a lazy guard has not settled one of those.
    fn read_span(&self, r: &Range<usize>) -> Range<usize> {
        let fine = self.whole_chunks(r);
        let Some(lazy) = &self.lazy else { return fine };
        let (first, last) = (fine.start >> lazy.log2(), fine.end.saturating_sub(1) >> lazy.log2());
        if (first..=last).all(|c| lazy.is_settled(c)) {
            return fine;
        }
        (first << lazy.log2())..fine.end.max(((last + 1) << lazy.log2()).min(self.covered))
    }

    fn check_from(&self, src: Bytes<'_>, range: Range<usize>) -> bool {
        let end = range.end.min(self.covered);
        if range.start >= end || !CHECKING.load(Ordering::Relaxed) {
            return true;
        }
        let (first, last) = (range.start >> self.chunk_log2, (end - 1) >> self.chunk_log2);
        (first..=last).all(|c| self.check_chunk(src, c))
    }

    fn check_chunk(&self, src: Bytes<'_>, chunk: usize) -> bool {
        if LAST.get().contains(&(self.id, chunk)) {
            return true;
        }
        let in_scope = SCOPE.with(|s| s.borrow_mut().as_mut().map(|sc| sc.seen(self.id, chunk)));
        if in_scope == Some(true) {
            remember_last(self.id, chunk);
            return true;
        }
        match self.verify(src, chunk) {
            Ok(true) if in_scope.is_some() => {
                SCOPE.with(|s| {
                    if let Some(sc) = s.borrow_mut().as_mut() {
                        sc.mark(self.id, chunk);
                    }
                });
                remember_last(self.id, chunk);
                true
            }
            Ok(_) => true,
            Err(rot) => {
                let kept = SCOPE.with(|s| {
                    s.borrow_mut().as_mut().map(|sc| {
                        sc.rot.get_or_insert(rot.clone());
                    })
                });
                if kept.is_none() {
                    report_unscoped(rot);
                }
                false
            }
        }
    }

    /// `Ok(true)`: the chunk matches; `Ok(false)`: it could not be read (not checked).
    fn verify(&self, src: Bytes<'_>, chunk: usize) -> Result<bool, Rot> {
        if !self.settle_chunk(src, chunk)? {
            return Ok(false);
        }
        let start = chunk << self.chunk_log2;
        let end = (start + (1 << self.chunk_log2)).min(self.covered);
        let expected = self.fine(chunk);
        let actual = match src {
            Bytes::Mapped(buf) => buf.get(start..end).map_or(!expected, crc32c::crc32c),
            Bytes::Read(read, _) => {
                let mut out = vec![0u8; end - start];
                if !read(start, &mut out) {
                    return Ok(false);
                }
                crc32c::crc32c(&out)
            }
        };
        if actual == expected {
            return Ok(true);
        }
        Err(self.rot_at(start, expected, actual))
    }
}

/// An object's guard with its bytes: what an index reader over a section of the segment holds to
/// check the slices it reads before it uses them (`crate::integrity`), where a changed byte could
/// change an answer.
#[derive(Clone, Copy)]
pub struct FileGuard<'a> {
    file: &'a [u8],
    guard: &'a ChunkGuard,
}

impl fmt::Debug for FileGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileGuard").field("object", &self.guard.object()).finish()
    }
}

impl<'a> FileGuard<'a> {
    /// The guard of the object whose bytes are `file`.
    pub fn new(file: &'a [u8], guard: &'a ChunkGuard) -> FileGuard<'a> {
        FileGuard { file, guard }
    }

    /// Check `sub` (a slice of the object's bytes) before it is read: false when it changed since
    /// the object was verified (the evaluation's scope then fails). A slice from elsewhere passes.
    pub fn check_slice<T>(&self, sub: &[T]) -> bool {
        self.range_of(sub).is_none_or(|r| self.guard.check(self.file, r))
    }

    /// [`FileGuard::check_slice`] for a slice whose bytes are read by `read(file offset, out)`
    /// instead of through the mapping (the chunks are read the same way to be checked).
    pub fn check_slice_read<T>(&self, sub: &[T], read: &dyn Fn(usize, &mut [u8]) -> bool) -> bool {
        self.range_of(sub).is_none_or(|r| self.guard.check_read(r, read, self.file))
    }

    /// Settle `sub` (a slice of the object) before bytes of it are used unchecked (a section a
    /// reader parses whole at its first open): each stored chunk not yet checked is checked now
    /// ([`ChunkGuard::settle`]); false on a mismatch, recorded as [`FileGuard::check_slice`]
    /// records it. A slice from elsewhere passes.
    pub fn settle_slice<T>(&self, sub: &[T]) -> bool {
        let Some(r) = self.range_of(sub) else { return true };
        match self.guard.settle(self.file, r, &|_| {}) {
            Ok(()) => true,
            Err(rot) => {
                keep_rot(rot);
                false
            }
        }
    }

    /// The object range a check of `sub` reads (the whole chunks covering it, or the stored
    /// chunks a lazy guard has yet to settle), or None when checks are off or `sub` is not the
    /// object's: what a reader about to read `sub` by positioned reads asks the kernel for
    /// ahead (`state::SegmentRows::will_read`).
    pub fn checked_span<T>(&self, sub: &[T]) -> Option<Range<usize>> {
        CHECKING.load(Ordering::Relaxed).then_some(())?;
        Some(self.guard.read_span(&self.range_of(sub)?))
    }

    /// Whether `sub` is a slice of the object's bytes (else, a heap copy say, no check reads it).
    pub fn holds<T>(&self, sub: &[T]) -> bool {
        self.range_of(sub).is_some()
    }

    /// Where `sub` lies in the object (None: not inside it).
    fn range_of<T>(&self, sub: &[T]) -> Option<Range<usize>> {
        range_within(self.file, sub)
    }
}

impl FileGuard<'_> {
    /// A heap copy of `sub` (a slice of the object) whose bytes matched the object's chunk crcs
    /// in the copy itself: the whole chunks covering `sub` are copied, then checked, so the copy
    /// cannot hold a byte that changed between a check and the copying (it is trusted for as
    /// long as it is kept, like every heap copy of checked bytes). None when a chunk changed
    /// (recorded as [`FileGuard::check_slice`] records it) or `sub` is not the object's.
    pub fn copy_checked(&self, sub: &[u8]) -> Option<Vec<u8>> {
        let r = self.range_of(sub)?;
        let g = self.guard;
        let Range { start, end } = g.whole_chunks(&r);
        if let Err(rot) = g.settle(self.file, start..end, &|_| {}) {
            keep_rot(rot);
            return None;
        }
        let mut copy = self.file.get(start..end)?.to_vec();
        if CHECKING.load(Ordering::Relaxed) {
            for (i, bytes) in copy.chunks(1 << g.chunk_log2).enumerate() {
                let chunk = (start >> g.chunk_log2) + i;
                let at = chunk << g.chunk_log2;
                if at >= g.covered {
                    break;
                }
                let bytes = bytes.get(..(g.covered - at).min(bytes.len())).unwrap_or(bytes);
                let expected = g.fine(chunk);
                if let Err(rot) = g.compare(at, expected, crc32c::crc32c(bytes)) {
                    keep_rot(rot);
                    return None;
                }
            }
        }
        copy.truncate(r.end - start);
        copy.drain(..r.start - start);
        Some(copy)
    }

    /// Crc32c of `sub` (a slice of the object) in granules of `2^log2` bytes from its start,
    /// computed from a checked copy ([`FileGuard::copy_checked`]): a read inside `sub` is then
    /// checked by [`FileGuard::check_fine`] over its granules alone. None as for the copy.
    pub fn fine_crcs(&self, sub: &[u8], log2: u32) -> Option<FineCrcs> {
        let start = self.range_of(sub)?.start;
        let copy = self.copy_checked(sub)?;
        let crcs = copy.chunks(1 << log2).map(crc32c::crc32c).collect();
        Some(FineCrcs { start, len: copy.len(), log2, crcs })
    }

    /// Check `sub` against `fine` (this object's, [`FileGuard::fine_crcs`]): each granule it
    /// touches, every call (the caller remembers what it checked). A slice from outside the
    /// object passes; one outside `fine`'s region is checked by [`FileGuard::check_slice`].
    pub fn check_fine(&self, fine: &FineCrcs, sub: &[u8]) -> bool {
        let Some(r) = self.range_of(sub) else { return true };
        let region_end = fine.start + fine.len;
        if r.start < fine.start || r.end > region_end {
            return self.check_slice(sub);
        }
        if r.is_empty() || !CHECKING.load(Ordering::Relaxed) {
            return true;
        }
        let (first, last) = ((r.start - fine.start) >> fine.log2, (r.end - 1 - fine.start) >> fine.log2);
        (first..=last).all(|g| {
            let at = fine.start + (g << fine.log2);
            let end = (at + (1 << fine.log2)).min(region_end);
            let actual = self.file.get(at..end).map_or(0, crc32c_short);
            let expected = fine.crcs.get(g).copied().unwrap_or(!actual);
            match self.guard.compare(at, expected, actual) {
                Ok(()) => true,
                Err(rot) => {
                    keep_rot(rot);
                    false
                }
            }
        })
    }
}

/// The longest slice [`crc32c_short`] computes itself.
const SHORT_CRC: usize = 256;

/// `crc32c::crc32c(bytes)`, faster for the short granules a sparse read checks (64 bytes of a
/// norm table for one row): the crate aligns to 8 bytes and takes the unaligned head and tail a
/// byte at a time (up to 14 dependent instructions of a 64-byte granule's 22), where unaligned
/// 8-byte loads need none (the instruction reads a word as its 8 bytes in order). Longer slices
/// go to the crate, which runs three streams in parallel.
pub fn crc32c_short(bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() <= SHORT_CRC && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2 (checked just above).
        return unsafe { crc32c_words(bytes) };
    }
    crc32c::crc32c(bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_words(bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut words = bytes.chunks_exact(8);
    let mut crc = u64::from(u32::MAX);
    for w in &mut words {
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    let mut crc = crc as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

/// Crc32c of one region of a guarded object in granules finer than the guard's chunks, taken
/// from checked bytes ([`FileGuard::fine_crcs`]): a read of a few bytes then costs a crc of a
/// granule, not of a whole chunk. Heap, kept with what the region belongs to.
#[derive(Clone, Debug)]
pub struct FineCrcs {
    /// Where the region starts in the object, and its length.
    start: usize,
    len: usize,
    log2: u32,
    crcs: Box<[u32]>,
}

impl FineCrcs {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.crcs.len() * 4
    }

    /// The granule size, log2 bytes.
    pub fn granule_log2(&self) -> u32 {
        self.log2
    }

    /// Bytes of the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ChunkGuard {
    /// `Err(Rot)` (logged) when the bytes at `offset` have crc `actual` instead of `expected`.
    fn compare(&self, offset: usize, expected: u32, actual: u32) -> Result<(), Rot> {
        if actual == expected {
            return Ok(());
        }
        Err(self.rot_at(offset, expected, actual))
    }
}

/// Record `rot` as a failed chunk check does: in the evaluation's scope, else in the
/// process-wide list [`take_unscoped`] drains. Also how a helper thread's rot reaches the
/// evaluation it took part in (`crate::fanout`).
pub fn keep_rot(rot: Rot) {
    let kept = SCOPE.with(|s| {
        s.borrow_mut().as_mut().map(|sc| {
            sc.rot.get_or_insert(rot.clone());
        })
    });
    if kept.is_none() {
        report_unscoped(rot);
    }
}

/// Where `sub`'s bytes lie in `whole` (None: not inside it). Only addresses are compared.
pub(crate) fn range_within<T>(whole: &[u8], sub: &[T]) -> Option<Range<usize>> {
    let start = (sub.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(std::mem::size_of_val(sub))?;
    (end <= whole.len()).then_some(start..end)
}

/// `sub`, after checking it with `guard` when there is one (a mismatch is recorded in the
/// evaluation's scope, which then fails: see [`FileGuard::check_slice`]). What an index reader
/// wraps each slice it reads in.
pub fn checked<'a, T>(guard: Option<&FileGuard<'_>>, sub: &'a [T]) -> &'a [T] {
    check_slice(guard, sub);
    sub
}

/// Check `sub` with `guard` when there is one (see [`FileGuard::check_slice`]).
pub fn check_slice<T>(guard: Option<&FileGuard<'_>>, sub: &[T]) -> bool {
    guard.is_none_or(|g| g.check_slice(sub))
}

impl Scope {
    fn slot(id: u64, chunk: usize) -> usize {
        let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (chunk as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        (h >> 56) as usize % RECENT_SLOTS
    }

    /// Whether `chunk` of guard `id` was checked recently in this epoch (a new
    /// epoch forgets every check). Guard ids start at 1, so an empty slot never matches.
    fn seen(&mut self, id: u64, chunk: usize) -> bool {
        // The clock is read once every 64 lookups (tens of nanoseconds each, like `deadline.rs`).
        self.lookups = self.lookups.wrapping_add(1);
        if self.lookups.is_multiple_of(64) && self.epoch_start.elapsed() >= RECHECK_AFTER {
            self.recent.fill((0, 0));
            self.epoch_start = Instant::now();
            forget_last();
            next_epoch();
        }
        self.recent.get(Self::slot(id, chunk)).is_some_and(|s| *s == (id, chunk))
    }

    fn mark(&mut self, id: u64, chunk: usize) {
        if let Some(s) = self.recent.get_mut(Self::slot(id, chunk)) {
            *s = (id, chunk);
        }
    }
}

fn report_unscoped(rot: Rot) {
    let mut all = UNSCOPED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if all.len() >= MAX_UNSCOPED {
        all.remove(0);
    }
    all.push(rot);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG2: u32 = 12;

    fn guarded(len: usize) -> (Vec<u8>, ChunkGuard) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let crcs = bytes.chunks(1 << LOG2).map(crc32c::crc32c).collect();
        let mut g = ChunkGuard::new(LOG2, len, crcs);
        g.set_object("segments/s/data.seg");
        (bytes, g)
    }

    #[test]
    fn a_changed_chunk_fails_the_scope_and_names_the_object() {
        let (mut bytes, g) = guarded(3 * 4096 + 100);
        assert!(within(|| g.check(&bytes, 0..bytes.len())).unwrap());
        bytes[2 * 4096 + 5] ^= 1;
        let rot = within(|| {
            assert!(g.check(&bytes, 0..10), "an untouched chunk still reads");
            g.check(&bytes, 2 * 4096..2 * 4096 + 10)
        })
        .unwrap_err();
        assert_eq!(rot.object, "segments/s/data.seg");
        assert_eq!(rot.offset, 2 * 4096);
        assert!(rot.to_string().contains("changed on disk"), "{rot}");
    }

    #[test]
    fn a_scope_checks_a_chunk_once_per_epoch() {
        let (bytes, g) = guarded(2 * 4096);
        let mut changed = bytes.clone();
        changed[0] ^= 1;
        // Changed after this scope checked the chunk: not checked again within the epoch (the window).
        assert!(within(|| g.check(&bytes, 0..8) && g.check(&changed, 0..8)).unwrap());
        assert!(within(|| g.check(&changed, 0..8)).is_err(), "the next scope checks again");
    }

    #[test]
    fn outside_a_scope_every_read_is_checked_and_reported() {
        let (mut bytes, g) = guarded(4096);
        take_unscoped();
        assert!(g.check(&bytes, 0..4096));
        bytes[7] ^= 0x80;
        assert!(!g.check(&bytes, 100..200));
        let found = take_unscoped();
        assert!(found.iter().any(|r| r.object == "segments/s/data.seg" && r.offset == 0), "{found:?}");
    }

    #[test]
    fn a_checked_copy_holds_the_bytes_and_refuses_a_changed_chunk() {
        let (mut bytes, g) = guarded(3 * 4096 + 100);
        let copy = FileGuard::new(&bytes, &g).copy_checked(&bytes[4000..9000]);
        assert_eq!(copy.as_deref(), Some(&bytes[4000..9000]));
        let tail = FileGuard::new(&bytes, &g).copy_checked(&bytes[3 * 4096 + 10..]);
        assert_eq!(tail.as_deref(), Some(&bytes[3 * 4096 + 10..]), "the short last chunk");
        bytes[8200] ^= 4;
        let rot = within(|| FileGuard::new(&bytes, &g).copy_checked(&bytes[4000..4100]).is_some()).unwrap();
        assert!(rot, "a chunk the copy does not cover is not checked");
        let out = within(|| FileGuard::new(&bytes, &g).copy_checked(&bytes[4000..9000]).is_none());
        assert_eq!(out.unwrap_err().offset, 2 * 4096, "the changed chunk fails the copy and the scope");
        assert_eq!(FileGuard::new(&bytes, &g).copy_checked(&[1u8, 2][..]), None, "not the object's bytes");
    }

    #[test]
    fn the_short_crc_is_crc32c_at_every_length_and_alignment() {
        let bytes: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for start in 0..9 {
            for len in (0..=300).chain([511, 512]) {
                let s = &bytes[start..start + len];
                assert_eq!(crc32c_short(s), crc32c::crc32c(s), "start {start}, len {len}");
            }
        }
    }

    #[test]
    fn fine_checks_catch_a_changed_granule_every_time() {
        let (mut bytes, g) = guarded(2 * 4096);
        let fine = FileGuard::new(&bytes, &g).fine_crcs(&bytes[100..3000], 6).unwrap();
        assert_eq!(
            (fine.len(), fine.granule_log2(), fine.heap_bytes()),
            (2900, 6, 4 * 2900usize.div_ceil(64))
        );
        assert!(within(|| FileGuard::new(&bytes, &g).check_fine(&fine, &bytes[100..3000])).unwrap());
        bytes[100 + 64 * 5 + 3] ^= 1;
        let at = within(|| {
            let fg = FileGuard::new(&bytes, &g);
            assert!(fg.check_fine(&fine, &bytes[100..100 + 64 * 5]), "the granules before pass");
            fg.check_fine(&fine, &bytes[100 + 64 * 5 + 10..100 + 64 * 5 + 11])
        });
        assert_eq!(at.unwrap_err().offset, 100 + 64 * 5, "the changed granule, named by its offset");
        // Outside the region: the chunk check (which sees the change in chunk 0 too).
        assert!(within(|| FileGuard::new(&bytes, &g).check_fine(&fine, &bytes[3500..3600])).is_err());
        take_unscoped();
        assert!(!FileGuard::new(&bytes, &g).check_fine(&fine, &bytes[420..421]), "unscoped too");
        assert!(take_unscoped().iter().any(|r| r.offset == 420));
    }

    #[test]
    fn nested_scopes_report_to_the_outermost() {
        let (mut bytes, g) = guarded(4096);
        bytes[0] ^= 1;
        let outer = within(|| within(|| g.check(&bytes, 0..1)).is_ok());
        assert!(outer.is_err(), "the inner scope passes through; the outer one fails");
    }
}
