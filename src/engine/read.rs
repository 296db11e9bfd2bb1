//! Reads are the engine's: [`Engine::read`] makes every choice of how a read
//! is done — the loaded state, a retained generation (time travel), ranged
//! reads of a namespace that is not loaded (cold), the last generation this
//! node knew while the store is unreachable — and returns a [`ReadView`] that
//! queries, explain, recall and export run on. [`Engine::read_metadata`] is
//! the same choice for a namespace's metadata.
//!
//! Invariants:
//! - Query evaluation is entered here only: [`ReadView::query`] (and
//!   [`Engine::evaluate`], which the cold path ranks its candidates with)
//!   runs `query::execute_request` on the engine's bounded query pool
//!   (`query_pool.rs`, `QueryPool::run_here`: on the read's own thread, its
//!   async worker's other tasks handed to another thread meanwhile), never on
//!   an async worker; recall runs there too.
//! - Time travel (`generation`) is never answered cold nor from the last
//!   known generation: it reads exactly that retained generation or fails.
//! - A cold answer is tried only when the read allows it, the namespace is
//!   not loaded and the store is a bucket; the namespace is then loaded in the
//!   background for the next reads. A cold read that finds the store
//!   unreachable falls through to the loaded path when stale reads are allowed.
//! - The last known generation answers only a read that allows staleness (the
//!   caller did not demand `strong`), only when the store is unreachable.
//! - The cache temperature a query reports is measured before the read loads
//!   anything (loading makes every namespace hot).
//! - `disable_cache` (a query's cold benchmark) neither uses nor fills the
//!   memory tier: on a bucket store, a query the cold path covers is answered
//!   by ranged reads of the bucket even when the namespace is loaded or its
//!   segments are on local disk, and nothing is loaded in the background for
//!   it; any other query runs on a state built for it alone from the newest
//!   manifest (segments opened and verified, WAL replayed) and dropped after,
//!   its segment files read through the disk cache on a bucket store. The
//!   reported temperature is what that read met (`warm` or `cold`, never
//!   `hot`). Time travel and a store found unreachable take the usual path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{cached, Engine, EngineError, ErrorKind, NamespaceMetadata, QueryPool, Snapshot};
use crate::engine::query_pool::Lane;
use crate::layout::NsPath;
use crate::query::recall::{RecallReport, RecallRequest};
use crate::query::{self, Query, QueryRequest, QueryResult};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// The newest committed generation (one probe of the next one first).
    #[default]
    Strong,
    /// The loaded generation, possibly a little behind.
    Eventual,
}

impl Consistency {
    /// `Strong` when `strong`, else `Eventual`.
    pub fn strong_if(strong: bool) -> Consistency {
        if strong {
            Consistency::Strong
        } else {
            Consistency::Eventual
        }
    }
}

/// What a read may do (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// How fresh the newest generation must be (time travel ignores it).
    pub consistency: Consistency,
    /// Read this retained generation instead of the newest (time travel).
    pub generation: Option<u64>,
    /// When the store is unreachable, answer from the last generation this
    /// node knew (false: the caller demanded strong consistency).
    pub allow_stale: bool,
    /// A query may be answered by ranged reads of a namespace not loaded.
    pub allow_cold: bool,
    /// Measure the cache temperature before loading (a query reports it).
    pub measure_temperature: bool,
    /// `disable_cache`: answer by ranged reads of the bucket where the cold
    /// path covers the query, neither using nor filling the caches.
    pub disable_cache: bool,
}

/// turbopuffer's `cache_temperature` and `cache_hit_ratio` of a read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Temperature {
    /// `hot`, `warm` or `cold`.
    pub level: &'static str,
    /// Share of the namespace's segment files on local disk.
    pub hit_ratio: f64,
}

impl Temperature {
    const HOT: Temperature = Temperature { level: "hot", hit_ratio: 1.0 };
    const COLD: Temperature = Temperature { level: "cold", hit_ratio: 0.0 };
}

/// The typed answer to a query request: its results and what the response
/// reports about the read.
#[derive(Debug)]
pub struct QueryAnswer {
    /// One result per query (one in all for a fused multi-query).
    pub results: Vec<QueryResult>,
    /// The generation read.
    pub generation: u64,
    /// Logical bytes of the namespace at that generation.
    pub logical_bytes: u64,
    /// Documents of the namespace at that generation.
    pub approx_rows: u64,
    /// The cache temperature the read met.
    pub temperature: Temperature,
    /// The time the evaluation took, less any wait for a slot of the query pool
    /// (for a cold answer: its ranged reads too).
    pub execution: Duration,
    /// What embedding the query texts cost (`["Embed", text]` rankings), if any.
    pub embedding: Option<super::EmbedUsage>,
    /// What a model's `rerank_by` cost, if any.
    pub rerank: Option<super::EmbedUsage>,
}

impl QueryAnswer {
    /// The answer `results` make on `snap` (no model was used).
    fn on(snap: &Snapshot, temperature: Temperature, results: Vec<QueryResult>, execution: Duration) -> Self {
        QueryAnswer {
            results,
            generation: snap.generation(),
            logical_bytes: snap.state.logical_bytes,
            approx_rows: snap.state.len(),
            temperature,
            execution,
            embedding: None,
            rerank: None,
        }
    }
}

