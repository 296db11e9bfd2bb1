//! The disk cache tier (`tidepool::cache::ObjectCache`) end to end.
//!
//! Invariants guarded:
//! - Resident bytes stay within the budget; unpinned files go least recently
//!   used first (also across a restart, from file mtimes); files under a
//!   pinned prefix are never evicted (they count against the budget).
//! - The cache survives a restart: files cached before are served after a
//!   reopen without a store GET; temp files of interrupted downloads are
//!   deleted at open.
//! - Only verified bytes are served: a bit-flipped cache file is deleted and
//!   re-fetched; a wrong expected length or crc32c is a typed
//!   `CacheError::Corrupt`, never bytes.
//! - The engine keeps what it writes: on a bucket-like store, WAL batches
//!   are read through the cache, a restart loads a namespace without
//!   downloading its WAL again, and the load after a compaction does not
//!   download the segment it just wrote.
//! - Single flight: 16 concurrent gets of a cold key make one store GET.
//! - With the local-directory store the store's own file is mapped in place
//!   (nothing is written to the cache directory), verified once.
//! - On a real S3-compatible server (moto over loopback HTTP), the second get
//!   of an object does not touch the bucket.
//!
//! The S3 server: `TIDEPOOL_TEST_S3_ENDPOINT`, or else moto started by
//! `scripts/s3-server.sh start` for this test binary (`tests/common/s3.rs`).

use crate::common;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use common::s3::{new_bucket, s3_store};
use futures::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result as OsResult,
};
use tidepool::cache::{CacheError, ObjectCache};
use tidepool::format::manifest::ObjectRef;
use tidepool::store::Store;

// ---------------------------------------------------------------------------------------------
// A counting object store: counts GETs (not HEADs) and can slow them down.

struct Counting {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicU64,
    delay_ms: AtomicU64,
    got: std::sync::Mutex<Vec<String>>,
}

impl Counting {
    fn wrap(inner: Arc<dyn ObjectStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            gets: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            got: Default::default(),
        })
    }
    fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
    /// Keys read (GET or ranged GET) since the last call containing `part`.
    fn take_gets_of(&self, part: &str) -> Vec<String> {
        std::mem::take(&mut *self.got.lock().unwrap()).into_iter().filter(|k| k.contains(part)).collect()
    }
}

impl fmt::Debug for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> OsResult<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        opts: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &ObjPath, options: GetOptions) -> OsResult<GetResult> {
        if !options.head {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.got.lock().unwrap().push(location.to_string());
            let ms = self.delay_ms.load(Ordering::SeqCst);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(&self, location: &ObjPath, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.got.lock().unwrap().push(location.to_string());
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<ObjPath>>,
    ) -> BoxStream<'static, OsResult<ObjPath>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&ObjPath>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&ObjPath>,
        offset: &ObjPath,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&ObjPath>) -> OsResult<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &ObjPath, to: &ObjPath, options: CopyOptions) -> OsResult<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(&self, from: &ObjPath, to: &ObjPath, options: RenameOptions) -> OsResult<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// An in-memory store behind a counter.
fn counted_memory() -> (Store, Arc<Counting>) {
    let c = Counting::wrap(Arc::new(object_store::memory::InMemory::new()));
    (Store::new(c.clone(), "counting memory://"), c)
}

fn content(key: &str, len: usize) -> Bytes {
    let seed = key.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    Bytes::from((0..len).map(|i| seed.wrapping_add(i as u8)).collect::<Vec<u8>>())
}

/// Put `len` bytes at `key` and return its reference.
async fn put(store: &Store, key: &str, len: usize) -> ObjectRef {
    let data = content(key, len);
    store.put(key, data.clone()).await.unwrap();
    ObjectRef { key: key.to_owned(), bytes: len as u64, crc32c: crc32c::crc32c(&data) }
}

async fn get(cache: &ObjectCache, r: &ObjectRef) -> Bytes {
    let b = cache.get(&r.key, r).await.unwrap_or_else(|e| panic!("get {}: {e}", r.key));
    assert_eq!(b, content(&r.key, r.bytes as usize), "{}", r.key);
    b
}

