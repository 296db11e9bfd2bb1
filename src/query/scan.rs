//! Unranked execution: validation against the schema, filtering, candidate
//! rows (id range scan, attribute-index candidates) and attribute ordering.
//!
//! Invariants: candidate sets are supersets of the matches; the full filter
//! is applied to every row that can be returned; ordering is total (keys,
//! then id ascending, nulls last).

use super::*;
use crate::deadline;
use crate::filter::{Op, Operand};
use crate::model::IdType;

pub(super) fn validate(q: &Query, state: &NsState) -> Result<(), QueryError> {
    if let Some(f) = &q.filters {
        f.validate(&state.schema).map_err(|e| invalid(format!("filters: {e}")))?;
    }
    for key in q.order.iter().flatten() {
        if key.attr == VECTOR_ATTR || is_vector_like(state, &key.attr) {
            return Err(invalid(format!(
                "cannot order by the vector attribute {:?}; use rank_by ANN",
                key.attr
            )));
        }
    }
    for (name, agg) in &q.aggregates {
        if let Aggregate::Sum(attr) = agg {
            let numeric = match state.schema.get(attr).map(|s| s.ty) {
                None => true,
                Some(AttrType::Scalar(s)) => {
                    matches!(s, ScalarType::Int | ScalarType::Uint | ScalarType::Float)
                }
                Some(_) => false,
            };
            if !numeric {
                return Err(invalid(format!(
                    "aggregate_by.{name}: Sum needs a numeric attribute, {attr:?} is not"
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn is_vector_like(state: &NsState, attr: &str) -> bool {
    state.schema.get(attr).is_some_and(|s| {
        matches!(s.ty, AttrType::Vector { .. } | AttrType::MultiVector { .. } | AttrType::Sparse { .. })
    })
}

/// Whether `d` passes the filter; nothing passes once the deadline expired
/// (the result is then discarded, so the scan only has to wind down).
pub(super) fn matches(q: &Query, d: &Document) -> bool {
    !deadline::expired() && q.filters.as_ref().is_none_or(|f| f.matches(d, None))
}

/// Documents in id order, starting at the filter's lower id bound when the
/// bound is an id of the namespace's kind; only the named documents when the
/// filter pins the id (`["id", "In" | "Eq", ..]`, alone or in a top-level `And`).
pub(super) fn candidates<'a>(
    q: &'a Query,
    state: &'a NsState,
) -> Box<dyn Iterator<Item = Arc<Document>> + 'a> {
    if let Some(ids) = q.filters.as_ref().and_then(|f| pinned_ids(f, state)) {
        return Box::new(ids.into_iter().filter_map(|id| state.get(&id)));
    }
    let resolved = match (&q.id_lower, state.id_type) {
        (Some((id, inclusive)), Some(ty)) => id.clone().resolve(ty).map(|id| (id, *inclusive)),
        _ => None,
    };
    let lower = match &resolved {
        Some((id, true)) => Bound::Included(id),
        Some((id, false)) => Bound::Excluded(id),
        None => Bound::Unbounded,
    };
    if let Some(docs) = indexed_candidates(q, state, lower) {
        return Box::new(docs.into_iter());
    }
    Box::new(state.iter_from(lower))
}

/// The ids a filter pins (sorted, unique, of the namespace's kind; literals
/// of another kind name no document), when a top-level condition or a
/// conjunct of a top-level `And` is `id Eq v` or `id In [..]`: a lookup then
/// reads those documents only. Still a superset: callers apply the filter.
fn pinned_ids(f: &Filter, state: &NsState) -> Option<Vec<DocId>> {
    let ty = state.id_type?;
    let conds = match f {
        Filter::Cond(c) => vec![c],
        Filter::And(subs) => subs
            .iter()
            .filter_map(|s| match s {
                Filter::Cond(c) => Some(c),
                _ => None,
            })
            .collect(),
        _ => return None,
    };
    let c = conds.into_iter().find(|c| c.attr() == ID_ATTR && matches!(c.op(), Op::Eq | Op::In))?;
    let Some(Operand::Value(v)) = c.operand() else { return None };
    let literals = match v {
        Value::Array(items) => items.as_slice(),
        one => std::slice::from_ref(one),
    };
    // A float this large equals several u64 ids (compared as f64): leave it to the scan.
    if literals.iter().any(|l| matches!(l, Value::Float(f) if f.abs() >= 9_007_199_254_740_992.0)) {
        return None;
    }
    let mut ids: Vec<DocId> = literals.iter().filter_map(|l| id_of_literal(l, ty)).collect();
    ids.sort();
    ids.dedup();
    Some(ids)
}

/// The id a literal names in a namespace of `ty` (`None`: no document has
/// it, as the filter's own comparison would find: numbers compare across
/// int and float, strings exactly or, in a uuid namespace, as uuids).
fn id_of_literal(v: &Value, ty: IdType) -> Option<DocId> {
    let id = match v {
        Value::Int(i) => DocId::U64(u64::try_from(*i).ok()?),
        // Below 2^53 (`pinned_ids`): exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 => DocId::U64(*f as u64),
        Value::Str(s) => DocId::from_str_id(s).ok()?,
        _ => return None,
    };
    id.resolve(ty)
}

/// When the attribute indexes narrow the filter in every segment: the
/// narrowed live segment rows plus the overlay's documents (from the lower
/// id bound), in id order. Still a superset: callers apply the filter.
pub(super) fn indexed_candidates(
    q: &Query,
    state: &NsState,
    lower: Bound<&DocId>,
) -> Option<Vec<Arc<Document>>> {
    let f = q.filters.as_ref()?;
    if state.segments().is_empty() {
        return None;
    }
    let views = seg_views(state, Some(f));
    let above = |id: &DocId| match lower {
        Bound::Included(l) => id >= l,
        Bound::Excluded(l) => id > l,
        Bound::Unbounded => true,
    };
    let mut docs = Vec::new();
    for v in &views {
        let cand = v.cand.as_ref()?;
        for (row, _) in cand.iter().enumerate().filter(|(r, b)| **b && v.live(*r)) {
            if let Ok(d) = v.ls.seg.doc(row) {
                if above(&d.id) {
                    docs.push(Arc::new(d));
                }
            }
        }
    }
    docs.extend(state.overlay().range((lower.cloned(), Bound::Unbounded)).filter_map(|(_, d)| d.clone()));
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    Some(docs)
}

/// The page of documents and how many documents were examined.
pub(super) fn top_docs(q: &Query, order: &[OrderKey], state: &NsState) -> (Vec<Arc<Document>>, u64) {
    let mut scanned = 0u64;
    let want = q.offset.saturating_add(q.limit);
    let by_id = |dir| matches!(order, [k] if k.attr == ID_ATTR && k.dir == dir);
    let mut per = PerCounter::new(q.per.as_ref());
    if by_id(Direction::Asc) {
        let page: Vec<_> = candidates(q, state)
            .inspect(|_| scanned += 1)
            .filter(|d| matches(q, d) && per.admit(d))
            .skip(q.offset)
            .take(q.limit)
            .collect();
        return (page, scanned);
    }
    if by_id(Direction::Desc) {
        // The merged segment/WAL view only walks forward; descending id order
        // materializes the candidates (attribute indexes replace this scan).
        let mut all: Vec<_> = candidates(q, state).collect();
        all.reverse();
        let page: Vec<_> = all
            .into_iter()
            .inspect(|_| scanned += 1)
            .filter(|d| matches(q, d) && per.admit(d))
            .skip(q.offset)
            .take(q.limit)
            .collect();
        return (page, scanned);
    }
    let mut all: Vec<Arc<Document>> =
        candidates(q, state).inspect(|_| scanned += 1).filter(|d| matches(q, d)).collect();
    let cmp = |a: &Arc<Document>, b: &Arc<Document>| compare_docs(order, a, b);
    if want == 0 {
        return (Vec::new(), scanned);
    }
    if want < all.len() && q.per.is_none() {
        all.select_nth_unstable_by(want - 1, cmp);
        all.truncate(want);
    }
    all.sort_unstable_by(cmp);
    (all.into_iter().filter(|d| per.admit(d)).skip(q.offset).take(q.limit).collect(), scanned)
}

/// Order by the keys (nulls last in both directions), then id ascending.
pub(super) fn compare_docs(order: &[OrderKey], a: &Document, b: &Document) -> Ordering {
    for key in order {
        let o = match (a.attr(&key.attr), b.attr(&key.attr)) {
            (Some(x), Some(y)) => {
                let o = x.compare(&y).unwrap_or(Ordering::Equal);
                if key.dir == Direction::Desc {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

/// Sorted, unique rows of a segment that may match `f` (a superset of its
/// matches), from attribute indexes; None when they cannot narrow it.
pub(super) fn index_rows(ls: &SegmentReader, f: &Filter, depth: usize) -> Option<Vec<u32>> {
    use crate::filter::{Op, Operand};
    use crate::index::attr::{key_of, kind_of};
    if depth > crate::filter::MAX_DEPTH {
        return None;
    }
    let mut rows = match f {
        Filter::And(subs) => {
            let sets: Vec<Vec<u32>> = subs.iter().filter_map(|s| index_rows(ls, s, depth + 1)).collect();
            let mut it = sets.into_iter();
            let first = it.next()?;
            it.fold(first, |acc, s| {
                let set: HashSet<u32> = s.into_iter().collect();
                acc.into_iter().filter(|r| set.contains(r)).collect()
            })
        }
        Filter::Or(subs) if !subs.is_empty() => {
            let mut all = Vec::new();
            for s in subs {
                all.extend(index_rows(ls, s, depth + 1)?);
            }
            all
        }
        Filter::Or(_) | Filter::Not(_) => return None,
        Filter::Cond(c) => {
            let ix = ls.attr_index(c.attr())?;
            let same = |v: &Value| kind_of(v) == Some(ix.kind());
            match (c.op(), c.operand()) {
                (Op::Eq, Some(Operand::Value(v))) if same(v) => {
                    let k = key_of(v)?;
                    ix.range(Some((&k, true)), Some((&k, true)))
                }
                (Op::In, Some(Operand::Value(Value::Array(items)))) if items.iter().all(same) => {
                    let mut out = Vec::new();
                    for v in items {
                        let k = key_of(v)?;
                        out.extend(ix.range(Some((&k, true)), Some((&k, true))));
                    }
                    out
                }
                (op @ (Op::Lt | Op::Lte | Op::Gt | Op::Gte), Some(Operand::Value(v))) if same(v) => {
                    let k = key_of(v)?;
                    match op {
                        Op::Lt => ix.range(None, Some((&k, false))),
                        Op::Lte => ix.range(None, Some((&k, true))),
                        Op::Gt => ix.range(Some((&k, false)), None),
                        _ => ix.range(Some((&k, true)), None),
                    }
                }
                (Op::Glob, _) if ix.kind() == 3 => {
                    let pattern = c.glob_pattern()?;
                    let end = pattern.find(['*', '?', '[', '\\', '{']).unwrap_or(pattern.len());
                    if end == 0 {
                        return None;
                    }
                    ix.prefix(&pattern.as_bytes()[..end])
                }
                _ => return None,
            }
        }
    };
    rows.sort_unstable();
    rows.dedup();
    Some(rows)
}
