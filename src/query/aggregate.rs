//! Aggregations (`Count`, `Sum`) over all matches or per `group_by` group.
//!
//! Invariant: groups are ordered by their keys (nulls last), deterministically.

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
pub(super) fn aggregate_groups(q: &Query, docs: impl Iterator<Item = Arc<Document>>) -> Vec<AggregateGroup> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    for d in docs {
        let key: Vec<Option<Value>> =
            q.group_by.iter().map(|a| d.attr(a).map(std::borrow::Cow::into_owned)).collect();
        // Values are not `Hash` (floats); their canonical JSON text is.
        let id = Json::Array(key.iter().map(|v| v.as_ref().map_or(Json::Null, Value::to_json)).collect())
            .to_string();
        let g =
            groups.entry(id).or_insert_with(|| Group { key, accs: vec![Acc::default(); q.aggregates.len()] });
        for (acc, (_, agg)) in g.accs.iter_mut().zip(&q.aggregates) {
            acc.add(agg, &d);
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| compare_keys(&a.key, &b.key));
    groups.truncate(q.limit);
    groups
        .into_iter()
        .map(|g| AggregateGroup {
            key: q.group_by.iter().cloned().zip(g.key).collect(),
            values: values(&q.aggregates, g.accs),
        })
        .collect()
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
