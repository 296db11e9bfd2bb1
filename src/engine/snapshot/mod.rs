//! Snapshot files: one self-describing file holding a namespace at one
//! generation (the manifest plus every object it references), and restore of
//! such a file into a new namespace — on this node or any other.
//!
//! Format (byte by byte in `storage-format.md` 9.6; the header, record-header
//! and footer codecs are `format/snapshot.rs`): a 44-byte header, the manifest
//! file bytes, one record per object (key, length, crc32c of the data, crc32c
//! of the record header, the data), and a 16-byte footer (magic `TIDE.END`,
//! object count, crc32c of every byte before it). This module streams them and
//! does the file and object I/O.
//!
//! Invariants:
//! - The reader verifies every checksum before it uses what it covers, never
//!   allocates from an unchecked length, caps every length, and refuses a
//!   snapshot whose objects are not exactly the manifest's objects. Any
//!   corruption is an [`EngineError::invalid_input`] saying what is wrong,
//!   with the decoding error as its cause.
//! - A local I/O failure (the snapshot file, the restore spool) keeps the I/O
//!   error as its cause and is classified once (`local_io`): a full disk
//!   (ENOSPC/EDQUOT) is `StorageFull` (507), anything else `Unavailable`.
//! - Restore writes every object under the destination's prefix, raises
//!   their refcounts, and commits the destination's manifest **last**, only
//!   after the footer checksum verified: a crash or a corrupted file leaves
//!   at most unreferenced objects (deleted on the error path, else swept by
//!   repair), never a half-restored namespace.
//! - [`Engine::restore_snapshot_file`] reads and verifies the whole file
//!   (every checksum) before it takes the project's lock or the
//!   destination's commit lock: the HTTP restore spools the upload to such a
//!   file first, so a slow or broken upload never holds up the project's
//!   writers, branches or repair.
//! - Snapshot files on local disk are written to a temporary file in the
//!   same directory, fsynced, renamed over the destination, and the directory
//!   is fsynced ([`AtomicFile`]): a crash leaves the old file or the new one,
//!   never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

mod reader;
#[cfg(test)]
mod tests;

pub use reader::{scan_snapshot, verify_snapshot, ObjectSpan, SnapshotReader};

use super::branch::relocation_map;
use super::{clear_cached, Engine, EngineError};
use crate::engine::ErrorKind;
use crate::format::manifest::Manifest;
use crate::format::snapshot::{encode_footer, encode_record_header, SnapshotHeader};
use crate::format::FormatError;
use crate::layout::NsPath;
use crate::store::StoreError;

pub use crate::format::snapshot::{
    MAX_SNAPSHOT_KEY_BYTES, MAX_SNAPSHOT_OBJECTS, MAX_SNAPSHOT_OBJECT_BYTES, SNAPSHOT_END_MAGIC,
    SNAPSHOT_FOOTER_LEN, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The source namespace (`org/project/ns`) as recorded in the manifest.
    pub namespace: String,
    /// The generation captured.
    pub generation: u64,
    /// Objects in the file.
    pub objects: u64,
    /// Total bytes of the file.
    pub bytes: u64,
}

fn bad(msg: impl std::fmt::Display) -> EngineError {
    EngineError::invalid_input(format!("invalid snapshot file: {msg}"))
}

/// A snapshot that failed a check of `format/snapshot.rs` (400), the check's
/// error kept as the cause.
fn bad_format(context: &str, e: FormatError) -> EngineError {
    let message = match &e {
        FormatError::BadMagic { .. } => {
            "it does not start with the magic TIDE.SNP (not a tidepool snapshot)".to_owned()
        }
        _ if context.is_empty() => e.to_string(),
        _ => format!("{context}: {e}"),
    };
    bad(message).with_source(e)
}

fn io_err(e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        bad("it is truncated (it ends before its footer)").with_source(e)
    } else {
        EngineError::io("reading the snapshot", e)
    }
}

// ----- writing -------------------------------------------------------------------------------

struct CrcWriter<'a, W> {
    w: &'a mut W,
    crc: u32,
    bytes: u64,
}

impl<W: AsyncWrite + Unpin + Send> CrcWriter<'_, W> {
    async fn put(&mut self, b: &[u8]) -> Result<(), EngineError> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.bytes += b.len() as u64;
        self.w.write_all(b).await.map_err(|e| EngineError::io("writing the snapshot", e))
    }
}

