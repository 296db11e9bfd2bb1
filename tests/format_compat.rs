//! Format compatibility: every released format version stays readable
//! forever, and the current encoder writes exactly the bytes that
//! `storage-format.md` specifies.
//!
//! Invariants guarded here:
//! - Golden bytes: a small fixed WAL batch, a manifest, a CURRENT hint, a
//!   segment and a deletion set encode to the exact bytes written below (a
//!   change here is a format change: bump the version, log it in
//!   `storage-format.md`, add fixtures).
//! - Fixtures: the files under `tests/fixtures/v1/` were written once by
//!   `write_v1_fixtures` and are never regenerated; they must decode to the
//!   content built here.
//!
//! - `tests/fixtures/v2/` holds the files of the formats whose version 2
//!   exists (CURRENT, which embeds the manifest since version 2) and of
//!   additions that needed no version bump but are pinned the same way (a
//!   manifest whose segment records its section ranges; a segment with the
//!   cold IVF section, kind 21; a segment with range checksums, kind 22),
//!   written once by `write_v2_fixtures`.
//!
//! - `tests/fixtures/v4/` holds manifest version 2 (the schema in a schema
//!   object named by `schema_ref`, `storage-format.md` 4.5) and that schema
//!   object, written once by `write_v4_fixtures`.
//!
//! - `tests/fixtures/v3/`, `v5/` and `v6/` hold the same calibrated IVF and graph input as each
//!   build wrote it (own rows; own and perturbed rows; local perturbation and graph link
//!   slack). All read back; v6 was the canonical encoders' until the calibration reach.
//!
//! - `tests/fixtures/v16_reach/` holds the v3 input's IVF and graph pair and the v15 input's
//!   RaBitQ graph as the encoders write them since 2026-11-26: the calibration record stores its
//!   reach (`storage-format.md` 11.6, bytes 44..48), written once by `write_v16_reach_fixtures`;
//!   the v6 and v15 files equal them but for the reach, and read as "no reach".
//!
//! - `tests/fixtures/v7/` holds a WAL batch with `WAL_FLAG_OWN_ENCODINGS`: every filter leaf
//!   kind, a pattern beyond the API's limit and a schema update in tidepool's own binary
//!   encodings (`storage-format.md` 3.2), written once by `write_v7_fixtures`. The v1 WAL
//!   fixtures (JSON filter and schema text) keep reading through the legacy reader.
//!
//! - `tests/fixtures/v8/` holds manifest version 3 and schema object version 2 (the schema in
//!   tidepool's own encoding, `storage-format.md` 4.2, 4.5): `manifest.json` (inline),
//!   `manifest_ref.json` naming `schema.json`, written once by `write_v8_fixtures`. Since then
//!   the v1, v2 and v4 manifests (turbopuffer-shaped schemas) are only read: their writers no
//!   longer write manifests.
//!
//! - `tests/fixtures/v15/graph_rabitq.bin` holds a graph section version 3 (RaBitQ traversal
//!   codes, `storage-format.md` 11.5) of the version-3 fixtures' input, written once by
//!   `write_v15_fixtures`.
//!
//! - `tests/fixtures/v16/ann_lists.bin` holds an IVF section version 3 (lists only, scored with
//!   the graph's codes, `storage-format.md` 11.1) of the same input, naming the graph section
//!   `v6/graph.bin` (the same input and encoder), written once by `write_v16_fixtures`.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test format_compat -- --ignored write_v1_fixtures write_v2_fixtures write_v4_fixtures write_v6_fixtures write_v7_fixtures write_v8_fixtures write_v15_fixtures write_v16_fixtures write_v16_reach_fixtures`

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::json;
use tidepool::filter::{Condition, Filter, LeafOperand, Op, Operand};
use tidepool::format::manifest::{
    decode_current, decode_current_full, decode_schema_object, encode_current, encode_current_with_manifest,
    encode_schema_object, schema_json, schema_object_ref, Lineage, Manifest, ManifestStats, ObjectRef,
    SectionRef, SegmentRef, WalRef, SCHEMA_INLINE_MAX_BYTES,
};
use tidepool::format::segment::{
    section_table, DeletionSet, IdsSection, Segment, SegmentBuilder, SECTION_ANN_INDEX, SECTION_COLD_IVF,
    SECTION_DOCS, SECTION_IDS, SECTION_TEXT_INDEX, SECTION_VECTORS, SECTION_VECTOR_ABSENT,
};
use tidepool::format::wal::{
    legacy, peek_header, WalBatch, WAL_FLAG_DATETIME_INSTANTS, WAL_FLAG_OWN_ENCODINGS, WAL_HEADER_LEN,
};
use tidepool::format::FormatError;
use tidepool::model::{AttrMap, DistanceMetric, DocId, Document, IdType, Value};
use tidepool::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};
use tidepool::schema::{parse_schema, AttrSchema, AttrType, FullTextSearch, ScalarType, Schema};

fn fixture_dir(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(version)
}

