//! Tests of the legacy reader: batches written by the encoder of the builds
//! before `WAL_FLAG_OWN_ENCODINGS` (reproduced here) decode to the batch
//! they encoded, including filters and schema JSON beyond today's API limits.

use super::tests::{arb_request, full_batch};
use super::*;
use crate::filter::{LeafOperand, Op};
use crate::format::filter::tests::{every_leaf_kind, leaf, lit};
use crate::model::Value;
use crate::schema::{AttrSchema, AttrType, FullTextSearch, ScalarType};
use proptest::prelude::*;
use serde_json::{json, Map, Value as Json};

/// The client schema JSON whose meaning is exactly `s` (what a client sent:
/// options it left out are absent, not spelled as defaults).
fn client_schema_json(s: &Schema) -> Json {
    let entry = |a: &AttrSchema| {
        let mut m = Map::new();
        m.insert("type".into(), Json::String(a.ty.name()));
        if let Some(f) = a.filterable {
            m.insert("filterable".into(), Json::Bool(f));
        }
        if let Some(f) = &a.full_text_search {
            m.insert("full_text_search".into(), fts_json(f));
        }
        if a.ann {
            m.insert("ann".into(), Json::Bool(true));
        }
        m.extend(a.extra.clone());
        Json::Object(m)
    };
    Json::Object(s.iter().map(|(k, a)| (k.clone(), entry(a))).collect())
}

fn fts_json(f: &FullTextSearch) -> Json {
    json!({
        "tokenizer": f.tokenizer, "language": f.language, "stemming": f.stemming,
        "remove_stopwords": f.remove_stopwords, "case_sensitive": f.case_sensitive,
        "ascii_folding": f.ascii_folding, "k1": f.k1, "b": f.b, "max_token_length": f.max_token_length,
    })
}

/// The encoder of the builds before `WAL_FLAG_OWN_ENCODINGS`: filters as their
/// canonical JSON text (`Filter::to_json`), schema updates as JSON text.
fn legacy_encode(b: &WalBatch) -> Vec<u8> {
    let mut e = Enc { w: Writer::new(), violation: None };
    e.w.bytes(&WAL_MAGIC);
    e.w.u16(WAL_FORMAT_VERSION);
    e.w.u16(b.flags);
    e.w.u32(u32::try_from(b.requests.len()).unwrap());
    e.w.u64(b.seq);
    e.w.u64(b.created_at_ms);
    e.w.u64(0);
    e.w.u32(0);
    e.w.u32(0);
    let text = |f: &Filter| f.to_json().to_string();
    let opt_filter = |e: &mut Enc, f: Option<&Filter>| e.opt_str("filter", f.map(text).as_deref());
    for req in &b.requests {
        e.opt_str("idempotency key", req.idempotency_key.as_deref());
        e.w.u8(match req.settings.distance_metric {
            None => METRIC_NONE,
            Some(DistanceMetric::CosineDistance) => METRIC_COSINE,
            Some(DistanceMetric::EuclideanSquared) => METRIC_EUCLIDEAN_SQUARED,
        });
        let schema = req.settings.schema.as_ref().map(|s| client_schema_json(s).to_string());
        e.opt_str("schema json", schema.as_deref());
        for n in [req.counts.upserted, req.counts.patched, req.counts.deleted] {
            e.w.u64(n);
        }
        let ops = &req.ops;
        opt_filter(&mut e, ops.delete_by_filter.as_ref());
        match &ops.patch_by_filter {
            None => e.w.u8(OPT_NONE),
            Some(p) => {
                e.w.u8(OPT_SOME);
                e.str("filter", &text(&p.filter));
                e.attrs(&p.attrs);
            }
        }
        e.w.u32(u32::try_from(ops.upserts.len()).unwrap());
        ops.upserts.iter().for_each(|d| e.document(d));
        opt_filter(&mut e, ops.upsert_condition.as_ref());
        e.w.u32(u32::try_from(ops.patches.len()).unwrap());
        for p in &ops.patches {
            e.id(&p.id);
            e.attrs(&p.attrs);
        }
        opt_filter(&mut e, ops.patch_condition.as_ref());
        e.w.u32(u32::try_from(ops.deletes.len()).unwrap());
        ops.deletes.iter().for_each(|id| e.id(id));
        opt_filter(&mut e, ops.delete_condition.as_ref());
    }
    assert!(e.violation.is_none());
    let body_len = len_u64(e.w.len() - WAL_HEADER_LEN);
    let body_crc = crc32c::crc32c(&e.w.as_slice()[WAL_HEADER_LEN..]);
    e.w.patch_u64(OFF_BODY_LEN, body_len);
    e.w.patch_u32(OFF_BODY_CRC, body_crc);
    let header_crc = crc32c::crc32c(&e.w.as_slice()[..OFF_HEADER_CRC]);
    e.w.patch_u32(OFF_HEADER_CRC, header_crc);
    e.w.into_inner()
}

#[test]
fn a_legacy_batch_with_every_leaf_kind_and_schema_option_decodes() {
    let b = full_batch();
    let bytes = legacy_encode(&b);
    assert_eq!(peek_header(&bytes).unwrap().flags & WAL_FLAG_OWN_ENCODINGS, 0);
    assert_eq!(WalBatch::decode(&bytes).unwrap(), b);
    // Re-encoding writes the own encodings, which decode to the same batch.
    let again = WalBatch::decode(&bytes).unwrap().encode();
    assert_eq!(WalBatch::decode(&again).unwrap(), b);
}

