//! Loading: the newest committed snapshot of a namespace, and materializing
//! a manifest into its state (segments read through the disk cache, WAL
//! batches replayed in order).
//!
//! Invariants:
//! - Reads see one generation: an immutable [`NsState`] snapshot. A strong
//!   read first checks the store for a newer generation (one HEAD of
//!   `manifests/{g+1}.json`, `SeqLog::successor_exists`); an eventual read
//!   uses the cached one.
//! - Materializing reuses the previous state when the new manifest only
//!   appends WAL batches to it (same segments, WAL prefix equal).
//! - After a compaction's commit the new state is refolded from the state the
//!   round folded and the newest one ([`Engine::refold`], `state/refold.rs`):
//!   no WAL batch is read for it. Whatever does not fit that shape replays.
//! - A replay streams: WAL batches are read a few ahead, applied and dropped
//!   one at a time, so a long WAL is never held decoded all at once.
//! - Every WAL batch is checked against its manifest entry (sequence), every
//!   object against its checksum (by the cache), before it is used.

use std::sync::Arc;

use futures::StreamExt;

use super::{apply, cached, set_cached, Engine, EngineError, NsHandle, NsState};
use crate::cache::CacheError;
use crate::engine::ErrorKind;
use crate::format::manifest::{Manifest, ObjectRef, WalRef};
use crate::format::wal::WalBatch;
use crate::layout::NsPath;
use crate::model::DocId;
use crate::store::seqlog::SeqLog;

/// One committed view of a namespace.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The manifest of this generation (None: the namespace never existed).
    pub manifest: Option<Arc<Manifest>>,
    /// The materialized state.
    pub state: Arc<NsState>,
}

impl Snapshot {
    /// Whether the namespace exists at this generation.
    pub fn exists(&self) -> bool {
        self.manifest.as_ref().is_some_and(|m| !m.deleted)
    }
    /// The generation (0 when never created).
    pub fn generation(&self) -> u64 {
        self.manifest.as_ref().map_or(0, |m| m.generation)
    }
}

impl Engine {
    /// The newest committed snapshot. `strong` checks the store for a newer
    /// generation first (one HEAD); otherwise the cached one is used.
    pub async fn snapshot(&self, path: &NsPath, strong: bool) -> Result<Snapshot, EngineError> {
        let h = self.handle(path);
        let loaded = cached(&h);
        self.metrics.observe_memory_tier(loaded.is_some());
        if let Some(s) = loaded {
            if !strong || !self.manifests(path).successor_exists(s.generation()).await? {
                return Ok(s);
            }
        }
        self.reload(&h).await
    }

    /// The newest manifest of a namespace without materializing its state
    /// (None: never created). Cheap: one HEAD when the handle is warm.
    pub async fn latest_manifest(&self, path: &NsPath) -> Result<Option<Arc<Manifest>>, EngineError> {
        let h = self.handle(path);
        if let Some(s) = cached(&h) {
            if !self.manifests(path).successor_exists(s.generation()).await? {
                return Ok(s.manifest);
            }
        }
        let log = self.log(path);
        let start = match cached(&h) {
            Some(s) => (Some(s.generation()), None),
            None => log.generation_hint().await?,
        };
        Ok(log.newest_from(start).await?.map(Arc::new))
    }

    /// The manifest series of `path` on the engine's store.
    fn manifests(&self, path: &NsPath) -> SeqLog {
        SeqLog::new(self.store.clone(), path.manifest_series())
    }

    /// The last generation this node knew, without asking the store: the
    /// loaded state, else the manifest cached in `meta.redb` materialized from
    /// the disk cache. For reads that may be stale while the store is
    /// unreachable (the caller did not demand strong consistency).
    pub async fn offline_snapshot(&self, path: &NsPath) -> Result<Snapshot, EngineError> {
        let h = self.handle(path);
        if let Some(s) = cached(&h) {
            return Ok(s);
        }
        let _g = h.load_lock.lock().await;
        let ns = path.to_string();
        let bytes = self.blocking(move |m| m.cached_manifest(&ns)).await?.ok_or_else(|| {
            EngineError::unavailable(format!(
                "the store is unreachable and namespace {} was never loaded here",
                path.ns()
            ))
        })?;
        let m = self.log(path).resolve(Manifest::decode(&bytes)?, None).await?;
        let snap = self.materialize(path, Arc::new(m), None).await?;
        set_cached(&h, snap.clone());
        Ok(snap)
    }

