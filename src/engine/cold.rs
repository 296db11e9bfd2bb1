//! Cold queries: answer a vector (ANN) query — by `vector` or by a named vector attribute — on
//! a namespace that is not loaded, with ranged reads from the object store instead of
//! downloading its segments first (`storage-format.md` 11.4, "Cold reads"; 11.8 for a named
//! vector attribute, whose lists are a kind-24 section's).
//!
//! Round trips, each a set of requests issued together:
//! 1. the manifest: one GET of CURRENT (version 2 embeds the manifest);
//! 2. per segment the cold IVF head (centroids, list offsets, list crcs; for a named attribute
//!    the head of every kind-24 section, each naming its attribute), the ids section and the
//!    deletion set; every WAL batch;
//! 3. per segment the probed lists (rows and f32 vectors, contiguous per list) — more lists in
//!    further round trips only when the probed ones hold fewer live rows than the page needs;
//! 4. only when the query returns attributes: the page's attribute bytes (ranged reads widened
//!    to checksummed chunks; the docs offsets table — of a version 2 segment, its doc blocks'
//!    table — is read in round trip 3): a row's bytes in raw docs, the stored block holding it
//!    in doc blocks, decoded and checked whole (`DocBlockTable`).
//!
//! The reader protocol's probe of the next generation (5.2) rides along: GET `{g+1}.json` in round
//! trip 2, HEAD `{g+1}.gc` in round trip 3 — in that order, since garbage collection creates the
//! tombstone before deleting the manifest (the two steps of `SeqLog::probe_after`, which yields
//! the HEAD only from the GET's answer). The answer is used only when both say that `g` is the
//! newest.
//!
//! Invariants:
//! - The answer is computed on the generation the probe confirmed newest, for every consistency
//!   level (CURRENT is never trusted alone): segment rows minus deletion sets minus rows the WAL
//!   shadows, WAL rows searched exhaustively, exact f32 distances over the probed IVF lists.
//!   Final ordering and the response rows come from the regular query executor run over the
//!   candidates (`Engine::evaluate`, on the query pool, as for every query), so ties and
//!   formatting cannot differ. (The rows themselves may differ from the
//!   loaded namespace's: that one answers unfiltered queries from the graph index.)
//! - Every byte used is verified first: the head and each list by their own crcs, the ids and
//!   range-checksum sections by the section crcs in the manifest, docs bytes by the range
//!   checksums (kind 22) of the chunks they were read in, deletion sets and WAL batches by theirs.
//! - A named attribute's answer returns no row's `vector` (this path does not read the vectors
//!   section): a query that asks for it, in a namespace with vectors, is not covered.
//! - Anything this path does not cover returns `None` before or after its reads (filters,
//!   non-ANN ranking, aggregations, time travel, WAL requests whose effect depends on stored rows
//!   — with attributes requested, any patch — segments without the cold sections, a newer
//!   generation, an object of the generation already deleted): the caller then loads the
//!   namespace, so no query shape is answered differently, only more slowly.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use futures::future::try_join_all;

use super::{Engine, EngineError};
use crate::engine::ErrorKind;
use crate::format::manifest::{decode_current_full, Manifest, SectionRef, SegmentRef};
use crate::format::segment::{
    decode_row_attributes, DeletionSet, DocBlockTable, IdsSection, RangeChecksums, SECTION_COLD_IVF,
    SECTION_DOCS, SECTION_DOC_BLOCKS, SECTION_IDS, SECTION_NAMED_COLD_IVF, SECTION_RANGE_CHECKSUMS,
};
use crate::format::wal::WalBatch;
use crate::index::vector::coldivf::ColdHead;
use crate::index::vector::coldnamed::NamedColdHead;
use crate::index::vector::distance::Metric;
use crate::layout::NsPath;
use crate::model::{AttrMap, DocId, Document, Value, VECTOR_ATTR};
use crate::query::{Projection, Query, QueryRequest, QueryResult, Rank};
use crate::store::seqlog::SeqLog;
use crate::store::StoreError;

