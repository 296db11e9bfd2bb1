//! Format compatibility of named vector values (the attribute value tag 7, *dense*,
//! `storage-format.md` 3.2 and 8.5) and of their index section (kind 23, 11.7):
//! `tests/fixtures/v11/` holds a WAL batch whose upsert, patch and `patch_by_filter` carry
//! dense values beside a schema update declaring them, a segment whose rows hold them, and a
//! named vector index section (`named_index.bin`), written once by `write_v11_fixtures` and
//! never regenerated. They must decode to the content built here, and the encoders must write
//! exactly their bytes (the encoding is canonical).
//!
//! Also guarded: a segment row's named vector is read alone (`dense_attr`) and skipped by the
//! attribute decode that filters use (`attrs_without_dense`); the encoder refuses an empty or
//! non-finite dense value (the decoder's refusals are unit tests of `format/attrs.rs`).
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_dense::write_v11_fixtures`

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::json;
use tidepool::format::segment::{Segment, SegmentBuilder};
use tidepool::format::wal::{WalBatch, WAL_FLAG_DATETIME_INSTANTS};
use tidepool::model::{AttrMap, DocId, Document, IdType, Value};
use tidepool::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};
use tidepool::schema::parse_schema;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v11").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

fn attrs(pairs: &[(&str, Value)]) -> AttrMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn doc(id: u64, vector: Option<Vec<f32>>, pairs: &[(&str, Value)]) -> Document {
    Document { id: DocId::U64(id), vector: vector.map(Into::into), attrs: attrs(pairs) }
}

fn dense(v: &[f32]) -> Value {
    Value::Dense(v.to_vec().into())
}

fn v11_batch() -> WalBatch {
    let schema = parse_schema(&json!({
        "a": {"type": "[2]f32", "ann": {"distance_metric": "euclidean_squared"}},
        "b": {"type": "[3]f16", "ann": true},
    }))
    .unwrap();
    let req = RequestRecord {
        idempotency_key: None,
        settings: NamespaceSettings { distance_metric: None, schema: Some(schema) },
        ops: WriteOps {
            upserts: vec![doc(
                1,
                Some(vec![0.5, 0.25]),
                &[
                    ("a", dense(&[1.5, -2.0])),
                    ("b", dense(&[f32::MIN_POSITIVE, -0.0, 3.0e38])),
                    ("k", Value::Int(7)),
                ],
            )],
            patches: vec![Patch {
                id: DocId::U64(1),
                attrs: attrs(&[("a", dense(&[3.0, 4.0])), ("b", Value::Null)]),
            }],
            patch_by_filter: Some(PatchByFilter {
                filter: tidepool::filter::Filter::parse(&json!(["k", "Eq", 7])).unwrap(),
                attrs: attrs(&[("a", dense(&[5.0, 6.0]))]),
            }),
            ..WriteOps::default()
        },
        counts: RowCounts { upserted: 1, patched: 2, deleted: 0 },
    };
    WalBatch {
        seq: 110,
        created_at_ms: 1_764_000_000_000,
        requests: vec![req],
        flags: WAL_FLAG_DATETIME_INSTANTS,
    }
}

fn v11_segment_docs() -> Vec<Document> {
    vec![
        doc(
            1,
            Some(vec![1.0, 0.0]),
            &[("a", dense(&[1.0, 2.0])), ("b", dense(&[0.0, 1.0, 0.0])), ("k", Value::Int(1))],
        ),
        doc(2, None, &[("k", Value::Str("no vectors".into()))]),
        doc(3, Some(vec![0.0, 1.0]), &[("a", dense(&[-1.0, 0.5]))]),
    ]
}

fn v11_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::U64, Some(2)).with_raw_docs();
    for d in v11_segment_docs() {
        b.push(&d).unwrap();
    }
    b.finish().unwrap()
}

/// The named index fixture's input: 200 rows of 5 dims, every seventh row without the
/// attribute (zeros), euclidean.
fn v11_named_input() -> (Vec<f32>, Vec<bool>) {
    let present: Vec<bool> = (0..200).map(|r| r % 7 != 3).collect();
    let vectors = (0..200 * 5)
        .map(|i| if present[i / 5] { ((i * 37) % 101) as f32 / 10.0 - 5.0 } else { 0.0 })
        .collect();
    (vectors, present)
}

fn v11_named_index() -> Vec<u8> {
    use tidepool::index::vector::{distance::Metric, graph::GraphCode, graph::GraphParams, named};
    let (vectors, present) = v11_named_input();
    // The fixture's graph holds 8-bit codes (graph section version 2; version 4 since stop 49).
    let params = GraphParams { threads: 1, code: GraphCode::Sq8, ..GraphParams::default() };
    named::build("title_vec", 5, Metric::EuclideanSquared, &vectors, &present, &params)
}

#[test]
fn v11_named_index_section_reads_back() {
    use tidepool::index::vector::{distance::Metric, named::NamedIndex};
    let bytes = read_fixture("named_index.bin");
    // Written with a version-2 graph (storage-format 11.5); today's builder writes the same
    // header (but the graph's length), name, bitmap and vectors, and a version-4 graph of the
    // same links (whose bytes `format_compat_vectors` freezes: v17_packed).
    let now = v11_named_index();
    let graph_at = |b: &[u8]| u64::from_le_bytes(b[40..48].try_into().unwrap()) as usize;
    let at = graph_at(&bytes);
    assert_eq!(
        (graph_at(&now), &now[..48], &now[56..at]),
        (at, &bytes[..48], &bytes[56..at]),
        "the builder is canonical"
    );
    use tidepool::index::vector::graph::GraphIndex;
    let then = GraphIndex::open(Bytes::copy_from_slice(&bytes[at..])).unwrap();
    let today = GraphIndex::open(Bytes::copy_from_slice(&now[at..])).unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for r in 0..200 {
        x.clear();
        y.clear();
        then.neighbours(r, &mut x);
        today.neighbours(r, &mut y);
        assert_eq!(x, y, "row {r}: the same graph");
    }
    let ix = NamedIndex::open(Bytes::from(bytes)).unwrap();
    let (vectors, present) = v11_named_input();
    assert_eq!(
        (ix.attr(), ix.dim(), ix.rows(), ix.metric()),
        ("title_vec", 5, 200, Metric::EuclideanSquared)
    );
    assert_eq!(ix.vectors(), &vectors[..]);
    assert!((0..200).all(|r| ix.present(r) == present[r]));
    assert_eq!(ix.graph().rows(), 200);
}

#[test]
fn v11_wal_batch_with_dense_values_reads_back() {
    let bytes = read_fixture("wal_batch_dense.bin");
    assert_eq!(WalBatch::decode(&bytes).unwrap(), v11_batch());
    assert_eq!(v11_batch().try_encode().unwrap(), bytes, "the encoder is canonical");
}

#[test]
fn v11_segment_with_dense_values_reads_back() {
    let bytes = read_fixture("segment_dense.seg");
    assert_eq!(v11_segment(), bytes, "the encoder is canonical");
    let seg = Segment::open(Bytes::from(bytes)).unwrap();
    for (row, want) in v11_segment_docs().iter().enumerate() {
        assert_eq!(&seg.doc(row).unwrap(), want, "row {row}");
        for attr in ["a", "b", "k"] {
            let got = seg.dense_attr(row, attr).unwrap();
            let want = match want.attrs.get(attr) {
                Some(Value::Dense(v)) => Some(v.to_vec()),
                _ => None,
            };
            assert_eq!(got, want, "row {row} attribute {attr}");
        }
        let without: AttrMap = want
            .attrs
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Dense(_)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(seg.attrs_without_dense(row).unwrap(), without, "row {row} for filters");
    }
}

#[test]
fn the_encoder_refuses_what_the_decoder_refuses() {
    for bad in [vec![f32::NAN, 1.0], vec![f32::INFINITY, 1.0], vec![]] {
        let mut b = v11_batch();
        b.requests[0].ops.upserts[0].attrs.insert("a".into(), Value::Dense(bad.clone().into()));
        assert!(b.try_encode().is_err(), "{bad:?}");
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v11_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    std::fs::create_dir_all(fixture_path("")).unwrap();
    for (name, bytes) in [
        ("wal_batch_dense.bin", v11_batch().try_encode().unwrap()),
        ("segment_dense.seg", v11_segment()),
        ("named_index.bin", v11_named_index()),
    ] {
        let path = fixture_path(name);
        if path.exists() {
            eprintln!("keeping existing {}", path.display());
            continue;
        }
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
