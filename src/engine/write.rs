//! The write path: requests queue per namespace and commit in groups.
//!
//! Invariants (see `storage-format.md`, "Commit protocol"):
//! - A write is acknowledged only after its WAL object and the manifest
//!   generation that references it are durable (published by the commit
//!   unit, `engine/commit.rs`).
//! - Requests that arrive while a commit is in flight share the next WAL
//!   object and manifest (group commit), within [`MAX_GROUP_REQUESTS`] and
//!   [`MAX_GROUP_ROWS`].
//! - A group that loses a commit race re-applies its requests (the WAL
//!   records operations, not results) on the newest generation and retries;
//!   it never overwrites another writer's generation.
//! - `if_version` is checked against the base the request is applied to and
//!   is final (412); a request with `if_version` goes first in its group.
//! - A request that changes nothing (only filter operations that matched no
//!   document, no settings, no idempotency key, no label change) writes
//!   nothing: no WAL object, no generation; a group of only such requests
//!   commits nothing.
//! - A group answered from its base alone (retries of applied idempotency
//!   keys, requests that change nothing) is never answered from a generation
//!   whose durability is unknown (its create failed on this local store,
//!   `storage-format.md` 5.6): that generation is first committed again as
//!   the next one, written in full, and the answer rests on that.
//! - A request's label changes (`WriteRequest::labels`) commit in the same
//!   generation as its rows (the group's manifest), applied in request
//!   order; invalid ones fail the request before it changes anything. A
//!   write that creates the namespace by branching or copying carries its
//!   labels in the fork's one generation (`Engine::write_fork`).
//! - A group's apply defers the overlay text index's chunk merges; they run on
//!   a blocking thread while the group's WAL object and manifest are written,
//!   and the state is cached with them installed (`state/text_settle.rs`). A
//!   merge that fails leaves the chunks unmerged, serving the same rows.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::OptionFuture;
use tokio::sync::oneshot;

use super::apply;
use super::commit::{CommitError, Derived, MAX_COMMIT_ATTEMPTS};
use super::{
    cached, clear_cached, drop_in_background, set_cached, AffectedIds, Engine, EngineError, NsHandle,
    NsState, Snapshot, WriteRequest,
};
use crate::engine::ErrorKind;
use crate::format::idempotency::IdempotencyRecord;
use crate::format::manifest::{Manifest, ManifestStats, ObjectRef, WalRef};
use crate::format::wal::WalBatch;
use crate::layout::NsPath;
use crate::ops::{RequestRecord, RowCounts};
use crate::state::PreparedText;

/// Most requests one group commit takes.
const MAX_GROUP_REQUESTS: usize = 256;
/// Most rows one group commit takes (a single bigger request still goes alone).
const MAX_GROUP_ROWS: usize = 100_000;

/// The result of a write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResponse {
    /// Row counts.
    pub counts: RowCounts,
    /// The generation the write committed at (or, when deduplicated, the
    /// generation current when the duplicate was seen).
    pub generation: u64,
    /// True when this was a retry of an already-applied idempotency key.
    pub deduplicated: bool,
    /// Affected ids, when asked for.
    pub affected: Option<AffectedIds>,
    /// Logical bytes written.
    pub bytes_written: u64,
    /// What embedding the request's texts cost, when it embedded any (`engine/embed.rs`).
    pub embedding: Option<super::EmbedUsage>,
}

pub(super) struct Pending {
    req: WriteRequest,
    tx: oneshot::Sender<Result<WriteResponse, EngineError>>,
}

impl Engine {
    /// Apply one write request (group-committed with concurrent ones).
    pub async fn write(&self, path: &NsPath, req: WriteRequest) -> Result<WriteResponse, EngineError> {
        super::labels::validate_changes(&req.labels)?;
        if let Some(fork) = req.fork.clone() {
            return self.write_fork(path, &fork, &req.labels).await;
        }
        let mut req = req;
        let Some(usage) = self.embed_write(path, &mut req).await? else {
            return self.write_queued(path, req).await;
        };
        // Kept for one more embedding should the namespace's embed settings change before the
        // commit (`embed::check_embedded`); embedding again overwrites every target.
        let retry = req.clone();
        let answer = match self.write_queued(path, req).await {
            Err(e) if super::embed::is_embed_stale(&e) => {
                let mut req = retry;
                let again = self.embed_write(path, &mut req).await?;
                self.write_queued(path, req).await.map(|r| (r, again))
            }
            other => other.map(|r| (r, Some(usage))),
        };
        answer.map(|(mut resp, usage)| {
            resp.embedding = usage;
            resp
        })
    }

