//! The namespace engine: its lifecycle (open, background warming and GC,
//! shutdown through `Drop`), the per-namespace handles, and the modules that
//! hold each concept of the middle layer.
//!
//! Where things are:
//! - [`commit`]: the commit unit (`ManifestLog`), the only code that
//!   publishes a manifest generation; every mutation goes through it.
//! - [`write`]: the write path with group commit.
//! - [`load`]: finding the newest generation and materializing its state.
//! - [`memory`]: the memory tier (loaded states, cache temperature).
//! - [`budget`]: the node's memory budget and the write backpressure that
//!   keeps the process inside it.
//! - [`listing`]: namespace delete, listing, metadata and pinning.
//! - [`read`]: the one read entry point ([`Engine::read`] → [`ReadView`]):
//!   warm, cold, time-travel or last-known reads, and query evaluation on the
//!   bounded [`query_pool`].
//! - `observe`: what the engine reports to the metrics (scrape-time
//!   gauges, timed compactions).
//! - `gc`: the garbage collector (periodic, and early when compactions
//!   drop more than the retention's byte budget).
//! - `compact`, `branch`, `snapshot`, `repair`, `export`, `cold`: the
//!   operations named so, each committing through [`commit`].
//!
//! Invariants:
//! - One [`NsHandle`] per namespace per engine: its commit lock serialises
//!   this process's commits to the namespace, its load lock its reloads.
//! - The cached [`Snapshot`] of a handle never moves backwards (a slow reload
//!   does not replace a newer commit) and is cleared whenever a commit's
//!   outcome is unknown.
//! - `<data dir>/scratch` ([`Engine::scratch_dir`]) holds only files of
//!   requests in progress (restore uploads, compaction scratch segments) and
//!   the unlinked chunk files overlay vectors are spilled to
//!   (`crate::spill`); it is emptied at open.

pub mod adopt;
pub mod apply;
pub mod branch;
pub mod budget;
pub mod cold;
pub(crate) mod commit;
pub mod compact;
mod dense;
pub mod embed;
mod error;
pub mod export;
mod gc;
pub mod ids;
mod indexing;
mod indexing_multi;
pub mod labels;
mod listing;
mod load;
mod memory;
mod merge;
mod model_query;
mod multi;
mod observe;
mod prepare;
mod query_error;
pub mod query_pool;
pub mod read;
pub mod repair;
pub mod request;
pub mod snapshot;
mod sync_port;
mod tunables;
pub mod verify;
mod write;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex, RwLock as StdRwLock, Weak};

use tokio::sync::Mutex;

