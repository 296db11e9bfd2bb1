//! Format compatibility of the attribute index section (segment kind 19, `storage-format.md`
//! 11.3): version 1 (one key and one u32 row per entry) stays readable forever, and the current
//! encoder writes exactly the frozen version 2 bytes (each distinct key once, rows bit-packed).
//!
//! Invariants guarded here:
//! - `tests/fixtures/v18_attr/` holds one int and one string column as version 1
//!   (`attr_v1.bin`, `attr_str_v1.bin`, what every build before issue 36 item 4's packing
//!   wrote) and version 2 (`attr.bin`, `attr_str.bin`). The files were written from the
//!   documented layouts, not by the Rust encoders, so the encoders are checked against the
//!   specification byte for byte (`build` for version 2, `build_v1` for version 1).
//! - Both versions of a column answer every lookup alike, and as the column's values say.
//!
//! To write missing fixtures (existing files are never overwritten):
//! `TIDEPOOL_WRITE_FIXTURES=1 cargo test --test suite -- --ignored format_compat_attr::write_v18_attr_fixtures`

use crate::fixtures;

use fixtures::{fixture_dir, read_fixture, write_missing};
use tidepool::index::attr::{build, build_v1, key_of, AttrIndex};
use tidepool::model::Value;

/// The int column: 48 rows, row r holds (7r mod 5) − 2 unless r mod 6 = 5.
fn int_column() -> Vec<(u32, Value)> {
    (0..48u32).filter(|r| r % 6 != 5).map(|r| (r, Value::Int(i128::from(r * 7 % 5) - 2))).collect()
}

/// The string column: 20 rows cycling through five words, the empty string among them.
fn str_column() -> Vec<(u32, Value)> {
    let words = ["ap", "apple", "apricot", "banana", ""];
    (0..20u32).map(|r| (r, Value::Str(words[r as usize % 5].into()))).collect()
}

/// (fixture, attribute, rows, column, version) of a frozen section.
type Frozen = (&'static str, &'static str, usize, Vec<(u32, Value)>, u32);

/// Every frozen section.
fn sections() -> Vec<Frozen> {
    vec![
        ("attr_v1.bin", "cat", 48, int_column(), 1),
        ("attr.bin", "cat", 48, int_column(), 2),
        ("attr_str_v1.bin", "tag", 20, str_column(), 1),
        ("attr_str.bin", "tag", 20, str_column(), 2),
    ]
}

fn encode(attr: &str, rows: usize, column: &[(u32, Value)], version: u32) -> Vec<u8> {
    let values = column.iter().map(|(r, v)| (*r, v));
    let built = if version == 1 { build_v1(attr, rows, values) } else { build(attr, rows, values) };
    built.unwrap()
}

/// Invariant: every fixture opens as its version, the encoders reproduce it, and its lookups
/// return exactly the rows whose value matches, in (value, row) order.
#[test]
fn v18_attr_sections_read_back_and_are_canonical() {
    for (name, attr, rows, column, version) in sections() {
        let bytes = read_fixture("v18_attr", name);
        assert_eq!(encode(attr, rows, &column, version), bytes, "{name}: the encoder is canonical");
        let ix = AttrIndex::open(&bytes).unwrap();
        assert_eq!((ix.attr(), ix.version(), ix.entries()), (attr, version, column.len()), "{name}");
        for (_, probe) in &column {
            let k = key_of(probe).unwrap();
            let want: Vec<u32> = column.iter().filter(|(_, v)| v == probe).map(|(r, _)| *r).collect();
            assert_eq!(ix.range(Some((&k, true)), Some((&k, true))), want, "{name} {probe:?}");
            let below = column.iter().filter(|(_, v)| key_of(v).unwrap() < k).count();
            assert_eq!(ix.range(None, Some((&k, false))).len(), below, "{name} {probe:?}");
        }
    }
    let (new_bytes, old_bytes) =
        (read_fixture("v18_attr", "attr_str.bin"), read_fixture("v18_attr", "attr_str_v1.bin"));
    let (strs, old) = (AttrIndex::open(&new_bytes).unwrap(), AttrIndex::open(&old_bytes).unwrap());
    assert_eq!(strs.prefix(b"ap"), vec![0, 5, 10, 15, 1, 6, 11, 16, 2, 7, 12, 17]);
    assert_eq!(strs.prefix(b"ap"), old.prefix(b"ap"));
    assert_eq!(strs.prefix(b""), old.prefix(b""));
}

#[test]
#[ignore = "writes fixture files; run manually with TIDEPOOL_WRITE_FIXTURES=1"]
fn write_v18_attr_fixtures() {
    if std::env::var_os("TIDEPOOL_WRITE_FIXTURES").is_none() {
        eprintln!("set TIDEPOOL_WRITE_FIXTURES=1 to write fixtures");
        return;
    }
    let dir = fixture_dir("v18_attr");
    std::fs::create_dir_all(&dir).unwrap();
    let files = sections().into_iter().map(|(name, attr, rows, col, v)| (name, encode(attr, rows, &col, v)));
    write_missing(&dir, files.collect());
}