    /// Queue `req` (embedded already) for the namespace's next group commit and wait for its answer.
    async fn write_queued(&self, path: &NsPath, mut req: WriteRequest) -> Result<WriteResponse, EngineError> {
        // Analysed here, beside the commit of the group before (`engine/prepare.rs`).
        self.prepare_text(path, &mut req).await;
        let h = self.handle(path);
        let (tx, mut rx) = oneshot::channel();
        h.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back(Pending { req, tx });
        loop {
            let guard = h.commit_lock.lock().await;
            if let Some(result) = reply(&mut rx) {
                return result;
            }
            let batch = take_group(&h);
            if !batch.is_empty() {
                self.commit_group(&h, batch).await;
            }
            drop(guard);
            if let Some(result) = reply(&mut rx) {
                return result;
            }
        }
    }

    /// Update a namespace's schema (a settings-only write).
    pub async fn update_schema(
        &self,
        path: &NsPath,
        schema: crate::schema::Schema,
    ) -> Result<Snapshot, EngineError> {
        let settings = crate::ops::NamespaceSettings { schema: Some(schema), ..Default::default() };
        let mut req = WriteRequest::settings_only(settings);
        req.create_namespace = Some(true);
        self.write(path, req).await?;
        self.existing(path, false).await
    }

    async fn commit_group(&self, h: &NsHandle, batch: Vec<Pending>) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // First attempt: the cached snapshot (kept current by our own
            // commits). After a lost race: reload incrementally from it.
            let loaded = if attempt == 1 { self.reload_if_stale(h).await } else { self.reload(h).await };
            let base = match loaded {
                Ok(b) => b,
                Err(e) => return fail_all(batch, &e),
            };
            let mut plan = self.plan(h, &base, &batch).await;
            if plan.records.is_empty() {
                return match self.reestablish(h, base, &plan).await {
                    Ok(base) => self.answer(h, batch, plan, &base, None),
                    Err(e) => {
                        clear_cached(h);
                        fail_all(batch, &e)
                    }
                };
            }
            // The overlay's chunk merges the apply deferred run beside the commit's syncs.
            let merges = plan.state.take_text_merges().map(|m| tokio::task::spawn_blocking(move || m.run()));
            // Nothing is committed when the WAL object cannot be stored (a
            // full disk, an unreachable bucket): the loaded state stays.
            let staged = match self.stage_wal(h, &base, &mut plan).await {
                Ok(staged) => staged,
                Err(e) => return fail_all(batch, &e),
            };
            match self.commit_plan(h, &base, &plan, staged).await {
                Ok(m) => {
                    // A merge that failed leaves the parts unmerged: the same rows, more chunks.
                    if let Some(Ok(merged)) = OptionFuture::from(merges).await {
                        plan.state.install_text_merges(merged);
                    }
                    let committed =
                        Snapshot { manifest: Some(Arc::new(m)), state: Arc::new(plan.state.clone()) };
                    set_cached(h, committed.clone());
                    self.record_commit(h, &committed, &plan).await;
                    if let Some(m) = &committed.manifest {
                        self.maybe_compact_in_background(&h.path, m);
                    }
                    return self.answer(h, batch, plan, &base, Some(&committed));
                }
                Err(CommitError::Lost) if attempt < MAX_COMMIT_ATTEMPTS => {
                    tracing::debug!(namespace = %h.path, attempt, "commit lost a race; re-applying on the newest generation");
                    self.backoff(attempt).await;
                }
                Err(CommitError::Lost) => {
                    let e = EngineError::conflict(format!(
                        "namespace {} is being written concurrently; the commit lost {MAX_COMMIT_ATTEMPTS} races, retry",
                        h.path.ns()
                    ));
                    return fail_all(batch, &e);
                }
                Err(CommitError::Failed(e)) => {
                    // Poison the cached state: the outcome on storage is unknown.
                    clear_cached(h);
                    return fail_all(batch, &e);
                }
            }
        }
    }

    /// Jittered backoff after a lost race, so two writers stop colliding.
    pub(crate) async fn backoff(&self, attempt: usize) {
        let cap_us = 500u128 << attempt.min(6);
        let jitter = self.ids.next_uuid().as_u128() % cap_us;
        tokio::time::sleep(std::time::Duration::from_micros(u64::try_from(jitter).unwrap_or(0))).await;
    }

    async fn reload_if_stale(&self, h: &NsHandle) -> Result<Snapshot, EngineError> {
        match cached(h) {
            Some(s) => Ok(s),
            None => self.reload(h).await,
        }
    }

    /// Apply the group's requests to a copy of `base`, one by one.
    async fn plan(&self, h: &NsHandle, base: &Snapshot, batch: &[Pending]) -> Plan {
        let mut state = (*base.state).clone();
        // Merged beside the commit's syncs instead (`commit_group`, `state/text_settle.rs`).
        state.defer_text_merges();
        let mut labels =
            base.manifest.as_ref().filter(|m| !m.deleted).map(|m| m.labels.clone()).unwrap_or_default();
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in batch {
            let first = records.is_empty();
            let outcome = self.plan_one(h, base, (&mut state, &mut labels), &p.req, first).await;
            let rot = match &outcome {
                Err(e) if e.rot_of().is_some() => Some(e.clone()),
                _ => None,
            };
            if let Some(e) = rot {
                // A row read while applying changed on disk: the group's state cannot be trusted,
                // so nothing of it is committed and every request of the group fails.
                self.forget_rotten(&e);
                records.clear();
                outcomes = batch.iter().map(|_| Err(e.clone())).collect();
                break;
            }
            // An applied request's record goes to the WAL batch (moved, not copied).
            let outcome = outcome.map(|(o, record)| {
                records.extend(record);
                o
            });
            outcomes.push(outcome);
        }
        Plan { state, labels, records, outcomes }
    }

    async fn plan_one(
        &self,
        h: &NsHandle,
        base: &Snapshot,
        (state, labels): (&mut NsState, &mut Labels),
        req: &WriteRequest,
        first: bool,
    ) -> Result<(PlannedOutcome, Option<RequestRecord>), EngineError> {
        if let Some(key) = &req.record.idempotency_key {
            if let Some(counts) = state.idempotency.get(key) {
                return Ok((PlannedOutcome::Duplicate(*counts), None));
            }
            let (ns, k) = (h.path.to_string(), key.clone());
            if let Some(stored) = self.blocking(move |m| m.idempotency(&ns, &k)).await? {
                return Ok((PlannedOutcome::Duplicate(stored_counts(&h.path, key, &stored)?), None));
            }
        }
        if base.manifest.as_ref().is_some_and(|m| !m.deleted && m.read_only) {
            return Err(read_only_error(&h.path));
        }
        if let Some(v) = req.if_version {
            if !first {
                return Ok((PlannedOutcome::Deferred, None));
            }
            // A generation that only compacted (or relabelled) what `v`
            // committed holds the same content: `v` still matches.
            let same_content = base.manifest.as_ref().is_some_and(|m| !m.deleted && m.content_version() == v);
            let matches = v == base.generation() || same_content || (v == 0 && !base.exists());
            if !matches {
                return Err(EngineError::precondition_failed(format!(
                    "if_version {v} does not match the namespace's current version {}",
                    base.generation()
                )));
            }
        }
        if let Some(m) = base.manifest.as_ref().filter(|m| !m.deleted && !req.disable_backpressure) {
            if m.stats.unindexed_bytes > self.compaction().backlog_bytes {
                self.maybe_compact_in_background(&h.path, m);
                return Err(EngineError::backpressure(
                    format!(
                        "namespace {} has {} unindexed bytes (limit {}); retry once compaction catches up, \
                         or set disable_backpressure",
                        h.path.ns(),
                        m.stats.unindexed_bytes,
                        self.compaction().backlog_bytes
                    ),
                    1000,
                ));
            }
        }
        if !base.exists() && req.create_namespace == Some(false) {
            return Err(EngineError::not_found(format!(
                "namespace {} not found (create_namespace is false)",
                h.path.ns()
            )));
        }
        let no_settings = req.record.settings == crate::ops::NamespaceSettings::default();
        if req.record.ops.is_empty() && no_settings && req.create_namespace != Some(true) {
            return Err(EngineError::invalid_input("write has no operations"));
        }
        // Checked before the rows are applied: a refused label change changes nothing.
        let labels_after = super::labels::applied(labels, &req.labels)?;
        let mut affected = req.return_affected_ids.then(AffectedIds::default);
        // Ids typed by the namespace (or the request's declaration) before
        // anything is applied, so the WAL batch stores them resolved.
        let mut record = req.record.clone();
        super::ids::resolve_ids(state, &mut record)?;
        super::dense::resolve_dense(state, &mut record)?;
        super::embed::check_embedded(&state.schema, &record, &self.models.current())?;
        super::multi::check_multi(state, &record)?;
        let prepared = req.prepared.0.as_deref();
        record.counts = apply_off_workers(state, &record, prepared, &mut affected).await?;
        if is_noop(&record, base) && labels_after == *labels {
            return Ok((PlannedOutcome::Unchanged { affected }, None));
        }
        *labels = labels_after;
        Ok((PlannedOutcome::Answered(Answer::of(&record, affected)), Some(record)))
    }

    /// Steps 1–2: write the group's WAL object and count it. An error here
    /// means nothing was committed.
    async fn stage_wal(
        &self,
        h: &NsHandle,
        base: &Snapshot,
        plan: &mut Plan,
    ) -> Result<(WalRef, u64), EngineError> {
        let path = &h.path;
        let now = self.clock.now_ms();
        let seq = base.manifest.as_ref().map_or(1, |m| m.next_wal_seq.max(1));
        let wal = WalBatch {
            seq,
            created_at_ms: now,
            // Lent to the batch (not copied) and given back once encoded.
            requests: std::mem::take(&mut plan.records),
            flags: crate::format::wal::WAL_APPLY_FLAGS,
        };
        // try_encode refuses exactly what decode would refuse, so nothing
        // unreadable is ever published.
        let wal_key = path.wal_key(seq, &self.ids.next_token());
        let encoded = wal.try_encode().map(|bytes| {
            let r = wal_ref(&wal_key, &wal, &bytes);
            (bytes, r)
        });
        plan.records = wal.requests;
        let (wal_bytes, wal_ref) = encoded
            .map_err(|e| EngineError::caused_by(ErrorKind::InvalidInput, "write cannot be stored", e))?;
        let wal_bytes = Bytes::from(wal_bytes);
        // Steps 1 and 2 at once (their fsyncs overlap): the manifest that names the object waits
        // for both, and a count raised for an object that never landed is given back, or leaks
        // to repair after a crash; it never lets anything be deleted early.
        let (log, keys) = (self.log(path), std::slice::from_ref(&wal_key));
        let (put, raised) = tokio::join!(self.store.put(&wal_key, wal_bytes.clone()), log.raise(keys));
        if let Err(e) = put {
            if raised.is_ok() {
                log.give_back(keys).await;
            }
            return Err(e.into());
        }
        raised?;
        self.keep_in_background(
            ObjectRef { key: wal_key.clone(), bytes: wal_ref.bytes, crc32c: wal_ref.crc32c },
            wal_bytes,
        );
        Ok((wal_ref, now))
    }

    /// Steps 3–5: publish the next generation through the commit unit (one
    /// attempt: a lost race is re-planned by the caller, because re-applying
    /// may change the records).
    async fn commit_plan(
        &self,
        h: &NsHandle,
        base: &Snapshot,
        plan: &Plan,
        (wal_ref, now): (WalRef, u64),
    ) -> Result<Manifest, CommitError> {
        let path = &h.path;
        let log = self.log(path);
        let new_objects = [wal_ref.key.clone()];
        let commit_id = self.ids.next_token();
        let committed = log
            .commit(
                base.manifest.clone(),
                &new_objects,
                1,
                |_| async {},
                |_| {
                    let mut next =
                        next_manifest(base, path, &plan.state, wal_ref.clone(), now, commit_id.clone());
                    next.labels = plan.labels.clone();
                    Ok(Derived::Commit(next))
                },
            )
            .await?;
        Ok(committed.manifest)
    }

    /// `base` when its manifest is durable; when its durability is unknown
    /// (the create of that generation failed on this local store: an fsync
    /// may have failed, and no later fsync makes up for it), the same
    /// manifest committed as the next generation — no new object, a new
    /// manifest written in full — so an answer given from it is acknowledged
    /// on a durable generation. A failure leaves the outcome unknown.
    async fn reestablish(&self, h: &NsHandle, base: Snapshot, plan: &Plan) -> Result<Snapshot, EngineError> {
        let Some(m) = base.manifest.clone() else { return Ok(base) };
        if !self.store.durability_unknown(&h.path.manifest_key(m.generation)) {
            return Ok(base);
        }
        tracing::info!(namespace = %h.path, generation = m.generation, "committing a generation of unknown durability again before answering from it");
        let (now, commit_id) = (self.clock.now_ms(), self.ids.next_token());
        let again = recommitted(&m, commit_id, now);
        let committed = self
            .log(&h.path)
            .commit(Some(m), &[], 1, |_| async {}, |_| Ok(Derived::Commit(again.clone())))
            .await;
        match committed {
            Ok(c) => {
                let s = Snapshot { manifest: Some(Arc::new(c.manifest)), state: base.state.clone() };
                set_cached(h, s.clone());
                self.record_commit(h, &s, plan).await;
                Ok(s)
            }
            Err(CommitError::Lost) => Err(EngineError::conflict(format!(
                "namespace {} is being written concurrently; retry",
                h.path.ns()
            ))),
            Err(CommitError::Failed(e)) => Err(e),
        }
    }

    /// Cache the new manifest and the idempotency keys it acknowledged in the
    /// local metadata. Not a durability step (the WAL is the source of truth
    /// for both); a failure is logged and the write still succeeds.
    async fn record_commit(&self, h: &NsHandle, committed: &Snapshot, plan: &Plan) {
        let Some(m) = committed.manifest.clone() else { return };
        let idem: Vec<(String, Vec<u8>)> = plan
            .records
            .iter()
            .filter_map(|r| {
                let key = r.idempotency_key.clone()?;
                Some((key, IdempotencyRecord { counts: r.counts, generation: m.generation }.encode()))
            })
            .collect();
        let ns = h.path.to_string();
        let bytes = m.encode();
        // Not fsynced (`Meta::record_commit`), unless a write of the store failed: then the
        // hints are what leads a reader across a generation a power loss may take (5.6).
        let settle = self.store.any_durability_unknown();
        let record = move |meta: &crate::meta::Meta| {
            meta.record_commit(&ns, &bytes, &idem)?;
            if settle {
                meta.settle_hints()?;
            }
            Ok(())
        };
        if let Err(e) = self.blocking(record).await {
            tracing::warn!(namespace = %h.path, error = %e, "could not record the commit in local metadata");
        }
    }

    fn answer(
        &self,
        h: &NsHandle,
        batch: Vec<Pending>,
        plan: Plan,
        base: &Snapshot,
        committed: Option<&Snapshot>,
    ) {
        let generation = committed.map_or(base.generation(), Snapshot::generation);
        let mut deferred = Vec::new();
        let mut spent = Vec::with_capacity(batch.len());
        for (p, outcome) in batch.into_iter().zip(plan.outcomes) {
            let result = match outcome {
                Ok(PlannedOutcome::Answered(Answer { counts, bytes_written, affected })) => {
                    Ok(WriteResponse {
                        counts,
                        generation,
                        deduplicated: false,
                        bytes_written,
                        affected,
                        embedding: None,
                    })
                }
                Ok(PlannedOutcome::Unchanged { affected }) => Ok(WriteResponse {
                    counts: RowCounts::default(),
                    generation,
                    deduplicated: false,
                    affected,
                    bytes_written: 0,
                    embedding: None,
                }),
                Ok(PlannedOutcome::Duplicate(counts)) => Ok(WriteResponse {
                    counts,
                    generation,
                    deduplicated: true,
                    affected: None,
                    bytes_written: 0,
                    embedding: None,
                }),
                Ok(PlannedOutcome::Deferred) => {
                    deferred.push(p);
                    continue;
                }
                Err(e) => Err(e),
            };
            let _ = p.tx.send(result);
            spent.push(p.req);
        }
        drop_in_background((spent, plan.records));
        if !deferred.is_empty() {
            let mut q = h.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for p in deferred.into_iter().rev() {
                q.push_front(p);
            }
        }
    }
}

