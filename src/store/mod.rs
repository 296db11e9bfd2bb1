//! Object storage: a thin layer over the `object_store` crate that the engine
//! speaks to, chosen by URL.
//!
//! - `file:///abs/dir` or a plain path: a local directory. Writes are durable
//!   when they return: `LocalFileSystem::with_fsync(true)` fsyncs each written
//!   file and every directory entry it creates (object_store ≥ 0.14), so an
//!   acknowledged write survives power loss, not just a process kill. A write
//!   that fails leaves its key's durability unknown until it is written again
//!   in full: a later fsync never confirms it ([`durability`]).
//!   Whether an object exists is asked of the file system directly (a `stat`
//!   of the key's file, for keys that need no escaping): a strong read asks it
//!   once per query.
//! - `memory://`: in-process, for tests.
//! - `s3://bucket/prefix`: an S3-compatible bucket; endpoint, region and
//!   credentials from [`S3Options`] or the standard `AWS_*` environment.
//!
//! Wrappers over the inner store: [`breaker`] (a circuit breaker: once a call
//! goes unanswered, calls fail fast while one probe watches for the store's
//! return; installed by the daemon over every backend), [`metered`] (request
//! counts, errors and latency into the metrics, installed by the engine), and
//! for tests `fault` (injected faults) and `trace` (request recording).
//!
//! Invariants: `put_if_absent` is a conditional create (If-None-Match: * on S3,
//! create-exclusive on a local directory) and reports `AlreadyExists` without
//! touching the existing object; every error is typed so callers can tell
//! "not found" and "already exists" from faults, and "disk full" from other
//! faults ([`StoreError::is_no_space`]).
//!
//! Beside it: [`seqlog`] (objects named by a sequence number: the one
//! caller of `put_if_absent` outside this module), [`durability`] (what a
//! failed write or fsync leaves: a key of unknown durability that only a full
//! rewrite re-establishes), [`staging`] (staging files a crash left behind),
//! [`space`] (free space and ENOSPC), [`health`] (whether writes currently
//! succeed, for `/ready`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

pub mod breaker;
pub mod copy;
pub mod durability;
#[cfg(any(test, feature = "test-util"))]
pub mod fault;
pub mod health;
pub mod metered;
pub mod seqlog;
pub mod space;
pub mod staging;
#[cfg(any(test, feature = "test-util"))]
pub mod trace;

/// Errors of the object-store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// A configuration problem (bad URL, missing option).
    #[error("object store configuration: {0}")]
    Config(String),
    /// Any other failure (I/O, network, server); possibly transient.
    #[error("object store error on {key}: {source}")]
    Backend {
        /// The key involved.
        key: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// A write of the key failed on a local directory (an fsync may have
    /// failed), and nothing has written it in full since: its durability is
    /// unknown and no later fsync confirms it ([`durability`]).
    #[error(
        "durability of {key} unknown: an earlier write of it failed ({first_failure}); \
         a later fsync does not make up for a failed one, only a full rewrite does"
    )]
    DurabilityUnknown {
        /// The key.
        key: String,
        /// The error the failed write reported.
        first_failure: String,
    },
}

impl StoreError {
    /// A local I/O failure on `key`, keeping the `io::Error` as the source.
    pub fn io(key: &str, e: std::io::Error) -> StoreError {
        StoreError::Backend {
            key: key.to_owned(),
            source: object_store::Error::Generic { store: "tidepool", source: Box::new(e) },
        }
    }

    /// Whether the failure is "no space left on device" (or a full quota).
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::Backend { source, .. } => space::is_no_space(source),
            _ => false,
        }
    }
}

/// Outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The object was created by this call.
    Created,
    /// An object already existed at the key (it was not modified).
    AlreadyExists,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, ms since the epoch.
    pub last_modified_ms: u64,
}

