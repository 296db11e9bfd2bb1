//! Property test: random sequences of upserts, patches, deletes,
//! delete_by_filter, compactions and engine reopens, checked after every step against a
//! plain in-memory model. Guards read-your-writes and reopen durability for
//! arbitrary interleavings.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use tidepool::engine::{Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::{DocId, Value};
use tidepool::store::Store;

#[derive(Debug, Clone)]
enum Step {
    Upsert(u64, i64),
    Patch(u64, Option<i64>),
    Delete(u64),
    DeleteWhereBelow(i64),
    Reopen,
    Compact,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..12u64, -50..50i64).prop_map(|(id, v)| Step::Upsert(id, v)),
        2 => (0..12u64, proptest::option::of(-50..50i64)).prop_map(|(id, v)| Step::Patch(id, v)),
        2 => (0..12u64).prop_map(Step::Delete),
        1 => (-50..50i64).prop_map(Step::DeleteWhereBelow),
        1 => Just(Step::Reopen),
        1 => Just(Step::Compact),
    ]
}

type Model = BTreeMap<u64, BTreeMap<String, i64>>;

fn apply_model(m: &mut Model, s: &Step) {
    match s {
        Step::Upsert(id, v) => {
            m.insert(*id, BTreeMap::from([("v".to_owned(), *v), ("w".to_owned(), 1)]));
        }
        Step::Patch(id, v) => {
            if let Some(d) = m.get_mut(id) {
                match v {
                    Some(v) => d.insert("v".into(), *v),
                    None => d.remove("v"),
                };
            }
        }
        Step::Delete(id) => {
            m.remove(id);
        }
        Step::DeleteWhereBelow(t) => m.retain(|_, d| d.get("v").is_none_or(|v| v >= t)),
        Step::Reopen | Step::Compact => {}
    }
}

fn body(s: &Step) -> Option<serde_json::Value> {
    Some(match s {
        Step::Upsert(id, v) => json!({"upsert_rows": [{"id": id, "v": v, "w": 1}]}),
        Step::Patch(id, v) => json!({"patch_rows": [{"id": id, "v": v}]}),
        Step::Delete(id) => json!({"deletes": [id]}),
        Step::DeleteWhereBelow(t) => json!({"delete_by_filter": ["v", "Lt", t]}),
        Step::Reopen | Step::Compact => return None,
    })
}

async fn open(dir: &std::path::Path) -> std::sync::Arc<Engine> {
    Engine::open(EngineConfig::new(dir.to_path_buf(), Store::local(&dir.join("store")).unwrap()))
        .await
        .unwrap()
}

async fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let p = NsPath::new("o", "p", "model").unwrap();
    let mut e = open(dir.path()).await;
    let mut model = Model::new();
    for s in &steps {
        match body(s) {
            Some(b) => {
                e.write(&p, WriteRequest::from_json(&b).unwrap()).await.unwrap();
            }
            None if matches!(s, Step::Compact) => {
                if e.snapshot(&p, true).await.unwrap().exists() {
                    e.compact(&p, true).await.unwrap();
                }
            }
            None => {
                drop(e);
                e = open(dir.path()).await;
            }
        }
        apply_model(&mut model, s);
        let snap = e.snapshot(&p, true).await.unwrap();
        let got: Model = snap
            .state
            .iter()
            .map(|d| {
                let DocId::U64(id) = d.id else { panic!("u64 ids only") };
                let attrs = d
                    .attrs
                    .iter()
                    .map(|(k, v)| {
                        let Value::Int(i) = v else { panic!("ints only") };
                        (k.clone(), i64::try_from(*i).unwrap())
                    })
                    .collect();
                (id, attrs)
            })
            .collect();
        assert_eq!(got, model, "after {s:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn engine_state_equals_the_model_after_every_step(steps in proptest::collection::vec(step(), 1..30)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(steps));
    }
}
