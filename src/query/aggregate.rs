//! Aggregations (`Count`, `Sum`) over all matches or per `group_by` group.
//!
//! Invariants: groups are ordered by their keys (nulls last), deterministically;
//! a document counts once in every group it belongs to (a `ForEachUnique` key
//! over an array puts it in one group per distinct element), and the groups
//! one document yields are bounded ([`MAX_GROUP_KEYS_PER_DOC`]).

use serde_json::Value as Json;

use super::*;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Acc {
    pub(super) count: u64,
    pub(super) int_sum: i128,
    pub(super) float_sum: f64,
    pub(super) any_float: bool,
}

impl Acc {
    pub(super) fn add(&mut self, agg: &Aggregate, d: &Document) {
        match agg {
            Aggregate::Count => self.count += 1,
            Aggregate::CountAttr(a) => self.count += u64::from(d.attr(a).is_some()),
            Aggregate::Sum(a) => match d.attr(a).as_deref() {
                Some(Value::Int(i)) => self.int_sum = self.int_sum.saturating_add(*i),
                Some(Value::Float(f)) => {
                    self.float_sum += f;
                    self.any_float = true;
                }
                _ => {}
            },
        }
    }

    pub(super) fn value(self, agg: &Aggregate) -> AggregateValue {
        match agg {
            Aggregate::Count | Aggregate::CountAttr(_) => AggregateValue::Count(self.count),
            Aggregate::Sum(_) => {
                #[allow(clippy::cast_precision_loss)]
                let as_float = self.int_sum as f64 + self.float_sum;
                match (self.any_float, i64::try_from(self.int_sum)) {
                    (false, Ok(i)) => AggregateValue::Int(i),
                    _ => AggregateValue::Float(as_float),
                }
            }
        }
    }
}

fn values(aggs: &[(String, Aggregate)], accs: Vec<Acc>) -> Vec<(String, AggregateValue)> {
    aggs.iter().zip(accs).map(|((name, agg), acc)| (name.clone(), acc.value(agg))).collect()
}

pub(super) fn aggregate_all(
    aggs: &[(String, Aggregate)],
    docs: impl Iterator<Item = Arc<Document>>,
) -> Vec<(String, AggregateValue)> {
    let mut accs = vec![Acc::default(); aggs.len()];
    for d in docs {
        for (acc, (_, agg)) in accs.iter_mut().zip(aggs) {
            acc.add(agg, &d);
        }
    }
    values(aggs, accs)
}

pub(super) struct Group {
    pub(super) key: Vec<Option<Value>>,
    pub(super) accs: Vec<Acc>,
}

/// Groups sorted by their key values (missing values last), at most `limit`.
/// A document joins one group per combination of its keys' values: one value
/// for a plain key, each distinct element for a `ForEachUnique` key.
pub(super) fn aggregate_groups(
    q: &Query,
    docs: impl Iterator<Item = Arc<Document>>,
) -> Result<Vec<AggregateGroup>, QueryError> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    for d in docs {
        for key in group_keys_of(&q.group_by, &d)? {
            // Values are not `Hash` (floats); their canonical JSON text is.
            let id = Json::Array(key.iter().map(|v| v.as_ref().map_or(Json::Null, Value::to_json)).collect())
                .to_string();
            let g = groups
                .entry(id)
                .or_insert_with(|| Group { key, accs: vec![Acc::default(); q.aggregates.len()] });
            for (acc, (_, agg)) in g.accs.iter_mut().zip(&q.aggregates) {
                acc.add(agg, &d);
            }
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| compare_keys(&a.key, &b.key));
    groups.truncate(q.limit);
    Ok(groups
        .into_iter()
        .map(|g| AggregateGroup {
            key: q.group_by.iter().map(|k| k.name.clone()).zip(g.key).collect(),
            values: values(&q.aggregates, g.accs),
        })
        .collect())
}

/// Every group key `d` belongs to: the cartesian product of each key's values
/// (at most [`MAX_GROUP_KEYS_PER_DOC`]).
fn group_keys_of(keys: &[GroupKey], d: &Document) -> Result<Vec<Vec<Option<Value>>>, QueryError> {
    let mut out: Vec<Vec<Option<Value>>> = vec![Vec::with_capacity(keys.len())];
    for k in keys {
        let values = key_values(k, d);
        if out.len().saturating_mul(values.len()) > MAX_GROUP_KEYS_PER_DOC {
            return Err(QueryError::InvalidInput(format!(
                "group_by: document {} falls into more than {MAX_GROUP_KEYS_PER_DOC} groups \
                 (ForEachUnique keys multiply)",
                d.id
            )));
        }
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut key = prefix.clone();
                    key.push(v.clone());
                    key
                })
            })
            .collect();
    }
    Ok(out)
}

/// The values one key takes for `d`: its attribute's value (`None` when
/// missing); for `ForEachUnique`, each distinct element of an array (in
/// value order), a scalar as its one element, and `None` for a missing
/// attribute or an empty array (so such a document still counts, in the
/// null group, as with a plain key).
fn key_values(k: &GroupKey, d: &Document) -> Vec<Option<Value>> {
    let value = d.attr(&k.attr).map(std::borrow::Cow::into_owned);
    match value {
        Some(Value::Array(mut items)) if k.each_unique => {
            items.sort_by(|a, b| a.compare(b).unwrap_or(Ordering::Equal));
            items.dedup_by(|a, b| a.loosely_equals(b));
            if items.is_empty() {
                vec![None]
            } else {
                items.into_iter().map(Some).collect()
            }
        }
        v => vec![v],
    }
}

pub(super) fn compare_keys(a: &[Option<Value>], b: &[Option<Value>]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Some(x), Some(y)) => x.compare(y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
