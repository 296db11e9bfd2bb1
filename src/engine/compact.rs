//! Compaction: folds the WAL overlay into immutable segments in the
//! background (see `storage-format.md`, "Compaction").
//!
//! Invariants:
//! - Leak-only ordering: new segment files and deletion sets are written,
//!   their refcounts raised, the manifest committed (conditional create),
//!   and only then are the folded WAL objects, replaced deletion sets and
//!   merged segments released (refcount down, delete at zero, own keys only).
//! - The merge runs without the commit lock; the lock is held only to commit,
//!   on top of the newest generation: WAL batches committed after the
//!   compaction's base stay in the manifest and are replayed on top of the
//!   new segments, which gives the same state.
//! - Live rows of different segments keep distinct ids: every segment row
//!   shadowed by a folded overlay entry goes into that segment's deletion set.
//! - One output segment holds at most `max_segment_rows` rows — fewer when
//!   the node's memory budget says so (`engine/budget.rs`,
//!   `segment_rows_cap`) — and a merge takes the smallest segments, of at
//!   most half the cap, only when its outputs are fewer than its inputs (at
//!   most [`MERGE_MAX_OUTPUTS`] of them) and its largest input holds no more
//!   rows than the others together ([`merge_pick`]): one compaction never
//!   rewrites the whole namespace, segments near the cap are never
//!   repacked, and a merge into one output at least doubles the segment of
//!   each row it rewrites (a row is rewritten a few times, not once per merge).
//! - On a local store, a compaction whose estimated output does not fit the
//!   disk's free space fails before writing anything (`StorageFull`), instead
//!   of filling the disk the writes need. A failed automatic compaction is
//!   also retried by a timer (from [`AUTO_COMPACTION_RETRY_MS`], doubling to
//!   [`AUTO_COMPACTION_RETRY_MAX_MS`]), so indexing resumes once the disk has
//!   room even if no write comes.
//! - The compacted generation is installed as the namespace's cached snapshot
//!   under the commit lock, so the next write of this process starts from it
//!   (and does not lose a race against its own daemon's compaction).
//! - Its state is refolded, not replayed: the entries the writes during the
//!   round changed are carried onto the new segments ([`Engine::refold`]),
//!   and the round's own reference to the folded state is dropped there. Only
//!   states that do not fit that shape replay the WAL the commit kept.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::commit::{CommitError, Derived, MAX_COMMIT_ATTEMPTS};
use super::merge::{build_segments, BuildPlan, BuiltSegment, DamagedRow, MergeFailure};
use super::{Engine, EngineError, ErrorKind, NsHandle, Snapshot};
use crate::format::manifest::{Manifest, ObjectRef, SectionRef, SegmentRef};
use crate::format::segment::{BuildError, DeletionSet, SEGMENT_FILE};
use crate::layout::NsPath;
use crate::state::{NsState, SegmentReader};

/// After a failed automatic compaction, the next automatic attempt on that
/// namespace waits this long (a full disk would otherwise be retried, and
/// logged, on every write). A timer makes an attempt even if no write comes
/// (freeing the disk must resume indexing without a restart), after this
/// long doubled for each failure in a row, up to [`AUTO_COMPACTION_RETRY_MAX_MS`].
pub const AUTO_COMPACTION_RETRY_MS: u64 = 10_000;
/// The longest wait of the retry timer on a namespace whose automatic
/// compactions keep failing with no write coming (a damaged object is read
/// again on each attempt).
pub const AUTO_COMPACTION_RETRY_MAX_MS: u64 = 320_000;

/// Default quiet time after which a WAL tail below the thresholds is indexed.
pub const DEFAULT_IDLE_INDEX_MS: u64 = 2_000;

/// Most compaction rounds one background drain runs back to back.
const MAX_DRAIN_ROUNDS: usize = 64;
/// Segments at least this long are uploaded in parts, each part's pages given
/// back once written (smaller ones are put whole: their pages cost little).
const PUT_IN_PARTS_MIN_BYTES: usize = 64 << 20;

/// When and how to compact.
#[derive(Debug, Clone)]
pub struct CompactionConfig {
    /// Compact once the manifest references this many WAL objects.
    pub wal_objects: usize,
    /// ... or this many WAL bytes.
    pub wal_bytes: u64,
    /// Merge small segments once a namespace has more than this many.
    pub max_segments: usize,
    /// Most rows one output segment holds.
    pub max_segment_rows: usize,
    /// Writes get 429 while this many bytes are unindexed (unless
    /// `disable_backpressure`).
    pub backlog_bytes: u64,
    /// Compact automatically after commits that cross the thresholds.
    pub auto: bool,
    /// With `auto`: index a WAL tail below the thresholds once no commit
    /// came for this long, so index status settles (0: never).
    pub idle_ms: u64,
    /// Whether segments get the cold-read IVF section (a second copy of the
    /// vectors, in list order).
    pub cold_index: crate::engine::ColdIndex,
    /// The graph sections' traversal codes (`graph_codes`).
    pub graph_code: GraphCodeChoice,
}

