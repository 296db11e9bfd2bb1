//! Tests of the attribute index section (kind 19, both versions).
//!
//! Invariants checked: lookups follow value order within a kind for either version; versions 1
//! and 2 of the same values answer every lookup alike (and agree with a scan of the values);
//! version 2 stores each distinct key once and each row in `row_bits` bits; `open` refuses every
//! truncation and every flipped bit, and `open_trusted` refuses each structural rule broken
//! under a valid crc (rows out of range or order, keys out of order or of the wrong width,
//! starts, padding, reserved bytes, row bits); no bytes make a lookup panic or return a row at
//! or above the segment's row count.

use proptest::prelude::*;

use super::*;

fn ints(vals: &[i128]) -> Vec<Value> {
    vals.iter().map(|v| Value::Int(*v)).collect()
}

fn rows_of_values(vals: &[Value]) -> Vec<(u32, &Value)> {
    vals.iter().enumerate().map(|(i, v)| (i as u32, v)).collect()
}

/// The section of `values` as `version` (1 or 2).
fn build_as(version: u32, attr: &str, rows: usize, values: Vec<(u32, &Value)>) -> Option<Vec<u8>> {
    if version == 1 {
        build_v1(attr, rows, values)
    } else {
        build(attr, rows, values)
    }
}

fn sorted(mut rows: Vec<u32>) -> Vec<u32> {
    rows.sort_unstable();
    rows
}

#[test]
fn lookups_match_value_order_in_either_version() {
    for version in [1, 2] {
        let build =
            |attr: &str, rows: usize, values: Vec<(u32, &Value)>| build_as(version, attr, rows, values);
        let vals = ints(&[5, -3, 0, 5, 1 << 70, -(1 << 70)]);
        let bytes = build("n", 6, rows_of_values(&vals)).unwrap();
        let ix = AttrIndex::open(&bytes).unwrap();
        let k = |i: i128| key_of(&Value::Int(i)).unwrap();
        assert_eq!(sorted(ix.range(Some((&k(5), true)), Some((&k(5), true)))), vec![0, 3]);
        assert_eq!(sorted(ix.range(None, Some((&k(0), false)))), vec![1, 5]);
        assert_eq!(ix.range(Some((&k(6), true)), Some((&k(4), true))), Vec::<u32>::new());
        let floats: Vec<Value> = [-1.5, -0.0, 0.0, 2.0].into_iter().map(Value::Float).collect();
        let fb = build("f", 4, rows_of_values(&floats)).unwrap();
        let fx = AttrIndex::open(&fb).unwrap();
        let z = key_of(&Value::Float(0.0)).unwrap();
        assert_eq!(fx.range(Some((&z, true)), Some((&z, true))).len(), 2);
        assert_eq!(fx.range(None, Some((&z, false))), vec![0]);
        let strs: Vec<Value> =
            ["apple", "apricot", "banana", "ap"].into_iter().map(|s| Value::Str(s.into())).collect();
        let sb = build("s", 4, rows_of_values(&strs)).unwrap();
        let sx = AttrIndex::open(&sb).unwrap();
        assert_eq!(sx.prefix(b"ap"), vec![3, 0, 1]);
        assert!(build("m", 2, vec![(0u32, &Value::Int(1)), (1, &Value::Float(1.0))]).is_none());
        assert!(build("r", 1, vec![(1u32, &Value::Int(1))]).is_none(), "a row past the segment");
        let mut bad = sb.clone();
        bad[35] ^= 1;
        assert!(AttrIndex::open(&bad).is_err());
    }
}

#[test]
fn version_2_stores_each_key_once_and_packs_rows() {
    let rows = 10_000usize;
    let vals: Vec<Value> = (0..rows as i128).map(|i| Value::Int(i % 100)).collect();
    let v1 = build_v1("cat", rows, rows_of_values(&vals)).unwrap();
    let v2 = build("cat", rows, rows_of_values(&vals)).unwrap();
    // Header 32, name 3, offsets and starts 2 × 101 × 4, keys 100 × 16, rows 14 bits each + 8, crc.
    let packed = (rows * 14).div_ceil(8) + 8;
    assert_eq!(v2.len(), 32 + 3 + 2 * 101 * 4 + 100 * 16 + packed + 4);
    assert_eq!(v1.len(), 32 + 3 + (rows + 1) * 4 + rows * 4 + rows * 16 + 4);
    let (a, b) = (AttrIndex::open(&v1).unwrap(), AttrIndex::open(&v2).unwrap());
    assert_eq!((a.version(), b.version(), b.entries(), b.keys), (1, 2, rows, 100));
    let k = key_of(&Value::Int(42)).unwrap();
    let want: Vec<u32> = (0..rows as u32).filter(|r| r % 100 == 42).collect();
    assert_eq!(b.range(Some((&k, true)), Some((&k, true))), want);
    assert_eq!(a.range(Some((&k, false)), None), b.range(Some((&k, false)), None));
}

