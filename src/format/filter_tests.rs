//! Tests of the filter codec: every operator and operand kind, filters far
//! beyond the API's limits, canonical bytes, and refusal of damaged input.
//! Also the arbitrary-filter strategy the WAL tests reuse.

use super::*;
use crate::model::Value;
use proptest::prelude::*;

pub(crate) fn leaf(attr: &str, op: Op, operand: LeafOperand) -> Filter {
    Filter::Cond(Condition::new(attr, op, operand).unwrap())
}

pub(crate) fn lit(attr: &str, op: Op, v: Value) -> Filter {
    leaf(attr, op, LeafOperand::Value(Operand::Value(v)))
}

fn strs(xs: &[&str]) -> Value {
    Value::Array(xs.iter().map(|s| Value::Str((*s).into())).collect())
}

/// One leaf of every operator, and every operand kind.
pub(crate) fn every_leaf_kind() -> Vec<Filter> {
    let pattern = |p: &str| LeafOperand::Pattern(p.into());
    vec![
        lit("a", Op::Eq, Value::Int(1)),
        lit("a", Op::Eq, Value::Null),
        lit("a", Op::NotEq, Value::Str("x".into())),
        lit("t", Op::Eq, strs(&["x", "y"])),
        lit("a", Op::In, Value::Array(vec![Value::Int(-1), Value::Int(i128::from(u64::MAX))])),
        lit("a", Op::NotIn, strs(&[])),
        lit("a", Op::Lt, Value::Float(2.5)),
        lit("a", Op::Lte, Value::Int(i128::from(i64::MIN))),
        lit("a", Op::Gt, Value::Str("m".into())),
        lit("a", Op::Gte, Value::Bool(true)),
        lit("t", Op::AnyLt, Value::Int(3)),
        lit("t", Op::AnyLte, Value::Float(-0.5)),
        lit("t", Op::AnyGt, Value::Int(0)),
        lit("t", Op::AnyGte, Value::Str("b".into())),
        lit("t", Op::Contains, Value::Str("x".into())),
        lit("t", Op::NotContains, Value::Int(4)),
        lit("t", Op::ContainsAny, strs(&["x"])),
        lit("t", Op::NotContainsAny, Value::Array(vec![Value::Bool(false)])),
        leaf("a", Op::Eq, LeafOperand::Value(Operand::RefNew("b".into()))),
        leaf("a", Op::Gte, LeafOperand::Value(Operand::RefNew("c".into()))),
        leaf("s", Op::Glob, pattern("a*b?[c-e]")),
        leaf("s", Op::NotGlob, pattern("\\*x")),
        leaf("s", Op::IGlob, pattern("HÉ*")),
        leaf("s", Op::NotIGlob, pattern("[!a]")),
        leaf("s", Op::Regex, pattern("^a.c$")),
        leaf(
            "s",
            Op::Fuzzy,
            LeafOperand::Fuzzy { text: "helo".into(), max_edit_distance: 2, case_sensitive: false },
        ),
        leaf("b", Op::ContainsAllTokens, LeafOperand::TokenText("hello world".into())),
        leaf("b", Op::ContainsAnyToken, LeafOperand::Tokens(vec!["a".into(), String::new()])),
        leaf("b", Op::ContainsTokenSequence, LeafOperand::Tokens(vec!["new".into(), "york".into()])),
        Filter::And(vec![]),
        Filter::Or(vec![]),
        Filter::Not(Box::new(lit("a", Op::Eq, Value::Int(1)))),
    ]
}

fn round_trip(f: &Filter) -> Vec<u8> {
    let bytes = encode_filter(f).unwrap();
    assert_eq!(&decode_filter(&bytes).unwrap(), f);
    bytes
}

#[test]
fn every_operator_has_one_distinct_nonzero_tag() {
    for op in Op::ALL {
        assert_eq!(OP_TAGS.iter().filter(|(o, _)| *o == op).count(), 1, "{op}");
        assert_eq!(op_of_tag(op_tag(op)), Some(op));
    }
    let mut tags: Vec<u8> = OP_TAGS.iter().map(|(_, t)| *t).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), OP_TAGS.len());
    assert!(!tags.contains(&0));
}

#[test]
fn every_leaf_kind_round_trips_and_is_canonical() {
    for f in every_leaf_kind() {
        let bytes = round_trip(&f);
        assert_eq!(encode_filter(&decode_filter(&bytes).unwrap()).unwrap(), bytes);
    }
    round_trip(&Filter::Or(every_leaf_kind()));
}

