//! Read-only file mappings the cache hands out, and the two things the
//! memory tier may do to them: give their resident pages back, and mark a
//! verified segment's mapping as read at random (no fault readahead).
//!
//! A segment is verified whole when it is opened (every checksum), which
//! leaves every page of the file resident in this process. A query afterwards
//! touches the graph (codes and links) of its segments and a few rows'
//! vectors and attributes; keeping the rest resident would make a served
//! namespace cost its whole file in RSS. [`release_resident`] drops a
//! mapping's pages from this process (the kernel's page cache keeps them, so
//! the next touch is a minor fault, not a disk read).
//!
//! Invariants:
//! - Only mappings made here are ever advised: a slice is looked up in the
//!   registry of live mappings, and anything else (heap bytes of a memory
//!   store, a copy) is left alone — `MADV_DONTNEED` on anonymous memory would
//!   zero it.
//! - A mapped file is immutable (the caller's contract, as for every cache
//!   mapping), so re-faulting a released page reads the same bytes.
//! - The registry entry lives exactly as long as the mapping (removed when
//!   the last `Bytes` that owns it is dropped).
//!
//! Positioned reads: touching a few rows of a mapped file does not cost a
//! few pages of RSS. The kernel maps the page-cache pages around a fault
//! (fault-around; on recent kernels the whole large folio the page is in,
//! which a freshly written file is made of), so a query reranking a hundred
//! random rows of a large vector section mapped megabytes, and a few
//! hundred queries mapped the whole section back. A mapping of at least
//! [`READABLE_MIN_BYTES`] keeps a handle on its file, and [`FileRange`] reads
//! a slice of it with `pread` instead: the bytes come from the same page
//! cache, copied, and the process maps nothing. The threshold is low (1 MiB):
//! under a tight memory cap a 45k-row segment's vectors read through the
//! mapping kept 0.5x the raw vector bytes resident, pread 0.3x (BENCHMARKS
//! "Positioned reads for every segment (stop 49)").
//! - A [`FileRange`] reads the same immutable file the mapping maps, so it
//!   reads the same (verified) bytes; only mappings made here have one.
//! - At most [`KEPT_FILES_MAX`] mappings keep a file at once, fewer when the
//!   server's descriptor limit is low ([`limit_kept_files`]: the server
//!   reserves the cap besides its connections); past it a
//!   mapping keeps none and its slices are read through the mapping, as a
//!   small one's are: same bytes, only more resident.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Mappings at least this long keep their file open for [`FileRange`]
/// reads (smaller ones cost little RSS whole, and keep no descriptor).
pub(crate) const READABLE_MIN_BYTES: u64 = 1 << 20;

/// How many mappings may keep a file open at once (see the module docs).
pub const KEPT_FILES_MAX: usize = 1024;

/// Files kept open by live mappings.
static KEPT_FILES: AtomicUsize = AtomicUsize::new(0);

/// The cap in force on [`KEPT_FILES`] (at most [`KEPT_FILES_MAX`]).
static KEPT_FILES_CAP: AtomicUsize = AtomicUsize::new(KEPT_FILES_MAX);

/// Lowers the number of mappings that may keep a file to `cap` (at most
/// [`KEPT_FILES_MAX`]): the server sets what its descriptor limit can spare.
pub fn limit_kept_files(cap: usize) {
    KEPT_FILES_CAP.store(cap.min(KEPT_FILES_MAX), Ordering::Release);
}

/// A descriptor kept for [`FileRange`] reads, counted in `count` (at most its cap).
struct KeptFile {
    file: File,
    count: &'static AtomicUsize,
}

impl KeptFile {
    /// A second handle on `file` if the mapping is long enough and the cap allows.
    fn keep(file: &File, len: u64) -> std::io::Result<Option<KeptFile>> {
        if len < READABLE_MIN_BYTES {
            return Ok(None);
        }
        Self::keep_counted(file, &KEPT_FILES, KEPT_FILES_CAP.load(Ordering::Acquire))
    }