pub(crate) use self::adopt::RemoteLog;
pub use self::apply::AffectedIds;
use self::commit::ManifestLog;
pub use self::compact::{CompactionConfig, CompactionReport};
pub use self::embed::{EmbedUsage, ModelRegistry};
pub use self::error::{EngineError, ErrorKind};
pub use self::indexing::ColdIndex;
pub use self::listing::{NamespaceMetadata, NamespacePage};
pub use self::load::Snapshot;
pub use self::query_pool::QueryPool;
pub use self::read::{Consistency, QueryAnswer, ReadOptions, ReadView, Temperature};
pub use self::request::WriteRequest;
pub use self::tunables::Tunables;
use self::write::Pending;
pub use self::write::WriteResponse;
use crate::cache::ObjectCache;
use crate::clock::{Clock, IdGen};
use crate::layout::NsPath;
use crate::meta::{DataDirLock, Meta, MetaError, MetaOpener};
use crate::metrics::Metrics;
pub use crate::state::{NsState, SegmentReader};
use crate::store::health::NotReady;
use crate::store::space::SpaceProbe;
use crate::store::Store;

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The data dir (lock, `meta.redb`, default local store).
    pub data_dir: PathBuf,
    /// The object store.
    pub store: Store,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Id source.
    pub ids: Arc<dyn IdGen>,
    /// Compaction thresholds and backpressure.
    pub compaction: CompactionConfig,
    /// The local disk cache's directory (default `<data_dir>/cache`).
    pub cache_dir: PathBuf,
    /// Byte budget of the local disk cache for objects of
    /// a remote store; a local-directory store is read in place.
    pub cache_budget_bytes: u64,
    /// Memory tier: most namespace states kept loaded.
    pub max_loaded_namespaces: usize,
    /// Memory tier: estimated bytes of loaded states kept (pinned exempt).
    pub memory_budget_bytes: u64,
    /// The node's memory budget (`engine/budget.rs`): writes are refused
    /// (429) past its write threshold. None: no budget, nothing measured.
    pub node_budget_bytes: Option<u64>,
    /// Retention of superseded generations, in ms. 0: objects a commit drops
    /// are deleted as soon as their refcount reaches zero (older generations
    /// become unreadable). > 0: they stay until the GC sweep finds that no
    /// retained generation references them, so time travel reaches back this
    /// far; old manifests are collected after it.
    pub retention_ms: u64,
    /// A byte budget on top of the retention time: the GC also collects the
    /// oldest superseded generations while the objects only they reference
    /// weigh more than this fraction of the newest generation's (None: time
    /// alone; the daemon's default is 0.25, `--retention-max-ratio`), and a
    /// compaction whose dropped objects exceed it runs the GC for the project
    /// without waiting for the interval.
    pub retention_max_ratio: Option<f64>,
    /// The byte budget is never below this (default
    /// [`DEFAULT_RETENTION_FLOOR_BYTES`]): small namespaces keep the whole
    /// retention window.
    pub retention_floor_bytes: u64,
    /// Run the GC (manifest retention + sweep of unreferenced objects) this
    /// often, in ms (0: only through `repair`).
    pub gc_interval_ms: u64,
    /// How `meta.redb` is opened and reopened (the file in the data dir).
    pub meta_opener: MetaOpener,
    /// How the free space of a local store's disk is measured before a
    /// compaction writes segments (`statvfs`; tests inject a nearly full disk).
    pub free_space: SpaceProbe,
    /// Where the engine records its metrics (the store is wrapped to record
    /// its requests there too).
    pub metrics: Arc<Metrics>,
    /// Where query evaluation runs: bounded slots per lane, a queue bound and
    /// the per-query deadline (`query_pool.rs`).
    pub query_pool: Arc<QueryPool>,
    /// The local models embedding and reranking use (`engine/embed.rs`); replaced by a reload.
    pub models: Arc<ModelRegistry>,
}

/// The retention's byte budget never drops below 64 MiB per namespace.
pub const DEFAULT_RETENTION_FLOOR_BYTES: u64 = 64 << 20;

/// The longest `/ready` waits for a probe of the store ([`Engine::ready`]):
/// below a second, so a readiness check (or the systemd watchdog's liveness
/// probe) is answered in time even when the bucket is silent.
pub const READY_PROBE_BUDGET: std::time::Duration = std::time::Duration::from_millis(800);

/// Most directory entries the start-up scan for stale staging files visits.
pub const STARTUP_STAGING_SCAN_LIMIT: usize = 200_000;

/// Default disk cache budget: 8 GiB.
pub const DEFAULT_CACHE_BUDGET_BYTES: u64 = 8 << 30;

impl EngineConfig {
    /// A config with the system clock and random ids.
    pub fn new(data_dir: PathBuf, store: Store) -> Self {
        let (clock, ids) = crate::clock::system();
        EngineConfig {
            cache_dir: data_dir.join("cache"),
            data_dir,
            store,
            clock,
            ids,
            compaction: CompactionConfig::default(),
            cache_budget_bytes: DEFAULT_CACHE_BUDGET_BYTES,
            max_loaded_namespaces: 1024,
            memory_budget_bytes: 2 << 30,
            node_budget_bytes: None,
            retention_ms: 0,
            retention_max_ratio: None,
            retention_floor_bytes: DEFAULT_RETENTION_FLOOR_BYTES,
            gc_interval_ms: 0,
            meta_opener: MetaOpener::file(),
            free_space: SpaceProbe::statvfs(),
            metrics: Arc::default(),
            query_pool: Arc::default(),
            models: Arc::default(),
        }
    }
}