/// Options for an S3-compatible bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (e.g. `http://127.0.0.1:8333`); None = AWS.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain http endpoints.
    pub allow_http: bool,
    /// Bound on establishing a connection (None: object_store's default).
    pub connect_timeout: Option<std::time::Duration>,
    /// Longest wait for the next byte of a response (the read timeout; None:
    /// object_store's default); with `connect_timeout` it keeps a silent
    /// uplink from stalling a caller. A whole request may take `60 ×` this
    /// (large objects), as long as bytes keep coming.
    pub request_timeout: Option<std::time::Duration>,
    /// Retries of a failed request (None: object_store's default). With a
    /// `request_timeout`, retries start only within its first quarter, so one
    /// call gives up within `connect_timeout + 1.5 × request_timeout`.
    pub max_retries: Option<usize>,
}

/// Whether byte `b` stands for itself in a local-directory store's file names
/// (`object_store::local` and the disk cache escape every other byte).
pub(crate) fn literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The in-place path of `key` in a local-directory store rooted at `root`,
/// when every component is a plain name (no escaping needed), so it is the
/// same file `object_store::local::LocalFileSystem` writes.
pub(crate) fn local_path(root: &Path, key: &str) -> Option<PathBuf> {
    let plain = |c: &str| !c.is_empty() && !c.starts_with('.') && c.bytes().all(literal_byte);
    let mut p = root.to_path_buf();
    for c in key.split('/') {
        if !plain(c) {
            return None;
        }
        p.push(c);
    }
    Some(p)
}

/// `f` (file system calls) on a blocking thread; a panic there is an I/O error here.
pub(super) async fn file_io<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

/// `data` over the file at `path` (created if missing, its directory
/// existing), then cut to its length: no staging file and no fsync.
fn overwrite_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)
}

/// What `LocalFileSystem::head` answers for the file at `path`: a regular
/// file exists; nothing there, or a directory, is "not found".
fn local_file_exists(path: &Path, key: &str) -> Result<bool, StoreError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.is_file()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::Backend {
            key: key.to_owned(),
            source: object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) },
        }),
    }
}

/// The object store the engine uses.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    description: String,
    local_root: Option<PathBuf>,
    dir_sync: durability::DirSync,
    health: Arc<health::WriteHealth>,
    /// Keys whose write failed on a local directory (shared by clones).
    unsynced: Arc<durability::Unsynced>,
    /// The breaker's state when [`Store::with_breaker`] installed one.
    circuit: Option<Arc<breaker::Circuit>>,
    /// On a local directory: hints are overwritten in place ([`Store::put_hint`]).
    hints_in_place: bool,
}

impl Store {
    /// Wrap any object store (tests use this for fault-injecting wrappers).
    pub fn new(inner: Arc<dyn ObjectStore>, description: impl Into<String>) -> Store {
        Store {
            inner,
            description: description.into(),
            local_root: None,
            dir_sync: Default::default(),
            health: Default::default(),
            unsynced: Default::default(),
            circuit: None,
            hints_in_place: false,
        }
    }

    /// An in-memory store.
    pub fn memory() -> Store {
        Store::new(Arc::new(object_store::memory::InMemory::new()), "memory://")
    }

