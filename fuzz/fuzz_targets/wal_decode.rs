//! Fuzz the WAL batch decoder.
//!
//! Invariants checked:
//! - `WalBatch::decode` and `peek_header` never panic and never allocate from
//!   an unchecked length, on any input.
//! - An accepted batch re-encodes to bytes that decode again, and encoding is
//!   idempotent after that one normalization (`encode(decode(encode(b))) ==
//!   encode(b)`; the normalization is a legacy batch's filter and schema JSON
//!   → the own binary encodings, `WAL_FLAG_OWN_ENCODINGS`).
//!
//! Input: the first byte selects the mode. Even: the rest is decoded as a
//! whole object. Odd: the rest is a body, sealed with a valid header
//! (request_count = first byte >> 2, flags = `WAL_FLAG_OWN_ENCODINGS` when bit
//! 1 of the first byte is set, else 0 (legacy JSON text), correct checksums)
//! so that the fuzzer reaches the body parser, the filter and schema codecs
//! and the legacy reader past the crc32c checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidepool::format::wal::{peek_header, WalBatch, WAL_FLAG_OWN_ENCODINGS, WAL_FORMAT_VERSION, WAL_MAGIC};

fn seal(request_count: u32, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + body.len());
    out.extend_from_slice(&WAL_MAGIC);
    out.extend_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&request_count.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&2u64.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let sealed;
    let input: &[u8] = if mode % 2 == 0 {
        rest
    } else {
        let flags = if mode & 2 != 0 { WAL_FLAG_OWN_ENCODINGS } else { 0 };
        sealed = seal(u32::from(mode >> 2), flags, rest);
        &sealed
    };
    let _ = peek_header(input);
    if let Ok(batch) = WalBatch::decode(input) {
        let once = batch.encode();
        let again = WalBatch::decode(&once).expect("a re-encoded batch decodes");
        assert_eq!(again.encode(), once, "encoding is not idempotent");
    }
});
