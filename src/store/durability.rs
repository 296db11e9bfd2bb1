//! What a failed fsync means on a local directory store (`storage-format.md`
//! 5.1 step 3 and 5.6): the durability of what it covered is unknown, for
//! good.
//!
//! The local directory store writes an object to a staging file, fsyncs it,
//! publishes it by a hard link (or rename) and fsyncs the parent directory
//! (creating and fsyncing missing directories first). When any of those
//! fsyncs fails, the write reports an error, but the object may be visible
//! (the entry is in the page cache) and still vanish on power loss. On Linux
//! a failed fsync may also drop the dirty state it failed to write, so a
//! later fsync of the same file or directory can succeed with nothing on disk
//! (PostgreSQL's "fsyncgate"): a second fsync proves nothing about the first.
//!
//! Invariants:
//! - Every key whose write on a local directory reported an error is marked
//!   durability-unknown ([`Unsynced`]), with the first error; we cannot tell
//!   from `object_store`'s error which step failed, so any failed write
//!   counts. Only a later write of the same key that succeeds in full (a
//!   fresh staging file fsynced, published, the directory fsynced: a put, or
//!   a conditional create that created) clears the mark, and so does a
//!   delete. A conditional create that finds the object leaves it marked.
//! - [`Store::sync_entry`] refuses a marked key ([`StoreError::DurabilityUnknown`])
//!   without fsyncing: no later fsync confirms an object whose write failed.
//!   A failure of its own fsync marks the key. On a bucket or in memory
//!   nothing is marked and `sync_entry` is `Ok` at once (an acknowledged PUT
//!   is durable there, and so is one whose answer was lost).
//! - Directories a failed write created are removed again when they are
//!   still empty ([`Store::drop_new_dirs`]): their own entries' fsync may be
//!   what failed, and nothing fsyncs a directory's entry again once the
//!   directory exists; removed, the next write creates and fsyncs them
//!   afresh. A directory that holds an object is kept: the object was
//!   published only after its directories' fsyncs succeeded.
//! - The marks live in memory, shared by every clone of the store; a restart
//!   forgets them, which is safe because nothing acknowledged relies on a
//!   marked object (the commit that hit it failed, and later generations are
//!   new objects, written in full).
//! - The directory fsync of `sync_entry` is injectable ([`DirSync`]), so
//!   tests can make it fail the way a real disk does; the default is the
//!   real one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Store, StoreError};

type SyncFn = dyn Fn(&Path) -> std::io::Result<()> + Send + Sync;

/// How a directory is fsynced (the real `fsync(2)` by default).
#[derive(Clone)]
pub struct DirSync(Arc<SyncFn>);

impl DirSync {
    /// A directory fsync from a function (tests inject failures with it).
    pub fn new(f: impl Fn(&Path) -> std::io::Result<()> + Send + Sync + 'static) -> Self {
        DirSync(Arc::new(f))
    }

    /// The real one: open the directory and `fsync` it.
    pub fn fsync() -> Self {
        DirSync::new(|dir| std::fs::File::open(dir)?.sync_all())
    }

    fn sync(&self, dir: &Path) -> std::io::Result<()> {
        (self.0)(dir)
    }
}

impl Default for DirSync {
    fn default() -> Self {
        DirSync::fsync()
    }
}

impl std::fmt::Debug for DirSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirSync")
    }
}

/// The keys of a local store whose durability is unknown, each with the
/// error its failed write reported.
#[derive(Debug, Default)]
pub struct Unsynced(Mutex<HashMap<String, String>>);

impl Unsynced {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (each operation is one insert or remove): keep using it.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mark `key` (the first error is kept: it is the one that mattered).
    fn mark(&self, key: &str, why: String) {
        self.map().entry(key.to_owned()).or_insert(why);
    }

    fn clear(&self, key: &str) {
        self.map().remove(key);
    }

    fn get(&self, key: &str) -> Option<String> {
        self.map().get(key).cloned()
    }

    /// Whether no key is marked.
    pub(super) fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// What a local write must know before it starts: the directories it may
/// create (deepest first), empty when the key's directory exists.
#[derive(Debug, Default)]
pub(super) struct WriteScope {
    new_dirs: Vec<PathBuf>,
}

impl WriteScope {
    /// Whether the write creates a directory.
    pub(super) fn creates_dirs(&self) -> bool {
        !self.new_dirs.is_empty()
    }
}

impl Store {
    /// The same store with another directory fsync (tests).
    pub fn with_dir_sync(mut self, sync: DirSync) -> Store {
        self.dir_sync = sync;
        self
    }

    /// Whether `key`'s durability is unknown: a write of it failed on this
    /// local directory and nothing has written it in full since.
    pub fn durability_unknown(&self, key: &str) -> bool {
        self.unsynced.get(key).is_some()
    }