/// Every file under `dir` (relative paths, sorted).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs_ago)).unwrap();
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn eviction_honours_the_budget_in_lru_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let cache = ObjectCache::open(dir.path(), 300, store.clone()).unwrap();
    let r: Vec<ObjectRef> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(put(&store, &format!("o/p/namespaces/a/segments/s{i}/data.seg"), 100).await);
        }
        v
    };
    for x in &r[..3] {
        get(&cache, x).await;
    }
    assert_eq!(cache.stats().resident_bytes, 300);
    get(&cache, &r[0]).await; // r0 is now the most recent; r1 is the oldest
    let before = counter.gets();
    get(&cache, &r[3]).await;
    assert_eq!(counter.gets(), before + 1);
    assert!(!cache.is_cached(&r[1].key), "the least recently used file goes first");
    assert!(cache.is_cached(&r[0].key) && cache.is_cached(&r[2].key) && cache.is_cached(&r[3].key));
    assert!(!cache.cache_path(&r[1].key).unwrap().exists(), "the evicted file is deleted");
    let s = cache.stats();
    assert_eq!((s.resident_bytes, s.resident_files, s.evictions, s.evicted_bytes), (300, 3, 1, 100));

    // An object larger than the whole budget is served but does not stay.
    let big = put(&store, "o/p/namespaces/a/segments/big/data.seg", 1000).await;
    get(&cache, &big).await;
    assert!(cache.stats().resident_bytes <= 300);
    assert!(!cache.is_cached(&big.key));

    // The files on disk are exactly the index.
    let on_disk = files_under(&dir.path().join("objects"));
    let resident: u64 =
        on_disk.iter().map(|p| std::fs::metadata(dir.path().join("objects").join(p)).unwrap().len()).sum();
    assert_eq!(resident, cache.stats().resident_bytes);
    assert_eq!(on_disk.len() as u64, cache.stats().resident_files);
}

#[tokio::test]
async fn pinned_prefixes_are_never_evicted_and_pins_are_honoured_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let pinned = "o/p/namespaces/hot/";
    let mut hot = Vec::new();
    for i in 0..3 {
        hot.push(put(&store, &format!("{pinned}segments/s{i}/data.seg"), 100).await);
    }
    let mut cold = Vec::new();
    for i in 0..10 {
        cold.push(put(&store, &format!("o/p/namespaces/cold/segments/s{i}/data.seg"), 100).await);
    }
    {
        let cache = ObjectCache::open(dir.path(), 400, store.clone()).unwrap();
        cache.pin_prefix(pinned);
        let report = cache.warm(hot.clone()).await;
        assert_eq!((report.objects, report.bytes, report.failed.len()), (3, 300, 0));
        for c in &cold {
            get(&cache, c).await;
            let s = cache.stats();
            assert!(s.resident_bytes <= 400, "{s:?}");
            assert_eq!(s.pinned_bytes, 300);
        }
        assert!(hot.iter().all(|h| cache.is_cached(&h.key)), "pinned files survive a stream of cold reads");
        assert_eq!(cache.resident_bytes(pinned), 300);
        assert_eq!(cache.resident_bytes("o/p/namespaces/cold/"), 100);
        assert_eq!(cache.pinned_prefixes(), vec![pinned.to_owned()]);

        // Pins beyond the budget: the cache exceeds it by pinned bytes only.
        let extra = put(&store, &format!("{pinned}segments/s9/data.seg"), 200).await;
        get(&cache, &extra).await;
        let s = cache.stats();
        assert_eq!((s.resident_bytes, s.pinned_bytes), (500, 500), "{s:?}");
        cache.invalidate(&extra.key);
        wait_until(|| !cache.cache_path(&extra.key).unwrap().exists()).await;
    }

    // Restart: the engine re-applies its persisted pins right after open.
    let cache = ObjectCache::open(dir.path(), 400, store.clone()).unwrap();
    cache.pin_prefix(pinned);
    let before = counter.gets();
    for h in &hot {
        get(&cache, h).await;
    }
    assert_eq!(counter.gets(), before, "re-warming after a restart reads the cache, not the store");
    for c in cold.iter().rev() {
        get(&cache, c).await;
    }
    assert!(hot.iter().all(|h| cache.is_cached(&h.key)));
    assert!(cache.stats().resident_bytes <= 400);

    // Unpinned, they are ordinary LRU files again.
    cache.unpin_prefix(pinned);
    for c in &cold {
        get(&cache, c).await;
    }
    assert!(hot.iter().all(|h| !cache.is_cached(&h.key)), "{:?}", cache.stats());
    assert_eq!(cache.stats().pinned_bytes, 0);
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