/// `apply::apply_request`; a request that evaluates a filter over the
/// namespace (`delete_by_filter`, `patch_by_filter`) is CPU work proportional
/// to the namespace, so it runs on a blocking thread: the async workers (and
/// `/health`, and every other tenant) never wait for it.
async fn apply_off_workers(
    state: &mut NsState,
    record: &RequestRecord,
    prepared: Option<&PreparedText>,
    affected: &mut Option<AffectedIds>,
) -> Result<RowCounts, EngineError> {
    let ops = &record.ops;
    if ops.delete_by_filter.is_none() && ops.patch_by_filter.is_none() {
        return apply_checked(state, record, prepared, affected.as_mut());
    }
    let (mut st, rec, mut aff) = (std::mem::take(state), record.clone(), affected.take());
    let (st, aff, counts) = tokio::task::spawn_blocking(move || {
        let counts = apply_checked(&mut st, &rec, None, aff.as_mut());
        (st, aff, counts)
    })
    .await
    // A panic inside stays a panic here, as it would be inline (the state was
    // moved out: carrying on with the rest of the group is not an option).
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    (*state, *affected) = (st, aff);
    counts
}

/// `apply::apply_request` in an integrity scope: a segment row it reads (a patch's base, a
/// condition's or a filter's subject) whose bytes changed since they were verified fails the
/// request as [`EngineError::rot`] (and `plan` then fails the whole group), so nothing derived from
/// changed bytes is written back with fresh checksums.
fn apply_checked(
    state: &mut NsState,
    record: &RequestRecord,
    prepared: Option<&PreparedText>,
    affected: Option<&mut AffectedIds>,
) -> Result<RowCounts, EngineError> {
    crate::integrity::within(|| apply::apply_prepared(state, record, prepared, affected))
        .map_err(EngineError::rot)?
}