/// Per-namespace handle: the commit queue and the newest loaded snapshot.
pub(crate) struct NsHandle {
    pub(crate) path: NsPath,
    queue: StdMutex<VecDeque<Pending>>,
    pub(crate) commit_lock: Mutex<()>,
    pub(crate) compact_lock: Mutex<()>,
    /// No automatic compaction before this time (ms; set after one failed).
    pub(crate) compact_not_before_ms: std::sync::atomic::AtomicU64,
    /// Automatic compactions failed in a row (0 after one succeeds): the
    /// retry's back-off doubles with each.
    pub(crate) compact_failures: std::sync::atomic::AtomicU32,
    /// Commits seen by the automatic compaction (an idle timer fires only if
    /// none came after the one that armed it).
    pub(crate) commits_seen: std::sync::atomic::AtomicU64,
    /// Memory-tier recency (engine tick of the last access).
    last_access: std::sync::atomic::AtomicU64,
    load_lock: Mutex<()>,
    current: StdRwLock<Option<Snapshot>>,
}

/// The engine.
pub struct Engine {
    store: Store,
    meta: Arc<Meta>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    handles: StdMutex<HashMap<NsPath, Arc<NsHandle>>>,
    /// `<data dir>/scratch`: scratch files (restore uploads spooled before any
    /// lock is taken); emptied at open.
    scratch_dir: PathBuf,
    /// Where overlay vectors are kept (chunk files in the scratch dir).
    spill: Arc<crate::spill::VectorSpill>,
    /// Per-project locks: branch/copy/restore share, repair excludes (engine::branch).
    project_locks: StdMutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
    /// Changed at run time by a configuration reload ([`Engine::reconfigure`]).
    compaction: StdRwLock<CompactionConfig>,
    cache: Arc<ObjectCache>,
    /// Memory tier: most loaded namespaces and byte budget (both reloadable).
    memory: (std::sync::atomic::AtomicUsize, std::sync::atomic::AtomicU64),
    /// The node's memory budget and what write bodies reserve against it.
    node_memory: budget::MemoryBudget,
    retention_ms: u64,
    /// The retention's byte budget: (ratio, floor in bytes).
    pub(crate) retention_budget: (Option<f64>, u64),
    tick: std::sync::atomic::AtomicU64,
    /// The garbage collector's wake-ups between intervals (`gc.rs`).
    gc: gc::GcState,
    /// Objects found damaged at run time (key → why), reported by verify.
    damaged: StdMutex<std::collections::BTreeMap<String, String>>,
    /// Objects whose local copy rotted and was dropped to be fetched again (key → what was
    /// found), reported by verify.
    refetched: StdMutex<std::collections::BTreeMap<String, String>>,
    /// Free space of the local store's disk (compaction checks it first).
    free_space: SpaceProbe,
    metrics: Arc<Metrics>,
    /// Where every query evaluation runs ([`Engine::query_pool`]).
    queries: Arc<QueryPool>,
    /// The local models (`engine/embed.rs`).
    models: Arc<ModelRegistry>,
    /// Self-reference for background tasks (compaction).
    me: Weak<Engine>,
    _lock: DataDirLock,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("store", &self.store.description()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Open an engine: lock the data dir and open the local metadata.
    pub async fn open(mut cfg: EngineConfig) -> Result<Arc<Engine>, EngineError> {
        cfg.store = cfg.store.metered(cfg.metrics.clone());
        let lock = acquire_lock(&cfg).await?;
        let (dir, opener) = (cfg.data_dir.clone(), cfg.meta_opener.clone());
        let meta = tokio::task::spawn_blocking(move || Meta::open_with(&dir, opener))
            .await
            .map_err(|e| EngineError::wrap(ErrorKind::Internal, e))??;
        let meta = Arc::new(meta);
        let (cache_dir, budget, cache_store) =
            (cfg.cache_dir.clone(), cfg.cache_budget_bytes, cfg.store.clone());
        let cache = tokio::task::spawn_blocking(move || ObjectCache::open(&cache_dir, budget, cache_store))
            .await
            .map_err(|e| EngineError::wrap(ErrorKind::Internal, e))?
            .map_err(|e| EngineError::caused_by(ErrorKind::Unavailable, "disk cache", e))?;
        let scratch_dir = prepare_scratch_dir(&cfg.data_dir)?;
        let spill = Arc::new(crate::spill::VectorSpill::new(&scratch_dir));
        let engine = Arc::new_cyclic(|me| Engine {
            spill,
            scratch_dir,
            store: cfg.store,
            meta,
            clock: cfg.clock,
            ids: cfg.ids,
            handles: StdMutex::new(HashMap::new()),
            project_locks: StdMutex::new(HashMap::new()),
            compaction: StdRwLock::new(cfg.compaction),
            cache,
            memory: (cfg.max_loaded_namespaces.max(1).into(), cfg.memory_budget_bytes.into()),
            node_memory: cfg
                .node_budget_bytes
                .map_or_else(budget::MemoryBudget::unbounded, budget::MemoryBudget::new),
            retention_ms: cfg.retention_ms,
            retention_budget: (cfg.retention_max_ratio, cfg.retention_floor_bytes),
            tick: std::sync::atomic::AtomicU64::new(0),
            gc: gc::GcState::default(),
            damaged: StdMutex::default(),
            refetched: StdMutex::default(),
            free_space: cfg.free_space,
            metrics: cfg.metrics,
            queries: cfg.query_pool,
            models: cfg.models,
            me: me.clone(),
            _lock: lock,
        });
        engine.warm_pinned_in_background().await?;
        engine.remove_stale_staging_in_background();
        if cfg.gc_interval_ms > 0 {
            engine.spawn_periodic_gc(cfg.gc_interval_ms);
        }
        Ok(engine)
    }

    /// Re-warm every pinned namespace in the background (start-up): the
    /// daemon is ready at once; pinned namespaces load without a first query.
    async fn warm_pinned_in_background(self: &Arc<Self>) -> Result<(), EngineError> {
        let pins = self.blocking(Meta::pins).await?;
        for pin in pins {
            let Ok(path) = NsPath::parse(&pin) else { continue };
            self.cache.pin_prefix(&path.prefix());
            let engine = Arc::downgrade(self);
            tokio::spawn(async move {
                let Some(engine) = engine.upgrade() else { return };
                if let Err(e) = engine.snapshot(&path, false).await {
                    tracing::warn!(namespace = %path, error = %e, "could not warm a pinned namespace");
                }
            });
        }
        Ok(())
    }

    /// The directory for scratch files (same file system as the data dir);
    /// whatever is in it when the engine opens is left from a crash and removed.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch_dir
    }

