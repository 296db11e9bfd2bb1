//! Local metadata in one redb database (`meta.redb` in the data dir) and the
//! data-dir lock. Tables are specified in `storage-format.md`, "Local metadata".
//!
//! Invariants:
//! - One process at a time owns a data dir: [`DataDirLock`] holds an
//!   exclusive OS lock on `LOCK` for the life of the process; a second
//!   process fails at once with a message naming the holder.
//! - Refcounts are only ever raised before the manifest that needs them is
//!   committed and lowered after the manifest that dropped them is committed,
//!   so a crash leaves counts too high (a leak), never too low.
//! - Every method is one redb write transaction (durable on return, but for
//!   [`Meta::record_commit`]'s hints, made durable by the next durable one)
//!   or one read transaction; callers in async code run them on a blocking
//!   thread.
//! - An I/O error never latches the node: redb refuses every later write
//!   after one ("Previous I/O error occurred"), so the failed database is
//!   closed and the next call reopens it (redb's recovery on open restores the
//!   last committed transaction), at most once per [`REOPEN_INTERVAL`]. Until
//!   a reopen succeeds every call fails with [`MetaError::Storage`] and
//!   [`Meta::writable`] says why; nothing committed before the error is lost.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

mod sync;
pub use sync::{HeldWal, Released};

/// Current version of the local metadata layout.
pub const META_FORMAT_VERSION: u64 = 1;

const REFCOUNTS: TableDefinition<&str, u64> = TableDefinition::new("refcounts");
const PINS: TableDefinition<&str, u64> = TableDefinition::new("pins");
const MANIFEST_CACHE: TableDefinition<&str, &[u8]> = TableDefinition::new("manifest_cache");
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SYNC: TableDefinition<&str, &[u8]> = TableDefinition::new("sync");

/// Separator between the two parts of a composite key (never in names/keys).
const SEP: char = '\u{0}';

/// Errors of the local metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Another process holds the data dir.
    #[error("data dir {dir} is locked by another tidepool process ({holder})")]
    Locked {
        /// The data dir.
        dir: PathBuf,
        /// What the lock file says about the holder.
        holder: String,
    },
    /// The metadata database is of an unknown version.
    #[error("metadata database format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// Found.
        found: u64,
        /// Supported.
        supported: u64,
    },
    /// I/O error on the data dir.
    #[error("data dir I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A redb failure that is not I/O (a bug or a corrupted file).
    #[error("metadata database error: {0}")]
    Db(String),
    /// An I/O error in `meta.redb` (disk full, EIO): the database is closed
    /// and reopened on a later call once the condition clears.
    #[error("metadata database I/O error (reopened once the disk recovers): {0}")]
    Storage(#[source] std::io::Error),
}

impl MetaError {
    /// Whether this error leaves the open database unusable (redb latches
    /// after an I/O error until it is reopened).
    fn needs_reopen(&self) -> bool {
        matches!(self, MetaError::Storage(_))
    }
}

fn db_err(e: impl Into<redb::Error>) -> MetaError {
    match e.into() {
        redb::Error::Io(io) => MetaError::Storage(io),
        redb::Error::PreviousIo => {
            MetaError::Storage(std::io::Error::other("an earlier I/O error left the database unusable"))
        }
        other => MetaError::Db(other.to_string()),
    }
}

/// Least time between two attempts to reopen a failed database.
pub const REOPEN_INTERVAL: Duration = Duration::from_millis(500);

type OpenFn = dyn Fn(&Path) -> Result<redb::Database, redb::DatabaseError> + Send + Sync;

/// How `meta.redb` is opened (and reopened after an I/O error): the file in
/// the data dir by default; tests open it through a fault-injecting
/// [`redb::StorageBackend`].
#[derive(Clone)]
pub struct MetaOpener(Arc<OpenFn>);

impl MetaOpener {
    /// An opener from a function of the data dir.
    pub fn new(
        f: impl Fn(&Path) -> Result<redb::Database, redb::DatabaseError> + Send + Sync + 'static,
    ) -> Self {
        MetaOpener(Arc::new(f))
    }