/// Which traversal codes a compaction's graph sections get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphCodeChoice {
    /// These, whatever the namespace's size.
    Fixed(crate::index::vector::graph::GraphCode),
    /// 8-bit codes while the namespace fits a share of the memory budget
    /// with them, 4-bit RaBitQ codes past it (`Engine::graph_code_for`).
    ByBudget,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            // A fold's size follows the WAL object count when requests are small: at 32,
            // 1,000-row text requests folded 33k-row segments and merged them again
            // (BENCHMARKS, "Ingest: where the cores go (stop 68)"); larger requests
            // reach `wal_bytes` first.
            wal_objects: 64,
            wal_bytes: 64 << 20,
            max_segments: 8,
            max_segment_rows: 1_000_000,
            backlog_bytes: 2 << 30,
            auto: true,
            // Off for an engine opened directly; the daemon's configuration
            // turns it on (`compaction_idle_ms`, DEFAULT_IDLE_INDEX_MS).
            idle_ms: 0,
            cold_index: crate::engine::ColdIndex::Auto,
            graph_code: GraphCodeChoice::ByBudget,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// False when there was nothing to do.
    pub performed: bool,
    /// The generation committed (or the current one).
    pub generation: u64,
    /// WAL objects folded.
    pub wal_objects_folded: usize,
    /// Segments written.
    pub segments_written: usize,
    /// Segments merged away.
    pub segments_merged: usize,
    /// Rows in the written segments.
    pub rows_written: u64,
    /// Bytes of the written segments.
    pub bytes_written: u64,
}

/// Objects a compaction wrote, and the manifest edits it wants.
struct Output {
    new_segments: Vec<SegmentRef>,
    /// Old segment id → its new deletion set (replacing the old one).
    new_deletes: BTreeMap<String, ObjectRef>,
    merged: BTreeSet<String>,
    written_keys: Vec<String>,
    rows: u64,
    bytes: u64,
}

impl Engine {
    /// Whether a namespace's manifest crosses the compaction thresholds: its
    /// WAL's count or bytes, or more than `max_segments` segments of which
    /// some are worth merging (by `state`'s live rows; any, without it). A
    /// namespace of segments no merge lowers does not fold every write into
    /// one more segment: its WAL tail waits for the thresholds or the idle timer.
    pub(crate) fn needs_compaction(&self, m: &Manifest, state: Option<&NsState>) -> bool {
        let cfg = &self.compaction();
        m.wal.len() >= cfg.wal_objects
            || m.wal.iter().map(|w| w.bytes).sum::<u64>() >= cfg.wal_bytes
            || m.segments.len() > cfg.max_segments && state.is_none_or(|s| !self.pick_merge(s).is_empty())
    }

    /// Compact a namespace now (`force`: even below the thresholds); timed
    /// into the metrics by `Engine::compact` (engine/observe.rs).
    pub(super) async fn compact_unobserved(
        &self,
        path: &NsPath,
        force: bool,
    ) -> Result<CompactionReport, EngineError> {
        let h = self.handle(path);
        let _single = h.compact_lock.lock().await;
        self.compact_locked(&h, path, force).await
    }