    /// Whether the store holds `key` durably: it exists and its durability
    /// is not unknown (a copy that skips objects already present asks this,
    /// so an object whose write failed is written again in full).
    pub async fn holds_durably(&self, key: &str) -> Result<bool, StoreError> {
        Ok(!self.durability_unknown(key) && self.exists(key).await?)
    }

    /// Make the directory entry of `key` durable: on a local directory, fsync
    /// the directory holding it; elsewhere nothing is needed. A key whose
    /// write failed is refused without an fsync: a later fsync does not make
    /// up for a failed one.
    pub async fn sync_entry(&self, key: &str) -> Result<(), StoreError> {
        let Some(dir) = self.entry_dir(key) else { return Ok(()) };
        self.check_durability(key)?;
        let sync = self.dir_sync.clone();
        let r = super::file_io(move || sync.sync(&dir)).await.map_err(|e| StoreError::io(key, e));
        self.after_write(key, &r, WriteScope::default(), false);
        r
    }

    /// `Err` when `key`'s durability is unknown.
    fn check_durability(&self, key: &str) -> Result<(), StoreError> {
        match self.unsynced.get(key) {
            Some(first_failure) => Err(StoreError::DurabilityUnknown { key: key.to_owned(), first_failure }),
            None => Ok(()),
        }
    }

    /// Whether a write of this store failed and was not written again in
    /// full since (some key is marked): hints are then kept durable
    /// ([`Store::put_hint`], [`crate::meta::Meta::record_commit`]'s caller).
    pub fn any_durability_unknown(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Before a write of `key`: which directories it may create (local
    /// directories only; one `stat` when the key's directory exists).
    pub(super) fn write_scope(&self, key: &str) -> WriteScope {
        let Some(mut dir) = self.entry_dir(key) else { return WriteScope::default() };
        let mut new_dirs = Vec::new();
        while !dir.exists() {
            new_dirs.push(dir.clone());
            match dir.parent() {
                Some(p) => dir = p.to_path_buf(),
                None => break,
            }
        }
        WriteScope { new_dirs }
    }

    /// After a write of `key` (`durable`: whether a success wrote it in
    /// full): on a local directory, mark it on a failure (and remove the
    /// directories the write created while they are empty), clear it on a
    /// full success.
    pub(super) fn after_write<T>(
        &self,
        key: &str,
        r: &Result<T, StoreError>,
        scope: WriteScope,
        durable: bool,
    ) {
        if self.local_root.is_none() {
            return;
        }
        match r {
            Ok(_) if durable => self.unsynced.clear(key),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(key, error = %e, "a write failed on the local store; its durability stays unknown until it is written again in full");
                self.unsynced.mark(key, e.to_string());
                Self::drop_new_dirs(scope);
            }
        }
    }

    /// Remove the directories a failed write created, deepest first, while
    /// they are empty (a directory someone wrote into is kept).
    fn drop_new_dirs(scope: WriteScope) {
        for dir in scope.new_dirs {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }

    /// Forget what is known of `key` (it was deleted).
    pub(super) fn forget(&self, key: &str) {
        self.unsynced.clear(key);
    }

    /// The local directory that holds `key`'s entry (None: not a local store).
    fn entry_dir(&self, key: &str) -> Option<PathBuf> {
        let root = self.local_root()?;
        let path = key.rsplit_once('/').map_or_else(|| root.to_path_buf(), |(dir, _)| root.join(dir));
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A local store whose directory fsync fails the next `fail` times, and
    /// the directories it fsynced.
    fn failing_sync(dir: &Path, fail: usize) -> (Store, Arc<Mutex<Vec<PathBuf>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(fail));
        let s = seen.clone();
        let store = Store::local(dir).unwrap().with_dir_sync(DirSync::new(move |d| {
            s.lock().unwrap().push(d.to_path_buf());
            if fail.load(Ordering::SeqCst) > 0 {
                fail.fetch_sub(1, Ordering::SeqCst);
                return Err(std::io::Error::from_raw_os_error(5));
            }
            Ok(())
        }));
        (store, seen)
    }

    #[tokio::test]
    async fn sync_entry_fsyncs_the_keys_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seen) = failing_sync(dir.path(), 0);
        store.sync_entry("o/p/namespaces/n/manifests/1.json").await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![dir.path().join("o/p/namespaces/n/manifests")]);
        Store::memory().sync_entry("a/b").await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_fsync_is_never_confirmed_by_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let (store, seen) = failing_sync(dir.path(), 1);
        let key = "o/p/namespaces/n/manifests/1.json";
        assert!(store.sync_entry(key).await.is_err(), "EIO is reported");
        assert!(store.durability_unknown(key));
        // The disk answers again, but the key is refused without an fsync.
        let again = store.sync_entry(key).await;
        assert!(matches!(again, Err(StoreError::DurabilityUnknown { .. })), "{again:?}");
        assert_eq!(seen.lock().unwrap().len(), 1, "no second fsync was trusted (or made)");
        // Only a full rewrite re-establishes it.
        store.put(key, Bytes::from_static(b"again")).await.unwrap();
        assert!(!store.durability_unknown(key));
        store.sync_entry(key).await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_marks_its_key_and_a_full_write_or_delete_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let fault = std::sync::OnceLock::new();
        let store = Store::local(dir.path()).unwrap().with_inner(|inner| {
            let f = crate::store::fault::FaultStore::new(inner);
            let _ = fault.set(f.clone());
            f
        });
        let fault = fault.get().unwrap();
        let key = "o/p/namespaces/n/wal/1.wal";
        fault.fail_next_put("wal/1.wal", crate::store::fault::Fault::After);
        assert!(store.put(key, Bytes::from_static(b"one")).await.is_err());
        assert!(store.durability_unknown(key), "landed, durability unknown");
        assert!(store.exists(key).await.unwrap() && !store.holds_durably(key).await.unwrap());
        let created = store.put_if_absent(key, Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(created, crate::store::CreateOutcome::AlreadyExists);
        assert!(store.durability_unknown(key), "finding the object proves nothing");
        store.put(key, Bytes::from_static(b"one")).await.unwrap();
        assert!(store.holds_durably(key).await.unwrap(), "written again in full");
        fault.fail_next_put("wal/1.wal", crate::store::fault::Fault::After);
        assert!(store.put(key, Bytes::from_static(b"two")).await.is_err());
        store.delete(key).await.unwrap();
        assert!(!store.durability_unknown(key), "deleted: nothing left to doubt");
        assert!(!Store::memory().durability_unknown(key));
    }