#[tokio::test]
async fn a_restart_serves_cached_files_without_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let mut refs = Vec::new();
    for i in 0..4 {
        refs.push(put(&store, &format!("o/p/namespaces/n/segments/s{i}/data.seg"), 64 + i).await);
    }
    refs.push(put(&store, "o/p/namespaces/n/segments/odd key/%x.seg", 10).await);
    refs.push(put(&store, "o/p/namespaces/n/segments/empty/data.seg", 0).await);
    {
        let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
        for r in &refs {
            get(&cache, r).await;
        }
        assert_eq!(counter.gets(), refs.len() as u64);
        let s = cache.stats();
        assert_eq!((s.misses, s.hits), (refs.len() as u64, 0));
        for r in &refs {
            get(&cache, r).await;
        }
        assert_eq!(counter.gets(), refs.len() as u64, "second gets are hits");
        assert_eq!(cache.stats().hits, refs.len() as u64);
    }
    // A crash mid-download leaves a temp file; a stray file is not a key.
    std::fs::write(dir.path().join("tmp/12345-0.part"), b"half a download").unwrap();
    std::fs::write(dir.path().join("objects/o/p/bad%zz"), b"?").unwrap();

    let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "temp files are removed");
    assert!(!dir.path().join("objects/o/p/bad%zz").exists(), "stray files are removed");
    let s = cache.stats();
    let total: u64 = refs.iter().map(|r| r.bytes).sum();
    assert_eq!((s.resident_files, s.resident_bytes), (refs.len() as u64, total));
    let before = counter.gets();
    for r in &refs {
        get(&cache, r).await;
        get(&cache, r).await;
    }
    assert_eq!(counter.gets(), before, "served from the cache directory only");
    assert_eq!(cache.stats().misses, 0);
    assert_eq!(cache.resident_bytes("o/p/namespaces/n/"), total);
}

#[tokio::test]
async fn lru_order_survives_a_restart_through_file_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _counter) = counted_memory();
    let mut refs = Vec::new();
    for i in 0..4 {
        refs.push(put(&store, &format!("o/p/namespaces/n/wal/{i}.wal"), 100).await);
    }
    {
        let cache = ObjectCache::open(dir.path(), 400, store.clone()).unwrap();
        for r in &refs {
            get(&cache, r).await;
        }
        // Ages: r2 oldest, then r0, r3, r1 (newest).
        for (r, age) in refs.iter().zip([300, 100, 400, 200]) {
            set_mtime(&cache.cache_path(&r.key).unwrap(), age);
        }
    }
    let cache = ObjectCache::open(dir.path(), 400, store.clone()).unwrap();
    let extra = put(&store, "o/p/namespaces/n/wal/9.wal", 100).await;
    get(&cache, &extra).await;
    assert!(!cache.is_cached(&refs[2].key), "the file with the oldest mtime goes first");
    get(&cache, &put(&store, "o/p/namespaces/n/wal/10.wal", 100).await).await;
    assert!(!cache.is_cached(&refs[0].key));
    assert!(cache.is_cached(&refs[1].key) && cache.is_cached(&refs[3].key));
}

#[tokio::test]
async fn a_corrupt_cached_file_is_deleted_and_refetched_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let r = put(&store, "o/p/namespaces/n/segments/s1/data.seg", 4096).await;
    let short = put(&store, "o/p/namespaces/n/segments/s2/data.seg", 100).await;
    let path = {
        let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
        get(&cache, &r).await;
        get(&cache, &short).await;
        cache.cache_path(&r.key).unwrap()
    };
    // Bit flip in one file, truncation of the other (the cache is closed: files
    // of a running cache are immutable and mapped).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1234] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let short_path = dir.path().join("objects/o/p/namespaces/n/segments/s2/data.seg");
    std::fs::write(&short_path, &content(&short.key, 100)[..60]).unwrap();

    let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
    let before = counter.gets();
    get(&cache, &r).await; // asserts the content is the good one
    get(&cache, &short).await;
    assert_eq!(counter.gets(), before + 2, "both were re-fetched");
    assert_eq!(cache.stats().verify_failures, 2);
    assert_eq!(std::fs::read(&path).unwrap(), content(&r.key, 4096), "the file was replaced");
    get(&cache, &r).await;
    assert_eq!(counter.gets(), before + 2);
}

