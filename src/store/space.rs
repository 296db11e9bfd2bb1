//! Free space on the disk under a local directory store, and "disk full"
//! recognized in any error chain.
//!
//! Invariants:
//! - [`SpaceProbe`] answers the bytes an unprivileged writer may still use
//!   (`statvfs`: `f_bavail × f_frsize`); it is injectable so tests can
//!   simulate a nearly full disk without filling one.
//! - [`is_no_space`] recognizes ENOSPC (and EDQUOT, a full quota) wherever it
//!   sits in an error's `source()` chain, and `io::ErrorKind::StorageFull`,
//!   so every layer (object store, `meta.redb`) maps disk full the same way.

use std::path::Path;
use std::sync::Arc;

type ProbeFn = dyn Fn(&Path) -> std::io::Result<u64> + Send + Sync;

/// How the free bytes of a directory's file system are measured.
#[derive(Clone)]
pub struct SpaceProbe(Arc<ProbeFn>);

impl SpaceProbe {
    /// A probe from a function (tests).
    pub fn new(f: impl Fn(&Path) -> std::io::Result<u64> + Send + Sync + 'static) -> Self {
        SpaceProbe(Arc::new(f))
    }

    /// The real one: `statvfs(2)`.
    pub fn statvfs() -> Self {
        SpaceProbe::new(|dir| {
            let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
            Ok(s.f_bavail.saturating_mul(s.f_frsize))
        })
    }

    /// Free bytes for an unprivileged writer on `dir`'s file system.
    pub fn free_bytes(&self, dir: &Path) -> std::io::Result<u64> {
        (self.0)(dir)
    }
}

impl Default for SpaceProbe {
    fn default() -> Self {
        SpaceProbe::statvfs()
    }
}

impl std::fmt::Debug for SpaceProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpaceProbe")
    }
}

/// ENOSPC on Linux and most Unixes.
const ENOSPC: i32 = 28;
/// EDQUOT on Linux.
const EDQUOT: i32 = 122;

/// Whether an I/O error means "no space left" (disk or quota full).
pub fn io_is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Whether an error, or any error in its `source()` chain, is "no space left".
pub fn is_no_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(io_is_no_space) {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_is_found_anywhere_in_the_chain() {
        assert!(io_is_no_space(&std::io::Error::from_raw_os_error(28)));
        assert!(io_is_no_space(&std::io::Error::new(std::io::ErrorKind::StorageFull, "x")));
        assert!(!io_is_no_space(&std::io::Error::from_raw_os_error(5)));
        let wrapped = object_store::Error::Generic {
            store: "t",
            source: Box::new(std::io::Error::from_raw_os_error(28)),
        };
        assert!(is_no_space(&wrapped));
        let eio = object_store::Error::Generic {
            store: "t",
            source: Box::new(std::io::Error::from_raw_os_error(5)),
        };
        assert!(!is_no_space(&eio));
    }

    #[test]
    fn statvfs_reports_some_free_space_here() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SpaceProbe::statvfs().free_bytes(dir.path()).unwrap() > 0);
    }
}