fn read_fixture(version: &str, name: &str) -> Vec<u8> {
    let path = fixture_dir(version).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

fn attrs(pairs: &[(&str, Value)]) -> AttrMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn filter(v: serde_json::Value) -> Filter {
    Filter::parse(&v).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------ golden bytes

/// One request: key "k", cosine, counts (1, 0, 1), one upsert of id 7 with
/// vector [1.0] and {"a": 1}, one delete of id "d".
fn golden_batch() -> WalBatch {
    let mut req = RequestRecord {
        idempotency_key: Some("k".into()),
        settings: NamespaceSettings { distance_metric: Some(DistanceMetric::CosineDistance), schema: None },
        counts: RowCounts { upserted: 1, patched: 0, deleted: 1 },
        ..RequestRecord::default()
    };
    req.ops.upserts.push(Document {
        id: DocId::U64(7),
        vector: Some(vec![1.0].into()),
        attrs: attrs(&[("a", Value::Int(1))]),
    });
    req.ops.deletes.push(DocId::Str("d".into()));
    WalBatch { seq: 1, created_at_ms: 2, requests: vec![req], flags: 0 }
}

#[test]
fn golden_wal_batch_bytes_are_stable() {
    let header = [
        "544944452e57414c", // magic "TIDE.WAL"
        "0100",             // format version 1
        "0200",             // flags: WAL_FLAG_OWN_ENCODINGS
        "01000000",         // request_count 1
        "0100000000000000", // seq 1
        "0200000000000000", // created_at_ms 2
        "6300000000000000", // body_len 99
        "92416ad0",         // body crc32c
        "d53d98a7",         // header crc32c (bytes 0..44)
    ]
    .concat();
    // One field per line; spaces separate the parts of a field.
    let body = [
        "01 01000000 6b",                      // idempotency key: Some, len 1, "k"
        "01",                                  // distance metric: cosine_distance
        "00",                                  // schema json: None
        "0100000000000000",                    // counts.upserted 1
        "0000000000000000",                    // counts.patched 0
        "0100000000000000",                    // counts.deleted 1
        "00",                                  // delete_by_filter: None
        "00",                                  // patch_by_filter: None
        "01000000",                            // upserts: 1
        "00 0700000000000000",                 // id: tag u64, 7
        "01 01000000 0000803f",                // vector: Some, dim 1, [1.0f32]
        "01000000",                            // attributes: 1
        "01000000 61",                         // name: len 1, "a"
        "02 01000000000000000000000000000000", // value: tag Int, 1 as i128
        "00",                                  // upsert_condition: None
        "00000000",                            // patches: 0
        "00",                                  // patch_condition: None
        "01000000",                            // deletes: 1
        "02 01000000 64",                      // id: tag string, len 1, "d"
        "00",                                  // delete_condition: None
    ]
    .concat()
    .replace(' ', "");
    let bytes = golden_batch().try_encode().unwrap();
    assert_eq!(bytes.len(), WAL_HEADER_LEN + 99);
    assert_eq!(hex(&bytes[WAL_HEADER_LEN..]), body);
    assert_eq!(hex(&bytes[..WAL_HEADER_LEN]), header);
    assert_eq!(WalBatch::decode(&bytes).unwrap(), golden_batch());
}

fn golden_manifest() -> Manifest {
    Manifest {
        labels: Default::default(),
        data_generation: None,
        read_only: false,
        origin: None,
        namespace: "a/b/c".into(),
        generation: 2,
        commit_id: "00112233445566778899aabbccddeeff".into(),
        previous_generation: Some(1),
        created_at_ms: 10,
        committed_at_ms: 20,
        deleted: false,
        id_type: Some(IdType::U64),
        distance_metric: Some(DistanceMetric::EuclideanSquared),
        vector_dim: Some(2),
        schema: parse_schema(&json!({"x": {"type": "int", "filterable": true}})).unwrap(),
        schema_ref: None,
        next_wal_seq: 2,
        wal: vec![WalRef {
            key: "a/b/namespaces/c/wal/00000000000000000001-t.wal".into(),
            seq: 1,
            bytes: 155,
            crc32c: 3,
            requests: 1,
            rows: 2,
        }],
        segments: vec![],
        row_id_hwm: 0,
        lineage: None,
        stats: ManifestStats {
            approx_row_count: 1,
            approx_logical_bytes: 30,
            unindexed_rows: 1,
            unindexed_bytes: 30,
        },
    }
}

#[test]
fn golden_manifest_bytes_are_stable() {
    let body = concat!(
        r#"{"namespace":"a/b/c","generation":2,"commit_id":"00112233445566778899aabbccddeeff","#,
        r#""previous_generation":1,"created_at_ms":10,"committed_at_ms":20,"deleted":false,"#,
        r#""id_type":"u64","distance_metric":"euclidean_squared","vector_dim":2,"#,
        r#""schema":{"encoding":1,"attributes":[{"name":"x","type":{"kind":"scalar","element":"int"},"#,
        r#""filterable":true}]},"next_wal_seq":2,"#,
        r#""wal":[{"key":"a/b/namespaces/c/wal/00000000000000000001-t.wal","seq":1,"bytes":155,"crc32c":3,"requests":1,"rows":2}],"#,
        r#""segments":[],"row_id_hwm":0,"lineage":null,"#,
        r#""stats":{"approx_row_count":1,"approx_logical_bytes":30,"unindexed_rows":1,"unindexed_bytes":30}}"#,
    );
    let crc = crc32c::crc32c(body.as_bytes());
    let expected = format!(
        "{{\"magic\":\"tidepool.manifest\",\"format_version\":3,\"crc32c\":{crc},\"body\":{body}}}\n"
    );
    let bytes = golden_manifest().try_encode().unwrap();
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
    assert_eq!(Manifest::decode(&bytes).unwrap(), golden_manifest());
}

#[test]
fn golden_current_bytes_are_stable() {
    // crc32c of 7u64 as 8 little-endian bytes.
    let crc = crc32c::crc32c(&[7, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        String::from_utf8(encode_current(7)).unwrap(),
        format!(
            "{{\"magic\":\"tidepool.current\",\"format_version\":1,\"generation\":7,\"crc32c\":{crc}}}\n"
        )
    );
    assert_eq!(decode_current(&encode_current(7)), Ok(7));
}

/// Two rows with u64 ids 1 and 2, 2-dimensional vectors, attributes {"a": 1}
/// and {}, and one extension section (kind 17, "abc").
fn golden_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_raw_docs();
    b.push(&Document {
        id: DocId::U64(1),
        vector: Some(vec![1.0, 2.0].into()),
        attrs: attrs(&[("a", Value::Int(1))]),
    })
    .unwrap();
    b.push(&Document { id: DocId::U64(2), vector: Some(vec![0.5, -1.0].into()), attrs: AttrMap::new() })
        .unwrap();
    b.add_section(SECTION_TEXT_INDEX, b"abc");
    b.finish().unwrap()
}

fn zeros(n: usize) -> String {
    "00".repeat(n)
}

#[test]
fn golden_segment_bytes_are_stable() {
    let bytes = golden_segment();
    let header = [
        "544944452e534547", // magic "TIDE.SEG"
        "0100",             // format version 1
        "0000",             // flags
        "00",               // id kind: u64
        "000000",           // reserved
        "0200000000000000", // rows 2
        "02000000",         // vector_dim 2
        "04000000",         // section_count 4
        "4001000000000000", // table_offset 320
        &zeros(20),         // reserved
        "HEADERCRC",        // header crc32c (bytes 0..60)
    ]
    .concat();
    let ids = ["0100000000000000", "0200000000000000"].concat(); // @64, 16 bytes
    let docs = [
        "0000000000000000 1a00000000000000 1e00000000000000", // offsets 0, 26, 30
        "01000000 01000000 61",                               // row 0: 1 attribute, name "a"
        "02 01000000000000000000000000000000",                // Int 1 as i128
        "00000000",                                           // row 1: 0 attributes
    ]
    .concat()
    .replace(' ', ""); // @128, 54 bytes
    let vectors = ["0000803f 00000040", "0000003f 000080bf"].concat().replace(' ', ""); // @192: [1,2],[0.5,-1]
    let text = "616263"; // @256: "abc"
    let table = [
        "0100 0000 IDSCRC 4000000000000000 1000000000000000", // ids @64, 16 B
        "0200 0000 DOCSCRC 8000000000000000 3600000000000000", // docs @128, 54 B
        "0300 0000 VECSCRC c000000000000000 1000000000000000", // vectors @192, 16 B
        "1100 0000 TEXTCRC 0001000000000000 0300000000000000", // kind 17 @256, 3 B
    ]
    .concat()
    .replace(' ', "");
    let crc = |b: &[u8]| hex(&crc32c::crc32c(b).to_le_bytes());
    let fill = |s: &str| {
        s.replace("IDSCRC", &crc(&bytes[64..80]))
            .replace("DOCSCRC", &crc(&bytes[128..182]))
            .replace("VECSCRC", &crc(&bytes[192..208]))
            .replace("TEXTCRC", &crc(&bytes[256..259]))
            .replace("HEADERCRC", &crc(&bytes[..60]))
    };
    let expected = [
        fill(&header),
        ids,
        zeros(48),
        docs,
        zeros(10),
        vectors,
        zeros(48),
        text.into(),
        zeros(61),
        fill(&table),
        crc(&bytes[320..416]), // table crc32c
    ]
    .concat();
    assert_eq!(bytes.len(), 420);
    assert_eq!(hex(&bytes), expected);
    // The crcs themselves, pinned (a different checksum algorithm would pass the lines above).
    assert_eq!(hex(&bytes[60..64]), "5e689eba");
    assert_eq!(hex(&bytes[416..420]), "9400925e");
    let seg = Segment::open(Bytes::from(bytes)).unwrap();
    assert_eq!(seg.len(), 2);
    assert_eq!(seg.doc(0).unwrap().attrs, attrs(&[("a", Value::Int(1))]));
    assert_eq!(seg.vectors().unwrap(), &[1.0, 2.0, 0.5, -1.0]);
    assert_eq!(seg.section(SECTION_TEXT_INDEX), Some(&b"abc"[..]));
}

#[test]
fn golden_deletion_set_bytes_are_stable() {
    let mut d = DeletionSet::new(70);
    for row in [0, 5, 69] {
        d.insert(row);
    }
    let bytes = d.encode();
    let expected = [
        "544944452e44454c", // magic "TIDE.DEL"
        "0100",             // format version 1
        "0000",             // flags
        "00000000",         // reserved
        "4600000000000000", // rows 70
        "0300000000000000", // deleted 3
        "2100000000000000", // rows 0..64: bits 0 and 5
        "2000000000000000", // rows 64..128: bit 5 (row 69)
        "e0924dbd",         // crc32c of everything above
    ]
    .concat();
    assert_eq!(hex(&bytes), expected);
    assert_eq!(DeletionSet::decode(&bytes).unwrap(), d);
}

// ------------------------------------------------------------ v1 fixtures

/// What the v1 fixture's schema text means: a full-text string attribute
/// with the full-text defaults of the build that wrote it.
fn v1_title_schema() -> Schema {
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

/// Every value kind, every id kind, settings, counts, upserts, patches and
/// deletes (no filters: see `v1_filters_batch`).
fn v1_batch() -> WalBatch {
    let uuid = uuid::Uuid::from_u128(0x0b4a_2f8e_6c3d_4c53_9c49_4f0b_6a3e_2a11);
    let full = RequestRecord {
        idempotency_key: Some("idem-1".into()),
        settings: NamespaceSettings {
            distance_metric: Some(DistanceMetric::CosineDistance),
            // Written as the JSON text {"title":{"type":"string","full_text_search":true}}.
            schema: Some(v1_title_schema()),
        },
        ops: WriteOps {
            upserts: vec![
                Document {
                    id: DocId::U64(u64::MAX),
                    vector: Some(vec![0.5, -1.25, 3.0, f32::MIN_POSITIVE].into()),
                    attrs: attrs(&[
                        ("b", Value::Bool(true)),
                        ("f", Value::Float(-2.5e-300)),
                        ("i", Value::Int(i128::from(i64::MIN))),
                        ("s", Value::Str("héllo, wörld".into())),
                        ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), 1.0)])),
                        ("t", Value::Array(vec![Value::Str("x".into()), Value::Str("y".into())])),
                        ("u", Value::Int(i128::from(u64::MAX))),
                        ("z", Value::Array(vec![Value::Int(1), Value::Float(2.5), Value::Bool(false)])),
                    ]),
                },
                Document { id: DocId::Uuid(uuid), vector: None, attrs: AttrMap::new() },
                Document::new(DocId::Str("doc-3".into())),
            ],
            patches: vec![Patch {
                id: DocId::U64(9),
                attrs: attrs(&[("gone", Value::Null), ("s", Value::Str("new".into()))]),
            }],
            deletes: vec![DocId::U64(2), DocId::Str("z".into()), DocId::Uuid(uuid)],
            ..WriteOps::default()
        },
        counts: RowCounts { upserted: 3, patched: 1, deleted: 3 },
    };
    let second = RequestRecord {
        settings: NamespaceSettings { distance_metric: Some(DistanceMetric::EuclideanSquared), schema: None },
        ..RequestRecord::default()
    };
    WalBatch {
        seq: 42,
        created_at_ms: 1_763_700_000_000,
        requests: vec![full, second, RequestRecord::default()],
        flags: 0,
    }
}

