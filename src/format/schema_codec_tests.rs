//! Tests of the schema-update codec: every type and option, faithful `extra`
//! JSON, canonical bytes, and refusal of damaged input.

use super::*;
use proptest::prelude::*;
use serde_json::json;

pub(crate) fn fts(tokenizer: &str) -> FullTextSearch {
    FullTextSearch {
        tokenizer: tokenizer.into(),
        language: "german".into(),
        stemming: true,
        remove_stopwords: false,
        case_sensitive: true,
        ascii_folding: true,
        k1: 1.5,
        b: 0.25,
        max_token_length: 100,
        index_prefixes: false,
    }
}

fn extra(v: Json) -> Map<String, Json> {
    v.as_object().cloned().unwrap_or_default()
}

/// Every type, every filterable state, full-text options, ann, and `extra`
/// holding every JSON kind.
pub(crate) fn full_schema() -> Schema {
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
        s.insert(format!("s{i}"), AttrSchema::of(AttrType::Scalar(t)));
        s.insert(format!("a{i}"), AttrSchema::of(AttrType::Array(t)));
    }
    s.insert(
        "vector".into(),
        AttrSchema { ann: true, ..AttrSchema::of(AttrType::Vector { dim: 384, f16: false }) },
    );
    s.insert("v16".into(), AttrSchema::of(AttrType::Vector { dim: 100_000, f16: true }));
    s.insert("sp".into(), AttrSchema::of(AttrType::Sparse { f16: true }));
    s.insert("sp32".into(), AttrSchema::of(AttrType::Sparse { f16: false }));
    s.insert(
        "body".into(),
        AttrSchema {
            filterable: Some(true),
            full_text_search: Some(fts("a_tokenizer_no_api_knows")),
            ..AttrSchema::of(AttrType::Scalar(ScalarType::String))
        },
    );
    s.insert(
        "hidden".into(),
        AttrSchema { filterable: Some(false), ..AttrSchema::of(AttrType::Scalar(ScalarType::Int)) },
    );
    s.insert(
        "opts".into(),
        AttrSchema {
            extra: extra(json!({
                "zeta": null, "glob": true, "regex": false, "big": u64::MAX, "neg": i64::MIN,
                "float": -2.5e-300, "whole_float": 3.0, "text": "héllo",
                "list": [1, "two", [3.5, {"k": null}], []],
                "nested": {"b": {"c": [true]}, "a": {}},
                "target_recall": 0.9
            })),
            ..AttrSchema::of(AttrType::Vector { dim: 8, f16: false })
        },
    );
    s
}

fn round_trip(s: &Schema) -> Vec<u8> {
    let bytes = encode_schema(s).unwrap();
    let back = decode_schema(&bytes).unwrap();
    assert_eq!(&back, s);
    assert_eq!(encode_schema(&back).unwrap(), bytes, "canonical");
    bytes
}

#[test]
fn every_type_and_option_round_trips() {
    round_trip(&full_schema());
    round_trip(&Schema::new());
}

#[test]
fn extra_keeps_member_order_and_number_kinds() {
    let bytes = round_trip(&full_schema());
    let back = decode_schema(&bytes).unwrap();
    let opts = &back["opts"].extra;
    let keys: Vec<&str> = opts.keys().map(String::as_str).collect();
    assert_eq!(keys[..3], ["zeta", "glob", "regex"], "members keep their stored order");
    assert!(opts["whole_float"].is_f64() && opts["big"].is_u64() && opts["neg"].is_i64());
    assert_eq!(opts["float"], json!(-2.5e-300));
}

#[test]
fn golden_schema_bytes_are_stable() {
    let s = Schema::from([(
        "t".to_owned(),
        AttrSchema {
            filterable: Some(true),
            extra: extra(json!({"g": 1})),
            ..AttrSchema::of(AttrType::Array(ScalarType::String))
        },
    )]);
    let expected = [
        "01000000",                        // 1 attribute
        "01000000 74",                     // name "t"
        "02 01",                           // type: array of string
        "02",                              // filterable: true
        "00",                              // full_text_search: absent
        "00",                              // ann: false
        "01000000",                        // extra: 1 member
        "01000000 67 03 0100000000000000", // "g": u64 1
    ]
    .concat()
    .replace(' ', "");
    let bytes = round_trip(&s);
    assert_eq!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(), expected);
}