/// The counts a stored idempotency record (`storage-format.md` 6.1,
/// `format/idempotency.rs`) acknowledged. A record that does not decode is
/// an error naming the key (`Corrupted`, or `Unsupported` for a newer
/// version), never zero counts and never a second application: the key was
/// acknowledged once, so the write took effect, only its counts are lost.
fn stored_counts(path: &NsPath, key: &str, stored: &[u8]) -> Result<RowCounts, EngineError> {
    let record = IdempotencyRecord::decode(stored).map_err(|e| {
        EngineError::from(e).context(&format!(
            "the idempotency record of key {key:?} in namespace {} cannot be read (the write it \
             acknowledged was applied and is not applied again)",
            path.ns()
        ))
    })?;
    Ok(record.counts)
}

/// The manifest's reference to an encoded WAL batch stored under `key`.
pub(super) fn wal_ref(key: &str, wal: &WalBatch, encoded: &[u8]) -> WalRef {
    WalRef {
        key: key.to_owned(),
        seq: wal.seq,
        bytes: encoded.len() as u64,
        crc32c: crc32c::crc32c(encoded),
        requests: u32::try_from(wal.requests.len()).unwrap_or(u32::MAX),
        rows: wal.requests.iter().map(|r| r.ops.direct_rows() as u64).sum(),
    }
}

