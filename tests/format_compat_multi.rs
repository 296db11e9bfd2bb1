//! Format compatibility of multi-vector values (the attribute value tag 8, *multi*, and the
//! schema type tag 5 / kind `multivector`, `storage-format.md` 3.2, 3.2.2, 4.2.1 and 8.5):
//! `tests/fixtures/v12/` holds a WAL batch whose schema update declares a `[][N]f32`
//! attribute with `late_interaction` and whose upsert, patch and `patch_by_filter` carry
//! vector arrays, and a segment whose rows hold them, written once by `write_v12_fixtures`
//! and never regenerated. They must decode to the content built here, and the encoders
//! must write exactly their bytes (the encoding is canonical).
//!
//! Also guarded: a segment row's vector array is read alone (`multi_attr`) and skipped by
//! the attribute decode that filters use (`attrs_without_dense`).
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_multi::write_v12_fixtures`

use std::path::PathBuf;

use bytes::Bytes;
use serde_json::json;
use tidepool::format::segment::{Segment, SegmentBuilder};
use tidepool::format::wal::{WalBatch, WAL_FLAG_DATETIME_INSTANTS};
use tidepool::model::{AttrMap, DocId, Document, IdType, Value};
use tidepool::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};
use tidepool::schema::parse_schema;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v12").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

fn attrs(pairs: &[(&str, Value)]) -> AttrMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn doc(id: u64, pairs: &[(&str, Value)]) -> Document {
    Document { id: DocId::U64(id), vector: None, attrs: attrs(pairs) }
}

fn multi(vs: &[&[f32]]) -> Value {
    Value::Multi(vs.iter().map(|v| v.to_vec()).collect())
}

fn v12_batch() -> WalBatch {
    let schema = parse_schema(&json!({
        "m": {"type": "[][2]f32", "ann": {"late_interaction": true, "distance_metric": "cosine_distance"}},
        "h": "[][3]f16",
    }))
    .unwrap();
    let req = RequestRecord {
        idempotency_key: None,
        settings: NamespaceSettings { distance_metric: None, schema: Some(schema) },
        ops: WriteOps {
            upserts: vec![doc(
                1,
                &[
                    ("h", multi(&[&[f32::MIN_POSITIVE, -0.0, 3.0e38]])),
                    ("k", Value::Int(7)),
                    ("m", multi(&[&[1.5, -2.0], &[0.0, 1.0], &[0.25, 0.5]])),
                ],
            )],
            patches: vec![Patch {
                id: DocId::U64(1),
                attrs: attrs(&[("h", Value::Null), ("m", multi(&[&[3.0, 4.0]]))]),
            }],
            patch_by_filter: Some(PatchByFilter {
                filter: tidepool::filter::Filter::parse(&json!(["k", "Eq", 7])).unwrap(),
                attrs: attrs(&[("m", multi(&[&[5.0, 6.0], &[7.0, 8.0]]))]),
            }),
            ..WriteOps::default()
        },
        counts: RowCounts { upserted: 1, patched: 2, deleted: 0 },
    };
    WalBatch {
        seq: 120,
        created_at_ms: 1_764_050_000_000,
        requests: vec![req],
        flags: WAL_FLAG_DATETIME_INSTANTS,
    }
}

fn v12_segment_docs() -> Vec<Document> {
    vec![
        doc(1, &[("k", Value::Int(1)), ("m", multi(&[&[1.0, 2.0], &[-1.0, 0.5]]))]),
        doc(2, &[("k", Value::Str("no vectors".into()))]),
        doc(3, &[("h", multi(&[&[0.0, 1.0, 0.0]])), ("m", multi(&[&[0.0, 1.0]]))]),
    ]
}

fn v12_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(IdType::U64, None).with_raw_docs();
    for d in v12_segment_docs() {
        b.push(&d).unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn v12_wal_batch_with_multi_values_reads_back() {
    let bytes = read_fixture("wal_batch_multi.bin");
    let got = WalBatch::decode(&bytes).unwrap();
    assert_eq!(got, v12_batch());
    let schema = got.requests[0].settings.schema.as_ref().unwrap();
    assert_eq!(schema["m"].ty.name(), "[][2]f32");
    assert!(schema["m"].late_interaction());
    assert_eq!(schema["h"].ty.name(), "[][3]f16");
    assert_eq!(v12_batch().try_encode().unwrap(), bytes, "the encoder is canonical");
}

#[test]
fn v12_segment_with_multi_values_reads_back() {
    let bytes = read_fixture("segment_multi.seg");
    assert_eq!(v12_segment(), bytes, "the encoder is canonical");
    let seg = Segment::open(Bytes::from(bytes)).unwrap();
    for (row, want) in v12_segment_docs().iter().enumerate() {
        assert_eq!(&seg.doc(row).unwrap(), want, "row {row}");
        for attr in ["h", "k", "m"] {
            let want = match want.attrs.get(attr) {
                Some(Value::Multi(v)) => Some(v.clone()),
                _ => None,
            };
            assert_eq!(seg.multi_attr(row, attr).unwrap(), want, "row {row} attribute {attr}");
        }
        let without: AttrMap = want
            .attrs
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Multi(_)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(seg.attrs_without_dense(row).unwrap(), without, "row {row} for filters");
    }
}

#[test]
fn the_encoder_refuses_what_the_decoder_refuses() {
    for bad in [vec![vec![f32::NAN, 1.0]], vec![vec![1.0], vec![1.0, 2.0]], vec![], vec![vec![]]] {
        let mut b = v12_batch();
        b.requests[0].ops.upserts[0].attrs.insert("m".into(), Value::Multi(bad.clone()));
        assert!(b.try_encode().is_err(), "{bad:?}");
    }
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v12_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    std::fs::create_dir_all(fixture_path("")).unwrap();
    for (name, bytes) in
        [("wal_batch_multi.bin", v12_batch().try_encode().unwrap()), ("segment_multi.seg", v12_segment())]
    {
        let path = fixture_path(name);
        if path.exists() {
            eprintln!("keeping existing {}", path.display());
            continue;
        }
        std::fs::write(&path, bytes).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
