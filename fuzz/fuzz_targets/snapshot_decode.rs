//! Fuzz target: verifying an arbitrary snapshot file returns an error or a
//! summary, never panics and never allocates from an unchecked length.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut reader = data;
    let _ = rt.block_on(tidepool::engine::snapshot::verify_snapshot(&mut reader));
});
