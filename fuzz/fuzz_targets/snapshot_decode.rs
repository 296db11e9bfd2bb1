//! Fuzz target: verifying an arbitrary snapshot file returns an error or a
//! summary, never panics and never allocates from an unchecked length. The
//! framing decoders of `format/snapshot.rs` are also fed directly: the
//! header from the first 44 bytes, a record header from what follows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::format::snapshot::{
    check_footer, decode_record_header, decode_record_key_len, SnapshotHeader, RECORD_KEY_LEN_BYTES,
    RECORD_TAIL_BYTES, SNAPSHOT_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SnapshotHeader::decode(data.get(..SNAPSHOT_HEADER_LEN).unwrap_or(data)) {
        assert_eq!(header.encode(), data[..SNAPSHOT_HEADER_LEN], "a header re-encodes to its bytes");
    }
    let rest = data.get(SNAPSHOT_HEADER_LEN..).unwrap_or_default();
    let (len, after) = rest.split_at(rest.len().min(RECORD_KEY_LEN_BYTES));
    if let Ok(key_len) = decode_record_key_len(len) {
        let key_len = (key_len as usize).min(after.len());
        let (key, after) = after.split_at(key_len);
        let _ = decode_record_header(len, key, after.get(..RECORD_TAIL_BYTES).unwrap_or(after));
    }
    let _ = check_footer(rest, 1);
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut reader = data;
    let _ = rt.block_on(tidepool::engine::snapshot::verify_snapshot(&mut reader));
});
