//! The namespace engine: lifecycle, the write path with group commit, the
//! commit protocol, and materialized read state.
//!
//! Invariants (see `storage-format.md`, "Commit protocol"):
//! - A write is acknowledged only after its WAL object and the manifest
//!   generation that references it are durable.
//! - Ordering of every mutation: write new objects → raise refcounts →
//!   create the manifest (conditional create) → lower refcounts → delete at
//!   zero. A crash can only leak objects.
//! - A manifest generation is created at most once; a writer that loses the
//!   race (or whose generation was fenced by a GC tombstone) re-applies its
//!   requests on the newest generation and retries; it never overwrites.
//! - Requests that arrive while a commit is in flight share the next WAL
//!   object and manifest (group commit).
//! - Reads see one generation (an immutable [`NsState`] snapshot); a strong
//!   read first checks the store for a newer generation.

pub mod apply;
pub mod branch;
pub mod cold;
pub mod compact;
pub mod export;
mod indexing;
mod query_error;
pub mod repair;
pub mod request;
pub mod snapshot;
pub use crate::state; // compat: lead removes after merge

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock as StdRwLock, Weak};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value as Json};
use tokio::sync::{oneshot, Mutex};

pub use self::apply::AffectedIds;
pub use self::compact::{CompactionConfig, CompactionReport};
pub use self::request::WriteRequest;
pub use self::state::{LiveSegment, NsState};
use crate::cache::ObjectCache;
use crate::clock::{Clock, IdGen};
use crate::format::manifest::{
    decode_current_full, encode_current_with_manifest, Manifest, ManifestStats, WalRef,
};
use crate::format::wal::WalBatch;
use crate::format::FormatError;
use crate::layout::{self, NsPath};
use crate::meta::{DataDirLock, Meta, MetaError};
use crate::model::DocId;
use crate::ops::{RequestRecord, RowCounts};
use crate::store::{CreateOutcome, Store, StoreError};

/// How many times a commit that lost a race is re-applied before giving up.
const MAX_COMMIT_ATTEMPTS: usize = 16;
/// Most requests one group commit takes.
const MAX_GROUP_REQUESTS: usize = 256;
/// Most rows one group commit takes (a single bigger request still goes alone).
const MAX_GROUP_ROWS: usize = 100_000;

/// Errors of the engine: the public kinds callers (and the HTTP edge) map.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is invalid (400).
    #[error("{0}")]
    InvalidInput(String),
    /// The namespace (or document) does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// `if_version` did not match: final, do not retry (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Lost commit races repeatedly; a retry may succeed (409).
    #[error("{0}")]
    Conflict(String),
    /// The object store or local disk failed; a retry may succeed (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data failed validation (500).
    #[error("stored data is corrupted: {0}")]
    Corrupted(String),
    /// The feature is not implemented (501).
    #[error("{0}")]
    Unsupported(String),
    /// A bug or an unexpected state (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// Too much unindexed data; retry after the hint (429).
    #[error("{message}")]
    Backpressure {
        /// What is behind.
        message: String,
        /// Suggested wait before retrying.
        retry_after_ms: u64,
    },
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Unavailable(e.to_string())
    }
}

impl From<MetaError> for EngineError {
    fn from(e: MetaError) -> Self {
        EngineError::Unavailable(e.to_string())
    }
}

impl From<FormatError> for EngineError {
    fn from(e: FormatError) -> Self {
        EngineError::Corrupted(e.to_string())
    }
}

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
    /// Byte budget of the local disk cache (`<data_dir>/cache`) for objects of
    /// a remote store; a local-directory store is read in place.
    pub cache_budget_bytes: u64,
    /// Memory tier: most namespace states kept loaded.
    pub max_loaded_namespaces: usize,
    /// Memory tier: estimated bytes of loaded states kept (pinned exempt).
    pub memory_budget_bytes: u64,
    /// Retention of superseded generations, in ms. 0: objects a commit drops
    /// are deleted as soon as their refcount reaches zero (older generations
    /// become unreadable). > 0: they stay until the GC sweep finds that no
    /// retained generation references them, so time travel reaches back this
    /// far; old manifests are collected after it.
    pub retention_ms: u64,
    /// Run the GC (manifest retention + sweep of unreferenced objects) this
    /// often, in ms (0: only through `repair`).
    pub gc_interval_ms: u64,
}

/// Default disk cache budget: 8 GiB.
pub const DEFAULT_CACHE_BUDGET_BYTES: u64 = 8 << 30;

impl EngineConfig {
    /// A config with the system clock and random ids.
    pub fn new(data_dir: PathBuf, store: Store) -> Self {
        let (clock, ids) = crate::clock::system();
        EngineConfig {
            data_dir,
            store,
            clock,
            ids,
            compaction: CompactionConfig::default(),
            cache_budget_bytes: DEFAULT_CACHE_BUDGET_BYTES,
            max_loaded_namespaces: 1024,
            memory_budget_bytes: 2 << 30,
            retention_ms: 0,
            gc_interval_ms: 0,
        }
    }
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResponse {
    /// Row counts.
    pub counts: RowCounts,
    /// The generation the write committed at (or, when deduplicated, the
    /// generation current when the duplicate was seen).
    pub generation: u64,
    /// True when this was a retry of an already-applied idempotency key.
    pub deduplicated: bool,
    /// Affected ids, when asked for.
    pub affected: Option<AffectedIds>,
    /// Logical bytes written.
    pub bytes_written: u64,
}

impl WriteResponse {
    /// The turbopuffer response body.
    pub fn to_json(&self) -> Json {
        let mut v = json!({
            "status": "OK",
            "message": if self.deduplicated { "deduplicated: this idempotency key was already applied" } else { "success" },
            "rows_affected": self.counts.affected(),
            "rows_upserted": self.counts.upserted,
            "rows_patched": self.counts.patched,
            "rows_deleted": self.counts.deleted,
            // Filter-based operations never stop part-way (they fail above their cap).
            "rows_remaining": false,
            "version": self.generation,
            "deduplicated": self.deduplicated,
            "billing": {"billable_logical_bytes_written": self.bytes_written},
        });
        if let Some(a) = &self.affected {
            let ids = |v: &Vec<DocId>| Json::Array(v.iter().map(DocId::to_json).collect());
            v["upserted_ids"] = ids(&a.upserted);
            v["patched_ids"] = ids(&a.patched);
            v["deleted_ids"] = ids(&a.deleted);
        }
        v
    }
}

/// One committed view of a namespace.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The manifest of this generation (None: the namespace never existed).
    pub manifest: Option<Arc<Manifest>>,
    /// The materialized state.
    pub state: Arc<NsState>,
}

