//! Verify: read every object the newest live generation of each namespace of
//! a project references, check it against the checksum its manifest records
//! and decode it whole — a segment's sections and every one of its rows, a
//! deletion set, a WAL batch, a schema object — and report each damaged object
//! with the namespaces that reference it.
//!
//! Invariants:
//! - Read-only: verify writes nothing and takes no lock; an object shared by
//!   branches is read once and reported once, with every namespace naming it.
//! - Damage (missing object, checksum mismatch, undecodable bytes) is a
//!   finding, not an error; only an unreachable store fails the verify.
//! - A segment is read whole here whether or not the engine opened it lazily
//!   (`Segment::open_lazy`, which defers the bulk sections' checks to their first
//!   reads): `Segment::open` checks every section's crc32c and every range-checksum
//!   chunk, and the cache matched the file's length and crc32c (for a segment it
//!   served lazily, the crc its range checksums combine to, which the chunk checks
//!   here then prove to be the file's).
//! - Objects marked damaged at run time (a compaction that met an
//!   undecodable row, a query that met bytes changed since they were verified —
//!   `crate::integrity`) are reported too, whatever the re-read finds.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Engine, EngineError, ErrorKind};
use crate::codec::FormatError;
use crate::format::manifest::{decode_schema_object, Manifest, ObjectRef};
use crate::format::segment::{DeletionSet, Segment};
use crate::format::wal::WalBatch;
use crate::layout::NsPath;

/// One damaged object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedObject {
    /// The object key.
    pub key: String,
    /// What is wrong with it.
    pub error: String,
    /// Namespaces whose newest generation references it.
    pub namespaces: Vec<String>,
}

/// What a verify read and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Namespaces examined (live ones).
    pub namespaces: usize,
    /// Distinct objects read.
    pub objects_checked: usize,
    /// Their bytes.
    pub bytes_checked: u64,
    /// Segment rows decoded.
    pub rows_checked: u64,
    /// Damaged objects, by key.
    pub damaged: Vec<DamagedObject>,
    /// Objects whose local copy changed on disk after it was verified, seen since the node
    /// started: the copy was dropped and the object downloaded and verified again from the
    /// bucket (`crate::integrity`); the bucket's copy is what `damaged` judges.
    pub refetched: Vec<RefetchedObject>,
}

/// An object whose local copy rotted and was fetched again from the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefetchedObject {
    /// The object key.
    pub key: String,
    /// What was found on the local copy.
    pub error: String,
}

/// How an object is decoded.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Segment,
    Deletes,
    Wal,
    Schema,
}

/// Distinct objects of a project: key → (reference, kind, namespaces).
type Objects = BTreeMap<String, (ObjectRef, Kind, Vec<String>)>;

impl Engine {
    /// Verify every object of a project (see the module doc). `progress` is
    /// called with (objects done, objects in all) as it goes.
    pub async fn verify(
        &self,
        org: &str,
        project: &str,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<VerifyReport, EngineError> {
        self.collect_unscoped_rot();
        let mut report = VerifyReport::default();
        let mut objects = Objects::new();
        let names = self.store.list_dirs(&NsPath::project_namespaces_prefix(org, project)).await?;
        for path in names.iter().filter_map(|n| NsPath::new(org, project, n).ok()) {
            let m = match self.latest_manifest(&path).await {
                Ok(m) => m,
                // A damaged schema object fails the resolution: read the
                // manifest as stored, so the object is reported like any other.
                Err(e) if e.kind() == ErrorKind::Corrupted => {
                    let log = self.log(&path).without_schemas();
                    log.newest_from(log.generation_hint().await?).await?.map(std::sync::Arc::new)
                }
                Err(e) => return Err(e),
            };
            let Some(m) = m else { continue };
            if !m.deleted {
                report.namespaces += 1;
                add_objects(&mut objects, &path, &m);
            }
        }
        let total = objects.len();
        for (done, (key, (r, kind, namespaces))) in objects.into_iter().enumerate() {
            progress(done, total);
            report.objects_checked += 1;
            report.bytes_checked += r.bytes;
            let found = match self.check_object(&r, kind).await {
                Ok(rows) => {
                    report.rows_checked += rows;
                    None
                }
                Err(e) if e.kind() == ErrorKind::Corrupted => Some(e.to_string()),
                Err(e) => return Err(e),
            };
            let marked = self.damage_mark(&key);
            if let Some(error) = self.refetch_mark(&key) {
                report.refetched.push(RefetchedObject { key: key.clone(), error });
            }
            if let Some(error) = found.or(marked) {
                report.damaged.push(DamagedObject { key, error, namespaces });
            }
        }
        progress(total, total);
        Ok(report)
    }

    /// Read and decode one object whole; the segment rows decoded.
    async fn check_object(&self, r: &ObjectRef, kind: Kind) -> Result<u64, EngineError> {
        let bytes = self.object_bytes(r).await?;
        let bad = |e: FormatError| EngineError::caused_by(ErrorKind::Corrupted, &r.key, e);
        match kind {
            Kind::Segment => {
                let seg = Segment::open(bytes).map_err(bad)?;
                for row in 0..seg.len() {
                    seg.doc(row).map_err(|e| {
                        EngineError::caused_by(ErrorKind::Corrupted, format!("{}: row {row}", r.key), e)
                    })?;
                }
                Ok(seg.len() as u64)
            }
            Kind::Deletes => DeletionSet::decode(&bytes).map(|_| 0).map_err(bad),
            Kind::Wal => WalBatch::decode(&bytes).map(|_| 0).map_err(bad),
            Kind::Schema => decode_schema_object(r, &bytes).map(|_| 0).map_err(bad),
        }
    }

    /// After a query met bytes that changed since they were verified (`crate::integrity`): mark
    /// the object damaged (verify reports it), drop it from the disk cache and every loaded state
    /// that holds it, so the next read loads it again — downloaded and verified anew from a
    /// bucket, or refused with a clear error where the damaged file is the store itself.
    pub(crate) fn forget_rotten(&self, e: &EngineError) {
        let Some(rot) = e.rot_of() else { return };
        if self.store.local_root().is_some() {
            self.mark_damaged(&rot.object, &rot.to_string());
        } else {
            let mut marks = self.refetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            marks.insert(rot.object.clone(), rot.to_string());
        }
        self.drop_object(&rot.object);
    }

    /// Objects marked damaged at run time, by key (what a sync round may fetch again).
    pub fn damaged_keys(&self) -> Vec<String> {
        self.damaged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect()
    }

    /// `key` was written again, verified, from a copy elsewhere (the sync remote): its damage
    /// mark becomes a `refetched` one, and the damaged bytes leave the caches and loaded states.
    pub fn object_restored(&self, key: &str, from: &str) {
        let was = self.damaged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
        let what = format!("{}; fetched again from {from}", was.unwrap_or_else(|| "damaged".into()));
        self.refetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_owned(), what);
        self.drop_object(key);
    }