/// A query answered by the cold path.
#[derive(Debug)]
pub struct ColdAnswer {
    /// One result (cold queries are single queries).
    pub results: Vec<QueryResult>,
    /// The generation read.
    pub generation: u64,
    /// `approx_row_count` of that generation.
    pub approx_rows: u64,
    /// `approx_logical_bytes` of that generation.
    pub logical_bytes: u64,
}

/// What one segment contributes after round trip 2.
struct SegmentHead {
    data_key: String,
    rows: usize,
    cold_at: u64,
    head: ColdHead,
    ids: IdsSection,
    deleted: Option<DeletionSet>,
    /// When attributes are returned: the docs section (raw docs, kind 2, or doc blocks, kind 5)
    /// and the file's range checksums.
    docs: Option<(SectionRef, RangeChecksums)>,
}

/// How a segment's rows are found in its docs section (round trip 3).
enum DocIndex {
    /// Raw docs: the offsets table (rows + 1 u64s, relative to the data after it).
    Offsets(Vec<u64>),
    /// Doc blocks: the block table.
    Blocks(DocBlockTable),
}

/// A segment's docs section of either layout (doc blocks with their head recorded).
fn docs_section(s: &SegmentRef) -> Option<&SectionRef> {
    section(s, SECTION_DOC_BLOCKS).filter(|d| d.head > 0).or_else(|| section(s, SECTION_DOCS))
}

/// A live, unshadowed row read from a list: (distance, row, id, list read, position in it).
type Usable = (f32, u32, DocId, usize, usize);

/// A candidate row: its document (id and vector) and, for segment rows, (segment, row).
type Candidate = (Document, Option<(usize, u32)>);

fn corrupt(what: impl std::fmt::Display) -> EngineError {
    EngineError::corrupted(what.to_string())
}

/// Stored bytes read by range failed to decode: `what: cause`, the cause kept as `source()`.
fn corrupt_by(
    what: impl std::fmt::Display,
    cause: impl std::error::Error + Send + Sync + 'static,
) -> EngineError {
    EngineError::caused_by(ErrorKind::Corrupted, what, cause)
}

/// Why a cold read stopped: an object of the generation is gone (a newer generation released
/// it; the caller loads as usual), or a real error.
enum ColdError {
    Gone,
    /// The probe found a generation after the one read.
    Newer,
    /// A segment has no cold lists for the ranked attribute (the caller loads as usual).
    Uncovered,
    Failed(EngineError),
}

impl From<StoreError> for ColdError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ColdError::Gone,
            other => ColdError::Failed(other.into()),
        }
    }
}

impl From<EngineError> for ColdError {
    fn from(e: EngineError) -> Self {
        ColdError::Failed(e)
    }
}

type ColdResult<T> = Result<T, ColdError>;

/// The query a cold read answers: the page's query, what it ranks by, the query vector, the
/// ranked attribute's metric, and whether rows carry attributes.
struct ColdQuery<'q> {
    q: &'q Query,
    target: Target<'q>,
    vector: &'q [f32],
    metric: Metric,
    attrs: bool,
}

/// The metric of the ranked attribute when generation `m` can be read cold for it: the query
/// vector has the attribute's dimension, and a named attribute's page does not ask for rows'
/// `vector` (this path reads no vectors section).
fn cold_shape(m: &Manifest, q: &Query, target: Target<'_>, dim: usize) -> Option<Metric> {
    let namespace_metric = m.distance_metric.unwrap_or(Metric::CosineDistance);
    match target {
        Target::Vector => (m.vector_dim.map(|d| d as usize) == Some(dim)).then_some(namespace_metric),
        Target::Named(attr) => {
            let schema = m.schema.get(attr)?;
            let crate::schema::AttrType::Vector { dim: d, .. } = schema.ty else { return None };
            let needs_vector = m.vector_dim.is_some() && q.projection.wants(VECTOR_ATTR);
            (d == dim && attr != VECTOR_ATTR && !needs_vector)
                .then(|| schema.vector_metric(m.distance_metric))
        }
    }
}

/// What a cold query ranks by: `vector` (kind-21 lists) or a named vector attribute (the
/// kind-24 lists naming it).
#[derive(Clone, Copy)]
enum Target<'q> {
    Vector,
    Named(&'q str),
}