    /// `meta.redb` in the data dir, created if missing.
    pub fn file() -> Self {
        MetaOpener::new(|dir| redb::Database::create(dir.join("meta.redb")))
    }
}

impl Default for MetaOpener {
    fn default() -> Self {
        MetaOpener::file()
    }
}

impl std::fmt::Debug for MetaOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetaOpener")
    }
}

fn composite(a: &str, b: &str) -> String {
    format!("{a}{SEP}{b}")
}

/// Bounds `[a\0, a\x01)` of all composite keys starting with `a`.
fn scope(a: &str) -> (String, String) {
    (format!("{a}{SEP}"), format!("{a}\u{1}"))
}

/// Lower the refcount of each key by one inside a write transaction;
/// returns the keys that reached zero (their rows removed).
fn decr_in(
    t: &mut redb::Table<'_, &'static str, u64>,
    project: &str,
    keys: &[String],
) -> Result<Vec<String>, MetaError> {
    let mut zeroed = Vec::new();
    for k in keys {
        let ck = composite(project, k);
        let cur = t.get(ck.as_str()).map_err(db_err)?.map(|v| v.value());
        match cur {
            Some(n) if n > 1 => {
                t.insert(ck.as_str(), n - 1).map_err(db_err)?;
            }
            Some(_) => {
                t.remove(ck.as_str()).map_err(db_err)?;
                zeroed.push(k.clone());
            }
            // Unknown key: a leak from before a crash or already released;
            // never report it as deletable, repair decides.
            None => {}
        }
    }
    Ok(zeroed)
}

/// The exclusive lock on a data dir.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DataDirLock {
    /// Take the lock or fail at once naming the holder.
    pub fn acquire(dir: &Path, clock_ms: u64) -> Result<DataDirLock, MetaError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("LOCK");
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder =
                    if holder.trim().is_empty() { "unknown holder".into() } else { holder.trim().to_owned() };
                return Err(MetaError::Locked { dir: dir.to_path_buf(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(MetaError::Io(e)),
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "pid={} started_at_ms={clock_ms}", std::process::id())?;
        file.sync_all()?;
        Ok(DataDirLock { _file: file, path })
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The local metadata database.
pub struct Meta {
    dir: PathBuf,
    opener: MetaOpener,
    /// None while closed after an I/O error (until a reopen succeeds).
    db: RwLock<Option<redb::Database>>,
    /// Set by an I/O error; cleared by a successful reopen.
    failed: AtomicBool,
    last_reopen: Mutex<Option<Instant>>,
    /// Set by [`Meta::record_commit`]'s non-durable transaction; cleared by
    /// [`Meta::settle_hints`].
    hints_unsettled: AtomicBool,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta").field("dir", &self.dir).field("failed", &self.failed).finish_non_exhaustive()
    }
}

impl Meta {
    /// Open (or create) `meta.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Meta, MetaError> {
        Meta::open_with(dir, MetaOpener::file())
    }

    /// Open the database of `dir` with `opener` (kept for reopening).
    pub fn open_with(dir: &Path, opener: MetaOpener) -> Result<Meta, MetaError> {
        let db = open_checked(dir, &opener)?;
        Ok(Meta {
            dir: dir.to_path_buf(),
            opener,
            db: RwLock::new(Some(db)),
            failed: AtomicBool::new(false),
            last_reopen: Mutex::new(None),
            hints_unsettled: AtomicBool::new(false),
        })
    }

    /// Ok when the database takes writes now; after an I/O error this tries
    /// to reopen it (at most once per [`REOPEN_INTERVAL`]) and returns why it
    /// cannot yet.
    pub fn writable(&self) -> Result<(), MetaError> {
        self.recover()
    }

    /// Reopen the database if an I/O error closed it (rate-limited).
    fn recover(&self) -> Result<(), MetaError> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !self.failed.load(Ordering::Acquire) {
            return Ok(()); // another caller reopened it meanwhile
        }
        let mut last = self.last_reopen.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
            return Err(closed());
        }
        *last = Some(Instant::now());
        // Drop the failed handle first: it holds the file's lock.
        *db = None;
        let reopened = open_checked(&self.dir, &self.opener)?;
        *db = Some(reopened);
        self.failed.store(false, Ordering::Release);
        tracing::info!(dir = %self.dir.display(), "metadata database reopened after an I/O error");
        Ok(())
    }

    /// Run `f` on the open database; an I/O error closes it for a reopen.
    fn with<T>(&self, f: impl FnOnce(&redb::Database) -> Result<T, MetaError>) -> Result<T, MetaError> {
        self.recover()?;
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or_else(closed)?;
        let out = f(db);
        if let Err(e) = &out {
            if e.needs_reopen() && !self.failed.swap(true, Ordering::AcqRel) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "metadata database I/O error; it will be reopened");
            }
        }
        out
    }
}

