//! Fuzz target: deletion-set decoding never panics; a decoded set answers
//! every query consistently.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::format::segment::DeletionSet;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = DeletionSet::decode(data) {
        let n = set.iter().count();
        assert_eq!(n, set.len());
        for row in set.iter().take(64) {
            assert!(set.contains(row));
        }
        assert_eq!(DeletionSet::decode(&set.encode()).ok().map(|s| s.len()), Some(n));
    }
});