impl<'q> Target<'q> {
    /// The section kind of its cold lists.
    fn lists_kind(self) -> u16 {
        match self {
            Target::Vector => SECTION_COLD_IVF,
            Target::Named(_) => SECTION_NAMED_COLD_IVF,
        }
    }

    /// The attribute name a WAL patch sets to change what is ranked.
    fn attr(self) -> &'q str {
        match self {
            Target::Vector => VECTOR_ATTR,
            Target::Named(a) => a,
        }
    }

    /// Whether the document holds a vector of the ranked attribute.
    fn held_by(self, d: &Document) -> bool {
        match self {
            Target::Vector => d.vector.is_some(),
            Target::Named(a) => matches!(d.attrs.get(a), Some(Value::Dense(_))),
        }
    }

    /// A candidate document holding only the id and the ranked vector.
    fn candidate(self, id: DocId, v: Vec<f32>) -> Document {
        match self {
            Target::Vector => Document { id, vector: Some(v.into()), attrs: AttrMap::new() },
            Target::Named(a) => Document {
                id,
                vector: None,
                attrs: [(a.to_owned(), Value::Dense(v.into()))].into_iter().collect(),
            },
        }
    }
}

/// The single ANN query of `req` when the cold path can answer it, with what it ranks by.
fn eligible_query(req: &QueryRequest) -> Option<(&Query, Target<'_>, &[f32])> {
    let [q] = req.queries.as_slice() else { return None };
    if req.multi || req.rerank.is_some() || q.filters.is_some() || q.order.is_some() {
        return None;
    }
    // Computed attributes read whole documents and BM25 statistics: the loaded path.
    if !q.aggregates.is_empty() || !q.group_by.is_empty() || q.per.is_some() || !q.compute.is_empty() {
        return None;
    }
    match &q.rank {
        Some(Rank::Vector { exact: false, query }) => Some((q, Target::Vector, query)),
        Some(Rank::NamedVector { attr, exact: false, query }) => Some((q, Target::Named(attr), query)),
        _ => None,
    }
}

fn section(s: &SegmentRef, kind: u16) -> Option<&SectionRef> {
    s.sections.iter().find(|r| r.kind == kind)
}

/// The WAL's effect on the segments when it can be known without reading them: the ids it
/// upserted (with their documents) or deleted. None when a request's effect depends on stored
/// rows (conditions, filters, patches that touch the ranked vector).
fn blind_overlay(
    batches: &[WalBatch],
    attrs: bool,
    target: Target<'_>,
) -> Option<BTreeMap<DocId, Option<Document>>> {
    let mut overlay = BTreeMap::new();
    for r in batches.iter().flat_map(|b| &b.requests) {
        let o = &r.ops;
        if o.upsert_condition.is_some()
            || o.patch_condition.is_some()
            || o.delete_condition.is_some()
            || o.delete_by_filter.is_some()
            || o.patch_by_filter.is_some()
            || o.patches.iter().any(|p| attrs || p.attrs.contains_key(target.attr()))
        {
            return None;
        }
        for d in &o.upserts {
            overlay.insert(d.id.clone(), Some(d.clone()));
        }
        // Patches change attributes only (none are allowed when attributes are returned).
        for id in &o.deletes {
            overlay.insert(id.clone(), None);
        }
    }
    Some(overlay)
}

impl Engine {
    /// Answer `req` by ranged reads when `path` is not loaded and its segments are not on local
    /// disk. `Ok(None)`: not answerable this way (the caller loads the namespace).
    pub async fn try_cold_query(
        &self,
        path: &NsPath,
        req: &QueryRequest,
    ) -> Result<Option<ColdAnswer>, EngineError> {
        self.cold_query_bypassing(path, req, false).await
    }

