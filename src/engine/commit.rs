//! The commit unit: one namespace's manifest log on one [`Store`], and the
//! only code that publishes a manifest generation (`storage-format.md` 5).
//!
//! A [`ManifestLog`] owns every step of the protocol, for every mutation
//! (writes, namespace delete, compaction, branch/copy, restore):
//! 1. the caller writes the new immutable objects;
//! 2. it raises their refcounts through [`ManifestLog::raise`] (or
//!    [`ManifestLog::hold_shared`] for objects another namespace holds too);
//! 3. [`ManifestLog::commit`] derives the next manifest from the newest base (the caller's
//!    closure) and creates `manifests/{gen}.json` conditionally, resolving an
//!    ambiguous create by the commit id (and, when it finds its own manifest,
//!    trusting it only once its directory entry is durable), then checks the GC fence
//!    (`{gen}.gc`); on a lost race it re-reads the newest generation and
//!    derives again (rebase), up to the attempt limit;
//! 4. it rewrites the `CURRENT` hint (best effort: readers probe past it);
//! 5. it releases what the new generation dropped: refcounts down, delete at
//!    zero (own keys only; deferred while retention keeps old generations).
//!
//! Invariants:
//! - The manifest log is one [`SeqLog`] (`store/seqlog.rs`) over the
//!   namespace's manifest series: the conditional create of a manifest, its
//!   ambiguous outcome, the GC fence and the probe for the newest generation
//!   are that type's; this unit says what a manifest holds and whose it is
//!   (the commit id).
//! - A create that reported an error is never acknowledged on the strength of
//!   the object being visible: an `AlreadyExists` carrying our commit id is
//!   trusted only after [`Store::sync_entry`] made its directory entry durable
//!   (a failed directory fsync leaves a visible but volatile entry), and on a
//!   local directory, where the failed try left the key of unknown
//!   durability, not at all (a later fsync proves nothing after a failed
//!   one, `storage-format.md` 5.6): the outcome is unknown and the commit
//!   fails; the next commit is a new generation, written in full.
//! - New objects are released only when their generation was certainly not
//!   created (a lost race or a refused derive). After an unknown outcome they
//!   are kept: the manifest may exist and reference them (a leak at worst,
//!   which repair reclaims; never a dangling reference).
//! - The log reads and writes only the store it was given, so the same unit
//!   commits to the local store and to any other (a sync remote).
//! - A remote log ([`ManifestLog::remote`]) keeps no books: it raises no
//!   refcount, reads no local manifest cache and deletes nothing (objects in
//!   a sync remote are reclaimed only by a sweep over every live manifest).
//! - Schemas are stored once per change (`storage-format.md` 4.5): before
//!   every create, [`ManifestLog::commit`] keeps an inline schema inline, keeps
//!   a `schema_ref` that still names exactly the manifest's schema, and
//!   otherwise writes a schema object, counts it and references it; the
//!   object is one of the commit's new objects (released when the generation
//!   was certainly not created). Every manifest the log reads comes back with
//!   its schema resolved (the object read through the disk cache, verified),
//!   never with an empty stand-in.
//! - Readers find the newest generation by probing `g+1` after the hint
//!   ([`SeqLog::newest`]): the GET of `{g+1}.json` first, then the HEAD of
//!   `{g+1}.gc` (GC creates the tombstone before it deletes the manifest, so
//!   in this order a collected generation is always seen as one or the other).

use std::sync::Arc;

use bytes::Bytes;

use super::EngineError;
use crate::cache::CacheError;
use crate::cache::ObjectCache;
use crate::engine::ErrorKind;
use crate::format::manifest::{
    decode_current_full, decode_schema_object, encode_current_with_manifest, encode_schema_object,
    schema_json, schema_object_ref, Manifest, ObjectRef, SCHEMA_INLINE_MAX_BYTES,
};
use crate::layout::NsPath;
use crate::meta::{HeldWal, Meta, MetaError};
use crate::store::seqlog::{Created, OpenSeq, SeqError, SeqLog, Start};
use crate::store::Store;

