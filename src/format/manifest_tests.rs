//! Unit tests of `manifest.rs`: envelopes, schema objects, CURRENT, sanity checks.
use super::*;
use crate::format::manifest_envelope::envelope;
use serde_json::json;

fn sample() -> Manifest {
    use crate::schema::{AttrSchema, AttrType, ScalarType};
    let mut title = AttrSchema::of(AttrType::Scalar(ScalarType::String));
    title.filterable = Some(true);
    let mut vector = AttrSchema::of(AttrType::Vector { dim: 3, f16: false });
    vector.ann = true;
    let schema: Schema = [("title".to_owned(), title), ("vector".to_owned(), vector)].into();
    Manifest {
        labels: [("env".to_owned(), "prod".to_owned())].into(),
        data_generation: Some(5),
        read_only: true,
        origin: None,
        namespace: "acme/search/docs".into(),
        generation: 7,
        commit_id: "0123456789abcdef0123456789abcdef".into(),
        previous_generation: Some(6),
        created_at_ms: 1_700_000_000_000,
        committed_at_ms: 1_700_000_000_500,
        deleted: false,
        id_type: Some(IdType::U64),
        distance_metric: Some(DistanceMetric::CosineDistance),
        vector_dim: Some(3),
        schema,
        schema_ref: None,
        next_wal_seq: 12,
        wal: vec![
            WalRef {
                key: "acme/search/namespaces/docs/wal/00000000000000000010-aa.wal".into(),
                seq: 10,
                bytes: 120,
                crc32c: 7,
                requests: 1,
                rows: 2,
            },
            WalRef {
                key: "acme/search/namespaces/docs/wal/00000000000000000011-bb.wal".into(),
                seq: 11,
                bytes: 99,
                crc32c: 8,
                requests: 2,
                rows: 3,
            },
        ],
        segments: vec![SegmentRef {
            id: "s1".into(),
            files: vec![ObjectRef {
                key: "acme/search/namespaces/docs/segments/s1/data.seg".into(),
                bytes: 1000,
                crc32c: 9,
            }],
            rows: 40,
            deletes: Some(ObjectRef {
                key: "acme/search/namespaces/docs/segments/s1/deletes-t1.del".into(),
                bytes: 44,
                crc32c: 10,
            }),
            bytes: 1000,
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

fn minimal() -> Manifest {
    Manifest {
        namespace: "a/b/c".into(),
        generation: 1,
        commit_id: "ffffffffffffffffffffffffffffffff".into(),
        ..Manifest::default()
    }
}

#[test]
fn manifest_round_trips() {
    for m in [sample(), minimal()] {
        let bytes = m.try_encode().unwrap();
        assert_eq!(bytes, m.encode());
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
    }
}

#[test]
fn checksum_covers_the_body_bytes_exactly_as_stored() {
    // Re-formatting the body (whitespace) changes its bytes: refused.
    let m = minimal();
    let text = String::from_utf8(m.encode()).unwrap();
    let spaced = text.replacen("\"generation\":1", "\"generation\": 1", 1);
    assert!(matches!(
        Manifest::decode(spaced.as_bytes()),
        Err(FormatError::ChecksumMismatch { what: "manifest body", .. })
    ));
    // Whitespace in the envelope, outside the body, is fine.
    let padded = text.replacen("\"body\":", "\"body\" :  ", 1);
    assert_eq!(Manifest::decode(padded.as_bytes()).unwrap(), m);
}

#[test]
fn truncation_at_every_prefix_length_is_an_error() {
    let bytes = minimal().encode();
    // The last byte is the trailing newline (whitespace), so stop before it.
    for n in 0..bytes.len() - 1 {
        assert!(Manifest::decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = minimal().encode();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(Manifest::decode(&b).is_err(), "flip of bit {i} went unnoticed");
    }
}

#[test]
fn unknown_versions_and_bad_magic_are_refused() {
    let text = String::from_utf8(minimal().encode()).unwrap();
    let v4 = text.replacen("\"format_version\":3", "\"format_version\":4", 1);
    assert_eq!(
        Manifest::decode(v4.as_bytes()),
        Err(FormatError::UnsupportedVersion { what: "manifest", version: 4, supported: 3 })
    );
    let v0 = text.replacen("\"format_version\":3", "\"format_version\":0", 1);
    assert!(matches!(Manifest::decode(v0.as_bytes()), Err(FormatError::UnsupportedVersion { .. })));
    // Version 2 without a schema_ref is refused (the version and the body must agree), and so
    // is version 1 with the schema in the current encoding (a version 1 schema is turbopuffer's).
    let v2 = text.replacen("\"format_version\":3", "\"format_version\":2", 1);
    assert!(matches!(Manifest::decode(v2.as_bytes()), Err(FormatError::Malformed(_))));
    let v1 = text.replacen("\"format_version\":3", "\"format_version\":1", 1);
    assert!(matches!(Manifest::decode(v1.as_bytes()), Err(FormatError::Malformed(_))));
    let bad = text.replacen("tidepool.manifest", "tidepool.manifesx", 1);
    assert_eq!(Manifest::decode(bad.as_bytes()), Err(FormatError::BadMagic { what: "manifest" }));
    assert_eq!(Manifest::decode(b"{}"), Err(FormatError::BadMagic { what: "manifest" }));
    assert!(matches!(Manifest::decode(b"\xff\xfe"), Err(FormatError::Malformed(_))));
}

#[test]
fn unknown_fields_are_ignored_within_a_version() {
    let m = minimal();
    let mut body = serde_json::to_value(&m).unwrap();
    body["future_field"] = json!({"x": 1});
    let body = body.to_string();
    let bytes = envelope(MANIFEST_MAGIC, MANIFEST_FORMAT_VERSION, &body);
    let mut text = String::from_utf8(bytes).unwrap();
    text = text.replacen("{\"magic\"", "{\"extra\":true,\"magic\"", 1);
    assert_eq!(Manifest::decode(text.as_bytes()).unwrap(), m);
}

#[test]
fn reserved_fields_may_be_absent() {
    let m = minimal();
    let mut body = serde_json::to_value(&m).unwrap();
    let obj = body.as_object_mut().unwrap();
    for k in ["segments", "row_id_hwm", "lineage", "stats"] {
        obj.remove(k);
    }
    assert_eq!(
        Manifest::decode(&envelope(MANIFEST_MAGIC, MANIFEST_FORMAT_VERSION, &body.to_string())).unwrap(),
        m
    );
}

#[test]
fn oversized_manifests_are_refused_before_parsing() {
    let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
    assert!(matches!(Manifest::decode(&big), Err(FormatError::TooLarge { what: "manifest", .. })));
}

#[test]
fn insane_manifests_are_refused() {
    type Mutation = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("bad namespace", Box::new(|m| m.namespace = "a/b".into())),
        ("short commit id", Box::new(|m| m.commit_id = "abc".into())),
        ("uppercase commit id", Box::new(|m| m.commit_id = "0123456789ABCDEF0123456789ABCDEF".into())),
        ("previous >= generation", Box::new(|m| m.previous_generation = Some(7))),
        ("zero dim", Box::new(|m| m.vector_dim = Some(0))),
        ("huge dim", Box::new(|m| m.vector_dim = Some(1_000_000))),
        ("deleted with objects", Box::new(|m| m.deleted = true)),
        ("empty wal key", Box::new(|m| m.wal[0].key.clear())),
        ("wal seqs not increasing", Box::new(|m| m.wal[1].seq = 10)),
        ("wal seq >= next", Box::new(|m| m.next_wal_seq = 11)),
        ("duplicate segment id", Box::new(|m| m.segments.push(m.segments[0].clone()))),
        ("empty segment file key", Box::new(|m| m.segments[0].files[0].key.clear())),
        ("key referenced twice", Box::new(|m| m.segments[0].files[0].key = m.wal[0].key.clone())),
        ("segment without files", Box::new(|m| m.segments[0].files.clear())),
        ("empty deletes key", Box::new(|m| m.segments[0].deletes.as_mut().unwrap().key.clear())),
        (
            "deletes key referenced twice",
            Box::new(|m| m.segments[0].deletes.as_mut().unwrap().key = m.wal[1].key.clone()),
        ),
        (
            "deletes key is a segment file",
            Box::new(|m| m.segments[0].deletes.as_mut().unwrap().key = m.segments[0].files[0].key.clone()),
        ),
        ("segment bytes disagree with its files", Box::new(|m| m.segments[0].bytes = 999)),
        ("empty lineage parent", Box::new(|m| m.lineage = Some(Lineage::default()))),
        ("empty origin node", Box::new(|m| m.origin = Some(Origin::default()))),
    ];
    for (name, mutate) in cases {
        let mut m = sample();
        mutate(&mut m);
        assert!(m.try_encode().is_err(), "{name}: try_encode accepted it");
        assert!(matches!(Manifest::decode(&m.encode()), Err(FormatError::Malformed(_))), "{name}");
    }
}

#[test]
fn object_keys_lists_every_referenced_object_once() {
    let m = sample();
    assert_eq!(
        m.object_keys(),
        vec![
            "acme/search/namespaces/docs/wal/00000000000000000010-aa.wal".to_owned(),
            "acme/search/namespaces/docs/wal/00000000000000000011-bb.wal".to_owned(),
            "acme/search/namespaces/docs/segments/s1/data.seg".to_owned(),
            "acme/search/namespaces/docs/segments/s1/deletes-t1.del".to_owned(),
        ]
    );
    assert!(minimal().object_keys().is_empty());
}

#[test]
fn read_only_is_written_only_when_set_and_absent_reads_as_false() {
    let m = sample();
    let body = serde_json::to_value(&m).unwrap();
    assert_eq!(body["read_only"], json!(true));
    let mut writable = m.clone();
    writable.read_only = false;
    let body = serde_json::to_value(&writable).unwrap();
    assert!(body.get("read_only").is_none(), "omitted when false: older builds read it unchanged");
    let back = Manifest::decode(&writable.encode()).unwrap();
    assert!(!back.read_only);
}

#[test]
fn segment_deletes_and_bytes_are_optional_and_omitted_when_unset() {
    let mut m = sample();
    m.segments[0].deletes = None;
    m.segments[0].bytes = 0;
    let text = String::from_utf8(m.try_encode().unwrap()).unwrap();
    assert!(text.contains(r#""rows":40}]"#), "{text}");
    assert_eq!(Manifest::decode(text.as_bytes()).unwrap(), m);
    // A segment written before the fields existed reads as None / 0, and a
    // recorded size of 0 (unknown) is accepted.
    let mut body = serde_json::to_value(sample()).unwrap();
    let seg = body["segments"][0].as_object_mut().unwrap();
    seg.remove("deletes");
    seg.remove("bytes");
    let decoded =
        Manifest::decode(&envelope(MANIFEST_MAGIC, MANIFEST_FORMAT_VERSION, &body.to_string())).unwrap();
    assert_eq!(decoded.segments[0].deletes, None);
    assert_eq!(decoded.segments[0].bytes, 0);
    // Set: written after `rows`, in field order.
    let text = String::from_utf8(sample().encode()).unwrap();
    assert!(
        text.contains(r#""rows":40,"deletes":{"key":"acme/search/namespaces/docs/segments/s1/deletes-t1.del","bytes":44,"crc32c":10},"bytes":1000}"#),
        "{text}"
    );
}

#[test]
fn current_round_trips_and_detects_corruption() {
    for g in [0, 1, 42, u64::MAX] {
        assert_eq!(decode_current(&encode_current(g)).unwrap(), g);
    }
    let bytes = encode_current(42);
    for i in 0..(bytes.len() - 1) * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(decode_current(&b).is_err(), "flip of bit {i} went unnoticed");
    }
    for n in 0..bytes.len() - 1 {
        assert!(decode_current(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
    let text = String::from_utf8(bytes).unwrap();
    let v2 = text.replacen("\"format_version\":1", "\"format_version\":2", 1);
    assert!(matches!(decode_current(v2.as_bytes()), Err(FormatError::Malformed(_))), "v2 needs its manifest");
    let v3 = text.replacen("\"format_version\":1", "\"format_version\":3", 1);
    assert!(matches!(decode_current(v3.as_bytes()), Err(FormatError::UnsupportedVersion { .. })));
    assert!(matches!(decode_current(&vec![b' '; MAX_CURRENT_BYTES + 1]), Err(FormatError::TooLarge { .. })));
}

/// Invariant: a version-2 CURRENT carries the manifest exactly, and any
/// single-bit flip or truncation of it is refused.
#[test]
fn current_v2_embeds_the_manifest_and_detects_corruption() {
    let m = sample();
    let bytes = encode_current_with_manifest(&m);
    assert!(bytes.starts_with(b"{\"magic\":\"tidepool.current\",\"format_version\":2,"));
    let (g, embedded) = decode_current_full(&bytes).unwrap();
    assert_eq!((g, embedded.as_ref()), (m.generation, Some(&m)));
    for i in 0..(bytes.len() - 1) * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(decode_current_full(&b).is_err(), "flip of bit {i} went unnoticed");
    }
    for n in 0..bytes.len() - 1 {
        assert!(decode_current_full(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
    // Another generation's manifest under this hint's generation is refused.
    let mut other = m.clone();
    other.generation += 1;
    other.previous_generation = Some(m.generation);
    let forged = String::from_utf8(encode_current_with_manifest(&other)).unwrap().replacen(
        &format!("\"generation\":{},\"crc32c\":{}", other.generation, current_crc(other.generation)),
        &format!("\"generation\":{},\"crc32c\":{}", m.generation, current_crc(m.generation)),
        1,
    );
    assert!(decode_current_full(forged.as_bytes()).is_err());
    // A manifest too large to embed gives the version-1 form.
    let mut big = m.clone();
    big.schema.insert(
        "x".repeat(MAX_EMBEDDED_MANIFEST_BYTES),
        crate::schema::AttrSchema::of(crate::schema::AttrType::Scalar(crate::schema::ScalarType::String)),
    );
    assert_eq!(encode_current_with_manifest(&big), encode_current(big.generation));
}

/// A manifest with its schema in a schema object: no inline schema, the
/// object one of its objects; any damage to the object is refused.
#[test]
fn schema_objects_round_trip_and_manifests_name_them() {
    let mut m = sample();
    let body = schema_json(&m.schema);
    let object = encode_schema_object(&body);
    assert!(object.starts_with(b"{\"magic\":\"tidepool.schema\",\"format_version\":2,"));
    let key = "acme/search/namespaces/docs/schemas/00000000000000000007-0123.json".to_owned();
    let r = schema_object_ref(key.clone(), &object);
    assert_eq!(decode_schema_object(&r, &object).unwrap(), m.schema);
    for i in 0..object.len() * 8 {
        let mut b = object.clone();
        b[i / 8] ^= 1 << (i % 8);
        assert!(decode_schema_object(&r, &b).is_err(), "flip of bit {i} went unnoticed");
    }
    assert!(decode_schema_object(&r, &object[..object.len() - 2]).is_err());
    // A forged object whose own envelope is fine but is not the one the manifest names.
    let other = encode_schema_object(&schema_json(&Schema::new()));
    assert!(decode_schema_object(&r, &other).is_err());

    m.schema_ref = Some(r.clone());
    let bytes = m.try_encode().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("{\"magic\":\"tidepool.manifest\",\"format_version\":3,"), "{text}");
    assert!(!text.contains("\"schema\":"), "{text}");
    assert!(text.contains(&format!("\"vector_dim\":3,\"schema_ref\":{{\"key\":\"{key}\"")), "{text}");
    let decoded = Manifest::decode(&bytes).unwrap();
    assert!(decoded.schema_unresolved());
    assert_eq!(decoded.schema_ref.as_ref(), Some(&r));
    let mut resolved = decoded.clone();
    resolved.schema = decode_schema_object(&r, &object).unwrap();
    assert_eq!(resolved, m);
    // Re-encoding an unresolved manifest keeps the reference (nothing is lost).
    assert_eq!(decoded.try_encode().unwrap(), bytes);
    assert_eq!(m.object_keys().last(), Some(&key));
    assert_eq!(m.object_refs().last(), Some(&r));
    assert_eq!(m.object_refs().len(), m.object_keys().len());
    // The schema key may not repeat another object's key, nor be empty.
    let mut dup = m.clone();
    dup.schema_ref.as_mut().unwrap().key = dup.wal[0].key.clone();
    assert!(dup.try_encode().is_err());
    let mut empty = m.clone();
    empty.schema_ref.as_mut().unwrap().key.clear();
    assert!(empty.try_encode().is_err());
    // A version 1 body with a schema_ref, or a body with both its schema and a reference, is
    // refused (version 2: a legacy schema; version 3: the current encoding).
    let v1 = text.replacen("\"format_version\":3", "\"format_version\":1", 1);
    assert!(matches!(Manifest::decode(v1.as_bytes()), Err(FormatError::Malformed(_))));
    let mut body = serde_json::to_value(&m).unwrap();
    body["schema"] = crate::schema::schema_to_json(&m.schema);
    let both = envelope(MANIFEST_MAGIC, 2, &body.to_string());
    assert!(matches!(Manifest::decode(&both), Err(FormatError::Malformed(_))));
    body["schema"] = serde_json::from_str(&schema_json(&m.schema)).unwrap();
    let both = envelope(MANIFEST_MAGIC, 3, &body.to_string());
    assert!(matches!(Manifest::decode(&both), Err(FormatError::Malformed(_))));
    body.as_object_mut().unwrap().remove("schema_ref");
    assert_eq!(Manifest::decode(&envelope(MANIFEST_MAGIC, 3, &body.to_string())).unwrap(), sample());
    body.as_object_mut().unwrap().remove("schema");
    let neither = envelope(MANIFEST_MAGIC, 3, &body.to_string());
    assert!(matches!(Manifest::decode(&neither), Err(FormatError::Malformed(_))));
}

/// Without a schema_ref the schema is inline, in the current encoding, in
/// the field order of 4.2; legacy bodies (turbopuffer's shape) still read.
#[test]
fn manifests_carry_their_schema_inline_in_the_current_encoding() {
    let m = sample();
    let text = String::from_utf8(m.try_encode().unwrap()).unwrap();
    assert!(text.starts_with("{\"magic\":\"tidepool.manifest\",\"format_version\":3,"));
    assert!(
        text.contains("\"vector_dim\":3,\"schema\":{\"encoding\":1,\"attributes\":[{\"name\":\"title\""),
        "{text}"
    );
    assert!(!text.contains("schema_ref"));
    let mut body = serde_json::to_value(&m).unwrap();
    body["schema"] = crate::schema::schema_to_json(&m.schema);
    assert_eq!(Manifest::decode(&envelope(MANIFEST_MAGIC, 1, &body.to_string())).unwrap(), m);
}

/// `try_encode` refuses a schema the decoder would refuse (beyond the
/// structural bounds), and nothing else about the schema.
#[test]
fn try_encode_refuses_schemas_outside_the_structural_bounds() {
    let mut m = sample();
    m.schema.get_mut("vector").unwrap().ty = crate::schema::AttrType::Vector { dim: 0, f16: false };
    assert!(m.try_encode().is_err());
    assert!(Manifest::decode(&m.encode()).is_err());
    let mut m = sample();
    let mut deep = json!(0);
    for _ in 0..=super::super::schema::MAX_EXTRA_DEPTH {
        deep = json!({ "x": deep });
    }
    m.schema.get_mut("title").unwrap().extra.insert("deep".into(), deep);
    assert!(m.try_encode().is_err());
    assert!(Manifest::decode(&m.encode()).is_err());
}
