//! Fuzz target: the attribute index section (kind 19, versions 1 and 2, `index::attr`).
//! Opening arbitrary bytes never panics, and a section that opens answers range and prefix
//! lookups without panicking; a version-2 section (which `open` checks row by row) only
//! returns rows below the row count its header states.
//!
//! Input: the first byte selects the mode. Even: the rest is a whole section (crc checked).
//! Odd: the rest is a section body, sealed with its correct crc32c so the fuzzer reaches the
//! structural checks. The probes are the keys of the fixture's value kinds around 0 and "a".
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::index::attr::{key_of, AttrIndex};
use tidepool::model::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let mut bytes = body.to_vec();
    if mode % 2 == 1 {
        bytes.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    }
    let Ok(ix) = AttrIndex::open(&bytes) else { return };
    let stated = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let probes = [Value::Int(0), Value::Float(0.5), Value::Str("a".into()), Value::Bool(true)];
    for v in &probes {
        let k = key_of(v).expect("indexable");
        let found = [
            ix.range(Some((&k, true)), Some((&k, true))),
            ix.range(None, Some((&k, false))),
            ix.range(Some((&k, false)), None),
            ix.prefix(&k),
        ];
        if ix.version() == 2 {
            assert!(found.iter().flatten().all(|r| *r < stated), "a row at or past the row count");
        }
    }
    let all = ix.range(None, None);
    assert!(ix.version() != 2 || all.len() == ix.entries(), "every entry once");
});