/// Every filter-carrying op.
fn v1_filters_batch() -> WalBatch {
    let req = RequestRecord {
        ops: WriteOps {
            upserts: vec![Document::new(DocId::U64(1))],
            upsert_condition: Some(filter(json!(["v", "Lt", 3]))),
            patches: vec![Patch { id: DocId::U64(1), attrs: attrs(&[("s", Value::Str("p".into()))]) }],
            patch_condition: Some(filter(json!(["s", "Eq", "old"]))),
            deletes: vec![DocId::U64(1)],
            delete_condition: Some(filter(json!(["b", "Eq", true]))),
            delete_by_filter: Some(filter(json!(["n", "Gt", 100]))),
            patch_by_filter: Some(PatchByFilter {
                filter: filter(json!(["And", [["a", "Eq", 1], ["c", "In", ["x", "y"]]]])),
                attrs: attrs(&[("flag", Value::Bool(true))]),
            }),
        },
        ..RequestRecord::default()
    };
    WalBatch { seq: 43, created_at_ms: 1_763_700_000_001, requests: vec![req], flags: 0 }
}

fn v1_manifest() -> Manifest {
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

/// String ids, every value kind, 3-dimensional vectors with one row
/// lacking a vector, and extension sections (two text indexes, an ANN index,
/// and an unknown kind 200 that readers skip).
fn v1_segment_docs() -> Vec<Document> {
    vec![
        Document {
            id: DocId::Str("alpha".into()),
            vector: Some(vec![0.5, -1.25, 3.0].into()),
            attrs: attrs(&[
                ("b", Value::Bool(true)),
                ("f", Value::Float(-2.5e-300)),
                ("i", Value::Int(i128::from(i64::MIN))),
                ("s", Value::Str("héllo, wörld".into())),
                ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), 1.0)])),
                ("t", Value::Array(vec![Value::Str("x".into()), Value::Str("y".into())])),
                ("u", Value::Int(i128::from(u64::MAX))),
                ("z", Value::Array(vec![Value::Int(1), Value::Float(2.5), Value::Bool(false)])),
            ]),
        },
        Document {
            id: DocId::Str("beta".into()),
            vector: None,
            attrs: attrs(&[("s", Value::Str("b".into()))]),
        },
        Document {
            id: DocId::Str("gamma-é".into()),
            vector: Some(vec![f32::MIN_POSITIVE, 0.0, -0.0].into()),
            attrs: AttrMap::new(),
        },
    ]
}

fn v1_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::String, Some(3)).with_raw_docs();
    for d in v1_segment_docs() {
        b.push(&d).unwrap();
    }
    b.add_section(SECTION_TEXT_INDEX, b"text index of s");
    b.add_section(SECTION_ANN_INDEX, vec![0xa5; 100]);
    b.add_section(SECTION_TEXT_INDEX, b"text index of t");
    b.add_section(200, b"a future section kind");
    b.finish().unwrap()
}

fn v1_deletes() -> DeletionSet {
    let mut d = DeletionSet::new(3);
    d.insert(1);
    d
}

/// Whether `Filter::to_json` writes canonical turbopuffer JSON (guards the
/// fixture writer against a stub filter implementation).
fn filters_are_canonical() -> bool {
    let v = json!(["a", "Eq", 1]);
    Filter::parse(&v).map(|f| f.to_json() == v).unwrap_or(false)
}

#[test]
fn v1_wal_batch_fixture_reads_back() {
    let bytes = read_fixture("v1", "wal_batch.bin");
    let h = peek_header(&bytes).unwrap();
    assert_eq!((h.version, h.seq, h.request_count), (1, 42, 3));
    assert_eq!(WalBatch::decode(&bytes).unwrap(), v1_batch());
}

#[test]
fn v1_filters_wal_batch_fixture_reads_back() {
    let bytes = read_fixture("v1", "wal_batch_filters.bin");
    assert_eq!(WalBatch::decode(&bytes).unwrap(), v1_filters_batch());
}

#[test]
fn v1_manifest_fixture_reads_back() {
    let bytes = read_fixture("v1", "manifest.json");
    let m = Manifest::decode(&bytes).unwrap();
    assert_eq!(m, v1_manifest());
    assert_eq!(m.object_keys().len(), 3);
}

#[test]
fn v1_segment_fixture_reads_back() {
    let seg = Segment::open(Bytes::from(read_fixture("v1", "segment.seg"))).unwrap();
    let docs = v1_segment_docs();
    assert_eq!(seg.len(), docs.len());
    assert_eq!((seg.id_type(), seg.vector_dim()), (IdType::String, Some(3)));
    for (row, d) in docs.iter().enumerate() {
        assert_eq!(&seg.doc(row).unwrap(), d);
        assert_eq!(seg.find(&d.id), Some(row));
    }
    assert_eq!(seg.find(&DocId::Str("b".into())), None);
    assert_eq!(seg.lower_bound(&DocId::Str("b".into())), 1);
    assert!(!seg.has_vector(1));
    assert!(seg.section(SECTION_VECTOR_ABSENT).is_some());
    assert_eq!(seg.sections(SECTION_TEXT_INDEX), vec![&b"text index of s"[..], &b"text index of t"[..]]);
    assert_eq!(seg.section(SECTION_ANN_INDEX), Some(&[0xa5u8; 100][..]));
    assert_eq!(seg.section(200), Some(&b"a future section kind"[..]));
    assert!(seg.section(SECTION_IDS).is_some() && seg.section(SECTION_DOCS).is_some());
    assert_eq!(seg.section(SECTION_VECTORS).map(<[u8]>::len), Some(3 * 3 * 4));
}

#[test]
fn v1_deletes_fixture_reads_back() {
    let d = DeletionSet::decode(&read_fixture("v1", "deletes.del")).unwrap();
    assert_eq!(d, v1_deletes());
    assert_eq!((d.rows(), d.len(), d.contains(1), d.contains(0)), (3, 1, true, false));
}

#[test]
fn v1_current_fixture_reads_back() {
    assert_eq!(decode_current(&read_fixture("v1", "CURRENT")), Ok(7));
}

/// While v1 is the current version, the encoder reproduces the fixtures byte
/// for byte (the encoding is canonical). Delete this test when v2 ships. (WAL
/// batches are written with `WAL_FLAG_OWN_ENCODINGS` since v7, so the v1 WAL
/// fixtures are only read back; `v7_wal_batch_fixture_reads_back` pins the
/// current WAL encoder.)
#[test]
fn current_encoder_reproduces_v1_fixtures_byte_for_byte() {
    // Manifests are written as version 3 since the schema has its own encoding (v8 fixtures).
    assert_ne!(v1_manifest().try_encode().unwrap(), read_fixture("v1", "manifest.json"));
    assert_eq!(encode_current(7), read_fixture("v1", "CURRENT"));
    assert_eq!(v1_segment(), read_fixture("v1", "segment.seg"));
    assert_eq!(v1_deletes().encode(), read_fixture("v1", "deletes.del"));
}