fn closed() -> MetaError {
    MetaError::Storage(std::io::Error::other("closed after an I/O error; reopening"))
}

fn open_checked(dir: &Path, opener: &MetaOpener) -> Result<redb::Database, MetaError> {
    let db = (opener.0)(dir).map_err(db_err)?;
    check_version(&db)?;
    Ok(db)
}

fn check_version(db: &redb::Database) -> Result<(), MetaError> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut t = txn.open_table(META).map_err(db_err)?;
        let found = t.get("format_version").map_err(db_err)?.map(|v| {
            let b = v.value();
            b.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX)
        });
        match found {
            None => {
                t.insert("format_version", META_FORMAT_VERSION.to_le_bytes().as_slice()).map_err(db_err)?;
            }
            Some(v) if v == META_FORMAT_VERSION => {}
            Some(v) => {
                return Err(MetaError::UnsupportedVersion { found: v, supported: META_FORMAT_VERSION })
            }
        }
        for def in [REFCOUNTS, PINS] {
            txn.open_table(def).map_err(db_err)?;
        }
        txn.open_table(MANIFEST_CACHE).map_err(db_err)?;
        txn.open_table(IDEMPOTENCY).map_err(db_err)?;
        txn.open_table(SYNC).map_err(db_err)?;
        txn.open_table(sync::SYNC_FLOORS).map_err(db_err)?;
        txn.open_table(sync::SYNC_HOLDS).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