    /// [`Engine::try_cold_query`]; with `uncached` (a query's `disable_cache`) also when the
    /// namespace is loaded or its segments are on local disk: the bucket is read all the same.
    pub async fn cold_query_bypassing(
        &self,
        path: &NsPath,
        req: &QueryRequest,
        uncached: bool,
    ) -> Result<Option<ColdAnswer>, EngineError> {
        let Some((q, target, vector)) = eligible_query(req) else { return Ok(None) };
        let attrs = !matches!(q.projection, Projection::IdOnly);
        let loaded = !uncached && super::cached(&self.handle(path)).is_some();
        if self.store.local_root().is_some() || loaded {
            return Ok(None);
        }
        let Some(m) = self.cold_manifest(path).await? else { return Ok(None) };
        if m.deleted || m.segments.is_empty() {
            return Ok(None);
        }
        let Some(metric) = cold_shape(&m, q, target, vector.len()) else { return Ok(None) };
        let lists_kind = target.lists_kind();
        let cold_ready = |s: &SegmentRef| {
            section(s, SECTION_IDS).is_some()
                && section(s, lists_kind).is_some_and(|c| c.head > 0)
                && (!attrs || (docs_section(s).is_some() && section(s, SECTION_RANGE_CHECKSUMS).is_some()))
        };
        let on_disk = |s: &SegmentRef| s.files.iter().all(|f| self.cache.is_cached(&f.key));
        if !m.segments.iter().all(cold_ready) || (!uncached && m.segments.iter().all(on_disk)) {
            return Ok(None);
        }
        let cq = ColdQuery { q, target, vector, metric, attrs };
        match self.cold_answer(path, &m, &cq).await {
            Ok(Some(result)) => Ok(Some(ColdAnswer {
                results: vec![result],
                generation: m.generation,
                approx_rows: m.stats.approx_row_count,
                logical_bytes: m.stats.approx_logical_bytes,
            })),
            Ok(None) | Err(ColdError::Gone | ColdError::Newer | ColdError::Uncovered) => Ok(None),
            Err(ColdError::Failed(e)) => Err(e),
        }
    }

    /// Round trips 2–4 on generation `m` (see the module doc). `Ok(None)`: not coverable.
    /// The probe of 5.2 is split over round trips 2 and 3 — GET `{g+1}.json` beside the heads,
    /// HEAD `{g+1}.gc` beside the lists, so the HEAD is sent only after the GET answered — and
    /// either finding a newer generation voids whatever the reads found ([`ColdError::Newer`]).
    async fn cold_answer(
        &self,
        path: &NsPath,
        m: &Manifest,
        cq: &ColdQuery<'_>,
    ) -> ColdResult<Option<QueryResult>> {
        let probe = SeqLog::new(self.store.clone(), path.manifest_series()).probe_after(m.generation);
        let reads = async {
            let heads = try_join_all(m.segments.iter().map(|s| self.segment_head(m, s, cq)));
            let wal = try_join_all(m.wal.iter().map(|r| self.cold_wal(r)));
            futures::try_join!(heads, wal)
        };
        let (probed, reads) = futures::join!(probe.get(), reads);
        let (next, tombstone) = probed?;
        if next.is_some() {
            return Err(ColdError::Newer);
        }
        let (heads, batches) = reads?;
        let rest = self.cold_rank(path, m, cq, &heads, &batches);
        let (fenced, answer) = futures::join!(tombstone.tombstoned(), rest);
        if fenced? {
            return Err(ColdError::Newer);
        }
        answer
    }