/// How many times a commit that lost a race is re-derived before giving up.
pub(crate) const MAX_COMMIT_ATTEMPTS: usize = 16;

/// Why a commit did not publish its generation.
pub(crate) enum CommitError {
    /// Certainly not created: another writer took the generation, GC fenced
    /// it, or the derive step refused the base. The new objects were released.
    Lost,
    /// A fault; the outcome may be unknown. The new objects were kept.
    Failed(EngineError),
}

impl From<EngineError> for CommitError {
    fn from(e: EngineError) -> Self {
        CommitError::Failed(e)
    }
}

/// What the derive step decides for one base generation.
#[allow(clippy::large_enum_variant)] // one per commit attempt, moved once
pub(crate) enum Derived {
    /// Publish this manifest (its generation is the base's + 1).
    Commit(Manifest),
    /// This base cannot take the change (for example a compaction whose
    /// inputs changed): stop with [`CommitError::Lost`].
    Refuse,
}

/// A published generation.
pub(crate) struct Committed {
    /// The manifest now in the log.
    pub(crate) manifest: Manifest,
}

/// One namespace's manifest log on one store.
#[derive(Clone)]
pub(crate) struct ManifestLog {
    store: Store,
    path: NsPath,
    books: Option<Books>,
    /// Leave schemas unresolved (verify, repair and delete read manifests
    /// whose schema object may be damaged; they need only the keys).
    keep_unresolved: bool,
}

/// The local bookkeeping of a log on the node's own store.
#[derive(Clone)]
struct Books {
    meta: Arc<Meta>,
    cache: Arc<ObjectCache>,
    retention_ms: u64,
}

impl ManifestLog {
    /// The log of `path` on `store`, counting references in `meta` and
    /// invalidating deleted objects in `cache`.
    pub(crate) fn new(
        store: Store,
        meta: Arc<Meta>,
        cache: Arc<ObjectCache>,
        path: NsPath,
        retention_ms: u64,
    ) -> Self {
        ManifestLog { store, path, books: Some(Books { meta, cache, retention_ms }), keep_unresolved: false }
    }

    /// The log of `path` on a sync remote: no refcounts, no cache, no deletes.
    pub(crate) fn remote(store: Store, path: NsPath) -> Self {
        ManifestLog { store, path, books: None, keep_unresolved: false }
    }

    /// This log reading manifests as stored, their schema objects not read
    /// (verify checks those objects itself; repair and delete need only the
    /// keys). What it commits keeps the references it read.
    pub(crate) fn without_schemas(mut self) -> Self {
        self.keep_unresolved = true;
        self
    }

    /// The namespace this log belongs to.
    pub(crate) fn path(&self) -> &NsPath {
        &self.path
    }

    // ----- reading the newest generation -----------------------------------

    /// Where to start probing for the newest generation, and that
    /// generation's manifest when a version-2 CURRENT embeds it (manifests
    /// are immutable, so it equals `manifests/{g}.json`; read from the store
    /// just now, so a namespace removed from the store is not resurrected by
    /// local metadata: the `meta.redb` copy only gives the generation).
    pub(crate) async fn generation_hint(&self) -> Result<(Option<u64>, Option<Manifest>), EngineError> {
        if self.books.is_some() {
            let ns = self.path.to_string();
            if let Some(bytes) = self.blocking(move |m| m.cached_manifest(&ns)).await? {
                if let Ok(m) = Manifest::decode(&bytes) {
                    return Ok((Some(m.generation), None));
                }
            }
        }
        Ok(match self.store.get_hint(&self.path.current_key()).await? {
            Some(b) => match decode_current_full(&b) {
                Ok((g, Some(m))) if m.namespace == self.path.to_string() => {
                    (Some(g), Some(self.resolve(m, None).await?))
                }
                Ok((g, _)) => (Some(g), None),
                Err(_) => (None, None),
            },
            None => (None, None),
        })
    }