    /// The snapshot of an existing namespace, or NotFound.
    pub async fn existing(&self, path: &NsPath, strong: bool) -> Result<Snapshot, EngineError> {
        let s = self.snapshot(path, strong).await?;
        if !s.exists() {
            return Err(EngineError::not_found(format!("namespace {} not found", path.ns())));
        }
        Ok(s)
    }

    /// Fetch documents by id (None for missing ids).
    pub async fn get(
        &self,
        path: &NsPath,
        ids: &[DocId],
    ) -> Result<Vec<Option<Arc<crate::model::Document>>>, EngineError> {
        let s = self.existing(path, true).await?;
        crate::integrity::within(|| ids.iter().map(|id| s.state.get(id)).collect())
            .map_err(EngineError::rot)
            .inspect_err(|e| self.forget_rotten(e))
    }

    pub(crate) async fn reload(&self, h: &NsHandle) -> Result<Snapshot, EngineError> {
        let _g = h.load_lock.lock().await;
        self.reload_locked(h).await
    }

    /// [`Engine::reload`] for a caller that holds `h.load_lock`.
    pub(crate) async fn reload_locked(&self, h: &NsHandle) -> Result<Snapshot, EngineError> {
        let prev = cached(h);
        let log = self.log(&h.path);
        let start = match &prev {
            Some(s) => (Some(s.generation()), None),
            None => log.generation_hint().await?,
        };
        let manifest = log.newest_from(start).await?;
        let snap = match (manifest, prev) {
            (None, _) => Snapshot { manifest: None, state: Arc::new(self.empty_state()) },
            (Some(m), Some(p)) if p.generation() == m.generation => p,
            (Some(m), prev) => self.materialize(&h.path, Arc::new(m), prev.as_ref()).await?,
        };
        set_cached(h, snap.clone());
        self.enforce_memory_budget();
        Ok(snap)
    }

    /// Build the state of `m`, reusing `prev` when `m` only appends WAL to it.
    pub(crate) async fn materialize(
        &self,
        path: &NsPath,
        m: Arc<Manifest>,
        prev: Option<&Snapshot>,
    ) -> Result<Snapshot, EngineError> {
        if m.deleted {
            return Ok(Snapshot { manifest: Some(m), state: Arc::new(self.empty_state()) });
        }
        let reuse = prev
            .and_then(|p| p.manifest.as_ref().map(|pm| (p, pm)))
            .filter(|(_, pm)| !pm.deleted && pm.segments == m.segments && m.wal.starts_with(&pm.wal));
        let skip = reuse.map_or(0, |(_, pm)| pm.wal.len());
        let mut wal = self.wal_batches(&m.wal[skip..]);
        let base = async {
            match reuse {
                Some((p, _)) => Ok((*p.state).clone()),
                None => self.base_state(&m).await,
            }
        };
        // The segments and the first WAL batches are fetched in the same
        // round trip.
        let (state, first) = futures::join!(base, wal.next());
        let mut state = state?;
        replay_batches(path, &mut state, first, &mut wal).await?;
        drop(wal);
        // The manifest's figure covers the segments too (their rows' sizes
        // are not recomputed at load).
        state.logical_bytes = m.stats.approx_logical_bytes;
        Ok(Snapshot { manifest: Some(m), state: Arc::new(state) })
    }

