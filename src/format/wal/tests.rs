//! Tests of the WAL batch codec: round trips, canonical encoding, every
//! refusal of `decode`, and property tests over arbitrary batches.

use super::*;
use crate::filter::Op;
use crate::format::filter::tests::{arb_filter, every_leaf_kind, lit};
use crate::format::schema_codec::tests::{arb_schema, full_schema};
use crate::model::AttrMap;
use crate::model::Value;
use crate::schema::{AttrSchema, AttrType, ScalarType};
use proptest::prelude::*;

fn attrs(pairs: &[(&str, Value)]) -> AttrMap {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// A batch with every value kind, every id kind and every op.
pub(super) fn full_batch() -> WalBatch {
    let doc = Document {
        id: DocId::U64(1),
        vector: Some(vec![0.5, -1.25, 3.0].into()),
        attrs: attrs(&[
            ("b", Value::Bool(true)),
            ("f", Value::Float(-2.5)),
            ("i", Value::Int(i128::from(u64::MAX))),
            ("n", Value::Int(-7)),
            ("s", Value::Str("héllo".into())),
            ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), 1.0)])),
            ("t", Value::Array(vec![Value::Str("x".into()), Value::Str("y".into())])),
            ("u", Value::Array(vec![Value::Int(1), Value::Float(2.5), Value::Bool(false)])),
        ]),
    };
    let uuid = uuid::Uuid::from_u128(0x0b4a_2f8e_6c3d_4c53_9c49_4f0b_6a3e_2a11);
    let doc2 = Document { id: DocId::Uuid(uuid), vector: None, attrs: AttrMap::new() };
    let doc3 = Document::new(DocId::Str("doc-3".into()));
    let full = RequestRecord {
        idempotency_key: Some("idem-1".into()),
        settings: NamespaceSettings {
            distance_metric: Some(DistanceMetric::CosineDistance),
            schema: Some(Schema::from([(
                "s".to_owned(),
                AttrSchema::of(AttrType::Scalar(ScalarType::String)),
            )])),
        },
        ops: WriteOps {
            upserts: vec![doc, doc2, doc3],
            upsert_condition: Some(lit("v", Op::Lt, Value::Int(3))),
            patches: vec![Patch {
                id: DocId::U64(9),
                attrs: attrs(&[("gone", Value::Null), ("s", Value::Str("new".into()))]),
            }],
            patch_condition: Some(lit("s", Op::Eq, Value::Str("old".into()))),
            deletes: vec![DocId::U64(2), DocId::Str("z".into()), DocId::Uuid(uuid)],
            delete_condition: Some(lit("b", Op::Eq, Value::Bool(true))),
            delete_by_filter: Some(Filter::Or(every_leaf_kind())),
            patch_by_filter: Some(PatchByFilter {
                filter: lit("a", Op::Eq, Value::Int(1)),
                attrs: attrs(&[("flag", Value::Bool(true))]),
            }),
        },
        counts: RowCounts { upserted: 3, patched: 1, deleted: 3 },
    };
    let second = RequestRecord {
        settings: NamespaceSettings {
            distance_metric: Some(DistanceMetric::EuclideanSquared),
            schema: Some(full_schema()),
        },
        ..RequestRecord::default()
    };
    WalBatch {
        seq: 42,
        created_at_ms: 1_700_000_000_000,
        requests: vec![full, second, RequestRecord::default()],
        flags: WAL_FLAG_DATETIME_INSTANTS,
    }
}

fn small_batch() -> WalBatch {
    let mut req = RequestRecord::default();
    req.ops.upserts.push(Document {
        id: DocId::U64(7),
        vector: Some(vec![1.0].into()),
        attrs: attrs(&[("a", Value::Int(1)), ("t", Value::Array(vec![Value::Str("x".into())]))]),
    });
    req.ops.deletes.push(DocId::Str("d".into()));
    WalBatch { seq: 3, created_at_ms: 5, requests: vec![req], flags: 0 }
}

/// Re-seal arbitrary body bytes with a valid header (for tests that need
/// a structurally bad body behind good checksums).
fn seal(request_count: u32, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&WAL_MAGIC);
    w.u16(WAL_FORMAT_VERSION);
    w.u16(0);
    w.u32(request_count);
    w.u64(1);
    w.u64(2);
    w.u64(len_u64(body.len()));
    w.u32(crc32c::crc32c(body));
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);
    w.bytes(body);
    w.into_inner()
}