#[test]
fn golden_filter_bytes_are_stable() {
    let f = Filter::And(vec![
        lit("a", Op::Eq, Value::Int(1)),
        leaf("t", Op::Glob, LeafOperand::Pattern("x*".into())),
    ]);
    let expected = [
        "01 02000000",                            // And, 2 children
        "04 01000000 61 01",                      // Cond "a", Eq
        "01 02 01000000000000000000000000000000", // literal: value tag Int, 1 as i128
        "04 01000000 74 11",                      // Cond "t", Glob (17)
        "03 02000000 782a",                       // pattern "x*"
    ]
    .concat()
    .replace(' ', "");
    let bytes = round_trip(&f);
    assert_eq!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(), expected);
}

#[test]
fn filters_beyond_the_api_limits_encode_and_decode() {
    // 20,000 leaves (the API takes 10,000).
    let many = Filter::Or((0..20_000).map(|i| lit("a", Op::Eq, Value::Int(i))).collect());
    round_trip(&many);
    // A 10 KiB pattern (the API takes 4 KiB), 100 regexes (the API takes 64),
    // 80 KiB of patterns, a 16 KiB token query (the API takes 8 KiB) and a
    // fuzzy distance of 7 (the API takes 2).
    let long = "a".repeat(10 * 1024);
    let mut leaves = vec![leaf("s", Op::Glob, LeafOperand::Pattern(long.clone()))];
    leaves.extend((0..100).map(|i| leaf("s", Op::Regex, LeafOperand::Pattern(format!("^x{i}$")))));
    leaves.extend((0..7).map(|_| leaf("s", Op::IGlob, LeafOperand::Pattern(long.clone()))));
    leaves.push(leaf("b", Op::ContainsAnyToken, LeafOperand::TokenText("w ".repeat(8 * 1024))));
    let fuzzy = LeafOperand::Fuzzy { text: long, max_edit_distance: 7, case_sensitive: true };
    leaves.push(leaf("s", Op::Fuzzy, fuzzy));
    round_trip(&Filter::And(leaves));
}

fn nested_nots(levels: usize) -> Filter {
    (1..levels).fold(Filter::And(vec![]), |f, _| Filter::Not(Box::new(f)))
}

#[test]
fn nesting_is_bounded_on_encode_and_decode() {
    round_trip(&nested_nots(MAX_FILTER_NESTING));
    assert!(matches!(encode_filter(&nested_nots(MAX_FILTER_NESTING + 1)), Err(FormatError::Malformed(_))));
    // Hand-made bytes one level deeper are refused, not recursed into.
    let mut bytes = vec![NODE_NOT; MAX_FILTER_NESTING];
    bytes.extend([NODE_AND, 0, 0, 0, 0]);
    assert!(matches!(decode_filter(&bytes), Err(FormatError::Malformed(_))));
    assert_eq!(decode_filter(&bytes[1..]).unwrap(), nested_nots(MAX_FILTER_NESTING));
}

#[test]
fn truncation_at_every_prefix_is_an_error() {
    let bytes = encode_filter(&Filter::Or(every_leaf_kind())).unwrap();
    for n in 0..bytes.len() {
        assert!(decode_filter(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(decode_filter(&longer), Err(FormatError::TrailingBytes { .. })));
}

#[test]
fn bit_flips_never_panic_and_what_decodes_is_canonical() {
    let bytes = encode_filter(&Filter::Or(every_leaf_kind())).unwrap();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        if let Ok(f) = decode_filter(&b) {
            assert_eq!(encode_filter(&f).unwrap(), b, "flip of bit {i}");
        }
    }
}

#[test]
fn malformed_leaves_are_refused() {
    let cond = |attr: &[u8], op: u8, operand: &[u8]| {
        let mut b = vec![NODE_COND];
        b.extend(u32::try_from(attr.len()).unwrap().to_le_bytes());
        b.extend(attr);
        b.push(op);
        b.extend(operand);
        decode_filter(&b)
    };
    let int1 = [OPERAND_VALUE, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(cond(b"a", 1, &int1).is_ok());
    assert!(cond(b"a", 0, &int1).is_err(), "operator tag 0");
    assert!(cond(b"a", 26, &int1).is_err(), "unknown operator tag");
    assert!(cond(b"", 1, &int1).is_err(), "empty attribute");
    assert!(cond(b"a", 3, &int1).is_err(), "In needs a list");
    assert!(cond(b"a", 5, &[OPERAND_VALUE, 0]).is_err(), "Lt null");
    assert!(cond(b"a", 17, &int1).is_err(), "Glob takes a pattern");
    assert!(cond(b"a", 21, &[OPERAND_PATTERN, 1, 0, 0, 0, b'(']).is_err(), "a regex that does not compile");
    assert!(cond(b"a", 17, &[OPERAND_PATTERN, 1, 0, 0, 0, b'[']).is_err(), "an unclosed glob class");
    assert!(cond(b"a", 1, &[7]).is_err(), "unknown operand tag");
    assert!(cond(b"a", 1, &[OPERAND_VALUE, 3, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f]).is_err(), "NaN literal");
    assert!(cond(b"a", 22, &[OPERAND_FUZZY, 0, 0, 0, 0, 1, 2]).is_err(), "bool byte 2");
    assert!(decode_filter(&[9]).is_err(), "unknown node tag");
    // A declared child count far beyond the bytes present fails before allocating.
    assert!(matches!(decode_filter(&[NODE_OR, 0xff, 0xff, 0xff, 0xff]), Err(FormatError::Truncated { .. })));
    assert!(matches!(
        decode_filter(&[NODE_COND, 1, 0, 0, 0, b'a', 23, OPERAND_TOKENS, 0xff, 0xff, 0xff, 0xff]),
        Err(FormatError::Truncated { .. })
    ));
}

// ------------------------------------------------------------ proptest

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
        any::<u64>().prop_map(|i| Value::Int(i128::from(i))),
        (-1e12f64..1e12).prop_map(Value::Float),
        "[a-zé ]{0,8}".prop_map(Value::Str),
    ]
}

