//! Object cache tiers: the disk tier ([`ObjectCache`]) and the
//! least-recently-used order ([`lru::Recency`]) that it and the engine's
//! memory tier both evict by.
//!
//! The disk tier serves immutable objects (segments, deletion sets, WAL
//! batches; never `CURRENT`) by key and expected [`ObjectRef`] (length and
//! crc32c). Layout and recovery are specified in `storage-format.md`,
//! "Local disk cache".
//!
//! Invariants:
//! - **Only verified bytes are served.** Bytes are handed out only after their
//!   length and crc32c matched `expect` in this process: a downloaded object
//!   before it is written to the cache; a cache file found at start-up on its
//!   first `get` (lazily); a local-store file on its first `get` (a segment
//!   fetched with `get_segment`: its length, and the crc32c its range checksums
//!   combine to — its chunks are checked on their first read by the segment
//!   opened lazily, `format/segment/lazy.rs`). A file that
//!   fails is deleted and re-fetched (cache) or reported as
//!   [`CacheError::Corrupt`] (local store, or a download that does not match);
//!   bad bytes are never returned.
//! - **Immutable files, atomic installs.** A cache file is written to
//!   `tmp/`, fsynced, then renamed into `objects/` under the index lock, and
//!   never modified; only verified immutable files are memory-mapped. A crash
//!   leaves at most a temp file, deleted by [`ObjectCache::open`].
//! - **Budget.** After every install, resident bytes <= budget, unless the
//!   excess is pinned: files under a pinned prefix count against the budget
//!   but are never evicted. Unpinned files are evicted least recently used
//!   first (last `get` in this process; at start-up, file mtimes, which a
//!   first `get` per process refreshes). `unpin_prefix` does not evict by
//!   itself; the next install does.
//! - **Single flight.** Concurrent `get`s of a cold key make one store GET (a
//!   per-key gate): the first downloads, the others wait and are then served
//!   from the cache. `invalidate` detaches an in-flight download: its bytes
//!   go to the callers that were waiting but are not installed.
//! - **Local-directory store**: `get` maps the store's own file in place (no
//!   copy into the cache directory), after verifying it once per process.
//! - Every mapping is made by `mapping::map`, the only code that may give a
//!   mapping's resident pages back (`release_resident`, after a segment was
//!   verified whole at load, or a WAL batch once decoded).
//! - **Written objects are kept**: the engine hands the cache the WAL batches
//!   and segments it has just written (`keep_written`), so the next read —
//!   after a restart, or the load that follows a compaction — is a hit, not a
//!   download; the bytes are verified against their reference first.
//! - The index mutex is never held across an `.await`; file I/O runs in
//!   `spawn_blocking`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::format::manifest::ObjectRef;
use crate::store::{Store, StoreError};

mod disk;
pub mod lru;
mod mapping;
pub(crate) use mapping::map as map_file;
pub(crate) use mapping::{
    advise_random, crc32c_releasing, read_ahead_while, release_resident, FileRange, READABLE_MIN_BYTES,
};
pub use mapping::{limit_kept_files, KEPT_FILES_MAX};

use disk::Verified;
use lru::Recency;

/// Errors of the object cache. Cheap to clone (sources are shared).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The object does not exist in the store.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The bytes do not match the expected reference (length or crc32c):
    /// the object in the store is corrupt or the reference is wrong.
    #[error(
        "object {key} does not match its reference: expected {expected_bytes} bytes with crc32c \
         {expected_crc32c:#010x}, found {actual_bytes} bytes{}",
        actual_crc32c.map(|c| format!(" with crc32c {c:#010x}")).unwrap_or_default()
    )]
    Corrupt {
        /// The key.
        key: String,
        /// Expected length.
        expected_bytes: u64,
        /// Expected crc32c.
        expected_crc32c: u32,
        /// Actual length.
        actual_bytes: u64,
        /// Actual crc32c (None when the length already differed).
        actual_crc32c: Option<u32>,
    },
    /// The key cannot be cached (empty, `.` or `..` component, too long).
    #[error("invalid object key {key:?} for the cache: {why}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        why: &'static str,
    },
    /// The object store failed (possibly transient).
    #[error("object store: {0}")]
    Store(Arc<StoreError>),
    /// A local file operation failed.
    #[error("object cache I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A background task failed (panicked or was cancelled).
    #[error("object cache task failed: {0}")]
    Task(String),
}