    /// Round trips 3–4: the lists (and docs offsets), the page's attributes, the ranking.
    async fn cold_rank(
        &self,
        path: &NsPath,
        m: &Manifest,
        cq: &ColdQuery<'_>,
        heads: &[SegmentHead],
        batches: &[WalBatch],
    ) -> ColdResult<Option<QueryResult>> {
        let (q, target) = (cq.q, cq.target);
        let Some(overlay) = blind_overlay(batches, cq.attrs, target) else { return Ok(None) };
        if heads.iter().any(|h| h.head.metric() != cq.metric || h.head.dim() != cq.vector.len()) {
            return Ok(None);
        }
        // Round trip 3 (with the docs offsets tables when attributes are returned).
        let want = q.limit.saturating_add(q.offset);
        let lists = self.probe_lists(heads, cq, &overlay, want);
        let offsets = try_join_all(heads.iter().map(|h| self.doc_index(h)));
        let (mut cands, offsets) = futures::try_join!(lists, offsets)?;
        let wal_docs = overlay.into_values().flatten().filter(|d| target.held_by(d));
        let before = cands.len();
        cands.extend(wal_docs.map(|d| (d, None)));
        let wal_rows = (cands.len() - before) as u64;
        let mut result = if cq.attrs {
            // Round trip 4: the attributes of the rows on the page.
            let page = self.page_with_attributes(path, m, q, heads, &offsets, cands).await?;
            let mut unpaged = q.clone();
            unpaged.offset = 0;
            self.rank_candidates(path, m, &unpaged, page).await?
        } else {
            self.rank_candidates(path, m, q, cands.into_iter().map(|(d, _)| d).collect()).await?
        };
        result.scanned = wal_rows;
        Ok(Some(result))
    }

    /// A WAL batch of the generation (its checksum and seq checked).
    async fn cold_wal(&self, r: &crate::format::manifest::WalRef) -> ColdResult<WalBatch> {
        let bytes = self.store.get(&r.key).await?;
        let b = WalBatch::decode(&bytes).map_err(|e| corrupt_by(format!("WAL object {}", r.key), e))?;
        if b.seq != r.seq {
            return Err(corrupt(format!("WAL object {} holds seq {} not {}", r.key, b.seq, r.seq)).into());
        }
        Ok(b)
    }

    /// Round trip 1: the manifest CURRENT embeds (read from the store every time; see 5.2).
    async fn cold_manifest(&self, path: &NsPath) -> Result<Option<Manifest>, EngineError> {
        let Some(b) = self.store.get_hint(&path.current_key()).await? else { return Ok(None) };
        Ok(match decode_current_full(&b) {
            Ok((_, Some(m))) if m.namespace == path.to_string() => {
                Some(self.log(path).resolve(m, None).await?)
            }
            _ => None,
        })
    }

    /// Round trip 2 for one segment: cold IVF head, ids section, deletion set (in parallel).
    async fn segment_head(
        &self,
        m: &Manifest,
        s: &SegmentRef,
        cq: &ColdQuery<'_>,
    ) -> ColdResult<SegmentHead> {
        let attrs = cq.attrs;
        let file = s.files.first().ok_or_else(|| corrupt(format!("segment {} has no file", s.id)))?;
        let Some(ids) = section(s, SECTION_IDS) else {
            return Err(corrupt(format!("segment {} lacks its cold sections", s.id)).into());
        };
        let head = self.lists_head(s, &file.key, cq.target);
        let ids_bytes = self.store.get_range(&file.key, ids.offset..ids.offset + ids.len);
        let deleted = async {
            match &s.deletes {
                Some(d) => self.store.get(&d.key).await.map(Some),
                None => Ok(None),
            }
        };
        let sums = async {
            match (attrs, section(s, SECTION_RANGE_CHECKSUMS), docs_section(s)) {
                (true, Some(r), Some(docs)) => {
                    let b = self.store.get_range(&file.key, r.offset..r.offset + r.len).await?;
                    Ok(Some((b, r, docs)))
                }
                _ => Ok::<_, StoreError>(None),
            }
        };
        let rest = async { futures::try_join!(ids_bytes, deleted, sums).map_err(ColdError::from) };
        let (head, (ids_bytes, deleted, sums)) = futures::try_join!(head, rest)?;
        let docs = match sums {
            Some((b, r, docs)) => {
                if crc32c::crc32c(&b) != r.crc32c {
                    return Err(corrupt(format!(
                        "range checksums of {} do not match their checksum",
                        file.key
                    ))
                    .into());
                }
                let sums = RangeChecksums::decode(&b)
                    .map_err(|e| corrupt_by(format!("range checksums of {}", file.key), e))?;
                Some((docs.clone(), sums))
            }
            None => None,
        };
        let (cold_at, head) = head;
        if crc32c::crc32c(&ids_bytes) != ids.crc32c {
            return Err(corrupt(format!("ids section of {} does not match its checksum", file.key)).into());
        }
        let rows = usize::try_from(s.rows).map_err(|_| corrupt("segment rows"))?;
        let id_type = m.id_type.unwrap_or(crate::model::IdType::U64);
        let ids = IdsSection::parse(ids_bytes, id_type, rows)
            .map_err(|e| corrupt_by(format!("ids section of {}", file.key), e))?;
        if head.rows() != rows {
            let why = format!("cold ivf head of {} covers {} rows, not {rows}", file.key, head.rows());
            return Err(corrupt(why).into());
        }
        let deleted = match (deleted, &s.deletes) {
            (Some(b), Some(d)) => Some(verified_deletes(&b, d, rows)?),
            _ => None,
        };
        Ok(SegmentHead { data_key: file.key.clone(), rows, cold_at, head, ids, deleted, docs })
    }

