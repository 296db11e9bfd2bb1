//! Meaning without a network: the engine's side of local models (`crate::models`). A string
//! attribute whose schema says `embed` gets its embedding computed at write time and stored in
//! a vector attribute (`$embed_<attr>`, or the one `embed.attribute` names); a query ranks by it
//! with `["Embed", text]`; `rerank_by` scores a query's rows with a model (`engine/rerank.rs`).
//!
//! Invariants:
//! - Embeddings are computed once, before the request is queued for its commit, and stored in
//!   the WAL record as `Value::Dense`: a replay, a branch, a copy, a pull replica never embed
//!   again and need no model. A patch embeds only the embedded attributes it sets.
//! - Every inference runs in the engine's query pool (`query_pool.rs`: bounded slots shared
//!   fairly among projects, the query deadline), in chunks of [`EMBED_CHUNK`] texts, at most as
//!   many chunks at once as the pool has slots; never on an async worker.
//! - A write is refused whole (400, nothing written) when an embedded attribute names a model
//!   this node does not have (the message lists the configured ones), names a cross-encoder, or
//!   asks for other dimensions than the model's, or when a row's value of an embedded attribute
//!   is not a string; a model that fails mid-batch fails the write whole (nothing acknowledged).
//! - Under the commit lock, [`check_embedded`] confirms that every row holding an embedded
//!   attribute carries its embedding under the schema the request is applied to; when the
//!   schema changed in between, the request is embedded again (once) before it is refused.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use super::query_pool::Lane;
use super::{Engine, EngineError, ErrorKind, WriteRequest};
use crate::layout::NsPath;
use crate::model::Value;
use crate::models::{Model, ModelKind, ModelSet};
use crate::ops::RequestRecord;
use crate::query::QueryError;
use crate::schema::{AttrSchema, AttrType, EmbedSpec, Schema, EMBED};

/// Texts one inference call takes (a chunk holds one pool slot while it runs).
pub const EMBED_CHUNK: usize = 32;

/// The models this node serves, replaced whole by a configuration reload.
pub struct ModelRegistry {
    set: RwLock<Arc<ModelSet>>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry").field("models", &self.current().names()).finish()
    }
}

impl Default for ModelRegistry {
    fn default() -> Self {
        ModelRegistry::new(ModelSet::empty())
    }
}

impl ModelRegistry {
    /// A registry serving `set`.
    pub fn new(set: ModelSet) -> Self {
        ModelRegistry { set: RwLock::new(Arc::new(set)) }
    }

    /// The models served now.
    pub fn current(&self) -> Arc<ModelSet> {
        self.set.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Serve `set` from now on (a reload); calls in flight finish on the models they took.
    pub fn replace(&self, set: ModelSet) {
        *self.set.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
    }
}

/// What embedding cost one request (turbopuffer's `performance.embedding_ms` / `embedding_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbedUsage {
    /// Wall time spent embedding.
    pub elapsed: Duration,
    /// Tokens fed to the model (after truncation).
    pub tokens: u64,
}