    /// [`Engine::compact_unobserved`] once `h`'s compaction lock is held.
    pub(super) async fn compact_locked(
        &self,
        h: &Arc<NsHandle>,
        path: &NsPath,
        force: bool,
    ) -> Result<CompactionReport, EngineError> {
        for _ in 0..4 {
            let base = self.existing(path, true).await?;
            let m = base.manifest.clone().ok_or_else(|| EngineError::internal("no manifest"))?;
            let merge = self.pick_merge(&base.state);
            if m.wal.is_empty() && merge.len() < 2 || !force && !self.needs_compaction(&m, Some(&base.state))
            {
                return Ok(CompactionReport { generation: m.generation, ..CompactionReport::default() });
            }
            self.check_free_space(path, &m, &merge)?;
            let out = self.write_outputs(path, &base, &merge).await?;
            // `base` goes to the commit, which refolds it and lets it go.
            match self.commit_compaction(h, base, &out).await {
                Ok(generation) => {
                    // The folded overlay and the round's build memory are free
                    // now: give them back (glibc keeps freed arenas resident).
                    let _ = tokio::task::spawn_blocking(crate::heap::give_back_freed).await;
                    let (dropped, kept) = dropped_and_kept(&m, &merge, out.bytes);
                    self.after_compaction(path, dropped, kept);
                    return Ok(CompactionReport {
                        performed: true,
                        generation,
                        wal_objects_folded: m.wal.len(),
                        segments_written: out.new_segments.len(),
                        segments_merged: out.merged.len(),
                        rows_written: out.rows,
                        bytes_written: out.bytes,
                    });
                }
                // Another process compacted or deleted: the commit unit
                // released our objects; look again.
                Err(CommitError::Lost) => {}
                Err(CommitError::Failed(e)) => {
                    // Unknown outcome: the manifest may have landed and
                    // reference the new objects, so keep them (a leak at
                    // worst; repair reclaims it) and forget the cached state.
                    super::clear_cached(h);
                    return Err(e);
                }
            }
        }
        Err(EngineError::conflict(format!("compaction of {} kept losing races; retry", path.ns())))
    }