fn io_err(path: &Path, e: std::io::Error) -> CacheError {
    CacheError::Io { path: path.to_path_buf(), source: Arc::new(e) }
}

/// Counters and sizes of an [`ObjectCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get`s served without a store GET of their own (cache file or local store).
    pub hits: u64,
    /// `get`s that fetched the object from the store (= store GETs issued).
    pub misses: u64,
    /// Bytes fetched from the store.
    pub fetched_bytes: u64,
    /// Cache files evicted to honour the budget.
    pub evictions: u64,
    /// Bytes of the evicted files.
    pub evicted_bytes: u64,
    /// Files (cache or local store) that failed verification.
    pub verify_failures: u64,
    /// Bytes of the files in the cache directory.
    pub resident_bytes: u64,
    /// Number of files in the cache directory.
    pub resident_files: u64,
    /// Of `resident_bytes`, those under a pinned prefix.
    pub pinned_bytes: u64,
    /// The byte budget.
    pub budget_bytes: u64,
}

/// The outcome of [`ObjectCache::warm`].
#[derive(Debug, Default)]
pub struct WarmReport {
    /// Objects now resident (already or newly).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects that could not be warmed.
    pub failed: Vec<(String, CacheError)>,
}

/// An expected object: length and crc32c, and how a file's crc32c is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Want {
    len: u64,
    crc: u32,
    sum: Sum,
}

/// How the crc32c of a file on local disk is found (a download is always read whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sum {
    /// Read it whole.
    Whole,
    /// A segment: from its range checksums when it has them (`crc32c_from_range_checksums`, which
    /// reads only its tail), its chunks then checked on their first read by the segment opened
    /// lazily (`Segment::open_lazy`, `crate::integrity`); read whole when it has none.
    Segment,
}

impl Sum {
    /// The crc32c of `data` (a file's mapping; see [`Sum`]).
    pub(crate) fn of(self, data: &[u8]) -> u32 {
        match self {
            Sum::Segment => crate::format::segment::crc32c_from_range_checksums(data)
                .unwrap_or_else(|| crc32c_releasing(data)),
            Sum::Whole => crc32c_releasing(data),
        }
    }
}

struct Entry {
    size: u64,
    tick: u64,
    /// crc32c verified in this process (the expected one it matched).
    verified: Option<u32>,
    /// The verified mapping, once made.
    mapped: Option<Bytes>,
}

struct LocalEntry {
    size: u64,
    crc: u32,
    mapped: Option<Bytes>,
}

/// The typed mismatch between `want` and what was found for `key`.
fn mismatch(key: &str, want: Want, actual_bytes: u64, actual_crc32c: Option<u32>) -> CacheError {
    CacheError::Corrupt {
        key: key.to_owned(),
        expected_bytes: want.len,
        expected_crc32c: want.crc,
        actual_bytes,
        actual_crc32c,
    }
}

/// `data` matches `want`, or the typed mismatch.
fn check(key: &str, want: Want, data: &[u8]) -> Result<(), CacheError> {
    let actual_bytes = data.len() as u64;
    let actual_crc32c = (actual_bytes == want.len).then(|| crc32c_releasing(data));
    if actual_crc32c == Some(want.crc) {
        return Ok(());
    }
    Err(mismatch(key, want, actual_bytes, actual_crc32c))
}

/// Mappings of local-store files kept at once (the rest are re-mapped on
/// demand, without re-verification).
const LOCAL_MAPPINGS: usize = 16_384;

type Gate = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Unpinned entries by last use.
    recency: Recency<String>,
    resident: u64,
    pins: BTreeSet<String>,
    local: HashMap<String, LocalEntry>,
    local_mapped: usize,
    inflight: HashMap<String, Gate>,
    hits: u64,
    misses: u64,
    fetched_bytes: u64,
    evictions: u64,
    evicted_bytes: u64,
    verify_failures: u64,
}