#[tokio::test]
async fn a_wrong_expectation_is_a_typed_error_not_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let r = put(&store, "o/p/namespaces/n/segments/s1/data.seg", 500).await;
    let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();

    let wrong_crc = ObjectRef { crc32c: r.crc32c ^ 1, ..r.clone() };
    match cache.get(&r.key, &wrong_crc).await {
        Err(CacheError::Corrupt { expected_crc32c, actual_crc32c, actual_bytes, .. }) => {
            assert_eq!((expected_crc32c, actual_crc32c, actual_bytes), (r.crc32c ^ 1, Some(r.crc32c), 500));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!cache.is_cached(&r.key), "unverified bytes are not cached");
    let wrong_len = ObjectRef { bytes: 499, ..r.clone() };
    assert!(matches!(
        cache.get(&r.key, &wrong_len).await,
        Err(CacheError::Corrupt { actual_bytes: 500, actual_crc32c: None, .. })
    ));

    // Once a file is verified, a contradicting reference fails at once: no
    // store GET, and the good file stays.
    get(&cache, &r).await;
    let gets = counter.gets();
    assert!(matches!(
        cache.get(&r.key, &wrong_crc).await,
        Err(CacheError::Corrupt { actual_crc32c: Some(c), .. }) if c == r.crc32c
    ));
    assert_eq!(counter.gets(), gets);
    assert!(cache.is_cached(&r.key));
    get(&cache, &r).await;
    assert_eq!(counter.gets(), gets);

    let missing = ObjectRef { key: "o/p/namespaces/n/segments/nope/data.seg".into(), bytes: 1, crc32c: 0 };
    assert!(
        matches!(cache.get(&missing.key, &missing).await, Err(CacheError::NotFound(k)) if k == missing.key)
    );
    assert!(matches!(cache.get("a/../b", &r).await, Err(CacheError::InvalidKey { .. })));
    assert!(matches!(cache.get("a//b", &r).await, Err(CacheError::InvalidKey { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gets_of_a_cold_key_make_one_store_get() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let r = put(&store, "o/p/namespaces/n/segments/s1/data.seg", 1 << 16).await;
    counter.delay_ms.store(100, Ordering::SeqCst);
    let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (cache, r, barrier) = (cache.clone(), r.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            cache.get(&r.key, &r).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), content(&r.key, 1 << 16));
    }
    assert_eq!(counter.gets(), 1, "one store GET for 16 concurrent readers");
    let s = cache.stats();
    assert_eq!((s.misses, s.hits, s.fetched_bytes), (1, 15, 1 << 16));
}

#[tokio::test]
async fn invalidate_removes_the_cached_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, counter) = counted_memory();
    let r = put(&store, "o/p/namespaces/n/segments/s1/data.seg", 100).await;
    let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
    let held = get(&cache, &r).await;
    let path = cache.cache_path(&r.key).unwrap();
    assert!(path.exists());
    cache.invalidate(&r.key);
    assert!(!cache.is_cached(&r.key));
    assert_eq!(cache.stats().resident_bytes, 0);
    wait_until(|| !path.exists()).await;
    assert_eq!(held, content(&r.key, 100), "bytes handed out earlier stay valid");
    store.delete(&r.key).await.unwrap();
    assert!(matches!(cache.get(&r.key, &r).await, Err(CacheError::NotFound(_))));
    assert_eq!(counter.gets(), 2);
}