    /// Refuse early (before writing a byte) when the outputs cannot fit the
    /// local store's disk: a half-written segment would only take the space
    /// the writes need. A probe failure is logged and does not block.
    fn check_free_space(
        &self,
        path: &NsPath,
        m: &Manifest,
        merge: &BTreeSet<String>,
    ) -> Result<(), EngineError> {
        let Some(root) = self.store.local_root() else { return Ok(()) };
        let need = output_estimate(m, merge);
        match self.free_space.free_bytes(root) {
            Ok(free) if free < need => Err(EngineError::storage_full(format!(
                "compaction of {} needs about {need} bytes on {} but only {free} are free; it was not started",
                path.ns(),
                root.display()
            ))),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(namespace = %path, error = %e, "could not measure free space before compacting");
                Ok(())
            }
        }
    }

    /// Segments worth merging, once there are at least `max_segments`
    /// ([`merge_pick`] over their live rows and the output cap).
    fn pick_merge(&self, state: &NsState) -> BTreeSet<String> {
        let segs = state.segments();
        let cfg = self.compaction();
        if segs.len() < cfg.max_segments {
            return BTreeSet::new();
        }
        let live: Vec<(&str, usize)> = segs.iter().map(|s| (s.meta.id.as_str(), s.live_rows())).collect();
        merge_pick(&live, self.segment_rows_cap(state, cfg.max_segment_rows))
    }

    /// Write the new segments and deletion sets (steps 1–2: objects, refcounts).
    async fn write_outputs(
        &self,
        path: &NsPath,
        base: &Snapshot,
        merge: &BTreeSet<String>,
    ) -> Result<Output, EngineError> {
        let state = &base.state;
        let mut out = Output {
            new_segments: Vec::new(),
            new_deletes: BTreeMap::new(),
            merged: merge.clone(),
            written_keys: Vec::new(),
            rows: 0,
            bytes: 0,
        };
        for built in self.build_outputs(path, state, merge).await? {
            let id = self.ids.next_token();
            let key = path.segment_key(&id, SEGMENT_FILE);
            let file = object_ref(&key, &built.bytes);
            let sections = cold_read_sections(&built.bytes)?;
            self.put_segment(&key, &built.bytes).await?;
            // The load after the commit reads this segment: keep the copy just written.
            self.cache.keep_written(&file, built.bytes.clone()).await;
            crate::cache::release_resident(&built.bytes);
            out.written_keys.push(key);
            out.rows += built.rows;
            out.bytes += file.bytes;
            out.new_segments.push(SegmentRef {
                id,
                files: vec![file.clone()],
                rows: built.rows,
                deletes: None,
                bytes: file.bytes,
                sections,
                text_analysis: built.text_analysis,
            });
        }
        for (seg_id, set) in shadowed_rows(state, merge) {
            let key =
                path.segment_key(&seg_id, &crate::format::segment::deletes_file_name(&self.ids.next_token()));
            let bytes = set.encode();
            let r = object_ref(&key, &bytes);
            let bytes = Bytes::from(bytes);
            self.store.put(&key, bytes.clone()).await?;
            self.cache.keep_written(&r, bytes).await;
            out.written_keys.push(key);
            out.new_deletes.insert(seg_id, r);
        }
        self.log(path).raise(&out.written_keys).await?;
        Ok(out)
    }

    /// Write a new segment file. A large one (mapped from its scratch file)
    /// goes in parts, each part's pages given back once the store has it:
    /// a 2.5 GB segment is never resident whole.
    async fn put_segment(&self, key: &str, bytes: &Bytes) -> Result<(), EngineError> {
        if bytes.len() < PUT_IN_PARTS_MIN_BYTES {
            return Ok(self.store.put(key, bytes.clone()).await?);
        }
        let release = |part: &[u8]| {
            crate::cache::release_resident(part);
        };
        Ok(self.store.put_in_parts(key, bytes, &release).await?)
    }

    /// Build the output segments on a blocking thread (the merge, the index
    /// builds and the streaming into scratch files are CPU and disk work, not
    /// for an async worker), bounded in memory (`engine/merge.rs`).
    async fn build_outputs(
        &self,
        path: &NsPath,
        state: &Arc<NsState>,
        merge: &BTreeSet<String>,
    ) -> Result<Vec<BuiltSegment>, EngineError> {
        let cfg = self.compaction();
        let cold = cfg.cold_index.wanted(self.store.local_root().is_none());
        let max_rows = self.segment_rows_cap(state, cfg.max_segment_rows);
        let graph_code = self.graph_code_for(state, cfg.graph_code);
        let input_rows = state.overlay().len()
            + state
                .segments()
                .iter()
                .filter(|s| merge.contains(&s.meta.id))
                .map(|s| s.live_rows())
                .sum::<usize>();
        let _held = self.hold_build_memory(state, input_rows.min(max_rows));
        let (state, merge, scratch) = (Arc::clone(state), merge.clone(), self.scratch_dir().to_path_buf());
        let built = tokio::task::spawn_blocking(move || {
            let plan = BuildPlan { max_rows, cold, graph_code, scratch: &scratch };
            // Rows read from segments are checked as they are read: a changed byte fails the
            // build instead of being folded into a new segment with fresh checksums.
            crate::integrity::within(|| build_segments(&state, &merge, &plan))
        })
        .await
        .map_err(|e| EngineError::caused_by(ErrorKind::Internal, "segment build task", e))?
        .map_err(|rot| {
            let e = EngineError::rot(rot);
            self.forget_rotten(&e);
            e
        })?;
        built.map_err(|e| match e {
            MergeFailure::Damaged(d) => self.refuse_damaged(path, d),
            MergeFailure::Build(BuildError::Io(e)) => {
                EngineError::io(format!("compaction of {}: scratch file", path.ns()), e)
            }
            MergeFailure::Build(e) => EngineError::caused_by(ErrorKind::Internal, "building a segment", e),
        })
    }

    /// Step 3: commit on top of the newest generation under the commit lock,
    /// through the commit unit (which releases what the new generation drops:
    /// the folded WAL, merged segments, replaced deletion sets). A newer base
    /// is taken as long as it only appended WAL to `base`.
    async fn commit_compaction(
        &self,
        h: &NsHandle,
        base: Snapshot,
        out: &Output,
    ) -> Result<u64, CommitError> {
        let folded =
            base.manifest.clone().ok_or_else(|| CommitError::Failed(EngineError::internal("no manifest")))?;
        let _commit = h.commit_lock.lock().await;
        let newest = self.reload(h).await.map_err(CommitError::Failed)?;
        // Loads wait for the compacted state instead of replaying the WAL it
        // keeps on top of the new segments (lock order: commit, then load).
        let _load = h.load_lock.lock().await;
        let committed = self.commit_on(h, &newest, &folded, out).await?;
        let generation = committed.generation;
        // Still under the commit lock: the next write starts from the
        // compacted generation, not from the base it replaced.
        self.install_compacted(h, Arc::new(committed), (&folded, base.state), newest).await;
        Ok(generation)
    }

    /// Cache the state of `committed` (the caller holds the commit and load
    /// locks): refolded from the folded state and `newest` when they fit,
    /// else loaded by replaying its WAL.
    async fn install_compacted(
        &self,
        h: &NsHandle,
        committed: Arc<Manifest>,
        folded: (&Manifest, Arc<NsState>),
        newest: Snapshot,
    ) {
        match self.refold(&h.path, committed, folded, &newest).await {
            Ok(Some(snap)) => {
                self.metrics.observe_compaction_load(true);
                super::set_cached(h, snap);
                // The state before the round, freed off the commit lock the caller holds.
                super::drop_in_background(newest);
                self.enforce_memory_budget();
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(namespace = %h.path, error = %e, "could not refold the compacted generation; replaying its WAL");
            }
        }
        drop(newest);
        self.metrics.observe_compaction_load(false);
        if let Err(e) = self.reload_locked(h).await {
            tracing::warn!(namespace = %h.path, error = %e, "could not load the compacted generation; the next access reloads it");
            super::clear_cached(h);
        }
    }

    /// Commit the compaction on `newest` (the caller holds the commit lock).
    async fn commit_on(
        &self,
        h: &NsHandle,
        newest: &Snapshot,
        base: &Manifest,
        out: &Output,
    ) -> Result<Manifest, CommitError> {
        let (ids, clock) = (&self.ids, &self.clock);
        let committed = self
            .log(&h.path)
            .commit(
                newest.manifest.clone(),
                &out.written_keys,
                MAX_COMMIT_ATTEMPTS,
                |a| self.backoff(a),
                |cur| {
                    Ok(match cur.filter(|m| !m.deleted) {
                        Some(cur) if cur.segments == base.segments && cur.wal.starts_with(&base.wal) => {
                            Derived::Commit(compacted(cur, base, out, ids.next_token(), clock.now_ms()))
                        }
                        _ => Derived::Refuse,
                    })
                },
            )
            .await?;
        Ok(committed.manifest)
    }

    /// After a commit: drain the backlog in the background when the manifest
    /// crosses the thresholds (round after round, until a round finds
    /// nothing to do, whether or not more writes arrive); otherwise, with a
    /// WAL tail, index it once no further commit came for `idle_ms`. Held
    /// back for [`AUTO_COMPACTION_RETRY_MS`] after a failed automatic
    /// compaction; `compact` on demand never is.
    pub(crate) fn maybe_compact_in_background(&self, path: &NsPath, m: &Manifest) {
        let cfg = self.compaction();
        if !cfg.auto {
            return;
        }
        let h = self.handle(path);
        h.commits_seen.fetch_add(1, Ordering::Relaxed);
        let state = super::cached(&h).map(|s| s.state);
        if self.needs_compaction(m, state.as_deref()) {
            self.spawn_drain(h, false);
        } else if !m.wal.is_empty() {
            self.index_when_idle(h);
        }
    }

    /// Under memory pressure (`engine/budget.rs`): compact the overlay of
    /// `path` and of the loaded namespace with the most unindexed bytes, below
    /// the thresholds too, so their overlay heap moves into mapped segments.
    pub(super) fn compact_for_memory(&self, path: &NsPath) {
        if !self.compaction().auto {
            return;
        }
        let unindexed =
            |h: &NsHandle| super::cached(h).and_then(|s| s.manifest).map_or(0, |m| m.stats.unindexed_bytes);
        let largest =
            self.all_handles().into_iter().filter(|h| unindexed(h) > 0).max_by_key(|h| unindexed(h));
        let own = self.handle(path);
        if unindexed(&own) > 0 {
            self.spawn_drain(own.clone(), true);
        }
        if let Some(h) = largest.filter(|h| !Arc::ptr_eq(h, &own)) {
            self.spawn_drain(h, true);
        }
    }

    /// Index `h`'s WAL tail once no commit came for `idle_ms` (a timer; a
    /// commit meanwhile arms its own). Armed by a commit under the thresholds
    /// and by a drain that ends with a tail left: a commit that landed while
    /// a round ran finds the round's lock taken and arms nothing else, so
    /// without the drain's timer that tail would stay unindexed for good.
    fn index_when_idle(&self, h: Arc<NsHandle>) {
        let idle_ms = self.compaction().idle_ms;
        if idle_ms == 0 {
            return;
        }
        let commit = h.commits_seen.load(Ordering::Relaxed);
        // A weak handle while waiting: a timer must not keep a dropped
        // engine (and its data-dir lock) alive.
        let engine = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(idle_ms)).await;
            if h.commits_seen.load(Ordering::Relaxed) == commit {
                if let Some(engine) = engine.upgrade() {
                    engine.spawn_drain(h, true);
                }
            }
        });
    }

    /// Run compaction rounds in the background on `h` (the first one forced
    /// for an idle tail) unless one is running or the last one failed lately.
    fn spawn_drain(&self, h: Arc<NsHandle>, force_first: bool) {
        let Some(engine) = self.me.upgrade() else { return };
        if self.clock.now_ms() < h.compact_not_before_ms.load(Ordering::Relaxed) {
            return; // the last one failed (a full disk, a damaged object): not on every write
        }
        if h.compact_lock.try_lock().is_err() {
            return; // one is running; its next round sees the new WAL
        }
        tokio::spawn(async move {
            for round in 0..MAX_DRAIN_ROUNDS {
                let outcome = engine.compact(&h.path, force_first && round == 0).await;
                if outcome.is_ok() {
                    h.compact_failures.store(0, Ordering::Relaxed);
                }
                match outcome {
                    Ok(r) if r.performed => {
                        tracing::info!(namespace = %h.path, generation = r.generation, rows = r.rows_written,
                            segments = r.segments_written, merged = r.segments_merged, "compacted");
                    }
                    Ok(_) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => return,
                    Err(e) => {
                        let retry_ms = engine.hold_back_after_failure(&h);
                        tracing::warn!(namespace = %h.path, error = %e, retry_in_ms = retry_ms,
                            "background compaction failed; writes go on, the next automatic attempt waits");
                        engine.retry_after(h, retry_ms);
                        return;
                    }
                }
            }
            // Caught up to the thresholds (or out of rounds): a tail left
            // below them is indexed once writes go quiet.
            if super::cached(&h).and_then(|s| s.manifest).is_some_and(|m| !m.wal.is_empty()) {
                engine.index_when_idle(h);
            }
        });
    }

    /// After a failed automatic round: hold automatic compaction of `h` back
    /// for [`AUTO_COMPACTION_RETRY_MS`]; returns the retry timer's back-off
    /// (ms), doubled for each earlier failure in a row.
    fn hold_back_after_failure(&self, h: &NsHandle) -> u64 {
        let earlier = h.compact_failures.fetch_add(1, Ordering::Relaxed);
        let not_before = self.clock.now_ms().saturating_add(AUTO_COMPACTION_RETRY_MS);
        h.compact_not_before_ms.store(not_before, Ordering::Relaxed);
        (AUTO_COMPACTION_RETRY_MS << earlier.min(5)).min(AUTO_COMPACTION_RETRY_MAX_MS)
    }

    /// Try `h` again once the back-off has passed, whether or not a write
    /// comes meanwhile (after the last write of a bulk load none would, and
    /// its WAL would stay unindexed until one did).
    fn retry_after(&self, h: Arc<NsHandle>, wait_ms: u64) {
        let engine = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            if let Some(engine) = engine.upgrade() {
                engine.spawn_drain(h, true);
            }
        });
    }

    /// Load the segments of a manifest (verified) into live segments.
    pub(crate) async fn load_segments(&self, m: &Manifest) -> Result<Vec<SegmentReader>, EngineError> {
        // A few segments at a time, each with its deletion set, in one round trip.
        let loads: Vec<_> = m.segments.iter().map(|s| self.load_segment(s)).collect();
        futures::stream::iter(loads).buffered(4).try_collect().await
    }

    async fn load_segment(&self, s: &SegmentRef) -> Result<SegmentReader, EngineError> {
        let file =
            s.files.first().ok_or_else(|| EngineError::corrupted(format!("segment {} has no file", s.id)))?;
        let deletes = async {
            match &s.deletes {
                Some(d) => self.object_bytes(d).await.map(Some),
                None => Ok(None),
            }
        };
        let (bytes, deletes) = futures::try_join!(self.segment_bytes(file), deletes)?;
        // Opened lazily (a segment with range checksums: only what open reads is checked now,
        // each other chunk on its first read, `format/segment/lazy.rs`), else verified whole;
        // each stretch's pages given back as soon as it is read (a whole 2.5 GB segment resident
        // at once was the peak of a catch-up and of a cold first query). Queries fault back the
        // pages they touch (the graph's codes and links), so the memory tier holds its working
        // set, not the file (cache/mapping.rs).
        let release = |b: &[u8]| {
            crate::cache::release_resident(b);
        };
        let seg = crate::format::segment::Segment::open_lazy(bytes.clone(), &release)
            .map_err(|e| EngineError::caused_by(ErrorKind::Corrupted, format!("segment {}", file.key), e))?
            .with_object(&file.key)
            .with_section_readahead(crate::cache::read_ahead_while);
        crate::cache::release_resident(&bytes);
        // Verified (sequentially); queries read it at random from now on.
        crate::cache::advise_random(&bytes);
        let deleted = match (&s.deletes, deletes) {
            (Some(d), Some(b)) => DeletionSet::decode(&b).map_err(|e| {
                EngineError::caused_by(ErrorKind::Corrupted, format!("deletion set {}", d.key), e)
            })?,
            _ => DeletionSet::new(seg.len()),
        };
        Ok(SegmentReader::new(seg, Arc::new(deleted), s.clone()))
    }

    /// The verified bytes of an immutable object, through the disk cache
    /// (a local-directory store is mapped in place).
    pub(crate) async fn object_bytes(&self, r: &ObjectRef) -> Result<Bytes, EngineError> {
        self.cache.get(&r.key, r).await.map_err(object_error)
    }

    /// [`Engine::object_bytes`] for a segment file opened lazily (`Segment::open_lazy`): on local
    /// disk it is matched against its reference through its range checksums, not read whole
    /// (`ObjectCache::get_segment`).
    pub(crate) async fn segment_bytes(&self, r: &ObjectRef) -> Result<Bytes, EngineError> {
        self.cache.get_segment(&r.key, r).await.map_err(object_error)
    }
}