#[test]
fn corrupted_v1_fixtures_are_refused_not_misread() {
    let mut wal = read_fixture("v1", "wal_batch.bin");
    let mid = wal.len() / 2;
    wal[mid] ^= 0x10;
    assert!(matches!(WalBatch::decode(&wal), Err(FormatError::ChecksumMismatch { .. })));
    let manifest = read_fixture("v1", "manifest.json");
    assert!(Manifest::decode(&manifest[..manifest.len() / 2]).is_err());
    let mut seg = read_fixture("v1", "segment.seg");
    let mid = seg.len() / 2;
    seg[mid] ^= 0x10;
    assert!(Segment::open(Bytes::from(seg)).is_err());
    let seg = read_fixture("v1", "segment.seg");
    assert!(Segment::open(Bytes::copy_from_slice(&seg[..seg.len() - 1])).is_err());
    let mut del = read_fixture("v1", "deletes.del");
    del[DELETES_BITMAP_AT] ^= 0x01;
    assert!(matches!(DeletionSet::decode(&del), Err(FormatError::ChecksumMismatch { .. })));
}

/// Write the fixture files that do not exist yet (released fixtures are frozen: an existing
/// file is never overwritten).
fn write_missing(dir: &std::path::Path, files: Vec<(&str, Vec<u8>)>) {
    for (name, bytes) in files {
        let path = dir.join(name);
        if path.exists() {
            eprintln!("keeping existing {}", path.display());
            continue;
        }
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

/// Where a deletion set's bitmap starts (after the 32-byte header).
const DELETES_BITMAP_AT: usize = 32;

/// Writes the v1 fixtures that do not exist yet. Run manually (see the module
/// doc); never overwrites a file, since released fixtures are frozen.
#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v1_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("wal_batch.bin", v1_batch().try_encode().unwrap()),
        // manifest.json is frozen: today's encoder writes manifest version 3 (v8).
        ("CURRENT", encode_current(7)),
        ("segment.seg", v1_segment()),
        ("deletes.del", v1_deletes().encode()),
    ];
    if filters_are_canonical() {
        files.push(("wal_batch_filters.bin", v1_filters_batch().try_encode().unwrap()));
    } else {
        eprintln!("not writing wal_batch_filters.bin: the filter implementation is a stub");
    }
    write_missing(&dir, files);
}

// ---------------------------------------------------------------------------------------------
// Version 2 of CURRENT (embedded manifest) and the cold-read additions (section ranges in the
// manifest, the cold IVF section kind 21).

/// The v1 manifest with its segment's section ranges recorded.
fn v2_manifest() -> Manifest {
    let mut m = v1_manifest();
    m.segments[0].sections = vec![
        SectionRef { kind: 1, offset: 64, len: 320, crc32c: 11, head: 0 },
        SectionRef { kind: 21, offset: 1024, len: 2048, crc32c: 12, head: 448 },
    ];
    m
}

/// 64 rows of dimension 4 (u64 ids 0, 3, 6, ...) with an ANN section of 4 lists and the cold
/// IVF section built from it.
fn v2_cold_segment_vectors() -> Vec<f32> {
    (0..64 * 4).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect()
}

fn v2_cold_segment() -> Vec<u8> {
    use tidepool::index::vector::{ann, coldivf, distance::Metric};
    let v = v2_cold_segment_vectors();
    let mut b = SegmentBuilder::new(IdType::U64, Some(4)).with_raw_docs();
    for (row, x) in v.chunks_exact(4).enumerate() {
        let d = Document {
            id: DocId::U64(row as u64 * 3),
            vector: Some(x.to_vec().into()),
            attrs: AttrMap::new(),
        };
        b.push(&d).unwrap();
    }
    let params = ann::AnnParams { nlist: 4, ..ann::AnnParams::default() };
    let ann_bytes = ann::build(&v, 4, Metric::EuclideanSquared, &params);
    let cold = coldivf::build(&ann::AnnIndex::open(&ann_bytes).unwrap(), &v, 4).unwrap();
    b.add_section(SECTION_ANN_INDEX, ann_bytes);
    b.add_section(SECTION_COLD_IVF, cold);
    b.finish().unwrap()
}

/// 300 rows with string ids and attributes, with range checksums (kind 22).
fn v2_ranges_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::String, None).with_raw_docs().with_range_checksums();
    for i in 0..300u32 {
        let mut attrs = AttrMap::new();
        attrs.insert("body".to_owned(), Value::Str(format!("row {i} ").repeat(20)));
        b.push(&Document { id: DocId::Str(format!("k{i:04}")), vector: None, attrs }).unwrap();
    }
    b.finish().unwrap()
}

/// Every row's attribute bytes, read by range and verified chunk by chunk, decode to what was
/// written.
#[test]
fn v2_ranges_segment_fixture_verifies_ranged_reads() {
    use tidepool::format::segment::{decode_row_attributes, RangeChecksums, SECTION_RANGE_CHECKSUMS};
    let bytes = read_fixture("v2", "segment_ranges.seg");
    assert_eq!(v2_ranges_segment(), bytes, "the encoder is canonical");
    let seg = Segment::open(Bytes::from(bytes.clone())).unwrap();
    let sums = RangeChecksums::decode(seg.section(SECTION_RANGE_CHECKSUMS).unwrap()).unwrap();
    let docs = section_table(&bytes).unwrap().into_iter().find(|s| s.kind == SECTION_DOCS).unwrap();
    let off = |r: usize| {
        let at = docs.offset as usize + 8 * r;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    let data = docs.offset + 8 * 301;
    for row in [0usize, 150, 299] {
        let want = data + off(row)..data + off(row + 1);
        let wide = sums.widen(want.clone()).unwrap();
        let got = &bytes[wide.start as usize..wide.end as usize];
        sums.verify(wide.start, got).unwrap();
        let cut = &got[(want.start - wide.start) as usize..(want.end - wide.start) as usize];
        assert_eq!(decode_row_attributes(cut).unwrap(), seg.attrs(row).unwrap());
    }
}

#[test]
fn v2_current_fixture_reads_back_with_its_manifest() {
    let bytes = read_fixture("v2", "CURRENT");
    assert_eq!(decode_current_full(&bytes), Ok((7, Some(v2_manifest()))));
    assert_eq!(decode_current(&bytes), Ok(7));
    // Today's encoder embeds a version 3 manifest, which reads back the same.
    let again = encode_current_with_manifest(&v2_manifest());
    assert_ne!(again, bytes, "the embedded manifest moved to version 3");
    assert_eq!(decode_current_full(&again), Ok((7, Some(v2_manifest()))));
    // The version-1 fixture still reads (no manifest).
    assert_eq!(decode_current_full(&read_fixture("v1", "CURRENT")), Ok((7, None)));
}

#[test]
fn v2_manifest_with_section_ranges_reads_back() {
    let bytes = read_fixture("v2", "manifest.json");
    assert_eq!(Manifest::decode(&bytes).unwrap(), v2_manifest());
    let again = v2_manifest().try_encode().unwrap();
    assert!(again.starts_with(b"{\"magic\":\"tidepool.manifest\",\"format_version\":3,"));
    assert_eq!(Manifest::decode(&again).unwrap(), v2_manifest());
}

/// Ranged reads of the fixture segment (section table → ids section, cold IVF head, lists)
/// give back the rows and vectors it was built from.
#[test]
fn v2_cold_segment_fixture_reads_by_range() {
    use tidepool::index::vector::coldivf::ColdHead;
    let bytes = read_fixture("v2", "segment_cold.seg");
    // Its ANN section is version 1 (before calibration): today's encoder writes version 2, so
    // the fixture is no longer what it encodes; it must still open, uncalibrated.
    assert_ne!(v2_cold_segment(), bytes, "the ANN section moved to version 2");
    let seg = Segment::open(Bytes::from(bytes.clone())).unwrap();
    assert_eq!(section_table(&bytes).unwrap(), seg.section_infos());
    let table = section_table(&bytes).unwrap();
    let at = |kind: u16| table.iter().find(|s| s.kind == kind).unwrap().clone();
    let ids = at(SECTION_IDS);
    let ids = IdsSection::parse(
        Bytes::copy_from_slice(&bytes[ids.offset as usize..(ids.offset + ids.len) as usize]),
        IdType::U64,
        64,
    )
    .unwrap();
    let cold = at(SECTION_COLD_IVF);
    let section = &bytes[cold.offset as usize..(cold.offset + cold.len) as usize];
    let head = ColdHead::parse(section).unwrap();
    assert_eq!((head.rows(), head.dim(), head.nlist()), (64, 4, 4));
    let ann = at(tidepool::format::segment::SECTION_ANN_INDEX);
    let ann = tidepool::index::vector::ann::AnnIndex::open(
        &bytes[ann.offset as usize..(ann.offset + ann.len) as usize],
    )
    .unwrap();
    assert!(!ann.calibration().is_calibrated());
    assert_eq!(ann.effort(0.99), Some((ann.default_nprobe() as u32, 40)), "stored defaults");
    let v = v2_cold_segment_vectors();
    let mut seen = 0;
    for c in 0..head.nlist() {
        let r = head.list_range(c);
        let list = head.open_list(c, &section[r.start as usize..r.end as usize]).unwrap();
        for (row, x) in list.rows.iter().zip(list.vectors.chunks_exact(4)) {
            assert_eq!(x, &v[*row as usize * 4..*row as usize * 4 + 4]);
            assert_eq!(ids.id(*row as usize), Some(DocId::U64(u64::from(*row) * 3)));
            seen += 1;
        }
    }
    assert_eq!(seen, 64);
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v2_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v2");
    std::fs::create_dir_all(&dir).unwrap();
    // CURRENT and manifest.json are frozen: today's encoder writes manifest version 3 (v8).
    let files: Vec<(&str, Vec<u8>)> =
        vec![("segment_cold.seg", v2_cold_segment()), ("segment_ranges.seg", v2_ranges_segment())];
    write_missing(&dir, files);
}

/// Vectors of the version-3 fixtures: splitmix-derived, no libm (the same bits everywhere).
fn v3_vectors(rows: usize, dim: usize) -> Vec<f32> {
    (0..(rows * dim) as u64)
        .map(|i| {
            let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z >> 40) as f32 / (1u32 << 24) as f32) - 0.5
        })
        .collect()
}

