//! Format compatibility of schemas and of WAL batches in tidepool's own
//! encodings (`storage-format.md` 3.1, 3.2, 4.2, 4.5): every released version
//! stays readable forever (split from `format_compat.rs`).
//!
//! Invariants guarded here:
//! - `tests/fixtures/v4/` holds manifest version 2 (the schema in a schema
//!   object named by `schema_ref`, `storage-format.md` 4.5) and that schema
//!   object, written once by `write_v4_fixtures`.
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
//! - The legacy schema reader agrees with the old read path (the API's parser) on whatever
//!   the API accepted.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_schema::write_v4_fixtures format_compat_schema::write_v7_fixtures format_compat_schema::write_v8_fixtures`

use crate::compat_inputs;
use crate::fixtures;

use compat_inputs::{attrs, filter, v1_manifest, v1_title_schema};
use fixtures::{fixture_dir, read_fixture, write_missing};

use serde_json::json;
use tidepool::filter::{Condition, Filter, LeafOperand, Op, Operand};
use tidepool::format::manifest::{
    decode_current_full, decode_schema_object, encode_current_with_manifest, encode_schema_object,
    schema_json, schema_object_ref, Manifest, SCHEMA_INLINE_MAX_BYTES,
};
use tidepool::format::wal::{
    legacy, peek_header, WalBatch, WAL_FLAG_DATETIME_INSTANTS, WAL_FLAG_OWN_ENCODINGS,
};
use tidepool::format::FormatError;
use tidepool::model::{DistanceMetric, DocId, Document, Value};
use tidepool::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};
use tidepool::schema::{parse_schema, AttrSchema, AttrType, ScalarType, Schema};

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