/// One read of one namespace, decided by [`Engine::read`]: a loaded
/// snapshot, or (for a query that may be answered cold) nothing loaded yet.
pub struct ReadView {
    engine: Arc<Engine>,
    path: NsPath,
    opts: ReadOptions,
    loaded: Option<(Snapshot, Temperature)>,
}

impl Engine {
    /// Start a read of `path` as `opts` allow; the returned view runs the
    /// read's queries, explain, recall or export.
    pub async fn read(self: &Arc<Self>, path: &NsPath, opts: ReadOptions) -> Result<ReadView, EngineError> {
        let mut view = ReadView { engine: Arc::clone(self), path: path.clone(), opts, loaded: None };
        if !view.may_answer_cold() && !view.uncached() {
            view.load().await?;
        }
        Ok(view)
    }

    /// A namespace's metadata; when the store is unreachable, what this node
    /// last knew (a bucket-primary node cut off from its bucket).
    pub async fn read_metadata(&self, path: &NsPath) -> Result<NamespaceMetadata, EngineError> {
        match self.metadata(path).await {
            Err(e) if e.kind() == ErrorKind::Unavailable => self.offline_metadata(path).await.map_err(|_| e),
            other => other,
        }
    }

    /// The engine's bounded query pool (a configuration reload retunes it).
    pub fn query_pool(&self) -> &QueryPool {
        &self.queries
    }

    /// Evaluate every query of `req` on `state`, in the query pool: the one
    /// entry into query evaluation (loaded reads and cold candidates alike).
    /// Also returns how long the request waited for a slot of the pool, which
    /// `query_execution_ms` leaves out (turbopuffer: "excluding time spent
    /// waiting due to the namespace concurrency limit").
    /// Slots are shared among projects: `path`'s project is the tenant.
    pub(crate) async fn evaluate(
        &self,
        path: &NsPath,
        req: QueryRequest,
        state: Arc<crate::state::NsState>,
    ) -> Result<(Vec<QueryResult>, Duration), EngineError> {
        let lane = Lane::of(state.len());
        let submitted = Instant::now();
        // One evaluation per read: run where the read is (no hand-off to a blocking thread).
        self.queries
            .run_here(lane, &path.project_id(), move || {
                let waited = submitted.elapsed();
                Ok((query::execute_request(&req, &state)?, waited))
            })
            .await
            .inspect_err(|e| self.forget_rotten(e))
    }

    /// The snapshot a read uses: the newest, or `generation` (time travel);
    /// with `allow_stale`, the last known one when the store is unreachable.
    async fn read_snapshot(&self, path: &NsPath, opts: ReadOptions) -> Result<Snapshot, EngineError> {
        let strong = opts.consistency == Consistency::Strong;
        match self.snapshot_at(path, opts.generation, strong).await {
            Err(e) if e.kind() == ErrorKind::Unavailable && opts.allow_stale && opts.generation.is_none() => {
                let snap = self.offline_snapshot(path).await.map_err(|_| e)?;
                tracing::warn!(namespace = %path, generation = snap.generation(),
                    "the store is unreachable; answering from the last generation this node knew");
                Ok(snap)
            }
            other => other,
        }
    }
}

impl ReadView {
    /// Whether a query may still be answered by ranged reads (nothing is
    /// loaded until it has been tried).
    fn may_answer_cold(&self) -> bool {
        self.opts.allow_cold
            && self.opts.generation.is_none()
            && self.engine.store.local_root().is_none()
            && (self.opts.disable_cache || cached(&self.engine.handle(&self.path)).is_none())
    }

    /// Whether queries bypass the memory tier (`disable_cache`, newest generation).
    fn uncached(&self) -> bool {
        self.opts.disable_cache && self.opts.generation.is_none()
    }

    /// The answer on a state built for this query alone from the newest
    /// manifest, never installed in the memory tier; `None` when the store is
    /// unreachable and the read may be stale (the usual path then answers).
    async fn uncached_query(&self, req: &QueryRequest) -> Result<Option<QueryAnswer>, EngineError> {
        let (level, hit_ratio) = self.engine.disk_temperature(&self.path).await;
        let started = Instant::now();
        let manifest = match self.engine.latest_manifest(&self.path).await {
            Err(e) if e.kind() == ErrorKind::Unavailable && self.opts.allow_stale => return Ok(None),
            other => other?,
        };
        let Some(m) = manifest.filter(|m| !m.deleted) else {
            return Err(EngineError::not_found(format!("namespace {} not found", self.path.ns())));
        };
        // One such build at a time per namespace (the loads' lock): a client
        // asking every query to rebuild costs one state, not one per query.
        let h = self.engine.handle(&self.path);
        let snap = {
            let _one_at_a_time = h.load_lock.lock().await;
            self.engine.materialize(&self.path, m, None).await?
        };
        let (results, waited) = self.engine.evaluate(&self.path, req.clone(), snap.state.clone()).await?;
        let execution = started.elapsed().saturating_sub(waited);
        Ok(Some(QueryAnswer::on(&snap, Temperature { level, hit_ratio }, results, execution)))
    }