#[test]
fn every_truncation_and_bit_flip_is_refused() {
    let vals = ints(&[3, 1, 3, 2, 1, 3, 0, 2, 2, 1]);
    let bytes = build("a", 12, rows_of_values(&vals)).unwrap();
    for len in 0..bytes.len() {
        assert!(AttrIndex::open(&bytes[..len]).is_err(), "prefix of {len} bytes");
    }
    for i in 0..bytes.len() * 8 {
        let mut bad = bytes.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(AttrIndex::open(&bad).is_err(), "bit {i}");
    }
}

/// A version-2 section with `edit` applied and its crc recomputed.
fn resealed(bytes: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = bytes[..bytes.len() - 4].to_vec();
    edit(&mut body);
    seal(body)
}

#[test]
fn structural_damage_under_a_valid_crc_is_refused() {
    // Rows 0..6 of ints [1, 0, 1, 0, 2, 1] in a segment of 6 rows: keys 0, 1, 2 (starts 0, 2, 5,
    // 6), row bits 3; entries in (key, row) order: 1 3 | 0 2 5 | 4.
    let vals = ints(&[1, 0, 1, 0, 2, 1]);
    let good = build("a", 6, rows_of_values(&vals)).unwrap();
    assert!(AttrIndex::open(&good).is_ok());
    let name = 32 + 1;
    let starts = name + 4 * 4;
    let keys = starts + 4 * 4;
    let packed = keys + 3 * 16;
    let set_row = |b: &mut Vec<u8>, i: usize, r: u64| {
        let mut w = u64::from_le_bytes(b[packed..packed + 8].try_into().unwrap());
        w = (w & !(7u64 << (3 * i))) | r << (3 * i);
        b[packed..packed + 8].copy_from_slice(&w.to_le_bytes());
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("row past the segment", resealed(&good, |b| set_row(b, 5, 6))),
        ("rows out of order within a key", resealed(&good, |b| set_row(b, 0, 4))),
        ("a row repeated within a key", resealed(&good, |b| set_row(b, 3, 0))),
        ("padding bits", resealed(&good, |b| b[packed + 2] |= 0x80)),
        ("slack byte", resealed(&good, |b| *b.last_mut().unwrap() = 1)),
        ("keys out of order", resealed(&good, |b| b[keys + 15] = 9)),
        ("a start not increasing", resealed(&good, |b| b[starts + 4] = 5)),
        ("last start not the entry count", resealed(&good, |b| b[starts + 12] = 5)),
        ("reserved header byte", resealed(&good, |b| b[18] = 1)),
        ("row bits", resealed(&good, |b| b[17] = 4)),
        ("unknown kind", resealed(&good, |b| b[16] = 9)),
        ("key count", resealed(&good, |b| b[28] = 7)),
        ("unknown version", resealed(&good, |b| b[8] = 3)),
    ];
    for (what, bad) in cases {
        assert!(AttrIndex::open(&bad).is_err(), "{what}");
    }
    // A bool key other than 0 or 1, and a string key that is not UTF-8.
    let bools = [Value::Bool(false), Value::Bool(true)];
    let bb = build("b", 2, rows_of_values(&bools)).unwrap();
    assert!(AttrIndex::open(&resealed(&bb, |b| b[32 + 1 + 24 + 1] = 2)).is_err());
    let strs = [Value::Str("é".into())];
    let sb = build("s", 1, rows_of_values(&strs)).unwrap();
    assert!(AttrIndex::open(&sb).is_ok());
    assert!(AttrIndex::open(&resealed(&sb, |b| b[32 + 1 + 16] = 0xff)).is_err());
}

