//! Making a directory entry durable after an ambiguous create
//! (`storage-format.md` 5.1, step 3).
//!
//! The local directory store publishes an object by a hard link (or rename)
//! and then fsyncs the parent directory. When that fsync fails, the object is
//! visible (the entry is in the page cache) but may vanish on power loss; the
//! put reports an error, and a retry then sees `AlreadyExists`. Before the
//! commit unit trusts such an entry as its own committed generation it calls
//! [`Store::sync_entry`], which fsyncs the directory again.
//!
//! Invariants:
//! - `sync_entry` returns `Ok` only when the entry is durable: on a local
//!   directory after a successful fsync of the key's parent directory; on a
//!   bucket or in memory at once (an acknowledged PUT is durable there).
//! - The directory fsync is injectable ([`DirSync`]), so tests can make it
//!   fail the way a real disk does; the default is the real one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

impl Store {
    /// The same store with another directory fsync (tests).
    pub fn with_dir_sync(mut self, sync: DirSync) -> Store {
        self.dir_sync = sync;
        self
    }

    /// Make the directory entry of `key` durable: on a local directory, fsync
    /// the directory holding it; elsewhere nothing is needed.
    pub async fn sync_entry(&self, key: &str) -> Result<(), StoreError> {
        let Some(dir) = self.entry_dir(key) else { return Ok(()) };
        let sync = self.dir_sync.clone();
        let k = key.to_owned();
        tokio::task::spawn_blocking(move || sync.sync(&dir))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| StoreError::io(&k, e))
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn sync_entry_fsyncs_the_keys_directory_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(1));
        let (s, f) = (seen.clone(), fail.clone());
        let store = Store::local(dir.path()).unwrap().with_dir_sync(DirSync::new(move |d| {
            s.lock().unwrap().push(d.to_path_buf());
            if f.load(Ordering::SeqCst) > 0 {
                f.fetch_sub(1, Ordering::SeqCst);
                return Err(std::io::Error::from_raw_os_error(5));
            }
            Ok(())
        }));
        assert!(store.sync_entry("o/p/namespaces/n/manifests/1.json").await.is_err(), "EIO is reported");
        store.sync_entry("o/p/namespaces/n/manifests/1.json").await.unwrap();
        let want = dir.path().join("o/p/namespaces/n/manifests");
        assert_eq!(*seen.lock().unwrap(), vec![want.clone(), want]);
        Store::memory().sync_entry("a/b").await.unwrap();
    }
}