    /// The verified head of the segment's cold lists for `target` and where the lists' section
    /// starts in the file: `vector`'s kind-21 section, or the kind-24 section naming the
    /// attribute (every kind-24 head is read, they name their attributes inside).
    async fn lists_head(&self, s: &SegmentRef, key: &str, target: Target<'_>) -> ColdResult<(u64, ColdHead)> {
        let refs = s.sections.iter().filter(|r| r.kind == target.lists_kind() && r.head > 0);
        let heads = try_join_all(refs.map(|r| async move {
            let b = self.store.get_range(key, r.offset..r.offset + r.head).await?;
            Ok::<_, ColdError>((r.offset, b))
        }))
        .await?;
        for (at, b) in heads {
            let what = || format!("cold ivf head of {key} at {at}");
            match target {
                Target::Vector => {
                    return Ok((at, ColdHead::parse(&b).map_err(|e| corrupt_by(what(), e))?));
                }
                Target::Named(attr) => {
                    let h = NamedColdHead::parse(&b).map_err(|e| corrupt_by(what(), e))?;
                    if h.attr() == attr {
                        let (_, ivf_at, head) = h.into_parts();
                        return Ok((at + ivf_at, head));
                    }
                }
            }
        }
        Err(ColdError::Uncovered)
    }

    /// Round trip 3: read the default number of nearest lists of every segment (all at once)
    /// and keep, per segment, the `want` nearest live rows that the WAL does not shadow, as
    /// documents with vectors. A segment whose probed lists hold fewer such rows reads twice as
    /// many further lists, round after round, until it has them or has read every list.
    async fn probe_lists(
        &self,
        heads: &[SegmentHead],
        cq: &ColdQuery<'_>,
        overlay: &BTreeMap<DocId, Option<Document>>,
        want: usize,
    ) -> ColdResult<Vec<Candidate>> {
        let (vector, metric) = (cq.vector, cq.metric);
        let dim = vector.len();
        let kern = crate::index::vector::distance::kernels();
        let orders: Vec<Vec<usize>> = heads.iter().map(|h| h.head.probe(vector, h.head.nlist())).collect();
        let mut read = vec![0usize; heads.len()];
        let mut batch: Vec<usize> = heads.iter().map(|h| h.head.default_nprobe().max(1)).collect();
        let mut usable = vec![0usize; heads.len()];
        let mut lists = Vec::new();
        let mut found: Vec<Vec<Usable>> = vec![Vec::new(); heads.len()];
        loop {
            let mut reads = Vec::new();
            for (si, h) in heads.iter().enumerate() {
                let more = read[si] == 0 || usable[si] < want;
                let end = (read[si] + batch[si]).min(orders[si].len());
                if !more || read[si] >= end {
                    continue;
                }
                for &c in &orders[si][read[si]..end] {
                    let r = h.head.list_range(c);
                    if r.is_empty() {
                        continue;
                    }
                    let range = h.cold_at + r.start..h.cold_at + r.end;
                    reads.push(async move {
                        let b: Bytes = self.store.get_range(&h.data_key, range).await?;
                        Ok::<_, ColdError>((si, c, b))
                    });
                }
                read[si] = end;
                batch[si] *= 2;
            }
            if reads.is_empty() {
                break;
            }
            for (si, c, block) in try_join_all(reads).await? {
                let h = &heads[si];
                let list = h
                    .head
                    .open_list(c, &block)
                    .map_err(|e| corrupt_by(format!("cold ivf list {c} of {}", h.data_key), e))?;
                for (pos, (row, x)) in list.rows.iter().zip(list.vectors.chunks_exact(dim)).enumerate() {
                    if h.deleted.as_ref().is_some_and(|d| d.contains(*row as usize)) {
                        continue;
                    }
                    let id =
                        h.ids.id(*row as usize).ok_or_else(|| corrupt("cold ivf row outside its segment"))?;
                    if overlay.contains_key(&id) {
                        continue; // shadowed by a later write
                    }
                    usable[si] += 1;
                    found[si].push((kern.distance(metric, vector, x), *row, id, lists.len(), pos));
                }
                lists.push(list);
            }
        }
        let mut out = Vec::new();
        for (si, mut rows) in found.into_iter().enumerate() {
            rows.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for (_, row, id, li, pos) in rows.into_iter().take(want) {
                let v = lists[li].vectors[pos * dim..(pos + 1) * dim].to_vec();
                out.push((cq.target.candidate(id, v), Some((si, row))));
            }
        }
        Ok(out)
    }

