//! Fuzz target: MUVERA index sections (segment section kind 30, `index::multi::section`).
//! Opening arbitrary bytes never panics (the crc check is skipped so the fuzzer reaches the
//! structural checks), and a section that opens can be searched: candidates are rows the
//! section covers and holds, at most the depth asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tidepool::index::multi::section::MuveraIndex;

fuzz_target!(|data: &[u8]| {
    let Ok(ix) = MuveraIndex::open_trusted(data) else { return };
    let p = ix.params();
    if p.fde_dim().saturating_mul(p.dim) > 1 << 20 {
        return;
    }
    let query = vec![vec![0.25f32; p.dim], vec![-0.5f32; p.dim]];
    let got = ix.candidates(&query, 3, |r| r % 2 == 0);
    assert!(got.len() <= 3);
    assert!(got.iter().all(|&r| r < ix.rows && ix.has(r) && r % 2 == 0));
});