/// The engine's error for an object the cache could not serve.
fn object_error(e: crate::cache::CacheError) -> EngineError {
    match e {
        crate::cache::CacheError::NotFound(k) => {
            EngineError::corrupted(format!("manifest references missing object {k}"))
        }
        crate::cache::CacheError::Corrupt { key, .. } => {
            EngineError::corrupted(format!("object {key} does not match its manifest checksum"))
        }
        other => EngineError::wrap(ErrorKind::Unavailable, other),
    }
}

/// The sections a cold query reads by range (ids, docs — doc blocks with their table's length as
/// `head` —, cold IVF lists — `vector`'s and the named vector attributes' — range checksums),
/// recorded in the manifest so a reader can fetch them without first reading
/// the segment's own table (`storage-format.md` 4.2, 11.4).
fn cold_read_sections(bytes: &[u8]) -> Result<Vec<SectionRef>, EngineError> {
    use crate::format::segment::{
        DocBlockTable, SECTION_COLD_IVF, SECTION_DOCS, SECTION_DOC_BLOCKS, SECTION_IDS,
        SECTION_NAMED_COLD_IVF, SECTION_RANGE_CHECKSUMS,
    };
    use crate::index::vector::{coldivf::ColdHead, coldnamed::NamedColdHead};
    let table = crate::format::segment::section_table(bytes).map_err(|e| {
        EngineError::caused_by(ErrorKind::Internal, "reading the section table of a new segment", e)
    })?;
    let mut out = Vec::new();
    for s in table.into_iter().filter(|s| {
        matches!(
            s.kind,
            SECTION_IDS
                | SECTION_DOCS
                | SECTION_DOC_BLOCKS
                | SECTION_COLD_IVF
                | SECTION_NAMED_COLD_IVF
                | SECTION_RANGE_CHECKSUMS
        )
    }) {
        let at = usize::try_from(s.offset).unwrap_or(usize::MAX);
        let head = match s.kind {
            SECTION_COLD_IVF => bytes.get(at..).and_then(|b| ColdHead::parse(b).map(|h| h.head_len()).ok()),
            SECTION_NAMED_COLD_IVF => {
                bytes.get(at..).and_then(|b| NamedColdHead::parse(b).map(|h| h.head_len()).ok())
            }
            SECTION_DOC_BLOCKS => bytes.get(at..).and_then(DocBlockTable::head_len),
            _ => Some(0),
        };
        let Some(head) = head else { continue }; // unreadable: no cold path for this section
        out.push(SectionRef { kind: s.kind, offset: s.offset, len: s.len, crc32c: s.crc32c, head });
    }
    Ok(out)
}