    /// Rank the candidates with the regular executor over a state holding only them, entered
    /// where every query is (`Engine::evaluate`, on the query pool).
    async fn rank_candidates(
        &self,
        path: &NsPath,
        m: &Manifest,
        q: &Query,
        cands: Vec<Document>,
    ) -> Result<QueryResult, EngineError> {
        let mut state = super::NsState::default();
        state.schema = m.schema.clone();
        state.id_type = m.id_type;
        state.distance_metric = m.distance_metric;
        state.vector_dim = m.vector_dim;
        for d in cands {
            state.put(d);
        }
        let req = QueryRequest::single(q.clone());
        let (results, _waited) = self.evaluate(path, req, std::sync::Arc::new(state)).await?;
        results.into_iter().next().ok_or_else(|| EngineError::internal("a single query gave no result"))
    }

    /// Round trip 3, beside the lists, when attributes are returned: how a segment's rows are
    /// found in its docs section, checked against the range checksums and for its shape.
    async fn doc_index(&self, h: &SegmentHead) -> ColdResult<Option<DocIndex>> {
        let Some((docs, _)) = &h.docs else { return Ok(None) };
        if docs.kind == SECTION_DOC_BLOCKS {
            let head = self.verified_range(h, docs.offset..docs.offset + docs.head.min(docs.len)).await?;
            let table = DocBlockTable::parse(&head, h.rows, docs.len)
                .map_err(|e| corrupt_by(format!("doc blocks table of {}", h.data_key), e))?;
            return Ok(Some(DocIndex::Blocks(table)));
        }
        self.doc_offsets(h, docs).await.map(|t| Some(DocIndex::Offsets(t)))
    }

    /// A raw docs section's offsets table (rows + 1 u64s): starts at 0, never decreases, ends at
    /// the end of the section.
    async fn doc_offsets(&self, h: &SegmentHead, docs: &SectionRef) -> ColdResult<Vec<u64>> {
        let len = (h.rows as u64 + 1).checked_mul(8).filter(|l| *l <= docs.len);
        let Some(len) = len else {
            return Err(corrupt(format!("docs section of {} is too short", h.data_key)).into());
        };
        let b = self.verified_range(h, docs.offset..docs.offset + len).await?;
        let table: Vec<u64> =
            b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        let data_len = docs.len - len;
        if table.first() != Some(&0)
            || table.last() != Some(&data_len)
            || table.windows(2).any(|w| w[0] > w[1])
        {
            return Err(corrupt(format!("docs offsets table of {} is malformed", h.data_key)).into());
        }
        Ok(table)
    }

