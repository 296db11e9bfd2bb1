//! Fuzz target: lease record decoding never panics; a decoded lease
//! re-encodes to exactly the bytes it was read from. The first byte selects
//! the mode: even = a whole record, odd = a body the target seals with a
//! valid checksum, so the fuzzer reaches the field checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::format::lease::Lease;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode % 2 == 1 {
        let mut sealed = rest.to_vec();
        sealed.extend_from_slice(&crc32c::crc32c(rest).to_le_bytes());
        sealed
    } else {
        rest.to_vec()
    };
    if let Ok(l) = Lease::decode(&bytes) {
        assert_eq!(l.encode(), bytes);
    }
});