#[test]
fn truncation_at_every_prefix_is_an_error() {
    let bytes = encode_schema(&full_schema()).unwrap();
    for n in 0..bytes.len() {
        assert!(decode_schema(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
}

#[test]
fn bit_flips_never_panic_and_what_decodes_is_canonical() {
    let bytes = encode_schema(&full_schema()).unwrap();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        if let Ok(s) = decode_schema(&b) {
            assert_eq!(encode_schema(&s).unwrap(), b, "flip of bit {i}");
        }
    }
}

#[test]
fn non_canonical_and_malformed_input_is_refused() {
    let one = |body: &[u8]| {
        let mut b = vec![1, 0, 0, 0, 1, 0, 0, 0, b'x'];
        b.extend(body);
        decode_schema(&b)
    };
    let tail = [0u8, 0, 0, 0, 0, 0, 0]; // filterable unset, no fts, no ann, empty extra
    assert!(one(&[[TYPE_SCALAR, 1].as_slice(), &tail].concat()).is_ok());
    assert!(one(&[[TYPE_SCALAR, 8].as_slice(), &tail].concat()).is_err(), "unknown scalar");
    assert!(one(&[[9, 1].as_slice(), &tail].concat()).is_err(), "unknown type tag");
    assert!(one(&[[TYPE_VECTOR, 0, 0, 0, 0, 0].as_slice(), &tail].concat()).is_err(), "dimension 0");
    assert!(one(&[TYPE_SCALAR, 1, 3, 0, 0, 0, 0, 0, 0]).is_err(), "filterable tag 3");
    let member = |json: &[u8]| {
        one(&[[TYPE_SCALAR, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'k'].as_slice(), json].concat())
    };
    assert!(member(&[JSON_NULL]).is_ok());
    assert!(member(&[9]).is_err(), "unknown json tag");
    assert!(member(&[JSON_NEG_INT, 1, 0, 0, 0, 0, 0, 0, 0]).is_err(), "non-negative under the negative tag");
    assert!(member(&[JSON_FLOAT, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f]).is_err(), "infinity");
    // Names out of order, duplicated, or empty.
    let two = |a: u8, b: u8| {
        let entry = |n: u8| [vec![1, 0, 0, 0, n, TYPE_SCALAR, 1], tail.to_vec()].concat();
        decode_schema(&[vec![2, 0, 0, 0], entry(a), entry(b)].concat())
    };
    assert!(two(b'a', b'b').is_ok());
    assert!(two(b'b', b'a').is_err() && two(b'a', b'a').is_err());
    assert!(decode_schema(&[[1, 0, 0, 0, 0, 0, 0, 0].as_slice(), &[TYPE_SCALAR, 1], &tail].concat()).is_err());
    // Duplicated keys in extra.
    let dup = [TYPE_SCALAR, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, b'k', 0, 1, 0, 0, 0, b'k', 0];
    assert!(one(&dup).is_err());
    // A count far beyond the bytes present fails before allocating.
    assert!(matches!(decode_schema(&[0xff, 0xff, 0xff, 0xff]), Err(FormatError::Truncated { .. })));
}

#[test]
fn json_nesting_is_bounded() {
    let deep = |levels: usize| (1..levels).fold(json!(1), |v, _| json!([v]));
    let attr = |v: Json| {
        let mut a = AttrSchema::of(AttrType::Scalar(ScalarType::Int));
        a.extra.insert("d".into(), v);
        Schema::from([("x".to_owned(), a)])
    };
    // The extra map is level 1, so its values may nest MAX_JSON_NESTING - 1 levels.
    round_trip(&attr(deep(MAX_JSON_NESTING - 1)));
    assert!(encode_schema(&attr(deep(MAX_JSON_NESTING))).is_err());
}

// ------------------------------------------------------------ proptest

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<u64>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        (-1e300f64..1e300).prop_map(Json::from),
        ".{0,6}".prop_map(Json::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            proptest::collection::vec(("[a-z]{0,4}", inner), 0..4)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_type() -> impl Strategy<Value = AttrType> {
    let scalar = (0usize..7).prop_map(|i| SCALAR_TAGS[i].0);
    prop_oneof![
        scalar.clone().prop_map(AttrType::Scalar),
        scalar.prop_map(AttrType::Array),
        (1usize..=u32::MAX as usize, any::<bool>()).prop_map(|(dim, f16)| AttrType::Vector { dim, f16 }),
        any::<bool>().prop_map(|f16| AttrType::Sparse { f16 }),
        (1usize..=u32::MAX as usize, any::<bool>()).prop_map(|(dim, f16)| AttrType::MultiVector { dim, f16 }),
    ]
}

fn arb_attr_schema() -> impl Strategy<Value = AttrSchema> {
    let fts = proptest::option::of(
        ("[a-z_0-9]{0,10}", any::<(bool, bool, bool)>(), 0.0f64..4.0, any::<u32>()).prop_map(
            |(tokenizer, (stemming, case_sensitive, index_prefixes), k1, max_token_length)| FullTextSearch {
                stemming,
                case_sensitive,
                index_prefixes,
                k1,
                max_token_length,
                ..fts(&tokenizer)
            },
        ),
    );
    let extra =
        proptest::collection::vec(("[a-z_]{0,8}", arb_json()), 0..4).prop_map(|kv| kv.into_iter().collect());
    (arb_type(), proptest::option::of(any::<bool>()), fts, any::<bool>(), extra).prop_map(
        |(ty, filterable, full_text_search, ann, extra)| AttrSchema {
            ty,
            filterable,
            full_text_search,
            ann,
            extra,
        },
    )
}

pub(crate) fn arb_schema() -> impl Strategy<Value = Schema> {
    proptest::collection::btree_map("[a-z]{1,8}", arb_attr_schema(), 0..4)
}

proptest! {
    #[test]
    fn any_schema_round_trips_canonically(s in arb_schema()) {
        let bytes = encode_schema(&s).unwrap();
        let back = decode_schema(&bytes).unwrap();
        prop_assert_eq!(&back, &s);
        prop_assert_eq!(encode_schema(&back).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_schema(&bytes);
    }
}

/// `index_prefixes` is stored as full-text tag 2 with a flags byte; without it
/// an update keeps the tag-1 bytes older builds wrote, and decodes as off.
#[test]
fn index_prefixes_uses_tag_two_and_old_updates_decode_as_off() {
    let string = AttrType::Scalar(ScalarType::String);
    let mut off = Schema::new();
    off.insert("t".into(), AttrSchema { full_text_search: Some(fts("word_v4")), ..AttrSchema::of(string) });
    let old = encode_schema(&off).unwrap();
    let fts_at = 4 + 4 + 1 + 2 + 1; // count, name "t", scalar type, filterable
    assert_eq!(old[fts_at], 1, "without index_prefixes the tag-1 layout is kept");
    assert!(!decode_schema(&old).unwrap()["t"].full_text_search.as_ref().unwrap().index_prefixes);

    let mut on = off.clone();
    on.get_mut("t").unwrap().full_text_search.as_mut().unwrap().index_prefixes = true;
    let new = encode_schema(&on).unwrap();
    assert_eq!(new[fts_at], 2);
    assert_eq!(new.len(), old.len() + 1, "one flags byte after the options");
    assert_eq!(decode_schema(&new).unwrap(), on);

    // Tag 2 with no flag, or an unknown flag, is not canonical: refused.
    let flags_at = fts_at + 1 + (old.len() - fts_at - 1 - 1 - 4);
    for bad in [0u8, 2, 3, 0x80] {
        let mut b = new.clone();
        b[flags_at] = bad;
        assert!(decode_schema(&b).is_err(), "flags {bad:#x} accepted");
    }
    let mut b = old.clone();
    b[fts_at] = 3;
    assert!(decode_schema(&b).is_err());
}