impl State {
    fn pinned(&self, key: &str) -> bool {
        self.pins.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn next_tick(&mut self) -> u64 {
        self.recency.next_tick()
    }

    /// A verified hit, marked most recently used.
    fn ready(&mut self, key: &str, want: Want) -> Option<Bytes> {
        if let Some(l) = self.local.get(key) {
            if l.size == want.len && l.crc == want.crc {
                return l.mapped.clone();
            }
            return None;
        }
        let tick = self.next_tick();
        let pinned = self.pinned(key);
        let e = self.entries.get_mut(key)?;
        if e.size != want.len || e.verified != Some(want.crc) {
            return None;
        }
        let b = e.mapped.clone()?;
        let old = std::mem::replace(&mut e.tick, tick);
        self.recency.forget(old);
        if !pinned {
            self.recency.track(tick, key.to_owned());
        }
        Some(b)
    }

    fn remove_entry(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.recency.forget(e.tick);
        self.resident = self.resident.saturating_sub(e.size);
        Some(e)
    }

    fn insert_entry(&mut self, key: &str, e: Entry) {
        self.remove_entry(key);
        self.resident = self.resident.saturating_add(e.size);
        if !self.pinned(key) {
            self.recency.track(e.tick, key.to_owned());
        }
        self.entries.insert(key.to_owned(), e);
    }

    /// A file verified in this process under another reference: objects are
    /// immutable, so `want` is wrong. The verified file is kept, and no store
    /// GET is made.
    fn contradicts(&self, key: &str, want: Want) -> Option<CacheError> {
        let (size, crc) = match (self.local.get(key), self.entries.get(key)) {
            (Some(l), _) => (l.size, l.crc),
            (None, Some(Entry { size, verified: Some(crc), .. })) => (*size, *crc),
            _ => return None,
        };
        (size != want.len || crc != want.crc).then(|| mismatch(key, want, size, Some(crc)))
    }

    fn gate_is(&self, key: &str, gate: &Gate) -> bool {
        self.inflight.get(key).is_some_and(|g| Arc::ptr_eq(g, gate))
    }

    fn retire(&mut self, key: &str, gate: &Gate) {
        if self.gate_is(key, gate) && Arc::strong_count(gate) <= 2 {
            self.inflight.remove(key);
        }
    }

    fn rebuild_order(&mut self) {
        let evictable: Vec<(u64, String)> =
            self.entries.iter().filter(|(k, _)| !self.pinned(k)).map(|(k, e)| (e.tick, k.clone())).collect();
        self.recency.rebuild(evictable);
    }
}

struct Inner {
    objects: PathBuf,
    tmp: PathBuf,
    /// Changed at run time by a configuration reload.
    budget: AtomicU64,
    store: Store,
    local_root: Option<PathBuf>,
    state: Mutex<State>,
    tmp_seq: AtomicU64,
}

/// The disk cache tier. `Send + Sync`; share it as `Arc<ObjectCache>`.
pub struct ObjectCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache")
            .field("objects", &self.inner.objects)
            .field("budget", &self.inner.budget.load(Ordering::Relaxed))
            .field("store", &self.inner.store.description())
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| CacheError::Task(e.to_string()))
}

