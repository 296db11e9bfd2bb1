//! Queries that use local models: `[attr, "ANN", ["Embed", text, {model}]]` (the text embedded
//! into the ranking's query vector) and `rerank_by: {attribute, model, query}` (the rows reordered
//! by a model's scores).
//!
//! Invariants:
//! - An `Embed` ranking ranks by a vector attribute that an embedded string attribute fills: named
//!   by the string attribute (`["text", "ANN", ["Embed", q]]`) or by the vector attribute itself
//!   (`["$embed_text", ...]`). The model is the override, else the one the attribute's `embed`
//!   names; its dimension must be the vector attribute's. Anything else is a 400 before any
//!   evaluation.
//! - Inference runs in the query pool like every evaluation (`embed::Engine::embed_texts`).
//! - A rerank returns the same rows (a multi-query: the subqueries' rows merged by id, then its
//!   top-level `offset` and `limit`), highest score first, ties in the order the query gave;
//!   `$dist` is the score. A cross-encoder scores each (query, attribute) pair; an embedding
//!   model scores the cosine of the two embeddings. A row without the attribute (or with a
//!   non-string value) is scored as an empty text.

use std::sync::Arc;

use super::embed::{embed_targets, named_model, EmbedUsage};
use super::{Engine, EngineError};
use crate::layout::NsPath;
use crate::model::Value;
use crate::models::Model;
use crate::query::{ComputeExpr, ModelRerank, Query, QueryRequest, QueryResult, Rank, Row};
use crate::schema::{AttrType, Schema};

/// Whether `req` needs a local model (it is then answered on a loaded state, never cold).
pub fn uses_models(req: &QueryRequest) -> bool {
    req.rerank_model.is_some()
        || req.queries.iter().any(|q| q.embed.is_some() || q.compute.iter().any(|(_, e)| embeds(e)))
}

/// Whether a computed attribute embeds a text (`Embed`, or `VectorDist` to an `Embed`).
fn embeds(e: &ComputeExpr) -> bool {
    matches!(e, ComputeExpr::Embed { .. } | ComputeExpr::VectorDist { embed: Some(_), .. })
}

/// The model a computed `["Embed", text]` without a model uses: the namespace's one embedding
/// model (when its attributes are embedded by several, the expression must name one).
fn namespace_model(schema: &Schema) -> Result<String, EngineError> {
    let mut models: Vec<String> = embed_targets(schema, None).into_iter().map(|(_, s)| s.model).collect();
    models.sort();
    models.dedup();
    match models.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(EngineError::invalid_input(
            "compute_attributes Embed: no attribute of this namespace is embedded; name a model: [\"Embed\", text, {\"model\": NAME}]",
        )),
        _ => Err(EngineError::invalid_input(format!(
            "compute_attributes Embed: this namespace embeds with several models ({}); name one: [\"Embed\", text, {{\"model\": NAME}}]",
            models.join(", ")
        ))),
    }
}

/// The vector attribute and model an `Embed` ranking on `attr` uses.
fn embed_plan(schema: &Schema, attr: &str, model: Option<&str>) -> Result<(String, String), EngineError> {
    let targets = embed_targets(schema, None);
    let by_source = targets.iter().find(|(source, _)| source == attr);
    let by_target = targets.iter().find(|(_, spec)| spec.target == attr);
    let (target, default_model) = match (by_source, by_target) {
        (Some((_, spec)), _) | (None, Some((_, spec))) => (spec.target.clone(), Some(spec.model.clone())),
        (None, None) if matches!(schema.get(attr).map(|a| a.ty), Some(AttrType::Vector { .. })) => {
            (attr.to_owned(), None)
        }
        (None, None) => {
            return Err(EngineError::invalid_input(format!(
                "rank_by [{attr:?}, \"ANN\", [\"Embed\", ..]]: attribute {attr:?} is not embedded (give it \
                 \"embed\": MODEL in the schema) nor a vector attribute"
            )))
        }
    };
    let model = model.map(str::to_owned).or(default_model).ok_or_else(|| {
        EngineError::invalid_input(format!(
            "rank_by [{attr:?}, \"ANN\", [\"Embed\", ..]]: no model embeds {attr:?}; name one: [\"Embed\", text, {{\"model\": NAME}}]"
        ))
    })?;
    Ok((target, model))
}