    /// A durable local directory (created if missing).
    pub fn local(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Config(format!("cannot create store directory {}: {e}", dir.display()))
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| StoreError::Config(format!("cannot open store directory {}: {e}", dir.display())))?
            .with_fsync(true)
            .with_automatic_cleanup(false);
        Ok(Store {
            inner: Arc::new(fs),
            description: format!("file://{}", dir.display()),
            local_root: Some(dir.to_path_buf()),
            dir_sync: Default::default(),
            health: Default::default(),
            unsynced: Default::default(),
            circuit: None,
            hints_in_place: true,
        })
    }

    /// Open a store from a URL; `default_dir` is used for `None`.
    pub fn from_url(url: Option<&str>, default_dir: &Path, s3: &S3Options) -> Result<Store, StoreError> {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Store::local(default_dir);
        };
        if url == "memory://" || url == "memory" {
            return Ok(Store::memory());
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Store::local(Path::new(path));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return Store::s3(rest, s3);
        }
        if url.contains("://") {
            return Err(StoreError::Config(format!(
                "unsupported store URL {url:?}: use a directory path, file://DIR, memory:// or s3://bucket/prefix"
            )));
        }
        Store::local(Path::new(url))
    }

    fn s3(rest: &str, opts: &S3Options) -> Result<Store, StoreError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Config("s3 URL needs a bucket: s3://bucket/prefix".into()));
        }
        // The client is built below, https or not: the process's TLS provider must be in place.
        crate::tls::install();
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &opts.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        b = b.with_region(opts.region.clone().unwrap_or_else(|| "us-east-1".into()));
        if let Some(k) = &opts.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &opts.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if opts.allow_http || opts.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")) {
            b = b.with_allow_http(true);
        }
        b = bounded(b, opts);
        let s3 = b.build().map_err(|e| StoreError::Config(format!("s3 store: {e}")))?;
        let prefix = prefix.trim_matches('/');
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        Ok(Store {
            inner,
            description: format!("s3://{rest}"),
            local_root: None,
            dir_sync: Default::default(),
            health: Default::default(),
            unsynced: Default::default(),
            circuit: None,
            hints_in_place: false,
        })
    }

    /// The same store with every request counted and timed into `metrics`
    /// ([`metered::MeteredStore`]); description and local root are kept.
    pub fn metered(self, metrics: Arc<crate::metrics::Metrics>) -> Store {
        Store { inner: metered::MeteredStore::new(self.inner, metrics), ..self }
    }

    /// The same store behind a circuit breaker ([`breaker::BreakerStore`]) whose
    /// probe runs every `probe_interval` while it is open.
    pub fn with_breaker(self, probe_interval: std::time::Duration) -> Store {
        let b = breaker::BreakerStore::new(self.inner, probe_interval);
        Store { circuit: Some(Arc::clone(b.circuit())), inner: b, ..self }
    }

    /// When the breaker is open: the error its calls fail with now.
    pub fn circuit_open(&self) -> Option<breaker::Unanswered> {
        self.circuit.as_ref().and_then(|c| c.open_error())
    }

    /// The breaker's state, when one is installed.
    pub fn circuit(&self) -> Option<&Arc<breaker::Circuit>> {
        self.circuit.as_ref()
    }

    /// Human-readable description (URL).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The local directory, for a local-directory store.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// The same store (description, local directory) through a wrapper of
    /// its object store (tests wrap a local directory in a fault injector).
    /// Hints then go through the wrapper too, as durable puts, so what it
    /// injects reaches every write.
    pub fn with_inner(mut self, wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>) -> Store {
        self.inner = wrap(self.inner);
        self.hints_in_place = false;
        self
    }

    /// The underlying object store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn err(key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_owned()),
            source => StoreError::Backend { key: key.to_owned(), source },
        }
    }

    /// Note a read's outcome in [`health`] and pass it on.
    fn read_outcome<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Err(StoreError::Backend { .. }) => {
                self.health.record_read(r.as_ref().err().map(ToString::to_string))
            }
            _ => self.health.record_read(None),
        }
        r
    }

    /// Read a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let r = async {
            let r = self.inner.get(&ObjPath::from(key)).await.map_err(|e| Self::err(key, e))?;
            r.bytes().await.map_err(|e| Self::err(key, e))
        }
        .await;
        self.read_outcome(r)
    }

    /// Read the bytes `range` of an object (one ranged GET). A range past the
    /// end of the object is an error.
    pub async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let want = range.end.saturating_sub(range.start);
        let b = self.inner.get_range(&ObjPath::from(key), range).await.map_err(|e| Self::err(key, e));
        let b = self.read_outcome(b)?;
        if b.len() as u64 != want {
            return Err(StoreError::Backend {
                key: key.to_owned(),
                source: object_store::Error::Generic {
                    store: "tidepool",
                    source: format!("ranged read returned {} bytes, asked for {want}", b.len()).into(),
                },
            });
        }
        Ok(b)
    }

    /// Read a whole object, `None` if it does not exist.
    pub async fn get_opt(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self.get(key).await {
            Ok(b) => Ok(Some(b)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The file a hint is overwritten in place at: on a local directory not
    /// wrapped ([`Store::with_inner`]), for a key that needs no escaping.
    fn hint_path(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_deref().filter(|_| self.hints_in_place).and_then(|root| local_path(root, key))
    }

    /// Read a hint written by [`Store::put_hint`], `None` if it does not
    /// exist. On a local directory the file is read directly: an overwrite
    /// in place may be under way, and a torn read is for the reader's
    /// checksum to refuse, not a store error.
    pub async fn get_hint(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(path) = self.hint_path(key) else { return self.get_opt(key).await };
        self.read_outcome(match file_io(move || std::fs::read(path)).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(key, e)),
        })
    }

    /// Whether an object exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        if let Some(path) = self.local_root.as_deref().and_then(|root| local_path(root, key)) {
            // A strong read asks this once per query (is there a newer manifest?): on a local
            // directory that is one stat of a path in the dentry cache, about a microsecond, where
            // the backend's HEAD opens the file on a blocking thread and wakes the task back
            // (tens of microseconds; BENCHMARKS "the read path's fixed cost").
            return self.read_outcome(local_file_exists(&path, key));
        }
        let r = match self.inner.head(&ObjPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::err(key, e)),
        };
        self.read_outcome(r)
    }

    /// `Ok` when the store answers reads: at once when the last read got an
    /// answer, else after a probe HEAD (see [`health`]); the error says why not.
    pub async fn check_reachable(&self) -> Result<(), StoreError> {
        if self.health.unreachable().is_none() {
            return Ok(());
        }
        self.exists(health::PROBE_KEY).await.map(|_| ())
    }

    /// Why the store looks unreachable — its breaker is open, or its last
    /// read got no answer — without asking the store.
    pub fn last_read_failure(&self) -> Option<String> {
        self.circuit_open().map(|u| u.to_string()).or_else(|| self.health.unreachable())
    }

    /// Write (or overwrite) an object; durable when it returns. On a local
    /// directory a failure leaves the key's durability unknown until a put
    /// succeeds ([`durability`]).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let scope = self.write_scope(key);
        let r =
            self.inner.put(&ObjPath::from(key), PutPayload::from(data)).await.map_err(|e| Self::err(key, e));
        self.health.record(r.as_ref().err().map(ToString::to_string));
        self.after_write(key, &r, scope, true);
        r.map(|_| ())
    }

    /// Overwrite a hint (`CURRENT`), which no reader trusts alone
    /// (`storage-format.md` 4.4). On a local directory it is written over
    /// the file in place, not fsynced: no staging file, no new inode, no
    /// fsync of file or directory per commit. A power loss or a crash in the
    /// middle may leave it stale, missing or torn, as a failed put may, and
    /// readers probe past it (a concurrent reader may see it torn, the same).
    /// A key whose directory does not exist yet takes the durable put: a
    /// directory is never created without its fsync, or a durable object
    /// written into it later could vanish with it. Elsewhere (a bucket, or a
    /// wrapped store) a plain put. Success leaves the key's durability mark
    /// as it was.
    ///
    /// Once any write of this store failed (a key is marked), hints are
    /// durable puts again: a manifest whose fsync failed may vanish in a
    /// power loss and leave a gap in the generations, and only hints that
    /// name a generation past the gap lead readers across it (5.6, limit 1).
    pub async fn put_hint(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let scope = self.write_scope(key);
        let durable = scope.creates_dirs() || self.any_durability_unknown();
        let Some(path) = self.hint_path(key).filter(|_| !durable) else { return self.put(key, data).await };
        if let Some(open) = self.circuit_open() {
            return Err(Self::err(
                key,
                object_store::Error::Generic { store: "tidepool", source: Box::new(open) },
            ));
        }
        let r = file_io(move || overwrite_in_place(&path, &data)).await.map_err(|e| StoreError::io(key, e));
        self.health.record(r.as_ref().err().map(ToString::to_string));
        self.after_write(key, &r, scope, false);
        r
    }

    /// `Ok` when the store takes writes: at once when the last put succeeded,
    /// else after a probe put (see [`health`]); the error says why not.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        if self.health.failing().is_none() {
            return Ok(());
        }
        self.put(health::PROBE_KEY, Bytes::from_static(b"probe")).await?;
        self.delete(health::PROBE_KEY).await
    }

    /// Conditional create: writes only if no object exists at `key`. On a
    /// local directory a failure leaves the key's durability unknown, and
    /// finding the object does not settle it ([`durability`]).
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CreateOutcome, StoreError> {
        let scope = self.write_scope(key);
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let r = match self.inner.put_opts(&ObjPath::from(key), PutPayload::from(data), opts).await {
            Ok(_) => Ok(CreateOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Err(e) => Err(Self::err(key, e)),
        };
        self.health.record(r.as_ref().err().map(ToString::to_string));
        self.after_write(key, &r, scope, r.as_ref().is_ok_and(|c| *c == CreateOutcome::Created));
        r
    }

    /// Delete an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                self.forget(key);
                Ok(())
            }
            Err(e) => Err(Self::err(key, e)),
        }
    }

    /// Every object under `prefix` (recursively), in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let p = ObjPath::from(prefix.trim_end_matches('/'));
        let out: Result<Vec<ObjectInfo>, StoreError> = self
            .inner
            .list(Some(&p))
            .map_ok(|m| ObjectInfo {
                key: m.location.to_string(),
                size: m.size,
                last_modified_ms: u64::try_from(m.last_modified.timestamp_millis()).unwrap_or(0),
            })
            .try_collect()
            .await
            .map_err(|e| Self::err(prefix, e));
        let mut out = self.read_outcome(out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The immediate "directories" under `prefix` (names only, sorted).
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let p = ObjPath::from(prefix.trim_end_matches('/'));
        let r = self.inner.list_with_delimiter(Some(&p)).await.map_err(|e| Self::err(prefix, e));
        let r = self.read_outcome(r)?;
        let mut out: Vec<String> =
            r.common_prefixes.iter().filter_map(|cp| cp.filename().map(str::to_owned)).collect();
        out.sort();
        Ok(out)
    }
}