/// The refusal of a write, schema change or deletion while the namespace is read-only.
pub(super) fn read_only_error(path: &NsPath) -> EngineError {
    EngineError::read_only(format!(
        "namespace {} is read-only; clear it with PATCH .../metadata {{\"read_only\": false}} to change it",
        path.ns()
    ))
}

pub(super) fn next_manifest(
    base: &Snapshot,
    path: &NsPath,
    state: &NsState,
    wal: WalRef,
    now: u64,
    commit_id: String,
) -> Manifest {
    let live = base.manifest.as_ref().filter(|m| !m.deleted);
    let mut wal_refs = live.map(|m| m.wal.clone()).unwrap_or_default();
    let seq = wal.seq;
    wal_refs.push(wal);
    let unindexed_rows = wal_refs.iter().map(|w| w.rows).sum();
    let unindexed_bytes = wal_refs.iter().map(|w| w.bytes).sum();
    let schema = state.schema.clone();
    // The previous generation's schema object, only while the schema is unchanged
    // (storage-format.md 4.5: stored once per change; the commit unit stores a new one).
    let schema_ref = live.filter(|m| m.schema == schema).and_then(|m| m.schema_ref.clone());
    Manifest {
        namespace: path.to_string(),
        generation: base.generation() + 1,
        commit_id,
        previous_generation: base.manifest.as_ref().map(|m| m.generation),
        created_at_ms: live.map_or(now, |m| m.created_at_ms),
        committed_at_ms: now,
        deleted: false,
        id_type: state.id_type,
        distance_metric: state.distance_metric,
        vector_dim: state.vector_dim,
        schema,
        schema_ref,
        next_wal_seq: seq + 1,
        wal: wal_refs,
        segments: live.map(|m| m.segments.clone()).unwrap_or_default(),
        row_id_hwm: base.manifest.as_ref().map_or(0, |m| m.row_id_hwm),
        lineage: live.and_then(|m| m.lineage.clone()),
        labels: live.map(|m| m.labels.clone()).unwrap_or_default(),
        data_generation: None,
        read_only: live.is_some_and(|m| m.read_only),
        origin: None,
        stats: ManifestStats {
            approx_row_count: state.len(),
            approx_logical_bytes: state.logical_bytes,
            unindexed_rows,
            unindexed_bytes,
        },
    }
}