    /// Invariant: a hint is readable once written, takes the durable put (which clears a mark)
    /// while any key of the store is marked, and goes through a wrapper installed over the store,
    /// so an injected fault reaches it.
    #[tokio::test]
    async fn hints_are_durable_puts_while_a_write_is_in_doubt_and_reach_wrappers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let (current, manifest) = ("o/p/namespaces/n/CURRENT", "o/p/namespaces/n/manifests/1.json");
        store.put_hint(current, Bytes::from_static(b"1")).await.unwrap(); // a new directory: durable
        store.put_hint(current, Bytes::from_static(b"2")).await.unwrap();
        assert_eq!(&store.get(current).await.unwrap()[..], b"2");
        assert!(!store.any_durability_unknown());

        store.unsynced.mark(manifest, "EIO".into());
        store.unsynced.mark(current, "EIO".into());
        store.put_hint(current, Bytes::from_static(b"3")).await.unwrap();
        assert!(!store.durability_unknown(current), "written in full while a write was in doubt");
        assert!(store.any_durability_unknown(), "the manifest stays in doubt");

        let fault = std::sync::OnceLock::new();
        let wrapped = Store::local(dir.path()).unwrap().with_inner(|inner| {
            let f = crate::store::fault::FaultStore::new(inner);
            let _ = fault.set(f.clone());
            f
        });
        fault.get().unwrap().fail_next_put("CURRENT", crate::store::fault::Fault::Before);
        assert!(wrapped.put_hint(current, Bytes::from_static(b"4")).await.is_err());
        assert!(wrapped.durability_unknown(current));
        assert_eq!(&wrapped.get(current).await.unwrap()[..], b"3");
    }

    #[tokio::test]
    async fn directories_a_failed_write_created_are_removed_while_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        store.put("o/p/namespaces/n/CURRENT", Bytes::from_static(b"c")).await.unwrap();
        let eio = |k: &str| Err::<(), _>(StoreError::io(k, std::io::Error::from_raw_os_error(5)));
        let ns = dir.path().join("o/p/namespaces/n");

        // The write made two directories and failed (their fsync, maybe):
        // both go, the one that existed stays.
        let seg = "o/p/namespaces/n/segments/s1/a.seg";
        let scope = store.write_scope(seg);
        assert_eq!(scope.new_dirs, vec![ns.join("segments/s1"), ns.join("segments")]);
        std::fs::create_dir_all(ns.join("segments/s1")).unwrap();
        store.after_write(seg, &eio(seg), scope, true);
        assert!(!ns.join("segments").exists(), "created afresh (and fsynced) by the next write");
        assert!(ns.exists(), "a directory that existed is kept");

        // A directory holding an object is kept (its fsyncs came first).
        let scope = store.write_scope(seg);
        std::fs::create_dir_all(ns.join("segments/s1")).unwrap();
        std::fs::write(ns.join("segments/s1/a.seg"), b"s").unwrap();
        store.after_write(seg, &eio(seg), scope, true);
        assert!(ns.join("segments/s1/a.seg").exists());
        assert!(store.durability_unknown(seg));
        assert!(
            store.write_scope("o/p/namespaces/n/CURRENT").new_dirs.is_empty(),
            "one stat, nothing to make"
        );
    }
}