/// Apply the configured timeouts and retry bound to an S3 builder (set key
/// by key, so the client options `from_env` and `allow_http` chose are kept).
fn bounded(
    mut b: object_store::aws::AmazonS3Builder,
    opts: &S3Options,
) -> object_store::aws::AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey::Client;
    use object_store::ClientConfigKey::{ConnectTimeout, ReadTimeout, Timeout};
    let ms = |t: std::time::Duration| format!("{}ms", t.as_millis());
    if let Some(t) = opts.connect_timeout {
        b = b.with_config(Client(ConnectTimeout), ms(t));
    }
    if let Some(t) = opts.request_timeout {
        // A silent peer is caught by the read timeout; the total bound stays
        // generous so a large segment on a slow link still arrives.
        b = b.with_config(Client(ReadTimeout), ms(t)).with_config(Client(Timeout), ms(t.saturating_mul(60)));
    }
    if opts.max_retries.is_some() || opts.request_timeout.is_some() {
        b = b.with_retry(retry_config(opts));
    }
    b
}

/// The retry bound: object_store starts a retry only while the call is younger
/// than `retry_timeout`. A quarter of the read timeout (backoff capped alike)
/// still retries fast failures (a reset connection, a 5xx) but never a call
/// that already waited out a read timeout, so a call against a silent bucket
/// ends within `connect + 1.5 × read` timeout (was `4 ×`: 40 s by default).
/// The price: a streamed body cut after that first quarter is not resumed
/// (the caller's next read fetches it again).
fn retry_config(opts: &S3Options) -> object_store::RetryConfig {
    let mut retry = object_store::RetryConfig::default();
    if let Some(n) = opts.max_retries {
        retry.max_retries = n;
    }
    if let Some(t) = opts.request_timeout {
        retry.retry_timeout = t / 4;
        retry.backoff.max_backoff = retry.backoff.max_backoff.min(t / 4);
    }
    retry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conditional_create_refuses_second_writer_on_local_dir() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::local(dir.path()).unwrap();
        let k = "a/b/namespaces/n/manifests/00000000000000000001.json";
        assert_eq!(s.put_if_absent(k, Bytes::from_static(b"one")).await.unwrap(), CreateOutcome::Created);
        assert_eq!(
            s.put_if_absent(k, Bytes::from_static(b"two")).await.unwrap(),
            CreateOutcome::AlreadyExists
        );
        assert_eq!(&s.get(k).await.unwrap()[..], b"one");
        assert!(matches!(s.get("a/missing").await, Err(StoreError::NotFound(_))));
        assert!(s.exists(k).await.unwrap());
        s.delete(k).await.unwrap();
        s.delete(k).await.unwrap();
        assert!(!s.exists(k).await.unwrap());
    }

    #[test]
    fn local_paths_only_for_plain_keys() {
        let root = Path::new("/r");
        assert_eq!(local_path(root, "a/b.seg"), Some(PathBuf::from("/r/a/b.seg")));
        for bad in ["a/../b", "a b", "a//b", ".x/y", "a/%2F", "", "a/"] {
            assert_eq!(local_path(root, bad), None, "{bad:?}");
        }
    }

    /// Invariant: on a local directory `exists` (a stat for plain keys) answers what the
    /// backend's HEAD answers: written objects exist, missing ones and directories do not,
    /// and keys the backend escapes are still asked of the backend.
    #[tokio::test]
    async fn local_exists_answers_like_the_backends_head() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::local(dir.path()).unwrap();
        for k in ["o/p/namespaces/n/manifests/00000000000000000007.mf", "o/p/odd name/x"] {
            s.put(k, Bytes::from_static(b"m")).await.unwrap();
        }
        let head = |k: &str| {
            let inner = Arc::clone(&s.inner);
            let k = ObjPath::from(k);
            async move { inner.head(&k).await.is_ok() }
        };
        for k in [
            "o/p/namespaces/n/manifests/00000000000000000007.mf",
            "o/p/namespaces/n/manifests/00000000000000000008.mf",
            "o/p/namespaces/n/manifests",
            "o/p/namespaces",
            "o/p/odd name/x",
            "o/p/odd name/y",
        ] {
            assert_eq!(s.exists(k).await.unwrap(), head(k).await, "{k}");
        }
        assert!(s.exists("o/p/namespaces/n/manifests/00000000000000000007.mf").await.unwrap());
        assert!(s.exists("o/p/odd name/x").await.unwrap(), "an escaped key, through the backend");
    }

    #[tokio::test]
    async fn list_and_list_dirs() {
        let s = Store::memory();
        for k in ["o/p/namespaces/a/CURRENT", "o/p/namespaces/b/wal/1", "o/p/namespaces/b/wal/2"] {
            s.put(k, Bytes::from_static(b"x")).await.unwrap();
        }
        assert_eq!(s.list_dirs("o/p/namespaces/").await.unwrap(), vec!["a", "b"]);
        let keys: Vec<_> = s.list("o/p/namespaces/b/").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["o/p/namespaces/b/wal/1", "o/p/namespaces/b/wal/2"]);
    }
}