fn arb_list() -> impl Strategy<Value = Value> {
    proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array)
}

fn arb_attr() -> impl Strategy<Value = String> {
    // Not "id": the API rewrites uuid literals compared with ids.
    "[a-z]{1,2}[a-z_]{0,6}".prop_filter("not the id attribute", |a| a != "id")
}

fn with_ref_new(values: impl Strategy<Value = Value>) -> impl Strategy<Value = LeafOperand> {
    prop_oneof![
        4 => values.prop_map(|v| LeafOperand::Value(Operand::Value(v))),
        1 => arb_attr().prop_map(|a| LeafOperand::Value(Operand::RefNew(a))),
    ]
}

fn arb_leaf() -> impl Strategy<Value = Filter> {
    let any_value = prop_oneof![arb_scalar(), arb_list(), Just(Value::Null)];
    let eq = (prop_oneof![Just(Op::Eq), Just(Op::NotEq)], with_ref_new(any_value));
    let list_ops =
        prop_oneof![Just(Op::In), Just(Op::NotIn), Just(Op::ContainsAny), Just(Op::NotContainsAny)];
    let scalar_ops = prop_oneof![
        Just(Op::Lt),
        Just(Op::Lte),
        Just(Op::Gt),
        Just(Op::Gte),
        Just(Op::AnyLt),
        Just(Op::AnyLte),
        Just(Op::AnyGt),
        Just(Op::AnyGte),
        Just(Op::Contains),
        Just(Op::NotContains)
    ];
    let globs = prop_oneof![Just(Op::Glob), Just(Op::NotGlob), Just(Op::IGlob), Just(Op::NotIGlob)];
    let tokens =
        prop_oneof![Just(Op::ContainsAllTokens), Just(Op::ContainsAnyToken), Just(Op::ContainsTokenSequence)];
    let token_query = prop_oneof![
        "[a-z ]{0,12}".prop_map(LeafOperand::TokenText),
        proptest::collection::vec("[a-z]{0,5}", 0..4).prop_map(LeafOperand::Tokens),
    ];
    let fuzzy =
        ("[a-zA-Z]{0,8}", 0u8..=2, any::<bool>()).prop_map(|(text, max_edit_distance, case_sensitive)| {
            LeafOperand::Fuzzy { text, max_edit_distance, case_sensitive }
        });
    let parts = prop_oneof![
        eq,
        (list_ops, with_ref_new(arb_list())),
        (scalar_ops, with_ref_new(arb_scalar())),
        (globs, "[a-z*?]{0,8}".prop_map(LeafOperand::Pattern)),
        (Just(Op::Regex), "\\^?[a-z.]{0,6}\\$?".prop_map(LeafOperand::Pattern)),
        (Just(Op::Fuzzy), fuzzy),
        (tokens, token_query),
    ];
    (arb_attr(), parts).prop_map(|(attr, (op, operand))| leaf(&attr, op, operand))
}

/// Arbitrary filters within the API's limits (so the same filter can also
/// go through the API's JSON parser in tests outside `format`).
pub(crate) fn arb_filter() -> impl Strategy<Value = Filter> {
    arb_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest! {
    #[test]
    fn any_filter_round_trips_canonically(f in arb_filter()) {
        let bytes = encode_filter(&f).unwrap();
        let back = decode_filter(&bytes).unwrap();
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(encode_filter(&back).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_filter(&bytes);
    }
}