    fn keep_counted(
        file: &File,
        count: &'static AtomicUsize,
        cap: usize,
    ) -> std::io::Result<Option<KeptFile>> {
        let take = |n: usize| (n < cap).then_some(n + 1);
        if count.fetch_update(Ordering::AcqRel, Ordering::Acquire, take).is_err() {
            return Ok(None);
        }
        match file.try_clone() {
            Ok(file) => Ok(Some(KeptFile { file, count })),
            Err(e) => {
                count.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }
}

impl Drop for KeptFile {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A live mapping and, for a long one, its file.
struct Mapped {
    map: memmap2::Mmap,
    file: Option<KeptFile>,
}

/// Live mappings: start address → (length, the mapping).
static LIVE: Mutex<BTreeMap<usize, (usize, std::sync::Weak<Mapped>)>> = Mutex::new(BTreeMap::new());

/// The owner of a mapping inside `Bytes`; unregisters it when dropped.
struct Mapping(Arc<Mapped>);

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(PoisonError::into_inner).remove(&(self.0.map.as_ptr() as usize));
    }
}

/// The registered mapping the `bytes` bytes at address `at` lie in, and
/// where in it they start.
fn containing(at: usize, bytes: usize) -> Option<(Arc<Mapped>, usize)> {
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let (start, (len, m)) = live.range(..=at).next_back()?;
    (at + bytes <= start + len).then_some(())?;
    Some((m.upgrade()?, at - start))
}

/// A slice of a mapped file read with positioned reads (see the module
/// docs): what [`FileRange::read`] returns equals the slice's bytes.
#[derive(Clone)]
pub(crate) struct FileRange {
    mapped: Arc<Mapped>,
    offset: u64,
    len: usize,
}

impl FileRange {
    /// The file range behind `slice`, if it lies in a mapping made here that
    /// kept its file ([`READABLE_MIN_BYTES`]).
    pub(crate) fn of<T>(slice: &[T]) -> Option<FileRange> {
        let len = std::mem::size_of_val(slice);
        let (mapped, at) = containing(slice.as_ptr() as usize, len)?;
        mapped.file.as_ref()?;
        Some(FileRange { mapped, offset: at as u64, len })
    }

    /// Fills `out` with the bytes at `at..at + out.len()` of the slice.
    pub(crate) fn read(&self, at: usize, out: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = at.checked_add(out.len()).filter(|e| *e <= self.len);
        let (Some(_), Some(file)) = (end, self.mapped.file.as_ref()) else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "read past the file range"));
        };
        file.file.read_exact_at(out, self.offset + at as u64)
    }

    /// Where the slice starts in the mapped file.
    pub(crate) fn file_offset(&self) -> usize {
        self.offset as usize
    }

    /// Asks the kernel to start reading bytes `at..at + len` of the mapped file into the page
    /// cache without waiting for them (`POSIX_FADV_WILLNEED`): a rerank about to read a few
    /// dozen scattered rows asks for all of them first, so a disk serves them together instead
    /// of one read after another. A hint: later reads return the same bytes whether or not it
    /// was taken, and a refusal is ignored.
    pub(crate) fn will_need_file_at(&self, at: usize, len: usize) {
        let (Some(file), Some(len)) = (self.mapped.file.as_ref(), std::num::NonZeroU64::new(len as u64))
        else {
            return;
        };
        let _ = rustix::fs::fadvise(&file.file, at as u64, Some(len), rustix::fs::Advice::WillNeed);
    }

    /// Whether bytes `at..at + len` of the mapped file are all in the page cache (`mincore` on
    /// the mapping: it reports the file's cached pages whether or not this process maps them,
    /// for a file the process owns or may write, as the daemon's own files are; for another it
    /// reports only this process's pages, so the answer errs towards "not cached").
    pub(crate) fn cached_file_at(&self, at: usize, len: usize) -> bool {
        let map = &self.mapped.map;
        // The kernel's own page size: mincore writes a byte for each of its pages.
        let page = rustix::param::page_size();
        let from = at / page * page;
        let to = at.saturating_add(len).min(map.len());
        if to <= from {
            return true;
        }
        let mut pages = [0u8; 16];
        let n = (to - from).div_ceil(page);
        if n > pages.len() {
            return false;
        }
        // SAFETY: `from..to` lies in the live mapping `map` (page-aligned start, clamped end);
        // the kernel writes one byte per page of it, `n` ≤ 16 bytes, into `pages`.
        let rc = unsafe {
            libc::mincore(map.as_ptr().add(from) as *mut libc::c_void, to - from, pages.as_mut_ptr())
        };
        rc == 0 && pages[..n].iter().all(|p| p & 1 == 1)
    }

    /// Fills `out` with the bytes at file offset `at` of the mapped file (anywhere in it: a
    /// reader checking whole checksum chunks around the slice, `crate::integrity`).
    pub(crate) fn read_file_at(&self, at: usize, out: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(file) = self.mapped.file.as_ref() else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the mapping kept no file"));
        };
        file.file.read_exact_at(out, at as u64)
    }
}