fn empty_request_body() -> Vec<u8> {
    let b = WalBatch { requests: vec![RequestRecord::default()], ..WalBatch::default() }.encode();
    b[WAL_HEADER_LEN..].to_vec()
}

#[test]
fn every_value_kind_and_every_op_round_trips() {
    let b = full_batch();
    let bytes = b.try_encode().unwrap();
    assert_eq!(WalBatch::decode(&bytes).unwrap(), b);
    assert_eq!(bytes, b.encode());
}

#[test]
fn encoding_is_canonical() {
    let bytes = full_batch().encode();
    assert_eq!(WalBatch::decode(&bytes).unwrap().encode(), bytes);
}

#[test]
fn empty_request_has_the_minimum_size() {
    assert_eq!(empty_request_body().len(), MIN_REQUEST_BYTES);
    let empty = WalBatch::default().encode();
    assert_eq!(empty.len(), WAL_HEADER_LEN);
    assert_eq!(WalBatch::decode(&empty).unwrap(), WalBatch::default());
}

#[test]
fn header_is_peekable_without_the_body() {
    let b = full_batch();
    let bytes = b.encode();
    let h = peek_header(&bytes[..WAL_HEADER_LEN]).unwrap();
    assert_eq!(h.seq, 42);
    assert_eq!(h.created_at_ms, 1_700_000_000_000);
    assert_eq!(h.request_count, 3);
    assert_eq!(h.body_len, len_u64(bytes.len() - WAL_HEADER_LEN));
    assert_eq!(h.body_crc32c, crc32c::crc32c(&bytes[WAL_HEADER_LEN..]));
    assert_eq!(b.direct_rows(), 7);
}

#[test]
fn truncation_at_every_prefix_length_is_an_error() {
    let bytes = full_batch().encode();
    for n in 0..bytes.len() {
        assert!(WalBatch::decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = small_batch().encode();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(WalBatch::decode(&b).is_err(), "flip of bit {i} went unnoticed");
    }
}

#[test]
fn new_batches_carry_the_own_encodings_flag_and_decode_without_it() {
    let bytes = full_batch().encode();
    let h = peek_header(&bytes).unwrap();
    assert_eq!(h.flags, WAL_FLAG_DATETIME_INSTANTS | WAL_FLAG_OWN_ENCODINGS);
    assert_eq!(WalBatch::decode(&bytes).unwrap().flags, WAL_FLAG_DATETIME_INSTANTS);
}

#[test]
fn unknown_versions_are_refused_before_anything_else() {
    let mut bytes = small_batch().encode();
    bytes[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&2u16.to_le_bytes());
    assert_eq!(
        WalBatch::decode(&bytes),
        Err(FormatError::UnsupportedVersion { what: "wal batch", version: 2, supported: 1 })
    );
    // Even with a different (future) header size.
    assert!(matches!(peek_header(&bytes[..10]), Err(FormatError::UnsupportedVersion { .. })));
}

#[test]
fn bad_magic_is_refused() {
    let mut bytes = small_batch().encode();
    bytes[0] = b'X';
    assert_eq!(WalBatch::decode(&bytes), Err(FormatError::BadMagic { what: "wal batch" }));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = small_batch().encode();
    bytes.push(0);
    assert_eq!(WalBatch::decode(&bytes), Err(FormatError::TrailingBytes { what: "wal batch", extra: 1 }));
    // Also inside the body: a correctly sealed body with an extra byte.
    let mut body = empty_request_body();
    body.push(0);
    assert_eq!(
        WalBatch::decode(&seal(1, &body)),
        Err(FormatError::TrailingBytes { what: "wal body", extra: 1 })
    );
}

#[test]
fn unknown_flags_are_refused() {
    let mut w = Writer::new();
    let bytes = small_batch().encode();
    w.bytes(&bytes[..OFF_FLAGS]);
    w.u16(0x0008);
    w.bytes(&bytes[OFF_REQUEST_COUNT..OFF_HEADER_CRC]);
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);
    w.bytes(&bytes[WAL_HEADER_LEN..]);
    assert!(matches!(WalBatch::decode(&w.into_inner()), Err(FormatError::Malformed(_))));
}

