//! Unit tests of `format/schema.rs`: the current encoding, the legacy reader, the bounds.
use super::*;
use crate::schema::schema_to_json;
use serde_json::json;

fn fts(tokenizer: &str) -> FullTextSearch {
    FullTextSearch {
        tokenizer: tokenizer.into(),
        language: "german".into(),
        stemming: true,
        remove_stopwords: false,
        case_sensitive: true,
        ascii_folding: true,
        k1: 1.75,
        b: 0.3,
        max_token_length: 120,
        index_prefixes: false,
    }
}

fn attr(ty: AttrType) -> AttrSchema {
    AttrSchema::of(ty)
}

/// Every type, every option, `extra` values of every JSON kind.
fn every_option() -> Schema {
    let mut s = Schema::new();
    for (i, t) in [
        ScalarType::String,
        ScalarType::Int,
        ScalarType::Uint,
        ScalarType::Float,
        ScalarType::Uuid,
        ScalarType::Datetime,
        ScalarType::Bool,
    ]
    .into_iter()
    .enumerate()
    {
        s.insert(format!("scalar_{i}"), attr(AttrType::Scalar(t)));
        let mut array = attr(AttrType::Array(t));
        array.filterable = Some(i % 2 == 0);
        s.insert(format!("array_{i}"), array);
    }
    let mut title = attr(AttrType::Scalar(ScalarType::String));
    title.full_text_search = Some(fts("word_v3"));
    title.filterable = Some(true);
    title.extra.insert("glob".into(), json!(true));
    title.extra.insert("regex".into(), json!(false));
    s.insert("title".into(), title);
    let mut tags = attr(AttrType::Array(ScalarType::String));
    tags.full_text_search = Some(FullTextSearch::default());
    s.insert("tags".into(), tags);
    let mut vector = attr(AttrType::Vector { dim: 384, f16: false });
    vector.ann = true;
    vector.extra.insert("target_recall".into(), json!(0.97));
    s.insert("vector".into(), vector);
    s.insert("half".into(), attr(AttrType::Vector { dim: 8, f16: true }));
    s.insert("sparse16".into(), attr(AttrType::Sparse { f16: true }));
    let mut sparse = attr(AttrType::Sparse { f16: false });
    sparse.extra.insert("sparse_knn".into(), json!({"enabled": true}));
    s.insert("sparse32".into(), sparse);
    let mut kinds = attr(AttrType::Scalar(ScalarType::Int));
    for (k, v) in [
        ("null", json!(null)),
        ("bool", json!(true)),
        ("negative", json!(-42)),
        ("u64_max", json!(u64::MAX)),
        ("float", json!(0.1)),
        ("tiny", json!(5e-324)),
        ("string", json!("é \" \\ \u{1}")),
        ("array", json!([1, "two", [3.5, null], {"four": false}])),
        ("object", json!({"z": 1, "a": {"deep": [[]]}})),
        ("empty_array", json!([])),
        ("empty_object", json!({})),
    ] {
        kinds.extra.insert(k.into(), v);
    }
    s.insert("kinds".into(), kinds);
    s
}

/// A schema outside the API's rules, spelled as the old encoder spelled options (it wrote
/// `filterable` and `ann` out), so its legacy form is a fixed point too.
fn outside_the_api_rules() -> Schema {
    let mut s = Schema::new();
    let mut title = attr(AttrType::Scalar(ScalarType::String));
    let mut odd = fts("word_v99");
    odd.k1 = -3.0;
    odd.b = 7.5;
    odd.max_token_length = 0;
    title.full_text_search = Some(odd);
    title.filterable = Some(false);
    s.insert("title".into(), title);
    let mut n = attr(AttrType::Scalar(ScalarType::Int));
    n.full_text_search = Some(FullTextSearch::default());
    n.filterable = Some(false);
    s.insert("n".into(), n);
    let mut v = attr(AttrType::Vector { dim: crate::model::MAX_VECTOR_DIM + 1, f16: false });
    v.ann = true;
    v.extra.insert("target_recall".into(), json!(0.01));
    s.insert("v".into(), v);
    let mut tr = attr(AttrType::Scalar(ScalarType::Bool));
    tr.extra.insert("target_recall".into(), json!("high"));
    tr.filterable = Some(true);
    s.insert("".into(), tr);
    s
}