/// Map an open, immutable file of `len` bytes read-only.
pub(crate) fn map(file: &File, len: u64) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the file is immutable by contract (cache files are only created
    // by rename and never written again; store objects passed here are
    // immutable objects), so the mapped bytes cannot change under us. An
    // unlink (eviction, GC) leaves the mapping valid.
    let map = unsafe { memmap2::Mmap::map(file)? };
    let file = KeptFile::keep(file, len)?;
    let m = Arc::new(Mapped { map, file });
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(m.map.as_ptr() as usize, (m.map.len(), Arc::downgrade(&m)));
    Ok(Bytes::from_owner(Mapping(m)))
}

/// crc32c of `data`, giving each stretch's pages back once read when `data`
/// lies in a mapping made here (a no-op otherwise): checking a 2.5 GB
/// segment file would otherwise have all of it resident at once.
pub(crate) fn crc32c_releasing(data: &[u8]) -> u32 {
    crate::format::segment::crc32c_settling(data, &|stretch| {
        release_resident(stretch);
    })
}

/// Drop the resident pages of `bytes` (whole pages inside it) from this
/// process, if it lies in a mapping made by [`map`]; true if it did.
pub(crate) fn release_resident(bytes: &[u8]) -> bool {
    let Some((mapped, at)) = containing(bytes.as_ptr() as usize, bytes.len()) else { return false };
    let map = &mapped.map;
    let page = page_size();
    let from = at.div_ceil(page) * page;
    let to = (at + bytes.len()) / page * page;
    if to <= from {
        return false;
    }
    // SAFETY: `map` is a read-only mapping of an immutable file (see `map`):
    // after MADV_DONTNEED the next access faults the same bytes back in from
    // the file, so every live reference into it keeps reading what it read.
    let r = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from) };
    if let Err(e) = &r {
        tracing::debug!(error = %e, "madvise(DONTNEED) on a read-only mapping failed");
    }
    r.is_ok()
}

/// Tell the kernel that `bytes`' mapping (if made by [`map`]) is read at
/// random from now on: a fault reads its page, not a readahead window. A
/// served segment is read at random (graph codes and links, a few rows'
/// vectors and their checked chunks); under a tight memory limit each
/// fault's readahead (up to hundreds of KiB for one 16 KiB chunk) evicted
/// what other queries were about to read, and a 300k-row namespace under a
/// 246 MiB cap spent its queries refaulting (BENCHMARKS.md, "Random reads
/// under a tight cap"). Called once a segment's whole-file verification
/// (sequential, readahead welcome) is done. True if it advised.
pub(crate) fn advise_random(bytes: &[u8]) -> bool {
    let Some((mapped, _)) = containing(bytes.as_ptr() as usize, bytes.len()) else { return false };
    let r = mapped.map.advise(memmap2::Advice::Random);
    if let Err(e) = &r {
        tracing::debug!(error = %e, "madvise(RANDOM) on a read-only mapping failed");
    }
    r.is_ok()
}