/// `q` with its `Embed` ranking pointed at the vector attribute it ranks by, and a plan line
/// naming the model that would embed the text; None when `q` embeds nothing.
pub(super) fn explained(q: &Query, schema: &Schema) -> Result<Option<(Query, String)>, EngineError> {
    let (Some(text), Some(Rank::NamedVector { attr, .. })) = (&q.embed, &q.rank) else { return Ok(None) };
    let (target, model) = embed_plan(schema, attr, text.model.as_deref())?;
    let line = format!("query vector: the text embedded by model {model:?} (the query's own, at evaluation)");
    let mut q = q.clone();
    if let Some(Rank::NamedVector { attr, .. }) = q.rank.as_mut() {
        *attr = target;
    }
    q.embed = None;
    Ok(Some((q, line)))
}

impl Engine {
    /// Turns every `Embed` ranking of `req` into a ranking by its vector attribute with the
    /// text's embedding as the query vector.
    pub(super) async fn resolve_embeds(
        &self,
        path: &NsPath,
        req: &mut QueryRequest,
        schema: &Schema,
    ) -> Result<Option<EmbedUsage>, EngineError> {
        let mut usage: Option<EmbedUsage> = None;
        for q in &mut req.queries {
            let Some(cost) = self.resolve_embed(path, q, schema).await? else { continue };
            usage.get_or_insert_with(EmbedUsage::default).add(cost);
        }
        Ok(usage)
    }

    async fn resolve_embed(
        &self,
        path: &NsPath,
        q: &mut Query,
        schema: &Schema,
    ) -> Result<Option<EmbedUsage>, EngineError> {
        let mut usage = self.resolve_rank_embed(path, q, schema).await?;
        for (_, e) in q.compute.iter_mut().filter(|(_, e)| embeds(e)) {
            let cost = self.resolve_compute_embed(path, e, schema).await?;
            usage.get_or_insert_with(EmbedUsage::default).add(cost);
        }
        Ok(usage)
    }

    /// `["Embed", text]` and `[attr, "VectorDist", ["Embed", text]]` in `compute_attributes`.
    async fn resolve_compute_embed(
        &self,
        path: &NsPath,
        e: &mut ComputeExpr,
        schema: &Schema,
    ) -> Result<EmbedUsage, EngineError> {
        let models = self.models().current();
        match e {
            ComputeExpr::Embed { text, vector } => {
                let name = match &text.model {
                    Some(m) => m.clone(),
                    None => namespace_model(schema)?,
                };
                let spec = crate::schema::EmbedSpec { model: name, target: String::new(), dims: None };
                let model = super::embed::embedding_model(&models, "compute_attributes", &spec)?;
                let (mut v, cost) =
                    self.embed_texts(&path.project_id(), &model, vec![text.text.clone()]).await?;
                *vector = v.pop().ok_or_else(|| EngineError::internal("the model returned no vector"))?;
                Ok(cost)
            }
            ComputeExpr::VectorDist { attr, query, embed: Some(text) } => {
                let (target, model) = embed_plan(schema, attr, text.model.as_deref())?;
                let (v, cost) = self.embed_one(path, &models, &target, &model, &text.text, schema).await?;
                (*attr, *query) = (target, v);
                Ok(cost)
            }
            _ => Ok(EmbedUsage::default()),
        }
    }

    /// `text` embedded by model `name` for vector attribute `target` (dimensions checked).
    async fn embed_one(
        &self,
        path: &NsPath,
        models: &crate::models::ModelSet,
        target: &str,
        name: &str,
        text: &str,
        schema: &Schema,
    ) -> Result<(Vec<f32>, EmbedUsage), EngineError> {
        let spec = crate::schema::EmbedSpec { model: name.to_owned(), target: target.to_owned(), dims: None };
        let model = super::embed::embedding_model(models, target, &spec)?;
        let want = match schema.get(target).map(|a| a.ty) {
            Some(AttrType::Vector { dim, .. }) => Some(dim),
            _ => None,
        };
        if want.is_some_and(|d| d != model.dims()) {
            return Err(EngineError::invalid_input(format!(
                "Embed: model {:?} produces {} dimensions, attribute {target:?} holds {}",
                model.name(),
                model.dims(),
                want.unwrap_or_default()
            )));
        }
        let (mut vectors, cost) = self.embed_texts(&path.project_id(), &model, vec![text.to_owned()]).await?;
        let v = vectors.pop().ok_or_else(|| EngineError::internal("the model returned no vector"))?;
        Ok((v, cost))
    }

