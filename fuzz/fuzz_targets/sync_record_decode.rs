//! Fuzz target: sync record decoding never panics, and a record that decodes
//! re-encodes to the same bytes. Odd first byte: the rest is resealed with a
//! valid checksum, so the fuzzer reaches the values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::format::sync_record::{SyncRecord, SYNC_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode % 2 == 1 && bytes.len() == SYNC_RECORD_LEN {
        let crc = crc32c::crc32c(&bytes[..SYNC_RECORD_LEN - 4]);
        bytes[SYNC_RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    }
    if let Ok(record) = SyncRecord::decode(&bytes) {
        assert_eq!(record.encode(), bytes, "a record re-encodes to its bytes");
    }
});