impl EmbedUsage {
    /// Milliseconds, rounded up: a real embedding never reports 0.
    pub fn ms_ceil(&self) -> u64 {
        u64::try_from(self.elapsed.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Adds `other`'s cost.
    pub fn add(&mut self, other: EmbedUsage) {
        self.elapsed += other.elapsed;
        self.tokens += other.tokens;
    }
}

/// The `embed` settings in force for a request: the request's own schema first (`embed: null`
/// there turns an attribute's embedding off), then the namespace's. Sorted by source attribute.
pub fn embed_targets(ns: &Schema, declared: Option<&Schema>) -> Vec<(String, EmbedSpec)> {
    let mut out: Vec<(String, EmbedSpec)> = Vec::new();
    let mut consider = |name: &String, a: &AttrSchema| {
        if out.iter().any(|(n, _)| n == name) {
            return;
        }
        if let Some(spec) = a.embed_spec(name) {
            out.push((name.clone(), spec));
        }
    };
    let declared_here =
        |name: &str| declared.and_then(|d| d.get(name)).is_some_and(|a| a.extra.contains_key(EMBED));
    for (name, a) in declared.into_iter().flatten() {
        consider(name, a);
    }
    for (name, a) in ns {
        if !declared_here(name) {
            consider(name, a);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The model `spec` names, checked: configured, an embedding model, of the asked dimension.
pub fn embedding_model(models: &ModelSet, attr: &str, spec: &EmbedSpec) -> Result<Arc<Model>, EngineError> {
    let model = named_model(models, &spec.model, &format!("attribute {attr:?}"))?;
    if model.kind() != ModelKind::Embedding {
        return Err(EngineError::invalid_input(format!(
            "attribute {attr:?}: model {:?} is a cross-encoder (it reranks); embed needs an embedding model",
            spec.model
        )));
    }
    if spec.dims.is_some_and(|d| d != model.dims()) {
        return Err(EngineError::invalid_input(format!(
            "attribute {attr:?}: model {:?} produces {} dimensions, the schema asks for {}",
            spec.model,
            model.dims(),
            spec.dims.unwrap_or_default()
        )));
    }
    Ok(model)
}

/// A configured model by name; otherwise a 400 that lists the configured ones.
pub fn named_model(models: &ModelSet, name: &str, what: &str) -> Result<Arc<Model>, EngineError> {
    models.get(name).ok_or_else(|| {
        let names = models.names();
        let configured = if names.is_empty() {
            "none: start the daemon with --model NAME=DIR".to_owned()
        } else {
            names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
        };
        EngineError::invalid_input(format!("{what}: unknown model {name:?} (configured: {configured})"))
    })
}

/// The schema entry of the vector attribute an embedding fills: `[dims]f32`, cosine ANN.
fn target_schema(dims: usize) -> AttrSchema {
    let mut a = AttrSchema::of(AttrType::Vector { dim: dims, f16: false });
    a.ann = true;
    a.extra.insert("ann".into(), json!({"distance_metric": "cosine_distance"}));
    a
}

/// One text of a request to embed: where its vector goes.
struct Slot {
    /// Which attribute map of the record (see [`attr_maps`]) and which target attribute.
    map: usize,
    target: String,
}

/// One model's name and the texts it embeds for a request, each with where its vector goes.
type ModelTexts = (String, Vec<(Slot, String)>);

/// The attribute maps of a request's rows (`WriteOps::attr_maps_mut`), to address by index.
fn attr_maps(record: &mut RequestRecord) -> Vec<&mut crate::model::AttrMap> {
    record.ops.attr_maps_mut().collect()
}

/// Whether any row of `record` sets (or removes) attribute `name`.
fn sets_attr(record: &RequestRecord, name: &str) -> bool {
    record.ops.attr_maps().any(|m| m.get(name).is_some())
}

/// The texts a request's rows give each embedded attribute (a null value sets the target null).
fn collect_texts(
    record: &mut RequestRecord,
    targets: &[(String, EmbedSpec)],
) -> Result<Vec<ModelTexts>, EngineError> {
    let mut per_model: Vec<ModelTexts> = Vec::new();
    for (i, attrs) in attr_maps(record).into_iter().enumerate() {
        for (source, spec) in targets {
            let text = match attrs.get(source) {
                None => continue,
                Some(Value::Null) => {
                    attrs.insert(spec.target.clone(), Value::Null);
                    continue;
                }
                Some(Value::Str(s)) => s.to_string(),
                Some(other) => {
                    return Err(EngineError::invalid_input(format!(
                        "attribute {source:?} is embedded by model {:?}: its value must be a string, got {}",
                        spec.model,
                        other.kind()
                    )))
                }
            };
            let slot = Slot { map: i, target: spec.target.clone() };
            match per_model.iter_mut().find(|(m, _)| *m == spec.model) {
                Some((_, texts)) => texts.push((slot, text)),
                None => per_model.push((spec.model.clone(), vec![(slot, text)])),
            }
        }
    }
    Ok(per_model)
}

impl Engine {
    /// The models this node serves.
    pub fn models(&self) -> &Arc<ModelRegistry> {
        &self.models
    }

    /// Embeds the texts of `req`'s embedded attributes into their target vector attributes and
    /// declares the targets in the request's schema. `None` when nothing is embedded.
    pub(super) async fn embed_write(
        &self,
        path: &NsPath,
        req: &mut WriteRequest,
    ) -> Result<Option<EmbedUsage>, EngineError> {
        let models = self.models.current();
        let declared = req.record.settings.schema.as_ref();
        let declares_embed = declared.is_some_and(|d| d.values().any(|a| a.extra.contains_key(EMBED)));
        // A node without models does nothing here (no schema read on the write path): a row
        // that sets an embedded attribute is refused under the commit lock (`check_embedded`)
        // with the same message.
        if models.iter().next().is_none() && !declares_embed {
            return Ok(None);
        }
        let snap = match super::cached(&self.handle(path)) {
            Some(s) => s,
            None => self.snapshot(path, false).await?,
        };
        let ns_schema = &snap.state.schema;
        let targets = embed_targets(ns_schema, declared);
        if targets.is_empty() {
            return Ok(None);
        }
        // Only the settings this request changes, and the attributes its rows set, need a model
        // now: a node without the model still takes writes that leave embedded text alone.
        let declared_here = |source: &str| {
            declared.is_some_and(|d| d.get(source).is_some_and(|a| a.extra.contains_key(EMBED)))
        };
        let targets: Vec<(String, EmbedSpec)> = targets
            .into_iter()
            .filter(|(source, _)| declared_here(source) || sets_attr(&req.record, source))
            .collect();
        if targets.is_empty() {
            return Ok(None);
        }
        let mut checked = Vec::with_capacity(targets.len());
        for (source, spec) in &targets {
            let model = embedding_model(&models, source, spec)?;
            check_target(ns_schema, declared, source, spec, model.dims())?;
            checked.push(model);
        }
        declare_targets(&mut req.record, ns_schema, &targets, &checked);
        let per_model = collect_texts(&mut req.record, &targets)?;
        if per_model.is_empty() {
            // Nothing to embed (a patch of other attributes): no embedding is reported.
            return Ok(None);
        }
        let mut usage = EmbedUsage::default();
        let mut maps = attr_maps(&mut req.record);
        for (name, texts) in per_model {
            let model = models.get(&name).ok_or_else(|| EngineError::internal("a checked model vanished"))?;
            let (slots, texts): (Vec<Slot>, Vec<String>) = texts.into_iter().unzip();
            let (vectors, cost) = self.embed_texts(&path.project_id(), &model, texts).await?;
            usage.add(cost);
            for (slot, v) in slots.into_iter().zip(vectors) {
                maps[slot.map].insert(slot.target, Value::Dense(v.into()));
            }
        }
        Ok(Some(usage))
    }

    /// Embeds `texts` with `model` in the query pool (see [`Engine::run_model`]); vectors in input
    /// order.
    pub async fn embed_texts(
        &self,
        tenant: &str,
        model: &Arc<Model>,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, EmbedUsage), EngineError> {
        self.run_model(tenant, model, "embed", texts, |m, chunk| {
            m.embed(chunk).map(|e| (e.vectors, e.tokens))
        })
        .await
    }

    /// Runs `call` of `model` over `texts` in the query pool, [`EMBED_CHUNK`] texts at a time, as
    /// many chunks at once as the pool has slots, each call counted in the metrics under `op`;
    /// the outputs in input order, with what they cost.
    pub(super) async fn run_model<T, F>(
        &self,
        tenant: &str,
        model: &Arc<Model>,
        op: &'static str,
        texts: Vec<String>,
        call: F,
    ) -> Result<(Vec<T>, EmbedUsage), EngineError>
    where
        T: Send + 'static,
        F: Fn(&Model, &[&str]) -> Result<(Vec<T>, u64), crate::models::ModelError> + Clone + Send + 'static,
    {
        let started = Instant::now();
        let chunks: Vec<Vec<String>> = texts.chunks(EMBED_CHUNK).map(<[String]>::to_vec).collect();
        let parallel = self.queries.slots().max(1);
        let outs: Vec<(Vec<T>, u64)> = futures::stream::iter(chunks)
            .map(|chunk| {
                let (model, metrics, call) = (Arc::clone(model), Arc::clone(&self.metrics), call.clone());
                self.queries.run(Lane::Large, tenant, move || {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    let started = Instant::now();
                    let (out, tokens) = call(&model, &refs).map_err(|e| model_failed(&model, &e))?;
                    metrics.observe_model(model.name(), op, refs.len(), tokens, started.elapsed());
                    Ok((out, tokens))
                })
            })
            .buffered(parallel)
            .try_collect()
            .await?;
        let tokens = outs.iter().map(|o| o.1).sum();
        let out = outs.into_iter().flat_map(|o| o.0).collect();
        Ok((out, EmbedUsage { elapsed: started.elapsed(), tokens }))
    }
}

/// A model's failure as the query layer reports it (500, naming the model).
pub(crate) fn model_failed(model: &Model, e: &dyn std::fmt::Display) -> QueryError {
    QueryError::Internal(format!("model {:?} failed: {e}", model.name()))
}

/// The target of an embedding must be free for it: a new attribute, or a vector attribute of
/// the model's dimension.
fn check_target(
    ns: &Schema,
    declared: Option<&Schema>,
    source: &str,
    spec: &EmbedSpec,
    dims: usize,
) -> Result<(), EngineError> {
    let existing = declared.and_then(|d| d.get(&spec.target)).or_else(|| ns.get(&spec.target));
    match existing.map(|a| a.ty) {
        None => Ok(()),
        Some(AttrType::Vector { dim, .. }) if dim == dims => Ok(()),
        Some(ty) => Err(EngineError::invalid_input(format!(
            "attribute {source:?} embeds into {:?}, which is a {} attribute; the model gives [{dims}]f32",
            spec.target,
            ty.name()
        ))),
    }
}

/// Adds the schema entry of every target the namespace does not know yet to the request.
fn declare_targets(
    record: &mut RequestRecord,
    ns: &Schema,
    targets: &[(String, EmbedSpec)],
    models: &[Arc<Model>],
) {
    for ((_, spec), model) in targets.iter().zip(models) {
        let known = ns.contains_key(&spec.target)
            || record.settings.schema.as_ref().is_some_and(|d| d.contains_key(&spec.target));
        if !known {
            record
                .settings
                .schema
                .get_or_insert_with(Schema::new)
                .insert(spec.target.clone(), target_schema(model.dims()));
        }
    }
}

/// Under the commit lock: every row of `record` that sets an attribute embedded under the
/// schema it is applied to (`ns`, then the request's own) carries that attribute's embedding.
/// A miss means the schema changed after the request was embedded ([`ErrorKind::Conflict`]
/// with [`EMBED_STALE`], which `Engine::write` answers by embedding again), or that this node
/// has no such model (400).
pub(super) fn check_embedded(
    ns: &Schema,
    record: &RequestRecord,
    models: &ModelSet,
) -> Result<(), EngineError> {
    let targets = embed_targets(ns, record.settings.schema.as_ref());
    if targets.is_empty() {
        return Ok(());
    }
    for attrs in record.ops.attr_maps() {
        for (source, spec) in &targets {
            let needs = attrs.get(source).is_some_and(|v| !matches!(v, Value::Null));
            if needs && !matches!(attrs.get(&spec.target), Some(Value::Dense(_))) {
                embedding_model(models, source, spec)?;
                return Err(EngineError::conflict(format!("{EMBED_STALE}: attribute {source:?}")));
            }
        }
    }
    Ok(())
}

/// The message prefix of the conflict [`check_embedded`] raises.
pub(super) const EMBED_STALE: &str = "the namespace's embed settings changed while the write was embedding";

/// Whether `e` is the conflict [`check_embedded`] raises.
pub(super) fn is_embed_stale(e: &EngineError) -> bool {
    e.kind() == ErrorKind::Conflict && e.message().starts_with(EMBED_STALE)
}