/// `m` as the next generation: same content and objects, a new commit id.
fn recommitted(m: &Manifest, commit_id: String, now: u64) -> Manifest {
    let mut next = m.clone();
    next.previous_generation = Some(m.generation);
    next.generation = m.generation + 1;
    next.data_generation = Some(m.content_version());
    next.commit_id = commit_id;
    next.committed_at_ms = now;
    next
}

/// A request that names no row directly, whose filters matched nothing, that
/// changes no setting and carries no idempotency key (whose record a retry
/// would need), on an existing namespace: it commits nothing (no WAL object,
/// no generation).
fn is_noop(record: &RequestRecord, base: &Snapshot) -> bool {
    base.exists()
        && record.ops.direct_rows() == 0
        && record.counts.affected() == 0
        && record.settings == crate::ops::NamespaceSettings::default()
        && record.idempotency_key.is_none()
}

enum PlannedOutcome {
    /// Applied (its record goes to the group's WAL batch): what the answer reports.
    Answered(Answer),
    /// Applied and changed nothing: answered without a commit.
    Unchanged {
        affected: Option<AffectedIds>,
    },
    Duplicate(RowCounts),
    Deferred,
}

/// What the answer to an applied request reports.
struct Answer {
    counts: RowCounts,
    bytes_written: u64,
    affected: Option<AffectedIds>,
}

