//! File-level helpers of the disk cache tier: key <-> path mapping, the
//! start-up scan, durable installs and verified memory maps.
//!
//! Invariants:
//! - A key maps to `objects/` + its `/`-separated components, each escaped:
//!   bytes outside `[A-Za-z0-9._-]` become `%XX` (upper-case hex). The mapping
//!   is injective and reversible ([`key_to_rel`] / [`rel_to_key`]); keys with
//!   an empty, `.` or `..` component, or a component longer than 255 bytes
//!   once escaped, are refused, so a key can never name a path outside
//!   `objects/`.
//! - Files under `objects/` are only ever created by renaming a fully written,
//!   fsynced temp file from `tmp/`; they are never modified afterwards.
//! - [`map_verified`] hands out a memory map only after checking the file's
//!   length and crc32c against the expected reference (a segment's crc32c may be
//!   the one its range checksums combine to, `super::Sum`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;

/// Longest escaped component (common file-system name limit).
const MAX_COMPONENT: usize = 255;

use crate::store::literal_byte as literal;

/// Why a key cannot be cached.
pub(crate) fn check_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    if c == "." || c == ".." {
        return Err("'.' or '..' component");
    }
    Ok(())
}

/// The relative path (under `objects/`) of `key`.
pub(crate) fn key_to_rel(key: &str) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in key.split('/') {
        check_component(c)?;
        let mut esc = String::with_capacity(c.len());
        for &b in c.as_bytes() {
            if literal(b) {
                esc.push(char::from(b));
            } else {
                esc.push_str(&format!("%{b:02X}"));
            }
        }
        if esc.len() > MAX_COMPONENT {
            return Err("a path component is longer than 255 bytes once escaped");
        }
        out.push(esc);
    }
    Ok(out)
}

fn unescape(c: &str) -> Option<String> {
    let b = c.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = c.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The key of a relative path under `objects/`, if it is the canonical
/// escaping of a valid key.
pub(crate) fn rel_to_key(rel: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for comp in rel.components() {
        let Component::Normal(os) = comp else { return None };
        parts.push(unescape(os.to_str()?)?);
    }
    let key = parts.join("/");
    (key_to_rel(&key).ok()?.as_path() == rel).then_some(key)
}

/// One cached file found by the start-up scan.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) key: String,
    pub(crate) size: u64,
    pub(crate) mtime: SystemTime,
}

/// Walk `objects/`: every regular file whose path decodes to a key is
/// reported; anything else (undecodable names, symlinks, special files) is
/// deleted. Directories are kept.
pub(crate) fn scan(objects: &Path) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut stack = vec![objects.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for ent in fs::read_dir(&dir)? {
            let ent = ent?;
            let path = ent.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let key =
                if meta.is_file() { path.strip_prefix(objects).ok().and_then(rel_to_key) } else { None };
            match key {
                Some(key) => out.push(Found {
                    key,
                    size: meta.len(),
                    mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                }),
                None => {
                    tracing::warn!(path = %path.display(), "removing a stray file from the object cache");
                    remove_if_exists(&path)?;
                }
            }
        }
    }
    Ok(out)
}

/// Delete every entry of the temp directory (downloads a crash interrupted).
pub(crate) fn clear_dir(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for ent in fs::read_dir(dir)? {
        let path = ent?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            remove_if_exists(&path)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Remove a file; a missing file is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Write `data` to a new temp file and fsync it; the open handle is returned
/// for mapping after the rename.
pub(crate) fn write_temp(path: &Path, data: &[u8]) -> io::Result<File> {
    let mut f = fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    let r = f.write_all(data).and_then(|()| f.sync_all());
    if let Err(e) = r {
        drop(f);
        let _ = remove_if_exists(path);
        return Err(e);
    }
    Ok(f)
}

/// Best-effort fsync of a directory (makes a rename into it durable).
pub(crate) fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cache directory fsync failed");
    }
}

pub(crate) use super::mapping::map;

/// What a verification found.
#[derive(Debug)]
pub(crate) enum Verified {
    /// Length and crc32c match: the mapped bytes.
    Ok(Bytes),
    /// The file does not exist.
    Missing,
    /// Wrong length or checksum: (actual length, actual crc32c if computed).
    Mismatch(u64, Option<u32>),
}

/// Open `path`, check its length against `len`, map it and, unless `known_good`,
/// check its crc32c against `crc`. Optionally refresh its mtime (LRU order
/// across restarts).
pub(crate) fn map_verified(
    path: &Path,
    want: super::Want,
    known_good: bool,
    touch: bool,
) -> io::Result<Verified> {
    let (len, crc) = (want.len, want.crc);
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Verified::Missing),
        Err(e) => return Err(e),
    };
    let actual_len = file.metadata()?.len();
    if actual_len != len {
        return Ok(Verified::Mismatch(actual_len, None));
    }
    let bytes = map(&file, len)?;
    if !known_good {
        let actual = want.sum.of(&bytes);
        if actual != crc {
            return Ok(Verified::Mismatch(actual_len, Some(actual)));
        }
    }
    if touch {
        if let Err(e) = file.set_modified(SystemTime::now()) {
            tracing::debug!(path = %path.display(), error = %e, "cannot refresh a cache file's mtime");
        }
    }
    Ok(Verified::Ok(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_paths() {
        for key in ["a/b/namespaces/n/segments/s1/data.seg", "x y/%z/ü", "a/.hidden/b..c"] {
            let rel = key_to_rel(key).unwrap();
            assert_eq!(rel_to_key(&rel).as_deref(), Some(key), "{rel:?}");
        }
        assert_eq!(key_to_rel("a b/c").unwrap(), PathBuf::from("a%20b/c"));
        for bad in ["", "a//b", "/a", "a/", "a/../b", "./a", &"x".repeat(256)] {
            assert!(key_to_rel(bad).is_err(), "{bad:?}");
        }
        assert_eq!(rel_to_key(Path::new("a%2")), None);
        assert_eq!(rel_to_key(Path::new("a%2f")), None, "non-canonical escapes are not keys");
        assert_eq!(rel_to_key(Path::new("a b")), None);
    }
}
