//! Inputs shared by the format compatibility tests (`tests/format_compat*.rs`): the content
//! the v1 fixtures were written from, which later fixtures build on.
//!
//! Invariant: these build exactly what the frozen fixtures hold; changing one changes what
//! the fixtures are compared with.

#![allow(dead_code)]

use serde_json::json;
use tidepool::filter::Filter;
use tidepool::format::manifest::{Lineage, Manifest, ManifestStats, ObjectRef, SegmentRef, WalRef};
use tidepool::model::{AttrMap, DistanceMetric, IdType, Value};
use tidepool::schema::{parse_schema, AttrSchema, AttrType, FullTextSearch, ScalarType, Schema};

pub fn attrs(pairs: &[(&str, Value)]) -> AttrMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

pub fn filter(v: serde_json::Value) -> Filter {
    Filter::parse(&v).unwrap()
}

/// What the v1 fixture's schema text means: a full-text string attribute
/// with the full-text defaults of the build that wrote it.
pub fn v1_title_schema() -> Schema {
    let fts = FullTextSearch {
        tokenizer: "word_v4".into(),
        language: "english".into(),
        stemming: false,
        remove_stopwords: true,
        case_sensitive: false,
        ascii_folding: false,
        k1: 1.2,
        b: 0.75,
        max_token_length: 39,
        index_prefixes: false,
    };
    let title =
        AttrSchema { full_text_search: Some(fts), ..AttrSchema::of(AttrType::Scalar(ScalarType::String)) };
    Schema::from([("title".to_owned(), title)])
}

pub fn v1_manifest() -> Manifest {
    Manifest {
        labels: Default::default(),
        data_generation: None,
        read_only: false,
        origin: None,
        namespace: "acme/search/docs".into(),
        generation: 7,
        commit_id: "0123456789abcdef0123456789abcdef".into(),
        previous_generation: Some(6),
        created_at_ms: 1_763_600_000_000,
        committed_at_ms: 1_763_700_000_500,
        deleted: false,
        id_type: Some(IdType::U64),
        distance_metric: Some(DistanceMetric::CosineDistance),
        vector_dim: Some(4),
        // What the read path made of the stored turbopuffer-shaped schema when this fixture
        // was written (the API's parser then): the legacy decoder must give the same.
        schema: parse_schema(&json!({
            "title": {"type": "string", "filterable": false, "full_text_search": {"tokenizer": "word_v3"}},
            "vector": {"type": "[4]f32", "ann": true}
        }))
        .unwrap(),
        schema_ref: None,
        next_wal_seq: 44,
        wal: vec![
            WalRef {
                key: "acme/search/namespaces/docs/wal/00000000000000000042-0f1e2d3c.wal".into(),
                seq: 42,
                bytes: 600,
                crc32c: 0xdead_beef,
                requests: 3,
                rows: 7,
            },
            WalRef {
                key: "acme/search/namespaces/docs/wal/00000000000000000043-4b5a6978.wal".into(),
                seq: 43,
                bytes: 300,
                crc32c: 1,
                requests: 1,
                rows: 3,
            },
        ],
        segments: vec![SegmentRef {
            id: "s0001".into(),
            files: vec![ObjectRef {
                key: "acme/search/namespaces/base/segments/s0001/rows".into(),
                bytes: 4096,
                crc32c: 2,
            }],
            rows: 40,
            // Written before segments existed: no deletion set, no size.
            deletes: None,
            bytes: 0,
            sections: Vec::new(),
            text_analysis: Default::default(),
        }],
        row_id_hwm: 40,
        lineage: Some(Lineage { parent: "acme/search/base".into(), parent_generation: 3 }),
        stats: ManifestStats {
            approx_row_count: 45,
            approx_logical_bytes: 4500,
            unindexed_rows: 5,
            unindexed_bytes: 500,
        },
    }
}