fn arb_kind_values() -> impl Strategy<Value = Vec<Option<Value>>> {
    let int = (-4i128..4).prop_map(Value::Int).boxed();
    let float =
        prop_oneof![Just(-0.0), Just(0.0), Just(1.5), Just(-2.0), Just(f64::MAX)].prop_map(Value::Float);
    let string = "[ab]{0,3}".prop_map(Value::Str);
    let boolean = any::<bool>().prop_map(Value::Bool);
    prop_oneof![
        proptest::collection::vec(proptest::option::of(int), 0..300),
        proptest::collection::vec(proptest::option::of(float.boxed()), 0..300),
        proptest::collection::vec(proptest::option::of(string.boxed()), 0..300),
        proptest::collection::vec(proptest::option::of(boolean.boxed()), 0..300),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Invariant: for any one-kind column (rows without the attribute, repeated and distinct
    /// values), versions 1 and 2 answer every range and prefix lookup alike, and a lookup's rows
    /// are exactly the rows whose key satisfies it.
    #[test]
    fn both_versions_answer_like_a_scan(column in arb_kind_values(), extra in 0usize..70) {
        let rows = column.len() + extra;
        let values: Vec<(u32, &Value)> =
            column.iter().enumerate().filter_map(|(r, v)| Some((r as u32, v.as_ref()?))).collect();
        let (Some(v1), Some(v2)) = (build_v1("c", rows, values.clone()), build("c", rows, values.clone())) else {
            prop_assert!(values.is_empty());
            return Ok(());
        };
        let (a, b) = (AttrIndex::open(&v1).unwrap(), AttrIndex::open(&v2).unwrap());
        let keyed: Vec<(Vec<u8>, u32)> = values.iter().map(|(r, v)| (key_of(v).unwrap(), *r)).collect();
        for (probe, _) in &keyed {
            for (lo, hi) in [(true, true), (false, true), (true, false), (false, false)] {
                let want: Vec<u32> = keyed
                    .iter()
                    .filter(|(k, _)| if lo { k >= probe } else { k > probe })
                    .filter(|(k, _)| if hi { k <= probe } else { k < probe })
                    .map(|(_, r)| *r)
                    .collect();
                let lower = b.range(Some((probe, lo)), None);
                prop_assert_eq!(&lower, &a.range(Some((probe, lo)), None));
                let upper = b.range(None, Some((probe, hi)));
                prop_assert_eq!(&upper, &a.range(None, Some((probe, hi))));
                let both = b.range(Some((probe, lo)), Some((probe, hi)));
                prop_assert_eq!(sorted(both), want);
            }
            let p = &probe[..probe.len().min(1)];
            let want: Vec<u32> = keyed.iter().filter(|(k, _)| k.starts_with(p)).map(|(_, r)| *r).collect();
            prop_assert_eq!(&b.prefix(p), &a.prefix(p));
            prop_assert_eq!(sorted(b.prefix(p)), sorted(want));
        }
    }

    /// Invariant: damaged version-2 bytes under a valid crc never make `open` or a lookup
    /// panic, and a section that opens only returns rows below its row count.
    #[test]
    fn damaged_sections_never_panic(
        column in arb_kind_values(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let rows = column.len();
        let values: Vec<(u32, &Value)> =
            column.iter().enumerate().filter_map(|(r, v)| Some((r as u32, v.as_ref()?))).collect();
        let Some(good) = build("c", rows, values) else { return Ok(()) };
        let mut body = good[..good.len() - 4].to_vec();
        for (at, bit) in &flips {
            let i = at.index(body.len());
            body[i] ^= 1u8 << *bit;
        }
        if let Some(c) = cut {
            let keep = c.index(body.len());
            body.truncate(keep);
        }
        let bad = seal(body);
        if let Ok(ix) = AttrIndex::open(&bad) {
            let stated = u32::from_le_bytes(bad[24..28].try_into().unwrap());
            let k = key_of(&Value::Int(0)).unwrap();
            let found = [ix.range(None, None), ix.range(Some((&k, true)), None), ix.prefix(b"a")];
            for r in found.iter().flatten() {
                prop_assert!(*r < stated, "row {} of {}", r, stated);
            }
        }
    }
}