impl ObjectCache {
    /// Open (or create) the cache in `dir` with a budget of `budget_bytes`.
    /// Rebuilds the index from the files present (sizes; mtimes give the LRU
    /// order) and deletes leftover temp files. Blocking: call it at start-up
    /// (or from `spawn_blocking`). Nothing is evicted here (pins are not
    /// known yet): the engine should `pin_prefix` its pinned namespaces right
    /// after `open`; the first install enforces the budget.
    pub fn open(dir: &Path, budget_bytes: u64, store: Store) -> Result<Arc<Self>, CacheError> {
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        for d in [&objects, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }
        let removed = disk::clear_dir(&tmp).map_err(|e| io_err(&tmp, e))?;
        if removed > 0 {
            tracing::info!(removed, "object cache: removed temp files of interrupted downloads");
        }
        let mut found = disk::scan(&objects).map_err(|e| io_err(&objects, e))?;
        found.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.key.cmp(&b.key)));
        let mut st = State::default();
        for f in found {
            let tick = st.next_tick();
            st.insert_entry(&f.key, Entry { size: f.size, tick, verified: None, mapped: None });
        }
        let local_root = store.local_root().map(Path::to_path_buf);
        Ok(Arc::new(ObjectCache {
            inner: Arc::new(Inner {
                objects,
                tmp,
                budget: AtomicU64::new(budget_bytes),
                store,
                local_root,
                state: Mutex::new(st),
                tmp_seq: AtomicU64::new(0),
            }),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    /// The bytes of the immutable object `key`, which must match `expect`
    /// (length and crc32c). See the module invariants.
    pub async fn get(&self, key: &str, expect: &ObjectRef) -> Result<Bytes, CacheError> {
        self.get_summed(key, expect, Sum::Whole).await
    }

    /// [`ObjectCache::get`] for a segment file its caller opens lazily (`Segment::open_lazy`): a
    /// file on local disk is matched against `expect` by the crc32c its range checksums combine
    /// to ([`Sum::Segment`]), not read whole; its chunks are checked on their first read.
    pub async fn get_segment(&self, key: &str, expect: &ObjectRef) -> Result<Bytes, CacheError> {
        self.get_summed(key, expect, Sum::Segment).await
    }

    async fn get_summed(&self, key: &str, expect: &ObjectRef, sum: Sum) -> Result<Bytes, CacheError> {
        let want = Want { len: expect.bytes, crc: expect.crc32c, sum };
        let gate = {
            let mut st = self.state();
            if let Some(b) = st.ready(key, want) {
                st.hits += 1;
                return Ok(b);
            }
            Arc::clone(st.inflight.entry(key.to_owned()).or_default())
        };
        let _turn = gate.lock().await;
        {
            let mut st = self.state();
            if let Some(b) = st.ready(key, want) {
                st.hits += 1;
                st.retire(key, &gate);
                return Ok(b);
            }
        }
        let r = self.inner.load(key, want, &gate).await;
        self.state().retire(key, &gate);
        r
    }

    /// Warm the cache with `refs` (a few at a time); errors are collected,
    /// not fatal.
    pub async fn warm(&self, refs: impl IntoIterator<Item = ObjectRef>) -> WarmReport {
        use futures::StreamExt;
        let mut stream = futures::stream::iter(refs)
            .map(|r| async move {
                let res = self.get(&r.key, &r).await;
                (r, res)
            })
            .buffer_unordered(4);
        let mut report = WarmReport::default();
        while let Some((r, res)) = stream.next().await {
            match res {
                Ok(b) => {
                    report.objects += 1;
                    report.bytes += b.len() as u64;
                }
                Err(e) => report.failed.push((r.key, e)),
            }
        }
        report
    }

    /// Never evict files whose key starts with `prefix` (a namespace prefix,
    /// `org/project/namespaces/ns/`, with its trailing slash).
    pub fn pin_prefix(&self, prefix: &str) {
        let mut st = self.state();
        st.pins.insert(prefix.to_owned());
        st.rebuild_order();
    }

    /// Undo [`ObjectCache::pin_prefix`]; the files become evictable (the next
    /// install enforces the budget).
    pub fn unpin_prefix(&self, prefix: &str) {
        let mut st = self.state();
        st.pins.remove(prefix);
        st.rebuild_order();
    }

    /// The pinned prefixes.
    pub fn pinned_prefixes(&self) -> Vec<String> {
        self.state().pins.iter().cloned().collect()
    }

    /// Forget `key` (GC deleted the object): its cache file is deleted (in the
    /// background) and an in-flight download of it is not installed.
    pub fn invalidate(&self, key: &str) {
        let had_file = {
            let mut st = self.state();
            if st.local.remove(key).is_some_and(|l| l.mapped.is_some()) {
                st.local_mapped = st.local_mapped.saturating_sub(1);
            }
            st.inflight.remove(key);
            st.remove_entry(key).is_some()
        };
        if !had_file {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let key = key.to_owned();
        let unlink = move || inner.unlink_unless_reinstalled(&key);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(unlink)),
            Err(_) => unlink(),
        }
    }

    /// Bytes resident under `prefix`: cache files, plus local-store files
    /// verified in this process.
    pub fn resident_bytes(&self, prefix: &str) -> u64 {
        let st = self.state();
        let cached: u64 = st.entries.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, e)| e.size).sum();
        let local: u64 = st.local.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, e)| e.size).sum();
        cached + local
    }

    /// Whether `key` has a file in the cache directory.
    pub fn is_cached(&self, key: &str) -> bool {
        self.state().entries.contains_key(key)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let st = self.state();
        let pinned_bytes = st.entries.iter().filter(|(k, _)| st.pinned(k)).map(|(_, e)| e.size).sum();
        CacheStats {
            hits: st.hits,
            misses: st.misses,
            fetched_bytes: st.fetched_bytes,
            evictions: st.evictions,
            evicted_bytes: st.evicted_bytes,
            verify_failures: st.verify_failures,
            resident_bytes: st.resident,
            resident_files: st.entries.len() as u64,
            pinned_bytes,
            budget_bytes: self.inner.budget.load(Ordering::Relaxed),
        }
    }

    /// Keep a copy of an object this process has just written to the store
    /// (a WAL batch, a compacted segment), so that its next read is a hit
    /// instead of a download. `r` names the bytes' length and crc32c as the
    /// writer computed them; they are checked again before anything is
    /// installed. A local-directory store needs no copy (its files are mapped
    /// in place). Failing to cache is logged, never an error: the store has
    /// the object.
    pub async fn keep_written(&self, r: &ObjectRef, data: Bytes) {
        if self.inner.local_root.is_some() {
            return;
        }
        let Ok(rel) = disk::key_to_rel(&r.key) else { return };
        let want = Want { len: r.bytes, crc: r.crc32c, sum: Sum::Whole };
        let gate = {
            let mut st = self.state();
            if st.entries.contains_key(&r.key) {
                return;
            }
            Arc::clone(st.inflight.entry(r.key.clone()).or_default())
        };
        let _turn = gate.lock().await;
        let (inner, key, g) = (Arc::clone(&self.inner), r.key.clone(), Arc::clone(&gate));
        let installed = blocking(move || match check(&key, want, &data) {
            Ok(()) => {
                let path = inner.objects.join(rel);
                inner.install(&key, &path, data, want, &g);
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "object cache: written bytes do not match their reference")
            }
        })
        .await;
        if let Err(e) = installed {
            tracing::warn!(key = r.key, error = %e, "object cache: cannot keep a written object");
        }
        self.state().retire(&r.key, &gate);
    }

    /// Change the byte budget (a configuration reload); a smaller budget
    /// evicts at once, down to the new budget (pinned files stay).
    pub fn set_budget(&self, budget_bytes: u64) {
        self.inner.budget.store(budget_bytes, Ordering::Relaxed);
        let mut victims = Vec::new();
        let mut st = self.inner.state();
        self.inner.evict(&mut st, &mut victims);
        drop(st);
        if !victims.is_empty() {
            tracing::info!(evicted = victims.len(), budget_bytes, "object cache: budget lowered");
        }
    }

    /// The path a cached `key` is stored at (for tests and diagnostics).
    pub fn cache_path(&self, key: &str) -> Option<PathBuf> {
        disk::key_to_rel(key).ok().map(|rel| self.inner.objects.join(rel))
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called with the key's gate held and no verified hit available.
    async fn load(self: &Arc<Self>, key: &str, want: Want, gate: &Gate) -> Result<Bytes, CacheError> {
        if let Some(err) = self.state().contradicts(key, want) {
            return Err(err);
        }
        if let Some(root) = &self.local_root {
            if let Some(path) = crate::store::local_path(root, key) {
                return self.load_local(key, path, want).await;
            }
            // Not a plain path: read through the store, verify, keep nothing.
            let data = self.fetch(key, want).await?;
            return Ok(data);
        }
        let rel = disk::key_to_rel(key).map_err(|why| CacheError::InvalidKey { key: key.to_owned(), why })?;
        let path = self.objects.join(&rel);
        if self.state().entries.contains_key(key) {
            let p = path.clone();
            let v = blocking(move || disk::map_verified(&p, want, false, true))
                .await?
                .map_err(|e| io_err(&path, e));
            match v {
                Ok(Verified::Ok(bytes)) => {
                    let mut st = self.state();
                    st.hits += 1;
                    let tick = st.next_tick();
                    if st.gate_is(key, gate) {
                        if let Some(size) = st.entries.get(key).map(|e| e.size) {
                            let e =
                                Entry { size, tick, verified: Some(want.crc), mapped: Some(bytes.clone()) };
                            st.insert_entry(key, e);
                        }
                    }
                    return Ok(bytes);
                }
                other => {
                    match &other {
                        Ok(Verified::Mismatch(len, crc)) => tracing::warn!(
                            key,
                            len,
                            ?crc,
                            want_len = want.len,
                            want_crc = want.crc,
                            "object cache: a cached file failed verification; deleting and re-fetching"
                        ),
                        Err(e) => {
                            tracing::warn!(key, error = %e, "object cache: cannot read a cached file; re-fetching")
                        }
                        _ => {}
                    }
                    let inner = Arc::clone(self);
                    let k = key.to_owned();
                    let bad = matches!(other, Ok(Verified::Mismatch(..)));
                    blocking(move || {
                        let mut st = inner.state();
                        if bad {
                            st.verify_failures += 1;
                        }
                        if st.remove_entry(&k).is_some() {
                            if let Err(e) = disk::remove_if_exists(&inner.objects.join(&rel)) {
                                tracing::warn!(key = k, error = %e, "object cache: cannot delete a bad file");
                            }
                        }
                    })
                    .await?;
                }
            }
        }
        let data = self.fetch(key, want).await?;
        let inner = Arc::clone(self);
        let (k, g) = (key.to_owned(), Arc::clone(gate));
        blocking(move || inner.install(&k, &path, data, want, &g)).await
    }

    /// One store GET, then (off the async threads) the length and crc32c
    /// check against `want`.
    async fn fetch(&self, key: &str, want: Want) -> Result<Bytes, CacheError> {
        let data = self.store.get(key).await.map_err(|e| match e {
            StoreError::NotFound(k) => CacheError::NotFound(k),
            other => CacheError::Store(Arc::new(other)),
        })?;
        {
            let mut st = self.state();
            st.misses += 1;
            st.fetched_bytes += data.len() as u64;
        }
        let k = key.to_owned();
        blocking(move || check(&k, want, &data).map(|()| data)).await?
    }

    /// Write verified `data` to a temp file, fsync, rename into place, map it,
    /// index it and enforce the budget. A failure to cache is logged and the
    /// verified in-memory bytes are returned instead.
    fn install(&self, key: &str, path: &Path, data: Bytes, want: Want, gate: &Gate) -> Bytes {
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{}-{seq}.part", std::process::id()));
        let file = match disk::write_temp(&tmp, &data) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(key, error = %e, "object cache: cannot write a temp file; serving from memory");
                return data;
            }
        };
        let parent = path.parent().map(Path::to_path_buf);
        let mut victims = Vec::new();
        let served = {
            let mut st = self.state();
            if !st.gate_is(key, gate) {
                // Invalidated while downloading: serve, do not install.
                drop(st);
                let _ = disk::remove_if_exists(&tmp);
                return data;
            }
            let placed = parent
                .as_deref()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(&tmp, path));
            if let Err(e) = placed {
                drop(st);
                tracing::warn!(key, error = %e, "object cache: cannot install a file; serving from memory");
                let _ = disk::remove_if_exists(&tmp);
                return data;
            }
            let served = match disk::map(&file, want.len) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(key, error = %e, "object cache: cannot map a new file; serving from memory");
                    data
                }
            };
            let tick = st.next_tick();
            st.insert_entry(
                key,
                Entry { size: want.len, tick, verified: Some(want.crc), mapped: Some(served.clone()) },
            );
            self.evict(&mut st, &mut victims);
            served
        };
        if let Some(p) = parent {
            disk::sync_dir(&p);
        }
        for k in victims {
            tracing::debug!(key = k, "object cache: evicted");
        }
        served
    }

    /// Evict unpinned entries, least recently used first, until the budget
    /// holds; files are unlinked under the index lock (so a concurrent install
    /// of the same key cannot be undone by a stale unlink).
    fn evict(&self, st: &mut State, victims: &mut Vec<String>) {
        while st.resident > self.budget.load(Ordering::Relaxed) {
            let Some(k) = st.recency.pop_oldest() else { break };
            let Some(e) = st.remove_entry(&k) else { continue };
            st.evictions += 1;
            st.evicted_bytes += e.size;
            if let Ok(rel) = disk::key_to_rel(&k) {
                if let Err(err) = disk::remove_if_exists(&self.objects.join(rel)) {
                    tracing::warn!(key = k, error = %err, "object cache: cannot delete an evicted file");
                }
            }
            victims.push(k);
        }
    }

    fn unlink_unless_reinstalled(&self, key: &str) {
        let st = self.state();
        if st.entries.contains_key(key) {
            return;
        }
        if let Ok(rel) = disk::key_to_rel(key) {
            if let Err(e) = disk::remove_if_exists(&self.objects.join(rel)) {
                tracing::warn!(key, error = %e, "object cache: cannot delete an invalidated file");
            }
        }
        drop(st);
    }

    /// The local-directory store: map the store's file in place, verifying it
    /// once per process.
    async fn load_local(&self, key: &str, path: PathBuf, want: Want) -> Result<Bytes, CacheError> {
        let known_good = self.state().local.get(key).is_some_and(|l| l.size == want.len && l.crc == want.crc);
        let p = path.clone();
        let v = blocking(move || disk::map_verified(&p, want, known_good, false))
            .await?
            .map_err(|e| io_err(&path, e))?;
        let mut st = self.state();
        match v {
            Verified::Ok(bytes) => {
                st.hits += 1;
                if st.local_mapped >= LOCAL_MAPPINGS {
                    for l in st.local.values_mut() {
                        l.mapped = None;
                    }
                    st.local_mapped = 0;
                }
                let had = st.local.insert(
                    key.to_owned(),
                    LocalEntry { size: want.len, crc: want.crc, mapped: Some(bytes.clone()) },
                );
                if had.is_none_or(|l| l.mapped.is_none()) {
                    st.local_mapped += 1;
                }
                Ok(bytes)
            }
            Verified::Missing => Err(CacheError::NotFound(key.to_owned())),
            Verified::Mismatch(actual_bytes, actual_crc32c) => {
                st.verify_failures += 1;
                if st.local.remove(key).is_some_and(|l| l.mapped.is_some()) {
                    st.local_mapped = st.local_mapped.saturating_sub(1);
                }
                Err(mismatch(key, want, actual_bytes, actual_crc32c))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ObjectCache>();
        assert_send_sync::<Arc<ObjectCache>>();
        assert_send_sync::<CacheError>();
    }

    #[tokio::test]
    async fn a_reference_contradicting_a_verified_file_fails_without_a_fetch_or_a_delete() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::memory();
        let data = Bytes::from_static(b"immutable object");
        store.put("o/p/x", data.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        let good = ObjectRef { key: "o/p/x".into(), bytes: data.len() as u64, crc32c: crc32c::crc32c(&data) };
        let cache = ObjectCache::open(dir.path(), 1 << 20, store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.get("o/p/x", &good).await.ok(), Some(data.clone()));
        let bad = ObjectRef { crc32c: good.crc32c ^ 0x8000_0000, ..good.clone() };
        assert!(matches!(
            cache.get("o/p/x", &bad).await,
            Err(CacheError::Corrupt { actual_crc32c: Some(c), .. }) if c == good.crc32c
        ));
        let s = cache.stats();
        assert_eq!((s.misses, s.verify_failures, s.resident_files), (1, 0, 1));
        assert_eq!(cache.get("o/p/x", &good).await.ok(), Some(data));
    }

    /// A cached segment found at start-up is matched by `get_segment` through its range
    /// checksums (a changed covered byte is left to the first read of its chunk), by `get` whole.
    #[tokio::test]
    async fn a_cached_segment_is_matched_through_its_range_checksums() {
        use crate::format::segment::SegmentBuilder;
        use crate::model::{DocId, Document, IdType};
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut b = SegmentBuilder::new(IdType::U64, Some(8)).with_range_checksums();
        for i in 0..3000u64 {
            let doc = Document {
                id: DocId::U64(i),
                vector: Some(vec![i as f32; 8].into()),
                attrs: crate::model::AttrMap::new(),
            };
            b.push(&doc).unwrap_or_else(|e| panic!("{e}"));
        }
        let data = Bytes::from(b.finish().unwrap_or_else(|e| panic!("{e}")));
        let (key, store) = ("o/p/s/data.seg", Store::memory());
        store.put(key, data.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        let good = ObjectRef { key: key.into(), bytes: data.len() as u64, crc32c: crc32c::crc32c(&data) };
        let open = || ObjectCache::open(dir.path(), 1 << 30, store.clone()).unwrap_or_else(|e| panic!("{e}"));
        let first = open();
        assert!(first.get(key, &good).await.is_ok(), "downloaded, checked whole, installed");
        let path = first.cache_path(key).unwrap_or_else(|| panic!("a path"));
        drop(first);
        let mut changed = data.to_vec();
        changed[40_000] ^= 1;
        std::fs::write(&path, &changed).unwrap_or_else(|e| panic!("{e}"));
        let lazy = open().get_segment(key, &good).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(lazy[..] == changed[..], "served: the chunk is checked on its first read");
        assert!(matches!(open().get(key, &good).await, Ok(b) if b == data), "read whole: re-fetched");
        // A reference the combined crc does not match is refused (the file is then fetched again).
        let bad = ObjectRef { crc32c: good.crc32c ^ 1, ..good.clone() };
        assert!(
            matches!(open().get_segment(key, &bad).await, Err(CacheError::Corrupt { .. })),
            "wrong reference"
        );
    }
}