impl Engine {
    /// Write a snapshot of `path` at `generation` (None: the newest) to `w`.
    pub async fn write_snapshot<W: AsyncWrite + Unpin + Send>(
        &self,
        path: &NsPath,
        generation: Option<u64>,
        w: &mut W,
    ) -> Result<SnapshotInfo, EngineError> {
        let m = self.manifest_at(path, generation).await?;
        let manifest = m.try_encode()?;
        let keys = m.object_keys();
        let count = u32::try_from(keys.len())
            .ok()
            .filter(|n| *n <= MAX_SNAPSHOT_OBJECTS)
            .ok_or_else(|| EngineError::invalid_input("too many objects for one snapshot"))?;
        let wal_crcs: BTreeMap<&str, u32> = m.wal.iter().map(|r| (r.key.as_str(), r.crc32c)).collect();
        let header = SnapshotHeader::for_manifest(count, m.generation, self.clock.now_ms(), &manifest)
            .map_err(|e| {
                EngineError::invalid_input(format!("this generation cannot be snapshotted: {e}"))
                    .with_source(e)
            })?;
        let mut out = CrcWriter { w, crc: 0, bytes: 0 };
        out.put(&header.encode()).await?;
        out.put(&manifest).await?;
        for key in &keys {
            let data = self.store.get(key).await.map_err(|e| match e {
                StoreError::NotFound(k) => EngineError::not_found(format!(
                    "generation {} of namespace {} can no longer be snapshotted: object {k} was reclaimed",
                    m.generation,
                    path.ns()
                )),
                other => other.into(),
            })?;
            if data.len() as u64 > MAX_SNAPSHOT_OBJECT_BYTES {
                return Err(EngineError::invalid_input(format!("object {key} is too large for a snapshot")));
            }
            if wal_crcs.get(key.as_str()).is_some_and(|c| *c != crc32c::crc32c(&data)) {
                return Err(EngineError::corrupted(format!(
                    "WAL object {key} does not match its manifest crc"
                )));
            }
            out.put(&encode_record_header(key, data.len() as u64, crc32c::crc32c(&data))).await?;
            out.put(&data).await?;
        }
        out.put(&encode_footer(count)).await?;
        let crc = out.crc;
        out.put(&crc.to_le_bytes()).await?;
        let bytes = out.bytes;
        w.flush().await.map_err(|e| EngineError::io("writing the snapshot", e))?;
        Ok(SnapshotInfo {
            namespace: m.namespace.clone(),
            generation: m.generation,
            objects: u64::from(count),
            bytes,
        })
    }

    /// Write a snapshot file atomically (temp file, fsync, rename, fsync dir).
    pub async fn write_snapshot_file(
        &self,
        path: &NsPath,
        generation: Option<u64>,
        dest: &Path,
    ) -> Result<SnapshotInfo, EngineError> {
        let file_err = |e: std::io::Error| EngineError::io(dest.display(), e);
        let mut f = AtomicFile::create(dest).await.map_err(file_err)?;
        let info = {
            let mut w = tokio::io::BufWriter::new(f.file());
            let info = self.write_snapshot(path, generation, &mut w).await?;
            w.flush().await.map_err(file_err)?;
            info
        };
        f.commit().await.map_err(file_err)?;
        Ok(info)
    }

    /// Restore the snapshot file at `path` (local disk) into the new
    /// namespace `dst` (same rules as a branch destination: missing, deleted
    /// or empty). The file is verified whole, in chunks, before any lock is
    /// taken; then it is mapped and every object is written from the mapping,
    /// so no object is ever held whole in memory.
    pub async fn restore_snapshot_file(
        &self,
        dst: &NsPath,
        path: &Path,
    ) -> Result<(Arc<Manifest>, SnapshotInfo), EngineError> {
        let open_err = |e: std::io::Error| {
            EngineError::internal(format!("cannot open {}: {e}", path.display())).with_source(e)
        };
        let file = tokio::fs::File::open(path).await.map_err(open_err)?;
        let mut r = tokio::io::BufReader::with_capacity(256 * 1024, file);
        let (manifest, info, spans) = scan_snapshot(&mut r).await?;
        let file = r.into_inner().into_std().await;
        // SAFETY: the file is the daemon's own spool of an upload (or a file the
        // caller hands over whole); nothing writes it while it is restored, and
        // every object read from the mapping is checked again against the
        // manifest's checksums before it is stored.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?;
        let map = Bytes::from_owner(map);
        let mut objects = Vec::with_capacity(spans.len());
        for span in spans {
            let end = span.offset.checked_add(span.len).filter(|e| *e <= map.len() as u64);
            let end = end.ok_or_else(|| bad("the file changed while it was restored"))?;
            objects.push((span.key, map.slice(span.offset as usize..end as usize)));
        }
        self.restore_objects(dst, Arc::new(manifest), objects).await.map(|m| (m, info))
    }

    /// Restore a snapshot read from `r` into the new namespace `dst`: `r` is
    /// first copied to a scratch file (so no lock waits on the reader), then
    /// restored as [`Engine::restore_snapshot_file`] does.
    pub async fn restore_snapshot<R: AsyncRead + Unpin + Send>(
        &self,
        dst: &NsPath,
        r: &mut R,
    ) -> Result<(Arc<Manifest>, SnapshotInfo), EngineError> {
        let scratch = ScratchFile::new_in(self.scratch_dir(), "restore");
        let io = |e: std::io::Error| EngineError::io("spooling the snapshot", e);
        let mut f = tokio::fs::File::create(scratch.path()).await.map_err(io)?;
        tokio::io::copy(r, &mut f).await.map_err(io)?;
        f.flush().await.map_err(io)?;
        self.restore_snapshot_file(dst, scratch.path()).await
    }