/// Bytes a compaction of `m` is expected to write: its segments hold the
/// folded WAL's rows and the merged segments' rows, and the index sections
/// can be as large as the rows again, hence twice the inputs, plus a margin
/// for deletion sets and the metadata the writes still need.
fn output_estimate(m: &Manifest, merge: &BTreeSet<String>) -> u64 {
    const MARGIN: u64 = 16 << 20;
    let wal: u64 = m.wal.iter().map(|w| w.bytes).sum();
    let merged: u64 = m.segments.iter().filter(|s| merge.contains(&s.id)).map(|s| s.bytes).sum();
    wal.saturating_add(merged).saturating_mul(2).saturating_add(MARGIN)
}

/// The reference of a new object; a mapped one (a segment from its scratch
/// file) gives its pages back as it is checksummed.
fn object_ref(key: &str, bytes: &[u8]) -> ObjectRef {
    ObjectRef {
        key: key.to_owned(),
        bytes: bytes.len() as u64,
        crc32c: crate::cache::crc32c_releasing(bytes),
    }
}

impl Engine {
    /// Mark the damaged object and refuse the compaction with a clear error.
    fn refuse_damaged(&self, path: &NsPath, d: DamagedRow) -> EngineError {
        let why = format!("{}: {}", d.key, d.error);
        tracing::error!(namespace = %path, object = %d.key, error = %d.error, "damaged segment row; compaction refused");
        self.mark_damaged(&d.key, &d.error);
        EngineError::corrupted(format!(
            "compaction of {} refused: segment {why} cannot be decoded (run `tidepool verify`)",
            path.ns()
        ))
    }
}