    /// `m` with its schema read from the schema object it names, when it is
    /// unresolved (4.5). `known`, a manifest already resolved that names the
    /// same object, saves the read.
    pub(crate) async fn resolve(
        &self,
        mut m: Manifest,
        known: Option<&Manifest>,
    ) -> Result<Manifest, EngineError> {
        let Some(r) = m.schema_ref.clone().filter(|_| m.schema_unresolved() && !self.keep_unresolved) else {
            return Ok(m);
        };
        if let Some(k) = known.filter(|k| k.schema_ref.as_ref() == Some(&r) && !k.schema_unresolved()) {
            m.schema.clone_from(&k.schema);
            return Ok(m);
        }
        let missing = || {
            EngineError::corrupted(format!(
                "manifest {} generation {} references missing schema object {}",
                m.namespace, m.generation, r.key
            ))
        };
        let bytes = match &self.books {
            Some(books) => books.cache.get(&r.key, &r).await.map_err(|e| match e {
                CacheError::NotFound(_) => missing(),
                CacheError::Corrupt { key, .. } => EngineError::corrupted(format!(
                    "schema object {key} does not match its manifest checksum"
                )),
                other => EngineError::wrap(ErrorKind::Unavailable, other),
            })?,
            None => self.store.get_opt(&r.key).await?.ok_or_else(missing)?,
        };
        m.schema = decode_schema_object(&r, &bytes).map_err(|e| {
            EngineError::caused_by(ErrorKind::Corrupted, format!("schema object {}", r.key), e)
        })?;
        Ok(m)
    }

    /// Find the newest live manifest at or after `hint` (listing when the
    /// hint is missing or points at a collected generation; 5.2).
    pub(crate) async fn newest_from(
        &self,
        (hint, known): (Option<u64>, Option<Manifest>),
    ) -> Result<Option<Manifest>, EngineError> {
        let start = match (hint, known) {
            (Some(g), Some(m)) if m.generation == g => Start::Known(g, m),
            (Some(g), _) => Start::At(g),
            _ => Start::Unknown,
        };
        Ok(self.seq().newest(start, &Opener(self)).await?.map(|(_, m)| m))
    }

    /// The manifest series of this namespace on this log's store.
    fn seq(&self) -> SeqLog {
        SeqLog::new(self.store.clone(), self.path.manifest_series())
    }

    /// The manifest of one generation (None: not in the store), its schema
    /// resolved.
    pub(crate) async fn read(&self, generation: u64) -> Result<Option<Manifest>, EngineError> {
        self.read_after(generation, None).await
    }

    /// [`ManifestLog::read`], taking the schema from `known` when it names
    /// the same schema object.
    async fn read_after(
        &self,
        generation: u64,
        known: Option<&Manifest>,
    ) -> Result<Option<Manifest>, EngineError> {
        match self.seq().get(generation).await? {
            Some(bytes) => Ok(Some(self.open(generation, &bytes, known).await?)),
            None => Ok(None),
        }
    }

    /// Decode the manifest of `generation`, check that it is that
    /// generation of this namespace, and resolve its schema.
    async fn open(
        &self,
        generation: u64,
        bytes: &[u8],
        known: Option<&Manifest>,
    ) -> Result<Manifest, EngineError> {
        let m = Manifest::decode(bytes)?;
        if m.generation != generation || m.namespace != self.path.to_string() {
            return Err(EngineError::corrupted(format!(
                "manifest {} names {} generation {}",
                self.path.manifest_key(generation),
                m.namespace,
                m.generation
            )));
        }
        self.resolve(m, known).await
    }

    // ----- committing --------------------------------------------------------