impl Snapshot {
    /// Whether the namespace exists at this generation.
    pub fn exists(&self) -> bool {
        self.manifest.as_ref().is_some_and(|m| !m.deleted)
    }
    /// The generation (0 when never created).
    pub fn generation(&self) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.generation)
    }
}

struct Pending {
    req: WriteRequest,
    tx: oneshot::Sender<Result<WriteResponse, EngineError>>,
}

/// Per-namespace handle: the commit queue and the newest loaded snapshot.
pub(crate) struct NsHandle {
    pub(crate) path: NsPath,
    queue: StdMutex<VecDeque<Pending>>,
    pub(crate) commit_lock: Mutex<()>,
    pub(crate) compact_lock: Mutex<()>,
    /// Memory-tier recency (engine tick of the last access).
    last_access: std::sync::atomic::AtomicU64,
    load_lock: Mutex<()>,
    current: StdRwLock<Option<Snapshot>>,
}

/// One page of a namespace listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePage {
    /// Namespace names, sorted.
    pub namespaces: Vec<String>,
    /// Pass as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

/// The engine.
pub struct Engine {
    store: Store,
    meta: Arc<Meta>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    handles: StdMutex<HashMap<NsPath, Arc<NsHandle>>>,
    /// Per-project locks: branch/copy/restore share, repair excludes (engine::branch).
    project_locks: StdMutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
    compaction: CompactionConfig,
    cache: Arc<ObjectCache>,
    memory: (usize, u64),
    retention_ms: u64,
    tick: std::sync::atomic::AtomicU64,
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
    pub async fn open(cfg: EngineConfig) -> Result<Arc<Engine>, EngineError> {
        let lock = acquire_lock(&cfg).await?;
        let dir = cfg.data_dir.clone();
        let meta = tokio::task::spawn_blocking(move || Meta::open(&dir))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        let meta = Arc::new(meta);
        let (cache_dir, budget, cache_store) =
            (cfg.data_dir.join("cache"), cfg.cache_budget_bytes, cfg.store.clone());
        let cache = tokio::task::spawn_blocking(move || ObjectCache::open(&cache_dir, budget, cache_store))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(|e| EngineError::Unavailable(format!("disk cache: {e}")))?;
        let engine = Arc::new_cyclic(|me| Engine {
            store: cfg.store,
            meta,
            clock: cfg.clock,
            ids: cfg.ids,
            handles: StdMutex::new(HashMap::new()),
            project_locks: StdMutex::new(HashMap::new()),
            compaction: cfg.compaction,
            cache,
            memory: (cfg.max_loaded_namespaces.max(1), cfg.memory_budget_bytes),
            retention_ms: cfg.retention_ms,
            tick: std::sync::atomic::AtomicU64::new(0),
            me: me.clone(),
            _lock: lock,
        });
        engine.warm_pinned_in_background().await?;
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

    /// Every `interval_ms`, collect manifests older than the retention and
    /// sweep objects no retained generation references, project by project.
    fn spawn_periodic_gc(self: &Arc<Self>, interval_ms: u64) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else { return };
                if let Err(e) = engine.collect_garbage().await {
                    tracing::warn!(error = %e, "periodic GC failed; it runs again next interval");
                }
            }
        });
    }

    /// One GC pass over every project in the store (see `repair`).
    pub async fn collect_garbage(&self) -> Result<(), EngineError> {
        let opts = repair::RepairOptions {
            sweep: true,
            grace_ms: self.retention_ms.max(60_000),
            manifest_retention_ms: Some(self.retention_ms),
        };
        for org in self.store.list_dirs("").await? {
            for project in self.store.list_dirs(&format!("{org}/")).await? {
                if self.store.list_dirs(&NsPath::project_namespaces_prefix(&org, &project)).await?.is_empty()
                {
                    continue;
                }
                let r = self.repair(&org, &project, opts).await?;
                tracing::info!(org, project, ?r, "garbage collected");
            }
        }
        Ok(())
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
                    last_access: std::sync::atomic::AtomicU64::new(0),
                    load_lock: Mutex::new(()),
                    current: StdRwLock::new(None),
                })
            })
            .clone();
        h.last_access.store(tick, std::sync::atomic::Ordering::Relaxed);
        h
    }

    /// Namespaces whose state is loaded in memory (the memory tier).
    pub fn loaded_namespaces(&self) -> Vec<NsPath> {
        let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<NsPath> =
            map.values().filter(|h| cached(h).is_some()).map(|h| h.path.clone()).collect();
        out.sort();
        out
    }

    /// turbopuffer's `cache_temperature` and `cache_hit_ratio` for a query
    /// about to run: `hot` when the namespace's state is loaded in memory,
    /// `warm` when its segment files are on local disk (a local store or the
    /// disk cache), `cold` when some must come from the object store.
    pub async fn cache_temperature(&self, path: &NsPath) -> (&'static str, f64) {
        if self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            .is_some_and(|h| cached(h).is_some())
        {
            return ("hot", 1.0);
        }
        if self.store.local_root().is_some() {
            return ("warm", 1.0);
        }
        let Ok(Some(m)) = self.latest_manifest(path).await else { return ("cold", 0.0) };
        let files: Vec<&str> =
            m.segments.iter().flat_map(|s| s.files.iter().map(|f| f.key.as_str())).collect();
        if files.is_empty() {
            return ("warm", 1.0);
        }
        let cached_files = files.iter().filter(|k| self.cache.is_cached(k)).count();
        #[allow(clippy::cast_precision_loss)]
        let ratio = cached_files as f64 / files.len() as f64;
        (if cached_files == files.len() { "warm" } else { "cold" }, ratio)
    }

    /// The disk cache tier.
    pub fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    /// Memory tier: drop the loaded states of the least recently used,
    /// unpinned namespaces until the count and byte budgets hold. A dropped
    /// state is rebuilt on its next access (from mapped segments + WAL).
    fn enforce_memory_budget(&self) {
        let (max_loaded, max_bytes) = self.memory;
        let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pinned = self.cache.pinned_prefixes();
        let mut loaded: Vec<(u64, u64, Arc<NsHandle>)> = map
            .values()
            .filter_map(|h| {
                let weight = cached(h)?.state.memory_weight();
                Some((h.last_access.load(std::sync::atomic::Ordering::Relaxed), weight, h.clone()))
            })
            .collect();
        drop(map);
        let mut count = loaded.len();
        let mut bytes: u64 = loaded.iter().map(|l| l.1).sum();
        if count <= max_loaded && bytes <= max_bytes {
            return;
        }
        loaded.sort_by_key(|l| l.0);
        for (_, weight, h) in loaded {
            if count <= max_loaded && bytes <= max_bytes {
                break;
            }
            if pinned.iter().any(|p| p == &h.path.prefix()) {
                continue;
            }
            clear_cached(&h);
            count -= 1;
            bytes = bytes.saturating_sub(weight);
        }
    }

    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(Into::into)
    }

    // ----- reads -------------------------------------------------------------

    /// The newest committed snapshot. `strong` checks the store for a newer
    /// generation first (one HEAD); otherwise the cached one is used.
    pub async fn snapshot(&self, path: &NsPath, strong: bool) -> Result<Snapshot, EngineError> {
        let h = self.handle(path);
        if let Some(s) = cached(&h) {
            if !strong || !self.store.exists(&path.manifest_key(s.generation() + 1)).await? {
                return Ok(s);
            }
        }
        self.reload(&h).await
    }

    /// The newest manifest of a namespace without materializing its state
    /// (None: never created). Cheap: one HEAD when the handle is warm.
    pub async fn latest_manifest(&self, path: &NsPath) -> Result<Option<Arc<Manifest>>, EngineError> {
        let h = self.handle(path);
        if let Some(s) = cached(&h) {
            if !self.store.exists(&path.manifest_key(s.generation() + 1)).await? {
                return Ok(s.manifest);
            }
        }
        let start = match cached(&h) {
            Some(s) => (Some(s.generation()), None),
            None => self.generation_hint(path).await?,
        };
        Ok(self.newest_manifest(path, start).await?.map(Arc::new))
    }

    /// The snapshot of an existing namespace, or NotFound.
    pub async fn existing(&self, path: &NsPath, strong: bool) -> Result<Snapshot, EngineError> {
        let s = self.snapshot(path, strong).await?;
        if !s.exists() {
            return Err(EngineError::NotFound(format!("namespace {} not found", path.ns())));
        }
        Ok(s)
    }

    /// Fetch documents by id (None for missing ids).
    pub async fn get(
        &self,
        path: &NsPath,
        ids: &[DocId],
    ) -> Result<Vec<Option<Arc<crate::model::Document>>>, EngineError> {
        let s = self.existing(path, true).await?;
        Ok(ids.iter().map(|id| s.state.get(id)).collect())
    }

    pub(crate) async fn reload(&self, h: &NsHandle) -> Result<Snapshot, EngineError> {
        let _g = h.load_lock.lock().await;
        let prev = cached(h);
        let start = match &prev {
            Some(s) => (Some(s.generation()), None),
            None => self.generation_hint(&h.path).await?,
        };
        let manifest = self.newest_manifest(&h.path, start).await?;
        let snap = match (manifest, prev) {
            (None, _) => Snapshot { manifest: None, state: Arc::new(NsState::default()) },
            (Some(m), Some(p)) if p.generation() == m.generation => p,
            (Some(m), prev) => self.materialize(&h.path, Arc::new(m), prev.as_ref()).await?,
        };
        set_cached(h, snap.clone());
        self.enforce_memory_budget();
        Ok(snap)
    }

    /// Where to start probing for the newest generation, and that
    /// generation's manifest when a version-2 CURRENT embeds it (manifests
    /// are immutable, so it equals `manifests/{g}.json`; read from the store
    /// just now, so a namespace removed from the store is not resurrected by
    /// local metadata: the `meta.redb` copy only gives the generation).
    pub(crate) async fn generation_hint(
        &self,
        path: &NsPath,
    ) -> Result<(Option<u64>, Option<Manifest>), EngineError> {
        let ns = path.to_string();
        if let Some(bytes) = self.blocking(move |m| m.cached_manifest(&ns)).await? {
            if let Ok(m) = Manifest::decode(&bytes) {
                return Ok((Some(m.generation), None));
            }
        }
        Ok(match self.store.get_opt(&path.current_key()).await? {
            Some(b) => match decode_current_full(&b) {
                Ok((g, m)) => (Some(g), m.filter(|m| m.namespace == path.to_string())),
                Err(_) => (None, None),
            },
            None => (None, None),
        })
    }

    /// Find the newest live manifest at or after `hint` (listing when the
    /// hint is missing or points at a collected generation).
    pub(crate) async fn newest_manifest(
        &self,
        path: &NsPath,
        (hint, known): (Option<u64>, Option<Manifest>),
    ) -> Result<Option<Manifest>, EngineError> {
        let mut best = match (hint, known) {
            (Some(g), Some(m)) if m.generation == g => Some(m),
            (Some(g), _) if g > 0 => self.read_manifest(path, g).await?,
            _ => None,
        };
        if best.is_none() {
            let listed = self.store.list(&path.manifests_prefix()).await?;
            let newest = listed.iter().filter_map(|o| layout::manifest_generation(&o.key)).max();
            if let Some(g) = newest {
                best = self.read_manifest(path, g).await?;
            }
        }
        let Some(mut m) = best else { return Ok(None) };
        loop {
            let g = m.generation + 1;
            // The GET first, then the HEAD: GC creates `.gc` before it deletes `.json`, so in
            // this order a collected generation is always seen as one or the other.
            let next = self.read_manifest(path, g).await?;
            if !self.store.exists(&path.manifest_tombstone_key(g)).await? {
                match next {
                    Some(n) => m = n,
                    None => return Ok(Some(m)),
                }
                continue;
            }
            // Generation g was collected by GC (or is a fenced zombie), so
            // newer ones exist: jump to the newest live one by listing.
            let listed = self.store.list(&path.manifests_prefix()).await?;
            let newest =
                listed.iter().filter_map(|o| layout::manifest_generation(&o.key)).filter(|n| *n > g).max();
            match newest {
                Some(n) => match self.read_manifest(path, n).await? {
                    Some(found) => m = found,
                    None => return Ok(Some(m)),
                },
                None => return Ok(Some(m)),
            }
        }
    }

    pub(crate) async fn read_manifest(
        &self,
        path: &NsPath,
        generation: u64,
    ) -> Result<Option<Manifest>, EngineError> {
        let Some(bytes) = self.store.get_opt(&path.manifest_key(generation)).await? else { return Ok(None) };
        let m = Manifest::decode(&bytes)?;
        if m.generation != generation || m.namespace != path.to_string() {
            return Err(EngineError::Corrupted(format!(
                "manifest {} names {} generation {}",
                path.manifest_key(generation),
                m.namespace,
                m.generation
            )));
        }
        Ok(Some(m))
    }

    /// Build the state of `m`, reusing `prev` when `m` only appends WAL to it.
    pub(crate) async fn materialize(
        &self,
        path: &NsPath,
        m: Arc<Manifest>,
        prev: Option<&Snapshot>,
    ) -> Result<Snapshot, EngineError> {
        if m.deleted {
            return Ok(Snapshot { manifest: Some(m), state: Arc::new(NsState::default()) });
        }
        let reuse = prev
            .and_then(|p| p.manifest.as_ref().map(|pm| (p, pm)))
            .filter(|(_, pm)| !pm.deleted && pm.segments == m.segments && m.wal.starts_with(&pm.wal));
        let skip = reuse.map_or(0, |(_, pm)| pm.wal.len());
        let refs = &m.wal[skip..];
        // Collect the futures first: a closure inside the stream makes the
        // future not `Send` for every lifetime (rust-lang/rust#102211).
        let reads: Vec<_> = refs.iter().map(|r| self.read_wal(r)).collect();
        let wal = futures::stream::iter(reads).buffered(8).try_collect::<Vec<WalBatch>>();
        let base = async {
            match reuse {
                Some((p, _)) => Ok((*p.state).clone()),
                None => self.base_state(&m).await,
            }
        };
        // The segments and the WAL batches are fetched in the same round trip.
        let (mut state, batches) = futures::try_join!(base, wal)?;
        for b in &batches {
            for req in &b.requests {
                apply::apply_request(&mut state, req, None).map_err(|e| {
                    EngineError::Corrupted(format!("replaying WAL batch {} of {path} failed: {e}", b.seq))
                })?;
            }
        }
        // The manifest's figure covers the segments too (their rows' sizes
        // are not recomputed at load).
        state.logical_bytes = m.stats.approx_logical_bytes;
        Ok(Snapshot { manifest: Some(m), state: Arc::new(state) })
    }

    /// The state of a manifest's segments, with its namespace settings, before
    /// its WAL is replayed.
    async fn base_state(&self, m: &Manifest) -> Result<NsState, EngineError> {
        let mut state = NsState::with_segments(self.load_segments(m).await?);
        state.schema = crate::schema::parse_schema(&Json::Object(m.schema.clone()))
            .map_err(|e| EngineError::Corrupted(format!("manifest schema of {}: {e}", m.namespace)))?;
        state.id_type = m.id_type;
        state.distance_metric = m.distance_metric;
        state.vector_dim = m.vector_dim;
        Ok(state)
    }

    pub(crate) async fn read_wal(&self, r: &WalRef) -> Result<WalBatch, EngineError> {
        let bytes = self.store.get(&r.key).await.map_err(|e| match e {
            StoreError::NotFound(k) => {
                EngineError::Corrupted(format!("manifest references missing WAL object {k}"))
            }
            other => other.into(),
        })?;
        let b = WalBatch::decode(&bytes)?;
        if b.seq != r.seq {
            return Err(EngineError::Corrupted(format!(
                "WAL object {} holds seq {} not {}",
                r.key, b.seq, r.seq
            )));
        }
        Ok(b)
    }

    // ----- writes ------------------------------------------------------------

    /// Apply one write request (group-committed with concurrent ones).
    pub async fn write(&self, path: &NsPath, req: WriteRequest) -> Result<WriteResponse, EngineError> {
        if let Some(fork) = req.fork.clone() {
            return self.write_fork(path, &fork).await;
        }
        let h = self.handle(path);
        let (tx, mut rx) = oneshot::channel();
        h.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back(Pending { req, tx });
        loop {
            let guard = h.commit_lock.lock().await;
            if let Some(result) = reply(&mut rx) {
                return result;
            }
            let batch = take_group(&h);
            if !batch.is_empty() {
                self.commit_group(&h, batch).await;
            }
            drop(guard);
            if let Some(result) = reply(&mut rx) {
                return result;
            }
        }
    }

    /// Update a namespace's schema (a settings-only write).
    pub async fn update_schema(&self, path: &NsPath, schema: &Json) -> Result<Snapshot, EngineError> {
        crate::schema::parse_schema(schema).map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        let settings =
            crate::ops::NamespaceSettings { schema_json: Some(schema.to_string()), ..Default::default() };
        let mut req = WriteRequest::settings_only(settings);
        req.create_namespace = Some(true);
        self.write(path, req).await?;
        self.existing(path, false).await
    }

    async fn commit_group(&self, h: &NsHandle, batch: Vec<Pending>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // First attempt: the cached snapshot (kept current by our own
            // commits). After a lost race: reload incrementally from it.
            let loaded = if attempt == 1 { self.reload_if_stale(h).await } else { self.reload(h).await };
            let base = match loaded {
                Ok(b) => b,
                Err(e) => return fail_all(batch, &e),
            };
            let plan = self.plan(h, &base, &batch).await;
            if plan.records.is_empty() {
                return self.answer(h, batch, plan, &base, None);
            }
            match self.commit_plan(h, &base, &plan).await {
                Ok(m) => {
                    let committed =
                        Snapshot { manifest: Some(Arc::new(m)), state: Arc::new(plan.state.clone()) };
                    set_cached(h, committed.clone());
                    self.record_commit(h, &committed, &plan).await;
                    if let Some(m) = &committed.manifest {
                        self.maybe_compact_in_background(&h.path, m);
                    }
                    return self.answer(h, batch, plan, &base, Some(&committed));
                }
                Err(CommitError::Lost) if attempt < MAX_COMMIT_ATTEMPTS => {
                    tracing::debug!(namespace = %h.path, attempt, "commit lost a race; re-applying on the newest generation");
                    self.backoff(attempt).await;
                }
                Err(CommitError::Lost) => {
                    let e = EngineError::Conflict(format!(
                        "namespace {} is being written concurrently; the commit lost {MAX_COMMIT_ATTEMPTS} races, retry",
                        h.path.ns()
                    ));
                    return fail_all(batch, &e);
                }
                Err(CommitError::Failed(e)) => {
                    // Poison the cached state: the outcome on storage is unknown.
                    clear_cached(h);
                    return fail_all(batch, &e);
                }
            }
        }
    }

    /// Jittered backoff after a lost race, so two writers stop colliding.
    pub(crate) async fn backoff(&self, attempt: usize) {
        let cap_us = 500u128 << attempt.min(6);
        let jitter = self.ids.next_uuid().as_u128() % cap_us;
        tokio::time::sleep(std::time::Duration::from_micros(u64::try_from(jitter).unwrap_or(0))).await;
    }

    async fn reload_if_stale(&self, h: &NsHandle) -> Result<Snapshot, EngineError> {
        match cached(h) {
            Some(s) => Ok(s),
            None => self.reload(h).await,
        }
    }

    /// Apply the group's requests to a copy of `base`, one by one.
    async fn plan(&self, h: &NsHandle, base: &Snapshot, batch: &[Pending]) -> Plan {
        let mut state = (*base.state).clone();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in batch {
            let outcome = self.plan_one(h, base, &mut state, &p.req, records.is_empty()).await;
            if let Ok(PlannedOutcome::Applied { record, .. }) = &outcome {
                records.push((**record).clone());
            }
            outcomes.push(outcome);
        }
        Plan { state, records, outcomes }
    }

    async fn plan_one(
        &self,
        h: &NsHandle,
        base: &Snapshot,
        state: &mut NsState,
        req: &WriteRequest,
        first: bool,
    ) -> Result<PlannedOutcome, EngineError> {
        if let Some(key) = &req.record.idempotency_key {
            if let Some(counts) = state.idempotency.get(key) {
                return Ok(PlannedOutcome::Duplicate(*counts));
            }
            let (ns, k) = (h.path.to_string(), key.clone());
            if let Some(stored) = self.blocking(move |m| m.idempotency(&ns, &k)).await? {
                return Ok(PlannedOutcome::Stored(stored));
            }
        }
        if let Some(v) = req.if_version {
            if !first {
                return Ok(PlannedOutcome::Deferred);
            }
            let matches = v == base.generation() || (v == 0 && !base.exists());
            if !matches {
                return Err(EngineError::PreconditionFailed(format!(
                    "if_version {v} does not match the namespace's current version {}",
                    base.generation()
                )));
            }
        }
        if let Some(m) = base.manifest.as_ref().filter(|m| !m.deleted && !req.disable_backpressure) {
            if m.stats.unindexed_bytes > self.compaction.backlog_bytes {
                self.maybe_compact_in_background(&h.path, m);
                return Err(EngineError::Backpressure {
                    message: format!(
                        "namespace {} has {} unindexed bytes (limit {}); retry once compaction catches up, \
                         or set disable_backpressure",
                        h.path.ns(),
                        m.stats.unindexed_bytes,
                        self.compaction.backlog_bytes
                    ),
                    retry_after_ms: 1000,
                });
            }
        }
        if !base.exists() && req.create_namespace == Some(false) {
            return Err(EngineError::NotFound(format!(
                "namespace {} not found (create_namespace is false)",
                h.path.ns()
            )));
        }
        let no_settings = req.record.settings == crate::ops::NamespaceSettings::default();
        if req.record.ops.is_empty() && no_settings && req.create_namespace != Some(true) {
            return Err(EngineError::InvalidInput("write has no operations".into()));
        }
        let mut affected = req.return_affected_ids.then(AffectedIds::default);
        let mut record = req.record.clone();
        record.counts = apply::apply_request(state, &req.record, affected.as_mut())?;
        Ok(PlannedOutcome::Applied { record: Box::new(record), affected })
    }

    /// Steps 1–3 of the protocol (+ CURRENT hint), returning the committed manifest.
    async fn commit_plan(&self, h: &NsHandle, base: &Snapshot, plan: &Plan) -> Result<Manifest, CommitError> {
        let path = &h.path;
        let now = self.clock.now_ms();
        let seq = base.manifest.as_ref().map_or(1, |m| m.next_wal_seq.max(1));
        let wal = WalBatch { seq, created_at_ms: now, requests: plan.records.clone() };
        // try_encode refuses exactly what decode would refuse, so nothing
        // unreadable is ever published.
        let wal_bytes = wal.try_encode().map_err(|e| {
            CommitError::Failed(EngineError::InvalidInput(format!("write cannot be stored: {e}")))
        })?;
        let wal_key = path.wal_key(seq, &self.ids.next_token());
        let wal_ref = WalRef {
            key: wal_key.clone(),
            seq,
            bytes: wal_bytes.len() as u64,
            crc32c: crc32c::crc32c(&wal_bytes),
            requests: u32::try_from(plan.records.len()).unwrap_or(u32::MAX),
            rows: plan.records.iter().map(|r| r.ops.direct_rows() as u64).sum(),
        };
        self.store.put(&wal_key, Bytes::from(wal_bytes)).await.map_err(fail)?;
        let project = path.project_id();
        let keys = vec![wal_key.clone()];
        let p2 = project.clone();
        self.blocking(move |m| m.incr_refs(&p2, &keys)).await.map_err(CommitError::Failed)?;
        let manifest = next_manifest(base, path, &plan.state, wal_ref, now, self.ids.next_token());
        match self.create_manifest(path, &manifest).await {
            Ok(()) => {}
            Err(CommitError::Lost) => {
                // Definitely not committed (another writer won, or GC fenced
                // our generation and we removed it): no manifest references
                // the WAL object, so release it.
                self.release(path, vec![wal_key]).await;
                return Err(CommitError::Lost);
            }
            // Unknown outcome: the manifest may have landed and reference the
            // WAL object, so keep it (a leak at worst; repair reclaims it).
            Err(e) => return Err(e),
        }
        if let Err(e) =
            self.store.put(&path.current_key(), Bytes::from(encode_current_with_manifest(&manifest))).await
        {
            tracing::warn!(namespace = %path, error = %e, "could not update the CURRENT hint (readers will probe)");
        }
        Ok(manifest)
    }

    /// Conditional create of a manifest generation, resolving ambiguous
    /// outcomes by the commit id, then the GC-fence check.
    pub(crate) async fn create_manifest(&self, path: &NsPath, m: &Manifest) -> Result<(), CommitError> {
        let key = path.manifest_key(m.generation);
        let bytes = Bytes::from(
            m.try_encode()
                .map_err(|e| CommitError::Failed(EngineError::Internal(format!("invalid manifest: {e}"))))?,
        );
        let mut last_err = None;
        let mut created = false;
        for _ in 0..3 {
            match self.store.put_if_absent(&key, bytes.clone()).await {
                Ok(CreateOutcome::Created) => {
                    created = true;
                    break;
                }
                Ok(CreateOutcome::AlreadyExists) => {
                    let theirs = self.store.get(&key).await.map_err(fail)?;
                    let theirs = Manifest::decode(&theirs).map_err(|e| CommitError::Failed(e.into()))?;
                    if theirs.commit_id != m.commit_id {
                        return Err(CommitError::Lost);
                    }
                    // An earlier attempt of ours landed even though it reported an error.
                    created = true;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if !created {
            return Err(fail(
                last_err.unwrap_or_else(|| StoreError::Config("manifest create failed".into())),
            ));
        }
        if self.store.exists(&path.manifest_tombstone_key(m.generation)).await.map_err(fail)? {
            // GC collected this generation before our create landed: our
            // manifest is a zombie no reader will consider. Remove it (it is
            // under our own prefix and fenced) and re-apply on the newest.
            if let Err(e) = self.store.delete(&key).await {
                tracing::warn!(key, error = %e, "could not remove a fenced manifest; it leaks until repair");
            }
            return Err(CommitError::Lost);
        }
        Ok(())
    }

    /// Steps 4–5: lower refcounts, delete what reached zero (own keys only).
    pub(crate) async fn release(&self, path: &NsPath, keys: Vec<String>) {
        let project = path.project_id();
        let zeroed = match self.blocking(move |m| m.decr_refs(&project, &keys)).await {
            Ok(z) => z,
            Err(e) => {
                tracing::warn!(namespace = %path, error = %e, "refcount release failed; objects leak until repair");
                return;
            }
        };
        if self.retention_ms > 0 {
            // Retained generations may still name these objects: the GC
            // sweep deletes them once no retained generation does.
            return;
        }
        for key in zeroed.into_iter().filter(|k| path.owns(k)) {
            self.cache.invalidate(&key);
            if let Err(e) = self.store.delete(&key).await {
                tracing::warn!(key, error = %e, "delete of an unreferenced object failed; it leaks until repair");
            }
        }
    }

    /// Cache the new manifest and the idempotency keys it acknowledged in the
    /// local metadata. Not a durability step (the WAL is the source of truth
    /// for both); a failure is logged and the write still succeeds.
    async fn record_commit(&self, h: &NsHandle, committed: &Snapshot, plan: &Plan) {
        let Some(m) = committed.manifest.clone() else { return };
        let idem: Vec<(String, Vec<u8>)> = plan
            .records
            .iter()
            .filter_map(|r| {
                let key = r.idempotency_key.clone()?;
                let resp = WriteResponse {
                    counts: r.counts,
                    generation: m.generation,
                    deduplicated: false,
                    affected: None,
                    bytes_written: 0,
                };
                Some((key, serde_json::to_vec(&resp.to_json()).unwrap_or_default()))
            })
            .collect();
        let ns = h.path.to_string();
        let bytes = m.encode();
        if let Err(e) = self.blocking(move |meta| meta.record_commit(&ns, &bytes, &idem)).await {
            tracing::warn!(namespace = %h.path, error = %e, "could not record the commit in local metadata");
        }
    }

    fn answer(
        &self,
        h: &NsHandle,
        batch: Vec<Pending>,
        plan: Plan,
        base: &Snapshot,
        committed: Option<&Snapshot>,
    ) {
        let generation = committed.map_or(base.generation(), Snapshot::generation);
        let mut deferred = Vec::new();
        for (p, outcome) in batch.into_iter().zip(plan.outcomes) {
            let result = match outcome {
                Ok(PlannedOutcome::Applied { record, affected }) => {
                    let resp = WriteResponse {
                        counts: record.counts,
                        generation,
                        deduplicated: false,
                        bytes_written: record
                            .ops
                            .upserts
                            .iter()
                            .map(crate::model::Document::logical_bytes)
                            .sum(),
                        affected,
                    };
                    Ok(resp)
                }
                Ok(PlannedOutcome::Duplicate(counts)) => Ok(WriteResponse {
                    counts,
                    generation,
                    deduplicated: true,
                    affected: None,
                    bytes_written: 0,
                }),
                Ok(PlannedOutcome::Stored(bytes)) => Ok(stored_response(&bytes, generation)),
                Ok(PlannedOutcome::Deferred) => {
                    deferred.push(p);
                    continue;
                }
                Err(e) => Err(e),
            };
            let _ = p.tx.send(result);
        }
        if !deferred.is_empty() {
            let mut q = h.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for p in deferred.into_iter().rev() {
                q.push_front(p);
            }
        }
    }

    // ----- namespaces --------------------------------------------------------

    /// Delete a namespace: commit a tombstone generation, then release every
    /// object the last live generation referenced.
    pub async fn delete_namespace(&self, path: &NsPath) -> Result<(), EngineError> {
        let h = self.handle(path);
        let _g = h.commit_lock.lock().await;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let base = self.reload(&h).await?;
            let Some(bm) = base.manifest.clone().filter(|m| !m.deleted) else {
                return Err(EngineError::NotFound(format!("namespace {} not found", path.ns())));
            };
            let now = self.clock.now_ms();
            let tomb = Manifest {
                namespace: path.to_string(),
                generation: bm.generation + 1,
                commit_id: self.ids.next_token(),
                previous_generation: Some(bm.generation),
                created_at_ms: bm.created_at_ms,
                committed_at_ms: now,
                deleted: true,
                next_wal_seq: bm.next_wal_seq,
                row_id_hwm: bm.row_id_hwm,
                ..Manifest::default()
            };
            match self.create_manifest(path, &tomb).await {
                Ok(()) => {
                    let _ = self
                        .store
                        .put(&path.current_key(), Bytes::from(encode_current_with_manifest(&tomb)))
                        .await;
                    set_cached(
                        &h,
                        Snapshot { manifest: Some(Arc::new(tomb)), state: Arc::new(NsState::default()) },
                    );
                    self.release(path, bm.object_keys()).await;
                    let ns = path.to_string();
                    self.blocking(move |m| m.forget_namespace(&ns)).await?;
                    return Ok(());
                }
                Err(CommitError::Lost) => clear_cached(&h),
                Err(CommitError::Failed(e)) => {
                    clear_cached(&h);
                    return Err(e);
                }
            }
        }
        Err(EngineError::Conflict(format!(
            "namespace {} is being written concurrently; retry the delete",
            path.ns()
        )))
    }

    /// List the live namespaces of a project.
    pub async fn list_namespaces(
        &self,
        org: &str,
        project: &str,
        prefix: Option<&str>,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<NamespacePage, EngineError> {
        let page_size = page_size.clamp(1, 1000);
        let names = self.store.list_dirs(&NsPath::project_namespaces_prefix(org, project)).await?;
        let mut out = Vec::new();
        let mut next_cursor = None;
        for name in names {
            if prefix.is_some_and(|p| !name.starts_with(p)) || cursor.is_some_and(|c| name.as_str() <= c) {
                continue;
            }
            let Ok(path) = NsPath::new(org, project, &name) else { continue };
            if self.latest_manifest(&path).await?.is_none_or(|m| m.deleted) {
                continue;
            }
            if out.len() == page_size {
                next_cursor = out.last().cloned();
                break;
            }
            out.push(name);
        }
        Ok(NamespacePage { namespaces: out, next_cursor })
    }

    /// turbopuffer's metadata document of a namespace.
    pub async fn metadata(&self, path: &NsPath) -> Result<Json, EngineError> {
        let m = self
            .latest_manifest(path)
            .await?
            .filter(|m| !m.deleted)
            .ok_or_else(|| EngineError::NotFound(format!("namespace {} not found", path.ns())))?;
        let ns = path.to_string();
        let pinned = self.blocking(move |meta| meta.is_pinned(&ns)).await?;
        let mut schema = Json::Object(m.schema.clone());
        if let (Some(t), Some(o)) = (m.id_type, schema.as_object_mut()) {
            o.insert("id".into(), json!({"type": t.schema_name(), "filterable": true}));
        }
        let mut v = json!({
            "approx_logical_bytes": m.stats.approx_logical_bytes,
            "approx_row_count": m.stats.approx_row_count,
            "created_at": rfc3339(m.created_at_ms),
            "updated_at": rfc3339(m.committed_at_ms),
            "schema": schema,
            "encryption": {"mode": "default"},
            "index": index_status(&m),
            "version": m.generation,
            "distance_metric": m.distance_metric.map(|d| d.as_str()),
        });
        v["cache"] = json!({"resident_bytes": self.cache.resident_bytes(&path.prefix()), "pinned": pinned});
        if pinned {
            v["pinning"] = json!({"replicas": 1, "status": {"ready_replicas": 1, "replicas": 1, "utilization": 0.0,
                "updated_at": rfc3339(m.committed_at_ms)}});
        }
        Ok(v)
    }

    /// Pin or unpin a namespace (persisted in the local pin set).
    pub async fn set_pinned(&self, path: &NsPath, pinned: bool) -> Result<(), EngineError> {
        if self.latest_manifest(path).await?.is_none_or(|m| m.deleted) {
            return Err(EngineError::NotFound(format!("namespace {} not found", path.ns())));
        }
        let ns = path.to_string();
        let now = self.clock.now_ms();
        self.blocking(move |m| m.set_pinned(&ns, pinned, now)).await?;
        if pinned {
            self.cache.pin_prefix(&path.prefix());
            if let Some(engine) = self.me.upgrade() {
                engine.warm_in_background(path);
            }
        } else {
            self.cache.unpin_prefix(&path.prefix());
        }
        Ok(())
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

/// turbopuffer's `index` object: up-to-date when no WAL awaits compaction.
fn index_status(m: &Manifest) -> Json {
    if m.wal.is_empty() {
        json!({"status": "up-to-date"})
    } else {
        json!({"status": "updating", "unindexed_bytes": m.stats.unindexed_bytes, "unindexed_rows": m.stats.unindexed_rows})
    }
}

/// The turbopuffer schema document of a state (with the `id` type).
pub fn schema_json(s: &NsState) -> Json {
    let mut v = crate::schema::schema_to_json(&s.schema);
    if let (Some(t), Some(o)) = (s.id_type, v.as_object_mut()) {
        o.insert("id".into(), json!({"type": t.schema_name(), "filterable": true}));
    }
    v
}

fn stored_response(bytes: &[u8], generation: u64) -> WriteResponse {
    let v: Json = serde_json::from_slice(bytes).unwrap_or(Json::Null);
    let n = |k: &str| v.get(k).and_then(Json::as_u64).unwrap_or(0);
    WriteResponse {
        counts: RowCounts {
            upserted: n("rows_upserted"),
            patched: n("rows_patched"),
            deleted: n("rows_deleted"),
        },
        generation,
        deduplicated: true,
        affected: None,
        bytes_written: 0,
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", ms % 1000)
}

fn next_manifest(
    base: &Snapshot,
    path: &NsPath,
    state: &NsState,
    wal: WalRef,
    now: u64,
    commit_id: String,
) -> Manifest {
    let live = base.manifest.as_ref().filter(|m| !m.deleted);
    let mut wal_refs = live.map(|m| m.wal.clone()).unwrap_or_default();
    let seq = wal.seq;
    wal_refs.push(wal);
    let unindexed_rows = wal_refs.iter().map(|w| w.rows).sum();
    let unindexed_bytes = wal_refs.iter().map(|w| w.bytes).sum();
    Manifest {
        namespace: path.to_string(),
        generation: base.generation() + 1,
        commit_id,
        previous_generation: base.manifest.as_ref().map(|m| m.generation),
        created_at_ms: live.map_or(now, |m| m.created_at_ms),
        committed_at_ms: now,
        deleted: false,
        id_type: state.id_type,
        distance_metric: state.distance_metric,
        vector_dim: state.vector_dim,
        schema: crate::schema::schema_to_json(&state.schema).as_object().cloned().unwrap_or_default(),
        next_wal_seq: seq + 1,
        wal: wal_refs,
        segments: live.map(|m| m.segments.clone()).unwrap_or_default(),
        row_id_hwm: base.manifest.as_ref().map_or(0, |m| m.row_id_hwm),
        lineage: live.and_then(|m| m.lineage.clone()),
        stats: ManifestStats {
            approx_row_count: state.len(),
            approx_logical_bytes: state.logical_bytes,
            unindexed_rows,
            unindexed_bytes,
        },
    }
}

enum PlannedOutcome {
    Applied { record: Box<RequestRecord>, affected: Option<AffectedIds> },
    Duplicate(RowCounts),
    Stored(Vec<u8>),
    Deferred,
}

struct Plan {
    state: NsState,
    records: Vec<RequestRecord>,
    outcomes: Vec<Result<PlannedOutcome, EngineError>>,
}

pub(crate) enum CommitError {
    /// Another writer created the generation (or GC fenced it): re-apply.
    Lost,
    /// A fault; the outcome may be unknown.
    Failed(EngineError),
}

pub(crate) fn fail(e: StoreError) -> CommitError {
    CommitError::Failed(e.into())
}

fn fail_all(batch: Vec<Pending>, e: &EngineError) {
    for p in batch {
        let _ = p.tx.send(Err(clone_error(e)));
    }
}

fn clone_error(e: &EngineError) -> EngineError {
    match e {
        EngineError::InvalidInput(s) => EngineError::InvalidInput(s.clone()),
        EngineError::NotFound(s) => EngineError::NotFound(s.clone()),
        EngineError::PreconditionFailed(s) => EngineError::PreconditionFailed(s.clone()),
        EngineError::Conflict(s) => EngineError::Conflict(s.clone()),
        EngineError::Unavailable(s) => EngineError::Unavailable(s.clone()),
        EngineError::Corrupted(s) => EngineError::Corrupted(s.clone()),
        EngineError::Unsupported(s) => EngineError::Unsupported(s.clone()),
        EngineError::Internal(s) => EngineError::Internal(s.clone()),
        EngineError::Backpressure { message, retry_after_ms } => {
            EngineError::Backpressure { message: message.clone(), retry_after_ms: *retry_after_ms }
        }
    }
}

/// The reply to a queued write, if it has arrived.
fn reply(
    rx: &mut oneshot::Receiver<Result<WriteResponse, EngineError>>,
) -> Option<Result<WriteResponse, EngineError>> {
    match rx.try_recv() {
        Ok(result) => Some(result),
        // The leader that took this request was cancelled mid-commit: the
        // outcome is unknown, so report it rather than wait forever.
        Err(oneshot::error::TryRecvError::Closed) => {
            Some(Err(EngineError::Unavailable("the commit carrying this write was abandoned".into())))
        }
        Err(oneshot::error::TryRecvError::Empty) => None,
    }
}

fn take_group(h: &NsHandle) -> Vec<Pending> {
    let mut q = h.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Vec::new();
    let mut rows = 0;
    while let Some(p) = q.front() {
        let r = p.req.record.ops.direct_rows();
        if !out.is_empty() && (out.len() >= MAX_GROUP_REQUESTS || rows + r > MAX_GROUP_ROWS) {
            break;
        }
        rows += r;
        if let Some(p) = q.pop_front() {
            out.push(p);
        }
    }
    out
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