    /// The ranking's `["Embed", text]`: the query vector and the attribute it ranks by.
    async fn resolve_rank_embed(
        &self,
        path: &NsPath,
        q: &mut Query,
        schema: &Schema,
    ) -> Result<Option<EmbedUsage>, EngineError> {
        let Some(text) = q.embed.take() else { return Ok(None) };
        let Some(Rank::NamedVector { attr, query, .. }) = q.rank.as_mut() else {
            return Err(EngineError::internal("an Embed ranking without its vector ranking"));
        };
        let (target, model_name) = embed_plan(schema, attr, text.model.as_deref())?;
        let models = self.models().current();
        let (v, cost) = self.embed_one(path, &models, &target, &model_name, &text.text, schema).await?;
        (*attr, *query) = (target, v);
        Ok(Some(cost))
    }

    /// Reorders `results`' rows by `r`'s model (see the module doc).
    pub(super) async fn rerank(
        &self,
        path: &NsPath,
        mut results: Vec<QueryResult>,
        r: &ModelRerank,
    ) -> Result<(Vec<QueryResult>, EmbedUsage), EngineError> {
        let models = self.models().current();
        let model = named_model(&models, &r.model, "rerank_by")?;
        if let Some((offset, limit)) = r.page {
            let merged = merge_rows(&mut results);
            let (rows, usage) = self.rerank_rows(path, &model, r, merged).await?;
            let page = rows.into_iter().skip(offset).take(limit).collect();
            let vector_encoding = results.first().map(|x| x.vector_encoding).unwrap_or_default();
            let scanned = results.iter().map(|x| x.scanned).sum();
            let one = QueryResult { rows: Some(page), vector_encoding, scanned, ..QueryResult::default() };
            return Ok((vec![one], usage));
        }
        let mut usage = EmbedUsage::default();
        for result in &mut results {
            let Some(rows) = result.rows.take() else { continue };
            let (rows, cost) = self.rerank_rows(path, &model, r, rows).await?;
            usage.add(cost);
            result.rows = Some(rows);
        }
        Ok((results, usage))
    }

    async fn rerank_rows(
        &self,
        path: &NsPath,
        model: &Arc<Model>,
        r: &ModelRerank,
        rows: Vec<Row>,
    ) -> Result<(Vec<Row>, EmbedUsage), EngineError> {
        let texts: Vec<String> = rows.iter().map(|row| row_text(row, &r.attribute)).collect();
        let query = r.query.clone();
        let score = move |m: &Model, docs: &[&str]| m.score_pairs(&query, docs).map(|s| (s.scores, s.tokens));
        let (scores, usage) = self.run_model(&path.project_id(), model, "rerank", texts, score).await?;
        let mut ranked: Vec<(f32, Row)> = scores.into_iter().zip(rows).collect();
        // Stable: equal scores keep the query's order.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let rows = ranked
            .into_iter()
            .map(|(score, mut row)| {
                row.dist = Some(f64::from(score));
                row
            })
            .collect();
        Ok((rows, usage))
    }
}

/// A row's text for reranking: its string value of `attr`, else empty.
fn row_text(row: &Row, attr: &str) -> String {
    match row.doc.attrs.get(attr) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

/// The rows of every result, each id once (its first occurrence), in result order.
fn merge_rows(results: &mut [QueryResult]) -> Vec<Row> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for result in results {
        for row in result.rows.take().into_iter().flatten() {
            if seen.insert(row.doc.id.clone()) {
                out.push(row);
            }
        }
    }
    out
}