/// For each surviving segment with rows shadowed by the overlay: its new
/// deletion set (old ∪ shadowed rows).
pub(super) fn shadowed_rows(state: &NsState, merge: &BTreeSet<String>) -> BTreeMap<String, DeletionSet> {
    let mut out = BTreeMap::new();
    for s in state.segments().iter().filter(|s| !merge.contains(&s.meta.id)) {
        let mut set: Option<DeletionSet> = None;
        for id in state.overlay().keys() {
            if let Some(row) = s.find_live(id) {
                set.get_or_insert_with(|| (*s.deleted).clone()).insert(row);
            }
        }
        if let Some(set) = set {
            out.insert(s.meta.id.clone(), set);
        }
    }
    out
}

/// `cur` with `base`'s WAL folded into the compaction's outputs: merged
/// segments replaced by the new ones, shadowed rows retired through the new
/// deletion sets, the WAL appended since `base` kept.
fn compacted(cur: &Manifest, base: &Manifest, out: &Output, commit_id: String, now: u64) -> Manifest {
    let mut next = cur.clone();
    next.generation = cur.generation + 1;
    next.previous_generation = Some(cur.generation);
    next.data_generation = Some(cur.content_version());
    next.commit_id = commit_id;
    next.committed_at_ms = now;
    next.wal = cur.wal[base.wal.len()..].to_vec();
    let mut segments = Vec::new();
    for s in cur.segments.iter().filter(|s| !out.merged.contains(&s.id)) {
        let mut s = s.clone();
        if let Some(d) = out.new_deletes.get(&s.id) {
            s.deletes = Some(d.clone());
        }
        segments.push(s);
    }
    segments.extend(out.new_segments.iter().cloned());
    next.segments = segments;
    next.stats.unindexed_rows = next.wal.iter().map(|w| w.rows).sum();
    next.stats.unindexed_bytes = next.wal.iter().map(|w| w.bytes).sum();
    next
}