/// The calibrated sections: IVF version 2 (euclidean) and graph version 2 (cosine).
fn v3_sections() -> (Vec<u8>, Vec<u8>) {
    use tidepool::index::vector::{ann, distance::Metric, graph};
    let v = v3_vectors(256, 8);
    (
        ann::build(&v, 8, Metric::EuclideanSquared, &ann::AnnParams::default()),
        graph::build(
            &v,
            8,
            Metric::CosineDistance,
            &graph::GraphParams { code: graph::GraphCode::Sq8, ..Default::default() },
        ),
    )
}

/// Decodes a frozen calibrated IVF and graph pair and checks its records count `queries`.
fn calibrated_pair_reads_back(version: &str, queries: u16) -> (Vec<u8>, Vec<u8>) {
    use tidepool::index::vector::{ann::AnnIndex, graph::GraphIndex};
    let (ivf, graph) = (read_fixture(version, "ann_ivf.bin"), read_fixture(version, "graph.bin"));
    let a = AnnIndex::open(&ivf).unwrap();
    let g = GraphIndex::open(Bytes::from(graph.clone())).unwrap();
    for cal in [a.calibration(), g.calibration()] {
        assert!(cal.is_calibrated() && cal.queries == queries, "{version}: {cal:?}");
    }
    assert_eq!(g.effort(0.5), Some(g.calibration().rungs[0].effort));
    (ivf, graph)
}

/// Invariant: the calibrated IVF and graph sections (version 2 of each) written by the first
/// calibration (own rows only, 128 queries here) decode with their calibration record.
#[test]
fn v3_calibrated_vector_sections_read_back() {
    calibrated_pair_reads_back("v3", 128);
}

/// Invariant: the sections calibrated on own rows and rows perturbed by |row − mean|
/// (2026-11-23; 128 rows, 256 queries) decode with their record.
#[test]
fn v5_calibration_with_perturbed_queries_reads_back() {
    calibrated_pair_reads_back("v5", 256);
}

/// Invariant: the sections written 2026-11-24 (rows perturbed by their own 10th-neighbour
/// radius, storage-format 11.6; the graph linked with in-link slack, 11.5) decode with a record
/// counting both kinds of queries and no reach (bytes 44..48 zero: they never escalate), and
/// equal today's encoders' output but for the reach.
#[test]
fn v6_local_perturbation_and_link_slack_read_back() {
    let (ivf, graph) = calibrated_pair_reads_back("v6", 256);
    let g = tidepool::index::vector::graph::GraphIndex::open(Bytes::from(graph.clone())).unwrap();
    assert_eq!(g.calibration().reach(), None);
    let (ivf_now, graph_now) = v3_sections();
    assert_eq!(without_reach(&ivf_now, IVF_CALIB_AT), ivf);
    assert_eq!(without_reach(&graph_now, GRAPH_CALIB_AT), graph);
}

/// Where the calibration record sits in an IVF section (version 2) and in a graph section
/// (versions 2 and 3), and where its reach sits in it (storage-format 11.1, 11.5, 11.6).
const IVF_CALIB_AT: usize = 192;
const GRAPH_CALIB_AT: usize = 64;
const REACH_AT: usize = 44;

/// A section's bytes with its record's reach zeroed and its crc32c resealed (both kinds keep it
/// at 56, over bytes [0, 56) ++ [64, len)): what the same build wrote before the reach existed.
fn without_reach(section: &[u8], calib_at: usize) -> Vec<u8> {
    let mut b = section.to_vec();
    b[calib_at + REACH_AT..calib_at + REACH_AT + 4].fill(0);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[..56]), &b[64..]);
    b[56..60].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Invariant: the current encoders are canonical — the same input gives these bytes — and the