    /// `range` of a segment file, read widened to checksummed chunks and verified.
    async fn verified_range(&self, h: &SegmentHead, range: std::ops::Range<u64>) -> ColdResult<Bytes> {
        let Some((_, sums)) = &h.docs else { return Err(corrupt("no range checksums").into()) };
        let wide = sums
            .widen(range.clone())
            .ok_or_else(|| corrupt(format!("range {range:?} of {} is outside its checksums", h.data_key)))?;
        let b = self.store.get_range(&h.data_key, wide.clone()).await?;
        sums.verify(wide.start, &b)
            .map_err(|e| corrupt_by(format!("{} at {}", h.data_key, wide.start), e))?;
        let at = usize::try_from(range.start - wide.start).unwrap_or(usize::MAX);
        let len = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
        match at.checked_add(len).filter(|end| *end <= b.len()) {
            Some(end) => Ok(b.slice(at..end)),
            None => Err(corrupt("short range").into()),
        }
    }

    /// Rank the candidates, then read the attributes of the segment rows on the page (round
    /// trip 4, all in parallel). Returns the page's documents, complete.
    async fn page_with_attributes(
        &self,
        path: &NsPath,
        m: &Manifest,
        q: &Query,
        heads: &[SegmentHead],
        offsets: &[Option<DocIndex>],
        cands: Vec<Candidate>,
    ) -> ColdResult<Vec<Document>> {
        let mut ids_only = q.clone();
        ids_only.projection = Projection::IdOnly;
        let order =
            self.rank_candidates(path, m, &ids_only, cands.iter().map(|(d, _)| d.clone()).collect()).await?;
        let page: HashSet<DocId> =
            order.rows.unwrap_or_default().into_iter().map(|r| r.doc.id.clone()).collect();
        let on_page: Vec<Candidate> = cands.into_iter().filter(|(d, _)| page.contains(&d.id)).collect();
        let reads = on_page.iter().map(|(d, origin)| async move {
            let Some((si, row)) = *origin else { return Ok::<_, ColdError>(d.clone()) };
            let attrs = self.row_attributes(&heads[si], offsets[si].as_ref(), row as usize).await?;
            Ok(Document { id: d.id.clone(), vector: d.vector.clone(), attrs })
        });
        try_join_all(reads).await
    }

    /// Round trip 4 for one row: its attribute bytes (raw docs) or the stored block holding it
    /// (doc blocks), read by range, verified and decoded.
    async fn row_attributes(
        &self,
        h: &SegmentHead,
        index: Option<&DocIndex>,
        row: usize,
    ) -> ColdResult<AttrMap> {
        let missing = || corrupt(format!("no docs index for row {row} of {}", h.data_key));
        let Some((docs, _)) = &h.docs else { return Err(missing().into()) };
        let damaged = |e| corrupt_by(format!("row {row} of {}", h.data_key), e);
        match index.ok_or_else(missing)? {
            DocIndex::Offsets(table) => {
                let (Some(a), Some(b)) = (table.get(row), table.get(row + 1)) else {
                    return Err(missing().into());
                };
                // The table was checked in `doc_offsets`: 0 <= a <= b <= the data's length.
                let data = docs.offset + 8 * (h.rows as u64 + 1);
                let bytes = self.verified_range(h, data + a..data + b).await?;
                Ok(decode_row_attributes(&bytes).map_err(damaged)?)
            }
            DocIndex::Blocks(table) => {
                let (block, r) = table.locate(row).ok_or_else(missing)?;
                let bytes = self.verified_range(h, docs.offset + r.start..docs.offset + r.end).await?;
                Ok(table.row_attributes(block, &bytes, row).map_err(damaged)?)
            }
        }
    }
}

fn verified_deletes(
    b: &[u8],
    r: &crate::format::manifest::ObjectRef,
    rows: usize,
) -> Result<DeletionSet, EngineError> {
    if b.len() as u64 != r.bytes || crc32c::crc32c(b) != r.crc32c {
        return Err(corrupt(format!("deletion set {} does not match its manifest checksum", r.key)));
    }
    let d = DeletionSet::decode(b).map_err(|e| corrupt_by(format!("deletion set {}", r.key), e))?;
    if d.rows() != rows {
        return Err(corrupt(format!("deletion set {} covers {} rows, not {rows}", r.key, d.rows())));
    }
    Ok(d)
}