/// Run `check` over `bytes` (a large section about to be read whole, once) with the pages of
/// `bytes` read ahead, when they lie in a mapping made by [`map`]: the mapping is advised random
/// (see [`advise_random`]), and a sequential pass through it from disk read one 4 KiB page per
/// fault — a 128 MiB file took 4.3–5.9 s that way against 0.24–0.43 s with the range advised
/// normal for the pass (BENCHMARKS.md, "Section checks read ahead"). The range is advised random
/// again afterwards; bytes not in such a mapping are checked as they are.
pub(crate) fn read_ahead_while(bytes: &[u8], check: &mut dyn FnMut()) {
    let Some((mapped, at)) = containing(bytes.as_ptr() as usize, bytes.len()) else { return check() };
    let page = page_size();
    let from = at.div_ceil(page) * page;
    let to = (at + bytes.len()) / page * page;
    if to <= from {
        return check();
    }
    let advise = |advice| {
        if let Err(e) = mapped.map.advise_range(advice, from, to - from) {
            tracing::debug!(error = %e, "madvise on a section of a read-only mapping failed");
        }
    };
    advise(memmap2::Advice::Normal);
    check();
    advise(memmap2::Advice::Random);
}

fn page_size() -> usize {
    // Every Linux page size in use is a multiple of 4 KiB; rounding to 64 KiB
    // keeps the advised range whole pages on any of them.
    64 << 10
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The value of `field` (e.g. `Rss:`) in the /proc/self/smaps entry of the mapping (VMA)
    /// holding `addr`, split into words.
    fn smaps_field(addr: usize, field: &str) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let holds = |l: &str| {
            let range = l.split_whitespace().next().unwrap_or("");
            let (a, b) = range.split_once('-').unwrap_or(("", ""));
            let parse = |h: &str| usize::from_str_radix(h, 16).ok();
            matches!((parse(a), parse(b)), (Some(a), Some(b)) if a <= addr && addr < b)
        };
        let mut lines = smaps.lines().skip_while(|l| !holds(l));
        lines.next().expect("the mapping is listed");
        let line = lines.find(|l| l.starts_with(field)).expect("the field is listed");
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    }

    /// `data` written to a temporary file and mapped (the mapping keeps its own handle).
    fn mapped(data: &[u8]) -> Bytes {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        map(&f, data.len() as u64).unwrap()
    }

    /// The Rss (KiB) of the mapping starting at `addr`, from /proc/self/smaps.
    fn mapping_rss_kib(addr: usize) -> u64 {
        smaps_field(addr, "Rss:")[0].parse().unwrap()
    }

    #[test]
    fn released_pages_leave_the_process_and_read_back_the_same() {
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let bytes = mapped(&data);
        let addr = bytes.as_ptr() as usize;
        assert_eq!(crc32c::crc32c(&bytes), crc32c::crc32c(&data)); // touches every page
        assert!(mapping_rss_kib(addr) >= 8 << 10, "every page resident after a full read");
        assert!(release_resident(&bytes));
        assert!(mapping_rss_kib(addr) < 256, "released: {} KiB resident", mapping_rss_kib(addr));
        assert_eq!(crc32c::crc32c(&bytes), crc32c::crc32c(&data), "the same bytes after the release");
        // A slice of the mapping is found too; heap bytes are never advised.
        assert!(release_resident(&bytes[100_000..4_000_000]));
        assert!(!release_resident(&data));
        drop(bytes);
        assert!(LIVE.lock().unwrap().get(&addr).is_none(), "unregistered with its last owner");
    }

    /// Checking a mapping stretch by stretch gives the same crc32c as one pass
    /// and leaves at most the last stretch resident.
    #[test]
    fn a_releasing_checksum_leaves_no_more_than_a_stretch_resident() {
        let stretch = crate::format::segment::VERIFY_STRETCH;
        let data: Vec<u8> =
            (0..(3 * stretch + 12_345) as u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
        let bytes = mapped(&data);
        let addr = bytes.as_ptr() as usize;
        assert_eq!(crc32c_releasing(&bytes), crc32c::crc32c(&data));
        let kib = mapping_rss_kib(addr);
        assert!(kib < (stretch >> 10) as u64, "{kib} KiB resident after checking {} MiB", data.len() >> 20);
        assert_eq!(crc32c_releasing(&data), crc32c::crc32c(&data), "heap bytes: the same sum");
    }

    /// Rows read through a [`FileRange`] equal the mapped bytes and leave the
    /// mapping unmapped, where reading them through the mapping maps far more
    /// than the rows (fault-around); small mappings and heap bytes have none.
    #[test]
    fn a_file_range_reads_the_mapped_bytes_without_mapping_them() {
        // Long enough that rows 997 apart span many large folios.
        let len = (READABLE_MIN_BYTES as usize).max(64 << 20);
        let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        // Its own file: the small mapping below is a prefix of the same file.
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&data).unwrap();
        let bytes = map(&f, len as u64).unwrap();
        let addr = bytes.as_ptr() as usize;
        let (from, to) = (4096 + 100, len - 4096);
        let range = FileRange::of(&bytes[from..to]).expect("a large mapping keeps its file");
        let mut row = vec![0u8; 1536];
        let mut at = 0;
        while at + row.len() <= to - from {
            range.read(at, &mut row).unwrap();
            assert_eq!(row, data[from + at..from + at + row.len()]);
            at += 997 * 1536;
        }
        assert!(mapping_rss_kib(addr) < 64, "read, not mapped: {} KiB", mapping_rss_kib(addr));
        assert!(range.read(to - from - 10, &mut row).is_err(), "no read past the range");
        // The same rows through the mapping map much more than they are.
        let mut sum = 0u64;
        let mut at = from;
        while at + 1536 <= to {
            sum += bytes[at..at + 1536].iter().map(|b| u64::from(*b)).sum::<u64>();
            at += 997 * 1536;
        }
        let rows_kib = (to - from) / (997 * 1536) * 1536 / 1024;
        assert!(mapping_rss_kib(addr) > rows_kib as u64, "{sum}: fault-around maps more than the rows");

        let small = map(&f, READABLE_MIN_BYTES >> 1).unwrap();
        assert!(FileRange::of(&small[..]).is_none(), "a small mapping keeps no descriptor");
        assert!(FileRange::of(&data[..]).is_none(), "heap bytes are not a file");
    }

    /// The VmFlags of the mapping (VMA) holding `addr`, from /proc/self/smaps.
    fn vm_flags(addr: usize) -> Vec<String> {
        smaps_field(addr, "VmFlags:")
    }

    /// A section checked through [`read_ahead_while`] is read with readahead (its pages not
    /// advised random) during the check, and advised random again after it, like the rest of the
    /// mapping throughout; heap bytes are checked as they are. The check runs once either way.
    #[test]
    fn a_section_is_read_ahead_only_while_it_is_checked() {
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
        let bytes = mapped(&data);
        assert!(advise_random(&bytes));
        let (start, inside) = (bytes.as_ptr() as usize, bytes[2 << 20..].as_ptr() as usize);
        let random = |addr| vm_flags(addr).iter().any(|f| f == "rr");
        assert!(random(start) && random(inside));
        let mut runs = 0;
        read_ahead_while(&bytes[100_000..3_500_000], &mut || {
            runs += 1;
            assert!(!random(inside), "the section is read ahead while checked");
            assert!(random(start), "the rest of the mapping stays random");
            assert_eq!(crc32c::crc32c(&bytes[100_000..3_500_000]), crc32c::crc32c(&data[100_000..3_500_000]));
        });
        assert_eq!(runs, 1);
        assert!(random(start) && random(inside), "advised random again");
        read_ahead_while(&data[100_000..3_500_000], &mut || runs += 1);
        assert_eq!(runs, 2, "heap bytes: checked once, not advised");
    }

    /// Past the cap a mapping keeps no file (read through the mapping); a
    /// dropped handle gives its place back.
    #[test]
    fn kept_files_stay_within_their_cap() {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let f = tempfile::tempfile().unwrap();
        let a = KeptFile::keep_counted(&f, &COUNT, 2).unwrap();
        let b = KeptFile::keep_counted(&f, &COUNT, 2).unwrap();
        assert!(a.is_some() && b.is_some());
        assert!(KeptFile::keep_counted(&f, &COUNT, 2).unwrap().is_none(), "over the cap");
        assert_eq!(COUNT.load(Ordering::Acquire), 2);
        drop(a);
        assert_eq!(COUNT.load(Ordering::Acquire), 1);
        assert!(KeptFile::keep_counted(&f, &COUNT, 2).unwrap().is_some(), "a place given back");
        assert_eq!(COUNT.load(Ordering::Acquire), 1, "and given back again when dropped");
    }
}