/// records carry the reach (2026-11-26, storage-format 11.6): a finite positive distance, which a
/// search of the sections reads back as the bound it escalates beyond.
#[test]
fn v16_calibration_reach_is_canonical() {
    use tidepool::index::vector::{ann::AnnIndex, graph::GraphIndex};
    let pair = calibrated_pair_reads_back("v16_reach", 256);
    assert_eq!(v3_sections(), pair, "the encoders are canonical");
    let rabitq = read_fixture("v16_reach", "graph_rabitq.bin");
    assert_eq!(v15_graph(), rabitq, "the encoder is canonical");
    let a = AnnIndex::open(&pair.0).unwrap();
    let g = GraphIndex::open(Bytes::from(pair.1)).unwrap();
    let r = GraphIndex::open(Bytes::from(rabitq)).unwrap();
    for cal in [a.calibration(), g.calibration(), r.calibration()] {
        let reach = cal.reach().expect("stored");
        assert!(reach.is_finite() && reach > 0.0, "{cal:?}");
        assert!(cal.beyond_reach(reach * 1.01) && !cal.beyond_reach(reach));
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v16_reach_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v16_reach");
    std::fs::create_dir_all(&dir).unwrap();
    let (ivf, graph) = v3_sections();
    write_missing(&dir, vec![("ann_ivf.bin", ivf), ("graph.bin", graph), ("graph_rabitq.bin", v15_graph())]);
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v6_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    // Older pairs stay as their builds wrote them; the current encoders' output of the same
    // input is the version-6 pair.
    let dir = fixture_dir("v6");
    std::fs::create_dir_all(&dir).unwrap();
    let (ivf, graph) = v3_sections();
    write_missing(&dir, vec![("ann_ivf.bin", ivf), ("graph.bin", graph)]);
}

/// Bits per dimension of the frozen version-3 graph fixture.
const V15_BITS: u32 = 1;

/// The version-3 graph section (RaBitQ codes) of the version-3 fixtures' input.
fn v15_graph() -> Vec<u8> {
    use tidepool::index::vector::{distance::Metric, graph};
    let params =
        graph::GraphParams { code: graph::GraphCode::RaBitQ { bits: V15_BITS }, ..Default::default() };
    graph::build(&v3_vectors(256, 8), 8, Metric::CosineDistance, &params)
}

/// Invariant: the graph section version 3 (2026-11-25, `tests/fixtures/v15/graph_rabitq.bin`:
/// RaBitQ traversal codes, code kind byte 1) reads back calibrated over its ladder, the encoder
/// is canonical, and after a full-depth exact rerank it answers like the version-2 graph of the
/// same input (the same links); version 2 (8-bit codes) is still what `GraphCode::Sq8` writes.
#[test]
fn v15_graph_with_rabitq_codes_reads_back() {
    use tidepool::index::vector::graph::{
        GraphCode, GraphIndex, GraphParams, GraphSearchParams, PLANES_LADDER,
    };
    let bytes = read_fixture("v15", "graph_rabitq.bin");
    assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
    assert_eq!((bytes[17], u32::from(bytes[18])), (1, V15_BITS));
    let g = GraphIndex::open(Bytes::from(bytes.clone())).unwrap();
    assert_eq!((g.rows(), g.dim(), g.code_bits()), (256, 8, V15_BITS));
    let cal = g.calibration();
    assert!(cal.is_calibrated() && cal.queries == 256, "{cal:?}");
    assert!(cal.rungs.iter().zip(PLANES_LADDER).all(|(r, ef)| r.effort == ef));
    assert_eq!(g.calibration().reach(), None, "written before the reach");
    assert_eq!(without_reach(&v15_graph(), GRAPH_CALIB_AT), bytes, "the encoder, but for the reach");
    let v = v3_vectors(256, 8);
    let sq8 = tidepool::index::vector::graph::build(
        &v,
        8,
        tidepool::index::vector::distance::Metric::CosineDistance,
        &GraphParams { code: GraphCode::Sq8, ..Default::default() },
    );
    assert_eq!(&sq8[8..12], &2u32.to_le_bytes());
    let old = GraphIndex::open(Bytes::from(sq8)).unwrap();
    let p = GraphSearchParams { ef: 256, rerank: 256 };
    for q in v.chunks_exact(8).step_by(37) {
        assert_eq!(g.search(&v, q, 10, None, &p), old.search(&v, q, 10, None, &p));
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v15_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v15");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("graph_rabitq.bin", v15_graph())]);
}

/// The version-3 IVF section (lists only, scored with the graph's codes) of the version-3
/// fixtures' input, and the graph (8-bit codes, cosine) it names.
fn v16_sections() -> (Vec<u8>, Vec<u8>) {
    use tidepool::index::vector::{ann, distance::Metric, graph};
    let v = v3_vectors(256, 8);
    let g = graph::build(
        &v,
        8,
        Metric::CosineDistance,
        &graph::GraphParams { code: graph::GraphCode::Sq8, ..Default::default() },
    );
    let opened = graph::GraphIndex::open(Bytes::from(g.clone())).unwrap();
    (ann::build_lists(&v, 8, Metric::CosineDistance, &ann::AnnParams::default(), &opened), g)
}

/// Invariant: the IVF section version 3 (2026-11-26, `tests/fixtures/v16/ann_lists.bin`: kind
/// byte 2, no codes, the crc of `v6/graph.bin` at offset 40) reads back calibrated, attaches the
/// graph it names and no other, the encoder is canonical, and probing every list answers like the
/// exact search whether scored by the graph's codes (full-depth rerank) or exactly. The version-2
/// sections (v3, v5, v6 fixtures) still read with codes of their own.
#[test]
fn v16_ivf_lists_scored_with_the_graph_read_back() {
    use tidepool::index::vector::ann::{exact, AnnIndex, SearchParams, SharedAnnIndex};
    use tidepool::index::vector::distance::Metric;
    use tidepool::index::vector::graph::GraphIndex;
    // The graph it names is the version-6 fixture's (the same input and encoder).
    let (ivf, graph) = (read_fixture("v16", "ann_lists.bin"), read_fixture("v6", "graph.bin"));
    assert_eq!((&ivf[8..12], ivf[17]), (&3u32.to_le_bytes()[..], 2));
    let g = GraphIndex::open(Bytes::from(graph.clone())).unwrap();
    assert_eq!(&ivf[40..44], &g.stored_crc().to_le_bytes());
    let shared = SharedAnnIndex::open(Bytes::from(ivf.clone())).unwrap();
    assert!(shared.wants_graph());
    let other = GraphIndex::open(Bytes::from(read_fixture("v15", "graph_rabitq.bin"))).unwrap();
    assert!(!shared.clone().with_graph(other).has_graph(), "another graph is not attached");
    let ix = AnnIndex::open(&ivf).unwrap();
    assert!(ix.lists_only() && ix.calibration().is_calibrated() && ix.calibration().queries == 256);
    assert_eq!((ix.rows(), ix.dim(), ix.metric()), (256, 8, Metric::CosineDistance));
    // Written before the calibration reach (v16_reach): today's encoders' bytes but for it.
    // The IVF names its graph by crc: today's graph (with its reach) has another one.
    let (ivf_now, graph_now) = v16_sections();
    let now_graph_crc = GraphIndex::open(Bytes::from(graph_now.clone())).unwrap().stored_crc();
    assert_eq!(&ivf_now[40..44], &now_graph_crc.to_le_bytes(), "today's IVF names today's graph");
    let mut ivf_then = ivf_now.clone();
    ivf_then[40..44].copy_from_slice(&ivf[40..44]);
    assert_eq!(without_reach(&ivf_then, IVF_CALIB_AT), ivf, "the IVF encoder is canonical");
    assert_eq!(without_reach(&graph_now, GRAPH_CALIB_AT), graph, "the graph encoder is canonical");
    assert!(AnnIndex::open(&ivf_now).unwrap().calibration().reach().is_some(), "today's carries a reach");
    let v = v3_vectors(256, 8);
    let all = SearchParams { nprobe: ix.nlist() as u32, rerank: 256, ..SearchParams::default() };
    let scored = AnnIndex::open(&ivf).unwrap().with_graph(&g);
    assert!(scored.has_graph() && !ix.has_graph());
    let rows = |r: &[(u32, f32)]| r.iter().map(|x| x.0).collect::<Vec<_>>();
    for q in v.chunks_exact(8).step_by(37) {
        let want = rows(&exact(&v, 8, Metric::CosineDistance, q, 10, None));
        assert_eq!(rows(&ix.search(&v, q, 10, None, &all)), want);
        assert_eq!(rows(&scored.search(&v, q, 10, None, &all)), want);
    }
    for version in ["v3", "v5", "v6"] {
        let bytes = read_fixture(version, "ann_ivf.bin");
        let old = AnnIndex::open(&bytes).unwrap();
        assert!(!old.lists_only() && old.calibration().is_calibrated(), "{version}");
        assert_eq!(old.search(&v, &v[..8], 10, None, &SearchParams::default()).len(), 10);
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v16_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v16");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("ann_lists.bin", v16_sections().0)]);
}

// ---------------------------------------------------------------------------------------------
// Manifest version 2: the schema stored once per change, in a schema object (4.5).

/// A schema too large to stay inline: 60 attributes with long names (turbopuffer's shape, as
/// schema objects of version 1 stored it).
fn v4_schema_json() -> serde_json::Map<String, serde_json::Value> {
    let mut schema = serde_json::Map::new();
    for i in 0..60 {
        schema.insert(
            format!("attribute_with_a_rather_long_descriptive_name_number_{i:03}"),
            json!({"type": "string", "filterable": true}),
        );
    }
    schema.insert("vector".into(), json!({"type": "[4]f32", "ann": true}));
    schema
}

/// The typed content of [`v4_schema_json`] (what the API's parser made of it when the fixture
/// was written).
fn v4_schema() -> Schema {
    parse_schema(&serde_json::Value::Object(v4_schema_json())).unwrap()
}

const V4_SCHEMA_KEY: &str =
    "acme/search/namespaces/docs/schemas/00000000000000000007-0123456789abcdef0123456789abcdef.json";

/// A JSON envelope (storage-format.md 1.3), spelled out here: the encoders of the legacy
/// versions are gone.
fn legacy_envelope(magic: &str, version: u64, body: &str) -> Vec<u8> {
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{{\"magic\":\"{magic}\",\"format_version\":{version},\"crc32c\":{crc},\"body\":{body}}}\n")
        .into_bytes()
}

/// The schema object of [`v4_manifest`] (version 1, the turbopuffer shape).
fn v4_schema_object() -> Vec<u8> {
    legacy_envelope("tidepool.schema", 1, &serde_json::to_string(&v4_schema_json()).unwrap())
}

/// The v1 manifest with a large schema, stored in a schema object.
fn v4_manifest() -> Manifest {
    let mut m = v1_manifest();
    m.schema = v4_schema();
    m.schema_ref = Some(schema_object_ref(V4_SCHEMA_KEY.into(), &v4_schema_object()));
    m
}

#[test]
fn v4_manifest_names_its_schema_object_and_both_read_back() {
    let (bytes, object) = (read_fixture("v4", "manifest.json"), read_fixture("v4", "schema.json"));
    assert!(bytes.starts_with(b"{\"magic\":\"tidepool.manifest\",\"format_version\":2,"));
    assert_eq!(v4_schema_object(), object, "the fixture is the legacy encoding of v4_schema_json");
    let mut m = Manifest::decode(&bytes).unwrap();
    assert!(m.schema_unresolved(), "a version 2 manifest carries no schema inline");
    let r = m.schema_ref.clone().unwrap();
    assert_eq!(r.key, V4_SCHEMA_KEY);
    m.schema = decode_schema_object(&r, &object).unwrap();
    assert_eq!(m, v4_manifest());
    // Re-encoded, it is a version 3 manifest that still names the version 1 object.
    let again = Manifest::decode(&v4_manifest().try_encode().unwrap()).unwrap();
    assert_eq!(again.schema_ref, m.schema_ref);
    assert!(schema_json(&v4_schema()).len() > SCHEMA_INLINE_MAX_BYTES, "still too large to inline");
    assert_eq!(m.object_keys().last().map(String::as_str), Some(V4_SCHEMA_KEY));
    // Any damage to the object is refused, not misread.
    let mut bad = object.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    assert!(decode_schema_object(&r, &bad).is_err());
    assert!(decode_schema_object(&r, &object[..object.len() - 3]).is_err());
    // The version 1 fixture, schema inline, still reads with no reference.
    let v1 = Manifest::decode(&read_fixture("v1", "manifest.json")).unwrap();
    assert!(v1.schema_ref.is_none() && !v1.schema_unresolved());
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v4_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v4");
    std::fs::create_dir_all(&dir).unwrap();
    // manifest.json is frozen: today's encoder writes manifest version 3 (v8).
    write_missing(&dir, vec![("schema.json", v4_schema_object())]);
}

// ---------------------------------------------------------------------------------------------
// Manifest version 3 and schema object version 2: the schema in tidepool's own encoding
// (`storage-format.md` 4.2, 4.5).

/// Every attribute type and option, `extra` values of every JSON kind, and options the API
/// refuses today (an unknown tokenizer, a `k1` below 0, a target recall below 0.5): storage
/// keeps them whatever the API accepts.
fn v8_schema() -> Schema {
    use tidepool::schema::{AttrSchema, AttrType, FullTextSearch, ScalarType};
    let mut s = Schema::new();
    let scalars = [
        ScalarType::String,
        ScalarType::Int,
        ScalarType::Uint,
        ScalarType::Float,
        ScalarType::Uuid,
        ScalarType::Datetime,
        ScalarType::Bool,
    ];
    for (i, t) in scalars.into_iter().enumerate() {
        let mut scalar = AttrSchema::of(AttrType::Scalar(t));
        scalar.filterable = [None, Some(true), Some(false)][i % 3];
        s.insert(format!("s{i}"), scalar);
        s.insert(format!("a{i}"), AttrSchema::of(AttrType::Array(t)));
    }
    let mut title = AttrSchema::of(AttrType::Scalar(ScalarType::String));
    title.full_text_search = Some(FullTextSearch {
        tokenizer: "word_v3".into(),
        language: "german".into(),
        stemming: true,
        remove_stopwords: false,
        case_sensitive: true,
        ascii_folding: true,
        k1: 1.5,
        b: 0.6,
        max_token_length: 64,
        index_prefixes: false,
    });
    title.filterable = Some(true);
    s.insert("title".into(), title);
    let mut odd = AttrSchema::of(AttrType::Array(ScalarType::String));
    odd.full_text_search =
        Some(FullTextSearch { tokenizer: "word_v9".into(), k1: -1.0, ..FullTextSearch::default() });
    s.insert("odd".into(), odd);
    let mut vector = AttrSchema::of(AttrType::Vector { dim: 4, f16: false });
    vector.ann = true;
    vector.extra.insert("target_recall".into(), json!(0.25));
    s.insert("vector".into(), vector);
    s.insert("half".into(), AttrSchema::of(AttrType::Vector { dim: 2, f16: true }));
    s.insert("sparse".into(), AttrSchema::of(AttrType::Sparse { f16: true }));
    let mut kinds = AttrSchema::of(AttrType::Sparse { f16: false });
    for (k, v) in [
        ("null", json!(null)),
        ("bool", json!(false)),
        ("int", json!(-7)),
        ("u64", json!(u64::MAX)),
        ("float", json!(2.5e-8)),
        ("string", json!("ünïcode \"quoted\"")),
        ("array", json!([1, "x", [null]])),
        ("object", json!({"b": {"c": [true]}, "a": 1})),
    ] {
        kinds.extra.insert(k.into(), v);
    }
    s.insert("kinds".into(), kinds);
    s
}

/// The v1 manifest with [`v8_schema`] inline (manifest version 3).
fn v8_manifest() -> Manifest {
    let mut m = v1_manifest();
    m.schema = v8_schema();
    m
}

/// [`v8_schema`] and enough long-named attributes to need a schema object.
fn v8_large_schema() -> Schema {
    let mut s = v8_schema();
    for (name, a) in v4_schema() {
        s.insert(name, a);
    }
    s
}

const V8_SCHEMA_KEY: &str =
    "acme/search/namespaces/docs/schemas/00000000000000000007-89abcdef0123456789abcdef01234567.json";

/// The schema object (version 2) of [`v8_manifest_ref`].
fn v8_schema_object() -> Vec<u8> {
    encode_schema_object(&schema_json(&v8_large_schema()))
}

/// The v1 manifest naming [`v8_schema_object`] (manifest version 3).
fn v8_manifest_ref() -> Manifest {
    let mut m = v1_manifest();
    m.schema = v8_large_schema();
    m.schema_ref = Some(schema_object_ref(V8_SCHEMA_KEY.into(), &v8_schema_object()));
    m
}

#[test]
fn v8_manifest_with_its_schema_inline_reads_back() {
    let bytes = read_fixture("v8", "manifest.json");
    assert!(bytes.starts_with(b"{\"magic\":\"tidepool.manifest\",\"format_version\":3,"));
    let m = Manifest::decode(&bytes).unwrap();
    assert_eq!(m, v8_manifest());
    assert!(m.schema_ref.is_none() && !m.schema_unresolved());
    assert_eq!(m.schema["kinds"].extra["u64"].as_u64(), Some(u64::MAX), "numbers kept exactly");
    assert_eq!(m.schema["odd"].full_text_search.as_ref().unwrap().tokenizer, "word_v9");
    assert!(
        parse_schema(&tidepool::schema::schema_to_json(&m.schema)).is_err(),
        "the API refuses this schema today; storage reads it"
    );
    assert_eq!(v8_manifest().try_encode().unwrap(), bytes, "the encoder is canonical");
    // Embedded in a CURRENT hint it reads back the same.
    assert_eq!(decode_current_full(&encode_current_with_manifest(&m)), Ok((7, Some(v8_manifest()))));
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    assert!(Manifest::decode(&bad).is_err());
}

#[test]
fn v8_manifest_names_its_schema_object_and_both_read_back() {
    let (bytes, object) = (read_fixture("v8", "manifest_ref.json"), read_fixture("v8", "schema.json"));
    assert!(bytes.starts_with(b"{\"magic\":\"tidepool.manifest\",\"format_version\":3,"));
    assert!(object.starts_with(b"{\"magic\":\"tidepool.schema\",\"format_version\":2,"));
    assert!(schema_json(&v8_large_schema()).len() > SCHEMA_INLINE_MAX_BYTES);
    let mut m = Manifest::decode(&bytes).unwrap();
    assert!(m.schema_unresolved());
    let r = m.schema_ref.clone().unwrap();
    assert_eq!(r.key, V8_SCHEMA_KEY);
    m.schema = decode_schema_object(&r, &object).unwrap();
    assert_eq!(m, v8_manifest_ref());
    assert_eq!(v8_manifest_ref().try_encode().unwrap(), bytes, "the encoder is canonical");
    assert_eq!(v8_schema_object(), object, "the schema object encoder is canonical");
    for n in [0, object.len() / 2, object.len() - 2] {
        assert!(decode_schema_object(&r, &object[..n]).is_err());
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v8_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v8");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(
        &dir,
        vec![
            ("manifest.json", v8_manifest().try_encode().unwrap()),
            ("manifest_ref.json", v8_manifest_ref().try_encode().unwrap()),
            ("schema.json", v8_schema_object()),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// WAL batches in tidepool's own encodings (WAL_FLAG_OWN_ENCODINGS, storage-format 3.1, 3.2).

fn leaf(attr: &str, op: Op, operand: LeafOperand) -> Filter {
    Filter::Cond(Condition::new(attr, op, operand).unwrap())
}

/// One leaf of every operator and operand kind, and a 5,000-byte glob
/// pattern (beyond the API's 4 KiB): what a v7 batch must keep reading.
fn v7_every_leaf() -> Filter {
    let mut leaves = match filter(json!(["And", [
        ["a", "Eq", 1], ["a", "NotEq", null], ["t", "In", ["x", "y"]], ["t", "NotIn", [1, 2.5]],
        ["n", "Lt", -3], ["n", "Lte", 18446744073709551615u64], ["n", "Gt", 0.5], ["s", "Gte", "m"],
        ["t", "AnyLt", 1], ["t", "AnyLte", 2], ["t", "AnyGt", 3], ["t", "AnyGte", 4],
        ["t", "Contains", "x"], ["t", "NotContains", true], ["t", "ContainsAny", ["x"]],
        ["t", "NotContainsAny", ["y"]], ["s", "Glob", "a*[b-c]?"], ["s", "NotGlob", "\\*"],
        ["s", "IGlob", "HÉ*"], ["s", "NotIGlob", "[!a]*"], ["s", "Regex", "^a.c$"],
        ["s", "Fuzzy", "helo", {"max_edit_distance": 2, "case_sensitive": false}],
        ["b", "ContainsAllTokens", "hello world"], ["b", "ContainsAnyToken", ["new", "york"]],
        ["b", "ContainsTokenSequence", "new york"], ["a", "Eq", {"$ref_new": "a"}],
        ["Or", []], ["Not", ["And", []]]
    ]])) {
        Filter::And(leaves) => leaves,
        other => vec![other],
    };
    leaves.push(leaf("s", Op::Glob, LeafOperand::Pattern("g".repeat(5000))));
    Filter::And(leaves)
}

/// A schema update with every option kind, including `extra` JSON.
fn v7_schema() -> Schema {
    let mut s = v1_title_schema();
    let vector = AttrSchema {
        ann: true,
        extra: json!({"target_recall": 0.9, "x": [1, -2, 2.5, "s", null, {"k": false}]})
            .as_object()
            .cloned()
            .unwrap(),
        ..AttrSchema::of(AttrType::Vector { dim: 4, f16: true })
    };
    s.insert("vector".into(), vector);
    s.insert(
        "flags".into(),
        AttrSchema { filterable: Some(false), ..AttrSchema::of(AttrType::Array(ScalarType::Uint)) },
    );
    s.insert("sp".into(), AttrSchema::of(AttrType::Sparse { f16: false }));
    s
}

fn v7_batch() -> WalBatch {
    let req = RequestRecord {
        idempotency_key: Some("idem-7".into()),
        settings: NamespaceSettings {
            distance_metric: Some(DistanceMetric::CosineDistance),
            schema: Some(v7_schema()),
        },
        ops: WriteOps {
            upserts: vec![Document::new(DocId::U64(1))],
            upsert_condition: Some(v7_every_leaf()),
            patches: vec![Patch { id: DocId::U64(1), attrs: attrs(&[("s", Value::Str("p".into()))]) }],
            patch_condition: Some(filter(json!(["s", "Eq", "old"]))),
            deletes: vec![DocId::U64(1)],
            delete_condition: Some(leaf("a", Op::Gte, LeafOperand::Value(Operand::RefNew("b".into())))),
            delete_by_filter: Some(filter(json!(["n", "Gt", 100]))),
            patch_by_filter: Some(PatchByFilter {
                filter: filter(json!(["Or", [["a", "Eq", 1], ["c", "In", ["x", "y"]]]])),
                attrs: attrs(&[("flag", Value::Bool(true))]),
            }),
        },
        counts: RowCounts { upserted: 1, patched: 2, deleted: 3 },
    };
    WalBatch {
        seq: 70,
        created_at_ms: 1_764_000_000_000,
        requests: vec![req],
        flags: WAL_FLAG_DATETIME_INSTANTS,
    }
}

#[test]
fn v7_wal_batch_fixture_reads_back() {
    let bytes = read_fixture("v7", "wal_batch_own_encodings.bin");
    let h = peek_header(&bytes).unwrap();
    assert_eq!((h.version, h.seq, h.flags), (1, 70, WAL_FLAG_DATETIME_INSTANTS | WAL_FLAG_OWN_ENCODINGS));
    assert_eq!(WalBatch::decode(&bytes).unwrap(), v7_batch());
    assert_eq!(v7_batch().try_encode().unwrap(), bytes, "the encoder is canonical");
    let mut bad = bytes.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x04;
    assert!(matches!(WalBatch::decode(&bad), Err(FormatError::ChecksumMismatch { .. })));
}

/// The legacy reader builds exactly what the API's parsers build from the
/// JSON the old encoder wrote (filters in their canonical form, schemas as
/// the client sent them).
#[test]
fn legacy_reader_agrees_with_the_api_parsers() {
    let Filter::And(leaves) = v7_every_leaf() else { unreachable!() };
    for f in &leaves[..leaves.len() - 1] {
        let json = f.to_json();
        assert_eq!(legacy::decode_filter_json(&json).unwrap(), Filter::parse(&json).unwrap(), "{json}");
    }
    for v in [
        json!({"title": {"type": "string", "full_text_search": true}}),
        json!({"b": {"full_text_search": {"tokenizer": "word_v3", "k1": 1.5, "b": 0.5}, "filterable": true}}),
        json!({"v": {"type": "[8]f32", "ann": true, "target_recall": 0.9}, "t": "[]datetime", "s": "{}f16"}),
        json!({"n": {"type": "int", "filterable": false, "glob": {"x": [1]}}}),
    ] {
        assert_eq!(
            legacy::decode_schema_json(&v).unwrap(),
            tidepool::schema::parse_schema(&v).unwrap(),
            "{v}"
        );
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v7_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v7");
    std::fs::create_dir_all(&dir).unwrap();
    write_missing(&dir, vec![("wal_batch_own_encodings.bin", v7_batch().try_encode().unwrap())]);
}

/// The legacy reader (`format::schema`, manifests v1/v2 and schema objects v1) gives, for
/// whatever the API accepted and the old encoder stored, the typed schema the old read path
/// (the API's parser) made of it.
#[test]
fn the_legacy_schema_reader_agrees_with_the_old_read_path() {
    use tidepool::format::schema::decode_legacy_schema;
    use tidepool::schema::schema_to_json;
    let api_accepted = json!({
        "title": {"type": "string", "filterable": false, "full_text_search": {"tokenizer": "word_v3"}},
        "body": {"full_text_search": true},
        "plain": "[]uuid",
        "when": {"type": "datetime", "filterable": true},
        "vector": {"type": "[4]f32", "ann": true, "target_recall": 0.9},
        "half": {"type": "[2]f16", "ann": null},
        "sparse": {"type": "{}f16", "sparse_knn": {"x": [1, 2]}},
        "ts": {"type": "string", "full_text_search": {"k1": 2, "b": 1, "max_token_length": 7,
            "language": "french", "stemming": true, "remove_stopwords": false,
            "case_sensitive": true, "ascii_folding": true}, "glob": true},
    });
    let typed = parse_schema(&api_accepted).unwrap();
    assert_eq!(decode_legacy_schema(&api_accepted).unwrap(), typed);
    // The old encoder's output (`filterable` and `ann` written out) reads back as the old read
    // path read it.
    for stored in [schema_to_json(&typed), serde_json::Value::Object(v4_schema_json())] {
        assert_eq!(decode_legacy_schema(&stored).unwrap(), parse_schema(&stored).unwrap());
    }
}