#[test]
fn every_option_round_trips_canonically() {
    let s = every_option();
    let text = schema_json(&s);
    assert!(text.starts_with("{\"encoding\":1,\"attributes\":[{\"name\":\"array_0\""), "{text}");
    let back = decode_schema(&text).unwrap();
    assert_eq!(back, s);
    assert_eq!(schema_json(&back), text, "the encoding is canonical");
    // `extra` keeps its members in their order, and the exact numbers.
    let kinds = &back["kinds"].extra;
    assert_eq!(kinds.keys().next().map(String::as_str), Some("null"));
    assert_eq!(kinds["u64_max"].as_u64(), Some(u64::MAX));
    assert_eq!(kinds["tiny"].as_f64(), Some(5e-324));
    // The same through a schema object.
    let object = encode_schema_object(&text);
    assert!(object.starts_with(b"{\"magic\":\"tidepool.schema\",\"format_version\":2,"));
    assert_eq!(decode_schema_object_body(&object).unwrap(), s);
    assert_eq!(decode_schema(&schema_json(&Schema::new())).unwrap(), Schema::new());
}

#[test]
fn the_encoding_spells_each_set_member_out() {
    let mut s = Schema::new();
    let mut v = attr(AttrType::Vector { dim: 3, f16: true });
    v.ann = true;
    s.insert("v".into(), v);
    let mut t = attr(AttrType::Scalar(ScalarType::String));
    t.full_text_search = Some(FullTextSearch::default());
    s.insert("t".into(), t);
    assert_eq!(
        schema_json(&s),
        concat!(
            r#"{"encoding":1,"attributes":["#,
            r#"{"name":"t","type":{"kind":"scalar","element":"string"},"#,
            r#""full_text_search":{"tokenizer":"word_v4","language":"english","stemming":false,"#,
            r#""remove_stopwords":true,"case_sensitive":false,"ascii_folding":false,"k1":1.2,"b":0.75,"#,
            r#""max_token_length":39}},"#,
            r#"{"name":"v","type":{"kind":"vector","element":"f16","dim":3},"ann":true}]}"#
        )
    );
    // Set members are written; unset ones are left out (and read back as unset).
    let mut u = attr(AttrType::Scalar(ScalarType::Int));
    u.filterable = Some(false);
    u.extra.insert("glob".into(), json!(true));
    let one: Schema = [("u".to_owned(), u)].into();
    let text = schema_json(&one);
    assert_eq!(
        text,
        r#"{"encoding":1,"attributes":[{"name":"u","type":{"kind":"scalar","element":"int"},"filterable":false,"extra":{"glob":true}}]}"#
    );
    assert_eq!(decode_schema(&text).unwrap(), one);
    let explicit = r#"{"encoding":1,"attributes":[{"name":"u","type":{"kind":"scalar","element":"int"},"filterable":false,"full_text_search":null,"ann":false,"extra":{"glob":true}}]}"#;
    assert_eq!(decode_schema(explicit).unwrap(), one, "unset members may also be written out");
}

/// Options outside what the API accepts today (unknown tokenizer, ranges, a dimension above
/// its limit, full-text on an int, an empty name) decode from storage, in both encodings.
#[test]
fn options_outside_the_api_rules_still_decode_from_storage() {
    let s = outside_the_api_rules();
    assert_eq!(decode_schema(&schema_json(&s)).unwrap(), s);
    assert_eq!(decode_legacy_schema(&schema_to_json(&s)).unwrap(), s);
}