#[test]
fn huge_declared_lengths_fail_fast_without_allocating() {
    // A request count of u32::MAX over a tiny body.
    assert!(matches!(
        WalBatch::decode(&seal(u32::MAX, &empty_request_body())),
        Err(FormatError::Truncated { what: "wal requests", .. })
    ));
    // An idempotency key declaring 4 GiB - 1 bytes.
    // (Bodies are padded to MIN_REQUEST_BYTES so the request count passes.)
    let pad = |mut b: Vec<u8>| {
        b.resize(MIN_REQUEST_BYTES, 0);
        b
    };
    let body = pad([&[OPT_SOME][..], &u32::MAX.to_le_bytes()].concat());
    assert!(matches!(
        WalBatch::decode(&seal(1, &body)),
        Err(FormatError::TooLarge { what: "idempotency key", max, .. }) if max == len_u64(MAX_STRING_BYTES)
    ));
    // An idempotency key declaring 1 MiB in 8 bytes.
    let body = pad([&[OPT_SOME][..], &(1u32 << 20).to_le_bytes(), b"abc"].concat());
    assert!(matches!(
        WalBatch::decode(&seal(1, &body)),
        Err(FormatError::Truncated { what: "idempotency key", .. })
    ));
    // A body_len of u64::MAX in the header.
    let mut w = Writer::new();
    let bytes = small_batch().encode();
    w.bytes(&bytes[..OFF_BODY_LEN]);
    w.u64(u64::MAX);
    w.bytes(&bytes[OFF_BODY_CRC..OFF_HEADER_CRC]);
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);
    assert!(matches!(WalBatch::decode(&w.into_inner()), Err(FormatError::TooLarge { what: "wal body", .. })));
    // A list count of u32::MAX.
    let mut body = empty_request_body();
    let upserts_at = 1 + 1 + 1 + 24 + 1 + 1;
    body[upserts_at..upserts_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(WalBatch::decode(&seal(1, &body)), Err(FormatError::Truncated { what: "upserts", .. })));
}

#[test]
fn vectors_over_the_dimension_cap_are_refused() {
    let mut b = small_batch();
    b.requests[0].ops.upserts[0].vector = Some(vec![0.0; MAX_VECTOR_DIM + 1].into());
    assert!(matches!(b.try_encode(), Err(FormatError::TooLarge { what: "vector dimension", .. })));
    assert!(matches!(
        WalBatch::decode(&b.encode()),
        Err(FormatError::TooLarge { what: "vector dimension", .. })
    ));
    b.requests[0].ops.upserts[0].vector = Some(vec![0.0; MAX_VECTOR_DIM].into());
    assert_eq!(WalBatch::decode(&b.try_encode().unwrap()).unwrap(), b);
}

#[test]
fn nested_arrays_are_refused_on_encode_and_decode() {
    let mut b = small_batch();
    b.requests[0].ops.upserts[0]
        .attrs
        .insert("deep".into(), Value::Array(vec![Value::Array(vec![Value::Int(1)])]));
    assert!(matches!(b.try_encode(), Err(FormatError::Malformed(_))));
    assert!(matches!(WalBatch::decode(&b.encode()), Err(FormatError::Malformed(_))));
    let mut b = small_batch();
    b.requests[0].ops.upserts[0].attrs.insert("deep".into(), Value::Array(vec![Value::Sparse(vec![])]));
    assert!(matches!(WalBatch::decode(&b.encode()), Err(FormatError::Malformed(_))));
}

#[test]
fn string_ids_outside_the_model_limits_are_refused() {
    for bad in [String::new(), "x".repeat(MAX_STRING_ID_BYTES + 1)] {
        let mut b = small_batch();
        b.requests[0].ops.deletes = vec![DocId::Str(bad)];
        assert!(b.try_encode().is_err());
        assert!(WalBatch::decode(&b.encode()).is_err());
    }
}

#[test]
fn unknown_tags_are_refused() {
    for (offset, tag) in [(0, 2u8), (1, 3), (2, 7)] {
        let mut body = empty_request_body();
        body[offset] = tag;
        assert!(matches!(WalBatch::decode(&seal(1, &body)), Err(FormatError::Malformed(_))), "{offset}");
    }
}

#[test]
fn out_of_order_attribute_names_are_refused() {
    let b = small_batch();
    let bytes = b.encode();
    let mut body = bytes[WAL_HEADER_LEN..].to_vec();
    // Rename attribute "t" to "a" (same length): now "a", "a".
    let pos = body.windows(5).position(|w| w == [1, 0, 0, 0, b't']).unwrap();
    body[pos + 4] = b'a';
    assert!(matches!(WalBatch::decode(&seal(1, &body)), Err(FormatError::Malformed(_))));
}