    /// Steps 3–5: derive the next manifest from `base` and publish it; on a lost race re-read the newest
    /// generation and derive again (at most `attempts` tries in all, with
    /// jittered backoff from `backoff`). After a success, the keys the base
    /// referenced and the new generation does not are released.
    ///
    /// `new_objects` are the objects this commit adds, already counted (step
    /// 2); they are released when the generation is certainly not created.
    pub(crate) async fn commit<B>(
        &self,
        base: Option<Arc<Manifest>>,
        new_objects: &[String],
        attempts: usize,
        backoff: impl Fn(usize) -> B,
        mut derive: impl FnMut(Option<&Manifest>) -> Result<Derived, EngineError>,
    ) -> Result<Committed, CommitError>
    where
        B: std::future::Future<Output = ()>,
    {
        let mut base = base;
        for attempt in 1..=attempts.max(1) {
            let mut next = match derive(base.as_deref()) {
                Ok(Derived::Commit(m)) => m,
                Ok(Derived::Refuse) => return Err(self.lost(new_objects).await),
                Err(e) => {
                    self.release(new_objects.to_vec()).await;
                    return Err(CommitError::Failed(e));
                }
            };
            let schema_object = match self.place_schema(&mut next).await {
                Ok(k) => k,
                Err(e) => {
                    self.release(new_objects.to_vec()).await;
                    return Err(CommitError::Failed(e));
                }
            };
            let dropped = base.as_deref().map(|b| dropped_keys(b, &next)).unwrap_or_default();
            if let Err(e) = self.settle_hints_before_dropping(&dropped).await {
                self.release(new_objects.iter().cloned().chain(schema_object).collect()).await;
                return Err(CommitError::Failed(e));
            }
            match self.publish(&next).await {
                Ok(()) => {
                    if let Some(b) = &base {
                        self.release_dropped(b, &next, dropped).await;
                    }
                    return Ok(Committed { manifest: next });
                }
                Err(CommitError::Lost) if attempt < attempts => {
                    tracing::debug!(namespace = %self.path, attempt, "commit lost a race; rebasing on the newest generation");
                    self.release(schema_object.into_iter().collect()).await;
                    backoff(attempt).await;
                    let known = base.as_ref().map(|b| b.generation);
                    base = self.newest_from((known, None)).await.map_err(CommitError::Failed)?.map(Arc::new);
                }
                Err(CommitError::Lost) => {
                    self.release(schema_object.into_iter().collect()).await;
                    return Err(self.lost(new_objects).await);
                }
                Err(e) => return Err(e),
            }
        }
        Err(self.lost(new_objects).await)
    }

    /// Where `next`'s schema is stored (4.5): inline when small; in the
    /// object its `schema_ref` names when that object holds exactly this
    /// schema; else in a new schema object, written and counted here, whose
    /// key is returned (a new object of this attempt). An unresolved
    /// manifest keeps its reference (it was read with it).
    async fn place_schema(&self, next: &mut Manifest) -> Result<Option<String>, EngineError> {
        if next.schema_unresolved() {
            return Ok(None);
        }
        let body = schema_json(&next.schema);
        if body.len() <= SCHEMA_INLINE_MAX_BYTES {
            next.schema_ref = None;
            return Ok(None);
        }
        let bytes = encode_schema_object(&body);
        let same = |r: &ObjectRef| r.bytes == bytes.len() as u64 && r.crc32c == crc32c::crc32c(&bytes);
        if next.schema_ref.as_ref().is_some_and(same) {
            return Ok(None);
        }
        let r = schema_object_ref(self.path.schema_key(next.generation, &next.commit_id), &bytes);
        let bytes = Bytes::from(bytes);
        self.store.put(&r.key, bytes.clone()).await?;
        if let Some(books) = &self.books {
            books.cache.keep_written(&r, bytes).await;
        }
        self.raise(std::slice::from_ref(&r.key)).await?;
        let key = r.key.clone();
        next.schema_ref = Some(r);
        Ok(Some(key))
    }

    /// Release objects of a generation that was certainly not created.
    async fn lost(&self, new_objects: &[String]) -> CommitError {
        self.release(new_objects.to_vec()).await;
        CommitError::Lost
    }

    /// Step 2: raise the project refcounts of new objects.
    pub(crate) async fn raise(&self, keys: &[String]) -> Result<(), EngineError> {
        if keys.is_empty() || self.books.is_none() {
            return Ok(());
        }
        let (project, keys) = (self.path.project_id(), keys.to_vec());
        self.blocking(move |m| m.incr_refs(&project, &keys)).await
    }

