//! Fuzz target: idempotency record decoding (binary, and the JSON shape
//! earlier builds stored) never panics; a binary record that decodes
//! re-encodes to the same bytes, and what decodes re-encodes and decodes to
//! the same values. Odd first byte: the rest is resealed with a valid
//! checksum, so the fuzzer reaches the flags and values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::format::idempotency::{IdempotencyRecord, IDEMPOTENCY_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode % 2 == 1 && bytes.len() == IDEMPOTENCY_RECORD_LEN {
        let crc = crc32c::crc32c(&bytes[..IDEMPOTENCY_RECORD_LEN - 4]);
        bytes[IDEMPOTENCY_RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(record) = IdempotencyRecord::decode(&bytes) {
        let encoded = record.encode();
        if bytes.first() != Some(&b'{') {
            assert_eq!(encoded, bytes, "a binary record re-encodes to its bytes");
        }
        assert_eq!(IdempotencyRecord::decode(&encoded).ok(), Some(record));
    }
});