// ------------------------------------------------------------ proptest

fn arb_id() -> impl Strategy<Value = DocId> {
    prop_oneof![
        any::<u64>().prop_map(DocId::U64),
        any::<u128>().prop_map(|u| DocId::Uuid(uuid::Uuid::from_u128(u))),
        "[a-z0-9_-]{1,64}".prop_map(DocId::Str),
    ]
}

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
        any::<u64>().prop_map(|i| Value::Int(i128::from(i))),
        arb_f64().prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Str),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => arb_scalar(),
        1 => proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array),
        1 => proptest::collection::vec((".{0,6}", -1e30f32..1e30f32), 0..4).prop_map(Value::Sparse),
    ]
}

fn arb_attrs() -> impl Strategy<Value = AttrMap> {
    proptest::collection::btree_map(".{0,8}", arb_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

fn arb_opt_filter() -> impl Strategy<Value = Option<Filter>> {
    prop_oneof![3 => Just(None), 2 => arb_filter().prop_map(Some)]
}

fn arb_doc() -> impl Strategy<Value = Document> {
    (arb_id(), proptest::option::of(proptest::collection::vec(-1e6f32..1e6f32, 0..8)), arb_attrs())
        .prop_map(|(id, vector, attrs)| Document { id, vector: vector.map(Into::into), attrs })
}

pub(super) fn arb_request() -> impl Strategy<Value = RequestRecord> {
    let settings = (
        proptest::option::of(".{0,20}"),
        prop_oneof![
            Just(None),
            Just(Some(DistanceMetric::CosineDistance)),
            Just(Some(DistanceMetric::EuclideanSquared))
        ],
        proptest::option::of(arb_schema()),
        any::<(u64, u64, u64)>(),
    );
    let ops = (
        proptest::collection::vec(arb_doc(), 0..3),
        arb_opt_filter(),
        proptest::collection::vec((arb_id(), arb_attrs()).prop_map(|(id, attrs)| Patch { id, attrs }), 0..3),
        arb_opt_filter(),
        proptest::collection::vec(arb_id(), 0..4),
        arb_opt_filter(),
        arb_opt_filter(),
        proptest::option::of((arb_filter(), arb_attrs())),
    );
    (settings, ops).prop_map(|((key, metric, schema, counts), ops)| {
        let (upserts, uc, patches, pc, deletes, dc, dbf, pbf) = ops;
        RequestRecord {
            idempotency_key: key,
            settings: NamespaceSettings { distance_metric: metric, schema },
            ops: WriteOps {
                upserts,
                upsert_condition: uc,
                patches,
                patch_condition: pc,
                deletes,
                delete_condition: dc,
                delete_by_filter: dbf,
                patch_by_filter: pbf.map(|(filter, attrs)| PatchByFilter { filter, attrs }),
            },
            counts: RowCounts { upserted: counts.0, patched: counts.1, deleted: counts.2 },
        }
    })
}

proptest! {
    #[test]
    fn any_batch_within_limits_round_trips(
        seq in any::<u64>(),
        created_at_ms in any::<u64>(),
        requests in proptest::collection::vec(arb_request(), 0..4),
        flags in (0..=WAL_APPLY_FLAGS).prop_filter("apply flags only", |f| f & !WAL_APPLY_FLAGS == 0),
    ) {
        let b = WalBatch { seq, created_at_ms, requests, flags };
        let bytes = b.try_encode().unwrap();
        prop_assert_eq!(WalBatch::decode(&bytes).unwrap(), b);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = WalBatch::decode(&bytes);
        let _ = peek_header(&bytes);
    }
}

#[test]
fn a_filter_whose_encoding_passes_the_string_cap_still_round_trips() {
    // One million ints take ~8 MiB as JSON but 17 MiB encoded (17 bytes each):
    // the blob cap is the body cap, not the 16 MiB string cap.
    let ints = Value::Array((0..1_000_000).map(Value::Int).collect());
    let mut b = small_batch();
    b.requests[0].ops.delete_by_filter = Some(lit("a", Op::In, ints));
    let bytes = b.try_encode().unwrap();
    assert!(bytes.len() > MAX_STRING_BYTES);
    assert_eq!(WalBatch::decode(&bytes).unwrap(), b);
}