impl Answer {
    fn of(record: &RequestRecord, affected: Option<AffectedIds>) -> Answer {
        let bytes_written = record.ops.upserts.iter().map(crate::model::Document::logical_bytes).sum();
        Answer { counts: record.counts, bytes_written, affected }
    }
}

/// A namespace's labels (key → value), as the manifest keeps them.
type Labels = std::collections::BTreeMap<String, String>;

struct Plan {
    state: NsState,
    /// The labels the group's manifest carries (the base's with each applied
    /// request's changes).
    labels: Labels,
    records: Vec<RequestRecord>,
    outcomes: Vec<Result<PlannedOutcome, EngineError>>,
}

fn fail_all(batch: Vec<Pending>, e: &EngineError) {
    for p in batch {
        let _ = p.tx.send(Err(e.clone()));
    }
}

/// The reply to a queued write, if it has arrived.
fn reply(
    rx: &mut oneshot::Receiver<Result<WriteResponse, EngineError>>,
) -> Option<Result<WriteResponse, EngineError>> {
    match rx.try_recv() {
        Ok(result) => Some(result),
        // The leader that took this request was cancelled mid-commit: the
        // outcome is unknown, so report it rather than wait forever.
        Err(oneshot::error::TryRecvError::Closed) => {
            Some(Err(EngineError::unavailable("the commit carrying this write was abandoned")))
        }
        Err(oneshot::error::TryRecvError::Empty) => None,
    }
}

fn take_group(h: &NsHandle) -> Vec<Pending> {
    let mut q = h.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = Vec::new();
    let mut rows = 0;
    while let Some(p) = q.front() {
        let r = p.req.record.ops.direct_rows();
        if !out.is_empty() && (out.len() >= MAX_GROUP_REQUESTS || rows + r > MAX_GROUP_ROWS) {
            break;
        }
        rows += r;
        if let Some(p) = q.pop_front() {
            out.push(p);
        }
    }
    out
}

impl Engine {
    /// Hand an object this write just stored to the disk cache, off the
    /// request path (a bucket store then serves its next read locally; the
    /// local-directory store needs no copy).
    fn keep_in_background(&self, r: ObjectRef, data: Bytes) {
        let cache = self.cache.clone();
        tokio::spawn(async move { cache.keep_written(&r, data).await });
    }
}