/// Bytes a compaction of `m` dropped (its folded WAL batches and merged
/// segments, deletion sets included) and the bytes its namespace keeps
/// (the other segments and the `written` ones), as the manifest records them.
fn dropped_and_kept(m: &Manifest, merge: &BTreeSet<String>, written: u64) -> (u64, u64) {
    let seg_bytes = |s: &SegmentRef| s.files.iter().chain(&s.deletes).map(|f| f.bytes).sum::<u64>();
    let wal: u64 = m.wal.iter().map(|w| w.bytes).sum();
    let (merged, kept): (Vec<_>, Vec<_>) = m.segments.iter().partition(|s| merge.contains(&s.id));
    let merged: u64 = merged.into_iter().map(seg_bytes).sum();
    (wal + merged, kept.into_iter().map(seg_bytes).sum::<u64>() + written)
}

/// Most output segments' worth of rows one merge rewrites: a round stays
/// bounded in time (each output is built alone, so memory is bounded anyway).
const MERGE_MAX_OUTPUTS: usize = 4;

/// Which of `live` (segment id, live rows) to merge into outputs of at most
/// `cap` rows. Only segments of at most half the cap take part (two fuller
/// ones do not fit one output: merging them would only repack full
/// segments). Of those, the prefix of the smallest that removes the most
/// segments — outputs, `ceil(rows / cap)`, fewer than inputs, at most
/// [`MERGE_MAX_OUTPUTS`] of them — among the prefixes whose largest segment
/// holds no more rows than the others together. So a merge into one output
/// at least doubles the segment of every row it rewrites (a row is rewritten
/// about `log2(cap / smallest)` times), where taking a large segment in whenever a
/// few small ones came rewrote it at every merge (see the test
/// `an_ingest_rewrites_each_row_a_few_times`). Empty when no merge lowers the
/// count.
pub(super) fn merge_pick(live: &[(&str, usize)], cap: usize) -> BTreeSet<String> {
    let cap = cap.max(1);
    let mut by_size: Vec<&(&str, usize)> = live.iter().filter(|(_, r)| *r <= cap / 2).collect();
    by_size.sort_by_key(|(id, rows)| (*rows, *id));
    let (mut rows, mut best, mut best_gain) = (0usize, 0usize, 0usize);
    for (i, (_, r)) in by_size.iter().enumerate() {
        let smaller = rows;
        rows = rows.saturating_add(*r);
        let outputs = rows.div_ceil(cap).max(1);
        if outputs > MERGE_MAX_OUTPUTS {
            break;
        }
        let gain = (i + 1).saturating_sub(outputs);
        if *r <= smaller && gain > best_gain {
            (best, best_gain) = (i + 1, gain);
        }
    }
    by_size.iter().take(best).map(|(id, _)| id.to_string()).collect()
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