    /// Step 2 for objects other namespaces hold too (a branch or shallow
    /// copy): raise the count of every key, then check that each had another
    /// live holder (count >= 2 now); otherwise give the increments back and
    /// refuse, because a key at zero may be in the middle of being reclaimed.
    pub(crate) async fn hold_shared(&self, keys: &[String]) -> Result<(), EngineError> {
        if self.books.is_none() {
            return Ok(());
        }
        self.raise(keys).await?;
        let (p, k) = (self.path.project_id(), keys.to_vec());
        let counts = self
            .blocking(move |m| k.iter().map(|key| m.refcount(&p, key).map(|n| (key.clone(), n))).collect())
            .await;
        let weak: Vec<String> = match counts {
            Ok(c) => {
                let c: Vec<(String, u64)> = c;
                c.into_iter().filter(|(_, n)| *n < 2).map(|(k, _)| k).collect()
            }
            Err(e) => {
                self.give_back(keys).await;
                return Err(e);
            }
        };
        if let Some(first) = weak.first() {
            self.give_back(keys).await;
            return Err(EngineError::conflict(format!(
                "object {first} (and {} more) is no longer held by any live namespace, so it may be \
                 in the middle of being reclaimed; branch or copy a newer generation (or, if this data \
                 dir's refcounts are incomplete, e.g. the source was written by another daemon, run \
                 `tidepool repair` first)",
                weak.len() - 1
            )));
        }
        Ok(())
    }

    /// Lower counts raised by a refused operation without deleting anything
    /// (a key that reaches zero is left for repair's sweep).
    pub(crate) async fn give_back(&self, keys: &[String]) {
        if self.books.is_none() {
            return;
        }
        let (p, k) = (self.path.project_id(), keys.to_vec());
        if let Err(e) = self.blocking(move |m| m.decr_refs(&p, &k)).await {
            tracing::warn!(namespace = %self.path, error = %e, "could not give back refcounts; they leak until repair");
        }
    }

    /// Steps 3–4 for one manifest: conditional create, ambiguous outcomes
    /// resolved by the commit id, the GC-fence check (all [`SeqLog::create`]),
    /// then the CURRENT hint.
    pub(crate) async fn publish(&self, m: &Manifest) -> Result<(), CommitError> {
        let bytes = m.try_encode().map_err(|e| {
            CommitError::Failed(EngineError::caused_by(ErrorKind::Internal, "invalid manifest", e))
        })?;
        let ours = |found: &[u8]| Ok(Manifest::decode(found)?.commit_id == m.commit_id);
        match self.seq().create(m.generation, Bytes::from(bytes), ours).await {
            Ok(Created::Won) => {}
            // Another writer took the generation, or GC had collected it
            // before our create landed (our zombie was removed again).
            Ok(Created::Lost(_) | Created::Fenced) => return Err(CommitError::Lost),
            Err(e) => return Err(CommitError::Failed(seq_error(e))),
        }
        let current = Bytes::from(encode_current_with_manifest(m));
        if let Err(e) = self.store.put_hint(&self.path.current_key(), current).await {
            tracing::warn!(namespace = %self.path, error = %e, "could not update the CURRENT hint (readers will probe)");
        }
        Ok(())
    }

    /// Step 5: lower refcounts; delete what reached zero (own keys only),
    /// unless retention keeps superseded generations readable (the GC sweep
    /// deletes them once no retained generation references them).
    pub(crate) async fn release(&self, keys: Vec<String>) {
        if self.books.is_none() || keys.is_empty() {
            return;
        }
        let project = self.path.project_id();
        match self.blocking(move |m| m.decr_refs(&project, &keys)).await {
            Ok(zeroed) => self.delete_zeroed(zeroed).await,
            Err(e) => {
                tracing::warn!(namespace = %self.path, error = %e, "refcount release failed; objects leak until repair")
            }
        }
    }