    /// The WAL batches `refs` names, in order, read ahead a few at a time:
    /// consumed one by one, so a long WAL is never decoded all at once.
    fn wal_batches<'a>(
        &'a self,
        refs: &'a [WalRef],
    ) -> impl futures::Stream<Item = Result<WalBatch, EngineError>> + Unpin + Send + 'a {
        // Collect the futures first: a closure inside the stream makes the
        // future not `Send` for every lifetime (rust-lang/rust#102211).
        let reads: Vec<_> = refs.iter().map(|r| Box::pin(self.read_wal(r))).collect();
        futures::stream::iter(reads).buffered(WAL_READ_AHEAD)
    }

    /// The state of `m`, a compaction's commit, without reading its WAL:
    /// `compacted` is the state the round folded (at manifest `folded`),
    /// `newest` the generation the commit was made on. The entries `newest`
    /// changed since `compacted` are refolded onto `m`'s segments
    /// ([`NsState::refold`]); WAL batches `m` holds beyond `newest`'s (a
    /// commit rebased on another process's writes) are replayed. None when
    /// the states are not related that way: the caller replays instead.
    pub(crate) async fn refold(
        &self,
        path: &NsPath,
        m: Arc<Manifest>,
        (folded, compacted): (&Manifest, Arc<NsState>),
        newest: &Snapshot,
    ) -> Result<Option<Snapshot>, EngineError> {
        let Some(nm) = newest.manifest.as_ref() else { return Ok(None) };
        let related = !m.deleted
            && !folded.deleted
            && !nm.deleted
            && nm.segments == folded.segments
            && nm.wal.starts_with(&folded.wal)
            && m.wal.starts_with(&nm.wal[folded.wal.len()..]);
        if !related {
            return Ok(None);
        }
        let kept = nm.wal.len() - folded.wal.len();
        let base = self.base_state(&m).await?;
        // CPU work in proportion to the writes made during the round (a
        // million entries at scale): on a blocking thread. The caller holds the
        // commit lock, so the folded state, once diffed, is freed on another
        // one (the whole overlay the round folded: a second of a 1M ingest's
        // serial path, freed in it).
        let newest_state = Arc::clone(&newest.state);
        // Segment ids read here are checked like a query's (`crate::integrity`): a changed byte
        // makes the refold give up, and the WAL is replayed instead.
        let refolded = tokio::task::spawn_blocking(move || {
            let refolded =
                crate::integrity::within(|| NsState::refold(base, &compacted, &newest_state)).ok().flatten();
            super::drop_in_background(compacted);
            refolded
        })
        .await
        .map_err(|e| EngineError::caused_by(ErrorKind::Internal, "refold task", e))?;
        let Some(mut state) = refolded else {
            tracing::warn!(namespace = %path, generation = m.generation,
                "a compaction's states do not refold; replaying its WAL instead");
            return Ok(None);
        };
        let mut wal = self.wal_batches(&m.wal[kept..]);
        let first = wal.next().await;
        replay_batches(path, &mut state, first, &mut wal).await?;
        drop(wal);
        state.logical_bytes = m.stats.approx_logical_bytes;
        Ok(Some(Snapshot { manifest: Some(m), state: Arc::new(state) }))
    }

    /// The state of a manifest's segments, with its namespace settings, before
    /// its WAL is replayed.
    async fn base_state(&self, m: &Manifest) -> Result<NsState, EngineError> {
        if m.schema_unresolved() {
            return Err(EngineError::internal(format!(
                "manifest of {} loaded without its schema",
                m.namespace
            )));
        }
        let mut state =
            NsState::with_segments(self.load_segments(m).await?).with_spill(Some(Arc::clone(&self.spill)));
        state.schema = m.schema.clone();
        state.id_type = m.id_type;
        state.distance_metric = m.distance_metric;
        state.vector_dim = m.vector_dim;
        Ok(state)
    }

    /// A WAL batch the manifest names, through the disk cache (verified
    /// against the manifest's length and crc32c; a restart on a bucket store
    /// does not download it again).
    pub(crate) async fn read_wal(&self, r: &WalRef) -> Result<WalBatch, EngineError> {
        let obj = ObjectRef { key: r.key.clone(), bytes: r.bytes, crc32c: r.crc32c };
        let bytes = self.cache.get(&r.key, &obj).await.map_err(|e| match e {
            CacheError::NotFound(k) => {
                EngineError::corrupted(format!("manifest references missing WAL object {k}"))
            }
            CacheError::Corrupt { key, .. } => {
                EngineError::corrupted(format!("WAL object {key} does not match its manifest checksum"))
            }
            other => EngineError::wrap(ErrorKind::Unavailable, other),
        })?;
        let b = WalBatch::decode(&bytes)?;
        // Verified and decoded: the mapping (kept by the cache) need not stay
        // resident; a million-row backlog is gigabytes of WAL (cache/mapping.rs).
        crate::cache::release_resident(&bytes);
        if b.seq != r.seq {
            return Err(EngineError::corrupted(format!(
                "WAL object {} holds seq {} not {}",
                r.key, b.seq, r.seq
            )));
        }
        Ok(b)
    }
}