    /// Write `objects` (verified snapshot data, keyed as in `source`) under
    /// `dst`'s prefix and commit `dst` as a copy of `source`, under the
    /// project's shared lock and `dst`'s commit lock.
    async fn restore_objects(
        &self,
        dst: &NsPath,
        source: Arc<Manifest>,
        objects: Vec<(String, Bytes)>,
    ) -> Result<Arc<Manifest>, EngineError> {
        let project = dst.project_id();
        let plock = self.project_lock(&project);
        let _shared = plock.read().await;
        let h = self.handle(dst);
        let _commit = h.commit_lock.lock().await;
        let base = self.fork_destination_base(dst).await?;
        let keys = source.object_keys();
        let map = relocation_map_any_project(&keys, dst, &mut || self.ids.next_token())?;
        let mut written: Vec<String> = Vec::with_capacity(keys.len());
        let outcome = async {
            for (key, data) in objects {
                let to = map.get(&key).ok_or_else(|| bad(format!("object {key} is not in its manifest")))?;
                // The file's own checksums only prove it was not damaged in
                // transit; the objects must also be what the manifest names.
                let (m, d) = (source.clone(), data.clone());
                let checked =
                    tokio::task::spawn_blocking(move || super::verify::check_object_bytes(&m, &key, &d))
                        .await
                        .map_err(|e| EngineError::wrap(ErrorKind::Internal, e))?;
                checked.map_err(bad)?;
                self.store.put(to, data).await?;
                written.push(to.clone());
            }
            Ok::<_, EngineError>(())
        }
        .await;
        if let Err(e) = outcome {
            self.delete_quietly(&written).await;
            return Err(e);
        }
        let m = self.adopt_copies(&source, dst, base.as_deref(), &map, &written).await?;
        let committed = self.commit_fork(dst, base, &written, m).await;
        clear_cached(&h);
        // The snapshot's manifest came without its schema resolved (4.5).
        let m = self.log(dst).resolve(committed?, None).await?;
        Ok(Arc::new(m))
    }
}

/// Like [`relocation_map`], but the source may come from any org/project
/// (a snapshot from another node): only the part after
/// `{org}/{project}/namespaces/{ns}/` is kept.
fn relocation_map_any_project(
    keys: &[String],
    dst: &NsPath,
    token: &mut dyn FnMut() -> String,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut local = Vec::with_capacity(keys.len());
    let mut back = BTreeMap::new();
    for k in keys {
        let mut parts = k.splitn(5, '/');
        let (org, project, dir, ns, rest) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next());
        match (org, project, dir, ns, rest) {
            (Some(_), Some(_), Some("namespaces"), Some(ns), Some(rest))
                if !ns.is_empty() && !rest.is_empty() =>
            {
                let as_local =
                    format!("{}{ns}/{rest}", NsPath::project_namespaces_prefix(dst.org(), dst.project()));
                back.insert(as_local.clone(), k.clone());
                local.push(as_local);
            }
            _ => return Err(bad(format!("object key {k} is not a namespace object key"))),
        }
    }
    let map = relocation_map(&local, dst, token)?;
    Ok(map.into_iter().filter_map(|(from, to)| back.get(&from).map(|orig| (orig.clone(), to))).collect())
}

// ----- scratch files -------------------------------------------------------------------------

/// A file in a scratch dir (a spooled restore upload), removed when dropped.
#[derive(Debug)]
pub struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    /// A fresh name in `dir` (nothing is created yet).
    pub fn new_in(dir: &Path, what: &str) -> ScratchFile {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ScratchFile { path: dir.join(format!("{what}-{}-{n}", std::process::id())) }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ----- atomic local files --------------------------------------------------------------------

/// A file written under a temporary name in its destination's directory and
/// renamed into place by [`AtomicFile::commit`] after an fsync; the
/// directory is fsynced after the rename. Dropped uncommitted, the
/// temporary file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: tokio::fs::File,
    committed: bool,
}

impl AtomicFile {
    /// Create the temporary file next to `dest`.
    pub async fn create(dest: &Path) -> std::io::Result<AtomicFile> {
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other("the destination has no file name"))?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).await?;
        Ok(AtomicFile { dest: dest.to_path_buf(), tmp, file, committed: false })
    }

    /// The temporary file.
    pub fn file(&mut self) -> &mut tokio::fs::File {
        &mut self.file
    }

    /// The temporary path (for re-reading before commit).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// fsync the file, rename it over the destination, fsync the directory.
    pub async fn commit(mut self) -> std::io::Result<()> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        tokio::fs::rename(&self.tmp, &self.dest).await?;
        self.committed = true;
        let parent = self.dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = tokio::fs::File::open(parent).await?;
        dir.sync_all().await?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