impl Meta {
    /// Raise the refcount of each key by one (a key listed twice gets +2).
    pub fn incr_refs(&self, project: &str, keys: &[String]) -> Result<(), MetaError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(REFCOUNTS).map_err(db_err)?;
                for k in keys {
                    let ck = composite(project, k);
                    let cur = t.get(ck.as_str()).map_err(db_err)?.map_or(0, |v| v.value());
                    t.insert(ck.as_str(), cur.saturating_add(1)).map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)
        })
    }

    /// Lower the refcount of each key by one; returns the keys that reached
    /// zero (their rows are removed), which the caller may now delete.
    pub fn decr_refs(&self, project: &str, keys: &[String]) -> Result<Vec<String>, MetaError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            let zeroed = decr_in(&mut txn.open_table(REFCOUNTS).map_err(db_err)?, project, keys)?;
            txn.commit().map_err(db_err)?;
            Ok(zeroed)
        })
    }

    /// The refcount of one key (0 if untracked).
    pub fn refcount(&self, project: &str, key: &str) -> Result<u64, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(REFCOUNTS).map_err(db_err)?;
            Ok(t.get(composite(project, key).as_str()).map_err(db_err)?.map_or(0, |v| v.value()))
        })
    }

    /// Every tracked key of a project with its count.
    pub fn refcounts(&self, project: &str) -> Result<BTreeMap<String, u64>, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(REFCOUNTS).map_err(db_err)?;
            let (lo, hi) = scope(project);
            let mut out = BTreeMap::new();
            for row in t.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                if let Some((_, key)) = k.value().split_once(SEP) {
                    out.insert(key.to_owned(), v.value());
                }
            }
            Ok(out)
        })
    }

    /// Replace a project's refcounts wholesale (repair).
    pub fn replace_refcounts(&self, project: &str, counts: &BTreeMap<String, u64>) -> Result<(), MetaError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(REFCOUNTS).map_err(db_err)?;
                let (lo, hi) = scope(project);
                t.retain_in(lo.as_str()..hi.as_str(), |_, _| false).map_err(db_err)?;
                for (k, n) in counts.iter().filter(|(_, n)| **n > 0) {
                    t.insert(composite(project, k).as_str(), *n).map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)
        })
    }

    /// Pin or unpin a namespace.
    pub fn set_pinned(&self, ns: &str, pinned: bool, at_ms: u64) -> Result<(), MetaError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(PINS).map_err(db_err)?;
                if pinned {
                    t.insert(ns, at_ms).map_err(db_err)?;
                } else {
                    t.remove(ns).map_err(db_err)?;
                }
            }
            txn.commit().map_err(db_err)
        })
    }

    /// Whether a namespace is pinned.
    pub fn is_pinned(&self, ns: &str) -> Result<bool, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS).map_err(db_err)?;
            Ok(t.get(ns).map_err(db_err)?.is_some())
        })
    }

    /// All pinned namespaces.
    pub fn pins(&self) -> Result<Vec<String>, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(PINS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(db_err)? {
                out.push(row.map_err(db_err)?.0.value().to_owned());
            }
            Ok(out)
        })
    }

    /// Record a commit: the newest manifest bytes of a namespace and the
    /// idempotency records of the requests it acknowledged, in one transaction
    /// that is **not durable on its own** (no fsync): both are hints whose
    /// source of truth is the committed WAL batch (`storage-format.md` 6.1),
    /// and the next durable transaction — the next commit raises its refcounts
    /// in one, before its manifest — makes this one durable too. A crash
    /// before that loses it, and the namespace's load restores the keys from
    /// the WAL batches of its newest generation; a commit that folds batches
    /// away first settles every record ([`Meta::settle_hints`]).
    pub fn record_commit(
        &self,
        ns: &str,
        manifest: &[u8],
        idempotency: &[(String, Vec<u8>)],
    ) -> Result<(), MetaError> {
        self.with(|db| {
            let mut txn = db.begin_write().map_err(db_err)?;
            txn.set_durability(redb::Durability::None).map_err(db_err)?;
            {
                let mut t = txn.open_table(MANIFEST_CACHE).map_err(db_err)?;
                t.insert(ns, manifest).map_err(db_err)?;
                let mut i = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
                for (key, response) in idempotency {
                    i.insert(composite(ns, key).as_str(), response.as_slice()).map_err(db_err)?;
                }
            }
            // Set while the transaction is open: write transactions are serial, so a settle
            // that clears the flag afterwards is durable over this one.
            self.hints_unsettled.store(true, Ordering::Release);
            txn.commit().map_err(db_err)
        })
    }

    /// Make every [`Meta::record_commit`] so far durable: one empty durable
    /// transaction, or nothing when none was recorded since the last settle.
    pub fn settle_hints(&self) -> Result<(), MetaError> {
        if !self.hints_unsettled.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let settled = self.with(|db| db.begin_write().map_err(db_err)?.commit().map_err(db_err));
        if settled.is_err() {
            self.hints_unsettled.store(true, Ordering::Release);
        }
        settled
    }

    /// The cached newest manifest bytes of a namespace.
    pub fn cached_manifest(&self, ns: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(MANIFEST_CACHE).map_err(db_err)?;
            Ok(t.get(ns).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
    }

    /// Forget everything kept about a namespace (manifest cache, idempotency
    /// records, pin).
    pub fn forget_namespace(&self, ns: &str) -> Result<(), MetaError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                txn.open_table(MANIFEST_CACHE).map_err(db_err)?.remove(ns).map_err(db_err)?;
                txn.open_table(PINS).map_err(db_err)?.remove(ns).map_err(db_err)?;
                let (lo, hi) = scope(ns);
                txn.open_table(IDEMPOTENCY)
                    .map_err(db_err)?
                    .retain_in(lo.as_str()..hi.as_str(), |_, _| false)
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
    }

    /// The stored record of an idempotency key (its bytes: the engine decodes
    /// them with `format::idempotency`, a layer above this one).
    pub fn idempotency(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
            Ok(t.get(composite(ns, key).as_str()).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
    }
}

