//! Format compatibility: every released format version stays readable
//! forever, and the current encoder writes exactly the bytes that
//! `storage-format.md` specifies. This file: WAL batches, manifests, CURRENT,
//! segments and deletion sets (golden bytes, v1 and v2 fixtures); the vector
//! index sections are in `format_compat_vectors.rs`, schema objects and the
//! own encodings of WAL batches in `format_compat_schema.rs`, later additions
//! in the other `format_compat_*.rs` files.
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
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat::write_v1_fixtures format_compat::write_v2_fixtures`

use crate::compat_inputs;
use crate::fixtures;

use bytes::Bytes;
use compat_inputs::{attrs, filter, v1_manifest, v1_title_schema};
use fixtures::{fixture_dir, read_fixture, write_missing};
use serde_json::json;
use tidepool::filter::Filter;
use tidepool::format::manifest::{
    decode_current, decode_current_full, encode_current, encode_current_with_manifest, Manifest,
    ManifestStats, SectionRef, WalRef,
};
use tidepool::format::segment::{
    section_table, DeletionSet, IdsSection, Segment, SegmentBuilder, SECTION_ANN_INDEX, SECTION_COLD_IVF,
    SECTION_DOCS, SECTION_IDS, SECTION_TEXT_INDEX, SECTION_VECTORS, SECTION_VECTOR_ABSENT,
};
use tidepool::format::wal::{peek_header, WalBatch, WAL_HEADER_LEN};
use tidepool::format::FormatError;
use tidepool::model::{AttrMap, DistanceMetric, DocId, Document, IdType, Value};
use tidepool::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};
use tidepool::schema::parse_schema;

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
