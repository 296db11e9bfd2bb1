//! Scored ranking shared by the vector, sparse and BM25 paths: per-segment
//! views of live rows, hits, `limit.per` diversity and the final ordering.
//!
//! Invariants: rows a segment retired or the overlay shadows are never
//! returned; ties order by id ascending.

use serde_json::Value as Json;

use crate::state::segment::DocParts;

use super::*;
use crate::deadline;

/// Most candidates one ranked query gathers while filling `limit.per`.
pub(super) const MAX_FETCH: usize = 100_000;

/// Admits at most `limit` documents per distinct limit-key value.
pub(super) struct PerCounter<'a> {
    pub(super) per: Option<&'a PerLimit>,
    pub(super) seen: HashMap<String, usize>,
}

impl<'a> PerCounter<'a> {
    pub(super) fn new(per: Option<&'a PerLimit>) -> Self {
        PerCounter { per, seen: HashMap::new() }
    }

    pub(super) fn admit(&mut self, d: &Document) -> bool {
        let Some(per) = self.per else { return true };
        // Values are not `Hash` (floats); their canonical JSON text is.
        let key = Json::Array(
            per.attributes.iter().map(|a| d.attr(a).map_or(Json::Null, |v| v.to_json())).collect(),
        )
        .to_string();
        let n = self.seen.entry(key).or_insert(0);
        *n += 1;
        *n <= per.limit
    }
}

/// One segment as a ranked query sees it: which rows are live. The
/// segment's own state (rows, deletion set, sections) is the
/// [`SegmentReader`]; this adds only what depends on the query and the
/// overlay of one generation, so it lives per query, not per segment.
pub(super) struct SegView<'a> {
    pub(super) ls: &'a SegmentReader,
    /// Live rows whose id the overlay shadows (kept by the state).
    pub(super) shadowed: imbl::HashSet<usize>,
    /// Rows the attribute indexes allow for the filter (a superset of the
    /// matches); None when the indexes cannot narrow it.
    pub(super) cand: Option<Vec<bool>>,
}

impl SegView<'_> {
    pub(super) fn live(&self, row: usize) -> bool {
        !self.ls.deleted.contains(row) && !self.shadowed.contains(&row)
    }

    /// The row's id and attributes (no vector), for filters and scoring.
    pub(super) fn attrs_doc(&self, row: usize) -> Option<Document> {
        self.ls.attrs_doc(row)
    }

    /// Whether [`passes`](Self::passes) holds for every row: nothing deleted or shadowed, no
    /// filter. (`passes` also turns false at the deadline; `search_fields` checks it per window.)
    pub(super) fn passes_all(&self, q: &Query) -> bool {
        self.cand.is_none() && q.filters.is_none() && self.ls.deleted.is_empty() && self.shadowed.is_empty()
    }

    /// Live and matching the query's filter.
    pub(super) fn passes(&self, row: usize, q: &Query) -> bool {
        if self.cand.as_ref().is_some_and(|c| !c.get(row).copied().unwrap_or(false))
            || !self.live(row)
            || deadline::expired()
        {
            return false;
        }
        match &q.filters {
            None => true,
            Some(f) => self.attrs_doc(row).is_some_and(|d| f.matches(&d, None)),
        }
    }
}

pub(super) fn seg_views<'a>(state: &'a NsState, filter: Option<&Filter>) -> Vec<SegView<'a>> {
    state
        .segments()
        .iter()
        .enumerate()
        .map(|(i, ls)| {
            let shadowed = state.shadowed_rows(i);
            let cand = filter.and_then(|f| index_rows(ls, f, 0)).map(|rows| {
                let mut bits = vec![false; ls.seg.len()];
                for r in rows {
                    if let Some(b) = bits.get_mut(r as usize) {
                        *b = true;
                    }
                }
                bits
            });
            SegView { ls, shadowed, cand }
        })
        .collect()
}

/// Where a ranked hit lives.
pub(super) enum Src {
    Seg(usize, u32),
    Over(Arc<Document>),
}