    /// Load the read's snapshot (the temperature measured first).
    async fn load(&mut self) -> Result<&(Snapshot, Temperature), EngineError> {
        if self.loaded.is_none() {
            let temperature = if self.opts.measure_temperature {
                let (level, hit_ratio) = self.engine.cache_temperature(&self.path).await;
                Temperature { level, hit_ratio }
            } else {
                Temperature::HOT
            };
            let snap = self.engine.read_snapshot(&self.path, self.opts).await?;
            self.loaded = Some((snap, temperature));
        }
        self.loaded.as_ref().ok_or_else(|| EngineError::internal("a loaded read lost its snapshot"))
    }

    /// The snapshot the read runs on (loaded now if it was not yet).
    pub async fn snapshot(&mut self) -> Result<&Snapshot, EngineError> {
        Ok(&self.load().await?.0)
    }

    /// Answer a query request: by ranged reads when the read allows it and
    /// can, else on the loaded snapshot, in the query pool.
    pub async fn query(&mut self, req: &QueryRequest) -> Result<QueryAnswer, EngineError> {
        if super::model_query::uses_models(req) {
            return self.query_with_models(req).await;
        }
        let started = Instant::now();
        if self.loaded.is_none() && self.may_answer_cold() {
            if let Some(answer) = self.cold_query(req, started).await? {
                return Ok(answer);
            }
        }
        if self.loaded.is_none() && self.uncached() {
            if let Some(answer) = self.uncached_query(req).await? {
                return Ok(answer);
            }
        }
        let (snap, temperature) = self.load().await?.clone();
        let started = Instant::now();
        let (results, waited) = self.engine.evaluate(&self.path, req.clone(), snap.state.clone()).await?;
        Ok(QueryAnswer::on(&snap, temperature, results, started.elapsed().saturating_sub(waited)))
    }

    /// A query that embeds a text or reranks with a local model, on the loaded snapshot (the
    /// schema says which model embeds what); the models' time is reported apart.
    async fn query_with_models(&mut self, req: &QueryRequest) -> Result<QueryAnswer, EngineError> {
        let (snap, temperature) = self.load().await?.clone();
        let started = Instant::now();
        let mut req = req.clone();
        let embedding = self.engine.resolve_embeds(&self.path, &mut req, &snap.state.schema).await?;
        let rerank_by = req.rerank_model.take();
        let (mut results, waited) = self.engine.evaluate(&self.path, req, snap.state.clone()).await?;
        let mut rerank = None;
        if let Some(r) = rerank_by {
            let (reranked, cost) = self.engine.rerank(&self.path, results, &r).await?;
            (results, rerank) = (reranked, Some(cost));
        }
        let execution = started.elapsed().saturating_sub(waited);
        Ok(QueryAnswer { embedding, rerank, ..QueryAnswer::on(&snap, temperature, results, execution) })
    }

    /// The cold answer, if the cold path covers `req`; the namespace is then
    /// loaded in the background for the next queries.
    async fn cold_query(
        &self,
        req: &QueryRequest,
        started: Instant,
    ) -> Result<Option<QueryAnswer>, EngineError> {
        let uncached = self.opts.disable_cache;
        let cold = match self.engine.cold_query_bypassing(&self.path, req, uncached).await {
            Err(e) if e.kind() == ErrorKind::Unavailable && self.opts.allow_stale => None,
            other => other?,
        };
        let Some(cold) = cold else { return Ok(None) };
        if !uncached {
            self.engine.warm_in_background(&self.path);
        }
        Ok(Some(QueryAnswer {
            results: cold.results,
            generation: cold.generation,
            logical_bytes: cold.logical_bytes,
            approx_rows: cold.approx_rows,
            temperature: Temperature::COLD,
            execution: started.elapsed(),
            embedding: None,
            rerank: None,
        }))
    }

    /// The plan of one query on the read's snapshot (no evaluation).
    pub async fn explain(&mut self, q: &Query) -> Result<String, EngineError> {
        let snap = self.snapshot().await?;
        // An `Embed` ranking is explained on the vector attribute it ranks by (no model runs).
        let Some((q, embedded_by)) = super::model_query::explained(q, &snap.state.schema)? else {
            return Ok(query::explain(q, &snap.state)?);
        };
        Ok(format!("{embedded_by}\n{}", query::explain(&q, &snap.state)?))
    }

    /// ANN against exact search on sampled vectors, in the query pool.
    pub async fn recall(&mut self, params: RecallRequest) -> Result<RecallReport, EngineError> {
        let state = self.snapshot().await?.state.clone();
        let lane = Lane::of(state.len());
        let engine = &self.engine;
        engine
            .queries
            .run(lane, &self.path.project_id(), move || query::recall(&params, &state))
            .await
            .inspect_err(|e| engine.forget_rotten(e))
    }
}