/// WAL batches read ahead of the one being replayed.
const WAL_READ_AHEAD: usize = 8;

/// Replay `first` and then the rest of `wal` into `state`, one batch at a
/// time (each is dropped once applied).
async fn replay_batches(
    path: &NsPath,
    state: &mut NsState,
    first: Option<Result<WalBatch, EngineError>>,
    wal: &mut (impl futures::Stream<Item = Result<WalBatch, EngineError>> + Unpin),
) -> Result<(), EngineError> {
    let mut next = first;
    while let Some(batch) = next {
        let b = batch?;
        let rule = apply::DatetimeRule::of_wal_flags(b.flags);
        let scalar_in = b.flags & crate::format::wal::WAL_FLAG_IN_ANY_ELEMENT == 0;
        for req in &b.requests {
            // A batch applied before `In` looked into arrays replays as it was applied.
            let req = &if scalar_in && req.ops.has_in() {
                let mut legacy = req.clone();
                legacy.ops.make_scalar_in();
                std::borrow::Cow::Owned(legacy)
            } else {
                std::borrow::Cow::Borrowed(req)
            };
            apply::replay_request(state, req, rule).map_err(|e| {
                EngineError::caused_by(
                    ErrorKind::Corrupted,
                    format!("replaying WAL batch {} of {path} failed", b.seq),
                    e,
                )
            })?;
        }
        drop(b);
        next = wal.next().await;
    }
    Ok(())
}

#[cfg(test)]
#[path = "refold_tests.rs"]
mod refold_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::request::WriteRequest;
    use crate::format::wal::{WalBatch, WAL_APPLY_FLAGS, WAL_FLAG_DATETIME_INSTANTS};
    use crate::model::DocId;
    use serde_json::json;

    fn batch(seq: u64, flags: u16, body: serde_json::Value) -> WalBatch {
        let req = WriteRequest::from_json(&body).unwrap();
        WalBatch { seq, created_at_ms: 0, requests: vec![req.record], flags }
    }

    async fn replayed(flags: u16) -> Vec<u64> {
        let rows = json!({"upsert_rows": [
            {"id": 1, "numbers": [1, 2, 3]}, {"id": 2, "numbers": [5]},
        ]});
        let delete = json!({"delete_by_filter": ["numbers", "In", [2, 4]]});
        let batches = vec![Ok(batch(1, flags, rows)), Ok(batch(2, flags, delete))];
        let mut wal = futures::stream::iter(batches);
        let mut state = NsState::default();
        let path = NsPath::new("o", "p", "n").unwrap();
        let first = wal.next().await;
        replay_batches(&path, &mut state, first, &mut wal).await.unwrap();
        let mut ids: Vec<u64> = (1..=2).filter(|i| state.get(&DocId::U64(*i)).is_some()).collect();
        ids.sort_unstable();
        ids
    }

    /// Invariant: a batch written before `In` looked into arrays (no
    /// `WAL_FLAG_IN_ANY_ELEMENT`) replays as it was applied — its `delete_by_filter` leaves the
    /// array rows — while a batch of this build deletes them too.
    #[tokio::test]
    async fn in_on_arrays_replays_by_the_batch_flag() {
        assert_eq!(replayed(WAL_FLAG_DATETIME_INSTANTS).await, vec![1, 2], "legacy: an array never matched");
        assert_eq!(replayed(WAL_APPLY_FLAGS).await, vec![2], "this build: [1, 2, 3] holds 2");
    }
}
