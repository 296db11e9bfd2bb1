//! Fuzz the schema decoders (`format::schema`): schema objects of both
//! versions, the current encoding and the legacy (turbopuffer-shaped) reader.
//!
//! Invariants checked:
//! - No decoder panics, on any input.
//! - A decoded schema meets the structural bounds (`check_schema`), and its
//!   current encoding decodes back to an equal schema, directly and inside a
//!   schema object (what a writer stores after reading any stored schema).
//!
//! Input: the first byte selects the mode (`mode % 4`). 0: the rest is a
//! whole schema object. 1: the rest is a body, sealed in a version 2 envelope
//! with the correct crc32c (the current encoding). 2: the same in a version 1
//! envelope (the legacy reader). 3: the rest is decoded as a body directly by
//! both readers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool::format::schema::{
    check_schema, decode_legacy_schema_text, decode_schema, decode_schema_object_body, encode_schema_object,
    schema_json,
};
use tidepool::schema::Schema;

fn sealed(version: u8, body: &[u8]) -> Vec<u8> {
    let crc = crc32c::crc32c(body);
    let mut w =
        format!("{{\"magic\":\"tidepool.schema\",\"format_version\":{version},\"crc32c\":{crc},\"body\":")
            .into_bytes();
    w.extend_from_slice(body);
    w.extend_from_slice(b"}\n");
    w
}

fn round_trips(s: &Schema) {
    check_schema(s).expect("a decoded schema meets the bounds");
    let text = schema_json(s);
    assert_eq!(&decode_schema(&text).expect("its encoding decodes"), s);
    let object = encode_schema_object(&text);
    assert_eq!(&decode_schema_object_body(&object).expect("its schema object decodes"), s);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let decoded = match mode % 4 {
        0 => vec![decode_schema_object_body(rest)],
        1 => vec![decode_schema_object_body(&sealed(2, rest))],
        2 => vec![decode_schema_object_body(&sealed(1, rest))],
        _ => match std::str::from_utf8(rest) {
            Ok(text) => vec![decode_schema(text), decode_legacy_schema_text(text)],
            Err(_) => vec![],
        },
    };
    for s in decoded.into_iter().flatten() {
        round_trips(&s);
    }
});