pub(super) struct Hit {
    pub(super) id: DocId,
    pub(super) score: f32,
    pub(super) src: Src,
}

/// Hits in rank order: ascending (distances) or descending (scores), ties by id.
pub(super) fn sort_hits(hits: &mut [Hit], ascending: bool) {
    hits.sort_by(|a, b| {
        let o = a.score.total_cmp(&b.score);
        (if ascending { o } else { o.reverse() }).then_with(|| a.id.cmp(&b.id))
    });
}

/// A ranked document and its `$dist`.
pub(super) type Scored = (Arc<Document>, f32);

/// The ranked page (document, `$dist`) and the rows searched exhaustively.
pub(super) fn ranked_docs(q: &Query, rank: &Rank, state: &NsState) -> Result<(Vec<Scored>, u64), QueryError> {
    let views = seg_views(state, q.filters.as_ref());
    let want = q.offset.saturating_add(q.limit);
    let mut fetch = want;
    // Only what the rows return (or `limit.per` groups by) is decoded.
    // Computed attributes read the parts they need before the projection.
    let named_vector_wanted = state.schema.iter().any(|(name, s)| {
        name != VECTOR_ATTR
            && matches!(s.ty, AttrType::Vector { .. } | AttrType::MultiVector { .. })
            && q.projection.wants(name)
    });
    let parts = DocParts {
        vector: q.projection.wants(VECTOR_ATTR) || q.compute.iter().any(|(_, e)| e.reads_vector()),
        attributes: q.projection.wants_attributes()
            || q.per.is_some()
            || q.compute.iter().any(|(_, e)| e.reads_attributes()),
        named_vectors: named_vector_wanted
            || q.per.is_some()
            || q.compute.iter().any(|(_, e)| e.reads_named_vector()),
    };
    loop {
        let (hits, exhaustive) = rank_hits(q, rank, state, &views, fetch)?;
        let short = hits.len() < fetch;
        let mut per = PerCounter::new(q.per.as_ref());
        let mut out = Vec::with_capacity(want.min(hits.len()));
        for h in hits {
            let doc = match h.src {
                Src::Over(d) => d,
                Src::Seg(si, row) => match views[si].ls.doc_with(row as usize, parts) {
                    Ok(d) => Arc::new(d),
                    Err(e) => return Err(QueryError::corrupted(format_args!("segment row {row}"), e)),
                },
            };
            if per.admit(&doc) {
                out.push((doc, h.score));
                if out.len() >= want {
                    break;
                }
            }
        }
        if out.len() >= want || short || q.per.is_none() || fetch >= MAX_FETCH {
            return Ok((out.into_iter().skip(q.offset).collect(), exhaustive));
        }
        fetch = fetch.saturating_mul(4).min(MAX_FETCH);
    }
}

/// The best `k` hits of a scored ranking, in rank order.
pub(super) fn rank_hits(
    q: &Query,
    rank: &Rank,
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    let (mut hits, exhaustive, ascending) = match rank {
        Rank::Vector { exact, query } => {
            let (h, n) = vector_hits(q, *exact, query, state, views, k)?;
            (h, n, true)
        }
        Rank::NamedVector { attr, exact, query } => {
            let (h, n) = named_vector_hits(q, attr, *exact, query, state, views, k)?;
            (h, n, true)
        }
        Rank::MultiVector { attr, exact, queries } => {
            let (h, n) = multi_vector_hits(q, attr, *exact, queries, state, views, k)?;
            (h, n, true)
        }
        Rank::Sparse { attr, query } => {
            let (h, n) = sparse_hits(q, attr, query, state, views);
            (h, n, false)
        }
        Rank::Text(expr) => {
            let (h, n) = text_hits(q, expr, state, views, k)?;
            (h, n, false)
        }
    };
    sort_hits(&mut hits, ascending);
    hits.truncate(k);
    Ok((hits, exhaustive))
}