    /// Step 5 after a commit: release what `next` dropped of `base`, except
    /// the WAL batches the sync remote has not seen (at or above the
    /// namespace's sync floor): `meta.redb` holds those instead (section 12.1),
    /// so compaction never deletes a write that exists nowhere else in full.
    async fn release_dropped(&self, base: &Manifest, next: &Manifest, dropped: Vec<String>) {
        if self.books.is_none() || dropped.is_empty() || next.deleted {
            return self.release(dropped).await;
        }
        let wal: Vec<HeldWal> = base
            .wal
            .iter()
            .map(|w| HeldWal { key: w.key.clone(), seq: w.seq, bytes: w.bytes, crc32c: w.crc32c })
            .collect();
        let (project, ns) = (self.path.project_id(), self.path.to_string());
        match self.blocking(move |m| m.release_dropped(&project, &ns, &dropped, &wal)).await {
            Ok(r) => {
                if !r.held.is_empty() {
                    tracing::debug!(namespace = %self.path, batches = r.held.len(), "kept unsynced WAL batches for sync");
                }
                self.delete_zeroed(r.zeroed).await
            }
            Err(e) => {
                tracing::warn!(namespace = %self.path, error = %e, "refcount release failed; objects leak until repair")
            }
        }
    }

    /// Before a generation that drops objects (a compaction folding WAL
    /// batches, a delete) is created: the commit records kept without an
    /// fsync ([`Meta::record_commit`]) made durable, so an idempotency key
    /// whose WAL batch this generation folds is not lost with a crash.
    async fn settle_hints_before_dropping(&self, dropped: &[String]) -> Result<(), EngineError> {
        if dropped.is_empty() || self.books.is_none() {
            return Ok(());
        }
        self.blocking(Meta::settle_hints).await
    }

    /// Delete keys whose count reached zero (own keys only), unless
    /// retention keeps superseded generations readable (the GC sweep deletes
    /// them once no retained generation references them).
    pub(crate) async fn delete_zeroed(&self, zeroed: Vec<String>) {
        let Some(books) = self.books.clone() else { return };
        if books.retention_ms > 0 {
            return;
        }
        for key in zeroed.into_iter().filter(|k| self.path.owns(k)) {
            books.cache.invalidate(&key);
            if let Err(e) = self.store.delete(&key).await {
                tracing::warn!(key, error = %e, "delete of an unreferenced object failed; it leaks until repair");
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let books =
            self.books.as_ref().ok_or_else(|| EngineError::internal("a remote log keeps no books"))?;
        on_meta(&books.meta, f).await
    }
}

/// Run a `meta.redb` operation on the blocking pool (redb's calls block on
/// disk I/O and fsync; they must not stall the async workers).
pub(crate) async fn on_meta<T: Send + 'static>(
    meta: &Arc<Meta>,
    f: impl FnOnce(&Meta) -> Result<T, MetaError> + Send + 'static,
) -> Result<T, EngineError> {
    let meta = meta.clone();
    tokio::task::spawn_blocking(move || f(&meta))
        .await
        .map_err(|e| EngineError::wrap(ErrorKind::Internal, e))?
        .map_err(Into::into)
}

/// Keys `base` references that `next` does not (what a commit drops).
fn dropped_keys(base: &Manifest, next: &Manifest) -> Vec<String> {
    if base.deleted {
        return Vec::new();
    }
    let kept: std::collections::HashSet<String> = next.object_keys().into_iter().collect();
    base.object_keys().into_iter().filter(|k| !kept.contains(k)).collect()
}

/// How the probe opens a manifest: [`ManifestLog::open`], reusing the
/// previous generation's resolved schema.
struct Opener<'a>(&'a ManifestLog);

impl OpenSeq for Opener<'_> {
    type Item = Manifest;
    type Error = EngineError;

    async fn open(&self, n: u64, bytes: Bytes, prev: Option<&Manifest>) -> Result<Manifest, EngineError> {
        self.0.open(n, &bytes, prev).await
    }
}

/// A sequence-log failure as an engine error, its cause kept (an unreadable
/// manifest at a contested generation is a format error).
fn seq_error(e: SeqError) -> EngineError {
    match e {
        SeqError::Store(e) => e.into(),
        SeqError::Unreadable { source, .. } => source.into(),
    }
}

#[cfg(test)]
#[path = "commit_tests.rs"]
mod tests;