#[test]
fn truncated_and_garbled_encodings_are_errors_not_panics() {
    let text = schema_json(&every_option());
    for n in 0..text.len() {
        if text.is_char_boundary(n) {
            assert!(decode_schema(&text[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }
    let bytes = text.as_bytes();
    for i in (0..bytes.len() * 8).step_by(7) {
        let mut b = bytes.to_vec();
        b[i / 8] ^= 1 << (i % 8);
        if let Ok(t) = std::str::from_utf8(&b) {
            let _ = decode_schema(t);
        }
    }
    let attr = |ty: &str| {
        format!(
            r#"{{"encoding":1,"attributes":[{{"name":"a","type":{ty},"filterable":null,"full_text_search":null,"ann":false,"extra":{{}}}}]}}"#
        )
    };
    assert!(decode_schema(&attr(r#"{"kind":"scalar","element":"int"}"#)).is_ok());
    for bad in [
        r#"{"kind":"scalar","element":"text"}"#,
        r#"{"kind":"scalar","element":"int","dim":3}"#,
        r#"{"kind":"vector","element":"f32"}"#,
        r#"{"kind":"vector","element":"f32","dim":0}"#,
        r#"{"kind":"vector","element":"f32","dim":4294967296}"#,
        r#"{"kind":"vector","element":"f64","dim":3}"#,
        r#"{"kind":"tensor","element":"f32"}"#,
        r#"{"kind":"sparse"}"#,
        r#""int""#,
    ] {
        assert!(matches!(decode_schema(&attr(bad)), Err(FormatError::Malformed(_))), "{bad}");
    }
    let one = attr(r#"{"kind":"scalar","element":"int"}"#);
    let inner = &one[r#"{"encoding":1,"attributes":["#.len()..one.len() - 2];
    let twice = format!(r#"{{"encoding":1,"attributes":[{inner},{inner}]}}"#);
    assert!(decode_schema(&twice).is_err(), "a name twice");
    let future = one.replacen("\"encoding\":1", "\"encoding\":3", 1);
    assert!(matches!(decode_schema(&future), Err(FormatError::UnsupportedVersion { version: 3, .. })));
    assert!(decode_schema(r#"{"attributes":[]}"#).is_err(), "no encoding");
    assert!(decode_schema(r#"{"encoding":1}"#).is_err(), "no attributes");
    assert!(decode_schema(&one.replacen("\"name\":\"a\",", "", 1)).is_err(), "no name");
    assert!(decode_schema(&attr(r#"{"kind":"scalar"}"#)).is_err(), "no element");
    assert!(decode_schema(&one.replacen("\"ann\":false", "\"ann\":false,\"ann\":true", 1)).is_err());
    // An unknown member is ignored (forward compatibility within the encoding).
    assert!(decode_schema(&one.replacen("\"ann\":false", "\"ann\":false,\"future\":[1]", 1)).is_ok());
}

#[test]
fn legacy_input_the_old_encoder_never_wrote_is_refused() {
    for bad in [
        json!([]),
        json!({"a": 3}),
        json!({"a": {"filterable": true}}),
        json!({"a": {"type": 3}}),
        json!({"a": {"type": "text"}}),
        json!({"a": {"type": "[0]f32"}}),
        json!({"a": {"type": "[4]f64"}}),
        json!({"a": {"type": "int", "filterable": "yes"}}),
        json!({"a": {"type": "string", "full_text_search": 1}}),
        json!({"a": {"type": "string", "full_text_search": {"k1": "x"}}}),
        json!({"a": {"type": "string", "full_text_search": {"max_token_length": 4294967296u64}}}),
        json!({"a": {"type": "string", "full_text_search": {"shingles": 2}}}),
    ] {
        assert!(decode_legacy_schema(&bad).is_err(), "{bad}");
    }
}

#[test]
fn structural_bounds_hold_for_encoder_and_both_decoders() {
    let mut s = every_option();
    assert!(check_schema(&s).is_ok());
    let mut deep = json!(1);
    for _ in 0..MAX_EXTRA_DEPTH {
        deep = json!([deep]);
    }
    s.get_mut("kinds").unwrap().extra.insert("deep".into(), deep.clone());
    assert!(check_schema(&s).is_ok(), "depth {MAX_EXTRA_DEPTH} is allowed");
    assert_eq!(decode_schema(&schema_json(&s)).unwrap(), s);
    s.get_mut("kinds").unwrap().extra.insert("deep".into(), json!([deep]));
    assert!(check_schema(&s).is_err());
    assert!(decode_schema(&schema_json(&s)).is_err());
    assert!(decode_legacy_schema(&schema_to_json(&s)).is_err());
    let mut nan = every_option();
    nan.get_mut("title").unwrap().full_text_search.as_mut().unwrap().k1 = f64::NAN;
    assert!(check_schema(&nan).is_err());
    assert!(decode_schema(&schema_json(&nan)).is_err(), "written as null, refused");
    let mut zero = Schema::new();
    zero.insert("v".into(), attr(AttrType::Vector { dim: 0, f16: false }));
    assert!(check_schema(&zero).is_err());
    assert!(decode_schema(&schema_json(&zero)).is_err());
}

/// Without `index_prefixes` a schema keeps encoding 1, byte for byte; with it the
/// schema is written as encoding 2 carrying the member, and encoding-1 text
/// (written before the option existed) decodes with it off.
#[test]
fn index_prefixes_moves_the_schema_to_encoding_two() {
    let mut s = Schema::new();
    let mut title = attr(AttrType::Scalar(ScalarType::String));
    title.full_text_search = Some(FullTextSearch::default());
    s.insert("title".into(), title);
    let off = schema_json(&s);
    assert!(off.starts_with(r#"{"encoding":1,"#), "{off}");
    assert!(!off.contains("index_prefixes"));
    assert!(!decode_schema(&off).unwrap()["title"].full_text_search.as_ref().unwrap().index_prefixes);

    s.get_mut("title").unwrap().full_text_search.as_mut().unwrap().index_prefixes = true;
    let on = schema_json(&s);
    assert!(on.starts_with(r#"{"encoding":2,"#), "{on}");
    assert!(on.contains(r#""max_token_length":39,"index_prefixes":true}"#), "{on}");
    assert_eq!(decode_schema(&on).unwrap(), s);
    assert_eq!(schema_json(&decode_schema(&on).unwrap()), on, "canonical");
    let future = on.replace(r#""encoding":2"#, r#""encoding":3"#);
    assert!(matches!(decode_schema(&future), Err(FormatError::UnsupportedVersion { version: 3, .. })));
}
