//! Fuzz target: GC tombstone decoding never panics; a decoded tombstone
//! re-encodes to exactly the bytes it was read from (the shape is exact).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::format::tombstone::Tombstone;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tombstone::decode(data) {
        assert_eq!(t.encode(), data);
    }
});