impl Meta {
    fn get_bytes(&self, def: TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(def).map_err(db_err)?;
            Ok(t.get(key).map_err(db_err)?.map(|v| v.value().to_vec()))
        })
    }

    fn put_bytes(&self, def: TableDefinition<&str, &[u8]>, key: &str, value: &[u8]) -> Result<(), MetaError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(def).map_err(db_err)?.insert(key, value).map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_rise_fall_and_report_zero() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(dir.path()).unwrap();
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        m.incr_refs("o/p", &keys).unwrap();
        m.incr_refs("o/p", &keys[..1]).unwrap();
        m.incr_refs("o/q", &keys[..1]).unwrap();
        assert_eq!(m.refcount("o/p", "k1").unwrap(), 2);
        assert_eq!(m.decr_refs("o/p", &keys).unwrap(), vec!["k2".to_owned()]);
        assert_eq!(m.decr_refs("o/p", &keys).unwrap(), vec!["k1".to_owned()]);
        assert_eq!(m.refcount("o/q", "k1").unwrap(), 1, "projects are separate scopes");
        assert!(m.refcounts("o/p").unwrap().is_empty());
    }

    #[test]
    fn metadata_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.set_pinned("o/p/n", true, 5).unwrap();
            m.record_commit("o/p/n", b"manifest", &[("key1".into(), b"resp".to_vec())]).unwrap();
        }
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.pins().unwrap(), vec!["o/p/n".to_owned()]);
        assert_eq!(m.cached_manifest("o/p/n").unwrap().unwrap(), b"manifest");
        assert_eq!(m.idempotency("o/p/n", "key1").unwrap().unwrap(), b"resp");
        m.forget_namespace("o/p/n").unwrap();
        assert!(m.idempotency("o/p/n", "key1").unwrap().is_none());
    }

    /// What a process crash at this moment leaves: the database file as the page cache holds it,
    /// opened by another process (redb's recovery runs on open).
    fn crash_image(live: &Path) -> (tempfile::TempDir, Meta) {
        let image = tempfile::tempdir().unwrap();
        std::fs::copy(live.join("meta.redb"), image.path().join("meta.redb")).unwrap();
        let m = Meta::open(image.path()).unwrap();
        (image, m)
    }

    /// Invariant: a commit record is not durable on its own, and `settle_hints` makes every
    /// record so far durable (what a commit that folds WAL batches relies on for their keys).
    #[test]
    fn commit_records_are_durable_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(dir.path()).unwrap();
        m.incr_refs("o/p", &["wal1".to_owned()]).unwrap();
        m.record_commit("o/p/n", b"manifest 1", &[("key1".into(), b"resp".to_vec())]).unwrap();
        assert_eq!(m.idempotency("o/p/n", "key1").unwrap().unwrap(), b"resp", "visible in the process");
        let (_i, crashed) = crash_image(dir.path());
        assert_eq!(crashed.refcount("o/p", "wal1").unwrap(), 1, "a raise is durable");
        assert!(crashed.idempotency("o/p/n", "key1").unwrap().is_none(), "a record alone is not");

        m.settle_hints().unwrap();
        m.settle_hints().unwrap(); // nothing recorded since: no transaction
        let (_i, crashed) = crash_image(dir.path());
        assert_eq!(crashed.idempotency("o/p/n", "key1").unwrap().unwrap(), b"resp");
        assert_eq!(crashed.cached_manifest("o/p/n").unwrap().unwrap(), b"manifest 1");
    }

    #[test]
    fn data_dir_lock_is_exclusive_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), 42).unwrap();
        let err = DataDirLock::acquire(dir.path(), 43).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("locked") && msg.contains(&format!("pid={}", std::process::id())), "{msg}");
        drop(first);
        DataDirLock::acquire(dir.path(), 44).unwrap();
    }
}