    /// Drop `key` from the disk cache and every loaded state that holds it (the next read loads it
    /// again).
    fn drop_object(&self, key: &str) {
        self.cache.invalidate(key);
        let handles: Vec<_> = {
            let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.values().cloned().collect()
        };
        for h in handles {
            let holds = super::cached(&h)
                .and_then(|s| s.manifest)
                .is_some_and(|m| m.object_keys().iter().any(|k| k == key));
            if holds {
                super::clear_cached(&h);
            }
        }
    }

    /// Marks for rot that reads outside a query met (a background task's), for verify.
    fn collect_unscoped_rot(&self) {
        for rot in crate::integrity::take_unscoped() {
            self.mark_damaged(&rot.object, &rot.to_string());
        }
    }

    /// Remember that an object was found damaged at run time (verify reports it).
    pub(crate) fn mark_damaged(&self, key: &str, error: &str) {
        let mut marks = self.damaged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        marks.insert(key.to_owned(), error.to_owned());
    }

    fn refetch_mark(&self, key: &str) -> Option<String> {
        self.refetched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned()
    }

    fn damage_mark(&self, key: &str) -> Option<String> {
        let marks = self.damaged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        marks.get(key).map(|e| format!("marked damaged at run time: {e}"))
    }
}

/// Check the bytes of object `key` of manifest `m` as a restore receives
/// them: the manifest names the key, its length and crc32c match the
/// manifest's, and it decodes whole (a WAL batch with the seq the manifest
/// gives it; a segment row by row; a deletion set). The error names the key.
pub(crate) fn check_object_bytes(m: &Manifest, key: &str, bytes: &bytes::Bytes) -> Result<(), String> {
    let (r, kind, seq) = reference(m, key).ok_or_else(|| format!("object {key} is not in its manifest"))?;
    if bytes.len() as u64 != r.bytes || crc32c::crc32c(bytes) != r.crc32c {
        return Err(format!("object {key} does not match the length and checksum its manifest records"));
    }
    let bad = |e: &dyn std::fmt::Display| format!("object {key} does not decode: {e}");
    match kind {
        Kind::Segment => {
            let seg = Segment::open(bytes.clone()).map_err(|e| bad(&e))?;
            for row in 0..seg.len() {
                seg.doc(row).map_err(|e| bad(&format!("row {row}: {e}")))?;
            }
        }
        Kind::Deletes => {
            DeletionSet::decode(bytes).map_err(|e| bad(&e))?;
        }
        Kind::Schema => {
            decode_schema_object(&r, bytes).map_err(|e| bad(&e))?;
        }
        Kind::Wal => {
            let b = WalBatch::decode(bytes).map_err(|e| bad(&e))?;
            if Some(b.seq) != seq {
                return Err(bad(&format!("it holds seq {} where its manifest says {seq:?}", b.seq)));
            }
        }
    }
    Ok(())
}

/// The manifest's reference to `key`: what it must be, and (a WAL batch) its seq.
fn reference(m: &Manifest, key: &str) -> Option<(ObjectRef, Kind, Option<u64>)> {
    if let Some(w) = m.wal.iter().find(|w| w.key == key) {
        return Some((
            ObjectRef { key: w.key.clone(), bytes: w.bytes, crc32c: w.crc32c },
            Kind::Wal,
            Some(w.seq),
        ));
    }
    if let Some(r) = m.schema_ref.as_ref().filter(|r| r.key == key) {
        return Some((r.clone(), Kind::Schema, None));
    }
    m.segments.iter().find_map(|s| {
        let file = s.files.iter().find(|f| f.key == key).map(|f| (f.clone(), Kind::Segment, None));
        file.or_else(|| s.deletes.as_ref().filter(|d| d.key == key).map(|d| (d.clone(), Kind::Deletes, None)))
    })
}

fn add_objects(objects: &mut Objects, path: &NsPath, m: &Manifest) {
    let ns = path.ns().to_owned();
    let mut add = |r: ObjectRef, kind| {
        objects.entry(r.key.clone()).or_insert_with(|| (r, kind, Vec::new())).2.push(ns.clone());
    };
    for w in &m.wal {
        add(ObjectRef { key: w.key.clone(), bytes: w.bytes, crc32c: w.crc32c }, Kind::Wal);
    }
    for s in &m.segments {
        for f in &s.files {
            add(f.clone(), Kind::Segment);
        }
        if let Some(d) = &s.deletes {
            add(d.clone(), Kind::Deletes);
        }
    }
    if let Some(r) = &m.schema_ref {
        add(r.clone(), Kind::Schema);
    }
}
