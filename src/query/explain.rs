//! `explain`: the plan text of a query (access paths per segment).
//!
//! Invariant: describes what `execute` would do without running the ranking.

use super::*;

/// Plan lines of a scored ranking: per segment, the index used or the
/// exhaustive scan, with estimated rows; then the overlay.
pub(super) fn explain_rank(q: &Query, rank: &Rank, state: &NsState, lines: &mut Vec<String>) {
    let (what, kind) = match rank {
        Rank::Vector { exact: false, .. } => {
            ("vector ANN (distance ascending)".to_owned(), SECTION_ANN_INDEX)
        }
        Rank::Vector { exact: true, .. } => ("vector kNN, exact (distance ascending)".to_owned(), 0),
        Rank::NamedVector { attr, exact, .. } => {
            let how = if *exact { "kNN, exact" } else { "ANN" };
            (format!("vector {how} on {attr} (distance ascending)"), 0)
        }
        Rank::MultiVector { attr, exact, .. } => {
            let how = if *exact { "kNN, exact" } else { "ANN" };
            (format!("late-interaction {how} on {attr} (sum of per-query-vector min distances ascending)"), 0)
        }
        Rank::Sparse { attr, .. } => {
            (format!("sparse dot product on {attr} (score descending)"), SECTION_SPARSE_INDEX)
        }
        Rank::Text(_) => ("BM25 (score descending)".to_owned(), SECTION_TEXT_INDEX),
    };
    lines.push(format!("rank: {what}, ties by id asc"));
    let views = seg_views(state, q.filters.as_ref());
    for v in &views {
        let seg = &v.ls.seg;
        let live = seg.len().saturating_sub(v.ls.deleted.len()).saturating_sub(v.shadowed.len());
        let has_index = kind != 0 && !seg.sections(kind).is_empty();
        let access = match (rank, has_index) {
            (Rank::Vector { .. }, true) => {
                let c = super::vector::calibrations(q, state, std::slice::from_ref(v)).remove(0);
                vector_access(&c)
            }
            (Rank::NamedVector { attr, exact: false, .. }, _) if v.ls.named_vector_index(attr).is_some() => {
                format!("graph of {attr}'s index section, or exact where its calibration or a narrow filter says so ({live} rows)")
            }
            (Rank::MultiVector { attr, exact, queries }, _) => {
                match super::multi::multi_attr(state, attr, *exact, queries)
                    .map(|a| super::multi::plan_multi(v, &a, *exact))
                {
                    Ok(super::multi::MultiPlan::Muvera(_)) => {
                        format!(
                            "MUVERA section, {} candidates reranked exactly",
                            crate::index::multi::candidate_depth(q.limit)
                        )
                    }
                    Ok(super::multi::MultiPlan::Exact(why)) => format!("exact search of {live} rows ({why})"),
                    Err(_) => format!("exact search of {live} rows"),
                }
            }
            (Rank::Vector { .. } | Rank::NamedVector { .. }, false) => {
                format!("exact search of {live} rows")
            }
            (_, true) => "postings index".to_owned(),
            (_, false) => format!("exhaustive scan of {live} rows (no index section)"),
        };
        let narrowed = match &v.cand {
            Some(c) => {
                format!(", attribute index narrows the filter to {} rows", c.iter().filter(|b| **b).count())
            }
            None => String::new(),
        };
        lines.push(format!("segment {}: {} rows ({live} live){narrowed}: {access}", v.ls.meta.id, seg.len()));
    }
    let unindexed = state.overlay().values().filter(|d| d.is_some()).count();
    lines.push(format!("unindexed WAL rows: {unindexed}, searched exhaustively"));
}

/// One segment's `ANN` path with the figures its build measured.
fn vector_access(c: &super::vector::SegmentCalibration) -> String {
    let measured = match (c.measured_recall, c.sampled) {
        (Some(r), n) => format!("recall@10 {r:.3} measured at build on {n} sampled rows"),
        (None, _) => "uncalibrated section: stored default effort".to_owned(),
    };
    match (c.path, c.effort, c.rerank) {
        ("graph", Some(ef), _) => format!("graph index, ef {ef} for target recall {:.2} ({measured})", c.target),
        ("ivf", Some(nprobe), Some(rerank)) => format!(
            "ANN index (IVF), {nprobe} clusters probed, rerank {rerank}, for target recall {:.2} ({measured})",
            c.target
        ),
        _ => format!(
            "exact search ({}{})",
            c.reason.unwrap_or("no index"),
            if c.exact_fallback { format!(" {:.2}: calibration fallback", c.target) } else { String::new() }
        ),
    }
}

/// A short, human-readable plan of a query on a state.
pub fn explain(q: &Query, state: &NsState) -> Result<String, QueryError> {
    validate(q, state)?;
    let n = state.len() as usize;
    let mut lines = Vec::new();
    if let Some(rank) = &q.rank {
        explain_rank(q, rank, state, &mut lines);
    }
    let access = match (&q.id_lower, &q.order) {
        _ if q.rank.is_some() => format!("ranked search over {n} documents"),
        (Some((id, inc)), _) if Some(id.id_type()) == state.id_type => {
            format!("id range scan from id {} {id} (of {n} documents)", if *inc { ">=" } else { ">" })
        }
        (_, Some(o)) if matches!(o.as_slice(), [k] if k.attr == ID_ATTR && k.dir == Direction::Desc) => {
            format!("reverse id scan (of {n} documents)")
        }
        _ => match q.filters.as_ref().filter(|_| !state.segments().is_empty()) {
            Some(f) => {
                let views = seg_views(state, Some(f));
                let narrowed: Option<usize> =
                    views.iter().map(|v| v.cand.as_ref().map(|c| c.iter().filter(|b| **b).count())).sum();
                match narrowed {
                    Some(rows) => format!(
                        "attribute indexes narrow the filter to {rows} segment rows, plus {} unindexed rows \
                         (of {n} documents)",
                        state.overlay().len()
                    ),
                    None => format!("exhaustive scan of {n} documents"),
                }
            }
            None => format!("exhaustive scan of {n} documents"),
        },
    };
    lines.push(format!("access: {access}"));
    lines.push(format!(
        "filter: {}",
        q.filters.as_ref().map_or_else(|| "none".to_owned(), |f| f.to_json().to_string())
    ));
    match &q.order {
        Some(order) => {
            let keys: Vec<String> = order
                .iter()
                .map(|k| format!("{} {}", k.attr, if k.dir == Direction::Asc { "asc" } else { "desc" }))
                .collect();
            lines.push(format!("order: {}, then id asc (missing values last)", keys.join(", ")));
            lines.push(format!("limit: {} offset: {}", q.limit, q.offset));
        }
        None if q.rank.is_some() => lines.push(format!("limit: {} offset: {}", q.limit, q.offset)),
        None => lines.push("order: none (aggregate only)".to_owned()),
    }
    if !q.aggregates.is_empty() {
        let names: Vec<&str> = q.aggregates.iter().map(|(n, _)| n.as_str()).collect();
        let by = if q.group_by.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = q
                .group_by
                .iter()
                .map(|k| match k.each_unique {
                    true => format!("{} (each unique {})", k.name, k.attr),
                    false => k.attr.clone(),
                })
                .collect();
            format!(" grouped by {}", keys.join(", "))
        };
        lines.push(format!("aggregate: {}{by}", names.join(", ")));
    }
    Ok(lines.join("\n"))
}
