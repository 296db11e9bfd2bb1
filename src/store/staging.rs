//! Staging files of the local directory store: finding and removing the ones
//! a crash left behind.
//!
//! `object_store`'s local backend writes every object to `{key}#{n}` (n a
//! decimal number) and then links or renames it into place. A process killed
//! in between leaves the staging file; the store's listing hides such names,
//! so the repair sweep never sees them, and a stale `CURRENT#1` makes every
//! later write of `CURRENT` probe past it.
//!
//! Invariants:
//! - Only names of the staging pattern (`…#digits`, the part before `#` not
//!   empty) are ever removed, and only when their modification time is older
//!   than the cutoff the caller gives (now − grace period, by the engine's
//!   clock): a write in flight keeps touching its staging file and is far
//!   younger than any grace period.
//! - A walk visits at most `limit` directory entries (start-up runs it
//!   bounded and in the background); symlinks are not followed; only
//!   `{org}/{project}/namespaces/` trees are walked.
//! - Other stores (bucket, memory) have no staging files: nothing to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use super::{Store, StoreError};

/// What a staging walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StagingSweep {
    /// Stale staging files removed.
    pub removed: usize,
    /// Staging files kept because they are younger than the cutoff.
    pub kept_young: usize,
    /// Directory entries visited.
    pub visited: usize,
    /// The walk stopped at its entry limit before visiting everything.
    pub truncated: bool,
}

/// Whether a file name is a staging name of the local store (`name#123`).
pub fn is_staging_name(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((stem, n)) => !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

impl Store {
    /// Remove the staging files under `prefix` (a key prefix such as
    /// `{org}/{project}/namespaces/`) last modified before `cutoff_ms` (ms since
    /// the epoch), visiting at most `limit` entries.
    pub async fn remove_stale_staging(
        &self,
        prefix: &str,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<StagingSweep, StoreError> {
        let Some(root) = self.local_root() else { return Ok(StagingSweep::default()) };
        let start = root.join(prefix.trim_matches('/'));
        self.blocking_sweep(prefix, move |out| sweep_dir(&start, cutoff_ms, limit, out)).await
    }

    /// The same for every project of the store: only under
    /// `{org}/{project}/namespaces/`, so a store directory shared with other
    /// files is never touched elsewhere.
    pub async fn remove_all_stale_staging(
        &self,
        cutoff_ms: u64,
        limit: usize,
    ) -> Result<StagingSweep, StoreError> {
        let Some(root) = self.local_root().map(Path::to_path_buf) else { return Ok(StagingSweep::default()) };
        self.blocking_sweep("", move |out| {
            for org in subdirs(&root)? {
                for project in subdirs(&org)? {
                    sweep_dir(&project.join("namespaces"), cutoff_ms, limit, out)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn blocking_sweep(
        &self,
        key: &str,
        f: impl FnOnce(&mut StagingSweep) -> std::io::Result<()> + Send + 'static,
    ) -> Result<StagingSweep, StoreError> {
        let run = move || {
            let mut out = StagingSweep::default();
            f(&mut out).map(|()| out)
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| StoreError::io(key, e))
    }
}

/// The subdirectories of `dir` (none when it is missing).
fn subdirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let Some(entry) = present(entry)? else { continue };
        if present(entry.file_type())?.is_some_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Walk `start` (missing: nothing to do) and remove stale staging files,
/// until `out.visited` reaches `limit`.
fn sweep_dir(start: &Path, cutoff_ms: u64, limit: usize, out: &mut StagingSweep) -> std::io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![start.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Gone meanwhile (a namespace deleted, a start prefix never written).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            if out.visited >= limit {
                out.truncated = true;
                return Ok(());
            }
            out.visited += 1;
            // An entry can vanish between the listing and its stat: a writer
            // in flight renames its staging file into place.
            let Some(entry) = present(entry)? else { continue };
            let Some(kind) = present(entry.file_type())? else { continue };
            if kind.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if !kind.is_file() || !entry.file_name().to_str().is_some_and(is_staging_name) {
                continue;
            }
            let Some(modified) = present(modified_ms(&entry))? else { continue };
            if modified >= cutoff_ms {
                out.kept_young += 1;
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => out.removed += 1,
                // Published or cleaned up by its writer meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// `Ok(None)` for an entry that is gone (not found), the error otherwise.
fn present<T>(r: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn modified_ms(entry: &std::fs::DirEntry) -> std::io::Result<u64> {
    let t = entry.metadata()?.modified()?;
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_recognized() {
        assert!(is_staging_name("CURRENT#1"));
        assert!(is_staging_name("00000000000000000001-ab.wal#12"));
        assert!(!is_staging_name("CURRENT"));
        assert!(!is_staging_name("#1"));
        assert!(!is_staging_name("a#"));
        assert!(!is_staging_name("a#1b"));
    }

    #[tokio::test]
    async fn only_stale_staging_files_are_removed_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("o/p/namespaces/n");
        std::fs::create_dir_all(ns.join("wal")).unwrap();
        for f in ["CURRENT", "CURRENT#1", "wal/1.wal", "wal/1.wal#3", "wal/2.wal#1"] {
            std::fs::write(ns.join(f), b"x").unwrap();
        }
        let store = Store::local(dir.path()).unwrap();
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let young = store.remove_stale_staging("o/p/namespaces", now - 60_000, usize::MAX).await.unwrap();
        assert_eq!((young.removed, young.kept_young), (0, 3), "young staging files are kept");
        let r = store.remove_stale_staging("o/p/namespaces", now + 60_000, usize::MAX).await.unwrap();
        assert_eq!(r.removed, 3);
        assert!(ns.join("CURRENT").exists() && ns.join("wal/1.wal").exists());
        assert!(!ns.join("CURRENT#1").exists() && !ns.join("wal/1.wal#3").exists());
        std::fs::write(ns.join("wal/3.wal#1"), b"x").unwrap();
        let bounded = store.remove_all_stale_staging(now + 60_000, 2).await.unwrap();
        assert!(bounded.truncated && bounded.visited == 2);
        std::fs::write(dir.path().join("elsewhere#1"), b"x").unwrap();
        let all = store.remove_all_stale_staging(now + 60_000, usize::MAX).await.unwrap();
        assert_eq!(all.removed, 1, "{all:?}");
        assert!(!ns.join("wal/3.wal#1").exists());
        assert!(dir.path().join("elsewhere#1").exists(), "only under {{org}}/{{project}}/namespaces/");
        let missing = store.remove_stale_staging("x/y", now, 10).await.unwrap();
        assert_eq!(missing, StagingSweep::default());
    }

    /// A writer publishes its staging file (rename) while a sweep walks the
    /// directory: the entry the walk listed is gone when it is stat'ed. That
    /// is a finished write, not a failed sweep (a repair once failed so).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staging_file_published_during_the_walk_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("o/p/namespaces/n/wal");
        std::fs::create_dir_all(&wal).unwrap();
        let store = Store::local(dir.path()).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (wal, done) = (wal.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    let staged = wal.join(format!("{i}.wal#1"));
                    std::fs::write(&staged, b"x").unwrap();
                    std::fs::rename(&staged, wal.join(format!("{i}.wal"))).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let mut sweeps = 0u32;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || sweeps == 0 {
            // Cutoff 0: every staging file is young, so each one seen is stat'ed.
            store.remove_stale_staging("o/p/namespaces", 0, usize::MAX).await.unwrap();
            sweeps += 1;
        }
        writer.join().unwrap();
        assert!(sweeps > 1, "the sweeps ran alongside the writer");
    }
}