#[test]
fn legacy_filters_beyond_the_api_limits_decode() {
    let mut b = full_batch();
    let long = "x".repeat(10 * 1024);
    let mut leaves: Vec<Filter> = (0..20_000).map(|i| lit("a", Op::Eq, Value::Int(i))).collect();
    leaves.push(leaf("s", Op::Glob, LeafOperand::Pattern(long.clone())));
    leaves.extend((0..100).map(|i| leaf("s", Op::Regex, LeafOperand::Pattern(format!("^r{i}$")))));
    leaves.push(leaf("b", Op::ContainsAllTokens, LeafOperand::Tokens(vec![long; 2])));
    b.requests[0].ops.delete_by_filter = Some(Filter::Or(leaves));
    assert_eq!(WalBatch::decode(&legacy_encode(&b)).unwrap(), b);
}

#[test]
fn legacy_schema_text_decodes_as_the_client_meant_it() {
    let text = |v: Json| schema_of_text(&v.to_string());
    let fts = FullTextSearch { stemming: true, ..legacy::legacy_fts_defaults() };
    let s = text(json!({
        "title": {"type": "string", "full_text_search": {"stemming": true}},
        "body": {"full_text_search": true, "filterable": true},
        "tags": "[]string",
        "vector": {"type": "[1536]f16", "ann": true, "target_recall": 0.9},
        "big": "[20000]f32",
        "sp": "{}f32",
        "n": {"type": "uint", "ann": false, "fuzzy": {"x": [1, null]}},
    }));
    let string = || AttrSchema::of(AttrType::Scalar(ScalarType::String));
    assert_eq!(s["title"], AttrSchema { full_text_search: Some(fts), ..string() });
    let body = AttrSchema {
        filterable: Some(true),
        full_text_search: Some(legacy::legacy_fts_defaults()),
        ..string()
    };
    assert_eq!(s["body"], body);
    assert_eq!(s["tags"], AttrSchema::of(AttrType::Array(ScalarType::String)));
    assert_eq!(s["vector"].ty, AttrType::Vector { dim: 1536, f16: true });
    assert!(s["vector"].ann && s["vector"].extra["target_recall"] == json!(0.9));
    assert_eq!(s["big"].ty, AttrType::Vector { dim: 20_000, f16: false }, "no API dimension cap");
    assert_eq!(s["sp"].ty, AttrType::Sparse { f16: false });
    assert!(!s["n"].ann && s["n"].extra["fuzzy"] == json!({"x": [1, null]}));
    for bad in [json!([]), json!({"a": 1}), json!({"a": "text"}), json!({"a": "[0]f32"})] {
        assert!(legacy::decode_schema_json(&bad).is_err(), "{bad}");
    }
}

fn schema_of_text(text: &str) -> Schema {
    legacy::decode_schema_json(&serde_json::from_str(text).unwrap()).unwrap()
}

#[test]
fn legacy_filter_json_is_walked_structurally() {
    for f in every_leaf_kind() {
        assert_eq!(legacy::decode_filter_json(&f.to_json()).unwrap(), f);
    }
    // Fuzzy options left out mean distance 1, case-sensitive.
    let fuzzy = LeafOperand::Fuzzy { text: "ab".into(), max_edit_distance: 1, case_sensitive: true };
    assert_eq!(
        legacy::decode_filter_json(&json!(["s", "Fuzzy", "ab"])).unwrap(),
        leaf("s", Op::Fuzzy, fuzzy)
    );
    for bad in [
        json!(null),
        json!(["a", "Equals", 1]),
        json!(["a", "Eq", 1, {}]),
        json!(["a", "In", 1]),
        json!(["a", "Eq", {"k": 1}]),
        json!(["a", "Eq", [[1]]]),
        json!(["Xor", []]),
        json!(["s", "Regex", "("]),
        json!(["s", "Fuzzy", "a", {"max_edit_distance": 300}]),
    ] {
        assert!(legacy::decode_filter_json(&bad).is_err(), "{bad}");
    }
}

fn without_reserved_keys(mut r: RequestRecord) -> RequestRecord {
    // A client's `extra` option cannot be named like a known schema key.
    if let Some(s) = &mut r.settings.schema {
        for a in s.values_mut() {
            // Legacy batches predate multi-vector attributes (`[][N]f32`).
            if let AttrType::MultiVector { dim, f16 } = a.ty {
                a.ty = AttrType::Vector { dim, f16 };
            }
            a.extra.retain(|k, _| !matches!(k.as_str(), "type" | "filterable" | "full_text_search" | "ann"));
            // Legacy batches predate `index_prefixes`: their JSON text never holds it.
            if let Some(f) = &mut a.full_text_search {
                f.index_prefixes = false;
            }
        }
    }
    r
}

proptest! {
    #[test]
    fn any_legacy_batch_decodes_to_what_it_encoded(
        requests in proptest::collection::vec(arb_request().prop_map(without_reserved_keys), 0..4),
        flags in (0..=WAL_APPLY_FLAGS).prop_filter("apply flags only", |f| f & !WAL_APPLY_FLAGS == 0),
    ) {
        let b = WalBatch { seq: 9, created_at_ms: 10, requests, flags };
        prop_assert_eq!(WalBatch::decode(&legacy_encode(&b)).unwrap(), b);
    }
}