#[tokio::test]
async fn a_local_store_is_mapped_in_place_and_verified_once() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(root.path()).unwrap();
    let r = put(&store, "o/p/namespaces/n/segments/s1/data.seg", 10_000).await;
    let cache = ObjectCache::open(dir.path(), 1 << 20, store.clone()).unwrap();
    let b = get(&cache, &r).await;
    let store_file = root.path().join(&r.key);
    assert!(files_under(dir.path()).is_empty(), "nothing is copied into the cache dir");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let canonical = store_file.canonicalize().unwrap();
    assert!(
        maps.lines().any(|l| l.ends_with(canonical.to_str().unwrap())),
        "the store's own file is memory-mapped"
    );
    let again = get(&cache, &r).await;
    assert_eq!(again.as_ptr(), b.as_ptr(), "a hit reuses the mapping");
    assert_eq!(cache.resident_bytes("o/p/namespaces/n/"), 10_000);
    assert_eq!(cache.stats().resident_bytes, 0, "no cache files");

    // A corrupt store file is a typed error (there is nothing to re-fetch).
    let bad = put(&store, "o/p/namespaces/n/segments/s2/data.seg", 1000).await;
    let bad_file = root.path().join(&bad.key);
    let mut bytes = std::fs::read(&bad_file).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&bad_file, &bytes).unwrap();
    assert!(matches!(cache.get(&bad.key, &bad).await, Err(CacheError::Corrupt { .. })));
    assert!(matches!(cache.get("o/p/namespaces/n/missing", &bad).await, Err(CacheError::NotFound(_))));
    assert_eq!(cache.stats().verify_failures, 1);
}

#[tokio::test]
async fn an_s3_bucket_is_served_through_the_disk_cache() {
    let bucket = new_bucket().await;
    let s3 = s3_store(&format!("s3://{bucket}/cluster"));
    let counter = Counting::wrap(s3.inner().clone());
    let store = Store::new(counter.clone(), s3.description());
    assert!(store.local_root().is_none());
    let r = put(&store, "o/p/namespaces/n/segments/s1/data.seg", 200_000).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = ObjectCache::open(dir.path(), 1 << 30, store.clone()).unwrap();
        get(&cache, &r).await;
        assert_eq!(counter.gets(), 1);
        get(&cache, &r).await;
        assert_eq!(counter.gets(), 1, "the second get does not touch the bucket");
        assert_eq!(cache.stats().fetched_bytes, 200_000);
        assert!(cache.cache_path(&r.key).unwrap().exists());
    }
    // Nor does a get after a restart.
    let cache = ObjectCache::open(dir.path(), 1 << 30, store.clone()).unwrap();
    get(&cache, &r).await;
    assert_eq!(counter.gets(), 1);
    // A deleted object, once invalidated, is gone from the cache too.
    store.delete(&r.key).await.unwrap();
    cache.invalidate(&r.key);
    assert!(matches!(cache.get(&r.key, &r).await, Err(CacheError::NotFound(_))));
    assert_eq!(counter.gets(), 2);
}

async fn engine_on(store: Store, dir: &Path) -> Arc<tidepool::engine::Engine> {
    let mut cfg = tidepool::engine::EngineConfig::new(dir.join("data"), store);
    cfg.cache_dir = dir.join("cache");
    cfg.compaction.auto = false;
    tidepool::engine::Engine::open(cfg).await.unwrap()
}

#[tokio::test]
async fn the_engine_keeps_its_written_wal_and_segments_in_the_disk_cache() {
    use tidepool::engine::WriteRequest;
    let (store, counter) = counted_memory();
    let dir = tempfile::tempdir().unwrap();
    let ns = tidepool::layout::NsPath::new("o", "p", "kept").unwrap();
    let e = engine_on(store.clone(), dir.path()).await;
    for i in 0..3u64 {
        let body = serde_json::json!({"upsert_rows": [{"id": i, "title": format!("doc {i}")}]});
        e.write(&ns, WriteRequest::from_json(&body).unwrap()).await.unwrap();
    }
    let cache = dir.path().join("cache");
    wait_until(|| files_under(&cache).iter().filter(|p| p.to_string_lossy().contains("/wal/")).count() == 3)
        .await;
    drop(e);

    // A restart (same store, same cache dir): loading replays the WAL from the cache.
    let e = engine_on(store.clone(), dir.path()).await;
    counter.take_gets_of("");
    assert_eq!(e.snapshot(&ns, false).await.unwrap().state.len(), 3);
    assert_eq!(counter.take_gets_of("/wal/"), Vec::<String>::new(), "no WAL download after a restart");

    // Compaction writes a segment and keeps it: the load that follows reads no segment from the store.
    let report = e.compact(&ns, true).await.unwrap();
    assert!(report.performed);
    drop(e);
    let e = engine_on(store, dir.path()).await;
    counter.take_gets_of("");
    assert_eq!(e.snapshot(&ns, false).await.unwrap().state.len(), 3);
    assert_eq!(counter.take_gets_of("/segments/"), Vec::<String>::new(), "the compacted segment was kept");
}