    /// An empty state whose overlay spills its vectors (every state the
    /// engine makes starts here or in [`Engine::load_segments`]' state).
    pub(crate) fn empty_state(&self) -> NsState {
        NsState::default().with_spill(Some(Arc::clone(&self.spill)))
    }

    /// Start-up: remove the local store's staging files a crash left behind
    /// (older than the GC grace period), in the background and bounded to
    /// [`STARTUP_STAGING_SCAN_LIMIT`] directory entries; the GC sweep gets the rest.
    fn remove_stale_staging_in_background(self: &Arc<Self>) {
        if self.store.local_root().is_none() {
            return;
        }
        let (store, cutoff) = (self.store.clone(), self.clock.now_ms().saturating_sub(self.gc_grace_ms()));
        tokio::spawn(async move {
            match store.remove_all_stale_staging(cutoff, STARTUP_STAGING_SCAN_LIMIT).await {
                Ok(r) if r.removed > 0 || r.truncated => tracing::info!(
                    removed = r.removed,
                    visited = r.visited,
                    complete = !r.truncated,
                    "removed staging files left by an earlier crash"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not scan for stale staging files"),
            }
        });
    }

    /// The GC's grace period: objects (and staging files) younger than this
    /// may belong to a write in flight.
    fn gc_grace_ms(&self) -> u64 {
        self.retention_ms.max(60_000)
    }

    /// Load a namespace in the background (`hint_cache_warm`).
    pub fn warm_in_background(self: &Arc<Self>, path: &NsPath) {
        let engine = Arc::downgrade(self);
        let path = path.clone();
        tokio::spawn(async move {
            let Some(engine) = engine.upgrade() else { return };
            if let Err(e) = engine.snapshot(&path, false).await {
                tracing::debug!(namespace = %path, error = %e, "cache warm failed");
            }
        });
    }

    /// The object store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The local metadata.
    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn handle(&self, path: &NsPath) -> Arc<NsHandle> {
        let tick = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = map
            .entry(path.clone())
            .or_insert_with(|| {
                Arc::new(NsHandle {
                    path: path.clone(),
                    queue: StdMutex::new(VecDeque::new()),
                    commit_lock: Mutex::new(()),
                    compact_lock: Mutex::new(()),
                    compact_not_before_ms: std::sync::atomic::AtomicU64::new(0),
                    compact_failures: std::sync::atomic::AtomicU32::new(0),
                    commits_seen: std::sync::atomic::AtomicU64::new(0),
                    last_access: std::sync::atomic::AtomicU64::new(0),
                    load_lock: Mutex::new(()),
                    current: StdRwLock::new(None),
                })
            })
            .clone();
        h.last_access.store(tick, std::sync::atomic::Ordering::Relaxed);
        h
    }

    /// The disk cache tier.
    pub fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, EngineError> {
        commit::on_meta(&self.meta, f).await
    }

    /// Every namespace handle of this engine, at this moment (the map's lock
    /// is not held while the caller goes through them).
    fn all_handles(&self) -> Vec<Arc<NsHandle>> {
        let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().cloned().collect()
    }

    /// Compactions running now (for status lines).
    pub fn compactions_running(&self) -> usize {
        let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().filter(|h| h.compact_lock.try_lock().is_err()).count()
    }

    /// Ok when the node can take writes: the local metadata is open (after
    /// an I/O error this reopens it once the disk recovers) and the store
    /// takes writes and answers reads. A store whose last write failed (disk
    /// full, bucket gone) or whose last read got no answer is probed, within
    /// [`READY_PROBE_BUDGET`]: `/ready` answers within a second whatever the
    /// store does, and at once while its breaker is open.
    pub async fn ready(&self) -> Result<(), EngineError> {
        self.blocking(Meta::writable).await?;
        self.store.check_ready(READY_PROBE_BUDGET).await.map_err(|e| match e {
            NotReady::Writes(e) => EngineError::from(e),
            NotReady::Unreachable(e) => {
                EngineError::caused_by(ErrorKind::Unavailable, "the object store is unreachable", e)
            }
        })
    }

    /// The commit unit of a namespace on this engine's store.
    pub(crate) fn log(&self, path: &NsPath) -> ManifestLog {
        ManifestLog::new(
            self.store.clone(),
            self.meta.clone(),
            self.cache.clone(),
            path.clone(),
            self.retention_ms,
        )
    }
}

/// Take the data-dir lock. When this very process still holds it (an engine
/// that was dropped but whose background compaction is finishing), wait for
/// it (bounded) instead of failing.
async fn acquire_lock(cfg: &EngineConfig) -> Result<DataDirLock, EngineError> {
    let own = format!("pid={} ", std::process::id());
    for _ in 0..120 {
        match DataDirLock::acquire(&cfg.data_dir, cfg.clock.now_ms()) {
            Err(MetaError::Locked { holder, .. }) if holder.starts_with(&own) => {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            other => return other.map_err(Into::into),
        }
    }
    DataDirLock::acquire(&cfg.data_dir, cfg.clock.now_ms()).map_err(Into::into)
}

pub(crate) fn cached(h: &NsHandle) -> Option<Snapshot> {
    h.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

pub(crate) fn set_cached(h: &NsHandle, s: Snapshot) {
    let mut cur = h.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Never move backwards: a slow reload must not replace a newer commit.
    if cur.as_ref().is_none_or(|c| c.generation() <= s.generation()) {
        *cur = Some(s);
    }
}

pub(crate) fn clear_cached(h: &NsHandle) {
    *h.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// Drops `spent` on a blocking thread, for what is freed under the commit lock: a group's
/// requests and WAL records (rows, tokens, prepared chunks) are many small allocations,
/// and freeing them in the commit held the next group's commit back (1.4 s of a
/// 1M-document ingest's serial path); so did a compaction's folded and previous states.
/// The memory is freed moments later.
pub(crate) fn drop_in_background<T: Send + 'static>(spent: T) {
    tokio::task::spawn_blocking(move || drop(spent));
}

/// Create `<data_dir>/scratch` and empty it (this process holds the data-dir
/// lock, so anything there is left from an earlier run).
fn prepare_scratch_dir(data_dir: &Path) -> Result<PathBuf, EngineError> {
    let dir = data_dir.join("scratch");
    let fail = |e: std::io::Error| EngineError::io(format!("scratch dir {}", dir.display()), e);
    std::fs::create_dir_all(&dir).map_err(fail)?;
    for entry in std::fs::read_dir(&dir).map_err(fail)? {
        let path = entry.map_err(fail)?.path();
        if path.is_file() {
            std::fs::remove_file(&path).map_err(fail)?;
        }
    }
    Ok(dir)
}
